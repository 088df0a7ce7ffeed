//! End-to-end tests: the real `hearth` binary in temporary homes.

use crate::common::{PASS, add_text, hearth, hearth_in, init, init_patient, json, ok};
use hearth_core::store::{Batch, Store};
use hearth_node::sled_store::SledStore;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

#[track_caller]
fn fails_with(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: "),
        "one-line reason on stderr: {err}"
    );
    err
}

fn canary() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    format!(
        "CANARY{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn file_contains(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn init_add_show_correct_history_mark_error() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    let init = init_patient(&home);
    let words = init["recovery_phrase"].as_str().unwrap();
    assert_eq!(words.split(' ').count(), 24);

    let id = json(&hearth(&home, &["id", "--json"]));
    assert_eq!(id["role"], "patient");
    assert_eq!(id["name"], "Edith Test");
    assert_eq!(id["record_id"], init["record_id"]);
    assert!(id["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert!(
        id.get("recovery_phrase").is_none(),
        "the phrase is shown only at init"
    );

    let added = json(&hearth(
        &home,
        &[
            "record",
            "add",
            "allergies",
            "--entry",
            r#"{"substance": "Penicillin", "severity": "severe", "reaction": "rash"}"#,
            "--json",
        ],
    ));
    let entry = added["entry_id"].as_str().unwrap().to_string();
    // Plain output is just the id, for scripts.
    let plain = add_text(&home, None, "notes:mental-health", "low mood");
    assert!(plain.trim().starts_with('e'));

    let show = json(&hearth(&home, &["record", "show", "allergies", "--json"]));
    assert_eq!(show["record_id"], init["record_id"]);
    let s = &show["sections"][0];
    assert_eq!(
        (s["class"].as_str(), s["label"].as_str()),
        (Some("allergies"), Some("general"))
    );
    assert_eq!(s["entries"][0]["id"], entry.as_str());
    assert_eq!(s["entries"][0]["body"]["substance"], "Penicillin");
    assert_eq!(s["entries"][0]["provenance"]["author"], id["peer_id"]);

    let corrected = json(&hearth(
        &home,
        &[
            "record",
            "correct",
            &entry,
            "--entry",
            r#"{"substance": "Penicillin", "severity": "moderate"}"#,
            "--json",
        ],
    ));
    let v2 = corrected["entry_id"].as_str().unwrap().to_string();
    let show = json(&hearth(&home, &["record", "show", "allergies", "--json"]));
    let entries = show["sections"][0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["version"], 2);
    assert_eq!(entries[0]["supersedes"], entry.as_str());

    let hist = json(&hearth(
        &home,
        &["record", "history", "allergies", "--json"],
    ));
    let versions = hist["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["body"]["severity"], "severe");
    assert_eq!(versions[1]["body"]["severity"], "moderate");
    assert_eq!(versions[1]["provenance"]["author_name"], "Edith Test");

    // Correcting the old version again is refused.
    fails_with(
        &hearth(
            &home,
            &[
                "record",
                "correct",
                &entry,
                "--entry",
                r#"{"substance": "X"}"#,
            ],
        ),
        7,
    );

    json(&hearth(
        &home,
        &[
            "record",
            "mark-error",
            &v2,
            "--reason",
            "wrong patient",
            "--json",
        ],
    ));
    let show = json(&hearth(&home, &["record", "show", "allergies", "--json"]));
    assert_eq!(
        show["sections"][0]["entries"][0]["status"],
        "entered-in-error"
    );
    assert_eq!(
        show["sections"][0]["entries"][0]["status_reason"],
        "wrong patient"
    );
    let text = ok(&hearth(&home, &["record", "show", "allergies"]));
    assert!(text.contains("ENTERED IN ERROR"), "{text}");

    let sections = json(&hearth(&home, &["record", "sections", "--json"]));
    let names: Vec<&str> = sections["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["section"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["demographics", "allergies", "notes:mental-health"]
    );

    let all = json(&hearth(&home, &["record", "show", "--json"]));
    assert_eq!(all["sections"].as_array().unwrap().len(), 3);
    assert_eq!(
        all["sections"][0]["entries"][0]["body"]["nhs_number"],
        "9434765919"
    );
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    add_text(&home, None, "notes", "one");
    let before = ok(&hearth(&home, &["record", "show", "--json"]));
    let err = fails_with(
        &hearth_in(
            &home,
            &["record", "add", "notes", "--entry", r#"{"text": "two"}"#],
            "not-the-passphrase",
            None,
        ),
        4,
    );
    assert!(err.contains("passphrase"), "{err}");
    fails_with(&hearth_in(&home, &["id"], "not-the-passphrase", None), 4);
    assert_eq!(ok(&hearth(&home, &["record", "show", "--json"])), before);
    // Passphrase from a file works the same way.
    let pf = tmp.path().join("pass.txt");
    std::fs::write(&pf, format!("{PASS}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--home"])
        .arg(&home)
        .args(["--passphrase-file"])
        .arg(&pf)
        .args(["id", "--json"])
        .env_remove("HEARTH_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(json(&out)["name"], "Edith Test");
    // No passphrase at all, non-interactively: a clear refusal.
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--home"])
        .arg(&home)
        .args(["id"])
        .env_remove("HEARTH_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    fails_with(&out, 4);
}

#[test]
fn malformed_entries_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    add_text(&home, None, "notes", "one");
    let before = ok(&hearth(&home, &["record", "show", "--json"]));
    let cases: &[(&[&str], &str)] = &[
        (
            &["record", "add", "notes", "--entry", r#"{"text": "#],
            "JSON",
        ),
        (
            &["record", "add", "notes", "--entry", r#"{"txt": "x"}"#],
            "txt",
        ),
        (
            &["record", "add", "notes", "--entry", r#"{"text": 5}"#],
            "text",
        ),
        (&["record", "add", "notes", "--entry", "[1,2]"], "notes"),
        (
            &[
                "record",
                "add",
                "allergies",
                "--entry",
                r#"{"reaction": "rash"}"#,
            ],
            "substance",
        ),
        (
            &[
                "record",
                "add",
                "nosuchsection",
                "--entry",
                r#"{"text": "x"}"#,
            ],
            "nosuchsection",
        ),
        (
            &[
                "record",
                "add",
                "notes:nosuchlabel",
                "--entry",
                r#"{"text": "x"}"#,
            ],
            "nosuchlabel",
        ),
        (
            &["record", "add", "notes:*", "--entry", r#"{"text": "x"}"#],
            "*",
        ),
        (
            &[
                "record",
                "correct",
                "enotanid",
                "--entry",
                r#"{"text": "x"}"#,
            ],
            "entry id",
        ),
        (
            &[
                "record",
                "mark-error",
                "eaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "--reason",
                "x",
            ],
            "no entry",
        ),
    ];
    for (args, needle) in cases {
        let out = hearth(&home, args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: message {err:?} does not name {needle:?}"
        );
        assert!(
            matches!(out.status.code(), Some(3) | Some(5)),
            "{args:?}: {:?}",
            out.status.code()
        );
    }
    // A schema error never echoes the rejected content.
    let out = hearth(
        &home,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "SECRET-VALUE", "extra": "SECRET-2"}"#,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("SECRET"), "{err}");
    assert_eq!(ok(&hearth(&home, &["record", "show", "--json"])), before);
}

#[test]
fn nhs_numbers_are_checked_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (n, valid)) in [
        ("9434765919", true),
        ("9000000009", true),
        ("4010232137", true),
        ("943 476 5919", true),
        ("9434765918", false),
        ("1234567890", false),
        ("943476591", false),
        ("94347659190", false),
        ("943476591X", false),
    ]
    .into_iter()
    .enumerate()
    {
        let home = tmp.path().join(format!("n{i}"));
        let out = hearth(
            &home,
            &[
                "init",
                "--role",
                "patient",
                "--name",
                "N",
                "--nhs-number",
                n,
            ],
        );
        if valid {
            ok(&out);
        } else {
            fails_with(&out, 3);
            assert!(
                !home.join("node.json").exists(),
                "{n}: refused init left a node behind"
            );
        }
    }
}

#[test]
fn init_twice_is_refused_and_professionals_have_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    fails_with(&hearth(&home, &["init", "--role", "patient"]), 7);
    let g = tmp.path().join("g");
    let out = init(&g, "professional", "Dr Gee");
    assert!(out["record_id"].is_null());
    assert!(out["recovery_phrase"].is_null());
    let id = json(&hearth(&g, &["id", "--json"]));
    assert_eq!(id["role"], "professional");
    fails_with(
        &hearth(
            &g,
            &["record", "add", "notes", "--entry", r#"{"text":"x"}"#],
        ),
        5,
    );
    fails_with(
        &hearth(
            &g,
            &[
                "init",
                "--role",
                "professional",
                "--nhs-number",
                "9434765919",
            ],
        ),
        7,
    );
    let r = tmp.path().join("r");
    fails_with(
        &hearth(
            &r,
            &["init", "--role", "relay", "--nhs-number", "9434765919"],
        ),
        3,
    );
    fails_with(&hearth(&tmp.path().join("none"), &["id"]), 5);
}

#[test]
fn canary_never_reaches_the_disk_in_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    let c1 = canary();
    let c2 = canary();
    ok(&hearth(
        &home,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            &format!(r#"{{"text": "{c1}"}}"#),
        ],
    ));
    let f = tmp.path().join("entry.json");
    std::fs::write(&f, format!(r#"{{"substance": "{c2}"}}"#)).unwrap();
    ok(&hearth(
        &home,
        &[
            "record",
            "add",
            "allergies:sexual-health",
            "--file",
            f.to_str().unwrap(),
        ],
    ));
    // Many more, so that sled writes segments and snapshots are taken.
    for i in 0..30 {
        ok(&hearth(
            &home,
            &[
                "record",
                "add",
                "notes",
                "--entry",
                &format!(r#"{{"text": "{c1} {i}"}}"#),
            ],
        ));
    }
    assert!(ok(&hearth(&home, &["record", "show", "--json"])).contains(&c1));
    for needle in [
        c1.as_str(),
        c2.as_str(),
        "Edith Test",
        "9434765919",
        PASS,
        "sexual-health",
    ] {
        let hits = file_contains(&home, needle.as_bytes());
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
}

/// Flips a byte in the middle of the newest stored bundle of the section whose opaque id is
/// `sid`, by opening the sled store directly (no hearth process is running).
fn tamper_bundle(home: &Path, record: &[u8; 32], sid: &str) {
    let store = SledStore::open(&home.join("store")).unwrap();
    let sid: hearth_core::ids::SectionId = sid.parse().unwrap();
    let mut prefix = vec![b'B'];
    prefix.extend_from_slice(record);
    prefix.extend_from_slice(&sid.0);
    let (k, mut v) = store.scan_prefix(&prefix).unwrap().pop().unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x01;
    let mut b = Batch::new();
    b.put(k, v);
    store.commit(b).unwrap();
}

#[test]
fn tampered_bundle_is_detected_and_other_sections_stay_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    let init = init_patient(&home);
    let rid: hearth_core::ids::RecordId = init["record_id"].as_str().unwrap().parse().unwrap();
    add_text(&home, None, "notes", "a");
    ok(&hearth(
        &home,
        &[
            "record",
            "add",
            "allergies",
            "--entry",
            r#"{"substance": "Latex"}"#,
        ],
    ));
    let sections = json(&hearth(&home, &["record", "sections", "--json"]));
    let notes_sid = sections["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["section"] == "notes")
        .unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    tamper_bundle(&home, &rid.0, &notes_sid);

    let err = fails_with(&hearth(&home, &["record", "show", "notes"]), 6);
    assert!(
        err.contains("notes") && err.contains("verification"),
        "{err}"
    );
    let allergies = json(&hearth(&home, &["record", "show", "allergies", "--json"]));
    assert_eq!(
        allergies["sections"][0]["entries"][0]["body"]["substance"],
        "Latex"
    );
    // Showing everything shows what is readable, reports the damage, and exits non-zero.
    let out = hearth(&home, &["record", "show", "--json"]);
    assert_eq!(out.status.code(), Some(6));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["sections"].as_array().unwrap().len(), 2);
    assert_eq!(all["errors"][0]["section"], "notes");
}

#[test]
fn corrupted_store_files_never_crash_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    for i in 0..5 {
        ok(&hearth(
            &home,
            &[
                "record",
                "add",
                "notes",
                "--entry",
                &format!(r#"{{"text": "n{i}"}}"#),
            ],
        ));
    }
    let files: Vec<_> = walk(&home.join("store"))
        .into_iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    assert!(!files.is_empty());
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..12 {
        let copy = tmp.path().join(format!("copy{round}"));
        copy_dir(&home, &copy);
        // Flip a few bytes at pseudo-random places of one store file.
        let f = copy.join(files[round % files.len()].strip_prefix(&home).unwrap());
        let mut bytes = std::fs::read(&f).unwrap();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] ^= 0xff;
        }
        std::fs::write(&f, &bytes).unwrap();
        let out = hearth(&copy, &["record", "show", "--json"]);
        let code = out.status.code();
        assert!(code.is_some(), "killed by a signal");
        assert_ne!(
            code,
            Some(101),
            "panicked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if code != Some(0) {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("error: "), "unclear failure: {err}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

#[test]
fn every_command_has_help() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["id", "--help"],
        vec!["record", "--help"],
        vec!["record", "add", "--help"],
        vec!["record", "show", "--help"],
        vec!["record", "sections", "--help"],
        vec!["record", "history", "--help"],
        vec!["record", "correct", "--help"],
        vec!["record", "mark-error", "--help"],
    ] {
        let out = hearth(tmp.path(), &args);
        let text = ok(&out);
        assert!(text.contains("Usage"), "{args:?}");
    }
    let out = hearth(tmp.path(), &["record", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `hearth … | head`: the reader closes the pipe before the command writes. The command still
/// does its work and ends with its own exit code; nothing panics.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    init_patient(&home);
    for args in [
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "piped away"}"#,
        ][..],
        &["record", "show", "--json"][..],
    ] {
        let mut child = crate::common::command(&home, PASS)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command (which first unlocks the keystore, which
        // takes a while) writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    // The entry written while its output went nowhere is there.
    let shown = ok(&hearth(&home, &["record", "show", "--json"]));
    assert!(shown.contains("piped away"), "{shown}");
}
