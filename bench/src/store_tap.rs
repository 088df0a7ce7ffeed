//! A store that can write down the operations made through it, and play them again on the
//! store beneath it alone: the store's own share of a piece of work, measured apart from
//! everything else the work does, on the very keys and values the work used.
//!
//! Played again, every write puts the value the work wrote (or deletes what it deleted), in
//! the same order, so the store's contents end as they were; a scan stops after as many pairs
//! as the work's did.

use hearth_core::store::{Batch, Store, StoreError, Visit};
use std::sync::Mutex;

/// One operation, as the work made it.
enum Op {
    Get(Vec<u8>),
    /// A scan of `start..end` that visited `visited` pairs.
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        visited: usize,
    },
    Commit(Batch),
    CommitOrdered(Batch),
    CommitVisible(Batch),
    Flush,
}

/// What a recording holds, by kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Point reads.
    pub(crate) gets: usize,
    /// Scans, and the pairs they visited together.
    pub(crate) scans: usize,
    pub(crate) scanned: usize,
    /// Commits of any kind, and the keys they wrote or deleted together.
    pub(crate) commits: usize,
    pub(crate) written: usize,
    /// Flushes.
    pub(crate) flushes: usize,
}

/// The operations recorded since [`Tap::record`].
pub(crate) struct Recording(Vec<Op>);

impl Counts {
    /// Every operation, each pair a scan visited and each key a commit wrote counted as one.
    pub(crate) fn total(&self) -> usize {
        self.gets + self.scanned + self.written + self.flushes
    }
}

impl Recording {
    /// How many of each kind.
    pub(crate) fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for op in &self.0 {
            match op {
                Op::Get(_) => c.gets += 1,
                Op::Scan { visited, .. } => {
                    c.scans += 1;
                    c.scanned += visited;
                }
                Op::Commit(b) | Op::CommitOrdered(b) | Op::CommitVisible(b) => {
                    c.commits += 1;
                    c.written += b.ops().len();
                }
                Op::Flush => c.flushes += 1,
            }
        }
        c
    }
}

/// A store beneath which every operation can be recorded ([`Tap::record`]); while nothing is
/// being recorded it only passes the calls on.
pub(crate) struct Tap<S> {
    inner: S,
    log: Mutex<Option<Vec<Op>>>,
}

impl<S: Store> Tap<S> {
    /// `inner`, recording nothing yet.
    pub(crate) fn new(inner: S) -> Self {
        Tap {
            inner,
            log: Mutex::new(None),
        }
    }

    /// Starts recording (dropping anything recorded and not taken).
    pub(crate) fn record(&self) {
        *self.lock() = Some(Vec::new());
    }

    /// Stops recording and returns what was recorded.
    pub(crate) fn take(&self) -> Recording {
        Recording(self.lock().take().unwrap_or_default())
    }

    /// Makes `rec`'s operations again on the store beneath, alone, in order.
    pub(crate) fn replay(&self, rec: &Recording) -> Result<(), StoreError> {
        for op in &rec.0 {
            match op {
                Op::Get(k) => {
                    std::hint::black_box(self.inner.get(k)?);
                }
                Op::Scan {
                    start,
                    end,
                    visited,
                } => {
                    let mut seen = 0;
                    self.inner.scan_while(start, end, &mut |k, v| {
                        std::hint::black_box((k, v));
                        seen += 1;
                        seen < *visited
                    })?;
                }
                Op::Commit(b) => self.inner.commit(b.clone())?,
                Op::CommitOrdered(b) => self.inner.commit_ordered(b.clone())?,
                Op::CommitVisible(b) => self.inner.commit_visible(b.clone())?,
                Op::Flush => self.inner.flush()?,
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Op>>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, op: impl FnOnce() -> Op) {
        if let Some(log) = self.lock().as_mut() {
            log.push(op());
        }
    }
}

impl<S: Store> Store for Tap<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.note(|| Op::Get(key.to_vec()));
        self.inner.get(key)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.note(|| Op::Commit(batch.clone()));
        self.inner.commit(batch)
    }

    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        let mut visited = 0;
        let r = self.inner.scan_while(start, end, &mut |k, v| {
            visited += 1;
            visit(k, v)
        });
        self.note(|| Op::Scan {
            start: start.to_vec(),
            end: end.to_vec(),
            visited,
        });
        r
    }

    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        self.note(|| Op::CommitOrdered(batch.clone()));
        self.inner.commit_ordered(batch)
    }

    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        self.note(|| Op::CommitVisible(batch.clone()));
        self.inner.commit_visible(batch)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.note(|| Op::Flush);
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::store::MemoryStore;

    #[test]
    fn a_replay_makes_the_recorded_operations_and_leaves_the_contents_as_they_were() {
        let tap = Tap::new(MemoryStore::new());
        let mut b = Batch::new();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            b.put(k.to_vec(), k.to_vec());
        }
        tap.commit(b).unwrap();
        // Nothing is recorded before `record`.
        assert_eq!(tap.take().counts(), Counts::default());

        tap.record();
        assert_eq!(tap.get(b"a2").unwrap(), Some(b"a2".to_vec()));
        let mut first = Vec::new();
        tap.scan_prefix_while(b"a", &mut |k, _| {
            first.push(k.to_vec());
            first.len() < 2
        })
        .unwrap();
        let mut b = Batch::new();
        b.put(b"a2".to_vec(), b"new".to_vec());
        b.delete(b"b1".to_vec());
        tap.commit_ordered(b).unwrap();
        tap.flush().unwrap();
        let rec = tap.take();
        assert_eq!(
            rec.counts(),
            Counts {
                gets: 1,
                scans: 1,
                scanned: 2,
                commits: 1,
                written: 2,
                flushes: 1,
            }
        );
        assert_eq!(rec.counts().total(), 6);

        let before = tap.scan(&[], &[0xff]).unwrap();
        tap.replay(&rec).unwrap();
        assert_eq!(tap.scan(&[], &[0xff]).unwrap(), before);
        assert_eq!(tap.get(b"a2").unwrap(), Some(b"new".to_vec()));
        assert_eq!(tap.get(b"b1").unwrap(), None);
        // A replay is not itself recorded.
        assert_eq!(tap.take().counts(), Counts::default());
    }
}
