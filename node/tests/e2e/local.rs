//! The local machine: how the CLI finds and trusts its daemon, what reaches the disk, file
//! modes, and listen addresses. Each test runs the real `hearth` binary, the way another
//! local process or a crash would meet it.

use crate::common::{
    Daemon, PASS, add_text, command, hearth, init, json, ok, paths_under, wait_for,
};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Everything stored under `home`, concatenated.
fn all_bytes(home: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths_under(home) {
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap_or_default());
        }
    }
    out
}

/// A TCP listener on 127.0.0.1:`port` that records every byte it is sent and answers each
/// connection with a forged command result.
fn tcp_squatter(port: u16) -> Arc<Mutex<Vec<u8>>> {
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the old port");
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                g.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let body = r#"{"stdout":"FORGED-BY-SQUATTER\n","stderr":"","code":0}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    got
}

/// A Unix listener at `path` (0600) that records what it is sent and answers each connection
/// with `answer`, then closes it.
fn socket_squatter(path: &Path, answer: &'static [u8]) -> Arc<Mutex<Vec<u8>>> {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 65536];
            // Read the head and the announced body, then answer.
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
                if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            g.lock().unwrap().extend_from_slice(&seen);
            let _ = s.write_all(answer);
        }
    });
    got
}

/// Defect 1: after `kill -9` of the daemon, a process holding its old API port receives
/// nothing (no token, no passphrase) and its forged answer is never printed: the CLI talks
/// only to the socket, finds it stale, and opens the store itself.
#[test]
fn stale_api_port_squatter_receives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    add_text(&p, None, "notes", "before the crash");
    let port = d.port();
    d.crash();
    assert!(p.join("daemon.json").exists() && p.join("api.sock").exists());
    let got = tcp_squatter(port);
    let token = std::fs::read_to_string(p.join("api-token")).unwrap();

    let shown = hearth(&p, &["record", "show", "--json"]);
    let out = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(!out.contains("FORGED"), "the squatter's answer was printed");
    assert!(
        out.contains("before the crash"),
        "the command ran locally: {out}"
    );
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], false);
    let mut no_pass = command(&p, PASS);
    no_pass
        .env_remove("HEARTH_PASSPHRASE")
        .args(["status", "--json"]);
    let st = no_pass.output().unwrap();
    assert!(!String::from_utf8_lossy(&st.stdout).contains("FORGED"));
    add_text(&p, None, "notes", "after the crash");

    std::thread::sleep(Duration::from_millis(600));
    let seen = got.lock().unwrap().clone();
    assert!(
        !contains(&seen, PASS),
        "the squatter received the passphrase"
    );
    assert!(
        !contains(&seen, token.trim()),
        "the squatter received the token"
    );
    assert!(seen.is_empty(), "the CLI connected to the old TCP port");

    // The next daemon replaces the stale socket (nothing answers on it) and serves again.
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let shown = ok(&hearth(&p, &["record", "show", "--json"]));
    assert!(shown.contains("after the crash"));
    d.stop();
}

/// Defect 1: a socket in the home that is not the daemon's (the pid in daemon.json differs,
/// or it belongs to another user) gets nothing: the CLI refuses before asking for or sending
/// the passphrase.
#[test]
fn socket_not_the_daemons_receives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let dead_pid = d.pid();
    d.crash();
    std::fs::remove_file(p.join("api.sock")).unwrap();
    // daemon.json names the dead daemon; this process answers on the socket.
    let got = socket_squatter(
        &p.join("api.sock"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"stdout\":\"FORGED\\n\",\"stderr\":\"\",\"code\":0}    ",
    );
    let out = hearth(&p, &["record", "show", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing") && err.contains(&format!("pid {dead_pid}")),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("FORGED"));
    // A socket owned by another user is refused before connecting.
    if std::fs::metadata(&p).unwrap().uid_is_root() {
        std::os::unix::fs::chown(p.join("api.sock"), Some(4242), None).unwrap();
        let out = hearth(&p, &["record", "show", "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("belongs to user 4242"), "{err}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = got.lock().unwrap().clone();
    assert!(seen.is_empty(), "something was sent to a foreign socket");
}

trait RootOwned {
    fn uid_is_root(&self) -> bool;
}
impl RootOwned for std::fs::Metadata {
    fn uid_is_root(&self) -> bool {
        std::os::unix::fs::MetadataExt::uid(self) == 0
    }
}

/// Also fix: the daemon dying in the middle of a command is reported as such, with whether
/// the change was made (unknown) and the command to check, never as a malformed answer.
#[test]
fn daemon_crash_mid_command_says_whether_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    // A stand-in daemon (this process, named in daemon.json) that dies halfway through its
    // answer.
    let file = serde_json::json!({"pid": std::process::id(), "peer_id": "x",
        "listen_addrs": [], "api": "http://127.0.0.1:9"});
    std::fs::write(p.join("daemon.json"), file.to_string()).unwrap();
    let _got = socket_squatter(
        &p.join("api.sock"),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"stdout\": \"",
    );
    let out = hearth(
        &p,
        &[
            "record",
            "add",
            "notes:mental-health",
            "--entry",
            r#"{"text": "x"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("malformed"), "{err}");
    assert!(err.contains("the daemon stopped before answering"), "{err}");
    assert!(
        err.contains("whether the change was made is unknown"),
        "{err}"
    );
    assert!(
        err.contains("hearth record history notes:mental-health"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // A read-only command says nothing changed.
    let out = hearth(&p, &["record", "sections"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only reads"), "{err}");
}

/// The same through a real daemon killed while a forwarded command waits for its answer (the
/// daemon frozen with SIGSTOP so that the command is surely in flight).
#[test]
fn daemon_killed_during_a_forwarded_command_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let cli = command(&p, PASS)
        .args([
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "in flight"}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    d.crash();
    let out = wait_output(cli, 30);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("malformed"), "{err}");
    assert!(err.contains("the daemon stopped before answering"), "{err}");
    assert!(
        err.contains("whether the change was made is unknown"),
        "{err}"
    );
    assert!(err.contains("hearth record history notes"), "{err}");
    assert!(out.stdout.is_empty());
}

fn wait_output(mut c: Child, secs: u64) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("the command did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_with_output().unwrap()
}

/// Defect 6: an entry piped on standard input while the daemon runs reaches the daemon inside
/// the request; nothing of it is ever written to the disk in clear, even if the processes are
/// killed half-way.
#[test]
fn stdin_entry_never_touches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    init(&p, "patient", "Pat");
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let canary = "CANARY-7f3e9c-stdin-text";
    // One command completes.
    let mut cli = command(&p, PASS)
        .args(["record", "add", "notes", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let entry = format!(r#"{{"text": "{canary} one"}}"#);
    cli.stdin
        .take()
        .unwrap()
        .write_all(entry.as_bytes())
        .unwrap();
    ok(&wait_output(cli, 60));
    // Another is sent while the daemon is frozen (SIGSTOP): the client waits for the answer
    // with the entry in hand. Nothing of it may be on disk then, nor after both are killed.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut cli = command(&p, PASS)
        .args(["record", "add", "notes", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let entry = format!(r#"{{"text": "{canary} two"}}"#);
    cli.stdin
        .take()
        .unwrap()
        .write_all(entry.as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        cli.try_wait().unwrap().is_none(),
        "the client should be waiting for the frozen daemon"
    );
    assert!(
        !contains(&all_bytes(&p), canary),
        "entry text in clear under the home while the daemon works on it"
    );
    let _ = cli.kill();
    let _ = cli.wait();
    d.crash();
    assert!(
        !contains(&all_bytes(&p), canary),
        "entry text found in clear under the home"
    );
    let names: Vec<String> = paths_under(&p)
        .iter()
        .map(|q| q.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".stdin")),
        "temporary stdin file left: {names:?}"
    );
    // The completed entry is in the record.
    let shown = ok(&hearth(&p, &["record", "show", "--json"]));
    assert!(shown.contains(&format!("{canary} one")));
}

/// `hearth ARGS` on `home` run under `umask 000`.
fn permissive(home: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(r#"umask 000; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_hearth"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("HEARTH_PASSPHRASE", PASS)
        .env_remove("HEARTH_HOME")
        .stdin(Stdio::null());
    c
}

fn assert_private(home: &Path) {
    let mut all = paths_under(home);
    all.push(home.to_path_buf());
    for q in all {
        let mode = std::fs::symlink_metadata(&q).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} is open to others (mode {:o})",
            q.display(),
            mode & 0o777
        );
    }
}

/// Defect 10: under a permissive umask, every file and folder of a home (keystore, node.json,
/// store/ and everything sled writes, api-token, daemon.json, the socket) is private to the
/// user, and no temporary file is left behind.
#[test]
fn home_is_private_under_a_permissive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    ok(
        &permissive(&p, &["init", "--role", "patient", "--name", "Pat"])
            .output()
            .unwrap(),
    );
    ok(&permissive(
        &p,
        &["record", "add", "notes", "--entry", r#"{"text": "local"}"#],
    )
    .output()
    .unwrap());
    assert_private(&p);
    let mut daemon = permissive(&p, &["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the daemon", 30, || p.join("api.sock").exists());
    ok(&permissive(
        &p,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "through the daemon"}"#,
        ],
    )
    .output()
    .unwrap());
    for f in [
        "api-token",
        "daemon.json",
        "api.sock",
        "keystore.cbor",
        "node.json",
    ] {
        assert!(p.join(f).exists(), "{f}");
    }
    assert_private(&p);
    let st = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(daemon.wait().unwrap().success());
    assert_private(&p);
    let leftovers: Vec<_> = paths_under(&p)
        .into_iter()
        .filter(|q| q.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `hearth run --listen ADDR` on `home`, expecting it to fail within 20 s.
fn run_must_fail(home: &Path, addr: &str) -> std::process::Output {
    let c = command(home, PASS)
        .args(["run", "--listen", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(c, 20)
}

/// Defect 13: a second node asked to listen on the first's port (TCP, and QUIC where built)
/// refuses with a clear error naming the address, and leaves no daemon.json.
#[test]
fn listen_on_a_port_in_use_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    init(&a, "patient", "Pat");
    init(&b, "professional", "Dr B");
    let d = Daemon::start(&a, None);
    let addrs: Vec<String> = d.file()["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let tcp = addrs.iter().find(|a| a.contains("/tcp/")).unwrap();
    let mut taken = vec![tcp.clone()];
    if let Some(q) = addrs.iter().find(|a| a.contains("/quic-v1")) {
        taken.push(q.clone());
    }
    for addr in taken {
        // The address without the /p2p/ suffix a daemon may add.
        let addr = addr.split("/p2p/").next().unwrap();
        let out = run_must_fail(&b, addr);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(err.contains(addr) && err.contains("in use"), "{err}");
        assert!(!b.join("daemon.json").exists());
        assert!(!b.join("api.sock").exists());
    }
    d.stop();
}

/// Defect 13: when the last run's port is now taken by another node, the daemon listens on a
/// fresh port (and logs it), and remembers only what it actually bound.
#[test]
fn taken_previous_port_falls_back_to_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    init(&a, "patient", "Pat");
    init(&b, "professional", "Dr B");
    let d = Daemon::start(&a, Some("/ip4/127.0.0.1/tcp/0"));
    let old = d.file()["listen_addrs"][0].as_str().unwrap().to_string();
    let old = old.split("/p2p/").next().unwrap().to_string();
    d.stop();
    // Another node takes the port meanwhile.
    let other = Daemon::start(&b, Some(&old));
    assert!(
        other.file()["listen_addrs"][0]
            .as_str()
            .unwrap()
            .starts_with(&old)
    );
    let d = Daemon::start(&a, None);
    let now: Vec<String> = d.file()["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!now.is_empty());
    assert!(
        now.iter().all(|n| !n.starts_with(&old)),
        "listening on a port another node holds: {now:?}"
    );
    let log = std::fs::read_to_string(a.with_extension("log")).unwrap();
    assert!(log.contains("previous address unavailable"), "{log}");
    d.stop();
    other.stop();
    // What it remembered is what it bound: the next run can listen there again.
    let d = Daemon::start(&a, None);
    let again: Vec<String> = d.file()["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(again, now);
    d.stop();
}

/// A command the daemon runs takes node.json's facts as the daemon read them when it started
/// (the file is written only by the commands that make a home, which refuse a home already
/// made): the file is not read again for each command. Without the daemon, a command reads it, and a
/// damaged file is reported.
#[test]
fn commands_in_the_daemon_take_node_json_as_the_daemon_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    let made = init(&p, "patient", "Pat");
    let d = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let node_json = p.join("node.json");
    let saved = std::fs::read(&node_json).unwrap();
    std::fs::write(&node_json, b"{ not node information").unwrap();

    add_text(&p, None, "notes", "added by the daemon");
    let st = json(&hearth(&p, &["status", "--json"]));
    assert_eq!(st["running"], true);
    assert_eq!(st["peer_id"], made["peer_id"]);
    assert_eq!(st["record_id"], made["record_id"]);
    d.stop();

    let out = hearth(&p, &["status", "--json"]);
    assert!(
        !out.status.success(),
        "a damaged node.json read without the daemon"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    std::fs::write(&node_json, &saved).unwrap();
    let shown = ok(&hearth(&p, &["record", "show", "--json"]));
    assert!(shown.contains("added by the daemon"));
}
