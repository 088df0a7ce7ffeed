//! The sled backend of [`hearth_core::store::Store`].
//!
//! Hearth's ordered key space lives in two sled trees: the default one, and `bulky` for the
//! kinds whose values grow with a section's history ([`BULKY_KINDS`]: snapshots, megabytes at
//! 50,000 entries). sled keeps neighbouring keys together in a page, so a snapshot beside the
//! log heads made every commit rewrite, and every read of a neighbour copy, megabytes: the
//! cost of one new entry grew with the section's history (issue #16, docs/PERFORMANCE.md).
//! Callers see one key space: a scan across both trees merges them in key order. `commit`
//! applies the batch atomically (a sled transaction when it touches both trees) and flushes
//! before returning, so an acknowledged write survives a crash or power loss.

use hearth_core::record::BULKY_KINDS;
use hearth_core::store::{Batch, Store, StoreError, Visit};
use sled::Transactional;
use std::path::Path;

/// The tree of the bulky kinds.
const BULKY_TREE: &[u8] = b"bulky";

/// A sled database opened by this process. sled holds an exclusive lock on its folder while
/// open, which is why the CLI talks to a running daemon instead of opening the store itself.
/// Clones share the one open database (`sled::Db` is a cheap handle): the daemon's sync
/// driver and the commands it runs use the same store.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    bulky: sled::Tree,
}

/// Whether `key` is of a bulky kind.
fn is_bulky(key: &[u8]) -> bool {
    key.first().is_some_and(|k| BULKY_KINDS.contains(k))
}

/// Which trees the half-open range `start..end` reaches: (default, bulky). A range inside one
/// bulky kind reaches only the bulky tree.
fn reaches(start: &[u8], end: &[u8]) -> (bool, bool) {
    let within_one = |k: u8| start.first() == Some(&k) && end <= [k + 1].as_slice();
    if BULKY_KINDS.iter().any(|&k| within_one(k)) {
        return (false, true);
    }
    let bulky = BULKY_KINDS
        .iter()
        .any(|&k| start < [k + 1].as_slice() && end > [k].as_slice());
    (true, bulky)
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

/// A failed transaction over both trees (ours never abort: only storage fails them).
fn tx(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => io(e),
        sled::transaction::TransactionError::Abort(()) => {
            StoreError::Io("a transaction was aborted".into())
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
        // That covers opening the second tree and moving old snapshots into it too.
        let opened = std::panic::catch_unwind(move || {
            let db = sled::Config::new()
                .path(dir)
                .flush_every_ms(None)
                .open()
                .map_err(io)?;
            let bulky = db.open_tree(BULKY_TREE).map_err(io)?;
            let store = SledStore { db, bulky };
            store.move_bulky()?;
            Ok(store)
        });
        match opened {
            Ok(r) => r,
            Err(_) => Err(StoreError::Corrupt(
                "the store's files could not be read".into(),
            )),
        }
    }
}

impl SledStore {
    /// The tree that holds `key`.
    fn tree_of(&self, key: &[u8]) -> &sled::Tree {
        if is_bulky(key) { &self.bulky } else { &self.db }
    }

    /// Moves bulky values a store written before the split keeps in the default tree into
    /// their own, each in one transaction (a crash leaves it in one tree or the other).
    fn move_bulky(&self) -> Result<(), StoreError> {
        let mut moved = false;
        for kind in BULKY_KINDS {
            for r in self.db.scan_prefix([kind]) {
                let (k, v) = r.map_err(io)?;
                (&*self.db, &self.bulky)
                    .transaction(|(main, bulky)| {
                        bulky.insert(&k, &v)?;
                        main.remove(&k)?;
                        Ok(())
                    })
                    .map_err(tx)?;
                moved = true;
            }
        }
        if moved {
            self.db.flush().map_err(io)?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree_of(key).get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        // sled's range iterators read as they go: nothing after the stop is read.
        let (main, bulky) = reaches(start, end);
        let one = match (main, bulky) {
            (true, false) => Some(&*self.db),
            (false, true) => Some(&self.bulky),
            _ => None,
        };
        if let Some(tree) = one {
            for r in tree.range(start..end) {
                let (k, v) = r.map_err(io)?;
                if !visit(&k, &v) {
                    break;
                }
            }
            return Ok(());
        }
        // Both trees: merged in key order (a key is in one tree only).
        let mut a = self.db.range(start..end).peekable();
        let mut b = self.bulky.range(start..end).peekable();
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(Ok((ka, _))), Some(Ok((kb, _)))) => ka < kb,
                (Some(Err(_)), _) => true,
                (_, Some(Err(_))) => false,
            };
            let next = if take_a { a.next() } else { b.next() };
            let Some(r) = next else { return Ok(()) };
            let (k, v) = r.map_err(io)?;
            if !visit(&k, &v) {
                return Ok(());
            }
        }
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_visible(batch)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// `commit`'s atomic batch without its flush: sled recovers a batch whole or not at all,
    /// and its log is replayed in order, so a later flush (of this tree or the other: they share
    /// one log) makes it durable.
    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        let (mut main, mut bulky) = (sled::Batch::default(), sled::Batch::default());
        let (mut to_main, mut to_bulky) = (false, false);
        for (k, v) in batch.ops() {
            let b = if is_bulky(k) {
                to_bulky = true;
                &mut bulky
            } else {
                to_main = true;
                &mut main
            };
            match v {
                Some(v) => b.insert(k.as_slice(), v.as_slice()),
                None => b.remove(k.as_slice()),
            }
        }
        match (to_main, to_bulky) {
            (true, true) => (&*self.db, &self.bulky)
                .transaction(|(m, b)| {
                    m.apply_batch(&main)?;
                    b.apply_batch(&bulky)?;
                    Ok(())
                })
                .map_err(tx)?,
            (false, true) => self.bulky.apply_batch(bulky).map_err(io)?,
            _ => self.db.apply_batch(main).map_err(io)?,
        }
        Ok(())
    }

    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        // sled's log is replayed in order on recovery, so after a crash the inserts below are
        // present as a prefix; the flush makes all of them durable before we acknowledge.
        for (k, v) in batch.ops() {
            let tree = self.tree_of(k);
            match v {
                Some(v) => tree.insert(k.as_slice(), v.as_slice()).map(drop),
                None => tree.remove(k.as_slice()).map(drop),
            }
            .map_err(io)?;
        }
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// Flushes everything written so far to disk (each durable commit already does).
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(io)
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

    /// Snapshots live in their own tree, yet the store is one ordered key space: scans across
    /// both trees merge in key order, a batch over both is one commit, and a store written
    /// before the split has its snapshots moved on opening.
    #[test]
    fn bulky_kinds_live_apart_in_one_key_space() {
        let d = tempfile::tempdir().unwrap();
        {
            // A store from before the split: a snapshot in the default tree.
            let db = sled::open(d.path()).unwrap();
            db.insert(b"C-old", b"old snapshot".as_slice()).unwrap();
            db.insert(b"L-head", b"head".as_slice()).unwrap();
            db.flush().unwrap();
        }
        let s = SledStore::open(d.path()).unwrap();
        assert_eq!(
            s.db.get(b"C-old").unwrap(),
            None,
            "moved out of the default tree"
        );
        assert_eq!(s.get(b"C-old").unwrap().unwrap(), b"old snapshot");
        let mut b = Batch::new();
        for k in ["A1", "C1", "D1", "R1", "S1", "S2", "T1", "C2"] {
            b.put(k.as_bytes(), format!("v{k}").into_bytes());
        }
        s.commit(b).unwrap();
        assert!(s.bulky.get(b"S2").unwrap().is_some() && s.db.get(b"S2").unwrap().is_none());
        assert!(s.db.get(b"T1").unwrap().is_some() && s.bulky.get(b"T1").unwrap().is_none());
        let keys = |start: &[u8], end: &[u8]| -> Vec<String> {
            s.scan(start, end)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        assert_eq!(
            keys(b"", b"\xff"),
            [
                "A1", "C-old", "C1", "C2", "D1", "L-head", "R1", "S1", "S2", "T1"
            ]
        );
        assert_eq!(keys(b"C", b"D"), ["C-old", "C1", "C2"]);
        assert_eq!(keys(b"C1", b"S2"), ["C1", "C2", "D1", "L-head", "R1", "S1"]);
        assert_eq!(keys(b"D", b"S"), ["D1", "L-head", "R1"]);
        assert_eq!(s.scan_prefix(b"S").unwrap().len(), 2);
        // A scan stopped early stops in both trees.
        let mut seen = Vec::new();
        s.scan_while(b"A", b"Z", &mut |k, _| {
            seen.push(k.to_vec());
            seen.len() < 3
        })
        .unwrap();
        assert_eq!(seen, [b"A1".to_vec(), b"C-old".to_vec(), b"C1".to_vec()]);
        // Deletes reach the right tree, in one commit with the other's.
        let mut b = Batch::new();
        b.delete(b"C1".as_slice());
        b.delete(b"D1".as_slice());
        s.commit_ordered(b).unwrap();
        drop(s);
        let s = SledStore::open(d.path()).unwrap();
        assert_eq!(s.get(b"C1").unwrap(), None);
        assert_eq!(s.get(b"D1").unwrap(), None);
        assert_eq!(s.get(b"C2").unwrap().unwrap(), b"vC2");
    }

    #[test]
    fn sled_store_model_with_restarts() {
        let d = tempfile::tempdir().unwrap();
        conformance::model_test(|| SledStore::open(d.path()).unwrap(), 40);
    }
}
