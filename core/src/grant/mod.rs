//! Capabilities: grants, delegation, verification, access requests and credentials.
//!
//! A **grant** is a certificate signed by its issuer: this audience may exercise these
//! abilities on these sections of this record, from `not_before` until `expires` (mandatory),
//! for this purpose. The patient's
//! record root key issues root grants; a grant with `depth > 0` lets its audience (typically an
//! organisation) **delegate** a narrower grant to another key (a member of staff), naming its
//! parent by hash. Delegation only ever attenuates: scopes and validity lie within the
//! parent's, and depth strictly decreases.
//!
//! **Record-time windows are not supported.** The format has room for one ([`Window`]), but
//! sync moves whole section logs, so a window could not be enforced; judging it by an entry's
//! self-declared time would be no check at all. Issuing never writes one, and [`verify_chain`]
//! refuses any chain carrying one ([`Refusal::WindowNotSupported`]), so no grant claims a limit
//! that is not enforced.
//!
//! [`verify_chain`] is the one pure function that decides: given a chain (root first), who
//! presents it, what they ask for, the time and the revocation set, it returns the rights granted
//! or a typed [`Refusal`]. It allows ±60 s of clock difference. A grant is never a bearer token:
//! the holder proves its key ([`challenge`]) and verification checks the holder is the audience.
//!
//! Signatures of a chain are checked together with ed25519 batch verification, after refusing
//! weak (small-order) keys.
//!
//! ```
//! use hearth_core::grant::{Ability, Grant, GrantSpec, Purpose, verify_chain, Access};
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::test_utils::{TestRng, TEST_NOW};
//!
//! let mut rng = TestRng::new(1);
//! let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
//! let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
//! let spec = GrantSpec::new(
//!     gp.peer(),
//!     "notes,medications".parse().unwrap(),
//!     Ability::Read,
//!     TEST_NOW,
//!     TEST_NOW.saturating_add_millis(30 * 86_400_000),
//! );
//! let grant = Grant::issue_root(&patient, spec, &[], &mut rng).unwrap();
//! let chain = vec![grant];
//! let access = Access::section(gp.peer(), "notes".parse().unwrap(), Ability::Read);
//! let rights = verify_chain(&chain, &access, TEST_NOW, &|_| false).unwrap();
//! assert_eq!(rights.purpose, Purpose::DirectCare);
//! let denied = Access::section(gp.peer(), "notes:mental-health".parse().unwrap(), Ability::Read);
//! assert!(verify_chain(&chain, &denied, TEST_NOW, &|_| false).is_err());
//! ```

pub mod challenge;
pub mod interop;
pub mod request;
pub mod token;

use crate::crypto::{self, Domain};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::section::{Label, SectionClass, SectionName, SectionPattern, SectionSpec};
use crate::time::Timestamp;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use token::{Envelope, TokenError, TokenKind};

/// Clock difference tolerated between nodes, in milliseconds.
pub const CLOCK_TOLERANCE_MS: i64 = 60_000;
/// The longest chain accepted.
pub const MAX_CHAIN: usize = 4;
/// The most scopes in one grant.
pub const MAX_SCOPES: usize = 64;
/// The most addresses a grant carries.
pub const MAX_ADDRESSES: usize = 8;
/// The most wrapped keys a grant carries.
pub const MAX_KEYS: usize = 128;
/// The longest validity a grant may have (five years).
pub const MAX_VALIDITY_MS: i64 = 5 * 366 * 86_400_000;
/// The deepest delegation allowed.
pub const MAX_DEPTH: u8 = 3;

/// What a holder may do with a section. Ordered: each includes those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ability {
    /// Store and forward ciphertext, without keys (relays).
    Relay,
    /// Decrypt and read.
    Read,
    /// Read, add entries, and add new versions of one's own entries.
    Append,
    /// Everything: the patient's own devices.
    Admin,
}

impl Ability {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ability::Relay => "relay",
            Ability::Read => "read",
            Ability::Append => "append",
            Ability::Admin => "admin",
        }
    }

    /// Whether a holder of this ability receives section keys: `read` and above. `relay`
    /// never does (it stores and forwards ciphertext); see [`key_sections`].
    pub fn carries_keys(self) -> bool {
        self >= Ability::Read
    }
}

impl FromStr for Ability {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "relay" => Ok(Ability::Relay),
            "read" => Ok(Ability::Read),
            "append" => Ok(Ability::Append),
            "admin" => Ok(Ability::Admin),
            _ => Err("ability must be relay, read, append or admin"),
        }
    }
}

/// Why access is sought (FHIR purpose of use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Direct care of the patient.
    DirectCare,
    /// Social care of the patient.
    SocialCare,
    /// Emergency treatment.
    Emergency,
    /// Research.
    Research,
    /// Planning and commissioning of services.
    Planning,
}

impl Purpose {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::DirectCare => "direct-care",
            Purpose::SocialCare => "social-care",
            Purpose::Emergency => "emergency",
            Purpose::Research => "research",
            Purpose::Planning => "planning",
        }
    }

    /// Plain words for people.
    pub fn words(self) -> &'static str {
        match self {
            Purpose::DirectCare => "direct care",
            Purpose::SocialCare => "social care",
            Purpose::Emergency => "emergency treatment",
            Purpose::Research => "research",
            Purpose::Planning => "planning services",
        }
    }
}

impl FromStr for Purpose {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct-care" => Ok(Purpose::DirectCare),
            "social-care" => Ok(Purpose::SocialCare),
            "emergency" => Ok(Purpose::Emergency),
            "research" => Ok(Purpose::Research),
            "planning" => Ok(Purpose::Planning),
            _ => Err("purpose must be direct-care, social-care, emergency, research or planning"),
        }
    }
}

/// One scope: a section pattern (class and one label, or every label) and an ability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The section class.
    pub class: SectionClass,
    /// One label, or `None` for every label.
    pub label: Option<Label>,
    /// The ability.
    pub ability: Ability,
}

impl Scope {
    /// Whether this scope allows `ability` on section `name`.
    pub fn allows(&self, name: &SectionName, ability: Ability) -> bool {
        self.pattern().matches(name) && self.ability >= ability
    }

    /// Whether `other` is within this scope.
    pub fn covers(&self, other: &Scope) -> bool {
        self.class == other.class
            && self.ability >= other.ability
            && match (self.label, other.label) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            }
    }

    /// The section pattern.
    pub fn pattern(&self) -> SectionPattern {
        SectionPattern {
            class: self.class,
            label: self.label,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pattern(), self.ability.as_str())
    }
}

/// Scopes for every pattern of `spec` with one ability.
pub fn scopes(spec: &SectionSpec, ability: Ability) -> Vec<Scope> {
    let mut v: Vec<Scope> = spec
        .0
        .iter()
        .map(|p| Scope {
            class: p.class,
            label: p.label,
            ability,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The sections whose keys a holder of `scopes` may receive, among the sections of
/// `directory`: the auth document and every section a scope lets it read, or none at all when
/// no scope carries keys ([`Ability::carries_keys`]: a `relay`-only holder gets no key, not
/// even the auth document's). The one rule every path that wraps keys for a grantee follows
/// (sync sessions, keys embedded in grants, approved requests).
pub fn key_sections(
    scopes: &[Scope],
    directory: &BTreeMap<SectionId, SectionName>,
) -> Vec<SectionId> {
    if !scopes.iter().any(|s| s.ability.carries_keys()) {
        return Vec::new();
    }
    std::iter::once(SectionId::AUTH)
        .chain(
            directory
                .iter()
                .filter(|(_, n)| scopes.iter().any(|s| s.allows(n, Ability::Read)))
                .map(|(s, _)| *s),
        )
        .collect()
}

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
    /// The issuer node's network addresses, to find it.
    pub addresses: Vec<String>,
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
}

/// A verified-encoding (not yet verified-signature) grant: body and the exact signed bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    body: GrantBody,
    envelope: Envelope,
    id: GrantId,
}

/// Why a grant (chain) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The token could not be read.
    #[error("malformed grant: {0}")]
    Malformed(#[from] TokenError),
    /// A rule of the format is broken (e.g. no scopes, validity too long).
    #[error("invalid grant: {0}")]
    Invalid(&'static str),
    /// A signature does not verify (altered, or signed by the wrong key).
    #[error("bad signature on link {link} of the chain")]
    BadSignature {
        /// 0 for the root grant.
        link: usize,
    },
    /// The chain does not start at the record's root key.
    #[error("unknown issuer: the first grant is not signed by the record's owner")]
    UnknownIssuer,
    /// A link does not name its parent or was not issued by the parent's audience.
    #[error("broken chain at link {link}")]
    BrokenChain {
        /// The link.
        link: usize,
    },
    /// A delegation is wider than its parent.
    #[error("scope exceeded at link {link}: {what}")]
    ScopeExceeded {
        /// The link (or the chain's length for the requested access).
        link: usize,
        /// What exceeds.
        what: &'static str,
    },
    /// A delegation at depth 0, or not strictly decreasing.
    #[error("delegation depth exceeded at link {link}")]
    DepthExceeded {
        /// The link.
        link: usize,
    },
    /// Expired.
    #[error("expired at {at}")]
    Expired {
        /// When.
        at: Timestamp,
    },
    /// Not valid yet.
    #[error("not valid until {from}")]
    NotYetValid {
        /// From when.
        from: Timestamp,
    },
    /// A link has been revoked.
    #[error("revoked (link {link})")]
    Revoked {
        /// The link.
        link: usize,
    },
    /// The presenter is not the audience.
    #[error("wrong audience: this grant was issued to someone else")]
    WrongAudience,
    /// A link names another record.
    #[error("the chain mixes records")]
    WrongRecord,
    /// A link carries a record-time window, which Hearth does not enforce (see [`Window`]).
    #[error("record-time windows are not supported (link {link} carries one)")]
    WindowNotSupported {
        /// The link.
        link: usize,
    },
}

fn grant_id(body: &[u8]) -> GrantId {
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
        let (root, record) = match (patient.root_key(), patient.record_id()) {
            (Some(k), Some(r)) => (k, r),
            _ => {
                return Err(Refusal::Invalid(
                    "only the record's owner issues root grants",
                ));
            }
        };
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let body = GrantBody {
            v: 1,
            issuer: PeerKey(root.verifying_key().to_bytes()),
            audience: spec.audience,
            record,
            scopes: spec.scopes,
            not_before: spec.not_before,
            expires: spec.expires,
            window: None,
            depth: spec.depth,
            purpose: spec.purpose,
            parent: None,
            nonce: ByteArray::new(nonce),
            keys: keys.to_vec(),
            addresses: spec.addresses,
        };
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
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let body = GrantBody {
            v: 1,
            issuer: holder.peer(),
            audience: spec.audience,
            record: parent.body.record,
            scopes: spec.scopes,
            not_before: spec.not_before,
            expires: spec.expires,
            window: None,
            depth: spec.depth,
            purpose: spec.purpose,
            parent: Some(parent.id),
            nonce: ByteArray::new(nonce),
            keys: Vec::new(),
            addresses: spec.addresses,
        };
        check_link(&parent.body, &body, 1)?;
        Grant::sign(body, holder.device_key())
    }

    /// The body (its signature is checked by [`verify_chain`]).
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

/// Encodes a chain (root first) as a `HEARTH1G…` token.
pub fn chain_to_token(chain: &[Grant]) -> String {
    let envs: Vec<Envelope> = chain.iter().map(|g| g.envelope.clone()).collect();
    token::encode(TokenKind::Grant, &token::encode_envelopes(&envs))
}

/// Parses a `HEARTH1G…` token into a chain (structure only; verify with [`verify_chain`]).
pub fn chain_from_token(text: &str) -> Result<Vec<Grant>, Refusal> {
    let payload = token::decode(TokenKind::Grant, text)?;
    chain_from_bytes(&payload)
}

/// Parses an encoded chain (as stored).
pub fn chain_from_bytes(bytes: &[u8]) -> Result<Vec<Grant>, Refusal> {
    let envs = token::decode_envelopes(bytes, MAX_CHAIN)?;
    envs.into_iter().map(Grant::from_envelope).collect()
}

/// Encodes a chain for storage.
pub fn chain_to_bytes(chain: &[Grant]) -> Vec<u8> {
    let envs: Vec<Envelope> = chain.iter().map(|g| g.envelope.clone()).collect();
    token::encode_envelopes(&envs)
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

/// Checks that `child` (at position `link`) stays within `parent`.
fn check_link(parent: &GrantBody, child: &GrantBody, link: usize) -> Result<(), Refusal> {
    if child.record != parent.record {
        return Err(Refusal::WrongRecord);
    }
    if child.issuer != parent.audience {
        return Err(Refusal::BrokenChain { link });
    }
    if parent.depth == 0 || child.depth >= parent.depth {
        return Err(Refusal::DepthExceeded { link });
    }
    for s in &child.scopes {
        if !parent.scopes.iter().any(|p| p.covers(s)) {
            return Err(Refusal::ScopeExceeded {
                link,
                what: "a section or ability the parent does not grant",
            });
        }
    }
    if child.expires > parent.expires || child.not_before < parent.not_before {
        return Err(Refusal::ScopeExceeded {
            link,
            what: "validity outside the parent's",
        });
    }
    if child.purpose != parent.purpose {
        return Err(Refusal::ScopeExceeded {
            link,
            what: "a different purpose from the parent's",
        });
    }
    Ok(())
}

/// The record root's signed statement that a grant is revoked from `at`. A grantee's node
/// learns the revocations of its own grants from the patient's node when it is refused, checks
/// them against the record root ([`Revocation::verify`]) and shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The record.
    pub record: RecordId,
    /// The grant revoked.
    pub grant: GrantId,
    /// When it was revoked.
    pub at: Timestamp,
    /// The record root's signature over the three fields above.
    pub sig: ByteArray<64>,
}

impl Revocation {
    fn parts(record: &RecordId, grant: &GrantId, at: Timestamp) -> [Vec<u8>; 3] {
        [
            record.0.to_vec(),
            grant.0.to_vec(),
            at.as_millis().to_be_bytes().to_vec(),
        ]
    }

    /// Signs a revocation of `grant` with the record root of `patient`.
    pub fn sign(patient: &Identity, grant: GrantId, at: Timestamp) -> Result<Revocation, Refusal> {
        let (root, record) = match (patient.root_key(), patient.record_id()) {
            (Some(k), Some(r)) => (k, r),
            _ => {
                return Err(Refusal::Invalid(
                    "only the record's owner signs revocations",
                ));
            }
        };
        let [a, b, c] = Revocation::parts(&record, &grant, at);
        let sig = crypto::sign(root, Domain::Revocation, &[&a, &b, &c]);
        Ok(Revocation {
            record,
            grant,
            at,
            sig: ByteArray::new(sig),
        })
    }

    /// Whether the record root of `record` signed it.
    pub fn verify(&self) -> bool {
        let Ok(key) = crypto::verifying_key(&self.record.0) else {
            return false;
        };
        let [a, b, c] = Revocation::parts(&self.record, &self.grant, self.at);
        crypto::verify(&key, Domain::Revocation, &[&a, &b, &c], &self.sig).is_ok()
    }

    /// Its canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes one, checking its signature.
    pub fn from_bytes(bytes: &[u8]) -> Option<Revocation> {
        if bytes.len() > 1024 {
            return None;
        }
        let r: Revocation = serde_ipld_dagcbor::from_slice(bytes).ok()?;
        r.verify().then_some(r)
    }
}

/// What is being asked of a chain.
#[derive(Clone, Debug)]
pub struct Access {
    /// Who presents the chain (proven by the session handshake).
    pub holder: PeerKey,
    /// A section and ability sought, or `None` to check only that the chain is valid for the
    /// holder.
    pub want: Option<(SectionName, Ability)>,
}

impl Access {
    /// Access to one section with one ability.
    pub fn section(holder: PeerKey, name: SectionName, ability: Ability) -> Self {
        Access {
            holder,
            want: Some((name, ability)),
        }
    }

    /// Only that the chain is valid for `holder`.
    pub fn any(holder: PeerKey) -> Self {
        Access { holder, want: None }
    }
}

/// What a valid chain grants.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rights {
    /// The record.
    pub record: RecordId,
    /// The holder.
    pub holder: PeerKey,
    /// The holder's scopes (the last link's).
    pub scopes: Vec<Scope>,
    /// Valid from (latest of the chain).
    pub not_before: Timestamp,
    /// Valid until (earliest of the chain).
    pub expires: Timestamp,
    /// Why.
    pub purpose: Purpose,
    /// Further delegations allowed.
    pub depth: u8,
    /// The chain's ids, root first.
    pub chain: Vec<GrantId>,
}

impl Rights {
    /// Whether these rights allow `ability` on `name`.
    pub fn allows(&self, name: &SectionName, ability: Ability) -> bool {
        self.scopes.iter().any(|s| s.allows(name, ability))
    }
}

/// Verifies a chain (root grant first) for `access` at `now`. `revoked` says whether a grant id
/// has been revoked. Pure: same inputs, same answer.
pub fn verify_chain(
    chain: &[Grant],
    access: &Access,
    now: Timestamp,
    revoked: &dyn Fn(&GrantId) -> bool,
) -> Result<Rights, Refusal> {
    let root = chain.first().ok_or(Refusal::Invalid("empty chain"))?;
    if chain.len() > MAX_CHAIN {
        return Err(Refusal::Invalid("chain too long"));
    }
    let record = root.body.record;
    if root.body.issuer.0 != record.0 || root.body.parent.is_some() {
        return Err(Refusal::UnknownIssuer);
    }
    // A window would be a limit nobody enforces: no chain carrying one verifies.
    if let Some(link) = chain.iter().position(|g| g.body.window.is_some()) {
        return Err(Refusal::WindowNotSupported { link });
    }
    // Structure first (cheap), signatures after.
    for (i, pair) in chain.windows(2).enumerate() {
        let (parent, child) = (&pair[0], &pair[1]);
        if child.body.parent != Some(parent.id) {
            return Err(Refusal::BrokenChain { link: i + 1 });
        }
        check_link(&parent.body, &child.body, i + 1)?;
    }
    verify_signatures(chain)?;
    for (i, g) in chain.iter().enumerate() {
        if revoked(&g.id) {
            return Err(Refusal::Revoked { link: i });
        }
    }
    let leaf = &chain[chain.len() - 1];
    let not_before = chain
        .iter()
        .map(|g| g.body.not_before)
        .max()
        .unwrap_or(leaf.body.not_before);
    let expires = chain
        .iter()
        .map(|g| g.body.expires)
        .min()
        .unwrap_or(leaf.body.expires);
    if now.as_millis() > expires.as_millis().saturating_add(CLOCK_TOLERANCE_MS) {
        return Err(Refusal::Expired { at: expires });
    }
    if now.as_millis().saturating_add(CLOCK_TOLERANCE_MS) < not_before.as_millis() {
        return Err(Refusal::NotYetValid { from: not_before });
    }
    if leaf.body.audience != access.holder {
        return Err(Refusal::WrongAudience);
    }
    let rights = Rights {
        record,
        holder: access.holder,
        scopes: leaf.body.scopes.clone(),
        not_before,
        expires,
        purpose: leaf.body.purpose,
        depth: leaf.body.depth,
        chain: chain.iter().map(|g| g.id).collect(),
    };
    if let Some((name, ability)) = &access.want
        && !rights.allows(name, *ability)
    {
        return Err(Refusal::ScopeExceeded {
            link: chain.len(),
            what: "the section or ability asked for is not granted",
        });
    }
    Ok(rights)
}

/// Checks every signature of the chain with one batch verification, after refusing weak keys;
/// on failure, finds the first bad link.
fn verify_signatures(chain: &[Grant]) -> Result<(), Refusal> {
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(chain.len());
    let mut sigs: Vec<Signature> = Vec::with_capacity(chain.len());
    let mut msgs: Vec<Vec<u8>> = Vec::with_capacity(chain.len());
    for (i, g) in chain.iter().enumerate() {
        let key = g
            .body
            .issuer
            .verifying_key()
            .map_err(|_| Refusal::BadSignature { link: i })?;
        if key.is_weak() {
            return Err(Refusal::BadSignature { link: i });
        }
        let sig: [u8; 64] = g
            .envelope
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| Refusal::BadSignature { link: i })?;
        keys.push(key);
        sigs.push(Signature::from_bytes(&sig));
        msgs.push(crypto::domain_message(Domain::Grant, &[&g.envelope.body]));
    }
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (i, g) in chain.iter().enumerate() {
        let sig: [u8; 64] = g.envelope.sig.as_slice().try_into().unwrap_or([0; 64]);
        if crypto::verify(&keys[i], Domain::Grant, &[&g.envelope.body], &sig).is_err() {
            return Err(Refusal::BadSignature { link: i });
        }
    }
    // Individually valid but the batch failed: refuse all the same.
    Err(Refusal::BadSignature { link: 0 })
}

#[cfg(test)]
mod tests;
