//! The grants of a record as FHIR R4 `Consent` resources in an export: an [`ExportExtension`].
//!
//! Each grant becomes the `Consent` of [`crate::grant::interop::consent`] (the same resource
//! `hearth grant show --fhir` prints), with `patient` pointing at the exported `Patient` and its
//! status worked out at the time of the export: `active` while the grant is valid (or not valid
//! yet: its `provision.period` says from when), `inactive` once it has expired or been revoked.
//! FHIR R4 has one code for both, so the reason is kept in an extension
//! ([`GRANT_STATE_EXTENSION`]: `active`, `not-yet-valid`, `expired` or `revoked`). A chain that
//! does not verify (bad signature, not issued by the record's root key…) is left out.
//!
//! Import skips these resources (a `Consent` whose identifiers are all `urn:hearth:grant`): the
//! grants live in the consent ledger, and a grant cannot be re-issued from its FHIR form.

use super::ExportExtension;
use crate::grant::{self, Access, Grant, GrantId, Refusal, interop};
use crate::time::Timestamp;
use serde_json::{Value, json};

/// The identifier system of a grant id on an exported `Consent`.
pub const HEARTH_GRANT_SYSTEM: &str = "urn:hearth:grant";

/// The extension on an exported `Consent` that says why it is active or inactive.
pub const GRANT_STATE_EXTENSION: &str = "urn:hearth:grant-state";

/// A grant's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    /// Valid now.
    Active,
    /// Valid from a later time.
    NotYetValid,
    /// Past its expiry.
    Expired,
    /// Revoked (the grant or a link of its chain).
    Revoked,
}

impl GrantState {
    /// The state's code, as written in [`GRANT_STATE_EXTENSION`].
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::NotYetValid => "not-yet-valid",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }

    /// The R4 `Consent.status`: `active` or `inactive`.
    pub fn consent_status(self) -> &'static str {
        match self {
            GrantState::Active | GrantState::NotYetValid => "active",
            GrantState::Expired | GrantState::Revoked => "inactive",
        }
    }
}

/// The state of a grant chain at `now`, given the revoked grant ids; `None` when the chain does
/// not verify for another reason (a bad signature, an unknown issuer, a broken chain…).
pub fn grant_state(chain: &[Grant], revoked: &[GrantId], now: Timestamp) -> Option<GrantState> {
    let leaf = chain.last()?;
    let access = Access::any(leaf.body().audience);
    match grant::verify_chain(chain, &access, now, &|g| revoked.contains(g)) {
        Ok(_) => Some(GrantState::Active),
        Err(Refusal::NotYetValid { .. }) => Some(GrantState::NotYetValid),
        Err(Refusal::Expired { .. }) => Some(GrantState::Expired),
        Err(Refusal::Revoked { .. }) => Some(GrantState::Revoked),
        Err(_) => None,
    }
}

/// Grants to export as `Consent` resources, one per chain (by its last grant's id; a chain given
/// twice is exported once), oldest first.
#[derive(Debug, Clone, Default)]
pub struct GrantConsents {
    chains: Vec<Vec<Grant>>,
    revoked: Vec<GrantId>,
}

impl GrantConsents {
    /// The grant chains and the revoked grant ids (from the record's auth document).
    pub fn new(chains: Vec<Vec<Grant>>, revoked: Vec<GrantId>) -> Self {
        let mut chains: Vec<Vec<Grant>> = chains.into_iter().filter(|c| !c.is_empty()).collect();
        chains.sort_by_key(|c| c.last().map(|g| (g.body().not_before, g.id())));
        chains.dedup_by_key(|c| c.last().map(Grant::id));
        GrantConsents { chains, revoked }
    }

    /// How many chains were given (some may not verify and be left out).
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether no chain was given.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The `Consent` of each chain that verifies at `now`, its patient `patient` (a reference).
    pub fn consents(&self, patient: &str, now: Timestamp) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.chains.len());
        for chain in &self.chains {
            let (Some(leaf), Some(state)) = (chain.last(), grant_state(chain, &self.revoked, now))
            else {
                continue;
            };
            let mut c = interop::consent(leaf, state == GrantState::Active);
            if let Some(m) = c.as_object_mut() {
                m.insert("status".into(), json!(state.consent_status()));
                m.insert("patient".into(), json!({"reference": patient}));
                m.insert(
                    "extension".into(),
                    json!([{"url": GRANT_STATE_EXTENSION, "valueCode": state.as_str()}]),
                );
            }
            out.push(c);
        }
        out
    }
}

impl ExportExtension for GrantConsents {
    fn name(&self) -> &str {
        "consent"
    }

    fn resources(&self, patient: &str, now: Timestamp) -> Vec<Value> {
        self.consents(patient, now)
    }
}

/// Whether a resource is a grant written by a Hearth export: a `Consent` whose identifiers are
/// all grant ids.
pub(crate) fn is_exported_grant(resource: &serde_json::Map<String, Value>) -> bool {
    resource.get("resourceType").and_then(Value::as_str) == Some("Consent")
        && resource
            .get("identifier")
            .and_then(Value::as_array)
            .is_some_and(|ids| {
                !ids.is_empty()
                    && ids.iter().all(|i| {
                        i.get("system").and_then(Value::as_str) == Some(HEARTH_GRANT_SYSTEM)
                    })
            })
}
