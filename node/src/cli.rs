//! The command line: the top-level [`Cli`] and [`Command`], composed from the argument types
//! of the command groups in [`crate::cmd`], and the dispatch ([`run`], [`run_in`]).
//!
//! This is the top of the node's layers: it alone knows every command. It hands the daemon
//! the runner of forwarded commands ([`exec_in_daemon`]) when `hearth run` starts it, and
//! tells the forwarding client ([`forward`]) what it needs to know about a command, so that
//! the engine below never calls up into the commands.

use crate::api::{ExecCall, ExecResponse};
use crate::app::{Ctx, InDaemon};
use crate::cmd::record::RecordCommand;
use crate::cmd::{
    audit, device, emergency, extract, fhir, grant, init, net, org, record, recover, relay,
    request, review, store, trust, ui,
};
use crate::fail::{Failure, code};
use crate::home::{self, Home};
use crate::live;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{LazyLock, Mutex};

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

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this node's keys (and, for a patient, the record). Shows the recovery phrase once.
    Init(init::InitArgs),
    /// Restore your record on a new device from your 24-word recovery phrase and a relay that
    /// kept it (patient).
    Recover(recover::RecoverArgs),
    /// Show this node's identity: peer id, role, name, record id.
    Id {
        /// Print this node's contact card (HEARTH1I…): give it to a patient so that a grant
        /// can carry the section keys at once.
        #[arg(long)]
        card: bool,
    },
    /// Read and write the record.
    #[command(subcommand)]
    Record(RecordGroup),
    /// Grant access to sections of your record (patient), or list, show and verify grants.
    Grant(grant::GrantArgs),
    /// Accept a grant given to this node: checks it and stores it with any keys it carries.
    Accept {
        /// The grant's text form (HEARTH1G…).
        token: String,
    },
    /// Ask a patient for access (professional): prints the request's text form.
    Request(request::RequestArgs),
    /// Access requests (patient): list pending ones, receive, approve or deny.
    Requests {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<request::RequestsCommand>,
    },
    /// Organisation (relay node) actions.
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Organisation relays: ask one to keep your record reachable (`use`), list your record's
    /// relays, or (on a relay node) show what it keeps.
    #[command(subcommand)]
    Relay(relay::RelayCommand),
    /// Organisations you trust to attest professionals' identities (patient).
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Credentials your organisation issued you (professional).
    #[command(subcommand)]
    Credential(trust::CredentialCommand),
    /// Run the node in the foreground: network, live sync and the local API (Ctrl-C stops it).
    /// While it runs, the other commands talk to it.
    Run(net::RunArgs),
    /// The node's network status: peer id, listen addresses, local API, connected peers, and per
    /// record and section whether it is in sync.
    Status,
    /// Known peers and their addresses (list, or add one).
    Peers {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<net::PeersCommand>,
    },
    /// Sync now, with one peer or with every connected and known peer.
    Sync(net::SyncArgs),
    /// The patients' records this node holds (professional), with names where readable.
    Patients,
    /// Your choices about research and planning uses of your record (patient): show them, or
    /// opt in or out (`hearth consent research on`). Both are off until you choose.
    Consent(extract::ConsentArgs),
    /// De-identified extracts: contribute your record to a research or planning recipient
    /// (patient), or count the contributions received (recipient).
    #[command(subcommand)]
    Extract(extract::ExtractCommand),
    /// Your own devices (patient): link a new one, list them, remove one.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Writes held for your review (patient): made while a grant was valid but received after
    /// it expired or was revoked. List them, or accept or reject one.
    Review {
        /// What to do (default: list).
        #[command(subcommand)]
        cmd: Option<review::ReviewCommand>,
    },
    /// Who received, read and wrote your record (patient), in plain words, newest first; or
    /// check the whole log (`hearth audit verify`).
    Audit(audit::AuditArgs),
    /// Break-glass: arrange emergency access with an organisation (patient), or use it with
    /// a reason (a professional that organisation attests).
    #[command(subcommand)]
    Emergency(emergency::EmergencyCommand),
    /// Open the web app: prints a one-time login address for your browser (needs `hearth
    /// run`). The passphrase unlocks the node here, once; it never goes to the browser.
    Ui(ui::UiArgs),
    /// This node's store: check every stored item (`check`), or keep what verifies and set
    /// damaged logs back so they are fetched again (`repair`).
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// `hearth record …`: the entries' commands, and FHIR import and export.
#[derive(Subcommand, Debug)]
pub enum RecordGroup {
    /// add, show, sections, history, correct, mark-error.
    #[command(flatten)]
    Entries(record::RecordCommand),
    /// Import a FHIR R4 Bundle: every resource becomes a typed entry (all or nothing; data
    /// already imported is not added twice).
    Import(fhir::ImportArgs),
    /// Export the record as a FHIR R4 Bundle (--fhir FILE) or as automerge documents
    /// (--automerge DIR).
    Export(fhir::ExportArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Ctx::new(
        Home::new(cli.home.clone().unwrap_or_else(home::default_dir)),
        cli.json,
        cli.passphrase_file.clone(),
    );
    run_in(&ctx, cli)
}

/// Runs a parsed command line in `ctx` (the daemon runs forwarded commands this way).
pub fn run_in(ctx: &Ctx, cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init(init::InitArgs {
            join: Some(code),
            name,
            ..
        }) => device::join(ctx, &code, name.as_deref()),
        Command::Init(args) => init::init(ctx, args),
        Command::Recover(args) => recover::recover(ctx, args),
        Command::Id { card } if card => init::card(ctx),
        Command::Id { .. } => init::id(ctx),
        Command::Record(RecordGroup::Entries(cmd)) => record::record(ctx, cmd),
        Command::Record(RecordGroup::Import(args)) => fhir::import(ctx, args),
        Command::Record(RecordGroup::Export(args)) => fhir::export(ctx, args),
        Command::Grant(args) => grant::grant(ctx, args),
        Command::Accept { token } => grant::accept(ctx, &token),
        Command::Request(args) => request::request(ctx, args),
        Command::Requests { cmd } => request::requests(ctx, cmd),
        Command::Org(cmd) => org::org(ctx, cmd),
        Command::Relay(cmd) => relay::relay(ctx, cmd),
        Command::Trust(cmd) => trust::trust(ctx, cmd),
        Command::Credential(cmd) => trust::credential(ctx, cmd),
        Command::Run(args) => net::run(ctx, args, crate::web::commands()),
        Command::Status => net::status(ctx),
        Command::Peers { cmd } => net::peers(ctx, cmd),
        Command::Sync(args) => net::sync(ctx, args),
        Command::Patients => net::patients(ctx),
        Command::Consent(args) => extract::consent(ctx, args),
        Command::Extract(cmd) => extract::extract(ctx, cmd),
        Command::Device(cmd) => device::device(ctx, cmd),
        Command::Review { cmd } => review::review(ctx, cmd),
        Command::Audit(args) => audit::audit(ctx, args),
        Command::Emergency(cmd) => emergency::emergency(ctx, cmd),
        Command::Ui(args) => ui::ui(ctx, args),
        Command::Store(cmd) => store::store(ctx, cmd),
    }
}

/// The command line's parser for the commands a daemon runs, built once: building clap's
/// tree of every command and argument, and dropping it again, was a third of the CPU time of
/// a command such as `record add` run by the daemon (issue #16).
static PARSER: LazyLock<Mutex<clap::Command>> = LazyLock::new(|| Mutex::new(Cli::command()));

/// Parses `args` (the program's name first) as `Cli::try_parse_from` does, with the parser
/// built once (`PARSER`): the same command, or the same error (help and version included).
pub fn parse_in_daemon<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut parser = match PARSER.lock() {
        Ok(p) => p,
        // A parse that panicked may have left the parser half built: build it again.
        Err(poisoned) => {
            let mut p = poisoned.into_inner();
            *p = Cli::command();
            p
        }
    };
    let mut matches = parser.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut parser))
}

/// Runs a command forwarded to the daemon (`POST /api/v1/exec`; the passphrase already
/// checked) against the daemon's open store, capturing its output. The daemon is handed this
/// when `hearth run` starts it.
pub fn exec_in_daemon(mut call: ExecCall) -> ExecResponse {
    let args = std::iter::once("hearth".to_string()).chain(std::mem::take(&mut call.argv));
    let cli = match parse_in_daemon(args) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            return if e.use_stderr() {
                ExecResponse {
                    stdout: String::new(),
                    stderr: text,
                    code: 2,
                }
            } else {
                ExecResponse {
                    stdout: text,
                    stderr: String::new(),
                    code: 0,
                }
            };
        }
    };
    let (stdout, res) = run_captured(call, cli);
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    match res {
        Ok(()) => ExecResponse {
            stdout,
            stderr: String::new(),
            code: 0,
        },
        Err(f) => ExecResponse {
            stdout,
            stderr: format!("error: {}\n", f.message),
            code: f.code,
        },
    }
}

/// Runs a parsed command inside the daemon (forwarded, or a web route's) against its open
/// store, under the lock the sync driver uses unless it is a network command; returns its
/// captured standard output and its result.
pub fn run_captured(call: ExecCall, cli: Cli) -> (Vec<u8>, Result<(), Failure>) {
    if matches!(
        cli.command,
        Command::Init(_) | Command::Run(_) | Command::Recover(_)
    ) {
        return (
            Vec::new(),
            Err(Failure::new(
                code::REFUSED,
                "the daemon is running: stop it before `init` or another `run`",
            )),
        );
    }
    // Network commands wait for the sync driver, which needs the lock: they must not hold it.
    let network = matches!(
        cli.command,
        Command::Status
            | Command::Peers { .. }
            | Command::Sync(_)
            | Command::Patients
            | Command::Relay(relay::RelayCommand::Status)
            | Command::Relay(relay::RelayCommand::Find { .. })
    );
    let reads = only_reads(&cli.command);
    let vault = call.api.command_vault();
    let ctx = Ctx::in_daemon(
        call.home,
        cli.json,
        InDaemon {
            vault,
            passphrase: call.passphrase,
            unlocked: std::cell::RefCell::new(Some(call.identity)),
            node: call.node.clone(),
            stdin: std::cell::RefCell::new(call.stdin),
            api: call.api.clone(),
        },
    );
    let res = if network {
        let res = run_in(&ctx, cli);
        call.node.local_change();
        res
    } else {
        let guard = live::lock(&call.shared);
        let res = run_in(&ctx, cli);
        if reads {
            // A read changes at most its access journal: checked in the background.
            call.node.local_change();
        } else {
            // Checked here, under the lock the command wrote under: the driver only sends.
            call.node.changed(&guard);
        }
        res
    };
    let changes = !reads;
    if changes {
        call.api.changed();
    }
    (ctx.take_output(), res)
}

/// Sends the command to the running daemon, if there is one (see [`crate::client`]). `None`:
/// no daemon answered, or the command runs here anyway; run it locally.
pub fn forward(cli: &Cli, args: &[OsString]) -> Option<ExitCode> {
    // `extract aggregate` reads only the files it is given (no store, no passphrase).
    if matches!(
        cli.command,
        Command::Init(_)
            | Command::Run(_)
            | Command::Recover(_)
            | Command::Extract(extract::ExtractCommand::Aggregate(_))
    ) {
        return None;
    }
    let home = Home::new(cli.home.clone().unwrap_or_else(home::default_dir));
    let ctx = Ctx::new(
        Home::new(home.dir().to_path_buf()),
        cli.json,
        cli.passphrase_file.clone(),
    );
    crate::client::forward(crate::client::Forward {
        home,
        args,
        json: cli.json,
        status: matches!(cli.command, Command::Status),
        have_passphrase: cli.passphrase_file.is_some()
            || std::env::var_os("HEARTH_PASSPHRASE").is_some(),
        paths: path_args(cli),
        stopped: stopped_message(cli),
        passphrase: &|| ctx.passphrase(false),
    })
}

/// Paths in the parsed command that the daemon would resolve against its own folder, each
/// with the most standard input the command reads when the path is `-` (`None`: `-` is not
/// standard input there).
fn path_args(cli: &Cli) -> Vec<(PathBuf, Option<u64>)> {
    let mut out = Vec::new();
    match &cli.command {
        Command::Record(RecordGroup::Entries(
            RecordCommand::Add { source, .. } | RecordCommand::Correct { source, .. },
        )) => {
            out.extend(
                source
                    .file
                    .clone()
                    .map(|f| (f, Some(record::MAX_ENTRY_FILE + 1))),
            );
        }
        Command::Record(RecordGroup::Import(a)) => out.push((
            a.fhir.clone(),
            Some(hearth_core::fhir::MAX_BUNDLE_BYTES + 1),
        )),
        Command::Record(RecordGroup::Export(a)) => {
            // `--fhir -` is standard output (the daemon's answer), not a file.
            out.extend(
                a.fhir
                    .clone()
                    .filter(|f| f.as_os_str() != "-")
                    .map(|f| (f, None)),
            );
            out.extend(a.automerge.clone().map(|f| (f, None)));
        }
        Command::Grant(a) => out.extend(a.qr_svg.clone().map(|f| (f, None))),
        Command::Extract(extract::ExtractCommand::Contribute(a)) => out.push((a.out.clone(), None)),
        _ => {}
    }
    out
}

/// Whether a command only reads: nothing to announce to the web UI's live updates, nothing
/// changed if the daemon stops mid-way. Grant, request and audit listings may record what
/// they found, so they count as changes.
fn only_reads(c: &Command) -> bool {
    matches!(
        c,
        Command::Record(RecordGroup::Entries(
            RecordCommand::Show { .. }
                | RecordCommand::Sections { .. }
                | RecordCommand::History { .. },
        )) | Command::Id { .. }
            | Command::Status
            | Command::Store(store::StoreCommand::Check)
            | Command::Patients
    )
}

/// What to tell the user when the daemon stopped while running `cli`: whether the change
/// was made is unknown, and how to find out.
fn stopped_message(cli: &Cli) -> String {
    let head = "the daemon stopped before answering";
    let unknown = "whether the change was made is unknown";
    match &cli.command {
        Command::Record(RecordGroup::Entries(RecordCommand::Add { section, .. })) => format!(
            "{head}: {unknown}. Check with `hearth record history {section}` before adding it again"
        ),
        Command::Record(RecordGroup::Entries(
            RecordCommand::Correct { .. }
            | RecordCommand::MarkError { .. }
            | RecordCommand::Dispute { .. }
            | RecordCommand::WithdrawDispute { .. },
        )) => format!(
            "{head}: {unknown}. Check with `hearth record show` (and `hearth record history SECTION`) before trying again"
        ),
        Command::Record(RecordGroup::Import(_)) => format!(
            "{head}: {unknown}. Running the import again is safe: data already imported is not added twice"
        ),
        c if only_reads(c) => {
            format!("{head}: this command only reads, nothing was changed; run it again")
        }
        Command::Grant(_) | Command::Accept { .. } => {
            format!("{head}: {unknown}. Check with `hearth grant list` before trying again")
        }
        _ => format!(
            "{head}: {unknown}. Check the result (e.g. with `hearth record show` or the matching list command) before trying again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::keys::{Identity, Role};
    use std::sync::{Arc, Mutex};

    /// What `Cli::try_parse_from` makes of `args`: the command, or the error as printed.
    fn fresh(args: &[&str]) -> Result<String, (String, bool)> {
        Cli::try_parse_from(args)
            .map(|c| format!("{c:?}"))
            .map_err(|e| (e.render().to_string(), e.use_stderr()))
    }

    /// The same through the daemon's parser, built once.
    fn reused(args: &[&str]) -> Result<String, (String, bool)> {
        parse_in_daemon(args)
            .map(|c| format!("{c:?}"))
            .map_err(|e| (e.render().to_string(), e.use_stderr()))
    }

    #[test]
    fn the_daemons_parser_built_once_parses_each_command_as_a_fresh_one_would() {
        let cases: [&[&str]; 8] = [
            &[
                "hearth", "--json", "record", "add", "notes", "--entry", "{}",
            ],
            // Nothing of the one before carries over (`--json`, the entry).
            &["hearth", "record", "show"],
            &[
                "hearth",
                "record",
                "add",
                "notes",
                "--label",
                "mental-health",
                "--entry",
                "{}",
            ],
            &["hearth", "record", "add", "--no-such-flag"],
            &["hearth", "record", "--help"],
            &["hearth", "--version"],
            &["hearth", "no-such-command"],
            &["hearth", "--json", "status"],
        ];
        // Twice over, so that every case also follows every other.
        for args in cases.iter().chain(cases.iter()) {
            assert_eq!(reused(args), fresh(args), "{args:?}");
        }
        assert!(reused(cases[0]).is_ok() && reused(cases[3]).is_err());
    }

    /// A command run by the daemon works through a vault beside the daemon's own, and a
    /// network command gets one, and answers, while a sync job holds the lock its driver's
    /// jobs share (before, making the vault waited for that lock).
    #[test]
    fn a_network_command_in_the_daemon_answers_while_a_job_holds_the_lock() {
        use crate::api::{ApiState, ExecCall};
        use crate::home::{NODE_FORMAT, NodeInfo};
        use crate::sled_store::SledStore;
        use hearth_core::record::Vault;
        use hearth_sync::net::{NetConfig, keypair, memory_swarm};
        use std::time::Duration;
        use zeroize::Zeroizing;

        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _in_runtime = rt.enter();
        let (identity, _) = Identity::generate(Role::Patient, "P".into(), &mut crate::os::os_rng());
        let swarm = memory_swarm(keypair(&identity).unwrap(), &NetConfig::default()).unwrap();
        let shared = Arc::new(Mutex::new(live::Shared {
            vault: Vault::open(SledStore::open(&dir.path().join("store")).unwrap()).unwrap(),
            identity: identity.duplicate(),
        }));
        let (node, _task) = live::start(swarm, shared.clone(), live::LiveConfig::default());
        let info = NodeInfo {
            format: NODE_FORMAT.into(),
            role: identity.role,
            peer_id: identity.peer(),
            record_id: None,
            org_code: None,
        };
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let api = ApiState::new(
            Home::new(dir.path().to_path_buf()),
            info,
            node.clone(),
            shared.clone(),
            "token".into(),
            0,
            crate::web::commands(),
            stop,
        );
        assert!(api.command_vault().is_beside(&live::lock(&shared).vault));

        // A job of the driver's holds the lock, as a long sync step does.
        let held = live::lock(&shared);
        let call = ExecCall {
            argv: vec!["--json".into(), "status".into()],
            home: Home::new(dir.path().to_path_buf()),
            passphrase: Zeroizing::new(String::new()),
            identity: identity.duplicate(),
            stdin: None,
            node,
            shared: shared.clone(),
            api,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(exec_in_daemon(call));
        });
        let answer = rx.recv_timeout(Duration::from_secs(30));
        drop(held);
        let answer = answer.expect("`status` answered while the lock was held");
        assert_eq!(answer.code, 0, "{}", answer.stderr);
        assert!(
            answer.stdout.contains(&identity.peer().to_string()),
            "{}",
            answer.stdout
        );
    }
}
