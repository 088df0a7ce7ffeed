//! Round trips: every fixture through import and export, rebuilt exports, corrections, and
//! the resources extensions add (the grants as Consent).

use crate::common::*;

#[test]
fn every_fixture_round_trips_with_its_clinical_content() {
    for (name, bytes) in fixtures() {
        let mut r = new_record(1);
        let (plan, ids) = import(&mut r, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let n = original["entry"].as_array().unwrap().len();
        assert_eq!(plan.report.resources, n, "{name}");
        assert_eq!(
            plan.report.imported, n,
            "{name}: every resource becomes an entry"
        );
        assert_eq!(ids.len(), n, "{name}");

        // Export: unchanged entries go back as the resources imported, byte for byte.
        let out = export(&r, ExportOptions::default());
        assert_eq!(out["type"], "collection");
        let exported = by_url(&out);
        for e in original["entry"].as_array().unwrap() {
            let url = e["fullUrl"].as_str().unwrap();
            let got = exported
                .get(url)
                .unwrap_or_else(|| panic!("{name}: {url} missing from the export"));
            assert_eq!(got, &e["resource"], "{name}: {url} changed");
        }
        let provenance = resources(&out)
            .iter()
            .filter(|(_, r)| r["resourceType"] == "Provenance")
            .count();
        assert_eq!(provenance, n, "{name}: a Provenance per entry");

        // Rebuilt from the typed fields alone, the clinical content is the same.
        let rebuilt = by_url(&export(
            &r,
            ExportOptions {
                rebuild: true,
                ..ExportOptions::default()
            },
        ));
        for e in original["entry"].as_array().unwrap() {
            let url = e["fullUrl"].as_str().unwrap();
            let want = clinical(&e["resource"]);
            let got = clinical(&rebuilt[url]);
            assert_eq!(
                got, want,
                "{name}: {url} ({}) lost clinical content",
                e["resource"]["resourceType"]
            );
        }

        // The same bundle again adds nothing; nor does the export of it.
        let (again, ids) = import(&mut r, &bytes).unwrap();
        assert!(ids.is_empty(), "{name}: re-import added {}", ids.len());
        assert_eq!(again.report.unchanged, n, "{name}");
        let text = serde_json::to_vec(&out).unwrap();
        let (back, ids) = import(&mut r, &text).unwrap();
        assert!(
            ids.is_empty(),
            "{name}: importing the export added {:?}",
            back.report
        );
    }
}

#[test]
fn a_rebuilt_export_imports_into_a_new_record_with_the_same_content() {
    for (name, bytes) in fixtures() {
        let mut a = new_record(2);
        import(&mut a, &bytes).unwrap();
        let first = export(
            &a,
            ExportOptions {
                rebuild: true,
                ..ExportOptions::default()
            },
        );
        let mut b = new_record(3);
        let (plan, _) = import(&mut b, &serde_json::to_vec(&first).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            plan.report.unknown_types.is_empty(),
            "{name}: {:?}",
            plan.report
        );
        let second = export(
            &b,
            ExportOptions {
                rebuild: true,
                ..ExportOptions::default()
            },
        );
        let digest = |bundle: &Value| {
            let mut all: Vec<BTreeSet<String>> = resources(bundle)
                .iter()
                .filter(|(_, r)| r["resourceType"] != "Provenance")
                .map(|(_, r)| clinical(r))
                .collect();
            all.sort();
            all
        };
        assert_eq!(digest(&first), digest(&second), "{name}");
    }
}

#[test]
fn a_corrected_entry_exports_its_correction_and_keeps_the_rest() {
    let bytes = fixture("uk-social-care");
    let mut r = new_record(4);
    import(&mut r, &bytes).unwrap();
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let obs = rec.show(&"observations".parse().unwrap()).unwrap();
    let e = &obs.entries[0];
    let mut body = e.body.clone();
    body["components"][0]["value"] = json!(141);
    rec.correct(&e.id, &body, TEST_NOW, &mut r.rng).unwrap();
    drop(rec);
    let out = export(&r, ExportOptions::default());
    let o = resources(&out)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r["resourceType"] == "Observation")
        .unwrap();
    assert_eq!(
        o["component"][0]["valueQuantity"]["value"].as_f64(),
        Some(141.0)
    );
    // What was not corrected stays as imported: the category, the second component's unit.
    assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
    assert_eq!(o["component"][1]["valueQuantity"]["unit"], "mmHg");
    assert_eq!(o["id"], "o1");
}

#[test]
fn extensions_add_resources_that_point_at_the_patient() {
    let r = new_record(5);
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let sections = views(&mut rec);
    let input = ExportInput {
        record: r.id,
        sections: &sections,
        now: TEST_NOW,
    };
    let (out, report) = fhir::export_bundle(&input, ExportOptions::default(), &[&FakeConsent]);
    assert_eq!(report.resources.get("Consent"), Some(&1));
    let patient_url = out["entry"][0]["fullUrl"].clone();
    let consent = out["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Consent")
        .unwrap();
    assert_eq!(consent["resource"]["patient"]["reference"], patient_url);
}

/// The grants export as one `Consent` each: status from the grant's state at export time,
/// period, actor, purpose and scopes from the grant, patient pointing at the exported Patient;
/// importing the export back adds nothing (the Consents are skipped and reported).
#[test]
fn grants_export_as_one_consent_each_and_reimport_adds_nothing() {
    use hearth_core::grant::{Ability, Grant, GrantSpec};
    use hearth_core::ids::PeerKey;
    use hearth_core::section::SectionSpec;
    const DAY: i64 = 86_400_000;
    let mut r = new_record(9);
    let (_, bytes) = fixtures().remove(0);
    import(&mut r, &bytes).unwrap();
    let at = |days: i64| Timestamp::from_millis(TEST_NOW.as_millis() + days * DAY);
    let mut issue = |who: u8, spec: &str, ability, from, to| {
        let spec: SectionSpec = spec.parse().unwrap();
        let g = GrantSpec::new(PeerKey([who; 32]), spec, ability, from, to);
        Grant::issue_root(&r.identity, g, &[], &mut r.rng).unwrap()
    };
    let active = issue(1, "notes,medications", Ability::Read, at(-1), at(30));
    let revoked = issue(2, "observations", Ability::Append, at(-1), at(30));
    let expired = issue(3, "notes:mental-health", Ability::Read, at(-10), at(-2));
    let later = issue(4, "conditions", Ability::Read, at(5), at(30));
    let consents = fhir::GrantConsents::new(
        vec![
            vec![active.clone()],
            vec![revoked.clone()],
            vec![expired.clone()],
            vec![later.clone()],
            vec![active.clone()],
        ],
        vec![revoked.id()],
    );
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let sections = views(&mut rec);
    drop(rec);
    let input = ExportInput {
        record: r.id,
        sections: &sections,
        now: TEST_NOW,
    };
    let (out, report) = fhir::export_bundle(&input, ExportOptions::default(), &[&consents]);
    assert_eq!(report.resources.get("Consent"), Some(&4), "one per grant");
    let patient_url = out["entry"][0]["fullUrl"].clone();
    assert_eq!(out["entry"][0]["resource"]["resourceType"], "Patient");
    let found: BTreeMap<String, Value> = out["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Consent")
        .map(|e| {
            assert!(e["fullUrl"].as_str().unwrap().starts_with("urn:uuid:"));
            (
                e["resource"]["id"].as_str().unwrap().to_owned(),
                e["resource"].clone(),
            )
        })
        .collect();
    let check = |g: &Grant, status: &str, state: &str, sections: &[&str], action: &str| {
        let c = &found[&g.id().to_string()];
        assert_eq!(c["status"], status, "{state}");
        assert_eq!(c["extension"][0]["url"], fhir::GRANT_STATE_EXTENSION);
        assert_eq!(c["extension"][0]["valueCode"], state);
        assert_eq!(c["patient"]["reference"], patient_url);
        assert_eq!(c["identifier"][0]["system"], fhir::HEARTH_GRANT_SYSTEM);
        assert_eq!(c["identifier"][0]["value"], g.id().to_string());
        let p = &c["provision"];
        assert_eq!(p["period"]["start"], g.body().not_before.to_rfc3339());
        assert_eq!(p["period"]["end"], g.body().expires.to_rfc3339());
        assert_eq!(
            p["actor"][0]["reference"]["identifier"]["value"],
            g.body().audience.to_string()
        );
        assert_eq!(p["purpose"][0]["code"], "TREAT");
        let scopes: BTreeSet<&str> = p["provision"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"][0]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(scopes, sections.iter().copied().collect(), "{state}");
        for s in p["provision"].as_array().unwrap() {
            assert_eq!(s["action"][0]["coding"][0]["code"], action);
        }
    };
    check(
        &active,
        "active",
        "active",
        &["notes", "medications"],
        "access",
    );
    check(
        &revoked,
        "inactive",
        "revoked",
        &["observations"],
        "collect",
    );
    check(
        &expired,
        "inactive",
        "expired",
        &["notes:mental-health"],
        "access",
    );
    check(&later, "active", "not-yet-valid", &["conditions"], "access");
    assert_eq!(
        found[&expired.id().to_string()]["provision"]["provision"][0]["securityLabel"][0]["code"],
        "PSY"
    );

    // Imported back, into the same record or a new one, the Consents add nothing.
    let text = serde_json::to_vec(&out).unwrap();
    let (back, ids) = import(&mut r, &text).unwrap();
    assert!(ids.is_empty(), "{:?}", back.report);
    assert_eq!(back.report.by_type["Consent"].skipped, 4);
    assert!(
        back.report
            .notes
            .iter()
            .any(|n| n.contains("4 Consent not imported")),
        "{:?}",
        back.report.notes
    );
    let mut other = new_record(10);
    let (plan, _) = import(&mut other, &text).unwrap();
    assert!(plan.entries.iter().all(|p| p.resource_type != "Consent"));
    assert_eq!(plan.report.by_type["Consent"].skipped, 4);
}

/// The patient's dispute of an entry exports as a `Communication` about that entry's resource,
/// from the patient; importing the export back adds nothing (the dispute is skipped).
#[test]
fn a_dispute_exports_as_a_communication_about_its_entry_and_reimport_adds_nothing() {
    let mut r = new_record(11);
    let (_, bytes) = fixtures().remove(0);
    import(&mut r, &bytes).unwrap();
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let notes = "notes".parse().unwrap();
    let note = rec
        .add_entry(&notes, &json!({"text": "a note"}), TEST_NOW, &mut r.rng)
        .unwrap();
    let dispute = rec
        .dispute(&note, "Not what happened", TEST_NOW, &mut r.rng)
        .unwrap();
    drop(rec);
    let (out, report) = export_with_report(&r, ExportOptions::default());
    assert_eq!(
        report.resources.get("Communication"),
        Some(&1),
        "{report:?}"
    );
    let entries = out["entry"].as_array().unwrap();
    let note_url = entries
        .iter()
        .find(|e| e["resource"]["id"] == note.to_string())
        .map(|e| e["fullUrl"].clone())
        .unwrap();
    let patient_url = &entries[0]["fullUrl"];
    let c = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Communication")
        .unwrap();
    assert_eq!(c["id"], dispute.to_string());
    assert_eq!(c["identifier"][0]["system"], fhir::HEARTH_DISPUTE_SYSTEM);
    assert_eq!(c["status"], "completed");
    assert_eq!(c["about"][0]["reference"], note_url);
    assert_eq!(&c["sender"]["reference"], patient_url);
    assert_eq!(&c["subject"]["reference"], patient_url);
    assert_eq!(c["payload"][0]["contentString"], "Not what happened");
    assert_eq!(c["sent"], TEST_NOW.to_rfc3339());
    // From the bodies as stored (as the node exports), the same bytes.
    let text = serde_json::to_vec(&out).unwrap();
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let names: Vec<SectionName> = rec.sections().into_iter().map(|s| s.name).collect();
    let stored: Vec<RawSectionView> = names.iter().map(|n| rec.show_raw(n).unwrap()).collect();
    drop(rec);
    let input = RawExportInput {
        record: r.id,
        sections: &stored,
        now: Timestamp::from_millis(TEST_NOW.as_millis() + 1000),
    };
    let (raw, _) = fhir::export_raw_json(&input, ExportOptions::default(), &[], false).unwrap();
    assert!(raw == text, "the export from show_raw differs");
    let (back, ids) = import(&mut r, &text).unwrap();
    assert!(ids.is_empty(), "{:?}", back.report);
    assert_eq!(back.report.by_type["Communication"].skipped, 1);
}
