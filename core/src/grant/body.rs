//! The grant itself: its id, its signed body and the format rules the body keeps, and issuing
//! (a root grant from the record root, a delegation from a grant's holder).

use super::token::{self, Envelope};
use super::verify::check_link;
use super::{
    Ability, MAX_ADDRESSES, MAX_DEPTH, MAX_KEYS, MAX_SCOPES, MAX_VALIDITY_MS, Purpose, Refusal,
    Scope, scopes,
};
use crate::crypto::{self, Domain};
use crate::ids::{PeerKey, RecordId};
use crate::keys::Identity;
use crate::section::SectionSpec;
use crate::time::Timestamp;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use std::fmt;
use std::str::FromStr;

/// A grant's id: SHA-256 of its signed body.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GrantId(pub ByteArray<32>);

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "g{}",
            BASE32_NOPAD.encode(self.0.as_slice()).to_ascii_lowercase()
        )
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({self})")
    }
}

impl FromStr for GrantId {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix('g').ok_or("a grant id starts with 'g'")?;
        let v = BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|_| "not a grant id")?;
        let arr: [u8; 32] = v.try_into().map_err(|_| "not a grant id")?;
        Ok(GrantId(ByteArray::new(arr)))
    }
}

/// A record-time window, as the grant format can carry it: **not supported**. Sync moves whole
/// section logs, so no window could be enforced; a grant carrying one is never issued and never
/// verifies ([`Refusal::WindowNotSupported`]). The field stays in [`GrantBody`] so that such a
/// token still decodes and is refused with that reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// From (inclusive).
    pub from: Option<Timestamp>,
    /// To (inclusive).
    pub to: Option<Timestamp>,
}

/// A section key wrapped to the audience's agreement key, signed by the record root: the same
/// object a record's keyring holds ([`crate::keywrap::KeyWrap`]).
pub type KeyGrant = crate::keywrap::KeyWrap;

/// The signed content of a grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Format version: 1.
    pub v: u8,
    /// Who signs: the record root for a root grant, the parent's audience for a delegation.
    pub issuer: PeerKey,
    /// Who may use it: a device or organisation key.
    pub audience: PeerKey,
    /// The record.
    pub record: RecordId,
    /// What may be done, sorted.
    pub scopes: Vec<Scope>,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until (mandatory).
    pub expires: Timestamp,
    /// A record-time window: not supported, always `None` in a grant that verifies (see
    /// [`Window`]).
    pub window: Option<Window>,
    /// How many further delegations the audience may make.
    pub depth: u8,
    /// Why.
    pub purpose: Purpose,
    /// The parent grant, for a delegation.
    pub parent: Option<GrantId>,
    /// Makes every grant unique.
    pub nonce: ByteArray<16>,
    /// Section keys wrapped to the audience (for `read` and above), when its agreement key was
    /// known at issue time; otherwise keys follow in the first sync session.
    pub keys: Vec<KeyGrant>,
    /// The issuer node's network addresses, to find it, and the record's relays as
    /// [`RELAY_HINT`]`<multiaddress>` (so a grantee can sync through a relay before it has
    /// ever reached the patient's node).
    pub addresses: Vec<String>,
}

/// The prefix of a relay's address among a grant's addresses.
pub const RELAY_HINT: &str = "relay:";

/// The relays' multiaddresses among a grant's addresses.
pub fn relay_hints(addresses: &[String]) -> impl Iterator<Item = &str> {
    addresses.iter().filter_map(|a| a.strip_prefix(RELAY_HINT))
}

/// What to grant: the parts of a [`GrantBody`] a person chooses.
#[derive(Clone, Debug)]
pub struct GrantSpec {
    /// Who.
    pub audience: PeerKey,
    /// What.
    pub scopes: Vec<Scope>,
    /// From when.
    pub not_before: Timestamp,
    /// Until when.
    pub expires: Timestamp,
    /// Further delegation allowed.
    pub depth: u8,
    /// Why.
    pub purpose: Purpose,
    /// The issuer's addresses.
    pub addresses: Vec<String>,
}

impl GrantSpec {
    /// A grant of one ability on `spec` for direct care, no delegation.
    pub fn new(
        audience: PeerKey,
        spec: SectionSpec,
        ability: Ability,
        not_before: Timestamp,
        expires: Timestamp,
    ) -> Self {
        GrantSpec {
            audience,
            scopes: scopes(&spec, ability),
            not_before,
            expires,
            depth: 0,
            purpose: Purpose::DirectCare,
            addresses: Vec::new(),
        }
    }

    /// The body of a grant of this spec by `issuer` on `record`, with a fresh nonce and no
    /// window (windows are never issued).
    fn into_body(
        self,
        issuer: PeerKey,
        record: RecordId,
        parent: Option<GrantId>,
        keys: Vec<KeyGrant>,
        rng: &mut impl CryptoRng,
    ) -> GrantBody {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        GrantBody {
            v: 1,
            issuer,
            audience: self.audience,
            record,
            scopes: self.scopes,
            not_before: self.not_before,
            expires: self.expires,
            window: None,
            depth: self.depth,
            purpose: self.purpose,
            parent,
            nonce: ByteArray::new(nonce),
            keys,
            addresses: self.addresses,
        }
    }
}

/// The record root key and record id of `patient`, or [`Refusal::Invalid`] saying `refusal`
/// when `patient` does not hold a record root (only the record's owner signs grants and
/// revocations from it).
pub(super) fn owner_keys<'a>(
    patient: &'a Identity,
    refusal: &'static str,
) -> Result<(&'a SigningKey, RecordId), Refusal> {
    match (patient.root_key(), patient.record_id()) {
        (Some(k), Some(r)) => Ok((k, r)),
        _ => Err(Refusal::Invalid(refusal)),
    }
}

/// A verified-encoding (not yet verified-signature) grant: body and the exact signed bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub(super) body: GrantBody,
    pub(super) envelope: Envelope,
    pub(super) id: GrantId,
}

/// A grant's id from its signed body's bytes.
pub(super) fn grant_id(body: &[u8]) -> GrantId {
    GrantId(ByteArray::new(crypto::sha256(&[
        b"hearth/grant-id/v1",
        body,
    ])))
}

impl Grant {
    fn sign(body: GrantBody, key: &SigningKey) -> Result<Grant, Refusal> {
        check_body(&body)?;
        if body.window.is_some() {
            return Err(Refusal::WindowNotSupported { link: 0 });
        }
        let bytes =
            serde_ipld_dagcbor::to_vec(&body).map_err(|_| Refusal::Invalid("cannot encode"))?;
        let sig = crypto::sign(key, Domain::Grant, &[&bytes]);
        Ok(Grant {
            id: grant_id(&bytes),
            envelope: Envelope {
                body: bytes,
                sig: sig.to_vec(),
            },
            body,
        })
    }

    /// Issues a root grant from the patient's record root key. `keys` are section keys already
    /// wrapped to the audience.
    pub fn issue_root(
        patient: &Identity,
        spec: GrantSpec,
        keys: &[KeyGrant],
        rng: &mut impl CryptoRng,
    ) -> Result<Grant, Refusal> {
        let (root, record) = owner_keys(patient, "only the record's owner issues root grants")?;
        let issuer = PeerKey(root.verifying_key().to_bytes());
        let body = spec.into_body(issuer, record, None, keys.to_vec(), rng);
        Grant::sign(body, root)
    }

    /// Delegates a narrower grant from `parent` (held by `holder`, whose device key is the
    /// parent's audience). The result is checked against the parent before it is returned.
    pub fn delegate(
        parent: &Grant,
        holder: &Identity,
        spec: GrantSpec,
        rng: &mut impl CryptoRng,
    ) -> Result<Grant, Refusal> {
        if holder.peer() != parent.body.audience {
            return Err(Refusal::WrongAudience);
        }
        let body = spec.into_body(
            holder.peer(),
            parent.body.record,
            Some(parent.id),
            Vec::new(),
            rng,
        );
        check_link(&parent.body, &body, 1)?;
        Grant::sign(body, holder.device_key())
    }

    /// The body (its signature is checked by [`verify_chain`](super::verify_chain)).
    pub fn body(&self) -> &GrantBody {
        &self.body
    }

    /// The id.
    pub fn id(&self) -> GrantId {
        self.id
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Parses one envelope: canonical encoding and format rules, not the signature.
    pub fn from_envelope(env: Envelope) -> Result<Grant, Refusal> {
        let body: GrantBody = token::decode_body(&env.body)?;
        check_body(&body)?;
        Ok(Grant {
            id: grant_id(&env.body),
            body,
            envelope: env,
        })
    }
}

fn check_body(b: &GrantBody) -> Result<(), Refusal> {
    if b.v != 1 {
        return Err(Refusal::Invalid("unsupported grant version"));
    }
    if b.scopes.is_empty() || b.scopes.len() > MAX_SCOPES {
        return Err(Refusal::Invalid("a grant names between 1 and 64 scopes"));
    }
    if b.scopes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Refusal::Invalid("scopes must be sorted and distinct"));
    }
    if b.scopes.iter().any(|s| s.ability == Ability::Admin) {
        return Err(Refusal::Invalid("admin cannot be granted"));
    }
    if b.expires <= b.not_before {
        return Err(Refusal::Invalid("expiry must be after the start"));
    }
    if b.expires
        .as_millis()
        .saturating_sub(b.not_before.as_millis())
        > MAX_VALIDITY_MS
    {
        return Err(Refusal::Invalid("a grant may last five years at most"));
    }
    if let Some(w) = b.window
        && let (Some(f), Some(t)) = (w.from, w.to)
        && f > t
    {
        return Err(Refusal::Invalid("window ends before it starts"));
    }
    if b.depth > MAX_DEPTH {
        return Err(Refusal::Invalid("delegation depth too large"));
    }
    if b.purpose == Purpose::Proxy && b.depth > 1 {
        return Err(Refusal::Invalid(
            "a proxy may answer requests, not pass that power on (depth 1 at most)",
        ));
    }
    if b.addresses.len() > MAX_ADDRESSES || b.addresses.iter().any(|a| a.len() > 256) {
        return Err(Refusal::Invalid("too many or too long addresses"));
    }
    if b.keys.len() > MAX_KEYS {
        return Err(Refusal::Invalid("too many keys"));
    }
    if !b.keys.is_empty() && !b.scopes.iter().any(|s| s.ability.carries_keys()) {
        return Err(Refusal::Invalid("a relay grant carries no keys"));
    }
    if b.keys.iter().any(|k| k.record != b.record) {
        return Err(Refusal::Invalid("a key belongs to another record"));
    }
    if b.audience == b.issuer {
        return Err(Refusal::Invalid("a grant to oneself"));
    }
    Ok(())
}
