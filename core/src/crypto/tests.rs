//! Tests of [`crate::crypto`].

use super::*;
use crate::test_utils::TestRng;

#[test]
fn a_remembered_signature_does_not_vouch_for_altered_bytes() {
    let mut rng = TestRng::new(11);
    let sk = SigningKey::generate(&mut rng);
    let other = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    let sig = sign(&sk, Domain::Card, &[b"alice", b"gp"]);
    // Verified twice: the second time from the memo.
    assert_eq!(verify(&vk, Domain::Card, &[b"alice", b"gp"], &sig), Ok(()));
    assert_eq!(verify(&vk, Domain::Card, &[b"alice", b"gp"], &sig), Ok(()));
    // Any change of key, domain, parts or signature is checked afresh and refused.
    let bad = Err(CryptoError::BadSignature);
    assert_eq!(verify(&vk, Domain::Card, &[b"alice", b"gP"], &sig), bad);
    assert_eq!(verify(&vk, Domain::Card, &[b"alicegp"], &sig), bad);
    assert_eq!(verify(&vk, Domain::Grant, &[b"alice", b"gp"], &sig), bad);
    assert_eq!(
        verify(
            &other.verifying_key(),
            Domain::Card,
            &[b"alice", b"gp"],
            &sig
        ),
        bad
    );
    let mut flipped = sig;
    flipped[3] ^= 1;
    assert_eq!(verify(&vk, Domain::Card, &[b"alice", b"gp"], &flipped), bad);
    // And refused again: failures are never remembered.
    assert_eq!(verify(&vk, Domain::Card, &[b"alice", b"gp"], &flipped), bad);
}

#[test]
fn a_witness_names_only_what_was_accepted_in_its_scope() {
    let mut rng = TestRng::new(13);
    let sk = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    let good = sign(&sk, Domain::Card, &[b"witnessed"]);
    let before = sign(&sk, Domain::Card, &[b"before"]);
    assert_eq!(verify(&vk, Domain::Card, &[b"before"], &before), Ok(()));
    let mut bad = good;
    bad[0] ^= 1;
    let ((), outer) = witnessing(|| {
        // Accepted from the memo counts as much as verified afresh.
        assert_eq!(verify(&vk, Domain::Card, &[b"before"], &before), Ok(()));
        let ((), inner) = witnessing(|| {
            assert_eq!(verify(&vk, Domain::Card, &[b"witnessed"], &good), Ok(()));
            assert!(verify(&vk, Domain::Card, &[b"witnessed"], &bad).is_err());
        });
        assert_eq!(inner.len(), 1, "the refused signature is not named");
    });
    let message = |m: &[u8]| domain_message(Domain::Card, &[m]);
    let d = |m: &[u8], s: &[u8; 64]| {
        verified::digest(verified::How::Strict, vk.as_bytes(), s, &message(m))
    };
    assert_eq!(outer, vec![d(b"before", &before), d(b"witnessed", &good)]);
    // Outside any scope nothing is collected.
    let ((), none) = witnessing(|| ());
    assert!(none.is_empty());
    assert_eq!(verify(&vk, Domain::Card, &[b"witnessed"], &good), Ok(()));
    // A scope a panic unwinds through is closed all the same.
    let caught = std::panic::catch_unwind(|| {
        witnessing(|| {
            let _ = verify(&vk, Domain::Card, &[b"witnessed"], &good);
            panic!("unwinding");
        })
    });
    assert!(caught.is_err());
    let ((), after) = witnessing(|| ());
    assert!(after.is_empty());
    verified::WITNESS.with(|w| assert!(w.borrow().is_none(), "no scope left open"));
}

#[test]
fn a_witness_names_a_bounded_number_of_signatures() {
    let ((), seen) = witnessing(|| {
        for i in 0..(verified::WITNESSED + 10) {
            verified::accepted(&[(i % 251) as u8; 32]);
        }
    });
    assert_eq!(seen.len(), verified::WITNESSED);
}

#[test]
fn the_verified_memo_is_bounded() {
    let mut rng = TestRng::new(12);
    let sk = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    for i in 0..(verified::GENERATION + 10) {
        let d = verified::digest(
            verified::How::Strict,
            vk.as_bytes(),
            &[0; 64],
            &(i as u64).to_be_bytes(),
        );
        verified::remember(d);
        assert!(verified::seen(&d));
    }
    assert!(verified::len() <= 2 * verified::GENERATION);
}

#[test]
fn sealing_in_place_gives_the_same_ciphertext_and_opens() {
    let mut rng = TestRng::new(7);
    let key = SymmetricKey::generate(&mut rng);
    let nonce = [9u8; NONCE_LEN];
    for len in [0usize, 1, 63, 64, 65, 4096 + 3] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let copied = seal_with_nonce(&key, &nonce, b"aad", &plain);
        let mut buf = plain.clone();
        let tag = seal_in_place(&key, &nonce, b"aad", &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        assert_eq!(buf, copied);
        assert_eq!(open_with_nonce(&key, &nonce, b"aad", &buf).unwrap(), plain);
        let (ct, tag) = buf.split_at(len);
        let mut inplace = ct.to_vec();
        let tag: [u8; TAG_LEN] = tag.try_into().unwrap();
        open_in_place(&key, &nonce, b"aad", &mut inplace, &tag).unwrap();
        assert_eq!(inplace, plain);
        let mut altered = ct.to_vec();
        assert!(open_in_place(&key, &nonce, b"other", &mut altered, &tag).is_err());
        assert!(open_with_nonce(&key, &nonce, b"other", &buf).is_err());
    }
}

#[test]
fn signatures_are_domain_separated() {
    let mut rng = TestRng::new(1);
    let sk = crate::keys::signing_key(&mut rng);
    let sig = sign(&sk, Domain::Grant, &[b"abc"]);
    assert!(verify(&sk.verifying_key(), Domain::Grant, &[b"abc"], &sig).is_ok());
    assert_eq!(
        verify(&sk.verifying_key(), Domain::Request, &[b"abc"], &sig),
        Err(CryptoError::BadSignature)
    );
    // Part boundaries are part of the message.
    assert!(verify(&sk.verifying_key(), Domain::Grant, &[b"ab", b"c"], &sig).is_err());
}

#[test]
fn seal_open_and_tamper() {
    let mut rng = TestRng::new(2);
    let key = SymmetricKey::generate(&mut rng);
    let sealed = seal(&key, b"aad", b"hello", &mut rng);
    assert_eq!(open(&key, b"aad", &sealed).unwrap(), b"hello");
    assert_eq!(open(&key, b"other", &sealed), Err(CryptoError::Decrypt));
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x01;
        assert_eq!(open(&key, b"aad", &t), Err(CryptoError::Decrypt));
    }
    assert_eq!(open(&key, b"aad", &sealed[..10]), Err(CryptoError::Decrypt));
}

#[test]
fn wrap_unwrap_only_for_recipient() {
    let mut rng = TestRng::new(3);
    let alice = AgreementSecret::generate(&mut rng);
    let bob = AgreementSecret::generate(&mut rng);
    let key = SymmetricKey::generate(&mut rng);
    let w = wrap_key(&key, &alice.public(), b"ctx", &mut rng).unwrap();
    assert_eq!(unwrap_key(&w, &alice, b"ctx").unwrap(), key);
    assert!(unwrap_key(&w, &bob, b"ctx").is_err());
    assert!(unwrap_key(&w, &alice, b"other ctx").is_err());
}

#[test]
fn a_device_keys_x25519_form_opens_what_is_wrapped_to_it() {
    let mut rng = TestRng::new(4);
    let device = SigningKey::from_bytes(&[9u8; 32]);
    let public = device_agreement_public(&device.verifying_key()).unwrap();
    let secret = device_agreement_secret(&device);
    assert_eq!(secret.public(), public);
    let key = SymmetricKey::generate(&mut rng);
    let w = wrap_key(&key, &public, b"ctx", &mut rng).unwrap();
    assert_eq!(unwrap_key(&w, &secret, b"ctx").unwrap(), key);
    let other = device_agreement_secret(&SigningKey::from_bytes(&[10u8; 32]));
    assert!(unwrap_key(&w, &other, b"ctx").is_err());
}

#[test]
fn derived_agreement_secret_is_deterministic() {
    let a = derive_agreement_secret(&[7u8; 32]);
    let b = derive_agreement_secret(&[7u8; 32]);
    assert_eq!(a.public(), b.public());
    assert_ne!(a.public(), derive_agreement_secret(&[8u8; 32]).public());
}
