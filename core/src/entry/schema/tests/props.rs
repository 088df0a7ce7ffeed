//! Property tests: no JSON makes the reader panic or give a malformed error.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Every field name of every schema, so generated objects often hit real fields.
fn all_field_names() -> Vec<&'static str> {
    let mut names: BTreeSet<&'static str> = BTreeSet::new();
    for class in SectionClass::ALL {
        names.extend(fields_of(*class));
    }
    for nested in [
        Code::FIELDS,
        ObservationComponent::FIELDS,
        AssessedNeed::FIELDS,
        SupportService::FIELDS,
    ] {
        names.extend(nested);
    }
    names.into_iter().collect()
}

const INTERESTING: &[&str] = &[
    "",
    " ",
    "x",
    "2024",
    "2024-05",
    "2024-05-01",
    "2024-02-30",
    "2024-05-01T10:00:00Z",
    "2024-05-01T10:00:00+01:00",
    "2024-05-01T10:00",
    "snomed",
    "http://loinc.org",
    "active",
    "resolved",
    "mild",
    "female",
    "on-hold",
    "final",
    "9434765919",
    "943 476 5919",
    "aGVsbG8=",
    "application/pdf",
    "https://example.org/x",
    "a@b",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(INTERESTING).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
    ];
    let keys = prop_oneof![
        3 => proptest::sample::select(all_field_names()).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects whose keys are mostly real field names: these get past the first checks.
fn arb_body() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        proptest::sample::select(all_field_names()).prop_map(str::to_owned),
        arb_json(),
        0..10,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A valid example with a few fields removed or replaced by arbitrary JSON: often still
/// valid, often wrong in just one place.
fn arb_mutated_example() -> impl Strategy<Value = (SectionClass, Value)> {
    let edit = (
        proptest::sample::select(all_field_names()),
        proptest::option::of(arb_json()),
    );
    (
        proptest::sample::select(examples()),
        proptest::collection::vec(edit, 0..4),
    )
        .prop_map(|((class, mut body), edits)| {
            if let Some(map) = body.as_object_mut() {
                for (key, value) in edits {
                    match value {
                        Some(value) => map.insert(key.to_owned(), value),
                        None => map.remove(key),
                    };
                }
            }
            (class, body)
        })
}

fn check_anything(class: SectionClass, value: &Value) -> Result<(), TestCaseError> {
    match EntryBody::from_json(class, value) {
        Ok(entry) => {
            prop_assert_eq!(entry.class(), class);
            let again = EntryBody::from_json(class, &entry.to_json());
            prop_assert_eq!(again.as_ref(), Ok(&entry));
            prop_assert!(entry.summary().chars().count() <= SUMMARY_CHARS);
        }
        Err(e) => {
            prop_assert_eq!(e.class, class);
            prop_assert!(!e.field.is_empty());
            prop_assert!(!e.problem.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn from_json_never_panics_on_any_json(
        class in proptest::sample::select(SectionClass::ALL),
        value in arb_json(),
    ) {
        check_anything(class, &value)?;
    }

    #[test]
    fn from_json_never_panics_on_plausible_bodies(
        class in proptest::sample::select(SectionClass::ALL),
        value in arb_body(),
    ) {
        check_anything(class, &value)?;
    }

    #[test]
    fn from_json_never_panics_on_edited_examples((class, value) in arb_mutated_example()) {
        check_anything(class, &value)?;
    }

    #[test]
    fn dates_and_datetimes_never_panic(s in "[0-9T:Z+.-]{0,30}") {
        let _ = check_date(&s);
        let _ = check_datetime(&s);
    }
}
