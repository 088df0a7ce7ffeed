//! Finding which relays keep a record on the relays' private Kademlia network, with real
//! `hearth` processes on loopback.
//!
//! Ten relay daemons form the network in a chain (relay *i* knows only relay *i − 1*); a
//! patient's record is kept by the last one only. A professional's daemon asks
//! `hearth relay find RECORD --via R0` (the first relay, nine hops from the keeper): the time
//! from the command to its answer. Baseline, in the same run: the same command asked `--via`
//! the keeping relay itself (the lookup answered at once), so the difference is what routing
//! through the network costs.
//!
//! `cargo bench -p hearth-node --bench locate --locked` (`-- quick`: 5 lookups each instead of
//! 20).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASS: &str = "bench-passphrase-123";
const RELAYS: usize = 10;

fn hearth(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_PASSPHRASE", PASS)
        .env_remove("HEARTH_HOME")
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "hearth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// A running daemon, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(home: &Path, extra: &[&str]) -> Daemon {
    let mut args = vec!["run", "--listen", "/ip4/127.0.0.1/tcp/0"];
    args.extend(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_PASSPHRASE", PASS)
        .env("HEARTH_LOG", "warn,sled=off")
        .arg("--home")
        .arg(home)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a daemon");
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while listen(home).is_none() {
        assert!(Instant::now() < deadline, "a daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

fn listen(home: &Path) -> Option<String> {
    if !home.join("api.sock").exists() {
        return None;
    }
    let st: Value = serde_json::from_slice(&hearth(home, &["status", "--json"]).stdout).ok()?;
    st["listen_addrs"][0].as_str().map(str::to_string)
}

/// `relay find RECORD --via VIA` on `home`: whether it found `keeper`, and how long it took.
fn find(home: &Path, record: &str, via: &str, keeper: &str) -> (bool, Duration) {
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
    ));
    let took = t.elapsed();
    let found = out["relays"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["relay"] == keeper);
    (found, took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let n = if quick { 5 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Ten relays in a chain.
    let mut relays: Vec<(Daemon, String, String)> = Vec::new();
    for i in 0..RELAYS {
        let home: PathBuf = d.join(format!("relay{i}"));
        let id = json(&hearth(
            &home,
            &[
                "init",
                "--role",
                "relay",
                "--name",
                &format!("Relay {i}"),
                "--json",
            ],
        ));
        let peer = id["peer_id"].as_str().unwrap().to_string();
        let extra: Vec<String> = relays
            .last()
            .map(|(_, addr, _)| vec!["--relay-peer".to_string(), addr.clone()])
            .unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let daemon = start(&home, &extra);
        let addr = format!("{}/p2p/{peer}", listen(&home).unwrap());
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
    ));
    let record = pid["record_id"].as_str().unwrap().to_string();
    let (keeper_addr, keeper) = (relays[RELAYS - 1].1.clone(), relays[RELAYS - 1].2.clone());
    json(&hearth(&p, &["relay", "use", &keeper_addr, "--json"]));
    // A professional's daemon asks.
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
    ));
    let first = relays[0].1.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !find(&g, &record, &first, &keeper).0 {
        assert!(
            Instant::now() < deadline,
            "the keeper was never announced on the network"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut through = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..n {
        let (ok, t) = find(&g, &record, &first, &keeper);
        assert!(ok, "a lookup through the network missed the keeper");
        through.push(t);
        let (ok, t) = find(&g, &record, &keeper_addr, &keeper);
        assert!(ok, "a lookup at the keeper missed it");
        direct.push(t);
    }
    let (t, b) = (median(through), median(direct));
    let _gp = start(&g, &[]);
    let mut warm = Vec::new();
    for _ in 0..n {
        let (ok, t) = find(&g, &record, &first, &keeper);
        assert!(ok, "a lookup by the running daemon missed the keeper");
        warm.push(t);
    }
    let w = median(warm);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "hearth locate benchmark ({RELAYS} relays in a chain, the record kept by the last; {n} lookups each, medians; each is one `hearth relay find` process)"
    );
    println!(
        "time to locate a record through Kademlia with {RELAYS} relays (cold: a short-lived node)   via the first relay (9 hops away)   {:.1} ms   baseline: via the keeping relay   {:.1} ms   routing adds {:.1} ms",
        ms(t),
        ms(b),
        ms(t) - ms(b)
    );
    println!(
        "  the same lookup through the first relay, forwarded to a running daemon (warm routing table)   {:.1} ms",
        ms(w)
    );
}
