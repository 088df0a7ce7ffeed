//! What a [`Vault`](super::Vault) remembers between opens of its records, in memory only.
//!
//! A daemon (its sync jobs, and the commands it runs, which share its vault's memory through
//! [`Vault::beside`](super::Vault::beside)), and each step of a sync session, open the same
//! records over and over. Opening one
//! unwraps its section keys and loads its auth document; reading or writing a section loads
//! that section's document from its last snapshot and the bundles after it. Both results are
//! pure functions of what the store holds, so the vault keeps them:
//!
//! - [`UnwrapMemo`]: each section key, by the exact stored wrap it came from;
//! - [`DocMemo`]: the section documents of records recently closed, with the log heads they
//!   cover, each taken as the start of the next load of its section in place of a snapshot
//!   (only the bundles stored since are then checked and applied, exactly as after a
//!   snapshot).
//!
//! - [`AuthMemo`]: what the auth document says that every open asks again (the devices the
//!   root certified, those removed, the grant chains recorded, the directory's sealed section
//!   names), by the auth document's log heads it was read at;
//! - [`NameMemo`]: each section's name, opened from its sealed bytes with this node's key;
//! - [`KeyringMemo`]: all the section keys an open of a record found for its reader, by the
//!   record's keyring stamp (the one memo keyed by something written for it: see its docs).
//!
//! All are bounded, and none is ever written anywhere.

use super::devices::DeviceCert;
use crate::crypto::SymmetricKey;
use crate::grant::Grant;
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::log::VersionVector;
use crate::section::SectionName;
use crate::time::Timestamp;
use automerge::AutoCommit;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Everything a vault remembers.
#[derive(Default)]
pub(crate) struct Memo {
    pub(super) keys: UnwrapMemo,
    pub(super) docs: DocMemo,
    pub(super) auth: AuthMemo,
    pub(super) names: NameMemo,
    pub(super) keyrings: KeyringMemo,
}

/// What an auth document says about who may write and who was granted what, read from it.
pub(super) struct AuthFacts {
    /// Every device certificate that verifies against the record root, removed ones included.
    pub(super) device_certs: Vec<DeviceCert>,
    /// Devices removed, with when.
    pub(super) removed: BTreeMap<PeerKey, Timestamp>,
    /// The grant chains recorded (undecodable ones left out).
    pub(super) recorded_chains: Vec<Vec<Grant>>,
    /// Each section's name as its directory item holds it, sealed under the section's key
    /// (unreadable items left out): opened at every open of the record, with the keys held.
    pub(super) sealed_names: Vec<(SectionId, Vec<u8>)>,
}

/// [`AuthFacts`] by record, each with the auth document's log heads it was read at.
///
/// Reading them walks the document's items, parses each certificate's JSON and decodes each
/// recorded chain from its text form: a tenth of a sync step, repeated at every open of the
/// record though the document rarely changes. The facts are a pure function of the document,
/// and a document whose every bundle applied is fixed by its log heads (each a sequence number
/// and the hash that ends a hash chain), so a hit at the same heads is what reading the
/// document again would give; a document with bundles that did not apply is read afresh every
/// time. At most [`AuthMemo::MAX`] records (emptied when full).
#[derive(Default)]
pub(crate) struct AuthMemo(Mutex<HashMap<RecordId, (VersionVector, Arc<AuthFacts>)>>);

impl AuthMemo {
    /// Records remembered at most.
    const MAX: usize = 1_024;

    /// The facts of `record`'s auth document at `heads`, if remembered.
    pub(super) fn get(&self, record: &RecordId, heads: &VersionVector) -> Option<Arc<AuthFacts>> {
        let m = self.0.lock().ok()?;
        let (at, facts) = m.get(record)?;
        (at == heads).then(|| facts.clone())
    }

    /// Remembers the facts of `record`'s auth document at `heads`.
    pub(super) fn put(&self, record: &RecordId, heads: &VersionVector, facts: Arc<AuthFacts>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX && !m.contains_key(record) {
                m.clear();
            }
            m.insert(*record, (heads.clone(), facts));
        }
    }

    /// Forgets `record`.
    pub(super) fn forget_record(&self, record: &RecordId) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(record);
        }
    }
}

/// Section names this vault has already opened, by record and section, each with the sealed
/// bytes it came from and the key epoch that opened it.
///
/// Every open of a record opens the name of every section it holds a key for (an AEAD open
/// under the section's key, and a parse): a fifth of an open's time when its caches are cold.
/// An entry is only made after the sealed bytes opened under this node's key of that epoch and
/// parsed, and a hit needs the very same sealed bytes and a key of that epoch still held: the
/// record root's signed wraps give a section one key per epoch, so a hit is what opening the
/// bytes afresh would give, and a renamed, resealed or unreadable section is opened afresh.
/// At most [`NameMemo::MAX`] names (emptied when full).
#[derive(Default)]
pub(crate) struct NameMemo(Mutex<HashMap<(RecordId, SectionId), OpenedName>>);

/// A section name opened, with the sealed bytes it came from and the epoch of the key.
struct OpenedName {
    sealed: Vec<u8>,
    epoch: u32,
    name: SectionName,
}

impl NameMemo {
    /// The most names held.
    const MAX: usize = 16_384;

    /// The epoch of the key that opened `sealed` as `section`'s name in `record`, and the name.
    pub(super) fn get(
        &self,
        record: &RecordId,
        section: &SectionId,
        sealed: &[u8],
    ) -> Option<(u32, SectionName)> {
        let m = self.0.lock().ok()?;
        let o = m.get(&(*record, *section))?;
        (o.sealed == sealed).then_some((o.epoch, o.name))
    }

    /// Remembers that `sealed` opened as `name` under `section`'s key of `epoch`.
    pub(super) fn put(
        &self,
        record: &RecordId,
        section: &SectionId,
        sealed: &[u8],
        epoch: u32,
        name: SectionName,
    ) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX && !m.contains_key(&(*record, *section)) {
                m.clear();
            }
            let sealed = sealed.to_vec();
            m.insert(
                (*record, *section),
                OpenedName {
                    sealed,
                    epoch,
                    name,
                },
            );
        }
    }

    /// Forgets `record`.
    pub(super) fn forget_record(&self, record: &RecordId) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|(r, _), _| r != record);
        }
    }
}

/// The section keys of a record as one reader holds them: by section, then epoch.
pub(super) type SectionKeys = HashMap<SectionId, BTreeMap<u32, SymmetricKey>>;

/// All the section keys an open of a record found for its reader (from the wraps addressed to
/// it and the keys released to it from escrow), by record and reader, with the record's
/// keyring stamp read before them.
///
/// Every open scans the record's key wraps (those to grantees and escrow too) and its escrowed
/// keys: over a third of an open's time when its caches are cold, though a record's keyring
/// changes only when keys are granted, rotated or released. The keyring stamp (`G`, see
/// `layout.rs`) is 16 bytes that every batch writing a wrap or an escrowed key of the record
/// writes afresh (`keyring::stamp_keyring`, called by the one function that files a wrap and
/// the one that files escrowed keys; `hearth store repair` stamps afresh any record it
/// quarantines keys of), unique in this process and across processes (a counter after 64
/// random bits), and deleting a record deletes it. Such a batch is always committed
/// atomically (never in order, however small: `OpenRecord::commit_batch`), so no read sees a
/// wrap without the stamp written with it. An open reads the stamp before the wraps,
/// so the keys it finds are at least those of the keyring the stamp names; a hit needs the
/// same stamp, the same reader and the same agreement key, so it gives every key a fresh read
/// would. A record with no stamp (a store written before stamps) is always read afresh, and
/// so is every record in a process that could not draw its random bits. Debug builds read
/// afresh at every hit as well and check that both agree. At most [`KeyringMemo::MAX`]
/// readers' keyrings (emptied when full), each key zeroized when dropped.
#[derive(Default)]
pub(crate) struct KeyringMemo(Mutex<HashMap<(RecordId, PeerKey), Keyring>>);

/// One reader's keys of one record, at a keyring stamp.
struct Keyring {
    stamp: [u8; 16],
    agreement: [u8; 32],
    keys: Arc<SectionKeys>,
}

impl KeyringMemo {
    /// The most keyrings held.
    const MAX: usize = 16_384;

    /// The keys `reader` (with agreement key `agreement`) found in `record` at `stamp`.
    pub(super) fn get(
        &self,
        record: &RecordId,
        reader: &PeerKey,
        agreement: &[u8; 32],
        stamp: &[u8; 16],
    ) -> Option<Arc<SectionKeys>> {
        let m = self.0.lock().ok()?;
        let k = m.get(&(*record, *reader))?;
        (k.stamp == *stamp && k.agreement == *agreement).then(|| k.keys.clone())
    }

    /// Remembers the keys `reader` found in `record` after reading `stamp`.
    pub(super) fn put(
        &self,
        record: &RecordId,
        reader: &PeerKey,
        agreement: &[u8; 32],
        stamp: [u8; 16],
        keys: &SectionKeys,
    ) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX && !m.contains_key(&(*record, *reader)) {
                m.clear();
            }
            m.insert(
                (*record, *reader),
                Keyring {
                    stamp,
                    agreement: *agreement,
                    keys: Arc::new(keys.clone()),
                },
            );
        }
    }

    /// Forgets `record`.
    pub(super) fn forget_record(&self, record: &RecordId) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|(r, _), _| r != record);
        }
    }

    /// The stamp `reader`'s keyring of `record` is remembered at, if any (for tests).
    #[cfg(test)]
    pub(super) fn stamp_of(&self, record: &RecordId, reader: &PeerKey) -> Option<[u8; 16]> {
        Some(self.0.lock().ok()?.get(&(*record, *reader))?.stamp)
    }
}

/// Section keys this vault has already unwrapped, by the exact stored wrap they came from.
///
/// Unwrapping is an X25519 agreement and an HPKE open, after checking the root's signature on
/// the wrap. An entry is named by the SHA-256 of the recipient's agreement key and the wrap's
/// stored bytes, and is only made after the wrap decoded, named that recipient, verified and
/// opened with this node's secret: the same bytes always decode to the same wrap and give the
/// same key, so a hit is what decoding and unwrapping them afresh would give (the entry keeps
/// the record, section and epoch the wrap names, so a hit needs neither a copy of the bytes
/// nor their decoding), and a changed or new wrap is unwrapped afresh. At most
/// [`UnwrapMemo::MAX`] keys (emptied when full), each zeroized when dropped.
#[derive(Default)]
pub(crate) struct UnwrapMemo(Mutex<HashMap<[u8; 32], Unwrapped>>);

/// A key unwrapped, with what its wrap names.
#[derive(Clone)]
pub(super) struct Unwrapped {
    pub(super) record: RecordId,
    pub(super) section: SectionId,
    pub(super) epoch: u32,
    pub(super) key: SymmetricKey,
}

impl UnwrapMemo {
    /// The most keys held.
    const MAX: usize = 16_384;

    /// The name of the key unwrapped by `recipient` from the stored wrap `wrap`.
    pub(super) fn name(recipient: &[u8; 32], wrap: &[u8]) -> [u8; 32] {
        crate::crypto::sha256(&[b"hearth/unwrap-memo/v1", recipient, wrap])
    }

    pub(super) fn get(&self, name: &[u8; 32]) -> Option<Unwrapped> {
        self.0.lock().ok()?.get(name).cloned()
    }

    pub(super) fn put(&self, name: [u8; 32], unwrapped: Unwrapped) {
        if let Ok(mut m) = self.0.lock() {
            if m.capacity() == 0 {
                // All the room at once: a map that grows moves its entries without dropping
                // them, which would leave copies of keys behind in freed memory.
                *m = HashMap::with_capacity(Self::MAX);
            }
            if m.len() >= Self::MAX {
                m.clear();
            }
            m.insert(name, unwrapped);
        }
    }
}

/// How a snapshot taken earlier stands against the document kept now ([`DocMemo::covered`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Covered {
    /// No document is kept for that reader: the snapshot may be written, and the section's
    /// next load counts the bundles after it.
    NotKept,
    /// The kept document holds everything the snapshot covers and this many bundles more, no
    /// more than it holds beyond its last snapshot: writing it brings that count down.
    Beyond(u32),
    /// The kept document does not hold all the snapshot covers, or a newer snapshot was
    /// written since the snapshot was taken: it is not written.
    Stale,
}

/// A loaded section document as a start for the next load: the document, the log heads it
/// holds (`have`), and how many bundles it holds beyond its section's last snapshot.
pub(super) struct Kept {
    pub(super) doc: AutoCommit,
    pub(super) have: VersionVector,
    pub(super) since_snapshot: u32,
}

/// Section documents of records recently closed, by record, section and reader (the device the
/// document was loaded for: its actor writes into it), the least recently used dropped beyond
/// [`DocMemo::MAX`] documents or [`DocMemo::MAX_CHANGES`] changes beside the largest one kept,
/// which may itself hold up to [`DocMemo::MAX_LARGEST`].
///
/// A document is *handed* here when the [`OpenRecord`](super::OpenRecord) that loaded it is
/// dropped, and *taken* (moved out, not copied: a copy of a document of 100,000 changes costs
/// 11–34 ms here, a tenth of loading it from its snapshot) by the next load of the section.
/// Only the snapshot job copies one, to save it without the node's lock
/// ([`Vault::take_due_snapshots`](super::Vault::take_due_snapshots)). A kept document is only
/// ever used as a *start*: the load checks that every log it covers still ends at or beyond
/// what it holds, at the same hash where it ends at the same place (the check made of a
/// snapshot), then checks, hash chain by hash chain, and applies the bundles stored since.
/// Every change a document holds is one of the bundles its log heads name (loaded from the
/// store, written by this node, or accepted from a peer, the heads moved on with each), so a
/// document holding a change that was never stored names a head the store does not have, and
/// is not used.
///
/// What is kept was verified, or written, by this process. Damage to the store's files after
/// that (a disk error, another local user's edit) is found by the next process that opens the
/// store (another command, the daemon after a restart) and by `hearth store check`, which
/// always reads from disk; meanwhile this vault shows what it verified, never altered bytes.
#[derive(Default)]
pub(crate) struct DocMemo(Mutex<Docs>);

#[derive(Default)]
struct Docs {
    clock: u64,
    kept: HashMap<(RecordId, SectionId), (u64, PeerKey, Kept)>,
}

/// The changes a document holds (one per bundle of each log).
fn changes(have: &VersionVector) -> u64 {
    have.values().map(|h| h.seq).sum()
}

impl Docs {
    /// The changes of every document kept and one of `size` more, but for the largest of them.
    fn beside_largest(&self, size: u64) -> u64 {
        let (mut total, mut largest) = (size, size);
        for (.., k) in self.kept.values() {
            let c = changes(&k.have);
            total = total.saturating_add(c);
            largest = largest.max(c);
        }
        total - largest
    }
}

impl DocMemo {
    /// The most documents kept.
    const MAX: usize = 32;

    /// The most changes kept beside the largest document: memory grows with them (a
    /// 50,000-note section takes about 70 MiB in automerge; `curves.open_read_peak_mib_*` in
    /// docs/PERFORMANCE.md), so a node keeps many small sections, or one of the 50,000
    /// changes issue #16 sets its targets at, beside its largest.
    pub(super) const MAX_CHANGES: u64 = 64 * 1024;

    /// The most changes of any one document kept. The largest is not held to
    /// [`DocMemo::MAX_CHANGES`]: the node held it whole to load it, and loads it whole again
    /// at its section's next use if it is not kept (a patient's add to a section of 100,000
    /// notes took 0.6 s so, against 0.3 ms kept: `curves.patient_add_ms_100k`). Keeping it
    /// costs the memory each use of it needs anyway, held between uses: at most this
    /// document and `MAX_CHANGES` beside it (while another large section loads, both are
    /// held until the older is dropped as the newer is handed back). A larger one (automerge
    /// holds about 1.5 KiB a change: some 380 MiB at this bound) is loaded afresh at each use.
    pub(super) const MAX_LARGEST: u64 = 256 * 1024;

    /// Takes the document kept for `record`'s `section` as loaded for `reader`.
    pub(super) fn take(
        &self,
        record: &RecordId,
        section: &SectionId,
        reader: &PeerKey,
    ) -> Option<Kept> {
        let mut d = self.0.lock().ok()?;
        match d.kept.get(&(*record, *section)) {
            Some((_, who, _)) if who == reader => {}
            _ => return None,
        }
        d.kept.remove(&(*record, *section)).map(|(.., kept)| kept)
    }

    /// Keeps `kept` for `record`'s `section`, loaded for `reader`, dropping the least recently
    /// handed documents until the bounds hold.
    pub(super) fn put(&self, record: &RecordId, section: &SectionId, reader: &PeerKey, kept: Kept) {
        let size = changes(&kept.have);
        if size > Self::MAX_LARGEST {
            return;
        }
        let Ok(mut d) = self.0.lock() else { return };
        d.clock += 1;
        let now = d.clock;
        d.kept.remove(&(*record, *section));
        loop {
            if d.kept.len() < Self::MAX && d.beside_largest(size) <= Self::MAX_CHANGES {
                break;
            }
            let Some(oldest) = d
                .kept
                .iter()
                .min_by_key(|(_, (used, ..))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            d.kept.remove(&oldest);
        }
        d.kept.insert((*record, *section), (now, *reader, kept));
    }

    /// The sections kept for `reader` whose snapshot is due (see `Vault::snapshots_due`).
    pub(super) fn due(&self, reader: &PeerKey) -> Vec<(RecordId, SectionId)> {
        let Ok(d) = self.0.lock() else {
            return Vec::new();
        };
        d.kept
            .iter()
            .filter(|(_, (_, who, k))| {
                who == reader && super::snapshot::snapshot_due(&k.have, k.since_snapshot)
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// How a snapshot covering `vv` of `record`'s `section`, taken from the document kept
    /// for `reader`, stands against that document now (see [`Covered`]).
    pub(super) fn covered(
        &self,
        record: &RecordId,
        section: &SectionId,
        reader: &PeerKey,
        vv: &VersionVector,
    ) -> Covered {
        let Ok(d) = self.0.lock() else {
            return Covered::NotKept;
        };
        let Some((_, who, k)) = d.kept.get(&(*record, *section)) else {
            return Covered::NotKept;
        };
        if who != reader {
            return Covered::NotKept;
        }
        let covers = vv
            .iter()
            .all(|(a, h)| k.have.get(a).is_some_and(|x| x.seq >= h.seq));
        let beyond = changes(&k.have).saturating_sub(changes(vv));
        match u32::try_from(beyond) {
            Ok(n) if covers && n <= k.since_snapshot => Covered::Beyond(n),
            _ => Covered::Stale,
        }
    }

    /// Records that the last snapshot of the document kept for `reader` of `record`'s
    /// `section` leaves `beyond` of its bundles after it (see [`DocMemo::covered`]).
    pub(super) fn snapshot_written(
        &self,
        record: &RecordId,
        section: &SectionId,
        reader: &PeerKey,
        beyond: u32,
    ) {
        if let Ok(mut d) = self.0.lock()
            && let Some((_, who, k)) = d.kept.get_mut(&(*record, *section))
            && who == reader
        {
            k.since_snapshot = beyond;
        }
    }

    /// Drops what is kept of `record`'s `section`.
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

    /// Whether a document is kept for `record`'s `section` (for tests).
    #[cfg(test)]
    pub(super) fn holds(&self, record: &RecordId, section: &SectionId) -> bool {
        self.0
            .lock()
            .is_ok_and(|d| d.kept.contains_key(&(*record, *section)))
    }
}
