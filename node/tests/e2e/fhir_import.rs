//! End-to-end FHIR import by a professional with the real `hearth` binary: an append grant lets
//! the import into the patient's record; another patient's bundle, or one that does not match
//! the patient's demographics, is refused and nothing is written.

use crate::common::fhir::{
    export_fhir, fails_with, fixture, import_fhir, professional_granted, read_json, store_dump,
};
use crate::common::{Daemon, hearth, init_patient, json, ok, s, sync_in, wait_for};
use serde_json::{Value, json};
use std::path::Path;

/// A resource with every reference replaced by display text (so that it can travel alone).
fn unreferenced(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                if k != "reference" {
                    out.insert(k.clone(), unreferenced(x));
                }
            }
            if m.contains_key("reference") && !out.contains_key("display") {
                out.insert("display".into(), json!("not in this bundle"));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(unreferenced).collect()),
        other => other.clone(),
    }
}

/// A collection bundle of the fixture's resources of `ty`, `skip` then `take` of them, alone.
fn part(fixture: &Value, ty: &str, skip: usize, take: usize) -> Vec<Value> {
    fixture["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == ty)
        .skip(skip)
        .take(take)
        .map(|e| json!({"fullUrl": e["fullUrl"], "resource": unreferenced(&e["resource"])}))
        .collect()
}

fn write_bundle(path: &Path, entries: Vec<Value>) {
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    std::fs::write(path, serde_json::to_vec(&b).unwrap()).unwrap();
}

/// How many current entries of the record, as `home` shows them, `name` wrote.
fn authored_by(home: &Path, rid: &str, name: &str) -> usize {
    let out = hearth(home, &["record", "show", "--record", rid, "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .matches(&format!(r#""author_name":"{name}""#))
        .count()
}

/// A professional holding `append` imports into the patient's record: the entries are its own
/// (provenance), reach the patient by sync, and its export holds its own grant only. A section
/// granted for adding to that the record lacked was made by the grant, so it can be imported
/// into. Resources for sections it may not add to, or that the record does not have (a label
/// the grant covers but did not name), refuse the whole import with exit 7, naming the sections;
/// a professional holding only `read` is refused the same way.
#[test]
fn a_professional_with_append_imports_into_the_patients_record() {
    let dir = tempfile::tempdir().unwrap();
    let (p, gp, rd) = (
        dir.path().join("p"),
        dir.path().join("gp"),
        dir.path().join("rd"),
    );
    let rid = init_patient(&p)["record_id"].as_str().unwrap().to_owned();
    let fixture = read_json(&fixture("type2-diabetes-seed1.json"));
    // The patient's own import makes the sections `conditions` and `observations`.
    let first = dir.path().join("first.json");
    // Her bundle names her (the patient check compares its Patient with her record's).
    let mut entries = vec![
        json!({"fullUrl": "urn:uuid:2f0c6a52-8d1e-4c7b-9a55-0b6f3c1d9e21",
        "resource": {"resourceType": "Patient", "name": [{"text": "Edith Test"}],
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]}}),
    ];
    entries.extend(part(&fixture, "Condition", 0, 1));
    entries.extend(part(&fixture, "Observation", 0, 1));
    write_bundle(&first, entries);
    json(&import_fhir(&p, &first, &["--json"]));
    let _dp = Daemon::start(&p, None);

    let mut grants = Vec::new();
    for (home, name, sections, ability) in [
        (
            &gp,
            "Dr Gee",
            "conditions,observations:*,encounters",
            "append",
        ),
        (&rd, "Dr Read", "conditions,observations", "read"),
    ] {
        let g = professional_granted(&p, home, name, sections, ability);
        // Granting `append` made the one named section the record lacked; `read` makes none.
        let made = if ability == "append" {
            vec!["encounters"]
        } else {
            vec![]
        };
        assert_eq!(g["sections_created"], json!(made), "{g}");
        json(&hearth(
            home,
            &["accept", g["token"].as_str().unwrap(), "--json"],
        ));
        sync_in(home, None);
        grants.push(g["id"].as_str().unwrap().to_owned());
    }

    // The GP imports two conditions and three observations the record does not have. These
    // fragments carry no Patient, and the GP cannot read the record's demographics, so nothing
    // shows whose data they are: the GP says so explicitly (the patient check itself:
    // a_professionals_import_is_checked_against_the_patients_demographics).
    let gp_bundle = dir.path().join("gp.json");
    let mut entries = part(&fixture, "Condition", 1, 2);
    entries.extend(part(&fixture, "Observation", 1, 3));
    write_bundle(&gp_bundle, entries);
    let args = [
        "record",
        "import",
        "--fhir",
        s(&gp_bundle),
        "--record",
        &rid,
        "--accept-different-patient",
        "--json",
    ];
    let done = json(&hearth(&gp, &args));
    assert_eq!(done["written"], 5, "{done}");
    assert_eq!(authored_by(&gp, &rid, "Dr Gee"), 5);
    // Again: nothing new.
    assert_eq!(json(&hearth(&gp, &args))["written"], 0);

    // A section the grant does not cover (medications) refuses the whole import, naming it.
    let refuse = |home: &Path, entries: Vec<Value>, want: &[&str]| {
        let f = dir.path().join("refused.json");
        write_bundle(&f, entries);
        let before = store_dump(home);
        let out = import_fhir(home, &f, &["--record", &rid, "--accept-different-patient"]);
        let err = fails_with(&out, 7);
        for w in want {
            assert!(err.contains(w), "{w}: {err}");
        }
        assert!(
            store_dump(home) == before,
            "a refused import changed the store"
        );
    };
    let mut mixed = part(&fixture, "Condition", 2, 1);
    mixed.extend(part(&fixture, "MedicationRequest", 0, 2));
    mixed.extend(part(&fixture, "Observation", 5, 1));
    refuse(
        &gp,
        mixed,
        &["no grant you hold", "medications (2 resources)"],
    );
    // A section the grant covers (observations:*) but the record does not have is refused
    // too, named: only the patient's device holding the root key makes sections.
    let mut labelled = part(&fixture, "Observation", 6, 1);
    labelled[0]["resource"]["meta"] = json!({"security": [{"code": "PSY"}]});
    labelled.extend(part(&fixture, "Condition", 2, 1));
    refuse(
        &gp,
        labelled,
        &[
            "no section observations:mental-health (1 resource)",
            "root key",
        ],
    );
    // The professional holding only `read` may not import at all.
    refuse(
        &rd,
        part(&fixture, "Condition", 2, 1),
        &["no grant you hold", "conditions (1 resource)"],
    );

    // The section the grant made (encounters) takes the GP's encounter.
    let mut new_section = part(&fixture, "Encounter", 0, 1);
    new_section.extend(part(&fixture, "Observation", 7, 1));
    let f = dir.path().join("encounter.json");
    write_bundle(&f, new_section);
    let done = json(&import_fhir(
        &gp,
        &f,
        &["--record", &rid, "--accept-different-patient", "--json"],
    ));
    assert_eq!(done["written"], 2, "{done}");

    // The patient receives the GP's entries (the GP's short-lived node pushes them).
    sync_in(&gp, None);
    wait_for("the GP's entries to reach the patient", 20, || {
        authored_by(&p, &rid, "Dr Gee") >= 7
    });
    assert_eq!(authored_by(&p, &rid, "Dr Read"), 0);
    // The patient's export names the GP as their author, and holds both grants.
    let out = dir.path().join("patient-export.json");
    let report = export_fhir(&p, &out, &[]);
    assert_eq!(report["consents"], 2, "{report}");
    let bundle: Value = read_json(&out);
    let by_gp = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["resourceType"] == "Provenance"
                && e["resource"]["agent"][0]["who"]["display"] == "Dr Gee"
        })
        .count();
    assert_eq!(by_gp, 7);
    // The GP's export holds its own grant only.
    let out = dir.path().join("gp-export.json");
    let report = export_fhir(&gp, &out, &["--record", &rid]);
    assert_eq!(report["consents"], 1, "{report}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(&grants[0]) && !text.contains(&grants[1]));
}

/// Issue #11 (14): a bundle about another person was merged into the record without a word.
/// The import compares the bundle's Patient with the record's demographics (NHS number first,
/// else name and birth date) and refuses another patient's bundle, or one that cannot be
/// checked, with exit 7 naming the facts (never their values) and writing nothing;
/// `--accept-different-patient` imports it anyway and says so; `--dry-run` shows the check.
#[test]
fn another_patients_bundle_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _ = init_patient(&home);
    let entry = json!({"name": "Edith Test", "birth_date": "1938-03-02"}).to_string();
    json(&hearth(
        &home,
        &["record", "add", "demographics", "--entry", &entry, "--json"],
    ));
    // Another person: another name and birth date, no NHS number.
    let cato = fixture("ckd-stage3");
    let cato_n = read_json(&cato)["entry"].as_array().unwrap().len() as u64;
    // Another NHS number (her birth date; the name "Edith Testpatient", not hers).
    let edith = fixture("uk-social-care");
    let mut other_nhs = read_json(&edith);
    other_nhs["entry"][0]["resource"]["identifier"][0]["value"] = json!("9000000009");
    let other_nhs_path = dir.path().join("other-nhs.json");
    std::fs::write(&other_nhs_path, serde_json::to_vec(&other_nhs).unwrap()).unwrap();
    // No Patient at all.
    let anonymous = dir.path().join("anonymous.json");
    write_bundle(&anonymous, part(&read_json(&cato), "Condition", 0, 2));
    // Two Patients.
    let two = dir.path().join("two.json");
    let mut entries = part(&read_json(&cato), "Patient", 0, 1);
    entries.extend(part(&read_json(&edith), "Patient", 0, 1));
    write_bundle(&two, entries);

    let before = store_dump(&home);
    for (path, code, want) in [
        (
            &cato,
            7,
            "the bundle is about another patient: the name and birth date differ from this record's",
        ),
        (
            &other_nhs_path,
            7,
            "the bundle is about another patient: the NHS number and name differ from this record's",
        ),
        (&anonymous, 7, "the bundle has no Patient resource"),
        (&two, 3, "2 Patient resources"),
    ] {
        let err = fails_with(
            &hearth(&home, &["record", "import", "--fhir", s(path)]),
            code,
        );
        assert!(err.contains(want), "{want}: {err}");
        if code == 7 {
            assert!(err.contains("--accept-different-patient"), "{err}");
        }
        for value in [
            "Cato",
            "Sampleton",
            "1948",
            "9000000009",
            "9434765919",
            "1938",
        ] {
            assert!(!err.contains(value), "the refusal repeats {value}: {err}");
        }
        assert!(
            store_dump(&home) == before,
            "a refused import changed the store"
        );
    }

    // A dry run shows the check, and fails as the import would.
    let out = import_fhir(&home, &cato, &["--dry-run", "--json"]);
    fails_with(&out, 7);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["written"], 0);
    assert_eq!(report["patient_check"]["result"], "different", "{report}");
    assert_eq!(
        report["patient_check"]["differs"],
        json!(["name", "birth-date"])
    );
    assert_eq!(report["patient_check"]["accepted_different_patient"], false);
    let text = import_fhir(&home, &cato, &["--dry-run"]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("Patient check: the bundle is about another patient"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    let accepted = json(&import_fhir(
        &home,
        &cato,
        &["--dry-run", "--accept-different-patient", "--json"],
    ));
    assert_eq!(
        accepted["patient_check"]["accepted_different_patient"],
        true
    );
    assert!(store_dump(&home) == before, "a dry run changed the store");

    // Her own bundle goes in: the same NHS number, whatever the name says.
    let own = json(&import_fhir(&home, &edith, &["--json"]));
    assert_eq!(own["patient_check"]["result"], "same", "{own}");
    assert_eq!(own["patient_check"]["by"], "nhs-number");

    // The override imports another person's bundle, and the report says it was used.
    let out = import_fhir(&home, &cato, &["--accept-different-patient"]);
    let text = ok(&out);
    assert!(
        text.contains("imported anyway: --accept-different-patient"),
        "{text}"
    );
    let again = json(&import_fhir(
        &home,
        &cato,
        &["--accept-different-patient", "--json"],
    ));
    assert_eq!(again["unchanged"], cato_n, "{again}");
}

/// Issue #11 (14), a professional's side: importing into a patient's record with `--record`
/// is checked against the record's demographics the professional may read: a bundle about
/// another NHS number is refused (exit 7) and nothing is written; the patient's own goes in.
#[test]
fn a_professionals_import_is_checked_against_the_patients_demographics() {
    let dir = tempfile::tempdir().unwrap();
    let (p, gp) = (dir.path().join("p"), dir.path().join("gp"));
    let rid = init_patient(&p)["record_id"].as_str().unwrap().to_owned();
    let fixture = read_json(&fixture("type2-diabetes-seed1.json"));
    let _dp = Daemon::start(&p, None);
    let g = professional_granted(&p, &gp, "Dr Gee", "demographics,conditions", "append");
    json(&hearth(
        &gp,
        &["accept", g["token"].as_str().unwrap(), "--json"],
    ));
    sync_in(&gp, None);

    let bundle_for = |nhs: &str, file: &str| {
        let mut entries = vec![
            json!({"fullUrl": "urn:uuid:7d3b0f4e-5a61-4f2c-8e9d-1c2b3a4d5e6f",
            "resource": {"resourceType": "Patient", "name": [{"text": "Edith Test"}],
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]}}),
        ];
        entries.extend(part(&fixture, "Condition", 0, 1));
        let f = dir.path().join(file);
        write_bundle(&f, entries);
        f
    };
    let other = bundle_for("9000000009", "other.json");
    let before = store_dump(&gp);
    let err = fails_with(&import_fhir(&gp, &other, &["--record", &rid]), 7);
    assert!(err.contains("the NHS number differs"), "{err}");
    assert!(
        store_dump(&gp) == before,
        "a refused import changed the store"
    );

    let hers = bundle_for("9434765919", "hers.json");
    let done = json(&import_fhir(&gp, &hers, &["--record", &rid, "--json"]));
    assert_eq!(done["patient_check"]["result"], "same", "{done}");
    assert_eq!(done["written"], 2, "{done}");
}
