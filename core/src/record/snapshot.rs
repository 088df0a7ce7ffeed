//! Snapshots of section documents: the local sealed cache, and the shared snapshot a patient
//! device signs so that a new reader starts from it.

use super::layout::{k_base, k_cache, k_head, k_shared};
use super::memo::Covered;
use super::{OpenRecord, RecordError, Result, Vault, cbor, decbor, section_aad};
use crate::crypto::{self, Domain, SymmetricKey};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::log::{LogHead, VersionVector};
use crate::store::{Batch, Store};
use automerge::AutoCommit;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use std::collections::BTreeMap;

/// After at most this many bundles since the last snapshot, a section's snapshot is rewritten.
pub const SNAPSHOT_EVERY: u32 = 256;

/// A read that replays at least this many bundles after the local snapshot writes a fresh one.
/// As many as a writer's own snapshots may lag ([`SNAPSHOT_EVERY`]): since entry ids sort by
/// time (see [`crate::ids::EntryId::generate_at`]), replaying that many costs a few
/// milliseconds, less than saving the document again (≈ 40 ms for 10,000 entries), which the
/// first read after an initial sync used to do.
pub const SNAPSHOT_REFRESH_ON_READ: u32 = 256;

/// After at least this many: small sections are snapshotted more often, since saving them is
/// cheap and every later open replays the bundles since the snapshot.
pub const SNAPSHOT_EVERY_MIN: u32 = 32;

/// How many bundles may follow a section's snapshot before it is rewritten: a quarter of the
/// section's bundles, between [`SNAPSHOT_EVERY_MIN`] and [`SNAPSHOT_EVERY`], so that saving
/// (which costs in proportion to the section) stays a small share of each write while opening
/// replays few bundles.
pub(super) fn snapshot_every(vv: &VersionVector) -> u32 {
    let total: u64 = vv.values().map(|h| h.seq).sum();
    u32::try_from(total / 4)
        .unwrap_or(SNAPSHOT_EVERY)
        .clamp(SNAPSHOT_EVERY_MIN, SNAPSHOT_EVERY)
}

/// Whether a snapshot may be taken of `doc`: not while changes wait for ones this node lacks
/// (a snapshot records them as applied).
pub(super) fn snapshot_allowed(doc: &mut AutoCommit) -> bool {
    doc.get_missing_deps(&[]).is_empty()
}

/// Whether a section document holding `have`, `since_snapshot` bundles past its snapshot, is
/// due a fresh one.
pub(super) fn snapshot_due(have: &VersionVector, since_snapshot: u32) -> bool {
    since_snapshot >= snapshot_every(have)
}

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

impl<S: Store> Vault<S> {
    /// The sections whose snapshot an add made due and left to [`Vault::write_due_snapshots`]
    /// (a vault [`deferring_snapshots`](Vault::deferring_snapshots)), among the section
    /// documents kept in memory for `reader`.
    pub fn snapshots_due(&self, reader: &PeerKey) -> Vec<(RecordId, SectionId)> {
        self.memo.docs.due(reader)
    }

    /// Writes the snapshots due of the sections kept in memory for `identity` (see
    /// [`Vault::deferring_snapshots`]): each record's in one commit. Returns how many were
    /// written. A record that no longer opens is passed over (its next load or add judges
    /// it); a failed commit ends the pass with its error, and those snapshots stay due. The
    /// three steps, for a caller that lets others use the vault while the documents are
    /// saved: [`Vault::take_due_snapshots`], [`PendingSnapshot::seal`] and
    /// [`Vault::put_sealed_snapshots`].
    pub fn write_due_snapshots(
        &self,
        identity: &Identity,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        let sealed = self
            .take_due_snapshots(identity)
            .into_iter()
            .map(|p| p.seal(rng))
            .collect::<Result<Vec<_>>>()?;
        self.put_sealed_snapshots(identity, sealed)
    }

    /// A copy of each section document kept in memory for `identity` whose snapshot is due,
    /// with the key to seal it under: copying a document costs a tenth or less of saving it
    /// (about 20 ms against 300 ms for 100,000 notes). Nothing is written, and each stays due
    /// until [`Vault::put_sealed_snapshots`] writes it.
    pub fn take_due_snapshots(&self, identity: &Identity) -> Vec<PendingSnapshot> {
        let mut by_record: BTreeMap<RecordId, Vec<SectionId>> = BTreeMap::new();
        for (record, section) in self.snapshots_due(&identity.peer()) {
            by_record.entry(record).or_default().push(section);
        }
        let mut taken = Vec::new();
        for (record, sections) in by_record {
            let Ok(mut rec) = self.open_record(identity, &record) else {
                continue;
            };
            for sid in sections {
                // A section that no longer loads is left to its next use, which reports it.
                if rec.ensure_loaded(&sid).is_err() {
                    continue;
                }
                let Ok((epoch, key)) = rec.current_key(&sid) else {
                    continue;
                };
                let key = key.clone();
                let Some(sd) = rec.loaded.get_mut(&sid) else {
                    continue;
                };
                if !snapshot_due(&sd.vv, sd.since_snapshot) || !snapshot_allowed(&mut sd.doc) {
                    continue;
                }
                taken.push(PendingSnapshot {
                    record,
                    section: sid,
                    epoch,
                    key,
                    vv: sd.vv.clone(),
                    doc: sd.doc.clone(),
                });
            }
        }
        taken
    }

    /// Writes snapshots sealed from [`Vault::take_due_snapshots`]' copies, each record's in
    /// one commit, and returns how many were written. One is passed over, and stays due, if
    /// its section's key changed since it was taken (it would be sealed under an old one), or
    /// if the document now kept does not hold everything it covers or had a newer snapshot
    /// written since. On a patient device each is also signed as the shared snapshot.
    pub fn put_sealed_snapshots(
        &self,
        identity: &Identity,
        sealed: Vec<SealedSnapshot>,
    ) -> Result<usize> {
        let mut by_record: BTreeMap<RecordId, Vec<SealedSnapshot>> = BTreeMap::new();
        for s in sealed {
            by_record.entry(s.record).or_default().push(s);
        }
        let reader = identity.peer();
        let mut written = 0;
        for (record, sealed) in by_record {
            let Ok(mut rec) = self.open_record(identity, &record) else {
                continue;
            };
            let counts = rec.mutate(|rec, batch| {
                let mut counts = Vec::new();
                for s in sealed {
                    if rec.current_key(&s.section).map(|(e, _)| e).ok() != Some(s.epoch) {
                        continue;
                    }
                    let beyond = match self.memo.docs.covered(&record, &s.section, &reader, &s.vv) {
                        Covered::Stale => continue,
                        Covered::NotKept => None,
                        Covered::Beyond(n) => Some(n),
                    };
                    rec.put_snapshot_blob(&s.section, &s.vv, s.blob, batch)?;
                    counts.push((s.section, beyond));
                }
                Ok(counts)
            })?;
            for (section, beyond) in &counts {
                if let Some(n) = beyond {
                    self.memo
                        .docs
                        .snapshot_written(&record, section, &reader, *n);
                }
            }
            written += counts.len();
        }
        Ok(written)
    }
}

/// A copy of a section document whose snapshot is due, with what sealing it needs (from
/// [`Vault::take_due_snapshots`]). Its key is zeroized when it is dropped.
pub struct PendingSnapshot {
    record: RecordId,
    section: SectionId,
    epoch: u32,
    key: SymmetricKey,
    vv: VersionVector,
    doc: AutoCommit,
}

impl PendingSnapshot {
    /// Saves the document and seals it under the section's key (the slow part, which needs
    /// no vault), for [`Vault::put_sealed_snapshots`].
    pub fn seal(mut self, rng: &mut impl CryptoRng) -> Result<SealedSnapshot> {
        let blob = seal_snapshot(
            &self.record,
            &self.section,
            self.epoch,
            &self.key,
            &self.vv,
            &mut self.doc,
            rng,
        )?;
        Ok(SealedSnapshot {
            record: self.record,
            section: self.section,
            epoch: self.epoch,
            vv: std::mem::take(&mut self.vv),
            blob,
        })
    }
}

/// A section snapshot sealed, not yet written ([`PendingSnapshot::seal`]).
pub struct SealedSnapshot {
    record: RecordId,
    section: SectionId,
    epoch: u32,
    vv: VersionVector,
    blob: Vec<u8>,
}

/// A section's local snapshot: the document saved with the log heads it covers, sealed under
/// the section's key of `epoch` (which leads the blob).
fn seal_snapshot(
    record: &RecordId,
    sid: &SectionId,
    epoch: u32,
    key: &SymmetricKey,
    vv: &VersionVector,
    doc: &mut AutoCommit,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>> {
    let plain = snapshot_plain(vv, doc)?;
    let mut blob = epoch.to_be_bytes().to_vec();
    blob.extend_from_slice(&crypto::seal(key, &snapshot_aad(record, sid), &plain, rng));
    Ok(blob)
}

/// A local snapshot's plaintext, before it is sealed: the document saved, with the log heads
/// it covers.
fn snapshot_plain(vv: &VersionVector, doc: &mut AutoCommit) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let snap = Snapshot {
        vv: vv.iter().map(|(a, h)| (*a, *h)).collect(),
        doc: doc.save(),
    };
    Ok(zeroize::Zeroizing::new(cbor(&snap)?))
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// Rewrites the local snapshot of a section just loaded (`doc`, covering `have`) under its
    /// newest key, and says whether it was written. The snapshot is a cache (losing it loses
    /// nothing), so a failed write is ignored; its nonce is derived from the key and the sealed
    /// content, since reading takes no randomness (the same content gives the same bytes).
    pub(super) fn refresh_snapshot(
        &self,
        sid: &SectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
        doc: &mut AutoCommit,
        have: &VersionVector,
    ) -> bool {
        let Some((epoch, key)) = keys.iter().next_back() else {
            return false;
        };
        let Ok(plain) = snapshot_plain(have, doc) else {
            return false;
        };
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
        self.vault.store.commit(batch).is_ok()
    }

    pub(super) fn open_snapshot(
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

    /// Puts into `batch` a fresh local snapshot of section `sid` (which is loaded) and, on a
    /// patient device, the shared snapshot it signs, so that new readers can start from it.
    pub(super) fn put_snapshot(
        &mut self,
        sid: &SectionId,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<()> {
        let (epoch, key) = self.current_key(sid)?;
        let key = key.clone();
        let sd = self
            .loaded
            .get_mut(sid)
            .ok_or(RecordError::Invalid("section not loaded"))?;
        let blob = seal_snapshot(&self.id, sid, epoch, &key, &sd.vv, &mut sd.doc, rng)?;
        let vv = sd.vv.clone();
        self.put_snapshot_blob(sid, &vv, blob, batch)
    }

    /// Puts into `batch` the local snapshot `blob` of section `sid`, covering `vv`, and, on a
    /// patient device, the shared snapshot it signs, so that new readers can start from it.
    fn put_snapshot_blob(
        &self,
        sid: &SectionId,
        vv: &VersionVector,
        blob: Vec<u8>,
        batch: &mut Batch,
    ) -> Result<()> {
        // A patient device also vouches for it, so that new readers can start from it.
        if self.owner && blob.len() <= MAX_SHARED_SNAPSHOT && self.check_linked().is_ok() {
            let mut shared = SharedSnapshot {
                record: self.id,
                section: *sid,
                author: self.identity.peer(),
                vv: vv.iter().map(|(a, h)| (*a, *h)).collect(),
                blob: blob.clone(),
                signature: ByteArray::new([0; 64]),
            };
            let parts = shared.signed_parts()?;
            shared.signature = ByteArray::new(crypto::sign(
                self.identity.device_key(),
                Domain::Snapshot,
                &[&parts],
            ));
            batch.put(k_shared(&self.id, sid), cbor(&shared)?);
        }
        batch.put(k_cache(&self.id, sid), blob);
        Ok(())
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
        // The logs now start from this snapshot's base: a document kept from before it could
        // not be carried forward from the bundles held.
        self.vault.memo.docs.forget(&self.id, &sid);
        Ok(true)
    }
}

/// The associated data a section's sealed snapshot is bound by.
fn snapshot_aad(record: &RecordId, sid: &SectionId) -> Vec<u8> {
    section_aad(b"hearth/snapshot/v1", record, sid)
}
