//! Keys: who a node is, and how its secrets rest on disk.
//!
//! Every node has an ed25519 **device key** (its libp2p identity and the author key on every
//! bundle it signs) and an X25519 **agreement key** (certified by the device key) on which it
//! receives wrapped section keys. A patient node also holds the **record root key**, whose
//! public half is the record id, and knows the public half of the **recovery key**.
//!
//! The record root key and the recovery key are both derived from 32 bytes of entropy that the
//! patient sees once, at `init`, as a 24-word recovery phrase ([`RecoveryPhrase`]). The words
//! therefore restore the record's identity and unwrap every section key (each is also wrapped to
//! the recovery key).
//!
//! Secrets rest in a [`Keystore`]: a CBOR file sealed with XChaCha20-Poly1305 under a key derived
//! from the passphrase by Argon2id, with the parameters and salt stored beside the ciphertext and
//! bound to it as associated data.

use crate::crypto::{self, AgreementSecret, Domain, SymmetricKey};
use crate::ids::{PeerKey, RecordId};
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The role a node was initialised with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A patient (or their proxy) holding their own record.
    Patient,
    /// A professional holding partial replicas of patients' records.
    Professional,
    /// An organisation's relay node.
    Relay,
}

impl Role {
    /// The lower-case name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Professional => "professional",
            Role::Relay => "relay",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "patient" => Ok(Role::Patient),
            "professional" => Ok(Role::Professional),
            "relay" => Ok(Role::Relay),
            _ => Err(KeyError::UnknownRole),
        }
    }
}

/// Errors about keys and the keystore. None carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase is wrong, or the keystore file was altered.
    #[error("wrong passphrase, or the keystore was altered")]
    WrongPassphraseOrTampered,
    /// The keystore file is not a Hearth keystore or is truncated.
    #[error("keystore file is malformed: {0}")]
    Malformed(&'static str),
    /// The keystore was written by an unknown (newer) format version.
    #[error("keystore format {0} is not supported by this version of hearth")]
    UnsupportedFormat(String),
    /// The stored key-derivation parameters are outside the accepted bounds.
    #[error("keystore key-derivation parameters are out of bounds")]
    KdfParams,
    /// The role is not one of patient, professional, relay.
    #[error("unknown role (expected patient, professional or relay)")]
    UnknownRole,
    /// The recovery phrase is not 24 valid words with a correct checksum.
    #[error("the recovery phrase is not valid: {0}")]
    BadPhrase(String),
    /// The passphrase is empty.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
}

/// The 24-word recovery phrase (BIP-39 English word list), zeroized on drop.
pub struct RecoveryPhrase(Zeroizing<[u8; 32]>);

impl RecoveryPhrase {
    fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut e = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(e.as_mut());
        RecoveryPhrase(e)
    }

    /// Parses the 24 words (case and extra whitespace are ignored).
    pub fn parse(words: &str) -> Result<Self, KeyError> {
        let norm = Zeroizing::new(
            words
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" "),
        );
        let m = bip39::Mnemonic::parse_normalized(&norm)
            .map_err(|e| KeyError::BadPhrase(e.to_string()))?;
        let entropy = Zeroizing::new(m.to_entropy());
        let arr: [u8; 32] = entropy
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadPhrase("expected 24 words".into()))?;
        Ok(RecoveryPhrase(Zeroizing::new(arr)))
    }

    /// The words, space-separated. Show them once; never log them.
    pub fn words(&self) -> Zeroizing<String> {
        match bip39::Mnemonic::from_entropy(self.0.as_ref()) {
            Ok(m) => Zeroizing::new(m.words().collect::<Vec<_>>().join(" ")),
            // 32 bytes is always valid BIP-39 entropy.
            Err(_) => Zeroizing::new(String::new()),
        }
    }

    fn root_key(&self) -> SigningKey {
        let seed = Zeroizing::new(crypto::hkdf32(
            self.0.as_ref(),
            b"hearth",
            b"record-root/v1",
        ));
        SigningKey::from_bytes(&seed)
    }

    /// The id of the record this phrase restores (the public half of the record root key it
    /// derives).
    pub fn record_id(&self) -> RecordId {
        RecordId(self.root_key().verifying_key().to_bytes())
    }

    /// The recovery key-agreement secret: every section key is also wrapped to its public half.
    pub fn recovery_secret(&self) -> AgreementSecret {
        let ikm = Zeroizing::new(crypto::hkdf32(
            self.0.as_ref(),
            b"hearth",
            b"recovery-agreement/v1",
        ));
        crypto::derive_agreement_secret(ikm.as_ref())
    }
}

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhrase(..)")
    }
}

/// A node's keys and profile, decrypted in memory. Secret parts zeroize on drop.
pub struct Identity {
    /// The node's role.
    pub role: Role,
    /// The display name given at `init`.
    pub name: String,
    device: SigningKey,
    agreement: AgreementSecret,
    /// The device key's X25519 form ([`crypto::device_agreement_secret`]): it opens keys a
    /// patient wrapped for a grant made to this node's bare peer id.
    device_agreement: AgreementSecret,
    root: Option<SigningKey>,
    recovery_public: Option<[u8; 32]>,
    /// For a device linked to a patient's record (`hearth init --join`): that record.
    linked: Option<RecordId>,
}

// Every secret field (the device and root signing keys, the agreement secret) zeroizes itself
// on drop, so an `Identity` does too.
impl zeroize::ZeroizeOnDrop for Identity {}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("peer", &self.peer())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A second copy of these keys for a second owner in this process (a short-lived node a
    /// command starts), so that the keystore is not unlocked again: each unlock runs the
    /// passphrase's key derivation, seconds a professional in an emergency should not wait.
    /// Both copies zeroize on drop.
    pub fn duplicate(&self) -> Identity {
        Identity {
            role: self.role,
            name: self.name.clone(),
            device: self.device.clone(),
            agreement: self.agreement.clone(),
            device_agreement: self.device_agreement.clone(),
            root: self.root.clone(),
            recovery_public: self.recovery_public,
            linked: self.linked,
        }
    }

    /// Fresh keys for a new node. A patient also gets a record root key and a recovery phrase,
    /// returned once here for the caller to show.
    pub fn generate(
        role: Role,
        name: String,
        rng: &mut impl CryptoRng,
    ) -> (Identity, Option<RecoveryPhrase>) {
        let device = signing_key(rng);
        let agreement = AgreementSecret::generate(rng);
        let device_agreement = crypto::device_agreement_secret(&device);
        if role == Role::Patient {
            let phrase = RecoveryPhrase::generate(rng);
            let id = Identity {
                role,
                name,
                device,
                agreement,
                device_agreement,
                root: Some(phrase.root_key()),
                recovery_public: Some(phrase.recovery_secret().public()),
                linked: None,
            };
            (id, Some(phrase))
        } else {
            let id = Identity {
                role,
                name,
                device,
                agreement,
                device_agreement,
                root: None,
                recovery_public: None,
                linked: None,
            };
            (id, None)
        }
    }

    /// A new patient device for a record restored from its recovery phrase.
    pub fn recover(name: String, phrase: &RecoveryPhrase, rng: &mut impl CryptoRng) -> Identity {
        let device = signing_key(rng);
        Identity {
            role: Role::Patient,
            name,
            device_agreement: crypto::device_agreement_secret(&device),
            device,
            agreement: AgreementSecret::generate(rng),
            root: Some(phrase.root_key()),
            recovery_public: Some(phrase.recovery_secret().public()),
            linked: None,
        }
    }

    /// Fresh keys for a patient's additional device (`hearth init --join`), to be linked to
    /// the record with [`Identity::link_to`] once the pairing succeeds. It holds no record
    /// root key: the root on the first device certifies it, and it reads and writes the
    /// record's sections, but granting, creating sections and rotating keys stay with the
    /// device that holds the root.
    pub fn new_device(name: String, rng: &mut impl CryptoRng) -> Identity {
        let device = signing_key(rng);
        Identity {
            role: Role::Patient,
            name,
            device_agreement: crypto::device_agreement_secret(&device),
            device,
            agreement: AgreementSecret::generate(rng),
            root: None,
            recovery_public: None,
            linked: None,
        }
    }

    /// The same keys, now linked to `record` (a node holding a root key stays as it is).
    pub fn link_to(mut self, record: RecordId) -> Identity {
        if self.root.is_none() {
            self.linked = Some(record);
        }
        self
    }

    /// This node's device key as a peer key.
    pub fn peer(&self) -> PeerKey {
        PeerKey(self.device.verifying_key().to_bytes())
    }

    /// The device signing key.
    pub fn device_key(&self) -> &SigningKey {
        &self.device
    }

    /// The X25519 secret on which this node receives wrapped keys.
    pub fn agreement_secret(&self) -> &AgreementSecret {
        &self.agreement
    }

    /// The public half of the agreement key.
    pub fn agreement_public(&self) -> [u8; 32] {
        self.agreement.public()
    }

    /// The X25519 form of the device key, on which a patient wraps keys for a grant made to
    /// this node's bare peer id (see [`crate::ids::PeerKey::device_agreement`]).
    pub fn device_agreement_public(&self) -> [u8; 32] {
        self.device_agreement.public()
    }

    /// The secret that opens a key wrapped to `recipient`, if `recipient` is one of this node's
    /// keys: its certified agreement key, or its device key's X25519 form. The one test of
    /// "is this wrap addressed to me".
    pub fn opening_secret(&self, recipient: &[u8; 32]) -> Option<&AgreementSecret> {
        if *recipient == self.agreement.public() {
            Some(&self.agreement)
        } else if *recipient == self.device_agreement.public() {
            Some(&self.device_agreement)
        } else {
            None
        }
    }

    /// The device's signature over its agreement key, so others can trust the X25519 key.
    pub fn agreement_certificate(&self) -> [u8; 64] {
        crypto::sign(
            &self.device,
            Domain::AgreementKey,
            &[&self.agreement_public()],
        )
    }

    /// The patient's record this node belongs to, if any: the one whose root key it holds,
    /// or the one it was linked to.
    pub fn record_id(&self) -> Option<RecordId> {
        self.root
            .as_ref()
            .map(|k| RecordId(k.verifying_key().to_bytes()))
            .or(self.linked)
    }

    /// Whether this node holds the root key of `record` (a patient's first device, or one
    /// restored from the recovery phrase).
    pub fn holds_root_of(&self, record: &RecordId) -> bool {
        self.root
            .as_ref()
            .is_some_and(|k| k.verifying_key().to_bytes() == record.0)
    }

    /// Whether this is a linked device (a patient's device without the root key).
    pub fn is_linked_device(&self) -> bool {
        self.linked.is_some()
    }

    /// The record root signing key (patients only).
    pub fn root_key(&self) -> Option<&SigningKey> {
        self.root.as_ref()
    }

    /// The recovery public key (patients only).
    pub fn recovery_public(&self) -> Option<[u8; 32]> {
        self.recovery_public
    }
}

/// A fresh ed25519 signing key from `rng`.
pub fn signing_key(rng: &mut impl CryptoRng) -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    SigningKey::from_bytes(&seed)
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
}

impl KdfParams {
    /// The parameters used for new keystores: OWASP's Argon2id recommendation
    /// (19 MiB, 2 iterations, 1 lane).
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };

    fn check(&self) -> Result<(), KeyError> {
        // Refuse parameters a tampered file could use to exhaust memory or time, and ones too
        // weak to protect anything.
        let ok = (8 * 1024..=1024 * 1024).contains(&self.m_kib)
            && (1..=16).contains(&self.t)
            && (1..=8).contains(&self.p);
        if ok { Ok(()) } else { Err(KeyError::KdfParams) }
    }
}

const KEYSTORE_FORMAT: &str = "hearth-keystore/1";

/// The on-disk keystore: public parameters plus the sealed secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Keystore {
    format: String,
    kdf: KdfParams,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

#[derive(Serialize, Deserialize, Zeroize)]
#[zeroize(drop)]
struct Secrets {
    #[zeroize(skip)]
    role: Role,
    name: String,
    device: [u8; 32],
    agreement: [u8; 32],
    root: Option<[u8; 32]>,
    recovery_public: Option<[u8; 32]>,
    #[serde(default)]
    linked: Option<[u8; 32]>,
}

fn derive_key(passphrase: &[u8], salt: &[u8], kdf: KdfParams) -> Result<SymmetricKey, KeyError> {
    if passphrase.is_empty() {
        return Err(KeyError::EmptyPassphrase);
    }
    kdf.check()?;
    let params =
        argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|_| KeyError::KdfParams)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|_| KeyError::KdfParams)?;
    Ok(SymmetricKey::from_bytes(*out))
}

impl Keystore {
    /// Seals `identity` under `passphrase`.
    pub fn seal(
        identity: &Identity,
        passphrase: &[u8],
        kdf: KdfParams,
        rng: &mut impl CryptoRng,
    ) -> Result<Keystore, KeyError> {
        let mut salt = vec![0u8; 16];
        rng.fill_bytes(&mut salt);
        let key = derive_key(passphrase, &salt, kdf)?;
        let secrets = Secrets {
            role: identity.role,
            name: identity.name.clone(),
            device: identity.device.to_bytes(),
            agreement: *identity.agreement.as_bytes(),
            root: identity.root.as_ref().map(|k| k.to_bytes()),
            recovery_public: identity.recovery_public,
            linked: identity.linked.map(|r| r.0),
        };
        let plain = Zeroizing::new(
            serde_ipld_dagcbor::to_vec(&secrets).map_err(|_| KeyError::Malformed("encode"))?,
        );
        let aad = Self::aad(KEYSTORE_FORMAT, &kdf, &salt);
        let sealed = crypto::seal(&key, &aad, &plain, rng);
        Ok(Keystore {
            format: KEYSTORE_FORMAT.to_string(),
            kdf,
            salt,
            sealed,
        })
    }

    fn aad(format: &str, kdf: &KdfParams, salt: &[u8]) -> Vec<u8> {
        let mut aad = format.as_bytes().to_vec();
        aad.extend_from_slice(&kdf.m_kib.to_be_bytes());
        aad.extend_from_slice(&kdf.t.to_be_bytes());
        aad.extend_from_slice(&kdf.p.to_be_bytes());
        aad.extend_from_slice(salt);
        aad
    }

    /// Opens the keystore with `passphrase`.
    pub fn open(&self, passphrase: &[u8]) -> Result<Identity, KeyError> {
        if self.format != KEYSTORE_FORMAT {
            return Err(KeyError::UnsupportedFormat(
                self.format.chars().take(40).collect(),
            ));
        }
        if self.salt.len() != 16 {
            return Err(KeyError::Malformed("salt"));
        }
        let key = derive_key(passphrase, &self.salt, self.kdf)?;
        let aad = Self::aad(&self.format, &self.kdf, &self.salt);
        let plain = Zeroizing::new(
            crypto::open(&key, &aad, &self.sealed)
                .map_err(|_| KeyError::WrongPassphraseOrTampered)?,
        );
        let s: Secrets =
            serde_ipld_dagcbor::from_slice(&plain).map_err(|_| KeyError::Malformed("secrets"))?;
        let device = SigningKey::from_bytes(&s.device);
        Ok(Identity {
            role: s.role,
            name: s.name.clone(),
            device_agreement: crypto::device_agreement_secret(&device),
            device,
            agreement: AgreementSecret::from_bytes(s.agreement),
            root: s.root.map(|r| SigningKey::from_bytes(&r)),
            recovery_public: s.recovery_public,
            linked: s.linked.map(RecordId),
        })
    }

    /// Re-seals the same secrets under a new passphrase.
    pub fn change_passphrase(
        &self,
        old: &[u8],
        new: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Keystore, KeyError> {
        let id = self.open(old)?;
        Keystore::seal(&id, new, self.kdf, rng)
    }

    /// The CBOR bytes to write to disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(self).unwrap_or_default()
    }

    /// Parses keystore bytes (at most 64 KiB).
    pub fn from_bytes(bytes: &[u8]) -> Result<Keystore, KeyError> {
        if bytes.len() > 64 * 1024 {
            return Err(KeyError::Malformed("too large"));
        }
        serde_ipld_dagcbor::from_slice(bytes).map_err(|_| KeyError::Malformed("not a keystore"))
    }
}

#[cfg(test)]
mod tests;
