//! The wire format of `/hearth/sync/1`.
//!
//! Three messages, each deterministic CBOR, each at most [`MAX_MESSAGE`] bytes:
//!
//! - [`SyncRequest`]: "this is me (my signed card), these are my grants for this record, this
//!   is what I hold (a version vector per section, and the section keys I have), and here are
//!   bundles you lack" (the push, empty in a first request);
//! - [`SyncResponse`]: the bundles the requester lacks from the sections it may hold, the
//!   responder's version vectors for the sections the requester may write (so it can push),
//!   section keys wrapped to the requester, the patient's device certificates, and which
//!   pushed bundles were refused;
//! - [`Notify`]: "record R changed here; sync it with me";
//! - [`Message::Store`] and [`Message::Stored`]: the relay exchange, carried on
//!   `/hearth/store/1` only ([`crate::relay`]);
//! - [`LinkMessage`]: pairing a patient's new device with the device holding the record root
//!   (a PAKE over a one-time code, then the sealed certificate and keys; see `hearth device
//!   link`). The protocol carries its bytes; [`crate::pairing`] does the cryptography.
//!
//! A sync is therefore request → response (→ push request → response): one and a half round
//! trips whatever the history length, with O(authors) metadata plus the missing bytes.

use hearth_core::grant::token::Envelope;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::log::{LogHead, VersionVector};
use hearth_core::record::KeyWrap;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The protocol name.
pub const PROTOCOL: &str = "/hearth/sync/1";
/// The largest message accepted, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The most bytes of bundles one response carries (the rest follows with `more`).
pub const MAX_BUNDLE_BYTES: usize = 12 * 1024 * 1024;
/// The most sections a message may describe.
pub const MAX_SECTIONS: usize = 1024;
/// The most authors per section a message may describe.
pub const MAX_AUTHORS: usize = 4096;
/// The most grant chains a request may present.
pub const MAX_GRANTS: usize = 16;
/// The most key wraps or device certificates a response may carry.
pub const MAX_KEYS: usize = 4096;

/// What a node holds of one section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionHave {
    /// The section.
    pub section: SectionId,
    /// The newest bundle held per author.
    pub heads: Vec<(PeerKey, LogHead)>,
}

impl SectionHave {
    /// From a version vector.
    pub fn new(section: SectionId, vv: &VersionVector) -> Self {
        SectionHave {
            section,
            heads: vv.iter().map(|(a, h)| (*a, *h)).collect(),
        }
    }

    /// As a version vector.
    pub fn vv(&self) -> VersionVector {
        self.heads.iter().copied().collect()
    }
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Version 1.
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// The requester's signed contact card (its agreement key receives wrapped keys).
    pub card: Envelope,
    /// Grant chains the requester holds for this record (encoded as stored).
    pub grants: Vec<ByteBuf>,
    /// What the requester holds.
    pub have: Vec<SectionHave>,
    /// The (section, epoch) keys the requester holds.
    pub keys: Vec<(SectionId, u32)>,
    /// Bundles for the responder.
    pub push: Vec<ByteBuf>,
    /// A grantee's own audit events for the record not yet acknowledged by the patient's
    /// node ([`hearth_core::audit::SignedEvent`]; sent to the patient's devices only).
    #[serde(default)]
    pub audit: Vec<ByteBuf>,
    /// The newest event number of the grantee's audit journal for the record (`Some(0)`: an
    /// empty journal; `None`: the requester reports nothing).
    #[serde(default)]
    pub audit_head: Option<u64>,
    /// A professional's use of emergency access the patient arranged with their
    /// organisation, when it holds no grant ([`hearth_core::grant::emergency`]).
    #[serde(default)]
    pub emergency: Option<EmergencyClaim>,
}

/// An emergency use and the organisation's credential for its signer, as tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyClaim {
    /// The signed use (`HEARTH1E…`).
    pub token: String,
    /// The credential (`HEARTH1C…`).
    pub credential: String,
    /// The organisation's log entry for the use (`HEARTH1L…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<String>,
}

/// The longest token an [`EmergencyClaim`] may carry.
pub const MAX_CLAIM_TOKEN: usize = 8 * 1024;

/// A sync response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncResponse {
    /// Version 1.
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// Set when the whole request is refused (the same words whether or not the record
    /// exists here, so a refusal leaks nothing).
    pub refused: Option<String>,
    /// Bundles the requester lacks.
    pub bundles: Vec<ByteBuf>,
    /// The responder's heads for the sections the requester may write to.
    pub have: Vec<SectionHave>,
    /// Keys wrapped to the requester's agreement key.
    pub wraps: Vec<KeyWrap>,
    /// The patient's device certificates (JSON), so the requester can check authors.
    pub devices: Vec<String>,
    /// More bundles remain: ask again.
    pub more: bool,
    /// Pushed bundles refused, with the reason.
    pub rejected: Vec<String>,
    /// Shared snapshots ([`hearth_core::record::SharedSnapshot`]) the requester can start
    /// sections from instead of replaying their whole history; `bundles` then holds only what
    /// came after them.
    #[serde(default)]
    pub snapshots: Vec<ByteBuf>,
    /// The record root's signed revocations ([`hearth_core::grant::Revocation`]) of grants in
    /// the chains the requester presented (its own grants only), so that a revoked grantee
    /// learns of it even though it is refused everything else.
    #[serde(default)]
    pub revocations: Vec<ByteBuf>,
    /// How far the patient's audit log now holds the requester's events without a gap.
    #[serde(default)]
    pub audit_ack: Option<u64>,
}

/// A change notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The record that changed.
    pub record: RecordId,
    /// The new bundles themselves, when the sender knows the receiver may hold them and they
    /// are few (at most [`MAX_PUSH_BYTES`]): the receiver checks and stores them as it would a
    /// response's, and syncs only if something is missing. Empty: "sync with me".
    #[serde(default)]
    pub push: Vec<ByteBuf>,
}

/// The most bytes of bundles a [`Notify`] carries.
pub const MAX_PUSH_BYTES: usize = 1024 * 1024;

/// The most bytes of a PAKE message or slot id in a [`LinkMessage`].
pub const MAX_LINK_SMALL: usize = 256;
/// The most bytes of a joining device's sealed request.
pub const MAX_LINK_JOIN: usize = 4096;

/// Device pairing, joiner (requests) and root holder (responses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMessage {
    /// Joiner: which pairing slot (from the code), and its first PAKE message.
    Start {
        /// The slot id printed in the code.
        slot: ByteBuf,
        /// SPAKE2 message A.
        pake: ByteBuf,
    },
    /// Root holder: its PAKE message.
    Pake {
        /// SPAKE2 message B.
        pake: ByteBuf,
    },
    /// Joiner: its device details and key confirmation, sealed under the PAKE key.
    Join {
        /// The sealed request.
        sealed: ByteBuf,
    },
    /// Root holder: the device certificate, key wraps and addresses, sealed under the PAKE key.
    Welcome {
        /// The sealed answer.
        sealed: ByteBuf,
    },
    /// Root holder: no (the slot is unknown, used, expired, or the code did not match).
    Refused {
        /// Why, in words.
        reason: String,
    },
}

/// Any message of the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A request.
    Request(SyncRequest),
    /// A response.
    Response(SyncResponse),
    /// A notification.
    Notify(Notify),
    /// Device pairing.
    Link(LinkMessage),
    /// A request to a relay (`/hearth/store/1` only: [`crate::relay`]).
    Store(crate::relay::StoreRequest),
    /// A relay's answer (`/hearth/store/1` only).
    Stored(crate::relay::StoreResponse),
}

impl From<SyncRequest> for Message {
    fn from(r: SyncRequest) -> Message {
        Message::Request(r)
    }
}

impl From<crate::relay::StoreRequest> for Message {
    fn from(r: crate::relay::StoreRequest) -> Message {
        Message::Store(r)
    }
}

impl Message {
    /// Whether the message belongs on `/hearth/store/1` rather than `/hearth/sync/1`.
    pub fn is_store(&self) -> bool {
        matches!(self, Message::Store(_) | Message::Stored(_))
    }
}

/// A message that cannot be read: always the sender's fault (or an attack).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    /// Not a message of this protocol.
    #[error("malformed message")]
    Malformed,
    /// Well formed but over a limit or of an unknown version.
    #[error("message breaks a limit: {0}")]
    Limit(&'static str),
}

/// Encodes a message.
pub fn encode(m: &Message) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(m).unwrap_or_default()
}

/// Decodes a message, checking size first and limits after.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let m: Message = serde_ipld_dagcbor::from_slice(bytes).map_err(|_| WireError::Malformed)?;
    check(&m)?;
    Ok(m)
}

fn check_have(have: &[SectionHave]) -> Result<(), WireError> {
    if have.len() > MAX_SECTIONS {
        return Err(WireError::Limit("too many sections"));
    }
    if have.iter().any(|h| h.heads.len() > MAX_AUTHORS) {
        return Err(WireError::Limit("too many authors"));
    }
    Ok(())
}

fn check(m: &Message) -> Result<(), WireError> {
    match m {
        Message::Request(r) => {
            if r.v != 1 {
                return Err(WireError::Limit("unsupported version"));
            }
            if r.grants.len() > MAX_GRANTS {
                return Err(WireError::Limit("too many grants"));
            }
            if r.keys.len() > MAX_KEYS {
                return Err(WireError::Limit("too many keys"));
            }
            if r.audit.len() > hearth_core::record::MAX_EVENTS_PER_SESSION
                || r.audit
                    .iter()
                    .any(|e| e.len() > hearth_core::audit::MAX_EVENT_BYTES)
            {
                return Err(WireError::Limit("too many or too large audit events"));
            }
            if r.emergency.as_ref().is_some_and(|c| {
                c.token.len() > MAX_CLAIM_TOKEN
                    || c.credential.len() > MAX_CLAIM_TOKEN
                    || c.logged.as_ref().is_some_and(|l| l.len() > MAX_CLAIM_TOKEN)
            }) {
                return Err(WireError::Limit("an emergency claim is too large"));
            }
            check_have(&r.have)
        }
        Message::Response(r) => {
            if r.v != 1 {
                return Err(WireError::Limit("unsupported version"));
            }
            if r.wraps.len() > MAX_KEYS
                || r.devices.len() > MAX_KEYS
                || r.snapshots.len() > MAX_SECTIONS
                || r.revocations.len() > MAX_GRANTS * hearth_core::grant::MAX_CHAIN
            {
                return Err(WireError::Limit("too many keys or devices"));
            }
            if r.rejected.len() > 100_000 || r.refused.as_ref().is_some_and(|s| s.len() > 1_000) {
                return Err(WireError::Limit("reasons too long"));
            }
            check_have(&r.have)
        }
        Message::Notify(n) => {
            if n.push.iter().map(|b| b.len()).sum::<usize>() > MAX_PUSH_BYTES {
                return Err(WireError::Limit("notification push too large"));
            }
            Ok(())
        }
        Message::Store(r) => crate::relay::wire::check_request(r).map_err(WireError::Limit),
        Message::Stored(r) => crate::relay::wire::check_response(r).map_err(WireError::Limit),
        Message::Link(l) => {
            let ok = match l {
                LinkMessage::Start { slot, pake } => {
                    slot.len() <= MAX_LINK_SMALL && pake.len() <= MAX_LINK_SMALL
                }
                LinkMessage::Pake { pake } => pake.len() <= MAX_LINK_SMALL,
                LinkMessage::Join { sealed } => sealed.len() <= MAX_LINK_JOIN,
                LinkMessage::Welcome { .. } => true,
                LinkMessage::Refused { reason } => reason.len() <= 1_000,
            };
            if ok {
                Ok(())
            } else {
                Err(WireError::Limit("link message too large"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let m = Message::Notify(Notify {
            record: RecordId([1; 32]),
            push: Vec::new(),
        });
        assert_eq!(decode(&encode(&m)).unwrap(), m);
        assert_eq!(decode(b"garbage"), Err(WireError::Malformed));
        let big = vec![0u8; MAX_MESSAGE + 1];
        assert_eq!(decode(&big), Err(WireError::TooLarge(MAX_MESSAGE + 1)));
        for n in 0..64usize {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let _ = decode(&junk);
        }
    }
}
