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
use hearth_core::audit::Authority;
use hearth_core::bundle::Bundle;
use hearth_core::grant::request::{Card, card};
use hearth_core::grant::{self, Ability, Access, Grant, GrantId, Refusal, Revocation, Scope};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::log::VersionVector;
use hearth_core::record::{
    DeviceCert, HeldReason, OpenRecord, RecordError, SharedSnapshot, Vault, Verdict, WriteRules,
};
use hearth_core::store::{Durability, Store};
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
    devices.extend(rec.device_peers());
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

/// Why a bundle of a section this node holds no key for is not taken from a peer's answer. Such
/// a sync is not in sync: the peer holds what this node cannot (see [`Report::lacks_keys`]).
pub const NO_KEY_YET: &str = "bundles of a section this node holds no key for yet: keys come \
     with a grant made to this node's contact card or peer id, or from the patient's node at its \
     next sync";

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
    /// Bundles refused, with reasons (no content): by this node, or by the peer.
    pub refused: Vec<String>,
    /// Of those, the bundles this node pushed and the peer refused: pushing them again would
    /// not help, so the session is not in sync until a person looks.
    pub rejected: usize,
    /// Whether both sides hold the same of every section they share.
    pub in_sync: bool,
    /// Per section.
    pub sections: Vec<SectionStatus>,
    /// Letters collected from a relay and opened (requests received, grants accepted, letters
    /// dropped with the reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub letters: Vec<Opened>,
    /// The access receipt this node owes for what it served in the session (a grantee was
    /// sent record data): the caller appends it to the node's audit journal
    /// ([`Vault::journal`]), so that receipts of sessions served together share one commit.
    #[serde(skip)]
    pub served: Option<Box<hearth_core::audit::Action>>,
}

impl Report {
    /// Whether bundles were left untaken for want of a section key ([`NO_KEY_YET`]).
    pub fn lacks_keys(&self) -> bool {
        self.refused.iter().any(|r| r == NO_KEY_YET)
    }
}

/// This node's side of sync sessions (its vault and identity), whichever side of a round it
/// is on: requester ([`Local::start`], [`Local::on_response`]) or responder
/// ([`Local::on_request`], [`Local::on_push`]). The remote peer is always an argument, the
/// key the transport authenticated.
pub struct Local<'a, S: Store> {
    vault: &'a Vault<S>,
    identity: &'a Identity,
    /// How what this side stores from peers is committed: durably before each step returns,
    /// unless [`Local::visible_first`].
    durability: Durability,
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

mod audit;
mod letters;
mod receive;
mod relayed;

pub use audit::Pushed;
pub use letters::{MAX_PENDING, Opened, asked_records};
mod request;
mod respond;
mod rights;

impl<'a, S: Store> Local<'a, S> {
    /// This node's side, over its vault and identity.
    pub fn new(vault: &'a Vault<S>, identity: &'a Identity) -> Self {
        Local {
            vault,
            identity,
            durability: Durability::Now,
        }
    }

    /// This side, committing the bundles it stores from peers visible at once and durable at
    /// the store's next flush ([`Durability::AtNextFlush`]): a node that lets readers see a
    /// pushed edit before it pays for the flush, and flushes before it counts the edit as
    /// stored. Only copies are written this way (the author holds each bundle durably and
    /// sends it again at the next sync); this node's own writes stay durable.
    pub fn visible_first(self) -> Self {
        Local {
            durability: Durability::AtNextFlush,
            ..self
        }
    }

    /// The records this node holds.
    pub fn records(&self) -> Result<Vec<RecordId>, SyncError> {
        Ok(self.vault.records()?)
    }

    /// Whether this node holds `record`.
    pub fn holds(&self, record: &RecordId) -> Result<bool, SyncError> {
        Ok(self.vault.holds_record(record)?)
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
        let mut out: BTreeSet<PeerKey> = rec.device_peers().into_iter().collect();
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
    ///
    /// `rec` is the record as this node holds it (open), if it can open it.
    fn party(
        &self,
        rec: Option<&OpenRecord<'a, S>>,
        record: &RecordId,
        remote: &PeerKey,
        named_by_user: bool,
        now: Timestamp,
    ) -> Option<Option<BTreeSet<SectionId>>> {
        if *remote == self.identity.peer() {
            return None;
        }
        let devices_known = rec.is_some_and(|r| !r.device_certs().is_empty());
        if let Some(r) = rec
            && let Ok(mut may) = self.holdable_in(r, std::slice::from_ref(remote), now)
            && let Some(may) = may.remove(remote)
            && !may.is_empty()
        {
            return Some(Some(may));
        }
        if let Some(r) = rec
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
        if chains.is_empty()
            && rec.is_none()
            && self.vault.held_emergency(record).ok().flatten().is_none()
        {
            return None;
        }
        let suffix = format!("/p2p/{remote}");
        let named_by_grant = chains
            .iter()
            .flatten()
            .any(|g| g.body().addresses.iter().any(|a| a.ends_with(&suffix)));
        (named_by_grant || (named_by_user && !devices_known)).then_some(None)
    }
}
