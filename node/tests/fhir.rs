//! End-to-end FHIR import and export with the real `hearth` binary: the fixture bundles
//! round-trip, re-importing adds nothing, bad input exits 3 and leaves the store as it was, and
//! the automerge export opens with plain automerge.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::store::Store;
use hearth_node::sled_store::SledStore;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASS: &str = "e2e-passphrase-123";

fn hearth(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("HEARTH_PASSPHRASE", PASS)
        .env_remove("HEARTH_HOME")
        .output()
        .expect("run hearth")
}

#[track_caller]
fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "hearth failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[track_caller]
fn fails_with(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "one line: {err}"
    );
    err
}

fn init_patient(home: &Path) {
    json(&hearth(
        home,
        &[
            "init",
            "--role",
            "patient",
            "--name",
            "Edith Test",
            "--nhs-number",
            "9434765919",
            "--json",
        ],
    ));
}

/// `../shared/fixtures/fhir` beside the workspace; missing fixtures fail the test.
fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fhir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the FHIR fixtures are missing: expected {} (shared/ beside the repository): {e}",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the fixture bundles in {}",
        dir.display()
    );
    files
}

/// Every key and value in the home's store.
fn store_dump(home: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = SledStore::open(&home.join("store")).unwrap();
    store.scan(&[], &[0xff; 8]).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_fixture_imports_exports_and_reimports_without_duplicates() {
    for file in fixtures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        init_patient(&home);
        let original: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let n = original["entry"].as_array().unwrap().len() as u64;

        let first = json(&hearth(
            &home,
            &["record", "import", "--fhir", s(&file), "--json"],
        ));
        assert_eq!(first["resources"], n, "{name}");
        assert_eq!(first["imported"], n, "{name}: {first}");
        assert_eq!(first["written"], n, "{name}");

        let again = json(&hearth(
            &home,
            &["record", "import", "--fhir", s(&file), "--json"],
        ));
        assert_eq!(again["unchanged"], n, "{name}: {again}");
        assert_eq!(again["written"], 0, "{name}");

        let out = dir.path().join("export.json");
        let report = json(&hearth(
            &home,
            &["record", "export", "--fhir", s(&out), "--json"],
        ));
        assert_eq!(report["left_out_in_error"], 0);
        let exported: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
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
            assert_eq!(p["agent"][0]["who"]["display"], "Edith Test");
            assert!(p["recorded"].as_str().unwrap().ends_with('Z'));
        }

        // The export, imported back into the same record, adds nothing.
        let back = json(&hearth(
            &home,
            &["record", "import", "--fhir", s(&out), "--json"],
        ));
        assert_eq!(back["written"], 0, "{name}: {back}");
    }
}

#[test]
fn bad_input_exits_3_names_the_place_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_patient(&home);
    let edith = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("uk-social-care"))
        .unwrap();
    let good: Value = serde_json::from_slice(&std::fs::read(&edith).unwrap()).unwrap();
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
        let err = fails_with(&hearth(&home, &["record", "import", "--fhir", s(&path)]), 3);
        assert!(err.contains(expect), "{what}: {err}");
        for content in ["Testpatient", "9434765910", "2025-13-03", "07700"] {
            assert!(
                !err.contains(content),
                "{what}: the error repeats content: {err}"
            );
        }
        assert_eq!(store_dump(&home), before, "{what} changed the store");
    }
    // The same NHS number check guards the record: a bundle about someone else is refused.
    let other = write(
        "g.json",
        &with(&|b| b["entry"][0]["resource"]["identifier"][0]["value"] = json!("9000000009")),
    );
    let err = fails_with(
        &hearth(&home, &["record", "import", "--fhir", s(&other)]),
        3,
    );
    assert!(err.contains("another patient"), "{err}");
    assert_eq!(store_dump(&home), before);
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

#[test]
fn automerge_export_opens_with_plain_automerge() {
    use automerge::ReadDoc;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_patient(&home);
    let edith = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("uk-social-care"))
        .unwrap();
    json(&hearth(
        &home,
        &["record", "import", "--fhir", s(&edith), "--json"],
    ));
    let out = dir.path().join("am");
    json(&hearth(
        &home,
        &["record", "export", "--automerge", s(&out), "--json"],
    ));
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
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
    init_patient(&home);
    let file = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("type2-diabetes"))
        .unwrap();
    json(&hearth(
        &home,
        &["record", "import", "--fhir", s(&file), "--json"],
    ));
    let out = dir.path().join("obs.json");
    let report = json(&hearth(
        &home,
        &[
            "record",
            "export",
            "--fhir",
            s(&out),
            "--sections",
            "observations",
            "--json",
        ],
    ));
    assert_eq!(report["sections"], json!(["observations"]));
    let b: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
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
    init_patient(&home);
    let file = fixtures().remove(0);
    json(&hearth(
        &home,
        &["record", "import", "--fhir", s(&file), "--json"],
    ));
    let mut ids = Vec::new();
    for (who, sections, ability) in [
        ("gp", "notes,medications", "read"),
        ("nurse", "observations", "append"),
    ] {
        let pro = dir.path().join(who);
        let id = json(&hearth(
            &pro,
            &["init", "--role", "professional", "--name", who, "--json"],
        ));
        let g = json(&hearth(
            &home,
            &[
                "grant",
                "--to",
                id["peer_id"].as_str().unwrap(),
                "--sections",
                sections,
                "--ability",
                ability,
                "--expires",
                "30d",
                "--json",
            ],
        ));
        ids.push(g["id"].as_str().unwrap().to_owned());
    }
    json(&hearth(&home, &["grant", "revoke", &ids[1], "--json"]));

    let out = dir.path().join("export.json");
    let report = json(&hearth(
        &home,
        &["record", "export", "--fhir", s(&out), "--json"],
    ));
    assert_eq!(report["consents"], 2, "{report}");
    let bundle: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
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
    let back = json(&hearth(
        &home,
        &["record", "import", "--fhir", s(&out), "--json"],
    ));
    assert_eq!(back["written"], 0, "{back}");
    assert_eq!(back["by_type"]["Consent"]["skipped"], 2, "{back}");

    let report = json(&hearth(
        &home,
        &[
            "record",
            "export",
            "--fhir",
            s(&out),
            "--no-consent",
            "--json",
        ],
    ));
    assert_eq!(report["consents"], 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("\"Consent\""));
}
