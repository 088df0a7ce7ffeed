//! Held writes end to end, through the real binary and real libp2p on loopback: a grantee
//! with a short grant writes offline, syncs after the grant ended, and the patient reviews.

use crate::common::{Daemon, Pair, add_text, grant, hearth, json, ok, show, sync_in, wait_for};
use std::time::{Duration, Instant};

#[test]
fn a_write_made_offline_before_expiry_and_synced_after_is_held_for_review_then_accepted() {
    let Pair {
        dir: _dir,
        p,
        g,
        rid,
        gp,
        ..
    } = Pair::new("Dr Gee");
    let _dp = Daemon::start(&p, None);
    let grant = grant(&p, &gp, "notes", "append", "5s");
    let granted = Instant::now();
    ok(&hearth(&g, &["accept", grant["token"].as_str().unwrap()]));
    sync_in(&g, None);
    // Offline, inside the grant: the professional's node writes into its replica.
    add_text(&g, Some(&rid), "notes", "CANARY-late-write");
    // After the grant's end and the clock tolerance (60 s), the professional comes online.
    let after = Duration::from_secs(5 + 60 + 3);
    if let Some(rest) = after.checked_sub(granted.elapsed()) {
        std::thread::sleep(rest);
    }
    let _dg = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));
    wait_for("the late write held at the patient's node", 60, || {
        let _ = hearth(&p, &["sync", "--with", &gp, "--wait", "--timeout", "10"]);
        json(&hearth(&p, &["review", "--json"]))["held"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    // Held, not applied.
    assert!(!show(&p, &rid).contains("CANARY-late-write"));
    let review = json(&hearth(&p, &["review", "--json"]));
    let held = &review["held"][0];
    assert_eq!(held["author"].as_str(), Some(gp.as_str()), "{review}");
    assert_eq!(held["reason"], "expired", "{review}");
    assert_eq!(held["section"], "notes", "{review}");
    assert!(held["received"].is_string() && held["declared"].is_string());
    let text = ok(&hearth(&p, &["review"]));
    assert!(
        text.contains("the author's claim") && text.contains(&gp),
        "{text}"
    );
    assert!(!text.contains("CANARY"), "{text}");
    let id = held["id"].as_str().unwrap().to_string();
    // Only the patient decides.
    let out = hearth(&g, &["review", "accept", &id]);
    assert!(!out.status.success());
    // Accept: applied, and recorded in the consent ledger.
    let done = json(&hearth(&p, &["review", "accept", &id[..16], "--json"]));
    assert_eq!(done["applied"], 1, "{done}");
    assert!(show(&p, &rid).contains("CANARY-late-write"));
    assert_eq!(
        json(&hearth(&p, &["review", "--json"]))["held"],
        serde_json::json!([])
    );
    let list = json(&hearth(&p, &["grant", "list", "--json"]));
    assert!(
        list["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "review" && e["decision"] == "accept" && e["write"] == id),
        "{list}"
    );
    // An unknown id is refused with a reason.
    let out = hearth(&p, &["review", "reject", "0123456789abcdef"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no held write"));
}
