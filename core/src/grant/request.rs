//! Signed objects that travel before any grant exists: contact cards, organisation
//! credentials, and access requests.
//!
//! - A **card** ([`CardBody`]) is a node introducing itself: peer id, name, role, and its X25519
//!   agreement key, signed by its device key. Granting to a card (rather than a bare peer id)
//!   lets the patient wrap section keys into the grant at once.
//! - A **credential** ([`CredentialBody`]) is an organisation (a relay node's key) attesting a
//!   professional's identity: name, role, registration number, organisation, expiry.
//! - An **access request** ([`RequestBody`]) is a professional asking a patient for access:
//!   sections, ability, purpose, duration, reason, the requester's card and, optionally, a
//!   credential. The patient approves (possibly narrower) or denies.
//!
//! All three are [`Signed`]: canonical CBOR, a domain-separated signature, checked on parse.

use super::token::{self, Envelope, TokenError, TokenKind};
use super::{Ability, MAX_SCOPES, Purpose, Scope};
use crate::crypto::{self, Domain};
use crate::ids::{PeerKey, RecordId};
use crate::keys::{Identity, Role};
use crate::time::Timestamp;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// The longest free text (reason, names) accepted.
pub const MAX_TEXT: usize = 1_000;

/// Why a signed object is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// Could not be read.
    #[error("malformed: {0}")]
    Malformed(#[from] TokenError),
    /// The signature does not verify under the signer named inside.
    #[error("bad signature (altered, or signed by the wrong key)")]
    BadSignature,
    /// A format rule is broken.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// Past its validity.
    #[error("expired at {0}")]
    Expired(Timestamp),
    /// Not valid yet.
    #[error("not valid until {0}")]
    NotYetValid(Timestamp),
}

/// A body that names its signer and its signature domain.
pub trait SignedBody: Serialize + DeserializeOwned + Clone {
    /// The signature domain.
    const DOMAIN: Domain;
    /// The token kind.
    const KIND: TokenKind;
    /// Who must have signed.
    fn signer(&self) -> PeerKey;
    /// Format rules.
    fn check(&self) -> Result<(), SignedError>;
}

/// A verified signed object.
#[derive(Clone, Debug, PartialEq)]
pub struct Signed<T> {
    body: T,
    envelope: Envelope,
    id: [u8; 32],
}

impl<T: SignedBody> Signed<T> {
    /// Signs `body` with `key` (which must be the body's signer).
    pub fn sign(body: T, key: &SigningKey) -> Result<Self, SignedError> {
        if PeerKey(key.verifying_key().to_bytes()) != body.signer() {
            return Err(SignedError::Invalid(
                "signed by a key other than the one named",
            ));
        }
        body.check()?;
        let bytes =
            serde_ipld_dagcbor::to_vec(&body).map_err(|_| SignedError::Invalid("cannot encode"))?;
        let sig = crypto::sign(key, T::DOMAIN, &[&bytes]);
        Ok(Signed {
            id: crypto::sha256(&[&bytes]),
            body,
            envelope: Envelope {
                body: bytes,
                sig: sig.to_vec(),
            },
        })
    }

    /// Parses and verifies an envelope.
    pub fn open(env: Envelope) -> Result<Self, SignedError> {
        let body: T = token::decode_body(&env.body)?;
        body.check()?;
        let key = body
            .signer()
            .verifying_key()
            .map_err(|_| SignedError::BadSignature)?;
        let sig: [u8; 64] = env
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| SignedError::BadSignature)?;
        crypto::verify(&key, T::DOMAIN, &[&env.body], &sig)
            .map_err(|_| SignedError::BadSignature)?;
        Ok(Signed {
            id: crypto::sha256(&[&env.body]),
            body,
            envelope: env,
        })
    }

    /// Parses and verifies a token.
    pub fn from_token(text: &str) -> Result<Self, SignedError> {
        let payload = token::decode(T::KIND, text)?;
        let mut envs = token::decode_envelopes(&payload, 1)?;
        let env = envs.pop().ok_or(SignedError::Invalid("empty"))?;
        Self::open(env)
    }

    /// The text form.
    pub fn to_token(&self) -> String {
        token::encode(
            T::KIND,
            &token::encode_envelopes(std::slice::from_ref(&self.envelope)),
        )
    }

    /// The body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// SHA-256 of the signed body.
    pub fn hash(&self) -> [u8; 32] {
        self.id
    }

    /// A short printable id: the kind's letter and 26 base32 characters of the hash.
    pub fn short_id(&self, letter: char) -> String {
        format!(
            "{letter}{}",
            BASE32_NOPAD.encode(&self.id[..16]).to_ascii_lowercase()
        )
    }
}

pub(super) fn check_text(s: &str, max: usize, what: &'static str) -> Result<(), SignedError> {
    if s.chars().count() > max || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(SignedError::Invalid(what));
    }
    Ok(())
}

/// A node's contact card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardBody {
    /// Version 1.
    pub v: u8,
    /// The node's device key.
    pub peer: PeerKey,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The X25519 key on which it receives wrapped keys.
    pub agreement: ByteArray<32>,
}

impl SignedBody for CardBody {
    const DOMAIN: Domain = Domain::Card;
    const KIND: TokenKind = TokenKind::Card;
    fn signer(&self) -> PeerKey {
        self.peer
    }
    fn check(&self) -> Result<(), SignedError> {
        if self.v != 1 {
            return Err(SignedError::Invalid("unsupported version"));
        }
        crate::crypto::check_agreement_public(&self.agreement.into_array())
            .map_err(|_| SignedError::Invalid("the card's key-agreement key is of small order"))?;
        check_text(&self.name, 200, "name too long or with control characters")
    }
}

/// A signed contact card.
pub type Card = Signed<CardBody>;

/// The card this process signed last. Ed25519 signatures are deterministic (RFC 8032): the same
/// body signed by the key it names is the same card, byte for byte, so a node that sends its
/// card at every sync step signs it once.
static LAST_CARD: std::sync::Mutex<Option<Card>> = std::sync::Mutex::new(None);

/// This node's card.
pub fn card(identity: &Identity) -> Result<Card, SignedError> {
    let body = CardBody {
        v: 1,
        peer: identity.peer(),
        name: identity.name.clone(),
        role: identity.role,
        agreement: ByteArray::new(identity.agreement_public()),
    };
    if let Ok(last) = LAST_CARD.lock()
        && let Some(c) = last.as_ref().filter(|c| c.body == body)
    {
        return Ok(c.clone());
    }
    let c = Signed::sign(body, identity.device_key())?;
    if let Ok(mut last) = LAST_CARD.lock() {
        *last = Some(c.clone());
    }
    Ok(c)
}

/// An organisation's attestation of a professional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// Version 1.
    pub v: u8,
    /// The organisation's key.
    pub org: PeerKey,
    /// The organisation's name.
    pub org_name: String,
    /// The organisation's code (e.g. an ODS code), if any.
    pub org_code: Option<String>,
    /// The professional's device key.
    pub subject: PeerKey,
    /// The professional's name.
    pub name: String,
    /// The professional's role (e.g. an NHS job role code or title).
    pub role: String,
    /// Professional registration number (GMC, NMC, HCPC, Social Work England …).
    pub registration: String,
    /// Issued at.
    pub issued: Timestamp,
    /// Valid until.
    pub expires: Timestamp,
    /// Uniqueness.
    pub nonce: ByteArray<16>,
    /// Where the organisation's node listens (multiaddresses ending in `/p2p/ORG`): where its
    /// professionals' nodes ask it to log an emergency use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

impl SignedBody for CredentialBody {
    const DOMAIN: Domain = Domain::Credential;
    const KIND: TokenKind = TokenKind::Credential;
    fn signer(&self) -> PeerKey {
        self.org
    }
    fn check(&self) -> Result<(), SignedError> {
        if self.v != 1 {
            return Err(SignedError::Invalid("unsupported version"));
        }
        for (s, what) in [
            (&self.org_name, "organisation name"),
            (&self.name, "name"),
            (&self.role, "role"),
            (&self.registration, "registration"),
        ] {
            check_text(s, 200, what)?;
            if s.trim().is_empty() {
                return Err(SignedError::Invalid("empty field in credential"));
            }
        }
        if let Some(c) = &self.org_code {
            check_text(c, 40, "organisation code")?;
        }
        if self.expires <= self.issued {
            return Err(SignedError::Invalid(
                "credential expires before it is issued",
            ));
        }
        if self.org == self.subject {
            return Err(SignedError::Invalid("an organisation cannot attest itself"));
        }
        if self.addresses.len() > super::MAX_ADDRESSES
            || self.addresses.iter().any(|a| a.len() > 256)
        {
            return Err(SignedError::Invalid("too many or too long addresses"));
        }
        Ok(())
    }
}

/// A signed credential.
pub type Credential = Signed<CredentialBody>;

/// What the patient is told about who is asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verification {
    /// A trusted organisation attests this person, and the attestation is current.
    Verified {
        /// Name.
        name: String,
        /// Role.
        role: String,
        /// Registration number.
        registration: String,
        /// Organisation name.
        organisation: String,
        /// Organisation key.
        org: PeerKey,
    },
    /// Not verified, with the reason.
    Unverified {
        /// Why.
        reason: String,
    },
}

impl Verification {
    /// One line for people: "verified: Dr A. Shah, GP, Riverside Practice" or "UNVERIFIED (…)".
    pub fn words(&self) -> String {
        match self {
            Verification::Verified {
                name,
                role,
                organisation,
                ..
            } => format!("verified: {name}, {role}, {organisation}"),
            Verification::Unverified { reason } => format!("UNVERIFIED ({reason})"),
        }
    }
}

/// Checks a credential for `subject` against the trusted organisations at `now`.
pub fn verify_credential(
    cred: Option<&Credential>,
    subject: &PeerKey,
    trusted: &[PeerKey],
    now: Timestamp,
) -> Verification {
    let unverified = |reason: &str| Verification::Unverified {
        reason: reason.to_string(),
    };
    let Some(c) = cred else {
        return unverified("no organisation credential");
    };
    let b = c.body();
    if b.subject != *subject {
        return unverified("the credential names someone else");
    }
    if !trusted.contains(&b.org) {
        return unverified("the attesting organisation is not in your trusted list");
    }
    if now.as_millis()
        > b.expires
            .as_millis()
            .saturating_add(super::CLOCK_TOLERANCE_MS)
    {
        return unverified("the credential has expired");
    }
    if now.as_millis().saturating_add(super::CLOCK_TOLERANCE_MS) < b.issued.as_millis() {
        return unverified("the credential is not valid yet");
    }
    Verification::Verified {
        name: b.name.clone(),
        role: b.role.clone(),
        registration: b.registration.clone(),
        organisation: b.org_name.clone(),
        org: b.org,
    }
}

/// Issues a credential from an organisation node.
#[allow(clippy::too_many_arguments)]
pub fn attest(
    org: &Identity,
    subject: PeerKey,
    name: String,
    role: String,
    registration: String,
    org_code: Option<String>,
    issued: Timestamp,
    expires: Timestamp,
    addresses: Vec<String>,
    rng: &mut impl CryptoRng,
) -> Result<Credential, SignedError> {
    if org.role != Role::Relay {
        return Err(SignedError::Invalid(
            "only an organisation (relay) node attests staff",
        ));
    }
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    Signed::sign(
        CredentialBody {
            v: 1,
            org: org.peer(),
            org_name: org.name.clone(),
            org_code,
            subject,
            name,
            role,
            registration,
            issued,
            expires,
            nonce: ByteArray::new(nonce),
            addresses,
        },
        org.device_key(),
    )
}

/// A professional's request for access.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// Version 1.
    pub v: u8,
    /// The requester's card (device key, name, agreement key).
    pub requester: CardBody,
    /// The record asked for.
    pub record: RecordId,
    /// Sections and ability asked for, sorted.
    pub scopes: Vec<Scope>,
    /// Why.
    pub purpose: Purpose,
    /// For how long, in milliseconds.
    pub duration_ms: i64,
    /// Free-text reason, shown to the patient.
    pub reason: String,
    /// When the request was made.
    pub created: Timestamp,
    /// When the request lapses if not answered.
    pub answer_by: Timestamp,
    /// Uniqueness.
    pub nonce: ByteArray<16>,
    /// The requester's organisation credential, if any.
    pub credential: Option<Envelope>,
}

impl SignedBody for RequestBody {
    const DOMAIN: Domain = Domain::Request;
    const KIND: TokenKind = TokenKind::Request;
    fn signer(&self) -> PeerKey {
        self.requester.peer
    }
    fn check(&self) -> Result<(), SignedError> {
        if self.v != 1 {
            return Err(SignedError::Invalid("unsupported version"));
        }
        self.requester.check()?;
        if self.scopes.is_empty() || self.scopes.len() > MAX_SCOPES {
            return Err(SignedError::Invalid(
                "a request names between 1 and 64 scopes",
            ));
        }
        if self.scopes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SignedError::Invalid("scopes must be sorted and distinct"));
        }
        if self.scopes.iter().any(|s| s.ability > Ability::Append) {
            return Err(SignedError::Invalid(
                "a request may ask for relay, read or append",
            ));
        }
        if self.duration_ms <= 0 || self.duration_ms > super::MAX_VALIDITY_MS {
            return Err(SignedError::Invalid(
                "duration must be positive and at most five years",
            ));
        }
        check_text(
            &self.reason,
            MAX_TEXT,
            "reason too long or with control characters",
        )?;
        if self.reason.trim().is_empty() {
            return Err(SignedError::Invalid("a request needs a reason"));
        }
        if self.answer_by <= self.created {
            return Err(SignedError::Invalid("answer-by is before the request"));
        }
        if let Some(c) = &self.credential {
            let cred = Credential::open(c.clone())
                .map_err(|_| SignedError::Invalid("the attached credential does not verify"))?;
            if cred.body().subject != self.requester.peer {
                return Err(SignedError::Invalid(
                    "the attached credential names someone else",
                ));
            }
        }
        Ok(())
    }
}

/// A signed access request.
pub type AccessRequest = Signed<RequestBody>;

impl AccessRequest {
    /// The attached credential, verified as a signed object.
    pub fn credential(&self) -> Option<Credential> {
        self.body
            .credential
            .as_ref()
            .and_then(|e| Credential::open(e.clone()).ok())
    }

    /// Whether the request is still open for an answer at `now`.
    pub fn check_open(&self, now: Timestamp) -> Result<(), SignedError> {
        if now.as_millis()
            > self
                .body
                .answer_by
                .as_millis()
                .saturating_add(super::CLOCK_TOLERANCE_MS)
        {
            return Err(SignedError::Expired(self.body.answer_by));
        }
        if now.as_millis().saturating_add(super::CLOCK_TOLERANCE_MS) < self.body.created.as_millis()
        {
            return Err(SignedError::NotYetValid(self.body.created));
        }
        Ok(())
    }
}

/// What a professional asks for.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    /// The record.
    pub record: RecordId,
    /// Sections and ability.
    pub scopes: Vec<Scope>,
    /// Why.
    pub purpose: Purpose,
    /// How long.
    pub duration_ms: i64,
    /// Reason for the patient.
    pub reason: String,
    /// How long the patient has to answer, in milliseconds.
    pub answer_within_ms: i64,
}

/// Signs an access request.
pub fn request(
    requester: &Identity,
    spec: RequestSpec,
    credential: Option<&Credential>,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<AccessRequest, SignedError> {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let card = card(requester)?;
    Signed::sign(
        RequestBody {
            v: 1,
            requester: card.body().clone(),
            record: spec.record,
            scopes: spec.scopes,
            purpose: spec.purpose,
            duration_ms: spec.duration_ms,
            reason: spec.reason,
            created: now,
            answer_by: now.saturating_add_millis(spec.answer_within_ms),
            nonce: ByteArray::new(nonce),
            credential: credential.map(|c| c.envelope().clone()),
        },
        requester.device_key(),
    )
}
