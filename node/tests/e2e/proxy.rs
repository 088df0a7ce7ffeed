//! Proxy access end to end, through the real binary and real libp2p on loopback: the patient
//! makes a carer their proxy with the power to answer requests; a GP's request goes to the
//! carer, who approves it (narrowed) and denies another; the GP syncs under the carer's grant;
//! the carer's answers reach the patient's audit, named as the proxy's, and the patient's
//! ledger; revoking the proxy ends what it gave.

use crate::common::world::{refused, str_of, world};
use crate::common::{Daemon, hearth, init, json, ok, show, sync_in, wait_for};
use serde_json::Value;

/// The `hearth audit --json` events of `home`.
fn audit(home: &std::path::Path) -> Vec<Value> {
    json(&hearth(home, &["audit", "--json"]))["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_proxy_approves_and_denies_requests_and_the_patient_sees_it_as_theirs() {
    let w = world();
    // The GP is attested by an organisation the patient trusts.
    w.gp_attested_and_trusted();
    // The carer has a record of her own, and is her mother's proxy.
    let carer = w.h.home("carer");
    init(&carer, "patient", "Jane Carer");
    let card = str_of(&json(&hearth(&carer, &["id", "--card", "--json"]))["card"]);
    let pd = Daemon::start(&w.patient, None);

    // Without the power to answer, a proxy cannot take requests.
    let reader = json(&hearth(
        &w.patient,
        &[
            "grant",
            "--to",
            &card,
            "--proxy",
            "--sections",
            "notes",
            "--expires",
            "30d",
            "--json",
        ],
    ));
    ok(&hearth(&carer, &["accept", &str_of(&reader["token"])]));
    let req = w.request("notes,medications", "90d", "Annual diabetes review");
    refused(
        hearth(&carer, &["requests", "add", &str_of(&req["token"])]),
        7,
        "not made you their proxy",
    );

    let proxy = json(&hearth(
        &w.patient,
        &[
            "grant",
            "--to",
            &card,
            "--proxy",
            "--answers-requests",
            "--sections",
            "notes",
            "--expires",
            "1y",
            "--json",
        ],
    ));
    let proxy_id = str_of(&proxy["id"]);
    ok(&hearth(&carer, &["accept", &str_of(&proxy["token"])]));

    // The request reaches the carer, who sees it is for her mother's record.
    let added = json(&hearth(
        &carer,
        &["requests", "add", &str_of(&req["token"]), "--json"],
    ));
    assert_eq!(added["as_proxy"], true, "{added}");
    assert_eq!(added["record_id"], w.record.as_str());
    let pending = json(&hearth(&carer, &["requests", "--json"]));
    let p = &pending["pending"][0];
    assert_eq!(p["as_proxy"], true, "{pending}");
    assert_eq!(p["name"], "Dr A. Shah");
    // The carer cannot check the credential against the patient's trusted organisations.
    assert_eq!(p["identity"]["status"], "unverified", "{pending}");
    let rid = str_of(&p["id"]);
    // A replay changes nothing.
    refused(
        hearth(&carer, &["requests", "add", &str_of(&req["token"])]),
        7,
        "already received",
    );

    // She approves it for 30 days: notes only, as her own grant covers no medications.
    let approved = json(&hearth(
        &carer,
        &["requests", "approve", &rid, "--expires", "30d", "--json"],
    ));
    assert_eq!(approved["as_proxy"], true, "{approved}");
    let not_granted = approved["not_granted"].as_array().unwrap();
    assert_eq!(not_granted.len(), 1, "{approved}");
    assert!(not_granted[0].as_str().unwrap().contains("medications"));
    let issued = str_of(&approved["id"]);
    refused(
        hearth(&carer, &["requests", "approve", &rid]),
        7,
        "already answered",
    );

    // The GP takes the grant and syncs with the patient's node: it gets the notes (keys
    // wrapped to it by the patient's node), not the medications.
    ok(&hearth(&w.gp, &["accept", &str_of(&approved["token"])]));
    sync_in(&w.gp, None);
    let shown = show(&w.gp, &w.record);
    assert!(shown.contains("seen"), "{shown}");
    assert!(!shown.contains("Metformin"), "{shown}");

    // A second request, denied with a reason.
    let req2 = w.request("notes", "1y", "Research interest");
    let added2 = json(&hearth(
        &carer,
        &["requests", "add", &str_of(&req2["token"]), "--json"],
    ));
    let rid2 = str_of(&added2["id"]);
    refused(
        hearth(
            &carer,
            &["requests", "deny", &rid2, "--reason", "two\nlines"],
        ),
        3,
        "one line",
    );
    ok(&hearth(
        &carer,
        &["requests", "deny", &rid2, "--reason", "Mum says no"],
    ));

    // A request the patient denied herself, which the carer approves: the grant is in force,
    // so the patient's ledger shows it (she may revoke it), while her own answer stands.
    let req3 = w.request("notes", "30d", "Second opinion");
    let mine = w.add_request(&req3);
    ok(&hearth(
        &w.patient,
        &["requests", "deny", &str_of(&mine["id"])],
    ));
    json(&hearth(
        &carer,
        &["requests", "add", &str_of(&req3["token"]), "--json"],
    ));
    let overruled = json(&hearth(
        &carer,
        &["requests", "approve", &str_of(&mine["id"]), "--json"],
    ));
    let overruled = str_of(&overruled["id"]);

    // The carer's node reports its answers at its next sync with the patient's node.
    sync_in(&carer, None);
    let mut events = Vec::new();
    wait_for("the proxy's answers in the patient's audit", 30, || {
        events = audit(&w.patient);
        events.iter().any(|e| e["event"] == "proxy-denied")
    });
    let approval = events
        .iter()
        .find(|e| e["event"] == "proxy-approved" && e["issued_grant"] == issued.as_str())
        .expect("an approval line");
    assert_eq!(
        approval["by_name"], "your proxy \"Jane Carer\"",
        "{approval}"
    );
    assert_eq!(approval["by_verified"], true);
    assert_eq!(
        approval["requester_name"], "Dr A. Shah (GP, Riverside Practice, verified)",
        "{approval}"
    );
    assert_eq!(approval["issued_grant"], issued.as_str());
    assert_eq!(
        approval["grant"],
        proxy_id.as_str(),
        "acted under its proxy grant"
    );
    let denial = events
        .iter()
        .find(|e| e["event"] == "proxy-denied")
        .unwrap();
    assert_eq!(denial["reason"], "Mum says no", "{denial}");
    // And the GP's sync under the carer's grant, with its verified name.
    assert!(
        events.iter().any(|e| e["event"] == "served"
            && e["to_name"] == "Dr A. Shah (GP, Riverside Practice, verified)"),
        "{events:?}"
    );
    let words = ok(&hearth(&w.patient, &["audit"]));
    assert!(
        words.contains("your proxy \"Jane Carer\" approved, on your behalf"),
        "{words}"
    );
    let verified = hearth(&w.patient, &["audit", "verify", "--json"]);
    assert!(verified.status.success(), "{}", ok(&verified));

    // The patient's ledger shows both answers as the proxy's, and nothing pending.
    let list = ok(&hearth(&w.patient, &["grant", "list"]));
    assert!(
        list.contains("approved request") && list.contains("by your proxy"),
        "{list}"
    );
    assert!(list.contains("denied request"), "{list}");
    let pending = json(&hearth(&w.patient, &["requests", "--json"]));
    assert_eq!(pending["pending"], serde_json::json!([]), "{pending}");
    let ledger = json(&hearth(&w.patient, &["grant", "list", "--json"]));
    let events = ledger["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "granted" && e["id"] == overruled.as_str()),
        "{ledger}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "denied"
            && e["request"] == mine["id"]
            && e["by_proxy"].is_null()),
        "{ledger}"
    );

    // The patient revokes the proxy: what the proxy gave ends with it.
    ok(&hearth(&w.patient, &["grant", "revoke", &proxy_id]));
    let out = hearth(&w.gp, &["sync", "--wait", "--json"]);
    let synced: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_ne!(synced["in_sync"], true, "the GP still syncs: {synced}");
    drop(pd);
}
