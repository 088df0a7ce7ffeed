//! Tests of the record engine as a whole.

mod check;
mod disputes;
mod hostile_bundles;
mod journal;
mod memo;
mod merge;
mod peer_grant;
mod restore;
mod revoke;
mod snapshots;

use crate::entry::{EntryStatus, EntryVersion, Provenance};
use crate::ids::EntryId;
use crate::keys::Identity;
use crate::store::{Batch, MemoryStore, Pairs, Store, StoreError, Visit};
use crate::test_utils::{TEST_NOW, TestRng};
use std::cell::Cell;

/// A first version of a notes entry by `author` saying `text`, written at `TEST_NOW` (its id
/// drawn from `seed`).
fn note_version(author: &Identity, text: &str, seed: u64) -> EntryVersion {
    EntryVersion {
        id: EntryId::generate(&mut TestRng::new(seed)),
        class: crate::section::SectionClass::Notes,
        version: 1,
        supersedes: None,
        status: EntryStatus::Final,
        status_reason: None,
        body: serde_json::json!({ "text": text }),
        provenance: provenance(author),
    }
}

/// `author`'s provenance at `TEST_NOW`, as its node writes it.
fn provenance(author: &Identity) -> Provenance {
    Provenance {
        author: author.peer(),
        author_name: author.name.clone(),
        author_role: author.role,
        recorded_at: TEST_NOW,
        purpose: None,
    }
}

/// A store that counts what passes through it: the values its scans read (`read`), the
/// ordered commits made (`ordered`), the durable commits of either kind (`commits`) and the
/// commits made visible only (`visible`). Every commit lands in a memory store.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    read: Cell<usize>,
    ordered: Cell<usize>,
    commits: Cell<usize>,
    visible: Cell<usize>,
}

impl Store for Counting {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, StoreError> {
        let out = self.inner.scan(start, end)?;
        self.read.set(self.read.get() + out.len());
        Ok(out)
    }
    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        self.inner.scan_while(start, end, &mut |k, v| {
            self.read.set(self.read.get() + 1);
            visit(k, v)
        })
    }
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commits.set(self.commits.get() + 1);
        self.inner.commit(batch)
    }
    fn commit_ordered(&self, batch: Batch) -> Result<(), StoreError> {
        self.ordered.set(self.ordered.get() + 1);
        self.commits.set(self.commits.get() + 1);
        self.inner.commit(batch)
    }
    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        self.visible.set(self.visible.get() + 1);
        self.inner.commit(batch)
    }
}
