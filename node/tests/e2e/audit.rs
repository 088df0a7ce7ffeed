//! "Who looked at my record", end to end with real `hearth` processes on loopback: every
//! session the patient's node serves appears in its audit with the verified name, what the
//! professional's user reads comes back through sync, and a peer that takes data without
//! reporting its reads shows as a gap.

use crate::common::world::{str_of, world};
use crate::common::{Daemon, hearth, json, ok};
use serde_json::Value;

/// The events of `hearth audit --json` on `home`.
fn audit(home: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["audit", "--json"];
    args.extend(extra);
    json(&hearth(home, &args))
}

#[test]
fn every_session_served_and_every_read_reported_appears_with_the_verified_name() {
    let w = world();
    let dp = Daemon::start(&w.patient, Some("/ip4/127.0.0.1/tcp/0"));
    let with = str_of(&json(&hearth(&w.patient, &["id", "--json"]))["peer_id"]);
    // The organisation attests the GP; the patient trusts it; the GP asks and is granted.
    w.gp_attested_and_granted("notes,medications", "read");
    // Nothing served yet: an empty, whole log.
    let empty = audit(&w.patient, &[]);
    assert_eq!(empty["events"].as_array().unwrap().len(), 0, "{empty}");
    assert_eq!(empty["whole"], true);

    let synced = json(&hearth(
        &w.gp,
        &["sync", "--with", &with, "--wait", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    // The GP's user reads the record; the next sync reports it.
    let shown = json(&hearth(
        &w.gp,
        &["record", "show", "--record", &w.record, "--json"],
    ));
    assert!(shown.to_string().contains("Metformin"), "{shown}");
    let synced = json(&hearth(
        &w.gp,
        &["sync", "--with", &with, "--wait", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");

    let log = audit(&w.patient, &[]);
    let events = log["events"].as_array().unwrap();
    let served: Vec<&Value> = events.iter().filter(|e| e["event"] == "served").collect();
    assert!(!served.is_empty(), "{log}");
    for s in &served {
        assert_eq!(s["to"], w.gp_peer.as_str());
        assert_eq!(
            s["to_name"],
            "Dr A. Shah (GP, Riverside Practice, verified)"
        );
        assert_eq!(s["purpose"], "direct-care");
        assert_eq!(s["time_basis"], "the serving device's clock");
    }
    let read = events
        .iter()
        .find(|e| e["event"] == "read")
        .unwrap_or_else(|| panic!("the GP's read is reported: {log}"));
    assert_eq!(read["by"], w.gp_peer.as_str());
    assert_eq!(read["by_verified"], true);
    let sections: Vec<&str> = read["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        sections.contains(&"notes") && sections.contains(&"medications"),
        "{read}"
    );
    assert_eq!(log["whole"], true, "{log}");
    // Newest first.
    let times: Vec<String> = events.iter().map(|e| str_of(&e["at"])).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // In words, with the verified name.
    let words = ok(&hearth(&w.patient, &["audit"]));
    assert!(
        words.contains(
            "Dr A. Shah (GP, Riverside Practice, verified) read your medications and notes on "
        ) || words.contains(
            "Dr A. Shah (GP, Riverside Practice, verified) read your notes and medications on "
        ),
        "{words}"
    );
    assert!(words.contains("for direct care"), "{words}");
    // Filters.
    assert_eq!(
        audit(&w.patient, &["--who", "Shah"])["events"]
            .as_array()
            .unwrap()
            .len(),
        events.len()
    );
    assert!(
        audit(&w.patient, &["--who", "Nobody"])["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        audit(&w.patient, &["--since", "2999-01-01T00:00:00Z"])["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let bad = hearth(&w.patient, &["audit", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(3));
    // The whole log checks out.
    let v = json(&hearth(&w.patient, &["audit", "verify", "--json"]));
    assert_eq!(v["whole"], true, "{v}");
    assert!(v["events"].as_u64().unwrap() >= 2, "{v}");
    // The audit is the patient's: a professional's node has none to show.
    let other = hearth(&w.gp, &["audit"]);
    assert_eq!(other.status.code(), Some(7));

    // With the GP's node online, a new entry is pushed to it as it is written: that push is
    // receipted too (on the patient's next tick), and is no session the GP had to report in.
    let dg = Daemon::start(&w.gp, Some("/ip4/127.0.0.1/tcp/0"));
    crate::common::wait_for("the GP's node connects", 20, || {
        json(&hearth(&w.patient, &["status", "--json"]))["connected"]
            .as_array()
            .is_some_and(|c| c.iter().any(|p| p == w.gp_peer.as_str()))
    });
    crate::common::add_text(&w.patient, None, "notes", "pushed as written");
    crate::common::wait_for("the push's receipt", 30, || {
        audit(&w.patient, &[])["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["pushed"] == true && e["to"] == w.gp_peer.as_str())
            })
    });
    let log = audit(&w.patient, &[]);
    assert_eq!(log["whole"], true, "{log}");
    dg.stop();
    dp.stop();
}

#[test]
fn a_grantee_that_takes_data_without_reporting_shows_as_a_gap() {
    let w = world();
    let g = crate::common::grant(&w.patient, &w.gp_peer, "notes", "read", "30d");
    let dp = Daemon::start(&w.patient, Some("/ip4/127.0.0.1/tcp/0"));
    // The GP's node, changed not to report, asks with its grant and no audit head.
    w.gp_takes_without_reporting(&dp, &str_of(&g["token"]));
    dp.stop();
    let log = audit(&w.patient, &[]);
    assert_eq!(log["whole"], false, "{log}");
    let problem = &log["problems"][0];
    assert_eq!(problem["problem"], "not-reporting", "{log}");
    assert!(
        str_of(&problem["words"]).contains("without reporting its own reads"),
        "{problem}"
    );
    let words = ok(&hearth(&w.patient, &["audit"]));
    assert!(words.starts_with("WARNING: "), "{words}");
    assert!(
        words.contains("It did not report what its user read."),
        "{words}"
    );
    let v = hearth(&w.patient, &["audit", "verify"]);
    assert_eq!(
        v.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn what_one_professional_passes_another_shows_as_that_professionals_own_report() {
    use crate::common::{add_text, grant, grant_accepted, init, peer_of, sync_in, wait_for};
    let dir = tempfile::tempdir().unwrap();
    let (p, gp, sw) = (
        dir.path().join("p"),
        dir.path().join("gp"),
        dir.path().join("sw"),
    );
    let pid = init(&p, "patient", "Pat");
    let gid = init(&gp, "professional", "Dr Gee");
    let sid = init(&sw, "professional", "Sam Worker");
    add_text(&p, None, "notes", "Two falls at home this month");
    let dp = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let p_addr = str_of(&dp.file()["listen_addrs"][0]);
    let dg = Daemon::start(&gp, Some("/ip4/127.0.0.1/tcp/0"));
    grant_accepted(&p, &gp, &gid, "notes", "read", "1d");
    // The social worker's grant is made from her card, so it carries the notes' key.
    let card = json(&hearth(&sw, &["id", "--card", "--json"]));
    let g = grant(&p, &str_of(&card["card"]), "notes", "read", "1d");
    ok(&hearth(&sw, &["accept", &str_of(&g["token"])]));
    // Both take the notes (and both grants) from the patient's node. A later note reaches
    // only the GP's before the patient's node goes offline.
    sync_in(&gp, None);
    sync_in(&sw, None);
    add_text(&p, None, "notes", "Seen by the falls team");
    sync_in(&gp, None);
    dp.stop();
    // The social worker syncs from the GP's node: it serves her the note her grant allows,
    // and receipts it in its own journal.
    let (p_peer, g_peer, s_peer) = (peer_of(&pid), peer_of(&gid), peer_of(&sid));
    let g_addr = str_of(&dg.file()["listen_addrs"][0]);
    ok(&hearth(&sw, &["peers", "add", g_peer, &g_addr]));
    sync_in(&sw, Some(g_peer));
    let record = str_of(&pid["record_id"]);
    assert!(crate::common::show(&sw, &record).contains("Seen by the falls team"));
    // The patient's node is back; the GP's next sync with it reports that receipt with the
    // GP's own events.
    let _dp = Daemon::start(&p, Some(p_addr.split("/p2p/").next().unwrap()));
    let mut log = Value::Null;
    wait_for("the GP's report at the patient's node", 30, || {
        let _ = hearth(&gp, &["sync", "--with", p_peer, "--wait", "--json"]);
        log = audit(&p, &[]);
        log["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["by"] == g_peer))
    });
    assert_eq!(log["whole"], true, "{log}");
    let events = log["events"].as_array().unwrap();
    let passed = events
        .iter()
        .find(|e| e["event"] == "served" && e["by"] == g_peer && e["to"] == s_peer)
        .unwrap_or_else(|| panic!("the GP's receipt: {log}"));
    assert_eq!(passed["by_grantee"], true, "{passed}");
    assert_eq!(
        passed["time_basis"], "the writer's clock (a claim)",
        "{passed}"
    );
    let words = ok(&hearth(&p, &["audit"]));
    assert!(
        words.contains("'s own report: your devices and relays did not send it."),
        "{words}"
    );
    // The patient's own receipts are not marked so.
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "served" && e["by"] != g_peer)
            .all(|e| e["by_grantee"] == false),
        "{log}"
    );
}
