//! Reading each entry into its resource, and putting the bundle together: patients merged,
//! references resolved, a `Provenance` per entry, a `Communication` per dispute of an entry by
//! the patient, the extensions' resources appended.

use super::super::{HEARTH_ENTRY_SYSTEM, HEARTH_PEER_SYSTEM, HEARTH_RECORD_SYSTEM};
use super::build::build;
use super::dispute::dispute_resource;
use super::in_error::mark_entered_in_error;
use super::merge::{RefFix, References, merge, merge_patient, set_security_label};
use super::source::{Body, EntryOut, Out, Res};
use super::{ExportExtension, ExportOptions, ExportReport, RawExportInput, uuid_from};
use crate::entry::{EntryBody, EntryStatus};
use crate::ids::PeerKey;
use crate::record::{EntryView, RawEntryView, RawSectionView};
use crate::section::{Label, SectionClass};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// What [`build_bundle`] makes of one entry.
pub(super) enum Read<'a> {
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
pub(super) fn read_entry<'a>(
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
            let Ok(typed) = EntryBody::structural(view.class, Value::Object(fields.map())) else {
                return Read::Unreadable;
            };
            let mut built = build(&typed, src_type);
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

pub(super) fn build_bundle<'a>(
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

    // The bundle: Patient, entries, a Provenance per entry, a Communication per dispute, then
    // extension resources.
    let mut entries: Vec<EntryOut<'a>> = Vec::with_capacity(2 * outs.len() + 2);
    let mut count = |t: &str| *report.resources.entry(t.to_owned()).or_default() += 1;
    let mut provenance: Vec<EntryOut<'a>> = Vec::with_capacity(outs.len() + 1);
    let mut authors = Authors::default();
    let mut patient_entries: Vec<&EntryView> = patients.iter().filter_map(|p| p.entry).collect();
    if let Some(e) = patient.entry.take() {
        patient_entries.insert(0, e);
    }
    // The patient's disputes of the exported entries: a Communication each, after the
    // Provenances.
    let mut disputes: Vec<EntryOut<'a>> = Vec::new();
    for e in patient_entries {
        provenance.push(provenance_for(e, &patient_url, &mut authors));
        disputes.extend(
            e.disputes
                .iter()
                .map(|d| dispute_resource(d, &patient_url, &patient_url)),
        );
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
            disputes.extend(
                e.disputes
                    .iter()
                    .map(|d| dispute_resource(d, &o.full_url, &patient_url)),
            );
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
    for d in disputes {
        count("Communication");
        entries.push(d);
    }
    for x in extensions {
        for r in x.resources(&patient_url, input.now) {
            let t = r
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Basic")
                .to_owned();
            count(&t);
            let url = x
                .full_url(&r)
                .unwrap_or_else(|| uuid_from(&[x.name().as_bytes(), r.to_string().as_bytes()]));
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
pub(super) struct Authors(Vec<(PeerKey, String)>);

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

pub(super) fn provenance_for<'a>(
    e: &EntryView,
    target: &str,
    authors: &mut Authors,
) -> EntryOut<'a> {
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
