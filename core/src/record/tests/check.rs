//! `check_store` and `repair_store` on a memory store damaged on purpose: flipped bytes in a
//! bundle, a bundle missing below its head, a garbage ledger item, a value cut short.

use crate::ids::SectionId;
use crate::ledger::{Key, PeerAddrs};
use crate::record::layout::{LogId, Stored, k_bundle, k_quarantine, local_key, parse};
use crate::record::{Vault, check_store, repair_store};
use crate::section::SectionName;
use crate::store::{Batch, MemoryStore, Store};
use crate::test_utils::{TEST_NOW, TestRng, patient_record};

fn notes() -> SectionName {
    "notes".parse().unwrap()
}

/// A patient's record with four notes entries, the patient, and the notes section's log.
fn setup(seed: u64) -> (Vault<MemoryStore>, crate::keys::Identity, LogId) {
    let mut rng = TestRng::new(seed);
    let vault = Vault::new(MemoryStore::new());
    let (patient, rid) = patient_record(&vault, "Edith Example", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    for i in 0..4 {
        rec.add_entry(
            &notes(),
            &serde_json::json!({ "text": format!("note {i}") }),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    }
    drop(rec);
    let log = vault
        .store()
        .scan(&[], &[0xff])
        .unwrap()
        .into_iter()
        .filter_map(|(k, _)| match parse(&k) {
            Stored::Bundle(l, 4) if l.section != SectionId::AUTH => Some(l),
            _ => None,
        })
        .next()
        .expect("the notes log");
    (vault, patient, log)
}

fn key(l: &LogId, seq: u64) -> Vec<u8> {
    k_bundle(&l.record, &l.section, &l.author, seq)
}

fn put(store: &MemoryStore, k: Vec<u8>, v: Vec<u8>) {
    let mut b = Batch::new();
    b.put(k, v);
    store.commit(b).unwrap();
}

/// The notes entries the patient reads after a fresh open (a new vault: nothing kept).
fn notes_read(store: &MemoryStore, patient: &crate::keys::Identity, l: &LogId) -> usize {
    let vault = Vault::new(store.clone());
    let mut rec = vault.open_record(patient, &l.record).unwrap();
    rec.show(&notes()).unwrap().entries.len()
}

#[test]
fn an_intact_store_checks_clean_and_repair_changes_nothing() {
    let (vault, _, _) = setup(1);
    let r = check_store(vault.store()).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert!(r.intact["bundles"] >= 5);
    assert!(r.intact["key wraps"] >= 2);
    assert_eq!(r.intact["record registrations"], 1);
    assert!(r.logs_intact >= 2);
    let before = vault.store().scan(&[], &[0xff]).unwrap();
    let rep = repair_store(vault.store()).unwrap();
    assert_eq!((rep.quarantined, rep.heads_moved), (0, 0));
    assert_eq!(vault.store().scan(&[], &[0xff]).unwrap(), before);
}

#[test]
fn a_flipped_byte_in_a_bundle_is_found_and_repair_keeps_the_bundles_before_it() {
    let (vault, patient, l) = setup(2);
    let store = vault.store();
    let mut v = store.get(&key(&l, 2)).unwrap().unwrap();
    // A byte of the ciphertext, just before the signature.
    let at = v.len() - 70;
    v[at] ^= 0x01;
    put(store, key(&l, 2), v);
    // Today's reader refuses the whole section.
    let fresh = Vault::new(store.clone());
    assert!(
        fresh
            .open_record(&patient, &l.record)
            .unwrap()
            .show(&notes())
            .is_err()
    );

    let r = check_store(store).unwrap();
    assert!(!r.is_intact());
    let d = r
        .damage
        .iter()
        .find(|d| d.item.starts_with("bundle 2 "))
        .expect("bundle 2 named");
    assert!(d.problem.contains("signature does not verify"), "{d:?}");
    assert_eq!(r.broken_logs.len(), 1);
    assert_eq!(
        (r.broken_logs[0].head, r.broken_logs[0].verified),
        (Some(4), 1)
    );
    // The check changed nothing.
    assert!(store.get(&k_quarantine(&key(&l, 2))).unwrap().is_none());

    let rep = repair_store(store).unwrap();
    assert_eq!((rep.quarantined, rep.heads_moved), (1, 1));
    assert!(rep.after.is_intact(), "{:?}", rep.after);
    assert_eq!(rep.after.quarantined, 1);
    assert!(store.get(&key(&l, 2)).unwrap().is_none());
    assert!(store.get(&k_quarantine(&key(&l, 2))).unwrap().is_some());
    // Bundles that still verify are kept, above the head too, ready for the log to continue.
    assert!(store.get(&key(&l, 3)).unwrap().is_some());
    assert_eq!(notes_read(store, &patient, &l), 1);
}

#[test]
fn a_bundle_missing_below_the_head_sets_the_head_back() {
    let (vault, patient, l) = setup(3);
    let store = vault.store();
    let mut b = Batch::new();
    b.delete(key(&l, 3));
    store.commit(b).unwrap();
    let r = check_store(store).unwrap();
    assert!(
        r.damage
            .iter()
            .any(|d| d.problem == "bundle 3 is missing or damaged"),
        "{r:?}"
    );
    assert_eq!(r.broken_logs[0].verified, 2);
    let rep = repair_store(store).unwrap();
    assert_eq!((rep.quarantined, rep.heads_moved), (0, 1));
    assert!(rep.after.is_intact());
    assert_eq!(notes_read(store, &patient, &l), 2);
}

#[test]
fn a_garbage_ledger_item_is_quarantined_and_the_rest_kept() {
    let (vault, patient, l) = setup(4);
    let store = vault.store();
    let peer = Key::Peer(&l.author).text();
    vault
        .put_local(
            &peer,
            &PeerAddrs {
                addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            }
            .to_bytes(),
        )
        .unwrap();
    assert!(check_store(store).unwrap().is_intact());
    put(store, local_key(&peer), b"\x00garbage{".to_vec());
    let r = check_store(store).unwrap();
    assert_eq!(r.damage.len(), 1, "{r:?}");
    assert!(r.damage[0].item.starts_with("node item peer/"));
    assert_eq!(r.damage[0].problem, "does not decode");
    assert!(r.broken_logs.is_empty());
    let rep = repair_store(store).unwrap();
    assert_eq!(rep.quarantined, 1);
    assert!(rep.after.is_intact());
    assert_eq!(vault.get_local(&peer).unwrap(), None);
    assert_eq!(notes_read(store, &patient, &l), 4);
}

#[test]
fn a_value_cut_short_is_found_whatever_its_kind() {
    let (vault, patient, l) = setup(5);
    let store = vault.store();
    // The newest bundle, cut in half: the log goes back to bundle 3.
    let v = store.get(&key(&l, 4)).unwrap().unwrap();
    put(store, key(&l, 4), v[..v.len() / 2].to_vec());
    // Every other kind of item, cut short too: each is named, none panics.
    let all = store.scan(&[], &[0xff]).unwrap();
    let mut cut = 0;
    for (k, v) in &all {
        if matches!(
            parse(k),
            Stored::Record(_) | Stored::Wrap(..) | Stored::Received(..)
        ) && cut < 3
        {
            put(store, k.clone(), v[..v.len() - 1].to_vec());
            cut += 1;
        }
    }
    let r = check_store(store).unwrap();
    assert!(
        r.damage
            .iter()
            .any(|d| d.item.starts_with("bundle 4 ") && d.problem.contains("does not decode")),
        "{r:?}"
    );
    assert!(r.damage.len() > cut);
    let rep = repair_store(store).unwrap();
    assert!(rep.after.is_intact(), "{:?}", rep.after);
    assert_eq!(
        rep.quarantined as usize,
        rep.before
            .damage
            .iter()
            .filter(|d| d.repair == "moved to quarantine")
            .count()
    );
    let _ = patient;
}

#[test]
fn a_damaged_head_is_rebuilt_from_the_bundles_that_verify() {
    let (vault, patient, l) = setup(6);
    let store = vault.store();
    let head = crate::record::layout::k_head(&l.record, &l.section, &l.author);
    put(store, head.clone(), b"short".to_vec());
    let r = check_store(store).unwrap();
    assert!(r.damage.iter().any(|d| d.item.starts_with("the log head ")));
    let rep = repair_store(store).unwrap();
    assert!(rep.after.is_intact(), "{:?}", rep.after);
    assert_eq!(notes_read(store, &patient, &l), 4);
}
