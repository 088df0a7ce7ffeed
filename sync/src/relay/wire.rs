//! The messages of `/hearth/store/1`, blinded record ids and padded bundles.
//!
//! A relay never sees a record id as a lookup key: requests name a record by
//! [`blind`]`(record, relay)`, a keyed hash that differs per relay, so two relays comparing
//! their request logs or storage keys cannot tell they hold the same patient. Bundles travel
//! padded to power-of-two buckets ([`pad`]), so sizes say little about content.

use crate::protocol::SectionHave;
use hearth_core::crypto;
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keywrap::EscrowedKey;
use hearth_core::record::KeyWrap;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use std::fmt;

/// The protocol's name on the wire.
pub const STORE_PROTOCOL: &str = "/hearth/store/1";
/// The smallest padded bundle, in bytes.
pub const MIN_BUCKET: usize = 1024;
/// The most key wraps a request or response carries.
pub const MAX_WRAPS: usize = 4096;

/// A record id blinded for one relay: `SHA-256("hearth/relay-blind/v1" ‖ record ‖ relay)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Blinded(pub ByteArray<32>);

impl fmt::Display for Blinded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0[..]))
    }
}

/// `record` as `relay` knows it.
pub fn blind(record: &RecordId, relay: &PeerKey) -> Blinded {
    Blinded(ByteArray::new(crypto::sha256(&[
        b"hearth/relay-blind/v1",
        &record.0,
        &relay.0,
    ])))
}

/// The bucket a bundle of `len` bytes is padded to: the next power of two that holds it and
/// its 4-byte length, at least [`MIN_BUCKET`].
pub fn bucket(len: usize) -> usize {
    (len + 4).next_power_of_two().max(MIN_BUCKET)
}

/// A bundle padded to its bucket: its length (u32, big-endian), the bytes, zeros.
pub fn pad(bundle: &[u8]) -> ByteBuf {
    let mut out = Vec::with_capacity(bucket(bundle.len()));
    out.extend_from_slice(&(bundle.len() as u32).to_be_bytes());
    out.extend_from_slice(bundle);
    out.resize(bucket(bundle.len()), 0);
    ByteBuf::from(out)
}

/// The bundle in a padded frame, if the frame is exactly a bucket long, its length fits and
/// the padding is zeros (anything else is malformed: padding is not a side channel either).
pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(padded.get(..4)?.try_into().ok()?) as usize;
    let body = padded.get(4..4 + len)?;
    let ok = padded.len() == bucket(len) && padded[4 + len..].iter().all(|b| *b == 0);
    ok.then_some(body)
}

/// The longest prefix of `bundles` whose padded frames take at most `budget` bytes (at least
/// one bundle), and whether any were left out. Bundle budgets count raw bytes, but padding can
/// double a bundle (and more for small ones), so what travels padded is cut to fit a message;
/// a prefix keeps each log's bundles in order, and the rest goes in the next round trip.
pub(crate) fn fit_padded(mut bundles: Vec<ByteBuf>, budget: usize) -> (Vec<ByteBuf>, bool) {
    let mut used = 0usize;
    let mut keep = 0;
    for b in &bundles {
        let n = bucket(b.len());
        if keep > 0 && used.saturating_add(n) > budget {
            break;
        }
        used = used.saturating_add(n);
        keep += 1;
    }
    let cut = keep < bundles.len();
    bundles.truncate(keep);
    (bundles, cut)
}

/// A device's X25519 key-agreement key, signed by its device key: where a relay may send key
/// wraps addressed to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// The public key.
    pub key: ByteArray<32>,
    /// The device key's signature over it (domain `agreement-key/v1`).
    pub sig: ByteArray<64>,
}

impl Agreement {
    /// `identity`'s agreement key, signed by its device key.
    pub fn of(identity: &hearth_core::keys::Identity) -> Agreement {
        let key = identity.agreement_public();
        let sig = crypto::sign(identity.device_key(), crypto::Domain::AgreementKey, &[&key]);
        Agreement {
            key: ByteArray::new(key),
            sig: ByteArray::new(sig),
        }
    }

    /// Whether `peer`'s device key signed this agreement key.
    pub fn signed_by(&self, peer: &PeerKey) -> bool {
        peer.verifying_key().is_ok_and(|vk| {
            crypto::verify(
                &vk,
                crypto::Domain::AgreementKey,
                &[&self.key[..]],
                &self.sig,
            )
            .is_ok()
        })
    }
}

/// Where a letter goes: a record's inbox (read by the device holding its root), or a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Address {
    /// The inbox of the record blinded for this relay.
    Record(Blinded),
    /// A peer's mailbox.
    Peer(PeerKey),
}

impl Address {
    /// The mailbox's name: the relay's storage key for it, and what the letter is sealed to
    /// (so it cannot be moved to another mailbox).
    pub fn mailbox(&self) -> String {
        match self {
            Address::Record(b) => format!("r-{b}"),
            Address::Peer(p) => format!("p-{p}"),
        }
    }
}

/// A sealed letter ([`hearth_core::letter`]) and its address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Letter {
    /// Its mailbox.
    pub to: Address,
    /// The sealed message.
    pub sealed: ByteBuf,
}

impl Letter {
    /// Its id: the SHA-256 of the sealed bytes.
    pub fn id(&self) -> [u8; 32] {
        crypto::sha256(&[&self.sealed])
    }
}

/// The most letters one request leaves.
pub const MAX_POST: usize = 8;
/// The most letters one answer carries.
pub const MAX_DELIVER: usize = 64;
/// The most acknowledgements one request carries.
pub const MAX_ACK: usize = 256;

/// A request to a relay: "for this record, here is what I hold and what you lack".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRequest {
    /// Version 1.
    pub v: u8,
    /// The record, blinded for this relay.
    pub record: Blinded,
    /// The requester's signed agreement key (wraps addressed to it may be returned).
    pub agreement: Option<Agreement>,
    /// The patient's signed access list ([`super::access::SignedAccess`], encoded): only a
    /// patient device sends it.
    pub access: Option<ByteBuf>,
    /// Key wraps the relay should keep (a patient device only; signed by the record root).
    pub wraps: Vec<KeyWrap>,
    /// The record root's one signature over `wraps` as sent (`KeyWrap::sign_all`): the relay
    /// checks it instead of each new wrap's own, and each new wrap's own when it is absent or
    /// does not check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wraps_signed: Option<ByteArray<64>>,
    /// The requester holds the wraps it may have already (a later request of one round, after
    /// an answer that carried them): the answer carries none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wraps_held: bool,
    /// What the requester holds of the sections it may hold.
    pub have: Vec<SectionHave>,
    /// Padded bundles for the relay to keep.
    pub push: Vec<ByteBuf>,
    /// Letters to leave in mailboxes.
    #[serde(default)]
    pub post: Vec<Letter>,
    /// Letters collected earlier (by id), which the relay may now delete.
    #[serde(default)]
    pub ack: Vec<ByteArray<32>>,
    /// A grantee: the head of its own audit journal for the record (named in the relay's
    /// receipt of what it serves), and its events not yet acknowledged by the patient's
    /// devices, for the relay to hand on to them.
    #[serde(default)]
    pub audit_head: Option<u64>,
    /// A grantee's audit events (signed, encoded), at most [`MAX_AUDIT`].
    #[serde(default)]
    pub audit: Vec<ByteBuf>,
    /// A patient device: how far the record's audit log holds each writer's events (the
    /// relay's own and the grantees' it keeps), at most [`MAX_AUDIT_ACKS`].
    #[serde(default)]
    pub audit_ack: Vec<AuditAck>,
    /// A professional asking their organisation's node to log an emergency use for its IG
    /// review (answered whatever else the request is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<EmergencyLogRequest>,
    /// A professional using an emergency use at one of the record's relays (the patient's
    /// arrangement is on the relay's signed access list): the use, the organisation's
    /// credential and its log entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<crate::protocol::EmergencyClaim>,
    /// Asks the node for its own card (name, role and agreement key, signed by its device
    /// key): a patient adding a relay learns the name it gives itself, and one arranging
    /// emergency access with an organisation escrows the arranged sections' keys to the
    /// card's agreement key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub card_wanted: bool,
    /// Asks the relay to show the patient's `relay` grant to it for this record: a
    /// professional checks it before presenting an emergency use, so that a peer merely
    /// claiming to keep the record (anyone can announce that on the relays' network) learns
    /// nothing of the use or its reason.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proof_wanted: bool,
}

/// An emergency use to log, with the credential the organisation gave the professional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyLogRequest {
    /// The signed use (`HEARTH1E…`).
    pub token: String,
    /// The credential (`HEARTH1C…`).
    pub credential: String,
    /// The patient's escrow wraps a relay served for the use (addressed to the organisation):
    /// the organisation releases each key inside to the requester's agreement key, once the
    /// use is logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wraps: Vec<KeyWrap>,
}

impl StoreRequest {
    /// A request for `record` that holds, sends and asks nothing yet: the fields a caller
    /// needs are set on it.
    pub fn new(record: Blinded) -> StoreRequest {
        StoreRequest {
            v: 1,
            record,
            agreement: None,
            access: None,
            wraps: Vec::new(),
            wraps_signed: None,
            wraps_held: false,
            have: Vec::new(),
            push: Vec::new(),
            post: Vec::new(),
            ack: Vec::new(),
            audit_head: None,
            audit: Vec::new(),
            audit_ack: Vec::new(),
            emergency: None,
            claim: None,
            card_wanted: false,
            proof_wanted: false,
        }
    }
}

/// The most audit events one request or answer carries.
pub const MAX_AUDIT: usize = 256;
/// The most audit acknowledgements one request carries.
pub const MAX_AUDIT_ACKS: usize = 1024;

/// A patient device's acknowledgement: the record's audit log holds `writer`'s events up to
/// `seq` without a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAck {
    /// The writer.
    pub writer: PeerKey,
    /// Its newest event held without a gap.
    pub seq: u64,
}

/// A relay's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreResponse {
    /// Version 1.
    pub v: u8,
    /// The record, as the request named it.
    pub record: Blinded,
    /// Set when the whole request is refused: [`super::NOTHING_HERE`] whether the record is
    /// unknown or the requester may not have it, or a limit (quota, rate) in plain words.
    pub refused: Option<String>,
    /// Padded bundles the requester lacks, of the sections it may read.
    pub bundles: Vec<ByteBuf>,
    /// The relay's heads of the sections the requester may write (so it can push).
    pub have: Vec<SectionHave>,
    /// Key wraps addressed to the requester (all of them to a patient device, but those it
    /// sent); none to one that said it holds them.
    pub wraps: Vec<KeyWrap>,
    /// More bundles remain: ask again.
    pub more: bool,
    /// Pushed bundles refused, with the reason.
    pub rejected: Vec<String>,
    /// How many pushed bundles were stored.
    pub stored: u32,
    /// The patient's signed access list, so a grantee can tell the patient's devices (the
    /// authors of the auth document) before it can read the auth document.
    pub access: Option<ByteBuf>,
    /// Letters for the requester (its own mailbox; a patient device also the record's inbox),
    /// delivered whether or not the rest of the request was refused.
    #[serde(default)]
    pub letters: Vec<Letter>,
    /// The letters of the request's `post` the relay took (the same for any record, known or
    /// not: a letter for a record it does not keep is dropped).
    #[serde(default)]
    pub posted: Vec<ByteArray<32>>,
    /// The request's acknowledgements, processed.
    #[serde(default)]
    pub acked: Vec<ByteArray<32>>,
    /// A patient device: the relay's receipts of what it served, and the grantees' events it
    /// kept, at most [`MAX_AUDIT`].
    #[serde(default)]
    pub audit: Vec<ByteBuf>,
    /// A grantee: how far the patient's devices acknowledged its audit events, as the relay
    /// was told (it may stop sending those).
    #[serde(default)]
    pub audit_acked: Option<u64>,
    /// The organisation's signed log entry for the emergency use asked (`HEARTH1L…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<String>,
    /// Why the organisation did not log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_refused: Option<String>,
    /// The keys the organisation released from escrow to the requester, for the logged use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<EscrowedKey>,
    /// The node's own card, as a token, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
    /// The patient's `relay` grant to this relay for the record (a chain, encoded), when asked
    /// for and the relay keeps the record under a grant that holds (see
    /// [`super::access::relay_grant_proves`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_grant: Option<ByteBuf>,
}

/// Checks a request's and a response's counts against the limits of `/hearth/sync/1`.
pub(crate) fn check_request(r: &StoreRequest) -> Result<(), &'static str> {
    if r.v != 1 {
        return Err("unsupported version");
    }
    if r.wraps.len() > MAX_WRAPS {
        return Err("too many key wraps");
    }
    if r.access
        .as_ref()
        .is_some_and(|a| a.len() > super::access::MAX_ACCESS_LEN)
    {
        return Err("access list too large");
    }
    if r.post.len() > MAX_POST || r.ack.len() > MAX_ACK {
        return Err("too many letters or acknowledgements");
    }
    check_letters(&r.post)?;
    check_audit(&r.audit)?;
    if r.audit_ack.len() > MAX_AUDIT_ACKS {
        return Err("too many audit acknowledgements");
    }
    if r.emergency.as_ref().is_some_and(|e| {
        e.token.len() > crate::protocol::MAX_CLAIM_TOKEN
            || e.credential.len() > crate::protocol::MAX_CLAIM_TOKEN
    }) {
        return Err("an emergency use to log is too large");
    }
    if r.emergency
        .as_ref()
        .is_some_and(|e| e.wraps.len() > MAX_WRAPS)
    {
        return Err("too many key wraps");
    }
    if r.claim.as_ref().is_some_and(|c| {
        c.token.len() > crate::protocol::MAX_CLAIM_TOKEN
            || c.credential.len() > crate::protocol::MAX_CLAIM_TOKEN
            || c.logged
                .as_ref()
                .is_some_and(|l| l.len() > crate::protocol::MAX_CLAIM_TOKEN)
    }) {
        return Err("an emergency use is too large");
    }
    check_have(&r.have)
}

fn check_audit(events: &[ByteBuf]) -> Result<(), &'static str> {
    if events.len() > MAX_AUDIT
        || events
            .iter()
            .any(|e| e.len() > hearth_core::audit::MAX_EVENT_BYTES)
    {
        return Err("too many or too large audit events");
    }
    Ok(())
}

pub(crate) fn check_response(r: &StoreResponse) -> Result<(), &'static str> {
    if r.v != 1 {
        return Err("unsupported version");
    }
    if r.wraps.len() > MAX_WRAPS {
        return Err("too many key wraps");
    }
    if r.rejected.len() > 100_000 || r.refused.as_ref().is_some_and(|s| s.len() > 1_000) {
        return Err("reasons too long");
    }
    if r.access
        .as_ref()
        .is_some_and(|a| a.len() > super::access::MAX_ACCESS_LEN)
    {
        return Err("access list too large");
    }
    if r.letters.len() > MAX_DELIVER || r.posted.len() > MAX_POST || r.acked.len() > MAX_ACK {
        return Err("too many letters or acknowledgements");
    }
    check_letters(&r.letters)?;
    check_audit(&r.audit)?;
    if r.logged
        .as_ref()
        .is_some_and(|l| l.len() > crate::protocol::MAX_CLAIM_TOKEN)
        || r.emergency_refused
            .as_ref()
            .is_some_and(|s| s.len() > 1_000)
    {
        return Err("an emergency log answer is too large");
    }
    if r.released.len() > MAX_WRAPS {
        return Err("too many released keys");
    }
    if r.card
        .as_ref()
        .is_some_and(|c| c.len() > crate::protocol::MAX_CLAIM_TOKEN)
    {
        return Err("card too large");
    }
    if r.relay_grant
        .as_ref()
        .is_some_and(|g| g.len() > super::access::MAX_ACCESS_LEN)
    {
        return Err("relay grant too large");
    }
    check_have(&r.have)
}

fn check_letters(letters: &[Letter]) -> Result<(), &'static str> {
    if letters
        .iter()
        .any(|l| l.sealed.len() > hearth_core::letter::MAX_LETTER)
    {
        return Err("letter too large");
    }
    Ok(())
}

fn check_have(have: &[SectionHave]) -> Result<(), &'static str> {
    if have.len() > crate::protocol::MAX_SECTIONS {
        return Err("too many sections");
    }
    if have
        .iter()
        .any(|h| h.heads.len() > crate::protocol::MAX_AUTHORS)
    {
        return Err("too many authors");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blinding_differs_per_relay_and_record() {
        let (r1, r2) = (RecordId([1; 32]), RecordId([2; 32]));
        let (a, b) = (PeerKey([3; 32]), PeerKey([4; 32]));
        assert_eq!(blind(&r1, &a), blind(&r1, &a));
        assert_ne!(blind(&r1, &a), blind(&r1, &b));
        assert_ne!(blind(&r1, &a), blind(&r2, &a));
        assert_eq!(blind(&r1, &a).to_string().len(), 64);
    }

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), MIN_BUCKET);
        assert_eq!(bucket(1020), 1024);
        assert_eq!(bucket(1021), 2048);
        assert_eq!(pad(&[7; 3000]).len(), 4096);
    }

    #[test]
    fn unpad_refuses_anything_but_a_clean_bucket() {
        let p = pad(b"bundle");
        assert_eq!(unpad(&p), Some(&b"bundle"[..]));
        let mut dirty = p.to_vec();
        dirty[100] = 1;
        assert_eq!(unpad(&dirty), None, "non-zero padding");
        assert_eq!(unpad(&p[..p.len() - 1]), None, "not a bucket");
        let mut long = p.to_vec();
        long[..4].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(unpad(&long), None, "length past the end");
        assert_eq!(unpad(&[]), None);
    }

    #[test]
    fn padded_bundles_are_cut_to_the_budget() {
        let b = |n: usize| ByteBuf::from(vec![1u8; n]);
        // 1025 bytes pad to 2048: three fit in 6144, not in 6143.
        let three = vec![b(1025), b(1025), b(1025)];
        assert_eq!(fit_padded(three.clone(), 6144), (three.clone(), false));
        let (kept, cut) = fit_padded(three.clone(), 6143);
        assert_eq!((kept.len(), cut), (2, true));
        // One bundle always goes, whatever the budget.
        assert_eq!(fit_padded(three, 1).0.len(), 1);
        assert_eq!(fit_padded(Vec::new(), 0), (Vec::new(), false));
    }

    proptest! {
        #[test]
        fn pad_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let p = pad(&bytes);
            prop_assert_eq!(p.len(), bucket(bytes.len()));
            prop_assert_eq!(unpad(&p), Some(&bytes[..]));
        }

        #[test]
        fn unpad_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = unpad(&bytes);
        }
    }
}
