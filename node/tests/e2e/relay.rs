//! Organisation relays, end to end: real `hearth` processes (two relays, a patient, a GP) on
//! loopback, talking `/hearth/store/1` over libp2p, on sled stores on disk.

use crate::common::stranger;
use crate::common::{
    Daemon, add_text, grant, hearth, init, init_patient, json, nodes_said, ok, paths_under,
    peer_of, record_of, s, show, wait_for, wait_for_else,
};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_sync::protocol::{Message, decode, encode};
use hearth_sync::relay::{NOTHING_HERE, StoreRequest, blind};
use std::path::Path;

/// A relay node at `home`, running; returns it with its address (ending in /p2p/PEER).
fn relay(home: &Path, name: &str) -> (Daemon, String) {
    let id = init(home, "relay", name);
    let d = Daemon::start(home, Some("/ip4/127.0.0.1/tcp/0"));
    let st = json(&hearth(home, &["status", "--json"]));
    let addr = format!(
        "{}/p2p/{}",
        st["listen_addrs"][0].as_str().unwrap(),
        peer_of(&id)
    );
    (d, addr)
}

/// Bundles the relay at `home` says it stored since it started.
fn stored(home: &Path) -> u64 {
    let st = json(&hearth(home, &["relay", "status", "--json"]));
    st["since_start"]["stored"].as_u64().unwrap_or(0)
}

/// Whether any file under `dir` contains `needle`.
fn contains(dir: &Path, needle: &str) -> bool {
    paths_under(dir).iter().filter(|p| p.is_file()).any(|p| {
        let bytes = std::fs::read(p).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn the_gp_syncs_through_a_relay_while_the_patient_is_offline_and_the_phrase_restores_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb, p, g) = (
        dir.path().join("relay-a"),
        dir.path().join("relay-b"),
        dir.path().join("p"),
        dir.path().join("g"),
    );
    let (relay_a, addr_a) = relay(&ra, "Riverside Relay");
    let (relay_b, addr_b) = relay(&rb, "Hillside Relay");
    let pid = init_patient(&p);
    let phrase = pid["recovery_phrase"].as_str().unwrap().to_string();
    let rid = record_of(&pid).to_string();
    add_text(&p, None, "notes", "Two falls at home this month");
    add_text(&p, None, "notes:mental-health", "Low mood since the winter");
    let patient = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));

    // The patient asks both relays to keep the record; her node supplies them.
    for a in [&addr_a, &addr_b] {
        let used = json(&hearth(&p, &["relay", "use", a, "--json"]));
        assert_eq!(used["relay"], a.rsplit('/').next().unwrap(), "{used}");
    }
    wait_for("both relays supplied", 30, || {
        stored(&ra) > 0 && stored(&rb) > 0
    });
    let listed = json(&hearth(&p, &["relay", "list", "--json"]));
    assert_eq!(listed["relays"].as_array().unwrap().len(), 2, "{listed}");
    // Each named by its own signed card (shown as its own name for itself).
    let mut names: Vec<&str> = listed["relays"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["Hillside Relay", "Riverside Relay"], "{listed}");

    // A grant made after the relays were added names them: the GP needs nothing else.
    let gid = init(&g, "professional", "Dr A. Shah");
    let card = json(&hearth(&g, &["id", "--card", "--json"]));
    let token = grant(&p, card["card"].as_str().unwrap(), "notes", "append", "30d");
    wait_for("the grant reached the relays", 30, || {
        let (a, b) = (stored(&ra), stored(&rb));
        a > 0 && b > 0 && a == b
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    patient.stop();
    relay_a.stop();

    // The patient and one relay are gone; the GP still syncs, through the other relay.
    ok(&hearth(&g, &["accept", token["token"].as_str().unwrap()]));
    let gp = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));
    let synced = json(&hearth(
        &g,
        &["sync", "--wait", "--timeout", "30", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    let notes = show(&g, &rid);
    assert!(notes.contains("Two falls at home"), "{notes}");
    assert!(
        !notes.contains("Low mood"),
        "an ungranted section reached the GP"
    );

    // The GP writes; the note waits at the relay.
    let before = stored(&rb);
    add_text(
        &g,
        Some(&rid),
        "notes",
        "Home visit: referred to the falls clinic",
    );
    wait_for("the GP's note at the relay", 30, || stored(&rb) > before);
    gp.stop();

    // The relays hold ciphertext only: no name, NHS number, entry or label in any file.
    for home in [&ra, &rb] {
        for canary in [
            "Edith Test",
            "9434765919",
            "Two falls",
            "falls clinic",
            "Low mood",
            "mental-health",
            "Dr A. Shah",
        ] {
            assert!(!contains(home, canary), "{canary:?} found under {home:?}");
        }
    }

    // Every patient home is lost; the phrase and the surviving relay restore the record,
    // the GP's note included. The relay is restarting as the recovery begins: the recovery
    // asks again until the relay is back on its address.
    std::fs::remove_dir_all(&p).unwrap();
    relay_b.stop();
    let p2 = dir.path().join("p2");
    let recovering = crate::common::binary(crate::common::PASS)
        .args(["--home", s(&p2), "recover", "--relay", &addr_b, "--json"])
        .env("HEARTH_RECOVERY_PHRASE", &phrase)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _relay_b = crate::common::Daemon::start(&rb, None);
    let back = json(&hearth(&rb, &["status", "--json"]));
    let listening = addr_b.rsplit_once("/p2p/").unwrap().0;
    assert!(
        back["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == listening),
        "the relay came back elsewhere: {back}"
    );
    let out = recovering.wait_with_output().unwrap();
    let rec = json(&out);
    assert_eq!(rec["record_id"], rid.as_str(), "{rec}");
    assert_eq!(
        rec["unrecoverable_sections"].as_array().unwrap().len(),
        0,
        "{rec}"
    );
    let shown = show(&p2, &rid);
    for text in ["Two falls at home", "falls clinic"] {
        assert!(shown.contains(text), "{text:?} not restored: {shown}");
    }
    let mh = ok(&hearth(&p2, &["record", "show", "notes:mental-health"]));
    assert!(mh.contains("Low mood"), "{mh}");
    let _ = gid;
}

#[test]
fn a_stranger_a_wrong_phrase_and_an_oversized_frame_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, p) = (dir.path().join("relay"), dir.path().join("p"));
    let (relay_d, addr) = relay(&ra, "Riverside Relay");
    let pid = init_patient(&p);
    add_text(&p, None, "notes", "Two falls at home this month");
    // Without a daemon, `relay use` supplies the relay from a short-lived node.
    let used = json(&hearth(&p, &["relay", "use", &addr, "--json"]));
    assert_eq!(used["supplied"], true, "{used}");
    let before = stored(&ra);
    assert!(before > 0);

    let relay_peer: PeerKey = addr.rsplit('/').next().unwrap().parse().unwrap();
    let record: RecordId = record_of(&pid).parse().unwrap();
    let pid_r = hearth_sync::net::peer_id(&relay_peer).unwrap();
    let maddr: libp2p::Multiaddr = addr.rsplit_once("/p2p/").unwrap().0.parse().unwrap();
    let ask = |rec: &RecordId| encode(&Message::Store(StoreRequest::new(blind(rec, &relay_peer))));
    // A stranger asking for the real record and for one that does not exist: the same words.
    let key = libp2p::identity::Keypair::generate_ed25519();
    let answers = stranger::send_store(
        key,
        pid_r,
        maddr.clone(),
        vec![ask(&record), ask(&RecordId([9; 32]))],
    );
    let refusals: Vec<Option<String>> = answers
        .iter()
        .map(|a| match decode(a.as_ref().unwrap()).unwrap() {
            Message::Stored(r) => {
                assert!(r.bundles.is_empty() && r.wraps.is_empty() && r.access.is_none());
                r.refused
            }
            other => panic!("not a relay answer: {other:?}"),
        })
        .collect();
    assert_eq!(refusals, vec![Some(NOTHING_HERE.to_string()); 2]);
    // A frame over the limit closes the stream; the relay keeps serving.
    let big = vec![0u8; hearth_sync::protocol::MAX_MESSAGE + 1024];
    let key = libp2p::identity::Keypair::generate_ed25519();
    let answers = stranger::send_store(key, pid_r, maddr.clone(), vec![big, ask(&record)]);
    assert!(answers[0].is_err(), "an oversized frame was answered");
    assert_eq!(stored(&ra), before, "a stranger changed the relay's store");
    let st = json(&hearth(&ra, &["relay", "status", "--json"]));
    assert_eq!(st["records"], 1, "{st}");

    // A connection flood from 48 fresh keys at once: throttled (per-IP connection rate,
    // per-peer request rate), every attempt ends, and the patient is still served after it.
    let flood: Vec<_> = (0..48)
        .map(|_| {
            let (maddr, frame) = (maddr.clone(), ask(&record));
            std::thread::spawn(move || {
                let key = libp2p::identity::Keypair::generate_ed25519();
                stranger::send_store(key, pid_r, maddr, vec![frame])
            })
        })
        .collect();
    let mut answered = 0;
    for t in flood {
        let answers = t.join().unwrap();
        if let Some(Ok(bytes)) = answers.first()
            && let Ok(Message::Stored(r)) = decode(bytes)
        {
            assert_eq!(r.refused.as_deref(), Some(NOTHING_HERE));
            answered += 1;
        }
    }
    eprintln!("flood: {answered} of 48 strangers answered (the rest throttled)");
    add_text(&p, None, "notes", "Written after the flood");
    let synced = json(&hearth(
        &p,
        &["sync", "--wait", "--timeout", "30", "--json"],
    ));
    assert_eq!(
        synced["in_sync"], true,
        "the patient was not served after a flood: {synced}"
    );
    assert!(
        stored(&ra) > before,
        "the patient's new note did not reach the relay"
    );

    // A wrong phrase: refused before anything is written. (The flood spent this address's
    // allowance of new connections, 16 at once and then one per 500 ms: wait until it is
    // back, so that the refusal is the phrase's and not a dial turned away.)
    std::thread::sleep(std::time::Duration::from_secs(8));
    let p2 = dir.path().join("p2");
    let wrong = "abandon ".repeat(23) + "art";
    let out = crate::common::binary(crate::common::PASS)
        .args(["--home", s(&p2), "recover", "--relay", &addr])
        .env("HEARTH_RECOVERY_PHRASE", &wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds no record for this recovery phrase"),
        "{err}"
    );
    assert!(!p2.join("node.json").exists());
    let st = json(&hearth(&ra, &["relay", "status", "--json"]));
    assert_eq!(
        st["records"], 1,
        "a wrong phrase made the relay keep a record: {st}"
    );

    // A damaged item of the record kept (the relay stopped): `relay status` lists the record
    // as unreadable, without failing.
    relay_d.stop();
    let id = st["hosted"][0]["record"].as_str().unwrap().to_string();
    {
        let home = hearth_node::home::Home::new(ra.clone());
        let vault = hearth_core::record::Vault::open(
            hearth_node::sled_store::SledStore::open(&home.store_dir()).unwrap(),
        )
        .unwrap();
        vault
            .put_local(&format!("hosted-used/{id}"), b"bad")
            .unwrap();
    }
    let st = json(&hearth(&ra, &["relay", "status", "--json"]));
    assert_eq!(st["records"], 1, "{st}");
    assert_eq!(st["hosted"][0]["record"], id.as_str(), "{st}");
    assert!(st["hosted"][0]["unreadable"].is_string(), "{st}");
    let text = ok(&hearth(&ra, &["relay", "status"]));
    assert!(text.contains("unreadable here"), "{text}");
}

#[test]
fn a_request_and_its_grant_travel_through_the_relays_mailboxes_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, p, g) = (
        dir.path().join("relay"),
        dir.path().join("p"),
        dir.path().join("g"),
    );
    let (_relay, addr) = relay(&ra, "Riverside Relay");
    let pid = init_patient(&p);
    let rid = record_of(&pid).to_string();
    add_text(&p, None, "notes", "Two falls at home this month");
    let _patient = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    ok(&hearth(&p, &["relay", "use", &addr]));
    init(&g, "professional", "Dr A. Shah");
    let _gp = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));

    // The GP knows only the record id and the relay: no token is pasted either way.
    let reason = "Follow-up after the falls clinic";
    let asked = json(&hearth(
        &g,
        &[
            "request",
            "--to",
            &rid,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "30d",
            "--reason",
            reason,
            "--via",
            &addr,
            "--json",
        ],
    ));
    let qid = asked["id"].as_str().unwrap().to_string();
    // What each node said, should a wait below time out.
    let said = || nodes_said(&[("patient", &p), ("GP", &g), ("relay", &ra)]);
    wait_for_else(
        "the request at the patient's node",
        30,
        || {
            let pending = json(&hearth(&p, &["requests", "--json"]));
            pending["pending"][0]["id"] == qid.as_str()
        },
        said,
    );
    let pending = json(&hearth(&p, &["requests", "--json"]));
    assert_eq!(pending["pending"][0]["reason"], reason, "{pending}");
    assert_eq!(pending["pending"][0]["name"], "Dr A. Shah", "{pending}");
    // The relay never saw the reason or the name: the letter was sealed to the record.
    for canary in [reason, "Dr A. Shah", "Edith Test", "Two falls"] {
        assert!(!contains(&ra, canary), "{canary:?} found at the relay");
    }

    ok(&hearth(&p, &["requests", "approve", &qid]));
    wait_for_else(
        "the grant accepted on the GP's node",
        30,
        || {
            let patients = json(&hearth(&g, &["patients", "--json"]));
            patients["patients"][0]["record_id"] == rid.as_str()
        },
        said,
    );
    let synced = json(&hearth(
        &g,
        &["sync", "--wait", "--timeout", "30", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    assert!(show(&g, &rid).contains("Two falls at home"));
    // A replayed letter changes nothing: the request is still answered once.
    let pending = json(&hearth(&p, &["requests", "--json"]));
    assert!(
        pending["pending"].as_array().unwrap().is_empty(),
        "{pending}"
    );
}

#[test]
fn after_a_revocation_the_remaining_grantee_reads_new_entries_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, p, g, w) = (
        dir.path().join("relay"),
        dir.path().join("p"),
        dir.path().join("g"),
        dir.path().join("w"),
    );
    let (_relay, addr) = relay(&ra, "Riverside Relay");
    let pid = init_patient(&p);
    let rid = record_of(&pid).to_string();
    add_text(&p, None, "notes", "Two falls at home this month");
    let patient = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    ok(&hearth(&p, &["relay", "use", &addr]));
    // Two grantees, each given a grant that carries its keys: the GP's to her card, the social
    // worker's to her bare peer id (wrapped to her device key's X25519 form), so the new keys
    // after the revocation reach her through the relay on that key too.
    let mut tokens = Vec::new();
    for (home, name, key) in [(&g, "Dr A. Shah", "card"), (&w, "Sam Okafor", "peer_id")] {
        init(home, "professional", name);
        let to = if key == "card" {
            json(&hearth(home, &["id", "--card", "--json"]))
        } else {
            json(&hearth(home, &["id", "--json"]))
        };
        let t = grant(&p, to[key].as_str().unwrap(), "notes", "read", "30d");
        assert_eq!(t["keys_included"], true, "{t}");
        let taken = json(&hearth(
            home,
            &["accept", t["token"].as_str().unwrap(), "--json"],
        ));
        assert!(taken["keys"].as_u64().unwrap() >= 2, "{taken}");
        tokens.push(t["id"].as_str().unwrap().to_string());
    }
    // The patient revokes the GP: notes move to a new key the GP never gets. Then she writes,
    // her node supplies the relay, and she goes offline.
    ok(&hearth(&p, &["grant", "revoke", &tokens[0]]));
    let before = stored(&ra);
    add_text(&p, None, "notes", "New carer starts on Monday");
    wait_for("the new note at the relay", 30, || stored(&ra) > before);
    std::thread::sleep(std::time::Duration::from_secs(2));
    patient.stop();

    // The social worker reads the new note through the relay: the new key came with it.
    let sw = Daemon::start(&w, Some("/ip4/127.0.0.1/tcp/0"));
    let synced = json(&hearth(
        &w,
        &["sync", "--wait", "--timeout", "30", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    let notes = show(&w, &rid);
    assert!(notes.contains("New carer starts on Monday"), "{notes}");
    // Her node reports that read through the relay too.
    let synced = json(&hearth(
        &w,
        &["sync", "--wait", "--timeout", "30", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    sw.stop();
    // The revoked GP gets nothing from the relay.
    let _gp = Daemon::start(&g, Some("/ip4/127.0.0.1/tcp/0"));
    let out = hearth(&g, &["sync", "--timeout", "15", "--json"]);
    let notes =
        String::from_utf8_lossy(&hearth(&g, &["record", "show", "notes", "--record", &rid]).stdout)
            .to_string();
    assert!(
        !notes.contains("New carer"),
        "the revoked GP read a new note: {notes}"
    );
    let _ = out;

    // The patient comes back: her audit shows what the relay served while she was offline,
    // receipted by the relay, and the social worker's read, handed on by the relay.
    let _patient = Daemon::start(&p, Some("/ip4/127.0.0.1/tcp/0"));
    let relay_peer = addr.rsplit('/').next().unwrap().to_string();
    let sw_peer = json(&hearth(&w, &["id", "--json"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gp_peer = json(&hearth(&g, &["id", "--json"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = Vec::new();
    wait_for(
        "the relay's receipt and the read in the patient's audit",
        40,
        || {
            let _ = hearth(&p, &["sync", "--with", &relay_peer, "--timeout", "10"]);
            events = json(&hearth(&p, &["audit", "--json"]))["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let served = events.iter().any(|e| {
                e["event"] == "served"
                    && e["by"] == relay_peer.as_str()
                    && e["to"] == sw_peer.as_str()
            });
            let read = events
                .iter()
                .any(|e| e["event"] == "read" && e["by"] == sw_peer.as_str());
            served && read
        },
    );
    let receipt = events
        .iter()
        .find(|e| e["event"] == "served" && e["by"] == relay_peer.as_str())
        .unwrap();
    assert!(
        receipt["by_name"]
            .as_str()
            .unwrap()
            .starts_with("the relay"),
        "{receipt}"
    );
    assert_eq!(receipt["purpose"], "direct-care", "{receipt}");
    assert!(receipt["reported_head"].as_u64().is_some(), "{receipt}");
    // Nothing was served to the revoked GP through the relay.
    assert!(
        !events
            .iter()
            .any(|e| e["by"] == relay_peer.as_str() && e["to"] == gp_peer.as_str()),
        "{events:?}"
    );
    let verified = hearth(&p, &["audit", "verify", "--json"]);
    assert!(verified.status.success(), "{}", ok(&verified));
}
