//! Tests of [`crate::keys`].

use super::*;
use crate::test_utils::TestRng;

const FAST: KdfParams = KdfParams {
    m_kib: 8 * 1024,
    t: 1,
    p: 1,
};

#[test]
fn keystore_round_trip_and_wrong_passphrase() {
    let mut rng = TestRng::new(9);
    let (id, phrase) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
    assert!(phrase.is_some());
    let ks = Keystore::seal(&id, b"correct horse", FAST, &mut rng).unwrap();
    let bytes = ks.to_bytes();
    let back = Keystore::from_bytes(&bytes)
        .unwrap()
        .open(b"correct horse")
        .unwrap();
    assert_eq!(back.peer(), id.peer());
    assert_eq!(back.record_id(), id.record_id());
    assert_eq!(back.name, "Edith");
    assert_eq!(
        ks.open(b"wrong").unwrap_err(),
        KeyError::WrongPassphraseOrTampered
    );
    assert_eq!(ks.open(b"").unwrap_err(), KeyError::EmptyPassphrase);
}

#[test]
fn tampered_keystore_is_refused() {
    let mut rng = TestRng::new(10);
    let (id, _) = Identity::generate(Role::Professional, "Dr A".into(), &mut rng);
    let ks = Keystore::seal(&id, b"pw", FAST, &mut rng).unwrap();
    let bytes = ks.to_bytes();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        if let Ok(k) = Keystore::from_bytes(&t) {
            assert!(k.open(b"pw").is_err(), "flip at {i} accepted");
        }
    }
}

#[test]
fn phrase_restores_record_identity() {
    let mut rng = TestRng::new(11);
    let (id, phrase) = Identity::generate(Role::Patient, "P".into(), &mut rng);
    let phrase = phrase.unwrap();
    let words = phrase.words();
    assert_eq!(words.split(' ').count(), 24);
    let parsed = RecoveryPhrase::parse(&words.to_uppercase()).unwrap();
    let restored = Identity::recover("P".into(), &parsed, &mut rng);
    assert_eq!(restored.record_id(), id.record_id());
    assert_eq!(restored.recovery_public(), id.recovery_public());
    assert_ne!(restored.peer(), id.peer());
    assert!(RecoveryPhrase::parse("abandon abandon").is_err());
}

#[test]
fn absurd_kdf_params_are_refused() {
    let mut rng = TestRng::new(12);
    let (id, _) = Identity::generate(Role::Relay, "Org".into(), &mut rng);
    let huge = KdfParams {
        m_kib: u32::MAX,
        t: 1,
        p: 1,
    };
    assert_eq!(
        Keystore::seal(&id, b"pw", huge, &mut rng).unwrap_err(),
        KeyError::KdfParams
    );
}
