//! End-to-end FHIR import with the real `hearth` binary: the fixture bundles round-trip,
//! re-importing adds nothing, and bad input exits 3 and leaves the store as it was.

use crate::common::fhir::{
    export_fhir, fails_with, fixture, fixtures, import_fhir, init_as_patient_of, read_json,
    store_dump,
};
use crate::common::{hearth, init_patient, json};
use serde_json::{Value, json};
use std::path::PathBuf;

#[test]
fn every_fixture_imports_exports_and_reimports_without_duplicates() {
    for file in fixtures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let original: Value = read_json(&file);
        let patient = init_as_patient_of(&home, &original);
        let n = original["entry"].as_array().unwrap().len() as u64;

        let first = json(&import_fhir(&home, &file, &["--json"]));
        assert_eq!(first["resources"], n, "{name}");
        assert_eq!(first["imported"], n, "{name}: {first}");
        assert_eq!(first["written"], n, "{name}");

        let again = json(&import_fhir(&home, &file, &["--json"]));
        assert_eq!(again["unchanged"], n, "{name}: {again}");
        assert_eq!(again["written"], 0, "{name}");

        let out = dir.path().join("export.json");
        let report = export_fhir(&home, &out, &[]);
        assert_eq!(report["left_out_in_error"], 0);
        let exported: Value = read_json(&out);
        assert_eq!(exported["resourceType"], "Bundle");
        assert_eq!(exported["type"], "collection");
        let by_url: std::collections::HashMap<&str, &Value> = exported["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["fullUrl"].as_str().unwrap(), &e["resource"]))
            .collect();
        for e in original["entry"].as_array().unwrap() {
            let url = e["fullUrl"].as_str().unwrap();
            let got = by_url
                .get(url)
                .unwrap_or_else(|| panic!("{name}: {url} not exported"));
            if e["resource"]["resourceType"] == "Patient" {
                // The record's own demographics (from init) join the imported Patient.
                assert_eq!(got["birthDate"], e["resource"]["birthDate"], "{name}");
                assert_eq!(got["gender"], e["resource"]["gender"], "{name}");
            } else {
                assert_eq!(
                    *got, &e["resource"],
                    "{name}: {url} changed on the way through"
                );
            }
        }
        let provenance: Vec<&&Value> = by_url
            .values()
            .filter(|r| r["resourceType"] == "Provenance")
            .collect();
        assert!(
            provenance.len() as u64 > n,
            "{name}: a Provenance for every entry"
        );
        for p in provenance {
            assert_eq!(p["agent"][0]["who"]["display"], patient.as_str());
            assert!(p["recorded"].as_str().unwrap().ends_with('Z'));
        }

        // The export, imported back into the same record, adds nothing.
        let back = json(&import_fhir(&home, &out, &["--json"]));
        assert_eq!(back["written"], 0, "{name}: {back}");
    }
}

#[test]
fn bad_input_exits_3_names_the_place_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _ = init_patient(&home);
    let edith = fixture("uk-social-care");
    let good: Value = read_json(&edith);
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        serde_json::to_vec(&b).unwrap()
    };
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "malformed",
            write("a.json", b"{\"resourceType\": \"Bundle\", \"entry\": ["),
            "not valid JSON (line 1",
        ),
        (
            "not a bundle",
            write(
                "b.json",
                br#"{"resourceType": "Observation", "status": "final"}"#,
            ),
            "resourceType is Observation, not Bundle",
        ),
        (
            "invalid NHS number",
            write(
                "c.json",
                &with(&|b| {
                    b["entry"][0]["resource"]["identifier"][0]["value"] = json!("9434765910")
                }),
            ),
            "entry[0] Patient/p1: identifier[0].value: NHS number",
        ),
        (
            "missing reference",
            write(
                "d.json",
                &with(&|b| {
                    b["entry"][2]["resource"]["patient"]["reference"] =
                        json!("urn:uuid:00000000-0000-0000-0000-000000000099")
                }),
            ),
            "entry[2] AllergyIntolerance/a1: patient.reference: refers to a resource that is not in the bundle",
        ),
        (
            "invalid date",
            write(
                "e.json",
                &with(&|b| b["entry"][5]["resource"]["occurrenceDateTime"] = json!("2025-13-03")),
            ),
            "entry[5] Immunization/i1: occurrenceDateTime",
        ),
        (
            "invalid code",
            write(
                "f.json",
                &with(&|b| {
                    b["entry"][8]["resource"]["code"]["coding"][0]["code"] = json!("85354-9 ")
                }),
            ),
            "entry[8] Observation/o1: code.coding[0].code",
        ),
        ("oversized", huge, "larger than the limit of 64 MiB"),
        ("no such file", dir.path().join("nope.json"), "cannot read"),
    ];
    let before = store_dump(&home);
    for (what, path, expect) in cases {
        let err = fails_with(&import_fhir(&home, &path, &[]), 3);
        assert!(err.contains(expect), "{what}: {err}");
        for content in ["Testpatient", "9434765910", "2025-13-03", "07700"] {
            assert!(
                !err.contains(content),
                "{what}: the error repeats content: {err}"
            );
        }
        assert_eq!(store_dump(&home), before, "{what} changed the store");
    }
    // A bundle about someone else is refused too, by the patient check (exit 7): see
    // another_patients_bundle_is_refused_and_nothing_is_written.
    // Export arguments are checked too.
    let err = fails_with(
        &hearth(
            &home,
            &[
                "record",
                "export",
                "--fhir",
                "x.json",
                "--sections",
                "nonsense",
            ],
        ),
        3,
    );
    assert!(err.contains("--sections"), "{err}");
}
