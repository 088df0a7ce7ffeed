//! Crypto hygiene, checked against the code as the node runs it (DESIGN §12, issue 17 item 5):
//! nonces never repeat, weak X25519 keys are refused wherever keys arrive, and secret types
//! clear their memory. Key commitment is tested beside the bundle format
//! (`bundle::tests::a_bundle_opens_only_under_the_key_it_commits_to`).
//!
//! The nonce test seals `HEARTH_NONCE_SEALS` times (default 100,000; the full run in
//! docs/RELIABILITY.md uses 10,000,000 in release) with the operating system's random source,
//! which is what the node seals with.

use hearth_core::bundle::Bundle;
use hearth_core::crypto::{self, AgreementSecret, CryptoError, Domain, NONCE_LEN, SymmetricKey};
use hearth_core::grant::request::{Card, CardBody};
use hearth_core::grant::token::Envelope;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Role;
use hearth_core::test_utils::{TEST_NOW, TestRng};
use serde_bytes::ByteArray;

/// The node's random source (`hearth-node`'s `os::rng`). The core itself only takes a
/// `CryptoRng` argument; this test is about the source the node gives it.
#[allow(clippy::disallowed_types)]
fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// The first 16 bytes of a nonce: if no two of these are equal, no two nonces are.
fn prefix(nonce: &[u8]) -> u128 {
    u128::from_le_bytes(nonce[..16].try_into().expect("a nonce is 24 bytes"))
}

#[test]
fn nonces_never_repeat_across_many_seals() {
    let n: usize = std::env::var("HEARTH_NONCE_SEALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let key = SymmetricKey::from_bytes([7; 32]);
    let mut rng = os_rng();
    let mut seen = Vec::with_capacity(n + 1_000);
    for _ in 0..n {
        let sealed = crypto::seal(&key, b"aad", b"", &mut rng);
        seen.push(prefix(&sealed[..NONCE_LEN]));
    }
    // Bundles draw their nonce the same way; some of them in the same pool.
    let author = hearth_core::keys::signing_key(&mut rng);
    for seq in 1..=1_000u64 {
        let b = Bundle::seal(
            RecordId([1; 32]),
            SectionId([2; 16]),
            1,
            None,
            0,
            TEST_NOW,
            &key,
            &seq.to_be_bytes(),
            &author,
            &mut rng,
        )
        .expect("seal");
        seen.push(prefix(&b.header().nonce.into_array()));
    }
    let total = seen.len();
    seen.sort_unstable();
    seen.dedup();
    eprintln!(
        "nonce uniqueness: {total} seals, {} distinct nonces",
        seen.len()
    );
    assert_eq!(seen.len(), total, "a nonce was drawn twice");
}

/// Every small-order X25519 u-coordinate (RFC 7748 curve and twist), and each with the
/// ignored top bit set.
fn small_order_points() -> Vec<[u8; 32]> {
    let hex = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    let mut out = Vec::new();
    for h in hex {
        let mut p = [0u8; 32];
        for (i, b) in p.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
        }
        out.push(p);
        let mut high = p;
        high[31] |= 0x80;
        out.push(high);
    }
    out
}

#[test]
fn all_zero_and_small_order_agreement_keys_are_refused() {
    let mut rng = TestRng::new(1);
    let key = SymmetricKey::from_bytes([3; 32]);
    for p in small_order_points() {
        assert_eq!(
            crypto::check_agreement_public(&p),
            Err(CryptoError::WeakAgreementKey),
            "{p:02x?}"
        );
        assert!(
            crypto::wrap_key(&key, &p, b"info", &mut rng).is_err(),
            "a key was wrapped to a small-order point"
        );
    }
    // Honest keys pass, and wrapping to them works.
    for seed in 0..32 {
        let s = AgreementSecret::generate(&mut TestRng::new(100 + seed));
        crypto::check_agreement_public(&s.public()).expect("a generated key is fine");
        let w = crypto::wrap_key(&key, &s.public(), b"info", &mut rng).expect("wrap");
        assert_eq!(crypto::unwrap_key(&w, &s, b"info").expect("unwrap"), key);
    }
}

/// A contact card signed by its own key but offering a small-order agreement key is refused
/// when it arrives, before any key could be wrapped to it.
#[test]
fn a_card_offering_a_small_order_key_is_refused() {
    let mut rng = TestRng::new(2);
    let device = hearth_core::keys::signing_key(&mut rng);
    for p in small_order_points() {
        let body = CardBody {
            v: 1,
            peer: PeerKey(device.verifying_key().to_bytes()),
            name: "Mallory".into(),
            role: Role::Professional,
            agreement: ByteArray::new(p),
        };
        assert!(Card::sign(body.clone(), &device).is_err());
        let bytes = serde_ipld_dagcbor::to_vec(&body).expect("encode");
        let sig = crypto::sign(&device, Domain::Card, &[&bytes]);
        let env = Envelope {
            body: bytes,
            sig: sig.to_vec(),
        };
        let err = Card::open(env).expect_err("a small-order card key was accepted");
        assert!(err.to_string().contains("small order"), "{err}");
    }
}

#[test]
fn secret_keys_are_zeroized() {
    use zeroize::Zeroize;
    let mut key = SymmetricKey::from_bytes([0xA5; 32]);
    key.zeroize();
    assert_eq!(key.as_bytes(), &[0u8; 32]);
    let mut secret = AgreementSecret::from_bytes([0x5A; 32]);
    secret.zeroize();
    assert_eq!(secret.as_bytes(), &[0u8; 32]);
    assert_eq!(secret.public(), [0u8; 32]);
    // Dropping runs the same zeroize: the types carry the guarantee (the derive's `Drop`).
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroized_on_drop::<SymmetricKey>();
    zeroized_on_drop::<AgreementSecret>();
    zeroized_on_drop::<ed25519_dalek::SigningKey>();
    zeroized_on_drop::<hearth_core::keys::Identity>();
}
