//! Multi-process tests: real `hearth` daemons on loopback, driven through the command line
//! the way a user (or the acceptance scripts) would.

use crate::common::{
    Daemon, PASS, Pair, add_text, grant, grant_cmd, hearth, hearth_in, init, json, log_file, ok,
    show, stranger, sync_in, wait_for,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Output, Stdio};

/// Everything a node showed or kept: its daemon log and every file under its home.
fn everything(home: &Path) -> Vec<u8> {
    let mut out = std::fs::read(home.with_extension("log")).unwrap_or_default();
    let mut stack = vec![home.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn daemon_lifecycle_api_checks_and_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    let id = init(&p, "patient", "Pat");
    let rid = id["record_id"].as_str().unwrap().to_string();

    // Without a daemon, status says so.
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], false);
    assert_eq!(st["peer_id"], id["peer_id"]);
    assert_eq!(st["listen_addrs"].as_array().unwrap().len(), 0);

    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], true);
    assert_eq!(st["peer_id"], id["peer_id"]);
    assert!(st["api"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(
        st["listen_addrs"][0]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/")
    );
    assert_eq!(d.file()["peer_id"], id["peer_id"]);

    // The API: token required (401), Host checked (403), no CORS.
    let port = d.port();
    let token = std::fs::read_to_string(p.join("api-token")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "api-token must be private");
    }
    let auth = format!("Bearer {}", token.trim());
    use hearth_node::client::request;
    let (code, _) = request(port, "GET", "/api/v1/status", &[], None).unwrap();
    assert_eq!(code, 401);
    let (code, _) = request(
        port,
        "GET",
        "/api/v1/status",
        &[("Authorization", "Bearer wrong")],
        None,
    )
    .unwrap();
    assert_eq!(code, 401);
    let (code, _) = request(
        port,
        "GET",
        "/api/v1/status",
        &[("Authorization", &auth), ("Host", "evil.example:80")],
        None,
    )
    .unwrap();
    assert_eq!(code, 403);
    let localhost = format!("localhost:{port}");
    let (code, body) = request(
        port,
        "GET",
        "/api/v1/status",
        &[("Authorization", &auth), ("Host", &localhost)],
        None,
    )
    .unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["peer_id"], id["peer_id"]);
    // The OpenAPI document needs no token (the Host check still applies).
    let (code, body) = request(port, "GET", "/api/openapi.json", &[], None).unwrap();
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["paths"]["/api/v1/exec"].is_object());
    // Commands never run over TCP, even with the token: a passphrase is never accepted there.
    let body = serde_json::json!({"argv": ["id", "--json"], "passphrase": PASS});
    let (code, _) = request(
        port,
        "POST",
        "/api/v1/exec",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(code, 403);

    // Commands are forwarded to the daemon (which holds sled's lock).
    let out = hearth_in(&p, &["id", "--json"], "wrong-passphrase", None);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    let added = json(&hearth(
        &p,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "through the daemon"}"#,
            "--json",
        ],
    ));
    assert!(added["entry_id"].is_string());
    // A relative --file is read relative to the caller's folder, not the daemon's.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("entry.json"),
        r#"{"text": "from a relative file"}"#,
    )
    .unwrap();
    ok(&hearth_in(
        &p,
        &["record", "add", "notes", "--file", "entry.json"],
        PASS,
        Some(&work),
    ));
    let shown = show(&p, &rid);
    assert!(shown.contains("through the daemon") && shown.contains("from a relative file"));
    // Usage errors keep their exit code through the daemon.
    assert_eq!(
        hearth(&p, &["record", "show", "--no-such-flag"])
            .status
            .code(),
        Some(2)
    );
    // init is never forwarded; the daemon refuses another run.
    let out = hearth(&p, &["run"]);
    assert_ne!(out.status.code(), Some(0));

    d.stop();
    // After a clean stop the store opens directly again.
    assert!(show(&p, &rid).contains("through the daemon"));

    // A stale daemon.json (a crashed daemon) does not get in the way.
    std::fs::write(
        p.join("daemon.json"),
        r#"{"pid": 1, "peer_id": "x", "listen_addrs": [], "api": "http://127.0.0.1:9"}"#,
    )
    .unwrap();
    assert!(show(&p, &rid).contains("through the daemon"));
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], false);
}

#[test]
fn granted_sections_sync_live_both_ways_and_after_restarts() {
    let Pair {
        dir: _dir,
        p,
        g,
        rid,
        pp,
        gp,
        ..
    } = Pair::new("Dr Gee");
    add_text(&p, None, "notes", "CANARY-granted-1");
    add_text(&p, None, "notes:mental-health", "CANARY-secret-2");

    // The patient's daemon picks its ports, and reuses them after a restart.
    let dp = Daemon::start(&p, None);
    let p_listen = dp.file()["listen_addrs"][0].as_str().unwrap().to_string();
    let dg = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));

    let grant = grant(&p, &gp, "notes", "append", "1d");
    // The grant carries the patient node's addresses: accepting it is enough to find it.
    assert!(
        grant["token"].is_string()
            && json(&hearth(&p, &["grant", "list", "--json"]))
                .to_string()
                .len()
                > 2
    );
    ok(&hearth(&g, &["accept", grant["token"].as_str().unwrap()]));
    let peers = json(&hearth(&g, &["peers", "--json"]));
    assert_eq!(
        peers["peers"][0]["peer_id"].as_str(),
        Some(pp.as_str()),
        "{peers}"
    );
    assert_eq!(
        peers["peers"][0]["addrs"][0].as_str(),
        Some(p_listen.as_str())
    );
    // Adding it by hand again changes nothing.
    ok(&hearth(&g, &["peers", "add", &pp, &p_listen]));
    let synced = json(&hearth(
        &g,
        &["sync", "--with", &pp, "--wait", "--timeout", "60", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");

    let held = show(&g, &rid);
    assert!(held.contains("CANARY-granted-1"), "granted section missing");
    assert!(
        !held.contains("CANARY-secret-2"),
        "ungranted section leaked"
    );
    let sections = String::from_utf8_lossy(
        &hearth(&g, &["record", "sections", "--record", &rid, "--json"]).stdout,
    )
    .into_owned();
    assert!(!sections.contains("mental-health"));
    let patients = json(&hearth(&g, &["patients", "--json"]));
    assert_eq!(
        patients["patients"][0]["record_id"].as_str(),
        Some(rid.as_str())
    );

    // Status reports the connection and the session.
    let st = json(&hearth(&g, &["status", "--json"]));
    assert!(
        st["connected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str() == Some(pp.as_str()))
    );
    assert!(!st["sessions"].as_array().unwrap().is_empty());
    // The patient's status names the sections of its sessions (the caller gave the passphrase).
    wait_for("a named section in the patient's status", 15, || {
        json(&hearth(&p, &["status", "--json"]))
            .to_string()
            .contains(r#""name":"notes""#)
    });

    // Live: the patient's new entry reaches the professional without any command.
    add_text(&p, None, "notes", "CANARY-live-3");
    wait_for("live edit at the professional", 15, || {
        show(&g, &rid).contains("CANARY-live-3")
    });
    // And the professional's entry reaches the patient.
    add_text(&g, Some(&rid), "notes", "CANARY-from-gp-4");
    wait_for("professional's entry at the patient", 15, || {
        show(&p, &rid).contains("CANARY-from-gp-4")
    });

    // The professional goes offline; both sides write to the same section meanwhile (the
    // professional straight into its own store); after its restart both edits are on both
    // sides.
    dg.stop();
    add_text(&p, None, "notes", "CANARY-while-away-5");
    add_text(&g, Some(&rid), "notes", "CANARY-gp-offline-5b");
    let dg = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));
    wait_for("the patient's offline edit at the professional", 20, || {
        show(&g, &rid).contains("CANARY-while-away-5")
    });
    wait_for("the professional's offline edit at the patient", 20, || {
        show(&p, &rid).contains("CANARY-gp-offline-5b")
    });
    // Both replicas of notes end with the same log heads (`record sections --json`), one log
    // per author.
    wait_for("identical notes heads on both sides", 20, || {
        notes_heads(&p, &rid) == notes_heads(&g, &rid)
    });
    let heads = notes_heads(&p, &rid);
    let logs = heads.as_object().unwrap().values().next().unwrap();
    assert_eq!(logs.as_object().unwrap().len(), 2, "{heads}");
    assert!(logs[gp.as_str()]["seq"].as_u64().unwrap() >= 2, "{heads}");

    // The patient restarts (on the same address, remembered from its last run); the
    // professional redials it and syncs the entry it wrote meanwhile.
    dp.stop();
    add_text(&g, Some(&rid), "notes", "CANARY-offline-6");
    let dp = Daemon::start(&p, None);
    assert_eq!(
        dp.file()["listen_addrs"][0].as_str(),
        Some(p_listen.as_str())
    );
    wait_for("catch-up after the patient restarts", 30, || {
        show(&p, &rid).contains("CANARY-offline-6")
    });
    // The ungranted section never reached the professional, in any form it can read.
    assert!(!show(&g, &rid).contains("CANARY-secret-2"));
    drop(dg);
}

#[test]
fn sync_without_a_daemon_runs_a_short_lived_node() {
    let Pair {
        dir,
        p,
        g,
        gid,
        rid,
        ..
    } = Pair::new("Dr Gee");
    add_text(&p, None, "notes", "CANARY-one-shot");
    let _dp = Daemon::start(&p, None);
    let grant = grant(&p, gid["peer_id"].as_str().unwrap(), "notes", "read", "1d");
    // The professional has no daemon: accept learns the patient's address from the grant, and
    // `sync --wait` brings up a node of its own for the round.
    ok(&hearth(&g, &["accept", grant["token"].as_str().unwrap()]));
    sync_in(&g, None);
    assert!(show(&g, &rid).contains("CANARY-one-shot"));
    // With nobody to sync with, --wait fails with a reason.
    let lonely = dir.path().join("lonely");
    init(&lonely, "professional", "Nobody");
    let out = hearth(&lonely, &["sync", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: nothing to sync"));
}

#[test]
fn two_professionals_with_different_grants_see_only_their_sections() {
    let dir = tempfile::tempdir().unwrap();
    let (p, gp, sw) = (
        dir.path().join("p"),
        dir.path().join("gp"),
        dir.path().join("sw"),
    );
    let pid = init(&p, "patient", "Pat");
    let gid = init(&gp, "professional", "Dr Gee");
    let sid = init(&sw, "professional", "Sam Worker");
    let rid = pid["record_id"].as_str().unwrap().to_string();
    let add = |section: &str, text: &str| {
        ok(&hearth(
            &p,
            &[
                "record",
                "add",
                section,
                "--entry",
                &format!(r#"{{"text": "{text}"}}"#),
            ],
        ))
    };
    add("notes", "CANARY-GP-ONLY");
    add("notes:social-care", "CANARY-SW-ONLY");
    add("notes:mental-health", "CANARY-NOBODY");
    let _dp = Daemon::start(&p, None);
    let _dg = Daemon::start(&gp, None);
    let _ds = Daemon::start(&sw, None);
    for (home, who, spec) in [(&gp, &gid, "notes"), (&sw, &sid, "notes:social-care")] {
        let grant = grant(&p, who["peer_id"].as_str().unwrap(), spec, "read", "1d");
        ok(&hearth(home, &["accept", grant["token"].as_str().unwrap()]));
        sync_in(home, None);
    }
    // A later entry in each section reaches only its grantee, live.
    add("notes", "CANARY-GP-LATER");
    add("notes:social-care", "CANARY-SW-LATER");
    add("notes:mental-health", "CANARY-NOBODY-LATER");
    wait_for("live entries at both grantees", 15, || {
        show(&gp, &rid).contains("CANARY-GP-LATER") && show(&sw, &rid).contains("CANARY-SW-LATER")
    });
    let outputs = |home: &Path| -> Vec<u8> {
        let mut out = Vec::new();
        for args in [
            vec!["record", "show", "--record", &rid, "--json"],
            vec!["record", "sections", "--record", &rid, "--json"],
            vec!["record", "history", "notes", "--record", &rid],
            vec!["patients", "--json"],
            vec!["status", "--json"],
        ] {
            let o = hearth(home, &args);
            out.extend(o.stdout);
            out.extend(o.stderr);
        }
        out.extend(everything(home));
        out
    };
    let g_all = outputs(&gp);
    let s_all = outputs(&sw);
    assert!(contains(&g_all, "CANARY-GP-ONLY") && contains(&s_all, "CANARY-SW-ONLY"));
    for c in [
        "CANARY-SW-ONLY",
        "CANARY-SW-LATER",
        "CANARY-NOBODY",
        "social-care",
        "mental-health",
    ] {
        assert!(!contains(&g_all, c), "the GP's node shows or holds {c}");
    }
    for c in [
        "CANARY-GP-ONLY",
        "CANARY-GP-LATER",
        "CANARY-NOBODY",
        "mental-health",
    ] {
        assert!(
            !contains(&s_all, c),
            "the social worker's node shows or holds {c}"
        );
    }
    // Nothing in clear at rest either, at the patient.
    assert!(!contains(&everything(&p), "CANARY-NOBODY"));
}

#[test]
fn hostile_frames_close_their_stream_and_the_node_carries_on() {
    use hearth_sync::protocol::{Message, Notify, decode, encode};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    let pid = init(&p, "patient", "Pat");
    add_text(&p, None, "notes", "CANARY-hostile");
    let d = Daemon::start(&p, None);
    let addr: libp2p::Multiaddr = d.file()["listen_addrs"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer: libp2p::PeerId = pid["peer_id"].as_str().unwrap().parse().unwrap();
    let rid: hearth_core::ids::RecordId = pid["record_id"].as_str().unwrap().parse().unwrap();
    let answers = stranger::send(
        peer,
        addr,
        vec![
            // Garbage: not a message.
            b"\xff\x00garbage".to_vec(),
            // Larger than the 16 MiB limit: refused before it is read.
            vec![0u8; 17 * 1024 * 1024],
            // A well-formed notification about the patient's record, from a stranger.
            encode(&Message::Notify(Notify {
                record: rid,
                push: Vec::new(),
            })),
        ],
    );
    assert!(answers[0].is_err(), "garbage was answered");
    assert!(answers[1].is_err(), "an oversized frame was answered");
    // The node still answers well-formed messages on the same connection.
    let ack = decode(answers[2].as_ref().expect("notify answered")).unwrap();
    assert!(matches!(ack, Message::Notify(_)));
    // The daemon is alive, and the stranger learnt nothing of the record.
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], true);
    assert!(!st.to_string().contains("CANARY-hostile"));
    assert!(!contains(
        &std::fs::read(p.with_extension("log")).unwrap(),
        "CANARY-hostile"
    ));
    d.stop();
}

/// `hearth device link` without a daemon: a child process that prints its code as the first
/// JSON line and waits for the new device.
fn link_process(home: &Path) -> (Child, String) {
    use std::io::BufRead;
    let mut child = crate::common::command(home, PASS)
        .args([
            "device",
            "link",
            "--json",
            "--ttl",
            "120",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::piped())
        .stderr(log_file(home))
        .spawn()
        .expect("start device link");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).expect("the code as JSON");
    (child, v["code"].as_str().unwrap().to_string())
}

/// The log heads of `notes` on the node at `home` (`record sections --json`, field `heads`).
fn notes_heads(home: &Path, rid: &str) -> Value {
    let sections = json(&hearth(
        home,
        &["record", "sections", "--record", rid, "--json"],
    ));
    sections["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["section"] == "notes")
        .map(|s| s["heads"].clone())
        .unwrap_or_default()
}

fn add_note(home: &Path, text: &str) {
    let entry = serde_json::json!({ "text": text }).to_string();
    ok(&hearth(
        home,
        &["record", "add", "notes", "--entry", &entry],
    ));
}

fn join(home: &Path, code: &str, name: &str) -> Output {
    hearth(home, &["init", "--join", code, "--name", name, "--json"])
}

#[test]
fn a_patients_second_device_links_syncs_both_ways_and_is_removed_with_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (p, phone) = (dir.path().join("p"), dir.path().join("phone"));
    let pid = init(&p, "patient", "Pat");
    let rid = pid["record_id"].as_str().unwrap().to_string();
    add_note(&p, "CANARY-before-link");

    // Link without a daemon: the code, then the new device joins and fetches the record.
    let (mut linker, code) = link_process(&p);
    assert!(code.starts_with("HEARTH1L"));
    let joined = json(&join(&phone, &code, "Pat's phone"));
    assert_eq!(joined["record_id"].as_str(), Some(rid.as_str()));
    assert_eq!(joined["in_sync"], true, "{joined}");
    let status = linker.wait().unwrap();
    assert!(status.success(), "device link: {status:?}");
    assert!(show(&phone, &rid).contains("CANARY-before-link"));
    let phone_id = json(&hearth(&phone, &["id", "--json"]));
    let phone_peer = phone_id["peer_id"].as_str().unwrap().to_string();
    // Without --record: the linked device's own record.
    assert!(ok(&hearth(&phone, &["record", "show", "notes"])).contains("CANARY-before-link"));

    // Both list the two devices.
    for home in [&p, &phone] {
        let list = json(&hearth(home, &["device", "list", "--json"]));
        let devices = list["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2, "{list}");
        assert!(devices.iter().any(|d| d["peer_id"] == phone_peer.as_str()));
    }

    // The code was one-time.
    let other = dir.path().join("other");
    let again = join(&other, &code, "tablet");
    assert_eq!(again.status.code(), Some(7), "{again:?}");
    assert!(!other.join("node.json").exists());

    // The phone writes; the patient's first device receives it (daemons on both).
    add_note(&phone, "CANARY-from-phone");
    let dp = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let p_addr = dp.file()["listen_addrs"][0].as_str().unwrap().to_string();
    let p_peer = pid["peer_id"].as_str().unwrap();
    ok(&hearth(&phone, &["peers", "add", p_peer, &p_addr]));
    let dphone = Daemon::start(&phone, Some("/ip4/127.0.0.1/tcp/0"));
    wait_for("the phone's note at the first device", 30, || {
        show(&p, &rid).contains("CANARY-from-phone")
    });
    // And live the other way.
    add_note(&p, "CANARY-live-to-phone");
    wait_for("the first device's note on the phone", 30, || {
        show(&phone, &rid).contains("CANARY-live-to-phone")
    });

    // A linked device does not hold the root key: it cannot grant or remove devices.
    let g = grant_cmd(&phone, p_peer, "notes", "read", "1d", &[]);
    assert_eq!(g.status.code(), Some(7), "{g:?}");
    let r = hearth(&phone, &["device", "remove", p_peer]);
    assert_eq!(r.status.code(), Some(7), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("root key"));

    // Link a third device while the daemon runs: the code comes back at once.
    let tablet = dir.path().join("tablet");
    let linked = json(&hearth(&p, &["device", "link", "--json", "--no-qr"]));
    let joined = json(&join(&tablet, linked["code"].as_str().unwrap(), "tablet"));
    assert_eq!(joined["in_sync"], true, "{joined}");
    assert!(show(&tablet, &rid).contains("CANARY-from-phone"));

    // Remove the phone: every section moves to new keys the phone does not get.
    dphone.stop();
    let removed = json(&hearth(&p, &["device", "remove", &phone_peer, "--json"]));
    assert!(
        removed["sections_rekeyed"].as_u64().unwrap() >= 2,
        "{removed}"
    );
    add_note(&p, "CANARY-after-removal");
    let list = json(&hearth(&p, &["device", "list", "--json"]));
    let gone = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["peer_id"] == phone_peer.as_str())
        .unwrap()
        .clone();
    assert!(gone["removed"].is_string(), "{list}");
    // The removed phone is no longer served.
    let out = hearth(
        &phone,
        &["sync", "--with", p_peer, "--wait", "--timeout", "30"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("record not available"),
        "{out:?}"
    );
    assert!(!show(&phone, &rid).contains("CANARY-after-removal"));
    assert!(!contains(&everything(&phone), "CANARY-after-removal"));
    // Its writes are refused from now on, even if it tries.
    let w = hearth(
        &phone,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "CANARY-from-removed"}"#,
        ],
    );
    // (Locally it may still write while it does not know it was removed; nobody accepts it.)
    let _ = w;
    let _ = hearth(&phone, &["sync", "--with", p_peer, "--timeout", "10"]);
    assert!(!show(&p, &rid).contains("CANARY-from-removed"));
    // The tablet, still linked, gets the new keys and the new note.
    ok(&hearth(&tablet, &["peers", "add", p_peer, &p_addr]));
    let synced = json(&hearth(
        &tablet,
        &["sync", "--with", p_peer, "--wait", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    assert!(show(&tablet, &rid).contains("CANARY-after-removal"));
    dp.stop();
}

#[test]
fn bad_link_codes_are_refused_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    for (code, exit) in [("HEARTH1Lnot-base32!", 3), ("HEARTH1G0000", 3), ("", 3)] {
        let out = join(&j, code, "x");
        assert_eq!(out.status.code(), Some(exit), "{code}: {out:?}");
        assert!(!j.exists() || !j.join("node.json").exists());
    }
    // A well-formed code for a device that is not there: a clear refusal, nothing written.
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    let (mut linker, code) = link_process(&p);
    linker.kill().unwrap();
    let _ = linker.wait();
    let out = join(&j, &code, "x");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("other device"));
    assert!(!j.join("node.json").exists());
    assert!(!j.join("keystore.cbor").exists());
    // --join does not mix with --role.
    let out = hearth(&j, &["init", "--join", &code, "--role", "patient"]);
    assert_eq!(out.status.code(), Some(2));
}
