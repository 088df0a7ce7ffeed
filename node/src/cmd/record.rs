//! `hearth record add|show|sections|history|correct|mark-error|dispute|withdraw-dispute`:
//! reading and writing the record's entries, and the patient's disputes of them. (`record import` and `record export` are FHIR's: `cmd::fhir`.) What is
//! shown, and who is vouched for, is in `show.rs`.

mod show;

use crate::app::audit::{note_read, note_write};
use crate::app::parse::{section_name, which_record};
use crate::app::{Ctx, now, os_rng};
use crate::fail::{Failure, code};
use clap::{Args, Subcommand};
use hearth_core::entry::dispute::checked_reason;
use hearth_core::ids::{DisputeId, EntryId, RecordId, SectionId};
use hearth_core::section::SectionName;
use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;

/// The largest entry file accepted (entries are bounded by their schema far below this).
pub const MAX_ENTRY_FILE: u64 = 4 * 1024 * 1024;

/// Where an entry's JSON comes from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct EntrySource {
    /// The entry as JSON text.
    #[arg(long, value_name = "JSON")]
    pub entry: Option<String>,
    /// A file holding the entry as JSON (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// `hearth record …`.
#[derive(Subcommand, Debug)]
pub enum RecordCommand {
    /// Add an entry to a section (created on first use). Prints the entry id.
    Add {
        /// The section: `class[:label]`, e.g. `notes` or `notes:mental-health`.
        section: String,
        /// Sensitivity label (alternative to `class:label`).
        #[arg(long)]
        label: Option<String>,
        /// The entry.
        #[command(flatten)]
        source: EntrySource,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Show current entries, of one section or of all readable sections.
    Show {
        /// The section (`class[:label]`); all sections when omitted.
        section: Option<String>,
        /// Sensitivity label (alternative to `class:label`).
        #[arg(long)]
        label: Option<String>,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// List the sections this node holds and can read.
    Sections {
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Every version in a section: who wrote what, when, and which version.
    History {
        /// The section (`class[:label]`).
        section: String,
        /// Sensitivity label (alternative to `class:label`).
        #[arg(long)]
        label: Option<String>,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Correct an entry: write a new version that replaces it (the old one stays in history).
    Correct {
        /// The id of the newest version of the entry.
        entry_id: String,
        /// The corrected entry.
        #[command(flatten)]
        source: EntrySource,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Mark an entry as entered in error (it stays in history, flagged, with the reason).
    MarkError {
        /// The id of the newest version of the entry.
        entry_id: String,
        /// Why it is in error.
        #[arg(long)]
        reason: String,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Dispute an entry (the patient's devices only): say why you disagree with it. The entry
    /// stays as its author wrote it; everyone who may read it sees the dispute with it.
    Dispute {
        /// The id of the newest version of the entry.
        entry_id: String,
        /// Why you dispute it: one line, at most 1000 characters.
        #[arg(long)]
        reason: String,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
    /// Withdraw one of your disputes (it is no longer shown).
    WithdrawDispute {
        /// The dispute's id (`record show` gives it).
        dispute_id: String,
        /// The record (default: this patient's own).
        #[arg(long, value_name = "RECORD_ID")]
        record: Option<String>,
    },
}

/// `hearth record …` (but `import` and `export`: see `cmd::fhir`).
pub fn record(ctx: &Ctx, cmd: RecordCommand) -> Result<(), Failure> {
    // Parse and validate arguments before asking for the passphrase or opening anything.
    let (info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rng = os_rng();
    match cmd {
        RecordCommand::Add {
            section,
            label,
            source,
            record,
        } => {
            let name = section_name(&section, label.as_deref())?;
            let body = read_entry(ctx, &source)?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let id = rec.add_entry(&name, &body, now(), &mut rng)?;
            note_write(&vault, &identity, &rec, &name, id, now());
            ctx.print(
                json!({"entry_id": id, "record_id": rid, "section": name.to_string()}),
                || id.to_string(),
            );
        }
        RecordCommand::Show {
            section,
            label,
            record,
        } => {
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let names: Vec<SectionName> = match &section {
                Some(s) => vec![section_name(s, label.as_deref())?],
                None => rec.sections().into_iter().map(|s| s.name).collect(),
            };
            note_read(&vault, &identity, &rec, &names, now())?;
            return show::show(ctx, &mut rec, &identity, names, section.is_some());
        }
        RecordCommand::Sections { record } => {
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let mut out = Vec::new();
            for s in rec.sections() {
                let count = rec.show(&s.name).map(|v| v.entries.len());
                out.push((s, count));
            }
            let json_sections: Vec<Value> = out
                .iter()
                .map(|(s, c)| {
                    json!({
                        "section": s.name.to_string(),
                        "class": s.name.class,
                        "label": s.name.label,
                        "ids": s.ids,
                        "heads": section_heads(&vault, &rid, &s.ids),
                        "entries": c.as_ref().ok(),
                        "error": c.as_ref().err().map(ToString::to_string),
                    })
                })
                .collect();
            ctx.print(json!({"record_id": rid, "sections": json_sections}), || {
                out.iter()
                    .map(|(s, c)| match c {
                        Ok(n) => format!(
                            "{:<40} {n} {}",
                            s.name.to_string(),
                            if *n == 1 { "entry" } else { "entries" }
                        ),
                        Err(e) => format!("{:<40} unreadable: {e}", s.name.to_string()),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            if let Some((_, Err(e))) = out.iter().find(|(_, c)| c.is_err()) {
                return Err(Failure::new(
                    code::INTEGRITY,
                    format!("some sections are unreadable: {e}"),
                ));
            }
        }
        RecordCommand::History {
            section,
            label,
            record,
        } => {
            let name = section_name(&section, label.as_deref())?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            note_read(&vault, &identity, &rec, std::slice::from_ref(&name), now())?;
            return show::history(ctx, &mut rec, &identity, &name);
        }
        RecordCommand::Correct {
            entry_id,
            source,
            record,
        } => {
            let entry = parse_entry_id(&entry_id)?;
            let body = read_entry(ctx, &source)?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let id = rec.correct(&entry, &body, now(), &mut rng)?;
            if let Ok(name) = rec.section_of(&id) {
                note_write(&vault, &identity, &rec, &name, id, now());
            }
            ctx.print(
                json!({"entry_id": id, "supersedes": entry, "record_id": rid}),
                || id.to_string(),
            );
        }
        RecordCommand::MarkError {
            entry_id,
            reason,
            record,
        } => {
            let entry = parse_entry_id(&entry_id)?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let id = rec.mark_error(&entry, &reason, now(), &mut rng)?;
            if let Ok(name) = rec.section_of(&id) {
                note_write(&vault, &identity, &rec, &name, id, now());
            }
            ctx.print(
                json!({"entry_id": id, "supersedes": entry, "record_id": rid, "status": "entered-in-error"}),
                || id.to_string(),
            );
        }
        RecordCommand::Dispute {
            entry_id,
            reason,
            record,
        } => {
            let entry = parse_entry_id(&entry_id)?;
            checked_reason(&reason).map_err(|e| Failure::new(code::INVALID, e.to_string()))?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let id = rec.dispute(&entry, &reason, now(), &mut rng)?;
            ctx.print(
                json!({"dispute_id": id, "entry_id": entry, "record_id": rid}),
                || id.to_string(),
            );
        }
        RecordCommand::WithdrawDispute { dispute_id, record } => {
            let dispute = dispute_id
                .parse::<DisputeId>()
                .map_err(|e| Failure::new(code::INVALID, format!("dispute id: {e}")))?;
            let rid = which_record(&info, &vault, record.as_deref())?;
            let mut rec = vault.open_record(&identity, &rid)?;
            let (id, entry) = rec.withdraw_dispute(&dispute, now(), &mut rng)?;
            ctx.print(
                json!({"withdrawal_id": id, "dispute_id": dispute, "entry_id": entry, "record_id": rid}),
                || format!("withdrew dispute {dispute}"),
            );
        }
    }
    Ok(())
}

/// The log heads held of a section, for `record sections --json`: for each of its ids, each
/// author's newest sequence number and bundle hash (ids, counts and hashes only, no content).
/// Two nodes holding the same bundles of a section show the same heads.
fn section_heads<S: hearth_core::store::Store>(
    vault: &hearth_core::record::Vault<S>,
    record: &RecordId,
    ids: &[SectionId],
) -> Value {
    let mut out = serde_json::Map::new();
    for sid in ids {
        let heads: serde_json::Map<String, Value> = vault
            .heads(record, sid)
            .unwrap_or_default()
            .into_iter()
            .map(|(author, h)| {
                (
                    author.to_string(),
                    json!({"seq": h.seq, "hash": h.hash.to_string()}),
                )
            })
            .collect();
        out.insert(sid.to_string(), Value::Object(heads));
    }
    Value::Object(out)
}

fn parse_entry_id(s: &str) -> Result<EntryId, Failure> {
    s.parse::<EntryId>()
        .map_err(|e| Failure::new(code::INVALID, format!("entry id: {e}")))
}

fn read_entry(ctx: &Ctx, source: &EntrySource) -> Result<Value, Failure> {
    let text = match (&source.entry, &source.file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => {
            let cannot = |e: std::io::Error| {
                Failure::new(code::INVALID, format!("cannot read {}: {e}", p.display()))
            };
            let bytes = if p.as_os_str() == "-" {
                ctx.read_stdin(MAX_ENTRY_FILE + 1).map_err(cannot)?
            } else {
                let mut buf = Vec::new();
                std::fs::File::open(p)
                    .and_then(|f| f.take(MAX_ENTRY_FILE + 1).read_to_end(&mut buf))
                    .map_err(cannot)?;
                buf
            };
            if bytes.len() as u64 > MAX_ENTRY_FILE {
                return Err(Failure::new(
                    code::INVALID,
                    "the entry file is larger than 4 MiB",
                ));
            }
            String::from_utf8(bytes).map_err(|_| {
                cannot(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                ))
            })?
        }
        (None, None) => return Err(Failure::new(code::INVALID, "give --entry or --file")),
    };
    serde_json::from_str(&text).map_err(|e| {
        // serde_json's message names the position and kind of error, never the content.
        Failure::new(
            code::INVALID,
            format!(
                "the entry is not valid JSON (line {}, column {}: {})",
                e.line(),
                e.column(),
                json_error_kind(&e)
            ),
        )
    })
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}
