//! Restoring a record from a relay's copy and the recovery phrase ([`Vault::restore_record`]).

use crate::bundle::Bundle;
use crate::entry::{EntryStatus, EntryVersion, Provenance};
use crate::grant::{Ability, Revocation};
use crate::ids::{EntryId, RecordId, SectionId};
use crate::keys::{Identity, RecoveryPhrase, Role};
use crate::keywrap::KeyWrap;
use crate::ledger::TrustItem;
use crate::record::entries::entry_key;
use crate::record::layout::k_wrap_prefix;
use crate::record::{
    AuthItem, LedgerItem, NewRecord, OpenRecord, RecordError, RestoreReport, Vault, Verdict, decbor,
};
use crate::section::SectionName;
use crate::store::{FORMAT_KEY, MemoryStore, Store};
use crate::test_utils::{TEST_NOW, TestRng, record_grant};
use automerge::ROOT;
use automerge::transaction::Transactable;
use serde_json::json;
use std::collections::BTreeMap;

fn name(s: &str) -> SectionName {
    s.parse().unwrap()
}

/// The patient's node as it was before the machine was lost.
struct Original {
    vault: Vault<MemoryStore>,
    patient: Identity,
    phrase: RecoveryPhrase,
    rid: RecordId,
}

/// A record with entries in several sections, a grantee's note (written under an append
/// grant), a private ledger item, and a revocation followed by a rotation of every key, with
/// an entry under the new keys.
fn original(seed: u64) -> Original {
    let mut rng = TestRng::new(seed);
    let vault = Vault::new(MemoryStore::new());
    let (patient, phrase) = Identity::generate(Role::Patient, "Edith Example".into(), &mut rng);
    let new = NewRecord {
        demographics: Some(json!({"name": "Edith Example", "nhs_number": "9434765919"})),
    };
    let rid = vault
        .create_record(&patient, new, TEST_NOW, &mut rng)
        .unwrap();
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let (other, _) = Identity::generate(Role::Professional, "Dr Oh".into(), &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    rec.add_entry(
        &name("notes"),
        &json!({"text": "first"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    rec.add_entry(
        &name("allergies"),
        &json!({"substance": "Penicillin", "severity": "severe"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    record_grant(
        &patient,
        &mut rec,
        gp.peer(),
        "notes",
        Ability::Append,
        TEST_NOW,
        30,
        &mut rng,
    );
    let g = record_grant(
        &patient,
        &mut rec,
        other.peer(),
        "allergies",
        Ability::Read,
        TEST_NOW,
        30,
        &mut rng,
    );
    grantee_note(&vault, &mut rec, &gp, "the GP's note");
    let org = gp.peer();
    let trust = TrustItem {
        name: Some("Surgery".into()),
        added_at: TEST_NOW,
    };
    rec.put_ledger(&[LedgerItem::Trust(&org, &trust)], TEST_NOW, &mut rng)
        .unwrap();
    let revocation = Revocation::sign(&patient, g.id(), TEST_NOW).unwrap();
    rec.put_auth(vec![AuthItem::Revoke(revocation)], TEST_NOW, &mut rng)
        .unwrap();
    let all: Vec<SectionId> = rec.keys.keys().copied().collect();
    assert!(rec.rotate_keys(&all, TEST_NOW, &mut rng).unwrap() >= 4);
    rec.add_entry(
        &name("notes"),
        &json!({"text": "after rotation"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    drop(rec);
    Original {
        vault,
        patient,
        phrase: phrase.unwrap(),
        rid,
    }
}

/// `author` (holding an append grant) writes a note into `rec`'s notes section, received and
/// stored by the patient's node as a sync would.
fn grantee_note<S: Store>(
    vault: &Vault<S>,
    rec: &mut OpenRecord<'_, S>,
    author: &Identity,
    text: &str,
) {
    let sid = rec.ids_of(&name("notes"))[0];
    rec.ensure_loaded(&sid).unwrap();
    let mut d = rec.loaded[&sid].doc.clone();
    d.set_actor(automerge::ActorId::from(author.peer().0));
    let v = EntryVersion {
        id: EntryId::generate(&mut TestRng::new(77)),
        class: crate::section::SectionClass::Notes,
        version: 1,
        supersedes: None,
        status: EntryStatus::Final,
        status_reason: None,
        body: json!({ "text": text }),
        provenance: Provenance {
            author: author.peer(),
            author_name: author.name.clone(),
            author_role: author.role,
            recorded_at: TEST_NOW,
            purpose: None,
        },
    };
    d.put(ROOT, entry_key(&v.id), serde_json::to_string(&v).unwrap())
        .unwrap();
    d.commit();
    let payload = d.get_last_local_change().unwrap().raw_bytes().to_vec();
    let (epoch, key) = rec.current_key(&sid).unwrap();
    let b = Bundle::seal(
        rec.id(),
        sid,
        1,
        None,
        epoch,
        TEST_NOW,
        key,
        &payload,
        author.device_key(),
        &mut TestRng::new(78),
    )
    .unwrap();
    let rules = rec.write_rules();
    let devices: Vec<_> = rec.device_certs().into_iter().map(|c| c.peer).collect();
    let rid = rec.id();
    let rep = vault
        .store_remote(&rid, vec![b], TEST_NOW, &mut |b| match rec
            .judge_write(&rules, &devices, b, TEST_NOW)
        {
            Verdict::Allow => Ok(()),
            v => Err(format!("{v:?}")),
        })
        .unwrap();
    assert_eq!(rep.stored, 1, "{rep:?}");
    rec.reload().unwrap();
}

/// What a relay holds of the record: every wrap the node stored and every bundle.
fn relay_copy<S: Store>(vault: &Vault<S>, rid: &RecordId) -> (Vec<KeyWrap>, Vec<Bundle>) {
    let wraps = vault
        .store
        .scan_prefix(&k_wrap_prefix(rid))
        .unwrap()
        .into_iter()
        .map(|(_, v)| decbor::<KeyWrap>(&v).unwrap())
        .collect();
    let mut bundles = Vec::new();
    for (sid, vv) in vault.held_sections(rid).unwrap() {
        for (author, _) in vv.iter() {
            for b in vault
                .bundles_from(rid, &sid, author, 1, &mut usize::MAX.clone())
                .unwrap()
            {
                bundles.push(Bundle::decode(&b).unwrap());
            }
        }
    }
    (wraps, bundles)
}

/// Every section's current entries as read (without what this node verified on receipt, which
/// is its own), the private ledger's items and the revocations.
fn read_all<S: Store>(
    vault: &Vault<S>,
    identity: &Identity,
    rid: &RecordId,
) -> BTreeMap<String, serde_json::Value> {
    let mut rec = vault.open_record(identity, rid).unwrap();
    assert!(rec.unapplied().is_empty());
    let mut out = BTreeMap::new();
    for info in rec.sections() {
        let mut view = rec.show(&info.name).unwrap();
        for e in &mut view.entries {
            e.verified = None;
        }
        out.insert(info.name.to_string(), serde_json::to_value(&view).unwrap());
    }
    out.insert("ledger".into(), json!(rec.ledger_items("")));
    out.insert("revoked".into(), json!(rec.revoked_grants().len()));
    out
}

/// A fresh node restored from `orig`'s relay copy (`wraps`, `bundles`), with a new identity
/// recovered from the phrase.
fn restore(
    orig: &Original,
    wraps: &[KeyWrap],
    bundles: Vec<Bundle>,
    seed: u64,
) -> (
    Vault<MemoryStore>,
    Identity,
    Result<RestoreReport, RecordError>,
) {
    let mut rng = TestRng::new(seed);
    let fresh = Vault::new(MemoryStore::new());
    let me = Identity::recover("New phone".into(), &orig.phrase, &mut rng);
    let r = fresh.restore_record(&me, &orig.phrase, wraps, bundles, TEST_NOW, &mut rng);
    (fresh, me, r)
}

/// Whether the store holds nothing but its format version.
fn is_empty(vault: &Vault<MemoryStore>) -> bool {
    vault
        .store
        .scan_prefix(&[])
        .unwrap()
        .iter()
        .all(|(k, _)| k == FORMAT_KEY)
}

#[test]
fn a_restored_record_reads_as_the_original_and_the_new_device_writes() {
    let orig = original(1);
    let (wraps, bundles) = relay_copy(&orig.vault, &orig.rid);
    let n = bundles.len();
    let held_keys = orig
        .vault
        .open_record(&orig.patient, &orig.rid)
        .unwrap()
        .keys_held()
        .len();
    let sections = orig.vault.held_sections(&orig.rid).unwrap().len();
    let (fresh, me, report) = restore(&orig, &wraps, bundles, 2);
    let report = report.unwrap();
    assert_eq!(report.record, orig.rid);
    assert_eq!(report.bundles_stored, n, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(report.keys_recovered, held_keys);
    assert_eq!(report.sections, sections);
    assert!(report.unrecoverable.is_empty());
    assert_eq!(
        (report.held, report.duplicates, report.wraps_ignored),
        (0, 0, 0)
    );

    let before = read_all(&orig.vault, &orig.patient, &orig.rid);
    assert!(before["notes"].to_string().contains("the GP's note"));
    assert!(before["notes"].to_string().contains("after rotation"));
    assert_eq!(read_all(&fresh, &me, &orig.rid), before);

    // The new device is the patient's, holds the root, and writes and grants.
    let mut rng = TestRng::new(3);
    let mut rec = fresh.open_record(&me, &orig.rid).unwrap();
    assert!(rec.is_owner() && rec.holds_root());
    let peers: Vec<_> = rec.device_certs().into_iter().map(|c| c.peer).collect();
    assert!(peers.contains(&me.peer()) && peers.contains(&orig.patient.peer()));
    rec.add_entry(
        &name("notes"),
        &json!({"text": "from the new phone"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    rec.add_entry(
        &name("medications"),
        &json!({"name": "Aspirin"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    let (dr, _) = Identity::generate(Role::Professional, "Dr New".into(), &mut rng);
    record_grant(
        &me,
        &mut rec,
        dr.peer(),
        "notes",
        Ability::Read,
        TEST_NOW,
        7,
        &mut rng,
    );
    drop(rec);
    let after = read_all(&fresh, &me, &orig.rid);
    assert!(after["notes"].to_string().contains("from the new phone"));
    assert!(after.contains_key("medications"));

    // And the record can be restored again from this node.
    let (wraps, bundles) = relay_copy(&fresh, &orig.rid);
    let (again, me2, report) = restore(&orig, &wraps, bundles, 4);
    assert!(report.unwrap().refused.is_empty());
    assert_eq!(read_all(&again, &me2, &orig.rid), after);
}

#[test]
fn a_wrong_phrase_or_a_record_already_held_is_refused_and_nothing_written() {
    let orig = original(5);
    let (wraps, bundles) = relay_copy(&orig.vault, &orig.rid);
    let mut rng = TestRng::new(6);
    let (_, wrong) = Identity::generate(Role::Patient, "Someone".into(), &mut rng);
    let wrong = wrong.unwrap();
    let fresh = Vault::new(MemoryStore::new());
    // A phrase of another record: no key of this one opens.
    let stranger = Identity::recover("x".into(), &wrong, &mut rng);
    let r = fresh.restore_record(
        &stranger,
        &wrong,
        &wraps,
        bundles.clone(),
        TEST_NOW,
        &mut rng,
    );
    assert!(matches!(r, Err(RecordError::NoKey(_))), "{r:?}");
    assert!(is_empty(&fresh));
    // The right identity with a phrase that did not make it.
    let me = Identity::recover("x".into(), &orig.phrase, &mut rng);
    let r = fresh.restore_record(&me, &wrong, &wraps, bundles.clone(), TEST_NOW, &mut rng);
    assert!(matches!(r, Err(RecordError::NotPermitted(_))), "{r:?}");
    assert!(is_empty(&fresh));
    // An identity without the root key.
    let linked = Identity::new_device("x".into(), &mut rng).link_to(orig.rid);
    let r = fresh.restore_record(
        &linked,
        &orig.phrase,
        &wraps,
        bundles.clone(),
        TEST_NOW,
        &mut rng,
    );
    assert!(matches!(r, Err(RecordError::NotPermitted(_))), "{r:?}");
    assert!(is_empty(&fresh));
    // The record is already here: on the original node, and once restored.
    let r = orig.vault.restore_record(
        &me,
        &orig.phrase,
        &wraps,
        bundles.clone(),
        TEST_NOW,
        &mut rng,
    );
    assert!(
        matches!(r, Err(RecordError::Exists(id)) if id == orig.rid),
        "{r:?}"
    );
    fresh
        .restore_record(
            &me,
            &orig.phrase,
            &wraps,
            bundles.clone(),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    let r = fresh.restore_record(&me, &orig.phrase, &wraps, bundles, TEST_NOW, &mut rng);
    assert!(matches!(r, Err(RecordError::Exists(_))), "{r:?}");
}

#[test]
fn tampered_and_foreign_bundles_are_refused_and_counted_the_rest_restored() {
    let orig = original(7);
    let (wraps, mut bundles) = relay_copy(&orig.vault, &orig.rid);
    let n = bundles.len();
    let notes = orig
        .vault
        .open_record(&orig.patient, &orig.rid)
        .unwrap()
        .ids_of(&name("notes"))[0];
    // The patient device's newest notes bundle ("after rotation"), altered.
    let i = bundles
        .iter()
        .enumerate()
        .filter(|(_, b)| b.header().section == notes && b.header().author == orig.patient.peer())
        .max_by_key(|(_, b)| b.header().seq)
        .map(|(i, _)| i)
        .unwrap();
    let mut bytes = bundles[i].encoded().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bundles[i] = Bundle::decode(&bytes).unwrap();
    // An auth-document change by the GP, who holds the auth key but is no patient device.
    let mut rng = TestRng::new(8);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let rec = orig.vault.open_record(&orig.patient, &orig.rid).unwrap();
    let mut d = automerge::AutoCommit::new().with_actor(automerge::ActorId::from(gp.peer().0));
    d.put(ROOT, "device-removed/x", "{}").unwrap();
    d.commit();
    let payload = d.get_last_local_change().unwrap().raw_bytes().to_vec();
    let (epoch, key) = rec.current_key(&SectionId::AUTH).unwrap();
    let forged = Bundle::seal(
        orig.rid,
        SectionId::AUTH,
        1,
        None,
        epoch,
        TEST_NOW,
        key,
        &payload,
        gp.device_key(),
        &mut rng,
    )
    .unwrap();
    drop(rec);
    bundles.push(forged);
    // A bundle of another record.
    let other = Vault::new(MemoryStore::new());
    let (stranger, srid) = crate::test_utils::patient_record(&other, "S", TEST_NOW, &mut rng);
    let (_, theirs) = relay_copy(&other, &srid);
    bundles.push(theirs[0].clone());
    drop(stranger);

    let (fresh, me, report) = restore(&orig, &wraps, bundles, 9);
    let report = report.unwrap();
    assert_eq!(report.bundles_stored, n - 1, "{report:?}");
    assert_eq!(report.refused.len(), 3, "{report:?}");
    assert!(
        report.refused.iter().any(|r| r.contains("signature")),
        "{report:?}"
    );
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("not by a patient device")),
        "{report:?}"
    );
    assert!(
        report.refused.iter().any(|r| r.contains("another record")),
        "{report:?}"
    );
    let mut before = read_all(&orig.vault, &orig.patient, &orig.rid);
    let mut after = read_all(&fresh, &me, &orig.rid);
    let (b, a) = (
        before.remove("notes").unwrap(),
        after.remove("notes").unwrap(),
    );
    assert_eq!(after, before);
    assert!(b.to_string().contains("after rotation"));
    assert!(!a.to_string().contains("after rotation"));
    assert!(a.to_string().contains("the GP's note") && a.to_string().contains("first"));
    let rec = fresh.open_record(&me, &orig.rid).unwrap();
    assert!(rec.removed_devices().is_empty());
}

#[test]
fn forged_wraps_are_ignored_and_a_section_without_recovery_wraps_is_reported() {
    let orig = original(10);
    let (wraps, bundles) = relay_copy(&orig.vault, &orig.rid);
    let n = bundles.len();
    let recovery = orig.patient.recovery_public().unwrap();
    let allergies = orig
        .vault
        .open_record(&orig.patient, &orig.rid)
        .unwrap()
        .ids_of(&name("allergies"))[0];
    let mut rng = TestRng::new(11);
    // Forged: a wrap of a key of the relay's choosing, signed by another key; and a real
    // one altered. Both come first, so they would be tried first.
    let mut given = vec![
        KeyWrap::create(
            &crate::keys::signing_key(&mut rng),
            orig.rid,
            SectionId::AUTH,
            0,
            &crate::crypto::SymmetricKey::generate(&mut rng),
            recovery,
            &mut rng,
        )
        .unwrap(),
    ];
    let mut altered = wraps
        .iter()
        .find(|w| w.recipient.into_array() == recovery && w.section == SectionId::AUTH)
        .unwrap()
        .clone();
    altered.epoch += 7;
    given.push(altered);
    // No recovery wrap of the allergies section at all.
    given.extend(
        wraps
            .iter()
            .filter(|w| !(w.section == allergies && w.recipient.into_array() == recovery))
            .cloned(),
    );
    let (fresh, me, report) = restore(&orig, &given, bundles, 12);
    let report = report.unwrap();
    assert_eq!(report.wraps_ignored, 2, "{report:?}");
    assert_eq!(report.unrecoverable, vec![allergies], "{report:?}");
    assert_eq!(report.bundles_stored, n, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    let mut before = read_all(&orig.vault, &orig.patient, &orig.rid);
    assert!(before.remove("allergies").is_some());
    assert_eq!(read_all(&fresh, &me, &orig.rid), before);
}
