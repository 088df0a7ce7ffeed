//! The checks, each named by the field it finds at fault: the field lists, required, unknown
//! and wrongly typed fields, dates and the order of starts and ends, code systems, and each
//! class's own rules.

use super::*;
use crate::entry::schema::dates::{DATE_FORMAT, DATETIME_FORMAT, NOT_A_DATE, not_before};
use std::collections::BTreeSet;

#[test]
fn field_lists_match_serialised_fields() {
    for class in SectionClass::ALL {
        let mut seen = BTreeSet::new();
        for (_, body) in examples().into_iter().filter(|(c, _)| c == class) {
            let json = EntryBody::from_json(*class, &body).unwrap().to_json();
            seen.extend(json.as_object().unwrap().keys().cloned());
        }
        let declared: BTreeSet<String> = fields_of(*class).iter().map(|s| s.to_string()).collect();
        assert_eq!(seen, declared, "{class}: examples must use every field");
    }
    let nested =
        |v: Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let set = |f: &[&str]| -> BTreeSet<String> { f.iter().map(|s| s.to_string()).collect() };
    let code = Code {
        system: SNOMED_CT.into(),
        code: "1".into(),
        display: Some("x".into()),
    };
    assert_eq!(
        nested(serde_json::to_value(&code).unwrap()),
        set(Code::FIELDS)
    );
    let component = ObservationComponent {
        name: "x".into(),
        code: Some(code),
        value: Some(1.0),
        unit: Some("kg".into()),
        value_text: Some("x".into()),
    };
    assert_eq!(
        nested(serde_json::to_value(&component).unwrap()),
        set(ObservationComponent::FIELDS)
    );
    let need = AssessedNeed {
        domain: "x".into(),
        description: Some("x".into()),
        eligible: Some(true),
    };
    assert_eq!(
        nested(serde_json::to_value(&need).unwrap()),
        set(AssessedNeed::FIELDS)
    );
    let service = SupportService {
        name: "x".into(),
        provider: Some("x".into()),
        frequency: Some("x".into()),
        funded_by: Some("x".into()),
    };
    assert_eq!(
        nested(serde_json::to_value(&service).unwrap()),
        set(SupportService::FIELDS)
    );
}

#[test]
fn missing_required_fields_are_named() {
    for (class, required) in REQUIRED {
        for field in *required {
            assert_err(*class, without(valid(*class), field), field, "is required");
            // null counts as absent
            assert_err(
                *class,
                with(valid(*class), field, Value::Null),
                field,
                "is required",
            );
        }
    }
    assert_err(
        SectionClass::Allergies,
        json!({"substance": "x", "code": {"code": "1"}}),
        "code.system",
        "is required",
    );
    assert_err(
        SectionClass::Allergies,
        json!({"substance": "x", "code": {"system": "snomed"}}),
        "code.code",
        "is required",
    );
    assert_err(
        SectionClass::Observations,
        json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"value": 2}]}),
        "components[1].name",
        "is required",
    );
    assert_err(
        SectionClass::SocialCareAssessments,
        json!({"assessment_type": "x", "date": "2024", "needs": [{"eligible": true}]}),
        "needs[0].domain",
        "is required",
    );
    assert_err(
        SectionClass::SocialCareSupportPlan,
        json!({"title": "x", "services": [{"provider": "y"}]}),
        "services[0].name",
        "is required",
    );
}

#[test]
fn unknown_fields_are_named() {
    let e = err(SectionClass::Notes, json!({"txt": "hello"}));
    assert_eq!(e.field, "txt");
    assert_eq!(
        e.to_string(),
        "notes entry: txt: unknown field; expected one of: text, title, category, source"
    );
    assert_err(
        SectionClass::Notes,
        json!({"text": "hello", "colour": "red"}),
        "colour",
        "unknown field",
    );
    assert_err(
        SectionClass::Observations,
        json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"name": "b", "value": 2, "colour": 1}]}),
        "components[1].colour",
        "unknown field",
    );
    assert_err(
        SectionClass::Allergies,
        json!({"substance": "x", "code": {"system": "snomed", "code": "1", "version": "1"}}),
        "code.version",
        "unknown field",
    );
    // Field names in errors are cut short and made printable.
    let e = err(SectionClass::Notes, json!({"text": "x", "a\u{1b}b": 1}));
    assert_eq!(e.field, "a?b");
    let long = "k".repeat(100);
    let e = err(SectionClass::Notes, json!({"text": "x", long: 1}));
    assert_eq!(e.field.chars().count(), 41);
}

#[test]
fn wrong_types_are_named() {
    use SectionClass as C;
    let cases = [
        (C::Notes, json!({"text": 5}), "text", "must be text"),
        (C::Notes, json!({"text": ["a"]}), "text", "must be text"),
        (
            C::Notes,
            json!({"text": "x", "title": true}),
            "title",
            "must be text",
        ),
        (
            C::Observations,
            json!({"name": "w", "value": "72"}),
            "value",
            "must be a number",
        ),
        (
            C::Demographics,
            json!({"name": "x", "interpreter_needed": "yes"}),
            "interpreter_needed",
            "true or false",
        ),
        (
            C::Demographics,
            json!({"name": "x", "gender": "F"}),
            "gender",
            "must be one of: male, female, other, unknown",
        ),
        (
            C::Demographics,
            json!({"name": "x", "nhs_number": 9434765919u64}),
            "nhs_number",
            "must be text",
        ),
        (
            C::CarePlan,
            json!({"title": "x", "goals": "walk"}),
            "goals",
            "must be a list",
        ),
        (
            C::CarePlan,
            json!({"title": "x", "goals": ["walk", 2]}),
            "goals[1]",
            "must be text",
        ),
        (
            C::Allergies,
            json!({"substance": "x", "code": "764146007"}),
            "code",
            "must be a JSON object",
        ),
        (
            C::Allergies,
            json!({"substance": "x", "severity": "SEVERE"}),
            "severity",
            "must be one of: mild, moderate, severe",
        ),
        (
            C::Allergies,
            json!({"substance": "x", "criticality": "unable to assess"}),
            "criticality",
            "unable-to-assess",
        ),
        (
            C::Medications,
            json!({"name": "x", "status": "on hold"}),
            "status",
            "on-hold",
        ),
        (
            C::Observations,
            json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"name": "b", "value": "high"}]}),
            "components[1].value",
            "must be a number",
        ),
        (
            C::SocialCareSupportPlan,
            json!({"title": "x", "services": {"name": "y"}}),
            "services",
            "must be a list",
        ),
    ];
    for (class, body, field, problem) in cases {
        assert_err(class, body, field, problem);
    }
}

#[test]
fn non_object_bodies_are_refused() {
    for body in [json!([]), json!("text"), json!(null), json!(5), json!(true)] {
        for class in SectionClass::ALL {
            assert_err(*class, body.clone(), "(body)", "must be a JSON object");
        }
    }
    assert_eq!(
        err(SectionClass::Notes, json!(["x"])).to_string(),
        "notes entry: (body): must be a JSON object"
    );
}

#[test]
fn dates() {
    for good in [
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-02-29",
        "0001-01-01",
        "9999-12-31",
    ] {
        assert!(check_date(good).is_ok(), "{good}");
    }
    for bad in [
        "2024-5-1",
        "01/05/2024",
        "2024/05/01",
        "24-05-01",
        "20240501",
        "2024-05-01T10:00:00Z",
        " 2024",
        "2024-05-",
        "2024-0a-01",
        "+2024-05-01",
        "２０２４",
    ] {
        assert_eq!(check_date(bad), Err(DATE_FORMAT), "{bad}");
    }
    for unreal in [
        "2023-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-04-31",
        "0000",
        "2024-05-00",
    ] {
        assert_eq!(check_date(unreal), Err(NOT_A_DATE), "{unreal}");
    }
    for good in [
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00+01:00",
        "2024-05-01T10:00:00-05:30",
        "2024-05-01T10:00:00.123456789Z",
    ] {
        assert!(check_datetime(good).is_ok(), "{good}");
    }
    for bad in [
        "2024-05-01T10:00:00",
        "2024-05-01T10:00Z",
        "2024-05-01 10:00:00Z",
        "2024-05-01t10:00:00z",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00.1234567890Z",
        "2024-05-01T10:00:00+0100",
        "2024-05T10:00:00Z",
        "yesterday",
    ] {
        assert_eq!(check_datetime(bad), Err(DATETIME_FORMAT), "{bad}");
    }
    assert_eq!(check_datetime("2024-02-30T10:00:00Z"), Err(NOT_A_DATE));
    assert!(check_datetime("2024-05-01T25:00:00Z").is_err());

    use SectionClass as C;
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": "09/03/1941"}),
        "birth_date",
        "YYYY-MM-DD",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": "1941-02-30"}),
        "birth_date",
        "not a real calendar date",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": 1941}),
        "birth_date",
        "must be text",
    );
    assert_err(
        C::Allergies,
        json!({"substance": "x", "onset": "last year"}),
        "onset",
        "YYYY-MM-DD",
    );
    assert_err(
        C::Encounters,
        json!({"class": "x", "start": "2024-05-01T10:00"}),
        "start",
        "UTC offset",
    );
    assert_err(
        C::Observations,
        json!({"name": "x", "value": 1, "effective": "today"}),
        "effective",
        "UTC offset",
    );
    assert_err(
        C::SocialCareAssessments,
        json!({"assessment_type": "x", "date": "2024-05-01T10:00:00Z"}),
        "date",
        "YYYY-MM-DD",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({"dnacpr": true, "review_date": "soon"}),
        "review_date",
        "YYYY-MM-DD",
    );
}

#[test]
fn ends_are_not_before_starts() {
    assert!(not_before("2024-05-02", "2024-05-01"));
    assert!(not_before("2024-05-01", "2024-05-01"));
    assert!(not_before("2024", "2024-05-01"));
    assert!(not_before("2024-05", "2024-05-31"));
    assert!(!not_before("2023-12", "2024"));
    assert!(not_before(
        "2024-05-01T09:00:00Z",
        "2024-05-01T10:00:00+01:00"
    ));
    assert!(!not_before(
        "2024-05-01T09:59:59Z",
        "2024-05-01T11:00:00+01:00"
    ));
    assert!(not_before("2024-05-01", "2024-05-01T23:00:00Z"));

    use SectionClass as C;
    assert_err(
        C::Medications,
        json!({"name": "x", "start": "2024-05-01", "end": "2024-04-30"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::Encounters,
        json!({"class": "x", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::Conditions,
        json!({"name": "x", "onset": "2020", "abatement": "2019"}),
        "abatement",
        "must not be before onset",
    );
    assert_err(
        C::CarePlan,
        json!({"title": "x", "start": "2024-05", "end": "2024-04"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::SocialCareSupportPlan,
        json!({"title": "x", "start": "2024-05-01", "end": "2023"}),
        "end",
        "must not be before start",
    );
}

#[test]
fn code_system_aliases_are_normalised() {
    for (alias, uri) in [
        ("snomed", SNOMED_CT),
        ("SNOMED", SNOMED_CT),
        ("loinc", LOINC),
        ("dmd", DMD),
        ("icd10", ICD_10),
        (
            "https://fhir.nhs.uk/Id/ods-organization-code",
            "https://fhir.nhs.uk/Id/ods-organization-code",
        ),
        (
            "urn:oid:2.16.840.1.113883.6.96",
            "urn:oid:2.16.840.1.113883.6.96",
        ),
    ] {
        let body = json!({"substance": "x", "code": {"system": alias, "code": "1"}});
        let entry = EntryBody::from_json(SectionClass::Allergies, &body).unwrap();
        assert_eq!(entry.to_json()["code"]["system"], uri, "{alias}");
        // The structural serde derive normalises too.
        let code: Code = serde_json::from_value(json!({"system": alias, "code": "1"})).unwrap();
        assert_eq!(code.system, uri);
    }
    assert_eq!(code_system_uri("read"), "read");
    for bad in [
        "read",
        "snomed ct",
        "http:",
        ":x",
        "1http://x",
        "http://exa mple",
    ] {
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"system": bad, "code": "1"}}),
            "code.system",
            "code system URI",
        );
    }
    assert_err(
        SectionClass::Allergies,
        json!({"substance": "x", "code": {"system": "snomed", "code": " 1"}}),
        "code.code",
        "white space",
    );
}

#[test]
fn class_rules() {
    use SectionClass as C;
    assert_err(
        C::Observations,
        json!({"name": "w"}),
        "value",
        "give a value, a value_text or components",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "components": []}),
        "value",
        "give a value",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "value": 1, "value_text": "one"}),
        "value_text",
        "not both",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "value_text": "one", "unit": "kg"}),
        "unit",
        "needs a numeric value",
    );
    assert_err(
        C::Observations,
        json!({"name": "BP", "components": [{"name": "a"}]}),
        "components[0].value",
        "give a value or a value_text",
    );
    assert_err(
        C::Conditions,
        json!({"name": "x", "clinical_status": "active", "abatement": "2020"}),
        "clinical_status",
        "inactive, remission or resolved",
    );
    assert_err(
        C::Notes,
        json!({"text": "   \n "}),
        "text",
        "must not be blank",
    );
    assert_err(C::Notes, json!({"text": ""}), "text", "must not be blank");
    assert_err(
        C::Notes,
        json!({"text": "x", "title": ""}),
        "title",
        "must not be blank",
    );
    assert_err(
        C::Notes,
        json!({"text": "bell\u{7}"}),
        "text",
        "control characters",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({}),
        "(body)",
        "give at least one of",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({"recorded_on": "2024-01-01", "review_date": "2025-01-01"}),
        "(body)",
        "give at least one of",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "data_base64": "aGVsbG8="}),
        "content_type",
        "is required when data_base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVsbG8"}),
        "data_base64",
        "base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVs\nbG8="}),
        "data_base64",
        "base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "pdf"}),
        "content_type",
        "MIME type",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "url": "letters/1.pdf"}),
        "url",
        "absolute URI",
    );
    assert!(
        EntryBody::from_json(
            C::Documents,
            &json!({"title": "x", "content_type": "text/plain; charset=utf-8"})
        )
        .is_ok()
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "email": "edith.example.org"}),
        "email",
        "email address",
    );
    assert_err(
        C::Carers,
        json!({"name": "x", "relationship": "y", "email": "a@b@c"}),
        "email",
        "email address",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "nhs_number": "943 476 5918"}),
        "nhs_number",
        "check digit",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "nhs_number": "943 476 591"}),
        "nhs_number",
        "10 digits, found 9",
    );
    assert_err(
        C::SocialCareSupportPlan,
        json!({"title": "x", "personal_budget_gbp": -1}),
        "personal_budget_gbp",
        "negative",
    );
}
