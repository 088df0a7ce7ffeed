//! Section keys wrapped to one recipient: [`KeyWrap`], the object a record's keyring holds
//! and a grant carries. It lives apart from both, so that the record engine and the grants
//! each use it without depending on the other.

use crate::crypto::{self, AgreementSecret, CryptoError, Domain, SymmetricKey, WrappedKey};
use crate::ids::{RecordId, SectionId};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// [`KeyWrap::create`]'s refusal: the recipient's key is not a valid X25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("recipient key is not a valid X25519 key")]
pub struct BadRecipient;

/// A section key wrapped to one recipient's X25519 key, signed by the record root. Stored in a
/// record's keyring and carried in grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWrap {
    /// The record.
    pub record: RecordId,
    /// The section ([`SectionId::AUTH`] for the auth document).
    pub section: SectionId,
    /// The key epoch.
    pub epoch: u32,
    /// The recipient's X25519 public key.
    pub recipient: ByteArray<32>,
    /// The HPKE-sealed key.
    pub wrapped: WrappedKey,
    /// The record root's signature.
    pub signature: ByteArray<64>,
}

impl KeyWrap {
    fn signed_parts(&self) -> Vec<Vec<u8>> {
        vec![
            self.record.0.to_vec(),
            self.section.0.to_vec(),
            self.epoch.to_be_bytes().to_vec(),
            self.recipient.to_vec(),
            self.wrapped.enc.clone(),
            self.wrapped.ct.clone(),
        ]
    }

    /// The HPKE `info` a wrap of `section`'s key at `epoch` is sealed with.
    fn info(record: &RecordId, section: &SectionId, epoch: u32) -> Vec<u8> {
        let mut info = b"hearth/section-key/v1".to_vec();
        info.extend_from_slice(&record.0);
        info.extend_from_slice(&section.0);
        info.extend_from_slice(&epoch.to_be_bytes());
        info
    }

    /// Wraps `key` to `recipient` and signs the wrap with the record root key.
    pub fn create(
        root: &ed25519_dalek::SigningKey,
        record: RecordId,
        section: SectionId,
        epoch: u32,
        key: &SymmetricKey,
        recipient: [u8; 32],
        rng: &mut impl CryptoRng,
    ) -> Result<KeyWrap, BadRecipient> {
        let wrapped = crypto::wrap_key(
            key,
            &recipient,
            &KeyWrap::info(&record, &section, epoch),
            rng,
        )
        .map_err(|_| BadRecipient)?;
        let mut w = KeyWrap {
            record,
            section,
            epoch,
            recipient: ByteArray::new(recipient),
            wrapped,
            signature: ByteArray::new([0; 64]),
        };
        let parts = w.signed_parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        w.signature = ByteArray::new(crypto::sign(root, Domain::KeyWrap, &refs));
        Ok(w)
    }

    /// The section key inside, opened with the recipient's X25519 `secret`: fails for any
    /// other secret, or if the wrap was altered. Says nothing of who signed it ([`KeyWrap::verify`]).
    pub fn open(&self, secret: &AgreementSecret) -> Result<SymmetricKey, CryptoError> {
        crypto::unwrap_key(
            &self.wrapped,
            secret,
            &KeyWrap::info(&self.record, &self.section, self.epoch),
        )
    }

    /// Whether the record root signed this wrap.
    pub fn verify(&self) -> bool {
        let Ok(root) = self.record.verifying_key() else {
            return false;
        };
        let parts = self.signed_parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        crypto::verify(&root, Domain::KeyWrap, &refs, &self.signature.into_array()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::AgreementSecret;
    use crate::test_utils::TestRng;

    #[test]
    fn a_wrap_opens_only_with_its_recipients_secret_and_unaltered() {
        let mut rng = TestRng::new(3);
        let root = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let record = RecordId(root.verifying_key().to_bytes());
        let (alice, bob) = (
            AgreementSecret::generate(&mut rng),
            AgreementSecret::generate(&mut rng),
        );
        let key = SymmetricKey::generate(&mut rng);
        let w = KeyWrap::create(
            &root,
            record,
            SectionId::AUTH,
            2,
            &key,
            alice.public(),
            &mut rng,
        )
        .unwrap();
        assert!(w.verify());
        assert_eq!(w.open(&alice).unwrap().as_bytes(), key.as_bytes());
        assert!(w.open(&bob).is_err());
        // The epoch is bound into the sealing: a wrap relabelled to another epoch opens to
        // nothing (and no longer verifies).
        let relabelled = KeyWrap { epoch: 3, ..w };
        assert!(relabelled.open(&alice).is_err());
        assert!(!relabelled.verify());
    }
}
