//! The record engine: a patient's record (or a professional's partial replica of one) held in
//! a [`Store`], with every change written as a verified bundle.
//!
//! ## Documents
//!
//! Each section (and the auth document, section [`SectionId::AUTH`]) is an automerge document
//! whose root map holds one key per immutable item: `e/<entry id>` (entry versions), and the
//! patient's `d/<dispute id>` (disputes) and `w/<id>` (their withdrawals) in content sections,
//! `section/<id>`, `device/<peer>` and `record` in the auth document. Items are written once and
//! never overwritten, so merges are conflict-free by construction.
//!
//! ## Opening
//!
//! Opening a record unwraps the section keys addressed to this device (HPKE), loads the auth
//! document, and reads the section directory. Section documents load lazily: from the sealed
//! snapshot if there is one, then the bundles after it, each signature-checked, chain-checked
//! and decrypted before it is applied. A damaged bundle makes only its own section unreadable.
//!
//! ## The changes a bundle carries
//!
//! Every bundle carries exactly one uncompressed automerge change chunk whose actor is the
//! bundle author's device key and whose sequence number is the bundle's own (`seq` of the
//! (section, author) log): an author's changes and its log are numbered alike, so no two
//! bundles can carry changes that clash in the document. Bundles from peers are held to this
//! before they are stored ([`OpenRecord::check_append_only`], [`OpenRecord::check_device_bundle`]),
//! and a section is loaded by the same rule: if an author's stored bundles nevertheless break
//! it or fail to apply, that author's bundles from the offending one on are left out and
//! reported ([`Unapplied`]), and the section stays readable.
//!
//! ## Where things are
//!
//! The store keys the engine writes are spelled, with a table of them, in `layout.rs`; the
//! rest of the engine is split by concern: the [`Vault`] and its records (`vault.rs`), the
//! keyring (`keyring.rs`), the section directory (`directory.rs`), loading section documents
//! (`section_doc.rs`), writing a change into one as a new bundle (`append.rs`), their
//! snapshots (`snapshot.rs`), entries written (`entries.rs`) and read (`views.rs`), the
//! patient's disputes of entries (`disputes.rs`),
//! the patient's devices (`devices.rs`), what peers send (`replica.rs`), the auth document's
//! and the private ledger's raw items (`items.rs`), batch writes (`writer.rs`), held writes
//! (`held.rs`) and the rules that judge grantees' writes and the patient's review of those
//! held (`review.rs`), checking and repairing a damaged store (`check.rs`) and restoring a
//! record from a relay's copy and the recovery phrase (`restore.rs`).

use crate::crypto::SymmetricKey;
use crate::ids::{DisputeId, EntryId, RecordId, SectionId};
use crate::keys::{Identity, Role};
use crate::section::SectionName;
use crate::store::{Batch, Store, StoreError};
use automerge::AutoCommit;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

mod append;
mod audit;
mod check;
mod counted;
mod devices;
mod directory;
mod disputes;
mod emergency;
mod entries;
mod held;
mod inbox;
mod items;
mod keyring;
mod layout;
mod ledger;
mod memo;
mod proxy;
mod relay_audit;
mod replica;
mod restore;
mod review;
mod section_doc;
mod snapshot;
mod summary;
mod vault;
mod views;
mod writer;

#[cfg(test)]
mod tests;

pub use crate::keywrap::KeyWrap;
pub use audit::{MAX_EVENTS_PER_SESSION, MAX_EVENTS_PER_WRITER};
pub use check::{
    BrokenLog, Damage, RepairReport, StoreReport, VerifiedHead, check_store, repair_store,
};
pub use counted::LocalCount;
pub use devices::DeviceCert;
pub use directory::SectionInfo;
pub use disputes::DisputeView;
pub use emergency::EmergencyUseSeen;
pub use entries::{CheckedEntry, NewEntry};
pub use held::{
    Decision, HeldReason, HeldWrite, HoldReport, MAX_HELD, MAX_HELD_BYTES,
    MAX_HELD_BYTES_PER_AUTHOR, MAX_HELD_PER_AUTHOR, ReviewDecision, SettleReport, Verdict,
    WriteRules,
};
pub use inbox::{Accepted, TakeError};
pub use layout::BULKY_KINDS;
pub use ledger::{AuthItem, LedgerItem, MAX_HELD_CHAINS};
pub use proxy::MAX_PROXY_REQUESTS;
pub use relay_audit::MAX_RELAYED_PER_RECORD;
pub use replica::{RemoteReport, WAITS_FOR_DEPS};
pub use restore::RestoreReport;
pub use section_doc::Unapplied;
pub use snapshot::{
    MAX_SHARED_SNAPSHOT, PendingSnapshot, SNAPSHOT_EVERY, SNAPSHOT_EVERY_MIN,
    SNAPSHOT_REFRESH_ON_READ, SealedSnapshot, SharedSnapshot,
};
pub use summary::RecordSummary;
pub use vault::{NewRecord, Vault};
pub use views::{
    Attribution, Basis, CLAIMED, EARLIER_VERSIONS_SHOWN, EntryView, RawEntryView, RawSectionView,
    SectionView,
};
pub use writer::EntryWriter;

use section_doc::SectionDoc;

/// Why a record operation failed. Messages never contain record content or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry body does not fit its section's schema.
    #[error(transparent)]
    Schema(#[from] crate::entry::SchemaError),
    /// This store holds no record with that id.
    #[error("no record {0} on this node")]
    NoRecord(RecordId),
    /// The record already exists.
    #[error("record {0} already exists on this node")]
    Exists(RecordId),
    /// No entry with that id in any section this node can read.
    #[error("no entry {0} in this record")]
    NoEntry(EntryId),
    /// No dispute with that id shown in this record: unknown, or withdrawn already.
    #[error("no dispute {0} in this record (unknown, or withdrawn already)")]
    NoDispute(DisputeId),
    /// The version named was already replaced; corrections apply to the newest version.
    #[error("entry {entry} was already replaced by {by}; correct the newest version")]
    Superseded {
        /// The version given.
        entry: EntryId,
        /// A version that replaces it.
        by: EntryId,
    },
    /// The entry is already marked entered in error.
    #[error("entry {0} is already marked entered in error")]
    AlreadyInError(EntryId),
    /// This node may not do that.
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    /// This node holds no key for the section.
    #[error("no key to read section {0}")]
    NoKey(String),
    /// The section has no entries on this node.
    #[error("section {0} does not exist in this record")]
    NoSection(SectionName),
    /// Stored data failed verification (signature, hash chain or decryption): tampering or
    /// disk corruption. Other sections are unaffected.
    #[error("section {section} failed verification: {reason}")]
    Corrupt {
        /// The section's name, or its opaque id if the name is unreadable.
        section: String,
        /// What failed.
        reason: String,
    },
    /// An argument was not acceptable.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
}

type Result<T, E = RecordError> = std::result::Result<T, E>;

impl From<crate::keywrap::BadRecipient> for RecordError {
    fn from(_: crate::keywrap::BadRecipient) -> Self {
        RecordError::Invalid("recipient key is not a valid X25519 key")
    }
}

/// An open record: the unwrapped keys, the directory, and the sections loaded so far.
pub struct OpenRecord<'v, S: Store> {
    vault: &'v Vault<S>,
    identity: &'v Identity,
    id: RecordId,
    owner: bool,
    keys: HashMap<SectionId, BTreeMap<u32, SymmetricKey>>,
    directory: BTreeMap<SectionId, SectionName>,
    loaded: HashMap<SectionId, SectionDoc>,
    /// Hashes of the automerge changes of bundles accepted from peers while this record was
    /// open (a later bundle of the same batch may depend on them).
    accepted: HashSet<[u8; 32]>,
}

/// Closing a record hands its loaded section documents to the vault, as the start of the next
/// load of each (`record::memo`): moved, not copied. Documents a load left bundles out of
/// are not kept (the next load tries those bundles again).
impl<S: Store> Drop for OpenRecord<'_, S> {
    fn drop(&mut self) {
        let reader = self.identity.peer();
        for (sid, sd) in self.loaded.drain() {
            if sd.unapplied.is_empty() {
                self.vault.memo.docs.put(
                    &self.id,
                    &sid,
                    &reader,
                    memo::Kept {
                        doc: sd.doc,
                        have: sd.vv,
                        since_snapshot: sd.since_snapshot,
                    },
                );
            }
        }
    }
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// The record id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// Whether this node owns the record.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    fn section_label(&self, sid: &SectionId) -> String {
        if *sid == SectionId::AUTH {
            return "auth".into();
        }
        self.directory
            .get(sid)
            .map_or_else(|| sid.to_string(), ToString::to_string)
    }

    fn corrupt(&self, sid: &SectionId, reason: impl ToString) -> RecordError {
        RecordError::Corrupt {
            section: self.section_label(sid),
            reason: reason.to_string(),
        }
    }

    /// Runs a mutating operation: on success commits its batch durably; on failure (or a
    /// failed commit) drops in-memory state so nothing unacknowledged is visible.
    fn mutate<T>(&mut self, f: impl FnOnce(&mut Self, &mut Batch) -> Result<T>) -> Result<T> {
        let mut batch = Batch::new();
        let result = f(self, &mut batch).and_then(|t| {
            self.commit_batch(batch)?;
            Ok(t)
        });
        if result.is_err() {
            self.roll_back()?;
        }
        result
    }

    /// Commits a batch of changes to the store; an empty one is not committed (a commit is a
    /// flush, which would hold the node's lock for nothing).
    fn commit_batch(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // A change to one section is at most bundle, receipt time, log head and snapshot, in
        // that order: every prefix of it is consistent (a bundle beyond its log head is
        // ignored and rewritten), so an ordered commit is enough. Anything larger (a new
        // section: key wraps, directory item and two logs) commits atomically, and so does
        // any change to the keyring whatever its size: a wrap without the stamp that follows
        // it would be a keyring an open could take for the one it remembers.
        if batch.ops().len() <= 4 && !keyring::stamps(&batch) {
            self.vault.store.commit_ordered(batch)?;
        } else {
            self.vault.store.commit(batch)?;
        }
        Ok(())
    }

    /// Forgets in-memory changes that were not committed: the documents are reloaded from the
    /// store when next used, and the keys and directory now.
    fn roll_back(&mut self) -> Result<()> {
        self.reload()
    }

    /// Drops everything loaded and reads keys and directory again (after bundles or keys
    /// arrived from a peer).
    pub fn reload(&mut self) -> Result<()> {
        self.loaded.clear();
        self.keys.clear();
        self.load_keys()?;
        self.load_directory()
    }
}

/// Associated data binding a value sealed under a section key to its kind (`domain`), record
/// and section.
fn section_aad(domain: &[u8], record: &RecordId, sid: &SectionId) -> Vec<u8> {
    let mut aad = domain.to_vec();
    aad.extend_from_slice(&record.0);
    aad.extend_from_slice(&sid.0);
    aad
}

fn new_doc(identity: &Identity) -> AutoCommit {
    AutoCommit::new().with_actor(automerge::ActorId::from(identity.peer().0))
}

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_ipld_dagcbor::to_vec(v).map_err(|_| RecordError::Invalid("value cannot be encoded"))
}

fn decbor<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::result::Result<T, ()> {
    serde_ipld_dagcbor::from_slice(b).map_err(|_| ())
}

fn json_string<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|_| RecordError::Invalid("value cannot be encoded"))
}

impl Role {
    /// Whether a node of this role may own a record.
    pub fn owns_record(self) -> bool {
        self == Role::Patient
    }
}
