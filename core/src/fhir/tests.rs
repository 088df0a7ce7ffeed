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
    plan_on(None, b, &Existing::default())
}

/// Plans the import of `b` through its JSON text, as a file would be.
fn plan_on(
    threads: Option<usize>,
    b: &Value,
    existing: &Existing,
) -> Result<ImportPlan, FhirError> {
    let text = serde_json::to_vec(b).unwrap();
    import::plan_import_on(threads, &parse_bundle(&text)?, existing)
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
    // The resource is kept whole in what is written (the plan's body does not copy it again).
    let written: Value = serde_json::from_str(p.entries[0].checked.json()).unwrap();
    assert_eq!(written["source"]["resource"]["status"], "planned");
}

/// The canonical form as first written (keys sorted by hand, every piece through `to_string`):
/// the faster writer must hash every resource exactly as entries already stored were hashed.
fn canonical_reference(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_reference(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_reference(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fixture_bundles() -> Vec<Value> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fhir");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
        }
    }
    assert!(
        out.len() >= 5,
        "expected the fixture bundles in {}",
        dir.display()
    );
    out
}

#[test]
fn canonical_json_and_hashes_are_those_of_the_reference_form() {
    let odd =
        json!({"é": "\u{1}\"\\/", "a": [1.5, -0.0, 1e300, 12345678901234567890u64, null], "B": {}});
    let mut values = vec![odd];
    for b in fixture_bundles() {
        values.extend(
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"].clone()),
        );
    }
    for v in &values {
        let mut want = String::new();
        canonical_reference(v, &mut want);
        assert_eq!(canonical_json(v.as_object().unwrap()), want);
        assert_eq!(canonical_sha256(v), sha256_hex(want.as_bytes()));
        let mut body = v.as_object().unwrap().clone();
        body.insert("source".into(), json!({"anything": 1}));
        let mut rest = String::new();
        canonical_reference(&Value::Object(v.as_object().unwrap().clone()), &mut rest);
        if !v.as_object().unwrap().contains_key("source") {
            assert_eq!(
                body_sha256(&Value::Object(body)),
                sha256_hex(rest.as_bytes())
            );
        }
    }
}

#[test]
fn a_planned_body_is_checked_once_as_the_whole_body_would_be() {
    use crate::entry::CheckedBody;
    for b in fixture_bundles() {
        let plan = plan(&b).unwrap();
        assert!(!plan.entries.is_empty());
        for p in &plan.entries {
            // The same text as checking the whole body (resource included) in one piece.
            let mut whole: Value = serde_json::from_str(p.checked.json()).unwrap();
            assert_eq!(
                p.checked,
                CheckedBody::new(p.section.class, &whole).unwrap()
            );
            // The plan's body is that body without the kept resource.
            let resource = whole["source"].as_object_mut().unwrap().remove("resource");
            assert_eq!(
                resource.unwrap()["resourceType"],
                p.body["source"]["resource_type"]
            );
            assert_eq!(whole, p.body);
        }
    }
    // The checks of the whole body still apply: the resource must be of the source's type, and
    // the whole body (resource included) fits the entry size limit.
    let condition = json!({"resourceType": "Condition", "code": {"text": "Asthma"}});
    let p = &plan(&bundle(vec![condition.clone()])).unwrap().entries[0];
    let fields = p.body.clone();
    let resource = condition.as_object().unwrap();
    let text = canonical_json(resource);
    CheckedBody::with_resource_of_checked(p.section.class, &fields, resource, &text).unwrap();
    let mut other = resource.clone();
    other.insert("resourceType".into(), json!("Observation"));
    let e = CheckedBody::with_resource_of_checked(
        p.section.class,
        &fields,
        &other,
        &canonical_json(&other),
    )
    .unwrap_err();
    assert_eq!(e.field, "source.resource");
    let mut big = resource.clone();
    big.insert(
        "text".into(),
        json!({"div": "x".repeat(crate::entry::schema::MAX_ENTRY_JSON_BYTES)}),
    );
    let e = CheckedBody::with_resource_of_checked(
        p.section.class,
        &fields,
        &big,
        &canonical_json(&big),
    )
    .unwrap_err();
    assert!(e.problem.contains("too large"), "{e}");
    let mut whole = fields.clone();
    whole["source"]["resource"] = Value::Object(big);
    assert_eq!(
        CheckedBody::new(p.section.class, &whole)
            .unwrap_err()
            .problem,
        e.problem
    );
    // Just under and just over the limit, both ways agree.
    for pad in [0usize, 1, 2, 3] {
        let mut r = resource.clone();
        let mut w = fields.clone();
        w["source"]["resource"] = Value::Object(r.clone());
        let room = crate::entry::schema::MAX_ENTRY_JSON_BYTES - w.to_string().len();
        r.insert("zz".into(), json!("y".repeat(room.saturating_sub(8) + pad)));
        w["source"]["resource"] = Value::Object(r.clone());
        let whole = CheckedBody::new(p.section.class, &w);
        let parts = CheckedBody::with_resource_of_checked(
            p.section.class,
            &fields,
            &r,
            &canonical_json(&r),
        );
        assert_eq!(whole, parts, "pad {pad}");
    }
}

#[test]
fn a_version_with_a_checked_body_is_written_as_serde_writes_it() {
    use crate::entry::{CheckedBody, EntryStatus, EntryVersion, Provenance};
    let body = json!({"text": "a \"note\"", "title": "T"});
    for (supersedes, reason) in [
        (None, None),
        (Some(crate::ids::EntryId([7; 16])), Some("why")),
    ] {
        let mut v = EntryVersion {
            id: crate::ids::EntryId([1; 16]),
            class: crate::section::SectionClass::Notes,
            version: 2,
            supersedes,
            status: EntryStatus::Final,
            status_reason: reason.map(str::to_owned),
            body: Value::Null,
            provenance: Provenance {
                author: crate::ids::PeerKey([3; 32]),
                author_name: "Dr \"A\"".into(),
                author_role: crate::keys::Role::Patient,
                recorded_at: crate::time::Timestamp::from_millis(5),
                purpose: Some("care".into()),
            },
        };
        let checked = CheckedBody::new(v.class, &body).unwrap();
        let text = crate::entry::version_json(&v, &checked).unwrap();
        v.body = body.clone();
        assert_eq!(text, serde_json::to_string(&v).unwrap());
    }
}

/// A bundle of `n` entries: a fixture's resources, then copies of its clinical resources with
/// their own ids and full URLs, every fifth copy an exact duplicate of an earlier resource.
fn large_bundle(n: usize) -> Value {
    let fixture = fixture_bundles()
        .into_iter()
        .find(|b| b["entry"].as_array().is_some_and(|e| e.len() > 20))
        .unwrap();
    let all = fixture["entry"].as_array().unwrap().clone();
    let clinical: Vec<&Value> = all
        .iter()
        .filter(|e| {
            !matches!(
                e["resource"]["resourceType"].as_str(),
                Some("Patient" | "DiagnosticReport" | "Encounter" | "Practitioner")
            )
        })
        .collect();
    let mut entries = all.clone();
    let mut k = 0usize;
    while entries.len() < n {
        let mut e = clinical[k % clinical.len()].clone();
        e["fullUrl"] = json!(format!("urn:uuid:00000000-0000-4000-9000-{k:012}"));
        if !k.is_multiple_of(5) {
            e["resource"]["id"] = json!(format!("copy{k}"));
        }
        entries.push(e);
        k += 1;
    }
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[test]
fn planning_on_many_threads_gives_the_plan_of_one() {
    let big = large_bundle(1500);
    let one = plan_on(Some(1), &big, &Existing::default()).unwrap();
    assert!(one.report.unchanged > 0, "the bundle has duplicates");
    assert!(one.entries.len() > 1000);
    for threads in [2, 3, 8] {
        let many = plan_on(Some(threads), &big, &Existing::default()).unwrap();
        assert!(many == one, "{threads} threads: another plan");
    }
    assert!(plan(&big).unwrap() == one);

    // The first bad resource in bundle order is the one reported, however the work was shared.
    let mut bad = big.clone();
    for at in [1400, 700] {
        bad["entry"][at]["resource"]["subject"] = json!({"reference": "Patient/nobody"});
    }
    let Err(want) = plan_on(Some(1), &bad, &Existing::default()) else {
        panic!("a reference to a missing resource was accepted");
    };
    assert!(want.to_string().contains("entry[700]"), "{want}");
    for threads in [2, 3, 8] {
        let got = plan_on(Some(threads), &bad, &Existing::default()).err();
        assert_eq!(got.as_ref(), Some(&want), "{threads} threads");
    }

    // Against a record that already holds it all: everything unchanged, nothing planned.
    let mut existing = Existing::default();
    let ids: Vec<crate::ids::EntryId> = (0..one.entries.len())
        .map(|i| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            crate::ids::EntryId(b)
        })
        .collect();
    existing.add_written(&one, &ids);
    for threads in [1, 3] {
        let again = plan_on(Some(threads), &big, &existing).unwrap();
        assert!(again.entries.is_empty(), "{threads} threads");
        assert_eq!(
            again.report.unchanged,
            one.report.resources - one.report.skipped
        );
    }
}

#[test]
fn a_full_url_given_twice_must_name_the_same_resource() {
    let condition = |key_order_swapped: bool, code: &str| {
        let code = format!(
            r#""code": {{"coding": [{{"system": "http://snomed.info/sct", "code": "{code}"}}]}}"#
        );
        let ty = r#""resourceType": "Condition""#;
        let (a, b) = if key_order_swapped {
            (code.as_str(), ty)
        } else {
            (ty, code.as_str())
        };
        format!(
            r#"{{"fullUrl": "urn:uuid:4d0e7a3c-0f6b-4d6e-9a3f-2f1c0b9e8a11", "resource": {{{a}, {b}}}}}"#
        )
    };
    let bundle = |first: String, second: String| {
        format!(
            r#"{{"resourceType": "Bundle", "type": "collection", "entry": [{first}, {second}]}}"#
        )
    };
    // The same resource twice (laid out differently): one entry.
    let text = bundle(condition(false, "44054006"), condition(true, "44054006"));
    let plan = plan_import(
        &parse_bundle(text.as_bytes()).unwrap(),
        &Existing::default(),
    )
    .unwrap();
    assert_eq!(plan.entries.len(), 1);
    assert_eq!(plan.report.unchanged, 1);
    // Two resources under one full URL: refused, naming the second and the first.
    let text = bundle(condition(false, "44054006"), condition(true, "73211009"));
    let err = plan_import(
        &parse_bundle(text.as_bytes()).unwrap(),
        &Existing::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "entry[1]: fullUrl: the same fullUrl is used by entry[0] for a different resource"
    );
}
