//! Who wrote what, from verified facts only: the organisation credentials attached to the
//! access requests in the patient's private ledger, checked against the organisations the
//! patient trusts. `record show`, `record history` and `review` all vouch this way.

use crate::sled_store::SledStore;
use hearth_core::grant::request::{AccessRequest, Verification, verify_credential};
use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use hearth_core::record::{Attribution, Basis, OpenRecord};
use hearth_core::time::Timestamp;
use std::collections::BTreeMap;

/// A person an organisation the patient trusts vouches for: name, role, organisation.
pub type Vouched = (String, String, String);

/// Every requester in the patient's ledger whose credential verifies at `t`, in ledger order.
fn vouched(rec: &mut OpenRecord<'_, SledStore>, t: Timestamp) -> Vec<(PeerKey, Vouched)> {
    let trusted = rec.trusted_orgs();
    rec.requests()
        .into_iter()
        .filter_map(|(_, item)| {
            let req = AccessRequest::from_token(&item.token).ok()?;
            let peer = req.body().requester.peer;
            match verify_credential(req.credential().as_ref(), &peer, &trusted, t) {
                Verification::Verified {
                    name,
                    role,
                    organisation,
                    ..
                } => Some((peer, (name, role, organisation))),
                _ => None,
            }
        })
        .collect()
}

/// Verified identities of keys other than the patient's devices: the organisation
/// credentials this node holds for them (attached to the access requests in the patient's
/// private ledger), from organisations the patient trusts, current at `t`.
pub fn verified_people(
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    t: Timestamp,
) -> BTreeMap<PeerKey, Vouched> {
    vouched(rec, t)
        .into_iter()
        .filter(|(peer, _)| *peer != identity.peer())
        .collect()
}

/// The name a verified credential gives `author` (`name, role, organisation`), from the
/// access requests in the patient's ledger (checked against the trusted organisations at `t`).
pub fn verified_name(
    rec: &mut OpenRecord<'_, SledStore>,
    author: &PeerKey,
    t: Timestamp,
) -> Option<String> {
    vouched(rec, t)
        .into_iter()
        .find(|(peer, _)| peer == author)
        .map(|(_, (name, role, org))| format!("{name}, {role}, {org}"))
}

/// Fills in a grantee's verified identity from `people`, and this node's own.
pub fn vouch(a: &mut Attribution, people: &BTreeMap<PeerKey, Vouched>, me: &Identity) {
    if a.basis != Basis::Unverified {
        return;
    }
    if let Some((name, role, org)) = people.get(&a.author) {
        a.basis = Basis::OrganisationCredential;
        a.name = Some(name.clone());
        a.role = Some(role.clone());
        a.organisation = Some(org.clone());
    } else if a.author == me.peer() {
        a.basis = Basis::ThisNode;
        a.name = Some(me.name.clone());
        a.role = Some(me.role.as_str().to_string());
    }
}
