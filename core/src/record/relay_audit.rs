//! The audit through a record's relays: on the relay, the grantees' events it keeps for the
//! patient's devices until they acknowledge them; on the patient's device, taking in what a
//! relay hands over (its own receipts of what it served, and the grantees' reports).
//!
//! A relay's own receipts are its audit journal ([`Vault::journal`]), like any node's.

use super::layout::local_key;
use super::{OpenRecord, Result, Vault};
use crate::audit::{Action, SignedEvent};
use crate::grant::Ability;
use crate::ids::{PeerKey, RecordId};
use crate::ledger::{self, Key};
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::BTreeSet;

use super::audit::{MAX_EVENTS_PER_SESSION, MAX_EVENTS_PER_WRITER};

/// The most grantee events a relay keeps per record, waiting for the patient's devices (a
/// grantee cannot grow the relay's store without bound; what does not fit is sent again).
pub const MAX_RELAYED_PER_RECORD: usize = 1024;

impl<S: Store> Vault<S> {
    /// On a relay: keeps the audit events `peer` (a grantee of `record`, authenticated by the
    /// transport) left for the patient's devices: its own events for this record (no receipt
    /// of an emergency use: only the record's servers attest those), none already
    /// acknowledged, within [`MAX_RELAYED_PER_RECORD`]. Returns how many are new.
    pub fn keep_relayed_audit(
        &self,
        record: &RecordId,
        peer: &PeerKey,
        bytes: &[impl AsRef<[u8]>],
    ) -> Result<usize> {
        let acked = self.relayed_audit_acked(record, peer)?;
        let mut room = MAX_RELAYED_PER_RECORD
            .saturating_sub(self.count_local(&ledger::relayed_audit_prefix(record, None))?);
        let mut batch = Batch::new();
        let mut n = 0;
        for b in bytes.iter().take(MAX_EVENTS_PER_SESSION) {
            let Ok(ev) = SignedEvent::open(b.as_ref()) else {
                continue;
            };
            let e = ev.event();
            if e.writer != *peer
                || e.record != *record
                || e.action.attests_emergency()
                || e.seq <= acked
                || e.seq > MAX_EVENTS_PER_WRITER
            {
                continue;
            }
            let key = Key::RelayedAudit(record, peer, e.seq).text();
            if self.get_local(&key)?.is_some() {
                continue;
            }
            if room == 0 {
                break;
            }
            room -= 1;
            n += 1;
            batch.put(local_key(&key), ev.bytes().to_vec());
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(n)
    }

    /// On a relay: at most `max` of the grantees' events kept for `record`.
    pub fn relayed_audit(&self, record: &RecordId, max: usize) -> Result<Vec<Vec<u8>>> {
        let mut out = self.local_items(&ledger::relayed_audit_prefix(record, None))?;
        out.truncate(max);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// On a relay: the patient's devices hold `writer`'s events for `record` up to `seq`:
    /// those kept are deleted, and the grantee is told at its next request.
    pub fn ack_relayed_audit(&self, record: &RecordId, writer: &PeerKey, seq: u64) -> Result<()> {
        if seq <= self.relayed_audit_acked(record, writer)? {
            return Ok(());
        }
        let done: Vec<String> = self
            .local_items(&ledger::relayed_audit_prefix(record, Some(writer)))?
            .into_iter()
            .filter(|(k, _)| {
                k.rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= seq)
            })
            .map(|(k, _)| k)
            .collect();
        self.delete_local(&done)?;
        self.put_local(
            &Key::RelayedAuditAcked(record, writer).text(),
            &seq.to_be_bytes(),
        )
    }

    /// On a relay: how far the patient's devices acknowledged `writer`'s events for `record`.
    pub fn relayed_audit_acked(&self, record: &RecordId, writer: &PeerKey) -> Result<u64> {
        Ok(self
            .get_local(&Key::RelayedAuditAcked(record, writer).text())?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// On a relay: the patient's devices hold the relay's own journal for `record` up to
    /// `seq`: that far it is marked sent and its events are deleted (the head stays, so the
    /// next receipt links to it). A relay keeps only what the patient has not yet collected.
    pub fn journal_collected(&self, record: &RecordId, seq: u64) -> Result<()> {
        if seq <= self.journal_sent(record)? {
            return Ok(());
        }
        self.set_journal_sent(record, seq)?;
        let sent = self.journal_sent(record)?;
        let done: Vec<String> = self
            .local_items(&ledger::journal_prefix(record))?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| {
                k.rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= sent)
            })
            .collect();
        self.delete_local(&done)
    }

    /// On a relay: forgets the audit it kept for `record` (its own journal, the grantees'
    /// events and acknowledgements), when it no longer keeps the record. Returns how many items.
    pub fn forget_relayed_audit(&self, record: &RecordId) -> Result<usize> {
        let mut keys: Vec<String> = Vec::new();
        for prefix in [
            ledger::relayed_audit_prefix(record, None),
            ledger::journal_prefix(record),
        ] {
            keys.extend(self.local_items(&prefix)?.into_iter().map(|(k, _)| k));
        }
        for k in [
            Key::JournalHead(record).text(),
            Key::JournalSent(record).text(),
        ] {
            if self.get_local(&k)?.is_some() {
                keys.push(k);
            }
        }
        let acked = format!("{}{record}/", ledger::Kind::RelayedAuditAcked.prefix());
        keys.extend(self.local_items(&acked)?.into_iter().map(|(k, _)| k));
        self.delete_local(&keys)?;
        Ok(keys.len())
    }
}

impl<S: Store> OpenRecord<'_, S> {
    /// The peers that hold or held a `relay` grant of this record: they may write receipts of
    /// what they served.
    pub fn relay_peers(&self) -> BTreeSet<PeerKey> {
        self.recorded_chains()
            .iter()
            .filter_map(|c| c.last())
            .filter(|g| g.body().scopes.iter().all(|s| s.ability == Ability::Relay))
            .map(|g| g.body().audience)
            .collect()
    }

    /// On a patient's device: takes the audit events `relay` (the key its connection proved,
    /// one of the record's relays) handed over: its own receipts of what it served to others
    /// than the patient's devices (an emergency receipt only with the professional's signed
    /// use vouching for it, under an arrangement the patient made with that organisation), and
    /// the reports of the record's grantees, with their receipts of what they served other
    /// grantees (never an emergency receipt from a grantee, never a stranger's event, never
    /// another record's). Returns how many were new.
    pub fn receive_relayed_audit(
        &mut self,
        relay: &PeerKey,
        bytes: &[impl AsRef<[u8]>],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        if !self.relay_peers().contains(relay) {
            return Ok(0);
        }
        let devices: BTreeSet<PeerKey> = self.all_device_peers();
        let arranged: BTreeSet<PeerKey> = self.arranged_orgs();
        // The grantees a relay may hand on reports of: the holders of the grants recorded.
        let grantees: BTreeSet<PeerKey> = self
            .recorded_chains()
            .iter()
            .flat_map(|c| c.iter().map(|g| g.body().audience))
            .collect();
        let events: Vec<SignedEvent> = bytes
            .iter()
            .take(2 * MAX_EVENTS_PER_SESSION)
            .filter_map(|b| SignedEvent::open(b.as_ref()).ok())
            .filter(|ev| {
                let e = ev.event();
                e.record == self.id
                    && !devices.contains(&e.writer)
                    && match &e.action {
                        Action::Served {
                            to,
                            emergency: None,
                            ..
                        } if e.writer == *relay => !devices.contains(to),
                        Action::Served {
                            to,
                            emergency: Some(m),
                            ..
                        } if e.writer == *relay => {
                            !devices.contains(to)
                                && arranged.contains(&m.org)
                                && m.vouched_for(&self.id, to)
                        }
                        // A grantee's receipt of what it served another grantee is its own
                        // word; an emergency use it cannot attest.
                        Action::Served {
                            emergency: Some(_), ..
                        } => false,
                        _ => e.writer != *relay && grantees.contains(&e.writer),
                    }
            })
            .collect();
        if events.is_empty() {
            return Ok(0);
        }
        let n = self.keep_audit_events(&events, now, rng)?;
        // A proxy's answers reach the patient's ledger this way too.
        self.take_proxy_answers(&events, now, rng)?;
        Ok(n)
    }

    /// On a patient's device: how far the record's audit log holds each of `writers`' events
    /// without a gap, for those it holds any of (what a relay may stop keeping).
    pub fn audit_acks(&mut self, writers: &[PeerKey]) -> Vec<(PeerKey, u64)> {
        writers
            .iter()
            .map(|w| (*w, self.audit_head_of(w)))
            .filter(|(_, s)| *s > 0)
            .collect()
    }
}
