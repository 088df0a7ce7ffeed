//! Live propagation: which records moved since the last look, whom to tell, and what to push
//! with the notification.
//!
//! The node has no change feed. After every local change the driver calls [`Changes::check`]
//! with the session over its store, the connected peers and the time (after bundles arrive
//! from a peer, [`Changes::check_record`] for that record alone): a cheap fingerprint of each
//! record's log heads says which records moved; each moved record is announced ([`Announce`])
//! to its connected interested peers ([`Local::interested_peers`]) with the new bundles of the
//! sections each may hold, when those are known. What each peer may hold is worked out again when the auth document or the consent
//! ledger changes, and at least every [`RIGHTS_TTL`] by the time passed in (grants expire);
//! between those, the cached rights are reused so that an edit costs no grant verification.
//!
//! [`Changes`] holds only that cache (one entry per record held; a full check forgets the
//! records no longer held); it reads the store through the session it is given, so the driver
//! calls it where it runs store work (holding the store's lock).

use crate::protocol::MAX_PUSH_BYTES;
use crate::session::Local;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::log::VersionVector;
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long the peers' rights worked out for a change check are reused.
pub const RIGHTS_TTL: Duration = Duration::from_secs(30);

/// A notification to send: `Notify { record, push }` to `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// To whom.
    pub peer: PeerKey,
    /// Which record moved.
    pub record: RecordId,
    /// The new bundles the peer may hold (empty: "sync with me").
    pub push: Vec<ByteBuf>,
}

/// Cheap summaries of a record's logs: all sections, and the sections that decide who is
/// interested (the auth document and the consent ledger).
fn fingerprint(m: &BTreeMap<SectionId, VersionVector>) -> (u64, u64) {
    let sum = |vv: &VersionVector| {
        vv.values()
            .map(|h| h.seq)
            .fold(0u64, |a, s| a.wrapping_add(s))
    };
    let all = m
        .values()
        .map(sum)
        .fold(0u64, |a, s| a.wrapping_add(s))
        .wrapping_add(m.len() as u64);
    let auth = [SectionId::AUTH, SectionId::LEDGER]
        .iter()
        .filter_map(|s| m.get(s))
        .map(sum)
        .fold(0u64, |a, s| a.wrapping_add(s));
    (all, auth)
}

/// What a change check is given: whom it may announce to, and the times.
#[derive(Clone, Copy)]
struct Look<'c> {
    connected: &'c BTreeSet<PeerKey>,
    except: Option<PeerKey>,
    now: Instant,
    at: Timestamp,
}

/// What the last change check saw of a record.
#[derive(Debug)]
struct Seen {
    fp: (u64, u64),
    /// Interested peers and the sections each may hold, valid while the auth fingerprint is
    /// unchanged.
    interested: Vec<(PeerKey, BTreeSet<SectionId>)>,
    /// The log heads held then: what changed since is pushed with the notification.
    heads: BTreeMap<SectionId, VersionVector>,
    /// When `interested` was worked out (grants expire: it is redone every [`RIGHTS_TTL`]).
    computed: Instant,
}

/// The change checker's memory of each record (see the module docs).
#[derive(Debug)]
pub struct Changes {
    seen: HashMap<RecordId, Seen>,
    rights_ttl: Duration,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new(RIGHTS_TTL)
    }
}

impl Changes {
    /// Nothing seen yet; rights reused for at most `rights_ttl`.
    pub fn new(rights_ttl: Duration) -> Self {
        Changes {
            seen: HashMap::new(),
            rights_ttl,
        }
    }

    /// Finds the records whose logs moved since the last check and returns the notifications
    /// for their interested peers among `connected` (except `except`, the peer the change came
    /// from). The first check of a record only records what is held (a baseline). `now`
    /// times the rights cache; `at` is the wall-clock time grants are checked at.
    pub fn check<S: Store>(
        &mut self,
        local: &Local<'_, S>,
        connected: &BTreeSet<PeerKey>,
        except: Option<PeerKey>,
        now: Instant,
        at: Timestamp,
    ) -> Vec<Announce> {
        let look = Look {
            connected,
            except,
            now,
            at,
        };
        let Ok(records) = local.records() else {
            return Vec::new();
        };
        // Records no longer held (a relay's that ended, say) are forgotten.
        let held: HashSet<RecordId> = records.iter().copied().collect();
        self.seen.retain(|r, _| held.contains(r));
        self.check_these(local, records, &look)
    }

    /// How many records the checks have seen (those held at the last full check, and since).
    pub fn records_seen(&self) -> usize {
        self.seen.len()
    }

    /// [`Changes::check`] for one record only, when only it can have moved (bundles arrived
    /// for it): one record's logs read, not every held record's. A record not held here is
    /// not looked at.
    pub fn check_record<S: Store>(
        &mut self,
        local: &Local<'_, S>,
        record: RecordId,
        connected: &BTreeSet<PeerKey>,
        except: Option<PeerKey>,
        now: Instant,
        at: Timestamp,
    ) -> Vec<Announce> {
        let held = local.holds(&record).unwrap_or(false);
        let look = Look {
            connected,
            except,
            now,
            at,
        };
        self.check_these(local, held.then_some(record), &look)
    }

    /// Looks at each of `records` in turn.
    fn check_these<S: Store>(
        &mut self,
        local: &Local<'_, S>,
        records: impl IntoIterator<Item = RecordId>,
        look: &Look<'_>,
    ) -> Vec<Announce> {
        let mut out = Vec::new();
        for record in records {
            self.check_one(local, record, look, &mut out);
        }
        out
    }

    /// Looks at one record: what it announces goes to `out`.
    fn check_one<S: Store>(
        &mut self,
        local: &Local<'_, S>,
        record: RecordId,
        look: &Look<'_>,
        out: &mut Vec<Announce>,
    ) {
        let Look {
            connected,
            except,
            now,
            at,
        } = *look;
        let heads = local.held_sections(&record).unwrap_or_default();
        let fp = fingerprint(&heads);
        let fresh = |seen: &Seen| now.saturating_duration_since(seen.computed) < self.rights_ttl;
        let (changed, interested, since, computed) = match self.seen.get(&record) {
            // Same logs: nothing to announce.
            Some(seen) if seen.fp == fp => return,
            // Content moved, grants and devices did not: reuse the interested peers and
            // what each may hold, and push what changed since.
            Some(seen) if seen.fp.1 == fp.1 && fresh(seen) => (
                true,
                seen.interested.clone(),
                Some(seen.heads.clone()),
                seen.computed,
            ),
            old => {
                let peers = local.interested_peers(&record);
                // One opening of the record for all of them; a failure leaves each peer
                // with nothing pushed (a notification only).
                let mut holdable = local
                    .holdable_by_many(&record, &peers, at)
                    .unwrap_or_default();
                let interested = peers
                    .into_iter()
                    .map(|peer| {
                        let may = holdable.remove(&peer).unwrap_or_default();
                        (peer, may)
                    })
                    .collect();
                (old.is_some(), interested, None, now)
            }
        };
        if changed {
            for (peer, may) in &interested {
                if connected.contains(peer) && Some(*peer) != except {
                    let push = since
                        .as_ref()
                        .and_then(|since| {
                            local
                                .bundles_since(&record, may, since, MAX_PUSH_BYTES)
                                .ok()
                        })
                        .unwrap_or_default();
                    out.push(Announce {
                        peer: *peer,
                        record,
                        push,
                    });
                }
            }
        }
        self.seen.insert(
            record,
            Seen {
                fp,
                interested,
                heads,
                computed,
            },
        );
    }
}
