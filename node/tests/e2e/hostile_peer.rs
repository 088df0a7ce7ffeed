//! Hostile peers over real libp2p on loopback against a real daemon: a stranger that sends
//! `Notify`, a `relay` grantee asking for everything, a revoked grantee (issue 11: 4, 11, 12).

use crate::common::{
    Daemon, PASS, Pair, grant, hearth, init, init_patient, json, ok, stranger, sync_in, wait_for,
    wait_for_else,
};
use hearth_core::grant::{self, Ability, Purpose};
use hearth_sync::protocol::{Message, Notify, SyncRequest, decode, encode};
use std::path::Path;
use std::time::Duration;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn add_note(home: &Path, text: &str) {
    ok(&hearth(
        home,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            &format!(r#"{{"text": "{text}"}}"#),
        ],
    ));
}

fn target(d: &Daemon, init: &serde_json::Value) -> (libp2p::PeerId, libp2p::Multiaddr) {
    (
        init["peer_id"].as_str().unwrap().parse().unwrap(),
        d.file()["listen_addrs"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

#[test]
fn a_strangers_notify_draws_no_request_and_the_same_answer_for_any_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    let pid = init_patient(&p);
    add_note(&p, "CANARY-notify");
    let d = Daemon::start(&p, None);
    let (peer, addr) = target(&d, &pid);
    let rid: hearth_core::ids::RecordId = pid["record_id"].as_str().unwrap().parse().unwrap();
    let made_up = hearth_core::ids::RecordId([7; 32]);
    let notify = |record| {
        encode(&Message::Notify(Notify {
            record,
            push: Vec::new(),
        }))
    };
    // Notify for the patient's record and for a made-up one, then stay connected through more
    // than two background rounds (every 2 s).
    let (answers, inbound) = stranger::send_and_listen(
        libp2p::identity::Keypair::generate_ed25519(),
        peer,
        addr,
        vec![notify(rid), notify(made_up)],
        Duration::from_secs(6),
    );
    assert!(
        inbound.is_empty(),
        "the node sent a stranger {} requests",
        inbound.len()
    );
    let acks: Vec<Message> = answers
        .iter()
        .map(|a| decode(a.as_ref().expect("acknowledged")).unwrap())
        .collect();
    assert_eq!(
        acks,
        vec![
            Message::Notify(Notify {
                record: rid,
                push: Vec::new()
            }),
            Message::Notify(Notify {
                record: made_up,
                push: Vec::new()
            }),
        ]
    );
    let got: Vec<u8> = answers.into_iter().flatten().flatten().collect();
    for c in ["CANARY-notify", "Edith", "Test"] {
        assert!(!contains(&got, c), "the stranger received {c}");
    }
    // No session with the stranger is reported either.
    let st = json(&hearth(&p, &["status", "--json"]));
    assert!(st["sessions"].as_array().unwrap().is_empty(), "{st}");
    d.stop();
}

#[test]
fn a_relay_grantee_asking_for_everything_gets_no_key_and_approval_embeds_none() {
    let dir = tempfile::tempdir().unwrap();
    let (p, g) = (dir.path().join("p"), dir.path().join("g"));
    let pid = init_patient(&p);
    init(&g, "professional", "Rel Ay");
    add_note(&p, "CANARY-relay");
    let d = Daemon::start(&p, None);
    let rid: hearth_core::ids::RecordId = pid["record_id"].as_str().unwrap().parse().unwrap();
    // A hand-built access request for `relay` (the CLI offers only read and append).
    let g_id = hearth_node::home::Home::new(g.clone())
        .unlock(PASS.as_bytes())
        .unwrap();
    let t = hearth_core::time::Timestamp::from_millis(jiff::Timestamp::now().as_millisecond());
    let req = grant::request::request(
        &g_id,
        grant::request::RequestSpec {
            record: rid,
            scopes: grant::scopes(&"notes".parse().unwrap(), Ability::Relay),
            purpose: Purpose::DirectCare,
            duration_ms: 86_400_000,
            reason: "relay".into(),
            answer_within_ms: 86_400_000,
        },
        None,
        t,
        &mut hearth_core::test_utils::TestRng::new(11),
    )
    .unwrap();
    let added = json(&hearth(&p, &["requests", "add", &req.to_token(), "--json"]));
    let approved = json(&hearth(
        &p,
        &[
            "requests",
            "approve",
            added["id"].as_str().unwrap(),
            "--json",
        ],
    ));
    let chain = grant::chain_from_token(approved["token"].as_str().unwrap()).unwrap();
    assert!(
        chain.iter().all(|x| x.body().keys.is_empty()),
        "a relay grant embeds key wraps"
    );
    // The relay grantee, turned hostile, asks for everything: it claims no keys and nothing
    // held, and presents its grant.
    let sync_req = SyncRequest {
        v: 1,
        record: rid,
        card: grant::request::card(&g_id).unwrap().envelope().clone(),
        grants: vec![serde_bytes::ByteBuf::from(grant::chain_to_bytes(&chain))],
        have: Vec::new(),
        keys: Vec::new(),
        push: Vec::new(),
        audit: Vec::new(),
        audit_head: None,
        emergency: None,
    };
    let (peer, addr) = target(&d, &pid);
    let answers = stranger::send_as(
        stranger::keypair_of(&g),
        peer,
        addr,
        vec![encode(&Message::Request(sync_req))],
    );
    let bytes = answers[0].as_ref().expect("answered");
    let Message::Response(resp) = decode(bytes).unwrap() else {
        panic!("not a response")
    };
    assert!(resp.wraps.is_empty(), "a relay grantee received key wraps");
    assert!(resp.bundles.is_empty() && resp.snapshots.is_empty());
    for c in ["CANARY-relay", "Edith"] {
        assert!(!contains(bytes, c));
    }
    d.stop();
}

#[test]
fn a_revoked_or_expired_grant_shows_as_such_on_the_grantees_node() {
    let Pair {
        dir: _dir,
        p,
        g,
        pp,
        gp,
        ..
    } = Pair::new("Dr Gee");
    add_note(&p, "CANARY-revoked");
    let dp = Daemon::start(&p, None);
    let issue = |expires: &str| grant(&p, &gp, "notes", "read", expires);
    // A grant that expires in a second (shown "expired" once past the 60 s tolerance).
    let short = issue("1s");
    let short_token = short["token"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let long = issue("1d");
    let token = long["token"].as_str().unwrap().to_string();
    ok(&hearth(&g, &["accept", &token]));
    ok(&hearth(&g, &["accept", &short_token]));
    let dg = Daemon::start(&g, None);
    sync_in(&g, Some(&pp));
    ok(&hearth(&g, &["grant", "verify", &token]));

    ok(&hearth(
        &p,
        &["grant", "revoke", long["id"].as_str().unwrap()],
    ));
    // The grantee's next round is refused, with the signed revocation of its own grant.
    let _ = hearth(&g, &["sync", "--with", &pp, "--wait", "--json"]);
    let v = hearth(&g, &["grant", "verify", &token]);
    assert!(!v.status.success(), "a revoked grant verifies");
    let words =
        String::from_utf8_lossy(&v.stderr).to_string() + &String::from_utf8_lossy(&v.stdout);
    assert!(words.contains("revoked"), "{words}");
    let list = ok(&hearth(&g, &["grant", "list"]));
    assert!(list.contains("[revoked]"), "{list}");
    let patients = json(&hearth(&g, &["patients", "--json"]));
    assert!(patients.to_string().contains("\"revoked\""), "{patients}");
    let status = json(&hearth(&g, &["status", "--json"]));
    assert!(status["grants"].to_string().contains("revoked"), "{status}");

    // The short grant, by the local clock.
    wait_for("the short grant to expire", 90, || {
        started.elapsed() > Duration::from_secs(62)
    });
    let list = ok(&hearth(&g, &["grant", "list"]));
    assert!(list.contains("[expired]"), "{list}");
    let v = hearth(&g, &["grant", "verify", &short_token]);
    assert!(!v.status.success());
    assert!(String::from_utf8_lossy(&v.stderr).contains("expired"));
    dg.stop();
    dp.stop();
}

/// Text that does not compress: `n` pseudo-random letters and digits.
fn noise(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize];
            c as char
        })
        .collect()
}

#[test]
fn a_strangers_large_frame_is_refused_while_a_grantees_large_push_syncs() {
    let Pair {
        dir: _dir,
        p,
        g,
        pid,
        gid,
        rid,
        pp,
        ..
    } = Pair::new("Dr Gee");
    let d = Daemon::start(&p, None);
    let granted = grant(
        &p,
        gid["peer_id"].as_str().unwrap(),
        "notes",
        "append",
        "1d",
    );
    ok(&hearth(&g, &["accept", granted["token"].as_str().unwrap()]));
    sync_in(&g, Some(&pp));

    // A stranger's well-formed notification carrying ~900 KiB: refused before it is read
    // (a stranger's frames are small); a small one is still answered.
    let (peer, addr) = target(&d, &pid);
    let record: hearth_core::ids::RecordId = rid.parse().unwrap();
    let big = encode(&Message::Notify(Notify {
        record,
        push: vec![serde_bytes::ByteBuf::from(vec![0u8; 900 * 1024])],
    }));
    let small = encode(&Message::Notify(Notify {
        record,
        push: Vec::new(),
    }));
    let answers = stranger::send(peer, addr.clone(), vec![big.clone(), small]);
    assert!(answers[0].is_err(), "a stranger's large frame was read");
    assert!(answers[1].is_ok(), "{:?}", answers[1]);
    // The same frame from the grantee's key is read (and acknowledged): it is known here.
    let answers = stranger::send_as(stranger::keypair_of(&g), peer, addr, vec![big]);
    assert!(
        answers[0].is_ok(),
        "a grantee's large frame was refused: {:?}",
        answers[0]
    );

    // The grantee writes ~600 KB offline (~380 KB compressed, above a stranger's frame
    // limit); its next sync brings it to the patient's node.
    for i in 0..60u64 {
        let text = format!("CANARY-big-{i} {}", noise(i, 9_900));
        ok(&hearth(
            &g,
            &[
                "record",
                "add",
                "notes",
                "--record",
                &rid,
                "--entry",
                &serde_json::json!({ "text": text }).to_string(),
            ],
        ));
    }
    // The grantee's own sync carries them: the patient's node offers notes, which it holds
    // nothing in (it was created for the grant), so that they need not wait for the patient's
    // node to pull.
    let synced = sync_in(&g, Some(&pp));
    let shown = |p: &Path| hearth(p, &["record", "show", "--record", &rid, "--json"]).stdout;
    wait_for_else(
        "the grantee's entries at the patient",
        30,
        || {
            let out = shown(&p);
            contains(&out, "CANARY-big-59") && contains(&out, "CANARY-big-0 ")
        },
        || {
            let n = String::from_utf8_lossy(&shown(&p))
                .matches("CANARY-big-")
                .count();
            let log = std::fs::read_to_string(p.with_extension("log")).unwrap_or_default();
            format!("{n} shown; the grantee's sync: {synced}\nthe patient's daemon log:\n{log}")
        },
    );
    d.stop();
}
