//! Audit (issue #14), each against a baseline measured in the same run:
//!
//! - the cost of keeping an access receipt (one durable journal commit) per served session,
//!   against the served session itself (an incremental sync of one new entry, on sled); beside
//!   it, the floor any durable commit has on the same disk in the same rounds (one sled
//!   insert+flush), against the same sessions;
//! - `hearth audit verify` of 10,000 events (loading the sealed audit section, checking every
//!   signature, number and link), against checking 10,000 ed25519 signatures alone.

use crate::measure::{median_duration, ms, size_label};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, bail, ensure};
use ed25519_dalek::{Signer, Verifier};
use hearth_core::audit::{Action, SectionAt, SignedEvent};
use hearth_core::grant::Ability;
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::{Identity, Role, signing_key};
use hearth_core::record::{NewEntry, Vault};
use hearth_core::section::SectionName;
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::Local;
use serde_json::json;
use std::time::Instant;

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    receipt_cost(r, if quick { 50 } else { 200 })?;
    verify_cost(
        r,
        if quick { 2_000 } else { 10_000 },
        if quick { 3 } else { 5 },
    )
}

/// One sync round trip from the GP's side through the wire encoding; returns the patient's
/// receipt for it.
fn session(
    gs: &Local<'_, SledStore>,
    ps: &Local<'_, SledStore>,
    gp: &Identity,
    patient: &Identity,
    rid: RecordId,
    rng: &mut TestRng,
) -> Result<Option<Action>> {
    let mut req = gs.start_as(rid, patient.peer(), true, TEST_NOW)?;
    let mut receipt = None;
    loop {
        let w = protocol::encode(&Message::Request(req));
        let Message::Request(r) = protocol::decode(&w)? else {
            bail!("a request decoded as something else")
        };
        let (resp, report) = ps.on_request(gp.peer(), r, TEST_NOW, rng)?;
        receipt = report.served.map(|b| *b).or(receipt);
        let w = protocol::encode(&Message::Response(resp));
        let Message::Response(r) = protocol::decode(&w)? else {
            bail!("a response decoded as something else")
        };
        match gs.on_response(patient.peer(), r, TEST_NOW, rng)?.0 {
            Some(n) => req = n,
            None => return Ok(receipt),
        }
    }
}

/// A 1,000-note section on sled, a GP in sync; each round the patient adds a note, the GP
/// syncs (timed), then the patient's node journals the session's receipt (timed apart).
fn receipt_cost(r: &mut Report, rounds: usize) -> Result<()> {
    let mut rng = TestRng::new(3);
    let (pd, gd) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let p = Vault::open(SledStore::open(pd.path())?)?;
    let g = Vault::open(SledStore::open(gd.path())?)?;
    let (patient, rid) = patient_record(&p, "P", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
    let notes: SectionName = "notes".parse()?;
    {
        let mut rec = p.open_record(&patient, &rid)?;
        let items: Vec<NewEntry> = (0..1000)
            .map(|i| NewEntry {
                section: notes,
                body: json!({"text": format!("{i:05} note")}),
                supersedes: None,
            })
            .collect();
        rec.add_entries(&items, TEST_NOW, &mut rng)?;
        let gr = record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            TEST_NOW,
            1,
            &mut rng,
        );
        g.hold_grant(&rid, &[gr])?;
    }
    let (gs, ps) = (Local::new(&g, &gp), Local::new(&p, &patient));
    session(&gs, &ps, &gp, &patient, rid, &mut rng)?;
    // The floor: one insert+flush of a receipt-sized value in a sled store of its own.
    let fd = tempfile::tempdir()?;
    let floor_db = sled::Config::new()
        .path(fd.path())
        .flush_every_ms(None)
        .open()?;
    let mut sessions = Vec::new();
    let mut receipts = Vec::new();
    let mut floors = Vec::new();
    for i in 0..rounds {
        {
            let mut rec = p.open_record(&patient, &rid)?;
            rec.add_entry(
                &notes,
                &json!({"text": format!("new {i}")}),
                TEST_NOW,
                &mut rng,
            )?;
        }
        let t = Instant::now();
        let receipt = session(&gs, &ps, &gp, &patient, rid, &mut rng)?
            .context("a served session's receipt")?;
        sessions.push(t.elapsed());
        let t = Instant::now();
        p.journal(&patient, rid, receipt, TEST_NOW)?;
        receipts.push(t.elapsed());
        let t = Instant::now();
        floor_db.insert((i as u64).to_be_bytes(), vec![7u8; 600])?;
        floor_db.flush()?;
        floors.push(t.elapsed());
    }
    let session_ms = ms(median_duration(sessions));
    r.emit(
        Figure::new("receipt_per_session", ms(median_duration(receipts)), "ms")
            .baseline(session_ms)
            .target("ratio<0.1"),
    )?;
    r.emit(
        Figure::new("receipt_flush_floor", ms(median_duration(floors)), "ms").baseline(session_ms),
    )
}

/// `events` reported events of one writer taken into the patient's sealed audit section, then
/// opened and checked `runs` times, against as many single ed25519 verifications.
fn verify_cost(r: &mut Report, events: usize, runs: usize) -> Result<()> {
    let mut rng = TestRng::new(4);
    let dir = tempfile::tempdir()?;
    let p = Vault::open(SledStore::open(dir.path())?)?;
    let (patient, rid) = patient_record(&p, "P", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
    let mut rec = p.open_record(&patient, &rid)?;
    record_grant(
        &patient,
        &mut rec,
        gp.peer(),
        "notes",
        Ability::Read,
        TEST_NOW,
        1,
        &mut rng,
    );
    // The GP's reports, taken in as a session takes them (256 at a time).
    let mut prev = None;
    let mut all = Vec::with_capacity(events);
    for i in 0..events {
        let ev = SignedEvent::sign(
            &gp,
            rid,
            prev,
            TEST_NOW.saturating_add_millis(i as i64),
            Action::Read {
                sections: vec![SectionAt {
                    section: SectionId([1; 16]),
                    epoch: 0,
                }],
                authority: None,
            },
        )?;
        prev = Some((ev.event().seq, ev.hash()));
        all.push(ev.bytes().to_vec());
    }
    for chunk in all.chunks(256) {
        rec.receive_audit(&gp.peer(), chunk, TEST_NOW, &mut rng)?;
    }
    drop(rec);
    // Baseline: single ed25519 verifications of messages of the events' size.
    let key = signing_key(&mut rng);
    let vk = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..events).map(|i| vec![i as u8; all[0].len()]).collect();
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs) {
            vk.verify(m, s)?;
        }
        base.push(t.elapsed());
        let t = Instant::now();
        let mut rec = p.open_record(&patient, &rid)?;
        let v = rec.verify_audit()?;
        ours.push(t.elapsed());
        ensure!(v.events.len() == events, "every event verified");
        ensure!(v.is_whole(), "the log is whole: {:?}", v.problems);
    }
    r.emit(
        Figure::new(
            format!("verify_{}_events", size_label(events)),
            ms(median_duration(ours)),
            "ms",
        )
        .baseline(ms(median_duration(base))),
    )
}
