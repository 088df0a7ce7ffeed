//! The record engine against the in-memory store: lifecycle, persistence, tampering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{NewRecord, RecordError, SNAPSHOT_EVERY, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::{Batch, MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use serde_json::json;

fn patient(seed: u64) -> (Identity, TestRng) {
    let mut rng = TestRng::new(seed);
    let (id, _) = Identity::generate(Role::Patient, "Edith Example".into(), &mut rng);
    (id, rng)
}

fn name(s: &str) -> SectionName {
    s.parse().unwrap()
}

fn at(mins: i64) -> Timestamp {
    TEST_NOW.saturating_add_millis(mins * 60_000)
}

/// A patient with a new record (no demographics) on the in-memory store.
fn empty_record(seed: u64) -> (Identity, TestRng, Vault<MemoryStore>, RecordId) {
    let (id, mut rng) = patient(seed);
    let vault = Vault::new(MemoryStore::new());
    let rid = vault
        .create_record(&id, NewRecord::default(), at(0), &mut rng)
        .unwrap();
    (id, rng, vault, rid)
}

fn dump(store: &MemoryStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan(&[], &[0xff; 4]).unwrap()
}

#[test]
fn add_show_correct_history_mark_error() {
    let (id, mut rng) = patient(1);
    let vault = Vault::new(MemoryStore::new());
    let new = NewRecord {
        demographics: Some(json!({"name": "Edith Example", "nhs_number": "9434765919"})),
    };
    let rid = vault.create_record(&id, new, at(0), &mut rng).unwrap();
    assert_eq!(Some(rid), id.record_id());
    let mut rec = vault.open_record(&id, &rid).unwrap();

    let a = rec
        .add_entry(
            &name("allergies"),
            &json!({"substance": "Penicillin", "severity": "severe"}),
            at(1),
            &mut rng,
        )
        .unwrap();
    let n = rec
        .add_entry(&name("notes"), &json!({"text": "first"}), at(2), &mut rng)
        .unwrap();
    let view = rec.show(&name("allergies")).unwrap();
    assert_eq!(view.entries.len(), 1);
    assert_eq!(view.entries[0].id, a);
    assert_eq!(view.entries[0].provenance.author, id.peer());
    assert_eq!(view.entries[0].provenance.recorded_at, at(1));

    let a2 = rec
        .correct(
            &a,
            &json!({"substance": "Penicillin", "severity": "moderate"}),
            at(3),
            &mut rng,
        )
        .unwrap();
    let view = rec.show(&name("allergies")).unwrap();
    assert_eq!(view.entries.len(), 1, "the correction replaces, not adds");
    assert_eq!(view.entries[0].id, a2);
    assert_eq!(view.entries[0].version, 2);
    assert_eq!(view.entries[0].supersedes, Some(a));
    assert_eq!(view.entries[0].body["severity"], "moderate");

    // Correcting a replaced version is refused, naming the replacement.
    match rec.correct(&a, &json!({"substance": "X"}), at(4), &mut rng) {
        Err(RecordError::Superseded { entry, by }) => {
            assert_eq!((entry, by), (a, a2));
        }
        other => panic!("expected Superseded, got {other:?}"),
    }

    let e = rec
        .mark_error(&n, "wrong patient", at(5), &mut rng)
        .unwrap();
    let notes = rec.show(&name("notes")).unwrap();
    assert_eq!(notes.entries.len(), 1);
    assert_eq!(notes.entries[0].id, e);
    assert_eq!(
        notes.entries[0].status,
        hearth_core::entry::EntryStatus::EnteredInError
    );
    assert_eq!(
        notes.entries[0].status_reason.as_deref(),
        Some("wrong patient")
    );
    assert!(matches!(
        rec.mark_error(&e, "again", at(6), &mut rng),
        Err(RecordError::AlreadyInError(_))
    ));
    assert!(matches!(
        rec.mark_error(&e, "  ", at(6), &mut rng),
        Err(RecordError::Invalid(_))
    ));

    let history = rec.history(&name("allergies")).unwrap();
    let versions: Vec<u32> = history.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![1, 2]);

    let sections: Vec<String> = rec.sections().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(sections, vec!["demographics", "allergies", "notes"]);
    let demo = rec.show(&name("demographics")).unwrap();
    assert_eq!(demo.entries[0].body["nhs_number"], "9434765919");
}

#[test]
fn bad_input_changes_nothing() {
    let (id, mut rng) = patient(2);
    let store = MemoryStore::new();
    let vault = Vault::new(store.clone());
    let rid = vault
        .create_record(&id, NewRecord::default(), at(0), &mut rng)
        .unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    rec.add_entry(&name("notes"), &json!({"text": "keep me"}), at(1), &mut rng)
        .unwrap();
    let before = dump(&store);
    for bad in [
        json!({"txt": "x"}),
        json!([]),
        json!("text"),
        json!({"text": 5}),
    ] {
        let err = rec
            .add_entry(&name("notes"), &bad, at(2), &mut rng)
            .unwrap_err();
        assert!(matches!(err, RecordError::Schema(_)), "{err:?}");
    }
    // A schema error in a section not yet created creates nothing either.
    assert!(
        rec.add_entry(&name("allergies"), &json!({}), at(2), &mut rng)
            .is_err()
    );
    assert_eq!(dump(&store), before);
    assert_eq!(rec.sections().len(), 1);
    assert_eq!(rec.show(&name("notes")).unwrap().entries.len(), 1);
}

#[test]
fn survives_restart_and_snapshots() {
    let (id, mut rng) = patient(3);
    let store = MemoryStore::new();
    let rid = {
        let vault = Vault::new(store.clone());
        let rid = vault
            .create_record(&id, NewRecord::default(), at(0), &mut rng)
            .unwrap();
        let mut rec = vault.open_record(&id, &rid).unwrap();
        for i in 0..(SNAPSHOT_EVERY + 10) {
            rec.add_entry(
                &name("notes"),
                &json!({"text": format!("note {i}")}),
                at(i as i64),
                &mut rng,
            )
            .unwrap();
        }
        rid
    };
    // "Restart": a new vault over the same storage.
    let vault = Vault::open(store.clone()).unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    assert_eq!(
        rec.show(&name("notes")).unwrap().entries.len(),
        SNAPSHOT_EVERY as usize + 10
    );

    // A damaged snapshot is only a cache: the section is rebuilt from its bundles.
    let snaps: Vec<Vec<u8>> = store
        .scan_prefix(b"C")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(!snaps.is_empty(), "a snapshot was written");
    let mut b = Batch::new();
    for k in snaps {
        let mut v = store.get(&k).unwrap().unwrap();
        let last = v.len() - 1;
        v[last] ^= 1;
        b.put(k, v);
    }
    store.commit(b).unwrap();
    let vault = Vault::open(store.clone()).unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    assert_eq!(
        rec.show(&name("notes")).unwrap().entries.len(),
        SNAPSHOT_EVERY as usize + 10
    );
}

/// Flip one byte in the newest stored bundle of the section named `section`.
fn tamper_section(store: &MemoryStore, vault: &Vault<MemoryStore>, id: &Identity, section: &str) {
    let rid = id.record_id().unwrap();
    let rec = vault.open_record(id, &rid).unwrap();
    let info = rec
        .sections()
        .into_iter()
        .find(|s| s.name.to_string() == section)
        .unwrap();
    let sid = info.ids[0];
    let mut prefix = vec![b'B'];
    prefix.extend_from_slice(&rid.0);
    prefix.extend_from_slice(&sid.0);
    let (k, mut v) = store.scan_prefix(&prefix).unwrap().pop().unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x20;
    let mut b = Batch::new();
    b.put(k, v);
    store.commit(b).unwrap();
}

#[test]
fn tampered_bundle_is_detected_and_other_sections_stay_readable() {
    let (id, mut rng) = patient(4);
    let store = MemoryStore::new();
    let vault = Vault::new(store.clone());
    let rid = vault
        .create_record(&id, NewRecord::default(), at(0), &mut rng)
        .unwrap();
    {
        let mut rec = vault.open_record(&id, &rid).unwrap();
        rec.add_entry(&name("notes"), &json!({"text": "a"}), at(1), &mut rng)
            .unwrap();
        rec.add_entry(
            &name("allergies"),
            &json!({"substance": "Latex"}),
            at(2),
            &mut rng,
        )
        .unwrap();
    }
    tamper_section(&store, &vault, &id, "notes");
    // The vault that wrote the note keeps the document it wrote (record::memo): it goes on
    // showing what it verified and wrote, never the altered bytes. Whoever opens the store
    // next (another command, the daemon after a restart, `hearth store check`) reads the
    // bundle from disk and finds it altered.
    {
        let mut rec = vault.open_record(&id, &rid).unwrap();
        let shown = rec.show(&name("notes")).unwrap();
        assert_eq!(shown.entries.len(), 1);
        assert_eq!(shown.entries[0].body["text"], "a");
    }
    let vault = Vault::new(store.clone());
    let mut rec = vault.open_record(&id, &rid).unwrap();
    match rec.show(&name("notes")) {
        Err(RecordError::Corrupt { section, .. }) => assert_eq!(section, "notes"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(rec.show(&name("allergies")).unwrap().entries.len(), 1);
    // Writing to the damaged section is refused too, and writes elsewhere still work.
    assert!(
        rec.add_entry(&name("notes"), &json!({"text": "b"}), at(3), &mut rng)
            .is_err()
    );
    rec.add_entry(
        &name("allergies"),
        &json!({"substance": "Nuts"}),
        at(4),
        &mut rng,
    )
    .unwrap();
}

#[test]
fn missing_bundle_is_detected() {
    let (id, mut rng) = patient(5);
    let store = MemoryStore::new();
    let vault = Vault::new(store.clone());
    let rid = vault
        .create_record(&id, NewRecord::default(), at(0), &mut rng)
        .unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    for i in 0..3 {
        rec.add_entry(
            &name("notes"),
            &json!({"text": format!("{i}")}),
            at(i),
            &mut rng,
        )
        .unwrap();
    }
    let sid = rec.sections()[0].ids[0];
    let mut prefix = vec![b'B'];
    prefix.extend_from_slice(&rid.0);
    prefix.extend_from_slice(&sid.0);
    let bundles = store.scan_prefix(&prefix).unwrap();
    let mut b = Batch::new();
    b.delete(bundles[1].0.clone());
    store.commit(b).unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    assert!(matches!(
        rec.show(&name("notes")),
        Err(RecordError::Corrupt { .. })
    ));
}

#[test]
fn nothing_is_stored_in_clear() {
    let (id, mut rng) = patient(6);
    let store = MemoryStore::new();
    let vault = Vault::new(store.clone());
    let new = NewRecord {
        demographics: Some(json!({"name": "CANARY-NAME-7731", "nhs_number": "9434765919"})),
    };
    let rid = vault.create_record(&id, new, at(0), &mut rng).unwrap();
    let mut rec = vault.open_record(&id, &rid).unwrap();
    rec.add_entry(
        &name("notes:mental-health"),
        &json!({"text": "CANARY-NOTE-9921"}),
        at(1),
        &mut rng,
    )
    .unwrap();
    let all: Vec<u8> = dump(&store)
        .into_iter()
        .flat_map(|(k, v)| k.into_iter().chain(v))
        .collect();
    for canary in [
        "CANARY-NAME-7731",
        "CANARY-NOTE-9921",
        "9434765919",
        "mental-health",
        "notes",
    ] {
        assert!(
            !all.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{canary} found in clear in the store"
        );
    }
}

#[test]
fn another_identity_cannot_open_the_record() {
    let (id, mut rng) = patient(7);
    let (other, _) = patient(8);
    let vault = Vault::new(MemoryStore::new());
    let rid = vault
        .create_record(&id, NewRecord::default(), at(0), &mut rng)
        .unwrap();
    assert!(matches!(
        vault.open_record(&other, &rid),
        Err(RecordError::NoKey(_))
    ));
}

#[test]
fn invalid_demographics_create_nothing() {
    let (id, mut rng) = patient(9);
    let store = MemoryStore::new();
    let vault = Vault::new(store.clone());
    let new = NewRecord {
        demographics: Some(json!({"name": "X", "nhs_number": "9434765918"})),
    };
    assert!(vault.create_record(&id, new, at(0), &mut rng).is_err());
    assert!(vault.records().unwrap().is_empty());
}

/// New entries and entries marked in error in one write: all of it, or (when one mark is
/// refused) nothing at all.
#[test]
fn adding_and_marking_in_error_is_one_write() {
    use hearth_core::entry::{CheckedBody, EntryStatus};
    use hearth_core::record::CheckedEntry;
    let (id, mut rng, vault, rid) = empty_record(31);
    let mut rec = vault.open_record(&id, &rid).unwrap();
    let a = rec
        .add_entry(&name("notes"), &json!({"text": "a"}), at(1), &mut rng)
        .unwrap();
    let b = rec
        .add_entry(&name("notes"), &json!({"text": "b"}), at(1), &mut rng)
        .unwrap();
    let item = |text: &str| CheckedEntry {
        section: name("notes"),
        body: CheckedBody::new(name("notes").class, &json!({ "text": text })).unwrap(),
        supersedes: None,
    };

    let (ids, marked) = rec
        .add_checked_and_mark_errors(&[item("c")], &[a], "wrong patient", at(2), &mut rng)
        .unwrap();
    assert_eq!((ids.len(), marked.len()), (1, 1));
    let view = rec.show(&name("notes")).unwrap();
    let status = |e| view.entries.iter().find(|v| v.id == e).map(|v| v.status);
    assert_eq!(status(marked[0]), Some(EntryStatus::EnteredInError));
    assert_eq!(status(b), Some(EntryStatus::Final));
    assert_eq!(status(ids[0]), Some(EntryStatus::Final));

    // `a`'s version is in error now, and `b` is asked twice: refused, nothing written.
    let before = dump(vault.store());
    let mut attempt = |bad: &[hearth_core::ids::EntryId], reason: &str| {
        rec.add_checked_and_mark_errors(&[item("d")], bad, reason, at(3), &mut rng)
            .unwrap_err()
    };
    assert!(matches!(
        attempt(&[marked[0]], "again"),
        RecordError::AlreadyInError(e) if e == marked[0]
    ));
    assert!(matches!(
        attempt(&[b, b], "again"),
        RecordError::Invalid("an entry is changed twice in one write")
    ));
    assert!(matches!(
        attempt(&[a], "again"),
        RecordError::Superseded { entry, by } if entry == a && by == marked[0]
    ));
    assert!(matches!(
        attempt(&[b], "  "),
        RecordError::Invalid("a reason is required")
    ));
    assert_eq!(dump(vault.store()), before, "nothing was written");
    // Nor is anything left in the open record.
    let view = rec.show(&name("notes")).unwrap();
    assert_eq!(view.entries.len(), 3);
    assert!(view.entries.iter().all(|e| e.body["text"] != "d"));
}

/// Entries given to a writer that is dropped unfinished (a later resource refused, say) leave
/// no trace, in the store or in the open record, even once their section's document took them;
/// ids drawn ahead are handed out in key order.
#[test]
fn an_unfinished_writer_leaves_the_record_as_it_was() {
    use hearth_core::entry::CheckedBody;
    use hearth_core::record::CheckedEntry;
    let (id, mut rng, vault, rid) = empty_record(32);
    let mut rec = vault.open_record(&id, &rid).unwrap();
    let before = dump(vault.store());
    let item = |n: usize| CheckedEntry {
        section: name("notes"),
        body: CheckedBody::new(
            name("notes").class,
            &json!({ "text": format!("{n:0>600}") }),
        )
        .unwrap(),
        supersedes: None,
    };
    {
        let mut writer = rec.entry_writer(at(1), &mut rng);
        writer.expect(3000);
        // Over 2 MiB of entries: the section's document has taken most of them.
        let ids: Vec<String> = (0..3000)
            .map(|n| writer.add(item(n)).unwrap().to_string())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in key order");
        assert_eq!(writer.len(), 3000);
    }
    assert_eq!(dump(vault.store()), before, "nothing was written");
    assert!(rec.sections().is_empty(), "the section made is forgotten");

    // A writer that failed to add an entry refuses to finish, and leaves nothing either.
    {
        let mut writer = rec.entry_writer(at(1), &mut rng);
        writer.add(item(1)).unwrap();
        let wrong = CheckedEntry {
            section: name("conditions"),
            ..item(2)
        };
        assert!(writer.add(wrong).is_err());
        assert!(writer.add(item(3)).is_err(), "spoilt");
        assert!(writer.finish(&[], "").is_err());
    }
    assert_eq!(dump(vault.store()), before, "nothing was written");
    assert!(rec.sections().is_empty());

    // The record works on: a finished writer commits exactly what it was given.
    let mut writer = rec.entry_writer(at(2), &mut rng);
    let one = writer.add(item(7)).unwrap();
    let (ids, marked) = writer.finish(&[], "").unwrap();
    assert_eq!((ids, marked.len()), (vec![one], 0));
    let view = rec.show(&name("notes")).unwrap();
    assert_eq!(view.entries.len(), 1);
    // Over 1 MiB of entries in a few bundles: read back (decrypted on all cores) whole.
    let mut writer = rec.entry_writer(at(3), &mut rng);
    writer.expect(2500);
    for n in 0..2500 {
        writer.add(item(n)).unwrap();
    }
    writer.finish(&[], "").unwrap();
    drop(rec);
    let mut again = vault.open_record(&id, &rid).unwrap();
    let view = again.show(&name("notes")).unwrap();
    assert_eq!(view.entries.len(), 2501);
    assert!(
        view.entries
            .iter()
            .any(|e| e.body["text"] == format!("{:0>600}", 2499))
    );
}

/// A grant of `append` makes the sections it names (or, for every label of a class, its
/// `general` section) when the record has none yet; `read` makes none; only once.
#[test]
fn sections_to_add_to_are_made_for_a_grant() {
    use hearth_core::grant::{Ability, Scope};
    use hearth_core::section::{Label, SectionClass};
    let (id, mut rng, vault, rid) = empty_record(32);
    let mut rec = vault.open_record(&id, &rid).unwrap();
    rec.add_entry(&name("notes"), &json!({"text": "a"}), at(1), &mut rng)
        .unwrap();
    let scope = |class, label, ability| Scope {
        class,
        label,
        ability,
    };
    let scopes = [
        scope(SectionClass::Notes, Some(Label::General), Ability::Append),
        scope(SectionClass::Observations, None, Ability::Append),
        scope(
            SectionClass::Encounters,
            Some(Label::SocialCare),
            Ability::Append,
        ),
        scope(SectionClass::Medications, None, Ability::Read),
    ];
    let made = rec.create_sections_for(&scopes, at(2), &mut rng).unwrap();
    assert_eq!(
        made,
        vec![name("observations"), name("encounters:social-care")]
    );
    let held: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    for n in ["notes", "observations", "encounters:social-care"] {
        assert!(held.contains(&name(n)), "{n}");
    }
    assert!(!held.contains(&name("medications")));
    assert!(rec.show(&name("observations")).unwrap().entries.is_empty());
    // Again: nothing to make, nothing written.
    let before = dump(vault.store());
    assert!(
        rec.create_sections_for(&scopes, at(3), &mut rng)
            .unwrap()
            .is_empty()
    );
    assert_eq!(dump(vault.store()), before);
    // Reopened, the sections are there.
    let rec = vault.open_record(&id, &rid).unwrap();
    let held: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    assert!(held.contains(&name("encounters:social-care")));
}
