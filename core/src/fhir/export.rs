//! Entries → a FHIR R4 `collection` Bundle with a `Provenance` per entry. Pure.

use super::import::UCUM;
use super::{
    HEARTH_ENTRY_SYSTEM, HEARTH_FIELD_EXTENSION, HEARTH_PEER_SYSTEM, HEARTH_RECORD_SYSTEM,
    NHS_NUMBER_SYSTEM, SOURCE_FORMAT,
};
use crate::entry::EntryStatus;
use crate::entry::raw::CanonicalObject;
use crate::ids::{PeerKey, RecordId};
use crate::record::{EntryView, RawEntryView, RawSectionView, SectionView};
use crate::section::{Label, SectionClass};
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportInput<'a> {
    /// The record.
    pub record: RecordId,
    /// The sections to export, with their current entries.
    pub sections: &'a [SectionView],
    /// The time of the export (the Bundle's timestamp).
    pub now: Timestamp,
}

/// How to export.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// Build every resource from the entries' fields alone, ignoring the resources kept at
    /// import (a check of the mapping itself; normally off).
    pub rebuild: bool,
    /// Also export entries marked entered in error, as their resources with FHIR's
    /// `entered-in-error` status, so that a system holding an earlier export learns of the
    /// retraction. Off by default: an entry in error is otherwise not disclosed again.
    pub include_in_error: bool,
}

/// Further resources to put in an export: the grants as `Consent`, the access log as
/// `AuditEvent`. Implemented where that data lives; the exporter only places the resources,
/// giving each a `fullUrl`, and makes their references to the patient point at the exported
/// `Patient`.
pub trait ExportExtension {
    /// A short name for the report, e.g. `consent`.
    fn name(&self) -> &str;
    /// The resources to add. `patient` is the `fullUrl` of the exported `Patient`, to use in
    /// references (`{"reference": patient}`).
    fn resources(&self, patient: &str, now: Timestamp) -> Vec<Value>;
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Resources per type (Provenance and extension resources included).
    pub resources: BTreeMap<String, usize>,
    /// Entries written as the resource kept at import.
    pub from_imported: usize,
    /// Entries built from their fields (written in Hearth, or corrected since import).
    pub built: usize,
    /// Entries marked entered in error, left out (all of them, unless
    /// [`ExportOptions::include_in_error`]; then those whose resource has no status to say so).
    pub left_out_in_error: usize,
    /// Entries marked entered in error, exported with the `entered-in-error` status.
    pub in_error: usize,
    /// References to resources not in this export (e.g. a section not exported), replaced by
    /// their display text.
    pub references_cut: usize,
}

/// A v4-shaped UUID derived from `parts` (stable: the same entry exports the same URL).
fn uuid_from(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = data_encoding::HEXLOWER.encode(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// What to export, with each entry's body as the JSON text stored
/// ([`crate::record::OpenRecord::show_raw`]): kept resources are copied into the output as
/// they are, without being parsed into `Value`s.
#[derive(Debug, Clone, Copy)]
pub struct RawExportInput<'a> {
    /// The record.
    pub record: RecordId,
    /// The sections to export, with their current entries.
    pub sections: &'a [RawSectionView],
    /// The time of the export (the Bundle's timestamp).
    pub now: Timestamp,
}

/// A resource of the export.
enum Res<'a> {
    /// A kept resource copied as it is: its text is exactly what serde_json writes for the
    /// resource (checked), so it is written as it is unless one of its references changes.
    /// `resource_type`, `id` and `references` are ranges of `text`.
    Raw {
        text: Cow<'a, str>,
        resource_type: Option<Range<usize>>,
        id: Option<Range<usize>>,
        references: Vec<Range<usize>>,
    },
    /// A resource built, changed, or not in serde_json's form as stored.
    Value(Value),
    /// A resource written here as text, in serde_json's form (a Provenance), and its type.
    Text(String, &'static str),
}

impl<'a> Res<'a> {
    /// A kept resource: the text of a JSON object, and what [`canonical_object`] found in
    /// that very text, if it is in serde_json's form (`None`: not, or not checked yet).
    ///
    /// [`canonical_object`]: crate::entry::raw::canonical_object
    fn kept(text: Cow<'a, str>, found: Option<CanonicalObject<'_>>) -> Res<'a> {
        let ranges = |text: &str, c: CanonicalObject<'_>| {
            let base = text.as_ptr() as usize;
            let range = |s: &str| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            (
                c.resource_type.map(range),
                c.id.map(range),
                c.references.into_iter().map(range).collect::<Vec<_>>(),
            )
        };
        let found = match (found, &text) {
            (Some(c), _) => Some(ranges(&text, c)),
            (None, Cow::Owned(t)) => crate::entry::raw::canonical_object(t).map(|c| ranges(t, c)),
            (None, Cow::Borrowed(_)) => None,
        };
        match found {
            Some((resource_type, id, references)) => Res::Raw {
                text,
                resource_type,
                id,
                references,
            },
            // Not in serde_json's form (stored by something else): through a `Value`, as
            // serde_json writes it.
            None => Res::Value(serde_json::from_str(&text).unwrap_or_default()),
        }
    }

    fn resource_type(&self) -> Option<&str> {
        match self {
            Res::Raw {
                text,
                resource_type,
                ..
            } => resource_type.clone().and_then(|r| text.get(r)),
            Res::Value(v) => v.get("resourceType").and_then(Value::as_str),
            Res::Text(_, t) => Some(t),
        }
    }

    fn id(&self) -> Option<&str> {
        match self {
            Res::Raw { text, id, .. } => id.clone().and_then(|r| text.get(r)),
            Res::Value(v) => v.get("id").and_then(Value::as_str),
            // Provenance, written after references are resolved: nothing refers to it.
            Res::Text(..) => None,
        }
    }

    /// The resource as a `Value` (parsing a kept one).
    fn value(&self) -> Cow<'_, Value> {
        match self {
            Res::Raw { text, .. } => Cow::Owned(serde_json::from_str(text).unwrap_or_default()),
            Res::Text(text, _) => Cow::Owned(serde_json::from_str(text).unwrap_or_default()),
            Res::Value(v) => Cow::Borrowed(v),
        }
    }

    /// The resource as a `Value` to change (parsing a kept one, once).
    fn value_mut(&mut self) -> &mut Value {
        match self {
            Res::Raw { text, .. } => {
                *self = Res::Value(serde_json::from_str(text).unwrap_or_default())
            }
            Res::Text(text, _) => {
                *self = Res::Value(serde_json::from_str(text).unwrap_or_default())
            }
            Res::Value(_) => {}
        }
        match self {
            Res::Value(v) => v,
            Res::Raw { .. } | Res::Text(..) => unreachable!("made a value above"),
        }
    }

    /// Writes the resource as compact JSON.
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Res::Raw { text, .. } => {
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Res::Text(text, _) => {
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Res::Value(v) => serde_json::to_writer(&mut *out, v),
        }
    }
}

/// One resource of the export.
struct Out<'a> {
    full_url: String,
    resource: Res<'a>,
    entry: Option<&'a EntryView>,
    /// Whether the entry's body has a `source`.
    has_source: bool,
}

/// One entry of the bundle.
struct EntryOut<'a> {
    full_url: String,
    resource: Res<'a>,
}

/// The parts of an entry body the export reads: the fields other than `source`, parsed (they
/// are small), and of a FHIR `source`, the kept resource as text.
struct Body<'a> {
    fields: Fields<'a>,
    has_source: bool,
    src: Option<Src<'a>>,
}

/// An entry's fields other than `source`.
enum Fields<'a> {
    /// As stored: each member's key and value text.
    Text(Vec<(&'a str, &'a str)>),
    /// Parsed.
    Value(Map<String, Value>),
}

impl Fields<'_> {
    /// The fields as a map.
    fn map(&self) -> Map<String, Value> {
        match self {
            Fields::Text(members) => members
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::from_str(v).unwrap_or_default()))
                .collect(),
            Fields::Value(m) => m.clone(),
        }
    }

    /// The SHA-256 of their canonical JSON (as [`super::body_sha256`] hashes a body): the
    /// stored text itself when it is already in that form.
    fn sha256(&self) -> String {
        if let Fields::Text(members) = self {
            let mut text = String::with_capacity(
                2 + members
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>(),
            );
            text.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push('"');
                text.push_str(k);
                text.push_str("\":");
                text.push_str(v);
            }
            text.push('}');
            if crate::entry::raw::canonical_object(&text).is_some() {
                return super::sha256_hex(text.as_bytes());
            }
        }
        let mut out = Vec::new();
        super::write_canonical_map(&self.map(), None, &mut out);
        super::sha256_hex(&out)
    }
}

/// An entry's `source` of format [`SOURCE_FORMAT`].
#[derive(Default)]
struct Src<'a> {
    /// The kept resource, if it is an object: its text and, when that text is in serde_json's
    /// form, what [`crate::entry::raw::canonical_object`] finds in it.
    resource: Option<(Cow<'a, str>, Option<CanonicalObject<'a>>)>,
    resource_type: Option<String>,
    full_url: Option<String>,
    body_sha256: Option<String>,
}

fn as_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl<'a> Body<'a> {
    /// Reads a body's JSON text; `None` if it is not an object.
    fn read(text: &'a str) -> Option<Body<'a>> {
        let Some(parts) = crate::entry::raw::body_parts(text) else {
            // An unusual layout (an escaped key): read through a `Value`.
            return Self::from_value(serde_json::from_str(text).ok()?);
        };
        let src = match (parts.source, parts.source_members) {
            (Some(_), Some(members)) => {
                let mut src = Src::default();
                let mut format = None;
                for (k, v) in members {
                    let text = || serde_json::from_str(v).ok().and_then(as_string);
                    match k {
                        "format" => format = text(),
                        "resource_type" => src.resource_type = text(),
                        "full_url" => src.full_url = text(),
                        "body_sha256" => src.body_sha256 = text(),
                        _ => {}
                    }
                }
                src.resource = parts.resource.map(|(t, c)| (Cow::Borrowed(t), c));
                (format.as_deref() == Some(SOURCE_FORMAT)).then_some(src)
            }
            _ => None,
        };
        Some(Body {
            fields: Fields::Text(parts.fields),
            has_source: parts.source.is_some(),
            src,
        })
    }

    fn from_value(v: Value) -> Option<Body<'a>> {
        let Value::Object(mut fields) = v else {
            return None;
        };
        let source = fields.remove("source");
        Some(Body {
            fields: Fields::Value(fields),
            has_source: source.is_some(),
            src: source.and_then(Src::from_value),
        })
    }
}

impl Src<'_> {
    fn from_value(v: Value) -> Option<Self> {
        let Value::Object(mut m) = v else {
            return None;
        };
        if m.get("format").and_then(Value::as_str) != Some(SOURCE_FORMAT) {
            return None;
        }
        let mut take = |k: &str| m.remove(k).and_then(as_string);
        let (resource_type, full_url, body_sha256) =
            (take("resource_type"), take("full_url"), take("body_sha256"));
        let resource = m
            .remove("resource")
            .filter(Value::is_object)
            .and_then(|r| serde_json::to_string(&r).ok())
            .map(|t| (Cow::Owned(t), None));
        Some(Src {
            resource,
            resource_type,
            full_url,
            body_sha256,
        })
    }
}

/// The sections of a `Value` export as text, for the one exporter.
fn raw_sections(sections: &[SectionView]) -> Vec<RawSectionView> {
    sections
        .iter()
        .map(|s| RawSectionView {
            class: s.class,
            label: s.label,
            entries: s
                .entries
                .iter()
                .map(|e| {
                    let entry = EntryView {
                        id: e.id,
                        version: e.version,
                        status: e.status,
                        status_reason: e.status_reason.clone(),
                        supersedes: e.supersedes,
                        body: Value::Null,
                        provenance: e.provenance.clone(),
                        claimed: e.claimed,
                        verified: e.verified.clone(),
                        concurrent_versions: e.concurrent_versions.clone(),
                        earlier_versions: e.earlier_versions.clone(),
                    };
                    RawEntryView::new(entry, serde_json::to_string(&e.body).unwrap_or_default())
                })
                .collect(),
        })
        .collect()
}

/// Exports entries as a FHIR R4 `collection` Bundle, with a `Provenance` for every entry and
/// the resources of `extensions` appended.
pub fn export_bundle(
    input: &ExportInput<'_>,
    options: ExportOptions,
    extensions: &[&dyn ExportExtension],
) -> (Value, ExportReport) {
    let (bytes, report) = export_bundle_json(input, options, extensions, false).unwrap_or_default();
    (serde_json::from_slice(&bytes).unwrap_or_default(), report)
}

/// [`export_bundle`], written straight to JSON text (pretty-printed or compact).
pub fn export_bundle_json(
    input: &ExportInput<'_>,
    options: ExportOptions,
    extensions: &[&dyn ExportExtension],
    pretty: bool,
) -> serde_json::Result<(Vec<u8>, ExportReport)> {
    let sections = raw_sections(input.sections);
    let raw = RawExportInput {
        record: input.record,
        sections: &sections,
        now: input.now,
    };
    export_raw_json(&raw, options, extensions, pretty)
}

/// [`export_bundle_json`] from bodies as JSON text: the same bundle, byte for byte, with each
/// kept resource copied from its entry's text unless the export has to change it (a reference
/// to repoint or cut).
pub fn export_raw_json(
    input: &RawExportInput<'_>,
    options: ExportOptions,
    extensions: &[&dyn ExportExtension],
    pretty: bool,
) -> serde_json::Result<(Vec<u8>, ExportReport)> {
    let (entries, report) = build_bundle(input, options, extensions);
    let id = uuid_from(&[
        b"bundle",
        &input.record.0,
        &input.now.as_millis().to_be_bytes(),
    ]);
    let id = id.trim_start_matches("urn:uuid:");
    // The bundle as serde_json writes it (keys in order): {"entry":[…],"id":…,"resourceType":
    // "Bundle","timestamp":…,"type":"collection"}.
    let mut out: Vec<u8> = Vec::with_capacity(
        input
            .sections
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.body().len() + 1024)
            .sum::<usize>()
            + 1024,
    );
    out.extend_from_slice(b"{\"entry\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"fullUrl\":");
        serde_json::to_writer(&mut out, &e.full_url)?;
        out.extend_from_slice(b",\"resource\":");
        e.resource.write(&mut out)?;
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"id\":");
    serde_json::to_writer(&mut out, id)?;
    out.extend_from_slice(b",\"resourceType\":\"Bundle\",\"timestamp\":");
    serde_json::to_writer(&mut out, &input.now.to_rfc3339())?;
    out.extend_from_slice(b",\"type\":\"collection\"}");
    drop(entries);
    if pretty {
        let mut p = Vec::new();
        crate::entry::raw::write_pretty(&out, &mut p);
        out = p;
    }
    Ok((out, report))
}

/// Resource types whose `status` can say `entered-in-error` (FHIR R4): those Hearth maps,
/// and those it keeps whole.
const STATUS_IN_ERROR_TYPES: &[&str] = &[
    "Appointment",
    "CarePlan",
    "CareTeam",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Consent",
    "Coverage",
    "DetectedIssue",
    "Device",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "FamilyMemberHistory",
    "Flag",
    "ImagingStudy",
    "Immunization",
    "List",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "NutritionOrder",
    "Observation",
    "Procedure",
    "QuestionnaireResponse",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
    "Task",
];

/// The `abatement[x]` elements of a Condition.
const ABATEMENT: &[&str] = &[
    "abatementDateTime",
    "abatementAge",
    "abatementPeriod",
    "abatementRange",
    "abatementString",
];

/// Marks a resource entered in error, as its type says it: `status`; a Goal's
/// `lifecycleStatus`; a Condition's or an AllergyIntolerance's `verificationStatus`, without
/// `clinicalStatus` (FHIR forbids it beside that: con-5, ait-2) and, for a Condition, without
/// `abatement[x]` (which would need a clinicalStatus: con-4). `false` for a type with no such
/// status (Patient, Practitioner, Organization…): such an entry is left out.
fn mark_entered_in_error(resource: &mut Value) -> bool {
    let Some(r) = resource.as_object_mut() else {
        return false;
    };
    let system = match r.get("resourceType").and_then(Value::as_str) {
        Some("Condition") => {
            for a in ABATEMENT {
                r.remove(*a);
            }
            "http://terminology.hl7.org/CodeSystem/condition-ver-status"
        }
        Some("AllergyIntolerance") => {
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
        }
        Some("Goal") => {
            r.insert("lifecycleStatus".into(), json!("entered-in-error"));
            return true;
        }
        Some(t) if STATUS_IN_ERROR_TYPES.binary_search(&t).is_ok() => {
            r.insert("status".into(), json!("entered-in-error"));
            return true;
        }
        _ => return false,
    };
    r.remove("clinicalStatus");
    r.insert(
        "verificationStatus".into(),
        json!({"coding": [{"system": system, "code": "entered-in-error", "display": "Entered in Error"}]}),
    );
    true
}

/// What [`build_bundle`] makes of one entry.
enum Read<'a> {
    /// Entered in error: left out.
    InError,
    /// A body the export cannot read: left out.
    Unreadable,
    /// The entry's resource.
    Entry {
        out: Out<'a>,
        /// Whether the kept resource was used as it is (else the resource was built).
        from_imported: bool,
        /// Whether it is exported as entered in error.
        in_error: bool,
        /// The full URL the resource was imported with.
        src_url: Option<String>,
        /// Whether it is a demographics entry (a Patient).
        demographics: bool,
    },
}

/// One entry's resource: the kept one when it still says what the entry says, else built from
/// the entry's fields (over the kept one, unless rebuilding).
fn read_entry<'a>(
    view: &'a RawSectionView,
    raw: &'a RawEntryView,
    options: ExportOptions,
) -> Read<'a> {
    let e = &raw.entry;
    let in_error = e.status == EntryStatus::EnteredInError;
    if in_error && !options.include_in_error {
        return Read::InError;
    }
    let Some(body) = Body::read(raw.body()) else {
        return Read::Unreadable;
    };
    let Body {
        fields,
        has_source,
        mut src,
    } = body;
    let kept = src.as_mut().and_then(|s| s.resource.take());
    let has_base = kept.is_some();
    let src_type = src.as_ref().and_then(|s| s.resource_type.as_deref());
    let kept_only = view.class == SectionClass::Documents
        && !matches!(
            src_type,
            Some("DocumentReference" | "DiagnosticReport") | None
        );
    let unchanged = || {
        src.as_ref()
            .and_then(|s| s.body_sha256.as_deref())
            .is_some_and(|h| h == fields.sha256())
    };
    let from_kept = kept_only || (!options.rebuild && unchanged());
    let mut from_imported = false;
    let mut resource = match kept {
        Some((text, found)) if from_kept => {
            from_imported = true;
            Res::kept(text, found)
        }
        kept => {
            let base_value: Option<Value> = kept.and_then(|(b, _)| serde_json::from_str(&b).ok());
            let base = base_value.as_ref().and_then(Value::as_object);
            let mut built = build(view.class, &fields.map(), src_type);
            if view.label != Label::General {
                set_security_label(&mut built, view.label);
            }
            Res::Value(Value::Object(match base {
                Some(b) if !options.rebuild => merge(b, built),
                _ => {
                    if let Some(id) = base.and_then(|b| b.get("id")) {
                        built.insert("id".into(), id.clone());
                    }
                    built
                }
            }))
        }
    };
    if !has_base && let Some(r) = resource.value_mut().as_object_mut() {
        r.insert("id".into(), json!(e.id.to_string()));
        let ids = r
            .entry("identifier")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = ids {
            a.push(json!({"system": HEARTH_ENTRY_SYSTEM, "value": e.id.to_string()}));
            // The ids it had before (a correction, a retraction), so that a system holding an
            // earlier export recognises it.
            for id in &e.earlier_versions {
                a.push(json!({"system": HEARTH_ENTRY_SYSTEM, "value": id.to_string()}));
            }
        }
    }
    if in_error && !mark_entered_in_error(resource.value_mut()) {
        return Read::InError;
    }
    let src_url = src.as_ref().and_then(|s| s.full_url.clone());
    let full_url = src_url
        .clone()
        .unwrap_or_else(|| uuid_from(&[b"entry", &e.id.0]));
    let out = Out {
        full_url,
        resource,
        entry: Some(e),
        has_source,
    };
    Read::Entry {
        out,
        from_imported,
        in_error,
        src_url,
        demographics: view.class == SectionClass::Demographics,
    }
}

fn build_bundle<'a>(
    input: &RawExportInput<'a>,
    options: ExportOptions,
    extensions: &[&dyn ExportExtension],
) -> (Vec<EntryOut<'a>>, ExportReport) {
    let mut report = ExportReport::default();
    let mut outs: Vec<Out<'a>> = Vec::new();
    let mut patients: Vec<Out<'a>> = Vec::new();
    // Every URL or Type/id the record's patient was known by, to point references at the
    // exported Patient.
    let mut patient_aliases: HashSet<String> = HashSet::new();

    // Each entry is read and its resource built on its own, so that work is shared among the
    // cores; the results are taken in order.
    let items: Vec<(&'a RawSectionView, &'a RawEntryView)> = input
        .sections
        .iter()
        .flat_map(|v| v.entries.iter().map(move |r| (v, r)))
        .collect();
    let read = crate::par::map(&items, |_, (view, raw)| read_entry(view, raw, options));
    for r in read {
        let (out, from_imported, src_url, demographics) = match r {
            Read::InError => {
                report.left_out_in_error += 1;
                continue;
            }
            Read::Unreadable => continue,
            Read::Entry {
                out,
                from_imported,
                in_error,
                src_url,
                demographics,
            } => {
                if in_error {
                    report.in_error += 1;
                }
                (out, from_imported, src_url, demographics)
            }
        };
        if from_imported {
            report.from_imported += 1;
        } else {
            report.built += 1;
        }
        if demographics {
            if let Some(u) = src_url {
                patient_aliases.insert(u);
            }
            if let Some(id) = out.resource.id() {
                patient_aliases.insert(format!("Patient/{id}"));
            }
            patient_aliases.insert(out.full_url.clone());
            patients.push(out);
        } else {
            outs.push(out);
        }
    }

    // One Patient: the first imported one (else the first), with the others' names and
    // identifiers added; or, without demographics, a Patient naming only the record.
    patients.sort_by_key(|p| p.entry.is_none() || !p.has_source);
    let mut patient = if patients.is_empty() {
        let rid = input.record.to_string();
        let mut r = Map::new();
        r.insert("resourceType".into(), json!("Patient"));
        r.insert("id".into(), json!(rid.chars().take(64).collect::<String>()));
        r.insert(
            "identifier".into(),
            json!([{"system": HEARTH_RECORD_SYSTEM, "value": rid}]),
        );
        Out {
            full_url: uuid_from(&[b"patient", &input.record.0]),
            resource: Res::Value(Value::Object(r)),
            entry: None,
            has_source: false,
        }
    } else {
        let mut first = patients.remove(0);
        for other in &patients {
            let from = other.resource.value();
            if let (Some(into), Some(from)) =
                (first.resource.value_mut().as_object_mut(), from.as_object())
            {
                merge_patient(into, from);
            }
        }
        first
    };
    patient_aliases.insert(patient.full_url.clone());
    let patient_url = patient.full_url.clone();

    // References: keep those that resolve in this export; point the patient's at the Patient;
    // cut the rest to their display. A kept resource is parsed only when one of its references
    // changes.
    let mut urls: HashSet<String> = HashSet::new();
    let mut type_ids: HashSet<String> = HashSet::new();
    for o in outs.iter().chain(std::iter::once(&patient)) {
        urls.insert(o.full_url.clone());
        if let (Some(t), Some(id)) = (o.resource.resource_type(), o.resource.id()) {
            type_ids.insert(format!("{t}/{id}"));
        }
    }
    let refs = References {
        urls: &urls,
        type_ids: &type_ids,
        patient_aliases: &patient_aliases,
        patient_url: &patient_url,
    };
    for o in outs.iter_mut().chain(std::iter::once(&mut patient)) {
        let changes = match &o.resource {
            Res::Raw {
                text, references, ..
            } => references.iter().any(|r| {
                text.get(r.clone())
                    .is_some_and(|r| !matches!(refs.decide(r), RefFix::Keep))
            }),
            Res::Value(v) => v.as_object().is_some_and(|r| refs.would_change(r)),
            Res::Text(..) => false,
        };
        if changes && let Some(r) = o.resource.value_mut().as_object_mut() {
            refs.fix(r, &mut report.references_cut);
        }
    }

    // The bundle: Patient, entries, a Provenance per entry, then extension resources.
    let mut entries: Vec<EntryOut<'a>> = Vec::with_capacity(2 * outs.len() + 2);
    let mut count = |t: &str| *report.resources.entry(t.to_owned()).or_default() += 1;
    let mut provenance: Vec<EntryOut<'a>> = Vec::with_capacity(outs.len() + 1);
    let mut authors = Authors::default();
    let mut patient_entries: Vec<&EntryView> = patients.iter().filter_map(|p| p.entry).collect();
    if let Some(e) = patient.entry.take() {
        patient_entries.insert(0, e);
    }
    for e in patient_entries {
        provenance.push(provenance_for(e, &patient_url, &mut authors));
    }
    count("Patient");
    entries.push(EntryOut {
        full_url: patient_url.clone(),
        resource: patient.resource,
    });
    for o in outs {
        if let Some(t) = o.resource.resource_type() {
            count(t);
        }
        if let Some(e) = o.entry {
            provenance.push(provenance_for(e, &o.full_url, &mut authors));
        }
        entries.push(EntryOut {
            full_url: o.full_url,
            resource: o.resource,
        });
    }
    for p in provenance {
        count("Provenance");
        entries.push(p);
    }
    for x in extensions {
        for r in x.resources(&patient_url, input.now) {
            let t = r
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Basic")
                .to_owned();
            count(&t);
            let url = uuid_from(&[x.name().as_bytes(), r.to_string().as_bytes()]);
            entries.push(EntryOut {
                full_url: url,
                resource: Res::Value(r),
            });
        }
    }
    (entries, report)
}

/// Authors' peer ids as text, made once per author.
#[derive(Default)]
struct Authors(Vec<(PeerKey, String)>);

impl Authors {
    fn text(&mut self, k: PeerKey) -> &str {
        let i = match self.0.iter().position(|(p, _)| *p == k) {
            Some(i) => i,
            None => {
                self.0.push((k, k.to_string()));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

fn provenance_for<'a>(e: &EntryView, target: &str, authors: &mut Authors) -> EntryOut<'a> {
    // Written as serde_json writes the same resource as a `Value`: keys in order, compact.
    //   {"agent":[{"type":{"coding":[{"code":"author","display":"Author","system":…}]},
    //    "who":{"display":…,"identifier":{"system":"urn:hearth:peer","value":…}}}],
    //    "id":"p…","reason":[{"text":…}],"recorded":…,"resourceType":"Provenance",
    //    "target":[{"reference":…}]}
    let mut t = Vec::with_capacity(512);
    let string = |t: &mut Vec<u8>, s: &str| {
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *t, s);
    };
    t.extend_from_slice(
        b"{\"agent\":[{\"type\":{\"coding\":[{\"code\":\"author\",\"display\":\"Author\",\
          \"system\":\"http://terminology.hl7.org/CodeSystem/provenance-participant-type\"}]},\
          \"who\":{\"display\":",
    );
    string(&mut t, &e.provenance.author_name);
    t.extend_from_slice(b",\"identifier\":{\"system\":");
    string(&mut t, HEARTH_PEER_SYSTEM);
    t.extend_from_slice(b",\"value\":");
    string(&mut t, authors.text(e.provenance.author));
    t.extend_from_slice(b"}}}],\"id\":");
    string(&mut t, &format!("p{}", e.id));
    if let Some(purpose) = &e.provenance.purpose {
        t.extend_from_slice(b",\"reason\":[{\"text\":");
        string(&mut t, purpose);
        t.extend_from_slice(b"}]");
    }
    t.extend_from_slice(b",\"recorded\":");
    string(&mut t, &e.provenance.recorded_at.to_rfc3339());
    t.extend_from_slice(b",\"resourceType\":\"Provenance\",\"target\":[{\"reference\":");
    string(&mut t, target);
    t.extend_from_slice(b"}]}");
    EntryOut {
        full_url: uuid_from(&[b"provenance", &e.id.0]),
        // Only JSON text made of `str`s was written.
        resource: Res::Text(String::from_utf8(t).unwrap_or_default(), "Provenance"),
    }
}

fn merge_patient(into: &mut Map<String, Value>, other: &Map<String, Value>) {
    for key in ["name", "identifier", "telecom", "address"] {
        let Some(extra) = other.get(key).and_then(Value::as_array) else {
            continue;
        };
        let list = into.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            for x in extra {
                let dup = a.iter().any(|y| {
                    y == x
                        || (key == "identifier"
                            && y.get("system") == x.get("system")
                            && y.get("value") == x.get("value"))
                        || (key == "name" && name_words(y) == name_words(x))
                });
                if !dup {
                    a.push(x.clone());
                }
            }
        }
    }
    for key in ["birthDate", "gender"] {
        if !into.contains_key(key)
            && let Some(v) = other.get(key)
        {
            into.insert(key.to_owned(), v.clone());
        }
    }
}

fn name_words(n: &Value) -> String {
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return t.to_lowercase();
    }
    let mut parts: Vec<String> = n
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    if let Some(f) = n.get("family").and_then(Value::as_str) {
        parts.push(f.to_owned());
    }
    parts.join(" ").to_lowercase()
}

/// Where references may point in the export.
struct References<'r> {
    urls: &'r HashSet<String>,
    type_ids: &'r HashSet<String>,
    patient_aliases: &'r HashSet<String>,
    patient_url: &'r str,
}

/// What to do with one reference.
enum RefFix {
    Keep,
    /// Point it at the exported Patient.
    ToPatient,
    /// Replace it by its display text.
    Cut,
}

impl References<'_> {
    fn decide(&self, r: &str) -> RefFix {
        if r == PATIENT {
            return RefFix::ToPatient;
        }
        let resolves = r.starts_with('#')
            || self.urls.contains(r)
            || self.type_ids.contains(&relative_tail(r));
        if resolves {
            return RefFix::Keep;
        }
        let external = r.contains("://") && !self.urls.contains(r);
        if self.patient_aliases.contains(r)
            || r.starts_with("Patient/") && self.patient_aliases.contains(&relative_tail(r))
        {
            RefFix::ToPatient
        } else if !external {
            RefFix::Cut
        } else {
            RefFix::Keep
        }
    }

    /// Whether [`References::fix`] would change anything in `map`.
    fn would_change(&self, map: &Map<String, Value>) -> bool {
        if let Some(Value::String(r)) = map.get("reference")
            && !matches!(self.decide(r), RefFix::Keep)
        {
            return true;
        }
        map.values().any(|v| match v {
            Value::Object(m) => self.would_change(m),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_object().is_some_and(|m| self.would_change(m))),
            _ => false,
        })
    }

    fn fix(&self, map: &mut Map<String, Value>, cut: &mut usize) {
        if let Some(Value::String(r)) = map.get("reference") {
            match self.decide(r) {
                RefFix::Keep => {}
                RefFix::ToPatient => {
                    map.insert("reference".into(), json!(self.patient_url));
                }
                RefFix::Cut => {
                    map.remove("reference");
                    if !map.contains_key("display") {
                        map.insert("display".into(), json!("not included in this export"));
                    }
                    *cut += 1;
                }
            }
        }
        for v in map.values_mut() {
            match v {
                Value::Object(m) => self.fix(m, cut),
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(m) = item {
                            self.fix(m, cut);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// `Type/id` of a reference (relative or the tail of an absolute URL), or the reference.
fn relative_tail(r: &str) -> String {
    let parts: Vec<&str> = r.rsplit('/').collect();
    match parts.as_slice() {
        [_, "_history", id, ty, ..] | [id, ty, ..] => format!("{ty}/{id}"),
        _ => r.to_owned(),
    }
}

fn set_security_label(r: &mut Map<String, Value>, label: Label) {
    let code = match label {
        Label::MentalHealth => "PSY",
        Label::SexualHealth => "STD",
        Label::SocialCare => "SOC",
        Label::Safeguarding | Label::General => return,
    };
    r.insert(
        "meta".into(),
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}]}),
    );
}

/// Elements each built resource type can set: on a corrected imported entry, these are taken
/// from the entry (or removed when the entry no longer has them); everything else in the kept
/// resource stays.
fn managed(rt: &str) -> &'static [&'static str] {
    match rt {
        "Patient" => &[
            "name",
            "birthDate",
            "gender",
            "address",
            "telecom",
            "communication",
            "generalPractitioner",
        ],
        "RelatedPerson" => &["name", "relationship", "telecom"],
        "AllergyIntolerance" => &[
            "code",
            "category",
            "criticality",
            "clinicalStatus",
            "verificationStatus",
            "reaction",
            "onsetDateTime",
            "onsetPeriod",
            "note",
        ],
        "Condition" => &[
            "code",
            "clinicalStatus",
            "verificationStatus",
            "severity",
            "onsetDateTime",
            "onsetPeriod",
            "abatementDateTime",
            "abatementPeriod",
            "note",
        ],
        "MedicationStatement" => &[
            "status",
            "medicationCodeableConcept",
            "effectiveDateTime",
            "effectivePeriod",
            "dosage",
            "reasonCode",
            "note",
        ],
        "MedicationRequest" => &[
            "status",
            "medicationCodeableConcept",
            "authoredOn",
            "dosageInstruction",
            "reasonCode",
            "requester",
            "note",
        ],
        "Immunization" => &[
            "status",
            "vaccineCode",
            "occurrenceDateTime",
            "route",
            "note",
        ],
        "Observation" => &[
            "status",
            "code",
            "valueQuantity",
            "valueString",
            "valueInteger",
            "valueCodeableConcept",
            "valueBoolean",
            "component",
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "interpretation",
            "note",
        ],
        "DiagnosticReport" => &["code", "effectiveDateTime", "conclusion", "presentedForm"],
        "Encounter" => &[
            "status",
            "class",
            "type",
            "reasonCode",
            "period",
            "location",
            "participant",
            "hospitalization",
        ],
        "Procedure" => &[
            "status",
            "code",
            "reasonCode",
            "performedDateTime",
            "performedPeriod",
            "performer",
            "outcome",
            "note",
        ],
        "CarePlan" => &["status", "title", "description", "activity", "period"],
        "DocumentReference" => &["type", "description", "date", "content"],
        _ => &[],
    }
}

/// A corrected imported resource: the kept resource, with the managed elements taken from the
/// entry unless the kept element already says the same (so extra codings and units survive).
fn merge(base: &Map<String, Value>, built: Map<String, Value>) -> Map<String, Value> {
    let rt = base
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if built.get("resourceType") != base.get("resourceType") {
        return built;
    }
    let mut out = base.clone();
    for key in managed(rt) {
        match (base.get(*key), built.get(*key)) {
            (Some(b), Some(n)) => {
                out.insert((*key).to_owned(), merge_value(b, n));
            }
            (None, Some(n)) => {
                out.insert((*key).to_owned(), n.clone());
            }
            (_, None) => {
                out.remove(*key);
            }
        }
    }
    // Hearth's own field extensions come from the entry; other extensions stay.
    let mut ext: Vec<Value> = base
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|x| {
            !x.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with(HEARTH_FIELD_EXTENSION))
        })
        .cloned()
        .collect();
    ext.extend(
        built
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    if ext.is_empty() {
        out.remove("extension");
    } else {
        out.insert("extension".into(), Value::Array(ext));
    }
    out
}

/// `new`, keeping the parts of `old` that say the same: objects merge key by key (keys only
/// `old` has stay), lists of the same length item by item.
fn merge_value(old: &Value, new: &Value) -> Value {
    if says_same(old, new) {
        return old.clone();
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = o.clone();
            for (k, v) in n {
                let merged = match o.get(k) {
                    Some(ov) if says_same(old, v) => ov.clone(),
                    Some(ov) => merge_value(ov, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            Value::Array(o.iter().zip(n).map(|(a, b)| merge_value(a, b)).collect())
        }
        _ => new.clone(),
    }
}

/// Whether `new` says nothing `old` does not: every scalar in it appears in `old`, and lists
/// have the same length.
fn says_same(old: &Value, new: &Value) -> bool {
    fn leaves(v: &Value, out: &mut HashSet<String>) {
        match v {
            Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
            Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
            Value::Number(n) => {
                out.insert(n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()));
            }
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Bool(b) => {
                out.insert(b.to_string());
            }
            Value::Null => {}
        }
    }
    if let (Value::Array(a), Value::Array(b)) = (old, new)
        && a.len() != b.len()
    {
        return false;
    }
    let (mut o, mut n) = (HashSet::new(), HashSet::new());
    leaves(old, &mut o);
    leaves(new, &mut n);
    n.is_subset(&o)
}

// ---------------------------------------------------------------------------------------------
// Building resources from entry fields

fn s<'a>(b: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str)
}

fn concept(code: Option<&Value>, text: Option<&str>) -> Value {
    let mut c = Map::new();
    if let Some(code) = code {
        c.insert("coding".into(), json!([code]));
    }
    if let Some(t) = text {
        c.insert("text".into(), json!(t));
    }
    Value::Object(c)
}

fn status_concept(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn quantity(value: &Value, unit: Option<&str>) -> Value {
    let mut q = Map::new();
    q.insert("value".into(), value.clone());
    if let Some(u) = unit {
        q.insert("unit".into(), json!(u));
        if !u.contains(' ') {
            q.insert("system".into(), json!(UCUM));
            q.insert("code".into(), json!(u));
        }
    }
    Value::Object(q)
}

fn notes(b: &Map<String, Value>, extra: &[(&str, &str)]) -> Option<Value> {
    let mut texts: Vec<String> = Vec::new();
    if let Some(n) = s(b, "note") {
        texts.push(n.to_owned());
    }
    for (label, key) in extra {
        if let Some(v) = s(b, key) {
            texts.push(format!("{label}: {v}"));
        }
    }
    (!texts.is_empty())
        .then(|| Value::Array(texts.into_iter().map(|t| json!({"text": t})).collect()))
}

/// Extensions for fields FHIR has no element for.
fn field_extensions(class: SectionClass, b: &Map<String, Value>, keys: &[&str]) -> Option<Value> {
    let mut out = Vec::new();
    for k in keys {
        let Some(v) = b.get(*k) else { continue };
        let url = format!("{HEARTH_FIELD_EXTENSION}{}:{k}", class.as_str());
        let x = match v {
            Value::Bool(x) => json!({"url": url, "valueBoolean": x}),
            Value::Number(n) => json!({"url": url, "valueDecimal": n}),
            Value::String(t) if k.ends_with("date") || *k == "recorded_on" => {
                json!({"url": url, "valueDate": t})
            }
            Value::String(t) => json!({"url": url, "valueString": t}),
            _ => continue,
        };
        out.push(x);
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

/// A date or date-time as a FHIR dateTime (they share the forms Hearth accepts).
/// FHIR `telecom` from an entry's `phone` and `email`, if either is present.
fn telecom(b: &Map<String, Value>) -> Option<Value> {
    let mut t = Vec::new();
    if let Some(p) = s(b, "phone") {
        t.push(json!({"system": "phone", "value": p}));
    }
    if let Some(e) = s(b, "email") {
        t.push(json!({"system": "email", "value": e}));
    }
    (!t.is_empty()).then_some(Value::Array(t))
}

fn put(r: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        r.insert(key.to_owned(), v);
    }
}

const PATIENT: &str = "#patient";

/// Builds a resource from an entry's fields. `src_type` picks among the resources a class can
/// come from (a `medications` entry imported from a MedicationRequest goes back as one).
/// References to the patient are written as `#patient` and fixed up by the caller.
fn build(
    class: SectionClass,
    b: &Map<String, Value>,
    src_type: Option<&str>,
) -> Map<String, Value> {
    let mut r = Map::new();
    let subject = json!({"reference": PATIENT});
    match class {
        SectionClass::Demographics => {
            r.insert("resourceType".into(), json!("Patient"));
            if let Some(n) = b.get("nhs_number") {
                r.insert(
                    "identifier".into(),
                    json!([{"system": NHS_NUMBER_SYSTEM, "value": n}]),
                );
            }
            put(&mut r, "name", s(b, "name").map(|n| json!([{"text": n}])));
            put(&mut r, "telecom", telecom(b));
            put(&mut r, "gender", b.get("gender").cloned());
            put(&mut r, "birthDate", b.get("birth_date").cloned());
            if b.contains_key("address") || b.contains_key("postcode") {
                let mut a = Map::new();
                put(&mut a, "text", b.get("address").cloned());
                put(&mut a, "postalCode", b.get("postcode").cloned());
                r.insert("address".into(), json!([a]));
            }
            if let Some(l) = s(b, "preferred_language") {
                r.insert(
                    "communication".into(),
                    json!([{"language": {"text": l}, "preferred": true}]),
                );
            }
            put(
                &mut r,
                "generalPractitioner",
                s(b, "gp_practice").map(|g| json!([{"display": g}])),
            );
            put(
                &mut r,
                "extension",
                field_extensions(class, b, &["interpreter_needed"]),
            );
        }
        SectionClass::Allergies => {
            r.insert("resourceType".into(), json!("AllergyIntolerance"));
            put(
                &mut r,
                "clinicalStatus",
                s(b, "clinical_status").map(|c| {
                    status_concept(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        c,
                    )
                }),
            );
            // R4 has no "presumed": the closest is unconfirmed.
            put(
                &mut r,
                "verificationStatus",
                s(b, "verification_status").map(|c| {
                    let c = if c == "presumed" { "unconfirmed" } else { c };
                    status_concept(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        c,
                    )
                }),
            );
            put(&mut r, "category", b.get("category").map(|c| json!([c])));
            put(&mut r, "criticality", b.get("criticality").cloned());
            r.insert("code".into(), concept(b.get("code"), s(b, "substance")));
            r.insert("patient".into(), subject);
            put(&mut r, "onsetDateTime", b.get("onset").cloned());
            if b.contains_key("reaction") || b.contains_key("severity") {
                let mut re = Map::new();
                re.insert(
                    "manifestation".into(),
                    json!([{"text": s(b, "reaction").unwrap_or("reaction")}]),
                );
                put(&mut re, "severity", b.get("severity").cloned());
                r.insert("reaction".into(), json!([re]));
            }
            put(&mut r, "note", notes(b, &[]));
        }
        SectionClass::Medications => match src_type {
            Some("MedicationRequest") => {
                r.insert("resourceType".into(), json!("MedicationRequest"));
                let status = match s(b, "status") {
                    Some("intended") => "draft",
                    Some(x @ ("active" | "completed" | "stopped" | "on-hold")) => x,
                    _ => "unknown",
                };
                r.insert("status".into(), json!(status));
                r.insert("intent".into(), json!("order"));
                r.insert(
                    "medicationCodeableConcept".into(),
                    concept(b.get("code"), s(b, "name")),
                );
                r.insert("subject".into(), subject);
                put(&mut r, "authoredOn", b.get("start").cloned());
                put(
                    &mut r,
                    "requester",
                    s(b, "prescriber").map(|p| json!({"display": p})),
                );
                put(
                    &mut r,
                    "reasonCode",
                    s(b, "reason").map(|t| json!([{"text": t}])),
                );
                put(&mut r, "note", notes(b, &[("Until", "end")]));
                put(&mut r, "dosageInstruction", dosage(b));
            }
            Some("Immunization") => {
                r.insert("resourceType".into(), json!("Immunization"));
                let status = if s(b, "status") == Some("stopped") {
                    "not-done"
                } else {
                    "completed"
                };
                r.insert("status".into(), json!(status));
                r.insert("vaccineCode".into(), concept(b.get("code"), s(b, "name")));
                r.insert("patient".into(), subject);
                match b.get("start").or(b.get("end")) {
                    Some(d) => r.insert("occurrenceDateTime".into(), d.clone()),
                    None => r.insert("occurrenceString".into(), json!("unknown")),
                };
                put(&mut r, "route", s(b, "route").map(|t| json!({"text": t})));
                put(
                    &mut r,
                    "note",
                    notes(b, &[("Dose", "dose"), ("Prescriber", "prescriber")]),
                );
            }
            _ => {
                r.insert("resourceType".into(), json!("MedicationStatement"));
                let status = s(b, "status").unwrap_or("unknown");
                r.insert("status".into(), json!(status));
                r.insert(
                    "medicationCodeableConcept".into(),
                    concept(b.get("code"), s(b, "name")),
                );
                r.insert("subject".into(), subject);
                if b.contains_key("start") || b.contains_key("end") {
                    let mut p = Map::new();
                    put(&mut p, "start", b.get("start").cloned());
                    put(&mut p, "end", b.get("end").cloned());
                    r.insert("effectivePeriod".into(), Value::Object(p));
                }
                put(
                    &mut r,
                    "reasonCode",
                    s(b, "reason").map(|t| json!([{"text": t}])),
                );
                put(&mut r, "note", notes(b, &[("Prescriber", "prescriber")]));
                put(&mut r, "dosage", dosage(b));
            }
        },
        SectionClass::Conditions => {
            r.insert("resourceType".into(), json!("Condition"));
            put(
                &mut r,
                "clinicalStatus",
                s(b, "clinical_status").map(|c| {
                    status_concept(
                        "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        c,
                    )
                }),
            );
            put(
                &mut r,
                "verificationStatus",
                s(b, "verification_status").map(|c| {
                    status_concept(
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        c,
                    )
                }),
            );
            put(
                &mut r,
                "severity",
                s(b, "severity").map(|t| json!({"text": t})),
            );
            r.insert("code".into(), concept(b.get("code"), s(b, "name")));
            r.insert("subject".into(), subject);
            put(&mut r, "onsetDateTime", b.get("onset").cloned());
            put(&mut r, "abatementDateTime", b.get("abatement").cloned());
            put(&mut r, "note", notes(b, &[]));
        }
        SectionClass::Observations => {
            r.insert("resourceType".into(), json!("Observation"));
            r.insert("status".into(), json!(s(b, "status").unwrap_or("unknown")));
            r.insert("code".into(), concept(b.get("code"), s(b, "name")));
            r.insert("subject".into(), subject);
            put(&mut r, "effectiveDateTime", b.get("effective").cloned());
            if let Some(v) = b.get("value") {
                r.insert("valueQuantity".into(), quantity(v, s(b, "unit")));
            } else if let Some(t) = s(b, "value_text") {
                r.insert("valueString".into(), json!(t));
            }
            put(
                &mut r,
                "interpretation",
                s(b, "interpretation").map(|t| json!([{"text": t}])),
            );
            put(&mut r, "note", notes(b, &[]));
            let comps: Vec<Value> = b
                .get("components")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .map(|c| {
                    let mut o = Map::new();
                    o.insert("code".into(), concept(c.get("code"), s(c, "name")));
                    if let Some(v) = c.get("value") {
                        o.insert("valueQuantity".into(), quantity(v, s(c, "unit")));
                    } else if let Some(t) = s(c, "value_text") {
                        o.insert("valueString".into(), json!(t));
                    }
                    Value::Object(o)
                })
                .collect();
            if !comps.is_empty() {
                r.insert("component".into(), Value::Array(comps));
            }
        }
        SectionClass::Encounters if src_type == Some("Procedure") => {
            r.insert("resourceType".into(), json!("Procedure"));
            let status = match s(b, "status") {
                Some("planned") => "preparation",
                Some("in-progress") => "in-progress",
                Some("cancelled") => "not-done",
                Some("finished") => "completed",
                _ => "unknown",
            };
            r.insert("status".into(), json!(status));
            let name = s(b, "class").and_then(|c| c.strip_prefix("procedure: "));
            r.insert("code".into(), concept(b.get("code"), name));
            r.insert("subject".into(), subject);
            match (b.get("start"), b.get("end")) {
                (Some(st), Some(en)) => {
                    r.insert("performedPeriod".into(), json!({"start": st, "end": en}));
                }
                (Some(st), None) => {
                    r.insert("performedDateTime".into(), st.clone());
                }
                _ => {}
            }
            put(
                &mut r,
                "reasonCode",
                s(b, "reason").map(|t| json!([{"text": t}])),
            );
            put(
                &mut r,
                "location",
                s(b, "location").map(|t| json!({"display": t})),
            );
            put(
                &mut r,
                "performer",
                s(b, "practitioner").map(|t| json!([{"actor": {"display": t}}])),
            );
            put(
                &mut r,
                "outcome",
                s(b, "outcome").map(|t| json!({"text": t})),
            );
            put(&mut r, "note", notes(b, &[]));
        }
        SectionClass::Encounters => {
            r.insert("resourceType".into(), json!("Encounter"));
            let status = s(b, "status").unwrap_or("unknown");
            r.insert("status".into(), json!(status));
            r.insert(
                "class".into(),
                encounter_class(s(b, "class").unwrap_or("unknown")),
            );
            put(
                &mut r,
                "type",
                b.get("code").map(|c| json!([{"coding": [c]}])),
            );
            r.insert("subject".into(), subject);
            let mut period = Map::new();
            put(&mut period, "start", b.get("start").cloned());
            put(&mut period, "end", b.get("end").cloned());
            r.insert("period".into(), Value::Object(period));
            put(
                &mut r,
                "reasonCode",
                s(b, "reason").map(|t| json!([{"text": t}])),
            );
            put(
                &mut r,
                "participant",
                s(b, "practitioner").map(|t| json!([{"individual": {"display": t}}])),
            );
            put(
                &mut r,
                "location",
                s(b, "location").map(|t| json!([{"location": {"display": t}}])),
            );
            put(
                &mut r,
                "hospitalization",
                s(b, "outcome").map(|t| json!({"dischargeDisposition": {"text": t}})),
            );
            put(&mut r, "extension", field_extensions(class, b, &["note"]));
        }
        SectionClass::CarePlan
        | SectionClass::SocialCareSupportPlan
        | SectionClass::AdvanceCarePlan => {
            r.insert("resourceType".into(), json!("CarePlan"));
            let status = match s(b, "status") {
                Some(x @ ("draft" | "active" | "on-hold" | "revoked" | "completed")) => x,
                _ if class == SectionClass::AdvanceCarePlan => "active",
                _ => "unknown",
            };
            r.insert("status".into(), json!(status));
            r.insert("intent".into(), json!("plan"));
            let category = match class {
                SectionClass::SocialCareSupportPlan => Some("Care and support plan"),
                SectionClass::AdvanceCarePlan => Some("Advance care plan"),
                _ => None,
            };
            put(&mut r, "category", category.map(|c| json!([{"text": c}])));
            let title = s(b, "title").or(category).unwrap_or("Care plan");
            r.insert("title".into(), json!(title));
            let description = s(b, "description").or(s(b, "statement"));
            put(&mut r, "description", description.map(|d| json!(d)));
            r.insert("subject".into(), subject);
            if b.contains_key("start") || b.contains_key("end") {
                let mut p = Map::new();
                put(&mut p, "start", b.get("start").cloned());
                put(&mut p, "end", b.get("end").cloned());
                r.insert("period".into(), Value::Object(p));
            }
            let mut activities: Vec<Value> = Vec::new();
            for a in b
                .get("activities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                activities.push(json!({"detail": {"status": "unknown", "description": a}}));
            }
            for svc in b
                .get("services")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let parts: Vec<&str> = ["name", "provider", "frequency", "funded_by"]
                    .iter()
                    .filter_map(|k| svc.get(*k).and_then(Value::as_str))
                    .collect();
                activities.push(
                    json!({"detail": {"status": "unknown", "description": parts.join("; ")}}),
                );
            }
            if !activities.is_empty() {
                r.insert("activity".into(), Value::Array(activities));
            }
            let goals: Vec<&Value> = b
                .get("goals")
                .or(b.get("needs"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            if !goals.is_empty() {
                let contained: Vec<Value> = goals
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        json!({"resourceType": "Goal", "id": format!("goal{i}"), "lifecycleStatus": "active",
                               "description": {"text": g}, "subject": {"reference": PATIENT}})
                    })
                    .collect();
                let refs: Vec<Value> = (0..goals.len())
                    .map(|i| json!({"reference": format!("#goal{i}")}))
                    .collect();
                r.insert("contained".into(), Value::Array(contained));
                r.insert("goal".into(), Value::Array(refs));
            }
            put(&mut r, "note", notes(b, &[]));
            let keys: &[&str] = match class {
                SectionClass::AdvanceCarePlan => &[
                    "dnacpr",
                    "preferred_place_of_care",
                    "preferred_place_of_death",
                    "lasting_power_of_attorney",
                    "recorded_on",
                    "review_date",
                ],
                SectionClass::SocialCareSupportPlan => &["personal_budget_gbp", "review_date"],
                _ => &["review_date"],
            };
            put(&mut r, "extension", field_extensions(class, b, keys));
        }
        SectionClass::SocialCareAssessments => {
            r.insert("resourceType".into(), json!("QuestionnaireResponse"));
            r.insert("status".into(), json!("completed"));
            r.insert("subject".into(), subject);
            put(&mut r, "authored", b.get("date").cloned());
            put(
                &mut r,
                "author",
                s(b, "assessor").map(|a| json!({"display": a})),
            );
            let mut items = Vec::new();
            let mut item = |id: &str, text: &str, answer: Value| {
                items.push(json!({"linkId": id, "text": text, "answer": [answer]}));
            };
            if let Some(t) = s(b, "assessment_type") {
                item(
                    "assessment-type",
                    "Assessment type",
                    json!({"valueString": t}),
                );
            }
            for (i, n) in b
                .get("needs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let mut words = n
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("need identified")
                    .to_owned();
                if let Some(e) = n.get("eligible").and_then(Value::as_bool) {
                    words.push_str(if e { " (eligible)" } else { " (not eligible)" });
                }
                let domain = n.get("domain").and_then(Value::as_str).unwrap_or("need");
                item(&format!("need-{i}"), domain, json!({"valueString": words}));
            }
            if let Some(e) = b.get("eligible").and_then(Value::as_bool) {
                item("eligible", "Eligible needs", json!({"valueBoolean": e}));
            }
            if let Some(t) = s(b, "outcome") {
                item("outcome", "Outcome", json!({"valueString": t}));
            }
            if let Some(t) = s(b, "summary") {
                item("summary", "Summary", json!({"valueString": t}));
            }
            if !items.is_empty() {
                r.insert("item".into(), Value::Array(items));
            }
        }
        SectionClass::Carers => {
            r.insert("resourceType".into(), json!("RelatedPerson"));
            r.insert("patient".into(), subject);
            put(
                &mut r,
                "relationship",
                s(b, "relationship").map(|t| json!([{"text": t}])),
            );
            put(&mut r, "name", s(b, "name").map(|n| json!([{"text": n}])));
            put(&mut r, "telecom", telecom(b));
            put(
                &mut r,
                "extension",
                field_extensions(
                    class,
                    b,
                    &[
                        "lives_with_patient",
                        "main_carer",
                        "lasting_power_of_attorney",
                        "note",
                    ],
                ),
            );
        }
        SectionClass::Notes => match src_type {
            Some("QuestionnaireResponse") => {
                r.insert("resourceType".into(), json!("QuestionnaireResponse"));
                r.insert("status".into(), json!("completed"));
                r.insert("subject".into(), subject);
                r.insert("item".into(), json!([{"linkId": "note", "text": s(b, "title").unwrap_or("Note"), "answer": [{"valueString": s(b, "text").unwrap_or_default()}]}]));
            }
            Some("CareTeam") => {
                r.insert("resourceType".into(), json!("CareTeam"));
                put(&mut r, "name", s(b, "title").map(|t| json!(t)));
                r.insert("subject".into(), subject);
                put(&mut r, "note", s(b, "text").map(|t| json!([{"text": t}])));
            }
            _ => {
                r.insert("resourceType".into(), json!("DocumentReference"));
                r.insert("status".into(), json!("current"));
                put(&mut r, "type", s(b, "category").map(|t| json!({"text": t})));
                put(&mut r, "description", s(b, "title").map(|t| json!(t)));
                r.insert("subject".into(), subject);
                let text = s(b, "text").unwrap_or_default();
                let mut att = Map::new();
                att.insert("contentType".into(), json!("text/plain; charset=utf-8"));
                att.insert(
                    "data".into(),
                    json!(data_encoding::BASE64.encode(text.as_bytes())),
                );
                put(&mut att, "title", s(b, "title").map(|t| json!(t)));
                r.insert("content".into(), json!([{"attachment": att}]));
            }
        },
        SectionClass::Documents if src_type == Some("DiagnosticReport") => {
            r.insert("resourceType".into(), json!("DiagnosticReport"));
            r.insert("status".into(), json!("final"));
            r.insert("code".into(), concept(b.get("code"), s(b, "title")));
            r.insert("subject".into(), subject);
            put(&mut r, "effectiveDateTime", b.get("date").cloned());
            put(&mut r, "conclusion", b.get("description").cloned());
            if let Some(att) = attachment(b) {
                r.insert("presentedForm".into(), json!([att]));
            }
        }
        SectionClass::Documents => {
            r.insert("resourceType".into(), json!("DocumentReference"));
            r.insert("status".into(), json!("current"));
            put(
                &mut r,
                "type",
                b.get("code").map(|c| json!({"coding": [c]})),
            );
            r.insert("subject".into(), subject);
            put(
                &mut r,
                "date",
                b.get("date")
                    .map(|d| json!(to_instant(d.as_str().unwrap_or_default()))),
            );
            put(&mut r, "description", b.get("description").cloned());
            let mut att = attachment(b).unwrap_or_default();
            put(&mut att, "title", b.get("title").cloned());
            r.insert("content".into(), json!([{"attachment": att}]));
        }
    }
    r
}

/// DocumentReference.date is an instant: a date becomes its first moment in UTC.
fn to_instant(d: &str) -> String {
    match d.len() {
        4 => format!("{d}-01-01T00:00:00Z"),
        7 => format!("{d}-01T00:00:00Z"),
        10 => format!("{d}T00:00:00Z"),
        _ => d.to_owned(),
    }
}

fn attachment(b: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut a = Map::new();
    put(&mut a, "contentType", b.get("content_type").cloned());
    put(&mut a, "data", b.get("data_base64").cloned());
    put(&mut a, "url", b.get("url").cloned());
    (!a.is_empty()).then_some(a)
}

fn dosage(b: &Map<String, Value>) -> Option<Value> {
    let mut d = Map::new();
    put(&mut d, "text", b.get("dose").cloned());
    put(
        &mut d,
        "timing",
        s(b, "frequency").map(|f| json!({"code": {"text": f}})),
    );
    put(&mut d, "route", s(b, "route").map(|t| json!({"text": t})));
    (!d.is_empty()).then(|| json!([d]))
}

/// An Encounter.class Coding: a v3 ActCode when the words name one, else the words.
fn encounter_class(words: &str) -> Value {
    let w = words.to_lowercase();
    let code = if w.contains("home") {
        Some(("HH", "home health"))
    } else if w.contains("emergency") || w.contains("a&e") {
        Some(("EMER", "emergency"))
    } else if w.contains("inpatient") || w.contains("admission") {
        Some(("IMP", "inpatient encounter"))
    } else if w.contains("telephone") || w.contains("virtual") || w.contains("video") {
        Some(("VR", "virtual"))
    } else if w.contains("ambulatory") || w.contains("outpatient") || w.contains("clinic") {
        Some(("AMB", "ambulatory"))
    } else {
        None
    };
    match code {
        Some((c, _)) => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c, "display": words})
        }
        None => json!({"display": words}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_is_sorted_for_binary_search() {
        assert!(STATUS_IN_ERROR_TYPES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn entered_in_error_is_said_as_each_type_says_it() {
        let mut c = json!({"resourceType": "Condition", "clinicalStatus": {"text": "resolved"},
            "abatementDateTime": "2020-01-01", "abatementString": "gone"});
        assert!(mark_entered_in_error(&mut c));
        assert_eq!(
            c["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        for gone in ["clinicalStatus", "abatementDateTime", "abatementString"] {
            assert!(c.get(gone).is_none(), "{gone}");
        }
        let mut a = json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"text": "x"}});
        assert!(mark_entered_in_error(&mut a));
        assert!(a.get("clinicalStatus").is_none());
        let mut g = json!({"resourceType": "Goal", "lifecycleStatus": "active"});
        assert!(mark_entered_in_error(&mut g));
        assert_eq!(g["lifecycleStatus"], "entered-in-error");
        for t in [
            "Specimen",
            "Medication",
            "Observation",
            "FamilyMemberHistory",
        ] {
            let mut r = json!({"resourceType": t, "status": "final"});
            assert!(mark_entered_in_error(&mut r), "{t}");
            assert_eq!(r["status"], "entered-in-error");
        }
        for t in [
            "Patient",
            "Practitioner",
            "Organization",
            "Location",
            "RelatedPerson",
        ] {
            let mut r = json!({"resourceType": t});
            let before = r.clone();
            assert!(!mark_entered_in_error(&mut r), "{t}");
            assert_eq!(r, before);
        }
    }
}
