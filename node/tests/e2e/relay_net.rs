//! The relays' private Kademlia network, end to end: three relay processes on loopback linked
//! in a chain (A knows B, B knows C), a patient whose record only C keeps, and a professional
//! who knows only A and finds C (`hearth relay find`), then syncs from it with its grant.

use crate::common::{
    PASS, add_text, command, grant, hearth, init, init_patient, json, nodes_said, ok, peer_of,
    record_of, show,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A relay daemon joining the relays' network through `peers`, killed when dropped.
struct Relay {
    child: Child,
    addr: String,
}

impl Relay {
    fn start(home: &Path, name: &str, peers: &[&str]) -> Relay {
        let id = init(home, "relay", name);
        let mut args = vec![
            "run",
            "--sync-interval",
            "2",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        for p in peers {
            args.extend(["--relay-peer", p]);
        }
        let child = command(home, PASS)
            .args(&args)
            .env("HEARTH_LOG", "info,sled=off")
            .stdout(Stdio::null())
            .stderr(crate::common::log_file(home))
            .spawn()
            .expect("start relay");
        let mut relay = Relay {
            child,
            addr: String::new(),
        };
        crate::common::wait_for("the relay to listen", 30, || {
            home.join("api.sock").exists() && !listen(home).is_empty()
        });
        relay.addr = format!("{}/p2p/{}", listen(home)[0], peer_of(&id));
        relay
    }

    fn peer(&self) -> &str {
        self.addr.rsplit('/').next().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen(home: &Path) -> Vec<String> {
    let out = hearth(home, &["status", "--json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    st["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// `relay find RECORD --via VIA` on `home`: the relays found.
fn find(home: &Path, record: &str, via: &str) -> Vec<Value> {
    let out = json(&hearth(
        home,
        &[
            "relay",
            "find",
            record,
            "--via",
            via,
            "--timeout",
            "10",
            "--json",
        ],
    ));
    assert_eq!(out["record"], record, "{out}");
    out["relays"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_professional_who_knows_one_relay_finds_the_relay_that_keeps_a_record_through_the_chain() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Relay::start(&d.join("c"), "Coastal Relay", &[]);
    let b = Relay::start(&d.join("b"), "Bridge Relay", &[&c.addr]);
    let a = Relay::start(&d.join("a"), "Abbey Relay", &[&b.addr]);

    // The patient's record is kept by C only.
    let p = d.join("p");
    let pid = init_patient(&p);
    let record = record_of(&pid).to_string();
    add_text(&p, None, "notes", "Two falls at home this month");
    // The professional's grant is issued before the patient adds the relay, so it names none.
    let g = d.join("g");
    init(&g, "professional", "Dr A. Shah");
    let card = json(&hearth(&g, &["id", "--card", "--json"]));
    let token = grant(&p, card["card"].as_str().unwrap(), "notes", "read", "30d");
    let used = json(&hearth(&p, &["relay", "use", &c.addr, "--json"]));
    assert_eq!(used["supplied"], true, "{used}");

    // A professional who knows only A: asked through A, the network answers C.
    let mut found = Vec::new();
    // Found with its address: the provider record can arrive before the relay's addresses,
    // and only an address is remembered for the syncs to come.
    crate::common::wait_for_else(
        "C announced on the relays' network",
        40,
        || {
            found = find(&g, &record, &a.addr);
            found
                .iter()
                .any(|f| f["addrs"].as_array().is_some_and(|a| !a.is_empty()))
        },
        || {
            nodes_said(&[
                ("relay A", &d.join("a")),
                ("relay B", &d.join("b")),
                ("relay C", &d.join("c")),
                ("patient", &p),
            ])
        },
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["relay"], c.peer(), "{found:?}");
    let reached = found[0]["addrs"][0].as_str().unwrap_or_default();
    assert!(
        c.addr.starts_with(reached),
        "{reached} is not C's {}",
        c.addr
    );
    // Neither A nor B keeps it; a record nobody keeps is found nowhere.
    for r in [&a, &b] {
        assert!(found.iter().all(|f| f["relay"] != r.peer()));
    }
    let other = init_patient(&d.join("q"));
    assert!(find(&g, record_of(&other), &a.addr).is_empty());

    // With the grant (which names no relay), the professional syncs through C, the relay it
    // found: the patient's node is not running.
    ok(&hearth(&g, &["accept", token["token"].as_str().unwrap()]));
    let synced = json(&hearth(
        &g,
        &["sync", "--wait", "--timeout", "20", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    let shown = show(&g, &record);
    assert!(shown.contains("Two falls at home"), "{shown}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}
