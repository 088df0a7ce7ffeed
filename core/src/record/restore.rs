//! Restoring the patient's whole record on a new device from a relay's copy (every bundle and
//! key wrap the patient's node stored, none of them readable by the relay) and the 24-word
//! recovery phrase: [`Vault::restore_record`].
//!
//! ## What is trusted
//!
//! Nothing the relay sends is trusted for being sent. A key wrap counts only if the record
//! root signed it ([`KeyWrap::verify`]); section keys come only from the wraps addressed to
//! the recovery key, opened with the phrase's recovery secret. Every bundle passes the checks
//! [`Vault::store_remote`] makes of a peer's (signature, hash chain, forks refused), and then
//! the authorisation a sync applies on receipt, from the record's own auth document:
//!
//! - **the patient's devices** are the keys the record root certified ([`DeviceCert`], signed
//!   by the root, so a certificate vouches for itself wherever it travels). Before the auth
//!   document can be loaded, the certificates are read from the auth bundles themselves; only
//!   bundles by certified devices are then stored into the auth document. Loading a section
//!   does *not* check who wrote a stored bundle (the store is trusted to hold only what was
//!   authorised on receipt), which is why the authorisation is done here.
//! - A device the patient later **removed** still counts as the patient's for the restore:
//!   what it wrote before its removal is part of the record the patient's node held, and the
//!   relay offers no receipt times to tell earlier from later writes. (The removal stays in
//!   the auth document, so every node refuses its writes from now on.)
//! - **grantees'** bundles are judged as a sync on the root device judges them, at `now`:
//!   allowed by a grant valid now (and the append-only rule), held for the patient's review if
//!   a grant allowed them only when they declare they were written, refused otherwise. The
//!   auth document and the private ledger are the patient's devices' alone.
//!
//! ## Atomicity
//!
//! Everything is first built in a scratch in-memory store (registration, keyring, bundles,
//! held writes, this device's certificate), then copied into this store in one atomic batch:
//! a failure at any step leaves this store as it was, and the restore can simply be run again.

use super::keyring::wraps_for;
use super::layout::k_record;
use super::{DeviceCert, HeldReason, RecordError, RemoteReport, Result, Vault, Verdict};
use crate::bundle::Bundle;
use crate::crypto::SymmetricKey;
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::{Identity, RecoveryPhrase};
use crate::keywrap::KeyWrap;
use crate::ledger::{Key, Kind};
use crate::store::{self, Batch, FORMAT_KEY, MemoryStore, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};

/// What [`Vault::restore_record`] restored. Nothing in it is record content or key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The record restored.
    pub record: RecordId,
    /// Sections (the auth document and private ledger included) with bundles stored and a key
    /// recovered to read them.
    pub sections: usize,
    /// Bundles stored.
    pub bundles_stored: usize,
    /// Bundles offered more than once.
    pub duplicates: usize,
    /// (section, epoch) keys recovered with the phrase.
    pub keys_recovered: usize,
    /// Sections with bundles under a key epoch no recovery wrap was found for: those bundles
    /// (if stored) stay unreadable on this node.
    pub unrecoverable: Vec<SectionId>,
    /// Grantees' writes held for the patient's review (see [`Vault::held_writes`]).
    pub held: usize,
    /// Bundles refused, one reason each (no content).
    pub refused: Vec<String>,
    /// Key wraps ignored: for another record, not signed by the record root, or not opening.
    pub wraps_ignored: usize,
}

/// The refusal given to a grantee's write that is held for review instead (not reported as
/// refused).
const HELD: &str = "held for the patient's review";

impl<S: Store> Vault<S> {
    /// Restores the patient's record on this node, a new device, from a relay's copy of it:
    /// `wraps` (the key wraps the patient's node stored, among them those addressed to the
    /// recovery key) and `bundles` (every bundle of every section), with `identity` made by
    /// [`Identity::recover`] from `phrase`.
    ///
    /// The section keys wrapped to the recovery key are opened with the phrase and wrapped
    /// again, signed by the record root, to this device's agreement key; every wrap the root
    /// signed is kept (so the record can be restored again from this node). The bundles are
    /// verified and authorised as the module docs say, the record is registered as the
    /// patient's own, and this device is certified in the auth document as one of the
    /// patient's devices (the old ones stay listed: remove a lost one with
    /// [`OpenRecord::remove_device`](super::OpenRecord::remove_device)). Everything is
    /// committed in one atomic batch.
    ///
    /// Refuses, writing nothing: an identity without a record root key, or one the phrase did
    /// not make (`NotPermitted`); a record already on this node (`Exists`); no recoverable key
    /// of the auth document (`NoKey`).
    pub fn restore_record(
        &self,
        identity: &Identity,
        phrase: &RecoveryPhrase,
        wraps: &[KeyWrap],
        bundles: Vec<Bundle>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<RestoreReport> {
        let (Some(root), Some(rid)) = (identity.root_key(), identity.record_id()) else {
            return Err(RecordError::NotPermitted(
                "only a patient identity holding the record root key can restore a record",
            ));
        };
        let recovery = phrase.recovery_secret();
        if phrase.record_id() != rid || identity.recovery_public() != Some(recovery.public()) {
            return Err(RecordError::NotPermitted(
                "the recovery phrase does not belong to this identity's record",
            ));
        }
        store::check_format(&self.store)?;
        if self.store.get(&k_record(&rid))?.is_some() {
            return Err(RecordError::Exists(rid));
        }

        // Keys: the wraps the root signed, those to the recovery key opened with the phrase.
        let recovery_public = recovery.public();
        let mut keys: BTreeMap<(SectionId, u32), SymmetricKey> = BTreeMap::new();
        let mut kept: Vec<KeyWrap> = Vec::new();
        let mut wraps_ignored = 0;
        for w in wraps {
            if w.record != rid || !w.verify() {
                wraps_ignored += 1;
                continue;
            }
            if w.recipient.into_array() == recovery_public {
                match w.open(&recovery) {
                    Ok(k) => {
                        keys.entry((w.section, w.epoch)).or_insert(k);
                    }
                    Err(_) => {
                        wraps_ignored += 1;
                        continue;
                    }
                }
            }
            kept.push(w.clone());
        }
        drop(recovery);
        if !keys.keys().any(|(s, _)| *s == SectionId::AUTH) {
            return Err(RecordError::NoKey("auth".into()));
        }
        let me = [identity.agreement_public()];
        for ((sid, epoch), key) in &keys {
            kept.extend(wraps_for(root, &rid, sid, *epoch, key, &me, rng)?);
        }

        // Which sections have bundles under an epoch no key was recovered for.
        let unrecoverable: Vec<SectionId> = bundles
            .iter()
            .map(Bundle::header)
            .filter(|h| h.record == rid && !keys.contains_key(&(h.section, h.epoch)))
            .map(|h| h.section)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let devices = certified_devices(&rid, &bundles, &keys);
        let (auth, content): (Vec<Bundle>, Vec<Bundle>) = bundles
            .into_iter()
            .partition(|b| b.header().section == SectionId::AUTH);

        let scratch = Vault::new(MemoryStore::new());
        scratch.register(&rid, &kept, now, true)?;
        let mut remote = RemoteReport::default();
        scratch.store_auth(identity, &rid, &devices, auth, now, &mut remote)?;
        let held = scratch.store_content(identity, &rid, content, now, &mut remote)?;
        // This device joins the patient's devices, so other nodes accept its writes.
        let mut rec = scratch.open_record(identity, &rid)?;
        rec.certify_device(
            identity.peer(),
            &identity.name,
            identity.agreement_public(),
            &identity.agreement_certificate(),
            now,
            rng,
        )?;
        drop(rec);

        let sections = scratch
            .held_sections(&rid)?
            .into_keys()
            .filter(|s| keys.keys().any(|(k, _)| k == s))
            .count();
        let mut batch = Batch::new();
        for (k, v) in scratch.store.scan_prefix(&[])? {
            if k != FORMAT_KEY {
                batch.put(k, v);
            }
        }
        if self.store.get(&k_record(&rid))?.is_some() {
            return Err(RecordError::Exists(rid));
        }
        self.store.commit(batch)?;
        Ok(RestoreReport {
            record: rid,
            sections,
            // This device's certificate is not one of the bundles restored.
            bundles_stored: remote.stored,
            duplicates: remote.duplicates,
            keys_recovered: keys.len(),
            unrecoverable,
            held,
            refused: remote.refused,
            wraps_ignored,
        })
    }

    /// Stores the auth document's bundles written by the patient's `devices` (each checked as
    /// a device's bundle is on receipt); others are refused.
    fn store_auth(
        &self,
        identity: &Identity,
        rid: &RecordId,
        devices: &BTreeSet<PeerKey>,
        auth: Vec<Bundle>,
        now: Timestamp,
        remote: &mut RemoteReport,
    ) -> Result<()> {
        let mut rec = self.open_record(identity, rid)?;
        let rep = self.store_remote(rid, auth, now, &mut |b| {
            if devices.contains(&b.header().author) {
                rec.check_device_bundle(b)
            } else {
                Err("an auth-document change not by a patient device".into())
            }
        })?;
        absorb(remote, rep);
        Ok(())
    }

    /// Stores the other sections' bundles: the patient's devices' (every device the root
    /// certified, by the now loaded auth document) checked as a device's bundle is, grantees'
    /// judged by the auth document's write rules at `now`, late ones held for review. Returns
    /// how many writes were held.
    fn store_content(
        &self,
        identity: &Identity,
        rid: &RecordId,
        content: Vec<Bundle>,
        now: Timestamp,
        remote: &mut RemoteReport,
    ) -> Result<usize> {
        let mut rec = self.open_record(identity, rid)?;
        let devices: Vec<PeerKey> = rec.all_device_peers().into_iter().collect();
        let rules = rec.write_rules();
        let others: Vec<Bundle> = content
            .iter()
            .filter(|b| !devices.contains(&b.header().author))
            .cloned()
            .collect();
        let mut held: Vec<(Bundle, HeldReason)> = Vec::new();
        let rep = self.store_remote(rid, content, now, &mut |b| {
            if devices.contains(&b.header().author) {
                return rec.check_device_bundle(b);
            }
            match rec.judge_write(&rules, &devices, b, now) {
                Verdict::Allow => Ok(()),
                Verdict::Hold(reason) => {
                    held.push((b.clone(), reason));
                    Err(HELD.into())
                }
                Verdict::Refuse(why) => Err(why),
            }
        })?;
        absorb(remote, rep);
        remote.refused.retain(|r| r != HELD);
        if held.is_empty() {
            return Ok(0);
        }
        remote
            .refused
            .extend(rec.judge_after_held(&rules, &others, &mut held, now));
        let rep = self.hold(held, now)?;
        remote.refused.extend(rep.refused);
        Ok(rep.held + rep.already)
    }
}

/// Adds what one [`Vault::store_remote`] did to `total`.
fn absorb(total: &mut RemoteReport, rep: RemoteReport) {
    total.stored += rep.stored;
    total.duplicates += rep.duplicates;
    total.forks += rep.forks;
    total.refused.extend(rep.refused);
}

/// The devices the record root certified, by the [`DeviceCert`]s written in the auth bundles
/// among `bundles` that `keys` open. A certificate is signed by the root, so it is believed
/// whoever's bundle carries it; the bundles themselves are checked later.
fn certified_devices(
    rid: &RecordId,
    bundles: &[Bundle],
    keys: &BTreeMap<(SectionId, u32), SymmetricKey>,
) -> BTreeSet<PeerKey> {
    let mut out = BTreeSet::new();
    for b in bundles {
        let h = b.header();
        if h.record != *rid || h.section != SectionId::AUTH {
            continue;
        }
        let Some(key) = keys.get(&(h.section, h.epoch)) else {
            continue;
        };
        let Ok(payload) = b.open(key).map(zeroize::Zeroizing::new) else {
            continue;
        };
        let Ok(change) = automerge::Change::from_bytes(payload.to_vec()) else {
            continue;
        };
        // Uncompressed, each operation takes at least a byte (see `check_append_only`).
        if change.len() > payload.len() {
            continue;
        }
        let Ok(expanded) = serde_json::to_value(change.decode()) else {
            continue;
        };
        let ops = expanded.get("ops").and_then(|o| o.as_array());
        for op in ops.into_iter().flatten() {
            let key = op.get("key").and_then(|k| k.as_str()).unwrap_or("");
            if !key.starts_with(Kind::Device.prefix()) {
                continue;
            }
            let cert = op
                .get("value")
                .and_then(|v| v.as_str())
                .and_then(|v| serde_json::from_str::<DeviceCert>(v).ok());
            if let Some(c) = cert
                && c.verify(rid)
                && key == Key::Device(&c.peer).text()
            {
                out.insert(c.peer);
            }
        }
    }
    out
}
