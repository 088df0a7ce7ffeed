//! An edit made the way a person makes one: `hearth record add` run by the daemon
//! ([`exec_in_daemon`]), which is what `POST /api/v1/exec` runs once it has checked the
//! caller's passphrase, and what each of the web app's routes runs (as `hearth --json …`) once
//! it has checked the session. Beside the engine's edit ([`crate::live`]), this one also pays
//! for what a command is: its arguments parsed, its context made (node.json's facts as the
//! daemon read them at its start), the record found and opened through a vault beside the
//! daemon's own, the entry checked against its schema, its answer written as JSON.
//!
//! The passphrase's check (Argon2, slow by design) is left out: a person using the web app
//! pays it once, at login, not at each edit.

use anyhow::{Result, bail};
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_node::api::{ApiState, ExecCall};
use hearth_node::cli::exec_in_daemon;
use hearth_node::home::{Home, NODE_FORMAT, NodeInfo};
use hearth_node::live::{self, Handle, SharedState};
use hearth_node::sled_store::SledStore;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What the daemon hands a command: a home (holding node.json, as a daemon's does), the live
/// node, the shared state and the local API's state, which keeps node.json's facts.
pub(crate) struct Daemon {
    home: PathBuf,
    identity: Identity,
    node: Handle,
    shared: SharedState<SledStore>,
    api: ApiState,
    /// Kept so that the API's state never sees the daemon stopping.
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Daemon {
    /// The daemon of the live node `node` over `shared`, a patient's node holding `record`,
    /// with its home (node.json only: the passphrase is never checked here) in `home`.
    pub(crate) fn new(
        home: &Path,
        node: Handle,
        shared: SharedState<SledStore>,
        record: RecordId,
    ) -> Result<Daemon> {
        let identity = live::lock(&shared).identity.duplicate();
        let h = Home::new(home.to_path_buf());
        h.create_dir().map_err(|f| anyhow::anyhow!(f.message))?;
        let info = NodeInfo {
            format: NODE_FORMAT.into(),
            role: identity.role,
            peer_id: identity.peer(),
            record_id: Some(record),
            org_code: None,
        };
        std::fs::write(h.node_file(), serde_json::to_vec(&info)?)?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let api = ApiState::new(
            Home::new(home.to_path_buf()),
            info,
            node.clone(),
            shared.clone(),
            "unused".into(),
            0,
            hearth_node::web::commands(),
            stop,
        );
        Ok(Daemon {
            home: home.to_path_buf(),
            identity,
            node,
            shared,
            api,
            _stop: stop_tx,
        })
    }

    /// Runs `hearth ARGV…` as the daemon runs a command for a caller already checked (from a
    /// blocking context): its standard output, or an error with its standard error.
    pub(crate) fn run(&self, argv: &[String]) -> Result<String> {
        let call = ExecCall {
            argv: argv.to_vec(),
            home: Home::new(self.home.clone()),
            passphrase: Zeroizing::new(String::new()),
            identity: self.identity.duplicate(),
            stdin: None,
            node: self.node.clone(),
            shared: self.shared.clone(),
            api: self.api.clone(),
        };
        let out = exec_in_daemon(call);
        if out.code != 0 {
            bail!("`hearth {}` failed: {}", argv.join(" "), out.stderr.trim());
        }
        Ok(out.stdout)
    }
}
