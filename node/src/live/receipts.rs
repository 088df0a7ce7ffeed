//! What the driver owes the audit: the access receipts of what it sent outside a round's
//! answer (pushes of new entries, a relay's answers), written on the tick, at once when many
//! wait, and when the node stops; and, on a patient's device, its journal collected into the
//! record's audit log.

use super::jobs::{Work, os_rng};
use super::{Driver, Shared, lock};
use hearth_core::audit::Action;
use hearth_core::bundle::Bundle;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use hearth_sync::session::{Local, Pushed};
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;
use std::time::Instant;

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// Notes the pushes just sent (new bundles for peers, outside a round) for their access
    /// receipts, which [`Driver::receipt_pushes`] writes on the next tick, or at once when
    /// many are waiting: an edit's delay to an online grantee does not wait for them. (A
    /// round's receipts are durable before the data leaves: see `on_request`, and the
    /// `Job::Step` job for what this node's own requests carry.)
    pub(super) fn note_pushes(&mut self, pushed: Vec<Unreceipted>) {
        for p in pushed {
            self.unreceipted.bytes += p.2.iter().map(|b| b.len()).sum::<usize>();
            self.unreceipted.pushes.push(p);
        }
        if self.unreceipted.pushes.len() >= MAX_UNRECEIPTED
            || self.unreceipted.bytes >= MAX_UNRECEIPTED_BYTES
        {
            self.receipt_pushes();
        }
    }

    /// Writes the receipts of the pushes noted since the last time, in one job and one commit;
    /// the job reads which sections each push held (not the driver, which sends the next
    /// push meanwhile). The job runs whatever the number of jobs: the data has been sent.
    pub(super) fn receipt_pushes(&mut self) {
        if self.unreceipted.pushes.is_empty() {
            return;
        }
        let pushes = std::mem::take(&mut self.unreceipted).pushes;
        let clock = self.config.clock;
        self.spawn_job(move |sh| {
            keep_push_receipts(sh, pushes, clock.now());
            Work::Collected(0)
        });
    }

    /// Writes the receipts of the relay requests answered since the last time to the relay's
    /// journal, in one job and one commit (whatever the number of jobs: the data was sent). A
    /// crash before then loses them; the grantees' own reports of their reads still reach the
    /// patient.
    pub(super) fn receipt_relay_serves(&mut self) {
        if self.relay_unreceipted.is_empty() {
            return;
        }
        let receipts = std::mem::take(&mut self.relay_unreceipted);
        let clock = self.config.clock;
        self.spawn_job(move |sh| {
            keep_relay_receipts(sh, receipts, clock.now());
            Work::Collected(0)
        });
    }

    /// On a patient's device: moves the access receipts of its audit journal into the
    /// record's audit log (one change for all since the last time), in a job.
    pub(super) fn collect_audit(&mut self) {
        let clock = self.config.clock;
        // Finished emergency uses are looked for at most every 15 s (it reads the log).
        let rotate = self
            .last_rotation_check
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(15));
        if rotate {
            self.last_rotation_check = Some(Instant::now());
        }
        self.job(move |sh| {
            let Some(rid) = sh.identity.record_id() else {
                return Work::Collected(0);
            };
            let pending = sh
                .vault
                .journal_head(&rid)
                .ok()
                .flatten()
                .map_or(0, |(s, _)| s)
                > sh.vault.journal_sent(&rid).unwrap_or(u64::MAX);
            let rotate = rotate && sh.identity.holds_root_of(&rid);
            if !pending && !rotate {
                return Work::Collected(0);
            }
            let n = sh
                .vault
                .open_record(&sh.identity, &rid)
                .and_then(|mut rec| {
                    let now = clock.now();
                    let collected = rec.collect_journal(now, &mut os_rng())?;
                    // On the device holding the record root, the sections every emergency use
                    // that is over opened move to new keys.
                    let rotated = if rotate {
                        rec.rotate_after_emergencies(now, &mut os_rng())?
                    } else {
                        0
                    };
                    if rotated > 0 {
                        tracing::info!(
                            uses = rotated,
                            "emergency uses over: their sections moved to new keys"
                        );
                    }
                    Ok(collected + rotated)
                });
            match n {
                Ok(n) => Work::Collected(n),
                Err(e) => {
                    tracing::warn!("could not collect the audit journal: {e}");
                    Work::Collected(0)
                }
            }
        });
    }

    /// Writes every receipt still waiting for the tick, here and now: the node is stopping.
    pub(super) fn receipt_all_now(&mut self) {
        let now = self.config.clock.now();
        let pushes = std::mem::take(&mut self.unreceipted).pushes;
        let relay = std::mem::take(&mut self.relay_unreceipted);
        if pushes.is_empty() && relay.is_empty() {
            return;
        }
        let sh = lock(&self.shared);
        keep_push_receipts(&sh, pushes, now);
        keep_relay_receipts(&sh, relay, now);
    }
}

/// How many pushes may wait for their receipts before they are written at once.
const MAX_UNRECEIPTED: usize = 256;

/// How many bytes of pushed bundles may wait for their receipts before they are written at
/// once (a push is at most `hearth_sync::protocol::MAX_PUSH_BYTES`).
const MAX_UNRECEIPTED_BYTES: usize = 8 << 20;

/// A push sent whose access receipt is still to be written: the record, the peer, the bundles.
pub(super) type Unreceipted = (RecordId, PeerKey, Vec<ByteBuf>);

/// The pushes waiting for their receipts, and their bundles' bytes.
#[derive(Default)]
pub(super) struct Waiting {
    pub(super) pushes: Vec<Unreceipted>,
    bytes: usize,
}

/// Appends the access receipts of `pushes` to this node's audit journal, in one commit.
fn keep_push_receipts<S: Store>(sh: &Shared<S>, pushes: Vec<Unreceipted>, now: Timestamp) {
    // The sections of each push's bundles (the node's own, read back from its store).
    let pushes: Vec<Pushed> = pushes
        .into_iter()
        .map(|(record, peer, push)| {
            let sections: BTreeSet<SectionId> = push
                .iter()
                .filter_map(|b| Bundle::decode(b).ok().map(|b| b.header().section))
                .collect();
            (record, peer, sections, push.len() as u32)
        })
        .collect();
    let receipts = Local::new(&sh.vault, &sh.identity).push_receipts(&pushes, now);
    keep_receipts(sh, receipts, now);
}

/// The most relay receipts waiting for the next tick before they are written at once.
pub(super) const MAX_RELAY_UNRECEIPTED: usize = 256;

/// Appends access receipts to this node's audit journal, in one commit. A failure is logged
/// (with no content): the data was or will be sent all the same, and the missing receipt shows
/// in the patient's audit as a peer that holds more than was receipted.
pub(super) fn keep_receipts<S: Store>(
    sh: &Shared<S>,
    receipts: Vec<(RecordId, Action)>,
    now: Timestamp,
) {
    if receipts.is_empty() {
        return;
    }
    if let Err(e) = sh.vault.journal_many(&sh.identity, receipts, now) {
        tracing::warn!("could not keep an access receipt: {e}");
    }
}

/// Appends a relay's receipts to its journal in one commit, or, if that fails, one at a time:
/// one bad receipt must not cost the others.
fn keep_relay_receipts<S: Store>(
    sh: &Shared<S>,
    receipts: Vec<(RecordId, Action)>,
    now: Timestamp,
) {
    if receipts.is_empty() {
        return;
    }
    if let Err(e) = sh.vault.journal_many(&sh.identity, receipts.clone(), now) {
        tracing::warn!("relay receipts not written together ({e}); writing each alone");
        for r in receipts {
            if let Err(e) = sh.vault.journal_many(&sh.identity, vec![r], now) {
                tracing::warn!("a relay receipt not written: {e}");
            }
        }
    }
}
