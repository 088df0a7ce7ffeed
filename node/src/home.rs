//! The node's home folder: what lives where, and how files are written safely.
//!
//! ```text
//! HOME/
//!   node.json       public facts: format, role, peer id, record id (no secrets, no names)
//!   keystore.cbor   the passphrase-sealed secrets (keys, display name)
//!   store/          the sled database: bundles, logs, wrapped keys, snapshots
//!   api-token       the TCP API's bearer token (created by the first `hearth run`)
//!   daemon.json     while `hearth run` runs: its pid, peer id, addresses
//!   api.sock        while `hearth run` runs: the local API's Unix socket
//! ```
//!
//! `node.json` is written last at `init`, so its presence marks a complete initialisation.
//! Files are written to a temporary name, synced, then renamed over the target.
//!
//! Everything here is private to the user who owns the node, whatever their umask: the home
//! and `store/` are 0700, every file 0600 ([`atomic_write`] creates its temporary file 0600
//! with a unique random name; [`private_umask`] covers what sled writes). See the `daemon`
//! and `api` modules for the daemon's files.

use crate::fail::{Failure, code};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::{Identity, Keystore, Role};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format of node.json (its `format`), checked when a home is read.
pub const NODE_FORMAT: &str = "hearth-home/1";

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
    /// The organisation's code, e.g. its ODS code (organisation relay nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_code: Option<String>,
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

    /// Creates the folder, private to the user (0700, set explicitly whatever the umask).
    pub fn create_dir(&self) -> Result<(), Failure> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            Failure::new(
                code::IO,
                format!("cannot create {}: {e}", self.dir.display()),
            )
        })?;
        make_private(&self.dir, true)
    }

    /// The sled folder, created if missing; the home and the folder are made private (0700)
    /// first, so that nothing sled writes there is readable by other users.
    pub fn private_store_dir(&self) -> Result<PathBuf, Failure> {
        if self.dir.is_dir() {
            make_private(&self.dir, true)?;
        }
        let dir = self.store_dir();
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(&dir).map_err(|e| {
                Failure::new(code::IO, format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        make_private(&dir, true)?;
        Ok(dir)
    }
}

/// Sets `path` to 0700 (a folder) or 0600 (a file), whatever the umask (Unix only).
pub fn make_private(path: &Path, folder: bool) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if folder { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            Failure::new(
                code::IO,
                format!("cannot make {} private: {e}", path.display()),
            )
        })?;
    }
    #[cfg(not(unix))]
    let _ = (path, folder);
    Ok(())
}

/// Makes every file this process creates private to the user from now on (umask 077), so
/// that what libraries write (sled's files, its snapshots) is never group- or
/// other-readable whatever umask the user runs with. Our own files also set their modes
/// explicitly ([`atomic_write`], [`Home::create_dir`]).
pub fn private_umask() {
    #[cfg(unix)]
    {
        let _ = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// Writes `bytes` to `path` atomically: a new temporary file with a unique random name next
/// to it (created exclusively, mode 0600 from the start), synced, renamed over `path`, then
/// the folder synced. The temporary file is removed on failure.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let err =
        |e: std::io::Error| Failure::new(code::IO, format!("writing {}: {e}", path.display()));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut r = [0u8; 8];
    getrandom::fill(&mut r)
        .map_err(|_| Failure::new(code::IO, "no operating system randomness"))?;
    let tmp = parent.join(format!(
        ".{name}.{}.tmp",
        data_encoding::HEXLOWER.encode(&r)
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    if let Ok(d) = std::fs::File::open(&parent) {
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
