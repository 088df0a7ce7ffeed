//! End-to-end FHIR export with the real `hearth` binary: the automerge export opens with plain
//! automerge, chosen sections keep their references valid, and grants travel as Consents.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;

use common::fhir::{
    export_fhir, fixture, fixtures, import_fhir, init_as_patient_of, professional_granted,
    read_json,
};
use common::{hearth, init_patient, json, s};
use serde_json::{Value, json};

#[test]
fn automerge_export_opens_with_plain_automerge() {
    use automerge::ReadDoc;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _ = init_patient(&home);
    let edith = fixture("uk-social-care");
    json(&import_fhir(&home, &edith, &["--json"]));
    let out = dir.path().join("am");
    json(&hearth(
        &home,
        &["record", "export", "--automerge", s(&out), "--json"],
    ));
    let index: Value = read_json(&out.join("index.json"));
    let sections = json(&hearth(&home, &["record", "sections", "--json"]));
    let counts: std::collections::HashMap<String, u64> = sections["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["section"].as_str().unwrap().to_owned(),
                s["entries"].as_u64().unwrap(),
            )
        })
        .collect();
    let listed = index["sections"].as_array().unwrap();
    assert_eq!(listed.len(), counts.len());
    for item in listed {
        let bytes = std::fs::read(out.join(item["file"].as_str().unwrap())).unwrap();
        let doc = automerge::AutoCommit::load(&bytes).unwrap();
        let keys: Vec<String> = doc.keys(automerge::ROOT).collect();
        assert_eq!(keys.len() as u64, counts[item["section"].as_str().unwrap()]);
        for k in keys {
            assert!(k.starts_with("e/"));
            let (v, _) = doc.get(automerge::ROOT, &k).unwrap().unwrap();
            let text = v.into_string().unwrap();
            let version: Value = serde_json::from_str(&text).unwrap();
            assert!(version["body"].is_object() && version["provenance"]["author"].is_string());
        }
    }
}

#[test]
fn export_of_chosen_sections_keeps_references_valid() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = fixture("type2-diabetes");
    init_as_patient_of(&home, &read_json(&file));
    json(&import_fhir(&home, &file, &["--json"]));
    let out = dir.path().join("obs.json");
    let report = export_fhir(&home, &out, &["--sections", "observations"]);
    assert_eq!(report["sections"], json!(["observations"]));
    let b: Value = read_json(&out);
    let urls: std::collections::HashSet<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    let mut types = std::collections::BTreeSet::new();
    for e in b["entry"].as_array().unwrap() {
        types.insert(e["resource"]["resourceType"].as_str().unwrap().to_owned());
        let text = e["resource"].to_string();
        for part in text.split("\"reference\":\"").skip(1) {
            let r = part.split('"').next().unwrap();
            assert!(
                urls.contains(r) || r.starts_with('#'),
                "dangling reference {r}"
            );
        }
    }
    assert_eq!(
        types,
        ["Observation", "Patient", "Provenance"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

/// The patient's export holds one `Consent` per grant (revoked ones `inactive`), pointing at the
/// exported Patient; `--no-consent` leaves them out; importing the export back adds nothing.
#[test]
fn export_writes_the_grants_as_consents() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = fixtures().remove(0);
    init_as_patient_of(&home, &read_json(&file));
    json(&import_fhir(&home, &file, &["--json"]));
    let mut ids = Vec::new();
    for (who, sections, ability) in [
        ("gp", "notes,medications", "read"),
        ("nurse", "observations", "append"),
    ] {
        let g = professional_granted(&home, &dir.path().join(who), who, sections, ability);
        ids.push(g["id"].as_str().unwrap().to_owned());
    }
    json(&hearth(&home, &["grant", "revoke", &ids[1], "--json"]));

    let out = dir.path().join("export.json");
    let report = export_fhir(&home, &out, &[]);
    assert_eq!(report["consents"], 2, "{report}");
    let bundle: Value = read_json(&out);
    let patient = bundle["entry"][0]["fullUrl"].as_str().unwrap();
    let consents: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Consent")
        .collect();
    assert_eq!(consents.len(), 2);
    for (id, status, state) in [
        (&ids[0], "active", "active"),
        (&ids[1], "inactive", "revoked"),
    ] {
        let c = consents.iter().find(|c| c["id"] == id.as_str()).unwrap();
        assert_eq!(c["status"], status);
        assert_eq!(c["extension"][0]["valueCode"], state);
        assert_eq!(c["patient"]["reference"], patient);
        assert_eq!(c["identifier"][0]["system"], "urn:hearth:grant");
    }
    // The export, imported back, adds nothing: the Consents are skipped and reported.
    let back = json(&import_fhir(&home, &out, &["--json"]));
    assert_eq!(back["written"], 0, "{back}");
    assert_eq!(back["by_type"]["Consent"]["skipped"], 2, "{back}");

    let report = export_fhir(&home, &out, &["--no-consent"]);
    assert_eq!(report["consents"], 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("\"Consent\""));
}
