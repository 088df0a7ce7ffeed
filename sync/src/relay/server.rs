//! The relay's side of `/hearth/store/1`: a pure function of (store, request, peer, time).

use super::access::{AccessEntry, AccessList, SignedAccess};
use super::mailbox::Mailboxes;
use super::wire::{
    Address, Agreement, AuditAck, Blinded, EmergencyLogRequest, MAX_AUDIT, MAX_AUDIT_ACKS,
    MAX_DELIVER, MAX_WRAPS, StoreRequest, StoreResponse, blind, fit_padded, pad, unpad,
};
use super::{NOTHING_HERE, QUOTA_FULL};
use crate::protocol::EmergencyClaim;
use crate::protocol::{MAX_BUNDLE_BYTES, SectionHave};
use crate::session::{Local, SyncError};
use hearth_core::audit::{Action, Authority, EmergencyMark, SectionAt};
use hearth_core::bundle::Bundle;
use hearth_core::grant::emergency::{self, EmergencyUse, LoggedUse};
use hearth_core::grant::request::Credential;
use hearth_core::grant::{GrantId, Purpose};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::keywrap::EscrowedKey;
use hearth_core::ledger::{IgUseItem, Key, Kind};
use hearth_core::log::VersionVector;
use hearth_core::record::{KeyWrap, LocalCount, Vault};
use hearth_core::store::{Batch, Store};
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use std::collections::{BTreeMap, BTreeSet};

/// The most emergency uses an organisation's node keeps logged (each is needed for its IG
/// review, so a full log refuses new uses rather than forgetting old ones).
pub const MAX_IG_USES: usize = 1_000_000;
/// Why an emergency use was not logged when the log holds [`MAX_IG_USES`].
const IG_LOG_FULL: &str = "the organisation's emergency log is full";

/// The count of records kept, moved in the same commit as their [`Hosted`] items, so that
/// [`RelayLimits::max_records`] is checked with one read (and judged again, with other counted
/// commits held off, when a record is taken on: `Vault::commit_counted_up_to`).
pub const HOSTED_COUNT: LocalCount = LocalCount {
    key: Kind::HostedCount.prefix(),
    prefix: Kind::Hosted.prefix(),
};

/// The count of emergency uses logged, moved in the same commit as their items, so that
/// [`MAX_IG_USES`] is checked with one read.
pub const IG_USE_COUNT: LocalCount = LocalCount {
    key: Kind::IgUseCount.prefix(),
    prefix: Kind::IgUse.prefix(),
};

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

/// A record this relay keeps (local item [`Key::Hosted`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hosted {
    /// The record (the relay sees it in every bundle header anyway: it is the root's public
    /// key, not a name).
    pub record: RecordId,
    /// The patient's current signed access list, as received.
    pub access: ByteBuf,
    /// The newest version of the list adopted. The list in `access` may be an older one that
    /// says the same: a list signed afresh but saying the same only moves this version and
    /// `updated`, and those are then noted in an item of their own ([`Key::HostedSupplied`]),
    /// so that the list and wraps are not written again at every patient's round.
    pub version: u64,
    /// Bytes of bundles stored. Kept in an item of its own ([`Key::HostedUsed`]), so that a
    /// push does not write the list and wraps again; read from this item only for a record
    /// kept before that one existed.
    #[serde(default, skip_serializing)]
    pub used: u64,
    /// Key wraps the patient supplied (ciphertext to their recipients).
    pub wraps: Vec<KeyWrap>,
    /// When the patient's node last supplied a list (noted with `version`).
    pub updated: Timestamp,
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

fn refusal(record: Blinded, why: &str) -> StoreResponse {
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

/// A [`Key::HostedUsed`] item's bytes used.
fn used_of(item: &[u8]) -> Result<u64, SyncError> {
    item.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| SyncError::Protocol("a kept record's bytes used are unreadable"))
}

/// A [`Key::HostedSupplied`] item: the newest list version adopted, and when.
fn supplied_item(h: &Hosted) -> Vec<u8> {
    let mut item = h.version.to_be_bytes().to_vec();
    item.extend_from_slice(&h.updated.as_millis().to_be_bytes());
    item
}

/// Takes a [`Key::HostedSupplied`] item into `h` (the newer of it and the record item's own).
fn take_supplied(h: &mut Hosted, item: &[u8]) -> Result<(), SyncError> {
    let unreadable = || SyncError::Protocol("a kept record's newest list version is unreadable");
    let (version, at) = item.split_at_checked(8).ok_or_else(unreadable)?;
    let version = u64::from_be_bytes(version.try_into().map_err(|_| unreadable())?);
    let at = i64::from_be_bytes(at.try_into().map_err(|_| unreadable())?);
    h.version = h.version.max(version);
    h.updated = h.updated.max(Timestamp::from_millis(at));
    Ok(())
}

/// A record kept, by blinded id: as read from the store, or why it could not be.
pub type KeptRecord = (String, Result<Hosted, SyncError>);

/// A refusal of a request for `record`, in `why`'s words.
pub fn refusal_of(record: Blinded, why: &str) -> StoreResponse {
    refusal(record, why)
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

    /// The record kept under `b`, if any.
    pub fn hosted(&self, b: &Blinded) -> Result<Option<Hosted>, SyncError> {
        let id = b.to_string();
        let raw = self.vault.get_local(&Key::Hosted(&id).text())?;
        let Some(mut h) = raw.and_then(|v| serde_ipld_dagcbor::from_slice::<Hosted>(&v).ok())
        else {
            return Ok(None);
        };
        if let Some(used) = self.vault.get_local(&Key::HostedUsed(&id).text())? {
            h.used = used_of(&used)?;
        }
        if let Some(item) = self.vault.get_local(&Key::HostedSupplied(&id).text())? {
            take_supplied(&mut h, &item)?;
        }
        Ok(Some(h))
    }

    /// Every record kept, by blinded id, each as read or why it could not be: a damaged item
    /// spoils its own record's entry, not the others' (which a relay goes on announcing,
    /// serving and sweeping).
    pub fn all_hosted(&self) -> Result<Vec<KeptRecord>, SyncError> {
        let by_id = |kind: Kind| -> Result<BTreeMap<String, Vec<u8>>, SyncError> {
            Ok(self
                .vault
                .local_items(kind.prefix())?
                .into_iter()
                .filter_map(|(k, v)| Some((kind.id_in(&k)?.to_string(), v)))
                .collect())
        };
        let (used, supplied) = (by_id(Kind::HostedUsed)?, by_id(Kind::HostedSupplied)?);
        let mut all = Vec::new();
        for (k, v) in self.vault.local_items(Kind::Hosted.prefix())? {
            let Some(id) = Kind::Hosted.id_in(&k).map(str::to_string) else {
                continue;
            };
            let read = || -> Result<Hosted, SyncError> {
                let mut h = serde_ipld_dagcbor::from_slice::<Hosted>(&v)
                    .map_err(|_| SyncError::Protocol("a kept record's item is unreadable"))?;
                if let Some(u) = used.get(&id) {
                    h.used = used_of(u)?;
                }
                if let Some(item) = supplied.get(&id) {
                    take_supplied(&mut h, item)?;
                }
                Ok(h)
            };
            let h = read();
            all.push((id, h));
        }
        Ok(all)
    }

    /// The records kept that read whole ([`Server::all_hosted`] without the damaged ones).
    pub fn readable_hosted(&self) -> Result<Vec<(String, Hosted)>, SyncError> {
        Ok(self
            .all_hosted()?
            .into_iter()
            .filter_map(|(id, h)| Some((id, h.ok()?)))
            .collect())
    }

    /// Every peer on the access lists of the records kept here that still hold at `now` (they
    /// get a known peer's network limits, not a stranger's).
    pub fn parties(&self, now: Timestamp) -> BTreeSet<PeerKey> {
        let me = self.identity.peer();
        self.readable_hosted()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, h)| SignedAccess::open(&h.access, &me, now).ok())
            .flat_map(|(list, _)| list.entries.into_iter().filter(|e| e.until >= now))
            .map(|e| e.peer)
            .collect()
    }

    /// Deletes the records whose relay grant ended more than
    /// [`RelayLimits::retention_ms`] before `now`: bundles, wraps and list. A record whose
    /// items or list cannot be read is left alone (`hearth relay status` shows it). Returns
    /// how many.
    pub fn sweep(&self, now: Timestamp) -> Result<usize, SyncError> {
        let mut gone = 0;
        for (id, h) in self.readable_hosted()? {
            let end = AccessList::open_own(
                &match serde_ipld_dagcbor::from_slice::<SignedAccess>(&h.access) {
                    Ok(s) => s,
                    Err(_) => continue,
                },
                &h.record,
            )
            .ok()
            .and_then(|l| {
                hearth_core::grant::chain_from_bytes(&l.grant)
                    .ok()?
                    .iter()
                    .map(|g| g.body().expires)
                    .min()
            });
            let Some(end) = end else { continue };
            if now.as_millis().saturating_sub(end.as_millis()) > self.limits.retention_ms {
                self.vault.forget_record(&h.record)?;
                self.vault.forget_relayed_audit(&h.record)?;
                let mut batch = Batch::new();
                Vault::<S>::delete_local_in(&mut batch, &Key::Hosted(&id).text());
                Vault::<S>::delete_local_in(&mut batch, &Key::HostedUsed(&id).text());
                Vault::<S>::delete_local_in(&mut batch, &Key::HostedSupplied(&id).text());
                self.vault.commit_counted(&HOSTED_COUNT, batch)?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Puts `h` into `batch`, to be committed with [`HOSTED_COUNT`]: its bytes used always,
    /// its newest list version and time when a list was adopted (`refreshed`), and the rest
    /// (the list and wraps) only when `changed`.
    fn save(
        &self,
        b: &Blinded,
        h: &Hosted,
        changed: bool,
        refreshed: bool,
        batch: &mut Batch,
    ) -> Result<(), SyncError> {
        let id = b.to_string();
        if changed {
            let bytes = serde_ipld_dagcbor::to_vec(h)
                .map_err(|_| SyncError::Protocol("cannot encode a hosted record"))?;
            Vault::<S>::put_local_in(batch, &Key::Hosted(&id).text(), bytes);
        }
        if refreshed {
            Vault::<S>::put_local_in(batch, &Key::HostedSupplied(&id).text(), supplied_item(h));
        }
        Vault::<S>::put_local_in(
            batch,
            &Key::HostedUsed(&id).text(),
            h.used.to_be_bytes().to_vec(),
        );
        Ok(())
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
            let mut r = refusal(b, NOTHING_HERE);
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
        // The patient's wraps replace those kept. Wraps are fresh ciphertext each time, so one
        // for a (section, epoch, recipient) already kept (and verified) is kept as it was; only
        // new ones are checked against the record root.
        let mut wraps_changed = false;
        let slot = |w: &KeyWrap| (w.section, w.epoch, w.recipient);
        // A device is not sent back the wraps it sends (it made them, and they replace those
        // kept, so a device holding the root is sent none), and a requester that says it holds
        // its wraps (a later request of a round) is sent none.
        let sent: BTreeSet<_> = if entry.device {
            req.wraps.iter().map(slot).collect()
        } else {
            BTreeSet::new()
        };
        let wraps_held = req.wraps_held;
        if entry.device && !req.wraps.is_empty() {
            let kept: BTreeMap<_, KeyWrap> =
                hosted.wraps.drain(..).map(|w| (slot(&w), w)).collect();
            // The root's one signature over all the wraps sent vouches for every new one;
            // without it (or if it does not check), the new ones' own signatures are checked
            // together (one batch when all are good).
            let new: Vec<&KeyWrap> = req
                .wraps
                .iter()
                .filter(|w| w.record == record && !kept.contains_key(&slot(w)))
                .collect();
            // (Nothing to check when every wrap sent is one already kept.)
            let vouched = !new.is_empty()
                && req
                    .wraps_signed
                    .is_some_and(|s| KeyWrap::verify_all(&record, &req.wraps, &s.into_array()));
            let verdicts = if vouched {
                vec![true; new.len()]
            } else {
                KeyWrap::verify_many(&new)
            };
            let mut good = verdicts.into_iter();
            let mut fresh = BTreeMap::new();
            for w in req.wraps {
                let s = slot(&w);
                let is_new = w.record == record && !kept.contains_key(&s);
                // Every new wrap takes its verdict in order, whether or not it is used.
                let ok = is_new && good.next().unwrap_or(false);
                if fresh.contains_key(&s) {
                    continue;
                }
                match kept.get(&s) {
                    Some(old) => {
                        fresh.insert(s, old.clone());
                    }
                    None if ok => {
                        wraps_changed = true;
                        fresh.insert(s, w);
                    }
                    None => {}
                }
            }
            wraps_changed |= fresh.len() != kept.len();
            hosted.wraps = fresh.into_values().collect();
        }
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
        let wraps = match (&req.agreement, entry.device) {
            _ if wraps_held => Vec::new(),
            (_, true) => hosted
                .wraps
                .iter()
                .filter(|w| !sent.contains(&slot(w)))
                .cloned()
                .collect(),
            // An emergency use: the escrow wraps to the arranged organisation, which releases
            // the keys to the professional once it has logged the use.
            (_, false) if emergency.is_some() => {
                let org = emergency.as_ref().map(|(_, a)| *a);
                hosted
                    .wraps
                    .iter()
                    .filter(|w| Some(w.recipient) == org && readable.contains(&w.section))
                    .cloned()
                    .collect()
            }
            // A grantee: wraps to its agreement key (when its device key signed it), or to its
            // device key's X25519 form (a grant made to its bare peer id; the connection proves
            // the peer).
            (agreement, false) => {
                let signed = agreement
                    .as_ref()
                    .filter(|a| a.signed_by(&peer))
                    .map(|a| a.key);
                let device = peer.device_agreement().ok().map(ByteArray::new);
                hosted
                    .wraps
                    .iter()
                    .filter(|w| {
                        (Some(w.recipient) == signed || Some(w.recipient) == device)
                            && readable.contains(&w.section)
                    })
                    .cloned()
                    .collect()
            }
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

    /// On the organisation's node, for a use of its own staff it has just logged: releases
    /// the keys inside the escrow wraps `e` carries (the patient's, for the use's record,
    /// addressed to this organisation) to `peer`'s signed agreement key. Anything else is left
    /// out; nothing at all without the professional's agreement key.
    fn release(
        &self,
        peer: &PeerKey,
        e: &EmergencyLogRequest,
        agreement: Option<&Agreement>,
        rng: &mut impl CryptoRng,
    ) -> Vec<EscrowedKey> {
        let (Some(a), Ok(use_)) = (agreement, EmergencyUse::from_token(&e.token)) else {
            return Vec::new();
        };
        if !a.signed_by(peer) || use_.body().holder != *peer {
            return Vec::new();
        }
        let record = use_.body().record;
        e.wraps
            .iter()
            .take(MAX_WRAPS)
            .filter_map(|w| {
                EscrowedKey::release(
                    w.clone(),
                    &record,
                    self.identity.agreement_secret(),
                    a.key.into_array(),
                    rng,
                )
                .ok()
            })
            .collect()
    }

    /// Logs the emergency use `e` that `peer` presents, if this node is the organisation it
    /// names and attests `peer` now ([`emergency::log_use`]): the entry is kept durably for
    /// the IG review before the signed entry is returned. Logging the same use again returns
    /// the entry kept. `Ok(Err(why))` when it is not logged.
    fn log_emergency(
        &self,
        peer: PeerKey,
        e: &EmergencyLogRequest,
        now: Timestamp,
    ) -> Result<Result<String, String>, SyncError> {
        let Ok(use_) = EmergencyUse::from_token(&e.token) else {
            return Ok(Err("the emergency use does not verify".into()));
        };
        let Ok(credential) = Credential::from_token(&e.credential) else {
            return Ok(Err("the credential does not verify".into()));
        };
        // Checked before anything is looked up: only the organisation's own current staff, for
        // their own uses, reach its log.
        let logged = match emergency::log_use(self.identity, &use_, Some(&credential), &peer, now) {
            Ok(l) => l,
            Err(why) => return Ok(Err(why.to_string())),
        };
        let id = data_encoding::HEXLOWER.encode(&use_.hash());
        let key = Key::IgUse(&id).text();
        if let Some(kept) = self
            .vault
            .get_local(&key)?
            .and_then(|v| IgUseItem::from_json(std::str::from_utf8(&v).ok()?).ok())
        {
            return Ok(Ok(kept.logged));
        }
        if self.vault.local_count(&IG_USE_COUNT)? >= MAX_IG_USES as u64 {
            return Ok(Err(IG_LOG_FULL.into()));
        }
        let item = IgUseItem {
            token: e.token.clone(),
            credential: e.credential.clone(),
            logged: logged.to_token(),
        };
        let mut batch = Batch::new();
        Vault::<S>::put_local_in(&mut batch, &key, item.to_json().into_bytes());
        if !self
            .vault
            .commit_counted_up_to(&IG_USE_COUNT, MAX_IG_USES as u64, batch)?
        {
            return Ok(Err(IG_LOG_FULL.into()));
        }
        Ok(Ok(item.logged))
    }

    /// A patient device's acknowledgements: the relay's own journal and the grantees' events
    /// it kept, as far as the record's audit log holds them.
    fn take_acks(&self, record: &RecordId, acks: &[AuditAck]) -> Result<(), SyncError> {
        let me = self.identity.peer();
        for a in acks.iter().take(MAX_AUDIT_ACKS) {
            if a.writer == me {
                self.vault.journal_collected(record, a.seq)?;
            } else {
                self.vault.ack_relayed_audit(record, &a.writer, a.seq)?;
            }
        }
        Ok(())
    }

    /// What a patient device is handed of the audit: the relay's receipts not yet
    /// acknowledged, then the grantees' events kept, at most [`MAX_AUDIT`] in all.
    fn audit_for_devices(&self, record: &RecordId) -> Result<Vec<ByteBuf>, SyncError> {
        let sent = self.vault.journal_sent(record)?;
        let mut out: Vec<ByteBuf> = self
            .vault
            .journal_after(record, sent, MAX_AUDIT / 2)?
            .into_iter()
            .map(ByteBuf::from)
            .collect();
        let room = MAX_AUDIT - out.len();
        out.extend(
            self.vault
                .relayed_audit(record, room)?
                .into_iter()
                .map(ByteBuf::from),
        );
        Ok(out)
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

/// What an emergency use `claim` presented by `peer` may fetch under `list`'s arrangements at
/// `now` ([`emergency::check_use`], at this relay's clock): a read-only entry for the
/// arranged sections until the use ends, the receipt's mark, and the organisation's agreement
/// key (whose escrow wraps are handed over). None if anything fails: the caller answers as
/// to a stranger.
fn emergency_entry(
    list: &AccessList,
    peer: &PeerKey,
    claim: &EmergencyClaim,
    now: Timestamp,
) -> Option<(AccessEntry, EmergencyMark, ByteArray<32>)> {
    let use_ = EmergencyUse::from_token(&claim.token).ok()?;
    let credential = Credential::from_token(&claim.credential).ok()?;
    let logged = LoggedUse::from_token(claim.logged.as_deref()?).ok()?;
    let org = use_.body().org;
    // An organisation that keeps the record as a relay never also opens it in an emergency.
    if org == list.relay {
        return None;
    }
    let arranged = list.arrangement(&org, now)?;
    let allowed = emergency::check_use(
        &use_,
        Some(&credential),
        Some(&logged),
        peer,
        &list.record,
        Some(&arranged.arrangement()),
        now,
    )
    .ok()?;
    let id = ByteArray::new(use_.hash());
    let entry = AccessEntry {
        peer: *peer,
        device: false,
        read: arranged.read.clone(),
        write: Vec::new(),
        until: allowed.until,
        authority: Some(Authority {
            grant: GrantId(id),
            purpose: Purpose::Emergency,
        }),
    };
    let mark = EmergencyMark {
        use_id: id,
        org,
        reason: use_.body().reason.clone(),
        until: allowed.until,
        credential: claim.credential.clone(),
        signed_use: Some(claim.token.clone()),
    };
    // The receipt is written after the answer (on the daemon's next tick): a use whose
    // receipt could not be signed (its tokens too large) is not served at all.
    let largest = Action::Served {
        to: *peer,
        sections: arranged
            .read
            .iter()
            .chain(std::iter::once(&SectionId::AUTH))
            .take(hearth_core::audit::MAX_SECTIONS)
            .map(|s| SectionAt {
                section: *s,
                epoch: u32::MAX,
            })
            .collect(),
        bundles: u32::MAX,
        authority: entry.authority,
        reported: Some(u64::MAX),
        emergency: Some(mark.clone()),
        pushed: false,
    };
    if !hearth_core::audit::SignedEvent::fits(list.record, &largest) {
        return None;
    }
    Some((entry, mark, arranged.agreement))
}

/// The relay's receipt for sending `bundles` to `entry`'s peer (a grantee, or a professional
/// using emergency access: `emergency`), which reported `reported` as its audit head: the
/// sections sent, each at the newest key epoch among its bundles; none when nothing was sent.
fn receipt(
    entry: &AccessEntry,
    bundles: &[ByteBuf],
    reported: Option<u64>,
    emergency: Option<EmergencyMark>,
) -> Option<Action> {
    if entry.device || bundles.is_empty() {
        return None;
    }
    let mut epochs: BTreeMap<SectionId, u32> = BTreeMap::new();
    for b in bundles {
        if let Ok(b) = Bundle::decode(b) {
            let h = b.header();
            let e = epochs.entry(h.section).or_insert(h.epoch);
            *e = (*e).max(h.epoch);
        }
    }
    Some(Action::Served {
        to: entry.peer,
        sections: epochs
            .into_iter()
            .take(hearth_core::audit::MAX_SECTIONS)
            .map(|(section, epoch)| SectionAt { section, epoch })
            .collect(),
        bundles: u32::try_from(bundles.len()).unwrap_or(u32::MAX),
        authority: entry.authority,
        reported,
        emergency,
        pushed: false,
    })
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
