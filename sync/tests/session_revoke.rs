//! A revocation racing live propagation: the patient revokes one grantee and writes at once;
//! the other grantee's node hears of the new entry before it has synced the revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::Ability;
use hearth_core::ids::PeerKey;
use hearth_sync::changes::Changes;
use std::collections::BTreeSet;
use std::time::Instant;

mod common;
use common::*;

/// The change checker's clock origin: only offsets matter.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// Regression: a GP's node stored a pushed bundle written under a key epoch it did not hold
/// yet (the revocation and the new keys had not reached it), and, still counting the revoked
/// social worker among the record's readers, pushed that bundle on to her node, which stored
/// it: a bundle written after her revocation on the revoked node. A pushed bundle under a key
/// this node has not been given is now refused, and the sync that a refusal draws brings the
/// auth document and the keys first.
#[test]
fn a_bundle_pushed_under_a_key_not_yet_held_is_refused_and_never_passed_to_the_revoked() {
    let mut w = world(61);
    let rid = w.rid;
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let revoked = grant_to(&mut w, "sw", "notes", Ability::Read);
    sync(&w.gp, &w.patient, rid, at(10), &mut w.rng).unwrap();
    sync(&w.sw, &w.patient, rid, at(10), &mut w.rng).unwrap();
    let notes = section_id(&w.patient, &rid, "notes");
    // The GP's node is connected to the social worker's and has looked at the record.
    let sw_peer: PeerKey = w.sw.id.peer();
    let connected: BTreeSet<PeerKey> = [sw_peer].into();
    let mut gp_changes = Changes::default();
    let t0 = origin();
    let patient_peer = w.patient.id.peer();
    assert!(
        gp_changes
            .check(&w.gp.peer(), &connected, Some(patient_peer), t0, at(10))
            .is_empty()
    );
    let sw_held = w.sw.bundles_in(&rid, &notes);

    // The patient revokes the social worker (notes and the auth document move to new keys),
    // then writes: the patient's change check pushes the new note to the GP alone.
    let since = w.patient.vault.held_sections(&rid).unwrap();
    {
        let mut rec = w.patient.vault.open_record(&w.patient.id, &rid).unwrap();
        assert_eq!(rec.revoke(&revoked, at(11), &mut w.rng).unwrap(), 2);
    }
    let after_revocation = w.patient.vault.held_sections(&rid).unwrap();
    assert_ne!(since, after_revocation);
    write(&mut w, "notes", "CANARY-after-revocation", at(12));
    let gp_peer = w.gp.id.peer();
    let push = push_for(&w.patient.peer(), &rid, &gp_peer, &after_revocation, at(12)).unwrap();
    assert_eq!(push.len(), 1, "the new note alone");

    // It reaches the GP before the GP has synced the revocation: refused, not stored.
    let report = w.gp.peer().on_push(rid, &push, at(12)).unwrap();
    assert_eq!(report.received, 0, "{report:?}");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let announced = gp_changes.check(&w.gp.peer(), &connected, Some(patient_peer), t0, at(12));
    assert!(announced.is_empty(), "{announced:?}");

    // The refusal draws a sync with the patient: the revocation, the new keys, the note.
    let synced = sync(&w.gp, &w.patient, rid, at(12), &mut w.rng).unwrap();
    assert!(synced.in_sync, "{synced:?}");
    assert!(
        w.gp.texts(&rid, "notes")
            .contains(&"CANARY-after-revocation".to_string())
    );
    // The GP's node now knows of the revocation: nothing is announced to the social worker.
    let announced = gp_changes.check(&w.gp.peer(), &connected, Some(patient_peer), t0, at(12));
    assert!(announced.iter().all(|a| a.peer != sw_peer), "{announced:?}");
    assert_eq!(w.sw.bundles_in(&rid, &notes), sw_held);
    // And were the old push handed to her node anyway, she refuses it: no key of its epoch.
    let report = w.sw.peer().on_push(rid, &push, at(12)).unwrap();
    assert_eq!(report.received, 0, "{report:?}");
    assert_eq!(w.sw.bundles_in(&rid, &notes), sw_held);
}
