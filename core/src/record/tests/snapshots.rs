//! Section snapshots left due by a deferring vault (a daemon's) and written by its job, the
//! documents copied under the node's lock and saved without it.

use super::memo::{notes_id, texts};
use crate::ids::{RecordId, SectionId};
use crate::keys::Identity;
use crate::record::layout::{k_cache, k_shared};
use crate::record::{PendingSnapshot, SNAPSHOT_EVERY_MIN, SealedSnapshot, SharedSnapshot, Vault};
use crate::section::SectionName;
use crate::store::{MemoryStore, Store};
use crate::test_utils::{TEST_NOW, TestRng, patient_record};
use serde_json::json;

/// A deferring vault (a daemon's) over `store`, with a patient's record.
fn deferring(store: &MemoryStore, rng: &mut TestRng) -> (Vault<MemoryStore>, Identity, RecordId) {
    let v = Vault::new(store.clone()).deferring_snapshots();
    let (patient, rid) = patient_record(&v, "P", TEST_NOW, rng);
    (v, patient, rid)
}

/// A deferring vault over a store in memory with the patient's record, and its notes section
/// made due a snapshot (one note, then `SNAPSHOT_EVERY_MIN` more): the store, the vault, the
/// patient, the record, the notes' section.
fn due(
    rng: &mut TestRng,
) -> (
    MemoryStore,
    Vault<MemoryStore>,
    Identity,
    RecordId,
    SectionId,
) {
    let store = MemoryStore::new();
    let (v, patient, rid) = deferring(&store, rng);
    add(&v, &patient, &rid, "first", rng);
    let sid = notes_id(&v, &patient, &rid);
    for i in 1..SNAPSHOT_EVERY_MIN {
        add(&v, &patient, &rid, &format!("note {i}"), rng);
    }
    assert_eq!(v.snapshots_due(&patient.peer()), vec![(rid, sid)]);
    (store, v, patient, rid, sid)
}

/// Each copy saved and sealed, as the job does without the node's lock.
fn seal_all(taken: Vec<PendingSnapshot>, rng: &mut TestRng) -> Vec<SealedSnapshot> {
    taken.into_iter().map(|p| p.seal(rng).unwrap()).collect()
}

fn add<S: Store>(v: &Vault<S>, who: &Identity, rid: &RecordId, text: &str, rng: &mut TestRng) {
    let notes: SectionName = "notes".parse().unwrap();
    let mut rec = v.open_record(who, rid).unwrap();
    rec.add_entry(&notes, &json!({ "text": text }), TEST_NOW, rng)
        .unwrap();
}

#[test]
fn a_deferring_vault_leaves_a_due_snapshot_to_its_job_and_saves_it_past_twice_the_interval() {
    let mut rng = TestRng::new(95);
    let store = MemoryStore::new();
    let (v, patient, rid) = deferring(&store, &mut rng);
    let notes: SectionName = "notes".parse().unwrap();
    let mut written = 0;
    let mut add = |rng: &mut TestRng| {
        let mut rec = v.open_record(&patient, &rid).unwrap();
        rec.add_entry(
            &notes,
            &json!({ "text": format!("note {written}") }),
            TEST_NOW,
            rng,
        )
        .unwrap();
        written += 1;
    };
    add(&mut rng);
    let sid = notes_id(&v, &patient, &rid);
    let cache = || store.get(&k_cache(&rid, &sid)).unwrap();
    let first = cache();
    // A section of few notes is due a snapshot every `SNAPSHOT_EVERY_MIN` bundles: the adds
    // leave it due, unwritten.
    for _ in 1..SNAPSHOT_EVERY_MIN {
        add(&mut rng);
    }
    assert_eq!(cache(), first);
    assert_eq!(v.snapshots_due(&patient.peer()), vec![(rid, sid)]);
    // Not due for another reader.
    assert!(v.snapshots_due(&crate::ids::PeerKey([9; 32])).is_empty());
    // The job writes it, and it is a good one: a vault that never saw the record reads the
    // same notes from it.
    assert_eq!(v.write_due_snapshots(&patient, &mut rng).unwrap(), 1);
    let snapshot = cache();
    assert!(snapshot.is_some() && snapshot != first);
    assert!(v.snapshots_due(&patient.peer()).is_empty());
    assert_eq!(v.write_due_snapshots(&patient, &mut rng).unwrap(), 0);
    assert_eq!(
        texts(&Vault::new(store.clone()), &patient, &rid),
        texts(&v, &patient, &rid)
    );
    // Left unwritten, the snapshot is saved by the add that reaches twice the interval.
    for _ in 1..2 * SNAPSHOT_EVERY_MIN {
        add(&mut rng);
    }
    assert_eq!(cache(), snapshot);
    assert!(!v.snapshots_due(&patient.peer()).is_empty());
    add(&mut rng);
    assert_ne!(cache(), snapshot);
    assert!(v.snapshots_due(&patient.peer()).is_empty());
}

/// The job copies a due document under the lock and saves it without: adds made meanwhile are
/// not lost, are counted after the snapshot, and a vault that never saw the record reads them
/// all, the snapshot first; the shared snapshot covers the copy and verifies.
#[test]
fn a_snapshot_copied_then_sealed_apart_covers_the_copy_and_the_adds_meanwhile_follow_it() {
    let mut rng = TestRng::new(96);
    let (store, v, patient, rid, sid) = due(&mut rng);
    let cache = || store.get(&k_cache(&rid, &sid)).unwrap();
    let before = cache();
    let taken = v.take_due_snapshots(&patient);
    assert_eq!(taken.len(), 1);
    // Nothing written yet, and still due.
    assert_eq!(cache(), before);
    assert_eq!(v.snapshots_due(&patient.peer()), vec![(rid, sid)]);
    // Three notes while it is saved elsewhere.
    for i in 0..3 {
        add(&v, &patient, &rid, &format!("meanwhile {i}"), &mut rng);
    }
    let sealed = seal_all(taken, &mut rng);
    assert_eq!(v.put_sealed_snapshots(&patient, sealed).unwrap(), 1);
    assert_ne!(cache(), before);
    // The three follow the snapshot: not due again.
    assert!(v.snapshots_due(&patient.peer()).is_empty());
    let shown = texts(&v, &patient, &rid);
    assert_eq!(shown.len(), SNAPSHOT_EVERY_MIN as usize + 3);
    assert_eq!(texts(&Vault::new(store.clone()), &patient, &rid), shown);
    let shared = store.get(&k_shared(&rid, &sid)).unwrap().unwrap();
    let shared = SharedSnapshot::decode(&shared).unwrap();
    assert!(shared.verify());
    let covered: u64 = shared.version_vector().values().map(|h| h.seq).sum();
    assert_eq!(
        covered,
        u64::from(SNAPSHOT_EVERY_MIN),
        "the notes copied, not the three after"
    );
}

/// A copy is not written over a newer snapshot (an add that reached twice the interval wrote
/// one meanwhile), nor once the section's key has moved on (it was sealed under the old one).
#[test]
fn a_copy_overtaken_by_a_newer_snapshot_or_a_new_key_is_not_written() {
    let mut rng = TestRng::new(97);
    let (store, v, patient, rid, sid) = due(&mut rng);
    let cache = || store.get(&k_cache(&rid, &sid)).unwrap();
    let taken = v.take_due_snapshots(&patient);
    // Adds up to twice the interval: the last one saves a snapshot itself.
    for i in 0..SNAPSHOT_EVERY_MIN {
        add(&v, &patient, &rid, &format!("meanwhile {i}"), &mut rng);
    }
    let newer = cache();
    let sealed = seal_all(taken, &mut rng);
    assert_eq!(v.put_sealed_snapshots(&patient, sealed).unwrap(), 0);
    assert_eq!(cache(), newer);

    // Due again; copied; then the notes' key moves to a new epoch.
    for i in 0..SNAPSHOT_EVERY_MIN {
        add(&v, &patient, &rid, &format!("later {i}"), &mut rng);
    }
    assert_eq!(v.snapshots_due(&patient.peer()), vec![(rid, sid)]);
    let taken = v.take_due_snapshots(&patient);
    assert_eq!(taken.len(), 1);
    {
        let mut rec = v.open_record(&patient, &rid).unwrap();
        assert_eq!(rec.rotate_keys(&[sid], TEST_NOW, &mut rng).unwrap(), 1);
    }
    let before = cache();
    let sealed = seal_all(taken, &mut rng);
    assert_eq!(v.put_sealed_snapshots(&patient, sealed).unwrap(), 0);
    assert_eq!(cache(), before);
    // What is due is then written under the new key.
    assert_eq!(v.write_due_snapshots(&patient, &mut rng).unwrap(), 1);
    assert_eq!(
        texts(&Vault::new(store.clone()), &patient, &rid),
        texts(&v, &patient, &rid)
    );
}

/// A write of sealed copies that passes every one over commits nothing: a commit is a flush,
/// made under the node's lock, which an edit would wait for.
#[test]
fn a_write_that_passes_every_copy_over_commits_nothing() {
    let mut rng = TestRng::new(99);
    let store = super::Counting::default();
    let v = Vault::new(&store).deferring_snapshots();
    let (patient, rid) = patient_record(&v, "P", TEST_NOW, &mut rng);
    for i in 0..SNAPSHOT_EVERY_MIN {
        add(&v, &patient, &rid, &format!("note {i}"), &mut rng);
    }
    let taken = v.take_due_snapshots(&patient);
    assert_eq!(taken.len(), 1);
    // Overtaken: the adds up to twice the interval save a newer snapshot themselves.
    for i in 0..SNAPSHOT_EVERY_MIN {
        add(&v, &patient, &rid, &format!("meanwhile {i}"), &mut rng);
    }
    let sealed = seal_all(taken, &mut rng);
    let before = store.commits.get();
    assert_eq!(v.put_sealed_snapshots(&patient, sealed).unwrap(), 0);
    assert_eq!(
        store.commits.get(),
        before,
        "nothing written, nothing committed"
    );
}

/// In a section large enough that a snapshot is due only every 256 bundles (the reads'
/// refresh threshold too), the add or read after it comes due takes the kept document and does
/// not save it on the way (a quarter of a second at 100,000 notes): it stays due for the job.
#[test]
fn a_due_snapshot_of_a_large_section_is_not_saved_by_the_next_add_or_read() {
    use crate::record::SNAPSHOT_EVERY;
    let mut rng = TestRng::new(98);
    let store = MemoryStore::new();
    let (v, patient, rid) = deferring(&store, &mut rng);
    add(&v, &patient, &rid, "first", &mut rng);
    let sid = notes_id(&v, &patient, &rid);
    // Past 4 × 256 notes, then on until due.
    let mut i = 1;
    while i <= 4 * SNAPSHOT_EVERY || v.snapshots_due(&patient.peer()).is_empty() {
        add(&v, &patient, &rid, &format!("note {i}"), &mut rng);
        i += 1;
    }
    let cache = || store.get(&k_cache(&rid, &sid)).unwrap();
    let before = cache();
    add(&v, &patient, &rid, "one more", &mut rng);
    assert_eq!(texts(&v, &patient, &rid).len() as u32, i + 1);
    assert_eq!(
        cache(),
        before,
        "saved by the add or the read after it came due"
    );
    assert_eq!(v.snapshots_due(&patient.peer()), vec![(rid, sid)]);
    assert_eq!(v.write_due_snapshots(&patient, &mut rng).unwrap(), 1);
    assert_ne!(cache(), before);
    assert_eq!(
        texts(&Vault::new(store.clone()), &patient, &rid),
        texts(&v, &patient, &rid)
    );
}
