//! FHIR R4: import a Bundle into typed entries, and export a record as a Bundle.
//!
//! Open data that moves between systems is half the point of a patient-owned record. This module
//! is the pure mapping between FHIR R4 JSON and Hearth's entries; the node reads and writes the
//! files and the record engine stores the entries. `docs/FHIR.md` is the user's guide to the same
//! mapping.
//!
//! ## Import
//!
//! [`parse_bundle`] checks the size ([`MAX_BUNDLE_BYTES`]), the JSON and the Bundle's outer
//! shape, and splits it into its entries, still JSON text ([`ParsedBundle`]);
//! [`plan_import`] then parses, checks and maps **every** resource before anything is written, so an
//! import either completes or changes nothing. Each resource type maps to a section class and a
//! typed entry (an `Observation` to an `observations` entry, a `MedicationRequest` to a
//! `medications` entry, and so on); codes, dates, values, units and statuses land in the entry's
//! own fields. The resource itself is kept whole in the entry's
//! [`source`](crate::entry::schema::Source), so extensions, extra codings, references and
//! narrative survive; resource types Hearth has no class for are kept as `documents` entries
//! holding the resource. Every reference must resolve inside the bundle, NHS numbers are
//! validated, and errors name the resource (entry index, type and id) and the FHIR field, never
//! a value.
//!
//! Whose data it is: the plan carries the facts of the bundle's `Patient` ([`ImportPlan::patient`]),
//! and [`check_patient`] compares them with the record's demographics ([`Existing::record_patient`]):
//! NHS number first, else name and birth date. The caller commits only when they are the same
//! patient, or when the user accepts a different one (see [`PatientCheck`]).
//!
//! Importing the same data twice adds nothing: each source carries the SHA-256 of the resource's
//! canonical JSON, and a resource whose identity (its `urn:uuid` full URL or a business
//! identifier) matches an entry imported earlier but whose content changed becomes a new version
//! of that entry.
//!
//! ## Export
//!
//! [`export_bundle`] writes a `collection` Bundle of the current entries, each with a
//! `Provenance` (author device key and name, time). An entry that was imported and not corrected
//! since is written back as the resource that was imported; a corrected or native entry is built
//! from its fields. Further resources join through [`ExportExtension`]: the grants as `Consent`
//! ([`GrantConsents`]), and the patient's audit log as `AuditEvent` ([`AuditEvents`]).
//!
//! ```
//! use hearth_core::fhir::{self, Existing};
//!
//! let bundle = br#"{"resourceType": "Bundle", "type": "collection", "entry": [
//!   {"fullUrl": "urn:uuid:4d0e7a3c-0f6b-4d6e-9a3f-2f1c0b9e8a11",
//!    "resource": {"resourceType": "Condition", "id": "c1",
//!      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006",
//!                           "display": "Type 2 diabetes mellitus"}]},
//!      "onsetDateTime": "2015-06-01",
//!      "subject": {"display": "the patient"}}}]}"#;
//! let json = fhir::parse_bundle(bundle).unwrap();
//! let plan = fhir::plan_import(&json, &Existing::default()).unwrap();
//! assert_eq!(plan.entries.len(), 1);
//! assert_eq!(plan.entries[0].section.to_string(), "conditions");
//! assert_eq!(plan.entries[0].body["code"]["code"], "44054006");
//! assert_eq!(plan.entries[0].body["onset"], "2015-06-01");
//!
//! // Once written (the record engine returns the new entry ids), the same bundle adds nothing.
//! let mut existing = Existing::default();
//! existing.add_written(&plan, &[hearth_core::ids::EntryId([1; 16])]);
//! let again = fhir::plan_import(&json, &existing).unwrap();
//! assert!(again.entries.is_empty());
//! assert_eq!(again.report.unchanged, 1);
//! ```

mod audit_event;
mod consent;
mod export;
mod import;
mod patient;

pub use audit_event::{
    AUDIT_CHAIN_EXTENSION, AuditEvents, AuditNames, HEARTH_AUDIT_ACTION_SYSTEM,
    HEARTH_PURPOSE_SYSTEM, HEARTH_SECTION_SYSTEM, NAME_VERIFIED_EXTENSION, PeerName,
};
pub use consent::{
    GRANT_STATE_EXTENSION, GrantConsents, GrantState, HEARTH_GRANT_SYSTEM, grant_state,
};

pub use export::{
    ExportExtension, ExportInput, ExportOptions, ExportReport, RawExportInput, export_bundle,
    export_bundle_json, export_raw_json,
};
pub use patient::{PatientCheck, PatientFact, PatientFacts, SameBy, Unchecked, check_patient};

pub use import::{
    Existing, ImportPlan, ImportReport, ParsedBundle, PlannedEntry, PlannedRetraction, TypeCounts,
    plan_import, plan_import_each,
};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The largest bundle file accepted, in bytes (64 MiB). The node refuses a larger file before
/// reading it, so memory stays bounded: an import holds the file, each entry's parsed JSON while
/// that entry is checked and mapped (resources that others refer to for a name, parsed once),
/// and the entries it planned until they are written; never a tree of the whole bundle.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// The most entries one bundle may hold.
pub const MAX_BUNDLE_ENTRIES: usize = 200_000;

/// The format name written in [`crate::entry::schema::Source::format`].
pub const SOURCE_FORMAT: &str = "fhir-r4";

/// The NHS number identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// The identifier system under which exported entries carry their Hearth entry id, so that
/// importing an export into the same record adds nothing.
pub const HEARTH_ENTRY_SYSTEM: &str = "urn:hearth:entry";

/// The identifier system under which an exported dispute (a `Communication`) carries its
/// dispute id; import skips such resources.
pub const HEARTH_DISPUTE_SYSTEM: &str = "urn:hearth:dispute";

/// The identifier system of the record id on an exported `Patient`.
pub const HEARTH_RECORD_SYSTEM: &str = "urn:hearth:record";

/// The identifier system of a device key (peer id) in `Provenance.agent.who`.
pub const HEARTH_PEER_SYSTEM: &str = "urn:hearth:peer";

/// Extensions for entry fields that FHIR has no element for are named
/// `urn:hearth:field:<class>:<field>`; import reads them back into the fields.
pub const HEARTH_FIELD_EXTENSION: &str = "urn:hearth:field:";

/// Why a bundle cannot be imported. Messages name the place (entry index, resource type and
/// id, FHIR field) and never contain a value from the bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The file is larger than [`MAX_BUNDLE_BYTES`].
    #[error("the bundle is larger than the limit of {limit} bytes (64 MiB); split it")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The file is not valid JSON.
    #[error("the bundle is not valid JSON (line {line}, column {column}: {kind})")]
    Json {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What kind of error.
        kind: &'static str,
    },
    /// The JSON is not a FHIR Bundle Hearth can import.
    #[error("not a FHIR R4 Bundle Hearth can import: {0}")]
    NotBundle(String),
    /// One resource is wrong.
    #[error("{at}: {field}: {problem}")]
    Resource {
        /// Which resource: `entry[3] Observation/abc`.
        at: String,
        /// The FHIR field, as a path: `component[1].valueQuantity.value`.
        field: String,
        /// What is wrong, without the value.
        problem: String,
    },
}

/// Checks the size, the JSON and the outer shape of a bundle file, and splits it into its
/// entries (see [`ParsedBundle`]).
pub fn parse_bundle(bytes: &[u8]) -> Result<ParsedBundle<'_>, FhirError> {
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(FhirError::TooLarge {
            limit: MAX_BUNDLE_BYTES,
        });
    }
    import::split_bundle(bytes)
}

/// SHA-256 (lower-case hex) of a JSON value's canonical form: object keys sorted, no white
/// space, numbers and strings as serde_json writes them. Independent of how the input was laid
/// out, so the same resource always hashes the same.
pub fn canonical_sha256(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    sha256_hex(&out)
}

/// The canonical JSON text of an object (see [`canonical_sha256`]): the form in which an
/// imported resource is hashed, measured and kept.
pub(crate) fn canonical_json(map: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(1024);
    write_canonical_map(map, None, &mut out);
    // Only valid UTF-8 is ever written: JSON text made by serde_json from `str`s.
    String::from_utf8(out).unwrap_or_default()
}

/// SHA-256 (lower-case hex) of bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_map(map, None, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // serde_json's own compact form of a string or scalar; writing to a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// An object with its keys in order, leaving out the key `skip`.
fn write_canonical_map(map: &Map<String, Value>, skip: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    let mut entry = |k: &String, v: &Value, out: &mut Vec<u8>| {
        if skip == Some(k.as_str()) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_canonical(v, out);
    };
    // serde_json's map keeps its keys sorted unless its `preserve_order` feature is on (which
    // any crate in the build may turn on).
    static MAPS_SORTED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        let mut probe = Map::new();
        probe.insert("b".into(), Value::Null);
        probe.insert("a".into(), Value::Null);
        probe.keys().is_sorted()
    });
    if *MAPS_SORTED || map.keys().is_sorted() {
        for (k, v) in map {
            entry(k, v, out);
        }
    } else {
        let mut keys: Vec<(&String, &Value)> = map.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            entry(k, v, out);
        }
    }
    out.push(b'}');
}

/// SHA-256 of an entry body's fields other than `source`.
pub fn body_sha256(body: &Value) -> String {
    match body.as_object() {
        Some(map) => {
            let mut out = Vec::new();
            write_canonical_map(map, Some(crate::entry::schema::SOURCE), &mut out);
            sha256_hex(&out)
        }
        None => canonical_sha256(body),
    }
}

/// Whether `id` is a valid FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`), safe to show in errors.
pub(crate) fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests;
