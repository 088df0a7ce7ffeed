//! What the record already holds: the resources imported before (by hash and by identity),
//! the versions and their successors, and who its demographics say the patient is.

use super::super::patient::PatientFacts;
use super::ImportPlan;
use crate::entry::schema::{Note, Source, SourceIdentifier, field_name};
use crate::entry::{EntryStatus, EntryVersion};
use crate::ids::EntryId;
use crate::section::SectionClass;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// What the record already holds, for de-duplication and consistency checks: built from every
/// version of every readable entry.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub(super) hashes: HashSet<String>,
    pub(super) identities: HashMap<String, EntryId>,
    superseded_by: HashMap<EntryId, EntryId>,
    pub(super) versions: HashSet<EntryId>,
    pub(super) in_error: HashSet<EntryId>,
    /// Who each demographics version says the patient is.
    demographics: HashMap<EntryId, PatientFacts>,
}

impl Existing {
    /// Notes one stored version.
    pub fn add_version(&mut self, v: &EntryVersion) {
        self.versions.insert(v.id);
        if v.status == EntryStatus::EnteredInError {
            self.in_error.insert(v.id);
        }
        if let Some(old) = v.supersedes {
            self.superseded_by.insert(old, v.id);
        }
        if let Some(src) = v.body.get(field_name!(Note.source)) {
            if let Some(h) = src.get(field_name!(Source.sha256)).and_then(Value::as_str) {
                self.hashes.insert(h.to_owned());
            }
            for key in identity_keys_of_stored(src) {
                self.identities.insert(key, v.id);
            }
        }
        if v.class == SectionClass::Demographics {
            self.demographics
                .insert(v.id, PatientFacts::of_demographics(&v.body));
        }
    }

    /// Who the record's current demographics entries (neither replaced nor entered in error)
    /// say the patient is: what [`crate::fhir::check_patient`] compares a bundle's Patient with.
    pub fn record_patient(&self) -> Vec<PatientFacts> {
        let mut ids: Vec<&EntryId> = self
            .demographics
            .keys()
            .filter(|id| !self.superseded_by.contains_key(id) && !self.in_error.contains(id))
            .collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.demographics.get(id).cloned())
            .collect()
    }

    /// Notes the entries of a plan as written with `ids` (in plan order).
    pub fn add_written(&mut self, plan: &ImportPlan, ids: &[EntryId]) {
        for (p, id) in plan.entries.iter().zip(ids) {
            self.add_version(&EntryVersion {
                id: *id,
                class: p.section.class,
                version: 1,
                supersedes: p.supersedes,
                status: EntryStatus::Final,
                status_reason: None,
                body: p.body.clone(),
                provenance: crate::entry::Provenance {
                    author: crate::ids::PeerKey([0; 32]),
                    author_name: String::new(),
                    author_role: crate::keys::Role::Patient,
                    recorded_at: crate::time::Timestamp::from_millis(0),
                    purpose: None,
                },
            });
        }
    }

    /// The newest version descending from `id`.
    pub(super) fn current(&self, mut id: EntryId) -> EntryId {
        for _ in 0..10_000 {
            match self.superseded_by.get(&id) {
                Some(next) => id = *next,
                None => break,
            }
        }
        id
    }
}

/// Identity keys of a resource: its type with its full URL, or with a business identifier that
/// has a system.
pub(super) fn identity_keys(
    resource_type: &str,
    full_url: Option<&str>,
    identifiers: &[SourceIdentifier],
) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(u) = full_url {
        keys.push(format!("{resource_type}|url|{u}"));
    }
    for i in identifiers {
        if let Some(s) = &i.system {
            keys.push(format!("{resource_type}|id|{s}|{}", i.value));
        }
    }
    keys
}

/// Identity keys of a stored source (its resource is not read).
fn identity_keys_of_stored(src: &Value) -> Vec<String> {
    let text = |key: &str| src.get(key).and_then(Value::as_str);
    let identifiers: Vec<SourceIdentifier> = src
        .get(field_name!(Source.identifiers))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| SourceIdentifier::deserialize(i).ok())
        .collect();
    identity_keys(
        text(field_name!(Source.resource_type)).unwrap_or(""),
        text(field_name!(Source.full_url)),
        &identifiers,
    )
}
