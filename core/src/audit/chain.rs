//! Checking a record's audit log: every writer's events signed, numbered from 1 without a gap,
//! each linked to the one before, and every head a peer reported present.

use super::event::{Action, AuditError, SignedEvent};
use crate::ids::{PeerKey, RecordId};
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// Something wrong with an audit log. Each names the writer and where, never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// An event does not decode or its signature does not verify: changed or forged.
    Altered {
        /// Whose log.
        writer: PeerKey,
        /// Where in it.
        seq: u64,
        /// Why (no content).
        why: String,
    },
    /// An event is stored where another belongs (its own record, writer or number differ):
    /// moved, reordered or copied.
    Misplaced {
        /// Whose log it is stored in.
        writer: PeerKey,
        /// The place it is stored at.
        seq: u64,
    },
    /// An event does not link to the one before it: something before it was changed, dropped
    /// or put out of order.
    Broken {
        /// Whose log.
        writer: PeerKey,
        /// The event that does not link.
        seq: u64,
    },
    /// Events missing from a writer's log (dropped, or never delivered).
    Missing {
        /// Whose log.
        writer: PeerKey,
        /// The first missing.
        from: u64,
        /// The last missing.
        to: u64,
    },
    /// A peer received record data but did not report its own reads: its software does not
    /// keep the audit, or was changed not to.
    NotReporting {
        /// The peer.
        peer: PeerKey,
        /// In how many sessions.
        sessions: u32,
        /// The latest of them (the serving node's clock).
        last: Timestamp,
    },
    /// A receipt marking an emergency use, signed by a key that does not serve the record
    /// (only the patient's devices and the record's relays attest those): ignored.
    NotAServer {
        /// The key.
        writer: PeerKey,
        /// Where in its log.
        seq: u64,
    },
    /// An answer to an access request (an approval or a denial) signed by a key that is not
    /// the patient's proxy with the power to answer, or an approval whose grant does not
    /// derive from that proxy's grant: ignored.
    NotAProxy {
        /// The key.
        writer: PeerKey,
        /// Where in its log.
        seq: u64,
    },
    /// Events signed by a key that is neither one of the patient's devices, a grantee nor a
    /// relay of the record.
    Stranger {
        /// The key.
        writer: PeerKey,
        /// How many events.
        events: u64,
    },
}

impl Problem {
    /// The writer or peer the problem is about.
    pub fn peer(&self) -> PeerKey {
        match self {
            Problem::Altered { writer, .. }
            | Problem::Misplaced { writer, .. }
            | Problem::Broken { writer, .. }
            | Problem::Missing { writer, .. }
            | Problem::NotAServer { writer, .. }
            | Problem::NotAProxy { writer, .. }
            | Problem::Stranger { writer, .. } => *writer,
            Problem::NotReporting { peer, .. } => *peer,
        }
    }

    /// Plain words, with `who` naming the writer or peer.
    pub fn words(&self, who: &str) -> String {
        match self {
            Problem::Altered { seq, why, .. } => {
                format!("event {seq} of {who} was changed or forged ({why})")
            }
            Problem::Misplaced { seq, .. } => {
                format!("event {seq} of {who} is out of place (moved or reordered)")
            }
            Problem::Broken { seq, .. } => format!(
                "event {seq} of {who} does not follow the one before it \
                 (an event was changed, dropped or reordered)"
            ),
            Problem::Missing { from, to, .. } if from == to => {
                format!("event {from} of {who} is missing")
            }
            Problem::Missing { from, to, .. } => {
                format!("events {from} to {to} of {who} are missing")
            }
            Problem::NotReporting { sessions, .. } => format!(
                "{who} received your record in {sessions} session(s) without reporting its \
                 own reads: what it looked at since is unknown"
            ),
            Problem::NotAServer { seq, .. } => format!(
                "event {seq} of {who} claims to be a receipt of an emergency use, but only your \
                 devices and your record's relays attest those: ignored"
            ),
            Problem::NotAProxy { seq, .. } => format!(
                "event {seq} of {who} claims to answer an access request for you, but {who} is \
                 not your proxy with the power to answer, or the grant it names is not theirs to \
                 give: ignored"
            ),
            Problem::Stranger { events, .. } => format!(
                "{events} event(s) signed by {who}, who has no part in this record, were ignored"
            ),
        }
    }
}

/// A checked log: the authentic events, writer by writer in order, and every problem found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Events whose signature verifies and that sit at their place.
    pub events: Vec<SignedEvent>,
    /// What is wrong, if anything.
    pub problems: Vec<Problem>,
}

impl Verified {
    /// Whether the log is whole.
    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a log is checked against.
pub struct Expect<'a> {
    /// The record id each writer's events must name (a relay signs the id as blinded for it).
    pub record_of: &'a dyn Fn(&PeerKey) -> RecordId,
    /// Whether a key may write to this log at all.
    pub known: &'a dyn Fn(&PeerKey) -> bool,
    /// Heads known from elsewhere (the newest event number a writer is known to have).
    pub heads: &'a BTreeMap<PeerKey, u64>,
    /// Whether a key serves the record: the patient's devices and the record's relays. Their
    /// receipts alone say what peers reported, and mark emergency uses; anyone else's
    /// receipts are their own word.
    pub serves: &'a dyn Fn(&PeerKey) -> bool,
    /// Whether an answer to an access request (an approval or denial) by a key is founded:
    /// the key is the patient's proxy with the power to answer, and an approval's grant
    /// derives from its proxy grant.
    pub answers: &'a dyn Fn(&PeerKey, &Action) -> bool,
}

/// Checks `stored`: (writer, place, bytes) as the log keeps them, in any order.
pub fn verify<'b>(
    stored: impl IntoIterator<Item = (PeerKey, u64, &'b [u8])>,
    expect: &Expect<'_>,
) -> Verified {
    let mut by_writer: BTreeMap<PeerKey, BTreeMap<u64, &[u8]>> = BTreeMap::new();
    for (w, seq, bytes) in stored {
        by_writer.entry(w).or_default().insert(seq, bytes);
    }
    let mut out = Verified::default();
    let mut heads = expect.heads.clone();
    for (writer, log) in &by_writer {
        if !(expect.known)(writer) {
            out.problems.push(Problem::Stranger {
                writer: *writer,
                events: log.len() as u64,
            });
            continue;
        }
        let record = (expect.record_of)(writer);
        let mut next = 1u64;
        let mut prev: Option<[u8; 32]> = Some([0; 32]);
        for (&seq, bytes) in log {
            if seq > next {
                out.problems.push(Problem::Missing {
                    writer: *writer,
                    from: next,
                    to: seq - 1,
                });
                prev = None;
            }
            next = seq + 1;
            let ev = match SignedEvent::open(bytes) {
                Ok(ev) => ev,
                Err(e) => {
                    out.problems.push(Problem::Altered {
                        writer: *writer,
                        seq,
                        why: short(&e),
                    });
                    prev = None;
                    continue;
                }
            };
            let e = ev.event();
            if e.writer != *writer || e.seq != seq || e.record != record {
                out.problems.push(Problem::Misplaced {
                    writer: *writer,
                    seq,
                });
                prev = None;
                continue;
            }
            // A link is judged only where the event before is known good.
            if let Some(p) = prev
                && e.prev.into_array() != p
            {
                out.problems.push(Problem::Broken {
                    writer: *writer,
                    seq,
                });
            }
            prev = Some(ev.hash());
            // A professional's node may serve another grantee and receipt it: kept, as that
            // node's word (see `reported_gaps`), but only the record's servers attest an
            // emergency use.
            if e.action.attests_emergency() && !(expect.serves)(writer) {
                out.problems.push(Problem::NotAServer {
                    writer: *writer,
                    seq,
                });
                continue;
            }
            if matches!(e.action, Action::Approved { .. } | Action::Denied { .. })
                && !(expect.answers)(writer, &e.action)
            {
                out.problems.push(Problem::NotAProxy {
                    writer: *writer,
                    seq,
                });
                continue;
            }
            out.events.push(ev);
        }
        let head = heads.remove(writer).unwrap_or(0);
        if head >= next {
            out.problems.push(Problem::Missing {
                writer: *writer,
                from: next,
                to: head,
            });
        }
    }
    for (writer, head) in heads {
        if head > 0 && (expect.known)(&writer) {
            out.problems.push(Problem::Missing {
                writer,
                from: 1,
                to: head,
            });
        }
    }
    out.problems
        .extend(reported_gaps(&out.events, &by_writer, expect.serves));
    out
}

fn short(e: &AuditError) -> String {
    match e {
        AuditError::BadSignature => "signature".into(),
        AuditError::Malformed(m) => (*m).to_string(),
    }
}

/// What the access receipts of the record's servers say peers reported: a head beyond what is
/// stored is missing events; a session without a report is a peer not reporting. A receipt
/// by another grantee's node is that node's word only, and proves nothing of what a third
/// party reported.
fn reported_gaps(
    events: &[SignedEvent],
    stored: &BTreeMap<PeerKey, BTreeMap<u64, &[u8]>>,
    serves: &dyn Fn(&PeerKey) -> bool,
) -> Vec<Problem> {
    let mut reported: BTreeMap<PeerKey, u64> = BTreeMap::new();
    let mut silent: BTreeMap<PeerKey, (u32, Timestamp)> = BTreeMap::new();
    for ev in events.iter().filter(|e| serves(&e.event().writer)) {
        if let Action::Served {
            to,
            reported: r,
            authority: Some(_),
            pushed: false,
            ..
        } = &ev.event().action
        {
            match r {
                Some(h) => {
                    let e = reported.entry(*to).or_default();
                    *e = (*e).max(*h);
                }
                None => {
                    let s = silent.entry(*to).or_insert((0, ev.event().at));
                    s.0 += 1;
                    s.1 = s.1.max(ev.event().at);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (peer, head) in reported {
        let have = stored
            .get(&peer)
            .and_then(|l| l.keys().next_back().copied())
            .unwrap_or(0);
        if head > have {
            out.push(Problem::Missing {
                writer: peer,
                from: have + 1,
                to: head,
            });
        }
    }
    for (peer, (sessions, last)) in silent {
        out.push(Problem::NotReporting {
            peer,
            sessions,
            last,
        });
    }
    out
}
