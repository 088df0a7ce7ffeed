//! `hearth record import --fhir FILE` and `hearth record export --fhir FILE | --automerge DIR`
//! (issue #5). The mapping itself is pure and lives in [`hearth_core::fhir`]; this module reads
//! and writes the files, bounds their size, and drives the record.
//!
//! An import checks the bundle's JSON, then parses, checks and maps every resource on all cores;
//! each entry is put into the record's documents as soon as it is planned
//! ([`hearth_core::record::EntryWriter`], with the body the plan checked), and all of them are
//! committed to the store in one write once every resource has passed and this node's right to
//! write each section is settled: the import completes or changes nothing. Export is in
//! `export.rs`.

mod export;

pub use export::{ExportArgs, export};

use crate::app::parse::which_record;
use crate::app::{Ctx, invalid, now, os_rng};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use clap::Args;
use hearth_core::fhir::{self, Existing, FhirError, PatientCheck};
use hearth_core::grant::{self, Ability, Access, Grant, GrantId};
use hearth_core::keys::Identity;
use hearth_core::record::{CheckedEntry, OpenRecord, Vault};
use hearth_core::section::SectionName;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `hearth record import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The FHIR R4 Bundle to import, as JSON (`-` for standard input); at most 64 MiB.
    #[arg(long, value_name = "FILE")]
    pub fhir: PathBuf,
    /// Check and map the bundle and report what would be imported, without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The record (default: this patient's own).
    #[arg(long, value_name = "RECORD_ID")]
    pub record: Option<String>,
    /// Import even though the bundle's Patient is not shown to be the record's patient (another
    /// NHS number, name or birth date, no Patient, or nothing to compare it with). Check the
    /// file first: its data joins this record as this patient's.
    #[arg(long)]
    pub accept_different_patient: bool,
}

impl From<FhirError> for Failure {
    fn from(e: FhirError) -> Failure {
        Failure::new(code::INVALID, e)
    }
}

/// Reads a bundle file, refusing one larger than [`fhir::MAX_BUNDLE_BYTES`] before reading it.
fn read_bundle(ctx: &Ctx, path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = fhir::MAX_BUNDLE_BYTES;
    let too_large = || {
        invalid(format!(
            "the bundle is larger than the limit of {} MiB; split it into smaller bundles",
            limit / (1024 * 1024)
        ))
    };
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        buf = ctx
            .read_stdin(limit + 1)
            .map_err(|e| invalid(format!("cannot read standard input: {e}")))?;
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let len = f
            .metadata()
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
            .len();
        if len > limit {
            return Err(too_large());
        }
        buf.reserve(usize::try_from(len).unwrap_or(0));
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    }
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// Every version of every readable entry, for de-duplication.
fn existing(rec: &mut OpenRecord<'_, SledStore>) -> Result<Existing, Failure> {
    let mut ex = Existing::default();
    let names: Vec<SectionName> = rec.sections().into_iter().map(|s| s.name).collect();
    for name in names {
        for v in rec.history(&name)? {
            ex.add_version(&v);
        }
    }
    Ok(ex)
}

/// Why an import into a record this node does not hold the root key of is refused. Nothing has
/// been written; the messages name sections (from the bundle, which the caller holds), never
/// record content.
#[derive(Debug, thiserror::Error)]
pub enum ImportRefused {
    /// The bundle has resources for sections no grant this node holds lets it add to.
    #[error(
        "no grant you hold lets you add to {}; nothing was imported (--dry-run shows where \
         each resource goes; the patient can grant append on those sections)",
        list(.0)
    )]
    NotPermitted(Vec<(SectionName, usize)>),
    /// The bundle has resources for sections the record does not have yet, which only the
    /// patient's device holding the record root key can create.
    #[error(
        "the record has no section {} yet, and only the patient's device holding the record's \
         root key can create a section; nothing was imported",
        list(.0)
    )]
    NoSection(Vec<(SectionName, usize)>),
}

fn list(sections: &[(SectionName, usize)]) -> String {
    sections
        .iter()
        .map(|(name, n)| {
            let s = if *n == 1 { "" } else { "s" };
            format!("{name} ({n} resource{s})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<ImportRefused> for Failure {
    fn from(e: ImportRefused) -> Failure {
        Failure::new(code::REFUSED, e)
    }
}

/// Which sections this node may import into, decided per section as the planned entries come:
/// the device holding the record root key may add anywhere (it creates missing sections); any
/// other device adds only to sections that exist, and a professional only to those a grant it
/// holds (not revoked, valid now) gives it `append` on. Every planned section is counted, so a
/// refusal names every one at fault, with how many resources it would have taken.
struct ImportGate {
    anywhere: bool,
    /// A professional's grant chains and the record's revoked grants (none for an owner).
    grants: Option<(Vec<Vec<Grant>>, Vec<GrantId>)>,
    held: Vec<SectionName>,
    peer: hearth_core::ids::PeerKey,
    /// Per planned section: how many entries, whether it is permitted, whether it exists.
    planned: std::collections::BTreeMap<SectionName, (usize, bool, bool)>,
}

impl ImportGate {
    fn new(
        vault: &Vault<SledStore>,
        rec: &OpenRecord<'_, SledStore>,
        identity: &Identity,
    ) -> Result<ImportGate, Failure> {
        let grants = if rec.is_owner() {
            None
        } else {
            Some((vault.held_chains(&rec.id())?, rec.revoked_grants()))
        };
        Ok(ImportGate {
            anywhere: rec.holds_root(),
            grants,
            held: rec.sections().into_iter().map(|s| s.name).collect(),
            peer: identity.peer(),
            planned: Default::default(),
        })
    }

    /// Counts an entry planned for `name`; whether it may be written.
    fn admit(&mut self, name: SectionName) -> bool {
        let planned = self.planned.entry(name).or_insert_with(|| {
            if self.anywhere {
                return (0, true, true);
            }
            let permitted = self.grants.as_ref().is_none_or(|(chains, revoked)| {
                let access = Access::section(self.peer, name, Ability::Append);
                let t = now();
                chains
                    .iter()
                    .any(|c| grant::verify_chain(c, &access, t, &|g| revoked.contains(g)).is_ok())
            });
            (0, permitted, self.held.contains(&name))
        });
        planned.0 += 1;
        planned.1 && planned.2
    }

    /// How many entries were planned per section.
    fn counts(&self) -> std::collections::BTreeMap<SectionName, usize> {
        self.planned.iter().map(|(s, (n, _, _))| (*s, *n)).collect()
    }

    /// The refusal naming every section at fault: those not permitted, else those missing.
    fn verdict(&self) -> Result<(), ImportRefused> {
        let at_fault = |fault: &dyn Fn(bool, bool) -> bool| -> Vec<(SectionName, usize)> {
            self.planned
                .iter()
                .filter(|(_, (_, permitted, exists))| fault(*permitted, *exists))
                .map(|(s, (n, _, _))| (*s, *n))
                .collect()
        };
        let refused = at_fault(&|permitted, _| !permitted);
        if !refused.is_empty() {
            return Err(ImportRefused::NotPermitted(refused));
        }
        let missing = at_fault(&|_, exists| !exists);
        if !missing.is_empty() {
            return Err(ImportRefused::NoSection(missing));
        }
        Ok(())
    }
}

/// The patient check's verdict: `Ok` with whether `--accept-different-patient` was needed,
/// or the refusal (exit 7) naming the facts at fault, never their values.
fn patient_verdict(check: &PatientCheck, accept: bool) -> Result<bool, Failure> {
    if check.is_same() {
        return Ok(false);
    }
    if accept {
        return Ok(true);
    }
    let what = match check {
        PatientCheck::Different { .. } => check.words(),
        _ => format!(
            "cannot check that the bundle is this patient's: {}",
            check.words()
        ),
    };
    Err(Failure::new(
        code::REFUSED,
        format!(
            "{what}; nothing was imported (if you are sure it is this patient's data, import it \
             with --accept-different-patient)"
        ),
    ))
}

/// `hearth record import --fhir FILE`.
pub fn import(ctx: &Ctx, args: ImportArgs) -> Result<(), Failure> {
    // Check the file before asking for the passphrase: bad input changes nothing and costs little.
    let bytes = read_bundle(ctx, &args.fhir)?;
    let bundle = fhir::parse_bundle(&bytes)?;
    let (info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let rid = which_record(&info, &vault, args.record.as_deref())?;
    let mut rec = vault.open_record(&identity, &rid)?;
    let ex = existing(&mut rec)?;
    let record_patient = ex.record_patient();
    let reason = "marked entered-in-error by the system it came from (FHIR import)";
    let (plan, by_section, written, retracted, check) = if args.dry_run {
        let plan = fhir::plan_import(&bundle, &ex)?;
        let mut by_section: std::collections::BTreeMap<SectionName, usize> = Default::default();
        for p in &plan.entries {
            *by_section.entry(p.section).or_default() += 1;
        }
        let check = fhir::check_patient(plan.patient.as_ref(), &record_patient);
        (plan, by_section, 0, 0, check)
    } else {
        // Each entry is written (into the record's documents, not yet the store) as soon as it
        // is planned, while the rest of the bundle is still being checked; everything is
        // committed at the end, in one write, or (on any refusal) nothing.
        let mut gate = ImportGate::new(&vault, &rec, &identity)?;
        let mut rng = os_rng();
        let mut writer = rec.entry_writer(now(), &mut rng);
        writer.expect(bundle.len());
        // A write that fails stops the writing, not the checking: a bad resource later in the
        // bundle is still the error reported, as it would be had nothing been written yet.
        let mut write_error = None;
        let plan = fhir::plan_import_each(&bundle, &ex, |p| {
            if gate.admit(p.section)
                && write_error.is_none()
                && let Err(e) = writer.add(CheckedEntry {
                    section: p.section,
                    body: p.checked,
                    supersedes: p.supersedes,
                })
            {
                write_error = Some(e);
            }
            Ok::<(), FhirError>(())
        })?;
        // Whose data it is, before anything is committed: another patient's bundle (or one
        // that cannot be shown to be this patient's) is refused unless the user accepts it.
        let check = fhir::check_patient(plan.patient.as_ref(), &record_patient);
        patient_verdict(&check, args.accept_different_patient)?;
        gate.verdict()?;
        if let Some(e) = write_error {
            return Err(e.into());
        }
        let retract: Vec<_> = plan.retractions.iter().map(|r| r.entry).collect();
        let (ids, marked) = writer.finish(&retract, reason)?;
        (plan, gate.counts(), ids.len(), marked.len(), check)
    };
    // A dry run reports the check, and fails as the import would.
    let verdict = patient_verdict(&check, args.accept_different_patient);
    let overridden = matches!(verdict, Ok(true));
    drop(bundle);
    drop(bytes);
    let sections: std::collections::BTreeMap<String, usize> = by_section
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    let r = &plan.report;
    ctx.print(
        json!({
            "record_id": rid,
            "dry_run": args.dry_run,
            "bundle_type": r.bundle_type,
            "resources": r.resources,
            "written": written,
            "marked_in_error": retracted,
            "imported": r.imported,
            "retracted": r.retracted,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "skipped": r.skipped,
            "by_type": r.by_type,
            "sections": sections,
            "unknown_types": r.unknown_types,
            "kept_as_documents": r.kept_as_documents,
            "extensions": r.extensions,
            "notes": r.notes,
            "patient_check": patient_json(&check, overridden),
        }),
        || {
            let verb = if args.dry_run { "Would import" } else { "Imported" };
            let mut s = format!(
                "{verb} {} new entries and {} new versions from a {} bundle of {} resources \
                 ({} already in the record, {} skipped).",
                r.imported, r.updated, r.bundle_type, r.resources, r.unchanged, r.skipped
            );
            s.push_str(&format!("\nPatient check: {}", check.words()));
            if overridden {
                s.push_str(if args.dry_run {
                    " (--accept-different-patient would import it anyway)"
                } else {
                    " (imported anyway: --accept-different-patient)"
                });
            } else if verdict.is_err() {
                s.push_str(" (the import would be refused)");
            } else {
                s.push('.');
            }
            s.push_str(
                "\n\nBy resource type (new / updated / already present / skipped / retracted):",
            );
            for (t, c) in &r.by_type {
                s.push_str(&format!(
                    "\n  {t:<24} {:>5} {:>5} {:>5} {:>5} {:>5}",
                    c.imported, c.updated, c.unchanged, c.skipped, c.retracted
                ));
            }
            if r.retracted > 0 {
                let verb = if args.dry_run { "Would mark" } else { "Marked" };
                s.push_str(&format!(
                    "\n{verb} {} entries entered in error: the system they came from marks \
                     them so.",
                    r.retracted
                ));
            }
            if !sections.is_empty() {
                s.push_str("\n\nInto sections:");
                for (name, n) in &sections {
                    s.push_str(&format!("\n  {name:<32} {n:>5}"));
                }
            }
            if !r.unknown_types.is_empty() {
                s.push_str("\n\nUnknown resource types, kept whole as documents entries:");
                for (t, n) in &r.unknown_types {
                    s.push_str(&format!("\n  {t:<32} {n:>5}"));
                }
            }
            if !r.kept_as_documents.is_empty() {
                s.push_str("\n\nKept whole as documents entries (no typed home, or missing what one needs):");
                for (t, n) in &r.kept_as_documents {
                    s.push_str(&format!("\n  {t:<32} {n:>5}"));
                }
            }
            if !r.extensions.is_empty() {
                s.push_str("\n\nExtensions, kept with their resources:");
                for (u, n) in &r.extensions {
                    s.push_str(&format!("\n  {u} ({n})"));
                }
            }
            for n in &r.notes {
                s.push_str(&format!("\n{n}"));
            }
            s
        },
    );
    verdict.map(|_| ())
}

/// The patient check as JSON: the outcome (`same`, `different`, `unchecked`), the facts, and
/// whether `--accept-different-patient` overrode it.
fn patient_json(check: &PatientCheck, overridden: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(check).unwrap_or_else(|_| json!({}));
    v["words"] = json!(check.words());
    v["accepted_different_patient"] = json!(overridden);
    v
}
