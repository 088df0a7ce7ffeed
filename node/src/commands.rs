//! What each command does. Parsing is in [`crate::cli`]; storage in [`crate::sled_store`].

use crate::cli::{Cli, Command, EntrySource, InitArgs, RecordCommand, RoleArg};
use crate::fail::{Failure, code};
use crate::home::{self, Home, NodeInfo};
use crate::sled_store::SledStore;
use hearth_core::entry::{EntryBody, EntryStatus};
use hearth_core::ids::{EntryId, PeerKey, RecordId};
use hearth_core::keys::{Identity, KdfParams, Keystore, Role};
use hearth_core::nhs::NhsNumber;
use hearth_core::record::{Attribution, NewRecord, OpenRecord, RecordError, SectionView, Vault};
use hearth_core::section::{Label, SectionName};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

/// The random number generator the node uses.
pub type Rng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's random number generator.
pub fn os_rng() -> Rng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// The current time, read once per command.
pub fn now() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}

/// The largest entry file accepted (entries are bounded by their schema far below this).
pub const MAX_ENTRY_FILE: u64 = 4 * 1024 * 1024;

/// What every command needs: the home, output mode and passphrase source; inside the daemon
/// also its open store, the caller's passphrase and a buffer for the output.
pub struct Ctx {
    /// The node's home.
    pub home: Home,
    /// Print JSON.
    pub json: bool,
    /// Where the passphrase comes from, if not the environment.
    pub passphrase_file: Option<std::path::PathBuf>,
    /// Set when the command runs inside the daemon (`POST /api/v1/exec`).
    pub daemon: Option<InDaemon>,
    /// Captured standard output (inside the daemon); `None` writes to stdout.
    out: std::cell::RefCell<Option<Vec<u8>>>,
}

/// What a command running inside the daemon uses instead of opening things itself.
pub struct InDaemon {
    /// The daemon's open store (sled allows one opener per folder).
    pub store: SledStore,
    /// The passphrase the caller sent (already checked against the keystore).
    pub passphrase: Zeroizing<String>,
    /// The identity the check unlocked, used by the command's first `unlock`.
    pub unlocked: std::cell::RefCell<Option<Identity>>,
    /// The running node: network status, peers, sync.
    pub node: crate::live::Handle,
    /// What the caller read from its standard input for an argument `-` (sent inside the
    /// request over the local socket: never written to disk). Taken by the first reader.
    pub stdin: std::cell::RefCell<Option<Zeroizing<Vec<u8>>>>,
}

impl Ctx {
    /// A context for one command run from the command line.
    pub fn new(home: Home, json: bool, passphrase_file: Option<std::path::PathBuf>) -> Ctx {
        Ctx {
            home,
            json,
            passphrase_file,
            daemon: None,
            out: std::cell::RefCell::new(None),
        }
    }

    /// A context for one command run inside the daemon: output is captured.
    pub fn in_daemon(home: Home, json: bool, daemon: InDaemon) -> Ctx {
        Ctx {
            home,
            json,
            passphrase_file: None,
            daemon: Some(daemon),
            out: std::cell::RefCell::new(Some(Vec::new())),
        }
    }

    /// Standard input for an argument `-`, at most `limit` bytes: the process's own, or,
    /// inside the daemon, what the caller sent with the command (empty if it sent none).
    pub fn read_stdin(&self, limit: u64) -> std::io::Result<Vec<u8>> {
        if let Some(d) = &self.daemon {
            let mut bytes = d
                .stdin
                .borrow_mut()
                .take()
                .map(|z| z.to_vec())
                .unwrap_or_default();
            bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            return Ok(bytes);
        }
        let mut buf = Vec::new();
        std::io::stdin().take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The captured output (inside the daemon).
    pub fn take_output(&self) -> Vec<u8> {
        self.out.borrow_mut().take().unwrap_or_default()
    }

    /// Writes one line of standard output (captured inside the daemon).
    pub fn println(&self, line: &str) {
        let mut out = self.out.borrow_mut();
        match out.as_mut() {
            Some(buf) => {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
            None => println!("{line}"),
        }
    }

    /// The passphrase, read the usual way (env, --passphrase-file, prompt), to send to the
    /// daemon.
    pub fn passphrase_for_forwarding(&self) -> Result<Zeroizing<String>, Failure> {
        self.passphrase(false)
    }

    pub(crate) fn passphrase(&self, confirm: bool) -> Result<Zeroizing<String>, Failure> {
        if let Some(d) = &self.daemon {
            return Ok(d.passphrase.clone());
        }
        if let Some(path) = &self.passphrase_file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Failure::new(
                    code::PASSPHRASE,
                    format!("cannot read the passphrase file {}: {e}", path.display()),
                )
            })?);
            let line = text.lines().next().unwrap_or("");
            return Ok(Zeroizing::new(line.to_string()));
        }
        if let Ok(p) = std::env::var("HEARTH_PASSPHRASE") {
            return Ok(Zeroizing::new(p));
        }
        if std::io::stdin().is_terminal() {
            let p =
                Zeroizing::new(rpassword::prompt_password("Passphrase: ").map_err(|e| {
                    Failure::new(code::PASSPHRASE, format!("reading passphrase: {e}"))
                })?);
            if confirm {
                let again =
                    Zeroizing::new(rpassword::prompt_password("Passphrase again: ").map_err(
                        |e| Failure::new(code::PASSPHRASE, format!("reading passphrase: {e}")),
                    )?);
                if *again != *p {
                    return Err(Failure::new(code::PASSPHRASE, "the passphrases differ"));
                }
            }
            return Ok(p);
        }
        Err(Failure::new(
            code::PASSPHRASE,
            "no passphrase: set HEARTH_PASSPHRASE, pass --passphrase-file, or run in a terminal",
        ))
    }

    /// Reads node.json and opens the keystore.
    pub fn unlock(&self) -> Result<(NodeInfo, Identity), Failure> {
        let info = self.home.node_info()?;
        if let Some(id) = self
            .daemon
            .as_ref()
            .and_then(|d| d.unlocked.borrow_mut().take())
        {
            return Ok((info, id));
        }
        let pass = self.passphrase(false)?;
        let id = self.home.unlock(pass.as_bytes())?;
        Ok((info, id))
    }

    /// Opens the store.
    pub fn vault(&self) -> Result<Vault<SledStore>, Failure> {
        if let Some(d) = &self.daemon {
            return Ok(Vault::open(d.store.clone())?);
        }
        let store = SledStore::open(&self.home.private_store_dir()?)?;
        Ok(Vault::open(store)?)
    }

    /// Prints `json` in JSON mode, else the text.
    pub fn print(&self, json: Value, text: impl FnOnce() -> String) {
        if self.json {
            self.println(&json.to_string());
        } else {
            let t = text();
            if !t.is_empty() {
                self.println(&t);
            }
        }
    }
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
        Command::Init(args) => init(ctx, args),
        Command::Id { card } if card => crate::grant_cmd::card(ctx),
        Command::Id { .. } => id(ctx),
        Command::Record(RecordCommand::Import(args)) => crate::fhir_cmd::import(ctx, args),
        Command::Record(RecordCommand::Export(args)) => crate::fhir_cmd::export(ctx, args),
        Command::Record(cmd) => record(ctx, cmd),
        Command::Grant(args) => crate::grant_cmd::grant(ctx, args),
        Command::Accept { token } => crate::grant_cmd::accept(ctx, &token),
        Command::Request(args) => crate::grant_cmd::request(ctx, args),
        Command::Requests { cmd } => crate::grant_cmd::requests(ctx, cmd),
        Command::Org(cmd) => crate::grant_cmd::org(ctx, cmd),
        Command::Trust(cmd) => crate::grant_cmd::trust(ctx, cmd),
        Command::Credential(cmd) => crate::grant_cmd::credential(ctx, cmd),
        Command::Run(args) => crate::daemon::run(ctx, args),
        Command::Status => crate::net_cmd::status(ctx),
        Command::Peers { cmd } => crate::net_cmd::peers(ctx, cmd),
        Command::Sync(args) => crate::net_cmd::sync(ctx, args),
        Command::Patients => crate::net_cmd::patients(ctx),
        Command::Consent(args) => crate::extract_cmd::consent(ctx, args),
        Command::Extract(cmd) => crate::extract_cmd::extract(ctx, cmd),
        Command::Device(cmd) => crate::device_cmd::device(ctx, cmd),
        Command::Review { cmd } => crate::review_cmd::review(ctx, cmd),
    }
}

/// A new node's display name (`default` when none is given) and its passphrase (asked twice
/// at a prompt), both checked.
pub(crate) fn new_node_name_and_passphrase(
    ctx: &Ctx,
    name: Option<&str>,
    default: &str,
) -> Result<(String, Zeroizing<String>), Failure> {
    let name = name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default.to_string());
    if name.chars().count() > 200 {
        return Err(Failure::new(
            code::INVALID,
            "--name is too long (200 characters at most)",
        ));
    }
    let pass = ctx.passphrase(true)?;
    if pass.chars().count() < 8 {
        return Err(Failure::new(
            code::PASSPHRASE,
            "the passphrase must have at least 8 characters",
        ));
    }
    Ok((name, pass))
}

fn init(ctx: &Ctx, args: InitArgs) -> Result<(), Failure> {
    if ctx.home.is_initialised() {
        return Err(Failure::new(
            code::REFUSED,
            format!(
                "{} already holds a hearth node; choose another --home",
                ctx.home.dir().display()
            ),
        ));
    }
    if ctx.home.keystore_file().exists() || ctx.home.store_dir().exists() {
        return Err(Failure::new(
            code::REFUSED,
            format!(
                "{} holds an incomplete hearth node (an earlier init was interrupted); \
                 remove the folder and run init again",
                ctx.home.dir().display()
            ),
        ));
    }
    if let Some(code) = &args.join {
        return crate::device_cmd::join(ctx, code, args.name.as_deref());
    }
    let role = match args.role {
        Some(RoleArg::Patient) => Role::Patient,
        Some(RoleArg::Professional) => Role::Professional,
        Some(RoleArg::Relay) => Role::Relay,
        None => return Err(Failure::new(code::INVALID, "init needs --role or --join")),
    };
    // Validate everything before writing anything.
    let nhs = match &args.nhs_number {
        Some(n) if role != Role::Patient => {
            let _ = n;
            return Err(Failure::new(
                code::INVALID,
                "--nhs-number is only for a patient node",
            ));
        }
        Some(n) => Some(
            n.parse::<NhsNumber>()
                .map_err(|e| Failure::new(code::INVALID, format!("--nhs-number refused: {e}")))?,
        ),
        None => None,
    };
    let (name, pass) = new_node_name_and_passphrase(ctx, args.name.as_deref(), role.as_str())?;
    let mut rng = os_rng();
    let (identity, phrase) = Identity::generate(role, name.clone(), &mut rng);
    let keystore = Keystore::seal(&identity, pass.as_bytes(), KdfParams::DEFAULT, &mut rng)
        .map_err(Failure::from_key_error)?;
    ctx.home.create_dir()?;
    let t = now();
    let record_id = if role == Role::Patient {
        let vault = ctx.vault()?;
        let mut demo = serde_json::Map::new();
        demo.insert("name".into(), json!(name));
        if let Some(n) = &nhs {
            demo.insert("nhs_number".into(), json!(n.as_str()));
        }
        let new = NewRecord {
            demographics: Some(Value::Object(demo)),
        };
        Some(vault.create_record(&identity, new, t, &mut rng)?)
    } else {
        let _ = ctx.vault()?;
        None
    };
    let info = NodeInfo {
        format: home::node_format(),
        role,
        peer_id: identity.peer(),
        record_id,
    };
    ctx.home.write_new(&info, &keystore)?;
    let words = phrase.as_ref().map(|p| p.words());
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "role": role,
            "name": name,
            "record_id": record_id,
            "recovery_phrase": words.as_ref().map(|w| w.as_str()),
        }),
        || {
            let mut s = format!(
                "Initialised a {} node in {}\n  peer id:   {}",
                role.as_str(),
                ctx.home.dir().display(),
                info.peer_id
            );
            if let Some(r) = record_id {
                s.push_str(&format!("\n  record id: {r}"));
            }
            if let Some(w) = &words {
                s.push_str(&format!(
                    "\n\nRecovery phrase (write it down now; it is shown only this once and \
                     restores your record if this device is lost):\n\n  {}\n",
                    w.as_str()
                ));
            }
            s
        },
    );
    Ok(())
}

fn id(ctx: &Ctx) -> Result<(), Failure> {
    let (info, identity) = ctx.unlock()?;
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "role": info.role,
            "name": identity.name,
            "record_id": info.record_id,
            "agreement_key": data_encoding::HEXLOWER.encode(&identity.agreement_public()),
        }),
        || {
            let mut s = format!(
                "{} ({})\n  peer id:   {}",
                identity.name,
                info.role.as_str(),
                info.peer_id
            );
            if let Some(r) = info.record_id {
                s.push_str(&format!("\n  record id: {r}"));
            }
            s
        },
    );
    Ok(())
}

/// Parses a section name from `class[:label]` and an optional `--label`.
pub fn section_name(section: &str, label: Option<&str>) -> Result<SectionName, Failure> {
    let mut name: SectionName = section
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("section '{}': {e}", clip(section))))?;
    if let Some(l) = label {
        if section.contains(':') {
            return Err(Failure::new(
                code::INVALID,
                "give the label either as class:label or with --label, not both",
            ));
        }
        name.label = l
            .parse::<Label>()
            .map_err(|e| Failure::new(code::INVALID, format!("--label: {e}")))?;
    }
    Ok(name)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
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

/// The record a command is about: `--record`, else this patient's own, else the only one held.
pub fn which_record(
    info: &NodeInfo,
    vault: &Vault<SledStore>,
    given: Option<&str>,
) -> Result<RecordId, Failure> {
    if let Some(g) = given {
        return g
            .parse::<RecordId>()
            .map_err(|e| Failure::new(code::INVALID, format!("--record: {e}")));
    }
    if let Some(r) = info.record_id {
        return Ok(r);
    }
    let records = vault.records()?;
    match records.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::new(
            code::NOT_FOUND,
            "this node holds no record yet",
        )),
        _ => Err(Failure::new(
            code::INVALID,
            "this node holds several records; choose one with --record",
        )),
    }
}

fn record(ctx: &Ctx, cmd: RecordCommand) -> Result<(), Failure> {
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
            return show(ctx, &mut rec, &identity, names, section.is_some());
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
            let versions = rec.history(&name)?;
            let mut facts = rec.attribution(&name)?;
            let people = verified_people(&mut rec, &identity, now());
            for a in facts.values_mut() {
                vouch(a, &people, &identity);
            }
            let versions_json: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let mut j = json!(v);
                    j["claimed"] = json!(hearth_core::record::CLAIMED);
                    if let Some(a) = facts.get(&v.id) {
                        j["verified"] = json!(a);
                    }
                    j
                })
                .collect();
            ctx.print(
                json!({"record_id": rid, "section": name.to_string(), "class": name.class, "label": name.label, "versions": versions_json}),
                || {
                    let mut s = format!("History of {name} ({} versions)", versions.len());
                    for v in &versions {
                        let what = match (v.status, v.supersedes) {
                            (EntryStatus::EnteredInError, _) => "marked entered in error".to_string(),
                            (_, Some(old)) => format!("corrected {old}"),
                            (_, None) => "added".to_string(),
                        };
                        let a = facts.get(&v.id);
                        s.push_str(&format!(
                            "\n  {}  v{}  {}  {}  {}",
                            a.and_then(|a| a.received_at)
                                .map_or_else(|| v.provenance.recorded_at.to_string(), |t| t.to_string()),
                            v.version,
                            v.id,
                            who(a, v),
                            what
                        ));
                        if let Some(c) = claims(a, v) {
                            s.push_str(&format!("\n    {c}"));
                        }
                    }
                    s
                },
            );
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
            ctx.print(
                json!({"entry_id": id, "supersedes": entry, "record_id": rid, "status": "entered-in-error"}),
                || id.to_string(),
            );
        }
        // `run` sends these to `fhir_cmd` before anything is unlocked or opened.
        RecordCommand::Import(_) | RecordCommand::Export(_) => {
            return Err(Failure::new(
                code::IO,
                "internal error: FHIR commands run from fhir_cmd",
            ));
        }
    }
    Ok(())
}

fn parse_entry_id(s: &str) -> Result<EntryId, Failure> {
    s.parse::<EntryId>()
        .map_err(|e| Failure::new(code::INVALID, format!("entry id: {e}")))
}

/// Verified identities of keys other than the patient's devices: the organisation
/// credentials this node holds for them (attached to the access requests in the patient's
/// private ledger), from organisations the patient trusts, current at `t`.
fn verified_people(
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    t: Timestamp,
) -> BTreeMap<PeerKey, (String, String, String)> {
    use hearth_core::grant::request::{AccessRequest, Verification, verify_credential};
    let trusted = rec.trusted_orgs();
    let mut out = BTreeMap::new();
    for (_, item) in rec.requests() {
        let Ok(req) = AccessRequest::from_token(&item.token) else {
            continue;
        };
        let peer = req.body().requester.peer;
        if peer == identity.peer() {
            continue;
        }
        if let Verification::Verified {
            name,
            role,
            organisation,
            ..
        } = verify_credential(req.credential().as_ref(), &peer, &trusted, t)
        {
            out.insert(peer, (name, role, organisation));
        }
    }
    out
}

/// Fills in a grantee's verified identity from `people`, and this node's own.
fn vouch(a: &mut Attribution, people: &BTreeMap<PeerKey, (String, String, String)>, me: &Identity) {
    if a.basis != "unverified" {
        return;
    }
    if let Some((name, role, org)) = people.get(&a.author) {
        a.basis = "organisation-credential";
        a.name = Some(name.clone());
        a.role = Some(role.clone());
        a.organisation = Some(org.clone());
    } else if a.author == me.peer() {
        a.basis = "this-node";
        a.name = Some(me.name.clone());
        a.role = Some(me.role.as_str().to_string());
    }
}

/// Who wrote a version, from verified facts only.
fn who(a: Option<&Attribution>, v: &hearth_core::entry::EntryVersion) -> String {
    who_of(a, &v.provenance.author)
}

fn who_of(a: Option<&Attribution>, author: &PeerKey) -> String {
    match a {
        Some(a) => match (a.basis, &a.name) {
            ("patient-device", Some(n)) => format!("{n} (patient's device)"),
            ("organisation-credential", Some(n)) => format!(
                "{n} ({}, {}; verified credential)",
                a.role.as_deref().unwrap_or_default(),
                a.organisation.as_deref().unwrap_or_default()
            ),
            ("this-node", Some(n)) => format!("{n} (this node)"),
            _ => format!("unverified key {}", a.author),
        },
        None => format!("unverified key {author}"),
    }
}

/// What the writer said of itself, shown as a claim unless it is the patient's own device.
fn claims(a: Option<&Attribution>, v: &hearth_core::entry::EntryVersion) -> Option<String> {
    claims_of(a, &v.provenance)
}

fn claims_of(a: Option<&Attribution>, p: &hearth_core::entry::Provenance) -> Option<String> {
    if a.is_some_and(|a| a.basis == "patient-device" || a.basis == "this-node") {
        return None;
    }
    Some(format!(
        "claims (unchecked): \"{}\" ({}), written {}",
        p.author_name,
        p.author_role.as_str(),
        p.recorded_at
    ))
}

fn show(
    ctx: &Ctx,
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    names: Vec<SectionName>,
    single: bool,
) -> Result<(), Failure> {
    let mut views: Vec<SectionView> = Vec::new();
    let mut errors: Vec<(SectionName, RecordError)> = Vec::new();
    for name in names {
        match rec.show(&name) {
            Ok(v) => views.push(v),
            Err(e) if single => return Err(e.into()),
            Err(e) => errors.push((name, e)),
        }
    }
    let people = verified_people(rec, identity, now());
    for v in &mut views {
        for e in &mut v.entries {
            if let Some(a) = e.verified.as_mut() {
                vouch(a, &people, identity);
            }
        }
    }
    let unapplied = rec.unapplied();
    let rid = rec.id();
    ctx.print(
        json!({
            "record_id": rid,
            "sections": views,
            "errors": errors.iter().map(|(n, e)| json!({"section": n.to_string(), "error": e.to_string()})).collect::<Vec<_>>(),
            "unapplied": unapplied,
        }),
        || {
            let mut s = String::new();
            for u in &unapplied {
                s.push_str(&format!(
                    "WARNING: {} {} by {} could not be applied to {} from #{} ({}); the section is shown without them\n",
                    u.count,
                    if u.count == 1 { "bundle" } else { "bundles" },
                    u.author,
                    u.section,
                    u.from_seq,
                    u.reason
                ));
            }
            for v in &views {
                let name = SectionName::new(v.class, v.label);
                s.push_str(&format!("{name} ({} entries)\n", v.entries.len()));
                for e in &v.entries {
                    let summary = EntryBody::from_json(v.class, &e.body)
                        .map(|b| b.summary())
                        .unwrap_or_default();
                    let flag = match e.status {
                        EntryStatus::EnteredInError => format!(
                            "  [ENTERED IN ERROR: {}]",
                            e.status_reason.as_deref().unwrap_or("")
                        ),
                        EntryStatus::Final => String::new(),
                    };
                    let a = e.verified.as_ref();
                    s.push_str(&format!(
                        "  {}  v{}  {}  {}\n",
                        e.id,
                        e.version,
                        a.and_then(|a| a.received_at)
                            .map_or_else(|| e.provenance.recorded_at.to_string(), |t| t.to_string()),
                        who_of(a, &e.provenance.author),
                    ));
                    if let Some(c) = claims_of(a, &e.provenance) {
                        s.push_str(&format!("    {c}\n"));
                    }
                    s.push_str(&format!("    {summary}{flag}\n"));
                }
            }
            s.trim_end().to_string()
        },
    );
    if let Some((name, e)) = errors.first() {
        let f: Failure = Failure::from(clone_err(e));
        return Err(Failure::new(
            f.code,
            format!("section {name} could not be read: {}", f.message),
        ));
    }
    Ok(())
}

fn clone_err(e: &RecordError) -> RecordError {
    match e {
        RecordError::Corrupt { section, reason } => RecordError::Corrupt {
            section: section.clone(),
            reason: reason.clone(),
        },
        RecordError::NoKey(s) => RecordError::NoKey(s.clone()),
        RecordError::Store(s) => RecordError::Store(s.clone()),
        _ => RecordError::Invalid("section unreadable"),
    }
}
