//! `hearth store check` and `hearth store repair` on real sled stores on disk: a bundle
//! damaged on a professional's node is named in plain words, repair makes the record open
//! again with what verifies, and a sync over libp2p on loopback brings the rest back.

use crate::common::{Daemon, Pair, add_text, grant, hearth, json, ok, show, sync_in};
use hearth_core::bundle::Bundle;
use hearth_core::ids::SectionId;
use hearth_core::store::{Batch, Store};
use hearth_node::sled_store::SledStore;
use std::collections::BTreeMap;
use std::path::Path;

/// A stored bundle: its sequence number, key and value.
type Stored = (u64, Vec<u8>, Vec<u8>);

/// Flips one ciphertext byte of the second bundle of the longest content-section log in the
/// store at `home` (opened directly: no daemon runs there). Returns the damaged bundle's
/// sequence number. Finds bundles by decoding values, not by spelling the store's keys.
fn damage_a_bundle(home: &Path) -> u64 {
    let store = SledStore::open(&home.join("store")).unwrap();
    let mut logs: BTreeMap<_, Vec<Stored>> = BTreeMap::new();
    for (k, v) in store.scan(&[], &[0xff; 8]).unwrap() {
        if let Ok(b) = Bundle::decode(&v) {
            let h = b.header();
            if h.section != SectionId::AUTH && h.section != SectionId::LEDGER {
                logs.entry((h.section, h.author))
                    .or_default()
                    .push((h.seq, k, v));
            }
        }
    }
    let mut log = logs.into_values().max_by_key(Vec::len).unwrap();
    assert!(log.len() >= 3, "a log of at least three bundles");
    log.sort();
    let (seq, key, mut value) = log.swap_remove(1);
    let at = value.len() - 70;
    value[at] ^= 0x40;
    let mut batch = Batch::new();
    batch.put(key, value);
    store.commit(batch).unwrap();
    seq
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_damaged_replica_is_checked_repaired_and_refilled_by_its_peer() {
    let Pair {
        dir: _dir,
        p,
        g,
        gp,
        rid,
        ..
    } = Pair::new("Dr Gee");
    for i in 1..=4 {
        add_text(&p, None, "notes", &format!("CANARY-note-{i}"));
    }
    ok(&hearth(
        &p,
        &[
            "record",
            "add",
            "medications",
            "--entry",
            r#"{"name": "CANARY-med Apixaban 5mg"}"#,
        ],
    ));
    let dp = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let token = grant(&p, &gp, "notes,medications", "read", "1d");
    ok(&hearth(&g, &["accept", token["token"].as_str().unwrap()]));
    sync_in(&g, None);
    let all = show(&g, &rid);
    assert!((1..=4).all(|i| all.contains(&format!("CANARY-note-{i}"))));
    assert!(all.contains("CANARY-med"));
    // A clean store checks clean, in words and in JSON.
    let out = hearth(&g, &["store", "check"]);
    assert!(ok(&out).contains("No damage found."));
    let clean = json(&hearth(&g, &["store", "check", "--json"]));
    assert_eq!(clean["damaged"], false);
    assert!(clean["intact"]["bundles"].as_u64().unwrap() >= 5);

    // A byte flips on disk in the professional's copy of a notes bundle.
    let seq = damage_a_bundle(&g);

    // check names it in plain words, exits 6, and changes nothing.
    let out = hearth(&g, &["store", "check"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("bundle {seq} of author")),
        "names the bundle: {text}"
    );
    assert!(text.contains("its signature does not verify (altered on disk)"));
    assert!(text.contains("hearth store repair"));
    // People, not ids: the node unlocks (the passphrase is at hand) and names the section
    // and the verified writer, the patient's certified device.
    assert!(
        text.contains("(section notes, written by the patient's device"),
        "names the section and the writer: {text}"
    );
    // Locked (no passphrase at hand, no daemon): ids only, and the report says why.
    let locked = crate::common::command(&g, "")
        .env_remove("HEARTH_PASSPHRASE")
        .args(["store", "check"])
        .output()
        .unwrap();
    assert_eq!(locked.status.code(), Some(6));
    let words = stdout(&locked);
    assert!(!words.contains("section notes"), "{words}");
    assert!(words.contains("shown by id: the node is locked"), "{words}");
    // A wrong passphrase: ids only too, and the report says that it did not unlock (not that
    // none was given).
    let wrong = crate::common::command(&g, "not the passphrase")
        .args(["store", "check"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(6));
    let words = stdout(&wrong);
    assert!(!words.contains("section notes"), "{words}");
    assert!(
        words.contains("shown by id: the node did not unlock (wrong passphrase"),
        "{words}"
    );
    assert!(!words.contains("not the passphrase"), "{words}");
    assert!(stderr(&out).contains("the store is damaged"));
    assert!(!text.contains("CANARY"), "no record content in the report");
    let again = hearth(&g, &["store", "check", "--json"]);
    assert_eq!(again.status.code(), Some(6));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["damaged"], true);
    assert_eq!(report["quarantined"], 0, "check changed nothing");
    assert_eq!(report["broken_logs"][0]["verified"], seq - 1);
    assert_eq!(report["broken_logs"][0]["section_name"], "notes");
    let damaged = &report["damage"][0];
    assert_eq!(damaged["section_name"], "notes", "{report}");
    assert!(damaged["section"].is_string() && damaged["author"].is_string());
    assert!(
        damaged["author_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("the patient's device")),
        "{report}"
    );

    // repair: one atomic write; the store checks clean and the record opens again.
    let out = hearth(&g, &["store", "repair"]);
    let text = ok(&out);
    assert!(
        text.contains("Repaired: 1 damaged item(s) moved to quarantine"),
        "{text}"
    );
    assert!(text.contains("The store checks clean now."));
    let after = json(&hearth(&g, &["store", "check", "--json"]));
    assert_eq!(after["damaged"], false);
    assert_eq!(after["quarantined"], 1);
    let partial = show(&g, &rid);
    assert!(partial.contains("CANARY-med"), "the intact section reads");
    assert!(
        partial.contains("CANARY-note-1"),
        "the bundles before the damage read"
    );
    assert!(!partial.contains(&format!("CANARY-note-{seq}")));

    // The peer re-supplies the rest: heads are compared, the missing bundles come back.
    sync_in(&g, None);
    let refilled = show(&g, &rid);
    assert!(
        (1..=4).all(|i| refilled.contains(&format!("CANARY-note-{i}"))),
        "{refilled}"
    );
    assert_eq!(
        json(&hearth(&g, &["store", "check", "--json"]))["damaged"],
        false
    );

    // With the patient's daemon running: check runs inside it; repair is refused, saying so.
    let out = hearth(&p, &["store", "check"]);
    assert!(ok(&out).contains("No damage found."));
    let out = hearth(&p, &["store", "repair"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stderr(&out).contains("the daemon is running"),
        "{}",
        stderr(&out)
    );
    drop(dp);
}

/// Flips bytes through the written part of sled's log file: sled still opens, but reading
/// the damaged pages fails.
fn flip_log_bytes(store: &Path) {
    let path = store.join("db");
    let mut b = std::fs::read(&path).unwrap();
    for i in (0..b.len().min(60_000)).step_by(997) {
        if b[i] != 0 {
            b[i] ^= 0xff;
        }
    }
    std::fs::write(&path, b).unwrap();
}

/// Overwrites every file of the store with a repeated byte: sled cannot open it.
fn overwrite_files(store: &Path) {
    let mut damaged = 0;
    for e in std::fs::read_dir(store).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            let len = std::fs::metadata(e.path()).unwrap().len() as usize;
            std::fs::write(e.path(), vec![0xa5; len.max(64)]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
}

#[test]
fn a_store_whose_own_files_are_damaged_gives_a_typed_error_not_a_panic() {
    for damage in [flip_log_bytes as fn(&Path), overwrite_files] {
        own_files_damaged(damage);
    }
}

fn own_files_damaged(damage: fn(&Path)) {
    let Pair { dir: _dir, p, .. } = Pair::new("Dr Gee");
    for i in 0..3 {
        add_text(&p, None, "notes", &format!("CANARY-files-{i}"));
    }
    damage(&p.join("store"));
    for cmd in [
        &["store", "check"][..],
        &["store", "repair"],
        &["record", "show"],
    ] {
        let out = hearth(&p, cmd);
        assert_ne!(out.status.code(), Some(101), "{cmd:?} panicked");
        assert!(
            !out.status.success(),
            "{cmd:?} succeeded on a damaged store"
        );
        assert!(!stderr(&out).contains("CANARY"));
    }
    let out = hearth(&p, &["store", "check"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the store's own files are damaged"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_store_held_by_another_process_is_reported_as_locked() {
    let Pair { dir: _dir, p, .. } = Pair::new("Dr Gee");
    add_text(&p, None, "notes", "CANARY-locked");
    // This test process holds the store, as a daemon that does not answer would.
    let held = SledStore::open(&p.join("store")).unwrap();
    for cmd in [&["store", "check"][..], &["store", "repair"]] {
        let out = hearth(&p, cmd);
        assert_eq!(out.status.code(), Some(8), "{cmd:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("the store is locked by another hearth process"),
            "{}",
            stderr(&out)
        );
    }
    drop(held);
    assert!(ok(&hearth(&p, &["store", "check"])).contains("No damage found."));
}
