//! Command-line definitions (parsing only; [`crate::commands`] does the work).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Hearth: a patient-owned, encrypted care record for integrated health and social care.
#[derive(Parser, Debug)]
#[command(name = "hearth", version, about, long_about = None)]
pub struct Cli {
    /// The node's home folder (default: $HEARTH_HOME or the platform data folder).
    #[arg(long, global = true, env = "HEARTH_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Read the passphrase from this file (first line) instead of $HEARTH_PASSPHRASE or a prompt.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The role of a new node.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// A patient (or proxy) holding their own record.
    Patient,
    /// A professional who is granted access to patients' records.
    Professional,
    /// An organisation's relay node.
    Relay,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this node's keys (and, for a patient, the record). Shows the recovery phrase once.
    Init(InitArgs),
    /// Show this node's identity: peer id, role, name, record id.
    Id,
    /// Read and write the record.
    #[command(subcommand)]
    Record(RecordCommand),
}

/// `hearth init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The node's role.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Display name (the patient's name, the professional's name, or the organisation's).
    #[arg(long)]
    pub name: Option<String>,
    /// The patient's NHS number (10 digits; checked with Modulus 11).
    #[arg(long, value_name = "N")]
    pub nhs_number: Option<String>,
}

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
}
