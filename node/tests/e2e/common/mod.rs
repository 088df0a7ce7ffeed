//! Helpers shared by the end-to-end tests: the real `hearth` binary in temporary homes, and
//! daemons on loopback, used by every module of the `e2e` test binary.

pub(crate) mod browser;
pub(crate) mod fhir;
pub(crate) mod stranger;
pub(crate) mod web;
pub(crate) mod world;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The passphrase of every test home.
pub(crate) const PASS: &str = "e2e-passphrase-123";

/// The `hearth` binary, unlocked with `pass`, ignoring the caller's `HEARTH_HOME`, with no
/// stdin.
pub(crate) fn binary(pass: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env("HEARTH_PASSPHRASE", pass)
        .env_remove("HEARTH_HOME")
        .stdin(Stdio::null());
    c
}

/// [`binary`] for `home`.
pub(crate) fn command(home: &Path, pass: &str) -> Command {
    let mut c = binary(pass);
    c.arg("--home").arg(home);
    c
}

/// Runs `hearth args` on `home` with `pass`, in `cwd` if given.
pub(crate) fn hearth_in(home: &Path, args: &[&str], pass: &str, cwd: Option<&Path>) -> Output {
    let mut c = command(home, pass);
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().expect("run hearth")
}

/// Runs `hearth args` on `home`.
pub(crate) fn hearth(home: &Path, args: &[&str]) -> Output {
    hearth_in(home, args, PASS, None)
}

/// The stdout of a command that must have succeeded.
#[track_caller]
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "hearth failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// The one JSON document a command that must have succeeded printed.
#[track_caller]
pub(crate) fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

/// A path as the `&str` argument of a command.
#[allow(dead_code)]
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A new node at `home` (`init --json` output).
#[allow(dead_code)]
pub(crate) fn init(home: &Path, role: &str, name: &str) -> Value {
    json(&hearth(
        home,
        &["init", "--role", role, "--name", name, "--json"],
    ))
}

/// A patient ("Pat", at `p`) and a professional (at `g`) in fresh homes under one temporary
/// folder, with their `init --json` outputs and the ids tests use most.
#[allow(dead_code)]
pub(crate) struct Pair {
    /// The folder holding both homes (removed when dropped).
    pub(crate) dir: tempfile::TempDir,
    /// The patient's home.
    pub(crate) p: PathBuf,
    /// The professional's home.
    pub(crate) g: PathBuf,
    /// The patient's `init --json` output.
    pub(crate) pid: Value,
    /// The professional's `init --json` output.
    pub(crate) gid: Value,
    /// The patient's record id.
    pub(crate) rid: String,
    /// The patient's peer id.
    pub(crate) pp: String,
    /// The professional's peer id.
    pub(crate) gp: String,
}

impl Pair {
    /// A new pair, the professional named `professional`.
    #[allow(dead_code)]
    pub(crate) fn new(professional: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (p, g) = (dir.path().join("p"), dir.path().join("g"));
        let pid = init(&p, "patient", "Pat");
        let gid = init(&g, "professional", professional);
        let (rid, pp, gp) = (
            record_of(&pid).to_string(),
            peer_of(&pid).to_string(),
            peer_of(&gid).to_string(),
        );
        Pair {
            dir,
            p,
            g,
            pid,
            gid,
            rid,
            pp,
            gp,
        }
    }
}

/// A patient's node at `home`, with an NHS number (`init --json` output).
#[allow(dead_code)]
pub(crate) fn init_patient(home: &Path) -> Value {
    json(&hearth(
        home,
        &[
            "init",
            "--role",
            "patient",
            "--name",
            "Edith Test",
            "--nhs-number",
            "9434765919",
            "--json",
        ],
    ))
}

/// The `peer_id` of an `init --json` output.
#[allow(dead_code)]
pub(crate) fn peer_of(init: &Value) -> &str {
    init["peer_id"].as_str().unwrap()
}

/// The `record_id` of an `init --json` output.
#[allow(dead_code)]
pub(crate) fn record_of(init: &Value) -> &str {
    init["record_id"].as_str().unwrap()
}

/// The arguments naming a grant's audience, sections, ability and end.
pub(crate) fn scope_args<'a>(
    to: &'a str,
    sections: &'a str,
    ability: &'a str,
    expires: &'a str,
) -> [&'a str; 8] {
    [
        "--to",
        to,
        "--sections",
        sections,
        "--ability",
        ability,
        "--expires",
        expires,
    ]
}

/// `hearth grant --to TO --sections SECTIONS --ability ABILITY --expires EXPIRES EXTRA…` on
/// `home`, whatever the outcome.
#[allow(dead_code)]
pub(crate) fn grant_cmd(
    home: &Path,
    to: &str,
    sections: &str,
    ability: &str,
    expires: &str,
    extra: &[&str],
) -> Output {
    scoped(
        home,
        &["grant"],
        scope_args(to, sections, ability, expires),
        extra,
    )
}

/// `hearth HEAD… SCOPE… EXTRA…` on `home`, whatever the outcome.
fn scoped(home: &Path, head: &[&str], scope: [&str; 8], extra: &[&str]) -> Output {
    let args: Vec<&str> = head.iter().chain(&scope).chain(extra).copied().collect();
    hearth(home, &args)
}

/// `hearth grant delegate GRANT --to TO --sections SECTIONS --ability ABILITY --expires
/// EXPIRES EXTRA…` on `home`, whatever the outcome.
#[allow(dead_code)]
pub(crate) fn delegate_cmd(
    home: &Path,
    grant: &str,
    to: &str,
    sections: &str,
    ability: &str,
    expires: &str,
    extra: &[&str],
) -> Output {
    let scope = scope_args(to, sections, ability, expires);
    scoped(home, &["grant", "delegate", grant], scope, extra)
}

/// `hearth grant` on the patient's node `patient` to `to` (a peer id or contact card), which
/// must succeed: its `--json` output.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn grant(
    patient: &Path,
    to: &str,
    sections: &str,
    ability: &str,
    expires: &str,
) -> Value {
    json(&grant_cmd(
        patient,
        to,
        sections,
        ability,
        expires,
        &["--json"],
    ))
}

/// [`grant`] to the node `holder` (an `init --json` output at `holder_home`), accepted there:
/// the grant's `--json` output.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn grant_accepted(
    patient: &Path,
    holder_home: &Path,
    holder: &Value,
    sections: &str,
    ability: &str,
    expires: &str,
) -> Value {
    let g = grant(patient, peer_of(holder), sections, ability, expires);
    ok(&hearth(
        holder_home,
        &["accept", g["token"].as_str().unwrap()],
    ));
    g
}

/// `hearth record add SECTION [--label LABEL] --entry {"text": TEXT}` on `home` (in record
/// `record` if given), which must succeed: its output. `section` is a name or `name:label`.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn add_text(home: &Path, record: Option<&str>, section: &str, text: &str) -> String {
    let entry = serde_json::json!({ "text": text }).to_string();
    let mut args = match section.split_once(':') {
        Some((name, label)) => vec!["record", "add", name, "--label", label],
        None => vec!["record", "add", section],
    };
    if let Some(r) = record {
        args.extend(["--record", r]);
    }
    args.extend(["--entry", entry.as_str()]);
    ok(&hearth(home, &args))
}

/// `hearth record show --record RECORD --json` on `home`: its stdout, whatever the outcome.
#[allow(dead_code)]
pub(crate) fn show(home: &Path, record: &str) -> String {
    let out = hearth(home, &["record", "show", "--record", record, "--json"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hearth sync --wait --json` on `home` (with `peer` if given), which must end in sync.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn sync_in(home: &Path, peer: Option<&str>) -> Value {
    let mut args = vec!["sync"];
    if let Some(p) = peer {
        args.extend(["--with", p]);
    }
    args.extend(["--wait", "--json"]);
    let synced = json(&hearth(home, &args));
    assert_eq!(synced["in_sync"], true, "{synced}");
    synced
}

/// The text of the file at `path`, once it exists and is not empty (10 s at most).
#[allow(dead_code)]
pub(crate) fn wait_file(path: &Path) -> String {
    let mut text = String::new();
    wait_for(&path.display().to_string(), 10, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        !text.is_empty()
    });
    text
}

/// Waits up to `secs` seconds for `f` to hold, polling every 100 ms.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    wait_for_else(what, secs, f, String::new);
}

/// [`wait_for`], with `explain()` (what the nodes said, their logs) in the failure message.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn wait_for_else(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", explain());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What each named node's `hearth status --json` says and its daemon's log, for a failure
/// message ([`wait_for_else`]). Status and logs hold no record content.
#[allow(dead_code)]
pub(crate) fn nodes_said(nodes: &[(&str, &Path)]) -> String {
    nodes
        .iter()
        .map(|(who, home)| {
            let status = hearth(home, &["status", "--json"]);
            let log = std::fs::read_to_string(home.with_extension("log")).unwrap_or_default();
            format!(
                "--- the {who}'s status:\n{}\n--- the {who}'s daemon log:\n{log}",
                String::from_utf8_lossy(&status.stdout)
            )
        })
        .collect()
}

/// Every file and folder under `dir` (not `dir` itself), depth first.
#[allow(dead_code)]
pub(crate) fn paths_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The daemon's log, next to its home (appended across restarts).
#[allow(dead_code)]
pub(crate) fn log_file(home: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.with_extension("log"))
        .unwrap()
}

/// A running daemon; killed when dropped if the test did not stop it.
#[allow(dead_code)]
pub(crate) struct Daemon {
    child: Child,
    home: PathBuf,
}

#[allow(dead_code)]
impl Daemon {
    /// Starts a daemon syncing every 2 s, logging to [`log_file`], and waits until it listens;
    /// without `listen`, it picks its own addresses (the last run's, or fresh loopback ports).
    pub(crate) fn start(home: &Path, listen: Option<&str>) -> Daemon {
        Daemon::start_with(home, listen, &[])
    }

    /// [`Daemon::start`] with more arguments to `hearth run`.
    pub(crate) fn start_with(home: &Path, listen: Option<&str>, extra: &[&str]) -> Daemon {
        Daemon::start_in(home, listen, extra, &[])
    }

    /// [`Daemon::start_with`] with more environment variables.
    pub(crate) fn start_in(
        home: &Path,
        listen: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut args = vec!["run", "--sync-interval", "2"];
        if let Some(l) = listen {
            args.extend(["--listen", l]);
        }
        args.extend(extra);
        let child = command(home, PASS)
            .envs(env.iter().copied())
            .args(&args)
            .env("HEARTH_LOG", "info,sled=off")
            .stdout(Stdio::null())
            .stderr(log_file(home))
            .spawn()
            .expect("start daemon");
        let d = Daemon {
            child,
            home: home.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if home.join("daemon.json").exists() {
                let st = json(&hearth(home, &["status", "--json"]));
                if st["listen_addrs"].as_array().is_some_and(|a| !a.is_empty()) {
                    return d;
                }
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's `daemon.json`.
    pub(crate) fn file(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.home.join("daemon.json")).unwrap()).unwrap()
    }

    /// The port of its local API.
    pub(crate) fn port(&self) -> u16 {
        self.file()["api"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// SIGKILL (a crash): `daemon.json` and the socket stay behind.
    pub(crate) fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "daemon exit: {status:?}");
                break;
            }
            assert!(Instant::now() < deadline, "daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !self.home.join("daemon.json").exists(),
            "daemon.json left behind after a clean shutdown"
        );
        assert!(
            !self.home.join("api.sock").exists(),
            "api.sock left behind after a clean shutdown"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
