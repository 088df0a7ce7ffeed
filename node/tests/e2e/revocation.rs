//! Revocation end to end through the binary (issue 14): a patient and two grantees, a GP and a
//! nurse, as real `hearth` daemons on loopback. The patient revokes the nurse; new entries
//! reach the GP and never the nurse, whose node learns of its revocation while connected and
//! is refused by both the patient's node and the GP's; and, read from the stores on disk, the
//! nurse holds no bundle written from the revocation on, and no key it holds opens any bundle
//! written after it.

use crate::common::{
    Daemon, PASS, add_text, grant_accepted, hearth, init, init_patient, json, log_file, ok,
    peer_of, record_of, show, stranger, sync_in, wait_for,
};
use hearth_core::bundle::Bundle;
use hearth_core::crypto::SymmetricKey;
use hearth_core::grant::{self, Revocation};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::record::{KeyWrap, Vault};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{Message, SyncRequest, decode, encode};
use std::collections::BTreeSet;
use std::path::Path;

/// The daemon log of `home` from byte `from` on (see [`crate::common::log_file`]).
fn log_since(home: &Path, from: u64) -> String {
    let all = std::fs::read(home.with_extension("log")).unwrap_or_default();
    String::from_utf8_lossy(&all[usize::try_from(from).unwrap().min(all.len())..]).into_owned()
}

/// How long the daemon log of `home` is now.
fn log_len(home: &Path) -> u64 {
    log_file(home).metadata().unwrap().len()
}

/// The first listen address of a running daemon.
fn addr_of(d: &Daemon) -> String {
    d.file()["listen_addrs"][0].as_str().unwrap().to_string()
}

/// Whether the node at `home` (its daemon running) is connected to `peer`.
fn connected(home: &Path, peer: &str) -> bool {
    let st = json(&hearth(home, &["status", "--json"]));
    st["connected"]
        .as_array()
        .is_some_and(|c| c.iter().any(|p| p == peer))
}

/// The node's identity, unlocked with the test passphrase.
fn identity(home: &Path) -> Identity {
    hearth_node::home::Home::new(home.to_path_buf())
        .unlock(PASS.as_bytes())
        .unwrap()
}

/// The node's identity and its store (its daemon stopped), opened with the library.
fn open(home: &Path) -> (Identity, Vault<SledStore>) {
    let store = hearth_node::home::Home::new(home.to_path_buf()).store_dir();
    (
        identity(home),
        Vault::open(SledStore::open(&store).unwrap()).unwrap(),
    )
}

/// Every bundle `vault` holds of `record`, decoded.
fn all_bundles(vault: &Vault<SledStore>, record: &RecordId) -> Vec<Bundle> {
    let mut out = Vec::new();
    for (section, heads) in vault.held_sections(record).unwrap() {
        for author in heads.keys() {
            let mut budget = usize::MAX;
            for b in vault
                .bundles_from(record, &section, author, 1, &mut budget)
                .unwrap()
            {
                out.push(Bundle::decode(&b).unwrap());
            }
        }
    }
    out
}

/// Where a bundle sits: its section, author and position in the author's log.
fn position(b: &Bundle) -> (SectionId, PeerKey, u64) {
    let h = b.header();
    (h.section, h.author, h.seq)
}

/// The section keys `identity` holds in `record`: every wrap in its store's keyring addressed
/// to its agreement key, signed by the record root and opened with its secret.
fn keys_of(vault: &Vault<SledStore>, identity: &Identity, record: &RecordId) -> Vec<SymmetricKey> {
    wraps_to(vault, identity, record)
        .iter()
        .filter(|w| w.verify())
        .map(|w| {
            let secret = identity.opening_secret(&w.recipient.into_array()).unwrap();
            w.open(secret).unwrap()
        })
        .collect()
}

/// Every key wrap of `record` in `vault` addressed to `identity`: to its agreement key, or to
/// its device key's X25519 form (a grant made to its bare peer id).
fn wraps_to(vault: &Vault<SledStore>, identity: &Identity, record: &RecordId) -> Vec<KeyWrap> {
    [
        identity.agreement_public(),
        identity.device_agreement_public(),
    ]
    .iter()
    .flat_map(|k| vault.key_wraps_to(record, k).unwrap())
    .collect()
}

/// The newest key epoch of `section` among the wraps addressed to `identity`.
fn newest_epoch(
    vault: &Vault<SledStore>,
    identity: &Identity,
    record: &RecordId,
    section: &SectionId,
) -> Option<u32> {
    wraps_to(vault, identity, record)
        .iter()
        .filter(|w| w.section == *section)
        .map(|w| w.epoch)
        .max()
}

/// A sync request from the nurse, hand-built as a hostile node would send it: it claims to
/// hold nothing and no key, and presents its (revoked) grant.
fn hostile_request(nurse: &Path, record: RecordId, token: &str) -> Vec<u8> {
    let identity = identity(nurse);
    let chain = grant::chain_from_token(token).unwrap();
    encode(&Message::Request(SyncRequest {
        v: 1,
        record,
        card: grant::request::card(&identity).unwrap().envelope().clone(),
        grants: vec![serde_bytes::ByteBuf::from(grant::chain_to_bytes(&chain))],
        have: Vec::new(),
        keys: Vec::new(),
        push: Vec::new(),
        audit: Vec::new(),
        audit_head: None,
        emergency: None,
    }))
}

#[test]
fn after_a_revocation_new_entries_reach_the_gp_and_neither_reach_nor_open_for_the_nurse() {
    let dir = tempfile::tempdir().unwrap();
    let (p, g, n) = (
        dir.path().join("p"),
        dir.path().join("g"),
        dir.path().join("n"),
    );
    let pid = init_patient(&p);
    let gid = init(&g, "professional", "Dr A. Shah");
    let nid = init(&n, "professional", "Sam Okafor");
    let (rid, pp, gp) = (
        record_of(&pid).to_string(),
        peer_of(&pid).to_string(),
        peer_of(&gid).to_string(),
    );
    let record: RecordId = rid.parse().unwrap();
    add_text(&p, None, "notes", "BEFORE-1 Two falls at home this month");
    let dp = Daemon::start(&p, None);
    grant_accepted(&p, &g, &gid, "notes", "read", "30d");
    let nurse_grant = grant_accepted(&p, &n, &nid, "notes", "read", "30d");
    let nurse_token = nurse_grant["token"].as_str().unwrap().to_string();
    let dg = Daemon::start(&g, None);
    let dn = Daemon::start(&n, None);
    sync_in(&g, Some(&pp));
    sync_in(&n, Some(&pp));
    // A grantee can serve another: the nurse knows the GP's node too, and syncs with it.
    ok(&hearth(&n, &["peers", "add", &gp, &addr_of(&dg)]));
    sync_in(&n, Some(&gp));
    wait_for("the nurse connected to both", 30, || {
        connected(&n, &pp) && connected(&n, &gp)
    });

    // While she may read, an edit is pushed to her connected node.
    let before_edit = log_len(&n);
    add_text(&p, None, "notes", "BEFORE-2 Started on a walking frame");
    wait_for("the edit at the nurse's node", 30, || {
        show(&n, &rid).contains("BEFORE-2")
    });
    assert!(
        log_since(&n, before_edit).contains("received"),
        "the nurse's node logged no bundle received before the revocation"
    );
    for home in [&g, &n] {
        let shown = show(home, &rid);
        assert!(shown.contains("BEFORE-1") && shown.contains("BEFORE-2"));
    }

    // The patient revokes the nurse's grant: notes and the auth document move to new keys.
    let at_revocation = hearth_node::os::now();
    let revoked = json(&hearth(
        &p,
        &[
            "grant",
            "revoke",
            nurse_grant["id"].as_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(revoked["sections_rekeyed"], 2, "{revoked}");
    let after_revocation = hearth_node::os::now();
    let since_revocation = log_len(&n);

    // The nurse's running node learns its own revocation at its next round, still connected.
    wait_for("the nurse's node to learn its revocation", 30, || {
        let v = hearth(&n, &["grant", "verify", &nurse_token]);
        !v.status.success() && String::from_utf8_lossy(&v.stderr).contains("revoked")
    });
    assert!(
        connected(&n, &pp),
        "the nurse's node is no longer connected"
    );
    let list = ok(&hearth(&n, &["grant", "list"]));
    assert!(list.contains("[revoked]"), "{list}");

    // New entries: the GP receives them (pushed, under the new key it was sent).
    for text in [
        "AFTER-1 Carer starts on Monday",
        "AFTER-2 Key safe code changed",
    ] {
        add_text(&p, None, "notes", text);
    }
    wait_for("the new entries at the GP", 30, || {
        show(&g, &rid).contains("AFTER-2")
    });
    sync_in(&g, Some(&pp));
    let gp_shown = show(&g, &rid);
    assert!(gp_shown.contains("AFTER-1") && gp_shown.contains("AFTER-2"));

    // The nurse's node keeps trying, connected, and is refused every time; it receives
    // nothing. Two more refused rounds after the GP had the entries.
    let after_entries = log_len(&n);
    wait_for("two more refused rounds at the nurse's node", 30, || {
        log_since(&n, after_entries)
            .matches("sync round failed")
            .count()
            >= 2
    });
    let since = log_since(&n, since_revocation);
    assert!(
        !since.contains("received"),
        "the nurse's node received bundles after the revocation:\n{since}"
    );
    assert!(since.contains("record not available"), "{since}");
    let shown = show(&n, &rid);
    assert!(
        !shown.contains("AFTER-"),
        "a new entry reached the nurse: {shown}"
    );
    assert!(shown.contains("BEFORE-2"), "what she synced stays: {shown}");
    // Asked by hand, both the patient's node and the GP's refuse her.
    for peer in [&pp, &gp] {
        let out = hearth(&n, &["sync", "--with", peer, "--wait", "--json"]);
        assert!(!out.status.success(), "the nurse synced with {peer}");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("record not available"), "{said}");
    }
    assert!(!show(&n, &rid).contains("AFTER-"));
    dn.stop();

    // Turned hostile, her node asks both for everything, claiming to hold nothing: refused,
    // with no bundle, snapshot or key; the patient's node hands her the signed revocation.
    let frame = hostile_request(&n, record, &nurse_token);
    for (d, peer) in [(&dp, &pp), (&dg, &gp)] {
        let answers = stranger::send_as(
            stranger::keypair_of(&n),
            peer.parse().unwrap(),
            addr_of(d).parse().unwrap(),
            vec![frame.clone()],
        );
        let Message::Response(resp) = decode(answers[0].as_ref().expect("answered")).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(resp.refused.as_deref(), Some("record not available"));
        assert!(resp.bundles.is_empty() && resp.snapshots.is_empty() && resp.wraps.is_empty());
        let revocations: Vec<Revocation> = resp
            .revocations
            .iter()
            .map(|b| Revocation::from_bytes(b).unwrap())
            .collect();
        assert!(
            revocations.iter().all(|r| r.verify() && r.record == record),
            "{peer}"
        );
        assert_eq!(revocations.len(), 1, "{peer}: the signed revocation");
    }
    dg.stop();
    dp.stop();

    // From the stores on disk: what the GP holds written from the revocation on, the nurse
    // does not hold at all.
    let (gp_id, gp_vault) = open(&g);
    let (nurse_id, nurse_vault) = open(&n);
    let gp_bundles = all_bundles(&gp_vault, &record);
    let from_revocation: Vec<&Bundle> = gp_bundles
        .iter()
        .filter(|b| b.header().time >= at_revocation)
        .collect();
    let nurse_bundles = all_bundles(&nurse_vault, &record);
    let nurse_positions: BTreeSet<_> = nurse_bundles.iter().map(position).collect();
    for b in &from_revocation {
        assert!(
            !nurse_positions.contains(&position(b)),
            "the nurse holds a bundle written at or after the revocation: {:?}",
            b.header()
        );
    }
    // The revocation and the key move (auth), and the two new notes.
    assert!(from_revocation.len() >= 4, "{}", from_revocation.len());

    // The cryptographic part: the keys the nurse holds open what she had, and none of the
    // bundles written after the revocation, all under epochs she was never given; the GP's
    // keys open them all.
    let nurse_keys = keys_of(&nurse_vault, &nurse_id, &record);
    let gp_keys = keys_of(&gp_vault, &gp_id, &record);
    let opens = |keys: &[SymmetricKey], b: &Bundle| keys.iter().any(|k| b.open(k).is_ok());
    assert!(!nurse_bundles.is_empty());
    assert!(
        nurse_bundles.iter().all(|b| opens(&nurse_keys, b)),
        "the nurse's keys do not open what she holds: the check below would prove nothing"
    );
    let after: Vec<&Bundle> = gp_bundles
        .iter()
        .filter(|b| b.header().time >= after_revocation)
        .collect();
    assert!(after.len() >= 2, "the two new notes: {}", after.len());
    for b in &after {
        let h = b.header();
        assert!(opens(&gp_keys, b), "the GP cannot open {h:?}");
        assert!(!opens(&nurse_keys, b), "the nurse's keys open {h:?}");
        let nurse_newest = newest_epoch(&nurse_vault, &nurse_id, &record, &h.section);
        assert!(
            nurse_newest.is_none_or(|e| e < h.epoch),
            "the nurse holds epoch {nurse_newest:?} of a section written at epoch {}",
            h.epoch
        );
    }
}
