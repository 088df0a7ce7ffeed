//! Late writes: held for the patient's review, accepted, rejected, bounded, or refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::{Ability, Grant, GrantSpec};
use hearth_core::record::{AuthItem, Decision, HeldReason, MAX_HELD_PER_AUTHOR};
use hearth_core::test_utils::TEST_NOW;
use hearth_core::time::Timestamp;
use hearth_sync::session::SyncError;
use serde_json::json;

mod common;
use common::*;

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
    drop(rec);
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
    w.gp.add_raw(&rid, "notes", "e/late", at(90), &mut w.rng);
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
    w.sw.add_raw(&rid, "notes", "e/stranger", at(20), &mut w.rng);
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
    w.gp.add(&rid, "notes", "before", at(30), &mut w.rng);
    // The patient revokes at minute 40, not having seen it.
    revoke_unsigned(&mut w, &g, Some(at(40)), at(40));
    // The GP, not having seen the revocation, writes again at minute 45.
    w.gp.add(&rid, "notes", "after", at(45), &mut w.rng);
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
    w.gp.add(&rid, "notes", "late", at(30), &mut w.rng);
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
    w.gp.add(&rid, "notes", "future", at(150), &mut w.rng);
    let report = sync(&w.patient, &w.gp, rid, at(50), &mut w.rng).unwrap();
    assert!(
        report.refused.iter().any(|r| r.contains("no append grant")),
        "{report:?}"
    );
    assert!(w.patient.vault.held_writes().unwrap().is_empty());
    assert_eq!(w.patient.texts(&rid, "notes"), vec!["note 1"]);
}
