//! The relay's side of `/hearth/store/1`: a pure function of (store, request, peer, time).
//!
//! This file answers a request; the records kept (`kept.rs`), an organisation's emergency log
//! and the uses it lets through (`emergency.rs`), and the audit a relay keeps and hands on
//! (`audit.rs`), and the key wraps a relay keeps and hands out (`wraps.rs`) each have a file of
//! their own.

mod audit;
mod emergency;
mod kept;
mod wraps;

pub use emergency::{IG_USE_COUNT, MAX_IG_USES};
pub use kept::{HOSTED_COUNT, Hosted, KeptRecord};

use super::access::{AccessEntry, AccessList, SignedAccess};
use super::mailbox::Mailboxes;
use super::wire::{
    Address, Blinded, MAX_DELIVER, StoreRequest, StoreResponse, blind, fit_padded, pad, unpad,
};
use super::{NOTHING_HERE, QUOTA_FULL};
use crate::protocol::{MAX_BUNDLE_BYTES, SectionHave};
use crate::session::{Local, SyncError};
use audit::receipt;
use emergency::emergency_entry;
use hearth_core::audit::Action;
use hearth_core::bundle::Bundle;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::log::VersionVector;
use hearth_core::record::Vault;
use hearth_core::store::{Batch, Store};
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};

/// What a relay accepts. The defaults are deliberate; each says why.
#[derive(Clone, Debug)]
pub struct RelayLimits {
    /// Bytes of bundles kept per record (a year of a busy record's notes is a few MiB; a
    /// grantee cannot fill the disk with one record).
    pub quota_bytes: u64,
    /// Records kept in all (each needs its patient's signed list, so only patients add them).
    pub max_records: usize,
    /// How long a record is kept after the patient's relay grant ended (the patient may renew
    /// it meanwhile); then its bundles, wraps and list are deleted.
    pub retention_ms: i64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            quota_bytes: 256 * 1024 * 1024,
            max_records: 100_000,
            retention_ms: 30 * 86_400_000,
        }
    }
}
/// What one request did, for the relay's counters and log (no content).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Bundles stored.
    pub stored: usize,
    /// Bundles sent.
    pub sent: usize,
    /// The whole request was refused.
    pub refused: bool,
    /// Pushed bundles refused.
    pub rejected: usize,
    /// The patient's node supplied an access list that says something new (not one signed
    /// afresh saying what the kept one says).
    pub supplied: bool,
    /// Letters delivered.
    pub letters: usize,
    /// The relay's access receipt for what it sent a grantee, for the caller to write to the
    /// relay's journal ([`Vault::journal_many`]; the daemon writes those of many requests in
    /// one commit on its next tick).
    pub receipt: Option<(RecordId, Action)>,
}

/// The relay's view of one request.
pub struct Server<'a, S: Store> {
    vault: &'a Vault<S>,
    identity: &'a Identity,
    limits: &'a RelayLimits,
}

/// A refusal of a request for `record`, in `why`'s words.
pub fn refusal_of(record: Blinded, why: &str) -> StoreResponse {
    StoreResponse {
        v: 1,
        record,
        refused: Some(why.to_string()),
        bundles: Vec::new(),
        have: Vec::new(),
        wraps: Vec::new(),
        more: false,
        rejected: Vec::new(),
        stored: 0,
        access: None,
        letters: Vec::new(),
        posted: Vec::new(),
        acked: Vec::new(),
        audit: Vec::new(),
        audit_acked: None,
        logged: None,
        emergency_refused: None,
        released: Vec::new(),
        card: None,
        relay_grant: None,
    }
}

impl<'a, S: Store> Server<'a, S> {
    /// The relay over its vault and identity.
    pub fn new(vault: &'a Vault<S>, identity: &'a Identity, limits: &'a RelayLimits) -> Self {
        Server {
            vault,
            identity,
            limits,
        }
    }
    /// Answers `req` from `peer` (authenticated by the transport) at the relay's clock `now`
    /// (`rng` seals the keys an organisation releases from emergency escrow).
    ///
    /// Refused with the same words ([`NOTHING_HERE`]) whether the record is unknown here, the
    /// patient's relay grant has ended, or `peer` is not on the patient's list (nor presents an
    /// emergency use the list's arrangements accept): a stranger learns nothing about which
    /// records exist.
    pub fn answer(
        &self,
        peer: PeerKey,
        req: StoreRequest,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(StoreResponse, Served), SyncError> {
        let mut served = Served::default();
        let me = self.identity.peer();
        let b = req.record;
        // An emergency use to log (and keys to release for it) is answered whatever becomes
        // of the rest.
        let (logged, emergency_refused, released) = match &req.emergency {
            Some(e) => match self.log_emergency(peer, e, now)? {
                Ok(l) => {
                    let released = self.release(&peer, e, req.agreement.as_ref(), rng);
                    (Some(l), None, released)
                }
                Err(why) => (None, Some(why), Vec::new()),
            },
            None => (None, None, Vec::new()),
        };
        let own_card = req
            .card_wanted
            .then(|| hearth_core::grant::request::card(self.identity).ok())
            .flatten()
            .map(|c| c.to_token());
        let mut hosted = self.hosted(&b)?;
        // A new list from the patient's node replaces the one held, if it is newer. One that
        // says what the kept one says (a patient's node signs its list afresh at every round)
        // only moves the version and time: the kept list, its signature checked again, stands
        // for it.
        let mut adopted = None;
        let mut refreshed = false;
        if let Some(bytes) = &req.access {
            match SignedAccess::open(bytes, &me, now) {
                Ok((list, _)) if blind(&list.record, &me) == b => {
                    let newer = hosted.as_ref().is_none_or(|h| list.version > h.version);
                    let from_device = list.entry(&peer, now).is_some_and(|e| e.device);
                    // A record is taken on only from a device that holds some of it (so a
                    // recovery attempt with a wrong phrase creates nothing), while there is room.
                    let room = hosted.is_some()
                        || (!req.have.is_empty()
                            && self.vault.local_count(&HOSTED_COUNT)?
                                < self.limits.max_records as u64);
                    if newer && from_device && room {
                        let same = hosted
                            .as_ref()
                            .and_then(|h| AccessList::open_kept(&h.access, &list.record))
                            .is_some_and(|kept| kept.same_but_version(&list));
                        let h = hosted.get_or_insert_with(|| Hosted {
                            record: list.record,
                            access: ByteBuf::new(),
                            version: 0,
                            used: 0,
                            wraps: Vec::new(),
                            updated: now,
                        });
                        if !same {
                            h.access = bytes.clone();
                            served.supplied = true;
                        }
                        h.version = list.version;
                        h.updated = now;
                        refreshed = true;
                        adopted = Some(list);
                    }
                }
                _ => {}
            }
        }
        // Who the requester is here: the patient's list, if the record is kept and the relay
        // grant holds (the list just adopted was opened above, at the same clock).
        let list = match adopted {
            Some(list) => Some(list),
            None => hosted
                .as_ref()
                .and_then(|h| SignedAccess::open(&h.access, &me, now).ok())
                .map(|(l, _)| l),
        };
        let entry = list.as_ref().and_then(|l| l.entry(&peer, now).cloned());
        // Proof that this relay keeps the record for its patient, when asked: the patient's
        // `relay` grant to it (anyone who knows the record id can already find its relays).
        let relay_grant = list
            .as_ref()
            .filter(|_| req.proof_wanted)
            .map(|l| l.grant.clone());
        let device = entry.as_ref().is_some_and(|e| e.device);
        // Mailboxes, whether or not the rest is refused: the requester's own, and a patient
        // device's record inbox.
        let mailboxes = Mailboxes { vault: self.vault };
        let mut boxes = vec![Address::Peer(peer).mailbox()];
        if device {
            boxes.push(Address::Record(b).mailbox());
        }
        let acked = mailboxes.ack(&boxes, &req.ack)?;
        let kept = hosted.is_some();
        let posted = mailboxes.post(
            &peer,
            &req.post,
            &|to| match to {
                Address::Record(x) => *x == b && kept,
                Address::Peer(_) => device,
            },
            &|to| matches!(to, Address::Record(x) if *x == b),
            now,
        )?;
        let letters = mailboxes.collect(&boxes, MAX_DELIVER, now)?;
        served.letters = letters.len();
        let refuse = |served: &mut Served| {
            served.refused = true;
            let mut r = refusal_of(b, NOTHING_HERE);
            r.letters = letters.clone();
            r.posted = posted.clone();
            r.acked = acked.clone();
            r.logged = logged.clone();
            r.emergency_refused = emergency_refused.clone();
            r.released = released.clone();
            r.card = own_card.clone();
            r.relay_grant = relay_grant.clone();
            r
        };
        // Not on the list: an emergency use under one of the list's arrangements, if it
        // checks at this relay's clock, may fetch the arranged sections.
        let (entry, emergency) = match (entry, &list, &req.claim) {
            (Some(e), _, _) => (Some(e), None),
            (None, Some(l), Some(c)) => match emergency_entry(l, &peer, c, now) {
                Some((e, m, agreement)) => (Some(e), Some((m, agreement))),
                None => (None, None),
            },
            _ => (None, None),
        };
        let (Some(mut hosted), Some(_), Some(entry)) = (hosted, list, entry) else {
            // Unknown here, the relay grant ended, or not on the list: the same answer.
            return Ok((refuse(&mut served), served));
        };
        let record = hosted.record;
        // A device is not sent back the wraps it sends (it made them, and they replace those
        // kept, so a device holding the root is sent none), and a requester that says it holds
        // its wraps (a later request of a round) is sent none.
        let sent: BTreeSet<_> = if entry.device {
            req.wraps.iter().map(wraps::slot).collect()
        } else {
            BTreeSet::new()
        };
        let wraps_held = req.wraps_held;
        let wraps_changed = entry.device
            && !req.wraps.is_empty()
            && wraps::replace_kept(&mut hosted, req.wraps, req.wraps_signed);
        // What the peer pushed, and the record's list, wraps and quota: one commit.
        let mut rejected = Vec::new();
        let mut batch = Batch::new();
        if !req.push.is_empty() {
            let (stored, bytes) =
                self.store_push(&hosted, &entry, &req.push, &mut rejected, &mut batch)?;
            hosted.used += bytes;
            served.stored = stored;
        }
        served.rejected = rejected.len();
        if refreshed || served.stored > 0 || wraps_changed {
            let changed = served.supplied || wraps_changed;
            self.save(&b, &hosted, changed, refreshed, &mut batch)?;
        }
        // The room checked above is judged again with other counted commits held off: of two
        // records racing for the last place, the one that loses is refused, nothing written.
        if !self
            .vault
            .commit_counted_up_to(&HOSTED_COUNT, self.limits.max_records as u64, batch)?
        {
            served.supplied = false;
            served.stored = 0;
            served.rejected = 0;
            return Ok((refuse(&mut served), served));
        }
        // What the peer lacks, and where it may push.
        let held = self.vault.held_sections(&record)?;
        let readable = readable(&entry, &held);
        let theirs: BTreeMap<SectionId, VersionVector> =
            req.have.iter().map(|h| (h.section, h.vv())).collect();
        let local = Local::new(self.vault, self.identity);
        let include = |s: &SectionId| readable.contains(s);
        let (bundles, more) =
            local.missing_for(&record, &held, &theirs, &include, None, MAX_BUNDLE_BYTES)?;
        // Padded, they must still fit the message.
        let (bundles, cut) = fit_padded(bundles, MAX_BUNDLE_BYTES);
        let more = more || cut;
        served.sent = bundles.len();
        // The audit: a grantee's receipt for what it is sent (returned for the caller to
        // write) and its events kept for the patient's devices; a patient device's
        // acknowledgements, and the receipts and events waiting for it.
        let (audit, audit_acked) = if entry.device {
            self.take_acks(&record, &req.audit_ack)?;
            (self.audit_for_devices(&record)?, None)
        } else if let Some((mark, _)) = &emergency {
            // An emergency user is no grantee: its reports are not the record's to keep, but
            // what it was sent is receipted, marked as an emergency.
            served.receipt =
                receipt(&entry, &bundles, req.audit_head, Some(mark.clone())).map(|a| (record, a));
            (Vec::new(), None)
        } else {
            self.vault.keep_relayed_audit(&record, &peer, &req.audit)?;
            served.receipt = receipt(&entry, &bundles, req.audit_head, None).map(|a| (record, a));
            (
                Vec::new(),
                Some(self.vault.relayed_audit_acked(&record, &peer)?),
            )
        };
        let writable: Vec<SectionId> = if entry.device {
            held.keys().copied().collect()
        } else {
            entry.write.clone()
        };
        let empty = VersionVector::new();
        let have = writable
            .iter()
            .map(|s| SectionHave::new(*s, held.get(s).unwrap_or(&empty)))
            .collect();
        let wraps = if wraps_held {
            Vec::new()
        } else {
            let org = emergency.as_ref().map(|(_, a)| *a);
            wraps::for_requester(
                &hosted,
                &entry,
                &peer,
                req.agreement.as_ref(),
                org,
                &sent,
                &readable,
            )
        };
        Ok((
            StoreResponse {
                v: 1,
                record: b,
                refused: None,
                bundles: bundles.iter().map(|x| pad(x)).collect(),
                have,
                wraps,
                more,
                rejected,
                stored: served.stored as u32,
                access: (!entry.device).then(|| hosted.access.clone()),
                letters,
                posted,
                acked,
                audit,
                audit_acked,
                logged,
                emergency_refused,
                released,
                card: own_card,
                relay_grant,
            },
            served,
        ))
    }
    /// Stores what `entry`'s peer pushed: a patient device anything signed and chained (its
    /// node already judged it), a grantee only its own bundles to sections it may write, all
    /// within the record's quota, put into `batch` (with no receipt times: a relay never reads
    /// what it keeps). Returns (bundles stored, their bytes).
    fn store_push(
        &self,
        hosted: &Hosted,
        entry: &AccessEntry,
        push: &[ByteBuf],
        rejected: &mut Vec<String>,
        batch: &mut Batch,
    ) -> Result<(usize, u64), SyncError> {
        let mut bundles = Vec::new();
        for p in push {
            match unpad(p).map(Bundle::decode) {
                Some(Ok(b)) => bundles.push(b),
                Some(Err(e)) => rejected.push(e.to_string()),
                None => rejected.push("a padded bundle is malformed".into()),
            }
        }
        let mut room = self.limits.quota_bytes.saturating_sub(hosted.used);
        let mut bytes = 0u64;
        let mut authorize = |b: &Bundle| -> Result<(), String> {
            let h = b.header();
            let may = entry.device
                || (h.author == entry.peer
                    && h.section != SectionId::AUTH
                    && h.section != SectionId::LEDGER
                    && entry.write.contains(&h.section));
            if !may {
                return Err("the author may not write that section here".into());
            }
            let len = b.encoded().len() as u64;
            if len > room {
                return Err(QUOTA_FULL.into());
            }
            room -= len;
            bytes += len;
            Ok(())
        };
        let report =
            self.vault
                .stage_remote(&hosted.record, bundles, None, &mut authorize, batch)?;
        rejected.extend(report.refused);
        Ok((report.stored, bytes))
    }
}
/// The sections `entry`'s peer may fetch: a device every section held; a grantee the sections
/// on its list, and the auth document if it may read anything.
fn readable(entry: &AccessEntry, held: &BTreeMap<SectionId, VersionVector>) -> BTreeSet<SectionId> {
    if entry.device {
        return held.keys().copied().collect();
    }
    let mut out: BTreeSet<SectionId> = entry.read.iter().copied().collect();
    if !out.is_empty() {
        out.insert(SectionId::AUTH);
    }
    out.remove(&SectionId::LEDGER);
    out
}
