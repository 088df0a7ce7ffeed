//! The profile: coarse facts only, and only current, non-sensitive ones.

use super::*;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
