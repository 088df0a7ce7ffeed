//! One audit event: what a writer did with a record, signed by the writer and linked to the
//! writer's previous event by its hash.

use crate::crypto::{self, Domain};
use crate::grant::{GrantId, Purpose, token};
use crate::ids::{EntryId, PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// The most sections one event names.
pub const MAX_SECTIONS: usize = 64;
/// The most entries one event names.
pub const MAX_ENTRIES: usize = 64;
/// The longest reason an event carries, in characters.
pub const MAX_REASON: usize = 1000;
/// The largest encoded event accepted.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
/// The longest token (a request, a grant) an event carries.
pub const MAX_TOKEN: usize = 3 * 1024;

/// A section and the key epoch it was read or sent at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SectionAt {
    /// The section (opaque id; the patient's node knows its name).
    pub section: SectionId,
    /// The key epoch.
    pub epoch: u32,
}

/// Under which authority an action was taken: the grant (the last link of the chain the
/// writer held or presented) and its purpose. Absent for the patient's own devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// The grant's id.
    pub grant: GrantId,
    /// Its purpose of use.
    pub purpose: Purpose,
}

/// An access receipt's mark that the session served an emergency (break-glass) use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyMark {
    /// The use's id (the hash of what the professional signed).
    pub use_id: ByteArray<32>,
    /// The organisation whose arrangement was used.
    pub org: PeerKey,
    /// The reason the professional signed.
    pub reason: String,
    /// When the use ends.
    pub until: Timestamp,
    /// The organisation's credential for the professional, as a token (so the patient's node
    /// can name them from verified facts).
    pub credential: String,
    /// The use the professional signed, as a token: a relay's receipt carries it, so that the
    /// patient's device checks the professional's signature, the reason and the organisation
    /// itself rather than take the relay's word (see [`EmergencyMark::vouched_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_use: Option<String>,
}

impl EmergencyMark {
    /// Whether the signed use inside vouches for this mark: a use of `record` signed by `to`
    /// (the peer served), whose hash is the mark's id, naming the mark's organisation and
    /// reason, ending no later than the mark says.
    pub fn vouched_for(&self, record: &crate::ids::RecordId, to: &PeerKey) -> bool {
        let Some(u) = self
            .signed_use
            .as_deref()
            .and_then(|t| crate::grant::emergency::EmergencyUse::from_token(t).ok())
        else {
            return false;
        };
        let b = u.body();
        u.hash() == self.use_id.into_array()
            && b.record == *record
            && b.holder == *to
            && b.org == self.org
            && b.reason == self.reason
            && self.until <= u.until()
    }
}

/// What the writer did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The writer (a patient's device or a relay) sent `to` bundles of these sections in one
    /// session: an access receipt.
    Served {
        /// The peer served (the key its connection proved).
        to: PeerKey,
        /// What was sent of which section.
        sections: Vec<SectionAt>,
        /// How many bundles and snapshots.
        bundles: u32,
        /// The authority the peer presented, if it is not one of the patient's devices.
        authority: Option<Authority>,
        /// The head of the peer's own audit log it reported in that session (`Some(0)`: an
        /// empty log; `None`: it reported nothing).
        reported: Option<u64>,
        /// Set when the peer was served under emergency (break-glass) access.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emergency: Option<EmergencyMark>,
        /// Sent without the peer asking: pushed as it was written, or in a round the writer
        /// started (the peer had no chance to report).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pushed: bool,
    },
    /// A person at the writer's node read these sections of the record.
    Read {
        /// The sections shown.
        sections: Vec<SectionAt>,
        /// The authority held.
        authority: Option<Authority>,
    },
    /// The writer added or corrected entries.
    Wrote {
        /// The section.
        section: SectionAt,
        /// The entries written.
        entries: Vec<EntryId>,
        /// The authority held.
        authority: Option<Authority>,
    },
    /// The writer, the patient's proxy, approved an access request on the patient's behalf.
    Approved {
        /// The request, as its signed token (who asked, with their credential, and why).
        request: String,
        /// What the proxy issued: its delegation of the proxy grant, as a one-link token.
        grant: String,
        /// The proxy grant it acted under.
        authority: Option<Authority>,
    },
    /// The writer, the patient's proxy, denied an access request on the patient's behalf.
    Denied {
        /// The request, as its signed token.
        request: String,
        /// The proxy's reason, if given.
        reason: Option<String>,
        /// The proxy grant it acted under.
        authority: Option<Authority>,
    },
}

impl Action {
    /// The sections the action names.
    pub fn sections(&self) -> Vec<SectionAt> {
        match self {
            Action::Served { sections, .. } | Action::Read { sections, .. } => sections.clone(),
            Action::Wrote { section, .. } => vec![*section],
            Action::Approved { .. } | Action::Denied { .. } => Vec::new(),
        }
    }

    /// The authority the action names.
    pub fn authority(&self) -> Option<Authority> {
        match self {
            Action::Served { authority, .. }
            | Action::Read { authority, .. }
            | Action::Wrote { authority, .. }
            | Action::Approved { authority, .. }
            | Action::Denied { authority, .. } => *authority,
        }
    }

    /// Whether this is a receipt marking an emergency use: only the record's servers (the
    /// patient's devices and its relays) attest those; from anyone else it is refused.
    pub fn attests_emergency(&self) -> bool {
        matches!(
            self,
            Action::Served {
                emergency: Some(_),
                ..
            }
        )
    }

    fn check(&self) -> Result<(), AuditError> {
        let (sections, entries) = match self {
            Action::Served { sections, .. } | Action::Read { sections, .. } => (sections.len(), 0),
            Action::Wrote { entries, .. } => (1, entries.len()),
            Action::Approved { request, grant, .. } => {
                if request.len() > MAX_TOKEN || grant.len() > MAX_TOKEN {
                    return Err(AuditError::Malformed("an approval's token is too long"));
                }
                (0, 0)
            }
            Action::Denied {
                request, reason, ..
            } => {
                if request.len() > MAX_TOKEN
                    || reason
                        .as_ref()
                        .is_some_and(|r| r.chars().count() > MAX_REASON)
                {
                    return Err(AuditError::Malformed("a denial breaks a bound"));
                }
                (0, 0)
            }
        };
        if sections > MAX_SECTIONS || entries > MAX_ENTRIES {
            return Err(AuditError::Malformed("names too many sections or entries"));
        }
        if let Action::Served {
            emergency: Some(m), ..
        } = self
            && (m.reason.chars().count() > MAX_REASON
                || m.credential.len() > 4096
                || m.signed_use.as_ref().is_some_and(|u| u.len() > MAX_TOKEN))
        {
            return Err(AuditError::Malformed("an emergency mark breaks a bound"));
        }
        Ok(())
    }
}

/// The signed body of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Format version: 1.
    pub v: u8,
    /// The record (for a relay's receipt: the record id as blinded for that relay).
    pub record: RecordId,
    /// Who signs: a device or relay key.
    pub writer: PeerKey,
    /// The event's place in the writer's log for this record, from 1.
    pub seq: u64,
    /// The hash of the writer's previous event ([`SignedEvent::hash`]); zeros for the first.
    pub prev: ByteArray<32>,
    /// When, by the writer's clock (a claim for anyone but the writer).
    pub at: Timestamp,
    /// What happened.
    pub action: Action,
}

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// It does not decode, or breaks a bound.
    #[error("malformed audit event: {0}")]
    Malformed(&'static str),
    /// The signature does not verify: the event was changed, or someone else signed it.
    #[error("an audit event's signature does not verify (changed or forged)")]
    BadSignature,
}

/// An event with the writer's signature, as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEvent {
    event: Event,
    bytes: Vec<u8>,
}

impl SignedEvent {
    /// Whether `action` can be signed as an event of `record`, whatever the writer, its place
    /// in the log or the time: within every bound, [`MAX_EVENT_BYTES`] included. A server that
    /// writes its receipt after it answers (a relay, on its next tick) checks this before it
    /// serves, so that nothing is served that its receipt could not record.
    pub fn fits(record: RecordId, action: &Action) -> bool {
        if action.check().is_err() {
            return false;
        }
        let event = Event {
            v: 1,
            record,
            writer: PeerKey([0xff; 32]),
            seq: u64::MAX,
            prev: ByteArray::new([0xff; 32]),
            at: Timestamp::from_millis(i64::MAX),
            action: action.clone(),
        };
        let Ok(body) = serde_ipld_dagcbor::to_vec(&event) else {
            return false;
        };
        token::encode_envelopes(&[token::Envelope {
            body,
            sig: vec![0xff; 64],
        }])
        .len()
            <= MAX_EVENT_BYTES
    }

    /// Signs `action` as the event after `prev` (`None`: the first) in `identity`'s log.
    pub fn sign(
        identity: &Identity,
        record: RecordId,
        prev: Option<(u64, [u8; 32])>,
        at: Timestamp,
        action: Action,
    ) -> Result<SignedEvent, AuditError> {
        action.check()?;
        let (seq, prev) = prev.map_or((1, [0; 32]), |(s, h)| (s + 1, h));
        let event = Event {
            v: 1,
            record,
            writer: identity.peer(),
            seq,
            prev: ByteArray::new(prev),
            at,
            action,
        };
        let body = serde_ipld_dagcbor::to_vec(&event)
            .map_err(|_| AuditError::Malformed("cannot encode"))?;
        let sig = crypto::sign(identity.device_key(), Domain::Audit, &[&body]);
        let bytes = token::encode_envelopes(&[token::Envelope {
            body,
            sig: sig.to_vec(),
        }]);
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(AuditError::Malformed("event too large"));
        }
        Ok(SignedEvent { event, bytes })
    }

    /// Decodes `bytes` and checks the writer's signature and the bounds.
    pub fn open(bytes: &[u8]) -> Result<SignedEvent, AuditError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(AuditError::Malformed("event too large"));
        }
        let envs = token::decode_envelopes(bytes, 1)
            .map_err(|_| AuditError::Malformed("not a signed event"))?;
        let env = &envs[0];
        let event: Event = token::decode_body(&env.body)
            .map_err(|_| AuditError::Malformed("body does not decode"))?;
        if event.v != 1 || event.seq == 0 {
            return Err(AuditError::Malformed(
                "unknown version or no sequence number",
            ));
        }
        event.action.check()?;
        let key = crypto::verifying_key(&event.writer.0).map_err(|_| AuditError::BadSignature)?;
        let sig: [u8; 64] = env
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::Malformed("signature length"))?;
        crypto::verify(&key, Domain::Audit, &[&env.body], &sig)
            .map_err(|_| AuditError::BadSignature)?;
        Ok(SignedEvent {
            event,
            bytes: bytes.to_vec(),
        })
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The hash the writer's next event links to.
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(&[b"hearth/audit-link/v1", &self.bytes])
    }
}
