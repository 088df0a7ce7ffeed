//! Checking a store item by item, and repairing one that is damaged.
//!
//! A store damaged on disk (a flipped byte in a bundle, a value cut short, a bundle missing
//! below its log's head) used to make the whole section unreadable, with no way back.
//! [`check_store`] reads every stored item once, in key order, and verifies what can be
//! verified without any key: each bundle's signature and that it sits under its own key;
//! each (section, author) log's hash chain from its base up to its head; each key wrap's and
//! shared snapshot's signature by the record root or a device; and that every other item
//! (registrations, receipt times, held writes, ledger items kept on the node) decodes as its
//! kind. It changes nothing. Sealed items that need a section key to open (local snapshots,
//! which are caches, and record summaries) and items whose type another crate owns are
//! counted as not checked.
//!
//! [`repair_store`] keeps everything that still verifies and, in **one** atomic batch, moves
//! each damaged item to quarantine (its bytes kept under the `Q` kind, read by nothing else)
//! and sets each broken log's head back to the last bundle that verifies and chains. The
//! section then opens again with what it has, and the next sync fetches the rest: peers
//! compare log heads, so a node whose head went back is sent every bundle after it.
//!
//! ```
//! use hearth_core::record::{Vault, check_store, repair_store};
//! use hearth_core::store::MemoryStore;
//!
//! let vault = Vault::new(MemoryStore::new());
//! let report = check_store(vault.store()).unwrap();
//! assert!(report.is_intact());
//! let repaired = repair_store(vault.store()).unwrap();
//! assert_eq!(repaired.quarantined, 0);
//! ```

use super::decbor;
use super::held::HeldWrite;
use super::keyring::{KEYRING_STAMP_LEN, stamp_keyring};
use super::layout::{LogId, Stored, k_head, k_quarantine, parse};
use super::snapshot::SharedSnapshot;
use super::vault::Registration;
use crate::audit::SignedEvent;
use crate::bundle::Bundle;
use crate::ids::{BundleHash, RecordId};
use crate::keywrap::{EscrowedKey, KeyWrap};
use crate::ledger::{self, Kind, PeerAddrs};
use crate::log::LogHead;
use crate::store::{Batch, FORMAT_VERSION, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One damaged item, in plain words. Names ids only: never record content, keys or tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// The record it belongs to (its text id), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// What the item is, e.g. "bundle 4 of author … in section …".
    pub item: String,
    /// The section it belongs to (opaque id, hex), if any: a node that can read the record
    /// names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The key that wrote it (peer id), for items of one author's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// What is wrong with it, e.g. "its signature does not verify (altered on disk)".
    pub problem: String,
    /// What `hearth store repair` does about it.
    pub repair: &'static str,
    #[serde(skip)]
    key: Option<Vec<u8>>,
}

/// A log whose head names more than its stored bundles can prove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLog {
    /// The record (its text id).
    pub record: String,
    /// The section (opaque id, hex).
    pub section: String,
    /// The author (peer id).
    pub author: String,
    /// The head's sequence number as stored (`None`: the head itself is unreadable).
    pub head: Option<u64>,
    /// The newest bundle that verifies and chains: where repair sets the head (0: none).
    pub verified: u64,
    #[serde(skip)]
    set_to: Option<LogHead>,
    #[serde(skip)]
    id: LogId,
}

/// A log's head as stored and verified: what peers compare when they sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedHead {
    /// The record (its text id).
    pub record: String,
    /// The section (opaque id, hex).
    pub section: String,
    /// The author (peer id).
    pub author: String,
    /// The newest bundle's sequence number.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
}

/// What [`check_store`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreReport {
    /// Items read.
    pub items: u64,
    /// Items verified or decoded intact, by kind.
    pub intact: BTreeMap<&'static str, u64>,
    /// Items that cannot be checked without a key or by this crate, by kind.
    pub not_checked: BTreeMap<&'static str, u64>,
    /// (Section, author) logs whose chain verifies from base to head.
    pub logs_intact: u64,
    /// Their heads, in key order.
    pub heads: Vec<VerifiedHead>,
    /// Items an earlier repair quarantined.
    pub quarantined: u64,
    /// Damaged items.
    pub damage: Vec<Damage>,
    /// Logs to set back to their last verified bundle.
    pub broken_logs: Vec<BrokenLog>,
}

impl StoreReport {
    /// Whether nothing is damaged.
    pub fn is_intact(&self) -> bool {
        self.damage.is_empty() && self.broken_logs.is_empty()
    }
}

/// What [`repair_store`] did, and the check of the store afterwards.
#[derive(Clone, Debug, Serialize)]
pub struct RepairReport {
    /// Damaged items moved to quarantine.
    pub quarantined: u64,
    /// Log heads set back (or removed, when no bundle of the log verified).
    pub heads_moved: u64,
    /// The check before the repair.
    pub before: StoreReport,
    /// The check after it.
    pub after: StoreReport,
}

/// What the check keeps of one bundle: enough to walk its log's chain.
#[derive(Clone, Copy)]
struct BundleFacts {
    hash: BundleHash,
    prev: Option<BundleHash>,
}

/// One log's stored facts: its head, base and bundles that verified.
#[derive(Default)]
struct LogFacts {
    /// `Some(None)`: a head is stored but unreadable.
    head: Option<Option<LogHead>>,
    base: Option<LogHead>,
    bundles: BTreeMap<u64, BundleFacts>,
}

/// Reads every item of `store` and reports what is intact and what is damaged. Changes
/// nothing.
pub fn check_store(store: &impl Store) -> Result<StoreReport, StoreError> {
    let mut report = StoreReport::default();
    let mut logs: BTreeMap<LogId, LogFacts> = BTreeMap::new();
    store.scan_while(&[], &[0xff; 8], &mut |k, v| {
        report.items += 1;
        check_item(k, v, &mut report, &mut logs);
        true
    })?;
    for (id, facts) in logs {
        walk_log(&id, &facts, &mut report);
    }
    Ok(report)
}

/// Repairs `store`: one atomic batch quarantines every damaged item and sets every broken
/// log's head back to its last verified bundle; then checks again.
pub fn repair_store(store: &impl Store) -> Result<RepairReport, StoreError> {
    let before = check_store(store)?;
    let mut batch = Batch::new();
    let mut quarantined = 0;
    for d in &before.damage {
        let Some(key) = &d.key else { continue };
        if let Some(v) = store.get(key)? {
            batch.put(k_quarantine(key), v);
            batch.delete(key.clone());
            quarantined += 1;
        }
        match parse(key) {
            Stored::Format => batch.put(crate::store::FORMAT_KEY, FORMAT_VERSION),
            // A keyring changed: stamped afresh, after its stamp's own deletion if that was
            // the damaged item.
            Stored::Wrap(r, ..) | Stored::Escrow(r, ..) | Stored::Keyring(r) => {
                stamp_keyring(&mut batch, &r)
            }
            _ => {}
        }
    }
    let mut heads_moved = 0;
    for b in &before.broken_logs {
        let key = k_head(&b.id.record, &b.id.section, &b.id.author);
        match b.set_to {
            Some(h) => batch.put(key, h.to_bytes().to_vec()),
            None => batch.delete(key),
        }
        heads_moved += 1;
    }
    if !batch.is_empty() {
        store.commit(batch)?;
    }
    let after = check_store(store)?;
    Ok(RepairReport {
        quarantined,
        heads_moved,
        before,
        after,
    })
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn short(b: &[u8]) -> String {
    hex(b.get(..6).unwrap_or(b))
}

fn in_log(l: &LogId) -> String {
    format!(
        "of author {} in section {}",
        short(&l.author.0),
        short(&l.section.0)
    )
}

/// Checks one item, noting its facts (bundles, heads, bases) for the log walk.
fn check_item(k: &[u8], v: &[u8], r: &mut StoreReport, logs: &mut BTreeMap<LogId, LogFacts>) {
    let stored = parse(k);
    let (kind, verdict): (&'static str, Verdict) = match &stored {
        Stored::Record(rid) => (
            "record registrations",
            decbor::<Registration>(v)
                .map_err(|()| "does not decode")
                .and_then(|g| ok_if(g.record == *rid, "names another record")),
        ),
        Stored::Wrap(rid, s, e, to) => (
            "key wraps",
            decbor::<KeyWrap>(v)
                .map_err(|()| "does not decode")
                .and_then(|w| {
                    ok_if(
                        w.record == *rid
                            && w.section == *s
                            && w.epoch == *e
                            && w.recipient.into_array() == *to,
                        "is filed under another key",
                    )?;
                    ok_if(
                        w.verify(),
                        "its signature by the record root does not verify",
                    )
                }),
        ),
        Stored::Escrow(rid, s, e) => (
            "escrowed keys",
            decbor::<EscrowedKey>(v)
                .map_err(|()| "does not decode")
                .and_then(|w| {
                    let x = &w.escrow;
                    ok_if(
                        x.record == *rid && x.section == *s && x.epoch == *e,
                        "is filed under another key",
                    )?;
                    ok_if(
                        x.verify(),
                        "its signature by the record root does not verify",
                    )
                }),
        ),
        Stored::Keyring(_) => (
            "keyring stamps",
            ok_if(v.len() == KEYRING_STAMP_LEN, "is not a keyring stamp"),
        ),
        Stored::Bundle(l, seq) => {
            let verdict = check_bundle(v, Some((l, *seq)));
            if let Ok(facts) = &verdict {
                logs.entry(*l).or_default().bundles.insert(*seq, *facts);
            }
            ("bundles", verdict.map(drop))
        }
        Stored::Fork(l, seq) => ("fork evidence", check_bundle(v, Some((l, *seq))).map(drop)),
        Stored::HeldBytes(..) => ("held writes' bundles", check_bundle(v, None).map(drop)),
        Stored::Held(l, seq) => (
            "held writes",
            decbor::<HeldWrite>(v)
                .map_err(|()| "does not decode")
                .and_then(|h| {
                    ok_if(
                        h.record == l.record
                            && h.section == l.section
                            && h.author == l.author
                            && h.seq == *seq,
                        "is filed under another key",
                    )
                }),
        ),
        Stored::Head(l) => {
            let head = LogHead::from_bytes(v);
            logs.entry(*l).or_default().head = Some(head);
            ("log heads", head.map(drop).ok_or("does not decode"))
        }
        Stored::Base(l) => {
            let base = LogHead::from_bytes(v);
            if let Some(b) = base {
                logs.entry(*l).or_default().base = Some(b);
            }
            ("log bases", base.map(drop).ok_or("does not decode"))
        }
        Stored::Received(..) => ("receipt times", ok_if(v.len() == 8, "is not a time")),
        Stored::Shared(rid, s) => (
            "shared snapshots",
            SharedSnapshot::decode(v)
                .ok_or("does not decode")
                .and_then(|x| {
                    ok_if(
                        x.record == *rid && x.section == *s,
                        "is filed under another key",
                    )?;
                    ok_if(x.verify(), "its signature does not verify")
                }),
        ),
        Stored::Cache(..) => {
            *r.not_checked
                .entry("local snapshots (sealed caches)")
                .or_default() += 1;
            return;
        }
        Stored::Local(name) => match name.as_deref().map(local_checker) {
            Some(Some((kind, check))) => (kind, check(v)),
            Some(None) => {
                *r.not_checked
                    .entry("node items kept for other parts")
                    .or_default() += 1;
                return;
            }
            None => ("node items", Err("its name is not text")),
        },
        Stored::Format => (
            "format marker",
            ok_if(v == FORMAT_VERSION, "is not a Hearth format version"),
        ),
        Stored::Quarantined => {
            r.quarantined += 1;
            return;
        }
        Stored::Unknown => {
            *r.not_checked.entry("keys of no known kind").or_default() += 1;
            return;
        }
    };
    match verdict {
        Ok(()) => *r.intact.entry(kind).or_default() += 1,
        Err(problem) => r.damage.push(damage(&stored, k, v, problem)),
    }
}

type Verdict = Result<(), &'static str>;

/// Decodes (and where it can, verifies) one kind of item.
type Checker = fn(&[u8]) -> Verdict;

fn ok_if(cond: bool, problem: &'static str) -> Verdict {
    if cond { Ok(()) } else { Err(problem) }
}

/// Decodes and verifies a bundle; with `at`, checks it is filed under its own key.
fn check_bundle(v: &[u8], at: Option<(&LogId, u64)>) -> Result<BundleFacts, &'static str> {
    let b = Bundle::decode(v).map_err(|_| "does not decode (damaged or cut short)")?;
    b.verify()
        .map_err(|_| "its signature does not verify (altered on disk)")?;
    let h = b.header();
    if let Some((l, seq)) = at {
        ok_if(
            h.record == l.record && h.section == l.section && h.author == l.author && h.seq == seq,
            "is filed under another bundle's key",
        )?;
    }
    Ok(BundleFacts {
        hash: b.hash(),
        prev: h.prev,
    })
}

/// The plain-words kind and decoder of a node-level item, by its name; `None` for items this
/// crate cannot check (sealed summaries, letters, and the relay's own items).
fn local_checker(name: &str) -> Option<(&'static str, Checker)> {
    fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Verdict {
        serde_json::from_slice::<T>(v)
            .map(drop)
            .map_err(|_| "does not decode")
    }
    fn event(v: &[u8]) -> Verdict {
        SignedEvent::open(v)
            .map(drop)
            .map_err(|_| "does not decode or its signature does not verify")
    }
    let table: [(Kind, &'static str, Checker); 15] = [
        (Kind::HeldGrant, "held grants", |v| {
            crate::grant::chain_from_bytes(v)
                .map(drop)
                .map_err(|_| "does not decode")
        }),
        (Kind::LearntRevocation, "learnt revocations", |v| {
            crate::grant::Revocation::from_bytes(v)
                .filter(|x| x.verify())
                .map(drop)
                .ok_or("does not decode or its signature does not verify")
        }),
        (Kind::Peer, "peer addresses", json::<PeerAddrs>),
        (Kind::Listen, "peer addresses", json::<PeerAddrs>),
        (Kind::Asked, "peer addresses", json::<PeerAddrs>),
        (Kind::Found, "peer addresses", json::<PeerAddrs>),
        (Kind::Journal, "audit journal events", event),
        (Kind::RelayedAudit, "audit events left at this relay", event),
        (Kind::JournalHead, "audit journal heads", |v| {
            ok_if(v.len() == 40, "does not decode")
        }),
        (Kind::JournalSent, "audit journal marks", |v| {
            ok_if(v.len() == 8, "does not decode")
        }),
        (Kind::HostedCount, "counts of records kept", |v| {
            ok_if(v.len() == 8, "does not decode")
        }),
        (Kind::IgUseCount, "counts of logged emergency uses", |v| {
            ok_if(v.len() == 8, "does not decode")
        }),
        (
            Kind::HeldEmergency,
            "emergency uses",
            json::<ledger::HeldEmergency>,
        ),
        (
            Kind::ProxyRequest,
            "proxy requests",
            json::<ledger::ProxyRequestItem>,
        ),
        (
            Kind::IgUse,
            "logged emergency uses",
            json::<ledger::IgUseItem>,
        ),
    ];
    table
        .into_iter()
        .find(|(kind, _, _)| name.starts_with(kind.prefix()))
        .map(|(_, word, f)| (word, f))
}

/// The finding for a damaged item, in plain words.
fn damage(stored: &Stored, k: &[u8], v: &[u8], problem: &'static str) -> Damage {
    let (record, item) = match stored {
        Stored::Record(r) => (Some(*r), "the record's registration".to_string()),
        Stored::Wrap(r, s, e, _) => (
            Some(*r),
            format!("a key wrap of section {} (epoch {e})", short(&s.0)),
        ),
        Stored::Escrow(r, s, e) => (
            Some(*r),
            format!("an escrowed key of section {} (epoch {e})", short(&s.0)),
        ),
        Stored::Keyring(r) => (Some(*r), "the record's keyring stamp".to_string()),
        Stored::Bundle(l, seq) => (Some(l.record), format!("bundle {seq} {}", in_log(l))),
        Stored::Fork(l, seq) => (
            Some(l.record),
            format!("fork evidence at {seq} {}", in_log(l)),
        ),
        Stored::Held(l, seq) | Stored::HeldBytes(l, seq) => (
            Some(l.record),
            format!("a held write ({seq} {})", in_log(l)),
        ),
        Stored::Head(l) => (Some(l.record), format!("the log head {}", in_log(l))),
        Stored::Base(l) => (Some(l.record), format!("the log base {}", in_log(l))),
        Stored::Received(l, seq) => (
            Some(l.record),
            format!("the receipt time of bundle {seq} {}", in_log(l)),
        ),
        Stored::Shared(r, s) => (
            Some(*r),
            format!("the shared snapshot of section {}", short(&s.0)),
        ),
        Stored::Local(Some(name)) => (None, format!("node item {}", local_label(name))),
        Stored::Format => (None, "the store's format marker".to_string()),
        _ => (None, format!("an item ({} bytes)", v.len())),
    };
    let (section, author) = match stored {
        Stored::Wrap(_, s, ..) | Stored::Escrow(_, s, _) | Stored::Shared(_, s) => {
            (Some(hex(&s.0)), None)
        }
        Stored::Bundle(l, _)
        | Stored::Fork(l, _)
        | Stored::Held(l, _)
        | Stored::HeldBytes(l, _)
        | Stored::Head(l)
        | Stored::Base(l)
        | Stored::Received(l, _) => (Some(hex(&l.section.0)), Some(l.author.to_string())),
        _ => (None, None),
    };
    Damage {
        record: record.map(|r: RecordId| r.to_string()),
        item,
        section,
        author,
        problem: problem.to_string(),
        repair: "moved to quarantine",
        key: Some(k.to_vec()),
    }
}

/// A node item's kind and a short form of the rest of its name (ids only; tokens and
/// addresses are never in names).
fn local_label(name: &str) -> String {
    match name.split_once('/') {
        Some((kind, rest)) => {
            let rest: String = rest.chars().take(16).collect();
            format!("{kind}/{rest}…")
        }
        None => name.chars().take(24).collect(),
    }
}

/// Walks one log from its base to its head: every bundle present, verified and chained.
fn walk_log(id: &LogId, facts: &LogFacts, r: &mut StoreReport) {
    // A log with bundles and no head is what a crash between an ordered commit's writes
    // leaves: consistent, nothing to report.
    let Some(stored_head) = facts.head else {
        return;
    };
    let mut at = facts.base;
    let limit = stored_head.map_or(u64::MAX, |h| h.seq);
    let mut problem = None;
    loop {
        let seq = at.map_or(0, |h| h.seq) + 1;
        if seq > limit {
            break;
        }
        match facts.bundles.get(&seq) {
            Some(b) if b.prev == at.map(|h| h.hash) => {
                at = Some(LogHead { seq, hash: b.hash });
            }
            Some(_) => {
                problem = Some(format!("the hash chain breaks at bundle {seq}"));
                break;
            }
            None if stored_head.is_none() => break,
            None => {
                problem = Some(format!("bundle {seq} is missing or damaged"));
                break;
            }
        }
    }
    let intact = match stored_head {
        Some(h) => problem.is_none() && at == Some(h),
        None => false,
    };
    if let (true, Some(h)) = (intact, stored_head) {
        r.logs_intact += 1;
        r.heads.push(VerifiedHead {
            record: id.record.to_string(),
            section: hex(&id.section.0),
            author: id.author.to_string(),
            seq: h.seq,
            hash: hex(&h.hash.0),
        });
        return;
    }
    if problem.is_none()
        && let Some(h) = stored_head
    {
        let what = if at.map_or(0, |a| a.seq) == h.seq {
            "the head names another bundle than the one stored"
        } else {
            "the head does not match the log's base"
        };
        problem = Some(what.to_string());
    }
    if let Some(p) = problem {
        r.damage.push(Damage {
            record: Some(id.record.to_string()),
            item: format!("the log {}", in_log(id)),
            section: Some(hex(&id.section.0)),
            author: Some(id.author.to_string()),
            problem: p,
            repair: "head set back to the last bundle that verifies; the rest is fetched again from peers or relays",
            key: None,
        });
    }
    r.broken_logs.push(BrokenLog {
        record: id.record.to_string(),
        section: hex(&id.section.0),
        author: id.author.to_string(),
        head: stored_head.map(|h| h.seq),
        verified: at.map_or(0, |h| h.seq),
        set_to: at,
        id: *id,
    });
}
