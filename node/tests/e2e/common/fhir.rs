//! Helpers of the FHIR end-to-end tests: the fixture bundles, the store's contents, and
//! patient and professional nodes to import into.

#![allow(dead_code)]

use super::{grant, hearth, init, json, peer_of, s};
use hearth_core::store::Store;
use hearth_node::sled_store::SledStore;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

#[track_caller]
pub(crate) fn fails_with(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "one line: {err}"
    );
    err
}

/// The FHIR fixture bundles (`shared/fixtures/fhir` beside the workspace); missing fixtures fail
/// the test.
pub(crate) fn fixtures() -> Vec<PathBuf> {
    hearth_core::test_utils::fhir_fixture_paths()
}

/// The first fixture bundle whose file name contains `name`.
#[track_caller]
pub(crate) fn fixture(name: &str) -> PathBuf {
    fixtures()
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().contains(name))
        .unwrap_or_else(|| panic!("no fixture named like {name:?}"))
}

/// Every key and value in the home's store.
pub(crate) fn store_dump(home: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = SledStore::open(&home.join("store")).unwrap();
    store.scan(&[], &[0xff; 8]).unwrap()
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The fixture's Patient resource.
pub(crate) fn patient_of(bundle: &Value) -> &Value {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .expect("a Patient in the fixture")
}

/// A patient node for the person `bundle` is about: the Patient's name, its NHS number when it
/// has one, and its birth date (a demographics entry), so that the import's patient check finds
/// the bundle to be this record's. Returns the name.
pub(crate) fn init_as_patient_of(home: &Path, bundle: &Value) -> String {
    let p = patient_of(bundle);
    let n = &p["name"][0];
    let name = format!(
        "{} {}",
        n["given"][0].as_str().unwrap(),
        n["family"].as_str().unwrap()
    );
    let nhs = p["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
        .map(|i| i["value"].as_str().unwrap().to_owned());
    let mut args = vec!["init", "--role", "patient", "--name", &name];
    if let Some(n) = &nhs {
        args.extend(["--nhs-number", n]);
    }
    args.push("--json");
    json(&hearth(home, &args));
    let entry = json!({"name": name, "birth_date": p["birthDate"]}).to_string();
    json(&hearth(
        home,
        &["record", "add", "demographics", "--entry", &entry, "--json"],
    ));
    name
}

/// A new professional node at `pro`, and the patient's grant to it (`grant --json` output).
pub(crate) fn professional_granted(
    patient: &Path,
    pro: &Path,
    name: &str,
    sections: &str,
    ability: &str,
) -> Value {
    let id = init(pro, "professional", name);
    grant(patient, peer_of(&id), sections, ability, "1d")
}

/// `hearth record export --fhir OUT EXTRA… --json` on `home`, which must succeed: its report.
#[track_caller]
pub(crate) fn export_fhir(home: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["record", "export", "--fhir", s(out)];
    args.extend(extra);
    args.push("--json");
    json(&hearth(home, &args))
}

/// `hearth record import --fhir FILE EXTRA…` on `home`, whatever the outcome.
pub(crate) fn import_fhir(home: &Path, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["record", "import", "--fhir", s(file)];
    args.extend(extra);
    hearth(home, &args)
}
