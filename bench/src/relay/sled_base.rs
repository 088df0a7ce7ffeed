//! The relay module's sled baselines: what keeping the stored phase's writes costs sled alone,
//! with one durable commit per exchange as the relay makes them.
//!
//! - [`frames`]: each exchange's request bytes as one value (any relay that keeps what it
//!   acknowledges pays at least this).
//! - [`replay`]: the relay's own writes (every key and value it made durable in an exchange,
//!   recorded by [`Recording`]) committed again to a fresh sled store, one durable commit per
//!   exchange: the cost of sled keeping exactly what the relay keeps, with none of the relay's
//!   own work (decoding, checks, answers).

use super::Exchange;
use anyhow::Result;
use hearth_core::store::{Batch, Store, StoreError, Visit};
use hearth_node::sled_store::SledStore;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A sled store that also keeps a copy of each set of writes it makes durable, while
/// recording: a durable commit is one set; writes made visible are gathered into one set
/// until the flush that makes them durable. It times its writes (commits and flushes), and
/// the copies, which are the benchmark's bookkeeping, not the relay's work.
pub(super) struct Recording {
    inner: SledStore,
    /// Recording or not, the durable sets recorded, and the visible writes not yet flushed.
    log: Mutex<(bool, Vec<Batch>, Batch)>,
    /// Time spent in the inner store's writes (commits and flushes), and in taking the copies.
    spent: Mutex<(Duration, Duration)>,
}

impl Recording {
    /// Over `inner`, not recording.
    pub(super) fn new(inner: SledStore) -> Self {
        Recording {
            inner,
            log: Mutex::new((false, Vec::new(), Batch::new())),
            spent: Mutex::new((Duration::ZERO, Duration::ZERO)),
        }
    }

    /// Starts recording, or stops it and returns the durable sets recorded.
    pub(super) fn record(&self, on: bool) -> Vec<Batch> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.0 = on;
        log.2 = Batch::new();
        std::mem::take(&mut log.1)
    }

    /// Runs `f` on the log when recording.
    fn note(&self, f: impl FnOnce(&mut Vec<Batch>, &mut Batch)) {
        let t = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.0 {
            let (_, sets, pending) = &mut *log;
            f(sets, pending);
        }
        drop(log);
        self.spent.lock().unwrap_or_else(PoisonError::into_inner).1 += t.elapsed();
    }

    /// Runs one of the inner store's writes, timed.
    fn write<T>(&self, f: impl FnOnce(&SledStore) -> T) -> T {
        let t = Instant::now();
        let out = f(&self.inner);
        self.spent.lock().unwrap_or_else(PoisonError::into_inner).0 += t.elapsed();
        out
    }

    /// The time spent so far in the inner store's writes and in taking the copies.
    pub(super) fn spent(&self) -> (Duration, Duration) {
        *self.spent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Recording {
    /// Records `batch`, made durable now with the visible writes before it, as one set.
    fn durable(&self, batch: &Batch) {
        self.note(|sets, pending| {
            let mut set = std::mem::take(pending);
            set.extend(batch.clone());
            sets.push(set);
        });
    }
}

impl Store for Recording {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.durable(&batch);
        self.write(|s| s.commit(batch))
    }

    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        self.inner.scan_while(start, end, visit)
    }

    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        self.durable(&batch);
        self.write(|s| s.commit_ordered(batch))
    }

    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        self.note(|_, pending| pending.extend(batch.clone()));
        self.write(|s| s.commit_visible(batch))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.note(|sets, pending| {
            if !pending.is_empty() {
                sets.push(std::mem::take(pending));
            }
        });
        self.write(|s| s.flush())
    }
}

/// Each exchange's request bytes written to a fresh sled store as one durable commit.
pub(super) fn frames(exchanges: &[Exchange]) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(&dir.path().join("s"))?;
    let t = Instant::now();
    for (i, x) in exchanges.iter().enumerate() {
        let mut b = Batch::new();
        b.put(format!("x/{i:08}").into_bytes(), vec![7u8; x.req]);
        store.commit(b)?;
    }
    Ok(t.elapsed())
}

/// `sets` (the relay's durable writes, in order) committed to a fresh sled store, each as one
/// durable commit.
pub(super) fn replay(sets: Vec<Batch>) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(&dir.path().join("s"))?;
    let t = Instant::now();
    for set in sets {
        store.commit(set)?;
    }
    Ok(t.elapsed())
}
