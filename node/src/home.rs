//! The node's home folder: what lives where, and how files are written safely.
//!
//! ```text
//! HOME/
//!   node.json       public facts: format, role, peer id, record id (no secrets, no names)
//!   keystore.cbor   the passphrase-sealed secrets (keys, display name)
//!   store/          the sled database: bundles, logs, wrapped keys, snapshots
//! ```
//!
//! `node.json` is written last at `init`, so its presence marks a complete initialisation.
//! Files are written to a temporary name, synced, then renamed over the target.

use crate::fail::{Failure, code};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::{Identity, Keystore, Role};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const NODE_FORMAT: &str = "hearth-home/1";

/// Public facts about the node, readable without the passphrase.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Home format version.
    pub format: String,
    /// The role chosen at init.
    pub role: Role,
    /// The device key as a peer id.
    pub peer_id: PeerKey,
    /// The patient's record (patients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<RecordId>,
}

/// Paths of one node's home.
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The home at `dir`.
    pub fn new(dir: PathBuf) -> Home {
        Home { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `node.json`.
    pub fn node_file(&self) -> PathBuf {
        self.dir.join("node.json")
    }

    /// `keystore.cbor`.
    pub fn keystore_file(&self) -> PathBuf {
        self.dir.join("keystore.cbor")
    }

    /// The sled folder.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Whether `init` completed here.
    pub fn is_initialised(&self) -> bool {
        self.node_file().exists()
    }

    /// Reads `node.json`.
    pub fn node_info(&self) -> Result<NodeInfo, Failure> {
        let path = self.node_file();
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::new(
                    code::NOT_FOUND,
                    format!(
                        "no hearth node in {} (run `hearth init` first, or pass --home)",
                        self.dir.display()
                    ),
                )
            } else {
                Failure::new(code::IO, format!("cannot read {}: {e}", path.display()))
            }
        })?;
        let info: NodeInfo = serde_json::from_slice(&bytes).map_err(|_| {
            Failure::new(
                code::INTEGRITY,
                format!("{} is damaged (not valid node information)", path.display()),
            )
        })?;
        if info.format != NODE_FORMAT {
            return Err(Failure::new(
                code::INTEGRITY,
                "this home was written by an unsupported version of hearth",
            ));
        }
        Ok(info)
    }

    /// Reads and opens the keystore with `passphrase`.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<Identity, Failure> {
        let path = self.keystore_file();
        let bytes = std::fs::read(&path)
            .map_err(|e| Failure::new(code::IO, format!("cannot read the keystore: {e}")))?;
        let ks = Keystore::from_bytes(&bytes).map_err(|e| Failure::new(code::INTEGRITY, e))?;
        ks.open(passphrase).map_err(Failure::from_key_error)
    }

    /// Writes the files of a new node. Refuses if the home is already initialised.
    pub fn write_new(&self, info: &NodeInfo, keystore: &Keystore) -> Result<(), Failure> {
        atomic_write(&self.keystore_file(), &keystore.to_bytes())?;
        let json = serde_json::to_vec_pretty(info)
            .map_err(|e| Failure::new(code::IO, format!("encoding node.json: {e}")))?;
        atomic_write(&self.node_file(), &json)
    }

    /// Creates the folder (private to the user where the platform allows).
    pub fn create_dir(&self) -> Result<(), Failure> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            Failure::new(
                code::IO,
                format!("cannot create {}: {e}", self.dir.display()),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` via a synced temporary file and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    let err =
        |e: std::io::Error| Failure::new(code::IO, format!("writing {}: {e}", path.display()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The default home: `$HEARTH_HOME`, else the platform data folder.
pub fn default_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "Hearth", "hearth")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}

/// The format string of `node.json`.
pub fn node_format() -> String {
    NODE_FORMAT.to_string()
}
