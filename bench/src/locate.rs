//! Finding which relays keep a record on the relays' private Kademlia network, with real
//! `hearth` processes on loopback.
//!
//! Ten relay daemons form the network in a chain (relay *i* knows only relay *i − 1*); a
//! patient's record is kept by the last one only. A professional's node asks
//! `hearth relay find RECORD --via R0` (the first relay, nine hops from the keeper): the time
//! from the command to its answer. Baseline, in the same run: the same command asked `--via`
//! the keeping relay itself (the lookup answered at once), so the difference is what routing
//! through the network costs. Then the same lookup through the first relay, forwarded to the
//! professional's running daemon (a warm routing table).
//!
//! Each `hearth` process is this binary run as `hearth-bench __hearth ARGS…`, which hands its
//! arguments to `hearth_node::main_with`, the `hearth` binary's whole `main`.

use crate::measure::{median_duration, ms};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The passphrase of every node's keystore.
const PASS: &str = "bench-passphrase-123";
/// Relays in the chain.
const RELAYS: usize = 10;

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let n = if quick { 5 } else { 20 };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // Ten relays in a chain: (daemon, address with peer id, peer id).
    let mut relays: Vec<(Daemon, String, String)> = Vec::new();
    for i in 0..RELAYS {
        let home: PathBuf = d.join(format!("relay{i}"));
        let name = format!("Relay {i}");
        let id = json(&hearth(
            &home,
            &["init", "--role", "relay", "--name", &name, "--json"],
        )?)?;
        let peer = id["peer_id"]
            .as_str()
            .context("init prints the peer id")?
            .to_string();
        let extra: Vec<String> = relays
            .last()
            .map(|(_, addr, _)| vec!["--relay-peer".to_string(), addr.clone()])
            .unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let daemon = Daemon::start(&home, &extra)?;
        let addr = format!(
            "{}/p2p/{peer}",
            listen(&home).context("a started relay listens")?
        );
        relays.push((daemon, addr, peer));
    }
    // The patient's record, kept by the last relay only.
    let p = d.join("patient");
    let pid = json(&hearth(
        &p,
        &[
            "init",
            "--role",
            "patient",
            "--name",
            "Bench Patient",
            "--json",
        ],
    )?)?;
    let record = pid["record_id"]
        .as_str()
        .context("init prints the record id")?
        .to_string();
    let (keeper_addr, keeper) = (relays[RELAYS - 1].1.clone(), relays[RELAYS - 1].2.clone());
    json(&hearth(&p, &["relay", "use", &keeper_addr, "--json"])?)?;
    // A professional's node asks.
    let g = d.join("gp");
    json(&hearth(
        &g,
        &[
            "init",
            "--role",
            "professional",
            "--name",
            "Bench GP",
            "--json",
        ],
    )?)?;
    let first = relays[0].1.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    eprintln!("  (waiting until the keeper is announced on the network)");
    while !find(&g, &record, &first, &keeper)?.0 {
        ensure!(
            Instant::now() < deadline,
            "the keeper was never announced on the network"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut through = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..n {
        let (ok, t) = find(&g, &record, &first, &keeper)?;
        ensure!(ok, "a lookup through the network missed the keeper");
        through.push(t);
        let (ok, t) = find(&g, &record, &keeper_addr, &keeper)?;
        ensure!(ok, "a lookup at the keeper missed it");
        direct.push(t);
    }
    let _gp = Daemon::start(&g, &[])?;
    let mut warm = Vec::new();
    for _ in 0..n {
        let (ok, t) = find(&g, &record, &first, &keeper)?;
        ensure!(ok, "a lookup by the running daemon missed the keeper");
        warm.push(t);
    }
    eprintln!(
        "  ({RELAYS} relays in a chain, the record kept by the last; {n} lookups each, medians; each is one `hearth relay find` process)"
    );
    r.emit(
        Figure::new(
            format!("cold_via_first_of_{RELAYS}_relays"),
            ms(median_duration(through)),
            "ms",
        )
        .baseline(ms(median_duration(direct))),
    )?;
    r.emit(Figure::new(
        format!("warm_via_first_of_{RELAYS}_relays"),
        ms(median_duration(warm)),
        "ms",
    ))
}

/// The command that runs `hearth` (this binary, told to be it).
fn hearth_command() -> Result<Command> {
    let mut c = Command::new(std::env::current_exe().context("find this binary")?);
    c.arg("__hearth")
        .env("HEARTH_PASSPHRASE", PASS)
        .env_remove("HEARTH_HOME")
        .stdin(Stdio::null());
    Ok(c)
}

/// `hearth --home HOME ARGS…`, waited for.
fn hearth(home: &Path, args: &[&str]) -> Result<Output> {
    hearth_command()?
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .context("run hearth")
}

/// The one JSON document a successful command printed.
fn json(out: &Output) -> Result<Value> {
    ensure!(
        out.status.success(),
        "hearth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("hearth printed one JSON document")
}

/// A running daemon, killed when dropped.
struct Daemon(Child);

impl Daemon {
    /// `hearth run` on `home`, listening on a fresh loopback port, once it answers.
    fn start(home: &Path, extra: &[&str]) -> Result<Daemon> {
        let child = hearth_command()?
            .env("HEARTH_LOG", "warn,sled=off")
            .arg("--home")
            .arg(home)
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start a daemon")?;
        let d = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while listen(home).is_none() {
            if Instant::now() > deadline {
                bail!("a daemon did not start within a minute");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first listen address of the daemon on `home`, once it answers.
fn listen(home: &Path) -> Option<String> {
    if !home.join("api.sock").exists() {
        return None;
    }
    let out = hearth(home, &["status", "--json"]).ok()?;
    let st: Value = serde_json::from_slice(&out.stdout).ok()?;
    st["listen_addrs"][0].as_str().map(str::to_string)
}

/// `relay find RECORD --via VIA` on `home`: whether it found `keeper`, and how long it took.
fn find(home: &Path, record: &str, via: &str, keeper: &str) -> Result<(bool, Duration)> {
    let t = Instant::now();
    let out = json(&hearth(
        home,
        &[
            "relay",
            "find",
            record,
            "--via",
            via,
            "--timeout",
            "20",
            "--json",
        ],
    )?)?;
    let took = t.elapsed();
    let found = out["relays"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["relay"] == keeper);
    Ok((found, took))
}
