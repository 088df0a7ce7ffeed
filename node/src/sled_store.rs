//! The sled backend of [`hearth_core::store::Store`].
//!
//! One sled tree holds Hearth's ordered key space. `commit` applies the batch atomically and
//! flushes before returning, so an acknowledged write survives a crash or power loss.

use hearth_core::store::{Batch, Store, StoreError, Visit};
use std::path::Path;

/// A sled database opened by this process. sled holds an exclusive lock on its folder while
/// open, which is why the CLI talks to a running daemon instead of opening the store itself.
/// Clones share the one open database (`sled::Db` is a cheap handle): the daemon's sync
/// driver and the commands it runs use the same store.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
}

fn io(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt("sled reported corruption".into()),
        sled::Error::Unsupported(_) | sled::Error::ReportableBug(_) => StoreError::Corrupt(
            "the store's files are damaged or were written by an unsupported version".into(),
        ),
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            StoreError::Locked(String::new())
        }
        other => {
            let msg = other.to_string();
            if msg.contains("lock") {
                StoreError::Locked(String::new())
            } else {
                StoreError::Io(msg)
            }
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        // A process that just closed the store (a daemon stopping, or this process dropping
        // its last handle) may hold sled's folder lock for a few more milliseconds while its
        // background thread exits: retry briefly before reporting the store as in use.
        let mut tries = 0;
        loop {
            match Self::open_once(dir) {
                Err(StoreError::Locked(_)) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> Result<SledStore, StoreError> {
        let dir = dir.to_path_buf();
        // sled can panic on some kinds of damaged files; a damaged store must give an error,
        // never a crash.
        let opened = std::panic::catch_unwind(move || {
            sled::Config::new().path(dir).flush_every_ms(None).open()
        });
        match opened {
            Ok(Ok(db)) => Ok(SledStore { db }),
            Ok(Err(e)) => Err(io(e)),
            Err(_) => Err(StoreError::Corrupt(
                "the store's files could not be read".into(),
            )),
        }
    }
}

impl SledStore {
    /// Flushes everything written so far to disk (each commit already does; this is for
    /// shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(io)
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        // sled's range iterator reads as it goes: nothing after the stop is read.
        for r in self.db.range(start..end) {
            let (k, v) = r.map_err(io)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops() {
            match v {
                Some(v) => b.insert(k.as_slice(), v.as_slice()),
                None => b.remove(k.as_slice()),
            }
        }
        self.db.apply_batch(b).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        // sled's log is replayed in order on recovery, so after a crash the inserts below are
        // present as a prefix; the flush makes all of them durable before we acknowledge.
        for (k, v) in batch.ops() {
            match v {
                Some(v) => self.db.insert(k.as_slice(), v.as_slice()).map(drop),
                None => self.db.remove(k.as_slice()).map(drop),
            }
            .map_err(io)?;
        }
        self.db.flush().map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::store::conformance;

    #[test]
    fn sled_store_conformance() {
        let mut dirs = Vec::new();
        conformance::run_all(|| {
            let d = tempfile::tempdir().unwrap();
            let s = SledStore::open(d.path()).unwrap();
            dirs.push(d);
            s
        });
    }

    #[test]
    fn sled_store_model_with_restarts() {
        let d = tempfile::tempdir().unwrap();
        conformance::model_test(|| SledStore::open(d.path()).unwrap(), 40);
    }
}
