//! The patient's disputes of entries: written beside the entry, shown with it from verified
//! facts only, withdrawn; a grantee's disputes refused at receipt and left out at load.

use super::provenance;
use crate::bundle::Bundle;
use crate::entry::dispute::{Dispute, MAX_DISPUTE_REASON_CHARS};
use crate::grant::Ability;
use crate::ids::{DisputeId, EntryId, RecordId};
use crate::keys::{Identity, Role};
use crate::log::LogHead;
use crate::record::disputes::dispute_key;
use crate::record::entries::entry_key;
use crate::record::layout::{k_bundle, k_head};
use crate::record::{Basis, EntryView, RecordError, Vault, Verdict};
use crate::section::SectionName;
use crate::store::{Batch, MemoryStore, Store};
use crate::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use serde_json::json;

fn notes() -> SectionName {
    "notes".parse().unwrap()
}

/// A patient's record with the patient's own note and a note by a GP holding an append grant
/// (received as a sync would store it).
struct World {
    vault: Vault<MemoryStore>,
    patient: Identity,
    gp: Identity,
    rid: RecordId,
    own: EntryId,
    gps: EntryId,
    rng: TestRng,
}

fn world(seed: u64) -> World {
    let mut rng = TestRng::new(seed);
    let vault = Vault::new(MemoryStore::new());
    let (patient, rid) = patient_record(&vault, "Edith Example", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let mut rec = vault.open_record(&patient, &rid).unwrap();
    let own = rec
        .add_entry(&notes(), &json!({"text": "mine"}), TEST_NOW, &mut rng)
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
    drop(rec);
    let mut w = World {
        vault,
        patient,
        gp,
        rid,
        own,
        gps: EntryId([0; 16]),
        rng,
    };
    let note = gp_note(&w.gp, "drinks heavily", 70);
    w.gps = note.0;
    let rep = w.receive_from_gp(vec![(entry_key(&note.0), note.1)]);
    assert_eq!(rep.0, 1, "{:?}", rep.1);
    w
}

/// A notes entry version by `author` saying `text`: its id and JSON.
fn gp_note(author: &Identity, text: &str, seed: u64) -> (EntryId, String) {
    let v = super::note_version(author, text, seed);
    (v.id, serde_json::to_string(&v).unwrap())
}

/// A dispute of `entry` claiming to be by `claimed`, as JSON under its key.
fn forged_dispute(entry: EntryId, claimed: &Identity, seed: u64) -> (DisputeId, (String, String)) {
    let d = Dispute {
        id: DisputeId::generate(&mut TestRng::new(seed)),
        entry,
        reason: "forged".into(),
        provenance: provenance(claimed),
    };
    (
        d.id,
        (dispute_key(&d.id), serde_json::to_string(&d).unwrap()),
    )
}

impl World {
    /// The notes section document as the patient's node holds it now.
    fn doc(&self) -> AutoCommit {
        let mut rec = self.vault.open_record(&self.patient, &self.rid).unwrap();
        let sid = rec.ids_of(&notes())[0];
        rec.ensure_loaded(&sid).unwrap();
        rec.loaded[&sid].doc.clone()
    }

    /// The GP's next bundle in the notes section, putting `items` into `base` (by default the
    /// section as the patient's node holds it now).
    fn gp_bundle(&self, base: Option<AutoCommit>, items: Vec<(String, String)>) -> Bundle {
        let rec = self.vault.open_record(&self.patient, &self.rid).unwrap();
        let sid = rec.ids_of(&notes())[0];
        let mut d = base.unwrap_or_else(|| self.doc());
        d.set_actor(automerge::ActorId::from(self.gp.peer().0));
        for (k, v) in items {
            d.put(ROOT, k, v).unwrap();
        }
        d.commit();
        let payload = d.get_last_local_change().unwrap().raw_bytes().to_vec();
        let head = self
            .vault
            .heads(&self.rid, &sid)
            .unwrap()
            .get(&self.gp.peer())
            .copied();
        let seq = head.map_or(1, |h| h.seq + 1);
        let (epoch, key) = rec.current_key(&sid).unwrap();
        Bundle::seal(
            self.rid,
            sid,
            seq,
            head.map(|h| h.hash),
            epoch,
            TEST_NOW,
            key,
            &payload,
            self.gp.device_key(),
            &mut TestRng::new(seq + 1000),
        )
        .unwrap()
    }

    /// The GP's next bundle putting `items`, received by the patient's node as a sync
    /// receives it: how many bundles were stored, and the refusals.
    fn receive_from_gp(&self, items: Vec<(String, String)>) -> (usize, Vec<String>) {
        let b = self.gp_bundle(None, items);
        let mut rec = self.vault.open_record(&self.patient, &self.rid).unwrap();
        let rules = rec.write_rules();
        let devices: Vec<_> = rec.device_certs().into_iter().map(|c| c.peer).collect();
        let rep = self
            .vault
            .store_remote(&self.rid, vec![b], TEST_NOW, &mut |b| match rec
                .judge_write(&rules, &devices, b, TEST_NOW)
            {
                Verdict::Allow => Ok(()),
                Verdict::Refuse(why) => Err(why),
                v => Err(format!("{v:?}")),
            })
            .unwrap();
        (rep.stored, rep.refused)
    }

    /// The GP's next bundle putting `items` into `base`, stored as it is, skipping every check
    /// a receiving node makes (a damaged or hand-made store).
    fn store_gp_directly(&self, base: Option<AutoCommit>, items: Vec<(String, String)>) {
        let b = self.gp_bundle(base, items);
        let h = b.header();
        let a = self.gp.peer();
        let mut batch = Batch::new();
        batch.put(
            k_bundle(&self.rid, &h.section, &a, h.seq),
            b.encoded().to_vec(),
        );
        let head = LogHead {
            seq: h.seq,
            hash: b.hash(),
        };
        batch.put(k_head(&self.rid, &h.section, &a), head.to_bytes().to_vec());
        self.vault.store.commit(batch).unwrap();
    }

    fn dispute(&mut self, entry: &EntryId, reason: &str) -> Result<DisputeId, RecordError> {
        let mut rec = self.vault.open_record(&self.patient, &self.rid).unwrap();
        rec.dispute(entry, reason, TEST_NOW, &mut self.rng)
    }

    /// The current notes entries as the patient's node shows them.
    fn shown(&self) -> Vec<EntryView> {
        let mut rec = self.vault.open_record(&self.patient, &self.rid).unwrap();
        let shown = rec.show(&notes()).unwrap().entries;
        let raw = rec.show_raw(&notes()).unwrap().entries;
        let from_raw: Vec<_> = raw.iter().map(|r| r.entry.disputes.clone()).collect();
        let from_show: Vec<_> = shown.iter().map(|e| e.disputes.clone()).collect();
        assert_eq!(from_raw, from_show, "show_raw gives what show gives");
        shown
    }

    fn entry(&self, id: &EntryId) -> EntryView {
        self.shown().into_iter().find(|e| e.id == *id).unwrap()
    }

    fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.vault.store.scan(&[], &[0xff; 4]).unwrap()
    }
}

#[test]
fn a_patients_dispute_is_shown_on_the_entry_it_disputes_from_verified_facts() {
    let mut w = world(1);
    let first = w
        .dispute(&w.gps.clone(), "  I have never said this  ")
        .unwrap();
    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    let later = TEST_NOW.saturating_add_millis(60_000);
    let second = rec
        .dispute(&w.gps, "Still wrong", later, &mut w.rng)
        .unwrap();
    drop(rec);
    let e = w.entry(&w.gps);
    assert_eq!(e.disputes.len(), 2, "disputing twice keeps both");
    let d = &e.disputes[0];
    assert_eq!((d.id, d.entry), (first, w.gps));
    assert_eq!(
        (e.disputes[1].id, e.disputes[1].disputed_at),
        (second, later)
    );
    assert_eq!(d.reason, "I have never said this");
    assert_eq!(d.disputed_at, TEST_NOW);
    assert_eq!(d.verified.author, w.patient.peer());
    assert_eq!(d.verified.basis, Basis::PatientDevice);
    assert_eq!(d.verified.name.as_deref(), Some(w.patient.name.as_str()));
    assert!(d.verified.received_at.is_some());
    // Only the disputed entry carries it; the entry itself is unchanged.
    assert!(w.entry(&w.own).disputes.is_empty());
    assert_eq!(e.body["text"], "drinks heavily");
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["disputes"][0]["reason"], "I have never said this", "{j}");
    assert_eq!(
        j["disputes"][0]["verified"]["basis"], "patient-device",
        "{j}"
    );
    assert!(serde_json::to_value(w.entry(&w.own)).unwrap()["disputes"].is_null());
    // Written in the entry's own section document, under its own key.
    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    let doc = AutoCommit::load(&rec.section_document(&notes()).unwrap()).unwrap();
    use automerge::ReadDoc;
    assert!(doc.get(ROOT, dispute_key(&first)).unwrap().is_some());
}

#[test]
fn a_dispute_stays_with_the_entry_after_a_correction_and_can_be_withdrawn() {
    let mut w = world(2);
    let own = w.own;
    let d = w.dispute(&own, "the date is wrong").unwrap();
    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    let newer = rec
        .correct(
            &own,
            &json!({"text": "mine, corrected"}),
            TEST_NOW,
            &mut w.rng,
        )
        .unwrap();
    // The old version is replaced: disputing it is refused, naming the newer one.
    assert!(matches!(
        rec.dispute(&own, "again", TEST_NOW, &mut w.rng),
        Err(RecordError::Superseded { by, .. }) if by == newer
    ));
    drop(rec);
    let e = w.entry(&newer);
    assert_eq!(e.disputes.len(), 1);
    assert_eq!((e.disputes[0].id, e.disputes[0].entry), (d, own));

    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    let (withdrawal, disputed) = rec.withdraw_dispute(&d, TEST_NOW, &mut w.rng).unwrap();
    assert_ne!(withdrawal, d);
    assert_eq!(disputed, own);
    drop(rec);
    assert!(w.entry(&newer).disputes.is_empty());
    // Withdrawn already, or unknown: refused, nothing written.
    let before = w.dump();
    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    let unknown = DisputeId([9; 16]);
    for id in [d, unknown] {
        assert!(matches!(
            rec.withdraw_dispute(&id, TEST_NOW, &mut w.rng),
            Err(RecordError::NoDispute(x)) if x == id
        ));
    }
    drop(rec);
    assert_eq!(w.dump(), before);
}

#[test]
fn bad_disputes_are_refused_and_write_nothing() {
    let mut w = world(3);
    let gps = w.gps;
    let before = w.dump();
    let long = "x".repeat(MAX_DISPUTE_REASON_CHARS + 1);
    for reason in ["", "   ", "two\nlines", "bell\u{7}", long.as_str()] {
        match w.dispute(&gps, reason) {
            Err(RecordError::Invalid(why)) => assert!(why.contains("reason"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let unknown = EntryId([7; 16]);
    assert!(matches!(
        w.dispute(&unknown, "no such entry"),
        Err(RecordError::NoEntry(e)) if e == unknown
    ));
    assert_eq!(w.dump(), before, "nothing written");
    assert!(w.entry(&gps).disputes.is_empty());
    // An error never repeats the reason.
    let err = w
        .dispute(&unknown, "SECRET-REASON")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("SECRET"), "{err}");
}

#[test]
fn a_grantees_bundle_carrying_a_dispute_is_refused_on_receipt() {
    let w = world(4);
    let before = w.dump();
    // Claiming to be the patient's, or its own: either way, not the GP's to write.
    for (claimed, seed) in [(&w.patient, 80), (&w.gp, 81)] {
        let (_, item) = forged_dispute(w.gps, claimed, seed);
        let (stored, refused) = w.receive_from_gp(vec![item]);
        assert_eq!(stored, 0);
        assert!(
            refused
                .iter()
                .any(|r| r.contains("only the patient's devices write disputes")),
            "{refused:?}"
        );
    }
    // Nor a withdrawal, nor a dispute slipped in beside an entry.
    let w_item = (
        "w/dxxxxxxxxxxxxxxxxxxxxxxxxxx".to_string(),
        "{}".to_string(),
    );
    let (_, item) = forged_dispute(w.gps, &w.patient, 82);
    let note = gp_note(&w.gp, "another", 83);
    for items in [vec![w_item], vec![(entry_key(&note.0), note.1), item]] {
        let (stored, refused) = w.receive_from_gp(items);
        assert_eq!((stored, refused.len()), (0, 1), "{refused:?}");
    }
    assert_eq!(w.dump(), before);
}

#[test]
fn a_grantees_dispute_found_in_the_store_is_left_out_and_cannot_hide_the_patients() {
    let mut w = world(5);
    let gps = w.gps;
    // The GP's change is made on the section as it was before the patient's dispute, so its
    // value under the patient's dispute key is concurrent with the patient's, not an overwrite.
    let (forged_id, forged) = forged_dispute(gps, &w.patient, 90);
    let before = w.doc();
    let real = w.dispute(&gps, "mine is real").unwrap();
    let mut clash = forged.clone();
    clash.0 = dispute_key(&real);
    w.store_gp_directly(Some(before), vec![forged, clash]);
    let e = w.entry(&gps);
    assert_eq!(e.disputes.len(), 1, "{:?}", e.disputes);
    assert_eq!(e.disputes[0].id, real);
    assert_eq!(e.disputes[0].reason, "mine is real");
    assert!(e.disputes.iter().all(|d| d.id != forged_id));
    // The section stays readable and nothing was reported unapplied.
    let mut rec = w.vault.open_record(&w.patient, &w.rid).unwrap();
    assert_eq!(rec.show(&notes()).unwrap().entries.len(), 2);
    assert!(rec.unapplied().is_empty(), "{:?}", rec.unapplied());
    // Nor can a grantee withdraw the patient's dispute.
    let fake = crate::entry::dispute::Withdrawal {
        id: DisputeId([3; 16]),
        withdraws: real,
        provenance: provenance(&w.patient),
    };
    let key = format!("w/{}", fake.id);
    w.store_gp_directly(None, vec![(key, serde_json::to_string(&fake).unwrap())]);
    assert_eq!(w.entry(&gps).disputes.len(), 1);
}
