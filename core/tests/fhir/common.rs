//! Shared helpers: the fixture bundles, records on the in-memory store, import and export as
//! the node does them, and the clinical content of a resource.

pub(crate) use hearth_core::fhir::{
    self, Existing, ExportExtension, ExportInput, ExportOptions, ImportPlan, RawExportInput,
};
pub(crate) use hearth_core::ids::{EntryId, RecordId};
pub(crate) use hearth_core::keys::Identity;
pub(crate) use hearth_core::record::{
    CheckedEntry, NewEntry, OpenRecord, RawEntryView, RawSectionView, SectionView, Vault,
};
pub(crate) use hearth_core::section::SectionName;
pub(crate) use hearth_core::store::{MemoryStore, Store};
pub(crate) use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
pub(crate) use hearth_core::time::Timestamp;
pub(crate) use serde_json::{Value, json};
pub(crate) use std::collections::{BTreeMap, BTreeSet};

/// The fixture bundles (`shared/fixtures/fhir` beside the workspace) by file name, with their
/// bytes. Missing fixtures fail loudly.
pub(crate) fn fixtures() -> Vec<(String, Vec<u8>)> {
    hearth_core::test_utils::fhir_fixture_paths()
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The fixture bundle whose file name starts with `prefix`.
pub(crate) fn fixture(prefix: &str) -> Vec<u8> {
    fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap()
        .1
}

pub(crate) struct Rec {
    pub(crate) vault: Vault<MemoryStore>,
    pub(crate) identity: Identity,
    pub(crate) id: RecordId,
    pub(crate) rng: TestRng,
}

pub(crate) fn new_record(seed: u64) -> Rec {
    let mut rng = TestRng::new(seed);
    let vault = Vault::new(MemoryStore::new());
    let (identity, id) = patient_record(&vault, "Edith", TEST_NOW, &mut rng);
    Rec {
        vault,
        identity,
        id,
        rng,
    }
}

pub(crate) fn existing(rec: &mut OpenRecord<'_, MemoryStore>) -> Existing {
    let mut ex = Existing::default();
    for s in rec.sections() {
        for v in rec.history(&s.name).unwrap() {
            ex.add_version(&v);
        }
    }
    ex
}

pub(crate) fn views(rec: &mut OpenRecord<'_, MemoryStore>) -> Vec<SectionView> {
    let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    names.iter().map(|n| rec.show(n).unwrap()).collect()
}

/// The plan's entries as the node writes them: with the bodies the plan checked.
pub(crate) fn checked_items(plan: &ImportPlan) -> Vec<CheckedEntry> {
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
pub(crate) fn import(r: &mut Rec, bytes: &[u8]) -> Result<(ImportPlan, Vec<EntryId>), String> {
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

pub(crate) fn export(r: &Rec, options: ExportOptions) -> Value {
    export_with_report(r, options).0
}

pub(crate) fn export_with_report(r: &Rec, options: ExportOptions) -> (Value, fhir::ExportReport) {
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let sections = views(&mut rec);
    let input = ExportInput {
        record: r.id,
        sections: &sections,
        now: Timestamp::from_millis(TEST_NOW.as_millis() + 1000),
    };
    fhir::export_bundle(&input, options, &[])
}

pub(crate) fn resources(bundle: &Value) -> Vec<(Option<String>, Value)> {
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
pub(crate) fn clinical(r: &Value) -> BTreeSet<String> {
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

pub(crate) fn by_url(bundle: &Value) -> BTreeMap<String, Value> {
    resources(bundle)
        .into_iter()
        .filter_map(|(u, r)| Some((u?, r)))
        .collect()
}

/// An extension adding one `Consent` that refers to the patient.
pub(crate) struct FakeConsent;

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
