//! End-to-end access requests with the real binary and three homes: a professional asks, the
//! patient sees who asks (verified through an organisation's attestation or not) and approves
//! or denies.

use crate::common::world::{refused, str_of, world};
use crate::common::{hearth, json};
use serde_json::Value;

#[test]
fn attest_request_approve_accept_verify() {
    let w = world();
    // The organisation attests the GP; the GP stores the credential; the patient trusts the org.
    let cred = w.attest("365d");
    json(&hearth(
        &w.gp,
        &["credential", "add", &str_of(&cred["token"]), "--json"],
    ));
    json(&hearth(
        &w.patient,
        &[
            "trust",
            "add-org",
            &w.org_peer,
            "--name",
            "Riverside Practice",
            "--json",
        ],
    ));

    // The GP asks; the patient receives the request and sees the verified identity.
    let req = w.request("notes,medications", "90d", "Annual diabetes review");
    assert_eq!(req["credential"], true);
    let added = w.add_request(&req);
    assert_eq!(added["identity"]["status"], "verified");
    let pending = json(&hearth(&w.patient, &["requests", "--json"]));
    let p = &pending["pending"][0];
    assert_eq!(p["identity"]["name"], "Dr A. Shah");
    assert_eq!(p["reason"], "Annual diabetes review");
    let rid = str_of(&p["id"]);

    // Approve, narrower: notes only, 30 days.
    let granted = json(&hearth(
        &w.patient,
        &[
            "requests",
            "approve",
            &rid,
            "--sections",
            "notes",
            "--expires",
            "30d",
            "--json",
        ],
    ));
    let token = str_of(&granted["token"]);
    assert!(token.starts_with("HEARTH1G"));
    assert!(
        json(&hearth(&w.patient, &["requests", "--json"]))["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The GP accepts (keys included, since the request carried the GP's card) and verifies.
    let acc = json(&hearth(&w.gp, &["accept", &token, "--json"]));
    assert!(
        acc["keys"].as_u64().unwrap() >= 2,
        "auth key and notes key: {acc}"
    );
    let v = json(&hearth(&w.gp, &["grant", "verify", &token, "--json"]));
    let scopes = v["rights"]["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0]["section"], "notes");
    // Accepting twice is a replay: refused, nothing changes.
    refused(hearth(&w.gp, &["accept", &token]), 7, "already accepted");
    // Approving twice is refused too.
    refused(
        hearth(&w.patient, &["requests", "approve", &rid]),
        7,
        "already answered",
    );

    // The ledger tells the story in order.
    let ledger = json(&hearth(&w.patient, &["grant", "list", "--json"]));
    let kinds: Vec<String> = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_of(&e["event"]))
        .collect();
    assert_eq!(kinds, vec!["trusted", "request", "granted", "approved"]);

    // FHIR Consent and SMART forms.
    let gid = str_of(&granted["id"]);
    let fhir: Value =
        serde_json::from_slice(&hearth(&w.patient, &["grant", "show", &gid, "--fhir"]).stdout)
            .unwrap();
    assert_eq!(fhir["resourceType"], "Consent");
    assert_eq!(fhir["status"], "active");
    let smart = json(&hearth(
        &w.patient,
        &["grant", "show", &gid, "--smart", "--json"],
    ));
    assert!(smart["smart"].as_array().unwrap().iter().any(|x| {
        x.as_str()
            .unwrap()
            .starts_with("patient/DocumentReference.rs")
    }));

    // Revocation: the patient's node refuses the grant from now on.
    json(&hearth(&w.patient, &["grant", "revoke", &gid, "--json"]));
    refused(
        hearth(&w.patient, &["grant", "verify", &token]),
        7,
        "revoked",
    );
    let fhir: Value =
        serde_json::from_slice(&hearth(&w.patient, &["grant", "show", &gid, "--fhir"]).stdout)
            .unwrap();
    assert_eq!(fhir["status"], "inactive");
}

#[test]
fn unverified_requester_and_deny() {
    let w = world();
    let req = w.request("notes:mental-health", "7d", "Curious");
    assert_eq!(req["credential"], false);
    let added = w.add_request(&req);
    assert_eq!(added["identity"]["status"], "unverified");
    let text = String::from_utf8(hearth(&w.patient, &["requests"]).stdout).unwrap();
    assert!(text.contains("UNVERIFIED"), "{text}");
    let rid = str_of(&added["id"]);
    json(&hearth(
        &w.patient,
        &["requests", "deny", &rid, "--reason", "not needed", "--json"],
    ));
    refused(
        hearth(&w.patient, &["requests", "approve", &rid]),
        7,
        "already answered",
    );
    // Replaying the request is refused.
    refused(
        hearth(&w.patient, &["requests", "add", &str_of(&req["token"])]),
        7,
        "already received",
    );
    // Widening on approval is impossible: approve a fresh request with more than asked.
    let req2 = w.request("notes", "7d", "Follow-up");
    let rid2 = str_of(
        &json(&hearth(
            &w.patient,
            &["requests", "add", &str_of(&req2["token"]), "--json"],
        ))["id"],
    );
    refused(
        hearth(
            &w.patient,
            &[
                "requests",
                "approve",
                &rid2,
                "--sections",
                "notes,medications",
            ],
        ),
        3,
        "not asked for",
    );
    refused(
        hearth(
            &w.patient,
            &["requests", "approve", &rid2, "--expires", "30d"],
        ),
        3,
        "shorten",
    );
    // A request for another patient's record is refused.
    let other = w.h.home("other");
    json(&hearth(
        &other,
        &["init", "--role", "patient", "--name", "Other", "--json"],
    ));
    refused(
        hearth(&other, &["requests", "add", &str_of(&req2["token"])]),
        7,
        "another record",
    );
}
