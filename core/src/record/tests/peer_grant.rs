//! A grant made to a bare peer id carries the section keys, wrapped to the X25519 form of the
//! grantee's device key ([`crate::ids::PeerKey::device_agreement`]): the grantee reads with
//! nothing but the grant and the bundles (from a relay, say), and nobody else's keys open them.

use crate::bundle::Bundle;
use crate::grant::{Ability, Grant, GrantSpec};
use crate::ids::{RecordId, SectionId};
use crate::keys::{Identity, Role};
use crate::record::{KeyWrap, Vault};
use crate::store::MemoryStore;
use crate::test_utils::{TEST_NOW, TestRng, patient_record};
use serde_json::json;

/// Every bundle `from` holds of `record`, stored as they are in `to` (as a relay would serve
/// them; the checks of who may write are the sync layer's and not what this test is about).
fn copy_record(from: &Vault<MemoryStore>, to: &Vault<MemoryStore>, record: &RecordId) {
    let sections: Vec<SectionId> = from.held_sections(record).unwrap().into_keys().collect();
    for sid in sections {
        for author in from.heads(record, &sid).unwrap().keys() {
            let mut budget = usize::MAX;
            let raw = from
                .bundles_from(record, &sid, author, 1, &mut budget)
                .unwrap();
            let bundles: Vec<Bundle> = raw.iter().map(|b| Bundle::decode(b).unwrap()).collect();
            to.store_remote(record, bundles, TEST_NOW, &mut |_| Ok(()))
                .unwrap();
        }
    }
}

/// A patient's vault holding one note ("seen today"), the patient, the record, and a GP.
fn a_note_and_a_gp(rng: &mut TestRng) -> (Vault<MemoryStore>, Identity, RecordId, Identity) {
    let vault = Vault::new(MemoryStore::new());
    let (patient, rid) = patient_record(&vault, "Pat", TEST_NOW, rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), rng);
    vault
        .open_record(&patient, &rid)
        .unwrap()
        .add_entry(&notes(), &json!({"text": "seen today"}), TEST_NOW, rng)
        .unwrap();
    (vault, patient, rid, gp)
}

fn notes() -> crate::section::SectionName {
    "notes".parse().unwrap()
}

#[test]
fn a_grant_to_a_bare_peer_id_carries_keys_only_its_holder_opens() {
    let mut rng = TestRng::new(91);
    let (patient_vault, patient, rid, gp) = a_note_and_a_gp(&mut rng);
    let (other, _) = Identity::generate(Role::Professional, "Dr Other".into(), &mut rng);
    let notes = notes();
    let rec = patient_vault.open_record(&patient, &rid).unwrap();

    // The patient knows only the GP's peer id.
    let recipient = gp.peer().device_agreement().unwrap();
    assert_eq!(recipient, gp.device_agreement_public());
    assert_ne!(recipient, gp.agreement_public());
    let spec = GrantSpec::new(
        gp.peer(),
        "notes".parse().unwrap(),
        Ability::Read,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(86_400_000),
    );
    let keys = rec
        .wrap_keys_for(recipient, &spec.scopes, &mut rng)
        .unwrap();
    assert!(keys.len() >= 2, "the notes key and the auth document's");
    let g = Grant::issue_root(&patient, spec, &keys, &mut rng).unwrap();
    drop(rec);

    // Addressed to the GP alone.
    let wrap: &KeyWrap = &g.body().keys[0];
    assert!(wrap.is_for(&gp, &rid));
    assert!(!wrap.is_for(&other, &rid));
    assert!(!wrap.is_for(&gp, &RecordId([7; 32])));
    assert!(wrap.open(other.agreement_secret()).is_err());
    assert!(wrap.open(gp.agreement_secret()).is_err());

    // The GP's node takes the keys in with the grant, and reads the bundles with them.
    let gp_vault = Vault::new(MemoryStore::new());
    let accepted = gp_vault
        .accept_grant(&gp, std::slice::from_ref(&g), TEST_NOW)
        .unwrap();
    assert_eq!(accepted.wraps, keys.len());
    copy_record(&patient_vault, &gp_vault, &rid);
    let mut theirs = gp_vault.open_record(&gp, &rid).unwrap();
    let view = theirs.show(&notes).unwrap();
    assert_eq!(view.entries.len(), 1);
    assert_eq!(view.entries[0].body["text"], "seen today");

    // The same wraps and bundles in another professional's node open nothing.
    let other_vault = Vault::new(MemoryStore::new());
    other_vault.register_replica(&rid, &keys, TEST_NOW).unwrap();
    copy_record(&patient_vault, &other_vault, &rid);
    let held = other_vault
        .open_record(&other, &rid)
        .map(|r| r.keys_held())
        .unwrap_or_default();
    assert!(held.is_empty(), "{held:?}");
}

/// The wraps a patient's node makes for a grantee when it supplies a relay are kept and sent
/// again as they are: a second supply makes none, and a key rotation adds only the new epoch's.
#[test]
fn wraps_made_for_a_grantee_are_kept_and_reused() {
    let mut rng = TestRng::new(92);
    let (vault, patient, rid, gp) = a_note_and_a_gp(&mut rng);
    let notes = notes();
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    let sid = *rec
        .directory()
        .iter()
        .find(|(_, n)| **n == notes)
        .unwrap()
        .0;
    let sections = [sid, SectionId::AUTH];
    let to = gp.peer().device_agreement().unwrap();
    let sorted = |mut v: Vec<KeyWrap>| {
        v.sort_by_key(|w| (w.section, w.epoch));
        v
    };
    let wanted = [(to, sections.to_vec())];
    let first = sorted(rec.kept_wraps_for(&wanted, &mut rng).unwrap());
    assert_eq!(first.len(), 2);
    assert_eq!(vault.key_wraps_to(&rid, &to).unwrap().len(), 2, "kept");
    let again = sorted(rec.kept_wraps_for(&wanted, &mut rng).unwrap());
    assert_eq!(again, first, "the same wraps, not new seals");
    assert!(again.iter().all(|w| w.verify() && w.is_for(&gp, &rid)));
    // Only the sections asked for.
    assert_eq!(
        rec.kept_wraps_for(&[(to, vec![sid])], &mut rng)
            .unwrap()
            .len(),
        1
    );
    // Two recipients in one call: each gets its own, the kept ones unchanged.
    let (other, _) = Identity::generate(Role::Professional, "Dr Other".into(), &mut rng);
    let other_to = other.peer().device_agreement().unwrap();
    let both = rec
        .kept_wraps_for(&[(to, sections.to_vec()), (other_to, vec![sid])], &mut rng)
        .unwrap();
    assert_eq!(both.len(), 3);
    assert_eq!(both.iter().filter(|w| w.is_for(&other, &rid)).count(), 1);
    assert_eq!(sorted(both[..2].to_vec()), first);
    // A rotation: the next supply adds the new epoch's wraps and keeps the old.
    rec.rotate_keys(&[sid], TEST_NOW, &mut rng).unwrap();
    let after = rec.kept_wraps_for(&wanted, &mut rng).unwrap();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.iter().any(|w| w.section == sid && w.epoch == 1));
    // The patient's own keys still open after the keyring took others' wraps.
    drop(rec);
    let mut reopened = vault.open_record(&patient, &rid).unwrap();
    assert_eq!(reopened.show(&notes).unwrap().entries.len(), 1);
}
