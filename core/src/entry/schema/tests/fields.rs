//! Fields: the lists, required, unknown and wrongly typed ones.

use super::*;
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
