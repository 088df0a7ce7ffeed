//! What a [`Vault`](super::Vault) remembers between opens of its records, in memory only.
//!
//! A daemon, and each step of a sync session, open the same records over and over. Opening one
//! unwraps its section keys and loads its auth document; reading or writing a section loads
//! that section's document from its last snapshot and the bundles after it. Both results are
//! pure functions of what the store holds, so the vault keeps them:
//!
//! - [`UnwrapMemo`]: each section key, by the exact stored wrap it came from;
//! - [`DocMemo`]: each recently loaded section document of modest size with the log heads it
//!   covers, used as the start of the next load in place of a snapshot (only the bundles
//!   stored since are then checked and applied, exactly as after a snapshot).
//!
//! Both are bounded, and neither is ever written anywhere.

use crate::crypto::SymmetricKey;
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::log::VersionVector;
use automerge::AutoCommit;
use std::collections::HashMap;
use std::sync::Mutex;

/// Everything a vault remembers.
#[derive(Default)]
pub(crate) struct Memo {
    pub(super) keys: UnwrapMemo,
    pub(super) docs: DocMemo,
}

/// Section keys this vault has already unwrapped, by the exact stored wrap they came from.
///
/// Unwrapping is an X25519 agreement and an HPKE open, after checking the root's signature on
/// the wrap. An entry is named by the SHA-256 of the recipient's agreement key and the wrap's
/// stored bytes, and is only made after the wrap verified and opened with this node's secret:
/// the same bytes always give the same key, so a hit is what a fresh unwrap would give, and a
/// changed or new wrap is unwrapped afresh. At most [`UnwrapMemo::MAX`] keys (emptied when
/// full), each zeroized when dropped.
#[derive(Default)]
pub(crate) struct UnwrapMemo(Mutex<HashMap<[u8; 32], SymmetricKey>>);

impl UnwrapMemo {
    /// The most keys held.
    const MAX: usize = 16_384;

    /// The name of the key unwrapped by `recipient` from the stored wrap `wrap`.
    pub(super) fn name(recipient: &[u8; 32], wrap: &[u8]) -> [u8; 32] {
        crate::crypto::sha256(&[b"hearth/unwrap-memo/v1", recipient, wrap])
    }

    pub(super) fn get(&self, name: &[u8; 32]) -> Option<SymmetricKey> {
        self.0.lock().ok()?.get(name).cloned()
    }

    pub(super) fn put(&self, name: [u8; 32], key: &SymmetricKey) {
        if let Ok(mut m) = self.0.lock() {
            if m.capacity() == 0 {
                // All the room at once: a map that grows moves its entries without dropping
                // them, which would leave copies of keys behind in freed memory.
                *m = HashMap::with_capacity(Self::MAX);
            }
            if m.len() >= Self::MAX {
                m.clear();
            }
            m.insert(name, key.clone());
        }
    }
}

/// A loaded section document as a start for the next load: the document, the log heads it
/// holds (`have`), and how many bundles it holds beyond its section's last snapshot.
pub(super) struct Kept {
    pub(super) doc: AutoCommit,
    pub(super) have: VersionVector,
    pub(super) since_snapshot: u32,
}

/// Recently loaded section documents, by record, section and reader (the device the document
/// was loaded for: its actor writes into it), the least recently used dropped beyond
/// [`DocMemo::MAX`].
///
/// A kept document is only ever taken as a *start*: the load checks that every log it covers
/// still ends at or beyond what it holds (the same check as for a snapshot), then checks, hash
/// chain by hash chain, and applies the bundles stored since. It is made only at the end of a
/// load that succeeded, from the document that load built from the store, so it never holds a
/// change that is not in a stored bundle.
#[derive(Default)]
pub(crate) struct DocMemo(Mutex<Docs>);

#[derive(Default)]
struct Docs {
    clock: u64,
    kept: HashMap<(RecordId, SectionId), (u64, PeerKey, Kept)>,
}

impl DocMemo {
    /// The most documents kept.
    const MAX: usize = 32;

    /// The most changes a kept document holds. Keeping is a copy of the document, and taking
    /// it another; automerge copies a document change by change, so for a large section (a
    /// long history of notes) the two copies cost about what loading it from its snapshot
    /// does (measured with `hearth-bench --only sync,foundation`), and such documents are
    /// not kept. An auth document, loaded at every opening of its record, nearly always is.
    const MAX_CHANGES: u64 = 2_048;

    /// Whether a document holding the logs `have` (one change per bundle) is kept.
    pub(super) fn worth_keeping(have: &VersionVector) -> bool {
        have.values().map(|h| h.seq).sum::<u64>() <= Self::MAX_CHANGES
    }

    /// A copy of the document kept for `record`'s `section` as loaded for `reader`.
    pub(super) fn get(
        &self,
        record: &RecordId,
        section: &SectionId,
        reader: &PeerKey,
    ) -> Option<Kept> {
        let mut d = self.0.lock().ok()?;
        d.clock += 1;
        let now = d.clock;
        let (used, who, kept) = d.kept.get_mut(&(*record, *section))?;
        if who != reader {
            return None;
        }
        *used = now;
        Some(Kept {
            doc: kept.doc.clone(),
            have: kept.have.clone(),
            since_snapshot: kept.since_snapshot,
        })
    }

    /// Keeps a copy of `kept` for `record`'s `section`, loaded for `reader`.
    pub(super) fn put(&self, record: &RecordId, section: &SectionId, reader: &PeerKey, kept: Kept) {
        let Ok(mut d) = self.0.lock() else { return };
        d.clock += 1;
        let now = d.clock;
        if d.kept.len() >= Self::MAX
            && !d.kept.contains_key(&(*record, *section))
            && let Some(oldest) = d
                .kept
                .iter()
                .min_by_key(|(_, (used, ..))| *used)
                .map(|(k, _)| *k)
        {
            d.kept.remove(&oldest);
        }
        d.kept.insert((*record, *section), (now, *reader, kept));
    }

    /// Drops what is kept of `record`'s `section` (after a load from it failed).
    pub(super) fn forget(&self, record: &RecordId, section: &SectionId) {
        if let Ok(mut d) = self.0.lock() {
            d.kept.remove(&(*record, *section));
        }
    }

    /// Drops everything kept of `record` (when the store forgets it).
    pub(super) fn forget_record(&self, record: &RecordId) {
        if let Ok(mut d) = self.0.lock() {
            d.kept.retain(|(r, _), _| r != record);
        }
    }
}
