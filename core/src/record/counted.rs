//! Counts of node-level items kept beside the items ([`LocalCount`]), so that a limit on how
//! many of them a stranger may create is checked with one read, not a scan of them all.

use super::layout::local_key;
use super::{Result, Vault};
use crate::store::{Batch, Store};
use std::collections::BTreeMap;
use std::sync::PoisonError;

/// A count of the node-level items whose keys start with `prefix`, kept under the node-level
/// key `key`. Every write of those items goes through [`Vault::commit_counted`], which moves
/// the count in the same commit.
#[derive(Clone, Copy, Debug)]
pub struct LocalCount {
    /// Where the count is kept (a node-level key outside `prefix`).
    pub key: &'static str,
    /// The items counted.
    pub prefix: &'static str,
}

fn decode(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

impl<S: Store> Vault<S> {
    /// How many items `count` counts: the kept count, or (none kept yet, or unreadable) the
    /// items counted one by one, which the next [`Vault::commit_counted`] writes down.
    pub fn local_count(&self, count: &LocalCount) -> Result<u64> {
        match self.get_local(count.key)?.as_deref().and_then(decode) {
            Some(n) => Ok(n),
            None => Ok(self.count_local(count.prefix)? as u64),
        }
    }

    /// Commits `batch` (any keys), and with it `count` moved by the items under its prefix
    /// that the batch creates or deletes. Each such key is looked up before the commit, with
    /// other counted commits of this vault held off, so concurrent writers count right and an
    /// item written again is not counted twice. They are held off only until the batch is
    /// visible ([`Store::commit_visible`]): the flush that makes it durable comes after, so
    /// concurrent commits share their flushes rather than queueing for them. A crash before the
    /// flush loses the batch and its count together; a later writer's count builds on this
    /// one only in a later place of the store's log, made durable with or after it.
    pub fn commit_counted(&self, count: &LocalCount, batch: Batch) -> Result<()> {
        self.commit_counted_up_to(count, u64::MAX, batch).map(drop)
    }

    /// [`Vault::commit_counted`], unless the batch would take the count above `limit`: then
    /// nothing is written and the answer is `false`. The limit is judged with other counted
    /// commits held off, so two writers racing for the last place cannot both take it (a check
    /// of [`Vault::local_count`] beforehand can only be a quick refusal). A batch that does not
    /// raise the count is committed whatever the limit.
    pub fn commit_counted_up_to(
        &self,
        count: &LocalCount,
        limit: u64,
        mut batch: Batch,
    ) -> Result<bool> {
        let prefix = local_key(count.prefix);
        // Each counted key's state after the batch (a later operation on a key wins).
        let after: BTreeMap<Vec<u8>, bool> = batch
            .ops()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.is_some()))
            .collect();
        if after.is_empty() {
            if !batch.is_empty() {
                self.store.commit(batch)?;
            }
            return Ok(true);
        }
        {
            let _one = self.counting.lock().unwrap_or_else(PoisonError::into_inner);
            let before = self.local_count(count)?;
            let mut n = before;
            for (k, present) in after {
                let was = self.store.get(&k)?.is_some();
                match (was, present) {
                    (false, true) => n = n.saturating_add(1),
                    (true, false) => n = n.saturating_sub(1),
                    _ => {}
                }
            }
            if n > before && n > limit {
                return Ok(false);
            }
            batch.put(local_key(count.key), n.to_be_bytes().to_vec());
            self.store.commit_visible(batch)?;
        }
        self.store.flush()?;
        Ok(true)
    }

    /// Puts node-level item `key` into `batch` (committed by the caller).
    pub fn put_local_in(batch: &mut Batch, key: &str, value: Vec<u8>) {
        batch.put(local_key(key), value);
    }

    /// Deletes node-level item `key` in `batch` (committed by the caller).
    pub fn delete_local_in(batch: &mut Batch, key: &str) {
        batch.delete(local_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, StoreError, Visit};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock, Weak};

    const C: LocalCount = LocalCount {
        key: "things-count",
        prefix: "thing/",
    };

    fn put(v: &Vault<MemoryStore>, names: &[&str], deletes: &[&str]) {
        let mut b = Batch::new();
        for n in names {
            Vault::<MemoryStore>::put_local_in(&mut b, n, vec![1; 3000]);
        }
        for n in deletes {
            Vault::<MemoryStore>::delete_local_in(&mut b, n);
        }
        v.commit_counted(&C, b).unwrap();
    }

    #[test]
    fn the_kept_count_follows_creations_and_deletions_and_not_rewrites() {
        let v = Vault::new(MemoryStore::new());
        assert_eq!(v.local_count(&C).unwrap(), 0);
        put(&v, &["thing/a", "thing/b", "other/x"], &[]);
        assert_eq!(v.local_count(&C).unwrap(), 2);
        // Written again: not counted again; deleting what is not there takes nothing off.
        put(&v, &["thing/a"], &["thing/zz"]);
        assert_eq!(v.local_count(&C).unwrap(), 2);
        // Put then deleted in one batch: the later operation wins.
        let mut b = Batch::new();
        Vault::<MemoryStore>::put_local_in(&mut b, "thing/c", vec![2]);
        Vault::<MemoryStore>::delete_local_in(&mut b, "thing/c");
        Vault::<MemoryStore>::delete_local_in(&mut b, "thing/a");
        v.commit_counted(&C, b).unwrap();
        assert_eq!(v.local_count(&C).unwrap(), 1);
        assert_eq!(v.count_local(C.prefix).unwrap(), 1);
        // The kept count is read, not the items.
        assert_eq!(
            v.get_local(C.key).unwrap(),
            Some(1u64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn items_from_before_the_count_or_a_spoilt_count_are_counted_one_by_one() {
        let v = Vault::new(MemoryStore::new());
        v.put_local("thing/a", b"x").unwrap();
        v.put_local("thing/b", b"x").unwrap();
        assert_eq!(v.local_count(&C).unwrap(), 2);
        put(&v, &["thing/c"], &[]);
        assert_eq!(
            v.get_local(C.key).unwrap(),
            Some(3u64.to_be_bytes().to_vec())
        );
        v.put_local(C.key, b"not a count").unwrap();
        assert_eq!(v.local_count(&C).unwrap(), 3);
        put(&v, &[], &["thing/a"]);
        assert_eq!(v.local_count(&C).unwrap(), 2);
    }

    /// A store that notes, at each flush, whether its vault's counted commits are held off
    /// then, and how many commits were made visible and not yet flushed.
    #[derive(Clone, Default)]
    struct Watched {
        inner: MemoryStore,
        vault: Arc<OnceLock<Weak<Vault<Watched>>>>,
        unflushed: Arc<AtomicUsize>,
        flushes: Arc<AtomicUsize>,
        held_at_flush: Arc<AtomicUsize>,
    }

    impl Store for Watched {
        fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan_while(
            &self,
            start: &[u8],
            end: &[u8],
            visit: Visit<'_>,
        ) -> std::result::Result<(), StoreError> {
            self.inner.scan_while(start, end, visit)
        }
        fn commit(&self, batch: Batch) -> std::result::Result<(), StoreError> {
            self.inner.commit(batch)?;
            self.unflushed.store(0, Ordering::SeqCst);
            Ok(())
        }
        fn commit_visible(&self, batch: Batch) -> std::result::Result<(), StoreError> {
            self.inner.commit(batch)?;
            self.unflushed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn flush(&self) -> std::result::Result<(), StoreError> {
            if let Some(v) = self.vault.get().and_then(Weak::upgrade)
                && v.counting.try_lock().is_err()
            {
                self.held_at_flush.fetch_add(1, Ordering::SeqCst);
            }
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.unflushed.store(0, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_counted_commit_is_durable_when_it_returns_and_flushes_with_the_count_let_go() {
        let store = Watched::default();
        let v = Arc::new(Vault::new(store.clone()));
        store.vault.set(Arc::downgrade(&v)).unwrap();
        let mut b = Batch::new();
        Vault::<Watched>::put_local_in(&mut b, "thing/a", vec![1]);
        v.commit_counted(&C, b).unwrap();
        assert_eq!(v.local_count(&C).unwrap(), 1);
        assert_eq!(store.unflushed.load(Ordering::SeqCst), 0, "not flushed");
        assert_eq!(store.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(
            store.held_at_flush.load(Ordering::SeqCst),
            0,
            "counted commits were held off during the flush"
        );
    }

    #[test]
    fn a_limit_refuses_a_batch_that_would_pass_it_and_writes_nothing() {
        let v = Vault::new(MemoryStore::new());
        let batch = |names: &[&str], deletes: &[&str]| {
            let mut b = Batch::new();
            for n in names {
                Vault::<MemoryStore>::put_local_in(&mut b, n, vec![1]);
            }
            for n in deletes {
                Vault::<MemoryStore>::delete_local_in(&mut b, n);
            }
            Vault::<MemoryStore>::put_local_in(&mut b, "other/x", vec![2]);
            b
        };
        assert!(
            v.commit_counted_up_to(&C, 2, batch(&["thing/a"], &[]))
                .unwrap()
        );
        assert!(
            v.commit_counted_up_to(&C, 2, batch(&["thing/b"], &[]))
                .unwrap()
        );
        // A third would pass the limit: refused whole, the other key included.
        v.delete_local(&["other/x".to_string()]).unwrap();
        assert!(
            !v.commit_counted_up_to(&C, 2, batch(&["thing/c"], &[]))
                .unwrap()
        );
        assert_eq!(v.local_count(&C).unwrap(), 2);
        assert_eq!(v.get_local("thing/c").unwrap(), None);
        assert_eq!(v.get_local("other/x").unwrap(), None);
        // Rewriting, or replacing one item with another, does not raise the count.
        assert!(
            v.commit_counted_up_to(&C, 2, batch(&["thing/a"], &[]))
                .unwrap()
        );
        assert!(
            v.commit_counted_up_to(&C, 2, batch(&["thing/c"], &["thing/b"]))
                .unwrap()
        );
        // Nor does shrinking, even above a limit lowered since.
        assert!(
            v.commit_counted_up_to(&C, 0, batch(&[], &["thing/a"]))
                .unwrap()
        );
        assert_eq!(v.local_count(&C).unwrap(), 1);
        assert_eq!(v.count_local(C.prefix).unwrap(), 1);
    }

    #[test]
    fn writers_racing_for_the_last_place_cannot_both_take_it() {
        for round in 0..20 {
            let v = Arc::new(Vault::new(MemoryStore::new()));
            put(&v, &["thing/first"], &[]);
            let start = Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (v, start) = (v.clone(), start.clone());
                    std::thread::spawn(move || {
                        let mut b = Batch::new();
                        Vault::<MemoryStore>::put_local_in(&mut b, &format!("thing/{t}"), vec![1]);
                        start.wait();
                        v.commit_counted_up_to(&C, 2, b).unwrap()
                    })
                })
                .collect();
            let took: usize = threads
                .into_iter()
                .map(|t| usize::from(t.join().unwrap()))
                .sum();
            assert_eq!(took, 1, "round {round}");
            assert_eq!(v.local_count(&C).unwrap(), 2);
            assert_eq!(v.count_local(C.prefix).unwrap(), 2);
        }
    }

    #[test]
    fn concurrent_counted_commits_count_every_item() {
        let v = std::sync::Arc::new(Vault::new(MemoryStore::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        put(&v, &[&format!("thing/{t}-{i}")], &[]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(v.local_count(&C).unwrap(), 200);
        assert_eq!(v.count_local(C.prefix).unwrap(), 200);
    }
}
