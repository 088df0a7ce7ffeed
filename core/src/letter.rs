//! Letters: a short message (an access request, a grant) sealed to one recipient, to be left in
//! a relay's mailbox and collected when the recipient's node next reaches the relay.
//!
//! A letter is a fresh symmetric key wrapped to the recipient's X25519 key with HPKE (as key
//! wraps are) and the message sealed under it with XChaCha20-Poly1305; the HPKE info and the
//! AEAD's associated data bind it to its address, so a relay cannot move it to another mailbox.
//!
//! Two kinds of recipient:
//! - **a record's inbox**: a professional who knows only a record's id (the record root's
//!   ed25519 public key) seals to that key mapped to X25519 ([`record_inbox`]); the device
//!   holding the record root opens it with the root key mapped the same way
//!   ([`record_inbox_secret`]), as `age` does for ssh-ed25519 recipients;
//! - **a peer**: sealed to the agreement key on its signed contact card.

use crate::crypto::{self, AgreementSecret, CryptoError, SymmetricKey, WrappedKey};
use crate::ids::RecordId;
use crate::keys::Identity;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

/// The largest sealed letter accepted, in bytes.
pub const MAX_LETTER: usize = 64 * 1024;

/// What a letter says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum LetterBody {
    /// An access request, as its text form (`HEARTH1R…`), for a record's inbox.
    Request(String),
    /// A grant chain, as its text form (`HEARTH1G…`), for its audience.
    Grant(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    key: WrappedKey,
    ct: ByteBuf,
}

fn info(address: &[u8]) -> Vec<u8> {
    [b"hearth/letter/v1/".as_slice(), address].concat()
}

/// Seals `body` to the X25519 key `recipient`, for the mailbox named by `address`.
pub fn seal(
    recipient: &[u8; 32],
    address: &[u8],
    body: &LetterBody,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, CryptoError> {
    let plain = Zeroizing::new(serde_ipld_dagcbor::to_vec(body).map_err(|_| CryptoError::Unwrap)?);
    let key = SymmetricKey::generate(rng);
    let wrapped = crypto::wrap_key(&key, recipient, &info(address), rng)?;
    let ct = crypto::seal(&key, &info(address), &plain, rng);
    let out = serde_ipld_dagcbor::to_vec(&Sealed {
        key: wrapped,
        ct: ByteBuf::from(ct),
    })
    .map_err(|_| CryptoError::Unwrap)?;
    if out.len() > MAX_LETTER {
        return Err(CryptoError::Unwrap);
    }
    Ok(out)
}

/// Opens a letter for the mailbox `address` with `secret`.
pub fn open(
    secret: &AgreementSecret,
    address: &[u8],
    sealed: &[u8],
) -> Result<LetterBody, CryptoError> {
    if sealed.len() > MAX_LETTER {
        return Err(CryptoError::Unwrap);
    }
    let s: Sealed = serde_ipld_dagcbor::from_slice(sealed).map_err(|_| CryptoError::Unwrap)?;
    let key = crypto::unwrap_key(&s.key, secret, &info(address))?;
    let plain = Zeroizing::new(crypto::open(&key, &info(address), &s.ct)?);
    serde_ipld_dagcbor::from_slice(&plain).map_err(|_| CryptoError::Unwrap)
}

/// The X25519 key a record's inbox letters are sealed to: the record root's public key
/// (the record id), mapped from Edwards to Montgomery form.
pub fn record_inbox(record: &RecordId) -> Option<[u8; 32]> {
    let vk = crypto::verifying_key(&record.0).ok()?;
    Some(vk.to_montgomery().to_bytes())
}

/// The secret that opens `identity`'s record inbox (the device holding the record root only).
pub fn record_inbox_secret(identity: &Identity) -> Option<AgreementSecret> {
    identity
        .root_key()
        .map(|k| AgreementSecret::from_bytes(k.to_scalar_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Role;

    #[test]
    fn a_record_inbox_letter_opens_only_with_the_root_and_its_address() {
        let mut rng = crate::test_utils::TestRng::new(7);
        let (patient, _) = Identity::generate(Role::Patient, "P".into(), &mut rng);
        let (other, _) = Identity::generate(Role::Patient, "Q".into(), &mut rng);
        let record = patient.record_id().unwrap();
        let secret = record_inbox_secret(&patient).unwrap();
        assert_eq!(Some(secret.public()), record_inbox(&record));
        let body = LetterBody::Request("HEARTH1R-example".into());
        let sealed = seal(&record_inbox(&record).unwrap(), b"box-a", &body, &mut rng).unwrap();
        assert_eq!(open(&secret, b"box-a", &sealed).unwrap(), body);
        assert!(
            open(&secret, b"box-b", &sealed).is_err(),
            "moved to another mailbox"
        );
        let wrong = record_inbox_secret(&other).unwrap();
        assert!(open(&wrong, b"box-a", &sealed).is_err());
        let mut tampered = sealed.clone();
        let n = tampered.len() - 3;
        tampered[n] ^= 1;
        assert!(open(&secret, b"box-a", &tampered).is_err());
        assert!(open(&secret, b"box-a", b"junk").is_err());
        assert!(open(&secret, b"box-a", &vec![0; MAX_LETTER + 1]).is_err());
    }
}
