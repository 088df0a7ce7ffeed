//! `hearth record export --fhir FILE | --automerge DIR`: the record's readable sections as a
//! FHIR R4 Bundle (with the grants as `Consent` resources and, on the patient's node, the audit
//! log as `AuditEvent` resources) or as automerge documents.

use crate::app::audit::{Names, checked_log, problem};
use crate::app::parse::{parse_spec, which_record};
use crate::app::{Ctx, invalid, now};
use crate::fail::{Failure, code};
use crate::home::atomic_write;
use crate::sled_store::SledStore;
use clap::{ArgGroup, Args};
use hearth_core::audit::{Action, Verified};
use hearth_core::fhir::{
    self, AuditEvents, AuditNames, ExportExtension, ExportOptions, GrantConsents, PeerName,
    RawExportInput,
};
use hearth_core::grant::Grant;
use hearth_core::ids::{EntryId, PeerKey};
use hearth_core::keys::Identity;
use hearth_core::record::{OpenRecord, RawSectionView, RecordError, Vault};
use hearth_core::section::{SectionName, SectionSpec};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// `hearth record export`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("format").required(true).args(["fhir", "automerge"])))]
pub struct ExportArgs {
    /// Write a FHIR R4 Bundle (type collection) with a Provenance for every entry to FILE (`-`:
    /// standard output, the bundle alone).
    #[arg(long, value_name = "FILE")]
    pub fhir: Option<PathBuf>,
    /// Write each section as a standard automerge document file into DIR, with index.json.
    #[arg(long, value_name = "DIR")]
    pub automerge: Option<PathBuf>,
    /// Only these sections: `class[:label]`, comma-separated; `class:*` for every label.
    #[arg(long, value_name = "SPEC")]
    pub sections: Option<String>,
    /// FHIR: build every resource from the entries' fields, ignoring resources kept at import.
    #[arg(long, requires = "fhir")]
    pub rebuild: bool,
    /// FHIR: also write entries marked entered in error, with FHIR's `entered-in-error` status
    /// (for a system that holds an earlier export, so that it learns of the retraction).
    #[arg(long, requires = "fhir")]
    pub include_in_error: bool,
    /// FHIR: leave the grants out (by default each grant is written as a `Consent`: every grant
    /// of the record for the patient, the grants this node holds for a professional).
    #[arg(long, requires = "fhir")]
    pub no_consent: bool,
    /// FHIR: leave the audit log out (by default the patient's node writes every event of the
    /// record's audit log as an `AuditEvent`; other nodes have no audit log to write).
    #[arg(long, requires = "fhir")]
    pub no_audit: bool,
    /// The record (default: this patient's own).
    #[arg(long, value_name = "RECORD_ID")]
    pub record: Option<String>,
}

/// The readable sections matching `spec` (all of them without one), with their current entries.
fn selected(
    rec: &mut OpenRecord<'_, SledStore>,
    spec: Option<&SectionSpec>,
) -> Result<Vec<SectionName>, Failure> {
    let names: Vec<SectionName> = rec
        .sections()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| spec.is_none_or(|s| s.matches(n)))
        .collect();
    Ok(names)
}

/// `hearth record export --fhir FILE | --automerge DIR`.
pub fn export(ctx: &Ctx, args: ExportArgs) -> Result<(), Failure> {
    let spec = args.sections.as_deref().map(parse_spec).transpose()?;
    let (info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let rid = which_record(&info, &vault, args.record.as_deref())?;
    let t = now();
    // Only the patient's node has the audit log: there it is brought up to date with this
    // device's own receipts and checked, as `hearth audit` does.
    let audit_log = args.fhir.is_some() && !args.no_audit && identity.record_id() == Some(rid);
    let (mut rec, verified) = if audit_log {
        let (rec, verified) = checked_log(&vault, &identity, t)?;
        (rec, Some(verified))
    } else {
        (vault.open_record(&identity, &rid)?, None)
    };
    let names = selected(&mut rec, spec.as_ref())?;
    match (&args.fhir, &args.automerge) {
        (Some(file), _) => {
            let mut views: Vec<RawSectionView> = Vec::new();
            for name in &names {
                views.push(rec.show_raw(name).map_err(|e| section_failure(name, e))?);
            }
            let input = RawExportInput {
                record: rid,
                sections: &views,
                now: t,
            };
            let options = ExportOptions {
                rebuild: args.rebuild,
                include_in_error: args.include_in_error,
            };
            let consents = if args.no_consent {
                GrantConsents::default()
            } else {
                grant_consents(&vault, &rec)?
            };
            let (audit, problems) = match verified {
                Some(v) => audit_events(&mut rec, &identity, v, t),
                None => (AuditEvents::default(), Vec::new()),
            };
            let extensions: [&dyn ExportExtension; 2] = [&consents, &audit];
            let (bytes, report) = fhir::export_raw_json(&input, options, &extensions, true)
                .map_err(|e| Failure::new(code::IO, format!("encoding the bundle: {e}")))?;
            if file.as_os_str() == "-" {
                // To standard output (the web app's download): the bundle alone, no summary.
                return ctx.write_raw(&bytes);
            }
            atomic_write(file, &bytes)?;
            let total: usize = report.resources.values().sum();
            ctx.print(
                json!({
                    "record_id": rid,
                    "file": file,
                    "sections": names.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "resources": report.resources,
                    "from_imported": report.from_imported,
                    "built": report.built,
                    "left_out_in_error": report.left_out_in_error,
                    "in_error": report.in_error,
                    "references_cut": report.references_cut,
                    "consents": report.resources.get("Consent").copied().unwrap_or(0),
                    "audit_events": report.resources.get("AuditEvent").copied().unwrap_or(0),
                    "audit_problems": problems,
                }),
                || {
                    let mut s = format!(
                        "Wrote a FHIR R4 Bundle of {total} resources from {} sections to {} \
                         (not encrypted: keep it safe).",
                        names.len(),
                        file.display()
                    );
                    for (t, n) in &report.resources {
                        s.push_str(&format!("\n  {t:<24} {n:>5}"));
                    }
                    if report.in_error > 0 {
                        s.push_str(&format!(
                            "\n{} entries marked entered in error were written with the \
                             entered-in-error status.",
                            report.in_error
                        ));
                    }
                    if report.left_out_in_error > 0 {
                        s.push_str(&format!(
                            "\n{} entries marked entered in error were left out.",
                            report.left_out_in_error
                        ));
                    }
                    if report.references_cut > 0 {
                        s.push_str(&format!(
                            "\n{} references to resources outside the chosen sections were \
                             replaced by their display text.",
                            report.references_cut
                        ));
                    }
                    if !problems.is_empty() {
                        s.push_str(&format!(
                            "\nThe audit log has {} problem(s), which are not AuditEvents and are \
                             not in the file (`hearth audit verify` shows them):",
                            problems.len()
                        ));
                        for p in &problems {
                            s.push_str(&format!("\n  - {}", p["words"].as_str().unwrap_or("")));
                        }
                    }
                    s
                },
            );
        }
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::new(code::IO, format!("cannot create {}: {e}", dir.display()))
            })?;
            let mut index = Vec::new();
            for name in &names {
                let bytes = rec
                    .section_document(name)
                    .map_err(|e| section_failure(name, e))?;
                let file = format!(
                    "{}.{}.automerge",
                    name.class.as_str().replace('/', "_"),
                    name.label.as_str()
                );
                atomic_write(&dir.join(&file), &bytes)?;
                index.push(json!({
                    "section": name.to_string(),
                    "class": name.class,
                    "label": name.label,
                    "file": file,
                    "bytes": bytes.len(),
                }));
            }
            let doc = json!({
                "format": "hearth-automerge-export/1",
                "record_id": rid,
                "exported_at": now(),
                "layout": "Each file is a standard automerge document (AutoCommit::save). Its root \
                           map holds one key per entry version, e/<entry id>, whose value is that \
                           version as JSON text: {id, type, version, supersedes, status, \
                           status_reason, body, provenance}. The current entries are the versions \
                           no other version supersedes.",
                "sections": index,
            });
            let text = serde_json::to_vec_pretty(&doc)
                .map_err(|e| Failure::new(code::IO, format!("encoding index.json: {e}")))?;
            atomic_write(&dir.join("index.json"), &text)?;
            ctx.print(
                json!({"record_id": rid, "dir": dir, "sections": doc["sections"]}),
                || {
                    format!(
                        "Wrote {} sections as automerge documents to {} (index.json lists them; \
                         not encrypted: keep them safe).",
                        names.len(),
                        dir.display()
                    )
                },
            );
        }
        (None, None) => return Err(invalid("give --fhir FILE or --automerge DIR")),
    }
    Ok(())
}

/// The grants to export as `Consent` resources. The patient (any of their devices) exports
/// every grant of the record in its auth document, active, expired or revoked; a professional
/// exports only the grants it holds itself (not the other grants it may see in the auth
/// document: who else the patient shares with, and which sections, is the patient's to tell).
/// Revocations come from the auth document in both cases.
fn grant_consents(
    vault: &Vault<SledStore>,
    rec: &OpenRecord<'_, SledStore>,
) -> Result<GrantConsents, Failure> {
    let revoked = rec.revoked_grants();
    let chains: Vec<Vec<Grant>> = if rec.is_owner() {
        rec.recorded_chains()
    } else {
        vault.held_chains(&rec.id())?
    };
    Ok(GrantConsents::new(chains, revoked))
}

/// The checked audit log as `AuditEvent`s, each peer and section named as `hearth audit`
/// names them (the patient's devices as "the patient's device", not "this device": the file
/// leaves this device), and the log's problems in words for the report.
fn audit_events(
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    verified: Verified,
    t: Timestamp,
) -> (AuditEvents, Vec<Value>) {
    let names = Names::of(rec, identity, t);
    let devices: BTreeMap<PeerKey, String> = rec
        .all_device_certs()
        .into_iter()
        .map(|d| (d.peer, d.name))
        .collect();
    let mut out = AuditNames::default();
    let mut written: BTreeSet<EntryId> = BTreeSet::new();
    let mut written_in: BTreeSet<SectionName> = BTreeSet::new();
    for ev in &verified.events {
        let e = ev.event();
        let peer_to = match &e.action {
            Action::Served { to, .. } => Some(*to),
            Action::Read { .. } | Action::Approved { .. } | Action::Denied { .. } => None,
            Action::Wrote {
                section, entries, ..
            } => {
                written.extend(entries);
                written_in.extend(rec.directory().get(&section.section).copied());
                None
            }
        };
        // Who used emergency access is named from the credential they presented.
        if let Action::Served {
            to,
            emergency: Some(m),
            ..
        } = &e.action
        {
            let display = names.emergency_user(to, m, e.at);
            let verified = display.ends_with(", verified)");
            out.peers.insert(*to, PeerName { display, verified });
        }
        for peer in std::iter::once(e.writer).chain(peer_to) {
            out.peers
                .entry(peer)
                .or_insert_with(|| match devices.get(&peer) {
                    Some(n) => PeerName {
                        display: format!("the patient's device \"{n}\""),
                        verified: true,
                    },
                    None => {
                        let (display, verified) = names.who(&peer);
                        PeerName { display, verified }
                    }
                });
        }
        for s in e.action.sections() {
            if let Some(n) = names.sections(&[s]).0.pop() {
                out.sections.entry(s.section).or_insert(n);
            }
        }
    }
    // Which writes were new versions of earlier entries (corrections, retractions). A section
    // that cannot be read here leaves its writes counted as created, and the export goes on.
    for name in written_in {
        for v in rec.history(&name).unwrap_or_default() {
            if v.supersedes.is_some() && written.contains(&v.id) {
                out.new_versions.insert(v.id);
            }
        }
    }
    let problems = verified
        .problems
        .iter()
        .map(|p| problem(p, &names))
        .collect();
    (AuditEvents::new(verified.events, out), problems)
}

fn section_failure(name: &SectionName, e: RecordError) -> Failure {
    let f = Failure::from(e);
    Failure::new(f.code, format!("section {name}: {}", f.message))
}
