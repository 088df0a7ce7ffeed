//! Break-glass end to end with real `hearth` processes on loopback: without an arrangement
//! there is no emergency access, and the professional is told why; with one, an attested
//! professional opens the arranged sections with a reason, the patient sees it at the top of
//! `audit` and `status`, and once the use is over its sections move to new keys; while every
//! one of the patient's devices is offline, the use opens the record through its relay with
//! the keys escrowed to the organisation.

use crate::common::world::{World, refused, str_of, world};
use crate::common::{Daemon, add_text, hearth, init, json, ok, peer_of, show, sync_in, wait_for};

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
    access_with(w, Some(with), reason, duration)
}

/// `emergency access` on the GP's node, asking the patient's device `with` first if given.
fn access_with(
    w: &World,
    with: Option<&str>,
    reason: &str,
    duration: &str,
) -> std::process::Output {
    let mut args = vec![
        "emergency",
        "access",
        "--record",
        &w.record,
        "--reason",
        reason,
        "--duration",
        duration,
        "--json",
    ];
    if let Some(p) = with {
        args.extend(["--with", p]);
    }
    hearth(&w.gp, &args)
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

#[test]
fn while_the_patient_is_offline_an_arranged_use_opens_the_record_through_a_relay() {
    let w = world();
    // Another organisation's relay keeps the record.
    let relay_home = w.h.home("relay");
    let relay_id = init(&relay_home, "relay", "Hillside Relay");
    let relay = Daemon::start(&relay_home, Some("/ip4/127.0.0.1/tcp/0"));
    let relay_peer = peer_of(&relay_id).to_string();
    let relay_addr = format!(
        "{}/p2p/{relay_peer}",
        relay.file()["listen_addrs"][0].as_str().unwrap()
    );
    // The organisation's node is on the relays' network; the GP holds its credential.
    let org = Daemon::start_with(
        &w.org,
        Some("/ip4/127.0.0.1/tcp/0"),
        &["--relay-peer", &relay_addr],
    );
    let org_addr = format!(
        "{}/p2p/{}",
        org.file()["listen_addrs"][0].as_str().unwrap(),
        w.org_peer
    );
    let cred = w.attest("365d");
    ok(&hearth(
        &w.gp,
        &["credential", "add", &str_of(&cred["token"])],
    ));
    // The patient uses the relay and arranges emergency access with the organisation's
    // address: its key is asked for, and the arranged sections' keys are escrowed to it.
    let (patient, _) = patient_online(&w);
    ok(&hearth(&w.patient, &["relay", "use", &relay_addr]));
    let arranged = json(&hearth(
        &w.patient,
        &[
            "emergency",
            "arrange",
            "--org",
            &org_addr,
            "--name",
            "Riverside A&E",
            "--sections",
            "medications",
            "--max-duration",
            "2h",
            "--json",
        ],
    ));
    assert_eq!(arranged["escrowed"], true, "{arranged}");
    let words = ok(&hearth(&w.patient, &["emergency", "list"]));
    assert!(
        words.contains("works while your devices are offline"),
        "{words}"
    );
    sync_in(&w.patient, None);
    // Every one of the patient's devices goes offline.
    patient.stop();
    // The relay has announced the record on the relays' network (in life, long before).
    // (Asked from another node: the GP's own must find it by itself.)
    init(&w.h.home("probe"), "professional", "Probe");
    wait_for("the relay announced the record", 40, || {
        let found = json(&hearth(
            &w.h.home("probe"),
            &[
                "relay",
                "find",
                &w.record,
                "--via",
                &org_addr,
                "--timeout",
                "5",
                "--json",
            ],
        ));
        found["relays"].as_array().is_some_and(|r| !r.is_empty())
    });

    // The GP names neither the patient's device nor the relay: its organisation's node finds
    // the relay, which serves the arranged section; the organisation releases its keys.
    let out = access_with(&w, None, "Found unresponsive in the street", "1m");
    let used = json(&out);
    assert_eq!(used["through_relay"], relay_peer.as_str(), "{used}");
    assert_eq!(
        used["sections"],
        serde_json::json!(["medications"]),
        "{used}"
    );
    let shown = show(&w.gp, &w.record);
    assert!(shown.contains("Metformin"), "{shown}");
    assert!(!shown.contains("seen"), "notes were not arranged: {shown}");
    // The organisation's IG list has the use.
    assert!(
        org_audit(&w)
            .iter()
            .any(|u| u["reason"] == "Found unresponsive in the street")
    );
    // Neither the relay's nor the organisation's home holds the medication in the clear.
    for home in [&relay_home, &w.org] {
        for p in crate::common::paths_under(home) {
            let bytes = std::fs::read(&p).unwrap_or_default();
            assert!(
                !bytes.windows(9).any(|x| x == b"Metformin"),
                "{} holds record content",
                p.display()
            );
        }
    }

    // The patient comes back: the relay's receipt puts the use at the top of the audit, and
    // once it is over the medications move to new keys.
    let (_patient, _) = patient_online(&w);
    wait_for("the relay's emergency receipt", 60, || {
        ok(&hearth(&w.patient, &["audit"]))
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("EMERGENCY ACCESS"))
    });
    let words = ok(&hearth(&w.patient, &["audit"]));
    assert!(
        words.contains("Dr A. Shah (GP, Riverside Practice, verified)"),
        "{words}"
    );
    assert!(
        words.contains("Found unresponsive in the street"),
        "{words}"
    );
    wait_for("the key move after the use", 150, || {
        json(&hearth(&w.patient, &["audit", "--json"]))["emergency"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
}
