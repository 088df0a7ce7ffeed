//! Contributions: pseudonyms, the file form and what it refuses, and what it never holds.

use super::*;
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
    // The signed part signed again, by `key` in `domain`, in place of the signature.
    let signed = BASE64URL_NOPAD
        .decode(form["signed"].as_str().unwrap().as_bytes())
        .unwrap();
    let resigned = |key: &SigningKey, domain: Domain| {
        let mut f = form.clone();
        f["signature"] = json!(BASE64URL_NOPAD.encode(&crypto::sign(key, domain, &[&signed])));
        Contribution::from_file(&serde_json::to_vec(&f).unwrap())
    };
    // Re-signed by someone else with their own key under the original pseudonym: refused.
    let forger = SigningKey::from_bytes(&[3; 32]);
    assert_eq!(
        resigned(&forger, Domain::Contribution),
        Err(ExtractError::BadSignature)
    );
    // A signature from another domain does not verify here.
    let key = contribution_key(id.root_key().unwrap(), &ICB, ExtractPurpose::Planning);
    assert_eq!(
        resigned(&key, Domain::ConsentEvent),
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
    let sign = |body: &ContributionBody| signed_by(&key, body.clone()).to_file();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
}
