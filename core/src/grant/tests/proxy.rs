//! Proxy grants: who may answer requests, what an approval may grant, and which answers the
//! patient's node takes as founded.

use super::*;
use crate::audit::Action;
use crate::grant::proxy::{answer_founded, approve, issued_token};
use crate::grant::request::{self, AccessRequest, RequestSpec};

/// A proxy grant from the patient to `carer` on `sections`, able to answer requests if
/// `answers`.
fn proxy_grant(w: &mut World, carer: PeerKey, sections: &str, answers: bool) -> Grant {
    let mut s = spec(carer, sections, Ability::Read, 365);
    s.purpose = Purpose::Proxy;
    s.depth = u8::from(answers);
    Grant::issue_root(&w.patient, s, &[], &mut w.rng).unwrap()
}

/// The GP's request for `sections` of the patient's record, for direct care.
fn gp_request(w: &mut World, sections: &str, ability: Ability) -> AccessRequest {
    let spec: crate::section::SectionSpec = sections.parse().unwrap();
    request::request(
        &w.gp,
        RequestSpec {
            record: w.patient.record_id().unwrap(),
            scopes: scopes(&spec, ability),
            purpose: Purpose::DirectCare,
            duration_ms: 90 * DAY,
            reason: "annual review".into(),
            answer_within_ms: 14 * DAY,
        },
        None,
        TEST_NOW,
        &mut w.rng,
    )
    .unwrap()
}

#[test]
fn a_proxy_approves_within_its_own_grant_for_the_purpose_asked() {
    let mut w = world(41);
    let carer = w.staff.peer();
    let pg = proxy_grant(&mut w, carer, "notes,medications", true);
    let req = gp_request(&mut w, "notes,allergies", Ability::Append);
    let a = approve(&pg, &w.staff, &req, None, 30 * DAY, TEST_NOW, &mut w.rng).unwrap();
    let rights = verify_chain(&a.chain, &Access::any(w.gp.peer()), TEST_NOW, &|_| false).unwrap();
    // Notes only (allergies are not the proxy's to give), and read only (all it holds).
    assert_eq!(rights.scopes.len(), 1);
    assert_eq!(rights.scopes[0].ability, Ability::Read);
    assert_eq!(rights.purpose, Purpose::DirectCare);
    assert_eq!(rights.depth, 0);
    assert_eq!(a.not_granted.len(), 1);
    // Revoking the proxy grant ends what the proxy gave.
    let revoked = pg.id();
    assert!(matches!(
        verify_chain(&a.chain, &Access::any(w.gp.peer()), TEST_NOW, &|g| *g
            == revoked),
        Err(Refusal::Revoked { link: 0 })
    ));
}

#[test]
fn a_proxy_without_the_power_to_answer_or_asked_for_nothing_it_holds_cannot_approve() {
    let mut w = world(42);
    let carer = w.staff.peer();
    let reader = proxy_grant(&mut w, carer, "notes", false);
    let req = gp_request(&mut w, "notes", Ability::Read);
    assert!(approve(&reader, &w.staff, &req, None, DAY, TEST_NOW, &mut w.rng).is_err());
    let answering = proxy_grant(&mut w, carer, "notes", true);
    let other = gp_request(&mut w, "medications", Ability::Read);
    assert!(
        approve(
            &answering, &w.staff, &other, None, DAY, TEST_NOW, &mut w.rng
        )
        .is_err()
    );
    // Only the holder can sign the delegation.
    assert!(approve(&answering, &w.gp, &req, None, DAY, TEST_NOW, &mut w.rng).is_err());
}

#[test]
fn a_proxy_grant_cannot_make_another_proxy_or_be_passed_on() {
    let mut w = world(43);
    let carer = w.staff.peer();
    let mut s = spec(carer, "notes", Ability::Read, 30);
    s.purpose = Purpose::Proxy;
    s.depth = 2;
    assert!(Grant::issue_root(&w.patient, s, &[], &mut w.rng).is_err());
    let pg = proxy_grant(&mut w, carer, "notes", true);
    let mut child = spec(w.gp.peer(), "notes", Ability::Read, 10);
    child.purpose = Purpose::Proxy;
    assert!(Grant::delegate(&pg, &w.staff, child, &mut w.rng).is_err());
}

#[test]
fn only_an_answer_founded_on_the_writers_proxy_grant_counts() {
    let mut w = world(44);
    let carer = w.staff.peer();
    let pg = proxy_grant(&mut w, carer, "notes", true);
    let org = w.org.peer();
    let reader = proxy_grant(&mut w, org, "notes", false);
    let req = gp_request(&mut w, "notes", Ability::Read);
    let a = approve(&pg, &w.staff, &req, None, 30 * DAY, TEST_NOW, &mut w.rng).unwrap();
    let approved = Action::Approved {
        request: req.to_token(),
        grant: issued_token(&a),
        authority: None,
    };
    let denied = Action::Denied {
        request: req.to_token(),
        reason: None,
        authority: None,
    };
    let grants = [pg.clone(), reader.clone()];
    assert!(answer_founded(&grants, &carer, &approved));
    assert!(answer_founded(&grants, &carer, &denied));
    // Not the proxy that wrote it; a proxy without the power to answer; no proxy grant.
    assert!(!answer_founded(&grants, &w.gp.peer(), &approved));
    assert!(!answer_founded(&grants, &w.org.peer(), &denied));
    assert!(!answer_founded(&grants[1..], &carer, &approved));
    // A grant to someone other than the requester, or not derived from the proxy grant.
    let other = gp_request(&mut w, "notes", Ability::Read);
    let mut s = spec(w.org.peer(), "notes", Ability::Read, 10);
    s.purpose = Purpose::DirectCare;
    let stray = Grant::delegate(&pg, &w.staff, s, &mut w.rng).unwrap();
    let mismatched = Action::Approved {
        request: other.to_token(),
        grant: chain_to_token(std::slice::from_ref(&stray)),
        authority: None,
    };
    assert!(!answer_founded(&grants, &carer, &mismatched));
    let direct = Grant::issue_root(
        &w.patient,
        spec(w.gp.peer(), "notes", Ability::Read, 10),
        &[],
        &mut w.rng,
    )
    .unwrap();
    let forged = Action::Approved {
        request: req.to_token(),
        grant: chain_to_token(std::slice::from_ref(&direct)),
        authority: None,
    };
    assert!(!answer_founded(&grants, &carer, &forged));
    // Garbage never counts.
    let junk = Action::Approved {
        request: "HEARTH1Rjunk".into(),
        grant: issued_token(&a),
        authority: None,
    };
    assert!(!answer_founded(&grants, &carer, &junk));
}
