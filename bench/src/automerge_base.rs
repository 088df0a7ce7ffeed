//! The automerge baseline several modules measure against: automerge's own sync protocol
//! between two in-memory documents holding the same notes (one key and one change per note),
//! each message encoded and decoded as it would cross a wire.

use anyhow::Result;
use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use hearth_core::entry::EntryVersion;
use hearth_core::record::EntryView;
use hearth_core::section::SectionClass;
use serde_json::json;
use std::time::{Duration, Instant};

/// A short clinical note, about 200 bytes of JSON, numbered `i`.
pub(crate) fn note(i: usize) -> serde_json::Value {
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. \
        Daughter present; discussed respite options and medication timing. Plan: review in two weeks.")})
}

/// A document of notes `0..n`, one change each.
pub(crate) fn doc_of(n: usize) -> Result<automerge::AutoCommit> {
    let mut d = automerge::AutoCommit::new();
    for i in 0..n {
        add_note(&mut d, i)?;
    }
    Ok(d)
}

/// A document of the given (key, JSON text) items, in order, one change each.
pub(crate) fn doc_of_items(
    items: impl Iterator<Item = (String, serde_json::Result<String>)>,
) -> Result<automerge::AutoCommit> {
    let mut d = automerge::AutoCommit::new();
    for (k, v) in items {
        d.put(automerge::ROOT, k, v?)?;
        d.commit();
    }
    Ok(d)
}

/// A shown entry as its section's document holds it: its key and its version's JSON text
/// (the entry's id, status and provenance beside its body).
pub(crate) fn stored_item(
    class: SectionClass,
    e: EntryView,
) -> (String, serde_json::Result<String>) {
    let v = EntryVersion {
        id: e.id,
        class,
        version: e.version,
        supersedes: e.supersedes,
        status: e.status,
        status_reason: e.status_reason,
        body: e.body,
        provenance: e.provenance,
    };
    (format!("e/{}", v.id), serde_json::to_string(&v))
}

/// Note `i` put into `d` as its own change.
pub(crate) fn add_note(d: &mut automerge::AutoCommit, i: usize) -> Result<()> {
    d.put(automerge::ROOT, format!("e/{i:08}"), note(i).to_string())?;
    d.commit();
    Ok(())
}

/// automerge's sync between `a` and `b` until neither has anything to send: (time taken,
/// bytes of the encoded messages).
pub(crate) fn sync(
    a: &mut automerge::AutoCommit,
    b: &mut automerge::AutoCommit,
    sa: &mut State,
    sb: &mut State,
) -> Result<(Duration, usize)> {
    let t = Instant::now();
    let mut bytes = 0;
    loop {
        let m1 = a.sync().generate_sync_message(sa);
        if let Some(m) = m1.clone() {
            let enc = m.encode();
            bytes += enc.len();
            b.sync().receive_sync_message(sb, Message::decode(&enc)?)?;
        }
        let m2 = b.sync().generate_sync_message(sb);
        if let Some(m) = m2.clone() {
            let enc = m.encode();
            bytes += enc.len();
            a.sync().receive_sync_message(sa, Message::decode(&enc)?)?;
        }
        if m1.is_none() && m2.is_none() {
            return Ok((t.elapsed(), bytes));
        }
    }
}

/// A fresh initial sync of `n` notes into an empty document: (time, bytes), and the source
/// document.
pub(crate) fn initial_sync(n: usize) -> Result<(Duration, usize, automerge::AutoCommit)> {
    let mut src = doc_of(n)?;
    let mut dst = automerge::AutoCommit::new();
    let (t, bytes) = sync(&mut src, &mut dst, &mut State::new(), &mut State::new())?;
    Ok((t, bytes, src))
}
