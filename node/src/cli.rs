//! Command-line definitions (parsing only; [`crate::commands`] does the work).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Hearth: a patient-owned, encrypted care record for integrated health and social care.
#[derive(Parser, Debug)]
#[command(name = "hearth", version)]
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
    Id {
        /// Print this node's contact card (HEARTH1I…): give it to a patient so that a grant
        /// can carry the section keys at once.
        #[arg(long)]
        card: bool,
    },
    /// Read and write the record.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Grant access to sections of your record (patient), or list, show and verify grants.
    Grant(GrantArgs),
    /// Accept a grant given to this node: checks it and stores it with any keys it carries.
    Accept {
        /// The grant's text form (HEARTH1G…).
        token: String,
    },
    /// Ask a patient for access (professional): prints the request's text form.
    Request(RequestArgs),
    /// Access requests (patient): list pending ones, receive, approve or deny.
    Requests {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<RequestsCommand>,
    },
    /// Organisation (relay node) actions.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Organisations you trust to attest professionals' identities (patient).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Credentials your organisation issued you (professional).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Run the node in the foreground: network, live sync and the local API (Ctrl-C stops it).
    /// While it runs, the other commands talk to it.
    Run(RunArgs),
    /// The node's network status: peer id, listen addresses, local API, connected peers, and per
    /// record and section whether it is in sync.
    Status,
    /// Known peers and their addresses (list, or add one).
    Peers {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<PeersCommand>,
    },
    /// Sync now, with one peer or with every connected and known peer.
    Sync(SyncArgs),
    /// The patients' records this node holds (professional), with names where readable.
    Patients,
    /// Your choices about research and planning uses of your record (patient): show them, or
    /// opt in or out (`hearth consent research on`). Both are off until you choose.
    Consent(crate::extract_cmd::ConsentArgs),
    /// De-identified extracts: contribute your record to a research or planning recipient
    /// (patient), or count the contributions received (recipient).
    #[command(subcommand)]
    Extract(crate::extract_cmd::ExtractCommand),
    /// Your own devices (patient): link a new one, list them, remove one.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Writes held for your review (patient): made while a grant was valid but received after
    /// it expired or was revoked. List them, or accept or reject one.
    Review {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<crate::review_cmd::ReviewCommand>,
    },
}

/// `hearth device …`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Print a one-time code (and QR code) that links a new device to your record: run
    /// `hearth init --join CODE` on the new device. Waits for it unless the daemon runs.
    Link {
        /// How long the code stays valid, in seconds.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        ttl: u64,
        /// Without a running daemon: listen here for the new device (repeatable). Default:
        /// every interface, TCP, a free port.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// The devices that hold your record, and those removed.
    List,
    /// Remove a device: it is no longer served or trusted, and every section moves to new
    /// keys it does not get.
    Remove {
        /// The device's peer id (see `hearth device list`).
        device: String,
    },
}

/// `hearth run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Listen on this address (repeatable); an address in use is refused. Default: the last
    /// run's addresses (a port taken since is replaced by a fresh one), else
    /// /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Seconds between background sync rounds with connected peers.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub sync_interval: u64,
    /// Discover peers on the local network with mDNS (builds with the `mdns` feature only;
    /// announces this node's peer id on the network).
    #[arg(long)]
    pub mdns: bool,
}

/// `hearth peers …`.
#[derive(Subcommand, Debug)]
pub enum PeersCommand {
    /// Remember a peer's address; the daemon dials it and keeps it connected.
    Add {
        /// The peer id.
        peer: String,
        /// Its address, e.g. /ip4/192.0.2.7/tcp/4001.
        multiaddr: String,
    },
}

/// `hearth sync`.
#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Sync with this peer only.
    #[arg(long, value_name = "PEER")]
    pub with: Option<String>,
    /// Wait until in sync (exit 0), or fail with the reason.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `hearth grant …`: issue (with --to), or a subcommand.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GrantArgs {
    /// list, show, verify.
    #[command(subcommand)]
    pub cmd: Option<GrantCommand>,
    /// Who: a peer id, or a contact card (HEARTH1I…) so the grant carries the keys.
    #[arg(long, value_name = "PEER")]
    pub to: Option<String>,
    /// Which sections: `class[:label]`, comma-separated; `class:*` for every label.
    #[arg(long, value_name = "SPEC")]
    pub sections: Option<String>,
    /// read or append.
    #[arg(long)]
    pub ability: Option<String>,
    /// Why: direct-care (default), social-care, emergency, research, planning.
    #[arg(long, default_value = "direct-care")]
    pub purpose: String,
    /// For how long: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years. Mandatory; the end is shown.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// How many further delegations the holder may make (0: none; 1: an organisation may
    /// delegate to its staff).
    #[arg(long, default_value_t = 0)]
    pub depth: u8,
    /// Also print the token as a QR code in the terminal.
    #[arg(long)]
    pub qr: bool,
    /// Also write the token as a QR code SVG file.
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
}

/// `hearth grant list|show|verify|revoke|delegate`.
#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// The consent ledger in plain words: grants, requests, decisions, trust.
    List,
    /// One grant in full, or as FHIR Consent / SMART scopes.
    Show {
        /// The grant id (g…), or a unique prefix of it.
        id: String,
        /// Print it as a FHIR R4 Consent resource.
        #[arg(long, conflicts_with = "smart")]
        fhir: bool,
        /// Print its SMART v2 scope strings.
        #[arg(long)]
        smart: bool,
    },
    /// Check a grant: exit 0 and the rights if valid, non-zero and the reason if not.
    Verify {
        /// The grant's text form.
        token: String,
        /// Check as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339_TIME")]
        at: Option<String>,
    },
    /// Revoke a grant you issued (patient): holders are refused from now on.
    Revoke {
        /// The grant id.
        id: String,
    },
    /// Delegate part of a grant you hold to someone else (an organisation to its staff).
    Delegate {
        /// The grant id held (g…).
        id: String,
        /// Who.
        #[arg(long, value_name = "PEER")]
        to: String,
        /// Which sections (within the held grant).
        #[arg(long, value_name = "SPEC")]
        sections: String,
        /// read or append (within the held grant).
        #[arg(long)]
        ability: String,
        /// For how long (within the held grant): a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: String,
    },
}

/// `hearth request …`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The patient's record id.
    #[arg(long, value_name = "PATIENT_ID")]
    pub to: String,
    /// Which sections.
    #[arg(long, value_name = "SPEC")]
    pub sections: String,
    /// read or append.
    #[arg(long)]
    pub ability: String,
    /// Why: direct-care, social-care, emergency, research, planning.
    #[arg(long)]
    pub purpose: String,
    /// For how long access is asked (from its approval): a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
    #[arg(long, value_name = "DURATION")]
    pub expires: String,
    /// The reason, shown to the patient.
    #[arg(long)]
    pub reason: String,
    /// Print the request as a QR code too.
    #[arg(long)]
    pub qr: bool,
}

/// `hearth requests …`.
#[derive(Subcommand, Debug)]
pub enum RequestsCommand {
    /// Receive a request (its text form, from the requester).
    Add {
        /// The request's text form (HEARTH1R…).
        token: String,
    },
    /// Approve: issues a grant, possibly narrower than asked.
    Approve {
        /// The request id (q…), or a unique prefix.
        id: String,
        /// Grant fewer sections than asked.
        #[arg(long, value_name = "SPEC")]
        sections: Option<String>,
        /// Grant for less time than asked: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Deny.
    Deny {
        /// The request id.
        id: String,
        /// Why (kept in your ledger).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `hearth org …`.
#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Attest a member of staff's identity: prints a credential to give them.
    Attest {
        /// The staff member's peer id.
        #[arg(long, value_name = "PEER")]
        staff: String,
        /// Their name.
        #[arg(long)]
        name: String,
        /// Their role (e.g. an NHS job role code or title).
        #[arg(long)]
        role: String,
        /// Their professional registration number.
        #[arg(long)]
        registration: String,
        /// Your organisation's code (e.g. ODS code).
        #[arg(long)]
        org_code: Option<String>,
        /// For how long: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: String,
    },
}

/// `hearth trust …`.
#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Trust an organisation to attest professionals.
    AddOrg {
        /// The organisation's peer id.
        org_id: String,
        /// A name to show for it.
        #[arg(long)]
        name: Option<String>,
    },
    /// The organisations you trust.
    List,
}

/// `hearth credential …`.
#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Store a credential your organisation gave you; requests then carry it.
    Add {
        /// The credential's text form (HEARTH1C…).
        token: String,
    },
    /// The credentials held.
    List,
}

/// `hearth init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The node's role.
    #[arg(long, value_enum, required_unless_present = "join")]
    pub role: Option<RoleArg>,
    /// Join a patient's record as another of their devices, with the one-time code that
    /// `hearth device link` printed on the device holding the record (HEARTH1L…).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["role", "nhs_number"])]
    pub join: Option<String>,
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
    /// Import a FHIR R4 Bundle: every resource becomes a typed entry (all or nothing; data
    /// already imported is not added twice).
    Import(crate::fhir_cmd::ImportArgs),
    /// Export the record as a FHIR R4 Bundle (--fhir FILE) or as automerge documents
    /// (--automerge DIR).
    Export(crate::fhir_cmd::ExportArgs),
}
