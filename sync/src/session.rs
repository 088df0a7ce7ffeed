//! The sync session, sans-I/O: pure functions of (store, identity, message, time, randomness)
//! that the network adapter drives. Nothing here touches a socket or a clock.
//!
//! ## Who may receive what
//!
//! A node sends a peer bundles only of sections the peer may hold, decided from what the node
//! itself can verify:
//!
//! - a **patient device** (certified by the record root in the auth document) may hold
//!   everything, including the private consent ledger;
//! - anyone else may hold the auth document and the sections their verified grant chains let
//!   them `read`; the chains are presented in the request (responder side) or found in the
//!   auth document (requester side).
//!
//! ## What a node accepts
//!
//! Every bundle is signature-checked and hash-chain-checked before it is stored
//! ([`Vault::store_remote`]). Auth-document bundles must be authored by a patient device.
//! Content bundles must be authored by a patient device, or by the audience of a grant chain
//! in the auth document that allows `append` on that section **now**, by this node's clock
//! (the time a bundle declares is its author's claim) — and then they may only add entries and
//! new versions of the author's own entries ([`OpenRecord::check_append_only`]). A write
//! declared while such a grant was valid but received after it expired or was revoked is held
//! for the patient's review on the device holding the record root, and refused elsewhere
//! ([`hearth_core::record::HeldWrite`]); a write the patient accepted on review is accepted by
//! every node, one rejected is refused by every node. Anything else is refused and reported.

use crate::protocol::{MAX_BUNDLE_BYTES, MAX_GRANTS, SectionHave, SyncRequest, SyncResponse};
use hearth_core::bundle::Bundle;
use hearth_core::grant::request::{Card, card};
use hearth_core::grant::{self, Ability, Access, Grant, GrantId, Refusal, Revocation, Scope};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::log::VersionVector;
use hearth_core::record::{
    DeviceCert, HeldReason, OpenRecord, RecordError, SharedSnapshot, Vault, Verdict, WriteRules,
};
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde::Serialize;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};

/// Brings a list of the patient's devices up to date with `rec`'s auth document: its
/// certified devices join, removed ones leave (a removed device's old certificate still
/// verifies: the removal overrides it).
fn update_devices<S: Store>(devices: &mut Vec<PeerKey>, rec: &OpenRecord<'_, S>) {
    let removed = rec.removed_devices();
    devices.retain(|d| !removed.contains_key(d));
    devices.extend(rec.device_certs().into_iter().map(|d| d.peer));
}

/// The sections a node may store bundles of: the auth document and those it holds a key for
/// (a node never keeps ciphertext of a section it was not given).
fn holdable_sections<S: Store>(rec: Option<&OpenRecord<'_, S>>) -> BTreeSet<SectionId> {
    let mut out: BTreeSet<SectionId> = rec
        .map(|r| r.keys_held().into_iter().map(|(s, _)| s).collect())
        .unwrap_or_default();
    out.insert(SectionId::AUTH);
    out
}

/// A reader missing at least this many bundles of a section it holds nothing of gets the
/// section's shared snapshot instead (when this node has one).
pub const SNAPSHOT_MIN: u64 = 64;

/// Why a sync failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer refused (its reason).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The peer broke the protocol (its fault, or an attack).
    #[error("protocol violation by the peer: {0}")]
    Protocol(&'static str),
    /// Local storage or record failure.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The peer is no party to the record here (neither a patient device, nor a grantee, nor
    /// named by this node's grants): nothing is sent to it.
    #[error("record not held here")]
    NotAParty,
}

/// How one section stands after a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionStatus {
    /// The section id.
    pub section: SectionId,
    /// Bundles the other side has that this node lacks (as far as this session saw).
    pub behind: u64,
    /// Bundles this node has that the other side lacks.
    pub ahead: u64,
}

/// What a session step did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The record.
    pub record: Option<RecordId>,
    /// Bundles received and stored.
    pub received: usize,
    /// Bundles sent.
    pub sent: usize,
    /// Bundles refused, with reasons (no content).
    pub refused: Vec<String>,
    /// Whether both sides hold the same of every section they share.
    pub in_sync: bool,
    /// Per section.
    pub sections: Vec<SectionStatus>,
}

/// This node's side of sync sessions (its vault and identity), whichever side of a round it
/// is on: requester ([`Local::start`], [`Local::on_response`]) or responder
/// ([`Local::on_request`], [`Local::on_push`]). The remote peer is always an argument, the
/// key the transport authenticated.
pub struct Local<'a, S: Store> {
    vault: &'a Vault<S>,
    identity: &'a Identity,
}

/// What a peer may hold and write in a record, as this node can verify it.
struct PeerRights {
    device: bool,
    scopes: Vec<Scope>,
}

impl PeerRights {
    /// A patient device's: everything.
    const DEVICE: PeerRights = PeerRights {
        device: true,
        scopes: Vec::new(),
    };

    fn may_read(
        &self,
        sid: &SectionId,
        dir: &BTreeMap<SectionId, hearth_core::section::SectionName>,
    ) -> bool {
        if self.device {
            return true;
        }
        if *sid == SectionId::AUTH {
            // Only scopes that carry keys (read and above: never `relay`) open the auth
            // document, the same rule as every key wrap ([`grant::key_sections`]).
            return self.scopes.iter().any(|s| s.ability.carries_keys());
        }
        dir.get(sid)
            .is_some_and(|n| self.scopes.iter().any(|s| s.allows(n, Ability::Read)))
    }

    fn may_write(
        &self,
        sid: &SectionId,
        dir: &BTreeMap<SectionId, hearth_core::section::SectionName>,
    ) -> bool {
        self.device
            || dir
                .get(sid)
                .is_some_and(|n| self.scopes.iter().any(|s| s.allows(n, Ability::Append)))
    }
}

/// What `remote`, not a patient device, may do in `record` by `chains` (each verified at
/// `now`, none of `revoked`), with the reason the last unusable chain was refused.
fn grantee_rights(
    record: &RecordId,
    remote: &PeerKey,
    chains: &[Vec<Grant>],
    revoked: &[GrantId],
    now: Timestamp,
) -> (PeerRights, Option<String>) {
    let mut scopes = Vec::new();
    let mut last_refusal = None;
    for chain in chains {
        match grant::verify_chain(chain, &Access::any(*remote), now, &|g| revoked.contains(g)) {
            Ok(r) if r.record == *record => scopes.extend(r.scopes),
            Ok(_) => last_refusal = Some("a grant for another record".to_string()),
            Err(e) => last_refusal = Some(e.to_string()),
        }
    }
    (
        PeerRights {
            device: false,
            scopes,
        },
        last_refusal,
    )
}

fn have_of(
    vv_map: &BTreeMap<SectionId, VersionVector>,
    sections: impl Fn(&SectionId) -> bool,
) -> Vec<SectionHave> {
    vv_map
        .iter()
        .filter(|(s, _)| sections(s))
        .map(|(s, vv)| SectionHave::new(*s, vv))
        .collect()
}

fn statuses(
    ours: &BTreeMap<SectionId, VersionVector>,
    theirs: &[SectionHave],
) -> Vec<SectionStatus> {
    theirs
        .iter()
        .map(|h| {
            let empty = VersionVector::new();
            let mine = ours.get(&h.section).unwrap_or(&empty);
            let their = h.vv();
            let behind = their
                .iter()
                .map(|(a, x)| x.seq.saturating_sub(mine.get(a).map_or(0, |m| m.seq)))
                .sum();
            let ahead = mine
                .iter()
                .map(|(a, m)| m.seq.saturating_sub(their.get(a).map_or(0, |x| x.seq)))
                .sum();
            SectionStatus {
                section: h.section,
                behind,
                ahead,
            }
        })
        .collect()
}

impl<'a, S: Store> Local<'a, S> {
    /// This node's side, over its vault and identity.
    pub fn new(vault: &'a Vault<S>, identity: &'a Identity) -> Self {
        Local { vault, identity }
    }

    /// The records this node holds.
    pub fn records(&self) -> Result<Vec<RecordId>, SyncError> {
        Ok(self.vault.records()?)
    }

    /// The log heads held of each section of `record` (empty if none).
    pub fn held_sections(
        &self,
        record: &RecordId,
    ) -> Result<BTreeMap<SectionId, VersionVector>, SyncError> {
        Ok(self.vault.held_sections(record)?)
    }

    /// Peers to notify after a local change of `record`: the patient's other devices and the
    /// audiences of unrevoked grants in the auth document.
    pub fn interested_peers(&self, record: &RecordId) -> Vec<PeerKey> {
        let Ok(rec) = self.vault.open_record(self.identity, record) else {
            return Vec::new();
        };
        let me = self.identity.peer();
        let revoked = rec.revoked_grants();
        let mut out: BTreeSet<PeerKey> = rec.device_certs().into_iter().map(|d| d.peer).collect();
        for chain in rec.recorded_chains() {
            if chain.iter().any(|g| revoked.contains(&g.id())) {
                continue;
            }
            if let Some(leaf) = chain.last() {
                out.insert(leaf.body().audience);
            }
        }
        out.remove(&me);
        out.into_iter().collect()
    }

    fn my_card(&self) -> Result<Card, SyncError> {
        card(self.identity).map_err(|_| SyncError::Protocol("cannot make this node's card"))
    }

    /// Grant chains this node holds for `record` (accepted grants).
    fn held_chains(&self, record: &RecordId) -> Result<Vec<ByteBuf>, SyncError> {
        let mut chains = self.vault.held_chain_bytes(record)?;
        chains.truncate(MAX_GRANTS);
        Ok(chains.into_iter().map(ByteBuf::from).collect())
    }

    fn keys_held(&self, record: &RecordId) -> Vec<(SectionId, u32)> {
        self.vault
            .open_record(self.identity, record)
            .map(|r| r.keys_held())
            .unwrap_or_default()
    }

    /// Requester: the first request of a sync of `record` with `remote`, holding only what
    /// `remote` may hold (see `party` below): the version vectors and key lists of the sections it
    /// may hold, and this node's grant chains for this record. Refused
    /// ([`SyncError::NotAParty`]) when `remote` is no party to the record here, with the same
    /// error whether or not the record exists, so a stranger's `Notify` never draws a request.
    pub fn start(
        &self,
        record: RecordId,
        remote: PeerKey,
        now: Timestamp,
    ) -> Result<SyncRequest, SyncError> {
        self.start_as(record, remote, false, now)
    }

    /// [`Local::start`] with a peer the user named for this sync (`sync --with`, a known peer):
    /// it is also sent a request for a record this node holds grants for but has no auth
    /// document of yet (no patient device is known to ask instead).
    pub fn start_as(
        &self,
        record: RecordId,
        remote: PeerKey,
        named_by_user: bool,
        now: Timestamp,
    ) -> Result<SyncRequest, SyncError> {
        let may = self
            .party(&record, &remote, named_by_user, now)
            .ok_or(SyncError::NotAParty)?;
        let held = self.vault.held_sections(&record)?;
        let holds = |s: &SectionId| may.as_ref().is_none_or(|m| m.contains(s));
        let mut keys = self.keys_held(&record);
        keys.retain(|(s, _)| holds(s));
        Ok(SyncRequest {
            v: 1,
            record,
            card: self.my_card()?.envelope().clone(),
            grants: self.held_chains(&record)?,
            have: have_of(&held, holds),
            keys,
            push: Vec::new(),
        })
    }

    /// Whether `remote` is a party to `record` that this node would sync with, and if so the
    /// sections it may be told about (`None`: every section this node holds).
    ///
    /// - a patient device, or a grantee by the grants recorded in the auth document: the
    ///   sections it may hold ([`Local::holdable_by`]);
    /// - a node this node's own grants for the record name (an issuer address ending in
    ///   `/p2p/<remote>`), or, with `named_by_user`, any peer while no patient device is known
    ///   here yet (a grantee or a newly linked device before its first sync): everything held
    ///   (such a node holds only what its grants or its link gave it);
    /// - anyone else: `None`.
    fn party(
        &self,
        record: &RecordId,
        remote: &PeerKey,
        named_by_user: bool,
        now: Timestamp,
    ) -> Option<Option<BTreeSet<SectionId>>> {
        if *remote == self.identity.peer() {
            return None;
        }
        let rec = self.vault.open_record(self.identity, record).ok();
        let devices_known = rec.as_ref().is_some_and(|r| !r.device_certs().is_empty());
        if rec.is_some()
            && let Ok(may) = self.holdable_by(record, remote, now)
            && !may.is_empty()
        {
            return Some(Some(may));
        }
        if let Some(r) = rec.as_ref()
            && self.identity.holds_root_of(record)
        {
            let wrote = Self::past_append_sections(r, remote);
            if !wrote.is_empty() {
                return Some(Some(wrote));
            }
        }
        let chains: Vec<Vec<Grant>> = self
            .held_chains(record)
            .unwrap_or_default()
            .iter()
            .filter_map(|b| grant::chain_from_bytes(b).ok())
            .collect();
        if chains.is_empty() && rec.is_none() {
            return None;
        }
        let suffix = format!("/p2p/{remote}");
        let named_by_grant = chains
            .iter()
            .flatten()
            .any(|g| g.body().addresses.iter().any(|a| a.ends_with(&suffix)));
        (named_by_grant || (named_by_user && !devices_known)).then_some(None)
    }

    /// The sections `remote` could once append to by a grant recorded in the auth document
    /// that has since expired or been revoked: the device holding the record root still pulls
    /// its writes from there, so that a write made while the grant was valid reaches the
    /// patient's review ([`hearth_core::record::HeldWrite`]) rather than staying on the
    /// grantee's node. Such a peer is told only the version vectors of those sections.
    fn past_append_sections(rec: &OpenRecord<'_, S>, remote: &PeerKey) -> BTreeSet<SectionId> {
        let chains: Vec<Vec<Grant>> = rec
            .recorded_chains()
            .into_iter()
            .filter(|c| c.last().is_some_and(|l| l.body().audience == *remote))
            .collect();
        if chains.is_empty() {
            return BTreeSet::new();
        }
        rec.directory()
            .iter()
            .filter(|(sid, _)| !sid.is_reserved())
            .filter(|(_, name)| {
                chains.iter().any(|c| {
                    // Judged at the start of the chain's validity, revocations aside: was this
                    // ever an append grant of `remote` for the section?
                    c.iter()
                        .map(|g| g.body().not_before)
                        .max()
                        .is_some_and(|start| {
                            grant::verify_chain(
                                c,
                                &Access::section(*remote, **name, Ability::Append),
                                start,
                                &|_| false,
                            )
                            .is_ok()
                        })
                })
            })
            .map(|(sid, _)| *sid)
            .collect()
    }

    /// What `remote` may do in `rec`, from the chains it presents (or, if `presented` is
    /// `None`, the chains recorded in the auth document for it).
    fn rights_of(
        &self,
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
        presented: Option<&[ByteBuf]>,
        now: Timestamp,
    ) -> (PeerRights, Option<String>) {
        if rec.device_certs().iter().any(|d| d.peer == *remote) {
            return (PeerRights::DEVICE, None);
        }
        let revoked = rec.revoked_grants();
        let chains: Vec<Vec<Grant>> = match presented {
            Some(bytes) => bytes
                .iter()
                .filter_map(|b| grant::chain_from_bytes(b).ok())
                .collect(),
            None => rec.recorded_chains(),
        };
        grantee_rights(&rec.id(), remote, &chains, &revoked, now)
    }

    /// The signed revocations of grants in the chains `remote` presented: only chains that
    /// verify (revocation aside) for this record with `remote` as their audience, so nobody
    /// learns of others' grants.
    fn revocations_for(
        &self,
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
        presented: &[ByteBuf],
        now: Timestamp,
    ) -> Vec<ByteBuf> {
        let items = rec.revocations();
        if items.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<ByteBuf> = Vec::new();
        for bytes in presented.iter().take(MAX_GRANTS) {
            let Ok(chain) = grant::chain_from_bytes(bytes) else {
                continue;
            };
            if chain.last().is_none_or(|l| l.body().audience != *remote)
                || chain.first().is_none_or(|r| r.body().record != rec.id())
            {
                continue;
            }
            match grant::verify_chain(&chain, &Access::any(*remote), now, &|_| false) {
                Ok(_) | Err(Refusal::Expired { .. }) | Err(Refusal::NotYetValid { .. }) => {}
                Err(_) => continue,
            }
            for g in &chain {
                let Some(item) = items.get(&g.id()) else {
                    continue;
                };
                if let Some(r) = item.revocation(self.identity, &rec.id(), &g.id()) {
                    let b = ByteBuf::from(r.to_bytes());
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }

    /// Grantee side: keeps the revocations a responder sent that are signed by the record root
    /// and name a grant of this node's own chains for `record`; others are ignored.
    fn learn_revocations(&self, record: &RecordId, revocations: &[ByteBuf]) {
        if revocations.is_empty() {
            return;
        }
        let mine: BTreeSet<GrantId> = self
            .held_chains(record)
            .unwrap_or_default()
            .iter()
            .filter_map(|b| grant::chain_from_bytes(b).ok())
            .flatten()
            .map(|g| g.id())
            .collect();
        for b in revocations {
            if let Some(r) = Revocation::from_bytes(b)
                && r.record == *record
                && mine.contains(&r.grant)
            {
                // A failed write is learnt again at the next refusal.
                let _ = self.vault.learn_revocation(&r);
            }
        }
    }

    /// Authorises a bundle authored by someone for this record at `now`, this node's clock
    /// (see the module docs). A late write that the patient should review is refused and added
    /// to `held`; the caller holds it if this node `holds` such writes.
    fn authorize(
        rec: &mut OpenRecord<'_, S>,
        devices: &[PeerKey],
        rules: &WriteRules,
        b: &Bundle,
        now: Timestamp,
        held: &mut Vec<(Bundle, HeldReason)>,
        holds: bool,
    ) -> Result<(), String> {
        let h = b.header();
        if devices.contains(&h.author) {
            return rec.check_device_bundle(b);
        }
        match rec.judge_write(rules, devices, b, now) {
            Verdict::Allow => Ok(()),
            Verdict::Hold(reason) => {
                held.push((b.clone(), reason));
                let author = b.header().author;
                Err(if holds {
                    let ended = if reason == HeldReason::Revoked {
                        "was revoked"
                    } else {
                        "ended"
                    };
                    format!(
                        "a write by {author} from before its grant {ended} awaits the patient's review"
                    )
                } else {
                    format!(
                        "a write by {author} from before its grant ended: only the patient's \
                         device holding the record root holds it for review"
                    )
                })
            }
            Verdict::Refuse(why) => Err(why),
        }
    }

    /// Verifies and stores bundles from a peer: auth document first (its authors must be
    /// devices certified in `devices`), then content, checked against the updated auth
    /// document.
    #[allow(clippy::too_many_arguments)]
    fn receive(
        &self,
        record: &RecordId,
        rec: &mut Option<OpenRecord<'a, S>>,
        raw: &[ByteBuf],
        snapshots: &[ByteBuf],
        extra_devices: &[PeerKey],
        only_author: Option<PeerKey>,
        may_write: &dyn Fn(&SectionId) -> bool,
        now: Timestamp,
    ) -> Result<(usize, Vec<String>), SyncError> {
        let mut refused = Vec::new();
        let mut auth = Vec::new();
        let mut content = Vec::new();
        for r in raw {
            match Bundle::decode(r) {
                Ok(b) if only_author.is_some_and(|a| a != b.header().author) => {
                    refused.push("a pushed bundle by someone other than the pusher".into())
                }
                Ok(b) if !may_write(&b.header().section) => {
                    refused.push("a bundle for a section the sender may not write".into())
                }
                Ok(b) if b.header().section == SectionId::AUTH => auth.push(b),
                Ok(b) => content.push(b),
                Err(e) => refused.push(e.to_string()),
            }
        }
        let mut stored = 0;
        // Devices known before this exchange, plus certificates the peer sent (verified).
        let mut devices: Vec<PeerKey> = extra_devices.to_vec();
        if let Some(r) = rec.as_ref() {
            update_devices(&mut devices, r);
        }
        if !auth.is_empty() {
            let devs = devices.clone();
            let rep = self.vault.store_remote(record, auth, now, &mut |b| {
                if devs.contains(&b.header().author) {
                    Ok(())
                } else {
                    Err("an auth-document change not by a patient device".into())
                }
            })?;
            stored += rep.stored;
            refused.extend(rep.refused);
            if rep.stored > 0 {
                match rec.as_mut() {
                    Some(r) => r.reload()?,
                    None => *rec = self.vault.open_record(self.identity, record).ok(),
                }
            }
        }
        if !snapshots.is_empty() {
            if rec.is_none() {
                *rec = self.vault.open_record(self.identity, record).ok();
            }
            match rec.as_mut() {
                Some(r) => {
                    update_devices(&mut devices, r);
                    for snap in snapshots {
                        match r.accept_snapshot(snap, &devices) {
                            Ok(true) => stored += 1,
                            Ok(false) => {}
                            Err(why) => refused.push(why),
                        }
                    }
                }
                None => refused.push("a snapshot arrived before its record's keys".into()),
            }
        }
        if !content.is_empty() {
            if rec.is_none() {
                *rec = self.vault.open_record(self.identity, record).ok();
            }
            match rec.as_mut() {
                Some(r) => {
                    update_devices(&mut devices, r);
                    let rules = r.write_rules();
                    // Late writes are held only where the patient decides on them: the
                    // device holding the record root (see `hearth_core::record::HeldWrite`).
                    let holds = self.identity.holds_root_of(record);
                    let mut held = Vec::new();
                    let batch = if holds { content.clone() } else { Vec::new() };
                    let rep = self.vault.store_remote(record, content, now, &mut |b| {
                        Self::authorize(r, &devices, &rules, b, now, &mut held, holds)
                    })?;
                    stored += rep.stored;
                    refused.extend(rep.refused);
                    if !held.is_empty() {
                        if holds {
                            refused.extend(r.judge_after_held(&rules, &batch, &mut held, now));
                            let rep = self.vault.hold(held, now)?;
                            refused.extend(rep.refused);
                        }
                        // What was checked into the in-memory documents is not applied.
                        r.reload()?;
                    }
                }
                None => refused.push("content arrived before its record's keys".into()),
            }
        }
        Ok((stored, refused))
    }

    /// Bundles of `ours` that `theirs` lacks, for the sections `include` allows and, when
    /// `author` is set, only that author's.
    #[allow(clippy::too_many_arguments)]
    fn missing_for(
        &self,
        record: &RecordId,
        ours: &BTreeMap<SectionId, VersionVector>,
        theirs: &BTreeMap<SectionId, VersionVector>,
        include: &dyn Fn(&SectionId) -> bool,
        author: Option<PeerKey>,
        budget: usize,
    ) -> Result<(Vec<ByteBuf>, bool), SyncError> {
        let mut budget = budget;
        let mut out = Vec::new();
        let mut more = false;
        // The auth document first: it is what makes everything else checkable.
        let mut order: Vec<&SectionId> = ours.keys().collect();
        order.sort_by_key(|s| (**s != SectionId::AUTH, **s));
        for sid in order {
            if !include(sid) {
                continue;
            }
            let empty = VersionVector::new();
            let their = theirs.get(sid).unwrap_or(&empty);
            for (a, head) in &ours[sid] {
                if author.is_some_and(|x| x != *a) {
                    continue;
                }
                let from = their.get(a).map_or(0, |h| h.seq) + 1;
                if head.seq < from {
                    continue;
                }
                let got = self.vault.bundles_from(record, sid, a, from, &mut budget)?;
                if (got.len() as u64) < head.seq + 1 - from {
                    more = true;
                }
                out.extend(got.into_iter().map(ByteBuf::from));
            }
        }
        Ok((out, more))
    }

    /// Responder: answers a request from `remote` (authenticated by the transport).
    pub fn on_request(
        &self,
        remote: PeerKey,
        req: SyncRequest,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SyncResponse, Report), SyncError> {
        let refuse = |why: &str, revocations: Vec<ByteBuf>| {
            let resp = SyncResponse {
                v: 1,
                record: req.record,
                refused: Some(why.to_string()),
                bundles: Vec::new(),
                have: Vec::new(),
                wraps: Vec::new(),
                devices: Vec::new(),
                more: false,
                rejected: Vec::new(),
                snapshots: Vec::new(),
                revocations,
            };
            let report = Report {
                record: Some(req.record),
                refused: vec![why.to_string()],
                ..Report::default()
            };
            Ok((resp, report))
        };
        let Ok(card) = Card::open(req.card.clone()) else {
            return refuse("the requester's card does not verify", Vec::new());
        };
        if card.body().peer != remote {
            return refuse(
                "the requester's card names another key than the connection's",
                Vec::new(),
            );
        }
        let Ok(mut rec) = self.vault.open_record(self.identity, &req.record) else {
            return refuse("record not available", Vec::new());
        };
        // Revocations of the requester's own grants travel with any answer, a refusal too.
        let revocations = self.revocations_for(&rec, &remote, &req.grants, now);
        let (rights, why) = self.rights_of(&rec, &remote, Some(&req.grants), now);
        if !rights.device && rights.scopes.is_empty() {
            // The same answer as for an unknown record: a stranger learns nothing (and only
            // the holder of a revoked grant, proven by the connection, hears of its revocation).
            let _ = why;
            return refuse("record not available", revocations);
        }
        let dir = rec.directory().clone();
        // Pushes first, so the answer reflects them.
        let mut report = Report {
            record: Some(req.record),
            ..Report::default()
        };
        if !req.push.is_empty() {
            let only = if rights.device { None } else { Some(remote) };
            let mut slot = Some(rec);
            let (stored, refused) = self.receive(
                &req.record,
                &mut slot,
                &req.push,
                &[],
                &[],
                only,
                &|s| rights.may_write(s, &dir),
                now,
            )?;
            report.received = stored;
            report.refused = refused;
            rec = match slot {
                Some(r) => r,
                None => self.vault.open_record(self.identity, &req.record)?,
            };
        }
        let dir = rec.directory().clone();
        let ours = self.vault.held_sections(&req.record)?;
        let theirs: BTreeMap<SectionId, VersionVector> =
            req.have.iter().map(|h| (h.section, h.vv())).collect();
        let may_read = |s: &SectionId| rights.may_read(s, &dir);
        // A reader starting a section (or behind where this node's own copy starts) gets the
        // section's shared snapshot, then only the bundles after it.
        let mut theirs = theirs;
        let mut snapshots = Vec::new();
        let mut budget = MAX_BUNDLE_BYTES;
        let devices_now: Vec<PeerKey> = rec.device_certs().into_iter().map(|d| d.peer).collect();
        for (sid, vv) in &ours {
            if !may_read(sid) {
                continue;
            }
            let empty = VersionVector::new();
            let their = theirs.get(sid).unwrap_or(&empty);
            let seq_of = |a: &PeerKey| their.get(a).map_or(0, |x| x.seq);
            let lacking = self
                .vault
                .base(&req.record, sid)?
                .iter()
                .any(|(a, h)| seq_of(a) < h.seq);
            let behind: u64 = vv
                .iter()
                .map(|(a, h)| h.seq.saturating_sub(seq_of(a)))
                .sum();
            if !(lacking || (their.is_empty() && behind >= SNAPSHOT_MIN)) {
                continue;
            }
            let Some(bytes) = self.vault.shared_snapshot(&req.record, sid)? else {
                continue;
            };
            let Some(snap) = SharedSnapshot::decode(&bytes) else {
                continue;
            };
            if bytes.len() > budget / 2 || !devices_now.contains(&snap.author) {
                continue;
            }
            budget -= bytes.len();
            let mut start = their.clone();
            for (a, h) in snap.version_vector() {
                if seq_of(&a) < h.seq {
                    start.insert(a, h);
                }
            }
            theirs.insert(*sid, start);
            snapshots.push(ByteBuf::from(bytes));
        }
        let (bundles, more) =
            self.missing_for(&req.record, &ours, &theirs, &may_read, None, budget)?;
        // Keys: the owner wraps missing ones to the requester's agreement key.
        let readable: Vec<SectionId> = if rights.device {
            [SectionId::AUTH, SectionId::LEDGER]
                .into_iter()
                .chain(dir.keys().copied())
                .collect()
        } else {
            grant::key_sections(&rights.scopes, &dir)
        };
        let agreement = card.body().agreement.into_array();
        let wraps = if rec.holds_root() {
            rec.wrap_missing_keys(agreement, &readable, &req.keys, rng)?
        } else {
            self.vault
                .key_wraps_to(&req.record, &agreement)?
                .into_iter()
                .filter(|w| {
                    readable.contains(&w.section) && !req.keys.contains(&(w.section, w.epoch))
                })
                .collect()
        };
        // Device certificates only to whom may read the auth document that holds them.
        let devices: Vec<String> = if may_read(&SectionId::AUTH) {
            rec.device_certs()
                .iter()
                .filter_map(|d| serde_json::to_string(d).ok())
                .collect()
        } else {
            Vec::new()
        };
        let have = have_of(&ours, |s| {
            rights.may_write(s, &dir) || (rights.device && may_read(s))
        });
        report.sent = bundles.len();
        report.sections = statuses(&ours, &req.have);
        report.in_sync = bundles.is_empty() && report.sections.iter().all(|s| s.behind == 0);
        Ok((
            SyncResponse {
                v: 1,
                record: req.record,
                refused: None,
                bundles,
                have,
                wraps,
                devices,
                more,
                rejected: report.refused.clone(),
                snapshots,
                revocations,
            },
            report,
        ))
    }

    /// The sections of `record` that `remote` may hold, by what this node can verify (a
    /// patient device: every section; a grantee: what its recorded grants let it read, and
    /// the auth document; anyone else: none).
    pub fn holdable_by(
        &self,
        record: &RecordId,
        remote: &PeerKey,
        now: Timestamp,
    ) -> Result<BTreeSet<SectionId>, SyncError> {
        let mut all = self.holdable_by_many(record, std::slice::from_ref(remote), now)?;
        Ok(all.remove(remote).unwrap_or_default())
    }

    /// [`Local::holdable_by`] for each of `peers`, opening the record once: every peer of
    /// `peers` is a key of the result (with no sections if it may hold none).
    pub fn holdable_by_many(
        &self,
        record: &RecordId,
        peers: &[PeerKey],
        now: Timestamp,
    ) -> Result<BTreeMap<PeerKey, BTreeSet<SectionId>>, SyncError> {
        let rec = self.vault.open_record(self.identity, record)?;
        let devices: BTreeSet<PeerKey> = rec.device_certs().into_iter().map(|d| d.peer).collect();
        let revoked = rec.revoked_grants();
        let chains = rec.recorded_chains();
        let dir = rec.directory();
        // Every section any peer could hold, read only if some peer may hold anything.
        let mut candidates: Option<BTreeSet<SectionId>> = None;
        let mut out = BTreeMap::new();
        for peer in peers {
            let rights = if devices.contains(peer) {
                PeerRights::DEVICE
            } else {
                grantee_rights(&rec.id(), peer, &chains, &revoked, now).0
            };
            if !rights.device && rights.scopes.is_empty() {
                out.insert(*peer, BTreeSet::new());
                continue;
            }
            let candidates = match &mut candidates {
                Some(c) => c,
                None => candidates.insert(
                    self.vault
                        .held_sections(record)?
                        .into_keys()
                        .chain(dir.keys().copied())
                        .chain([SectionId::AUTH, SectionId::LEDGER])
                        .collect(),
                ),
            };
            let may = candidates
                .iter()
                .filter(|s| rights.may_read(s, dir))
                .copied()
                .collect();
            out.insert(*peer, may);
        }
        Ok(out)
    }

    /// The bundles of `sections` newer than `since`, if they fit in `budget` bytes (else
    /// none).
    pub fn bundles_since(
        &self,
        record: &RecordId,
        sections: &BTreeSet<SectionId>,
        since: &BTreeMap<SectionId, VersionVector>,
        budget: usize,
    ) -> Result<Vec<ByteBuf>, SyncError> {
        if sections.is_empty() {
            return Ok(Vec::new());
        }
        let ours = self.vault.held_sections(record)?;
        let include = |s: &SectionId| sections.contains(s);
        let (out, more) = self.missing_for(record, &ours, since, &include, None, budget)?;
        Ok(if more { Vec::new() } else { out })
    }

    /// Receiver of a change notification with bundles: checks and stores them exactly as a
    /// response's (authorship, append-only rules, hash chains), for a record this node holds
    /// and sections it holds keys for. The caller syncs with the sender when anything was
    /// refused (a gap: something in between was missed).
    pub fn on_push(
        &self,
        record: RecordId,
        push: &[ByteBuf],
        now: Timestamp,
    ) -> Result<Report, SyncError> {
        if !self.vault.records()?.contains(&record) {
            return Err(SyncError::Refused("record not available".into()));
        }
        let mut rec = self.vault.open_record(self.identity, &record).ok();
        let holdable = holdable_sections(rec.as_ref());
        let (stored, refused) = self.receive(
            &record,
            &mut rec,
            push,
            &[],
            &[],
            None,
            &|s| holdable.contains(s),
            now,
        )?;
        Ok(Report {
            record: Some(record),
            received: stored,
            refused,
            ..Report::default()
        })
    }

    /// Requester: handles a response. Returns the next request to send, if any (a push of
    /// what the responder lacks, or a continuation when the response was partial).
    pub fn on_response(
        &self,
        remote: PeerKey,
        resp: SyncResponse,
        now: Timestamp,
        _rng: &mut impl CryptoRng,
    ) -> Result<(Option<SyncRequest>, Report), SyncError> {
        self.learn_revocations(&resp.record, &resp.revocations);
        if let Some(why) = resp.refused {
            return Err(SyncError::Refused(why));
        }
        let record = resp.record;
        let mut report = Report {
            record: Some(record),
            ..Report::default()
        };
        // Device certificates, verified against the record root.
        let devices: Vec<PeerKey> = resp
            .devices
            .iter()
            .filter_map(|d| serde_json::from_str::<DeviceCert>(d).ok())
            .filter(|d| d.verify(&record))
            .map(|d| d.peer)
            .collect();
        // Keys addressed to this node.
        let mine = self.identity.agreement_public();
        let wraps: Vec<_> = resp
            .wraps
            .into_iter()
            .filter(|w| w.recipient.into_array() == mine && w.record == record)
            .collect();
        // Every node but the root holder stores the wraps addressed to it (a linked device
        // too: new sections and rotated keys reach it this way).
        let owner = self.identity.holds_root_of(&record);
        if !owner
            && (!wraps.is_empty() || self.vault.records()?.contains(&record))
            && let Err(e) = self.vault.register_replica(&record, &wraps, now)
        {
            report.refused.push(format!("key wraps refused: {e}"));
        }
        // Bundles: the responder may send us only what it holds; we accept per authorship, and
        // only for sections we hold a key for.
        let mut rec = self.vault.open_record(self.identity, &record).ok();
        let holdable = holdable_sections(rec.as_ref());
        let (stored, refused) = self.receive(
            &record,
            &mut rec,
            &resp.bundles,
            &resp.snapshots,
            &devices,
            None,
            &|s| holdable.contains(s),
            now,
        )?;
        report.received = stored;
        report.refused.extend(refused);
        // If the responder refused something we pushed, pushing it again would not help: the
        // log stays stuck there until a person looks (the refusal is reported).
        let pushes_refused = !resp.rejected.is_empty();
        report.refused.extend(resp.rejected);
        // What the responder lacks that we may send it.
        let ours = self.vault.held_sections(&record)?;
        let theirs: BTreeMap<SectionId, VersionVector> =
            resp.have.iter().map(|h| (h.section, h.vv())).collect();
        let me = self.identity.peer();
        let i_am_device = devices.contains(&me)
            || rec
                .as_ref()
                .is_some_and(|r| r.device_certs().iter().any(|d| d.peer == me));
        let push = match rec.as_ref() {
            _ if pushes_refused => Vec::new(),
            Some(rec) if i_am_device => {
                // Send the remote only what it may hold: everything if it is a device, else
                // what its recorded grants allow.
                let (rights, _) = self.rights_of(rec, &remote, None, now);
                let dir = rec.directory().clone();
                let include = |s: &SectionId| rights.may_read(s, &dir);
                self.missing_for(&record, &ours, &theirs, &include, None, MAX_BUNDLE_BYTES)?
                    .0
            }
            Some(_) => {
                // A grantee pushes only its own bundles, to sections the remote offered.
                let include = |s: &SectionId| theirs.contains_key(s);
                self.missing_for(
                    &record,
                    &ours,
                    &theirs,
                    &include,
                    Some(me),
                    MAX_BUNDLE_BYTES,
                )?
                .0
            }
            None => Vec::new(),
        };
        report.sent = push.len();
        report.sections = statuses(&ours, &resp.have);
        report.in_sync =
            push.is_empty() && !resp.more && report.sections.iter().all(|s| s.behind == 0);
        let next = if !push.is_empty() || resp.more {
            let mut req = self.start_as(record, remote, true, now)?;
            req.push = push;
            Some(req)
        } else {
            None
        };
        Ok((next, report))
    }
}
