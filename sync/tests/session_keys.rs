//! Sync across revocations, linked and removed devices, and shared snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::{self, Ability};
use hearth_core::ids::SectionId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::store::{MemoryStore, Store};
use hearth_sync::session::SyncError;
use serde_json::json;

mod common;
use common::*;

#[test]
fn revocation_moves_readable_sections_to_keys_the_revoked_never_get() {
    let mut w = world(21);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    sync(&w.sw, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let notes = section_id(&w.patient, &rid, "notes");
    revoke_unsigned(&mut w, &g, None, at(11));
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        let moved = rec
            .rotate_keys(&[notes, SectionId::AUTH], at(11), &mut w.rng)
            .unwrap();
        assert_eq!(moved, 2);
        rec.add_entry(
            &name("notes"),
            &json!({"text": "CANARY-after-revocation"}),
            at(12),
            &mut w.rng,
        )
        .unwrap();
    }
    // The social worker, still granted, receives the new key and reads the new note.
    let report = sync(&w.sw, &w.patient, rid, at(13), &mut w.rng).unwrap();
    assert!(report.in_sync, "{report:?}");
    assert_eq!(
        w.sw.texts(&rid, "notes"),
        vec!["note 1", "CANARY-after-revocation"]
    );
    // The revoked GP is refused; and even handed every bundle by someone else, it cannot
    // read anything written after the revocation.
    assert!(sync(&w.gp, &w.patient, rid, at(13), &mut w.rng).is_err());
    copy_all_bundles(&w.sw, &w.gp, &rid);
    let keys =
        w.gp.vault
            .open_record(&w.gp.id, &rid)
            .map(|r| r.keys_held());
    if let Ok(keys) = keys {
        assert!(!keys.contains(&(notes, 1)), "the GP got the new key");
    }
    assert!(
        !w.gp
            .texts(&rid, "notes")
            .contains(&"CANARY-after-revocation".to_string())
    );
    // Only the root holder rotates keys.
    let mut rec = w.sw.vault.open_record(&w.sw.id, &rid).unwrap();
    assert!(rec.rotate_keys(&[notes], at(14), &mut w.rng).is_err());
}

#[test]
fn a_linked_device_syncs_everything_and_a_removed_one_nothing_new() {
    let mut w = world(22);
    let rid = w.rid;
    // The phone: a patient device without the root key, certified by the root.
    let phone_id = Identity::new_device("phone".into(), &mut w.rng).link_to(rid);
    let phone = Node {
        id: phone_id,
        vault: Vault::new(MemoryStore::new()),
    };
    let wraps = {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        let (_, wraps) = rec
            .certify_device(
                phone.id.peer(),
                "phone",
                phone.id.agreement_public(),
                &phone.id.agreement_certificate(),
                at(5),
                &mut w.rng,
            )
            .unwrap();
        wraps
    };
    phone.vault.register_linked(&rid, &wraps, at(5)).unwrap();
    let report = sync(&phone, &w.patient, rid, at(6), &mut w.rng).unwrap();
    assert!(report.in_sync, "{report:?}");
    assert!(
        phone
            .texts(&rid, "notes:mental-health")
            .contains(&"CANARY-MH".to_string())
    );
    // It writes to any existing section, and the root device accepts it.
    {
        let mut rec = phone.vault.open_record(&phone.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "from the phone"}),
            at(7),
            &mut w.rng,
        )
        .unwrap();
        // New sections, grants and key changes stay with the root holder.
        assert!(
            rec.add_entry(
                &name("allergies"),
                &json!({"substance": "peanut"}),
                at(7),
                &mut w.rng
            )
            .is_err()
        );
    }
    let report = sync(&phone, &w.patient, rid, at(8), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert!(
        w.patient
            .texts(&rid, "notes")
            .contains(&"from the phone".to_string())
    );
    // Removed: its new writes are refused, and what the patient writes next stays unreadable
    // to it even with the bundles in hand.
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        let moved = rec
            .remove_device(phone.id.peer(), at(9), &mut w.rng)
            .unwrap();
        assert!(moved >= 3, "{moved}");
        rec.add_entry(
            &name("notes"),
            &json!({"text": "CANARY-after-removal"}),
            at(10),
            &mut w.rng,
        )
        .unwrap();
        assert!(!rec.device_certs().iter().any(|c| c.peer == phone.id.peer()));
    }
    assert!(matches!(
        sync(&phone, &w.patient, rid, at(11), &mut w.rng),
        Err(SyncError::Refused(_))
    ));
    copy_all_bundles(&w.patient, &phone, &rid);
    assert!(
        !phone
            .texts(&rid, "notes")
            .contains(&"CANARY-after-removal".to_string())
    );
    // A bundle the removed phone writes now is refused by the patient's node, even offered
    // with the phone's old certificate.
    {
        let mut rec = phone.vault.open_record(&phone.id, &rid).unwrap();
        // Its own copy of the auth document may not know yet; the patient's does.
        let _ = rec.add_entry(&name("notes"), &json!({"text": "late"}), at(12), &mut w.rng);
    }
    copy_all_bundles(&phone, &w.patient, &rid);
    assert!(!w.patient.texts(&rid, "notes").contains(&"late".to_string()));
}

#[test]
fn a_new_reader_starts_from_the_shared_snapshot_and_can_pass_it_on() {
    let mut w = world(23);
    let rid = w.rid;
    w.patient.add_all(
        &rid,
        "notes",
        (0..300).map(|i| format!("n{i}")),
        at(5),
        &mut w.rng,
    );
    grant_to(&mut w, "gp", "notes", Ability::Read);
    grant_to(&mut w, "sw", "notes", Ability::Read);
    let notes = section_id(&w.patient, &rid, "notes");
    assert!(
        w.patient
            .vault
            .shared_snapshot(&rid, &notes)
            .unwrap()
            .is_some()
    );
    // The GP's first sync: one snapshot and the bundles after it, not 301 bundles.
    let report = sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    assert!(report.in_sync, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    let held = w.gp.bundles_in(&rid, &notes);
    assert!(held < 100, "{held} bundles held: the snapshot was not used");
    let texts = w.gp.texts(&rid, "notes");
    assert_eq!(texts.len(), 301);
    assert_eq!(texts, w.patient.texts(&rid, "notes"));
    assert!(!w.gp.vault.base(&rid, &notes).unwrap().is_empty());
    // Incremental sync continues from there.
    w.patient.add(&rid, "notes", "after", at(11), &mut w.rng);
    let report = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(report.in_sync && report.refused.is_empty(), "{report:?}");
    assert_eq!(w.gp.texts(&rid, "notes").len(), 302);
    // The GP holds no early bundles, so it passes the snapshot on to the social worker (whose
    // grant carried the keys, as a grant made with a contact card does).
    let wraps = {
        let rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.wrap_keys_for(
            w.sw.id.agreement_public(),
            &grant::scopes(&"notes".parse().unwrap(), Ability::Read),
            &mut w.rng,
        )
        .unwrap()
    };
    w.sw.vault.register_replica(&rid, &wraps, at(13)).unwrap();
    let report = sync(&w.sw, &w.gp, rid, at(13), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(w.sw.texts(&rid, "notes"), w.patient.texts(&rid, "notes"));
    // Reopening from the store gives the same (the snapshot is the section's base on disk).
    let again = Vault::open(w.gp.vault.store().clone()).unwrap();
    let mut rec = again.open_record(&w.gp.id, &rid).unwrap();
    assert_eq!(rec.show(&name("notes")).unwrap().entries.len(), 302);
}

#[test]
fn forged_or_foreign_snapshots_are_refused_and_change_nothing() {
    let mut w = world(24);
    let rid = w.rid;
    w.patient.add_all(
        &rid,
        "notes",
        (0..260).map(|i| format!("n{i}")),
        at(5),
        &mut w.rng,
    );
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let notes = section_id(&w.patient, &rid, "notes");
    // The GP syncs a little first so that it holds the section's key.
    sync(&w.gp, &w.patient, rid, at(6), &mut w.rng).unwrap();
    let good = w
        .patient
        .vault
        .shared_snapshot(&rid, &notes)
        .unwrap()
        .unwrap();
    let fresh = Node::new(Role::Professional, "x", &mut w.rng);
    let _ = fresh;
    let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
    let devices = vec![w.patient.id.peer()];
    let before = w.gp.vault.store().scan(&[], &[0xff; 4]).unwrap();
    // Flipped bytes anywhere: refused (or unreadable), never stored.
    for i in [10, good.len() / 2, good.len() - 3] {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        assert!(rec.accept_snapshot(&bad, &devices).is_err());
    }
    // Signed by someone who is not one of the patient's devices.
    assert!(rec.accept_snapshot(&good, &[w.gp.id.peer()]).is_err());
    assert!(rec.accept_snapshot(b"garbage", &devices).is_err());
    assert_eq!(w.gp.vault.store().scan(&[], &[0xff; 4]).unwrap(), before);
    // The genuine one covers nothing new for a GP that already holds every bundle.
    assert_eq!(rec.accept_snapshot(&good, &devices), Ok(false));
}
