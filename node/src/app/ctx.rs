//! The command context: what every command needs (the home, the output mode, the
//! passphrase), and, inside the daemon, its open store, the caller's passphrase and standard
//! input, and a buffer that captures the output.

use crate::fail::{Failure, code};
use crate::home::{Home, NodeInfo};
use crate::sled_store::SledStore;
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use serde_json::Value;
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

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
    /// A vault over the daemon's open store (sled allows one opener per folder), beside the
    /// daemon's own ([`Vault::beside`]): what the daemon's jobs and earlier commands worked out
    /// in opening records is not worked out again.
    pub vault: Vault<SledStore>,
    /// The passphrase the caller sent (already checked against the keystore).
    pub passphrase: Zeroizing<String>,
    /// The identity the check unlocked, used by the command's first `unlock`.
    pub unlocked: std::cell::RefCell<Option<Identity>>,
    /// The running node: network status, peers, sync.
    pub node: crate::live::Handle,
    /// What the caller read from its standard input for an argument `-` (sent inside the
    /// request over the local socket: never written to disk). Taken by the first reader.
    pub stdin: std::cell::RefCell<Option<Zeroizing<Vec<u8>>>>,
    /// The daemon's local API (its web sessions).
    pub api: crate::api::ApiState,
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
            None => crate::os::print_line(line),
        }
    }

    /// Writes `bytes` to standard output as they are (captured inside the daemon).
    pub fn write_raw(&self, bytes: &[u8]) -> Result<(), Failure> {
        let mut out = self.out.borrow_mut();
        match out.as_mut() {
            Some(buf) => buf.extend_from_slice(bytes),
            None => {
                use std::io::Write;
                let mut o = std::io::stdout().lock();
                o.write_all(bytes)
                    .and_then(|()| o.flush())
                    .map_err(|e| Failure::new(code::IO, format!("writing standard output: {e}")))?;
            }
        }
        Ok(())
    }

    /// The passphrase: the caller's inside the daemon, else read the usual way (environment,
    /// `--passphrase-file`, or a prompt, asked twice when `confirm`).
    pub fn passphrase(&self, confirm: bool) -> Result<Zeroizing<String>, Failure> {
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

    /// The node's public facts: node.json, read here, or in the daemon as the daemon read it
    /// at its start ([`crate::api::ApiState::node_info`]).
    pub fn node_info(&self) -> Result<NodeInfo, Failure> {
        match &self.daemon {
            Some(d) => Ok(d.api.node_info().clone()),
            None => self.home.node_info(),
        }
    }

    /// The node's public facts ([`Ctx::node_info`]) and its identity, the keystore opened.
    pub fn unlock(&self) -> Result<(NodeInfo, Identity), Failure> {
        let info = self.node_info()?;
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

    /// The records: inside the daemon, a vault beside the daemon's own; else the store opened
    /// here.
    pub fn vault(&self) -> Result<Vault<SledStore>, Failure> {
        if let Some(d) = &self.daemon {
            return Ok(d.vault.beside());
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

/// A new node's display name (`default` when none is given) and its passphrase (asked twice
/// at a prompt), both checked.
pub fn new_node_name_and_passphrase(
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

/// Refuses to make a new node where one is, or where an interrupted `init` left one half
/// made.
pub fn ensure_new_home(ctx: &Ctx) -> Result<(), Failure> {
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
    Ok(())
}
