//! Bad input is refused, naming the place, and changes nothing; what Hearth has no mapping
//! for is kept and reported.

use crate::common::*;

/// Every kind of bad input is refused with a message naming the place, and the store is left
/// exactly as it was.
#[test]
fn bad_bundles_are_refused_and_change_nothing() {
    let good = fixture("uk-social-care");
    let good: Value = serde_json::from_slice(&good).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        serde_json::to_vec(&b).unwrap()
    };
    // The same, with one placeholder string replaced by raw JSON text.
    let with_text = |f: &dyn Fn(&mut Value), placeholder: &str, text: &str| {
        String::from_utf8(with(f))
            .unwrap()
            .replace(placeholder, text)
            .into_bytes()
    };
    let too_many = format!(
        r#"{{"resourceType": "Bundle", "type": "collection", "entry": [{}{{}}]}}"#,
        "{},".repeat(fhir::MAX_BUNDLE_ENTRIES)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "JSON that is not an object",
            br#""Bundle""#.to_vec(),
            "the file holds no JSON object",
        ),
        (
            "malformed JSON after an entry",
            with_text(
                &|b| b["entry"][2]["resource"]["zz"] = json!("!"),
                r#""!""#,
                "[1,",
            ),
            "not valid JSON (line 1",
        ),
        (
            "an entry that is not an object",
            with(&|b| b["entry"][2] = json!(["a list"])),
            "entry[2]: (entry): must be a JSON object",
        ),
        (
            "a resource that is not an object",
            with(&|b| b["entry"][2]["resource"] = json!("Condition")),
            "entry[2]: resource: must be a JSON object",
        ),
        (
            "a key given twice",
            with_text(
                &|b| b["entry"][3]["resource"]["zz"] = json!("!"),
                r#""zz":"!""#,
                r#""id":"a","id":"b""#,
            ),
            "entry[3]: resource: has a key given twice",
        ),
        (
            "a key given twice deep in a resource",
            with_text(
                &|b| b["entry"][3]["resource"]["code"]["coding"][0]["zz"] = json!("!"),
                r#""zz":"!""#,
                r#""code":"73211009""#,
            ),
            "entry[3]: (entry): has a key given twice",
        ),
        (
            "a number out of range",
            with_text(
                &|b| b["entry"][8]["resource"]["valueQuantity"]["value"] = json!("!"),
                r#""!""#,
                "1e999",
            ),
            "entry[8]: (entry): holds a number out of range",
        ),
        (
            "a number out of range where pass 1 reads",
            with_text(
                &|b| b["entry"][3]["resource"]["id"] = json!("!"),
                r#""!""#,
                "-1e999",
            ),
            "entry[3]: resource: holds a number out of range",
        ),
        (
            "an id that is null",
            with(&|b| b["entry"][3]["resource"]["id"] = Value::Null),
            "entry[3] Condition: id: must be 1 to 64 letters",
        ),
        (
            "too many entries",
            too_many.into_bytes(),
            "more than 200000 entries",
        ),
        (
            "malformed JSON",
            b"{\"resourceType\": \"Bundle\",".to_vec(),
            "not valid JSON",
        ),
        (
            "not a bundle",
            br#"{"resourceType": "Patient"}"#.to_vec(),
            "resourceType is Patient",
        ),
        ("not FHIR", br#"[1, 2, 3]"#.to_vec(), "not a FHIR R4 Bundle"),
        (
            "history bundle",
            with(&|b| b["type"] = json!("history")),
            "type must be one of",
        ),
        (
            "invalid date",
            with(&|b| b["entry"][3]["resource"]["onsetDateTime"] = json!("2022-02-30")),
            "entry[3] Condition/c1: onsetDateTime: is not a real calendar date",
        ),
        (
            "date without a time zone",
            with(&|b| {
                b["entry"][8]["resource"]["effectiveDateTime"] = json!("2025-11-01T10:30:00")
            }),
            "entry[8] Observation/o1: effectiveDateTime: must be a FHIR date",
        ),
        (
            "invalid code",
            with(&|b| b["entry"][3]["resource"]["code"]["coding"][0]["code"] = json!(" 26929004")),
            "entry[3] Condition/c1: code.coding[0].code: is not a valid code",
        ),
        (
            "invalid code system",
            with(&|b| {
                b["entry"][3]["resource"]["code"]["coding"][0]["system"] = json!("snomed ct")
            }),
            "code.coding[0].system: must be an absolute URI",
        ),
        (
            "invalid status",
            with(&|b| b["entry"][8]["resource"]["status"] = json!("done")),
            "entry[8] Observation/o1: status: must be one of",
        ),
        (
            "value that is not a number",
            with(&|b| {
                b["entry"][8]["resource"]["component"][0]["valueQuantity"]["value"] = json!("138")
            }),
            "component[0].valueQuantity.value: must be a number",
        ),
        (
            "reference to a missing resource",
            with(&|b| {
                b["entry"][4]["resource"]["subject"]["reference"] =
                    json!("urn:uuid:00000000-0000-0000-0000-0000000000ff")
            }),
            "entry[4] MedicationStatement/m1: subject.reference: refers to a resource that is not in the bundle",
        ),
        (
            "relative reference to a missing resource",
            with(&|b| b["entry"][4]["resource"]["subject"]["reference"] = json!("Patient/nobody")),
            "refers to a resource that is not in the bundle",
        ),
        (
            "invalid NHS number",
            with(&|b| b["entry"][0]["resource"]["identifier"][0]["value"] = json!("9434765918")),
            "entry[0] Patient/p1: identifier[0].value: NHS number check digit is wrong",
        ),
        (
            "two patients",
            with(&|b| {
                let mut p = b["entry"][0].clone();
                p["fullUrl"] = json!("urn:uuid:00000000-0000-0000-0000-0000000000aa");
                p["resource"]["id"] = json!("p2");
                b["entry"].as_array_mut().unwrap().push(p);
            }),
            "2 Patient resources",
        ),
        (
            "extension without a url",
            with(&|b| b["entry"][1]["resource"]["extension"] = json!([{"valueString": "x"}])),
            "entry[1] RelatedPerson/rp1: extension[0].url: must be an absolute URI",
        ),
        (
            "end before start",
            with(&|b| b["entry"][4]["resource"]["effectivePeriod"]["end"] = json!("2021-01-01")),
            "entry[4] MedicationStatement/m1: effectivePeriod.end: must not be before start",
        ),
    ];
    let mut r = new_record(6);
    let before = r.vault.store().scan(&[], &[0xff; 8]).unwrap();
    for (what, bytes, expect) in cases {
        let err = import(&mut r, &bytes).expect_err(what);
        assert!(
            err.contains(expect),
            "{what}: got {err:?}, expected it to contain {expect:?}"
        );
        // Errors name places, never values.
        for secret in [
            "Testpatient",
            "Donepezil",
            "07700",
            "9434765918",
            "2022-02-30",
        ] {
            assert!(
                !err.contains(secret),
                "{what}: the error repeats content: {err}"
            );
        }
        assert_eq!(
            r.vault.store().scan(&[], &[0xff; 8]).unwrap(),
            before,
            "{what} changed the store"
        );
    }
    let big = vec![b' '; (fhir::MAX_BUNDLE_BYTES + 1) as usize];
    assert!(matches!(
        fhir::parse_bundle(&big),
        Err(fhir::FhirError::TooLarge { .. })
    ));
}

#[test]
fn unknown_types_and_extensions_are_kept_and_reported() {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:5e7c1c52-8a43-4f0c-9d0e-000000000001",
         "resource": {"resourceType": "Flag", "id": "f1", "status": "active",
                      "code": {"text": "Lives alone"},
                      "extension": [{"url": "https://example.org/fhir/risk", "valueString": "high"}],
                      "subject": {"display": "patient"}}},
        {"fullUrl": "urn:uuid:5e7c1c52-8a43-4f0c-9d0e-000000000002",
         "resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
                      "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
                      "modifierExtension": [{"url": "https://example.org/fhir/unverified", "valueBoolean": true}]}}
    ]});
    let mut r = new_record(7);
    let (plan, _) = import(&mut r, &serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert_eq!(plan.report.unknown_types.get("Flag"), Some(&1));
    assert_eq!(
        plan.report.extensions.get("https://example.org/fhir/risk"),
        Some(&1)
    );
    assert_eq!(
        plan.report
            .extensions
            .get("https://example.org/fhir/unverified"),
        Some(&1)
    );
    let out = by_url(&export(&r, ExportOptions::default()));
    assert_eq!(
        out["urn:uuid:5e7c1c52-8a43-4f0c-9d0e-000000000001"],
        bundle["entry"][0]["resource"]
    );
    assert_eq!(
        out["urn:uuid:5e7c1c52-8a43-4f0c-9d0e-000000000002"],
        bundle["entry"][1]["resource"]
    );
}
