//! Operating a node: `hearth run --metrics` (Prometheus) and `--log-format json`, with real
//! daemons (a relay and a patient) on loopback.

use crate::common::{PASS, add_text, command, hearth, init, init_patient, json, peer_of, wait_for};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon started with extra arguments, its standard error in a file.
struct Running {
    child: Child,
    home: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let stderr = home.with_extension("stderr");
        let mut c = command(home, PASS);
        c.args([
            "run",
            "--sync-interval",
            "2",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(extra)
        .env_remove("HEARTH_LOG")
        .env_remove("HEARTH_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let r = Running {
            child: c.spawn().expect("start daemon"),
            home: home.to_path_buf(),
            stderr,
        };
        wait_for("the daemon listening", 30, || {
            r.home.join("daemon.json").exists()
                && json(&hearth(home, &["status", "--json"]))["listen_addrs"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        });
        r
    }

    fn file(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.home.join("daemon.json")).unwrap()).unwrap()
    }

    /// SIGTERM, a clean exit, and the daemon's standard error.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "daemon exit: {status:?}");
                break;
            }
            assert!(Instant::now() < deadline, "daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr` (`IP:PORT`) with `host` as the Host header: (status, body).
fn get(addr: &str, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The metrics of the daemon whose `daemon.json` says `url` (`http://IP:PORT/metrics`), by
/// name; every sample must be a bare name and an integer (no labels).
fn scrape(url: &str) -> BTreeMap<String, u64> {
    let addr = url
        .strip_prefix("http://")
        .unwrap()
        .strip_suffix("/metrics")
        .unwrap();
    let (status, body) = get(addr, "/metrics", addr);
    assert_eq!(status, 200, "{body}");
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.split_once(' ').unwrap();
        assert!(!name.contains('{'), "a metric with labels: {line}");
        out.insert(name.to_string(), value.parse().unwrap());
    }
    out
}

/// Every line of a daemon's standard error is one JSON object with a level, and none holds
/// `canaries`.
fn all_json(stderr: &str, canaries: &[&str]) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object() && v["level"].is_string(), "{l}");
            v
        })
        .collect();
    for c in canaries {
        assert!(!stderr.contains(c), "a log holds record content: {c}");
    }
    lines
}

#[test]
fn a_relay_exposes_prometheus_metrics_and_both_daemons_log_json_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let (r, p) = (dir.path().join("relay"), dir.path().join("p"));
    let rid = init(&r, "relay", "Riverside Relay");
    let relay = Running::start(
        &r,
        &["--metrics", "127.0.0.1:0", "--log-format", "json"],
        &[],
    );
    let url = relay.file()["metrics"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let first = scrape(&url);
    for name in [
        "hearth_peers_connected",
        "hearth_peers_known",
        "hearth_bundles_received_total",
        "hearth_rounds_finished_total",
        "hearth_rounds_failed_total",
        "hearth_notify_streamed_total",
        "hearth_notify_by_request_total",
        "hearth_relay_requests_total",
        "hearth_relay_refused_total",
        "hearth_relay_rate_limited_total",
        "hearth_relay_busy_total",
        "hearth_relay_stored_total",
        "hearth_relay_served_total",
        "hearth_relay_rejected_total",
        "hearth_relay_supplied_total",
        "hearth_relay_peers",
        "hearth_relay_records",
        "hearth_relay_stored_bytes",
    ] {
        assert!(first.contains_key(name), "{name} missing: {first:?}");
    }
    assert_eq!(first["hearth_relay_records"], 0);

    // The patient's daemon (JSON logs from the environment) supplies the relay; a canary
    // entry travels as ciphertext and appears in no log line.
    let canary = "Canary-7f3a: mobility worse after the fall";
    let pid = init_patient(&p);
    let patient = Running::start(&p, &[], &[("HEARTH_LOG_FORMAT", "json")]);
    add_text(&p, None, "notes", canary);
    let st = json(&hearth(&r, &["status", "--json"]));
    let addr = format!(
        "{}/p2p/{}",
        st["listen_addrs"][0].as_str().unwrap(),
        peer_of(&rid)
    );
    json(&hearth(&p, &["relay", "use", &addr, "--json"]));
    wait_for("the relay stored the record", 30, || {
        let m = scrape(&url);
        m["hearth_relay_stored_total"] > 0 && m["hearth_relay_records"] == 1
    });
    let m = scrape(&url);
    assert!(m["hearth_relay_requests_total"] >= 1, "{m:?}");
    assert!(m["hearth_relay_supplied_total"] >= 1, "{m:?}");
    assert!(m["hearth_relay_stored_bytes"] > 0, "{m:?}");
    assert_eq!(m["hearth_relay_peers"], 1, "{m:?}");
    assert!(m["hearth_peers_connected"] >= 1, "{m:?}");

    // Only /metrics, only with the listener's own Host (no DNS rebinding).
    let hostport = url
        .strip_prefix("http://")
        .unwrap()
        .strip_suffix("/metrics")
        .unwrap();
    assert_eq!(get(hostport, "/metrics", "evil.example:80").0, 403);
    assert_eq!(get(hostport, "/api/v1/status", hostport).0, 404);
    let port = hostport.rsplit(':').next().unwrap();
    assert_eq!(
        get(hostport, "/metrics", &format!("localhost:{port}")).0,
        200
    );
    let (_, body) = get(hostport, "/metrics", hostport);
    for id in [peer_of(&pid), peer_of(&rid)] {
        assert!(!body.contains(id), "a peer id in the metrics");
    }

    let patient_log = patient.stop();
    let relay_log = relay.stop();
    for log in [&patient_log, &relay_log] {
        let lines = all_json(log, &[canary, "Canary-7f3a", "mobility worse"]);
        assert!(
            lines.iter().any(|l| l["message"] == "hearth node running"),
            "{log}"
        );
        assert!(
            lines.iter().any(|l| l["message"] == "hearth node stopped"),
            "{log}"
        );
    }
    let running = all_json(&relay_log, &[])
        .into_iter()
        .find(|l| l["message"] == "hearth node running")
        .unwrap();
    assert!(
        running["metrics"].as_str().unwrap().contains(hostport),
        "{running}"
    );
}

#[test]
fn metrics_on_a_non_loopback_address_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("p");
    init_patient(&h);
    for bad in ["0.0.0.0:9464", "192.0.2.7:9464", "localhost:9464"] {
        let out = hearth(&h, &["run", "--metrics", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--metrics"), "{err}");
        assert!(!h.join("daemon.json").exists());
    }
    // A failure in JSON mode is one JSON line too, with its exit code.
    let out = command(&h, PASS)
        .args(["run", "--metrics", "0.0.0.0:9464"])
        .env("HEARTH_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stderr).trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["exit_code"], 3);
}
