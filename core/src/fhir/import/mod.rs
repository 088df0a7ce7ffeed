//! FHIR R4 Bundle → planned entries. Pure: checks and maps the whole bundle, writes nothing.
//!
//! [`split_bundle`] checks the Bundle's outer shape and splits it ([`bundle`]); [`plan`] runs
//! pass 1 (the [`index`] of what references can point at) and pass 2 on all cores: each
//! resource [`check`]ed as a whole, then [`map`]ped to its entry's typed shape (read with
//! [`read`]) and checked against its schema; the outcomes are folded in bundle order against
//! what the record already holds ([`existing`]).

// First: its macros fill in the shapes in the modules below.
#[macro_use]
mod read;

mod bundle;
mod check;
mod existing;
mod index;
mod map;
mod plan;

pub use bundle::ParsedBundle;
pub(crate) use bundle::split_bundle;
pub use existing::Existing;
pub(crate) use map::UCUM;

use super::FhirError;
use super::patient::PatientFacts;
use crate::entry::CheckedBody;
use crate::ids::EntryId;
use crate::section::SectionName;
use plan::plan_import_each_on;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The bundle types Hearth imports.
const BUNDLE_TYPES: &[&str] = &[
    "collection",
    "transaction",
    "batch",
    "document",
    "searchset",
];

/// The largest single resource accepted, as JSON (an entry keeps the resource whole and is at
/// most 2 MiB with its typed fields).
pub(crate) const MAX_RESOURCE_JSON: usize = 1 << 20;

/// Resource types that name actors rather than facts about the patient; they are kept as
/// `documents` entries holding the resource, and used to name authors and performers.
const ACTOR_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Goal",
    "Device",
    "Specimen",
];

/// Why a resource marked `entered-in-error` is not imported as an entry.
const IN_ERROR: &str = "marked entered in error";

/// An entry to mark entered in error: a resource marked `entered-in-error` that is an entry
/// imported earlier (the same full URL or business identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRetraction {
    /// The entry's current version.
    pub entry: EntryId,
    /// The FHIR resource type.
    pub resource_type: String,
    /// The resource's index in the bundle's `entry` list.
    pub entry_index: usize,
}

/// One entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEntry {
    /// The section it goes in.
    pub section: SectionName,
    /// The validated, normalised body, with its `source` but without the resource the source
    /// keeps (so the resource is not copied again): the typed fields and how to recognise the
    /// resource. (`Null` in the entries [`plan_import_each`] hands out.)
    pub body: Value,
    /// The whole body, the kept resource included, checked against its class's schema: what
    /// the record engine writes ([`crate::record::OpenRecord::add_checked_entries`]).
    pub checked: CheckedBody,
    /// The entry version it replaces (an updated resource imported earlier).
    pub supersedes: Option<EntryId>,
    /// The FHIR resource type it came from.
    pub resource_type: String,
    /// Its index in the bundle's `entry` list.
    pub entry_index: usize,
}

/// What happened to the resources of one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    /// New entries.
    pub imported: usize,
    /// New versions of entries imported earlier from a resource that has changed since.
    pub updated: usize,
    /// Already in the record (or twice in the bundle): nothing written.
    pub unchanged: usize,
    /// Not imported: entered in error, or a search outcome.
    pub skipped: usize,
    /// Marked entered in error at the source: the entry imported earlier from it is marked so.
    pub retracted: usize,
}

/// What an import did (or will do), for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The bundle's type.
    pub bundle_type: String,
    /// How many resources the bundle held.
    pub resources: usize,
    /// Per resource type.
    pub by_type: BTreeMap<String, TypeCounts>,
    /// New entries, all types.
    pub imported: usize,
    /// New versions, all types.
    pub updated: usize,
    /// Already present, all types.
    pub unchanged: usize,
    /// Skipped, all types.
    pub skipped: usize,
    /// Entries to mark entered in error, all types.
    pub retracted: usize,
    /// Resource types Hearth has no mapping for, kept whole as `documents` entries.
    pub unknown_types: BTreeMap<String, usize>,
    /// Known resources kept whole as `documents` entries: actors (Practitioner, Organization…)
    /// and resources lacking what their typed entry needs (e.g. an Encounter with no start).
    pub kept_as_documents: BTreeMap<String, usize>,
    /// Extension URLs met, with counts; each is kept in its resource.
    pub extensions: BTreeMap<String, usize>,
    /// Other things worth knowing (entries skipped and why), without record content.
    pub notes: Vec<String>,
}

/// The checked, mapped bundle: what to write, and the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportPlan {
    /// The entries to write, in bundle order.
    pub entries: Vec<PlannedEntry>,
    /// The entries to mark entered in error, in bundle order.
    pub retractions: Vec<PlannedRetraction>,
    /// What the import does.
    pub report: ImportReport,
    /// Who the bundle's Patient is (`None`: the bundle holds no Patient), for
    /// [`super::check_patient`].
    pub patient: Option<PatientFacts>,
}

/// Checks and maps a parsed bundle against what the record already holds.
pub fn plan_import(
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
) -> Result<ImportPlan, FhirError> {
    plan_import_on(None, bundle, existing)
}

/// [`plan_import`], handing each entry to write to `each`, in bundle order, as soon as it is
/// planned, while the resources after it are still being checked: so that writing overlaps
/// checking. The plan returned has no `entries` (`each` had them). An error from `each` stops
/// the planning and is returned. The entries' `body` is `Null`: `checked`, the whole body, is
/// what is written.
///
/// `each` may have been given entries before a later resource is refused: whatever it did with
/// them must then be undone, as the record engine's [`EntryWriter`] does when dropped
/// unfinished.
///
/// [`EntryWriter`]: crate::record::EntryWriter
pub fn plan_import_each<E: From<FhirError>>(
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
    each: impl FnMut(PlannedEntry) -> Result<(), E>,
) -> Result<ImportPlan, E> {
    plan_import_each_on(None, bundle, existing, false, each)
}

/// [`plan_import`] on `threads` threads (`None`: as many as help on this machine). The plan
/// does not depend on the number.
pub(crate) fn plan_import_on(
    threads: Option<usize>,
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
) -> Result<ImportPlan, FhirError> {
    let mut entries = Vec::new();
    let mut plan = plan_import_each_on(threads, bundle, existing, true, |p| {
        entries.push(p);
        Ok::<(), FhirError>(())
    })?;
    plan.entries = entries;
    Ok(plan)
}
