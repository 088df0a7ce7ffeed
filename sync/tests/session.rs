//! The sync session with simulated pairs: no network, a fixed clock, messages moved by hand
//! (and dropped, duplicated, replayed or tampered with on the way).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::{self, Ability, Grant, GrantSpec};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::{Identity, Role};
use hearth_core::log::VersionVector;
use hearth_core::record::{AuthItem, Decision, HeldReason, MAX_HELD_PER_AUTHOR, Vault};
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use hearth_sync::protocol::{self, Message, SyncRequest};
use hearth_sync::session::{Local, Report, SyncError};
use serde_bytes::ByteBuf;
use serde_json::json;
use std::collections::BTreeMap;

mod common;
use common::*;

/// Runs a whole sync from `a` (requester) to `b` (responder), moving messages through the
/// wire encoding. Returns the requester's last report.
fn sync(
    a: &Node,
    b: &Node,
    rid: RecordId,
    now: Timestamp,
    rng: &mut TestRng,
) -> Result<Report, SyncError> {
    let mut req = a.peer().start_as(rid, b.id.peer(), true, now)?;
    for _ in 0..8 {
        let wire = protocol::encode(&Message::Request(req));
        let Message::Request(req_in) = protocol::decode(&wire).unwrap() else {
            panic!()
        };
        let (resp, _) = b.peer().on_request(a.id.peer(), req_in, now, rng)?;
        let wire = protocol::encode(&Message::Response(resp));
        let Message::Response(resp_in) = protocol::decode(&wire).unwrap() else {
            panic!()
        };
        let (next, report) = a.peer().on_response(b.id.peer(), resp_in, now, rng)?;
        match next {
            Some(n) => req = n,
            None => return Ok(report),
        }
    }
    panic!("sync did not finish in 8 round trips");
}

fn section_id(node: &Node, rid: &RecordId, s: &str) -> SectionId {
    let rec = node.vault.open_record(&node.id, rid).unwrap();
    rec.sections()
        .into_iter()
        .find(|x| x.name == name(s))
        .unwrap()
        .ids[0]
}

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
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    rec.put_auth_items(
        vec![(format!("revoke/{}", g.id()), "{}".into())],
        at(5),
        &mut w.rng,
    )
    .unwrap();
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
    {
        let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "from the GP"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
    }
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "note 2"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
    }
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "note 2"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
        rec.add_entry(
            &name("notes:mental-health"),
            &json!({"text": "CANARY-MH-2"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
    }
    // The patient's node starts the sync this time (as after a live change).
    let report = sync(&w.patient, &w.gp, rid, at(12), &mut w.rng).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(w.gp.texts(&rid, "notes"), vec!["note 1", "note 2"]);
    let mh = section_id(&w.patient, &rid, "notes:mental-health");
    assert_eq!(w.gp.bundles_in(&rid, &mh), 0);
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

/// Copies every bundle of `rid` the source holds into the target's store, bypassing the
/// session (as a careless relay or a stale copy elsewhere might hand them over).
fn copy_all_bundles(from: &Node, to: &Node, rid: &RecordId) {
    let mut bundles = Vec::new();
    for (sid, vv) in from.vault.held_sections(rid).unwrap() {
        for author in vv.keys() {
            let mut budget = usize::MAX;
            for b in from
                .vault
                .bundles_from(rid, &sid, author, 1, &mut budget)
                .unwrap()
            {
                bundles.push(hearth_core::bundle::Bundle::decode(&b).unwrap());
            }
        }
    }
    to.vault
        .store_remote(rid, bundles, TEST_NOW, &mut |_| Ok(()))
        .unwrap();
}

#[test]
fn revocation_moves_readable_sections_to_keys_the_revoked_never_get() {
    let mut w = world(21);
    let rid = w.rid;
    let g = grant_to(&mut w, "gp", "notes", Ability::Read);
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    sync(&w.sw, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let notes = section_id(&w.patient, &rid, "notes");
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.put_auth_items(
            vec![(format!("revoke/{}", g.id()), "{}".into())],
            at(11),
            &mut w.rng,
        )
        .unwrap();
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        for i in 0..300 {
            rec.add_entry(
                &name("notes"),
                &json!({"text": format!("n{i}")}),
                at(5),
                &mut w.rng,
            )
            .unwrap();
        }
    }
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "after"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
    }
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        for i in 0..260 {
            rec.add_entry(
                &name("notes"),
                &json!({"text": format!("n{i}")}),
                at(5),
                &mut w.rng,
            )
            .unwrap();
        }
    }
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

/// What `p` pushes to `remote` with a change notification, as the node's change check
/// does: the bundles newer than `since` (what it held at its last check) in the sections
/// `remote` may hold, if they fit in a push; otherwise none.
fn push_for(
    p: &Local<'_, MemoryStore>,
    rid: &RecordId,
    remote: &PeerKey,
    since: &BTreeMap<SectionId, VersionVector>,
    now: Timestamp,
) -> Result<Vec<ByteBuf>, SyncError> {
    let sections = p.holdable_by(rid, remote, now)?;
    p.bundles_since(rid, &sections, since, protocol::MAX_PUSH_BYTES)
}

#[test]
fn pushed_notifications_carry_only_what_the_receiver_may_hold() {
    let mut w = world(25);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let since = w.patient.vault.held_sections(&rid).unwrap();
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &json!({"text": "pushed"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
        rec.add_entry(
            &name("notes:mental-health"),
            &json!({"text": "CANARY-MH-push"}),
            at(11),
            &mut w.rng,
        )
        .unwrap();
    }
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
    assert!(stranger.peer().on_push(rid, &push, at(60)).is_err());
    // A gap (a push after something the receiver missed) is refused, so the receiver syncs.
    let since2 = w.patient.vault.held_sections(&rid).unwrap();
    for text in ["missed", "next"] {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.add_entry(&name("notes"), &json!({"text": text}), at(13), &mut w.rng)
            .unwrap();
    }
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
        for i in 0..100 {
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
    // The GP gets the hundred bundles one by one (not a snapshot) and reads them.
    copy_all_bundles(&w.patient, &w.gp, &rid);
    assert_eq!(w.gp.texts(&rid, "notes").len(), 101);
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
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        rec.put_auth_items(
            vec![(format!("revoke/{}", revoked.id()), "{}".into())],
            at(5),
            &mut w.rng,
        )
        .unwrap();
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
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    rec.put_auth_items(
        vec![(
            format!("revoke/{}", g.id()),
            json!({"at": at(5)}).to_string(),
        )],
        at(5),
        &mut w.rng,
    )
    .unwrap();
    drop(rec);
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

/// A grant of `ability` on `spec` to the GP that ends at `expires`, recorded as `hearth grant`
/// records it.
fn grant_gp_until(w: &mut World, spec: &str, ability: Ability, expires: Timestamp) -> Grant {
    let s = GrantSpec::new(
        w.gp.id.peer(),
        spec.parse().unwrap(),
        ability,
        TEST_NOW,
        expires,
    );
    let g = Grant::issue_root(&w.patient.id, s, &[], &mut w.rng).unwrap();
    let mut rec = w.patient.vault.open_record(&w.patient.id, &w.rid).unwrap();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], at(4), &mut w.rng)
        .unwrap();
    w.gp.hold(&g);
    g
}

/// The GP, whose append grant on notes ends at minute 60, writes `texts` offline at minute
/// 30 (inside the grant), after a first sync at minute 10.
fn late_writes(seed: u64, texts: &[&str]) -> World {
    let mut w = world(seed);
    let rid = w.rid;
    grant_gp_until(&mut w, "notes", Ability::Append, at(60));
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let mut rec = w.gp.vault.open_record(&w.gp.id, &rid).unwrap();
    for t in texts {
        rec.add_entry(&name("notes"), &json!({ "text": t }), at(30), &mut w.rng)
            .unwrap();
    }
    w
}

#[test]
fn a_write_declared_before_expiry_and_received_after_it_is_held_not_applied() {
    let mut w = late_writes(40, &["late note"]);
    let rid = w.rid;
    // Received two hours later (beyond the tolerance): the patient's node pulls from the GP.
    let report = sync(&w.patient, &w.gp, rid, at(120), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("review")),
        "{report:?}"
    );
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
    let held = w.patient.vault.held_writes().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    let h = &held[0];
    assert_eq!(h.author, w.gp.id.peer());
    assert_eq!(h.reason, HeldReason::Expired);
    assert_eq!((h.declared, h.received), (at(30), at(120)));
    assert_eq!(h.section, section_id(&w.patient, &rid, "notes"));
    // Held once, however often it comes again.
    sync(&w.patient, &w.gp, rid, at(121), &mut w.rng).unwrap();
    assert_eq!(w.patient.vault.held_writes().unwrap().len(), 1);
    // Within the tolerance it is simply accepted (the old rule, at the receiver's clock).
    let mut w2 = late_writes(41, &["on time"]);
    sync(&w2.patient, &w2.gp, w2.rid, at(60), &mut w2.rng).unwrap();
    assert!(
        w2.patient
            .texts(&w2.rid, "notes")
            .contains(&"on time".into())
    );
    assert!(w2.patient.vault.held_writes().unwrap().is_empty());
}

#[test]
fn a_write_declared_after_expiry_or_by_a_stranger_is_refused_not_held() {
    let mut w = late_writes(42, &[]);
    let rid = w.rid;
    // A hostile GP writes after expiry (its own node would refuse to: skip that check).
    w.gp.vault
        .open_record(&w.gp.id, &rid)
        .unwrap()
        .append_raw_for_tests(
            &name("notes"),
            vec![("e/late".into(), "{}".into())],
            at(90),
            &mut w.rng,
        )
        .unwrap();
    let report = sync(&w.patient, &w.gp, rid, at(120), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("no append grant")),
        "{report:?}"
    );
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    // A reader (no append grant ever) writing into the section it reads is refused, not held,
    // whatever time it declares.
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.sw, &w.patient, rid, at(121), &mut w.rng).unwrap();
    w.sw.vault
        .open_record(&w.sw.id, &rid)
        .unwrap()
        .append_raw_for_tests(
            &name("notes"),
            vec![("e/stranger".into(), "{}".into())],
            at(20),
            &mut w.rng,
        )
        .unwrap();
    let report = sync(&w.patient, &w.sw, rid, at(122), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("no append grant")),
        "{report:?}"
    );
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
}

#[test]
fn a_held_write_accepted_is_applied_and_synced_onward() {
    let mut w = late_writes(43, &["late one", "late two"]);
    let rid = w.rid;
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.patient, &w.gp, rid, at(120), &mut w.rng).unwrap();
    let held = w.patient.vault.held_writes().unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    // Both are held (the second after the first); accepting the second accepts both (it
    // needs the first).
    let second = held.iter().max_by_key(|h| h.seq).unwrap();
    assert_eq!(second.reason, HeldReason::Expired);
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    let (decided, settled) = rec
        .decide_held(
            &second.id.to_string(),
            Decision::Accept,
            at(130),
            &mut w.rng,
        )
        .unwrap();
    assert_eq!((decided.len(), settled.applied), (2, 2), "{settled:?}");
    drop(rec);
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    assert_eq!(
        w.patient.texts(&rid, "notes"),
        vec!["note 1", "late one", "late two"]
    );
    // Another grantee accepts the exact bundles the patient accepted, though the GP's grant
    // has ended: the decision travels in the auth document.
    let r = sync(&w.sw, &w.patient, rid, at(140), &mut w.rng).unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_eq!(
        w.sw.texts(&rid, "notes"),
        vec!["note 1", "late one", "late two"]
    );
    // Deciding again is refused with a reason.
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    assert!(
        rec.decide_held(
            &second.id.to_string(),
            Decision::Reject,
            at(141),
            &mut w.rng
        )
        .is_err()
    );
}

#[test]
fn a_held_write_rejected_is_gone_and_never_held_again() {
    let mut w = late_writes(44, &["unwanted"]);
    let rid = w.rid;
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.patient, &w.gp, rid, at(120), &mut w.rng).unwrap();
    let id = w.patient.vault.held_writes().unwrap()[0].id;
    let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
    let (decided, settled) = rec
        .decide_held(&id.to_string()[..12], Decision::Reject, at(130), &mut w.rng)
        .unwrap();
    assert_eq!((decided.len(), settled.dropped), (1, 1));
    drop(rec);
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    let report = sync(&w.patient, &w.gp, rid, at(131), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("rejected")),
        "{report:?}"
    );
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
    // The decision is in the auth document every grantee syncs.
    sync(&w.sw, &w.patient, rid, at(132), &mut w.rng).unwrap();
    let rec = w.sw.vault.open_record(&w.sw.id, &rid).unwrap();
    let decisions = rec.review_decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].0, id);
    assert_eq!(decisions[0].1.decision, Decision::Reject);
}

#[test]
fn a_write_concurrent_with_a_revocation_is_held_and_one_after_it_refused() {
    let mut w = world(45);
    let rid = w.rid;
    let g = grant_gp_until(&mut w, "notes", Ability::Append, at(30 * 24 * 60));
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    w.gp.vault
        .open_record(&w.gp.id, &rid)
        .unwrap()
        .add_entry(
            &name("notes"),
            &json!({"text": "before"}),
            at(30),
            &mut w.rng,
        )
        .unwrap();
    // The patient revokes at minute 40, not having seen it.
    w.patient
        .vault
        .open_record(&w.patient.id, &rid)
        .unwrap()
        .put_auth_items(
            vec![(
                format!("revoke/{}", g.id()),
                json!({ "at": at(40) }).to_string(),
            )],
            at(40),
            &mut w.rng,
        )
        .unwrap();
    // The GP, not having seen the revocation, writes again at minute 45.
    w.gp.vault
        .open_record(&w.gp.id, &rid)
        .unwrap()
        .add_entry(
            &name("notes"),
            &json!({"text": "after"}),
            at(45),
            &mut w.rng,
        )
        .unwrap();
    let report = sync(&w.patient, &w.gp, rid, at(50), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("no append grant")),
        "{report:?}"
    );
    let held = w.patient.vault.held_writes().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].reason, HeldReason::Revoked);
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
}

#[test]
fn held_writes_are_bounded_per_author() {
    let texts: Vec<String> = (0..MAX_HELD_PER_AUTHOR + 3)
        .map(|i| format!("n{i}"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut w = late_writes(46, &refs);
    let rid = w.rid;
    let report = sync(&w.patient, &w.gp, rid, at(120), &mut w.rng).unwrap();
    assert_eq!(
        w.patient.vault.held_writes().unwrap().len(),
        MAX_HELD_PER_AUTHOR
    );
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("not held") && r.contains("awaiting review")),
        "{report:?}"
    );
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
}

#[test]
fn a_late_write_is_refused_not_held_by_other_grantees() {
    let mut w = world(47);
    let rid = w.rid;
    grant_gp_until(&mut w, "notes", Ability::Append, at(60));
    grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    sync(&w.sw, &w.patient, rid, at(11), &mut w.rng).unwrap();
    w.gp.vault
        .open_record(&w.gp.id, &rid)
        .unwrap()
        .add_entry(&name("notes"), &json!({"text": "late"}), at(30), &mut w.rng)
        .unwrap();
    // After the GP's grant ended, the social worker starts no round with it (no party).
    assert!(matches!(
        w.sw.peer().start_as(rid, w.gp.id.peer(), false, at(120)),
        Err(SyncError::NotAParty)
    ));
    // The GP pushes its late write to the social worker: it neither applies nor holds it.
    let all: std::collections::BTreeSet<_> =
        w.gp.vault
            .held_sections(&rid)
            .unwrap()
            .into_keys()
            .collect();
    let push =
        w.gp.peer()
            .bundles_since(&rid, &all, &Default::default(), 1 << 20)
            .unwrap();
    let report = w.sw.peer().on_push(rid, &push, at(120)).unwrap();
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("holds it for review")),
        "{report:?}"
    );
    assert!(w.sw.vault.held_writes().unwrap().is_empty());
    assert_eq!(w.sw.texts(&rid, "notes"), vec!["note 1"]);
}

#[test]
fn a_write_declared_in_the_future_is_refused_not_held() {
    let mut w = world(48);
    let rid = w.rid;
    // A grant to append from minute 100 to 200; a read grant now, for the keys.
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let s = GrantSpec::new(
        w.gp.id.peer(),
        "notes".parse().unwrap(),
        Ability::Append,
        at(100),
        at(200),
    );
    let g = Grant::issue_root(&w.patient.id, s, &[], &mut w.rng).unwrap();
    w.patient
        .vault
        .open_record(&w.patient.id, &rid)
        .unwrap()
        .put_auth(vec![AuthItem::Grant(vec![g.clone()])], at(5), &mut w.rng)
        .unwrap();
    w.gp.hold(&g);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    // Written "at minute 150", inside the future grant, and received at minute 50.
    w.gp.vault
        .open_record(&w.gp.id, &rid)
        .unwrap()
        .add_entry(
            &name("notes"),
            &json!({"text": "future"}),
            at(150),
            &mut w.rng,
        )
        .unwrap();
    let report = sync(&w.patient, &w.gp, rid, at(50), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("no append grant")),
        "{report:?}"
    );
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
}
