//! The audit side of a session: the receipt a serving node writes for what it sent, and the
//! journal a grantee reports to the patient's devices (see [`hearth_core::audit`]).

use super::rights::PeerRights;
use super::*;
use hearth_core::audit::{Action, SectionAt};

/// The sections `bundles` and `snapshots` carry, each at the newest key epoch `rec` holds for
/// it, and how many items were sent.
fn sections_sent<S: Store>(
    rec: &OpenRecord<'_, S>,
    bundles: &[ByteBuf],
    snapshots: &[ByteBuf],
) -> (Vec<SectionAt>, u32) {
    let mut sections: BTreeSet<SectionId> = bundles
        .iter()
        .filter_map(|b| Bundle::decode(b).ok().map(|b| b.header().section))
        .collect();
    sections.extend(
        snapshots
            .iter()
            .filter_map(|s| SharedSnapshot::decode(s).map(|s| s.section)),
    );
    let epochs = rec.current_epochs();
    let list = sections
        .into_iter()
        .take(hearth_core::audit::MAX_SECTIONS)
        .map(|section| SectionAt {
            section,
            epoch: epochs.get(&section).copied().unwrap_or(0),
        })
        .collect();
    (list, (bundles.len() + snapshots.len()) as u32)
}

/// The access receipt for sending `bundles` and `snapshots` of `rec` to `to`, a peer with
/// `rights`: none when nothing was sent or `to` is one of the patient's devices. `pushed`:
/// sent without `to` asking (it had no chance to report; `reported` is then `None`).
pub(super) fn receipt<S: Store>(
    rec: &OpenRecord<'_, S>,
    to: PeerKey,
    rights: &PeerRights,
    bundles: &[ByteBuf],
    snapshots: &[ByteBuf],
    reported: Option<u64>,
    pushed: bool,
) -> Option<Action> {
    if rights.device || bundles.is_empty() && snapshots.is_empty() {
        return None;
    }
    let (sections, n) = sections_sent(rec, bundles, snapshots);
    Some(Action::Served {
        to,
        sections,
        bundles: n,
        authority: rights.authority,
        reported,
        emergency: rights.emergency.clone(),
        pushed,
    })
}

/// A push sent outside a round: the record, the peer, the sections and how many bundles.
pub type Pushed = (RecordId, PeerKey, BTreeSet<SectionId>, u32);

impl<S: Store> Local<'_, S> {
    /// The access receipts for pushes made outside a round, each (record, peer, sections
    /// pushed, bundles): one per push to a peer that is not one of the patient's devices.
    /// Each record is opened once, however many pushes it had.
    pub fn push_receipts(&self, pushes: &[Pushed], now: Timestamp) -> Vec<(RecordId, Action)> {
        let mut by_record: BTreeMap<RecordId, Vec<&Pushed>> = BTreeMap::new();
        for p in pushes {
            by_record.entry(p.0).or_default().push(p);
        }
        let mut out = Vec::new();
        for (record, list) in by_record {
            let Ok(rec) = self.vault.open_record(self.identity, &record) else {
                continue;
            };
            let epochs = rec.current_epochs();
            for (_, to, sections, n) in list {
                let (rights, _) = self.rights_of(&rec, to, None, now);
                if rights.device || *n == 0 {
                    continue;
                }
                out.push((
                    record,
                    Action::Served {
                        to: *to,
                        sections: sections
                            .iter()
                            .take(hearth_core::audit::MAX_SECTIONS)
                            .map(|s| SectionAt {
                                section: *s,
                                epoch: epochs.get(s).copied().unwrap_or(0),
                            })
                            .collect(),
                        bundles: *n,
                        authority: rights.authority,
                        reported: None,
                        emergency: None,
                        pushed: true,
                    },
                ));
            }
        }
        out
    }

    /// Requester: what this node reports of its own audit journal for `record` when it asks
    /// `remote`: its head always, and its unacknowledged events to the patient's devices only
    /// (another grantee learns nothing of what this node's user read); nothing from the
    /// patient's own devices, which collect their journals themselves. Before this node knows
    /// the patient's devices (its first session) it reports the head alone.
    pub(super) fn journal_for(
        &self,
        rec: Option<&OpenRecord<'_, S>>,
        record: &RecordId,
        remote: &PeerKey,
    ) -> (Vec<ByteBuf>, Option<u64>) {
        if self.identity.record_id() == Some(*record) {
            return (Vec::new(), None);
        }
        let Ok((events, head)) = self.vault.journal_to_send(record) else {
            return (Vec::new(), None);
        };
        let to_patient = rec.is_some_and(|r| r.is_device(remote));
        if !to_patient {
            return (Vec::new(), Some(head));
        }
        (events.into_iter().map(ByteBuf::from).collect(), Some(head))
    }

    /// Requester: `remote` acknowledged this node's journal up to `ack`; taken only from one
    /// of the patient's devices (anyone else could make this node stop reporting).
    /// `rec` is the record as this node has it open (`None`: it does not open here).
    pub(super) fn journal_acked(
        &self,
        rec: Option<&OpenRecord<'_, S>>,
        record: &RecordId,
        remote: &PeerKey,
        ack: Option<u64>,
    ) {
        let Some(ack) = ack else {
            return;
        };
        if rec.is_some_and(|r| r.is_device(remote)) {
            // Losing this only means sending the events again.
            let _ = self.vault.set_journal_sent(record, ack);
        }
    }

    /// Requester: the emergency use this node's user holds for `record`, to present to
    /// `remote`: only while it lasts, and only to the patient's devices (or, before they are
    /// known, to the peer the user named), so that no one else learns of it or its reason.
    pub(super) fn emergency_for(
        &self,
        record: &RecordId,
        remote: &PeerKey,
        now: Timestamp,
    ) -> Option<crate::protocol::EmergencyClaim> {
        let claim = self.held_claim(record, now)?;
        let devices: Vec<PeerKey> = self
            .vault
            .open_record(self.identity, record)
            .map(|r| r.device_peers())
            .unwrap_or_default();
        if !devices.is_empty() && !devices.contains(remote) {
            return None;
        }
        Some(claim)
    }

    /// The emergency use this node's user holds for `record`, while it lasts at `now`.
    pub fn held_claim(
        &self,
        record: &RecordId,
        now: Timestamp,
    ) -> Option<crate::protocol::EmergencyClaim> {
        let held = self.vault.held_emergency(record).ok().flatten()?;
        let use_ = hearth_core::grant::emergency::EmergencyUse::from_token(&held.token).ok()?;
        if use_.until() < now {
            return None;
        }
        Some(crate::protocol::EmergencyClaim {
            token: held.token,
            credential: held.credential,
            logged: held.logged,
        })
    }
}
