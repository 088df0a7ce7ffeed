//! Tests of [`crate::bundle`].

use super::*;
use crate::test_utils::{TEST_NOW, TestRng};
use proptest::prelude::*;

fn sample(seed: u64, payload: &[u8]) -> (Bundle, SymmetricKey) {
    let mut rng = TestRng::new(seed);
    let author = crate::keys::signing_key(&mut rng);
    let key = SymmetricKey::generate(&mut rng);
    let b = Bundle::seal(
        RecordId([1; 32]),
        SectionId([2; 16]),
        1,
        None,
        0,
        TEST_NOW,
        &key,
        payload,
        &author,
        &mut rng,
    )
    .unwrap();
    (b, key)
}

#[test]
fn a_header_in_any_but_its_canonical_encoding_is_refused() {
    let (b, _) = sample(4, b"change");
    let bytes = b.encoded();
    let hlen = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let header = &bytes[8..8 + hlen];
    let rest = &bytes[8 + hlen..];
    let with = |h: &[u8]| {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(h.len() as u32).to_be_bytes());
        out.extend_from_slice(h);
        out.extend_from_slice(rest);
        Bundle::decode(&out)
    };
    assert_eq!(with(header).unwrap(), b);
    // Without its `prev` entry (null for the first bundle of a log), which serde takes as
    // `None`: the same value, in an encoding it is not signed in.
    let prev = [&[0x64][..], b"prev", &[0xf6]].concat();
    let at = header.windows(prev.len()).position(|w| w == prev).unwrap();
    let mut without = vec![header[0] - 1];
    without.extend_from_slice(&header[1..at]);
    without.extend_from_slice(&header[at + prev.len()..]);
    assert_eq!(
        with(&without),
        Err(BundleError::Malformed("header is not canonically encoded"))
    );
}

#[test]
fn round_trip_verify_open() {
    let (b, key) = sample(1, b"automerge change bytes");
    let d = Bundle::decode(b.encoded()).unwrap();
    assert_eq!(d, b);
    d.verify().unwrap();
    assert_eq!(d.open(&key).unwrap(), b"automerge change bytes");
}

#[test]
fn every_single_bit_flip_is_detected() {
    let (b, key) = sample(2, b"payload");
    let enc = b.encoded().to_vec();
    for i in 0..enc.len() {
        for bit in 0..8 {
            let mut t = enc.clone();
            t[i] ^= 1 << bit;
            let ok = Bundle::decode(&t)
                .and_then(|d| d.verify().map(|_| d))
                .and_then(|d| d.open(&key));
            assert!(ok.is_err(), "flip of bit {bit} in byte {i} went unnoticed");
        }
    }
}

/// A hostile author signs a bundle whose header commits to one key while its ciphertext is
/// sealed under another: it opens under neither, so no two readers can be shown different
/// payloads from one bundle.
#[test]
fn a_bundle_opens_only_under_the_key_it_commits_to() {
    let mut rng = TestRng::new(7);
    let author = crate::keys::signing_key(&mut rng);
    let (committed, used) = (
        SymmetricKey::from_bytes([1; 32]),
        SymmetricKey::from_bytes([2; 32]),
    );
    let nonce = [3u8; NONCE_LEN];
    let header = BundleHeader {
        v: BUNDLE_VERSION,
        record: RecordId([1; 32]),
        section: SectionId([2; 16]),
        author: PeerKey(author.verifying_key().to_bytes()),
        seq: 1,
        prev: None,
        epoch: 0,
        nonce: ByteArray::new(nonce),
        commit: ByteArray::new(crypto::key_commitment(&committed, &nonce)),
        time: TEST_NOW,
        kind: BundleKind::Changes,
    };
    let hb = serde_ipld_dagcbor::to_vec(&header).unwrap();
    let ct = crypto::seal_with_nonce(&used, &nonce, &hb, b"what only some readers see");
    let sig = crypto::sign(&author, Domain::Bundle, &[&hb, &crypto::sha256(&[&ct])]);
    let mut enc = MAGIC.to_vec();
    enc.extend_from_slice(&(hb.len() as u32).to_be_bytes());
    enc.extend_from_slice(&hb);
    enc.extend_from_slice(&(ct.len() as u32).to_be_bytes());
    enc.extend_from_slice(&ct);
    enc.extend_from_slice(&sig);
    let b = Bundle::decode(&enc).unwrap();
    b.verify().expect("the author's signature is genuine");
    assert_eq!(
        b.open(&used),
        Err(BundleError::Decrypt),
        "the AEAD key is not the committed one"
    );
    assert_eq!(b.open(&committed), Err(BundleError::Decrypt));
    let mut out = vec![0xAA; b.payload_len()];
    assert_eq!(b.open_to(&used, &mut out), Err(BundleError::Decrypt));
    assert!(out.iter().all(|&x| x == 0), "a refused payload is zeroed");
    // The honest seal commits to its key and opens under it.
    let (honest, key) = sample(8, b"payload");
    assert_eq!(
        honest.header().commit.into_array(),
        crypto::key_commitment(&key, &honest.header().nonce.into_array())
    );
    assert_eq!(honest.open(&key).unwrap(), b"payload");
}

#[test]
fn older_bundle_versions_are_refused_by_name() {
    let (b, _) = sample(9, b"payload");
    for (v, says) in [(1u8, "version 1"), (2, "no key commitment")] {
        let mut h = b.header().clone();
        h.v = v;
        match h.check() {
            Err(BundleError::InvalidHeader(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("version {v}: {other:?}"),
        }
    }
    let mut h = b.header().clone();
    h.v = BUNDLE_VERSION + 1;
    assert!(h.check().is_err());
}

#[test]
fn wrong_key_does_not_decrypt() {
    let (b, _) = sample(3, b"payload");
    let other = SymmetricKey::from_bytes([9; 32]);
    assert_eq!(b.open(&other), Err(BundleError::Decrypt));
    let mut out = Vec::with_capacity(4 + b.payload_len());
    out.extend_from_slice(b"kept");
    assert_eq!(b.open_into(&other, &mut out), Err(BundleError::Decrypt));
    assert_eq!(
        out, b"kept",
        "a failed decryption leaves the buffer as it was"
    );
}

#[test]
fn opening_into_a_buffer_appends_the_payload() {
    let (b, key) = sample(5, b"second payload");
    let mut out = Vec::with_capacity(5 + b.payload_len());
    out.extend_from_slice(b"first");
    b.open_into(&key, &mut out).unwrap();
    assert_eq!(out, b"firstsecond payload");
    assert_eq!(b.payload_len(), b"second payload".len());
    assert_eq!(Bundle::decode_owned(b.encoded().to_vec()).unwrap(), b);
}

#[test]
fn opening_to_a_slice_fills_it_or_zeroes_it() {
    let (b, key) = sample(7, b"third payload");
    let mut out = vec![7u8; b.payload_len()];
    b.open_to(&key, &mut out).unwrap();
    assert_eq!(out, b"third payload");
    let other = SymmetricKey::from_bytes([9; 32]);
    assert_eq!(b.open_to(&other, &mut out), Err(BundleError::Decrypt));
    assert!(
        out.iter().all(|x| *x == 0),
        "no ciphertext or plaintext left"
    );
    let mut short = vec![0u8; b.payload_len() - 1];
    assert_eq!(b.open_to(&key, &mut short), Err(BundleError::Decrypt));
}

#[test]
fn header_rules() {
    let mut rng = TestRng::new(4);
    let author = crate::keys::signing_key(&mut rng);
    let key = SymmetricKey::generate(&mut rng);
    let r = Bundle::seal(
        RecordId([1; 32]),
        SectionId([2; 16]),
        2,
        None,
        0,
        TEST_NOW,
        &key,
        b"",
        &author,
        &mut rng,
    );
    assert!(matches!(r, Err(BundleError::InvalidHeader(_))));
}

fn change_bytes(actor: u8, n: usize) -> Vec<u8> {
    use automerge::transaction::Transactable;
    let mut d = automerge::AutoCommit::new().with_actor(automerge::ActorId::from([actor; 32]));
    for i in 0..n {
        d.put(automerge::ROOT, format!("e/{i}"), "x".repeat(400))
            .unwrap();
        d.commit();
    }
    d.get_last_local_change().unwrap().raw_bytes().to_vec()
}

#[test]
fn change_head_reads_actor_seq_and_deps() {
    let raw = change_bytes(7, 3);
    let head = read_change_head(&raw).unwrap();
    assert_eq!(head.actor, vec![7; 32]);
    assert_eq!(head.seq, 3);
    assert_eq!(head.deps.len(), 1);
    let c = automerge::Change::from_bytes(raw.clone()).unwrap();
    assert_eq!(change_hash(&raw), c.hash().0);
}

#[test]
fn compressed_change_chunks_are_refused_before_decoding() {
    let mut d = automerge::AutoCommit::new();
    use automerge::transaction::Transactable;
    d.put(automerge::ROOT, "e/x", "y".repeat(100_000)).unwrap();
    d.commit();
    let mut change = d.get_last_local_change().unwrap().clone();
    let compressed = change.bytes().to_vec();
    assert!(compressed.len() < 10_000, "automerge compressed it");
    assert!(matches!(
        read_change_head(&compressed),
        Err(BundleError::NotOneChange(_))
    ));
    // Nor a document chunk, two chunks, or trailing bytes.
    assert!(read_change_head(&d.save()).is_err());
    let raw = change_bytes(1, 1);
    let mut two = raw.clone();
    two.extend_from_slice(&raw);
    assert!(read_change_head(&two).is_err());
    assert!(read_change_head(&raw[..raw.len() - 1]).is_err());
}

proptest! {
    #[test]
    fn change_head_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = read_change_head(&bytes);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Bundle::decode(&bytes);
    }

    #[test]
    fn encode_decode_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2000), seed in any::<u64>()) {
        let (b, key) = sample(seed, &payload);
        let d = Bundle::decode(b.encoded()).unwrap();
        prop_assert!(d.verify().is_ok());
        prop_assert_eq!(d.open(&key).unwrap(), payload);
        prop_assert_eq!(d.hash(), b.hash());
    }
}
