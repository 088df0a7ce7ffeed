//! A grantee turned hostile: a professional holding a real `append` grant sends the patient's
//! daemon hand-built bundles over real libp2p on loopback (its own device key, its own section
//! key), and the patient's node must refuse what breaks the rules, keep the section readable
//! and show who wrote what from verified facts only.

use crate::common::{Daemon, PASS, Pair, add_text, grant, hearth, json, ok, stranger, wait_for};
use automerge::transaction::Transactable;
use hearth_core::bundle::Bundle;
use hearth_core::entry::{EntryStatus, EntryVersion, Provenance};
use hearth_core::ids::{EntryId, PeerKey, RecordId};
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::section::{SectionClass, SectionName};
use hearth_core::test_utils::TestRng;
use hearth_core::time::Timestamp;
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{Message, Notify, encode};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A patient with a notes entry and a running daemon, and a professional who holds an `append`
/// grant on notes and has synced once (so it holds the section key).
struct Granted {
    _dir: tempfile::TempDir,
    p: PathBuf,
    g: PathBuf,
    rid: RecordId,
    daemon: Daemon,
    peer: libp2p::PeerId,
    addr: libp2p::Multiaddr,
}

fn granted() -> Granted {
    let Pair {
        dir,
        p,
        g,
        rid,
        pp,
        gp,
        ..
    } = Pair::new("Dr Real");
    add_text(&p, None, "notes", "the patient's own note");
    let daemon = Daemon::start(&p, None);
    let grant = grant(&p, &gp, "notes", "append", "1d");
    ok(&hearth(&g, &["accept", grant["token"].as_str().unwrap()]));
    let synced = json(&hearth(
        &g,
        &["sync", "--with", &pp, "--wait", "--timeout", "60", "--json"],
    ));
    assert_eq!(synced["in_sync"], true, "{synced}");
    let addr = daemon.file()["listen_addrs"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Granted {
        _dir: dir,
        rid: rid.parse().unwrap(),
        peer: pp.parse().unwrap(),
        addr,
        daemon,
        p,
        g,
    }
}

fn notes() -> SectionName {
    "notes".parse().unwrap()
}

/// An entry version of `class` by `author`, claiming `name`, `role` and `at`.
fn version(
    author: PeerKey,
    class: SectionClass,
    body: Value,
    name: &str,
    role: Role,
    at: Timestamp,
    seed: u64,
) -> EntryVersion {
    EntryVersion {
        id: EntryId::generate(&mut TestRng::new(seed)),
        class,
        version: 1,
        supersedes: None,
        status: EntryStatus::Final,
        status_reason: None,
        body,
        provenance: Provenance {
            author,
            author_name: name.into(),
            author_role: role,
            recorded_at: at,
            purpose: None,
        },
    }
}

/// The raw (uncompressed) automerge changes by `actor`, one per item of `each`, each after the
/// one before (numbered 1, 2, …).
fn changes(actor: PeerKey, each: &[EntryVersion]) -> Vec<Vec<u8>> {
    let mut d = automerge::AutoCommit::new().with_actor(automerge::ActorId::from(actor.0));
    let mut out = Vec::new();
    for v in each {
        d.put(
            automerge::ROOT,
            format!("e/{}", v.id),
            serde_json::to_string(v).unwrap(),
        )
        .unwrap();
        d.commit();
        out.push(d.get_last_local_change().unwrap().raw_bytes().to_vec());
    }
    out
}

/// Seals each payload as the grantee's next bundle in notes (from `first_seq`, chained), with
/// the grantee's own keys, read from its home (its daemon is not running).
fn seal_as_grantee(g: &Path, rid: &RecordId, first_seq: u64, payloads: &[Vec<u8>]) -> Vec<Bundle> {
    let home = hearth_node::home::Home::new(g.to_path_buf());
    let identity: Identity = home.unlock(PASS.as_bytes()).unwrap();
    let vault = Vault::open(SledStore::open(&home.store_dir()).unwrap()).unwrap();
    let rec = vault.open_record(&identity, rid).unwrap();
    let mut prev = None;
    let mut out = Vec::new();
    let mut rng = TestRng::new(first_seq);
    for (i, payload) in payloads.iter().enumerate() {
        let b = rec
            .seal_raw_for_tests(
                &notes(),
                first_seq + i as u64,
                prev,
                payload,
                hearth_node::os::now(),
                &mut rng,
            )
            .unwrap();
        prev = Some(b.hash());
        out.push(b);
    }
    out
}

fn grantee_key(g: &Path) -> PeerKey {
    let home = hearth_node::home::Home::new(g.to_path_buf());
    home.unlock(PASS.as_bytes()).unwrap().peer()
}

/// Pushes `bundles` to the patient's daemon as the grantee, in a `Notify`.
fn push(w: &Granted, bundles: &[Bundle]) {
    let frame = encode(&Message::Notify(Notify {
        record: w.rid,
        push: bundles
            .iter()
            .map(|b| ByteBuf::from(b.encoded().to_vec()))
            .collect(),
    }));
    let answers = stranger::send_as(
        stranger::keypair_of(&w.g),
        w.peer,
        w.addr.clone(),
        vec![frame],
    );
    assert!(answers[0].is_ok(), "{answers:?}");
}

fn show_notes(p: &Path) -> Value {
    json(&hearth(p, &["record", "show", "notes", "--json"]))
}

fn texts(show: &Value) -> Vec<String> {
    show["sections"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_grantee_bundle_reusing_its_actor_seq_is_refused_and_the_section_stays_readable() {
    let w = granted();
    let me = grantee_key(&w.g);
    let now = hearth_node::os::now();
    let honest = version(
        me,
        SectionClass::Notes,
        json!({"text": "HONEST-1"}),
        "Dr Real",
        Role::Professional,
        now,
        1,
    );
    let reused = version(
        me,
        SectionClass::Notes,
        json!({"text": "REUSED-SEQ-2"}),
        "Dr Real",
        Role::Professional,
        now,
        2,
    );
    // Bundle 1 carries change (grantee, 1); bundle 2 carries another change (grantee, 1).
    let bundles = seal_as_grantee(
        &w.g,
        &w.rid,
        1,
        &[
            changes(me, &[honest]).remove(0),
            changes(me, &[reused]).remove(0),
        ],
    );
    push(&w, &bundles);
    wait_for("the honest bundle", 30, || {
        texts(&show_notes(&w.p)).contains(&"HONEST-1".to_string())
    });
    let shown = show_notes(&w.p);
    let t = texts(&shown);
    assert!(t.contains(&"the patient's own note".to_string()), "{shown}");
    assert!(!t.contains(&"REUSED-SEQ-2".to_string()), "{shown}");
    assert_eq!(shown["unapplied"], json!([]), "{shown}");
    // Still readable after a restart (nothing half-applied was stored).
    w.daemon.stop();
    let again = show_notes(&w.p);
    assert!(texts(&again).contains(&"HONEST-1".to_string()), "{again}");
}

#[test]
fn a_compressed_change_bomb_is_refused_without_the_memory() {
    let w = granted();
    let me = grantee_key(&w.g);
    let now = hearth_node::os::now();
    // 48 MiB of text that deflates to well under 1 MiB.
    let big = version(
        me,
        SectionClass::Notes,
        json!({"text": format!("BOMB-{}", "a".repeat(48 << 20))}),
        "Dr Real",
        Role::Professional,
        now,
        3,
    );
    let mut d = automerge::AutoCommit::new().with_actor(automerge::ActorId::from(me.0));
    d.put(
        automerge::ROOT,
        format!("e/{}", big.id),
        serde_json::to_string(&big).unwrap(),
    )
    .unwrap();
    d.commit();
    let mut c = d.get_last_local_change().unwrap().clone();
    let compressed = c.bytes().to_vec();
    drop(d);
    assert!(compressed.len() < 1 << 20, "{} bytes", compressed.len());
    let small = version(
        me,
        SectionClass::Notes,
        json!({"text": "AFTER-BOMB"}),
        "Dr Real",
        Role::Professional,
        now,
        4,
    );
    let bomb = seal_as_grantee(&w.g, &w.rid, 1, &[compressed]);
    let pid = w.daemon.pid();
    let peak = || -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        st.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = peak();
    push(&w, &bomb);
    // Then a good bundle 1 from the same grantee: once it shows, the bomb was handled.
    let good = seal_as_grantee(&w.g, &w.rid, 1, &changes(me, &[small]));
    push(&w, &good);
    wait_for("the bundle after the bomb", 30, || {
        texts(&show_notes(&w.p)).contains(&"AFTER-BOMB".to_string())
    });
    let grown_kib = peak().saturating_sub(before);
    assert!(
        grown_kib < 24 * 1024,
        "the daemon's peak memory grew by {grown_kib} KiB"
    );
    assert!(!show_notes(&w.p).to_string().contains("BOMB-aaaa"));
    w.daemon.stop();
}

#[test]
fn a_grantees_claimed_name_role_and_time_are_shown_as_claims() {
    let w = granted();
    let me = grantee_key(&w.g);
    let long_ago = Timestamp::from_millis(978_307_200_000); // 2001-01-01
    let claim = version(
        me,
        SectionClass::Notes,
        json!({"text": "CLAIMED-ENTRY"}),
        "Dr Someone Else",
        Role::Patient,
        long_ago,
        5,
    );
    // An entry of another class than its section's is refused whatever it claims.
    let wrong_class = version(
        me,
        SectionClass::Allergies,
        json!({"substance": "WRONG-CLASS", "reaction": "rash"}),
        "Dr Real",
        Role::Professional,
        long_ago,
        6,
    );
    let bundles = seal_as_grantee(&w.g, &w.rid, 1, &changes(me, &[claim, wrong_class]));
    let sent = hearth_node::os::now();
    push(&w, &bundles);
    wait_for("the claimed entry", 30, || {
        texts(&show_notes(&w.p)).contains(&"CLAIMED-ENTRY".to_string())
    });
    let shown = show_notes(&w.p);
    assert!(!shown.to_string().contains("WRONG-CLASS"), "{shown}");
    let e = shown["sections"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["body"]["text"] == "CLAIMED-ENTRY")
        .unwrap()
        .clone();
    // What the writer said is a claim; what the node verified is the key and the receipt time.
    assert_eq!(e["provenance"]["author_name"], "Dr Someone Else", "{e}");
    for field in ["author_name", "author_role", "recorded_at"] {
        assert!(
            e["claimed"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("provenance.{field}"))),
            "{e}"
        );
    }
    assert_eq!(e["verified"]["author"], json!(me), "{e}");
    assert_eq!(e["verified"]["basis"], "unverified", "{e}");
    assert!(e["verified"].get("name").is_none(), "{e}");
    let received: Timestamp = serde_json::from_value(e["verified"]["received_at"].clone()).unwrap();
    assert!(
        received.as_millis() >= sent.as_millis() - 60_000,
        "received {received:?}, sent {sent:?}"
    );
    // The patient's own entry is attributed to the patient's device.
    let own = shown["sections"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["body"]["text"] == "the patient's own note")
        .unwrap()
        .clone();
    assert_eq!(own["verified"]["basis"], "patient-device", "{own}");
    // The text says the same: the key, unverified, and the claims as claims.
    let text = ok(&hearth(&w.p, &["record", "show", "notes"]));
    assert!(text.contains(&format!("unverified key {me}")), "{text}");
    assert!(
        text.contains("claims (unchecked): \"Dr Someone Else\""),
        "{text}"
    );
    assert!(
        !text.contains("2001-01-01T00:00:00Z  Dr Someone Else"),
        "{text}"
    );
    let history = json(&hearth(&w.p, &["record", "history", "notes", "--json"]));
    let h = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["body"]["text"] == "CLAIMED-ENTRY")
        .unwrap()
        .clone();
    assert_eq!(h["verified"]["author"], json!(me), "{h}");
    assert_eq!(h["provenance"]["recorded_at"], json!(long_ago), "{h}");
    assert!(
        h["claimed"]
            .as_array()
            .unwrap()
            .contains(&json!("provenance.recorded_at")),
        "{h}"
    );
    w.daemon.stop();
}

#[test]
fn a_grantees_own_sync_whose_push_is_refused_stops_waiting_and_says_so() {
    let w = granted();
    // The grantee's node holds a change the patient's node will refuse: an item that is no
    // entry, written straight into its own store (as a modified node would).
    {
        let home = hearth_node::home::Home::new(w.g.clone());
        let identity: Identity = home.unlock(PASS.as_bytes()).unwrap();
        let vault = Vault::open(SledStore::open(&home.store_dir()).unwrap()).unwrap();
        let mut rec = vault.open_record(&identity, &w.rid).unwrap();
        rec.append_raw_for_tests(
            &notes(),
            vec![("x/not-an-entry".into(), "{}".into())],
            hearth_node::os::now(),
            &mut TestRng::new(7),
        )
        .unwrap();
    }
    let pp = w.peer.to_string();
    let started = std::time::Instant::now();
    let out = hearth(
        &w.g,
        &[
            "sync",
            "--with",
            &pp,
            "--wait",
            "--timeout",
            "300",
            "--json",
        ],
    );
    // Refused: not in sync, and said at once rather than after the whole wait.
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(started.elapsed().as_secs() < 150, "{:?}", started.elapsed());
    let synced: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(synced["in_sync"], false, "{synced}");
    assert_eq!(synced["sessions"][0]["rejected"], 1, "{synced}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused 1 change(s) this node sent"), "{err}");
    assert!(!err.contains("not-an-entry"), "{err}");
    // The patient's section is as it was.
    assert_eq!(texts(&show_notes(&w.p)), vec!["the patient's own note"]);
    w.daemon.stop();
}
