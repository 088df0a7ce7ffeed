//! The keyring: section keys wrapped to this device (and to others), unwrapped on opening,
//! wrapped to new recipients, and rotated.

use super::layout::{Stored, k_escrow, k_escrow_prefix, k_keyring, k_wrap, k_wrap_prefix, parse};
use super::memo::{SectionKeys, UnwrapMemo, Unwrapped};
use super::{OpenRecord, RecordError, Result, Vault, cbor, decbor, json_string};
use crate::crypto::SymmetricKey;
use crate::ids::{RecordId, SectionId};
use crate::keys::Identity;
use crate::keywrap::{EscrowedKey, KeyWrap};
use crate::ledger::{Key, Kind};
use crate::store::Batch;
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who receives a new key: this device, the recovery key, and `others` (the patient's other
/// devices).
pub(super) fn recipients(identity: &Identity, others: &[[u8; 32]]) -> Vec<[u8; 32]> {
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

/// Files a key wrap into the record's keyring, in `batch` (stamping the keyring afresh).
pub(super) fn put_wrap(batch: &mut Batch, w: &KeyWrap) -> Result<()> {
    batch.put(
        k_wrap(&w.record, &w.section, w.epoch, &w.recipient),
        cbor(w)?,
    );
    stamp_keyring(batch, &w.record);
    Ok(())
}

/// How long a keyring stamp is.
pub(super) const KEYRING_STAMP_LEN: usize = 16;

/// Writes `record`'s keyring stamp afresh in `batch`: every batch that writes a wrap or an
/// escrowed key of the record does (see [`super::memo::KeyringMemo`] for why). A stamp is 64
/// random bits drawn once by this process, then a count no other stamp of this process
/// has used.
pub(super) fn stamp_keyring(batch: &mut Batch, record: &RecordId) {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut stamp = [0u8; KEYRING_STAMP_LEN];
    stamp[..8].copy_from_slice(&process_nonce().unwrap_or_default());
    stamp[8..].copy_from_slice(&COUNT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    batch.put(k_keyring(record), stamp.to_vec());
}

/// Whether `batch` stamps a keyring (and so must be committed atomically).
pub(super) fn stamps(batch: &Batch) -> bool {
    batch
        .ops()
        .iter()
        .any(|(k, _)| matches!(parse(k), Stored::Keyring(_)))
}

/// This process's 64 random bits for keyring stamps; `None` if the operating system gave
/// none, and then no keyring is remembered (its stamps could repeat another process's).
///
/// The one read of the operating system's random source in the engine, which otherwise takes
/// a `CryptoRng` argument: a stamp is no secret, only unique, and it is written wherever a
/// wrap is, by calls that have no randomness of their own (a replica's registration, a
/// repair), so the bits are drawn here, once.
fn process_nonce() -> Option<[u8; 8]> {
    static NONCE: OnceLock<Option<[u8; 8]>> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut b = [0u8; 8];
        #[allow(clippy::disallowed_methods)]
        let drawn = getrandom::fill(&mut b);
        drawn.ok().map(|()| b)
    })
}

/// `key` (of `section` at `epoch`) wrapped to each of `recipients`, signed by `root`.
pub(super) fn wraps_for(
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

/// The most keys one emergency release may add to a record's keyring.
pub(super) const MAX_ESCROWED: usize = 4096;

impl<S: Store> Vault<S> {
    /// Keeps the section keys an organisation released from emergency escrow to this node for
    /// `record` (a professional's emergency use through a relay), registering the record here
    /// as another's. Only keys that open with this node's agreement key, from wraps signed by
    /// the record root, are kept; returns how many.
    pub fn keep_escrowed_keys(
        &self,
        identity: &Identity,
        record: &RecordId,
        keys: &[EscrowedKey],
        now: Timestamp,
    ) -> Result<usize> {
        let mine = identity.agreement_public();
        let good: Vec<&EscrowedKey> = keys
            .iter()
            .take(MAX_ESCROWED)
            .filter(|k| {
                k.escrow.record == *record
                    && k.recipient.into_array() == mine
                    && k.open(identity.agreement_secret()).is_ok()
            })
            .collect();
        if good.is_empty() {
            return Ok(0);
        }
        if identity.holds_root_of(record) {
            return Err(RecordError::NotPermitted(
                "this node holds the record's root: its keys are its own",
            ));
        }
        self.register_replica(record, &[], now)?;
        let mut batch = Batch::new();
        for k in &good {
            batch.put(
                k_escrow(record, &k.escrow.section, k.escrow.epoch),
                cbor(*k)?,
            );
        }
        stamp_keyring(&mut batch, record);
        self.store.commit(batch)?;
        Ok(good.len())
    }

    /// Gives a keyring stamp to every record held here that has none (one in a store written
    /// before stamps), in one atomic commit; returns how many. Until a record has a stamp,
    /// every open reads its keys afresh (the vault remembers keys only at a stamp); a new
    /// stamp only ever makes an open read afresh, so this is safe at any time. The daemon runs
    /// it as it starts.
    pub fn stamp_unstamped_keyrings(&self) -> Result<usize> {
        let mut batch = Batch::new();
        let mut n = 0;
        for record in self.records()? {
            if self.store.get(&k_keyring(&record))?.is_none() {
                stamp_keyring(&mut batch, &record);
                n += 1;
            }
        }
        if n > 0 {
            self.store.commit(batch)?;
        }
        Ok(n)
    }

    /// Key wraps of `record` addressed to `recipient`.
    pub fn key_wraps_to(&self, record: &RecordId, recipient: &[u8; 32]) -> Result<Vec<KeyWrap>> {
        self.wraps_where(record, |to| to == recipient)
    }

    /// Key wraps of `record` whose recipient (read from the key, before the value is decoded)
    /// passes `to`, and whose value agrees with the key.
    pub(super) fn wraps_where(
        &self,
        record: &RecordId,
        to: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<Vec<KeyWrap>> {
        Ok(self
            .store
            .scan_prefix(&k_wrap_prefix(record))?
            .into_iter()
            .filter_map(|(k, v)| match parse(&k) {
                Stored::Wrap(_, _, _, r) if to(&r) => decbor::<KeyWrap>(&v)
                    .ok()
                    .filter(|w| w.recipient.into_array() == r),
                _ => None,
            })
            .collect())
    }
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// A fresh key (epoch 0) for a new section `sid`, and its wraps, signed by `root`, to this
    /// device, the recovery key and the patient's other devices.
    pub(super) fn new_section_key(
        &self,
        root: &ed25519_dalek::SigningKey,
        sid: &SectionId,
        rng: &mut impl CryptoRng,
    ) -> Result<(SymmetricKey, Vec<KeyWrap>)> {
        let key = SymmetricKey::generate(rng);
        let to = recipients(self.identity, &self.other_devices_agreement());
        let wraps = wraps_for(root, &self.id, sid, 0, &key, &to, rng)?;
        Ok((key, wraps))
    }

    /// Finds this node's section keys of the record: remembered, when the record's keyring
    /// stamp is the one they were found at (see [`super::memo::KeyringMemo`]), else read.
    pub(super) fn load_keys(&mut self) -> Result<()> {
        // The stamp is read before the keys, so keys read after it are at least its keyring's.
        let stamp = self.keyring_stamp()?;
        let (peer, agreement) = (self.identity.peer(), self.identity.agreement_public());
        let memo = &self.vault.memo.keyrings;
        if let Some(s) = &stamp
            && let Some(keys) = memo.get(&self.id, &peer, &agreement, s)
        {
            self.keys = SectionKeys::clone(&keys);
            #[cfg(debug_assertions)]
            self.check_remembered_keys(s)?;
            return Ok(());
        }
        self.read_keys()?;
        if let Some(s) = stamp {
            memo.put(&self.id, &peer, &agreement, s, &self.keys);
        }
        Ok(())
    }

    /// The record's keyring stamp, if it has one and this process may remember keyrings.
    fn keyring_stamp(&self) -> Result<Option<[u8; KEYRING_STAMP_LEN]>> {
        if process_nonce().is_none() {
            return Ok(None);
        }
        let stamp = self.vault.store.get(&k_keyring(&self.id))?;
        Ok(stamp.and_then(|s| s.try_into().ok()))
    }

    /// Debug builds: the remembered keys are the keys a fresh read finds, unless the keyring
    /// changed meanwhile.
    #[cfg(debug_assertions)]
    fn check_remembered_keys(&mut self, stamp: &[u8; KEYRING_STAMP_LEN]) -> Result<()> {
        let remembered = std::mem::take(&mut self.keys);
        self.read_keys()?;
        if self.keyring_stamp()?.as_ref() == Some(stamp) {
            assert!(
                remembered == self.keys,
                "a remembered keyring differs from the stored one at the same stamp"
            );
        }
        Ok(())
    }

    /// Reads this node's section keys from the wraps addressed to it and its escrowed keys.
    fn read_keys(&mut self) -> Result<()> {
        // Wraps to others (grantees, escrow) are passed over by their key, neither copied out
        // of the store nor decoded; nor are wraps to this device already unwrapped (the memo
        // names them by their exact bytes).
        let (mut known, mut fresh) = (Vec::new(), Vec::new());
        self.vault
            .store
            .scan_prefix_while(&k_wrap_prefix(&self.id), &mut |k, v| {
                if let Stored::Wrap(_, _, _, to) = parse(k)
                    && self.identity.opening_secret(&to).is_some()
                {
                    let memo = UnwrapMemo::name(&to, v);
                    match self.vault.memo.keys.get(&memo) {
                        Some(u) => known.push(u),
                        None => fresh.push((to, memo, v.to_vec())),
                    }
                }
                true
            })?;
        for u in known {
            if u.record == self.id {
                self.keys
                    .entry(u.section)
                    .or_default()
                    .insert(u.epoch, u.key);
            }
        }
        for (to, memo, v) in fresh {
            let Some(secret) = self.identity.opening_secret(&to) else {
                continue;
            };
            let Ok(w) = decbor::<KeyWrap>(&v) else {
                continue;
            };
            if w.record != self.id || w.recipient.into_array() != to {
                continue;
            }
            if !w.verify() {
                // A wrap not signed by the record root is ignored; the section stays unreadable
                // and says so when opened.
                continue;
            }
            if let Ok(key) = w.open(secret) {
                self.vault.memo.keys.put(
                    memo,
                    Unwrapped {
                        record: w.record,
                        section: w.section,
                        epoch: w.epoch,
                        key: key.clone(),
                    },
                );
                self.keys.entry(w.section).or_default().insert(w.epoch, key);
            }
        }
        // Keys released from emergency escrow ([`Vault::keep_escrowed_keys`]).
        for (_, v) in self.vault.store.scan_prefix(&k_escrow_prefix(&self.id))? {
            let Ok(e) = decbor::<EscrowedKey>(&v) else {
                continue;
            };
            if e.escrow.record != self.id {
                continue;
            }
            if let Ok(k) = e.open(self.identity.agreement_secret()) {
                self.keys
                    .entry(e.escrow.section)
                    .or_default()
                    .entry(e.escrow.epoch)
                    .or_insert(k);
            }
        }
        Ok(())
    }

    pub(super) fn current_key(&self, sid: &SectionId) -> Result<(u32, &SymmetricKey)> {
        self.keys
            .get(sid)
            .and_then(|m| m.iter().next_back())
            .map(|(e, k)| (*e, k))
            .ok_or_else(|| RecordError::NoKey(self.section_label(sid)))
    }

    /// The (section, epoch) keys this node holds.
    pub fn keys_held(&self) -> Vec<(SectionId, u32)> {
        self.keys
            .iter()
            .flat_map(|(s, m)| m.keys().map(move |e| (*s, *e)))
            .collect()
    }

    /// The newest key epoch this node holds of each section.
    pub fn current_epochs(&self) -> std::collections::BTreeMap<SectionId, u32> {
        self.keys
            .iter()
            .filter_map(|(s, m)| Some((*s, *m.keys().next_back()?)))
            .collect()
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
        self.wrap_held_keys(recipient, sections.iter().copied(), held, rng)
    }

    /// For each (recipient, sections) of `wanted`, every key of those sections wrapped to that
    /// recipient (owner only): the wraps the keyring already holds for it, and new ones for the
    /// keys it lacks, which are kept (one scan, one commit), so that a relay supplied every few
    /// seconds is not sent freshly sealed copies each time (HPKE seals are randomised). Kept
    /// wraps are ciphertext to their recipients, signed by the root like every other; this
    /// device never opens them.
    pub fn kept_wraps_for(
        &self,
        wanted: &[([u8; 32], Vec<SectionId>)],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<KeyWrap>> {
        let kept = self
            .vault
            .wraps_where(&self.id, |to| wanted.iter().any(|(r, _)| r == to))?;
        let mut out = Vec::new();
        let mut batch = Batch::new();
        for (recipient, sections) in wanted {
            let mine: Vec<&KeyWrap> = kept
                .iter()
                .filter(|w| w.recipient.into_array() == *recipient && sections.contains(&w.section))
                .collect();
            let have: Vec<(SectionId, u32)> = mine.iter().map(|w| (w.section, w.epoch)).collect();
            let fresh = self.wrap_held_keys(*recipient, sections.iter().copied(), &have, rng)?;
            for w in &fresh {
                put_wrap(&mut batch, w)?;
            }
            out.extend(mine.into_iter().cloned());
            out.extend(fresh);
        }
        if !batch.is_empty() {
            self.vault.store.commit(batch)?;
        }
        Ok(out)
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
        let sids = crate::grant::key_sections(scopes, &self.directory);
        self.wrap_held_keys(recipient, sids, &[], rng)
    }

    /// Wraps to `recipient` every key this node holds of `sections`, in that order, but for
    /// the (section, epoch) pairs in `skip`, signed by the record root (owner only).
    fn wrap_held_keys(
        &self,
        recipient: [u8; 32],
        sections: impl IntoIterator<Item = SectionId>,
        skip: &[(SectionId, u32)],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<KeyWrap>> {
        let root = self
            .identity
            .root_key()
            .filter(|_| self.owner)
            .ok_or(RecordError::NotPermitted("only the patient wraps keys"))?;
        let mut out = Vec::new();
        for sid in sections {
            if let Some(keys) = self.keys.get(&sid) {
                for (epoch, key) in keys {
                    if !skip.contains(&(sid, *epoch)) {
                        out.push(KeyWrap::create(
                            root, self.id, sid, *epoch, key, recipient, rng,
                        )?);
                    }
                }
            }
        }
        Ok(out)
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
        let _id = self.id;
        let rotation = self.auth_items(Kind::Rotation.prefix()).len();
        let summary: Vec<String> = fresh.iter().map(|(s, e, _)| format!("{s}:{e}")).collect();
        self.mutate(move |rec, batch| {
            for w in &wraps {
                put_wrap(batch, w)?;
            }
            for (sid, epoch, key) in fresh {
                rec.keys.entry(sid).or_default().insert(epoch, key);
            }
            // The auth document itself is now written under its new key.
            rec.append_items(
                SectionId::AUTH,
                vec![(
                    Key::Rotation(rotation).text(),
                    json_string(&serde_json::json!({ "at": now, "sections": summary }))?,
                )],
                now,
                rng,
                batch,
            )
        })?;
        Ok(n)
    }
}
