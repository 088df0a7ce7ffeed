//! FHIR import and export through the record engine on the in-memory store: every fixture
//! bundle round-trips with its clinical content intact, re-importing adds nothing, and bad input
//! changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::fhir::{
    self, Existing, ExportExtension, ExportInput, ExportOptions, ImportPlan, RawExportInput,
};
use hearth_core::ids::{EntryId, RecordId};
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{
    CheckedEntry, NewEntry, NewRecord, OpenRecord, RawEntryView, RawSectionView, SectionView, Vault,
};
use hearth_core::section::SectionName;
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// `../shared/fixtures/fhir` beside the workspace. Missing fixtures fail loudly: a test that
/// silently passes on nothing proves nothing.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fhir");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the FHIR fixtures are missing: expected {} (the shared/ folder beside the repository): {e}",
            dir.display()
        )
    });
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the fixture bundles in {}",
        dir.display()
    );
    out
}

struct Rec {
    vault: Vault<MemoryStore>,
    identity: Identity,
    id: RecordId,
    rng: TestRng,
}

fn new_record(seed: u64) -> Rec {
    let mut rng = TestRng::new(seed);
    let (identity, _) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
    let vault = Vault::new(MemoryStore::new());
    let id = vault
        .create_record(&identity, NewRecord::default(), TEST_NOW, &mut rng)
        .unwrap();
    Rec {
        vault,
        identity,
        id,
        rng,
    }
}

fn existing(rec: &mut OpenRecord<'_, MemoryStore>) -> Existing {
    let mut ex = Existing::default();
    for s in rec.sections() {
        for v in rec.history(&s.name).unwrap() {
            ex.add_version(&v);
        }
    }
    ex
}

fn views(rec: &mut OpenRecord<'_, MemoryStore>) -> Vec<SectionView> {
    let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    names.iter().map(|n| rec.show(n).unwrap()).collect()
}

/// The plan's entries as the node writes them: with the bodies the plan checked.
fn checked_items(plan: &ImportPlan) -> Vec<CheckedEntry> {
    plan.entries
        .iter()
        .map(|p| CheckedEntry {
            section: p.section,
            body: p.checked.clone(),
            supersedes: p.supersedes,
        })
        .collect()
}

/// Imports a bundle as the node does: each entry written as soon as it is planned, all of them
/// committed at the end (or, on any error, none).
fn import(r: &mut Rec, bytes: &[u8]) -> Result<(ImportPlan, Vec<EntryId>), String> {
    let json = fhir::parse_bundle(bytes).map_err(|e| e.to_string())?;
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let ex = existing(&mut rec);
    let mut writer = rec.entry_writer(TEST_NOW, &mut r.rng);
    writer.expect(json.len());
    let mut entries = Vec::new();
    let mut plan = fhir::plan_import_each(&json, &ex, |mut p: fhir::PlannedEntry| {
        writer.add(CheckedEntry {
            section: p.section,
            body: p.checked.clone(),
            supersedes: p.supersedes,
        })?;
        // The plan's body is the checked body without the kept resource.
        let mut body: Value = serde_json::from_str(p.checked.json())?;
        body["source"].as_object_mut().map(|s| s.remove("resource"));
        p.body = body;
        entries.push(p);
        Ok::<(), Box<dyn std::error::Error>>(())
    })
    .map_err(|e| e.to_string())?;
    let (ids, _) = writer.finish(&[], "").map_err(|e| e.to_string())?;
    plan.entries = entries;
    Ok((plan, ids))
}

fn export(r: &Rec, options: ExportOptions) -> Value {
    export_with_report(r, options).0
}

fn export_with_report(r: &Rec, options: ExportOptions) -> (Value, fhir::ExportReport) {
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let sections = views(&mut rec);
    let input = ExportInput {
        record: r.id,
        sections: &sections,
        now: Timestamp::from_millis(TEST_NOW.as_millis() + 1000),
    };
    fhir::export_bundle(&input, options, &[])
}

fn resources(bundle: &Value) -> Vec<(Option<String>, Value)> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e.get("resource").is_some())
                .map(|e| {
                    (
                        e["fullUrl"].as_str().map(str::to_owned),
                        e["resource"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The clinical content of a resource: type, codes, values and units, dates, statuses.
fn clinical(r: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let rt = r["resourceType"].as_str().unwrap_or_default();
    out.insert(format!("type={rt}"));
    let first_code = |c: &Value| -> Option<String> {
        c["coding"]
            .as_array()?
            .iter()
            .find_map(|x| Some(format!("{}|{}", x["system"].as_str()?, x["code"].as_str()?)))
    };
    for key in ["code", "medicationCodeableConcept", "vaccineCode"] {
        if let Some(c) = first_code(&r[key]) {
            out.insert(format!("code={c}"));
        }
    }
    let quantity = |q: &Value, out: &mut BTreeSet<String>, at: &str| {
        if let Some(v) = q["value"].as_f64() {
            out.insert(format!("{at}value={v}"));
            let unit = if q["system"] == "http://unitsofmeasure.org" {
                q["code"].as_str().or(q["unit"].as_str())
            } else {
                q["unit"].as_str().or(q["code"].as_str())
            };
            if let Some(u) = unit {
                out.insert(format!("{at}unit={u}"));
            }
        }
    };
    quantity(&r["valueQuantity"], &mut out, "");
    for (i, c) in r["component"].as_array().into_iter().flatten().enumerate() {
        if let Some(code) = first_code(&c["code"]) {
            out.insert(format!("component{i}.code={code}"));
        }
        quantity(&c["valueQuantity"], &mut out, &format!("component{i}."));
    }
    let date = |v: &Value| v.as_str().map(|s| s.chars().take(10).collect::<String>());
    for key in [
        "onsetDateTime",
        "abatementDateTime",
        "authoredOn",
        "birthDate",
        "occurrenceDateTime",
    ] {
        if let Some(d) = date(&r[key]) {
            out.insert(format!("{key}={d}"));
        }
    }
    if rt == "DiagnosticReport" {
        if let Some(d) = date(&r["effectiveDateTime"]) {
            out.insert(format!("effective={d}"));
        }
    } else if let Some(d) = r["effectiveDateTime"].as_str() {
        out.insert(format!("effective={d}"));
    }
    for key in ["period", "effectivePeriod"] {
        for end in ["start", "end"] {
            if let Some(d) = r[key][end].as_str() {
                let d = if rt == "Encounter" {
                    d.to_owned()
                } else {
                    d.chars().take(10).collect()
                };
                out.insert(format!("{key}.{end}={d}"));
            }
        }
    }
    for key in ["clinicalStatus", "verificationStatus"] {
        if let Some(c) = r[key]["coding"][0]["code"].as_str() {
            out.insert(format!("{key}={c}"));
        }
    }
    if rt == "Observation"
        && let Some(s) = r["status"].as_str()
        && ["final", "preliminary", "amended", "registered"].contains(&s)
    {
        out.insert(format!("status={s}"));
    }
    if let Some(g) = r["gender"].as_str() {
        out.insert(format!("gender={g}"));
    }
    for i in r["identifier"].as_array().into_iter().flatten() {
        if i["system"] == fhir::NHS_NUMBER_SYSTEM {
            out.insert(format!("nhs={}", i["value"]));
        }
    }
    out
}

fn by_url(bundle: &Value) -> BTreeMap<String, Value> {
    resources(bundle)
        .into_iter()
        .filter_map(|(u, r)| Some((u?, r)))
        .collect()
}

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
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("uk-social-care"))
        .unwrap();
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

struct FakeConsent;

impl ExportExtension for FakeConsent {
    fn name(&self) -> &str {
        "consent"
    }
    fn resources(&self, patient: &str, _now: Timestamp) -> Vec<Value> {
        vec![
            json!({"resourceType": "Consent", "status": "active", "patient": {"reference": patient}}),
        ]
    }
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

/// Every kind of bad input is refused with a message naming the place, and the store is left
/// exactly as it was.
#[test]
fn bad_bundles_are_refused_and_change_nothing() {
    let (_, good) = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("uk-social-care"))
        .unwrap();
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

#[test]
fn a_changed_resource_becomes_a_new_version_of_its_entry() {
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("uk-social-care"))
        .unwrap();
    let mut r = new_record(8);
    import(&mut r, &bytes).unwrap();
    let mut changed: Value = serde_json::from_slice(&bytes).unwrap();
    changed["entry"][3]["resource"]["clinicalStatus"]["coding"][0]["code"] = json!("inactive");
    let (plan, ids) = import(&mut r, &serde_json::to_vec(&changed).unwrap()).unwrap();
    assert_eq!(plan.report.updated, 1, "{:?}", plan.report);
    assert_eq!(ids.len(), 1);
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let conditions = rec.show(&"conditions".parse().unwrap()).unwrap();
    assert_eq!(conditions.entries.len(), 1);
    assert_eq!(conditions.entries[0].version, 2);
    assert_eq!(conditions.entries[0].body["clinical_status"], "inactive");
}

#[test]
fn add_entries_is_all_or_nothing() {
    let mut r = new_record(9);
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let before = r.vault.store().scan(&[], &[0xff; 8]).unwrap();
    let items = vec![
        NewEntry {
            section: "notes".parse().unwrap(),
            body: json!({"text": "fine"}),
            supersedes: None,
        },
        NewEntry {
            section: "allergies".parse().unwrap(),
            body: json!({"substance": "x", "severity": "very"}),
            supersedes: None,
        },
    ];
    assert!(rec.add_entries(&items, TEST_NOW, &mut r.rng).is_err());
    assert_eq!(r.vault.store().scan(&[], &[0xff; 8]).unwrap(), before);
    let ids = rec.add_entries(&items[..1], TEST_NOW, &mut r.rng).unwrap();
    assert_eq!(ids.len(), 1);
    let doc = rec.section_document(&"notes".parse().unwrap()).unwrap();
    let loaded = automerge::AutoCommit::load(&doc).unwrap();
    use automerge::ReadDoc;
    assert_eq!(loaded.keys(automerge::ROOT).count(), 1);
}

/// Import writes the bodies its plan checked (`add_checked_entries`): the same entries as
/// `add_entries` with the same bodies as JSON. Export written straight to JSON text is the same bundle,
/// byte for byte, as the `Value` export serialised, whole or in part, kept or rebuilt.
#[test]
fn checked_import_and_direct_json_export_match_the_value_paths() {
    for (name, bytes) in fixtures() {
        let json = fhir::parse_bundle(&bytes).unwrap();
        let plan = fhir::plan_import(&json, &Existing::default()).unwrap();
        let mut a = new_record(5);
        let items: Vec<NewEntry> = plan
            .entries
            .iter()
            .map(|p| NewEntry {
                section: p.section,
                body: serde_json::from_str(p.checked.json()).unwrap(),
                supersedes: p.supersedes,
            })
            .collect();
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        rec.add_entries(&items, TEST_NOW, &mut a.rng).unwrap();
        drop(rec);
        let mut b = new_record(5);
        let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
        rec.add_checked_entries(&checked_items(&plan), TEST_NOW, &mut b.rng)
            .unwrap();
        let got = views(&mut rec);
        drop(rec);
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        let want = views(&mut rec);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap(),
            "{name}"
        );
        drop(rec);

        let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
        let all = views(&mut rec);
        let some: Vec<SectionView> = all
            .iter()
            .filter(|v| v.class.as_str() != "demographics" && v.class.as_str() != "documents")
            .cloned()
            .collect();
        for sections in [&all, &some] {
            for rebuild in [false, true] {
                let input = ExportInput {
                    record: b.id,
                    sections,
                    now: TEST_NOW,
                };
                let options = ExportOptions {
                    rebuild,
                    ..ExportOptions::default()
                };
                let (value, report) = fhir::export_bundle(&input, options, &[&FakeConsent]);
                let (compact, r2) =
                    fhir::export_bundle_json(&input, options, &[&FakeConsent], false).unwrap();
                assert_eq!(report, r2);
                assert_eq!(compact, serde_json::to_vec(&value).unwrap(), "{name}");
                let (pretty, _) =
                    fhir::export_bundle_json(&input, options, &[&FakeConsent], true).unwrap();
                assert_eq!(pretty, serde_json::to_vec_pretty(&value).unwrap(), "{name}");
                // The text is serde_json's own writing of the bundle it holds.
                let reparsed: Value = serde_json::from_slice(&compact).unwrap();
                assert_eq!(compact, serde_json::to_vec(&reparsed).unwrap(), "{name}");

                // From the bodies as stored (show_raw), and from bodies stored in any other
                // JSON layout (white space, escapes, other number forms), the same bytes.
                let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
                let stored: Vec<RawSectionView> = sections
                    .iter()
                    .map(|v| {
                        let name = SectionName::new(v.class, v.label);
                        rec.show_raw(&name).unwrap()
                    })
                    .collect();
                let odd: Vec<RawSectionView> = stored
                    .iter()
                    .map(|v| RawSectionView {
                        class: v.class,
                        label: v.label,
                        entries: v
                            .entries
                            .iter()
                            .map(|e| RawEntryView::new(e.entry.clone(), odd_layout(e.body())))
                            .collect(),
                    })
                    .collect();
                for raw in [&stored, &odd] {
                    let input = RawExportInput {
                        record: b.id,
                        sections: raw,
                        now: TEST_NOW,
                    };
                    for pretty in [false, true] {
                        let (got, r3) =
                            fhir::export_raw_json(&input, options, &[&FakeConsent], pretty)
                                .unwrap();
                        assert_eq!(r3, report, "{name}");
                        assert!(
                            got == if pretty {
                                pretty_want(&value)
                            } else {
                                compact.clone()
                            },
                            "{name}: rebuild {rebuild}, pretty {pretty}"
                        );
                    }
                }
            }
        }
    }
}

fn pretty_want(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

/// The same JSON in another layout: pretty-printed, every non-ASCII character and `/` escaped,
/// and decimals with a trailing zero.
fn odd_layout(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let mut out = String::with_capacity(pretty.len() * 2);
    let mut in_string = false;
    let mut escaped = false;
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| {
        // A float keeps its value with a trailing zero (an integer would not stay one).
        if number.contains('.') && !number.contains(['e', 'E']) {
            number.push('0');
        }
        out.push_str(number);
        number.clear();
    };
    for ch in pretty.chars() {
        if in_string {
            match ch {
                _ if escaped => {
                    escaped = false;
                    out.push(ch);
                }
                '\\' => {
                    escaped = true;
                    out.push(ch);
                }
                '"' => {
                    in_string = false;
                    out.push(ch);
                }
                '/' => out.push_str("\\/"),
                c if !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
                c => out.push(c),
            }
        } else if ch.is_ascii_digit() || matches!(ch, '-' | '.' | 'e' | 'E' | '+') {
            number.push(ch);
        } else {
            flush(&mut number, &mut out);
            if ch == '"' {
                in_string = true;
            }
            out.push(ch);
        }
    }
    flush(&mut number, &mut out);
    let back: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back, v, "the odd layout holds the same JSON");
    out
}

/// `show_raw` gives the entries `show` gives, in the same order, with the same bodies.
#[test]
fn show_raw_is_show_with_bodies_as_text() {
    let (_, bytes) = fixtures().remove(0);
    let mut r = new_record(11);
    import(&mut r, &bytes).unwrap();
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    assert!(names.len() > 3);
    for name in names {
        let shown = rec.show(&name).unwrap();
        let raw = rec.show_raw(&name).unwrap();
        assert_eq!((raw.class, raw.label), (shown.class, shown.label));
        assert_eq!(raw.entries.len(), shown.entries.len());
        for (a, b) in raw.entries.iter().zip(&shown.entries) {
            let body: Value = serde_json::from_str(a.body()).unwrap();
            assert_eq!(body, b.body);
            let mut entry = b.clone();
            entry.body = Value::Null;
            assert_eq!(
                serde_json::to_value(&a.entry).unwrap(),
                serde_json::to_value(&entry).unwrap()
            );
        }
    }
    let missing = "notes:safeguarding".parse().unwrap();
    assert!(rec.show_raw(&missing).is_err());
}

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
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("uk-social-care"))
        .unwrap();
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
