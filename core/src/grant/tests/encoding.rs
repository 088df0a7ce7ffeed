//! Chain encodings: bit flips, round trips, and the fuzz entry points on stable.

use super::*;

#[test]
fn every_single_bit_flip_of_a_chain_is_refused() {
    let mut w = world(7);
    let chain = org_chain(&mut w);
    let bytes = chain_to_bytes(&chain);
    let staff = w.staff.peer();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = chain_from_bytes(&b)
                .and_then(|c| verify_chain(&c, &notes_read(staff), TEST_NOW, &never));
            assert!(
                r.is_err(),
                "bit {bit} of byte {i} flipped and still accepted"
            );
        }
    }
}

/// The fuzz entry points on stable: thousands of mutations of valid tokens, chains, requests
/// and bundles. None may panic, and no mutated grant may verify.
#[test]
fn fuzz_entry_points_on_stable() {
    use crate::fuzzing::{self, Form, mutation_run};
    let mut w = world(11);
    let chain = org_chain(&mut w);
    let direct = to_gp(&mut w, "notes");
    assert!(fuzzing::grant_token(chain_to_token(&chain).as_bytes()));
    assert!(fuzzing::grant_chain(&chain_to_bytes(&chain)));
    let token_seeds = vec![
        chain_to_token(&chain).into_bytes(),
        chain_to_token(std::slice::from_ref(&direct)).into_bytes(),
    ];
    let byte_seeds = vec![chain_to_bytes(&chain), chain_to_bytes(&[direct])];
    assert_eq!(
        mutation_run(fuzzing::grant_token, &token_seeds, 3_000, Form::Token),
        0
    );
    assert_eq!(
        mutation_run(fuzzing::grant_chain, &byte_seeds, 3_000, Form::Binary),
        0
    );
    let req = request::request(
        &w.gp,
        request::RequestSpec {
            record: w.patient.record_id().unwrap(),
            scopes: scopes(&"notes".parse().unwrap(), Ability::Read),
            purpose: Purpose::DirectCare,
            duration_ms: DAY,
            reason: "review".into(),
            answer_within_ms: DAY,
        },
        None,
        TEST_NOW,
        &mut w.rng,
    )
    .unwrap();
    let card = request::card(&w.gp).unwrap();
    assert!(fuzzing::signed_tokens(req.to_token().as_bytes()));
    assert_eq!(
        mutation_run(
            fuzzing::signed_tokens,
            &[req.to_token().into_bytes(), card.to_token().into_bytes()],
            3_000,
            Form::Token
        ),
        0
    );
}

#[test]
fn a_remembered_card_is_the_one_its_identity_would_sign() {
    let mut w = world(41);
    let gp = request::card(&w.gp).unwrap();
    let again = request::card(&w.gp).unwrap();
    assert_eq!(again, gp);
    // Another identity, then the first again: each gets its own card, which verifies.
    let patient = request::card(&w.patient).unwrap();
    assert_eq!(patient.body().peer, w.patient.peer());
    assert_eq!(request::card(&w.gp).unwrap(), gp);
    // A renamed identity is signed afresh, never given the card of its old name.
    w.gp.name = "Dr Renamed".into();
    let renamed = request::card(&w.gp).unwrap();
    assert_eq!(renamed.body().name, "Dr Renamed");
    for c in [&gp, &patient, &renamed] {
        let opened = request::Card::open(c.envelope().clone()).unwrap();
        assert_eq!(&opened, c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tokens_round_trip(seed in any::<u64>()) {
        let mut w = world(seed);
        let chain = org_chain(&mut w);
        let back = chain_from_token(&chain_to_token(&chain)).unwrap();
        prop_assert_eq!(back, chain);
    }

    #[test]
    fn chain_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = chain_from_bytes(&bytes);
    }
}
