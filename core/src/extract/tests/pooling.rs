//! Pooling: what an aggregator refuses, and how counts are suppressed and rounded.

use super::*;
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
        let c = signed_by(&key, body);
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
}
