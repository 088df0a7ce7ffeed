//! The records a relay keeps: their items in the relay's store ([`Hosted`], with the bytes used
//! and the newest list adopted in items of their own), who is a party to them, and the sweep
//! of records whose relay grant ended long ago.

use super::super::access::{AccessList, SignedAccess};
use super::super::wire::Blinded;
use super::Server;
use crate::session::SyncError;
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::ledger::{Key, Kind};
use hearth_core::record::{KeyWrap, LocalCount, Vault};
use hearth_core::store::{Batch, Store};
use hearth_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};

/// The count of records kept, moved in the same commit as their [`Hosted`] items, so that
/// [`RelayLimits::max_records`](super::RelayLimits::max_records) is checked with one read (and judged again, with other counted
/// commits held off, when a record is taken on: `Vault::commit_counted_up_to`).
pub const HOSTED_COUNT: LocalCount = LocalCount {
    key: Kind::HostedCount.prefix(),
    prefix: Kind::Hosted.prefix(),
};
/// A record this relay keeps (local item [`Key::Hosted`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hosted {
    /// The record (the relay sees it in every bundle header anyway: it is the root's public
    /// key, not a name).
    pub record: RecordId,
    /// The patient's current signed access list, as received.
    pub access: ByteBuf,
    /// The newest version of the list adopted. The list in `access` may be an older one that
    /// says the same: a list signed afresh but saying the same only moves this version and
    /// `updated`, and those are then noted in an item of their own ([`Key::HostedSupplied`]),
    /// so that the list and wraps are not written again at every patient's round.
    pub version: u64,
    /// Bytes of bundles stored. Kept in an item of its own ([`Key::HostedUsed`]), so that a
    /// push does not write the list and wraps again; read from this item only for a record
    /// kept before that one existed.
    #[serde(default, skip_serializing)]
    pub used: u64,
    /// Key wraps the patient supplied (ciphertext to their recipients).
    pub wraps: Vec<KeyWrap>,
    /// When the patient's node last supplied a list (noted with `version`).
    pub updated: Timestamp,
}
/// A [`Key::HostedUsed`] item's bytes used.
fn used_of(item: &[u8]) -> Result<u64, SyncError> {
    item.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| SyncError::Protocol("a kept record's bytes used are unreadable"))
}

/// A [`Key::HostedSupplied`] item: the newest list version adopted, and when.
fn supplied_item(h: &Hosted) -> Vec<u8> {
    let mut item = h.version.to_be_bytes().to_vec();
    item.extend_from_slice(&h.updated.as_millis().to_be_bytes());
    item
}

/// Takes a [`Key::HostedSupplied`] item into `h` (the newer of it and the record item's own).
fn take_supplied(h: &mut Hosted, item: &[u8]) -> Result<(), SyncError> {
    let unreadable = || SyncError::Protocol("a kept record's newest list version is unreadable");
    let (version, at) = item.split_at_checked(8).ok_or_else(unreadable)?;
    let version = u64::from_be_bytes(version.try_into().map_err(|_| unreadable())?);
    let at = i64::from_be_bytes(at.try_into().map_err(|_| unreadable())?);
    h.version = h.version.max(version);
    h.updated = h.updated.max(Timestamp::from_millis(at));
    Ok(())
}

/// A record kept, by blinded id: as read from the store, or why it could not be.
pub type KeptRecord = (String, Result<Hosted, SyncError>);
impl<S: Store> Server<'_, S> {
    /// The record kept under `b`, if any.
    pub fn hosted(&self, b: &Blinded) -> Result<Option<Hosted>, SyncError> {
        let id = b.to_string();
        let raw = self.vault.get_local(&Key::Hosted(&id).text())?;
        let Some(mut h) = raw.and_then(|v| serde_ipld_dagcbor::from_slice::<Hosted>(&v).ok())
        else {
            return Ok(None);
        };
        if let Some(used) = self.vault.get_local(&Key::HostedUsed(&id).text())? {
            h.used = used_of(&used)?;
        }
        if let Some(item) = self.vault.get_local(&Key::HostedSupplied(&id).text())? {
            take_supplied(&mut h, &item)?;
        }
        Ok(Some(h))
    }

    /// Every record kept, by blinded id, each as read or why it could not be: a damaged item
    /// spoils its own record's entry, not the others' (which a relay goes on announcing,
    /// serving and sweeping).
    pub fn all_hosted(&self) -> Result<Vec<KeptRecord>, SyncError> {
        let by_id = |kind: Kind| -> Result<BTreeMap<String, Vec<u8>>, SyncError> {
            Ok(self
                .vault
                .local_items(kind.prefix())?
                .into_iter()
                .filter_map(|(k, v)| Some((kind.id_in(&k)?.to_string(), v)))
                .collect())
        };
        let (used, supplied) = (by_id(Kind::HostedUsed)?, by_id(Kind::HostedSupplied)?);
        let mut all = Vec::new();
        for (k, v) in self.vault.local_items(Kind::Hosted.prefix())? {
            let Some(id) = Kind::Hosted.id_in(&k).map(str::to_string) else {
                continue;
            };
            let read = || -> Result<Hosted, SyncError> {
                let mut h = serde_ipld_dagcbor::from_slice::<Hosted>(&v)
                    .map_err(|_| SyncError::Protocol("a kept record's item is unreadable"))?;
                if let Some(u) = used.get(&id) {
                    h.used = used_of(u)?;
                }
                if let Some(item) = supplied.get(&id) {
                    take_supplied(&mut h, item)?;
                }
                Ok(h)
            };
            let h = read();
            all.push((id, h));
        }
        Ok(all)
    }

    /// The records kept that read whole ([`Server::all_hosted`] without the damaged ones).
    pub fn readable_hosted(&self) -> Result<Vec<(String, Hosted)>, SyncError> {
        Ok(self
            .all_hosted()?
            .into_iter()
            .filter_map(|(id, h)| Some((id, h.ok()?)))
            .collect())
    }

    /// Every peer on the access lists of the records kept here that still hold at `now` (they
    /// get a known peer's network limits, not a stranger's).
    pub fn parties(&self, now: Timestamp) -> BTreeSet<PeerKey> {
        let me = self.identity.peer();
        self.readable_hosted()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, h)| SignedAccess::open(&h.access, &me, now).ok())
            .flat_map(|(list, _)| list.entries.into_iter().filter(|e| e.until >= now))
            .map(|e| e.peer)
            .collect()
    }

    /// Deletes the records whose relay grant ended more than
    /// [`RelayLimits::retention_ms`](super::RelayLimits::retention_ms) before `now`: bundles, wraps and list. A record whose
    /// items or list cannot be read is left alone (`hearth relay status` shows it). Returns
    /// how many.
    pub fn sweep(&self, now: Timestamp) -> Result<usize, SyncError> {
        let mut gone = 0;
        for (id, h) in self.readable_hosted()? {
            let end = AccessList::open_own(
                &match serde_ipld_dagcbor::from_slice::<SignedAccess>(&h.access) {
                    Ok(s) => s,
                    Err(_) => continue,
                },
                &h.record,
            )
            .ok()
            .and_then(|l| {
                hearth_core::grant::chain_from_bytes(&l.grant)
                    .ok()?
                    .iter()
                    .map(|g| g.body().expires)
                    .min()
            });
            let Some(end) = end else { continue };
            if now.as_millis().saturating_sub(end.as_millis()) > self.limits.retention_ms {
                self.vault.forget_record(&h.record)?;
                self.vault.forget_relayed_audit(&h.record)?;
                let mut batch = Batch::new();
                Vault::<S>::delete_local_in(&mut batch, &Key::Hosted(&id).text());
                Vault::<S>::delete_local_in(&mut batch, &Key::HostedUsed(&id).text());
                Vault::<S>::delete_local_in(&mut batch, &Key::HostedSupplied(&id).text());
                self.vault.commit_counted(&HOSTED_COUNT, batch)?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Puts `h` into `batch`, to be committed with [`HOSTED_COUNT`]: its bytes used always,
    /// its newest list version and time when a list was adopted (`refreshed`), and the rest
    /// (the list and wraps) only when `changed`.
    pub(super) fn save(
        &self,
        b: &Blinded,
        h: &Hosted,
        changed: bool,
        refreshed: bool,
        batch: &mut Batch,
    ) -> Result<(), SyncError> {
        let id = b.to_string();
        if changed {
            let bytes = serde_ipld_dagcbor::to_vec(h)
                .map_err(|_| SyncError::Protocol("cannot encode a hosted record"))?;
            Vault::<S>::put_local_in(batch, &Key::Hosted(&id).text(), bytes);
        }
        if refreshed {
            Vault::<S>::put_local_in(batch, &Key::HostedSupplied(&id).text(), supplied_item(h));
        }
        Vault::<S>::put_local_in(
            batch,
            &Key::HostedUsed(&id).text(),
            h.used.to_be_bytes().to_vec(),
        );
        Ok(())
    }
}
