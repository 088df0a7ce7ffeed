//! What each peer may hold: pushes, planning, relays and revocations a grantee learns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::{self, Ability, Grant, GrantSpec};
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::{Identity, Role};
use hearth_core::record::AuthItem;
use hearth_core::store::Store;
use hearth_core::test_utils::TEST_NOW;
use hearth_sync::session::SyncError;
use serde_bytes::ByteBuf;
use serde_json::json;

mod common;
use common::*;

#[test]
fn pushed_notifications_carry_only_what_the_receiver_may_hold() {
    let mut w = world(25);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let since = w.patient.vault.held_sections(&rid).unwrap();
    w.patient.add(&rid, "notes", "pushed", at(11), &mut w.rng);
    w.patient.add(
        &rid,
        "notes:mental-health",
        "CANARY-MH-push",
        at(11),
        &mut w.rng,
    );
    let p = w.patient.peer();
    let push = push_for(&p, &rid, &w.gp.id.peer(), &since, at(12)).unwrap();
    // Only the notes bundle: the mental-health one is not the GP's to hold.
    assert_eq!(push.len(), 1);
    let report = w.gp.peer().on_push(rid, &push, at(60)).unwrap();
    assert_eq!(report.received, 1, "{report:?}");
    assert!(report.refused.is_empty());
    assert!(w.gp.texts(&rid, "notes").contains(&"pushed".to_string()));
    // A stranger gets nothing pushed.
    let stranger = Node::new(Role::Professional, "x", &mut w.rng);
    assert!(
        push_for(&p, &rid, &stranger.id.peer(), &since, at(12))
            .unwrap()
            .is_empty()
    );
    // Bundles of a section the receiver holds no key for are refused, never stored; so is a
    // push for a record it does not hold.
    let mh = section_id(&w.patient, &rid, "notes:mental-health");
    let everything = push_for(
        &w.patient.peer(),
        &rid,
        &w.patient.id.peer(),
        &since,
        at(12),
    );
    // (a patient device may hold everything; here the patient asks for itself, as its other
    // device would)
    let everything = everything.unwrap();
    assert_eq!(everything.len(), 2);
    let report = w.gp.peer().on_push(rid, &everything, at(60)).unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(w.gp.bundles_in(&rid, &mh), 0);
    assert!(matches!(
        stranger.peer().on_push(rid, &push, at(60)),
        Err(SyncError::Refused(why)) if why == "record not available"
    ));
    // A gap (a push after something the receiver missed) is refused, so the receiver syncs.
    let since2 = w.patient.vault.held_sections(&rid).unwrap();
    w.patient
        .add_all(&rid, "notes", ["missed", "next"], at(13), &mut w.rng);
    let both = push_for(&p, &rid, &w.gp.id.peer(), &since2, at(14)).unwrap();
    assert_eq!(both.len(), 2);
    let report = w.gp.peer().on_push(rid, &both[1..], at(60)).unwrap();
    assert!(!report.refused.is_empty());
    let report = sync(&w.gp, &w.patient, rid, at(15), &mut w.rng).unwrap();
    assert!(report.in_sync);
    assert!(w.gp.texts(&rid, "notes").contains(&"next".to_string()));
}

#[test]
fn an_entry_and_its_correction_written_offline_travel_together() {
    let mut w = world(26);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Append);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // Offline, the GP writes an entry and corrects it before the next sync: two bundles in one
    // push, the second superseding the first.
    {
        let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
        let id = rec
            .add_entry(
                &name("notes"),
                &json!({"text": "first draft"}),
                at(11),
                &mut w.rng,
            )
            .unwrap();
        rec.correct(&id, &json!({"text": "corrected"}), at(12), &mut w.rng)
            .unwrap();
    }
    let report = sync(&w.gp, &w.patient, rid, at(13), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert!(report.in_sync, "{report:?}");
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1", "corrected"]);
}

#[test]
fn a_read_that_replays_many_bundles_leaves_a_fresh_local_snapshot() {
    let mut w = world(27);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        for i in 0..hearth_core::record::SNAPSHOT_REFRESH_ON_READ {
            rec.add_entry(
                &name("notes"),
                &json!({"text": format!("m{i}")}),
                at(11),
                &mut w.rng,
            )
            .unwrap();
        }
    }
    let notes = section_id(&w.patient, &rid, "notes");
    let mut prefix = vec![b'C'];
    prefix.extend_from_slice(&rid.0);
    prefix.extend_from_slice(&notes.0);
    let cache = |n: &Node| n.vault.store().scan_prefix(&prefix).unwrap();
    assert!(cache(&w.gp).is_empty());
    // The GP gets the bundles one by one (not a snapshot) and reads them.
    copy_all_bundles(&w.patient, &w.gp, &rid);
    assert_eq!(
        w.gp.texts(&rid, "notes").len(),
        hearth_core::record::SNAPSHOT_REFRESH_ON_READ as usize + 1
    );
    let first = cache(&w.gp);
    assert_eq!(first.len(), 1, "the read left no snapshot");
    // The next read starts from it and sees the same; the snapshot is deterministic.
    assert_eq!(w.gp.texts(&rid, "notes"), w.patient.texts(&rid, "notes"));
    assert_eq!(cache(&w.gp), first);
}

#[test]
/// One opening of the record answers for every peer: the patient's devices everything, a
/// grantee what its grant lets it read while the grant lasts, a revoked grantee and a stranger
/// nothing; and `holdable_by` (which asks for one peer) gives the same answer.
fn holdable_by_many_gives_each_peer_what_it_may_hold() {
    let mut w = world(27);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let revoked = grant_to(&mut w, "sw", "notes", Ability::Read);
    let phone = Identity::new_device("phone".into(), &mut w.rng).link_to(rid);
    revoke_unsigned(&mut w, &revoked, None, at(5));
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.certify_device(
            phone.peer(),
            "phone",
            phone.agreement_public(),
            &phone.agreement_certificate(),
            at(6),
            &mut w.rng,
        )
        .unwrap();
    }
    let stranger = Node::new(Role::Professional, "x", &mut w.rng);
    let peers = [
        w.patient.id.peer(),
        phone.peer(),
        w.gp.id.peer(),
        w.sw.id.peer(),
        stranger.id.peer(),
    ];
    let p = w.patient.peer();
    let notes = section_id(&w.patient, &rid, "notes");
    let mh = section_id(&w.patient, &rid, "notes:mental-health");
    for now in [at(10), TEST_NOW.saturating_add_millis(31 * DAY)] {
        let many = p.holdable_by_many(&rid, &peers, now).unwrap();
        let mut asked = peers.to_vec();
        asked.sort();
        assert_eq!(many.keys().copied().collect::<Vec<_>>(), asked);
        for peer in &peers {
            assert_eq!(many[peer], p.holdable_by(&rid, peer, now).unwrap());
        }
        // The patient's devices hold everything (the same for both); the revoked grantee and
        // the stranger nothing.
        for device in &peers[..2] {
            assert!(many[device].contains(&SectionId::LEDGER));
            assert!(many[device].contains(&mh));
            assert!(many[device].contains(&notes));
        }
        assert_eq!(many[&peers[0]], many[&peers[1]]);
        assert!(many[&w.sw.id.peer()].is_empty());
        assert!(many[&stranger.id.peer()].is_empty());
        // The GP the auth document and notes, until its grant expires.
        let gp = &many[&w.gp.id.peer()];
        if now == at(10) {
            assert_eq!(*gp, [SectionId::AUTH, notes].into());
        } else {
            assert!(gp.is_empty());
        }
    }
    // No peers asked, none answered; a record this node does not hold is an error.
    assert!(p.holdable_by_many(&rid, &[], at(10)).unwrap().is_empty());
    assert!(
        p.holdable_by_many(&RecordId([9; 32]), &peers, at(10))
            .is_err()
    );
}

/// Issue 11, defect 4: a request to a peer tells it only what it may hold, and nothing at all
/// to a peer that is no party to the record (the same for an unknown record).
#[test]
fn start_tells_a_grantee_only_its_sections_and_a_stranger_nothing() {
    let mut w = world(41);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let notes = section_id(&w.patient, &rid, "notes");
    let req = w.patient.peer().start(rid, w.gp.id.peer(), at(10)).unwrap();
    let told: Vec<SectionId> = req.have.iter().map(|h| h.section).collect();
    assert_eq!(told, {
        let mut v = vec![SectionId::AUTH, notes];
        v.sort();
        v
    });
    assert!(
        req.keys
            .iter()
            .all(|(s, _)| *s == notes || *s == SectionId::AUTH)
    );
    assert!(req.grants.is_empty());
    // Nobody else is sent anything: the same error for the record and a made-up one.
    for r in [rid, RecordId([9; 32])] {
        assert!(matches!(
            w.patient.peer().start(r, w.sw.id.peer(), at(10)),
            Err(SyncError::NotAParty)
        ));
        // Even a peer the user names is not told about a record whose devices are known.
        assert!(matches!(
            w.patient.peer().start_as(r, w.sw.id.peer(), true, at(10)),
            Err(SyncError::NotAParty)
        ));
    }
    // A grantee's node sends its chains only to parties: not to a stranger, even after sync.
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    assert!(matches!(
        w.gp.peer().start(rid, w.sw.id.peer(), at(11)),
        Err(SyncError::NotAParty)
    ));
    let req = w.gp.peer().start(rid, w.patient.id.peer(), at(11)).unwrap();
    assert_eq!(req.grants.len(), 1);
}

/// Issue 11, defect 11: a `relay` grant carries no key, whatever its holder asks for.
#[test]
fn a_relay_grant_receives_no_key_and_no_readable_bundle() {
    let mut w = world(42);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Relay);
    // The hostile relay asks for everything, claiming to hold nothing.
    let mut req =
        w.gp.peer()
            .start_as(rid, w.patient.id.peer(), true, at(10))
            .unwrap();
    req.keys.clear();
    req.have.clear();
    let (resp, _) = w
        .patient
        .peer()
        .on_request(w.gp.id.peer(), req, at(10), &mut w.rng)
        .unwrap();
    assert!(resp.wraps.is_empty(), "a relay got key wraps");
    assert!(resp.bundles.is_empty() && resp.snapshots.is_empty());
    assert!(resp.devices.is_empty());
    // The key rule itself, and a grant that embeds keys for relay scopes is invalid.
    let rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    let relay = grant::scopes(&"notes".parse().unwrap(), Ability::Relay);
    assert!(grant::key_sections(&relay, rec.directory()).is_empty());
    let wraps = rec
        .wrap_keys_for(w.gp.id.agreement_public(), &relay, &mut w.rng)
        .unwrap();
    assert!(wraps.is_empty());
    let read = grant::scopes(&"notes".parse().unwrap(), Ability::Read);
    let some = rec
        .wrap_keys_for(w.gp.id.agreement_public(), &read, &mut w.rng)
        .unwrap();
    assert!(!some.is_empty());
    let spec = GrantSpec::new(
        w.gp.id.peer(),
        "notes".parse().unwrap(),
        Ability::Relay,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(DAY),
    );
    assert!(Grant::issue_root(&w.patient.id, spec, &some, &mut w.rng).is_err());
}

/// Issue 11, defect 12: a revoked grantee is refused with the signed revocation of its own
/// grant (only its own), which its node checks and keeps.
#[test]
fn a_revoked_grantee_learns_its_own_revocation_and_nothing_of_others() {
    let mut w = world(43);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    let s = grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    assert!(w.gp.vault.learnt_revocations(&rid).is_empty());
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        let items = [&g, &s]
            .iter()
            .map(|x| {
                let r = grant::Revocation::sign(&w.patient.id, x.id(), at(11)).unwrap();
                AuthItem::Revoke(r)
            })
            .collect();
        rec.put_auth(items, at(11), &mut w.rng).unwrap();
    }
    match sync(&w.gp, &w.patient, rid, at(12), &mut w.rng) {
        Err(SyncError::Refused(why)) => assert_eq!(why, "record not available"),
        other => panic!("{other:?}"),
    }
    let known = w.gp.vault.learnt_revocations(&rid);
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].grant, g.id());
    assert!(known[0].verify());
    // Revocations in the old form (no signature) are signed by the root holder on the way.
    let mut w = world(44);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    revoke_unsigned(&mut w, &g, Some(at(5)), at(5));
    assert!(sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).is_err());
    assert_eq!(w.gp.vault.learnt_revocations(&rid).len(), 1);
    // A forged revocation (not signed by the record root) is ignored; so is one of a grant the
    // node does not hold.
    let mut w = world(45);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    let (other, _) = hearth_core::keys::Identity::generate(Role::Patient, "X".into(), &mut w.rng);
    let mut forged = grant::Revocation::sign(&other, g.id(), at(5)).unwrap();
    forged.record = rid;
    let stray = grant::Revocation::sign(
        &w.patient.id,
        grant::GrantId(serde_bytes::ByteArray::new([3; 32])),
        at(5),
    )
    .unwrap();
    let mut req =
        w.gp.peer()
            .start_as(rid, w.patient.id.peer(), true, at(10))
            .unwrap();
    req.push.clear();
    let (mut resp, _) = w
        .patient
        .peer()
        .on_request(w.gp.id.peer(), req, at(10), &mut w.rng)
        .unwrap();
    resp.revocations = vec![
        ByteBuf::from(forged.to_bytes()),
        ByteBuf::from(stray.to_bytes()),
    ];
    let _ =
        w.gp.peer()
            .on_response(w.patient.id.peer(), resp, at(10), &mut w.rng);
    assert!(w.gp.vault.learnt_revocations(&rid).is_empty());
}
