//! Cryptographic building blocks, each used in exactly one way.
//!
//! - **Signatures**: ed25519 over `"hearth/" || domain || 0x00 || message`, verified with
//!   `verify_strict` (rejects small-order keys and malleable signatures). Every signed object in
//!   Hearth names its own [`Domain`], so a signature made for one purpose can never be replayed
//!   as another.
//! - **Sealing**: XChaCha20-Poly1305 with a random 24-byte nonce and caller-chosen associated
//!   data ([`seal`], [`open`]).
//! - **Key wrapping**: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20-Poly1305 ([`wrap_key`], [`unwrap_key`]).
//! - **Hashing**: SHA-256 ([`sha256`]).
//!
//! Verified signatures and parsed public keys are remembered for the life of the process
//! (module `verified`), so that reopening a record does not repeat the curve arithmetic for
//! signatures already checked.

mod small_order;
mod verified;

pub(crate) use small_order::is_small_order;

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a symmetric key.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// Errors of the primitives. None carries key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The signature does not verify for this key and message: the data was altered or signed
    /// by someone else.
    #[error("signature does not verify")]
    BadSignature,
    /// Authenticated decryption failed: wrong key, or the ciphertext or its associated data was
    /// altered.
    #[error("authenticated decryption failed (wrong key or altered data)")]
    Decrypt,
    /// A public key is not a valid curve point.
    #[error("invalid public key")]
    BadPublicKey,
    /// An X25519 key is all zero or of small order: every shared secret with it is the same
    /// known value, so nothing sealed to it would be secret.
    #[error("key-agreement key is all zero or of small order (refused)")]
    WeakAgreementKey,
    /// A wrapped key could not be unwrapped: not addressed to this key, or altered.
    #[error("wrapped key could not be opened")]
    Unwrap,
    /// A message is longer than the cipher can encrypt.
    #[error("message too large to encrypt")]
    TooLarge,
}

/// What a signature is for. The domain string is part of the signed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Domain {
    /// A bundle of changes to a section.
    Bundle,
    /// A wrapped section key published in the record's keyring.
    KeyWrap,
    /// The record root vouching for every key wrap one relay request carries, at once.
    KeyWraps,
    /// The record root certifying a device key.
    DeviceCert,
    /// A device certifying its X25519 key-agreement key.
    AgreementKey,
    /// A capability grant.
    Grant,
    /// An access request.
    Request,
    /// An organisation credential for a professional.
    Credential,
    /// A challenge response proving possession of a key in a session handshake.
    Handshake,
    /// An event in the consent ledger.
    ConsentEvent,
    /// A node's contact card.
    Card,
    /// A de-identified contribution to a research or planning extract.
    Contribution,
    /// A patient device vouching for a section snapshot that new readers can start from.
    Snapshot,
    /// The record root revoking a grant.
    Revocation,
    /// The record root telling a relay who may fetch and store which sections.
    RelayAccess,
    /// An event in a record's audit log.
    Audit,
    /// A professional using the emergency access a patient arranged with their organisation.
    Emergency,
    /// An organisation logging one of its professionals' emergency uses for its IG review.
    EmergencyLog,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Bundle => b"bundle/v2",
            Domain::KeyWrap => b"keywrap/v1",
            Domain::KeyWraps => b"keywraps/v1",
            Domain::DeviceCert => b"device-cert/v1",
            Domain::AgreementKey => b"agreement-key/v1",
            Domain::Grant => b"grant/v1",
            Domain::Request => b"request/v1",
            Domain::Credential => b"credential/v1",
            Domain::Handshake => b"handshake/v1",
            Domain::ConsentEvent => b"consent-event/v1",
            Domain::Card => b"card/v1",
            Domain::Contribution => b"contribution/v1",
            Domain::Snapshot => b"snapshot/v1",
            Domain::Revocation => b"revocation/v1",
            Domain::RelayAccess => b"relay-access/v1",
            Domain::Audit => b"audit/v1",
            Domain::Emergency => b"emergency/v1",
            Domain::EmergencyLog => b"emergency-log/v1",
        }
    }
}

/// The exact bytes an ed25519 signature covers for `domain` and `parts` (for batch checks).
pub fn domain_message(domain: Domain, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Vec::new();
    write_domain_message(domain, parts, &mut m);
    m
}

/// Appends [`domain_message`] to `m`.
fn write_domain_message(domain: Domain, parts: &[&[u8]], m: &mut Vec<u8>) {
    let label = domain.label();
    let len: usize = parts.iter().map(|p| p.len() + 8).sum();
    m.reserve(8 + label.len() + len);
    m.extend_from_slice(b"hearth/");
    m.extend_from_slice(label);
    m.push(0);
    // Length-prefix each part so that part boundaries are unambiguous.
    for p in parts {
        m.extend_from_slice(&(p.len() as u64).to_be_bytes());
        m.extend_from_slice(p);
    }
}

/// Signs the concatenation of `parts` (each length-prefixed) under `domain`.
pub fn sign(key: &SigningKey, domain: Domain, parts: &[&[u8]]) -> [u8; 64] {
    key.sign(&domain_message(domain, parts)).to_bytes()
}

/// Verifies a signature made by [`sign`] with the same domain and parts.
pub fn verify(
    key: &VerifyingKey,
    domain: Domain,
    parts: &[&[u8]],
    signature: &[u8; 64],
) -> Result<(), CryptoError> {
    let message = domain_message(domain, parts);
    let d = verified::digest(verified::How::Strict, key.as_bytes(), signature, &message);
    if !verified::seen(&d) {
        let sig = Signature::from_bytes(signature);
        key.verify_strict(&message, &sig)
            .map_err(|_| CryptoError::BadSignature)?;
        verified::remember(d);
    }
    verified::accepted(&d);
    Ok(())
}

/// One signature of a batch: the key, the signed parts, the signature.
pub type Signed<'a> = (&'a VerifyingKey, &'a [&'a [u8]], &'a [u8; 64]);

/// Verifies several signatures made by [`sign`] under `domain` in one batch; `Ok` only if
/// every one verifies. The caller refuses weak keys first. A batch whose every signature
/// verified in an earlier batch is accepted from the memo.
pub fn verify_batch(domain: Domain, items: &[Signed<'_>]) -> Result<(), CryptoError> {
    // The messages end to end in one buffer.
    let mut buffer = Vec::new();
    let mut ends = Vec::with_capacity(items.len());
    for (_, parts, _) in items {
        write_domain_message(domain, parts, &mut buffer);
        ends.push(buffer.len());
    }
    let messages: Vec<&[u8]> = ends
        .iter()
        .scan(0, |start, &end| {
            let m = &buffer[*start..end];
            *start = end;
            Some(m)
        })
        .collect();
    let digests: Vec<[u8; 32]> = items
        .iter()
        .zip(&messages)
        .map(|((k, _, s), m)| verified::digest(verified::How::Batch, k.as_bytes(), s, m))
        .collect();
    if !verified::all_seen(&digests) {
        let sigs: Vec<Signature> = items
            .iter()
            .map(|(_, _, s)| Signature::from_bytes(s))
            .collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|(k, _, _)| **k).collect();
        ed25519_dalek::verify_batch(&messages, &sigs, &keys)
            .map_err(|_| CryptoError::BadSignature)?;
        verified::remember_all(&digests);
    }
    digests.iter().for_each(verified::accepted);
    Ok(())
}

/// Runs `f` and returns, with its result, the digests naming every signature it accepted on
/// this thread: what a node may keep, sealed under its own key, to [`vouch`] for later.
pub(crate) fn witnessing<R>(f: impl FnOnce() -> R) -> (R, Vec<[u8; 32]>) {
    verified::witnessing(f)
}

/// Takes digests that [`witnessing`] returned in an earlier process into this process's memo
/// of verified signatures, so the very same (key, signature, message) triples are accepted
/// without the curve arithmetic. Only for digests this node kept where nobody else could
/// write them (sealed under its own key): a digest vouched for is a signature taken as valid.
pub(crate) fn vouch(digests: &[[u8; 32]]) {
    verified::remember_all(digests);
}

/// Parses a 32-byte ed25519 public key, refusing invalid points.
pub fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, CryptoError> {
    verified::parsed_key(bytes).ok_or(CryptoError::BadPublicKey)
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A 256-bit symmetric key, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SymmetricKey([u8; KEY_LEN]);

impl SymmetricKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SymmetricKey(bytes)
    }

    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = [0u8; KEY_LEN];
        rng.fill_bytes(&mut k);
        SymmetricKey(k)
    }

    /// The raw bytes (for wrapping only).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// Encrypts `plaintext` under `key` with the given nonce and associated data.
pub fn seal_with_nonce(
    key: &SymmetricKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let nonce = XNonce::from(*nonce);
    // Encryption only fails for messages longer than the cipher's limit (256 GiB); every caller
    // bounds its input far below that.
    cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default()
}

/// Encrypts `buf` in place under `key` with the given nonce and associated data, and returns the
/// authentication tag: the same ciphertext and tag as [`seal_with_nonce`], without a copy.
/// Fails (leaving `buf` unusable) only for messages over the cipher's limit (256 GiB).
pub fn seal_in_place(
    key: &SymmetricKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let nonce = XNonce::from(*nonce);
    cipher
        .encrypt_inout_detached(&nonce, aad, buf.into())
        .map(Into::into)
        .map_err(|_| CryptoError::TooLarge)
}

/// Decrypts `buf` in place (the ciphertext without its tag) under `key` with the given nonce and
/// associated data, checking `tag`. On failure `buf` is unusable (zeroize it).
pub fn open_in_place(
    key: &SymmetricKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoError> {
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let nonce = XNonce::from(*nonce);
    cipher
        .decrypt_inout_detached(&nonce, aad, buf.into(), &(*tag).into())
        .map_err(|_| CryptoError::Decrypt)
}

/// Encrypts with a fresh random nonce; returns `nonce || ciphertext`.
pub fn seal(key: &SymmetricKey, aad: &[u8], plaintext: &[u8], rng: &mut impl CryptoRng) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = seal_with_nonce(key, &nonce, aad, plaintext);
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The key commitment of a bundle sealed under `key` with `nonce`: a domain-separated SHA-256
/// of both. Stored in the signed header, it makes a ciphertext open under one key only
/// (XChaCha20-Poly1305 by itself does not: two keys can be found for one ciphertext). The nonce
/// is included so that bundles under one key do not carry one repeated value.
pub fn key_commitment(key: &SymmetricKey, nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    sha256(&[b"hearth/bundle-key-commitment/v1", key.as_bytes(), nonce])
}

/// Decrypts with an explicit nonce.
pub fn open_with_nonce(
    key: &SymmetricKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let nonce = XNonce::from(*nonce);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// Decrypts `nonce || ciphertext` produced by [`seal`].
pub fn open(key: &SymmetricKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
    open_with_nonce(key, &nonce, aad, ct)
}

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// An X25519 key-agreement secret for receiving wrapped keys, zeroized on drop. Its public
/// half is computed once, when the secret is made (a scalar multiplication, which opening a
/// record would otherwise repeat for every key wrap it looks at).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AgreementSecret {
    secret: [u8; 32],
    public: [u8; 32],
}

impl AgreementSecret {
    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
        AgreementSecret {
            secret: bytes,
            public: public.to_bytes(),
        }
    }

    /// A fresh random secret.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        let s = Self::from_bytes(k);
        k.zeroize();
        s
    }

    /// Raw bytes, for the encrypted keystore only.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The matching public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

impl std::fmt::Debug for AgreementSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgreementSecret(..)")
    }
}

/// A symmetric key sealed to one recipient's X25519 public key with HPKE.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    /// The HPKE encapsulated key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// The sealed symmetric key (32 bytes + 16-byte tag).
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// Wraps `key` to `recipient` (an X25519 public key). `info` binds the wrap to its context
/// (record, section, epoch), so a wrap cannot be moved to another section.
pub fn wrap_key(
    key: &SymmetricKey,
    recipient: &[u8; 32],
    info: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<WrappedKey, CryptoError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| CryptoError::BadPublicKey)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeAead, Kdf, Kem>(
        &OpModeS::Base,
        &pk,
        info,
        key.as_bytes(),
        b"",
        rng,
    )
    .map_err(|_| CryptoError::BadPublicKey)?;
    Ok(WrappedKey {
        enc: enc.to_bytes().to_vec(),
        ct,
    })
}

/// Opens a key wrapped by [`wrap_key`] with the recipient's secret and the same `info`.
pub fn unwrap_key(
    wrapped: &WrappedKey,
    secret: &AgreementSecret,
    info: &[u8],
) -> Result<SymmetricKey, CryptoError> {
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&secret.secret)
        .map_err(|_| CryptoError::Unwrap)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
        .map_err(|_| CryptoError::Unwrap)?;
    let mut pt = hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        &wrapped.ct,
        b"",
    )
    .map_err(|_| CryptoError::Unwrap)?;
    let result = <[u8; KEY_LEN]>::try_from(pt.as_slice()).map_err(|_| CryptoError::Unwrap);
    pt.zeroize();
    result.map(SymmetricKey)
}

/// The X25519 public key of an ed25519 device key (its Edwards point in Montgomery form), as
/// age does for `ssh-ed25519` recipients. Hearth wraps keys to it only for a grant made to a
/// bare peer id, where the grantee's own certified agreement key is not known: signing and
/// HPKE's DH-KEM sharing one key pair is analysed as jointly secure by Thormarker, "On using the
/// same key pair for Ed25519 and an X25519 based KEM" (ePrint 2021/509). A small-order result
/// is refused.
pub fn device_agreement_public(device: &VerifyingKey) -> Result<[u8; 32], CryptoError> {
    let public = device.to_montgomery().to_bytes();
    check_agreement_public(&public)?;
    Ok(public)
}

/// The secret matching [`device_agreement_public`] for `device`'s key: its expanded ed25519
/// scalar (clamped by X25519 when used).
pub fn device_agreement_secret(device: &SigningKey) -> AgreementSecret {
    let mut bytes = device.to_scalar_bytes();
    let s = AgreementSecret::from_bytes(bytes);
    bytes.zeroize();
    s
}

/// Refuses an X25519 public key that is all zero or of small order (on the curve or its twist).
/// HPKE refuses to wrap to one as well (its shared secret would be all zero); checking where
/// keys are received gives the clearer error, before anything is stored.
pub fn check_agreement_public(public: &[u8; 32]) -> Result<(), CryptoError> {
    // A clamped scalar is a multiple of the cofactor, so it sends exactly the small-order points
    // to the identity, whose u-coordinate is zero; any fixed scalar serves as the probe.
    let contributory = |public: &[u8; 32]| {
        let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
        probe
            .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
            .was_contributory()
    };
    if verified::agreement_key_ok(public, contributory) {
        Ok(())
    } else {
        Err(CryptoError::WeakAgreementKey)
    }
}

/// Derives the X25519 key pair HPKE would derive from `ikm` (RFC 9180 `DeriveKeyPair`); used
/// for the recovery key, which must be reproducible from the recovery phrase.
pub fn derive_agreement_secret(ikm: &[u8]) -> AgreementSecret {
    let (sk, _pk) = Kem::derive_keypair(ikm);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&sk.to_bytes());
    let s = AgreementSecret::from_bytes(bytes);
    bytes.zeroize();
    s
}

/// HKDF-SHA256 expand of `ikm` under `info` to 32 bytes.
pub fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(info, &mut out);
    out
}

#[cfg(test)]
mod tests;
