//! The grant tests, by concern: the table of named valid and invalid tokens, delegation,
//! encodings and fuzz entry points, the canonical encoding of signed bodies, and the
//! SMART/FHIR forms. The fixtures are here.

mod canonical;
mod delegation;
mod encoding;
mod interop;
mod proxy;
mod table;

use super::body::grant_id;
use super::token::Envelope;
use super::*;
use crate::crypto::{self, Domain};
use crate::ids::PeerKey;
use crate::keys::{Identity, Role};
use crate::section::{Label, SectionClass, SectionName};
use crate::test_utils::{TEST_NOW, TestRng};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use serde_bytes::ByteArray;

const DAY: i64 = 86_400_000;

struct World {
    rng: TestRng,
    patient: Identity,
    other_patient: Identity,
    org: Identity,
    staff: Identity,
    gp: Identity,
}

fn world(seed: u64) -> World {
    let mut rng = TestRng::new(seed);
    let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
    let (other_patient, _) = Identity::generate(Role::Patient, "Other".into(), &mut rng);
    let (org, _) = Identity::generate(Role::Relay, "Riverside Practice".into(), &mut rng);
    let (staff, _) = Identity::generate(Role::Professional, "Nurse N".into(), &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    World {
        rng,
        patient,
        other_patient,
        org,
        staff,
        gp,
    }
}

fn spec(audience: PeerKey, s: &str, a: Ability, days: i64) -> GrantSpec {
    GrantSpec::new(
        audience,
        s.parse().unwrap(),
        a,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(days * DAY),
    )
}

fn org_chain(w: &mut World) -> Vec<Grant> {
    let mut s = spec(
        w.org.peer(),
        "notes,medications,notes:mental-health",
        Ability::Append,
        30,
    );
    s.depth = 1;
    let root = Grant::issue_root(&w.patient, s, &[], &mut w.rng).unwrap();
    let child = Grant::delegate(
        &root,
        &w.org,
        spec(w.staff.peer(), "notes", Ability::Read, 7),
        &mut w.rng,
    )
    .unwrap();
    vec![root, child]
}

/// A root grant to the GP: read on `sections` for 30 days.
fn to_gp(w: &mut World, sections: &str) -> Grant {
    let s = spec(w.gp.peer(), sections, Ability::Read, 30);
    Grant::issue_root(&w.patient, s, &[], &mut w.rng).unwrap()
}

fn never(_: &GrantId) -> bool {
    false
}

fn notes_read(holder: PeerKey) -> Access {
    Access::section(holder, "notes".parse().unwrap(), Ability::Read)
}

/// `g`'s body changed by `edit` and re-signed with `key`.
fn edited(g: &Grant, key: &SigningKey, edit: impl FnOnce(&mut GrantBody)) -> Grant {
    let mut body = g.body().clone();
    edit(&mut body);
    resign(body, key)
}

/// Re-signs a modified body with `key` (for cases that need a validly signed bad grant).
fn resign(mut body: GrantBody, key: &SigningKey) -> Grant {
    body.scopes.sort();
    let bytes = serde_ipld_dagcbor::to_vec(&body).unwrap();
    let sig = crypto::sign(key, Domain::Grant, &[&bytes]);
    Grant {
        id: grant_id(&bytes),
        envelope: Envelope {
            body: bytes,
            sig: sig.to_vec(),
        },
        body,
    }
}
