//! What a grantee's (or any author's) bundles can do to a section: checked at receipt, and
//! survived at load time when something got stored anyway.

use crate::bundle::Bundle;
use crate::crypto;
use crate::ids::{PeerKey, RecordId};
use crate::keys::{Identity, Role};
use crate::log::LogHead;
use crate::record::entries::entry_key;
use crate::record::layout::{k_bundle, k_head};
use crate::record::{OpenRecord, Vault};
use crate::section::SectionName;
use crate::store::{Batch, Store};
use crate::test_utils::{TEST_NOW, TestRng, patient_record};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};

fn notes() -> SectionName {
    "notes".parse().unwrap()
}

/// Adds a notes entry saying `text` to `rec`.
fn add_note<S: Store>(rec: &mut OpenRecord<'_, S>, text: impl Into<String>, rng: &mut TestRng) {
    let text: String = text.into();
    rec.add_entry(
        &notes(),
        &serde_json::json!({ "text": text }),
        TEST_NOW,
        rng,
    )
    .unwrap();
}

/// A patient's record with one notes entry, on a memory store, and a stranger's identity.
fn setup(
    seed: u64,
) -> (
    Identity,
    Identity,
    Vault<crate::store::MemoryStore>,
    RecordId,
) {
    let mut rng = TestRng::new(seed);
    let vault = Vault::new(crate::store::MemoryStore::new());
    let (patient, rid) = patient_record(&vault, "Edith Example", TEST_NOW, &mut rng);
    let (other, _) = Identity::generate(Role::Professional, "Dr Real".into(), &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    add_note(&mut rec, "patient's own", &mut rng);
    drop(rec);
    (patient, other, vault, rid)
}

/// Puts into `d` a first version of a notes entry by `author` saying `text` (its id drawn
/// from `seed`).
fn put_note(d: &mut AutoCommit, author: &Identity, text: &str, seed: u64) {
    let v = super::note_version(author, text, seed);
    d.put(ROOT, entry_key(&v.id), serde_json::to_string(&v).unwrap())
        .unwrap();
}

/// The raw change chunk of one entry version written by `actor` as change number `seq`.
fn entry_change(actor: &PeerKey, seq: u64, author: &Identity, text: &str) -> Vec<u8> {
    let mut d = AutoCommit::new().with_actor(automerge::ActorId::from(actor.0));
    for i in 0..seq {
        put_note(&mut d, author, &format!("{text} {i}"), seq * 100 + i);
        d.commit();
    }
    d.get_last_local_change().unwrap().raw_bytes().to_vec()
}

/// `author`'s bundle `seq` (after `prev`) in `rec`'s notes section, carrying `payload`, under
/// the section's first key (`seed` seeds the nonce).
fn seal_note<S: Store>(
    rec: &OpenRecord<'_, S>,
    author: &Identity,
    seq: u64,
    prev: Option<crate::ids::BundleHash>,
    payload: &[u8],
    seed: u64,
) -> Bundle {
    let sid = rec.ids_of(&notes())[0];
    Bundle::seal(
        rec.id(),
        sid,
        seq,
        prev,
        0,
        TEST_NOW,
        &rec.keys[&sid][&0],
        payload,
        author.device_key(),
        &mut TestRng::new(seed),
    )
    .unwrap()
}

/// Seals `payload` as `author`'s bundle `seq` in the notes section and stores it directly
/// (bundle and log head), skipping every check a receiving node makes.
fn store_directly(
    vault: &Vault<crate::store::MemoryStore>,
    patient: &Identity,
    rid: &RecordId,
    author: &Identity,
    seq: u64,
    prev: Option<crate::ids::BundleHash>,
    payload: &[u8],
) -> Bundle {
    let rec = vault.open_record(patient, rid).unwrap();
    let sid = rec.ids_of(&notes())[0];
    let b = seal_note(&rec, author, seq, prev, payload, seq);
    let a = author.peer();
    let mut batch = Batch::new();
    batch.put(k_bundle(rid, &sid, &a, seq), b.encoded().to_vec());
    batch.put(
        k_head(rid, &sid, &a),
        LogHead {
            seq,
            hash: b.hash(),
        }
        .to_bytes()
        .to_vec(),
    );
    vault.store.commit(batch).unwrap();
    b
}

fn texts(vault: &Vault<crate::store::MemoryStore>, who: &Identity, rid: &RecordId) -> Vec<String> {
    let mut rec = vault.open_record(who, rid).unwrap();
    rec.show(&notes())
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_stored_bundle_reusing_another_actors_seq_is_left_out_and_the_section_stays_readable() {
    let (patient, other, vault, rid) = setup(1);
    // The patient's notes change is (patient, 1): the stranger's bundle carries another
    // change numbered (patient, 1).
    let payload = entry_change(&patient.peer(), 1, &other, "forged");
    store_directly(&vault, &patient, &rid, &other, 1, None, &payload);
    assert_eq!(texts(&vault, &patient, &rid), vec!["patient's own"]);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    rec.show(&notes()).unwrap();
    let un = rec.unapplied();
    assert_eq!(un.len(), 1, "{un:?}");
    assert_eq!(
        (un[0].author, un[0].from_seq, un[0].count),
        (other.peer(), 1, 1)
    );
    assert_eq!(un[0].section, "notes");
}

#[test]
fn an_authors_bundles_are_left_out_from_the_bad_one_on() {
    let (patient, other, vault, rid) = setup(2);
    let first = entry_change(&other.peer(), 1, &other, "first");
    let b1 = store_directly(&vault, &patient, &rid, &other, 1, None, &first);
    // Bundle 2 carries a change numbered 1 again (a reused (actor, seq) pair).
    let again = entry_change(&other.peer(), 1, &other, "again");
    let b2 = store_directly(&vault, &patient, &rid, &other, 2, Some(b1.hash()), &again);
    let third = entry_change(&other.peer(), 3, &other, "third");
    store_directly(&vault, &patient, &rid, &other, 3, Some(b2.hash()), &third);
    let mut seen = texts(&vault, &patient, &rid);
    seen.sort();
    assert_eq!(seen, vec!["first 0", "patient's own"]);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    rec.show(&notes()).unwrap();
    let un = rec.unapplied();
    assert_eq!((un[0].from_seq, un[0].count), (2, 2), "{un:?}");
    // The patient can still write to the section.
    add_note(&mut rec, "later", &mut TestRng::new(9));
    assert!(texts(&vault, &patient, &rid).contains(&"later".to_string()));
}

#[test]
fn a_change_that_does_not_apply_is_left_out() {
    let (patient, other, vault, rid) = setup(3);
    // A well-formed header (actor, seq, checksum) over operations that are cut short.
    let good = entry_change(&other.peer(), 1, &other, "cut");
    let mut cur = &good[9..];
    let len = crate::bundle::tests_uleb(&mut cur).unwrap() as usize;
    let data = &cur[..len - 6];
    let mut hashed = vec![1u8];
    leb(&mut hashed, data.len() as u64);
    hashed.extend_from_slice(data);
    let hash = crypto::sha256(&[&hashed]);
    let mut bad = vec![0x85, 0x6f, 0x4a, 0x83];
    bad.extend_from_slice(&hash[..4]);
    bad.extend_from_slice(&hashed);
    assert!(crate::bundle::read_change_head(&bad).is_ok());
    store_directly(&vault, &patient, &rid, &other, 1, None, &bad);
    assert_eq!(texts(&vault, &patient, &rid), vec!["patient's own"]);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    rec.show(&notes()).unwrap();
    assert_eq!(rec.unapplied().len(), 1);
}

#[test]
fn a_grantee_change_waits_for_the_device_change_of_the_same_batch_it_depends_on() {
    // The grantee's log sorts first, so its bundle is checked before the patient's.
    let (patient, other, vault, rid) = (6..)
        .map(setup)
        .find(|(p, o, _, _)| o.peer() < p.peer())
        .unwrap();
    // A node that has not seen the patient's next entry: a copy of the store as it is now.
    let copy = crate::store::MemoryStore::new();
    let mut all = Batch::new();
    for (k, v) in vault.store.scan(&[], &[0xff; 4]).unwrap() {
        all.put(k, v);
    }
    copy.commit(all).unwrap();
    let old = Vault::new(copy);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    add_note(&mut rec, "newer", &mut TestRng::new(50));
    let sid = rec.ids_of(&notes())[0];
    // The grantee writes after seeing it: its change depends on the patient's newest.
    let mut d = rec.loaded[&sid].doc.clone();
    d.set_actor(automerge::ActorId::from(other.peer().0));
    put_note(&mut d, &other, "the grantee's reply", 51);
    d.commit();
    let payload = d.get_last_local_change().unwrap().raw_bytes().to_vec();
    let grantee = seal_note(&rec, &other, 1, None, &payload, 52);
    let head = vault.heads(&rid, &sid).unwrap()[&patient.peer()];
    let newest = vault
        .bundles_from(
            &rid,
            &sid,
            &patient.peer(),
            head.seq,
            &mut usize::MAX.clone(),
        )
        .unwrap();
    let newest = Bundle::decode(&newest[0]).unwrap();
    let mut orec = old.open_record(&patient, &rid).unwrap();
    let devices = [patient.peer()];
    let report = old
        .store_remote(&rid, vec![grantee, newest], TEST_NOW, &mut |b| {
            if devices.contains(&b.header().author) {
                orec.check_device_bundle(b)
            } else {
                orec.check_append_only(b)
            }
        })
        .unwrap();
    assert_eq!(report.stored, 2, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    let mut seen = texts(&old, &patient, &rid);
    seen.sort();
    assert_eq!(seen, vec!["newer", "patient's own", "the grantee's reply"]);
}

fn leb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn a_continuation_reads_only_what_it_sends() {
    let mut rng = TestRng::new(4);
    let vault = Vault::new(super::Counting::default());
    let (patient, rid) = patient_record(&vault, "Edith Example", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    for i in 0..40 {
        add_note(&mut rec, format!("n{i}"), &mut rng);
    }
    let sid = rec.ids_of(&notes())[0];
    let me = patient.peer();
    let one = vault
        .bundles_from(&rid, &sid, &me, 1, &mut usize::MAX.clone())
        .unwrap()[0]
        .len();
    // A budget for about five bundles at a time.
    let mut from = 1;
    let mut sent = 0;
    while from <= 40 {
        vault.store.read.set(0);
        let mut budget = one * 5 + one / 2;
        let got = vault
            .bundles_from(&rid, &sid, &me, from, &mut budget)
            .unwrap();
        assert!(!got.is_empty());
        let read = vault.store.read.get();
        assert!(
            read <= got.len() + 1,
            "read {read} bundles to send {} (from {from})",
            got.len()
        );
        sent += got.len();
        from += got.len() as u64;
    }
    assert_eq!(sent, 40);
}
