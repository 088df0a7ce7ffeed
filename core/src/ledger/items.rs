//! The types of the consent ledger's items (each stored under the key [`Key`](super::Key)
//! spells; the table of them is in the module's docs), and how each is encoded.

use crate::grant::{self, Grant, GrantId, Revocation};
use crate::ids::{PeerKey, RecordId};
use crate::keys::Identity;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// An unreadable item: a value that does not decode as its kind's type.
#[derive(Debug, thiserror::Error)]
#[error("a ledger item does not decode: {0}")]
pub struct Unreadable(String);

fn to_json<T: Serialize>(v: &T) -> String {
    // These types hold strings, numbers and ids only: encoding cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Auth document `grant/<id>`: the grant chain's token, so every holder of the record can check
/// every other holder's authority.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedGrant {
    /// The chain, as a `HEARTH1G…` token.
    pub token: String,
}

impl RecordedGrant {
    /// The item for `chain`.
    pub fn new(chain: &[Grant]) -> RecordedGrant {
        RecordedGrant {
            token: grant::chain_to_token(chain),
        }
    }

    /// The item's JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// The chain in a stored item, if it decodes.
    pub fn chain_in(json: &str) -> Option<Vec<Grant>> {
        let item: RecordedGrant = serde_json::from_str(json).ok()?;
        grant::chain_from_token(&item.token).ok()
    }
}

/// Auth document `revoke/<id>`: when, and the revocation signed by the record root (absent in
/// items written before revocations were signed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeItem {
    /// When the patient revoked the grant.
    pub at: Timestamp,
    /// The signed revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<Revocation>,
}

impl RevokeItem {
    /// The item for a signed revocation.
    pub fn new(r: &Revocation) -> RevokeItem {
        RevokeItem {
            at: r.at,
            signed: Some(r.clone()),
        }
    }

    /// The item's JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Decodes a stored item.
    pub fn from_json(json: &str) -> Result<RevokeItem, Unreadable> {
        serde_json::from_str(json).map_err(|e| Unreadable(format!("revocation: {e}")))
    }

    /// The signed revocation of `grant` of `record` this item holds, if it verifies; for an
    /// item without one, signed now when `identity` holds the record root.
    pub fn revocation(
        &self,
        identity: &Identity,
        record: &RecordId,
        grant: &GrantId,
    ) -> Option<Revocation> {
        let stored = self
            .signed
            .clone()
            .filter(|r| r.verify() && r.record == *record && r.grant == *grant);
        if stored.is_some() {
            return stored;
        }
        if identity.record_id() != Some(*record) {
            return None;
        }
        Revocation::sign(identity, *grant, self.at).ok()
    }
}

/// Ledger section `grant/<id>`: the details of a grant the patient issued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedGrant {
    /// The chain, as a token.
    pub token: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// To whom.
    pub audience: PeerKey,
    /// The name on the audience's contact card (a claim), if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_name: Option<String>,
    /// The request it answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Whether section keys travelled in the grant.
    pub keys_included: bool,
}

/// Ledger section `request/<id>`: an access request the patient received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestItem {
    /// The signed request, as a token.
    pub token: String,
    /// When it was added.
    pub received_at: Timestamp,
}

/// The patient's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Granted.
    Approved,
    /// Refused.
    Denied,
}

impl Answer {
    /// The word shown to people and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Approved => "approved",
            Answer::Denied => "denied",
        }
    }
}

/// Ledger section `decision/<request id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionItem {
    /// The answer.
    pub decision: Answer,
    /// When.
    pub at: Timestamp,
    /// The grant issued, when approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The patient's reason, when denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The patient's proxy who answered, when not the patient (taken from the proxy's audit
    /// event, checked against the proxy grant the patient issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<PeerKey>,
}

/// Ledger section `trust/<organisation>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustItem {
    /// The organisation's name as the patient gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the patient added it.
    pub added_at: Timestamp,
}

/// Auth document `relay/<peer>`: an organisation relay the patient asked to keep the record
/// (as ciphertext) reachable while the patient's devices are offline. Holders of the record
/// learn from it where to sync when the patient cannot be reached; it counts only while an
/// unrevoked, unexpired `relay` grant to the same peer is recorded too.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RelayItem {
    /// The relay's multiaddresses, as text.
    pub addrs: Vec<String>,
    /// The name the relay gives itself (a claim, shown as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the patient added it.
    pub added_at: Timestamp,
}

/// Auth document `emergency/<organisation>/<at>`: emergency (break-glass) access the patient
/// arranged with an organisation: that organisation's attested professionals may read
/// `scopes`, each use with a signed reason and for at most `max_duration_ms`, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrangementItem {
    /// The sections (read).
    pub scopes: Vec<crate::grant::Scope>,
    /// The longest one use may last.
    pub max_duration_ms: i64,
    /// When the patient arranged it.
    pub arranged_at: Timestamp,
    /// When it ends.
    pub expires: Timestamp,
    /// The organisation's name as the patient gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    /// The organisation's X25519 key-agreement key (signed by its device key, checked when
    /// arranged): the arranged sections' keys are escrowed to it at the record's relays, so
    /// that emergency access works while every one of the patient's devices is offline. None
    /// when the organisation's node could not be asked: then only the patient's own devices
    /// serve an emergency use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<serde_bytes::ByteArray<32>>,
}

/// Local `break-glass/<record>`: the emergency use this node's user signed, and the
/// organisation's credential for them, presented when syncing the record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldEmergency {
    /// The use, as a token.
    pub token: String,
    /// The credential, as a token.
    pub credential: String,
    /// The organisation's log entry for the use, as a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<String>,
}

/// Relay (organisation) node, local `ig-use/<use id>`: an emergency use one of the
/// organisation's professionals had it log, for its IG review (`hearth org audit`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IgUseItem {
    /// The professional's signed use, as a token (record, reason, from when, for how long).
    pub token: String,
    /// The credential they presented, as a token.
    pub credential: String,
    /// The organisation's signed log entry, as a token.
    pub logged: String,
}

/// Local `proxy-request/<record>/<request id>`: an access request received by the patient's
/// proxy, and the proxy's answer once given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyRequestItem {
    /// The signed request, as a token.
    pub token: String,
    /// When it was added.
    pub received_at: Timestamp,
    /// The proxy's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionItem>,
}

/// Local `peer/<peer>`: the addresses a known peer was reached at, newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerAddrs {
    /// Multiaddresses, as text.
    pub addrs: Vec<String>,
}

/// The most addresses remembered per peer.
pub const MAX_PEER_ADDRS: usize = 8;

impl PeerAddrs {
    /// Decodes a stored item (an unreadable one is empty).
    pub fn from_bytes(bytes: &[u8]) -> PeerAddrs {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The item's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_json(self).into_bytes()
    }

    /// Puts `addr` first (moving it if known), keeping at most [`MAX_PEER_ADDRS`].
    pub fn put_first(&mut self, addr: String) {
        self.addrs.retain(|a| *a != addr);
        self.addrs.insert(0, addr);
        self.addrs.truncate(MAX_PEER_ADDRS);
    }
}

/// Implements the JSON codec of ledger-section item types.
macro_rules! json_item {
    ($($t:ident),*) => {$(
        impl $t {
            /// The item's JSON.
            pub fn to_json(&self) -> String {
                to_json(self)
            }

            /// Decodes a stored item.
            pub fn from_json(json: &str) -> Result<$t, Unreadable> {
                serde_json::from_str(json)
                    .map_err(|e| Unreadable(format!("{}: {e}", stringify!($t))))
            }
        }
    )*};
}
json_item!(
    IgUseItem,
    ProxyRequestItem,
    RelayItem,
    IssuedGrant,
    RequestItem,
    DecisionItem,
    TrustItem,
    ArrangementItem,
    HeldEmergency
);
