//! Planning: pass 1 (the index), then pass 2 on all cores, its outcomes folded in bundle order
//! into the plan and the report.

use super::super::FhirError;
use super::super::patient::PatientFacts;
use super::bundle::{ParsedBundle, read_entry, read_head};
use super::check::check_and_map;
use super::existing::Existing;
use super::index::index_of;
use super::{ImportPlan, ImportReport, PlannedEntry, PlannedRetraction};
use crate::ids::EntryId;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};

/// `f` for every entry, on `threads` threads (`None`: as many as help), results in order.
pub(super) fn map_entries<'a, R: Send>(
    threads: Option<usize>,
    entries: &[&'a RawValue],
    f: impl Fn(usize, &&'a RawValue) -> R + Sync,
) -> Vec<R> {
    match threads {
        None => crate::par::map(entries, f),
        Some(n) => crate::par::map_on(n, entries, f),
    }
}

/// [`plan_import_each`] on `threads` threads (`None`: as many as help on this machine). What
/// `each` is given, and in which order, does not depend on the number.
///
/// With `bodies` false, the entries' `body` is left `Null`, its JSON values dropped by the
/// thread that made them (freeing them on the calling thread, which writes, would slow it).
pub(super) fn plan_import_each_on<E: From<FhirError>>(
    threads: Option<usize>,
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
    bodies: bool,
    mut each: impl FnMut(PlannedEntry) -> Result<(), E>,
) -> Result<ImportPlan, E> {
    let entries = &bundle.entries[..];
    let report = ImportReport {
        bundle_type: bundle.bundle_type.clone(),
        ..ImportReport::default()
    };

    // Pass 1: the index, and the shape of each entry. Reading the heads is shared among the
    // cores; the index is built in bundle order, so the first error is that of a plain loop.
    let heads = map_entries(threads, entries, |i, raw| read_head(i, raw));
    let index = index_of(&heads)?;
    let patient = index
        .patient
        .and_then(|i| index.resource(i))
        .map(PatientFacts::of_patient);

    // Pass 2: parse, check and map each resource. Resources are checked and mapped
    // independently of one another, so that work is shared among the machine's cores, and each
    // entry's parsed JSON is dropped as soon as it is mapped. The outcomes are taken one by one
    // in bundle order, each as soon as it and those before it are ready, so the plan, the
    // report and the first error are exactly what a single pass gives, and `each` (writing the
    // entries, say) overlaps the checking of the resources after.
    let mut fold = Fold {
        report,
        ..Fold::default()
    };
    crate::par::stream(
        threads,
        entries,
        |i, raw| {
            let e = read_entry(i, raw)?;
            check_and_map(i, &e, &index, existing, bodies)
        },
        |i, outcome| match fold.take(i, outcome)? {
            Some(planned) => each(planned),
            None => Ok(()),
        },
    )?;
    let Fold {
        mut report,
        skipped_why,
        retractions,
        ..
    } = fold;
    for ((rt, why), n) in skipped_why {
        report.notes.push(format!("{n} {rt} not imported: {why}"));
    }
    Ok(ImportPlan {
        entries: Vec::new(),
        retractions,
        report,
        patient,
    })
}

/// Pass 2's outcomes taken in bundle order: de-duplication, retractions and the report.
#[derive(Default)]
pub(super) struct Fold {
    report: ImportReport,
    retractions: Vec<PlannedRetraction>,
    /// Hashes of the resources taken so far.
    seen: HashSet<String>,
    skipped_why: BTreeMap<(String, &'static str), usize>,
    retracted: HashSet<EntryId>,
    updated: HashSet<EntryId>,
}

impl Fold {
    /// Takes entry `i`'s outcome; returns the entry to write, if it makes one.
    fn take(
        &mut self,
        i: usize,
        outcome: Result<Outcome, FhirError>,
    ) -> Result<Option<PlannedEntry>, FhirError> {
        // A resource retracted and changed in the same bundle: which one holds is unclear.
        // Refused at the second of the two, so the first error in bundle order is the one
        // reported.
        let both = |rt: &str| FhirError::Resource {
            at: format!("entry[{i}] {rt}"),
            field: "status".into(),
            problem: "the bundle both marks this resource entered-in-error and holds a changed \
                      version of it"
                .into(),
        };
        let report = &mut self.report;
        let (rt, checked) = match outcome? {
            Outcome::Deleted => {
                report.notes.push(format!(
                    "entry[{i}]: a DELETE request; an import never deletes"
                ));
                return Ok(None);
            }
            Outcome::SearchResult(rt) => {
                report.resources += 1;
                report.by_type.entry(rt).or_default().skipped += 1;
                report.skipped += 1;
                return Ok(None);
            }
            Outcome::Checked(rt, checked) => (rt, checked),
        };
        report.resources += 1;
        let Checked {
            hash,
            extensions,
            present,
            mapped,
        } = *checked;
        for (url, n) in extensions {
            *report.extensions.entry(url).or_default() += n;
        }
        let counts = report.by_type.entry(rt.clone()).or_default();
        if !self.seen.insert(hash) || present {
            counts.unchanged += 1;
            report.unchanged += 1;
            return Ok(None);
        }
        match mapped? {
            MappedOne::Skip(why) => {
                counts.skipped += 1;
                report.skipped += 1;
                *self.skipped_why.entry((rt, why)).or_default() += 1;
                Ok(None)
            }
            MappedOne::Retract(entry) => {
                if self.updated.contains(&entry) {
                    return Err(both(&rt));
                }
                // The same entry retracted by two resources of the bundle: marked once.
                if !self.retracted.insert(entry) {
                    counts.unchanged += 1;
                    report.unchanged += 1;
                    return Ok(None);
                }
                counts.retracted += 1;
                report.retracted += 1;
                self.retractions.push(PlannedRetraction {
                    entry,
                    resource_type: rt,
                    entry_index: i,
                });
                Ok(None)
            }
            MappedOne::Entry { kept, planned } => {
                if let Some(old) = planned.supersedes {
                    if self.retracted.contains(&old) {
                        return Err(both(&rt));
                    }
                    self.updated.insert(old);
                }
                if planned.supersedes.is_some() {
                    counts.updated += 1;
                    report.updated += 1;
                } else {
                    counts.imported += 1;
                    report.imported += 1;
                }
                match kept {
                    Some(Kept::Known) => *report.kept_as_documents.entry(rt).or_default() += 1,
                    Some(Kept::Unknown) => *report.unknown_types.entry(rt).or_default() += 1,
                    None => {}
                }
                Ok(Some(planned))
            }
        }
    }
}

/// What pass 2 makes of one bundle entry, before de-duplication (which depends on the entries
/// before it, so is done afterwards, in order).
pub(super) enum Outcome {
    /// A `DELETE` request with no resource: noted, never done.
    Deleted,
    /// A search result marked `outcome` (or an `OperationOutcome`): counted as skipped.
    SearchResult(String),
    /// A resource that passed the whole-resource checks, with its type.
    Checked(String, Box<Checked>),
}

/// A resource that passed the whole-resource checks (size, references, extensions, NHS
/// numbers).
pub(super) struct Checked {
    /// SHA-256 of its canonical JSON: the de-duplication key.
    pub(super) hash: String,
    /// Extension URLs met in it, with counts.
    pub(super) extensions: BTreeMap<String, usize>,
    /// Whether the record already holds it (the same resource, or this record's own export).
    pub(super) present: bool,
    /// What it maps to. An error here counts only if the resource is not a duplicate.
    pub(super) mapped: Result<MappedOne, FhirError>,
}

/// Whether a resource kept whole as a `documents` entry is of a type Hearth knows.
pub(super) enum Kept {
    Known,
    Unknown,
}

/// What a resource that is not a duplicate becomes.
pub(super) enum MappedOne {
    /// Not imported, and why.
    Skip(&'static str),
    /// Marked entered in error at the source: the entry imported earlier from it (current
    /// version) is to be marked so.
    Retract(EntryId),
    /// An entry to write; `kept` when the resource is kept whole as a `documents` entry.
    Entry {
        kept: Option<Kept>,
        planned: PlannedEntry,
    },
}
