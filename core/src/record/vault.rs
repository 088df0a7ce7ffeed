//! The [`Vault`]: the records one store holds, their registration, log heads and bundles, the
//! node-level values, and creating and opening records.

use super::keyring::{put_wrap, recipients, wraps_for};
use super::layout::{
    author_in, head_key_parts, k_base_prefix, k_bundle, k_head_prefix, k_heads_of_record, k_record,
    k_records_prefix, k_shared, local_key, local_name, record_in,
};
use super::memo::Memo;
use super::section_doc::SectionDoc;
use super::{DeviceCert, OpenRecord, RecordError, Result, cbor, decbor, json_string};
use crate::crypto::SymmetricKey;
use crate::entry::EntryBody;
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::keywrap::KeyWrap;
use crate::ledger::Key;
use crate::log::{LogHead, VersionVector};
use crate::section::SectionName;
use crate::store::{self, Batch, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// What to put in a new record.
#[derive(Debug, Default, Clone)]
pub struct NewRecord {
    /// A first demographics entry (validated against the demographics schema).
    pub demographics: Option<serde_json::Value>,
}

/// The record's registration on this node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Registration {
    pub(super) record: RecordId,
    /// Whether this node owns the record (a patient's device) or holds a replica.
    owner: bool,
    created: Timestamp,
}

/// All records held in one store.
pub struct Vault<S: Store> {
    pub(super) store: S,
    /// What opening records here has already worked out (see [`Memo`]), shared with the
    /// vaults made [`beside`](Vault::beside) this one.
    pub(super) memo: Arc<Memo>,
    /// Held by [`Vault::commit_counted`] while it reads and moves a count (shared likewise:
    /// one per store, so that counted commits through any of its vaults count right).
    pub(super) counting: Arc<std::sync::Mutex<()>>,
    /// Whether an add that makes a section's snapshot due leaves it to
    /// [`Vault::write_due_snapshots`] (see [`Vault::deferring_snapshots`]).
    pub(super) defer_snapshots: bool,
}

impl<S: Store> Vault<S> {
    /// A vault over `store`, without checking the store's format (see [`Vault::open`]).
    pub fn new(store: S) -> Self {
        Vault {
            store,
            memo: Arc::default(),
            counting: Arc::default(),
            defer_snapshots: false,
        }
    }

    /// This vault, leaving the snapshot an add makes due to [`Vault::write_due_snapshots`]
    /// instead of saving it in the add's own commit (which, for a section of 100,000 notes,
    /// takes about 270 ms, every 256th add). A daemon's vault defers, and writes the due
    /// snapshots in a job of their own after the edit has been answered and pushed. An add
    /// still saves the snapshot itself once twice its interval has passed, so a section whose
    /// due snapshot is never written replays a bounded number of bundles when next loaded
    /// from the store. Vaults made [`beside`](Vault::beside) this one defer likewise.
    pub fn deferring_snapshots(self) -> Self {
        Vault {
            defer_snapshots: true,
            ..self
        }
    }

    /// A vault over `store`, checking (or, for an empty store, writing) the format version.
    pub fn open(store: S) -> Result<Self> {
        store::check_format(&store)?;
        Ok(Vault::new(store))
    }

    /// A second vault over the same store that shares this one's memory of opened records
    /// and its lock on counted commits. A daemon hands one to each command it runs, so a
    /// command opens a record as cheaply as the daemon's own jobs do (its keys unwrapped, its
    /// auth document read and its section documents loaded once, not at every command).
    /// What is remembered is keyed by what the store holds (see `record::memo`) and by who reads
    /// it, so an open through either vault reads what it would have read through the other.
    pub fn beside(&self) -> Self
    where
        S: Clone,
    {
        Vault {
            store: self.store.clone(),
            memo: self.memo.clone(),
            counting: self.counting.clone(),
            defer_snapshots: self.defer_snapshots,
        }
    }

    /// Whether this vault and `other` share their memory ([`Vault::beside`]).
    pub fn is_beside(&self, other: &Vault<S>) -> bool {
        Arc::ptr_eq(&self.memo, &other.memo)
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The records held on this node.
    pub fn records(&self) -> Result<Vec<RecordId>> {
        let mut out = Vec::new();
        for (k, _) in self.store.scan_prefix(&k_records_prefix())? {
            if let Some(r) = record_in(&k) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Whether this node holds `record` (one of [`Vault::records`]), by one lookup.
    pub fn holds_record(&self, record: &RecordId) -> Result<bool> {
        Ok(self.store.get(&k_record(record))?.is_some())
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

    pub(super) fn register(
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
            put_wrap(&mut batch, w)?;
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(())
    }

    /// The shared snapshot of a section held here, as encoded (see [`SharedSnapshot`](super::SharedSnapshot)).
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
        self.log_positions(&k_base_prefix(record, section))
    }

    /// The log heads of one section, from the index (no keys needed).
    pub fn heads(&self, record: &RecordId, section: &SectionId) -> Result<VersionVector> {
        self.log_positions(&k_head_prefix(record, section))
    }

    /// The log positions (author → head) stored under `prefix`, one key per author; malformed
    /// ones are passed over.
    fn log_positions(&self, prefix: &[u8]) -> Result<VersionVector> {
        let mut vv = VersionVector::new();
        for (k, v) in self.store.scan_prefix(prefix)? {
            if let (Some(a), Some(h)) = (author_in(&k), LogHead::from_bytes(&v)) {
                vv.insert(a, h);
            }
        }
        Ok(vv)
    }

    /// Every section of `record` with bundles held, and its heads.
    pub fn held_sections(&self, record: &RecordId) -> Result<BTreeMap<SectionId, VersionVector>> {
        let mut out: BTreeMap<SectionId, VersionVector> = BTreeMap::new();
        // Read in place: a sync asks this several times, and each head is a few bytes.
        self.store
            .scan_prefix_while(&k_heads_of_record(record), &mut |k, v| {
                if let (Some((s, a)), Some(h)) = (head_key_parts(k), LogHead::from_bytes(v)) {
                    out.entry(s).or_default().insert(a, h);
                }
                true
            })?;
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

    /// Stores a node-level value (not part of any record), e.g. a held grant or credential.
    pub fn put_local(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut batch = Batch::new();
        batch.put(local_key(key), value.to_vec());
        self.store.commit(batch)?;
        Ok(())
    }

    /// Forgets everything this store holds of `record` (its bundles, logs, keys, snapshots,
    /// held writes), in one commit; node-level values are left. Used by relays whose patient's
    /// permission has ended.
    pub fn forget_record(&self, record: &RecordId) -> Result<usize> {
        let mut batch = Batch::new();
        let mut n = 0;
        for prefix in super::layout::k_all_of_record(record) {
            for (k, _) in self.store.scan_prefix(&prefix)? {
                batch.delete(k);
                n += 1;
            }
        }
        batch.delete(local_key(&Key::Summary(record).text()));
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        self.memo.docs.forget_record(record);
        self.memo.auth.forget_record(record);
        self.memo.names.forget_record(record);
        self.memo.keyrings.forget_record(record);
        Ok(n)
    }

    /// Deletes node-level values (absent ones are no error), in one commit.
    pub fn delete_local(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for k in keys {
            batch.delete(local_key(k));
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// A node-level value.
    pub fn get_local(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(&local_key(key))?)
    }

    /// How many node-level values have keys starting with `prefix` (nothing is copied).
    pub fn count_local(&self, prefix: &str) -> Result<usize> {
        let start = local_key(prefix);
        let end = crate::store::prefix_end(&start).unwrap_or_else(|| vec![0xff; 64]);
        let mut n = 0;
        self.store.scan_while(&start, &end, &mut |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// Node-level values whose keys start with `prefix`, as (key, value).
    pub fn local_items(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .store
            .scan_prefix(&local_key(prefix))?
            .into_iter()
            .filter_map(|(k, v)| local_name(&k).map(|k| (k, v)))
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
            put_wrap(&mut batch, &w)?;
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
        rec.loaded
            .insert(SectionId::AUTH, SectionDoc::empty(identity));
        let cert = DeviceCert::issue(
            root,
            identity.peer(),
            identity.name.clone(),
            identity.agreement_public(),
            now,
        );
        let items = vec![
            (
                "record".to_string(),
                json_string(&serde_json::json!({"record_id": rid, "created": now}))?,
            ),
            (Key::Device(&identity.peer()).text(), json_string(&cert)?),
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
