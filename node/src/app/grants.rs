//! Grants as several commands see them: the patient's own record, recording an issued grant
//! (auth document and private ledger), and the state of the grants a grantee's node holds
//! (`grant list`, `status`, `patients`).

use super::patient_record;
use crate::fail::{Failure, code};
use crate::os::NodeRng;
use crate::sled_store::SledStore;
use hearth_core::grant::{self, Access, Grant, GrantId, Refusal};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::ledger::{DecisionItem, IssuedGrant};
use hearth_core::record::{AuthItem, LedgerItem, OpenRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::time::Timestamp;

/// A refused grant as a failure: malformed is invalid input, anything else refused.
pub fn refusal(e: Refusal) -> Failure {
    let c = match e {
        Refusal::Malformed(_) => code::INVALID,
        _ => code::REFUSED,
    };
    Failure::new(c, format!("grant refused: {e}"))
}

/// The patient's own record, opened.
pub fn own_record<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
) -> Result<OpenRecord<'v, SledStore>, Failure> {
    patient_record(
        vault,
        identity,
        "only a patient node has a record to grant access to",
    )
}

/// Records an issued grant: the chain in the auth document (so holders of the record can check
/// each other's authority, and relays can enforce it), and the details (who, why, which
/// request) in the private ledger, with an optional extra ledger item (the decision).
pub fn record_grant(
    rec: &mut OpenRecord<'_, SledStore>,
    g: &Grant,
    item: &IssuedGrant,
    decision: Option<(&str, &DecisionItem)>,
    t: Timestamp,
    rng: &mut NodeRng,
) -> Result<(), Failure> {
    let gid = g.id();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], t, rng)?;
    let mut items = vec![LedgerItem::Grant(&gid, item)];
    items.extend(decision.map(|(rid, d)| LedgerItem::Decision(rid, d)));
    rec.put_ledger(&items, t, rng)?;
    Ok(())
}

/// The grants of `record` this (grantee's) node learnt were revoked: revocations signed by the
/// record root, received from the patient's node when it refused this node.
pub fn learnt_revocations(vault: &Vault<SledStore>, record: &RecordId) -> Vec<GrantId> {
    vault
        .learnt_revocations(record)
        .into_iter()
        .map(|r| r.grant)
        .collect()
}

/// The state of a grant chain this node holds, by the local clock: `active`, `revoked`,
/// `expired`, or why it is not valid.
pub fn held_state(
    vault: &Vault<SledStore>,
    holder: &PeerKey,
    chain: &[Grant],
    t: Timestamp,
) -> String {
    let Some(root) = chain.first() else {
        return "empty grant".to_string();
    };
    let revoked = learnt_revocations(vault, &root.body().record);
    chain_state(chain, holder, t, &revoked)
}

/// The state of a grant chain held by `holder` at `t`, given the grants known revoked:
/// `active`, `revoked`, `expired`, or why it is not valid.
pub fn chain_state(chain: &[Grant], holder: &PeerKey, t: Timestamp, revoked: &[GrantId]) -> String {
    match grant::verify_chain(chain, &Access::any(*holder), t, &|x| revoked.contains(x)) {
        Ok(_) => "active".to_string(),
        Err(Refusal::Revoked { .. }) => "revoked".to_string(),
        Err(Refusal::Expired { .. }) => "expired".to_string(),
        Err(e) => e.to_string(),
    }
}

/// The grants this node holds for `record`: (id, state by [`held_state`]).
pub fn held_grants(
    vault: &Vault<SledStore>,
    holder: &PeerKey,
    record: &RecordId,
    t: Timestamp,
) -> Vec<(GrantId, String)> {
    vault
        .held_chains(record)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.last()?.id(), held_state(vault, holder, &c, t))))
        .collect()
}

/// Section names as text, for JSON.
pub fn names(sections: &[SectionName]) -> Vec<String> {
    sections.iter().map(ToString::to_string).collect()
}

/// " Created the empty sections …" when a grant made sections, else nothing.
pub fn created_words(created: &[SectionName]) -> String {
    if created.is_empty() {
        return String::new();
    }
    format!(
        " Created the empty section{} {} for them to add to.",
        if created.len() == 1 { "" } else { "s" },
        names(created).join(", ")
    )
}
