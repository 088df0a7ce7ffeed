//! Break-glass end to end with real `hearth` processes on loopback: without an arrangement
//! there is no emergency access, and the professional is told why; with one, an attested
//! professional opens the arranged sections with a reason, the patient sees it at the top of
//! `audit` and `status`, and once the use is over its sections move to new keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;

use common::world::{World, refused, str_of, world};
use common::{Daemon, add_text, hearth, json, ok, show, wait_for};

/// The patient's daemon, and the address to give `--with`.
fn patient_online(w: &World) -> (Daemon, String) {
    let d = Daemon::start(&w.patient, Some("/ip4/127.0.0.1/tcp/0"));
    let addr = d.file()["listen_addrs"][0].as_str().unwrap().to_string();
    let peer = str_of(&json(&hearth(&w.patient, &["id", "--json"]))["peer_id"]);
    (d, format!("{addr}/p2p/{peer}"))
}

/// The organisation's node runs (it logs its staff's emergency uses); the GP, attested by it,
/// holds its credential, which carries the node's address.
fn attested(w: &World) -> Daemon {
    let org = Daemon::start(&w.org, Some("/ip4/127.0.0.1/tcp/0"));
    let cred = w.attest("365d");
    assert!(!cred["addresses"].as_array().unwrap().is_empty(), "{cred}");
    ok(&hearth(
        &w.gp,
        &["credential", "add", &str_of(&cred["token"])],
    ));
    org
}

/// The organisation's IG list of emergency uses.
fn org_audit(w: &World) -> Vec<serde_json::Value> {
    json(&hearth(&w.org, &["org", "audit", "--json"]))["uses"]
        .as_array()
        .cloned()
        .unwrap()
}

fn access(w: &World, with: &str, reason: &str, duration: &str) -> std::process::Output {
    hearth(
        &w.gp,
        &[
            "emergency",
            "access",
            "--record",
            &w.record,
            "--reason",
            reason,
            "--with",
            with,
            "--duration",
            duration,
            "--json",
        ],
    )
}

#[test]
fn without_an_arrangement_there_is_no_emergency_access_and_the_professional_is_told_why() {
    let w = world();
    let _org = attested(&w);
    let (_d, with) = patient_online(&w);
    let out = access(&w, &with, "Unconscious in A&E", "1h");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no emergency access to this record"), "{err}");
    assert!(err.contains("end-to-end encrypted"), "{err}");
    assert!(!show(&w.gp, &w.record).contains("Metformin"));
    // The patient's audit records nothing served.
    let log = json(&hearth(&w.patient, &["audit", "--json"]));
    assert!(log["events"].as_array().unwrap().is_empty(), "{log}");
    // The organisation's IG list has the attempt, with the reason given.
    let uses = org_audit(&w);
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!(uses[0]["reason"], "Unconscious in A&E");
    assert_eq!(uses[0]["name"], "Dr A. Shah");
    // Only an organisation's node keeps such a list.
    refused(
        hearth(&w.patient, &["org", "audit"]),
        7,
        "only an organisation node",
    );
}

#[test]
fn an_arranged_emergency_use_opens_the_record_is_shown_to_the_patient_and_ends_in_a_key_move() {
    let w = world();
    let org = attested(&w);
    let (_d, with) = patient_online(&w);
    // A relay of the record may not hold emergency access (it would hold both ciphertext and
    // keys): refused. The organisation here is not one of the record's relays.
    let arranged = json(&hearth(
        &w.patient,
        &[
            "emergency",
            "arrange",
            "--org",
            &w.org_peer,
            "--name",
            "Riverside A&E",
            "--sections",
            "notes,medications",
            "--max-duration",
            "2h",
            "--json",
        ],
    ));
    assert_eq!(arranged["org"], w.org_peer.as_str());
    let listed = ok(&hearth(&w.patient, &["emergency", "list"]));
    assert!(listed.contains("Riverside A&E"), "{listed}");
    // Nor may the organisation then keep the record as a relay.
    let org_addr = format!(
        "{}/p2p/{}",
        org.file()["listen_addrs"][0].as_str().unwrap(),
        w.org_peer
    );
    refused(
        hearth(&w.patient, &["relay", "use", &org_addr]),
        7,
        "holds an emergency arrangement",
    );

    // Bad input changes nothing: no reason; longer than arranged.
    refused(access(&w, &with, "   ", "1h"), 3, "needs a reason");
    refused(
        access(&w, &with, "Collapsed", "3h"),
        7,
        "no emergency access to this record",
    );
    assert!(!show(&w.gp, &w.record).contains("Metformin"));

    // Without the organisation's node to log it, no use opens anything.
    org.stop();
    let out = access(&w, &with, "Collapsed at home, unresponsive", "1m");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no emergency access was used"), "{err}");
    assert!(!show(&w.gp, &w.record).contains("Metformin"));
    let _org = Daemon::start(&w.org, None);

    // A use of one minute, with a reason.
    let used = json(&access(&w, &with, "Collapsed at home, unresponsive", "1m"));
    let opened: Vec<&str> = used["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(opened, vec!["medications", "notes"], "{used}");
    let shown = show(&w.gp, &w.record);
    assert!(shown.contains("Metformin"), "{shown}");

    // The patient sees it first, with the verified name and the reason, in audit and status.
    let words = ok(&hearth(&w.patient, &["audit"]));
    let first = words.lines().next().unwrap();
    assert!(
        first.starts_with("EMERGENCY ACCESS in use: Dr A. Shah (GP, Riverside Practice, verified)"),
        "{words}"
    );
    assert!(first.contains("Collapsed at home, unresponsive"), "{words}");
    assert!(first.contains("\"Riverside A&E\""), "{words}");
    let log = json(&hearth(&w.patient, &["audit", "--json"]));
    let ev = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "emergency")
        .unwrap();
    assert_eq!(ev["emergency"]["reason"], "Collapsed at home, unresponsive");
    assert_eq!(ev["purpose"], "emergency");
    let status = ok(&hearth(&w.patient, &["status"]));
    assert!(status.starts_with("EMERGENCY ACCESS in use"), "{status}");
    // The organisation's IG list has it: who, which record, why.
    let uses = org_audit(&w);
    let logged = uses
        .iter()
        .find(|u| u["reason"] == "Collapsed at home, unresponsive")
        .expect("the use in the organisation's list");
    assert_eq!(logged["name"], "Dr A. Shah", "{logged}");
    assert_eq!(logged["registration"], "GMC 1234567");
    assert_eq!(logged["record_id"], w.record.as_str());

    // Once the use is over, the sections it opened move to new keys; the professional's use
    // is refused, and what the patient writes after never reaches it.
    wait_for("the key move after the use", 150, || {
        json(&hearth(&w.patient, &["audit", "--json"]))["emergency"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    add_text(&w.patient, None, "notes", "CANARY-after-emergency");
    let again = json(&hearth(
        &w.gp,
        &[
            "sync",
            "--with",
            &str_of(&json(&hearth(&w.patient, &["id", "--json"]))["peer_id"]),
            "--json",
        ],
    ));
    assert_ne!(again["in_sync"], true, "{again}");
    assert!(!show(&w.gp, &w.record).contains("CANARY-after-emergency"));
    let status = ok(&hearth(&w.patient, &["status"]));
    assert!(!status.contains("EMERGENCY ACCESS"), "{status}");
}
