//! The record engine: a patient's record (or a professional's partial replica of one) held in
//! a [`Store`], with every change written as a verified bundle.
//!
//! ## Layout in the store
//!
//! | key | value |
//! |---|---|
//! | `R` record | registration (CBOR) |
//! | `K` record section epoch recipient | a section key wrapped to one X25519 key, signed by the record root |
//! | `B` record section author seq | an encoded [`Bundle`] |
//! | `L` record section author | the author's [`LogHead`] in that section |
//! | `C` record section | a sealed snapshot of the section document (a cache; rebuildable) |
//! | `F` record section author seq | a second, conflicting bundle: fork evidence |
//! | `H`, `J` record author section seq | a write held for the patient's review ([`HeldWrite`]), and its bundle |
//! | `S` record section | the section's shared snapshot, signed by a patient device |
//! | `T` record section author | the section's base: where a shared snapshot this node started from left that author's log |
//! | `A` record section author seq | when this node accepted that bundle (its own clock) |
//!
//! Each section (and the auth document, section [`SectionId::AUTH`]) is an automerge document
//! whose root map holds one key per immutable item: `e/<entry id>` in content sections,
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

use crate::bundle::Bundle;
use crate::crypto::{self, Domain, SymmetricKey};
use crate::entry::{CheckedBody, EntryBody, EntryStatus, EntryVersion, Provenance};
use crate::ids::{EntryId, PeerKey, RecordId, SectionId};
use crate::keys::{Identity, Role};
use crate::log::{self, LogHead, VersionVector};
use crate::section::{Label, SectionName};
use crate::store::{self, Batch, Store, StoreError};
use crate::time::Timestamp;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ROOT, ReadDoc};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use std::collections::{BTreeMap, HashMap, HashSet};

/// After at most this many bundles since the last snapshot, a section's snapshot is rewritten.
pub const SNAPSHOT_EVERY: u32 = 256;

/// Payloads of at least this many bytes in all are decrypted on all cores when a section loads.
const PARALLEL_DECRYPT_BYTES: usize = 1 << 20;

/// A read that replays at least this many bundles after the local snapshot writes a fresh one.
pub const SNAPSHOT_REFRESH_ON_READ: u32 = 64;

/// After at least this many: small sections are snapshotted more often, since saving them is
/// cheap and every later open replays the bundles since the snapshot.
pub const SNAPSHOT_EVERY_MIN: u32 = 32;

/// How many bundles may follow a section's snapshot before it is rewritten: a quarter of the
/// section's bundles, between [`SNAPSHOT_EVERY_MIN`] and [`SNAPSHOT_EVERY`], so that saving
/// (which costs in proportion to the section) stays a small share of each write while opening
/// replays few bundles.
fn snapshot_every(vv: &VersionVector) -> u32 {
    let total: u64 = vv.values().map(|h| h.seq).sum();
    u32::try_from(total / 4)
        .unwrap_or(SNAPSHOT_EVERY)
        .clamp(SNAPSHOT_EVERY_MIN, SNAPSHOT_EVERY)
}

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

mod writer;
pub use writer::EntryWriter;

mod held;
pub use held::{
    Decision, HeldReason, HeldWrite, HoldReport, MAX_HELD, MAX_HELD_BYTES,
    MAX_HELD_BYTES_PER_AUTHOR, MAX_HELD_PER_AUTHOR, REVIEW_PREFIX, ReviewDecision, SettleReport,
    Verdict, WriteRules,
};

/// What to put in a new record.
#[derive(Debug, Default, Clone)]
pub struct NewRecord {
    /// A first demographics entry (validated against the demographics schema).
    pub demographics: Option<serde_json::Value>,
}

fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn k_record(r: &RecordId) -> Vec<u8> {
    key(b'R', &[&r.0])
}
fn k_wrap_prefix(r: &RecordId) -> Vec<u8> {
    key(b'K', &[&r.0])
}
fn k_wrap(r: &RecordId, s: &SectionId, epoch: u32, recipient: &[u8; 32]) -> Vec<u8> {
    key(b'K', &[&r.0, &s.0, &epoch.to_be_bytes(), recipient])
}
fn k_bundle(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(b'B', &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}
fn k_head_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'L', &[&r.0, &s.0])
}
fn k_head(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(b'L', &[&r.0, &s.0, &a.0])
}
fn k_shared(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'S', &[&r.0, &s.0])
}
fn k_base_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'T', &[&r.0, &s.0])
}
fn k_base(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(b'T', &[&r.0, &s.0, &a.0])
}
fn k_received(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(b'A', &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}
fn k_cache(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'C', &[&r.0, &s.0])
}

/// The record's registration on this node.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Registration {
    record: RecordId,
    /// Whether this node owns the record (a patient's device) or holds a replica.
    owner: bool,
    created: Timestamp,
}

pub use crate::keywrap::KeyWrap;

/// A device the record root has certified as the patient's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCert {
    /// The device key.
    pub peer: PeerKey,
    /// The device's name.
    pub name: String,
    /// Its X25519 agreement key, hex.
    pub agreement_public: String,
    /// When it was added.
    pub added: Timestamp,
    /// Root signature over (peer, agreement key), hex.
    pub root_signature: String,
}

impl DeviceCert {
    /// Whether `record`'s root key signed this certificate.
    pub fn verify(&self, record: &RecordId) -> bool {
        let (Ok(root), Ok(agreement), Ok(sig)) = (
            record.verifying_key(),
            data_encoding::HEXLOWER.decode(self.agreement_public.as_bytes()),
            data_encoding::HEXLOWER.decode(self.root_signature.as_bytes()),
        ) else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
            return false;
        };
        crypto::verify(&root, Domain::DeviceCert, &[&self.peer.0, &agreement], &sig).is_ok()
    }
}

/// What [`Vault::store_remote`] did with a batch of bundles from a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteReport {
    /// Bundles stored.
    pub stored: usize,
    /// Bundles already held.
    pub duplicates: usize,
    /// Bundles refused, with the reason (no content).
    pub refused: Vec<String>,
    /// Forks detected (evidence kept).
    pub forks: usize,
}

/// A directory item: a section's name, sealed under the section's key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DirectoryItem {
    name_sealed: String,
    created: Timestamp,
}

/// What a section document holds in memory.
struct SectionDoc {
    doc: AutoCommit,
    vv: VersionVector,
    since_snapshot: u32,
    /// Authors whose bundles could not be applied when the section was loaded.
    unapplied: Vec<Unapplied>,
}

/// Bundles of one author that a section was loaded without, because they break the rules
/// every bundle follows or do not apply (see the module docs). The section is readable
/// without them; they stay stored, as evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unapplied {
    /// The section (its name, or its opaque id if the name is unreadable).
    pub section: String,
    /// Whose bundles.
    pub author: PeerKey,
    /// The first sequence number left out; every later one of the author's is left out too.
    pub from_seq: u64,
    /// How many bundles were left out.
    pub count: u64,
    /// Why the first one was (no content).
    pub reason: String,
}

/// A bundle's decrypted payload and what its change chunk's header says.
type OpenedChange = (zeroize::Zeroizing<Vec<u8>>, crate::bundle::ChangeHead);

/// [`OpenRecord::check_append_only`]'s refusal of a bundle whose change depends on changes this
/// node does not hold yet: [`Vault::store_remote`] retries it after the batch's other logs.
pub const WAITS_FOR_DEPS: &str = "the change depends on changes this node does not hold yet";

/// Verified facts about who wrote a version and when this node received it, as opposed to what
/// the writer said of itself in the version's provenance (which is only a claim).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// The key that signed the bundle carrying the version.
    pub author: PeerKey,
    /// What vouches for the name: `patient-device` (a device certified by the record root),
    /// `organisation-credential` (a credential from an organisation this node trusts, filled
    /// in by the node) or `unverified` (nothing: only the key is known).
    pub basis: &'static str,
    /// The verified name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The verified role, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The verified organisation, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// When this node accepted that bundle (its own clock; `None` for bundles stored before
    /// receipt times were kept, or covered by a snapshot this node started from).
    pub received_at: Option<Timestamp>,
}

/// The fields of a version's `provenance` that only its writer vouches for: shown as claims,
/// never as facts (the author key is checked against the bundle's signer).
pub const CLAIMED: &[&str] = &[
    "provenance.author_name",
    "provenance.author_role",
    "provenance.recorded_at",
    "provenance.purpose",
];

#[derive(Serialize, Deserialize)]
struct Snapshot {
    vv: Vec<(PeerKey, LogHead)>,
    #[serde(with = "serde_bytes")]
    doc: Vec<u8>,
}

/// The largest shared snapshot made or accepted (it travels in one sync response).
pub const MAX_SHARED_SNAPSHOT: usize = 8 << 20;

/// A section's compacted state, vouched for by one of the patient's devices, so that a new
/// reader starts from one document instead of replaying every bundle (DESIGN §4, compaction).
///
/// The version vector is in the clear and signed, so any node can see what the snapshot
/// covers; the document is sealed under the section key with the vector inside, and a reader
/// checks the two agree. Bundles up to the vector need not be held by a node that accepted the
/// snapshot: it records the vector as its **base** and continues each log from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSnapshot {
    /// The record.
    pub record: RecordId,
    /// The section.
    pub section: SectionId,
    /// The patient device that made it.
    pub author: PeerKey,
    /// What it covers: the newest bundle per author.
    pub vv: Vec<(PeerKey, LogHead)>,
    /// Key epoch (4 bytes, big-endian) and the sealed document.
    #[serde(with = "serde_bytes")]
    pub blob: Vec<u8>,
    /// The author's signature.
    pub signature: ByteArray<64>,
}

impl SharedSnapshot {
    fn signed_parts(&self) -> Result<Vec<u8>> {
        cbor(&(
            &self.record,
            &self.section,
            &self.author,
            &self.vv,
            crypto::sha256(&[&self.blob]),
        ))
    }

    /// Decodes a snapshot (size-checked first).
    pub fn decode(bytes: &[u8]) -> Option<SharedSnapshot> {
        if bytes.len() > MAX_SHARED_SNAPSHOT + 64 * 1024 {
            return None;
        }
        decbor(bytes).ok()
    }

    /// The version vector it covers.
    pub fn version_vector(&self) -> VersionVector {
        self.vv.iter().copied().collect()
    }

    /// Whether `author` signed it.
    pub fn verify(&self) -> bool {
        let (Ok(key), Ok(parts)) = (self.author.verifying_key(), self.signed_parts()) else {
            return false;
        };
        crypto::verify(
            &key,
            Domain::Snapshot,
            &[&parts],
            &self.signature.into_array(),
        )
        .is_ok()
    }
}

/// All records held in one store.
pub struct Vault<S: Store> {
    store: S,
}

impl<S: Store> Vault<S> {
    /// A vault over `store`, without checking the store's format (see [`Vault::open`]).
    pub fn new(store: S) -> Self {
        Vault { store }
    }

    /// A vault over `store`, checking (or, for an empty store, writing) the format version.
    pub fn open(store: S) -> Result<Self> {
        store::check_format(&store)?;
        Ok(Vault { store })
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The records held on this node.
    pub fn records(&self) -> Result<Vec<RecordId>> {
        let mut out = Vec::new();
        for (k, _) in self.store.scan_prefix(b"R")? {
            if let Ok(b) = <[u8; 32]>::try_from(&k[1..]) {
                out.push(RecordId(b));
            }
        }
        Ok(out)
    }

    /// Registers a record this node holds a replica of (a professional accepting a grant),
    /// storing the key wraps that came with it. Idempotent for the registration.
    pub fn register_replica(
        &self,
        record: &RecordId,
        wraps: &[KeyWrap],
        now: Timestamp,
    ) -> Result<()> {
        self.register(record, wraps, now, false)
    }

    /// Registers the record a linked device belongs to (`hearth init --join`), storing the
    /// key wraps the root holder sent with the device's certificate. The registration marks
    /// the record as the patient's own on this node; what the device may do still depends on
    /// its certificate in the auth document (see [`OpenRecord::holds_root`]).
    pub fn register_linked(
        &self,
        record: &RecordId,
        wraps: &[KeyWrap],
        now: Timestamp,
    ) -> Result<()> {
        if self.store.get(&k_record(record))?.is_some() {
            return Err(RecordError::Exists(*record));
        }
        self.register(record, wraps, now, true)
    }

    fn register(
        &self,
        record: &RecordId,
        wraps: &[KeyWrap],
        now: Timestamp,
        owner: bool,
    ) -> Result<()> {
        store::check_format(&self.store)?;
        let mut batch = Batch::new();
        if self.store.get(&k_record(record))?.is_none() {
            let reg = Registration {
                record: *record,
                owner,
                created: now,
            };
            batch.put(k_record(record), cbor(&reg)?);
        }
        for w in wraps {
            if w.record != *record || !w.verify() {
                return Err(RecordError::NotPermitted(
                    "a key wrap not signed by the record's owner",
                ));
            }
            batch.put(k_wrap(record, &w.section, w.epoch, &w.recipient), cbor(w)?);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(())
    }

    /// The shared snapshot of a section held here, as encoded (see [`SharedSnapshot`]).
    pub fn shared_snapshot(
        &self,
        record: &RecordId,
        section: &SectionId,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(&k_shared(record, section))?)
    }

    /// Where each log of a section starts on this node: bundles up to these heads came as a
    /// shared snapshot and need not be held (empty when every bundle is held).
    pub fn base(&self, record: &RecordId, section: &SectionId) -> Result<VersionVector> {
        let mut vv = VersionVector::new();
        for (k, v) in self.store.scan_prefix(&k_base_prefix(record, section))? {
            if let (Ok(a), Some(h)) = (
                <[u8; 32]>::try_from(&k[k.len() - 32..]),
                LogHead::from_bytes(&v),
            ) {
                vv.insert(PeerKey(a), h);
            }
        }
        Ok(vv)
    }

    /// The log heads of one section, from the index (no keys needed).
    pub fn heads(&self, record: &RecordId, section: &SectionId) -> Result<VersionVector> {
        let mut vv = VersionVector::new();
        for (k, v) in self.store.scan_prefix(&k_head_prefix(record, section))? {
            if let (Ok(a), Some(h)) = (
                <[u8; 32]>::try_from(&k[k.len() - 32..]),
                LogHead::from_bytes(&v),
            ) {
                vv.insert(PeerKey(a), h);
            }
        }
        Ok(vv)
    }

    /// Every section of `record` with bundles held, and its heads.
    pub fn held_sections(&self, record: &RecordId) -> Result<BTreeMap<SectionId, VersionVector>> {
        let mut out: BTreeMap<SectionId, VersionVector> = BTreeMap::new();
        for (k, v) in self.store.scan_prefix(&key(b'L', &[&record.0]))? {
            // L | record(32) | section(16) | author(32)
            if k.len() != 1 + 32 + 16 + 32 {
                continue;
            }
            let (Ok(s), Ok(a), Some(h)) = (
                <[u8; 16]>::try_from(&k[33..49]),
                <[u8; 32]>::try_from(&k[49..]),
                LogHead::from_bytes(&v),
            ) else {
                continue;
            };
            out.entry(SectionId(s)).or_default().insert(PeerKey(a), h);
        }
        Ok(out)
    }

    /// Encoded bundles of one (section, author) log from `from_seq` on, while `budget` bytes
    /// last (at least one bundle is returned if any exists and the budget is not exhausted).
    /// The log is read lazily: reading stops at the first bundle the budget cannot take, so a
    /// continuation from where the last one stopped reads nothing twice.
    pub fn bundles_from(
        &self,
        record: &RecordId,
        section: &SectionId,
        author: &PeerKey,
        from_seq: u64,
        budget: &mut usize,
    ) -> Result<Vec<Vec<u8>>> {
        let start = k_bundle(record, section, author, from_seq);
        let end = k_bundle(record, section, author, u64::MAX);
        let mut out = Vec::new();
        self.store.scan_while(&start, &end, &mut |_, v| {
            if v.len() > *budget {
                return false;
            }
            *budget -= v.len();
            out.push(v.to_vec());
            true
        })?;
        Ok(out)
    }

    /// Key wraps of `record` addressed to `recipient`.
    pub fn key_wraps_to(&self, record: &RecordId, recipient: &[u8; 32]) -> Result<Vec<KeyWrap>> {
        Ok(self
            .store
            .scan_prefix(&k_wrap_prefix(record))?
            .into_iter()
            .filter_map(|(_, v)| decbor::<KeyWrap>(&v).ok())
            .filter(|w| w.recipient.into_array() == *recipient)
            .collect())
    }

    /// Verifies and stores bundles received from a peer, without decrypting them (so a relay
    /// can do it too): each must decode, be signed by its author, be allowed by `authorize`,
    /// and extend its log's hash chain. Forks are kept as evidence and refused. Everything
    /// accepted is committed atomically, with `now` (this node's clock) as each bundle's
    /// receipt time.
    ///
    /// A log whose next bundle `authorize` refuses with [`WAITS_FOR_DEPS`] is tried again after
    /// the batch's other logs (whose changes it may depend on), as long as that makes progress.
    pub fn store_remote(
        &self,
        record: &RecordId,
        bundles: Vec<Bundle>,
        now: Timestamp,
        authorize: &mut dyn FnMut(&Bundle) -> std::result::Result<(), String>,
    ) -> Result<RemoteReport> {
        let mut report = RemoteReport::default();
        let mut sorted = bundles;
        sorted.retain(|b| {
            let ok = b.header().record == *record;
            if !ok {
                report.refused.push("a bundle for another record".into());
            }
            ok
        });
        sorted.sort_by_key(|b| (b.header().section, b.header().author, b.header().seq));
        let mut batch = Batch::new();
        // Per log: the bundles that extend it (signature-checked), and how many are authorised.
        let mut runs: Vec<(SectionId, PeerKey, Vec<&Bundle>, usize)> = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            // One (section, author) log at a time.
            let (section, author) = (sorted[i].header().section, sorted[i].header().author);
            let mut j = i;
            while j < sorted.len()
                && sorted[j].header().section == section
                && sorted[j].header().author == author
            {
                j += 1;
            }
            let run = &sorted[i..j];
            i = j;
            let mut head = self
                .store
                .get(&k_head(record, &section, &author))?
                .and_then(|v| LogHead::from_bytes(&v));
            let base = self
                .store
                .get(&k_base(record, &section, &author))?
                .and_then(|v| LogHead::from_bytes(&v))
                .map_or(0, |h| h.seq);
            // Walk the chain: which bundles extend the log, which are already held, which fork.
            let mut extend: Vec<&Bundle> = Vec::new();
            for b in run {
                let h = b.header();
                if h.seq <= base
                    && self
                        .store
                        .get(&k_bundle(record, &section, &author, h.seq))?
                        .is_none()
                {
                    // Covered by the shared snapshot this node started from.
                    report.duplicates += 1;
                    continue;
                }
                let held = if head.is_some_and(|x| h.seq <= x.seq) {
                    self.store
                        .get(&k_bundle(record, &section, &author, h.seq))?
                        .map(|bytes| crate::ids::BundleHash(crypto::sha256(&[&bytes])))
                } else {
                    None
                };
                match log::check_append(head.as_ref(), held, h, b.hash()) {
                    Ok(log::Append::Extend) => {
                        extend.push(b);
                        head = Some(LogHead {
                            seq: h.seq,
                            hash: b.hash(),
                        });
                    }
                    Ok(log::Append::Duplicate) => report.duplicates += 1,
                    Err(log::LogError::Fork { seq }) => {
                        // Evidence counts only if the author really signed it.
                        if b.verify().is_ok() {
                            batch.put(
                                key(
                                    b'F',
                                    &[&record.0, &section.0, &author.0, &seq.to_be_bytes()],
                                ),
                                b.encoded().to_vec(),
                            );
                            report.forks += 1;
                            report
                                .refused
                                .push(format!("fork by {author} at seq {seq}"));
                        } else {
                            report.refused.push(
                                "bundle signature does not verify (altered or forged)".into(),
                            );
                        }
                    }
                    Err(e) => report.refused.push(e.to_string()),
                }
            }
            // Signatures: the newest bundle's signature covers its header, which names the
            // hash of the one before, and so on down the run; so one check authenticates the
            // whole run. If it fails, check one by one and keep the good prefix.
            let mut good = extend.len();
            if extend.last().is_some_and(|b| b.verify().is_err()) {
                good = extend
                    .iter()
                    .position(|b| b.verify().is_err())
                    .unwrap_or(extend.len());
                report
                    .refused
                    .push("bundle signature does not verify (altered or forged)".into());
            }
            if good < extend.len() {
                report.refused.extend(std::iter::repeat_n(
                    "follows a bundle that was refused".to_string(),
                    extend.len() - good - 1,
                ));
            }
            extend.truncate(good);
            runs.push((section, author, extend, 0));
        }
        // Authorise each log's bundles in order; a log waiting for changes another log of the
        // batch carries is tried again once the others have gone as far as they can.
        let mut waiting: Vec<Option<String>> = vec![None; runs.len()];
        let mut done = vec![false; runs.len()];
        loop {
            let mut progress = false;
            for (r, (_, _, extend, next)) in runs.iter_mut().enumerate() {
                if done[r] {
                    continue;
                }
                while let Some(b) = extend.get(*next) {
                    match authorize(b) {
                        Ok(()) => {
                            *next += 1;
                            progress = true;
                            waiting[r] = None;
                        }
                        Err(why) => {
                            if why != WAITS_FOR_DEPS {
                                done[r] = true;
                            }
                            waiting[r] = Some(why);
                            break;
                        }
                    }
                }
                if *next == extend.len() {
                    done[r] = true;
                }
            }
            if !progress || done.iter().all(|d| *d) {
                break;
            }
        }
        report.refused.extend(waiting.into_iter().flatten());
        for (section, author, extend, next) in &runs {
            for b in &extend[..*next] {
                let h = b.header();
                batch.put(
                    k_bundle(record, section, author, h.seq),
                    b.encoded().to_vec(),
                );
                batch.put(
                    k_received(record, section, author, h.seq),
                    now.as_millis().to_be_bytes().to_vec(),
                );
                report.stored += 1;
            }
            if let Some(b) = next.checked_sub(1).and_then(|n| extend.get(n)) {
                let nh = LogHead {
                    seq: b.header().seq,
                    hash: b.hash(),
                };
                batch.put(k_head(record, section, author), nh.to_bytes().to_vec());
            }
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(report)
    }

    /// Stores a node-level value (not part of any record), e.g. a held grant or credential.
    pub fn put_local(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut batch = Batch::new();
        batch.put(local_key(key), value.to_vec());
        self.store.commit(batch)?;
        Ok(())
    }

    /// A node-level value.
    pub fn get_local(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(&local_key(key))?)
    }

    /// Node-level values whose keys start with `prefix`, as (key, value).
    pub fn local_items(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let p = local_key(prefix);
        Ok(self
            .store
            .scan_prefix(&p)?
            .into_iter()
            .filter_map(|(k, v)| {
                String::from_utf8(k[p.len() - prefix.len()..].to_vec())
                    .ok()
                    .map(|k| (k, v))
            })
            .collect())
    }

    /// Creates the patient's own record (the identity must hold a record root key).
    pub fn create_record(
        &self,
        identity: &Identity,
        new: NewRecord,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<RecordId> {
        let (root, rid) = match (identity.root_key(), identity.record_id()) {
            (Some(k), Some(r)) => (k, r),
            _ => {
                return Err(RecordError::NotPermitted(
                    "only a patient node owns a record",
                ));
            }
        };
        store::check_format(&self.store)?;
        if self.store.get(&k_record(&rid))?.is_some() {
            return Err(RecordError::Exists(rid));
        }
        // Validate before writing anything.
        let demographics = match &new.demographics {
            Some(v) => {
                Some(EntryBody::from_json(crate::section::SectionClass::Demographics, v)?.to_json())
            }
            None => None,
        };
        let mut batch = Batch::new();
        let reg = Registration {
            record: rid,
            owner: true,
            created: now,
        };
        batch.put(k_record(&rid), cbor(&reg)?);
        let auth_key = SymmetricKey::generate(rng);
        let to = recipients(identity, &[]);
        for w in wraps_for(root, &rid, &SectionId::AUTH, 0, &auth_key, &to, rng)? {
            batch.put(k_wrap(&rid, &w.section, w.epoch, &w.recipient), cbor(&w)?);
        }
        let mut rec = OpenRecord {
            vault: self,
            identity,
            id: rid,
            owner: true,
            keys: HashMap::from([(SectionId::AUTH, BTreeMap::from([(0, auth_key)]))]),
            directory: BTreeMap::new(),
            loaded: HashMap::new(),
            accepted: HashSet::new(),
        };
        rec.loaded.insert(
            SectionId::AUTH,
            SectionDoc {
                doc: new_doc(identity),
                vv: VersionVector::new(),
                since_snapshot: 0,
                unapplied: Vec::new(),
            },
        );
        let agreement = identity.agreement_public();
        let cert = DeviceCert {
            peer: identity.peer(),
            name: identity.name.clone(),
            agreement_public: data_encoding::HEXLOWER.encode(&agreement),
            added: now,
            root_signature: data_encoding::HEXLOWER.encode(&crypto::sign(
                root,
                Domain::DeviceCert,
                &[&identity.peer().0, &agreement],
            )),
        };
        let items = vec![
            (
                "record".to_string(),
                json_string(&serde_json::json!({"record_id": rid, "created": now}))?,
            ),
            (format!("device/{}", identity.peer()), json_string(&cert)?),
        ];
        rec.append_items(SectionId::AUTH, items, now, rng, &mut batch)?;
        if let Some(body) = demographics {
            let name = SectionName::new(
                crate::section::SectionClass::Demographics,
                crate::section::Label::General,
            );
            rec.add_entry_to_batch(&name, body, None, now, rng, &mut batch)?;
        }
        self.store.commit(batch)?;
        Ok(rid)
    }

    /// Opens a record held on this node.
    pub fn open_record<'v>(
        &'v self,
        identity: &'v Identity,
        record: &RecordId,
    ) -> Result<OpenRecord<'v, S>> {
        let reg: Registration = match self.store.get(&k_record(record))? {
            Some(b) => decbor(&b).map_err(|_| RecordError::Corrupt {
                section: "registration".into(),
                reason: "unreadable registration".into(),
            })?,
            None => return Err(RecordError::NoRecord(*record)),
        };
        let mut rec = OpenRecord {
            vault: self,
            identity,
            id: *record,
            owner: reg.owner,
            keys: HashMap::new(),
            directory: BTreeMap::new(),
            loaded: HashMap::new(),
            accepted: HashSet::new(),
        };
        rec.load_keys()?;
        if !rec.keys.contains_key(&SectionId::AUTH) {
            return Err(RecordError::NoKey("auth".into()));
        }
        rec.load_directory()?;
        Ok(rec)
    }
}

/// Where the newest payload of each author's log lies among `placed`, leaving out the bundles
/// `skip` leaves out.
fn newest_of(
    placed: &[(PeerKey, LogHead, std::ops::Range<usize>)],
    skip: &BTreeMap<PeerKey, (u64, String)>,
) -> Vec<std::ops::Range<usize>> {
    let mut newest: BTreeMap<PeerKey, std::ops::Range<usize>> = BTreeMap::new();
    for (a, head, range) in placed {
        if skip.get(a).is_none_or(|(from, _)| head.seq < *from) {
            newest.insert(*a, range.clone());
        }
    }
    newest.into_values().collect()
}

/// The rule every bundle's change follows: its actor is the bundle author's device key and its
/// sequence number is the bundle's.
fn check_change_head(
    head: &crate::bundle::ChangeHead,
    author: &PeerKey,
    seq: u64,
) -> std::result::Result<(), String> {
    if head.actor != author.0 {
        return Err("the change's actor is not the bundle author's own".into());
    }
    if head.seq != seq {
        return Err("the change's sequence number is not the bundle's".into());
    }
    Ok(())
}

fn local_key(key: &str) -> Vec<u8> {
    let mut k = b"N/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// Who receives a new key: this device, the recovery key, and `others` (the patient's other
/// devices).
fn recipients(identity: &Identity, others: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut out = vec![identity.agreement_public()];
    if let Some(r) = identity.recovery_public() {
        out.push(r);
    }
    for o in others {
        if !out.contains(o) {
            out.push(*o);
        }
    }
    out
}

fn wraps_for(
    root: &ed25519_dalek::SigningKey,
    rid: &RecordId,
    section: &SectionId,
    epoch: u32,
    key: &SymmetricKey,
    recipients: &[[u8; 32]],
    rng: &mut impl CryptoRng,
) -> Result<Vec<KeyWrap>> {
    recipients
        .iter()
        .map(|r| Ok(KeyWrap::create(root, *rid, *section, epoch, key, *r, rng)?))
        .collect()
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

fn entry_key(id: &EntryId) -> String {
    format!("e/{id}")
}

/// An entry as shown to a reader: the current version and how many versions it has had.
#[derive(Clone, Debug, Serialize)]
pub struct EntryView {
    /// The current version's id (use it to correct or mark in error).
    pub id: EntryId,
    /// The version number.
    pub version: u32,
    /// Final or entered in error.
    pub status: EntryStatus,
    /// Why it was marked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The version it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<EntryId>,
    /// The entry's fields.
    pub body: serde_json::Value,
    /// Who wrote this version, when, as the writer said: its `author` is the bundle's signer
    /// (checked), the rest only the writer's word (see `claimed`).
    pub provenance: Provenance,
    /// The fields of `provenance` that are the writer's claims ([`CLAIMED`]).
    pub claimed: &'static [&'static str],
    /// What this node verified: the signing key, its verified identity, the receipt time
    /// ([`OpenRecord::show`] fills it; `None` where not looked up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Attribution>,
    /// Other current versions of the same entry made concurrently on another node (a conflict
    /// for a person to resolve by correcting one of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub concurrent_versions: Vec<EntryId>,
    /// The versions this one replaced, newest first, back to the entry's first version (at
    /// most [`EARLIER_VERSIONS_SHOWN`]): the ids the entry was known by before (an export names
    /// them, so that a system holding an earlier export recognises the entry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier_versions: Vec<EntryId>,
}

/// How many earlier versions an [`EntryView`] names.
pub const EARLIER_VERSIONS_SHOWN: usize = 32;

/// One section as shown to a reader.
#[derive(Clone, Debug, Serialize)]
pub struct SectionView {
    /// The section's class.
    pub class: crate::section::SectionClass,
    /// The section's label.
    pub label: crate::section::Label,
    /// Current entries, oldest first.
    pub entries: Vec<EntryView>,
}

/// A current entry as [`OpenRecord::show_raw`] reads it: the [`EntryView`] without its body
/// (`entry.body` is `null`), and the body as the JSON text stored.
#[derive(Clone, Debug)]
pub struct RawEntryView {
    /// The current version, as [`OpenRecord::show`] gives it, but for the body.
    pub entry: EntryView,
    text: String,
    body: std::ops::Range<usize>,
}

impl RawEntryView {
    /// The entry as `entry`, with its body as JSON text (`serde_json::to_string` of the body).
    pub fn new(mut entry: EntryView, body: String) -> Self {
        entry.body = serde_json::Value::Null;
        let len = body.len();
        RawEntryView {
            entry,
            text: body,
            body: 0..len,
        }
    }

    /// The body's JSON text: one JSON object, as stored (any valid JSON layout).
    pub fn body(&self) -> &str {
        self.text.get(self.body.clone()).unwrap_or("null")
    }
}

/// One section as [`OpenRecord::show_raw`] reads it.
#[derive(Clone, Debug)]
pub struct RawSectionView {
    /// The section's class.
    pub class: crate::section::SectionClass,
    /// The section's label.
    pub label: crate::section::Label,
    /// Current entries, oldest first (the order of [`SectionView::entries`]).
    pub entries: Vec<RawEntryView>,
}

/// A section listed in the directory.
#[derive(Clone, Debug, Serialize)]
pub struct SectionInfo {
    /// Its readable name.
    pub name: SectionName,
    /// Its opaque id(s): two devices that created the same section offline each made one.
    pub ids: Vec<SectionId>,
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

    /// Unwraps every section key addressed to this device.
    fn load_keys(&mut self) -> Result<()> {
        let me = self.identity.agreement_public();
        for (_, v) in self.vault.store.scan_prefix(&k_wrap_prefix(&self.id))? {
            let Ok(w) = decbor::<KeyWrap>(&v) else {
                continue;
            };
            if w.recipient.into_array() != me || w.record != self.id {
                continue;
            }
            if !w.verify() {
                // A wrap not signed by the record root is ignored; the section stays unreadable
                // and says so when opened.
                continue;
            }
            let info = KeyWrap::info(&self.id, &w.section, w.epoch);
            if let Ok(k) = crypto::unwrap_key(&w.wrapped, self.identity.agreement_secret(), &info) {
                self.keys.entry(w.section).or_default().insert(w.epoch, k);
            }
        }
        Ok(())
    }

    /// Reads the section directory from the auth document.
    fn load_directory(&mut self) -> Result<()> {
        self.ensure_loaded(&SectionId::AUTH)?;
        let mut dir = BTreeMap::new();
        let items = self.auth_items("section/");
        for (k, v) in items {
            let Ok(sid) = k.trim_start_matches("section/").parse::<SectionId>() else {
                continue;
            };
            let Some(keys) = self.keys.get(&sid) else {
                continue;
            };
            let Ok(item) = serde_json::from_str::<DirectoryItem>(&v) else {
                continue;
            };
            let Ok(sealed) = data_encoding::BASE64.decode(item.name_sealed.as_bytes()) else {
                continue;
            };
            let aad = name_aad(&self.id, &sid);
            for key in keys.values() {
                if let Ok(name) = crypto::open(key, &aad, &sealed)
                    && let Ok(name) = std::str::from_utf8(&name)
                    && let Ok(name) = name.parse::<SectionName>()
                {
                    dir.insert(sid, name);
                    break;
                }
            }
        }
        self.directory = dir;
        Ok(())
    }

    /// The auth document's items whose keys start with `prefix` (key, JSON text).
    pub fn auth_items(&self, prefix: &str) -> Vec<(String, String)> {
        let Some(auth) = self.loaded.get(&SectionId::AUTH) else {
            return Vec::new();
        };
        string_items(&auth.doc, prefix)
    }

    /// The sections this node can read, by name.
    pub fn sections(&self) -> Vec<SectionInfo> {
        let mut by_name: BTreeMap<SectionName, Vec<SectionId>> = BTreeMap::new();
        for (sid, name) in &self.directory {
            by_name.entry(*name).or_default().push(*sid);
        }
        by_name
            .into_iter()
            .map(|(name, ids)| SectionInfo { name, ids })
            .collect()
    }

    fn ids_of(&self, name: &SectionName) -> Vec<SectionId> {
        self.directory
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Loads a section document from the store if it is not loaded yet.
    fn ensure_loaded(&mut self, sid: &SectionId) -> Result<()> {
        if self.loaded.contains_key(sid) {
            return Ok(());
        }
        let sd = self.load_section(sid)?;
        self.loaded.insert(*sid, sd);
        Ok(())
    }

    /// The document a section loads from, and the logs it covers: the local snapshot when it
    /// is intact and consistent with the logs, else the shared snapshot this node may have
    /// started the section from, else an empty document.
    fn start_doc(
        &self,
        sid: &SectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
        heads: &VersionVector,
    ) -> Result<(AutoCommit, VersionVector)> {
        let store = &self.vault.store;
        let shared = || -> Result<Option<Vec<u8>>> {
            Ok(store
                .get(&k_shared(&self.id, sid))?
                .and_then(|b| SharedSnapshot::decode(&b))
                .map(|s| s.blob))
        };
        for which in 0..2 {
            let blob = if which == 0 {
                store.get(&k_cache(&self.id, sid))?
            } else {
                shared()?
            };
            let Some(blob) = blob else { continue };
            if let Some((mut d, vv)) = self.open_snapshot(sid, keys, &blob)
                && vv
                    .iter()
                    .all(|(a, h)| heads.get(a).is_some_and(|x| x.seq >= h.seq))
            {
                d.set_actor(automerge::ActorId::from(self.identity.peer().0));
                return Ok((d, vv));
            }
        }
        Ok((new_doc(self.identity), VersionVector::new()))
    }

    fn load_section(&self, sid: &SectionId) -> Result<SectionDoc> {
        let keys = self
            .keys
            .get(sid)
            .ok_or_else(|| RecordError::NoKey(self.section_label(sid)))?;
        let store = &self.vault.store;
        let mut heads = VersionVector::new();
        for (k, v) in store.scan_prefix(&k_head_prefix(&self.id, sid))? {
            let author = <[u8; 32]>::try_from(&k[k.len() - 32..])
                .map_err(|_| self.corrupt(sid, "bad log key"))?;
            let head = LogHead::from_bytes(&v).ok_or_else(|| self.corrupt(sid, "bad log head"))?;
            heads.insert(PeerKey(author), head);
        }
        let (mut doc, mut have) = self.start_doc(sid, keys, &heads)?;
        let start_have = have.clone();
        // Check every newer bundle, then decrypt all their payloads into one buffer and apply
        // them in one pass: automerge applies one concatenation of change chunks much faster
        // than many small loads.
        let mut readable: Vec<(Bundle, &SymmetricKey)> = Vec::new();
        let mut applied = 0u32;
        for (author, head) in &heads {
            let from = have.get(author).map_or(1, |h| h.seq + 1);
            if from > head.seq {
                continue;
            }
            let start = k_bundle(&self.id, sid, author, from);
            let end = k_bundle(&self.id, sid, author, head.seq.saturating_add(1));
            let mut prev = have.get(author).copied();
            let mut newest = None;
            // A bundle under a key epoch this node does not hold (not yet, or never: after a
            // revocation) ends what it can read of this log.
            let mut locked = false;
            for (expect, (_, bytes)) in (from..).zip(store.scan(&start, &end)?) {
                let b = Bundle::decode_owned(bytes).map_err(|e| self.corrupt(sid, e))?;
                let h = b.header();
                if h.record != self.id
                    || h.section != *sid
                    || h.author != *author
                    || h.seq != expect
                {
                    return Err(self.corrupt(sid, "bundle stored under the wrong key"));
                }
                // The hash links tie every bundle to the newest one, whose signature is checked
                // below: one signature check per log covers the whole suffix.
                log::check_append(prev.as_ref(), None, h, b.hash())
                    .map_err(|e| self.corrupt(sid, e))?;
                let Some(key) = keys.get(&h.epoch) else {
                    locked = true;
                    break;
                };
                prev = Some(LogHead {
                    seq: h.seq,
                    hash: b.hash(),
                });
                applied += 1;
                readable.push((b, key));
                newest = Some(readable.len() - 1);
            }
            let newest = newest.and_then(|i| readable.get(i)).map(|(b, _)| b);
            match (newest, prev) {
                (Some(b), Some(p)) if p.seq == head.seq && p.hash == head.hash => {
                    b.verify().map_err(|e| self.corrupt(sid, e))?;
                }
                // Readable up to a bundle under an unknown key: the last one read is signed.
                (Some(b), Some(_)) if locked => {
                    b.verify().map_err(|e| self.corrupt(sid, e))?;
                }
                (None, _) if locked => {}
                _ => {
                    return Err(
                        self.corrupt(sid, "log is missing bundles or its head does not match")
                    );
                }
            }
            match prev {
                Some(p) if locked => {
                    have.insert(*author, p);
                }
                Some(_) => {
                    have.insert(*author, *head);
                }
                None => {}
            }
        }
        // Room for all of them first (a growing buffer would leave plaintext in freed memory),
        // then each bundle's payload decrypted into its own part of it, on all cores when there
        // is much to decrypt.
        let total: usize = readable.iter().map(|(b, _)| b.payload_len()).sum();
        let mut payloads = zeroize::Zeroizing::new(vec![0u8; total]);
        let mut parts = Vec::with_capacity(readable.len());
        // Each bundle's author, seq, hash and where its payload lies in `payloads`.
        let mut placed: Vec<(PeerKey, LogHead, std::ops::Range<usize>)> =
            Vec::with_capacity(readable.len());
        let mut rest: &mut [u8] = &mut payloads;
        let mut at = 0;
        for (b, key) in &readable {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(b.payload_len());
            parts.push((b, *key, part));
            rest = tail;
            let h = b.header();
            let head = LogHead {
                seq: h.seq,
                hash: b.hash(),
            };
            placed.push((h.author, head, at..at + b.payload_len()));
            at += b.payload_len();
        }
        let threads = if total >= PARALLEL_DECRYPT_BYTES {
            crate::par::cores().min(parts.len())
        } else {
            1
        };
        let opened =
            crate::par::map_vec_on(threads, parts, |_, (b, key, part)| b.open_to(key, part));
        for outcome in opened {
            outcome.map_err(|e| self.corrupt(sid, e))?;
        }
        drop(readable);
        // Every bundle's payload must be one uncompressed change by its author, numbered as
        // the bundle (checked before automerge reads it); an author whose bundle is not is
        // left out from that bundle on.
        let mut skip: BTreeMap<PeerKey, (u64, String)> = BTreeMap::new();
        for (author, head, range) in &placed {
            if skip.contains_key(author) {
                continue;
            }
            let ok = crate::bundle::read_change_head(&payloads[range.clone()])
                .map_err(|e| e.to_string())
                .and_then(|c| check_change_head(&c, author, head.seq));
            if let Err(why) = ok {
                skip.insert(*author, (head.seq, why));
            }
        }
        let skipped = |skip: &BTreeMap<PeerKey, (u64, String)>, a: &PeerKey, seq: u64| {
            skip.get(a).is_some_and(|(from, _)| seq >= *from)
        };
        // Apply what is left in one pass; if that fails, find the first bundle that does not
        // apply, leave its author out from there, and start again (at most once per author).
        let mut first = Some(doc);
        doc = loop {
            let mut d = match first.take() {
                Some(d) => d,
                None => self.start_doc(sid, keys, &heads)?.0,
            };
            let loaded = if skip.is_empty() {
                payloads.is_empty() || d.load_incremental(&payloads).is_ok()
            } else {
                let mut kept = zeroize::Zeroizing::new(Vec::with_capacity(payloads.len()));
                for (a, head, range) in &placed {
                    if !skipped(&skip, a, head.seq) {
                        kept.extend_from_slice(&payloads[range.clone()]);
                    }
                }
                kept.is_empty() || d.load_incremental(&kept).is_ok()
            };
            // automerge skips a chunk it cannot read, and what follows it, without an error:
            // unless changes wait for missing ones, each log's newest change must be in.
            if loaded
                && (!d.get_missing_deps(&[]).is_empty()
                    || newest_of(&placed, &skip).iter().all(|range| {
                        let hash = crate::bundle::change_hash(&payloads[range.clone()]);
                        d.get_change_meta_by_hash(&automerge::ChangeHash(hash))
                            .is_some()
                    }))
            {
                break d;
            }
            let mut probe = self.start_doc(sid, keys, &heads)?.0;
            let offender = placed.iter().find(|(a, head, range)| {
                if skipped(&skip, a, head.seq) {
                    return false;
                }
                match automerge::Change::from_bytes(payloads[range.clone()].to_vec()) {
                    Ok(c) => probe.apply_changes(std::iter::once(c)).is_err(),
                    Err(_) => true,
                }
            });
            let Some((a, head, _)) = offender else {
                return Err(self.corrupt(sid, "payload is not valid automerge data"));
            };
            skip.insert(
                *a,
                (head.seq, "its change does not apply to the section".into()),
            );
        };
        let mut unapplied = Vec::new();
        for (author, (from, reason)) in &skip {
            let count = placed
                .iter()
                .filter(|(a, h, _)| a == author && h.seq >= *from)
                .count() as u64;
            // The author's log is held (applied) up to the bundle before the first left out.
            match placed
                .iter()
                .rfind(|(a, h, _)| a == author && h.seq < *from)
            {
                Some((_, h, _)) => {
                    have.insert(*author, *h);
                }
                None => match start_have.get(author) {
                    Some(h) => {
                        have.insert(*author, *h);
                    }
                    None => {
                        have.remove(author);
                    }
                },
            }
            unapplied.push(Unapplied {
                section: self.section_label(sid),
                author: *author,
                from_seq: *from,
                count,
                reason: reason.clone(),
            });
        }
        // A read that replayed many bundles refreshes the local snapshot, so that the next open
        // does not replay them again. The snapshot is a cache (losing it loses nothing), so a
        // failed write is ignored; its nonce is derived from the key and the sealed content,
        // since reading takes no randomness (the same content gives the same bytes).
        if applied >= SNAPSHOT_REFRESH_ON_READ
            && unapplied.is_empty()
            && doc.get_missing_deps(&[]).is_empty()
            && let Some((epoch, key)) = keys.iter().next_back()
        {
            let snap = Snapshot {
                vv: have.iter().map(|(a, h)| (*a, *h)).collect(),
                doc: doc.save(),
            };
            if let Ok(plain) = cbor(&snap) {
                let plain = zeroize::Zeroizing::new(plain);
                let digest = crypto::sha256(&[
                    b"hearth/snapshot-nonce/v1",
                    key.as_bytes(),
                    &epoch.to_be_bytes(),
                    &plain,
                ]);
                let mut nonce = [0u8; 24];
                nonce.copy_from_slice(&digest[..24]);
                let mut blob = epoch.to_be_bytes().to_vec();
                blob.extend_from_slice(&nonce);
                blob.extend_from_slice(&crypto::seal_with_nonce(
                    key,
                    &nonce,
                    &snapshot_aad(&self.id, sid),
                    &plain,
                ));
                let mut batch = Batch::new();
                batch.put(k_cache(&self.id, sid), blob);
                if store.commit(batch).is_ok() {
                    applied = 0;
                }
            }
        }
        Ok(SectionDoc {
            doc,
            vv: have,
            since_snapshot: applied,
            unapplied,
        })
    }

    fn open_snapshot(
        &self,
        sid: &SectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
        blob: &[u8],
    ) -> Option<(AutoCommit, VersionVector)> {
        let epoch = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?);
        let key = keys.get(&epoch)?;
        let plain = zeroize::Zeroizing::new(
            crypto::open(key, &snapshot_aad(&self.id, sid), &blob[4..]).ok()?,
        );
        let snap: Snapshot = decbor(&plain).ok()?;
        let doc = AutoCommit::load(&snap.doc).ok()?;
        Some((doc, snap.vv.into_iter().collect()))
    }

    fn snapshot_blob(&mut self, sid: &SectionId, rng: &mut impl CryptoRng) -> Result<Vec<u8>> {
        let (epoch, key) = self.current_key(sid)?;
        let key = key.clone();
        let sd = self
            .loaded
            .get_mut(sid)
            .ok_or(RecordError::Invalid("section not loaded"))?;
        let snap = Snapshot {
            vv: sd.vv.iter().map(|(a, h)| (*a, *h)).collect(),
            doc: sd.doc.save(),
        };
        let plain = zeroize::Zeroizing::new(cbor(&snap)?);
        let mut blob = epoch.to_be_bytes().to_vec();
        blob.extend_from_slice(&crypto::seal(
            &key,
            &snapshot_aad(&self.id, sid),
            &plain,
            rng,
        ));
        Ok(blob)
    }

    fn current_key(&self, sid: &SectionId) -> Result<(u32, &SymmetricKey)> {
        self.keys
            .get(sid)
            .and_then(|m| m.iter().next_back())
            .map(|(e, k)| (*e, k))
            .ok_or_else(|| RecordError::NoKey(self.section_label(sid)))
    }

    /// Writes `items` (key → JSON string) into a section document as one change, and adds the
    /// resulting bundle (and, periodically, a snapshot) to `batch`.
    fn append_items(
        &mut self,
        sid: SectionId,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<()> {
        self.ensure_loaded(&sid)?;
        let me = self.identity.peer();
        let (epoch, key) = self.current_key(&sid)?;
        let key = key.clone();
        let sd = self
            .loaded
            .get_mut(&sid)
            .ok_or(RecordError::Invalid("section not loaded"))?;
        if sd.unapplied.iter().any(|u| u.author == me) {
            return Err(RecordError::Invalid(
                "this device's earlier changes to the section could not be applied",
            ));
        }
        for (k, v) in items {
            sd.doc
                .put(ROOT, k, v)
                .map_err(|_| RecordError::Invalid("document rejected the change"))?;
        }
        sd.doc
            .commit_with(CommitOptions::default().with_time(now.as_millis() / 1000));
        // The change's raw (uncompressed) chunk: O(1) to get, and never compressed before
        // encryption (compression would leak content through ciphertext length).
        let payload = zeroize::Zeroizing::new(
            sd.doc
                .get_last_local_change()
                .map(|c| c.raw_bytes().to_vec())
                .ok_or(RecordError::Invalid("empty change"))?,
        );
        let prev = sd.vv.get(&me).copied();
        let bundle = Bundle::seal(
            self.id,
            sid,
            prev.map_or(1, |p| p.seq + 1),
            prev.map(|p| p.hash),
            epoch,
            now,
            &key,
            &payload,
            self.identity.device_key(),
            rng,
        )
        .map_err(|_| RecordError::Invalid("the change is too large for one bundle"))?;
        let head = LogHead {
            seq: bundle.header().seq,
            hash: bundle.hash(),
        };
        batch.put(
            k_bundle(&self.id, &sid, &me, head.seq),
            bundle.encoded().to_vec(),
        );
        batch.put(
            k_received(&self.id, &sid, &me, head.seq),
            now.as_millis().to_be_bytes().to_vec(),
        );
        batch.put(k_head(&self.id, &sid, &me), head.to_bytes().to_vec());
        sd.vv.insert(me, head);
        sd.since_snapshot += 1;
        // (Not while changes wait for ones this node lacks: a snapshot records them as applied.)
        if sd.since_snapshot >= snapshot_every(&sd.vv) && sd.doc.get_missing_deps(&[]).is_empty() {
            sd.since_snapshot = 0;
            let blob = self.snapshot_blob(&sid, rng)?;
            // A patient device also vouches for it, so that new readers can start from it.
            if self.owner && blob.len() <= MAX_SHARED_SNAPSHOT && self.check_linked().is_ok() {
                let vv = self
                    .loaded
                    .get(&sid)
                    .map(|d| d.vv.iter().map(|(a, h)| (*a, *h)).collect())
                    .unwrap_or_default();
                let mut shared = SharedSnapshot {
                    record: self.id,
                    section: sid,
                    author: me,
                    vv,
                    blob: blob.clone(),
                    signature: ByteArray::new([0; 64]),
                };
                let parts = shared.signed_parts()?;
                shared.signature = ByteArray::new(crypto::sign(
                    self.identity.device_key(),
                    Domain::Snapshot,
                    &[&parts],
                ));
                batch.put(k_shared(&self.id, &sid), cbor(&shared)?);
            }
            batch.put(k_cache(&self.id, &sid), blob);
        }
        Ok(())
    }

    /// Creates a section (owner only): a fresh key wrapped to this device and the recovery
    /// key, and a directory item in the auth document.
    fn create_section(
        &mut self,
        name: &SectionName,
        now: Timestamp,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<SectionId> {
        let root =
            self.identity
                .root_key()
                .filter(|_| self.owner)
                .ok_or(RecordError::NotPermitted(
                    "only the patient can create sections in their record",
                ))?;
        let sid = SectionId::generate(rng);
        let key = SymmetricKey::generate(rng);
        let others = self.other_devices_agreement();
        let to = recipients(self.identity, &others);
        for w in wraps_for(root, &self.id, &sid, 0, &key, &to, rng)? {
            batch.put(k_wrap(&self.id, &sid, 0, &w.recipient), cbor(&w)?);
        }
        let sealed = crypto::seal(
            &key,
            &name_aad(&self.id, &sid),
            name.to_string().as_bytes(),
            rng,
        );
        let item = DirectoryItem {
            name_sealed: data_encoding::BASE64.encode(&sealed),
            created: now,
        };
        self.keys.insert(sid, BTreeMap::from([(0, key)]));
        self.loaded.insert(
            sid,
            SectionDoc {
                doc: new_doc(self.identity),
                vv: VersionVector::new(),
                since_snapshot: 0,
                unapplied: Vec::new(),
            },
        );
        self.append_items(
            SectionId::AUTH,
            vec![(format!("section/{sid}"), json_string(&item)?)],
            now,
            rng,
            batch,
        )?;
        self.directory.insert(sid, *name);
        Ok(sid)
    }

    fn provenance(&self, now: Timestamp, purpose: Option<String>) -> Provenance {
        Provenance {
            author: self.identity.peer(),
            author_name: self.identity.name.clone(),
            author_role: self.identity.role,
            recorded_at: now,
            purpose,
        }
    }

    fn add_entry_to_batch(
        &mut self,
        name: &SectionName,
        body: serde_json::Value,
        purpose: Option<String>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<EntryId> {
        let sid = match self.ids_of(name).into_iter().min() {
            Some(s) => s,
            None => self.create_section(name, now, rng, batch)?,
        };
        let v = EntryVersion {
            id: EntryId::generate(rng),
            class: name.class,
            version: 1,
            supersedes: None,
            status: EntryStatus::Final,
            status_reason: None,
            body,
            provenance: self.provenance(now, purpose),
        };
        self.append_items(
            sid,
            vec![(entry_key(&v.id), json_string(&v)?)],
            now,
            rng,
            batch,
        )?;
        Ok(v.id)
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

    /// Commits a batch of changes to the store.
    fn commit_batch(&self, batch: Batch) -> Result<()> {
        // A change to one section is at most bundle, receipt time, log head and snapshot, in
        // that order: every prefix of it is consistent (a bundle beyond its log head is
        // ignored and rewritten), so an ordered commit is enough. Anything larger (a new
        // section: key wraps, directory item and two logs) commits atomically.
        if batch.ops().len() <= 4 {
            self.vault.store.commit_ordered(batch)?;
        } else {
            self.vault.store.commit(batch)?;
        }
        Ok(())
    }

    /// Forgets in-memory changes that were not committed: the documents are reloaded from the
    /// store when next used, and the keys and directory now.
    fn roll_back(&mut self) -> Result<()> {
        self.loaded.clear();
        self.keys.clear();
        self.load_keys()?;
        self.load_directory()
    }

    /// Adds an entry to a section, creating the section if needed. The body is validated
    /// against the section class's schema first; nothing is written if it does not fit.
    pub fn add_entry(
        &mut self,
        name: &SectionName,
        body: &serde_json::Value,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let body = EntryBody::from_json(name.class, body)?.to_json();
        self.check_may_append(name, now)?;
        self.mutate(|rec, batch| rec.add_entry_to_batch(name, body, None, now, rng, batch))
    }

    /// Writes raw items into a section as this node, skipping the local permission checks:
    /// for tests that play a misbehaving peer, to check that the *receiving* side refuses.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn append_raw_for_tests(
        &mut self,
        name: &SectionName,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        let sid = self
            .ids_of(name)
            .into_iter()
            .min()
            .ok_or(RecordError::NoSection(*name))?;
        self.mutate(|rec, batch| rec.append_items(sid, items, now, rng, batch))
    }

    /// Seals `payload` (taken as is: any bytes) as this node's bundle `seq` (after `prev`) in
    /// section `name`, under its current key, without storing it: for tests that hand-build a
    /// misbehaving peer's bundles, to check that the *receiving* side refuses them.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn seal_raw_for_tests(
        &self,
        name: &SectionName,
        seq: u64,
        prev: Option<crate::ids::BundleHash>,
        payload: &[u8],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Bundle> {
        let sid = self
            .ids_of(name)
            .into_iter()
            .min()
            .ok_or(RecordError::NoSection(*name))?;
        let (epoch, key) = self.current_key(&sid)?;
        Bundle::seal(
            self.id,
            sid,
            seq,
            prev,
            epoch,
            now,
            key,
            payload,
            self.identity.device_key(),
            rng,
        )
        .map_err(|_| RecordError::Invalid("too large for one bundle"))
    }

    /// On a record this node does not own, whether a grant it holds lets it add to `name` now.
    /// Writing without one would only produce bundles the patient's node refuses (and a log
    /// stuck behind them), so it is refused here first.
    fn check_may_append(&self, name: &SectionName, now: Timestamp) -> Result<()> {
        if self.holds_root() {
            return Ok(());
        }
        if self.owner {
            return self.check_linked();
        }
        let revoked: Vec<crate::grant::GrantId> = self
            .auth_items("revoke/")
            .into_iter()
            .filter_map(|(k, _)| k.trim_start_matches("revoke/").parse().ok())
            .collect();
        let access = crate::grant::Access::section(
            self.identity.peer(),
            *name,
            crate::grant::Ability::Append,
        );
        let allowed = self
            .vault
            .local_items(&format!("grant/{}/", self.id))?
            .into_iter()
            .filter_map(|(_, v)| crate::grant::chain_from_bytes(&v).ok())
            .any(|chain| {
                crate::grant::verify_chain(&chain, &access, now, &|g| revoked.contains(g)).is_ok()
            });
        if allowed {
            Ok(())
        } else {
            Err(RecordError::NotPermitted(
                "no grant you hold lets you add to that section of this record",
            ))
        }
    }

    /// All versions held in the sections named `name` (merging duplicates), by id.
    fn versions_in(&mut self, name: &SectionName) -> Result<BTreeMap<EntryId, EntryVersion>> {
        let mut all = BTreeMap::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            if let Some(sd) = self.loaded.get(&sid) {
                for (_, v) in string_items(&sd.doc, "e/") {
                    let ver: EntryVersion = serde_json::from_str(&v)
                        .map_err(|_| self.corrupt(&sid, "an entry is not valid JSON"))?;
                    all.insert(ver.id, ver);
                }
            }
        }
        Ok(all)
    }

    /// The current entries of one section.
    pub fn show(&mut self, name: &SectionName) -> Result<SectionView> {
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let all = self.versions_in(name)?;
        let mut facts = self.attribution(name)?;
        let mut entries = current_view(all);
        for e in &mut entries {
            e.verified = facts.remove(&e.id);
        }
        Ok(SectionView {
            class: name.class,
            label: name.label,
            entries,
        })
    }

    /// [`OpenRecord::show`] with each body as the JSON text stored, not parsed into a `Value`:
    /// the same entries in the same order, for readers that copy bodies (or parts of them) into
    /// their output as they are (the FHIR export). Every version's JSON is still checked whole
    /// (the body by a scan that follows JSON's grammar, the rest by serde_json).
    pub fn show_raw(&mut self, name: &SectionName) -> Result<RawSectionView> {
        /// An entry version's fields, its body checked as JSON and skipped.
        #[derive(Deserialize)]
        struct Head {
            id: EntryId,
            #[serde(rename = "type")]
            class: crate::section::SectionClass,
            version: u32,
            #[serde(default)]
            supersedes: Option<EntryId>,
            status: EntryStatus,
            #[serde(default)]
            status_reason: Option<String>,
            #[allow(dead_code)] // checked (or `null` in its place), not kept
            body: serde::de::IgnoredAny,
            provenance: Provenance,
        }
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let mut all = BTreeMap::new();
        let mut texts: HashMap<EntryId, (String, std::ops::Range<usize>)> = HashMap::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get(&sid) else {
                continue;
            };
            // Each version's text is read on its own, so the work is shared among the cores.
            let items = string_items(&sd.doc, "e/");
            let read = crate::par::map_vec(items, |_, (_, text)| read_version_head::<Head>(text));
            for r in read {
                let Some((head, body)) = r else {
                    return Err(self.corrupt(&sid, "an entry is not valid JSON"));
                };
                texts.insert(head.id, body);
                all.insert(
                    head.id,
                    EntryVersion {
                        id: head.id,
                        class: head.class,
                        version: head.version,
                        supersedes: head.supersedes,
                        status: head.status,
                        status_reason: head.status_reason,
                        body: serde_json::Value::Null,
                        provenance: head.provenance,
                    },
                );
            }
        }
        let mut facts = self.attribution(name)?;
        let entries = current_view(all)
            .into_iter()
            .map(|mut entry| {
                let (text, body) = texts.remove(&entry.id).unwrap_or_default();
                entry.verified = facts.remove(&entry.id);
                RawEntryView { entry, text, body }
            })
            .collect();
        Ok(RawSectionView {
            class: name.class,
            label: name.label,
            entries,
        })
    }

    /// What this node verified of each version in the sections named `name`: the key that
    /// signed the bundle carrying it (the change's actor, which must be the bundle's author),
    /// when this node accepted that bundle, and, for the patient's devices, the device's name
    /// from its certificate. A grantee's verified identity comes from credentials the node
    /// holds, outside the record: the caller fills it in.
    pub fn attribution(&mut self, name: &SectionName) -> Result<BTreeMap<EntryId, Attribution>> {
        let devices: BTreeMap<PeerKey, String> = self
            .device_certs()
            .into_iter()
            .map(|d| (d.peer, d.name))
            .collect();
        let mut out = BTreeMap::new();
        let mut by_change: HashMap<automerge::ChangeHash, Option<Timestamp>> = HashMap::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get_mut(&sid) else {
                continue;
            };
            let keys: Vec<String> = sd.doc.keys(ROOT).filter(|k| k.starts_with("e/")).collect();
            for k in keys {
                let Ok(id) = k.trim_start_matches("e/").parse::<EntryId>() else {
                    continue;
                };
                let Some((_, exid)) = sd.doc.get(ROOT, &k).ok().flatten() else {
                    continue;
                };
                let automerge::ObjId::Id(_, actor, _) = &exid else {
                    continue;
                };
                let Ok(author) = <[u8; 32]>::try_from(actor.to_bytes()).map(PeerKey) else {
                    continue;
                };
                // Entries written together share a change: look each change up once.
                let hash = sd.doc.hash_for_opid(&exid);
                let received_at = match hash.and_then(|h| by_change.get(&h).copied()) {
                    Some(t) => t,
                    None => {
                        let seq =
                            hash.and_then(|h| sd.doc.get_change_meta_by_hash(&h).map(|m| m.seq));
                        let t = match seq {
                            Some(seq) => self
                                .vault
                                .store
                                .get(&k_received(&self.id, &sid, &author, seq))?
                                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                                .map(|b| Timestamp::from_millis(i64::from_be_bytes(b))),
                            None => None,
                        };
                        if let Some(h) = hash {
                            by_change.insert(h, t);
                        }
                        t
                    }
                };
                let device = devices.get(&author);
                out.insert(
                    id,
                    Attribution {
                        author,
                        basis: if device.is_some() {
                            "patient-device"
                        } else {
                            "unverified"
                        },
                        name: device.cloned(),
                        role: device.map(|_| Role::Patient.as_str().to_string()),
                        organisation: None,
                        received_at,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Bundles left out of the sections read so far (the auth document is always read), each
    /// with its author and why: `N bundles by X could not be applied`.
    pub fn unapplied(&self) -> Vec<Unapplied> {
        let mut out: Vec<Unapplied> = self
            .loaded
            .values()
            .flat_map(|sd| sd.unapplied.iter().cloned())
            .collect();
        out.sort_by(|a, b| (&a.section, a.author).cmp(&(&b.section, b.author)));
        out
    }

    /// Every version in a section, oldest first: who wrote what, when, which version.
    pub fn history(&mut self, name: &SectionName) -> Result<Vec<EntryVersion>> {
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let mut v: Vec<EntryVersion> = self.versions_in(name)?.into_values().collect();
        v.sort_by(|a, b| {
            (a.provenance.recorded_at, a.version, a.id).cmp(&(
                b.provenance.recorded_at,
                b.version,
                b.id,
            ))
        });
        Ok(v)
    }

    /// Finds the section and versions holding `entry`.
    fn find(&mut self, entry: &EntryId) -> Result<(SectionName, BTreeMap<EntryId, EntryVersion>)> {
        let names: Vec<SectionName> = self.sections().into_iter().map(|s| s.name).collect();
        for name in names {
            let all = self.versions_in(&name)?;
            if all.contains_key(entry) {
                return Ok((name, all));
            }
        }
        Err(RecordError::NoEntry(*entry))
    }

    fn new_version(
        &mut self,
        entry: &EntryId,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let (sid, v) = self.prepare_version(entry, make, now, rng)?;
        let item = (entry_key(&v.id), json_string(&v)?);
        self.mutate(|rec, batch| rec.append_items(sid, vec![item], now, rng, batch))?;
        Ok(v.id)
    }

    /// The version that would replace `entry` (made by `make` from the current one), and the
    /// section it goes in, after every check a new version must pass: `entry` is current and not
    /// in error, this node may change it, and may append to its section now.
    fn prepare_version(
        &mut self,
        entry: &EntryId,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SectionId, EntryVersion)> {
        let (name, all) = self.find(entry)?;
        self.check_may_append(&name, now)?;
        self.version_from(entry, &SectionVersions::new(name, all), make, now, rng)
    }

    /// [`OpenRecord::prepare_version`] with `entry`'s section read (and this node's right to
    /// append to it checked) by the caller.
    fn version_from(
        &mut self,
        entry: &EntryId,
        found: &SectionVersions,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SectionId, EntryVersion)> {
        if let Some(by) = found.superseded_by.get(entry) {
            return Err(RecordError::Superseded {
                entry: *entry,
                by: *by,
            });
        }
        let old = found.all.get(entry).ok_or(RecordError::NoEntry(*entry))?;
        if old.status == EntryStatus::EnteredInError {
            return Err(RecordError::AlreadyInError(*entry));
        }
        if !self.owner && old.provenance.author != self.identity.peer() {
            return Err(RecordError::NotPermitted(
                "on someone else's record you may only change entries you wrote",
            ));
        }
        let (body, status, reason) = make(old)?;
        let v = EntryVersion {
            id: EntryId::generate(rng),
            class: old.class,
            version: old.version.saturating_add(1),
            supersedes: Some(*entry),
            status,
            status_reason: reason,
            body,
            provenance: self.provenance(now, None),
        };
        let sid = self
            .ids_of(&found.name)
            .into_iter()
            .find(|sid| {
                self.loaded
                    .get(sid)
                    .is_some_and(|sd| sd.doc.get(ROOT, entry_key(entry)).ok().flatten().is_some())
            })
            .ok_or(RecordError::NoEntry(*entry))?;
        Ok((sid, v))
    }

    /// Corrects an entry: writes a new version with `body` that supersedes `entry`.
    pub fn correct(
        &mut self,
        entry: &EntryId,
        body: &serde_json::Value,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        self.new_version(
            entry,
            |old| {
                let body = EntryBody::from_json(old.class, body)?.to_json();
                Ok((body, EntryStatus::Final, None))
            },
            now,
            rng,
        )
    }

    /// Marks an entry as entered in error, with a reason; the entry stays in the history.
    pub fn mark_error(
        &mut self,
        entry: &EntryId,
        reason: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let reason = writer::checked_reason(reason)?;
        self.new_version(
            entry,
            |old| {
                Ok((
                    old.body.clone(),
                    EntryStatus::EnteredInError,
                    Some(reason.to_string()),
                ))
            },
            now,
            rng,
        )
    }

    /// Writes items (key → JSON text) into the auth document as one signed change (owner
    /// only). Items are written once: an existing key is refused.
    pub fn put_auth_items(
        &mut self,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        if !self.owner {
            return Err(RecordError::NotPermitted(
                "only the patient writes the consent ledger",
            ));
        }
        self.check_linked()?;
        if let Some(auth) = self.loaded.get(&SectionId::AUTH)
            && items
                .iter()
                .any(|(k, _)| auth.doc.get(ROOT, k.as_str()).ok().flatten().is_some())
        {
            return Err(RecordError::NotPermitted("that ledger item already exists"));
        }
        self.mutate(|rec, batch| rec.append_items(SectionId::AUTH, items, now, rng, batch))
    }

    /// Writes items into the patient's private ledger (requests, decisions, trusted
    /// organisations): a section readable only by the patient's own devices and recovery key,
    /// created on first use. Items are written once: an existing key is refused.
    pub fn put_ledger_items(
        &mut self,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        if !self.owner {
            return Err(RecordError::NotPermitted(
                "only the patient writes the consent ledger",
            ));
        }
        self.check_linked()?;
        let existing = self.ledger_items("");
        if items
            .iter()
            .any(|(k, _)| existing.iter().any(|(e, _)| e == k))
        {
            return Err(RecordError::NotPermitted("that ledger item already exists"));
        }
        let mut fresh = Vec::new();
        if !self.keys.contains_key(&SectionId::LEDGER) {
            let root = self.root_for(
                "the private ledger is started on the device that holds the record root key",
            )?;
            let key = SymmetricKey::generate(rng);
            let others = self.other_devices_agreement();
            let to = recipients(self.identity, &others);
            fresh = wraps_for(root, &self.id, &SectionId::LEDGER, 0, &key, &to, rng)?;
            self.keys
                .insert(SectionId::LEDGER, BTreeMap::from([(0, key)]));
            self.loaded.insert(
                SectionId::LEDGER,
                SectionDoc {
                    doc: new_doc(self.identity),
                    vv: VersionVector::new(),
                    since_snapshot: 0,
                    unapplied: Vec::new(),
                },
            );
        }
        let id = self.id;
        self.mutate(|rec, batch| {
            for w in &fresh {
                batch.put(k_wrap(&id, &w.section, w.epoch, &w.recipient), cbor(w)?);
            }
            rec.append_items(SectionId::LEDGER, items, now, rng, batch)
        })
    }

    /// The private ledger's items whose keys start with `prefix` (empty if there is none or
    /// this node cannot read it).
    pub fn ledger_items(&mut self, prefix: &str) -> Vec<(String, String)> {
        if !self.keys.contains_key(&SectionId::LEDGER)
            || self.ensure_loaded(&SectionId::LEDGER).is_err()
        {
            return Vec::new();
        }
        self.loaded
            .get(&SectionId::LEDGER)
            .map(|d| string_items(&d.doc, prefix))
            .unwrap_or_default()
    }

    /// The patient's devices, as certified by the record root (unverifiable and removed ones
    /// omitted).
    pub fn device_certs(&self) -> Vec<DeviceCert> {
        let removed = self.removed_devices();
        self.all_device_certs()
            .into_iter()
            .filter(|c| !removed.contains_key(&c.peer))
            .collect()
    }

    /// Every device the record root ever certified, removed ones included (see
    /// [`OpenRecord::removed_devices`]); unverifiable certificates omitted.
    pub fn all_device_certs(&self) -> Vec<DeviceCert> {
        self.auth_items("device/")
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str::<DeviceCert>(&v).ok())
            .filter(|c| c.verify(&self.id))
            .collect()
    }

    /// Devices removed from the record, with when (a removal is permanent: that device key
    /// never writes to the record again).
    pub fn removed_devices(&self) -> BTreeMap<PeerKey, Timestamp> {
        self.auth_items("device-removed/")
            .into_iter()
            .filter_map(|(k, v)| {
                let peer = k.trim_start_matches("device-removed/").parse().ok()?;
                let at = serde_json::from_str::<serde_json::Value>(&v)
                    .ok()
                    .and_then(|v| serde_json::from_value(v.get("at")?.clone()).ok())?;
                Some((peer, at))
            })
            .collect()
    }

    /// Whether this node holds the record's root key (and is registered as its owner): only
    /// such a device wraps keys, creates sections, certifies devices and rotates keys.
    pub fn holds_root(&self) -> bool {
        self.owner && self.identity.holds_root_of(&self.id)
    }

    /// For a patient's device: fine if it holds the root, or if the root still certifies it.
    fn check_linked(&self) -> Result<()> {
        let me = self.identity.peer();
        if self.holds_root() || self.device_certs().iter().any(|c| c.peer == me) {
            Ok(())
        } else {
            Err(RecordError::NotPermitted(
                "this device is not (or no longer) linked to the record",
            ))
        }
    }

    fn root_for(&self, what: &'static str) -> Result<&'v ed25519_dalek::SigningKey> {
        self.identity
            .root_key()
            .filter(|_| self.holds_root())
            .ok_or(RecordError::NotPermitted(what))
    }

    /// The agreement keys of the patient's other certified devices.
    fn other_devices_agreement(&self) -> Vec<[u8; 32]> {
        let me = self.identity.peer();
        self.device_certs()
            .into_iter()
            .filter(|c| c.peer != me)
            .filter_map(|c| {
                let b = data_encoding::HEXLOWER
                    .decode(c.agreement_public.as_bytes())
                    .ok()?;
                <[u8; 32]>::try_from(b.as_slice()).ok()
            })
            .collect()
    }

    /// Certifies another device of the patient's (root holder only): checks the device's
    /// signature over its agreement key, writes a root-signed [`DeviceCert`] into the auth
    /// document, and returns it with the record's keys wrapped to the device.
    pub fn certify_device(
        &mut self,
        peer: PeerKey,
        name: &str,
        agreement: [u8; 32],
        agreement_signature: &[u8; 64],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(DeviceCert, Vec<KeyWrap>)> {
        let root = self.root_for(
            "only the device holding the record root key (your first device, or one restored from the recovery phrase) can link devices",
        )?;
        let device_key = peer
            .verifying_key()
            .map_err(|_| RecordError::Invalid("the device key is not a valid ed25519 key"))?;
        crypto::verify(
            &device_key,
            Domain::AgreementKey,
            &[&agreement],
            agreement_signature,
        )
        .map_err(|_| RecordError::Invalid("the device's agreement key is not signed by it"))?;
        if self.removed_devices().contains_key(&peer) {
            return Err(RecordError::NotPermitted(
                "that device was removed from this record; link it again with fresh keys",
            ));
        }
        if self.device_certs().iter().any(|c| c.peer == peer) {
            return Err(RecordError::NotPermitted(
                "that device is already linked to this record",
            ));
        }
        let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        let cert = DeviceCert {
            peer,
            name,
            agreement_public: data_encoding::HEXLOWER.encode(&agreement),
            added: now,
            root_signature: data_encoding::HEXLOWER.encode(&crypto::sign(
                root,
                Domain::DeviceCert,
                &[&peer.0, &agreement],
            )),
        };
        let sections: Vec<SectionId> = self.keys.keys().copied().collect();
        let wraps = self.wrap_missing_keys(agreement, &sections, &[], rng)?;
        self.put_auth_items(
            vec![(format!("device/{peer}"), json_string(&cert)?)],
            now,
            rng,
        )?;
        Ok((cert, wraps))
    }

    /// Removes one of the patient's devices (root holder only): records the removal in the
    /// auth document, so every node stops serving it and refuses its writes from then on, and
    /// moves every section to a new key it does not receive. Returns the sections rotated.
    pub fn remove_device(
        &mut self,
        peer: PeerKey,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        self.root_for(
            "only the device holding the record root key (your first device, or one restored from the recovery phrase) can remove devices",
        )?;
        if peer == self.identity.peer() {
            return Err(RecordError::NotPermitted(
                "this device cannot remove itself; remove it from another device holding the root key",
            ));
        }
        if !self.device_certs().iter().any(|c| c.peer == peer) {
            return Err(RecordError::NotPermitted(
                "no such device is linked to this record",
            ));
        }
        self.put_auth_items(
            vec![(
                format!("device-removed/{peer}"),
                json_string(&serde_json::json!({ "at": now }))?,
            )],
            now,
            rng,
        )?;
        let all: Vec<SectionId> = self.keys.keys().copied().collect();
        self.rotate_keys(&all, now, rng)
    }

    /// Accepts a shared snapshot from a peer (see [`SharedSnapshot`]): it must be signed by one
    /// of `devices` (the patient's), be for this record and a section this node holds the key
    /// of, open under that key with the same version vector inside, and cover at least what
    /// this node already started from. Then the section starts from it: its vector becomes the
    /// base and, where ahead, the log heads. Returns `Ok(false)` when it is older than what is
    /// held (nothing to do), `Err(reason)` when it is refused. Nothing is written on refusal.
    pub fn accept_snapshot(
        &mut self,
        bytes: &[u8],
        devices: &[PeerKey],
    ) -> std::result::Result<bool, String> {
        let snap = SharedSnapshot::decode(bytes).ok_or("a malformed snapshot")?;
        if snap.record != self.id {
            return Err("a snapshot of another record".into());
        }
        if !devices.contains(&snap.author) {
            return Err("a snapshot not made by one of the patient's devices".into());
        }
        if snap.blob.len() > MAX_SHARED_SNAPSHOT || snap.vv.len() > 65_536 || !snap.verify() {
            return Err("snapshot signature does not verify (altered or forged)".into());
        }
        let sid = snap.section;
        let keys = self
            .keys
            .get(&sid)
            .ok_or("a snapshot of a section this node cannot read")?;
        let epoch = snap
            .blob
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or("a malformed snapshot")?;
        let key = keys
            .get(&epoch)
            .ok_or("a snapshot under a key this node lacks")?;
        let plain = zeroize::Zeroizing::new(
            crypto::open(key, &snapshot_aad(&self.id, &sid), &snap.blob[4..])
                .map_err(|_| "a snapshot that does not open under the section key")?,
        );
        let inner: Snapshot = decbor(&plain).map_err(|_| "a malformed snapshot")?;
        let vv = snap.version_vector();
        if inner.vv.iter().copied().collect::<VersionVector>() != vv {
            return Err("a snapshot whose contents do not match what it claims to cover".into());
        }
        let store = &self.vault.store;
        let base = self.vault.base(&self.id, &sid).map_err(|e| e.to_string())?;
        if base
            .iter()
            .any(|(a, h)| vv.get(a).is_none_or(|x| x.seq < h.seq))
        {
            return Ok(false);
        }
        let heads = self
            .vault
            .heads(&self.id, &sid)
            .map_err(|e| e.to_string())?;
        if vv
            .iter()
            .all(|(a, h)| heads.get(a).is_some_and(|x| x.seq >= h.seq))
        {
            // Everything it covers is held already.
            return Ok(false);
        }
        let mut batch = Batch::new();
        for (a, h) in &vv {
            batch.put(k_base(&self.id, &sid, a), h.to_bytes().to_vec());
            if heads.get(a).is_none_or(|x| x.seq < h.seq) {
                batch.put(k_head(&self.id, &sid, a), h.to_bytes().to_vec());
            }
        }
        batch.put(k_cache(&self.id, &sid), snap.blob.clone());
        batch.put(k_shared(&self.id, &sid), bytes.to_vec());
        store.commit(batch).map_err(|e| e.to_string())?;
        self.loaded.remove(&sid);
        Ok(true)
    }

    /// Moves `sections` (those this node holds keys for) to a new key epoch, wrapped only to
    /// this device, the recovery key and the patient's remaining devices (root holder only).
    /// Grantees who may still read a section receive the new key from the root holder at their
    /// next sync; revoked grantees and removed devices never do. Later writes use the new key;
    /// earlier bundles stay readable under their own epoch by those who held it. Returns how
    /// many sections moved.
    pub fn rotate_keys(
        &mut self,
        sections: &[SectionId],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        let root = self
            .root_for("only the device holding the record root key can rotate the record's keys")?;
        let to = recipients(self.identity, &self.other_devices_agreement());
        let mut fresh: Vec<(SectionId, u32, SymmetricKey)> = Vec::new();
        let mut wraps = Vec::new();
        for sid in sections {
            let Some(current) = self.keys.get(sid).and_then(|m| m.keys().next_back()) else {
                continue;
            };
            let epoch = current
                .checked_add(1)
                .ok_or(RecordError::Invalid("key epochs exhausted"))?;
            let key = SymmetricKey::generate(rng);
            wraps.extend(wraps_for(root, &self.id, sid, epoch, &key, &to, rng)?);
            fresh.push((*sid, epoch, key));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        // Every section is loaded under its old keys before the new ones take over.
        for (sid, _, _) in &fresh {
            self.ensure_loaded(sid)?;
        }
        let n = fresh.len();
        let id = self.id;
        let rotation = self.auth_items("rotation/").len();
        let summary: Vec<String> = fresh.iter().map(|(s, e, _)| format!("{s}:{e}")).collect();
        self.mutate(move |rec, batch| {
            for w in &wraps {
                batch.put(k_wrap(&id, &w.section, w.epoch, &w.recipient), cbor(w)?);
            }
            for (sid, epoch, key) in fresh {
                rec.keys.entry(sid).or_default().insert(epoch, key);
            }
            // The auth document itself is now written under its new key.
            rec.append_items(
                SectionId::AUTH,
                vec![(
                    format!("rotation/{rotation:06}"),
                    json_string(&serde_json::json!({ "at": now, "sections": summary }))?,
                )],
                now,
                rng,
                batch,
            )
        })?;
        Ok(n)
    }

    /// The readable sections by id.
    pub fn directory(&self) -> &BTreeMap<SectionId, SectionName> {
        &self.directory
    }

    /// The (section, epoch) keys this node holds.
    pub fn keys_held(&self) -> Vec<(SectionId, u32)> {
        self.keys
            .iter()
            .flat_map(|(s, m)| m.keys().map(move |e| (*s, *e)))
            .collect()
    }

    /// Drops everything loaded and reads keys and directory again (after bundles or keys
    /// arrived from a peer).
    pub fn reload(&mut self) -> Result<()> {
        self.loaded.clear();
        self.keys.clear();
        self.load_keys()?;
        self.load_directory()
    }

    /// Wraps to `recipient` the keys of `sections` (section ids, including reserved ones) that
    /// are not in `held` (owner only).
    pub fn wrap_missing_keys(
        &self,
        recipient: [u8; 32],
        sections: &[SectionId],
        held: &[(SectionId, u32)],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<KeyWrap>> {
        let root = self
            .identity
            .root_key()
            .filter(|_| self.owner)
            .ok_or(RecordError::NotPermitted("only the patient wraps keys"))?;
        let mut out = Vec::new();
        for sid in sections {
            if let Some(keys) = self.keys.get(sid) {
                for (epoch, key) in keys {
                    if !held.contains(&(*sid, *epoch)) {
                        out.push(KeyWrap::create(
                            root, self.id, *sid, *epoch, key, recipient, rng,
                        )?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The payload of `bundle` decrypted, after the checks every author's bundle must pass: it
    /// is one uncompressed automerge change (nothing is inflated), whose actor is the bundle
    /// author's device key and whose sequence number is the bundle's. `Ok(None)` when this
    /// node holds no key for the bundle's epoch.
    fn opened_change(&self, bundle: &Bundle) -> std::result::Result<Option<OpenedChange>, String> {
        let h = bundle.header();
        let Some(key) = self.keys.get(&h.section).and_then(|m| m.get(&h.epoch)) else {
            return Ok(None);
        };
        let payload = zeroize::Zeroizing::new(bundle.open(key).map_err(|e| e.to_string())?);
        let head = crate::bundle::read_change_head(&payload).map_err(|e| e.to_string())?;
        check_change_head(&head, &h.author, h.seq)?;
        Ok(Some((payload, head)))
    }

    /// Checks a bundle by one of the patient's devices before it is stored: the rules every
    /// author's bundles follow (see the module docs), when this node can read it. Its change
    /// is not applied here; a device's bundles are otherwise trusted as the device's.
    pub fn check_device_bundle(&mut self, bundle: &Bundle) -> std::result::Result<(), String> {
        if let Some((payload, _)) = self.opened_change(bundle)? {
            self.accepted.insert(crate::bundle::change_hash(&payload));
        }
        Ok(())
    }

    /// Checks a bundle from an `append` holder before it is stored: it must decrypt and hold
    /// exactly one uncompressed automerge change by the bundle author's own actor, numbered
    /// as the bundle and continuing the author's log, depending only on changes this node
    /// holds, whose every operation writes a new `e/<id>` key at the root with an entry version
    /// of the section's class authored by the bundle's author; any version it supersedes must
    /// be the author's own; and the change must apply to the section.
    pub fn check_append_only(&mut self, bundle: &Bundle) -> std::result::Result<(), String> {
        let h = bundle.header();
        let class = self
            .directory
            .get(&h.section)
            .map(|n| n.class)
            .ok_or("a bundle for a section this node cannot name")?;
        let (payload, head) = self
            .opened_change(bundle)?
            .ok_or("no key for the bundle's section")?;
        self.ensure_loaded(&h.section).map_err(|e| e.to_string())?;
        let sd = self
            .loaded
            .get_mut(&h.section)
            .ok_or("section not loaded")?;
        let held = sd.vv.get(&h.author).map_or(0, |x| x.seq);
        if h.seq != held + 1 {
            return Err("the bundle does not continue its author's log in this section".into());
        }
        for dep in &head.deps {
            let hash = automerge::ChangeHash(*dep);
            if !self.accepted.contains(dep) && sd.doc.get_change_meta_by_hash(&hash).is_none() {
                return Err(WAITS_FOR_DEPS.into());
            }
        }
        let change = automerge::Change::from_bytes(payload.to_vec())
            .map_err(|_| "payload is not one automerge change".to_string())?;
        // Uncompressed, each operation takes at least a byte: an expansion past that is a
        // run-length trick, refused before anything is expanded.
        if change.len() > payload.len() {
            return Err("the change holds more operations than its size allows".into());
        }
        let expanded = serde_json::to_value(change.decode())
            .map_err(|_| "change cannot be inspected".to_string())?;
        let ops = expanded
            .get("ops")
            .and_then(|o| o.as_array())
            .ok_or("change has no operations")?;
        let doc = &sd.doc;
        for op in ops {
            let on_root = op.get("obj").and_then(|o| o.as_str()) == Some("_root");
            let is_set = op.get("action").and_then(|a| a.as_str()) == Some("set");
            let fresh = op
                .get("pred")
                .and_then(|p| p.as_array())
                .is_some_and(Vec::is_empty);
            let key = op.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let value = op.get("value").and_then(|v| v.as_str());
            if !(on_root && is_set && fresh && key.starts_with("e/")) {
                return Err("an append holder may only add entries".into());
            }
            if doc.get(ROOT, key).ok().flatten().is_some() {
                return Err("an append holder may not overwrite an entry".into());
            }
            let v: EntryVersion = value
                .and_then(|v| serde_json::from_str(v).ok())
                .ok_or("an entry that is not a valid entry version")?;
            if key != entry_key(&v.id) || v.provenance.author != h.author {
                return Err("an entry not authored by the bundle's author".into());
            }
            if v.class != class {
                return Err("an entry of another class than its section's".into());
            }
            if let Some(old) = v.supersedes {
                let old_author = doc
                    .get(ROOT, entry_key(&old))
                    .ok()
                    .flatten()
                    .and_then(|(val, _)| val.into_string().ok())
                    .and_then(|s| serde_json::from_str::<EntryVersion>(&s).ok())
                    .map(|o| o.provenance.author);
                if old_author != Some(h.author) {
                    return Err("an append holder may only correct their own entries".into());
                }
            }
            EntryBody::from_json(v.class, &v.body).map_err(|e| e.to_string())?;
        }
        // Accepted only if it applies: the next bundle of the same batch is checked against
        // the document with this one in it (an entry and its correction can travel together).
        if sd.doc.apply_changes(std::iter::once(change)).is_err() {
            // The document may be half changed: read it again from the store when next used.
            self.loaded.remove(&h.section);
            return Err("the change does not apply to the section".into());
        }
        sd.vv.insert(
            h.author,
            LogHead {
                seq: h.seq,
                hash: bundle.hash(),
            },
        );
        self.accepted.insert(crate::bundle::change_hash(&payload));
        Ok(())
    }

    /// Creates, empty, the sections that `scopes` let their holder add to and that the record
    /// does not have yet (patient's root device only), so that a grant of `append` can be used
    /// at once: a professional cannot create a section. A scope for every label of a class
    /// creates that class's `general` section. Returns the sections created.
    pub fn create_sections_for(
        &mut self,
        scopes: &[crate::grant::Scope],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<SectionName>> {
        let mut wanted: Vec<SectionName> = scopes
            .iter()
            .filter(|s| s.ability >= crate::grant::Ability::Append)
            .map(|s| SectionName::new(s.class, s.label.unwrap_or(Label::General)))
            .filter(|n| self.ids_of(n).is_empty())
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(wanted);
        }
        self.mutate(|rec, batch| {
            for name in &wanted {
                rec.create_section(name, now, rng, batch)?;
            }
            Ok(())
        })?;
        Ok(wanted)
    }

    /// Wraps to `recipient` the keys of the auth document and of every held section that the
    /// scopes let its holder read (owner only), signed by the record root: those of
    /// [`crate::grant::key_sections`], so none at all for `relay` scopes.
    pub fn wrap_keys_for(
        &self,
        recipient: [u8; 32],
        scopes: &[crate::grant::Scope],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<KeyWrap>> {
        let root = self
            .identity
            .root_key()
            .filter(|_| self.owner)
            .ok_or(RecordError::NotPermitted("only the patient wraps keys"))?;
        let sids = crate::grant::key_sections(scopes, &self.directory);
        let mut out = Vec::new();
        for sid in sids {
            if let Some(keys) = self.keys.get(&sid) {
                for (epoch, key) in keys {
                    out.push(KeyWrap::create(
                        root, self.id, sid, *epoch, key, recipient, rng,
                    )?);
                }
            }
        }
        Ok(out)
    }

    /// The version vector of each readable section (for status and sync).
    pub fn version_vectors(&mut self) -> Result<BTreeMap<SectionId, VersionVector>> {
        let sids: Vec<SectionId> = std::iter::once(SectionId::AUTH)
            .chain(self.directory.keys().copied())
            .collect();
        let mut out = BTreeMap::new();
        for sid in sids {
            self.ensure_loaded(&sid)?;
            if let Some(sd) = self.loaded.get(&sid) {
                out.insert(sid, sd.vv.clone());
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Batch writes and document access (used by FHIR import and the automerge export)

/// One entry to write with [`OpenRecord::add_entries`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// The section it goes in (created on first use).
    pub section: SectionName,
    /// Its body, validated against the section class's schema before anything is written.
    pub body: serde_json::Value,
    /// The version it replaces, if it is a new version of an entry in the same section.
    pub supersedes: Option<EntryId>,
}

/// One entry to write with [`OpenRecord::add_checked_entries`]: its body checked already.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEntry {
    /// The section it goes in (created on first use); its class must be the body's.
    pub section: SectionName,
    /// Its body, checked against the section class's schema.
    pub body: CheckedBody,
    /// The version it replaces, if it is a new version of an entry in the same section.
    pub supersedes: Option<EntryId>,
}

/// About how much entry JSON [`OpenRecord::add_entries`] puts in one bundle: a bundle is closed
/// once it holds this much, so it may hold one entry more (well under
/// [`crate::bundle::MAX_BUNDLE_LEN`] either way).
const ADD_ENTRIES_BUNDLE_BYTES: usize = 2 << 20;

impl<S: Store> OpenRecord<'_, S> {
    /// Adds many entries in **one atomic commit**: all of them, or (on any error) none. Every
    /// body is validated first. The entries of one section share a few bundles (one automerge
    /// change per bundle, about 2 MiB of entry JSON each) instead of one bundle per entry.
    /// Returns the new version ids, in the order given.
    pub fn add_entries(
        &mut self,
        items: &[NewEntry],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<EntryId>> {
        let mut checked = Vec::with_capacity(items.len());
        for item in items {
            checked.push(CheckedEntry {
                section: item.section,
                body: CheckedBody::new(item.section.class, &item.body)?,
                supersedes: item.supersedes,
            });
        }
        self.add_checked_entries(&checked, now, rng)
    }

    /// [`OpenRecord::add_entries`] for bodies already checked against their schema (a
    /// [`CheckedBody`] is only made by checking), so that nothing is checked twice: FHIR import
    /// checks every body while planning, before anything is written.
    pub fn add_checked_entries(
        &mut self,
        items: &[CheckedEntry],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<EntryId>> {
        self.add_checked_and_mark_errors(items, &[], "", now, rng)
            .map(|(ids, _)| ids)
    }

    /// [`OpenRecord::add_checked_entries`], and in the same commit marks `in_error` entries as
    /// entered in error with `reason` (as [`OpenRecord::mark_error`] would, with its checks):
    /// all of it is written, or nothing. Returns the new entries' ids and the new versions' ids.
    pub fn add_checked_and_mark_errors(
        &mut self,
        items: &[CheckedEntry],
        in_error: &[EntryId],
        reason: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(Vec<EntryId>, Vec<EntryId>)> {
        if items.iter().any(|i| i.body.class() != i.section.class) {
            return Err(RecordError::Invalid(
                "an entry body was checked for another section class",
            ));
        }
        if !in_error.is_empty() {
            writer::checked_reason(reason)?;
        }
        let mut writer = self.entry_writer(now, rng);
        writer.expect(items.len());
        for item in items {
            writer.add(item.clone())?;
        }
        writer.finish(in_error, reason)
    }

    /// The section id holding version `old` among the sections named `name`, and the version
    /// number a version replacing it gets.
    fn version_in_section(
        &mut self,
        name: &SectionName,
        old: &EntryId,
    ) -> Result<(SectionId, u32)> {
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get(&sid) else {
                continue;
            };
            if let Some((_, json)) = string_items(&sd.doc, &entry_key(old)).into_iter().next() {
                let v: EntryVersion = serde_json::from_str(&json)
                    .map_err(|_| self.corrupt(&sid, "an entry is not valid JSON"))?;
                return Ok((sid, v.version.saturating_add(1)));
            }
        }
        Err(RecordError::NoEntry(*old))
    }

    /// A section's automerge document as `AutoCommit::save()` writes it: a standard automerge
    /// file any automerge implementation opens. Its root map holds one key per entry version,
    /// `e/<entry id>`, whose value is the version as JSON text. When two devices created the same
    /// section offline (two ids, one name), their documents are merged into one.
    pub fn section_document(&mut self, name: &SectionName) -> Result<Vec<u8>> {
        let ids = self.ids_of(name);
        let mut merged: Option<AutoCommit> = None;
        for sid in &ids {
            self.ensure_loaded(sid)?;
            let Some(sd) = self.loaded.get(sid) else {
                continue;
            };
            let mut doc = sd.doc.clone();
            match merged.as_mut() {
                None => merged = Some(doc),
                Some(m) => {
                    m.merge(&mut doc)
                        .map_err(|_| self.corrupt(sid, "documents do not merge"))?;
                }
            }
        }
        match merged {
            Some(mut d) => Ok(d.save()),
            None => Err(RecordError::NoSection(*name)),
        }
    }
}

fn name_aad(record: &RecordId, sid: &SectionId) -> Vec<u8> {
    let mut aad = b"hearth/section-name/v1".to_vec();
    aad.extend_from_slice(&record.0);
    aad.extend_from_slice(&sid.0);
    aad
}

fn snapshot_aad(record: &RecordId, sid: &SectionId) -> Vec<u8> {
    let mut aad = b"hearth/snapshot/v1".to_vec();
    aad.extend_from_slice(&record.0);
    aad.extend_from_slice(&sid.0);
    aad
}

/// The string values of root-map keys starting with `prefix`.
fn string_items(doc: &AutoCommit, prefix: &str) -> Vec<(String, String)> {
    let mut end = prefix.to_string();
    end.push(char::MAX);
    doc.map_range(ROOT, prefix.to_string()..end)
        .filter_map(|item| {
            let s = match &item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => s.to_string(),
                _ => return None,
            };
            Some((item.key.to_string(), s))
        })
        .collect()
}

/// Every version in one section, and which version replaced which.
struct SectionVersions {
    name: SectionName,
    all: BTreeMap<EntryId, EntryVersion>,
    /// Version → the version that replaced it.
    superseded_by: HashMap<EntryId, EntryId>,
}

impl SectionVersions {
    fn new(name: SectionName, all: BTreeMap<EntryId, EntryVersion>) -> Self {
        let superseded_by = all
            .values()
            .filter_map(|v| v.supersedes.map(|old| (old, v.id)))
            .collect();
        SectionVersions {
            name,
            all,
            superseded_by,
        }
    }
}

/// An entry version's fields other than its body, and its body as text: `(text, range)` where
/// `text[range]` is the body. `None` when the text is not a valid version.
fn read_version_head<H: serde::de::DeserializeOwned>(
    text: String,
) -> Option<(H, (String, std::ops::Range<usize>))> {
    // The body's place, found by a scan that also checks it is JSON; the other fields are then
    // parsed without it.
    let span = crate::entry::raw::member(&text, "body").map(|b| {
        let start = b.as_ptr() as usize - text.as_ptr() as usize;
        start..start + b.len()
    });
    match span {
        Some(range) => {
            let rest = [&text[..range.start], "null", &text[range.end..]].concat();
            let head: H = serde_json::from_str(&rest).ok()?;
            Some((head, (text, range)))
        }
        // An unusual layout (an escaped key): the whole version parsed, the body written again.
        None => {
            let head: H = serde_json::from_str(&text).ok()?;
            let v: EntryVersion = serde_json::from_str(&text).ok()?;
            let t = serde_json::to_string(&v.body).ok()?;
            let len = t.len();
            Some((head, (t, 0..len)))
        }
    }
}

/// The current view: versions nobody supersedes, oldest first, with concurrent versions of
/// the same entry noted.
fn current_view(all: BTreeMap<EntryId, EntryVersion>) -> Vec<EntryView> {
    let superseded: HashSet<EntryId> = all.values().filter_map(|v| v.supersedes).collect();
    // Siblings: current versions that replace the same version.
    let mut by_parent: HashMap<EntryId, Vec<EntryId>> = HashMap::new();
    for v in all.values() {
        if let Some(p) = v.supersedes
            && !superseded.contains(&v.id)
        {
            by_parent.entry(p).or_default().push(v.id);
        }
    }
    // Each version's chain back to the first, newest first (bounded: a long or malformed
    // history costs no more).
    let parent: HashMap<EntryId, EntryId> = all
        .values()
        .filter_map(|v| v.supersedes.map(|p| (v.id, p)))
        .collect();
    let earlier = |id: EntryId| {
        let mut chain = Vec::new();
        let mut at = id;
        while let Some(p) = parent.get(&at) {
            if chain.len() >= EARLIER_VERSIONS_SHOWN || chain.contains(p) {
                break;
            }
            chain.push(*p);
            at = *p;
        }
        chain
    };
    let mut out: Vec<EntryView> = all
        .into_values()
        .filter(|v| !superseded.contains(&v.id))
        .map(|v| EntryView {
            earlier_versions: earlier(v.id),
            concurrent_versions: v
                .supersedes
                .and_then(|p| by_parent.get(&p))
                .map(|sib| sib.iter().filter(|s| **s != v.id).copied().collect())
                .unwrap_or_default(),
            id: v.id,
            version: v.version,
            status: v.status,
            status_reason: v.status_reason,
            supersedes: v.supersedes,
            body: v.body,
            claimed: CLAIMED,
            verified: None,
            provenance: v.provenance,
        })
        .collect();
    out.sort_by_key(|e| (e.provenance.recorded_at, e.id));
    out
}

impl Role {
    /// Whether a node of this role may own a record.
    pub fn owns_record(self) -> bool {
        self == Role::Patient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A section document as the engine writes it: each change puts new, never-reused keys.
    fn doc_with(actor: u8, items: &[(u8, u8)]) -> AutoCommit {
        let mut d = AutoCommit::new().with_actor(automerge::ActorId::from([actor; 32]));
        for (i, (k, v)) in items.iter().enumerate() {
            d.put(ROOT, format!("e/{actor}-{i}-{k}"), format!("value {v}"))
                .unwrap();
            d.commit();
        }
        d
    }

    fn items(d: &AutoCommit) -> Vec<(String, String)> {
        string_items(d, "e/")
    }

    fn merged(order: &[&AutoCommit]) -> AutoCommit {
        let mut acc = AutoCommit::new();
        for d in order {
            let mut other = (*d).clone();
            acc.merge(&mut other).unwrap();
        }
        acc
    }

    proptest! {
        /// Merging section documents commutes, associates and is idempotent, and loses nothing.
        #[test]
        fn section_merge_laws(
            a in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
            b in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
            c in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
        ) {
            let (da, db, dc) = (doc_with(1, &a), doc_with(2, &b), doc_with(3, &c));
            let abc = items(&merged(&[&da, &db, &dc]));
            prop_assert_eq!(&abc, &items(&merged(&[&dc, &db, &da])));
            prop_assert_eq!(&abc, &items(&merged(&[&db, &da, &dc])));
            // (a ∪ b) ∪ c == a ∪ (b ∪ c)
            let ab = merged(&[&da, &db]);
            let bc = merged(&[&db, &dc]);
            prop_assert_eq!(&abc, &items(&merged(&[&ab, &dc])));
            prop_assert_eq!(&abc, &items(&merged(&[&da, &bc])));
            // Idempotent: merging again changes nothing.
            let twice = merged(&[&da, &db, &dc, &da, &db, &dc]);
            prop_assert_eq!(&abc, &items(&twice));
            prop_assert_eq!(abc.len(), a.len() + b.len() + c.len());
        }

        /// Applying the same change chunks in any order (as bundles arrive) gives the same view.
        #[test]
        fn incremental_loads_converge(a in proptest::collection::vec(any::<(u8, u8)>(), 1..6), rev in any::<bool>()) {
            let mut src = doc_with(4, &a);
            let chunks: Vec<Vec<u8>> = src.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
            let mut d = AutoCommit::new();
            let mut order = chunks.clone();
            if rev { order.reverse(); }
            for ch in &order {
                d.load_incremental(ch).unwrap();
            }
            prop_assert_eq!(items(&d), items(&src));
        }
    }
}

#[cfg(test)]
mod layout {
    use super::*;

    /// Regression: receipt times once shared the base's letter, so reading a section's base
    /// scanned one key per bundle (incremental sync grew with history) and a receipt key
    /// began with its author's base key.
    #[test]
    fn no_key_kind_is_a_prefix_of_another() {
        let (r, s, a) = (RecordId([1; 32]), SectionId([2; 16]), PeerKey([3; 32]));
        let kinds = [
            k_record(&r),
            k_wrap(&r, &s, 1, &[4; 32]),
            k_bundle(&r, &s, &a, 5),
            k_head(&r, &s, &a),
            k_shared(&r, &s),
            k_base(&r, &s, &a),
            k_received(&r, &s, &a, 5),
            k_cache(&r, &s),
        ];
        for (i, x) in kinds.iter().enumerate() {
            for (j, y) in kinds.iter().enumerate() {
                assert!(
                    i == j || !y.starts_with(&x[..1]),
                    "kinds {i} and {j} share a letter"
                );
            }
        }
        assert!(!k_received(&r, &s, &a, 5).starts_with(&k_base_prefix(&r, &s)));
    }
}

#[cfg(test)]
mod change_shape {
    use super::*;

    /// The expanded-change JSON shape `check_append_only` relies on.
    #[test]
    fn expanded_change_json_shape() {
        let mut d = AutoCommit::new();
        d.put(ROOT, "e/x", "v").unwrap();
        d.commit();
        let c = d.get_last_local_change().unwrap();
        let v = serde_json::to_value(c.decode()).unwrap();
        let op = &v["ops"][0];
        assert_eq!(op["obj"], "_root", "{v}");
        assert_eq!(op["action"], "set", "{v}");
        assert_eq!(op["key"], "e/x", "{v}");
        assert_eq!(op["value"], "v", "{v}");
        assert!(op["pred"].as_array().unwrap().is_empty(), "{v}");
        d.put(ROOT, "e/x", "w").unwrap();
        d.commit();
        let c = d.get_last_local_change().unwrap();
        let v = serde_json::to_value(c.decode()).unwrap();
        assert!(!v["ops"][0]["pred"].as_array().unwrap().is_empty(), "{v}");
    }
}

/// What a grantee's (or any author's) bundles can do to a section: checked at receipt, and
/// survived at load time when something got stored anyway.
#[cfg(test)]
mod hostile_bundles {
    use super::*;
    use crate::test_utils::{TEST_NOW, TestRng};

    fn notes() -> SectionName {
        "notes".parse().unwrap()
    }

    /// A patient's record with one notes entry, on a memory store, and a stranger's identity.
    fn setup(
        seed: u64,
    ) -> (
        Identity,
        Identity,
        Vault<crate::store::MemoryStore>,
        RecordId,
    ) {
        let mut rng = TestRng::new(seed);
        let (patient, _) = Identity::generate(Role::Patient, "Edith Example".into(), &mut rng);
        let (other, _) = Identity::generate(Role::Professional, "Dr Real".into(), &mut rng);
        let vault = Vault::new(crate::store::MemoryStore::new());
        let rid = vault
            .create_record(&patient, NewRecord::default(), TEST_NOW, &mut rng)
            .unwrap();
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        rec.add_entry(
            &notes(),
            &serde_json::json!({"text": "patient's own"}),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
        (patient, other, vault, rid)
    }

    /// The raw change chunk of one entry version written by `actor` as change number `seq`.
    fn entry_change(actor: &PeerKey, seq: u64, author: &Identity, text: &str) -> Vec<u8> {
        let mut d = AutoCommit::new().with_actor(automerge::ActorId::from(actor.0));
        for i in 0..seq {
            let v = EntryVersion {
                id: EntryId::generate(&mut TestRng::new(seq * 100 + i)),
                class: crate::section::SectionClass::Notes,
                version: 1,
                supersedes: None,
                status: EntryStatus::Final,
                status_reason: None,
                body: serde_json::json!({"text": format!("{text} {i}")}),
                provenance: Provenance {
                    author: author.peer(),
                    author_name: author.name.clone(),
                    author_role: author.role,
                    recorded_at: TEST_NOW,
                    purpose: None,
                },
            };
            d.put(ROOT, entry_key(&v.id), serde_json::to_string(&v).unwrap())
                .unwrap();
            d.commit();
        }
        d.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    /// Seals `payload` as `author`'s bundle `seq` in the notes section and stores it directly
    /// (bundle and log head), skipping every check a receiving node makes.
    fn store_directly(
        vault: &Vault<crate::store::MemoryStore>,
        patient: &Identity,
        rid: &RecordId,
        author: &Identity,
        seq: u64,
        prev: Option<crate::ids::BundleHash>,
        payload: &[u8],
    ) -> Bundle {
        let rec = vault.open_record(patient, rid).unwrap();
        let sid = rec.ids_of(&notes())[0];
        let key = rec.keys[&sid][&0].clone();
        let b = Bundle::seal(
            *rid,
            sid,
            seq,
            prev,
            0,
            TEST_NOW,
            &key,
            payload,
            author.device_key(),
            &mut TestRng::new(seq),
        )
        .unwrap();
        let a = author.peer();
        let mut batch = Batch::new();
        batch.put(k_bundle(rid, &sid, &a, seq), b.encoded().to_vec());
        batch.put(
            k_head(rid, &sid, &a),
            LogHead {
                seq,
                hash: b.hash(),
            }
            .to_bytes()
            .to_vec(),
        );
        vault.store.commit(batch).unwrap();
        b
    }

    fn texts(
        vault: &Vault<crate::store::MemoryStore>,
        who: &Identity,
        rid: &RecordId,
    ) -> Vec<String> {
        let mut rec = vault.open_record(who, rid).unwrap();
        rec.show(&notes())
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_stored_bundle_reusing_another_actors_seq_is_left_out_and_the_section_stays_readable() {
        let (patient, other, vault, rid) = setup(1);
        // The patient's notes change is (patient, 1): the stranger's bundle carries another
        // change numbered (patient, 1).
        let payload = entry_change(&patient.peer(), 1, &other, "forged");
        store_directly(&vault, &patient, &rid, &other, 1, None, &payload);
        assert_eq!(texts(&vault, &patient, &rid), vec!["patient's own"]);
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        rec.show(&notes()).unwrap();
        let un = rec.unapplied();
        assert_eq!(un.len(), 1, "{un:?}");
        assert_eq!(
            (un[0].author, un[0].from_seq, un[0].count),
            (other.peer(), 1, 1)
        );
        assert_eq!(un[0].section, "notes");
    }

    #[test]
    fn an_authors_bundles_are_left_out_from_the_bad_one_on() {
        let (patient, other, vault, rid) = setup(2);
        let first = entry_change(&other.peer(), 1, &other, "first");
        let b1 = store_directly(&vault, &patient, &rid, &other, 1, None, &first);
        // Bundle 2 carries a change numbered 1 again (a reused (actor, seq) pair).
        let again = entry_change(&other.peer(), 1, &other, "again");
        let b2 = store_directly(&vault, &patient, &rid, &other, 2, Some(b1.hash()), &again);
        let third = entry_change(&other.peer(), 3, &other, "third");
        store_directly(&vault, &patient, &rid, &other, 3, Some(b2.hash()), &third);
        let mut seen = texts(&vault, &patient, &rid);
        seen.sort();
        assert_eq!(seen, vec!["first 0", "patient's own"]);
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        rec.show(&notes()).unwrap();
        let un = rec.unapplied();
        assert_eq!((un[0].from_seq, un[0].count), (2, 2), "{un:?}");
        // The patient can still write to the section.
        rec.add_entry(
            &notes(),
            &serde_json::json!({"text": "later"}),
            TEST_NOW,
            &mut TestRng::new(9),
        )
        .unwrap();
        assert!(texts(&vault, &patient, &rid).contains(&"later".to_string()));
    }

    #[test]
    fn a_change_that_does_not_apply_is_left_out() {
        let (patient, other, vault, rid) = setup(3);
        // A well-formed header (actor, seq, checksum) over operations that are cut short.
        let good = entry_change(&other.peer(), 1, &other, "cut");
        let mut cur = &good[9..];
        let len = crate::bundle::tests_uleb(&mut cur).unwrap() as usize;
        let data = &cur[..len - 6];
        let mut hashed = vec![1u8];
        leb(&mut hashed, data.len() as u64);
        hashed.extend_from_slice(data);
        let hash = crypto::sha256(&[&hashed]);
        let mut bad = vec![0x85, 0x6f, 0x4a, 0x83];
        bad.extend_from_slice(&hash[..4]);
        bad.extend_from_slice(&hashed);
        assert!(crate::bundle::read_change_head(&bad).is_ok());
        store_directly(&vault, &patient, &rid, &other, 1, None, &bad);
        assert_eq!(texts(&vault, &patient, &rid), vec!["patient's own"]);
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        rec.show(&notes()).unwrap();
        assert_eq!(rec.unapplied().len(), 1);
    }

    #[test]
    fn a_grantee_change_waits_for_the_device_change_of_the_same_batch_it_depends_on() {
        // The grantee's log sorts first, so its bundle is checked before the patient's.
        let (patient, other, vault, rid) = (6..)
            .map(setup)
            .find(|(p, o, _, _)| o.peer() < p.peer())
            .unwrap();
        // A node that has not seen the patient's next entry: a copy of the store as it is now.
        let copy = crate::store::MemoryStore::new();
        let mut all = Batch::new();
        for (k, v) in vault.store.scan(&[], &[0xff; 4]).unwrap() {
            all.put(k, v);
        }
        copy.commit(all).unwrap();
        let old = Vault::new(copy);
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        rec.add_entry(
            &notes(),
            &serde_json::json!({"text": "newer"}),
            TEST_NOW,
            &mut TestRng::new(50),
        )
        .unwrap();
        let sid = rec.ids_of(&notes())[0];
        // The grantee writes after seeing it: its change depends on the patient's newest.
        let mut d = rec.loaded[&sid].doc.clone();
        d.set_actor(automerge::ActorId::from(other.peer().0));
        let v = EntryVersion {
            id: EntryId::generate(&mut TestRng::new(51)),
            class: crate::section::SectionClass::Notes,
            version: 1,
            supersedes: None,
            status: EntryStatus::Final,
            status_reason: None,
            body: serde_json::json!({"text": "the grantee's reply"}),
            provenance: Provenance {
                author: other.peer(),
                author_name: other.name.clone(),
                author_role: other.role,
                recorded_at: TEST_NOW,
                purpose: None,
            },
        };
        d.put(ROOT, entry_key(&v.id), serde_json::to_string(&v).unwrap())
            .unwrap();
        d.commit();
        let payload = d.get_last_local_change().unwrap().raw_bytes().to_vec();
        let key = rec.keys[&sid][&0].clone();
        let grantee = Bundle::seal(
            rid,
            sid,
            1,
            None,
            0,
            TEST_NOW,
            &key,
            &payload,
            other.device_key(),
            &mut TestRng::new(52),
        )
        .unwrap();
        let head = vault.heads(&rid, &sid).unwrap()[&patient.peer()];
        let newest = vault
            .bundles_from(
                &rid,
                &sid,
                &patient.peer(),
                head.seq,
                &mut usize::MAX.clone(),
            )
            .unwrap();
        let newest = Bundle::decode(&newest[0]).unwrap();
        let mut orec = old.open_record(&patient, &rid).unwrap();
        let devices = [patient.peer()];
        let report = old
            .store_remote(&rid, vec![grantee, newest], TEST_NOW, &mut |b| {
                if devices.contains(&b.header().author) {
                    orec.check_device_bundle(b)
                } else {
                    orec.check_append_only(b)
                }
            })
            .unwrap();
        assert_eq!(report.stored, 2, "{report:?}");
        assert!(report.refused.is_empty(), "{report:?}");
        let mut seen = texts(&old, &patient, &rid);
        seen.sort();
        assert_eq!(seen, vec!["newer", "patient's own", "the grantee's reply"]);
    }

    fn leb(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A store that counts the values its scans read.
    #[derive(Default)]
    struct Counting {
        inner: crate::store::MemoryStore,
        read: std::cell::Cell<usize>,
    }

    impl Store for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan(&self, start: &[u8], end: &[u8]) -> Result<crate::store::Pairs, StoreError> {
            let out = self.inner.scan(start, end)?;
            self.read.set(self.read.get() + out.len());
            Ok(out)
        }
        fn scan_while(
            &self,
            start: &[u8],
            end: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            self.inner.scan_while(start, end, &mut |k, v| {
                self.read.set(self.read.get() + 1);
                visit(k, v)
            })
        }
        fn commit(&self, batch: Batch) -> Result<(), StoreError> {
            self.inner.commit(batch)
        }
    }

    #[test]
    fn a_continuation_reads_only_what_it_sends() {
        let mut rng = TestRng::new(4);
        let (patient, _) = Identity::generate(Role::Patient, "Edith Example".into(), &mut rng);
        let vault = Vault::new(Counting::default());
        let rid = vault
            .create_record(&patient, NewRecord::default(), TEST_NOW, &mut rng)
            .unwrap();
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        for i in 0..40 {
            rec.add_entry(
                &notes(),
                &serde_json::json!({"text": format!("n{i}")}),
                TEST_NOW,
                &mut rng,
            )
            .unwrap();
        }
        let sid = rec.ids_of(&notes())[0];
        let me = patient.peer();
        let one = vault
            .bundles_from(&rid, &sid, &me, 1, &mut usize::MAX.clone())
            .unwrap()[0]
            .len();
        // A budget for about five bundles at a time.
        let mut from = 1;
        let mut sent = 0;
        while from <= 40 {
            vault.store.read.set(0);
            let mut budget = one * 5 + one / 2;
            let got = vault
                .bundles_from(&rid, &sid, &me, from, &mut budget)
                .unwrap();
            assert!(!got.is_empty());
            let read = vault.store.read.get();
            assert!(
                read <= got.len() + 1,
                "read {read} bundles to send {} (from {from})",
                got.len()
            );
            sent += got.len();
            from += got.len() as u64;
        }
        assert_eq!(sent, 40);
    }
}
