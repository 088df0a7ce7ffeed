//! Tests of the entry schemas, sharing the examples here: here the examples themselves, sizes,
//! what errors may say, summaries and the tagged serde form; in `checks` the checks field by
//! field; in `props` the property tests.

mod checks;
mod props;

use super::*;
use serde_json::json;

/// Valid bodies: between them, every field of every class appears at least once.
/// Every example, and the first of each class again with an import `source`.
fn examples() -> Vec<(SectionClass, Value)> {
    let mut all = base_examples();
    for class in SectionClass::ALL {
        if let Some((_, body)) = base_examples().into_iter().find(|(c, _)| c == class) {
            let mut body = body;
            body["source"] = json!({
                "format": "fhir-r4",
                "resource_type": "Basic",
                "id": "b1",
                "full_url": "urn:uuid:2a0c9d1e-5b7f-4c3e-8a6d-1f2e3d4c5b6a",
                "identifiers": [{"system": "https://example.org/ids", "value": "42"}],
                "sha256": "0".repeat(64),
                "body_sha256": "a".repeat(64),
                "resource": {"resourceType": "Basic", "id": "b1"}
            });
            all.push((*class, body));
        }
    }
    all
}

fn base_examples() -> Vec<(SectionClass, Value)> {
    use SectionClass as C;
    vec![
        (
            C::Demographics,
            json!({
                "name": "Edith Jones",
                "birth_date": "1941-03-09",
                "gender": "female",
                "nhs_number": "943 476 5919",
                "address": "12 Mill Lane\nHebden Bridge",
                "postcode": "HX7 8AA",
                "phone": "01422 000000",
                "email": "edith@example.org",
                "preferred_language": "English",
                "interpreter_needed": false,
                "gp_practice": "Riverside Practice (B82000)"
            }),
        ),
        (C::Demographics, json!({"name": "Edith Jones"})),
        (
            C::Allergies,
            json!({
                "substance": "Penicillin",
                "code": {"system": "snomed", "code": "764146007", "display": "Penicillin"},
                "category": "medication",
                "reaction": "rash",
                "severity": "severe",
                "criticality": "high",
                "clinical_status": "active",
                "verification_status": "confirmed",
                "onset": "1978",
                "note": "Reacted as a child."
            }),
        ),
        (C::Allergies, json!({"substance": "Peanuts"})),
        (
            C::Medications,
            json!({
                "name": "Metformin 500 mg tablets",
                "code": {"system": "http://snomed.info/sct", "code": "372567009", "display": "Metformin"},
                "dose": "500 mg",
                "route": "oral",
                "frequency": "twice a day",
                "start": "2015-06-01",
                "end": "2025-06",
                "status": "active",
                "reason": "Type 2 diabetes",
                "prescriber": "Dr A. Shah",
                "note": "With meals."
            }),
        ),
        (C::Medications, json!({"name": "Paracetamol"})),
        (
            C::Conditions,
            json!({
                "name": "Type 2 diabetes mellitus",
                "code": {"system": "icd10", "code": "E11"},
                "clinical_status": "remission",
                "verification_status": "confirmed",
                "severity": "moderate",
                "onset": "2015-06",
                "abatement": "2023-01-10",
                "note": "Diet controlled since 2023."
            }),
        ),
        (
            C::Conditions,
            json!({"name": "Hypertension", "clinical_status": "active"}),
        ),
        (
            C::Observations,
            json!({
                "name": "Body weight",
                "code": {"system": "loinc", "code": "29463-7"},
                "status": "final",
                "value": 72.5,
                "unit": "kg",
                "effective": "2024-05-01T09:30:00+01:00",
                "interpretation": "normal",
                "note": "Weighed at home."
            }),
        ),
        (
            C::Observations,
            json!({
                "name": "Blood pressure",
                "code": {"system": "loinc", "code": "85354-9"},
                "components": [
                    {"name": "Systolic", "code": {"system": "loinc", "code": "8480-6"}, "value": 128, "unit": "mm[Hg]"},
                    {"name": "Diastolic", "code": {"system": "loinc", "code": "8462-4"}, "value": 82, "unit": "mm[Hg]"},
                    {"name": "Position", "value_text": "sitting"}
                ],
                "effective": "2024-05-01"
            }),
        ),
        (
            C::Observations,
            json!({"name": "COVID-19 antigen test", "value_text": "negative", "effective": "2024-05-01T09:30:00.5Z"}),
        ),
        (
            C::Encounters,
            json!({
                "class": "home visit",
                "code": {"system": "snomed", "code": "439708006", "display": "Home visit"},
                "status": "finished",
                "reason": "Leg ulcer dressing",
                "start": "2024-05-01T10:00:00+01:00",
                "end": "2024-05-01T09:40:00Z",
                "location": "Patient's home",
                "practitioner": "District nurse J. Patel",
                "outcome": "Healing well; next visit in 3 days",
                "note": "Patient in good spirits."
            }),
        ),
        (
            C::Encounters,
            json!({"class": "A&E", "start": "2024-04-20"}),
        ),
        (
            C::CarePlan,
            json!({
                "title": "Diabetes care plan",
                "description": "Keep blood sugar in range and protect the feet.",
                "status": "active",
                "goals": ["HbA1c below 58 mmol/mol", "Walk 30 minutes a day"],
                "activities": ["Annual foot check", "Retinal screening"],
                "start": "2024-01-15",
                "end": "2025-01-15",
                "review_date": "2024-07-15"
            }),
        ),
        (C::CarePlan, json!({"title": "Falls prevention"})),
        (
            C::SocialCareAssessments,
            json!({
                "assessment_type": "Care Act needs assessment",
                "date": "2024-03-12",
                "assessor": "S. Okafor, social worker",
                "needs": [
                    {"domain": "managing and maintaining nutrition", "description": "Cannot prepare hot meals", "eligible": true},
                    {"domain": "maintaining personal hygiene"}
                ],
                "outcome": "Eligible; support plan to follow",
                "eligible": true,
                "summary": "Lives alone, managing with difficulty."
            }),
        ),
        (
            C::SocialCareAssessments,
            json!({"assessment_type": "Carer's assessment", "date": "2024-03"}),
        ),
        (
            C::SocialCareSupportPlan,
            json!({
                "title": "Care and support plan",
                "status": "active",
                "needs": ["Hot meal daily", "Help with washing"],
                "services": [
                    {"name": "Home care: morning call", "provider": "Calder Care Ltd", "frequency": "daily, 30 minutes", "funded_by": "local authority"},
                    {"name": "Meals on wheels"}
                ],
                "personal_budget_gbp": 12480.5,
                "start": "2024-04-01",
                "end": "2025-03-31",
                "review_date": "2024-10-01",
                "note": "Daughter helps at weekends."
            }),
        ),
        (
            C::SocialCareSupportPlan,
            json!({"title": "Interim plan", "personal_budget_gbp": 0}),
        ),
        (
            C::Carers,
            json!({
                "name": "Mary Jones",
                "relationship": "daughter",
                "phone": "07700 900123",
                "email": "mary@example.org",
                "lives_with_patient": false,
                "main_carer": true,
                "lasting_power_of_attorney": "health and welfare",
                "note": "Visits every evening."
            }),
        ),
        (
            C::Carers,
            json!({"name": "Tom", "relationship": "neighbour"}),
        ),
        (
            C::Notes,
            json!({"text": "Feeling better today.\nSlept well.", "title": "Diary", "category": "patient note"}),
        ),
        (C::Notes, json!({"text": "Feeling better today"})),
        (
            C::Documents,
            json!({
                "title": "Discharge letter",
                "code": {"system": "loinc", "code": "18842-5", "display": "Discharge summary"},
                "content_type": "application/pdf",
                "date": "2024-04-21",
                "description": "From Calderdale Royal Hospital",
                "data_base64": "JVBERi0xLjQK",
                "url": "https://example.org/letters/1.pdf"
            }),
        ),
        (C::Documents, json!({"title": "Scan report"})),
        (
            C::AdvanceCarePlan,
            json!({
                "statement": "I want to stay at home with my family.",
                "dnacpr": true,
                "preferred_place_of_care": "home",
                "preferred_place_of_death": "home",
                "lasting_power_of_attorney": "Mary Jones (health and welfare)",
                "recorded_on": "2024-02-01",
                "review_date": "2025-02-01",
                "note": "Discussed with GP and family."
            }),
        ),
        (C::AdvanceCarePlan, json!({"dnacpr": false})),
    ]
}

/// The required fields of each class.
const REQUIRED: &[(SectionClass, &[&str])] = &[
    (SectionClass::Demographics, &["name"]),
    (SectionClass::Allergies, &["substance"]),
    (SectionClass::Medications, &["name"]),
    (SectionClass::Conditions, &["name"]),
    (SectionClass::Observations, &["name"]),
    (SectionClass::Encounters, &["class", "start"]),
    (SectionClass::CarePlan, &["title"]),
    (
        SectionClass::SocialCareAssessments,
        &["assessment_type", "date"],
    ),
    (SectionClass::SocialCareSupportPlan, &["title"]),
    (SectionClass::Carers, &["name", "relationship"]),
    (SectionClass::Notes, &["text"]),
    (SectionClass::Documents, &["title"]),
    (SectionClass::AdvanceCarePlan, &[]),
];

fn err(class: SectionClass, body: Value) -> SchemaError {
    match EntryBody::from_json(class, &body) {
        Ok(b) => panic!("{class}: accepted {body}: {b:?}"),
        Err(e) => e,
    }
}

/// Asserts the error names `field` and its problem contains `problem`.
#[track_caller]
fn assert_err(class: SectionClass, body: Value, field: &str, problem: &str) {
    let e = err(class, body);
    assert_eq!(e.class, class);
    assert_eq!(e.field, field, "{e}");
    assert!(e.problem.contains(problem), "{e}");
}

fn valid(class: SectionClass) -> Value {
    examples()
        .into_iter()
        .find(|(c, _)| *c == class)
        .map(|(_, v)| v)
        .unwrap()
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body.as_object_mut().unwrap().insert(key.to_owned(), value);
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

#[test]
fn every_class_has_examples() {
    for class in SectionClass::ALL {
        assert!(examples().iter().any(|(c, _)| c == class), "{class}");
        assert!(REQUIRED.iter().any(|(c, _)| c == class), "{class}");
    }
}

#[test]
fn examples_round_trip() {
    for (class, body) in examples() {
        let entry = EntryBody::from_json(class, &body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entry.class(), class);
        let json = entry.to_json();
        let again = EntryBody::from_json(class, &json).unwrap();
        assert_eq!(again, entry, "{class}");
        assert_eq!(again.to_json(), json);
        // The structural serde derive agrees with the checked reader.
        let structural = EntryBody::structural(class, json.clone()).unwrap();
        assert_eq!(structural, entry, "{class}");
    }
}

#[test]
fn sizes_are_bounded() {
    use SectionClass as C;
    let at_limit = "x".repeat(MAX_TEXT_CHARS);
    assert!(EntryBody::from_json(C::Notes, &json!({"text": at_limit})).is_ok());
    // Characters, not bytes: 10,000 two-byte characters are fine.
    let wide = "é".repeat(MAX_TEXT_CHARS);
    assert!(EntryBody::from_json(C::Notes, &json!({"text": wide})).is_ok());
    assert_err(
        C::Notes,
        json!({"text": "x".repeat(MAX_TEXT_CHARS + 1)}),
        "text",
        "too long",
    );
    let goals: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| format!("goal {i}")).collect();
    assert_err(
        C::CarePlan,
        json!({"title": "x", "goals": goals}),
        "goals",
        "too many items",
    );
    let goals: Vec<String> = (0..MAX_LIST_ITEMS).map(|i| format!("goal {i}")).collect();
    assert!(EntryBody::from_json(C::CarePlan, &json!({"title": "x", "goals": goals})).is_ok());
    // A large document is fine up to the base64 limit.
    let data = data_encoding::BASE64.encode(&vec![7u8; MAX_BASE64_CHARS / 4 * 3]);
    assert_eq!(data.len(), MAX_BASE64_CHARS);
    let doc =
        json!({"title": "x", "content_type": "application/octet-stream", "data_base64": data});
    assert!(EntryBody::from_json(C::Documents, &doc).is_ok());
    let data = data_encoding::BASE64.encode(&vec![7u8; MAX_BASE64_CHARS / 4 * 3 + 3]);
    let doc =
        json!({"title": "x", "content_type": "application/octet-stream", "data_base64": data});
    assert_err(C::Documents, doc, "data_base64", "too long");
    // Whatever the fields, the whole body is bounded.
    let huge = json!({"text": "x", "junk": "y".repeat(MAX_ENTRY_JSON_BYTES)});
    assert_err(C::Notes, huge, "(body)", "too large");
}

#[test]
fn errors_never_contain_the_value() {
    use SectionClass as C;
    const SECRET: &str = "S3CRET-Value";
    let cases = [
        (C::Demographics, json!({"name": "x", "gender": SECRET})),
        (C::Demographics, json!({"name": "x", "birth_date": SECRET})),
        (
            C::Demographics,
            json!({"name": "x", "birth_date": "2024-02-30"}),
        ),
        (C::Demographics, json!({"name": "x", "nhs_number": SECRET})),
        (
            C::Demographics,
            json!({"name": "x", "nhs_number": "9434765918"}),
        ),
        (C::Demographics, json!({"name": "x", "email": SECRET})),
        (
            C::Allergies,
            json!({"substance": "x", "code": {"system": format!("{SECRET} x"), "code": "1"}}),
        ),
        (
            C::Allergies,
            json!({"substance": "x", "code": {"system": "snomed", "code": format!(" {SECRET}")}}),
        ),
        (C::Observations, json!({"name": "x", "value": SECRET})),
        (
            C::Observations,
            json!({"name": "x", "value": 1, "value_text": SECRET}),
        ),
        (C::Encounters, json!({"class": "x", "start": SECRET})),
        (
            C::Documents,
            json!({"title": "x", "content_type": "text/plain", "data_base64": SECRET}),
        ),
        (C::Documents, json!({"title": "x", "content_type": SECRET})),
        (C::Documents, json!({"title": "x", "url": SECRET})),
        (C::Notes, json!({"text": format!("{SECRET}\u{1b}[31m")})),
        (C::Notes, json!({"text": [SECRET]})),
        (C::Notes, json!({"text": {"a": SECRET}})),
        (C::Notes, json!(SECRET)),
        (C::Notes, json!({"text": SECRET.repeat(MAX_TEXT_CHARS)})),
    ];
    for (class, body) in cases {
        let e = err(class, body);
        assert!(!e.to_string().contains("S3CRET"), "{e}");
        assert!(!format!("{e:?}").contains("S3CRET"), "{e:?}");
    }
    let e = serde_json::from_value::<Gender>(json!(SECRET)).unwrap_err();
    assert!(!e.to_string().contains("S3CRET"), "{e}");
}

#[test]
fn summaries() {
    let s =
        |class: SectionClass, body: Value| EntryBody::from_json(class, &body).unwrap().summary();
    use SectionClass as C;
    assert_eq!(
        s(
            C::Allergies,
            json!({"substance": "Penicillin", "severity": "severe", "reaction": "rash"})
        ),
        "Penicillin — severe (rash)"
    );
    assert_eq!(
        s(
            C::Allergies,
            json!({"substance": "Latex", "clinical_status": "resolved"})
        ),
        "Latex [resolved]"
    );
    assert_eq!(
        s(C::Demographics, valid(C::Demographics)),
        "Edith Jones, born 1941-03-09, NHS 943 476 5919"
    );
    assert_eq!(
        s(C::Medications, valid(C::Medications)),
        "Metformin 500 mg tablets, 500 mg, twice a day [active]"
    );
    assert_eq!(
        s(C::Conditions, valid(C::Conditions)),
        "Type 2 diabetes mellitus [remission, confirmed], since 2015-06, until 2023-01-10"
    );
    assert_eq!(
        s(C::Observations, valid(C::Observations)),
        "Body weight: 72.5 kg (normal) on 2024-05-01T09:30:00+01:00"
    );
    assert_eq!(
        s(C::Observations, examples()[9].1.clone()),
        "Blood pressure: Systolic 128 mm[Hg], Diastolic 82 mm[Hg], Position sitting on 2024-05-01"
    );
    assert_eq!(
        s(
            C::Encounters,
            json!({"class": "A&E", "start": "2024-04-20", "reason": "Fall"})
        ),
        "A&E on 2024-04-20: Fall"
    );
    assert_eq!(
        s(C::CarePlan, valid(C::CarePlan)),
        "Diabetes care plan [active], review 2024-07-15"
    );
    assert_eq!(
        s(C::SocialCareAssessments, valid(C::SocialCareAssessments)),
        "Care Act needs assessment on 2024-03-12 — eligible, 2 needs"
    );
    assert_eq!(
        s(C::SocialCareSupportPlan, valid(C::SocialCareSupportPlan)),
        "Care and support plan [active], 2 services, budget £12480.50 a year"
    );
    assert_eq!(
        s(C::Carers, valid(C::Carers)),
        "Mary Jones (daughter), main carer"
    );
    assert_eq!(
        s(C::Notes, valid(C::Notes)),
        "Diary: Feeling better today. Slept well."
    );
    assert_eq!(
        s(C::Documents, valid(C::Documents)),
        "Discharge letter (application/pdf, 2024-04-21)"
    );
    assert_eq!(
        s(
            C::AdvanceCarePlan,
            json!({"dnacpr": true, "preferred_place_of_death": "home"})
        ),
        "DNACPR: yes; preferred place of death: home"
    );
    let long = s(C::Notes, json!({"text": "word ".repeat(100)}));
    assert_eq!(long.chars().count(), SUMMARY_CHARS);
    assert!(long.ends_with("word…"), "{long}");
    for (class, body) in examples() {
        let summary = s(class, body);
        assert!(summary.chars().count() <= SUMMARY_CHARS, "{summary}");
        assert!(!summary.contains('\n'));
    }
}

#[test]
fn entry_body_serde_is_tagged_and_validated() {
    let entry = EntryBody::from_json(SectionClass::Notes, &json!({"text": "hi"})).unwrap();
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json, json!({"class": "notes", "body": {"text": "hi"}}));
    assert_eq!(serde_json::from_value::<EntryBody>(json).unwrap(), entry);
    for (class, body) in examples() {
        let entry = EntryBody::from_json(class, &body).unwrap();
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<EntryBody>(&text).unwrap(), entry);
    }
    let bad = json!({"class": "notes", "body": {"txt": "hi"}});
    let e = serde_json::from_value::<EntryBody>(bad).unwrap_err();
    assert!(
        e.to_string().contains("notes entry: txt: unknown field"),
        "{e}"
    );
    let bad = json!({"class": "nosuch", "body": {}});
    assert!(serde_json::from_value::<EntryBody>(bad).is_err());
}
