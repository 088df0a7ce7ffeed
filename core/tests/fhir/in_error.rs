//! Entries in error: left out of an export or exported as entered in error, and retractions
//! at the source marking the entries imported from them.

use crate::common::*;

/// An entry marked entered in error is left out of an export by default; with
/// `include_in_error` it is written with FHIR's entered-in-error status (a Condition's or an
/// AllergyIntolerance's verificationStatus, without clinicalStatus), except for resource types
/// with no status to say so, which stay out.
#[test]
fn entries_in_error_are_left_out_or_exported_as_entered_in_error() {
    for (k, (name, bytes)) in fixtures().into_iter().enumerate() {
        let mut r = new_record(500 + k as u64);
        let (plan, ids) = import(&mut r, &bytes).unwrap();
        // One entry of each resource type marked in error: type -> its fullUrl.
        let mut marked: BTreeMap<String, String> = BTreeMap::new();
        {
            let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
            for (p, id) in plan.entries.iter().zip(&ids) {
                let url = p.body["source"]["full_url"].as_str().map(str::to_owned);
                let Some(url) = url.filter(|_| !marked.contains_key(&p.resource_type)) else {
                    continue;
                };
                rec.mark_error(id, "recorded for the wrong patient", TEST_NOW, &mut r.rng)
                    .unwrap();
                marked.insert(p.resource_type.clone(), url);
            }
        }
        let export_with = |include_in_error| {
            let options = ExportOptions {
                include_in_error,
                ..ExportOptions::default()
            };
            let (bundle, report) = export_with_report(&r, options);
            let by_url: BTreeMap<String, Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["fullUrl"].as_str().unwrap().to_owned(),
                        e["resource"].clone(),
                    )
                })
                .collect();
            (by_url, report)
        };

        let (plain, report) = export_with(false);
        assert_eq!(report.left_out_in_error, marked.len(), "{name}");
        assert_eq!(report.in_error, 0, "{name}");
        for (t, url) in &marked {
            // (The Patient is always exported: merged from the others, or naming the record.)
            if t != "Patient" {
                assert!(
                    !plain.contains_key(url),
                    "{name}: {t} in error was exported"
                );
            }
        }

        let (with, report) = export_with(true);
        let mut written = 0;
        for (t, url) in &marked {
            let no_status = ["Patient", "Practitioner", "RelatedPerson", "Organization"];
            if no_status.contains(&t.as_str()) {
                if t != "Patient" {
                    assert!(
                        !with.contains_key(url),
                        "{name}: {t} has no status to say so"
                    );
                }
                continue;
            }
            written += 1;
            let res = with
                .get(url)
                .unwrap_or_else(|| panic!("{name}: {t} {url} missing"));
            match t.as_str() {
                "Condition" | "AllergyIntolerance" => {
                    assert_eq!(
                        res["verificationStatus"]["coding"][0]["code"], "entered-in-error",
                        "{name}: {t}"
                    );
                    assert!(res.get("clinicalStatus").is_none(), "{name}: {t}");
                }
                _ => assert_eq!(res["status"], "entered-in-error", "{name}: {t}"),
            }
        }
        assert!(written > 0, "{name}: nothing to check");
        assert_eq!(report.in_error, written, "{name}");
        assert_eq!(report.left_out_in_error, marked.len() - written, "{name}");
        // Everything else is exported as before (references to the resources in error now
        // resolve, so they are kept rather than cut to their display).
        for (url, res) in &plain {
            let got = with
                .get(url)
                .unwrap_or_else(|| panic!("{name}: {url} missing"));
            assert_eq!(got["resourceType"], res["resourceType"], "{name}: {url}");
        }
    }
}

/// Imports a parsed bundle as the node does: new entries and retractions in one write.
fn import_with_retractions(
    r: &mut Rec,
    bundle: &Value,
) -> Result<(ImportPlan, Vec<EntryId>, Vec<EntryId>), String> {
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let ex = existing(&mut rec);
    let text = serde_json::to_vec(bundle).unwrap();
    let parsed = fhir::parse_bundle(&text).map_err(|e| e.to_string())?;
    let plan = fhir::plan_import(&parsed, &ex).map_err(|e| e.to_string())?;
    let retract: Vec<EntryId> = plan.retractions.iter().map(|x| x.entry).collect();
    let (ids, marked) = rec
        .add_checked_and_mark_errors(
            &checked_items(&plan),
            &retract,
            "entered in error at the source",
            TEST_NOW,
            &mut r.rng,
        )
        .map_err(|e| e.to_string())?;
    Ok((plan, ids, marked))
}

/// A resource the source system marks `entered-in-error` marks the entry imported from it
/// (found by full URL or business identifier) as entered in error, in the same write as the
/// rest of the bundle; again, it changes nothing; without a matching entry it is skipped.
#[test]
fn a_retraction_at_the_source_marks_the_imported_entry_in_error() {
    let bytes = fixture("uk-social-care");
    let original: Value = serde_json::from_slice(&bytes).unwrap();
    let mut r = new_record(77);
    import(&mut r, &bytes).unwrap();

    // The source's next bundle: the Condition and the Observation retracted, a new note.
    let mut retracting = original.clone();
    let entries = retracting["entry"].as_array_mut().unwrap();
    let mut kept = Vec::new();
    for mut e in entries.drain(..) {
        match e["resource"]["resourceType"].as_str() {
            Some("Condition") => {
                let r = e["resource"].as_object_mut().unwrap();
                r.remove("clinicalStatus");
                r.insert(
                    "verificationStatus".into(),
                    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]}),
                );
                kept.push(e);
            }
            Some("Observation") => {
                e["resource"]["status"] = json!("entered-in-error");
                kept.push(e);
            }
            Some("Patient") => kept.push(e),
            _ => {}
        }
    }
    kept.push(
        json!({"fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000aa", "resource": {
        "resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
        "valueQuantity": {"value": 61, "unit": "kg"}, "effectiveDateTime": "2026-03-01",
        "subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000001"}}}),
    );
    *entries = kept;

    let (plan, ids, marked) = import_with_retractions(&mut r, &retracting).unwrap();
    assert_eq!(plan.report.retracted, 2, "{:?}", plan.report);
    assert_eq!(plan.report.by_type["Condition"].retracted, 1);
    assert_eq!(plan.report.by_type["Observation"].retracted, 1);
    assert_eq!((ids.len(), marked.len()), (1, 2));
    {
        let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
        for v in views(&mut rec) {
            for e in &v.entries {
                let rt = e.body["source"]["resource_type"].as_str();
                let in_error = e.status == hearth_core::entry::EntryStatus::EnteredInError;
                let url = e.body["source"]["full_url"].as_str();
                let expected = matches!(rt, Some("Condition"))
                    || (rt == Some("Observation")
                        && url != Some("urn:uuid:00000000-0000-0000-0000-0000000000aa"));
                assert_eq!(in_error, expected, "{rt:?} {url:?}");
            }
        }
    }
    // Again: nothing more to do.
    let (plan, ids, marked) = import_with_retractions(&mut r, &retracting).unwrap();
    assert_eq!(plan.report.retracted, 0);
    assert!(ids.is_empty() && marked.is_empty());

    // In a record that never had them, retractions are skipped.
    let mut fresh = new_record(78);
    let (plan, _, marked) = import_with_retractions(&mut fresh, &retracting).unwrap();
    assert!(marked.is_empty());
    assert_eq!(plan.report.retracted, 0);
    assert_eq!(plan.report.by_type["Condition"].skipped, 1);

    // Retracted and changed in the same bundle (two resources with the entry's identifier):
    // refused, naming the resource, and nothing is written.
    let obs = |url: &str, status: &str, value: u32| {
        json!({"fullUrl": url, "resource": {
            "resourceType": "Observation", "status": status, "code": {"text": "Weight"},
            "identifier": [{"system": "https://lab.example/ids", "value": "42"}],
            "valueQuantity": {"value": value, "unit": "kg"}, "effectiveDateTime": "2026-03-01"}})
    };
    let bundle_of = |entries: Vec<Value>| json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    let mut r2 = new_record(79);
    import_with_retractions(
        &mut r2,
        &bundle_of(vec![obs(
            "urn:uuid:00000000-0000-4000-8000-000000000001",
            "final",
            60,
        )]),
    )
    .unwrap();
    let retract = obs(
        "urn:uuid:00000000-0000-4000-8000-000000000002",
        "entered-in-error",
        60,
    );
    let change = obs("urn:uuid:00000000-0000-4000-8000-000000000003", "final", 61);
    let before = r2.vault.store().scan(&[], &[0xff; 8]).unwrap();
    // Refused at the second of the two, whichever comes first.
    for both in [
        vec![retract.clone(), change.clone()],
        vec![change.clone(), retract.clone()],
    ] {
        let err = import_with_retractions(&mut r2, &bundle_of(both)).unwrap_err();
        assert!(
            err.contains("entry[1] Observation") && err.contains("entered-in-error"),
            "{err}"
        );
        assert_eq!(r2.vault.store().scan(&[], &[0xff; 8]).unwrap(), before);
    }
    // An earlier error in bundle order is the one reported.
    let mut bad = change.clone();
    bad["resource"]["effectiveDateTime"] = json!("yesterday");
    bad["fullUrl"] = json!("urn:uuid:00000000-0000-4000-8000-000000000004");
    bad["resource"]["identifier"] = json!([]);
    let err = import_with_retractions(&mut r2, &bundle_of(vec![bad, retract, change])).unwrap_err();
    assert!(err.contains("entry[0] Observation"), "{err}");
}

/// Entries written in Hearth travel between nodes by FHIR too: once another node holds an
/// export of them, an export with `include_in_error` after they were corrected and marked in
/// error retracts them there (the export names every id they had).
#[test]
fn a_retraction_of_entries_written_in_hearth_reaches_a_node_holding_an_earlier_export() {
    let mut a = new_record(90);
    let (note, allergy) = {
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        let note = rec
            .add_entry(
                &"notes".parse().unwrap(),
                &json!({"text": "Seen at home; walking with a frame."}),
                TEST_NOW,
                &mut a.rng,
            )
            .unwrap();
        let allergy = rec
            .add_entry(
                &"allergies".parse().unwrap(),
                &json!({"substance": "Penicillin", "severity": "severe"}),
                TEST_NOW,
                &mut a.rng,
            )
            .unwrap();
        (note, allergy)
    };
    let export_a = |a: &Rec, include_in_error| {
        let options = ExportOptions {
            include_in_error,
            ..ExportOptions::default()
        };
        export(a, options)
    };
    // Node B imports A's export.
    let mut b = new_record(91);
    let (first, ids, _) = import_with_retractions(&mut b, &export_a(&a, false)).unwrap();
    assert!(ids.len() >= 2, "{:?}", first.report);

    // A corrects the note, then marks both entries in error.
    {
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        let corrected = rec
            .correct(
                &note,
                &json!({"text": "Seen at home; walking with two sticks."}),
                TEST_NOW,
                &mut a.rng,
            )
            .unwrap();
        for e in [corrected, allergy] {
            rec.mark_error(&e, "wrong patient", TEST_NOW, &mut a.rng)
                .unwrap();
        }
    }
    let retracting = export_a(&a, true);
    let (plan, _, marked) = import_with_retractions(&mut b, &retracting).unwrap();
    assert_eq!(marked.len(), 2, "{:?}", plan.report);
    let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
    for v in views(&mut rec) {
        for e in &v.entries {
            if v.class != hearth_core::section::SectionClass::Demographics {
                assert_eq!(
                    e.status,
                    hearth_core::entry::EntryStatus::EnteredInError,
                    "{}",
                    v.class
                );
            }
        }
    }
}
