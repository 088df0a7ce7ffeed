//! What a vault remembers between opens (`record::memo`) never changes what a record shows.

use crate::record::Vault;
use crate::record::layout::k_head;
use crate::section::SectionName;
use crate::store::{Batch, MemoryStore, Store};
use crate::test_utils::{TEST_NOW, TestRng, patient_record};
use serde_json::json;

/// The notes as a vault shows them, newest state, as plain texts in id order.
pub(super) fn texts(
    v: &Vault<MemoryStore>,
    who: &crate::keys::Identity,
    rid: &crate::ids::RecordId,
) -> Vec<String> {
    let notes: SectionName = "notes".parse().unwrap();
    let mut rec = v.open_record(who, rid).unwrap();
    match rec.show(&notes) {
        Ok(view) => view
            .entries
            .iter()
            .map(|e| e.body["text"].as_str().unwrap_or_default().to_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_vault_that_remembers_shows_what_a_fresh_one_reads_from_the_store() {
    let mut rng = TestRng::new(91);
    let store = MemoryStore::new();
    let warm = Vault::new(store.clone());
    let (patient, rid) = patient_record(&warm, "P", TEST_NOW, &mut rng);
    let notes: SectionName = "notes".parse().unwrap();
    for i in 0..40 {
        let mut rec = warm.open_record(&patient, &rid).unwrap();
        rec.add_entry(
            &notes,
            &json!({ "text": format!("note {i}") }),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
        // Every few adds, a read through the warm vault (which keeps what it loaded) must
        // match a vault that has never seen the record.
        if i % 7 == 0 {
            let cold = Vault::new(store.clone());
            assert_eq!(texts(&warm, &patient, &rid), texts(&cold, &patient, &rid));
            assert_eq!(texts(&warm, &patient, &rid).len(), i + 1);
        }
    }
}

/// The id of the record's `notes` section.
pub(super) fn notes_id(
    v: &Vault<MemoryStore>,
    who: &crate::keys::Identity,
    rid: &crate::ids::RecordId,
) -> crate::ids::SectionId {
    let notes: SectionName = "notes".parse().unwrap();
    let rec = v.open_record(who, rid).unwrap();
    rec.sections()
        .into_iter()
        .find(|s| s.name == notes)
        .unwrap()
        .ids[0]
}

/// A store, a vault over it, and a patient's record holding one note saying `text`.
fn one_note(
    seed: u64,
    text: &str,
) -> (
    MemoryStore,
    Vault<MemoryStore>,
    crate::keys::Identity,
    crate::ids::RecordId,
) {
    let mut rng = TestRng::new(seed);
    let store = MemoryStore::new();
    let v = Vault::new(store.clone());
    let (patient, rid) = patient_record(&v, "P", TEST_NOW, &mut rng);
    let notes: SectionName = "notes".parse().unwrap();
    {
        let mut rec = v.open_record(&patient, &rid).unwrap();
        rec.add_entry(&notes, &json!({ "text": text }), TEST_NOW, &mut rng)
            .unwrap();
    }
    (store, v, patient, rid)
}

#[test]
fn a_remembered_document_is_not_used_once_its_log_is_gone() {
    let (store, warm, patient, rid) = one_note(92, "first");
    assert_eq!(texts(&warm, &patient, &rid), vec!["first".to_owned()]);
    // The store loses the notes log's head (as a damaged store might): the log is no longer
    // vouched for, so neither vault may show its entry.
    let sid = notes_id(&warm, &patient, &rid);
    let mut b = Batch::new();
    b.delete(k_head(&rid, &sid, &patient.peer()));
    store.commit(b).unwrap();
    let cold = Vault::new(store.clone());
    assert_eq!(texts(&cold, &patient, &rid), Vec::<String>::new());
    assert_eq!(texts(&warm, &patient, &rid), Vec::<String>::new());
}

#[test]
fn forgetting_a_record_forgets_what_was_remembered_of_it() {
    let (_store, v, patient, rid) = one_note(93, "kept");
    assert_eq!(texts(&v, &patient, &rid).len(), 1);
    v.forget_record(&rid).unwrap();
    assert!(v.open_record(&patient, &rid).is_err());
    assert!(!v.memo.docs.holds(&rid, &crate::ids::SectionId::AUTH));
    let sid = crate::ids::SectionId::AUTH;
    v.memo
        .names
        .put(&rid, &sid, b"sealed", 0, "notes".parse().unwrap());
    v.forget_record(&rid).unwrap();
    assert_eq!(v.memo.names.get(&rid, &sid, b"sealed"), None);
}

#[test]
fn a_closed_record_hands_its_documents_back_and_the_next_open_takes_them() {
    let (_store, v, patient, rid) = one_note(94, "kept");
    let notes: SectionName = "notes".parse().unwrap();
    let sid = notes_id(&v, &patient, &rid);
    assert!(v.memo.docs.holds(&rid, &sid), "handed back when closed");
    let mut rec = v.open_record(&patient, &rid).unwrap();
    assert_eq!(rec.show(&notes).unwrap().entries.len(), 1);
    assert!(
        !v.memo.docs.holds(&rid, &sid),
        "taken, not copied, while open"
    );
    drop(rec);
    assert!(v.memo.docs.holds(&rid, &sid));
}

#[test]
fn a_document_holding_a_change_never_stored_is_not_taken_as_a_start() {
    let (store, v, patient, rid) = one_note(95, "stored");
    let notes: SectionName = "notes".parse().unwrap();
    let mut rng = TestRng::new(96);
    {
        // A write whose batch is never committed (a failed commit, a crash of the caller):
        // the record closes with the change in its document.
        let mut rec = v.open_record(&patient, &rid).unwrap();
        let mut batch = Batch::new();
        rec.add_entry_to_batch(
            &notes,
            json!({ "text": "never stored" }),
            None,
            TEST_NOW,
            &mut rng,
            &mut batch,
        )
        .unwrap();
    }
    let cold = Vault::new(store.clone());
    assert_eq!(texts(&v, &patient, &rid), vec!["stored".to_owned()]);
    assert_eq!(texts(&cold, &patient, &rid), vec!["stored".to_owned()]);
    // The next write takes the same place in the log, with another change: both vaults read
    // it, and only it.
    let mut rec = v.open_record(&patient, &rid).unwrap();
    rec.add_entry(&notes, &json!({ "text": "second" }), TEST_NOW, &mut rng)
        .unwrap();
    drop(rec);
    let both = vec!["second".to_owned(), "stored".to_owned()];
    let mut warm = texts(&v, &patient, &rid);
    warm.sort();
    let mut fresh = texts(&Vault::new(store.clone()), &patient, &rid);
    fresh.sort();
    assert_eq!((warm, fresh), (both.clone(), both));
}

/// What a vault reads of the auth document: devices (with removals) and recorded grants.
fn auth_view(
    v: &Vault<MemoryStore>,
    who: &crate::keys::Identity,
    rid: &crate::ids::RecordId,
) -> (Vec<String>, Vec<String>, usize, Vec<String>) {
    let rec = v.open_record(who, rid).unwrap();
    let devices = rec.device_certs().iter().map(|d| d.name.clone()).collect();
    let removed = rec
        .removed_devices()
        .keys()
        .map(ToString::to_string)
        .collect();
    let sections = rec.sections().iter().map(|s| s.name.to_string()).collect();
    // The keys alone, read without copying the certificates, say the same.
    let certs = rec.device_certs();
    let peers: Vec<_> = certs.iter().map(|d| d.peer).collect();
    assert_eq!(rec.device_peers(), peers);
    assert!(peers.iter().all(|p| rec.is_device(p)));
    let all = rec.all_device_peers();
    assert_eq!(all.len(), certs.len() + rec.removed_devices().len());
    assert!(
        rec.removed_devices()
            .keys()
            .all(|p| all.contains(p) && !rec.is_device(p))
    );
    (devices, removed, rec.recorded_chains().len(), sections)
}

#[test]
fn remembered_auth_facts_follow_every_change_to_the_auth_document() {
    use crate::grant::Ability;
    use crate::keys::{Identity, Role};
    use crate::test_utils::record_grant;
    let mut rng = TestRng::new(93);
    let store = MemoryStore::new();
    let warm = Vault::new(store.clone());
    let (patient, rid) = patient_record(&warm, "P", TEST_NOW, &mut rng);
    let check = |expect_devices: usize, expect_removed: usize, expect_chains: usize| {
        let seen = auth_view(&warm, &patient, &rid);
        // Read twice through the warm vault (the second from its memo) and once fresh.
        assert_eq!(seen, auth_view(&warm, &patient, &rid));
        assert_eq!(seen, auth_view(&Vault::new(store.clone()), &patient, &rid));
        assert_eq!(
            (seen.0.len(), seen.1.len(), seen.2),
            (expect_devices, expect_removed, expect_chains)
        );
    };
    check(1, 0, 0);
    let (gp, _) = Identity::generate(Role::Professional, "GP".into(), &mut rng);
    {
        let mut rec = warm.open_record(&patient, &rid).unwrap();
        record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            TEST_NOW,
            30,
            &mut rng,
        );
    }
    check(1, 0, 1);
    let (tablet, _) = Identity::generate(Role::Patient, "Tablet".into(), &mut rng);
    {
        let mut rec = warm.open_record(&patient, &rid).unwrap();
        rec.certify_device(
            tablet.peer(),
            "Tablet",
            tablet.agreement_public(),
            &tablet.agreement_certificate(),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    }
    check(2, 0, 1);
    {
        let mut rec = warm.open_record(&patient, &rid).unwrap();
        rec.remove_device(tablet.peer(), TEST_NOW, &mut rng)
            .unwrap();
    }
    check(1, 1, 1);
    // A new section: its name shows in the directory at once, as a fresh vault reads it.
    {
        let mut rec = warm.open_record(&patient, &rid).unwrap();
        let meds: crate::section::SectionName = "medications".parse().unwrap();
        rec.add_entry(
            &meds,
            &serde_json::json!({"name": "Aspirin 75mg"}),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    }
    check(1, 1, 1);
    let (.., sections) = auth_view(&warm, &patient, &rid);
    assert!(
        sections.contains(&"medications".to_string()),
        "{sections:?}"
    );
}

#[test]
fn a_vault_beside_another_shares_what_it_remembers_and_sees_what_the_other_writes() {
    let (store, v, patient, rid) = one_note(96, "first");
    let sid = notes_id(&v, &patient, &rid);
    let beside = v.beside();
    let apart = Vault::new(store.clone());
    // What the first vault loaded is there for the one beside it, not for one made apart.
    assert!(beside.is_beside(&v) && !apart.is_beside(&v));
    assert!(beside.memo.docs.holds(&rid, &sid));
    assert!(!apart.memo.docs.holds(&rid, &sid));
    // Taken through one, it is gone from the other while open: one memory, not two copies.
    let mut rec = beside.open_record(&patient, &rid).unwrap();
    let notes: SectionName = "notes".parse().unwrap();
    assert_eq!(rec.show(&notes).unwrap().entries.len(), 1);
    assert!(!v.memo.docs.holds(&rid, &sid));
    // A write through the vault beside is what the first vault then shows.
    rec.add_entry(
        &notes,
        &json!({ "text": "second" }),
        TEST_NOW,
        &mut TestRng::new(97),
    )
    .unwrap();
    drop(rec);
    assert!(v.memo.docs.holds(&rid, &sid));
    assert_eq!(texts(&v, &patient, &rid), ["first", "second"]);
    assert_eq!(texts(&apart, &patient, &rid), ["first", "second"]);
    // Counted commits through either hold off the other's.
    let _one = v.counting.lock().unwrap();
    assert!(beside.counting.try_lock().is_err());
}

#[test]
fn a_key_remembered_from_one_records_wrap_is_never_taken_for_another() {
    use crate::record::RecordError;
    use crate::record::layout::{k_record, k_wrap_prefix};
    let (store, v, patient, rid) = one_note(98, "first");
    // The vault has unwrapped the record's keys and remembers them by their wraps' bytes.
    assert_eq!(texts(&v, &patient, &rid), ["first"]);
    // Another record whose registration and wraps are the first one's bytes, copied under its
    // own id (as a hostile peer or a damaged store might leave them).
    let other = crate::ids::RecordId([0x5a; 32]);
    let mut b = Batch::new();
    b.put(
        k_record(&other),
        store.get(&k_record(&rid)).unwrap().unwrap(),
    );
    let (from, to) = (k_wrap_prefix(&rid), k_wrap_prefix(&other));
    for (k, wrap) in store.scan_prefix(&from).unwrap() {
        b.put([to.as_slice(), &k[from.len()..]].concat(), wrap);
    }
    store.commit(b).unwrap();
    // Every wrap names the first record: neither the vault that remembers its keys nor a fresh
    // one takes any of them for the other.
    for vault in [&v, &Vault::new(store.clone())] {
        assert!(matches!(
            vault.open_record(&patient, &other),
            Err(RecordError::NoKey(_))
        ));
    }
    // The first record still opens from what is remembered.
    assert_eq!(texts(&v, &patient, &rid), ["first"]);
}

#[test]
fn a_remembered_section_name_needs_the_same_sealed_bytes_and_a_key_of_its_epoch() {
    let (_store, v, patient, rid) = one_note(99, "first");
    let sid = notes_id(&v, &patient, &rid);
    let notes: SectionName = "notes".parse().unwrap();
    let shown = |v: &Vault<MemoryStore>| v.open_record(&patient, &rid).unwrap().directory()[&sid];
    // Opening the record remembered the name, by the auth document's sealed bytes.
    let sealed = {
        let rec = v.open_record(&patient, &rid).unwrap();
        let names = rec.read_sealed_names();
        names.into_iter().find(|(s, _)| *s == sid).unwrap().1
    };
    assert_eq!(v.memo.names.get(&rid, &sid, &sealed), Some((0, notes)));
    // Other bytes (resealed, or tampered with) are not taken for the name remembered.
    let mut other = sealed.clone();
    other[0] ^= 1;
    assert_eq!(v.memo.names.get(&rid, &sid, &other), None);
    // A wrong name planted under other bytes is never shown; nor one under the same bytes but
    // an epoch this node holds no key of: the name is opened afresh, and remembered.
    let wrong: SectionName = "social-care/assessments".parse().unwrap();
    v.memo.names.put(&rid, &sid, &other, 0, wrong);
    assert_eq!(shown(&v), notes);
    v.memo.names.put(&rid, &sid, &sealed, 7, wrong);
    assert_eq!(shown(&v), notes);
    assert_eq!(v.memo.names.get(&rid, &sid, &sealed), Some((0, notes)));
}

#[test]
fn a_remembered_keyring_is_used_only_at_the_keyring_stamp_it_was_read_at() {
    use crate::record::layout::{k_keyring, k_wrap_prefix};
    use crate::record::memo::SectionKeys;
    use crate::record::repair_store;
    let mut rng = TestRng::new(100);
    let (store, v, patient, rid) = one_note(100, "first");
    let sid = notes_id(&v, &patient, &rid);
    let (peer, agreement) = (patient.peer(), patient.agreement_public());
    let stamp = || -> [u8; 16] {
        let s = store.get(&k_keyring(&rid)).unwrap().unwrap();
        s.try_into().unwrap()
    };
    let epoch = |v: &Vault<MemoryStore>| {
        let rec = v.open_record(&patient, &rid).unwrap();
        rec.current_key(&sid).unwrap().0
    };
    // Opening the record remembered its keys at the stamp its keyring was written with.
    assert_eq!(epoch(&v), 0);
    let first = stamp();
    assert_eq!(v.memo.keyrings.stamp_of(&rid, &peer), Some(first));
    // Rotating the notes' key writes wraps, and with them a new stamp: the vault that
    // remembered epoch 0 opens the record with epoch 1, and seals new notes under it.
    v.open_record(&patient, &rid)
        .unwrap()
        .rotate_keys(&[sid], TEST_NOW, &mut rng)
        .unwrap();
    let second = stamp();
    assert_ne!(second, first);
    assert_eq!(epoch(&v), 1);
    assert_eq!(v.memo.keyrings.stamp_of(&rid, &peer), Some(second));
    // Keys planted under the old stamp, or for another agreement key, are never used.
    v.memo
        .keyrings
        .put(&rid, &peer, &agreement, first, &SectionKeys::new());
    assert_eq!(epoch(&v), 1);
    v.memo
        .keyrings
        .put(&rid, &peer, &[9; 32], second, &SectionKeys::new());
    assert_eq!(epoch(&v), 1);
    assert_eq!(v.memo.keyrings.stamp_of(&rid, &peer), Some(second));
    // A damaged wrap taken out of use by `hearth store repair` changes the keyring: the
    // record is stamped afresh.
    let (k, wrap) = store.scan_prefix(&k_wrap_prefix(&rid)).unwrap().remove(0);
    let mut b = Batch::new();
    b.put(k, wrap[..wrap.len() - 1].to_vec());
    store.commit(b).unwrap();
    assert!(repair_store(&store).unwrap().quarantined >= 1);
    assert_ne!(stamp(), second);
    // A record with no stamp (a store written before stamps) is read afresh every time, and
    // nothing is remembered for it, until it is given one (as the daemon does at its start).
    let mut b = Batch::new();
    b.delete(k_keyring(&rid));
    store.commit(b).unwrap();
    v.memo.keyrings.forget_record(&rid);
    assert_eq!(epoch(&v), 1);
    assert_eq!(v.memo.keyrings.stamp_of(&rid, &peer), None);
    assert_eq!(texts(&v, &patient, &rid), ["first"]);
    assert_eq!(v.stamp_unstamped_keyrings().unwrap(), 1);
    assert_eq!(v.stamp_unstamped_keyrings().unwrap(), 0);
    assert_eq!(epoch(&v), 1);
    assert_eq!(v.memo.keyrings.stamp_of(&rid, &peer), Some(stamp()));
}

#[test]
fn keys_released_from_escrow_stamp_the_keyring_afresh() {
    use crate::ids::SectionId;
    use crate::keys::{Identity, Role};
    use crate::keywrap::{EscrowedKey, KeyWrap};
    use crate::record::layout::k_keyring;
    let mut rng = TestRng::new(101);
    let (_store, v, patient, rid) = one_note(101, "first");
    let notes = notes_id(&v, &patient, &rid);
    let (org, _) = Identity::generate(Role::Professional, "Org".into(), &mut rng);
    let (nurse, _) = Identity::generate(Role::Professional, "Nurse".into(), &mut rng);
    // The organisation's release of one section's key of epoch 0 to the nurse.
    let mut release = |section: SectionId| {
        let rec = v.open_record(&patient, &rid).unwrap();
        let (epoch, key) = rec.current_key(&section).unwrap();
        let root = patient.root_key().unwrap();
        let wrap = KeyWrap::create(
            root,
            rid,
            section,
            epoch,
            key,
            org.agreement_public(),
            &mut rng,
        )
        .unwrap();
        EscrowedKey::release(
            wrap,
            &rid,
            org.agreement_secret(),
            nurse.agreement_public(),
            &mut rng,
        )
        .unwrap()
    };
    let (auth, notes_key) = (release(SectionId::AUTH), release(notes));
    // The nurse's node keeps the auth key first, opens the record (remembering its keyring),
    // then keeps the notes' key: the keyring is stamped afresh and the next open reads notes.
    let store = MemoryStore::new();
    let nv = Vault::new(store.clone());
    assert_eq!(
        nv.keep_escrowed_keys(&nurse, &rid, &[auth], TEST_NOW)
            .unwrap(),
        1
    );
    let stamp = || store.get(&k_keyring(&rid)).unwrap().unwrap();
    let first = stamp();
    assert!(nv.open_record(&nurse, &rid).unwrap().sections().is_empty());
    assert!(nv.memo.keyrings.stamp_of(&rid, &nurse.peer()).is_some());
    assert_eq!(
        nv.keep_escrowed_keys(&nurse, &rid, &[notes_key], TEST_NOW)
            .unwrap(),
        1
    );
    assert_ne!(stamp(), first);
    let rec = nv.open_record(&nurse, &rid).unwrap();
    assert!(rec.current_key(&notes).is_ok());
}

#[test]
fn a_change_to_the_keyring_is_committed_atomically_however_small() {
    use crate::keywrap::KeyWrap;
    use crate::record::keyring::put_wrap;
    let mut rng = TestRng::new(102);
    let v = Vault::new(super::Counting::default());
    let (patient, rid) = patient_record(&v, "P", TEST_NOW, &mut rng);
    let notes: SectionName = "notes".parse().unwrap();
    let mut rec = v.open_record(&patient, &rid).unwrap();
    rec.add_entry(&notes, &json!({ "text": "first" }), TEST_NOW, &mut rng)
        .unwrap();
    // A note alone is a small change to one section: committed in order.
    let before = v.store().ordered.get();
    rec.add_entry(&notes, &json!({ "text": "second" }), TEST_NOW, &mut rng)
        .unwrap();
    assert_eq!(v.store().ordered.get(), before + 1);
    // One wrap and its stamp, two operations, are committed atomically.
    let sid = rec.write_id_of(&notes).unwrap();
    let (epoch, key) = rec.current_key(&sid).unwrap();
    let wrap = KeyWrap::create(
        patient.root_key().unwrap(),
        rid,
        sid,
        epoch,
        key,
        [7; 32],
        &mut rng,
    )
    .unwrap();
    let mut batch = Batch::new();
    put_wrap(&mut batch, &wrap).unwrap();
    assert_eq!(batch.ops().len(), 2);
    rec.commit_batch(batch).unwrap();
    assert_eq!(v.store().ordered.get(), before + 1);
}

/// A section document of `changes` changes (by one author), as a closed record hands it back.
fn kept(changes: u64) -> crate::record::memo::Kept {
    let mut have = crate::log::VersionVector::new();
    have.insert(
        crate::ids::PeerKey([1; 32]),
        crate::log::LogHead {
            seq: changes,
            hash: crate::ids::BundleHash([0; 32]),
        },
    );
    crate::record::memo::Kept {
        doc: automerge::AutoCommit::new(),
        have,
        since_snapshot: 0,
    }
}

#[test]
fn the_largest_section_is_kept_beside_smaller_ones_within_the_bounds() {
    use crate::ids::{PeerKey, RecordId, SectionId};
    use crate::record::memo::DocMemo;
    let (rid, reader) = (RecordId([2; 32]), PeerKey([3; 32]));
    let s = |i: u8| SectionId([i; 16]);
    let memo = DocMemo::default();
    let (large, half) = (DocMemo::MAX_LARGEST, DocMemo::MAX_CHANGES / 2);

    // A section larger than the bound on the rest is kept, and so are others beside it up to
    // that bound.
    memo.put(&rid, &s(1), &reader, kept(large));
    memo.put(&rid, &s(2), &reader, kept(half));
    memo.put(&rid, &s(3), &reader, kept(half));
    assert!(memo.holds(&rid, &s(1)) && memo.holds(&rid, &s(2)) && memo.holds(&rid, &s(3)));
    // One change more beside the largest drops the least recently handed: the largest.
    memo.put(&rid, &s(4), &reader, kept(1));
    assert!(!memo.holds(&rid, &s(1)));
    assert!(memo.holds(&rid, &s(2)) && memo.holds(&rid, &s(3)) && memo.holds(&rid, &s(4)));

    // Two large sections are not kept together: the older goes.
    memo.put(&rid, &s(5), &reader, kept(large));
    memo.put(&rid, &s(6), &reader, kept(DocMemo::MAX_CHANGES + 1));
    assert!(!memo.holds(&rid, &s(5)));
    assert!(memo.holds(&rid, &s(6)));

    // A section above the largest bound is not kept at all, and drops nothing.
    memo.put(&rid, &s(7), &reader, kept(large + 1));
    assert!(!memo.holds(&rid, &s(7)));
    assert!(memo.holds(&rid, &s(6)));

    // Taken for another reader, a document is not handed out (nor dropped).
    assert!(memo.take(&rid, &s(6), &PeerKey([4; 32])).is_none());
    assert!(memo.take(&rid, &s(6), &reader).is_some());
    assert!(!memo.holds(&rid, &s(6)));
}
