use super::*;
use crate::crypto::{self, Domain};
use crate::ids::PeerKey;
use crate::keys::{Identity, Role};
use crate::record::SectionView;
use crate::record::{NewRecord, Vault};
use crate::section::SectionName;
use crate::store::MemoryStore;
use crate::test_utils::{TEST_NOW, TestRng};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

const NAME: &str = "Edith Canary-Jones";
const NHS: &str = "9434765919";
const ADDRESS: &str = "17 Quarry Lane, Hebden Bridge";
const POSTCODE: &str = "HX7 8AA";
const BORN: &str = "1941-03-09";
const PHONE: &str = "01422 845123";
const NOTE: &str = "canary note about the knee";

fn patient(seed: u64) -> Identity {
    Identity::generate(Role::Patient, NAME.into(), &mut TestRng::new(seed)).0
}

fn on(id: &Identity, purpose: ExtractPurpose) -> Consents {
    let record = id.record_id().unwrap();
    Consents::from_choices(
        &record,
        [ConsentChoice::sign(
            id.root_key().unwrap(),
            &record,
            purpose,
            true,
            TEST_NOW,
        )],
    )
}

/// A record with full demographics, current and past conditions and medicines, and sensitive
/// sections, read back as the node would read it.
fn sections(id: &Identity) -> Vec<SectionView> {
    let mut rng = TestRng::new(99);
    let vault = Vault::new(MemoryStore::new());
    let demographics = json!({
        "name": NAME, "nhs_number": NHS, "birth_date": BORN, "gender": "female",
        "address": ADDRESS, "postcode": POSTCODE, "phone": PHONE, "email": "edith@example.org",
        "gp_practice": "Calder Practice B12345"
    });
    let rid = vault
        .create_record(
            id,
            NewRecord {
                demographics: Some(demographics),
            },
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    let mut rec = vault.open_record(id, &rid).unwrap();
    let entries = [
        (
            "conditions",
            json!({"name": "Type 2 diabetes", "code": {"system": "snomed", "code": "44054006"}, "note": NOTE}),
        ),
        (
            "conditions",
            json!({"name": "Hypertension", "code": {"system": "icd10", "code": "I10"}, "clinical_status": "active"}),
        ),
        (
            "conditions",
            json!({"name": "Old fracture", "code": {"system": "snomed", "code": "263204007"}, "clinical_status": "resolved"}),
        ),
        (
            "conditions",
            json!({"name": "Ruled out asthma", "code": {"system": "snomed", "code": "195967001"}, "verification_status": "refuted"}),
        ),
        (
            "conditions",
            json!({"name": "Uncoded worry about the canary"}),
        ),
        (
            "conditions:mental-health",
            json!({"name": "Depression", "code": {"system": "snomed", "code": "35489007"}}),
        ),
        (
            "medications",
            json!({"name": "Metformin", "code": {"system": "dmd", "code": "325278007"}, "status": "active", "dose": "500 mg"}),
        ),
        (
            "medications",
            json!({"name": "Amoxicillin", "code": {"system": "dmd", "code": "323509004"}, "status": "completed"}),
        ),
        (
            "medications",
            json!({"name": "Ibuprofen", "code": {"system": "dmd", "code": "329652003"}, "end": "2020-01-01"}),
        ),
        ("notes", json!({"text": NOTE})),
        // Marked entered in error below.
        (
            "conditions",
            json!({"name": "Wrong patient", "code": {"system": "snomed", "code": "38341003"}}),
        ),
    ];
    let mut last = None;
    for (section, body) in entries {
        let name: SectionName = section.parse().unwrap();
        last = Some(rec.add_entry(&name, &body, TEST_NOW, &mut rng).unwrap());
    }
    rec.mark_error(&last.unwrap(), "wrong patient", TEST_NOW, &mut rng)
        .unwrap();
    rec.sections()
        .into_iter()
        .map(|s| rec.show(&s.name).unwrap())
        .collect()
}

fn contribute(
    id: &Identity,
    recipient: PeerKey,
    purpose: ExtractPurpose,
    views: &[SectionView],
    seed: u64,
) -> Contribution {
    Contribution::create(
        id.root_key().unwrap(),
        &on(id, purpose),
        recipient,
        purpose,
        views,
        TEST_NOW,
        &mut TestRng::new(seed),
    )
    .unwrap()
}

const ICB: PeerKey = PeerKey([7; 32]);
const UNI: PeerKey = PeerKey([8; 32]);

#[test]
fn the_profile_is_coarse_and_leaves_out_what_is_not_current_or_sensitive() {
    let id = patient(1);
    let p = Profile::from_sections(&sections(&id), TEST_NOW);
    assert_eq!(
        p,
        Profile {
            age_band: Some("85-89".into()),
            gender: Some("female".into()),
            postcode_district: Some("HX7".into()),
            conditions: vec!["icd10:I10".into(), "snomed:44054006".into()],
            medications: vec!["dmd:325278007".into()],
        }
    );
}

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

    /// Pseudonyms are stable for one recipient and purpose, and differ between recipients,
    /// purposes and records.
    #[test]
    fn pseudonyms_are_stable_per_recipient_and_differ_across_recipients(
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        seed in 0u64..1_000,
    ) {
        prop_assume!(a != b);
        let id = patient(seed);
        let root = id.root_key().unwrap();
        let (ra, rb) = (PeerKey(a), PeerKey(b));
        let p = ExtractPurpose::Research;
        prop_assert_eq!(pseudonym(root, &ra, p), pseudonym(root, &ra, p));
        prop_assert_ne!(pseudonym(root, &ra, p), pseudonym(root, &rb, p));
        prop_assert_ne!(pseudonym(root, &ra, p), pseudonym(root, &ra, ExtractPurpose::Planning));
        let other = patient(seed + 1_000);
        prop_assert_ne!(pseudonym(root, &ra, p), pseudonym(other.root_key().unwrap(), &ra, p));
        // Neither the record id nor the device key shows through.
        let ps = pseudonym(root, &ra, p);
        prop_assert_ne!(ps.0, id.record_id().unwrap().0);
        prop_assert_ne!(ps.0, id.peer().0);
    }

    /// Published counts are never between 1 and the threshold, are multiples of the rounding
    /// base, never turn a non-empty group into 0, and stay within half a base of the truth.
    #[test]
    fn published_counts_are_suppressed_or_rounded(n in 0u64..100_000, below in 0u64..20, round_to in 0u64..20) {
        let rule = Suppression { below, round_to };
        match rule.apply(n) {
            Count::Suppressed => prop_assert!(n >= 1 && n < below),
            Count::Shown(shown) => {
                prop_assert!(n == 0 || n >= below);
                if n == 0 {
                    prop_assert_eq!(shown, 0);
                } else if round_to > 1 {
                    prop_assert_eq!(shown % round_to, 0);
                    prop_assert!(shown > 0);
                    prop_assert!(shown.abs_diff(n) <= round_to.max(n) / 2 + round_to);
                } else {
                    prop_assert_eq!(shown, n);
                }
            }
        }
    }

    /// Any change to any byte of a file is either refused or leaves what it says unchanged
    /// (e.g. whitespace in the JSON).
    #[test]
    fn altered_files_are_refused_or_say_the_same(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let id = patient(20);
        let c = contribute(&id, ICB, ExtractPurpose::Planning, &[], 1);
        let mut file = c.to_file();
        let i = pos.index(file.len());
        prop_assume!(file[i] != byte);
        file[i] = byte;
        if let Ok(back) = Contribution::from_file(&file) {
            prop_assert_eq!(back, c);
        }
    }

    #[test]
    fn age_bands_are_five_years_wide_with_90_plus(years in 0i16..140, month in 1i8..=12, day in 1i8..=28) {
        let on = jiff::civil::date(2026, 11, 22);
        let born = jiff::civil::Date::new(2026 - years, month, day).unwrap();
        let band = age_band(&born.to_string(), on);
        let age = i32::from(years) - i32::from((on.month(), on.day()) < (month, day));
        match band {
            None => prop_assert!(!(0..=130).contains(&age)),
            Some(b) if age >= 90 => prop_assert_eq!(b, "90+"),
            Some(b) => {
                let (lo, hi) = b.split_once('-').unwrap();
                let (lo, hi): (i32, i32) = (lo.parse().unwrap(), hi.parse().unwrap());
                prop_assert!(lo <= age && age <= hi && hi - lo == 4 && lo % 5 == 0);
            }
        }
    }
}

/// The fuzz entry point on stable: thousands of mutated files (flips, insertions, deletions,
/// truncations, splices) never panic, and any that is accepted says exactly what the original
/// said (only the JSON's layout can change).
#[test]
fn mutated_files_are_refused_or_say_the_same() {
    let id = patient(21);
    let c = contribute(&id, ICB, ExtractPurpose::Research, &sections(&id), 1);
    let seed = c.to_file();
    assert!(crate::fuzzing::contribution(&seed));
    for n in 0..3_000 {
        let m = crate::fuzzing::mutate(&seed, n);
        if crate::fuzzing::contribution(&m) {
            assert_eq!(Contribution::from_file(&m).unwrap(), c, "mutation {n}");
        }
    }
}

#[test]
fn age_bands_postcode_districts_and_areas() {
    let on = jiff::civil::date(2026, 11, 22);
    assert_eq!(age_band("1941-03-09", on).as_deref(), Some("85-89"));
    assert_eq!(age_band("1936-11-22", on).as_deref(), Some("90+"));
    assert_eq!(age_band("1936-11-23", on).as_deref(), Some("85-89"));
    assert_eq!(age_band("2026-11-22", on).as_deref(), Some("0-4"));
    assert_eq!(age_band("2026-11-23", on), None, "born tomorrow");
    assert_eq!(
        age_band("1980", on).as_deref(),
        Some("45-49"),
        "year only: 1 July"
    );
    assert_eq!(age_band("1981-12", on).as_deref(), Some("40-44"));
    assert_eq!(age_band("09/03/1941", on), None);
    assert_eq!(age_band("1890-01-01", on), None);
    assert_eq!(wider_age_band("45-49"), "40-49");
    assert_eq!(wider_age_band("90+"), "90+");

    for (pc, district) in [
        ("LS1 4AP", Some("LS1")),
        ("ls14ap", Some("LS1")),
        ("HX7 8AA", Some("HX7")),
        ("SW1A 1AA", Some("SW1A")),
        ("M1 1AE", Some("M1")),
        ("B33 8TH", Some("B33")),
        ("EC1A 1BB", Some("EC1A")),
        ("LS1", None),
        ("17 Quarry Lane", None),
        ("AB12 3CDE", None),
        ("12 3AB", None),
        ("", None),
    ] {
        assert_eq!(postcode_district(pc).as_deref(), district, "{pc}");
    }
    assert_eq!(postcode_area("SW1A"), "SW");
    assert_eq!(postcode_area("M1"), "M");
}

#[test]
fn a_contribution_round_trips_and_names_its_recipient_and_purpose() {
    let id = patient(30);
    let views = sections(&id);
    let c = contribute(&id, ICB, ExtractPurpose::Planning, &views, 1);
    let b = c.body();
    assert_eq!(b.recipient, ICB);
    assert_eq!(b.purpose, ExtractPurpose::Planning);
    assert_eq!(b.created, "2026-11-22");
    assert_eq!(b.format, FORMAT);
    assert_eq!(
        b.pseudonym,
        pseudonym(id.root_key().unwrap(), &ICB, ExtractPurpose::Planning)
    );
    assert_eq!(Contribution::from_file(&c.to_file()).unwrap(), c);
    // Two contributions get different ids but the same pseudonym.
    let again = contribute(&id, ICB, ExtractPurpose::Planning, &views, 2);
    assert_ne!(again.body().id, b.id);
    assert_eq!(again.body().pseudonym, b.pseudonym);
}

#[test]
fn contributions_hold_no_name_nhs_number_address_or_birth_date() {
    let id = patient(31);
    let views = sections(&id);
    let c = contribute(&id, UNI, ExtractPurpose::Research, &views, 1);
    // The file without its random base64 parts (where a short canary could turn up by
    // chance), and the signed part decoded.
    let mut form: serde_json::Value = serde_json::from_slice(&c.to_file()).unwrap();
    let signed = BASE64URL_NOPAD
        .decode(form["signed"].as_str().unwrap().as_bytes())
        .unwrap();
    form["signed"] = json!(null);
    form["signature"] = json!(null);
    let mut everything = form.to_string().into_bytes();
    everything.extend_from_slice(&signed);
    let text = String::from_utf8_lossy(&everything).to_lowercase();
    let compact: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    for canary in [
        NAME,
        NHS,
        ADDRESS,
        "quarry",
        POSTCODE,
        "8aa",
        BORN,
        "1941",
        PHONE,
        "845123",
        "edith",
        "calder",
        "b12345",
        NOTE,
        "canary",
        "metformin",
        "diabetes",
        "35489007",
        "depression",
        "263204007",
        "38341003",
        "323509004",
    ] {
        let c = canary.to_lowercase();
        let c_compact: String = c.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        assert!(!text.contains(&c), "{canary} is in the contribution");
        assert!(
            !compact.contains(&c_compact),
            "{canary} is in the contribution"
        );
    }
    // Nor the record id, the device key or the recipient-independent root key.
    for key in [id.record_id().unwrap().0, id.peer().0] {
        assert!(!everything.windows(32).any(|w| w == key));
        assert!(!text.contains(&id.record_id().unwrap().to_string().to_lowercase()));
        assert!(!text.contains(&id.peer().to_string().to_lowercase()));
    }
}

#[test]
fn tampered_and_malformed_files_are_refused() {
    let id = patient(32);
    let c = contribute(&id, ICB, ExtractPurpose::Planning, &sections(&id), 1);
    let file = c.to_file();
    let form: serde_json::Value = serde_json::from_slice(&file).unwrap();

    // The readable part edited: refused as tampered.
    let mut edited = form.clone();
    edited["contribution"]["profile"]["age_band"] = json!("40-44");
    assert_eq!(
        Contribution::from_file(&serde_json::to_vec(&edited).unwrap()),
        Err(ExtractError::Tampered)
    );
    // The signed part replaced by another body: bad signature.
    let other = contribute(&id, UNI, ExtractPurpose::Planning, &[], 2);
    let other_form: serde_json::Value = serde_json::from_slice(&other.to_file()).unwrap();
    let mut swapped = form.clone();
    swapped["signed"] = other_form["signed"].clone();
    assert_eq!(
        Contribution::from_file(&serde_json::to_vec(&swapped).unwrap()),
        Err(ExtractError::BadSignature)
    );
    // Unsigned: no or an empty signature.
    let mut unsigned = form.clone();
    unsigned["signature"] = json!("");
    assert_eq!(
        Contribution::from_file(&serde_json::to_vec(&unsigned).unwrap()),
        Err(ExtractError::BadSignature)
    );
    let mut no_sig = form.clone();
    no_sig.as_object_mut().unwrap().remove("signature");
    assert!(matches!(
        Contribution::from_file(&serde_json::to_vec(&no_sig).unwrap()),
        Err(ExtractError::Malformed(_))
    ));
    // Re-signed by someone else with their own key under the original pseudonym: refused.
    let forger = SigningKey::from_bytes(&[3; 32]);
    let signed = BASE64URL_NOPAD
        .decode(form["signed"].as_str().unwrap().as_bytes())
        .unwrap();
    let mut forged = form.clone();
    forged["signature"] =
        json!(BASE64URL_NOPAD.encode(&crypto::sign(&forger, Domain::Contribution, &[&signed])));
    assert_eq!(
        Contribution::from_file(&serde_json::to_vec(&forged).unwrap()),
        Err(ExtractError::BadSignature)
    );
    // A signature from another domain does not verify here.
    let key = contribution_key(id.root_key().unwrap(), &ICB, ExtractPurpose::Planning);
    let mut cross = form.clone();
    cross["signature"] =
        json!(BASE64URL_NOPAD.encode(&crypto::sign(&key, Domain::ConsentEvent, &[&signed])));
    assert_eq!(
        Contribution::from_file(&serde_json::to_vec(&cross).unwrap()),
        Err(ExtractError::BadSignature)
    );
    // Extra fields, other formats, garbage, and oversized files.
    let mut extra = form.clone();
    extra["name"] = json!(NAME);
    assert!(matches!(
        Contribution::from_file(&serde_json::to_vec(&extra).unwrap()),
        Err(ExtractError::Malformed(_))
    ));
    let mut v2 = form;
    v2["format"] = json!("hearth-contribution/2");
    assert!(matches!(
        Contribution::from_file(&serde_json::to_vec(&v2).unwrap()),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(
        Contribution::from_file(b"{\"format\": "),
        Err(ExtractError::Malformed(_))
    ));
    assert_eq!(
        Contribution::from_file(&vec![b' '; MAX_FILE_BYTES as usize + 1]),
        Err(ExtractError::TooLarge)
    );
}

#[test]
fn a_body_breaking_the_format_rules_is_refused_even_when_signed() {
    // A correctly signed body whose profile carries a full postcode and an exact age is still
    // refused: the rules hold for files made by other software too.
    let key = SigningKey::from_bytes(&[5; 32]);
    let mut body = ContributionBody {
        format: FORMAT.into(),
        id: format!("x{}", "a".repeat(26)),
        recipient: ICB,
        purpose: ExtractPurpose::Research,
        created: "2026-11-22".into(),
        pseudonym: Pseudonym(key.verifying_key().to_bytes()),
        profile: Profile::default(),
    };
    let sign = |body: &ContributionBody| {
        let signed = serde_ipld_dagcbor::to_vec(body).unwrap();
        let signature = crypto::sign(&key, Domain::Contribution, &[&signed]);
        Contribution {
            body: body.clone(),
            signed,
            signature,
        }
        .to_file()
    };
    assert!(Contribution::from_file(&sign(&body)).is_ok());
    for bad in [
        Profile {
            postcode_district: Some("HX7 8AA".into()),
            ..Profile::default()
        },
        Profile {
            age_band: Some("85".into()),
            ..Profile::default()
        },
        Profile {
            age_band: Some("86-90".into()),
            ..Profile::default()
        },
        Profile {
            gender: Some(NAME.into()),
            ..Profile::default()
        },
        Profile {
            conditions: vec![format!("snomed:{NOTE}")],
            ..Profile::default()
        },
        Profile {
            conditions: vec!["snomed:2".into(), "snomed:1".into()],
            ..Profile::default()
        },
    ] {
        body.profile = bad;
        assert!(
            matches!(
                Contribution::from_file(&sign(&body)),
                Err(ExtractError::Invalid(_))
            ),
            "{:?}",
            body.profile
        );
    }
}

#[test]
fn aggregation_refuses_other_recipients_purposes_and_duplicates() {
    let a = patient(40);
    let b = patient(41);
    let mut agg = Aggregator::new(ICB, None);
    let first = contribute(&a, ICB, ExtractPurpose::Planning, &[], 1);
    agg.add(first.clone()).unwrap();
    // The same file twice.
    assert_eq!(
        agg.add(first),
        Err(ExtractError::DuplicateContribution { earlier: 0 })
    );
    // Another contribution from the same record (same pseudonym).
    assert_eq!(
        agg.add(contribute(&a, ICB, ExtractPurpose::Planning, &[], 2)),
        Err(ExtractError::DuplicatePseudonym { earlier: 0 })
    );
    // For another recipient.
    assert_eq!(
        agg.add(contribute(&b, UNI, ExtractPurpose::Planning, &[], 3)),
        Err(ExtractError::WrongRecipient(UNI))
    );
    // For another purpose than the first one.
    assert_eq!(
        agg.add(contribute(&b, ICB, ExtractPurpose::Research, &[], 4)),
        Err(ExtractError::WrongPurpose {
            expected: ExtractPurpose::Planning,
            found: ExtractPurpose::Research
        })
    );
    agg.add(contribute(&b, ICB, ExtractPurpose::Planning, &[], 5))
        .unwrap();
    assert_eq!(agg.len(), 2);
    // A fixed purpose refuses the other from the start.
    let mut research_only = Aggregator::new(ICB, Some(ExtractPurpose::Research));
    assert!(matches!(
        research_only.add(contribute(&a, ICB, ExtractPurpose::Planning, &[], 6)),
        Err(ExtractError::WrongPurpose { .. })
    ));
    assert!(research_only.is_empty());
}

fn profile(age: &str, gender: &str, conditions: &[&str]) -> Profile {
    Profile {
        age_band: Some(age.into()),
        gender: Some(gender.into()),
        postcode_district: Some("LS1".into()),
        conditions: conditions.iter().map(|s| s.to_string()).collect(),
        medications: vec![],
    }
}

fn pooled(profiles: Vec<Profile>) -> Aggregator {
    let mut agg = Aggregator::new(ICB, Some(ExtractPurpose::Planning));
    for (i, p) in profiles.into_iter().enumerate() {
        let key = SigningKey::from_bytes(&crypto::sha256(&[&i.to_be_bytes()]));
        let body = ContributionBody {
            format: FORMAT.into(),
            id: format!(
                "x{}",
                BASE32_NOPAD
                    .encode(&crypto::sha256(&[&i.to_le_bytes()])[..16])
                    .to_ascii_lowercase()
            ),
            recipient: ICB,
            purpose: ExtractPurpose::Planning,
            created: "2026-11-22".into(),
            pseudonym: Pseudonym(key.verifying_key().to_bytes()),
            profile: p,
        };
        let signed = serde_ipld_dagcbor::to_vec(&body).unwrap();
        let signature = crypto::sign(&key, Domain::Contribution, &[&signed]);
        let c = Contribution {
            body,
            signed,
            signature,
        };
        agg.add(Contribution::from_file(&c.to_file()).unwrap())
            .unwrap();
    }
    agg
}

#[test]
fn small_counts_are_suppressed_and_the_rest_rounded() {
    let rule = Suppression::default();
    let shown: Vec<String> = [0, 1, 2, 7, 8, 10, 12, 13, 17, 18, 100, 102, 103]
        .iter()
        .map(|n| rule.apply(*n).to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "0", "*", "*", "*", "10", "10", "10", "15", "15", "20", "100", "100", "105"
        ]
    );
    // Configurable: suppress below 3, round to 10; or neither.
    let custom = Suppression {
        below: 3,
        round_to: 10,
    };
    assert_eq!(custom.apply(2), Count::Suppressed);
    assert_eq!(custom.apply(3), Count::Shown(10));
    assert_eq!(custom.apply(14), Count::Shown(10));
    assert_eq!(custom.apply(15), Count::Shown(20));
    let none = Suppression {
        below: 0,
        round_to: 1,
    };
    assert_eq!(none.apply(1), Count::Shown(1));
    assert_eq!(none.apply(13), Count::Shown(13));

    // 23 women aged 40-44 (12 with diabetes), 3 men aged 85-89.
    let mut profiles = Vec::new();
    for i in 0..23 {
        let conditions: &[&str] = if i < 12 { &["snomed:44054006"] } else { &[] };
        profiles.push(profile("40-44", "female", conditions));
    }
    for _ in 0..3 {
        profiles.push(profile("85-89", "male", &["icd10:I10", "snomed:44054006"]));
    }
    let agg = pooled(profiles);
    let t = agg.finish(&[Dimension::AgeBand, Dimension::Gender], rule);
    let rows: Vec<(Vec<&str>, String)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r.values.iter().map(String::as_str).collect(),
                r.count.to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (vec!["40-44", "female"], "25".to_string()),
            (vec!["85-89", "male"], "*".to_string()),
        ]
    );
    assert_eq!(t.total, Count::Shown(25), "26 rounds to 25");
    assert_eq!(t.purpose, Some(ExtractPurpose::Planning));

    // Multi-valued dimensions count a record once in each of its groups.
    let t = agg.finish(&[Dimension::Condition], rule);
    let by: BTreeMap<String, String> = t
        .rows
        .iter()
        .map(|r| (r.values[0].clone(), r.count.to_string()))
        .collect();
    assert_eq!(by["snomed:44054006"], "15", "12 + 3 = 15");
    assert_eq!(by["icd10:I10"], "*", "3");
    assert_eq!(by["none"], "10", "11 rounds to 10");

    // Coarser derived dimensions.
    let t = agg.finish(&[Dimension::AgeBand10, Dimension::PostcodeArea], rule);
    assert_eq!(t.rows[0].values, vec!["40-49", "LS"]);
    assert_eq!(t.rows[1].values, vec!["80-89", "LS"]);

    // No dimensions: the total alone; no contributions: nothing.
    assert_eq!(agg.finish(&[], rule).rows.len(), 1);
    let empty = Aggregator::new(ICB, None).finish(&[Dimension::Gender], rule);
    assert!(empty.rows.is_empty());
    assert_eq!(empty.total, Count::Shown(0));
}

#[test]
fn dimensions_parse_with_hyphens_or_underscores() {
    assert_eq!("age_band".parse::<Dimension>(), Ok(Dimension::AgeBand));
    assert_eq!(
        "Postcode-District".parse::<Dimension>(),
        Ok(Dimension::PostcodeDistrict)
    );
    for d in Dimension::ALL {
        assert_eq!(d.as_str().parse::<Dimension>(), Ok(d));
    }
    let err = "name".parse::<Dimension>().unwrap_err();
    assert!(err.contains("age-band"));
}

#[test]
fn records_in_the_ledger_name_no_content() {
    let id = patient(50);
    let c = contribute(&id, ICB, ExtractPurpose::Research, &sections(&id), 1);
    let r = ContributionRecord::of(&c, Some("West Yorkshire ICB".into()), TEST_NOW);
    assert_eq!(r.ledger_key(), format!("contribution/{}", c.body().id));
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("44054006") && !text.contains("HX7") && !text.contains("85-89"));
    let back: ContributionRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}
