//! The patient's choices: off by default, signed by the record root, newest in force.

use super::*;
#[test]
fn opted_out_records_never_contribute() {
    let id = patient(2);
    let root = id.root_key().unwrap();
    let record = id.record_id().unwrap();
    let views = sections(&id);
    let mut rng = TestRng::new(3);
    let try_with = |c: &Consents, p, rng: &mut TestRng| {
        Contribution::create(root, c, ICB, p, &views, TEST_NOW, rng)
    };
    // The default is off, for both purposes.
    for p in ExtractPurpose::ALL {
        assert_eq!(
            try_with(&Consents::default(), p, &mut rng),
            Err(ExtractError::NotOptedIn(p))
        );
    }
    // Opting in to one purpose does not opt in to the other.
    let research_on = ConsentChoice::sign(root, &record, ExtractPurpose::Research, true, TEST_NOW);
    let c = Consents::from_choices(&record, [research_on.clone()]);
    assert!(try_with(&c, ExtractPurpose::Research, &mut rng).is_ok());
    assert_eq!(
        try_with(&c, ExtractPurpose::Planning, &mut rng),
        Err(ExtractError::NotOptedIn(ExtractPurpose::Planning))
    );
    // Turning it off again stops further contributions.
    let off = ConsentChoice::sign(
        root,
        &record,
        ExtractPurpose::Research,
        false,
        TEST_NOW.saturating_add_millis(1),
    );
    let c = Consents::from_choices(&record, [research_on, off]);
    assert_eq!(
        try_with(&c, ExtractPurpose::Research, &mut rng),
        Err(ExtractError::NotOptedIn(ExtractPurpose::Research))
    );
}

#[test]
fn choices_not_signed_by_the_record_root_are_ignored() {
    let id = patient(4);
    let other = patient(5);
    let record = id.record_id().unwrap();
    let forged = ConsentChoice::sign(
        other.root_key().unwrap(),
        &record,
        ExtractPurpose::Research,
        true,
        TEST_NOW,
    );
    assert!(!forged.verify(&record));
    assert!(!Consents::from_choices(&record, [forged.clone()]).allows(ExtractPurpose::Research));
    // A genuine choice altered after signing is ignored too.
    let mut altered = ConsentChoice::sign(
        id.root_key().unwrap(),
        &record,
        ExtractPurpose::Planning,
        false,
        TEST_NOW,
    );
    altered.opted_in = true;
    assert!(!Consents::from_choices(&record, [altered]).allows(ExtractPurpose::Planning));
    // And ledger items that are not choices are skipped.
    let items = vec![
        ("consent/research/x".to_string(), "not json".to_string()),
        (
            "consent/research/y".to_string(),
            serde_json::to_string(&forged).unwrap(),
        ),
    ];
    assert_eq!(Consents::from_ledger(&record, &items), Consents::default());
}

#[test]
fn the_ledger_keeps_choices_under_distinct_keys_and_reads_them_back() {
    let id = patient(6);
    let root = id.root_key().unwrap();
    let record = id.record_id().unwrap();
    let mut rng = TestRng::new(1);
    let a = ConsentChoice::sign(root, &record, ExtractPurpose::Planning, true, TEST_NOW);
    let b = ConsentChoice::sign(root, &record, ExtractPurpose::Planning, false, TEST_NOW);
    let (ka, kb) = (a.ledger_key(&mut rng), b.ledger_key(&mut rng));
    assert_ne!(ka, kb);
    assert!(ka.starts_with("consent/planning/"));
    let items = vec![
        (ka, serde_json::to_string(&a).unwrap()),
        (kb, serde_json::to_string(&b).unwrap()),
    ];
    // Two choices at the same moment: opting out wins.
    let c = Consents::from_ledger(&record, &items);
    assert!(!c.allows(ExtractPurpose::Planning));
    assert_eq!(c.current(ExtractPurpose::Planning), Some(&b));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the patient chose, in whatever order the ledger holds the choices, a
    /// contribution is made exactly when the newest choice for its purpose is "on".
    #[test]
    fn a_contribution_is_made_only_when_the_newest_choice_is_on(
        choices in proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..1_000), 0..8),
        seed in any::<u64>(),
    ) {
        let id = patient(10);
        let root = id.root_key().unwrap();
        let record = id.record_id().unwrap();
        let signed: Vec<ConsentChoice> = choices
            .iter()
            .map(|(research, yes, dt)| {
                let p = if *research { ExtractPurpose::Research } else { ExtractPurpose::Planning };
                ConsentChoice::sign(root, &record, p, *yes, TEST_NOW.saturating_add_millis(*dt))
            })
            .collect();
        let consents = Consents::from_choices(&record, signed.iter().rev().cloned());
        for p in ExtractPurpose::ALL {
            let newest = signed
                .iter()
                .filter(|c| c.purpose == p)
                .max_by_key(|c| (c.at, !c.opted_in));
            let expected = newest.is_some_and(|c| c.opted_in);
            let made = Contribution::create(root, &consents, ICB, p, &[], TEST_NOW, &mut TestRng::new(seed));
            prop_assert_eq!(made.is_ok(), expected);
            if !expected {
                prop_assert_eq!(made, Err(ExtractError::NotOptedIn(p)));
            }
        }
    }
}
