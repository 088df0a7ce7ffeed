//! Patient disputes end to end, through the real binary and real libp2p on loopback: a GP with
//! an append grant writes a note into the patient's record; the patient disputes it; the GP's
//! node receives the dispute at its next sync and shows it on that entry.

use crate::common::fhir::export_fhir;
use crate::common::world::refused;
use crate::common::{Daemon, Pair, add_text, grant, hearth, json, ok, show, sync_in, wait_for};
use serde_json::Value;
use std::path::Path;

/// The current entry `id` in `home`'s `record show --json` of `record`.
fn entry(home: &Path, record: &str, id: &str) -> Value {
    let shown: Value = serde_json::from_str(&show(home, record)).unwrap();
    shown["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["entries"].as_array().unwrap().iter())
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no entry {id} in {shown}"))
}

/// The disputes shown on entry `id` in `home`'s replica of `record`.
fn disputes(home: &Path, record: &str, id: &str) -> Vec<Value> {
    entry(home, record, id)["disputes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `hearth record dispute ENTRY --reason REASON --json` on `home`, which must succeed.
#[track_caller]
fn dispute(home: &Path, entry: &str, reason: &str) -> Value {
    json(&hearth(
        home,
        &["record", "dispute", entry, "--reason", reason, "--json"],
    ))
}

#[test]
fn a_patients_dispute_of_a_gps_note_reaches_the_gp_at_its_next_sync() {
    let Pair {
        dir,
        p,
        g,
        rid,
        pp,
        gp,
        ..
    } = Pair::new("Dr Gee");
    add_text(&p, None, "notes", "the patient's own note");
    let dp = Daemon::start(&p, None);
    let grant = grant(&p, &gp, "notes", "append", "1d");
    ok(&hearth(&g, &["accept", grant["token"].as_str().unwrap()]));
    sync_in(&g, None);

    // The GP writes a note into the patient's record; its short-lived node pushes it.
    let note = add_text(&g, Some(&rid), "notes", "Drinks heavily")
        .trim()
        .to_string();
    sync_in(&g, None);
    wait_for("the GP's note at the patient's node", 20, || {
        show(&p, &rid).contains(&note)
    });

    // The patient disputes it (forwarded to the running daemon).
    let before = show(&p, &rid);
    let out = dispute(&p, &note, "I have never said this");
    assert_eq!(out["entry_id"], note.as_str(), "{out}");
    let disputed = out["dispute_id"].as_str().unwrap().to_string();
    assert!(disputed.starts_with('d'), "{out}");
    assert_ne!(show(&p, &rid), before);

    // Bad input exits non-zero with a one-line reason and changes nothing.
    let before = show(&p, &rid);
    let unknown = "eaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let bad: [(&[&str], i32, &str); 5] = [
        (&[unknown, "--reason", "wrong"], 5, "no entry"),
        (&[&note, "--reason", ""], 3, "a dispute needs a reason"),
        (&[&note, "--reason", "   "], 3, "a dispute needs a reason"),
        (&[&note, "--reason", "two\nlines"], 3, "control characters"),
        (&["not-an-id", "--reason", "wrong"], 3, "entry id"),
    ];
    for (args, code, needle) in bad {
        let mut all = vec!["record", "dispute"];
        all.extend_from_slice(args);
        let out = hearth(&p, &all);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        refused(out, code, needle);
    }
    assert_eq!(
        show(&p, &rid),
        before,
        "a refused dispute changed the record"
    );
    // The GP may not dispute: that is the patient's word.
    refused(
        hearth(
            &g,
            &[
                "record", "dispute", &note, "--reason", "forged", "--record", &rid,
            ],
        ),
        7,
        "only the patient's own devices dispute entries",
    );

    // The GP's node receives the dispute at its next sync and shows it on its note, attributed
    // to the patient's device from the verified signing key.
    sync_in(&g, None);
    let at_gp = disputes(&g, &rid, &note);
    assert_eq!(at_gp.len(), 1, "{at_gp:?}");
    let d = &at_gp[0];
    assert_eq!(d["id"], disputed.as_str());
    assert_eq!(d["entry"], note.as_str());
    assert_eq!(d["reason"], "I have never said this");
    assert!(d["disputed_at"].is_string());
    assert_eq!(d["verified"]["basis"], "patient-device", "{d}");
    assert_eq!(d["verified"]["author"], pp.as_str(), "{d}");
    assert_eq!(d["verified"]["name"], "Pat", "{d}");
    // The entry itself is as the GP wrote it; only the disputed entry carries the dispute.
    assert_eq!(entry(&g, &rid, &note)["body"]["text"], "Drinks heavily");
    let text = ok(&hearth(&g, &["record", "show", "--record", &rid]));
    assert!(
        text.contains("DISPUTED by the patient (device \"Pat\")")
            && text.contains("I have never said this")
            && text.contains(&disputed),
        "{text}"
    );
    assert_eq!(text.matches("DISPUTED").count(), 1, "{text}");
    // The GP's FHIR export carries it: a Communication from the patient about the note.
    let file = dir.path().join("gp-export.json");
    let report = export_fhir(&g, &file, &["--record", &rid]);
    assert_eq!(report["resources"]["Communication"], 1, "{report}");
    let bundle: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let all = bundle["entry"].as_array().unwrap();
    let note_url = &all
        .iter()
        .find(|e| e["resource"]["id"] == note.as_str())
        .unwrap()["fullUrl"];
    let c = all
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Communication")
        .unwrap();
    assert_eq!(&c["about"][0]["reference"], note_url, "{c}");
    assert_eq!(c["payload"][0]["contentString"], "I have never said this");

    // Withdrawn (forwarded to the daemon): gone at the patient's, and at the GP's next sync.
    let out = json(&hearth(
        &p,
        &["record", "withdraw-dispute", &disputed, "--json"],
    ));
    assert_eq!(
        (out["dispute_id"].as_str(), out["entry_id"].as_str()),
        (Some(disputed.as_str()), Some(note.as_str())),
        "{out}"
    );
    assert!(disputes(&p, &rid, &note).is_empty());
    refused(
        hearth(&p, &["record", "withdraw-dispute", &disputed]),
        5,
        "withdrawn already",
    );
    sync_in(&g, None);
    assert!(disputes(&g, &rid, &note).is_empty());

    // Without the daemon the command runs on its own, with the same checks.
    dp.stop();
    let out = dispute(&p, &note, "Disputed again, offline");
    let again = out["dispute_id"].as_str().unwrap();
    let shown = disputes(&p, &rid, &note);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["id"], again);
    let before = show(&p, &rid);
    refused(
        hearth(&p, &["record", "dispute", unknown, "--reason", "wrong"]),
        5,
        "no entry",
    );
    refused(
        hearth(&p, &["record", "dispute", &note, "--reason", ""]),
        3,
        "a dispute needs a reason",
    );
    assert_eq!(show(&p, &rid), before);
}
