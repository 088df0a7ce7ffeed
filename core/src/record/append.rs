//! Writing a change into a section document as a new bundle of this device's log (and,
//! periodically, a snapshot), and how a bundle is put into a batch.

use super::layout::{k_bundle, k_head, k_received};
use super::snapshot::{snapshot_allowed, snapshot_every};
use super::{OpenRecord, RecordError, Result};
use crate::bundle::Bundle;
use crate::ids::SectionId;
use crate::log::LogHead;
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use automerge::ROOT;
use automerge::transaction::{CommitOptions, Transactable};
use rand_core::CryptoRng;

impl<S: Store> OpenRecord<'_, S> {
    /// Writes `items` (key → JSON string) into a section document as one change, and adds the
    /// resulting bundle (and, periodically, a snapshot) to `batch`.
    pub(super) fn append_items(
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
        put_bundle(batch, &bundle, Some(now));
        batch.put(k_head(&self.id, &sid, &me), head.to_bytes().to_vec());
        sd.vv.insert(me, head);
        sd.since_snapshot += 1;
        // A vault that defers snapshots saves one here only once twice the interval has passed
        // (see `Vault::deferring_snapshots`); until then `write_due_snapshots` does.
        let every = snapshot_every(&sd.vv);
        let at = if self.vault.defer_snapshots {
            every.saturating_mul(2)
        } else {
            every
        };
        if sd.since_snapshot >= at && snapshot_allowed(&mut sd.doc) {
            sd.since_snapshot = 0;
            self.put_snapshot(&sid, rng, batch)?;
        }
        Ok(())
    }
}

/// Puts `bundle` into `batch` under its own key, with when this node accepted it (`received`,
/// its own clock; `None` for a node that keeps bundles for others and never reads them).
pub(super) fn put_bundle(batch: &mut Batch, bundle: &Bundle, received: Option<Timestamp>) {
    let h = bundle.header();
    batch.put(
        k_bundle(&h.record, &h.section, &h.author, h.seq),
        bundle.encoded().to_vec(),
    );
    if let Some(now) = received {
        batch.put(
            k_received(&h.record, &h.section, &h.author, h.seq),
            now.as_millis().to_be_bytes().to_vec(),
        );
    }
}
