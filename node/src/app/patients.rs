//! What `hearth patients` lists: every patient record this node holds, with the patient's name
//! where this node may read the demographics, the sections it can read, and the state of each
//! grant it holds for the record.

use super::grants::held_grants;
use crate::sled_store::SledStore;
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::record::{RecordError, Vault};
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde_json::{Value, json};

/// One JSON object per record `vault` holds but `own` (the node's own record, if any): its id,
/// name, sections and held grants with their states at `at`. Names and sections come from the
/// node's sealed summary of each record while the record is unchanged, else from opening it
/// ([`Vault::summaries`]).
pub fn listing(
    vault: &Vault<SledStore>,
    identity: &Identity,
    own: Option<RecordId>,
    at: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Vec<Value>, RecordError> {
    let records: Vec<RecordId> = vault
        .records()?
        .into_iter()
        .filter(|r| Some(*r) != own)
        .collect();
    let summaries = vault.summaries(identity, &records, rng)?;
    Ok(records
        .iter()
        .zip(summaries)
        .map(|(rid, summary)| {
            let (name, sections) = summary.map_or((None, Vec::new()), |s| (s.name, s.sections));
            // The grants held for it, with their state by the local clock (revoked, expired).
            let grants: Vec<Value> = held_grants(vault, &identity.peer(), rid, at)
                .into_iter()
                .map(|(id, status)| json!({"id": id.to_string(), "status": status}))
                .collect();
            json!({"record_id": rid, "name": name, "sections": sections, "grants": grants})
        })
        .collect())
}
