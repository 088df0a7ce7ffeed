//! The patient's access list for one relay: who may fetch and store which (opaque) sections,
//! until when, signed by the record root.
//!
//! A relay cannot read the auth document, so it cannot work out from grants who may have
//! what. The patient's node does that ([`crate::session::Local::relay_access`]) and hands the
//! relay the answer: peer keys and section ids only, no names. The relay checks the signature
//! against the record id (the record root's public key), that the list is addressed to itself,
//! that the relay grant inside it verifies at the relay's own clock, and that the list is newer
//! than the one it holds. Each entry's end is the relay's to check, at its own clock.

use hearth_core::audit::Authority;
use hearth_core::crypto::{self, Domain};
use hearth_core::grant::{self, Ability, Access, Grant};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};

/// The largest encoded access list accepted.
pub const MAX_ACCESS_LEN: usize = 512 * 1024;
/// The most entries in one list.
pub const MAX_ENTRIES: usize = 1024;
/// The most emergency arrangements in one list.
pub const MAX_ARRANGEMENTS: usize = 64;

/// An emergency arrangement the patient made with an organisation, as the relay needs it: a
/// professional that organisation attests may fetch `read`, with a use it logged, and the
/// arranged sections' keys escrowed to `agreement` (see
/// [`hearth_core::grant::emergency::check_use`], which the relay runs at its own clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyEntry {
    /// The organisation (the key that signs its staff's credentials and its log entries).
    pub org: PeerKey,
    /// The organisation's X25519 agreement key: the escrow wraps addressed to it are handed
    /// to a professional whose use the relay accepted.
    pub agreement: ByteArray<32>,
    /// The sections a use may fetch.
    pub read: Vec<SectionId>,
    /// The longest one use may last.
    pub max_duration_ms: i64,
    /// When the patient arranged it.
    pub arranged_at: Timestamp,
    /// When it ends.
    pub expires: Timestamp,
}

impl EmergencyEntry {
    /// The arrangement as [`hearth_core::grant::emergency::check_use`] reads it.
    pub fn arrangement(&self) -> hearth_core::ledger::ArrangementItem {
        hearth_core::ledger::ArrangementItem {
            scopes: Vec::new(),
            max_duration_ms: self.max_duration_ms,
            arranged_at: self.arranged_at,
            expires: self.expires,
            org_name: None,
            agreement: Some(self.agreement),
        }
    }
}

/// One peer's rights at the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    /// The peer (its transport-authenticated key).
    pub peer: PeerKey,
    /// A patient device: may fetch and store everything, and supply the relay.
    pub device: bool,
    /// Sections it may fetch.
    pub read: Vec<SectionId>,
    /// Sections it may add its own bundles to.
    pub write: Vec<SectionId>,
    /// When its rights end (its grant's expiry).
    pub until: Timestamp,
    /// The grant it holds (the last link of its chain) and its purpose, named in the relay's
    /// receipts of what it served; none for a patient device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Authority>,
}

/// The list itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessList {
    /// Version 1.
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// The relay it is for.
    pub relay: PeerKey,
    /// Lists replace older ones: a larger number wins (the patient's clock in milliseconds,
    /// kept above the last one sent).
    pub version: u64,
    /// The patient's `relay` grant to this relay (a chain, encoded as stored).
    pub grant: ByteBuf,
    /// Who may do what.
    pub entries: Vec<AccessEntry>,
    /// The emergency arrangements whose keys are escrowed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergency: Vec<EmergencyEntry>,
}

/// A list signed by the record root, as it travels and rests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAccess {
    /// The list's canonical encoding.
    pub body: ByteBuf,
    /// The record root's signature over it.
    pub sig: ByteArray<64>,
}

/// Why a list was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// Not a list, or over a limit.
    #[error("malformed access list")]
    Malformed,
    /// Not signed by the record's root.
    #[error("access list not signed by the record root")]
    BadSignature,
    /// Addressed to another relay or record.
    #[error("access list for another relay or record")]
    Misaddressed,
    /// The relay grant inside does not verify now (expired, not yet valid, not a relay grant).
    #[error("the patient's relay grant does not hold: {0}")]
    Grant(String),
}

impl SignedAccess {
    /// Signs `list` with the record root `identity` holds (`None` if it holds none).
    pub fn sign(identity: &Identity, list: &AccessList) -> Option<SignedAccess> {
        let body = serde_ipld_dagcbor::to_vec(list).ok()?;
        let sig = crypto::sign(identity.root_key()?, Domain::RelayAccess, &[&body]);
        Some(SignedAccess {
            body: ByteBuf::from(body),
            sig: ByteArray::new(sig),
        })
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes, checks and opens a list for `relay` at the relay's clock `now` (see the module
    /// docs); returns it with the end of the relay grant inside it.
    pub fn open(
        bytes: &[u8],
        relay: &PeerKey,
        now: Timestamp,
    ) -> Result<(AccessList, Timestamp), AccessError> {
        if bytes.len() > MAX_ACCESS_LEN {
            return Err(AccessError::Malformed);
        }
        let s: SignedAccess =
            serde_ipld_dagcbor::from_slice(bytes).map_err(|_| AccessError::Malformed)?;
        let list: AccessList =
            serde_ipld_dagcbor::from_slice(&s.body).map_err(|_| AccessError::Malformed)?;
        if list.v != 1
            || list.entries.len() > MAX_ENTRIES
            || list.emergency.len() > MAX_ARRANGEMENTS
        {
            return Err(AccessError::Malformed);
        }
        let root = crypto::verifying_key(&list.record.0).map_err(|_| AccessError::BadSignature)?;
        crypto::verify(&root, Domain::RelayAccess, &[&s.body], &s.sig)
            .map_err(|_| AccessError::BadSignature)?;
        if list.relay != *relay {
            return Err(AccessError::Misaddressed);
        }
        let until = relay_grant_until(&list, relay, now)?;
        Ok((list, until))
    }
}

/// The patient's devices a list names, if it is signed by `record`'s root (a grantee learns
/// them from the relay before it can read the auth document; the signature, not the relay,
/// vouches for them).
pub fn devices_in(bytes: &[u8], record: &RecordId) -> Vec<PeerKey> {
    let open = || -> Option<Vec<PeerKey>> {
        if bytes.len() > MAX_ACCESS_LEN {
            return None;
        }
        let s: SignedAccess = serde_ipld_dagcbor::from_slice(bytes).ok()?;
        let root = crypto::verifying_key(&record.0).ok()?;
        crypto::verify(&root, Domain::RelayAccess, &[&s.body], &s.sig).ok()?;
        let list: AccessList = serde_ipld_dagcbor::from_slice(&s.body).ok()?;
        (list.record == *record).then(|| {
            list.entries
                .iter()
                .filter(|e| e.device)
                .map(|e| e.peer)
                .collect()
        })
    };
    open().unwrap_or_default()
}

/// The end of the patient's `relay` grant to `relay` inside `list`, if it verifies at `now`
/// for this record and grants `relay` and nothing more.
fn relay_grant_until(
    list: &AccessList,
    relay: &PeerKey,
    now: Timestamp,
) -> Result<Timestamp, AccessError> {
    grant_until(&list.grant, &list.record, relay, now)
}

/// Whether `grant` (a chain, encoded) is `record`'s patient's `relay` grant to `relay`,
/// holding at `now`: proof that `relay` keeps the record for its patient (a professional asks
/// for it before presenting an emergency use to a relay it found on the network).
pub fn relay_grant_proves(
    grant: &[u8],
    record: &RecordId,
    relay: &PeerKey,
    now: Timestamp,
) -> bool {
    grant_until(grant, record, relay, now).is_ok()
}

fn grant_until(
    grant: &[u8],
    record: &RecordId,
    relay: &PeerKey,
    now: Timestamp,
) -> Result<Timestamp, AccessError> {
    let chain: Vec<Grant> =
        grant::chain_from_bytes(grant).map_err(|e| AccessError::Grant(e.to_string()))?;
    let leaf = chain.last().ok_or(AccessError::Malformed)?;
    if leaf.body().record != *record
        || leaf.body().audience != *relay
        || leaf
            .body()
            .scopes
            .iter()
            .any(|s| s.ability != Ability::Relay)
    {
        return Err(AccessError::Grant("not a relay grant to this relay".into()));
    }
    grant::verify_chain(&chain, &Access::any(*relay), now, &|_| false)
        .map_err(|e| AccessError::Grant(e.to_string()))?;
    Ok(chain.iter().map(|g| g.body().expires).min().unwrap_or(now))
}

impl AccessList {
    /// The list inside signed bytes a relay kept, if `record`'s root signed it: what a newer
    /// list is compared with ([`AccessList::same_but_version`]). Its relay grant and times are
    /// not checked here; they are whenever the relay decides who may do what
    /// ([`SignedAccess::open`]). A kept list whose signature no longer checks (a damaged store)
    /// is not taken as saying anything, so the next list replaces it.
    pub fn open_kept(bytes: &[u8], record: &RecordId) -> Option<AccessList> {
        let s: SignedAccess = serde_ipld_dagcbor::from_slice(bytes).ok()?;
        AccessList::open_own(&s, record)
            .ok()
            .filter(|l| l.record == *record)
    }

    /// Whether `other` says what this list says, whatever the two versions: a patient's node
    /// signs its list afresh, with a newer version, at every round.
    pub fn same_but_version(&self, other: &AccessList) -> bool {
        // Every field named, so that a field added later is compared too.
        let AccessList {
            v,
            record,
            relay,
            version: _,
            grant,
            entries,
            emergency,
        } = self;
        *v == other.v
            && *record == other.record
            && *relay == other.relay
            && *grant == other.grant
            && *entries == other.entries
            && *emergency == other.emergency
    }

    /// The list inside `signed`, if `record`'s root signed it (no relay or time checks: for the
    /// patient's own node reading back what it signed).
    pub fn open_own(signed: &SignedAccess, record: &RecordId) -> Result<AccessList, AccessError> {
        let root = crypto::verifying_key(&record.0).map_err(|_| AccessError::BadSignature)?;
        crypto::verify(&root, Domain::RelayAccess, &[&signed.body], &signed.sig)
            .map_err(|_| AccessError::BadSignature)?;
        let list: AccessList =
            serde_ipld_dagcbor::from_slice(&signed.body).map_err(|_| AccessError::Malformed)?;
        Ok(list)
    }

    /// The emergency arrangement with `org` that holds at `now`, if any.
    pub fn arrangement(&self, org: &PeerKey, now: Timestamp) -> Option<&EmergencyEntry> {
        self.emergency
            .iter()
            .filter(|e| e.org == *org && e.expires > now)
            .max_by_key(|e| e.arranged_at)
    }

    /// The entry for `peer` that holds at `now`.
    pub fn entry(&self, peer: &PeerKey, now: Timestamp) -> Option<&AccessEntry> {
        self.entries
            .iter()
            .find(|e| e.peer == *peer && e.until >= now)
    }
}

/// The list a device restored from the recovery phrase sends a relay: itself as the patient's
/// only device (the record's devices and grantees are back on the list at the restored node's
/// next supply, once it can read the auth document again), with a `relay` grant it issued now.
pub fn recovery_list(
    identity: &Identity,
    relay: &PeerKey,
    grant: &Grant,
    now: Timestamp,
) -> Option<SignedAccess> {
    let list = AccessList {
        v: 1,
        record: identity.record_id()?,
        relay: *relay,
        version: u64::try_from(now.as_millis()).ok()?,
        grant: ByteBuf::from(grant::chain_to_bytes(std::slice::from_ref(grant))),
        entries: vec![AccessEntry {
            peer: identity.peer(),
            device: true,
            read: Vec::new(),
            write: Vec::new(),
            until: Timestamp::from_millis(i64::MAX),
            authority: None,
        }],
        emergency: Vec::new(),
    };
    SignedAccess::sign(identity, &list)
}
