//! The sync session with simulated pairs: no network, a fixed clock, messages moved by hand
//! (and dropped, duplicated, replayed or tampered with on the way): who receives what, what is
//! accepted, what is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::audit::Action;
use hearth_core::grant::{self, Ability};
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::store::Store;
use hearth_core::test_utils::TEST_NOW;
use hearth_sync::protocol::{self, SyncRequest};
use hearth_sync::session::SyncError;
use serde_json::json;

mod common;
use common::*;

#[test]
fn granted_sections_only() {
    let mut w = world(1);
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let rid = w.rid;
    let report = sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    assert!(report.in_sync, "{report:?}");
    assert_eq!(w.gp.texts(&rid, "notes"), vec!["note 1"]);
    // Nothing of the ungranted sections was sent: no bundle, no key, no name.
    let mh = section_id(&w.patient, &rid, "notes:mental-health");
    let sc = section_id(&w.patient, &rid, "social-care/assessments");
    assert_eq!(w.gp.bundles_in(&rid, &mh), 0);
    assert_eq!(w.gp.bundles_in(&rid, &sc), 0);
    assert_eq!(w.gp.bundles_in(&rid, &SectionId::LEDGER), 0);
    let rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
    let names: Vec<String> = rec.sections().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, vec!["notes"]);
    let all: Vec<u8> =
        w.gp.vault
            .store()
            .scan(&[], &[0xff; 4])
            .unwrap()
            .into_iter()
            .flat_map(|(k, v)| k.into_iter().chain(v))
            .collect();
    assert!(!all.windows(9).any(|x| x == b"CANARY-MH"));
}

#[test]
fn strangers_and_revoked_grants_learn_nothing() {
    let mut w = world(2);
    let rid = w.rid;
    // No grant at all: the node asks nothing of anyone, and a hand-built request is refused
    // the same way as for a record that does not exist.
    for r in [rid, RecordId([9; 32])] {
        assert!(matches!(
            sync(&w.gp, &w.patient, r, at(10), &mut w.rng),
            Err(SyncError::NotAParty)
        ));
        let req = SyncRequest {
            v: 1,
            record: r,
            card: grant::request::card(&w.gp.id).unwrap().envelope().clone(),
            grants: Vec::new(),
            have: Vec::new(),
            keys: Vec::new(),
            push: Vec::new(),
            audit: Vec::new(),
            audit_head: None,
            emergency: None,
        };
        let (resp, _) = w
            .patient
            .peer()
            .on_request(w.gp.id.peer(), req, at(10), &mut w.rng)
            .unwrap();
        assert_eq!(resp.refused.as_deref(), Some("record not available"));
        assert!(resp.devices.is_empty() && resp.wraps.is_empty() && resp.revocations.is_empty());
    }
    // Expired and revoked grants are refused the same way.
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    assert!(matches!(
        sync(
            &w.gp,
            &w.patient,
            rid,
            TEST_NOW.saturating_add_millis(31 * DAY),
            &mut w.rng
        ),
        Err(SyncError::Refused(_))
    ));
    revoke_unsigned(&mut w, &g, None, at(5));
    assert!(matches!(
        sync(&w.gp, &w.patient, rid, at(10), &mut w.rng),
        Err(SyncError::Refused(_))
    ));
    assert_eq!(w.gp.bundles_in(&rid, &SectionId::AUTH), 0);
}

#[test]
fn grantee_grant_presented_by_someone_else_is_refused() {
    let mut w = world(3);
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    // The social worker got hold of the GP's grant: not a bearer token.
    w.sw.hold(&g);
    assert!(matches!(
        sync(&w.sw, &w.patient, w.rid, at(10), &mut w.rng),
        Err(SyncError::Refused(_))
    ));
}

#[test]
fn writing_without_an_append_grant_is_refused_locally() {
    let mut w = world(11);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
    assert!(matches!(
        rec.add_entry(
            &name("notes"),
            &json!({"text": "read-only holder"}),
            at(11),
            &mut w.rng
        ),
        Err(hearth_core::record::RecordError::NotPermitted(_))
    ));
}

#[test]
fn append_flows_back_and_on_to_other_grantees() {
    let mut w = world(4);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    grant_to(&mut w, "sw", "notes,social-care/assessments", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // The GP writes into the replica, then syncs: the entry is pushed to the patient.
    w.gp.add(&rid, "notes", "from the GP", at(11), &mut w.rng);
    let report = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(
        w.patient.texts(&rid, "notes"),
        vec!["note 1", "from the GP"]
    );
    // The social worker receives the GP's entry from the patient, and checks the GP's right.
    let r = sync(&w.sw, &w.patient, rid, at(13), &mut w.rng).unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_eq!(w.sw.texts(&rid, "notes"), vec!["note 1", "from the GP"]);
    assert_eq!(w.sw.texts(&rid, "social-care/assessments").len(), 1);
}

#[test]
fn append_to_a_section_still_empty_at_the_patient_reaches_it_by_the_grantees_sync() {
    let mut w = world(41);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes:safeguarding", Ability::Append);
    // As `hearth grant` does: the section is created, empty, so the grant can be used at once.
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        let created = rec
            .create_sections_for(&g.body().scopes, at(5), &mut w.rng)
            .unwrap();
        assert_eq!(created, vec![name("notes:safeguarding")]);
    }
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    w.gp.add(
        &rid,
        "notes:safeguarding",
        "first concern",
        at(11),
        &mut w.rng,
    );
    // The GP's own sync carries it: the patient's node offers the section, empty as it is.
    let report = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert!(report.in_sync, "{report:?}");
    assert_eq!(
        w.patient.texts(&rid, "notes:safeguarding"),
        vec!["first concern"]
    );
}

#[test]
fn a_push_the_patient_refuses_is_not_reported_in_sync() {
    let mut w = world(42);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // A misbehaving GP node writes a key that is no entry into the section it may add to.
    w.gp.add_raw(&rid, "notes", "x/not-an-entry", at(11), &mut w.rng);
    let report = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(!report.refused.is_empty(), "{report:?}");
    assert_eq!(report.rejected, 1, "{report:?}");
    assert!(!report.in_sync, "{report:?}");
}

#[test]
fn append_holder_may_not_change_others_entries_or_other_sections() {
    let mut w = world(5);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let first = {
        let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
        let view = rec.show(&name("notes")).unwrap();
        let id = view.entries[0].id;
        // Marking the patient's own note as entered in error is not the GP's to do: refused
        // locally...
        assert!(
            rec.mark_error(&id, "not mine to mark", at(11), &mut w.rng)
                .is_err()
        );
        // ...so play a misbehaving GP node that writes it anyway.
        let mut forged = rec.history(&name("notes")).unwrap()[0].clone();
        forged.supersedes = Some(forged.id);
        forged.id = hearth_core::ids::EntryId([7; 16]);
        forged.version = 2;
        forged.status = hearth_core::entry::EntryStatus::EnteredInError;
        forged.provenance.author = w.gp.id.peer();
        let item = (
            format!("e/{}", forged.id),
            serde_json::to_string(&forged).unwrap(),
        );
        rec.append_raw_for_tests(&name("notes"), vec![item], at(11), &mut w.rng)
            .unwrap();
        id
    };
    let report = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(
        !report.refused.is_empty(),
        "the patient refused the change: {report:?}"
    );
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    let view = rec.show(&name("notes")).unwrap();
    assert_eq!(view.entries.len(), 1);
    assert_eq!(view.entries[0].id, first);
    assert_eq!(
        view.entries[0].status,
        hearth_core::entry::EntryStatus::Final
    );
}

#[test]
fn incremental_sync_sends_only_the_new_bundle() {
    let mut w = world(6);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    w.patient.add(&rid, "notes", "note 2", at(11), &mut w.rng);
    let req =
        w.gp.peer()
            .start_as(rid, w.patient.id.peer(), true, at(12))
            .unwrap();
    let (resp, _) = w
        .patient
        .peer()
        .on_request(w.gp.id.peer(), req, at(12), &mut w.rng)
        .unwrap();
    assert_eq!(resp.bundles.len(), 1);
    assert!(resp.wraps.is_empty(), "keys are not sent twice");
    let (next, report) =
        w.gp.peer()
            .on_response(w.patient.id.peer(), resp, at(12), &mut w.rng)
            .unwrap();
    assert!(next.is_none() && report.in_sync);
    assert_eq!(w.gp.texts(&rid, "notes"), vec!["note 1", "note 2"]);
}

#[test]
fn tampered_duplicated_and_replayed_messages() {
    let mut w = world(7);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let req =
        w.gp.peer()
            .start_as(rid, w.patient.id.peer(), true, at(10))
            .unwrap();
    let (resp, _) = w
        .patient
        .peer()
        .on_request(w.gp.id.peer(), req.clone(), at(10), &mut w.rng)
        .unwrap();
    // Tamper with one bundle in flight: it is refused, the rest is stored.
    let mut bad = resp.clone();
    let last = bad.bundles.len() - 1;
    let mid = bad.bundles[last].len() / 2;
    bad.bundles[last][mid] ^= 1;
    let (_, report) =
        w.gp.peer()
            .on_response(w.patient.id.peer(), bad, at(10), &mut w.rng)
            .unwrap();
    assert!(!report.refused.is_empty());
    // The genuine response, twice (duplicated delivery): idempotent.
    let (_, r1) =
        w.gp.peer()
            .on_response(w.patient.id.peer(), resp.clone(), at(10), &mut w.rng)
            .unwrap();
    let (_, r2) =
        w.gp.peer()
            .on_response(w.patient.id.peer(), resp, at(10), &mut w.rng)
            .unwrap();
    assert!(r1.refused.is_empty(), "{r1:?}");
    assert_eq!(r2.received, 0);
    assert_eq!(w.gp.texts(&rid, "notes"), vec!["note 1"]);
    // A request replayed by someone else on another connection: its card does not match.
    let replay = w
        .patient
        .peer()
        .on_request(w.sw.id.peer(), req, at(10), &mut w.rng)
        .unwrap();
    assert!(replay.0.refused.is_some());
    // Garbage on the wire never decodes into a message.
    assert!(protocol::decode(b"\x00\x01garbage").is_err());
}

#[test]
fn patient_devices_push_to_grantees_only_what_they_may_hold() {
    let mut w = world(8);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    w.patient.add(&rid, "notes", "note 2", at(11), &mut w.rng);
    w.patient.add(
        &rid,
        "notes:mental-health",
        "CANARY-MH-2",
        at(11),
        &mut w.rng,
    );
    // The patient's node starts the sync this time (as after a live change).
    let (report, receipts) = sync_receipts(&w.patient, &w.gp, rid, at(12), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(w.gp.texts(&rid, "notes"), vec!["note 1", "note 2"]);
    let mh = section_id(&w.patient, &rid, "notes:mental-health");
    assert_eq!(w.gp.bundles_in(&rid, &mh), 0);
    // What the patient's node sent in its own round is receipted: to the GP, one bundle of
    // notes, under the GP's grant, sent without the GP asking (so not a session it failed
    // to report).
    let notes = section_id(&w.patient, &rid, "notes");
    let [
        Action::Served {
            to,
            sections,
            bundles,
            authority,
            pushed,
            ..
        },
    ] = receipts.by_a.as_slice()
    else {
        panic!("{receipts:?}")
    };
    assert_eq!(*to, w.gp.id.peer());
    assert_eq!(
        sections.iter().map(|s| s.section).collect::<Vec<_>>(),
        [notes]
    );
    assert_eq!((*bundles, *pushed), (1, true));
    assert!(authority.is_some());
    // The GP, which holds nothing of the patient's to send back, owes nothing.
    assert!(receipts.by_b.is_empty(), "{receipts:?}");
}

/// A grantee's node serves another grantee (a GP's node the social worker's): it receipts
/// what it sent and reports the receipt to the patient's node with its own events, where it is
/// kept as the GP's word, with no gap in the GP's log.
#[test]
fn what_a_grantee_serves_another_reaches_the_patients_audit_as_its_word() {
    let mut w = world(12);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // The social worker syncs from the GP's node, which sends it the notes it holds.
    let (_, receipts) = sync_receipts(&w.sw, &w.gp, rid, at(11), &mut w.rng).unwrap();
    let [served] = receipts.by_b.as_slice() else {
        panic!("{receipts:?}")
    };
    assert!(matches!(served, Action::Served { to, .. } if *to == w.sw.id.peer()));
    // The GP's node keeps it (as its driver does) and reports it at its next sync.
    w.gp.vault
        .journal_many(&w.gp.id, vec![(rid, served.clone())], at(11))
        .unwrap();
    sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    let checked = rec.verify_audit().unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert!(
        checked
            .events
            .iter()
            .any(|e| e.event().writer == w.gp.id.peer()
                && matches!(&e.event().action, Action::Served { to, .. } if *to == w.sw.id.peer()))
    );
}

/// A grantee stops reporting its journal only when one of the patient's devices says it holds
/// it: an acknowledgement from anyone else (another grantee passing on the patient's answer),
/// or one riding on a refusal, changes nothing.
#[test]
fn only_the_patients_device_acknowledges_a_grantees_journal() {
    let mut w = world(13);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let read = Action::Read {
        sections: Vec::new(),
        authority: None,
    };
    w.gp.vault
        .journal_many(&w.gp.id, vec![(rid, read)], at(11))
        .unwrap();
    assert_eq!(w.gp.vault.journal_sent(&rid).unwrap(), 0);
    let answer = |w: &mut World| {
        let req =
            w.gp.peer()
                .start_as(rid, w.patient.id.peer(), true, at(12))
                .unwrap();
        assert_eq!(req.audit.len(), 1);
        let mut resp = w
            .patient
            .peer()
            .on_request(w.gp.id.peer(), req, at(12), &mut w.rng)
            .unwrap()
            .0;
        resp.audit_ack = Some(u64::MAX);
        resp
    };
    // The patient's answer, acknowledging everything, arriving from the social worker.
    let resp = answer(&mut w);
    w.gp.peer()
        .on_response(w.sw.id.peer(), resp, at(12), &mut w.rng)
        .unwrap();
    assert_eq!(w.gp.vault.journal_sent(&rid).unwrap(), 0);
    // A refusal from the patient's device carrying an acknowledgement.
    let mut resp = answer(&mut w);
    resp.refused = Some("record not available".into());
    assert!(
        w.gp.peer()
            .on_response(w.patient.id.peer(), resp, at(12), &mut w.rng)
            .is_err()
    );
    assert_eq!(w.gp.vault.journal_sent(&rid).unwrap(), 0);
    // The patient's own answer: the journal is held up to its head, no further.
    sync(&w.gp, &w.patient, rid, at(13), &mut w.rng).unwrap();
    assert_eq!(w.gp.vault.journal_sent(&rid).unwrap(), 1);
}

#[test]
fn concurrent_offline_edits_converge() {
    let mut w = world(9);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    for i in 0..5 {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": format!("patient {i}")}),
            at(20 + i),
            &mut w.rng,
        )
        .unwrap();
        let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": format!("gp {i}")}),
            at(20 + i),
            &mut w.rng,
        )
        .unwrap();
    }
    sync(&w.gp, &w.patient, rid, at(40), &mut w.rng).unwrap();
    let mut p = w.patient.texts(&rid, "notes");
    let mut g = w.gp.texts(&rid, "notes");
    p.sort();
    g.sort();
    assert_eq!(p.len(), 11);
    assert_eq!(p, g);
}

#[test]
fn sync_ends_where_a_direct_merge_ends() {
    // For many interleavings of adds on both sides and syncs in either direction, the views
    // converge to the union of everything written.
    for seed in 0..12u64 {
        let mut w = world(100 + seed);
        let rid = w.rid;
        grant_to(&mut w, "gp", "notes", Ability::Append);
        sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
        let mut written = vec!["note 1".to_string()];
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for step in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = at(20 + step);
            match x % 4 {
                0 => {
                    let text = format!("p{step}");
                    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
                    rec.add_entry(&name("notes"), &json!({"text": text}), t, &mut w.rng)
                        .unwrap();
                    written.push(text);
                }
                1 => {
                    let text = format!("g{step}");
                    let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
                    rec.add_entry(&name("notes"), &json!({"text": text}), t, &mut w.rng)
                        .unwrap();
                    written.push(text);
                }
                2 => {
                    sync(&w.gp, &w.patient, rid, t, &mut w.rng).unwrap();
                }
                _ => {
                    sync(&w.patient, &w.gp, rid, t, &mut w.rng).unwrap();
                }
            }
        }
        sync(&w.gp, &w.patient, rid, at(60), &mut w.rng).unwrap();
        written.sort();
        let mut p = w.patient.texts(&rid, "notes");
        let mut g = w.gp.texts(&rid, "notes");
        p.sort();
        g.sort();
        assert_eq!(p, written, "seed {seed}");
        assert_eq!(g, written, "seed {seed}");
    }
}

/// A request whose push claims to come from the patient but was signed by the GP.
#[test]
fn forged_auth_changes_are_refused() {
    let mut w = world(10);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // The GP writes into its copy of the auth document (e.g. a grant to itself) and pushes.
    let forged = {
        let vault = &w.gp.vault;
        let mut rec = vault.open_record(&w.gp.id, &rid).unwrap();
        // Not permitted locally either: only the owner writes the auth document.
        assert!(
            rec.put_auth_items(vec![("grant/x".into(), "{}".into())], at(11), &mut w.rng)
                .is_err()
        );
        vault.held_sections(&rid).unwrap()
    };
    let mut req: SyncRequest =
        w.gp.peer()
            .start_as(rid, w.patient.id.peer(), true, at(12))
            .unwrap();
    // Push the patient's own auth bundles back with one byte changed: refused, not stored.
    let auth_vv = &forged[&SectionId::AUTH];
    let (author, _) = auth_vv.iter().next().unwrap();
    let mut budget = usize::MAX;
    let mut b =
        w.gp.vault
            .bundles_from(&rid, &SectionId::AUTH, author, 1, &mut budget)
            .unwrap();
    let mid = b[0].len() / 2;
    b[0][mid] ^= 4;
    req.push = b.into_iter().map(serde_bytes::ByteBuf::from).collect();
    let (resp, report) = w
        .patient
        .peer()
        .on_request(w.gp.id.peer(), req, at(12), &mut w.rng)
        .unwrap();
    assert!(!report.refused.is_empty());
    assert!(!resp.rejected.is_empty());
}
