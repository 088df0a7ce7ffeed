//! Revoking a grant ([`OpenRecord::revoke`]): the signed revocation is recorded, and the
//! sections its holder could read move, with the auth document, to keys the holder never
//! holds; what it could not read stays where it was.

use crate::bundle::Bundle;
use crate::grant::{Ability, Grant};
use crate::ids::{RecordId, SectionId};
use crate::keys::{Identity, Role};
use crate::record::{OpenRecord, RecordError, Vault};
use crate::section::SectionName;
use crate::store::MemoryStore;
use crate::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use serde_json::json;

fn name(s: &str) -> SectionName {
    s.parse().unwrap()
}

/// Every bundle `vault` holds of `section` in `record`, in log order per author.
fn bundles(vault: &Vault<MemoryStore>, record: &RecordId, section: &SectionId) -> Vec<Bundle> {
    let mut out = Vec::new();
    for author in vault.heads(record, section).unwrap().keys() {
        let mut budget = usize::MAX;
        for b in vault
            .bundles_from(record, section, author, 1, &mut budget)
            .unwrap()
        {
            out.push(Bundle::decode(&b).unwrap());
        }
    }
    out
}

/// The patient's 30-day grant to `to` to read notes, recorded in `rec`.
fn read_notes(
    patient: &Identity,
    rec: &mut OpenRecord<'_, MemoryStore>,
    to: &Identity,
    rng: &mut TestRng,
) -> Grant {
    record_grant(
        patient,
        rec,
        to.peer(),
        "notes",
        Ability::Read,
        TEST_NOW,
        30,
        rng,
    )
}

#[test]
fn a_revoked_holders_keys_open_nothing_written_after_and_unread_sections_keep_their_keys() {
    let mut rng = TestRng::new(41);
    let vault = Vault::new(MemoryStore::new());
    let (patient, rid) = patient_record(&vault, "Pat", TEST_NOW, &mut rng);
    let (nurse, _) = Identity::generate(Role::Professional, "Nurse".into(), &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    rec.add_entry(
        &name("notes"),
        &json!({"text": "before"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    rec.add_entry(
        &name("medications"),
        &json!({"name": "Metformin 500mg"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    let g = read_notes(&patient, &mut rec, &nurse, &mut rng);
    // The nurse's keys: those a sync or a grant with keys would give her.
    let wraps = rec
        .wrap_keys_for(nurse.agreement_public(), &g.body().scopes, &mut rng)
        .unwrap();
    let nurse_keys: Vec<_> = wraps
        .iter()
        .map(|w| w.open(nurse.agreement_secret()).unwrap())
        .collect();
    let id_of = |rec: &OpenRecord<'_, MemoryStore>, s: &str| {
        *rec.directory()
            .iter()
            .find(|(_, n)| **n == name(s))
            .unwrap()
            .0
    };
    let (notes, meds) = (id_of(&rec, "notes"), id_of(&rec, "medications"));
    let before: Vec<Bundle> = bundles(&vault, &rid, &notes);

    // A grant for another record is refused, and nothing is written.
    let other_vault = Vault::new(MemoryStore::new());
    let (other, other_rid) = patient_record(&other_vault, "Other", TEST_NOW, &mut rng);
    let mut other_rec = other_vault.open_record(&other, &other_rid).unwrap();
    let foreign = read_notes(&other, &mut other_rec, &nurse, &mut rng);
    let held = vault.held_sections(&rid).unwrap();
    assert!(matches!(
        rec.revoke(&foreign, TEST_NOW, &mut rng),
        Err(RecordError::Invalid(_))
    ));
    assert_eq!(vault.held_sections(&rid).unwrap(), held);

    assert_eq!(rec.revoke(&g, TEST_NOW, &mut rng).unwrap(), 2);
    assert!(rec.revoked_grants().contains(&g.id()));
    rec.add_entry(
        &name("notes"),
        &json!({"text": "after"}),
        TEST_NOW,
        &mut rng,
    )
    .unwrap();
    let held = rec.keys_held();
    for (sid, epoch) in [(notes, 1), (SectionId::AUTH, 1), (meds, 0)] {
        let newest = held
            .iter()
            .filter(|(s, _)| *s == sid)
            .map(|(_, e)| *e)
            .max();
        assert_eq!(newest, Some(epoch), "{sid}");
    }
    drop(rec);

    // Her keys open what was written before, and nothing written since.
    let opens = |b: &Bundle| nurse_keys.iter().any(|k| b.open(k).is_ok());
    assert!(before.iter().all(opens));
    let after: Vec<Bundle> = bundles(&vault, &rid, &notes)
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    assert_eq!(after.len(), 1);
    assert!(after.iter().all(|b| b.header().epoch == 1 && !opens(b)));
    let rotation = bundles(&vault, &rid, &SectionId::AUTH)
        .into_iter()
        .filter(|b| b.header().epoch == 1)
        .count();
    assert_eq!(
        rotation, 1,
        "the rotation is written under the new auth key"
    );

    // Nobody but the device holding the record root revokes: not the grantee's replica.
    let nurse_vault = Vault::new(MemoryStore::new());
    nurse_vault
        .register_replica(&rid, &wraps, TEST_NOW)
        .unwrap();
    let mut replica = nurse_vault.open_record(&nurse, &rid).unwrap();
    assert!(matches!(
        replica.revoke(&g, TEST_NOW, &mut rng),
        Err(RecordError::NotPermitted(_))
    ));
}
