//! End-to-end FHIR export with the real `hearth` binary: the automerge export opens with plain
//! automerge, chosen sections keep their references valid, grants travel as Consents, and the
//! patient's audit log as AuditEvents.

use crate::common::fhir::{
    export_fhir, fixture, fixtures, import_fhir, init_as_patient_of, professional_granted,
    read_json,
};
use crate::common::world::{str_of, world};
use crate::common::{Daemon, hearth, init_patient, json, ok, s, sync_in};
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

/// The `AuditEvent`s of an exported bundle, each with its `fullUrl`.
fn audit_events(bundle: &Value) -> Vec<(String, Value)> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "AuditEvent")
        .map(|e| (str_of(&e["fullUrl"]), e["resource"].clone()))
        .collect()
}

/// The displays of an `AuditEvent`'s section entities.
fn section_names(r: &Value) -> Vec<String> {
    r["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"]["identifier"]["system"] == "urn:hearth:section")
        .map(|e| str_of(&e["what"]["display"]))
        .collect()
}

/// A GP attested by its organisation, granted `notes` (append) on request, syncs, reads the
/// record, writes a note and corrects it, and syncs again: the patient's export holds an
/// `AuditEvent` for every event of its audit log (the sessions served, the GP's read, its write
/// and its correction) with the GP's verified name; ids and full URLs stay the same in the next
/// export; importing the export back adds nothing; `--no-audit` and the GP's own export hold
/// none.
#[test]
fn the_patients_export_holds_the_audit_log_as_audit_events() {
    let w = world();
    let dp = Daemon::start(&w.patient, Some("/ip4/127.0.0.1/tcp/0"));
    let with = str_of(&json(&hearth(&w.patient, &["id", "--json"]))["peer_id"]);
    w.gp_attested_and_granted("notes", "append");

    sync_in(&w.gp, Some(&with));
    let shown = json(&hearth(
        &w.gp,
        &["record", "show", "--record", &w.record, "--json"],
    ));
    assert!(shown.to_string().contains("seen"), "{shown}");
    let note = json(&hearth(
        &w.gp,
        &[
            "record",
            "add",
            "notes",
            "--record",
            &w.record,
            "--entry",
            r#"{"text": "Reviewed; well."}"#,
            "--json",
        ],
    ));
    let first = str_of(&note["entry_id"]);
    let corrected = json(&hearth(
        &w.gp,
        &[
            "record",
            "correct",
            &first,
            "--record",
            &w.record,
            "--entry",
            r#"{"text": "Reviewed; well. BP fine."}"#,
            "--json",
        ],
    ));
    let second = str_of(&corrected["entry_id"]);
    sync_in(&w.gp, Some(&with));
    dp.stop();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.json");
    let report = export_fhir(&w.patient, &out, &[]);
    assert_eq!(report["audit_problems"], json!([]), "{report}");
    let log = json(&hearth(&w.patient, &["audit", "--json"]));
    let logged = log["events"].as_array().unwrap().len();
    assert_eq!(report["audit_events"], logged, "{report}");
    let bundle: Value = read_json(&out);
    let patient = str_of(&bundle["entry"][0]["fullUrl"]);
    let events = audit_events(&bundle);
    assert_eq!(events.len(), logged);
    let shah = "Dr A. Shah (GP, Riverside Practice, verified)";
    let gp_agent = |r: &Value| {
        let who = &r["agent"][0]["who"];
        assert_eq!(who["identifier"]["value"], w.gp_peer.as_str(), "{r}");
        assert_eq!(who["display"], shah, "{r}");
        assert_eq!(who["extension"][0]["url"], "urn:hearth:name-verified");
        assert_eq!(who["extension"][0]["valueBoolean"], true);
        assert_eq!(r["agent"][0]["requestor"], true);
    };
    for (url, r) in &events {
        assert!(url.starts_with("urn:uuid:"), "{url}");
        assert_eq!(r["outcome"], "0");
        assert_eq!(r["entity"][0]["what"]["reference"], patient.as_str());
        assert_eq!(r["extension"][0]["url"], "urn:hearth:audit-chain:seq");
        assert!(
            hearth_core::time::Timestamp::parse_rfc3339(r["recorded"].as_str().unwrap()).is_some()
        );
        assert_eq!(r["purposeOfEvent"][0]["coding"][0]["code"], "TREAT", "{r}");
        gp_agent(r);
    }
    // The sessions served: exports by the patient's device to the GP.
    let served: Vec<&Value> = events
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r["type"]["code"] == "110106")
        .collect();
    assert!(!served.is_empty(), "{bundle}");
    for r in &served {
        assert_eq!(r["action"], "R");
        assert_eq!(r["agent"][1]["requestor"], false);
        assert!(
            str_of(&r["agent"][1]["who"]["display"]).starts_with("the patient's device \""),
            "{r}"
        );
        assert_eq!(
            r["source"]["observer"]["identifier"],
            r["agent"][1]["who"]["identifier"]
        );
        assert!(section_names(r).contains(&"notes".to_owned()), "{r}");
    }
    // The GP's read, as its device reported it.
    let read = events
        .iter()
        .map(|(_, r)| r)
        .find(|r| r["subtype"][0]["code"] == "read")
        .expect("the GP's read");
    assert_eq!(read["type"]["code"], "110110");
    assert_eq!(read["action"], "R");
    assert_eq!(
        read["source"]["observer"]["identifier"]["value"],
        w.gp_peer.as_str()
    );
    assert!(section_names(read).contains(&"notes".to_owned()), "{read}");
    // Its write (created) and its correction (an update).
    let wrote = |entry: &str| {
        events
            .iter()
            .map(|(_, r)| r)
            .find(|r| {
                r["subtype"][0]["code"] == "wrote"
                    && r["entity"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["what"]["identifier"]["value"] == entry)
            })
            .unwrap_or_else(|| panic!("the write of {entry}"))
    };
    assert_eq!(wrote(&first)["action"], "C");
    assert_eq!(wrote(&second)["action"], "U");
    // Every reference resolves inside the bundle.
    let urls: std::collections::HashSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_of(&e["fullUrl"]))
        .collect();
    assert_eq!(urls.len(), bundle["entry"].as_array().unwrap().len());
    for part in bundle.to_string().split("\"reference\":\"").skip(1) {
        let r = part.split('"').next().unwrap();
        assert!(urls.contains(r), "dangling reference {r}");
    }

    // The export, imported back, adds nothing: the AuditEvents are skipped and reported. (The
    // record has no demographics to show the bundle is this patient's: accepted as it is.)
    let back = json(&import_fhir(
        &w.patient,
        &out,
        &["--accept-different-patient", "--json"],
    ));
    assert_eq!(back["written"], 0, "{back}");
    assert_eq!(back["by_type"]["AuditEvent"]["skipped"], logged, "{back}");

    // The next export writes the same events with the same ids and full URLs.
    let again = dir.path().join("again.json");
    export_fhir(&w.patient, &again, &[]);
    let ids = |b: &Value| -> Vec<(String, Value)> {
        audit_events(b)
            .into_iter()
            .map(|(u, r)| (u, r["id"].clone()))
            .collect()
    };
    assert_eq!(ids(&read_json(&again)), ids(&bundle));
    // Left out on request, and absent from a professional's export.
    let report = export_fhir(&w.patient, &again, &["--no-audit"]);
    assert_eq!(report["audit_events"], 0);
    assert!(audit_events(&read_json(&again)).is_empty());
    let report = export_fhir(&w.gp, &again, &["--record", &w.record]);
    assert_eq!(report["audit_events"], 0, "{report}");
    assert!(audit_events(&read_json(&again)).is_empty());
}

/// A grantee that takes data without reporting its reads: the export holds the receipt of that
/// session (with no reported head) and no AuditEvent for the problem, which the export's report
/// lists in words instead.
#[test]
fn the_logs_problems_are_reported_beside_the_export_not_written_as_audit_events() {
    let w = world();
    let g = crate::common::grant(&w.patient, &w.gp_peer, "notes", "read", "30d");
    let dp = Daemon::start(&w.patient, Some("/ip4/127.0.0.1/tcp/0"));
    w.gp_takes_without_reporting(&dp, &str_of(&g["token"]));
    dp.stop();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.json");
    let report = export_fhir(&w.patient, &out, &[]);
    let problems = report["audit_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["problem"], "not-reporting");
    assert!(
        str_of(&problems[0]["words"]).contains("without reporting its own reads"),
        "{report}"
    );
    let events = audit_events(&read_json(&out));
    assert_eq!(events.len(), 1, "{events:?}");
    let r = &events[0].1;
    assert_eq!(r["subtype"][0]["code"], "served");
    assert_eq!(
        r["agent"][0]["who"]["identifier"]["value"],
        w.gp_peer.as_str()
    );
    let chain: Vec<&str> = r["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["url"].as_str().unwrap())
        .collect();
    assert!(chain.contains(&"urn:hearth:audit-chain:seq"), "{r}");
    assert!(
        !chain.contains(&"urn:hearth:audit-chain:reported-head"),
        "{r}"
    );
    // In words, after the summary.
    let words = ok(&hearth(
        &w.patient,
        &["record", "export", "--fhir", s(&out)],
    ));
    assert!(
        words.contains("The audit log has 1 problem(s), which are not AuditEvents"),
        "{words}"
    );
    assert!(words.contains("without reporting its own reads"), "{words}");
}
