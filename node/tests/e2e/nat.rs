//! Reachability through a relay, end to end: real `hearth` processes in three Linux network
//! namespaces. The patient's and the professional's namespaces each have one link, to the
//! relay's namespace, which does not forward: they can both reach the relay (at 10.77.0.1)
//! and never each other. Both nodes listen on their namespace's loopback only, so nobody can
//! dial them (a home router's NAT, or a hospital firewall, in miniature).
//!
//! The patient's node learns from AutoNAT that its relay cannot dial it back, reserves a
//! circuit on the relay and advertises the `/p2p-circuit` address; its grant carries it; the
//! professional syncs with the patient's node through the circuit.
//!
//! Needs root and `ip netns` (the test says so and skips when they are missing).

use crate::common::{
    PASS, add_text, grant, hearth, init, init_patient, json, ok, peer_of, record_of,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ip args`, failing with its error output.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Three namespaces, deleted (with their links) when dropped.
struct Namespaces {
    patient: String,
    pro: String,
    relay: String,
}

impl Namespaces {
    /// patient (10.77.1.2) ── relay (10.77.1.1 | 10.77.2.1, and 10.77.0.1) ── pro (10.77.2.2)
    fn new() -> Result<Namespaces, String> {
        let tag = std::process::id() % 100_000;
        let ns = Namespaces {
            patient: format!("hearth-p{tag}"),
            pro: format!("hearth-g{tag}"),
            relay: format!("hearth-r{tag}"),
        };
        for n in [&ns.patient, &ns.pro, &ns.relay] {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        for (end, near, subnet) in [(&ns.patient, "p", 1), (&ns.pro, "g", 2)] {
            let (a, b) = (format!("h{near}{tag}"), format!("h{near}r{tag}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", end])?;
            ip(&["link", "set", &b, "netns", &ns.relay])?;
            ip(&[
                "-n",
                end,
                "addr",
                "add",
                &format!("10.77.{subnet}.2/24"),
                "dev",
                &a,
            ])?;
            ip(&[
                "-n",
                &ns.relay,
                "addr",
                "add",
                &format!("10.77.{subnet}.1/24"),
                "dev",
                &b,
            ])?;
            ip(&["-n", end, "link", "set", &a, "up"])?;
            ip(&["-n", &ns.relay, "link", "set", &b, "up"])?;
            ip(&[
                "-n",
                end,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{subnet}.1"),
            ])?;
        }
        ip(&["-n", &ns.relay, "addr", "add", "10.77.0.1/32", "dev", "lo"])?;
        // A new namespace does not forward: the relay's namespace joins nothing.
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.relay,
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&fwd.stdout).trim() != "0" {
            return Err("the relay's namespace forwards packets".into());
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.patient, &self.pro, &self.relay] {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// `hearth args` on `home`, inside namespace `ns`.
fn hearth_ns(ns: &str, home: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_hearth"), "--home"])
        .arg(home)
        .env("HEARTH_PASSPHRASE", PASS)
        .env_remove("HEARTH_HOME")
        .stdin(Stdio::null());
    c
}

/// A daemon in a namespace, killed when dropped.
struct NsDaemon(Child);

impl NsDaemon {
    fn start(ns: &str, home: &Path, listen: &str) -> NsDaemon {
        let log = std::fs::File::create(home.with_extension("log")).unwrap();
        let child = hearth_ns(ns, home)
            .args(["run", "--sync-interval", "2", "--listen", listen])
            .env("HEARTH_LOG", "info,sled=off")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start daemon");
        let d = NsDaemon(child);
        wait_for("the daemon to listen", 20, || {
            home.join("api.sock").exists()
                && status(home)["listen_addrs"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        });
        d
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon's status (commands reach it over its socket, from any namespace).
fn status(home: &Path) -> Value {
    let out = hearth(home, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_of(home: &Path) -> String {
    std::fs::read_to_string(home.with_extension("log")).unwrap_or_default()
}

#[test]
fn a_professional_syncs_with_a_patient_behind_nat_through_the_relay() {
    let ns = match Namespaces::new() {
        Ok(ns) => ns,
        Err(why) => {
            // Explicit skip: this test needs root and `ip netns`.
            eprintln!("SKIPPED: network namespaces are not usable here: {why}");
            return;
        }
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (r, p, g): (PathBuf, PathBuf, PathBuf) = (
        dir.path().join("r"),
        dir.path().join("p"),
        dir.path().join("g"),
    );

    let rid_init = init(&r, "relay", "Riverside Relay");
    let _relay = NsDaemon::start(&ns.relay, &r, "/ip4/10.77.0.1/tcp/0");
    let relay_addr = format!(
        "{}/p2p/{}",
        status(&r)["listen_addrs"][0].as_str().unwrap(),
        peer_of(&rid_init)
    );

    let pid = init_patient(&p);
    let record = record_of(&pid).to_string();
    let patient_peer = peer_of(&pid).to_string();
    add_text(&p, None, "notes", "Two falls at home this month");
    // The patient's node can reach the relay (from its namespace) and supplies it.
    let used = hearth_ns(&ns.patient, &p)
        .args(["relay", "use", &relay_addr, "--json"])
        .output()
        .unwrap();
    let used = json(&used);
    assert_eq!(used["supplied"], true, "{used}");

    // Its daemon listens on its loopback only: nobody can dial it. AutoNAT says so, and it
    // reserves a circuit on the relay.
    let _patient = NsDaemon::start(&ns.patient, &p, "/ip4/127.0.0.1/tcp/0");
    wait_for("the patient's circuit address", 30, || {
        let st = status(&p);
        st["reachability"] == "private"
            && st["listen_addrs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a.as_str().unwrap_or_default().contains("/p2p-circuit"))
    });
    let st = status(&p);
    let circuit = st["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.contains("/p2p-circuit"))
        .unwrap()
        .to_string();
    assert!(
        circuit.starts_with(&relay_addr),
        "{circuit} is not through {relay_addr}"
    );

    // The grant carries the patient's addresses, the circuit among them.
    let gid = init(&g, "professional", "Dr A. Shah");
    let card = json(&hearth(&g, &["id", "--card", "--json"]));
    let token = grant(&p, card["card"].as_str().unwrap(), "notes", "read", "30d");
    ok(&hearth(&g, &["accept", token["token"].as_str().unwrap()]));
    let _pro = NsDaemon::start(&ns.pro, &g, "/ip4/127.0.0.1/tcp/0");

    let synced = json(&hearth(
        &g,
        &[
            "sync",
            "--with",
            &patient_peer,
            "--wait",
            "--timeout",
            "25",
            "--json",
        ],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}\n{}", log_of(&g));
    let sessions = synced["sessions"].as_array().unwrap();
    assert!(
        !sessions.is_empty() && sessions.iter().all(|s| s["peer"] == patient_peer.as_str()),
        "{synced}"
    );
    let shown = crate::common::show(&g, &record);
    assert!(shown.contains("Two falls at home"), "{shown}");

    // The professional's connection to the patient goes through the relay: the two
    // namespaces have no route to each other, so hole punching cannot make it direct.
    let st = status(&g);
    let via = st["connections"][&patient_peer]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !via.is_empty()
            && via
                .iter()
                .all(|a| a.as_str().unwrap_or_default().contains("/p2p-circuit")),
        "{st}"
    );
    let text = ok(&hearth(&g, &["status"]));
    assert!(text.contains("/p2p-circuit"), "{text}");

    // The patient links a new device that, like the professional, can reach her node only
    // through the relay: the one-time code carries the circuit address, and pairing (SPAKE2,
    // then the sealed certificate and keys) runs through it.
    let link = json(&hearth(&p, &["device", "link", "--json", "--no-qr"]));
    let code = link["code"].as_str().unwrap().to_string();
    let phone = dir.path().join("phone");
    let joined = hearth_ns(&ns.pro, &phone)
        .args(["init", "--join", &code, "--name", "Edith's phone", "--json"])
        .output()
        .unwrap();
    let joined = json(&joined);
    assert_eq!(joined["record_id"], record.as_str(), "{joined}");
    let sections = ok(&hearth(&phone, &["record", "sections"]));
    assert!(sections.contains("notes"), "{sections}");
    let _ = gid;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
