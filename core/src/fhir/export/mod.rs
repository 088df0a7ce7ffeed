//! Entries → a FHIR R4 `collection` Bundle with a `Provenance` per entry. Pure.
//!
//! [`export_raw_json`] reads each entry ([`bundle`]): an imported entry not corrected since is
//! written back as the resource it was imported from ([`source`] finds it in the stored text);
//! any other is built from its typed fields ([`build`]), over the kept resource if there is one
//! ([`merge`]). References are then made to resolve inside the bundle, a `Provenance` is added
//! per entry and a `Communication` per dispute of an entry by the patient ([`dispute`]), and
//! entries in error are said so as each resource type says it ([`in_error`]).

mod build;
mod bundle;
mod dispute;
mod in_error;
mod merge;
mod source;

use crate::ids::RecordId;
use crate::record::{EntryView, RawEntryView, RawSectionView, SectionView};
use crate::time::Timestamp;
use bundle::build_bundle;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

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
    /// The `fullUrl` of one of [`ExportExtension::resources`], when the extension keeps it
    /// stable across exports; `None` (the default): one derived from the resource's content.
    fn full_url(&self, _resource: &Value) -> Option<String> {
        None
    }
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
pub(super) fn uuid_from(parts: &[&[u8]]) -> String {
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
                        disputes: e.disputes.clone(),
                    };
                    RawEntryView::new(entry, serde_json::to_string(&e.body).unwrap_or_default())
                })
                .collect(),
        })
        .collect()
}

/// Exports entries as a FHIR R4 `collection` Bundle, with a `Provenance` for every entry, a
/// `Communication` for every dispute of an exported entry by the patient, and the resources of
/// `extensions` appended.
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
