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

    /// Whether this wraps a key of `record` to one of `identity`'s keys (its agreement key, or
    /// its device key's X25519 form): the one test of "addressed to me".
    pub fn is_for(&self, identity: &crate::keys::Identity, record: &RecordId) -> bool {
        self.record == *record
            && identity
                .opening_secret(&self.recipient.into_array())
                .is_some()
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

    /// The record root's one signature over all of `wraps` (each wrap's signed parts and its
    /// own signature, in order): a patient's device sends it with the wraps it leaves at a
    /// relay, which checks that the root made every one of them with one signature instead of
    /// one per wrap ([`KeyWrap::verify_all`]).
    pub fn sign_all(root: &ed25519_dalek::SigningKey, wraps: &[KeyWrap]) -> [u8; 64] {
        let record = RecordId(root.verifying_key().to_bytes());
        KeyWrap::with_all_parts(&record, wraps, |parts| {
            crypto::sign(root, Domain::KeyWraps, parts)
        })
    }

    /// Whether `signature` is `record`'s root's [`KeyWrap::sign_all`] over exactly `wraps`,
    /// every one of them a wrap of `record`: then the root made each of them as it is, its
    /// own signature included. Any wrap altered, added, dropped or moved fails the check.
    pub fn verify_all(record: &RecordId, wraps: &[KeyWrap], signature: &[u8; 64]) -> bool {
        let Ok(root) = record.verifying_key() else {
            return false;
        };
        if wraps.is_empty() || wraps.iter().any(|w| w.record != *record) {
            return false;
        }
        KeyWrap::with_all_parts(record, wraps, |parts| {
            crypto::verify(&root, Domain::KeyWraps, parts, signature).is_ok()
        })
    }

    /// Calls `f` with the parts [`KeyWrap::sign_all`] signs: the record, the number of wraps,
    /// then each wrap's signed parts and signature.
    fn with_all_parts<T>(record: &RecordId, wraps: &[KeyWrap], f: impl FnOnce(&[&[u8]]) -> T) -> T {
        let count = (wraps.len() as u64).to_be_bytes();
        let epochs: Vec<[u8; 4]> = wraps.iter().map(|w| w.epoch.to_be_bytes()).collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + 7 * wraps.len());
        parts.push(&record.0);
        parts.push(&count);
        for (w, epoch) in wraps.iter().zip(&epochs) {
            parts.extend([
                &w.record.0[..],
                &w.section.0[..],
                &epoch[..],
                &w.recipient[..],
                &w.wrapped.enc[..],
                &w.wrapped.ct[..],
                &w.signature[..],
            ]);
        }
        f(&parts)
    }

    /// [`KeyWrap::verify`] of each of `wraps`, in order: one batch check when there are
    /// several and every one's record root is a key that is not weak, which holds when all
    /// verify; otherwise (or when the batch fails) each is checked alone, so a bad wrap is
    /// refused without refusing the others.
    pub fn verify_many(wraps: &[&KeyWrap]) -> Vec<bool> {
        let roots: Option<Vec<_>> = wraps
            .iter()
            .map(|w| {
                let key = w.record.verifying_key().ok()?;
                (!crypto::is_small_order(w.record.as_bytes())).then_some(key)
            })
            .collect();
        if let Some(roots) = roots.filter(|_| wraps.len() > 1) {
            let parts: Vec<Vec<Vec<u8>>> = wraps.iter().map(|w| w.signed_parts()).collect();
            let refs: Vec<Vec<&[u8]>> = parts
                .iter()
                .map(|p| p.iter().map(Vec::as_slice).collect())
                .collect();
            let sigs: Vec<[u8; 64]> = wraps.iter().map(|w| w.signature.into_array()).collect();
            let items: Vec<crypto::Signed<'_>> = roots
                .iter()
                .zip(&refs)
                .zip(&sigs)
                .map(|((k, r), s)| (k, r.as_slice(), s))
                .collect();
            if crypto::verify_batch(Domain::KeyWrap, &items).is_ok() {
                return vec![true; wraps.len()];
            }
        }
        wraps.iter().map(|w| w.verify()).collect()
    }
}

/// A section key released from emergency escrow to one professional.
///
/// A patient who arranges emergency access with an organisation wraps the arranged sections'
/// keys to the organisation's agreement key (`escrow`, signed by the record root) and leaves
/// those wraps with the record's relays, which hand them out only to a professional presenting
/// a checked emergency use. The organisation opens them only for a use of its own staff that
/// it has logged, and seals each key again to that professional's agreement key (`resealed`,
/// bound to the same record, section and epoch). Neither the relay (which cannot open the
/// wraps) nor the organisation (which never receives the ciphertext unless a relay served it
/// under a receipted emergency use) can read the record alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowedKey {
    /// The patient's wrap to the organisation, as the relay served it.
    pub escrow: KeyWrap,
    /// The professional's X25519 public key.
    pub recipient: ByteArray<32>,
    /// The key, sealed by the organisation to `recipient`.
    pub resealed: WrappedKey,
}

/// Why an escrowed key was not released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    /// The wrap is not the record root's, or not for this record.
    #[error("an escrowed key not signed by the record's owner")]
    NotTheOwners,
    /// The wrap is not addressed to this organisation (or was altered).
    #[error("an escrowed key not addressed to this organisation")]
    NotAddressed,
    /// The professional's key is not a valid X25519 public key.
    #[error("not a valid agreement key")]
    BadRecipient,
}

impl EscrowedKey {
    /// On the organisation's node: opens `escrow` (a wrap of `record`'s, signed by its root,
    /// to `org_secret`'s public key) and seals the key again to `recipient`.
    pub fn release(
        escrow: KeyWrap,
        record: &RecordId,
        org_secret: &AgreementSecret,
        recipient: [u8; 32],
        rng: &mut impl CryptoRng,
    ) -> Result<EscrowedKey, EscrowError> {
        if escrow.record != *record || !escrow.verify() {
            return Err(EscrowError::NotTheOwners);
        }
        if escrow.recipient.into_array() != org_secret.public() {
            return Err(EscrowError::NotAddressed);
        }
        let key = escrow
            .open(org_secret)
            .map_err(|_| EscrowError::NotAddressed)?;
        let info = KeyWrap::info(&escrow.record, &escrow.section, escrow.epoch);
        let resealed = crypto::wrap_key(&key, &recipient, &info, rng)
            .map_err(|_| EscrowError::BadRecipient)?;
        Ok(EscrowedKey {
            escrow,
            recipient: ByteArray::new(recipient),
            resealed,
        })
    }

    /// On the professional's node: the key inside, if the escrow wrap is the record root's and
    /// the sealed key opens with `secret` for the wrap's record, section and epoch. (Whether
    /// it is the right key shows when it opens the record's signed bundles: a wrong one opens
    /// none.)
    pub fn open(&self, secret: &AgreementSecret) -> Result<SymmetricKey, CryptoError> {
        if !self.escrow.verify() {
            return Err(CryptoError::Unwrap);
        }
        let e = &self.escrow;
        crypto::unwrap_key(
            &self.resealed,
            secret,
            &KeyWrap::info(&e.record, &e.section, e.epoch),
        )
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

    /// `n` wraps of the auth document's key at epochs 0.. to one recipient, signed by a fixed
    /// record root: (the root, its record, the wraps).
    fn signed_wraps(seed: u64, n: u32) -> (ed25519_dalek::SigningKey, RecordId, Vec<KeyWrap>) {
        let mut rng = TestRng::new(seed);
        let root = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let record = RecordId(root.verifying_key().to_bytes());
        let to = AgreementSecret::generate(&mut rng);
        let wraps = (0..n)
            .map(|epoch| {
                let key = SymmetricKey::generate(&mut rng);
                KeyWrap::create(
                    &root,
                    record,
                    SectionId::AUTH,
                    epoch,
                    &key,
                    to.public(),
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        (root, record, wraps)
    }

    #[test]
    fn many_wraps_verify_together_and_a_bad_one_is_refused_alone() {
        let (_, _, wraps) = signed_wraps(5, 6);
        let all: Vec<&KeyWrap> = wraps.iter().collect();
        assert_eq!(KeyWrap::verify_many(&all), vec![true; 6]);
        assert!(KeyWrap::verify_many(&[]).is_empty());
        assert_eq!(KeyWrap::verify_many(&all[..1]), vec![true]);
        // One relabelled (its signature no longer covers it) and one claiming another record
        // (whose root did not sign it): only those two are refused.
        let relabelled = KeyWrap {
            epoch: 9,
            ..wraps[2].clone()
        };
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let elsewhere = KeyWrap {
            record: RecordId(other.verifying_key().to_bytes()),
            ..wraps[4].clone()
        };
        let mixed = [all[0], all[1], &relabelled, all[3], &elsewhere, all[5]];
        assert_eq!(
            KeyWrap::verify_many(&mixed),
            vec![true, true, false, true, false, true]
        );
        for (w, ok) in mixed.iter().zip(KeyWrap::verify_many(&mixed)) {
            assert_eq!(w.verify(), ok);
        }
    }

    #[test]
    fn one_root_signature_vouches_for_exactly_the_wraps_it_was_made_over() {
        let (root, record, wraps) = signed_wraps(6, 4);
        let sig = KeyWrap::sign_all(&root, &wraps);
        assert!(KeyWrap::verify_all(&record, &wraps, &sig));
        // Anything else fails: a wrap altered (its body, or its own signature), dropped,
        // added, moved; another record named; another key's signature; no wraps at all.
        let mut altered = wraps.clone();
        altered[1].wrapped.ct[0] ^= 1;
        let mut resigned = wraps.clone();
        resigned[2].signature = wraps[3].signature;
        let mut moved = wraps.clone();
        moved.swap(0, 3);
        let mut added = wraps.clone();
        added.push(wraps[0].clone());
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let elsewhere = RecordId(other.verifying_key().to_bytes());
        let mut renamed = wraps.clone();
        renamed[0].record = elsewhere;
        for bad in [
            &altered,
            &resigned,
            &moved,
            &added,
            &wraps[..3].to_vec(),
            &renamed,
        ] {
            assert!(!KeyWrap::verify_all(&record, bad, &sig));
        }
        assert!(!KeyWrap::verify_all(&elsewhere, &wraps, &sig));
        assert!(!KeyWrap::verify_all(
            &record,
            &wraps,
            &KeyWrap::sign_all(&other, &wraps)
        ));
        assert!(!KeyWrap::verify_all(
            &record,
            &[],
            &KeyWrap::sign_all(&root, &[])
        ));
        // Nor does a wrap's own signature stand for the set, or the set's for a wrap.
        assert!(!KeyWrap::verify_all(
            &record,
            &wraps[..1],
            &wraps[0].signature.into_array()
        ));
        let single = KeyWrap {
            signature: ByteArray::new(KeyWrap::sign_all(&root, &wraps[..1])),
            ..wraps[0].clone()
        };
        assert!(!single.verify());
    }

    #[test]
    fn an_escrowed_key_is_released_only_by_its_organisation_for_its_record() {
        let mut rng = TestRng::new(4);
        let root = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
        let record = RecordId(root.verifying_key().to_bytes());
        let (org, other, pro) = (
            AgreementSecret::generate(&mut rng),
            AgreementSecret::generate(&mut rng),
            AgreementSecret::generate(&mut rng),
        );
        let key = SymmetricKey::generate(&mut rng);
        let escrow = KeyWrap::create(
            &root,
            record,
            SectionId([9; 16]),
            1,
            &key,
            org.public(),
            &mut rng,
        )
        .unwrap();
        let released =
            EscrowedKey::release(escrow.clone(), &record, &org, pro.public(), &mut rng).unwrap();
        assert_eq!(released.open(&pro).unwrap().as_bytes(), key.as_bytes());
        assert!(released.open(&org).is_err());
        // Another organisation, another record, or a wrap the root did not sign: refused.
        assert_eq!(
            EscrowedKey::release(escrow.clone(), &record, &other, pro.public(), &mut rng),
            Err(EscrowError::NotAddressed)
        );
        assert_eq!(
            EscrowedKey::release(
                escrow.clone(),
                &RecordId([1; 32]),
                &org,
                pro.public(),
                &mut rng
            ),
            Err(EscrowError::NotTheOwners)
        );
        let forged = KeyWrap {
            epoch: 2,
            ..escrow.clone()
        };
        assert_eq!(
            EscrowedKey::release(forged, &record, &org, pro.public(), &mut rng),
            Err(EscrowError::NotTheOwners)
        );
        // Moved to another section or epoch, the sealed key no longer opens.
        let mut moved = released.clone();
        moved.escrow = KeyWrap::create(
            &root,
            record,
            SectionId([9; 16]),
            2,
            &key,
            org.public(),
            &mut rng,
        )
        .unwrap();
        assert!(moved.open(&pro).is_err());
    }
}
