//! The audit at a relay: a patient device's acknowledgements and what it is handed, and the
//! relay's receipt for what it sends a grantee.

use super::super::access::AccessEntry;
use super::super::wire::{AuditAck, MAX_AUDIT, MAX_AUDIT_ACKS};
use super::Server;
use crate::session::SyncError;
use hearth_core::audit::{Action, EmergencyMark, SectionAt};
use hearth_core::bundle::Bundle;
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::store::Store;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

impl<S: Store> Server<'_, S> {
    /// A patient device's acknowledgements: the relay's own journal and the grantees' events
    /// it kept, as far as the record's audit log holds them.
    pub(super) fn take_acks(&self, record: &RecordId, acks: &[AuditAck]) -> Result<(), SyncError> {
        let me = self.identity.peer();
        for a in acks.iter().take(MAX_AUDIT_ACKS) {
            if a.writer == me {
                self.vault.journal_collected(record, a.seq)?;
            } else {
                self.vault.ack_relayed_audit(record, &a.writer, a.seq)?;
            }
        }
        Ok(())
    }

    /// What a patient device is handed of the audit: the relay's receipts not yet
    /// acknowledged, then the grantees' events kept, at most [`MAX_AUDIT`] in all.
    pub(super) fn audit_for_devices(&self, record: &RecordId) -> Result<Vec<ByteBuf>, SyncError> {
        let sent = self.vault.journal_sent(record)?;
        let mut out: Vec<ByteBuf> = self
            .vault
            .journal_after(record, sent, MAX_AUDIT / 2)?
            .into_iter()
            .map(ByteBuf::from)
            .collect();
        let room = MAX_AUDIT - out.len();
        out.extend(
            self.vault
                .relayed_audit(record, room)?
                .into_iter()
                .map(ByteBuf::from),
        );
        Ok(out)
    }
}

/// The relay's receipt for sending `bundles` to `entry`'s peer (a grantee, or a professional
/// using emergency access: `emergency`), which reported `reported` as its audit head: the
/// sections sent, each at the newest key epoch among its bundles; none when nothing was sent.
pub(super) fn receipt(
    entry: &AccessEntry,
    bundles: &[ByteBuf],
    reported: Option<u64>,
    emergency: Option<EmergencyMark>,
) -> Option<Action> {
    if entry.device || bundles.is_empty() {
        return None;
    }
    let mut epochs: BTreeMap<SectionId, u32> = BTreeMap::new();
    for b in bundles {
        if let Ok(b) = Bundle::decode(b) {
            let h = b.header();
            let e = epochs.entry(h.section).or_insert(h.epoch);
            *e = (*e).max(h.epoch);
        }
    }
    Some(Action::Served {
        to: entry.peer,
        sections: epochs
            .into_iter()
            .take(hearth_core::audit::MAX_SECTIONS)
            .map(|(section, epoch)| SectionAt { section, epoch })
            .collect(),
        bundles: u32::try_from(bundles.len()).unwrap_or(u32::MAX),
        authority: entry.authority,
        reported,
        emergency,
        pushed: false,
    })
}
