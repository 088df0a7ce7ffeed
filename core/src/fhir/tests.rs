//! Unit tests of the pure mapping: hashing, references, NHS numbers, labels.

use super::*;
use serde_json::json;

fn bundle(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .enumerate()
        .map(|(i, r)| json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"), "resource": r}))
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

fn plan(b: &Value) -> Result<ImportPlan, FhirError> {
    plan_import(b, &Existing::default())
}

#[test]
fn canonical_hash_ignores_layout() {
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": [true, {"y": "z", "x": null}]}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{ "a":[true,{"x":null,"y":"z"}],"b":1 }"#).unwrap();
    assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
    assert_ne!(canonical_sha256(&a), canonical_sha256(&json!({"b": 2})));
}

#[test]
fn references_resolve_by_url_relative_id_contained_and_identifier() {
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"text": "A B"}],
        "identifier": [{"system": "https://example.org/mrn", "value": "7"}]});
    let obs = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
               "valueQuantity": {"value": 70}, "subject": {"reference": subject},
               "contained": [{"resourceType": "Practitioner", "id": "dr"}],
               "performer": [{"reference": "#dr"}]})
    };
    for ok in [
        "urn:uuid:00000000-0000-4000-8000-000000000000",
        "Patient/p1",
        "Patient/p1/_history/2",
        "https://elsewhere.example/fhir/Patient/99",
        "Patient?identifier=https://example.org/mrn|7",
    ] {
        plan(&bundle(vec![patient.clone(), obs(ok)])).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "Patient/p2",
        "urn:uuid:00000000-0000-4000-8000-000000000009",
        "#nobody",
        "not a reference",
        "Patient?name=x",
    ] {
        let e = plan(&bundle(vec![patient.clone(), obs(bad)])).unwrap_err();
        assert!(e.to_string().contains("subject.reference"), "{bad}: {e}");
    }
}

#[test]
fn nhs_numbers_are_checked_on_any_resource_and_never_echoed() {
    let rp = json!({"resourceType": "RelatedPerson", "name": [{"text": "Mary"}],
        "relationship": [{"text": "daughter"}], "patient": {"display": "x"},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "1234567890"}]});
    let e = plan(&bundle(vec![rp])).unwrap_err().to_string();
    assert!(
        e.contains("entry[0] RelatedPerson: identifier[0].value: NHS number"),
        "{e}"
    );
    assert!(!e.contains("1234567890"), "{e}");
}

#[test]
fn sensitivity_labels_come_from_meta_security() {
    let c = json!({"resourceType": "Condition", "code": {"text": "Depression"}, "subject": {"display": "x"},
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}});
    let p = plan(&bundle(vec![c])).unwrap();
    assert_eq!(p.entries[0].section.to_string(), "conditions:mental-health");
}

#[test]
fn entered_in_error_and_search_outcomes_are_skipped() {
    let c = json!({"resourceType": "Condition", "code": {"text": "X"}, "subject": {"display": "x"},
        "verificationStatus": {"coding": [{"code": "entered-in-error"}]}});
    let oo = json!({"resourceType": "OperationOutcome", "issue": []});
    let p = plan(&bundle(vec![c, oo])).unwrap();
    assert!(p.entries.is_empty());
    assert_eq!(p.report.skipped, 2);
}

#[test]
fn a_resource_without_what_its_entry_needs_is_kept_as_a_document() {
    let enc = json!({"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"}});
    let p = plan(&bundle(vec![enc])).unwrap();
    assert_eq!(p.entries[0].section.to_string(), "documents");
    assert_eq!(p.report.kept_as_documents.get("Encounter"), Some(&1));
    assert_eq!(p.entries[0].body["source"]["resource"]["status"], "planned");
}
