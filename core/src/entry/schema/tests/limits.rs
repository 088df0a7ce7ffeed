//! Sizes, what errors may say, summaries and the tagged serde form.

use super::*;

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
