//! A node's audit journal for a record, and the patient's audit log (the record's audit
//! section). Events and their checks are in [`crate::audit`]; the keys in [`crate::ledger`].

use super::layout::local_key;
use super::{OpenRecord, RecordError, Result, Vault};
use crate::audit::{self, Action, Expect, SignedEvent, Verified};
use crate::grant::proxy;
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::ledger::{self, Key, Kind};
use crate::store::{Batch, Store, prefix_end};
use crate::time::Timestamp;
use data_encoding::BASE64;
use rand_core::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};

/// The most events of one writer the patient's audit log keeps (a hostile grantee cannot
/// grow the patient's store without bound; later events are refused and the gap shows).
pub const MAX_EVENTS_PER_WRITER: u64 = 100_000;

/// The most events taken from a peer in one session.
pub const MAX_EVENTS_PER_SESSION: usize = 256;

impl<S: Store> Vault<S> {
    /// Appends `action` to this node's own audit journal for `record`, signed and linked to
    /// the journal's previous event, and commits it durably.
    pub fn journal(
        &self,
        identity: &Identity,
        record: RecordId,
        action: Action,
        now: Timestamp,
    ) -> Result<SignedEvent> {
        let mut out = self.journal_many(identity, vec![(record, action)], now)?;
        out.pop().ok_or(RecordError::Invalid("no audit event"))
    }

    /// Appends each (record, action) to this node's journal for that record, in order, in
    /// one durable commit.
    pub fn journal_many(
        &self,
        identity: &Identity,
        actions: Vec<(RecordId, Action)>,
        now: Timestamp,
    ) -> Result<Vec<SignedEvent>> {
        let mut batch = Batch::new();
        let out = self.journal_into(&mut batch, identity, actions, now)?;
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(out)
    }

    /// Puts the events of [`Vault::journal_many`] into `batch`, for the caller to commit with
    /// whatever the events are about.
    pub(super) fn journal_into(
        &self,
        batch: &mut Batch,
        identity: &Identity,
        actions: Vec<(RecordId, Action)>,
        now: Timestamp,
    ) -> Result<Vec<SignedEvent>> {
        let mut heads: BTreeMap<RecordId, Option<(u64, [u8; 32])>> = BTreeMap::new();
        let mut out = Vec::with_capacity(actions.len());
        for (record, action) in actions {
            let prev = match heads.get(&record) {
                Some(h) => *h,
                None => self.journal_head(&record)?,
            };
            let ev = SignedEvent::sign(identity, record, prev, now, action)
                .map_err(|_| RecordError::Invalid("an audit event breaks a bound"))?;
            let seq = ev.event().seq;
            heads.insert(record, Some((seq, ev.hash())));
            batch.put(
                local_key(&Key::Journal(&record, seq).text()),
                ev.bytes().to_vec(),
            );
            out.push(ev);
        }
        for (record, head) in heads {
            if let Some((seq, hash)) = head {
                let mut v = seq.to_be_bytes().to_vec();
                v.extend_from_slice(&hash);
                batch.put(local_key(&Key::JournalHead(&record).text()), v);
            }
        }
        Ok(out)
    }

    /// The newest event of this node's journal for `record`: its number and hash.
    pub fn journal_head(&self, record: &RecordId) -> Result<Option<(u64, [u8; 32])>> {
        Ok(self
            .get_local(&Key::JournalHead(record).text())?
            .filter(|v| v.len() == 40)
            .map(|v| {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&v[..8]);
                let mut h = [0u8; 32];
                h.copy_from_slice(&v[8..]);
                (u64::from_be_bytes(seq), h)
            }))
    }

    /// At most `max` events of this node's journal for `record` after number `after`, in
    /// order.
    pub fn journal_after(&self, record: &RecordId, after: u64, max: usize) -> Result<Vec<Vec<u8>>> {
        let start = local_key(&Key::Journal(record, after + 1).text());
        let prefix = local_key(&ledger::journal_prefix(record));
        let end = prefix_end(&prefix).unwrap_or_else(|| vec![0xff; 64]);
        let mut out = Vec::new();
        self.store.scan_while(&start, &end, &mut |_, v| {
            out.push(v.to_vec());
            out.len() < max
        })?;
        Ok(out)
    }

    /// How far this node's journal for `record` reached the patient's audit log.
    pub fn journal_sent(&self, record: &RecordId) -> Result<u64> {
        Ok(self
            .get_local(&Key::JournalSent(record).text())?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Notes that the patient's audit log holds this node's journal for `record` up to `seq`
    /// (never beyond the journal's head, never backwards).
    ///
    /// Written visible at once and durable at the store's next flush, not with one of its
    /// own: a crash before then only moves the mark back, and the events after it are sent or
    /// collected again, which their readers take once (by writer and number). The mark never
    /// runs ahead of what is durable: it follows the commit that put the events in the audit
    /// log, and sled makes a store's writes durable in the order they were made. Deleting
    /// what it covers (a relay's journal) is a durable commit after it.
    pub fn set_journal_sent(&self, record: &RecordId, seq: u64) -> Result<()> {
        let head = self.journal_head(record)?.map_or(0, |(s, _)| s);
        let seq = seq.min(head);
        if seq <= self.journal_sent(record)? {
            return Ok(());
        }
        let mut batch = Batch::new();
        batch.put(
            local_key(&Key::JournalSent(record).text()),
            seq.to_be_bytes().to_vec(),
        );
        Ok(self.store.commit_visible(batch)?)
    }

    /// What to send the patient's node of this node's journal for `record`: the events not
    /// yet acknowledged (at most [`MAX_EVENTS_PER_SESSION`]) and the journal's head (0 when
    /// empty).
    pub fn journal_to_send(&self, record: &RecordId) -> Result<(Vec<Vec<u8>>, u64)> {
        let head = self.journal_head(record)?.map_or(0, |(s, _)| s);
        let sent = self.journal_sent(record)?;
        if head <= sent {
            return Ok((Vec::new(), head));
        }
        Ok((
            self.journal_after(record, sent, MAX_EVENTS_PER_SESSION)?,
            head,
        ))
    }
}

impl<S: Store> OpenRecord<'_, S> {
    /// Every event stored in the record's audit log, as (writer, number, bytes); empty on a
    /// node that cannot read it.
    pub fn audit_stored(&mut self) -> Vec<(PeerKey, u64, Vec<u8>)> {
        self.private_items(SectionId::AUDIT, Kind::AuditEvent.prefix())
            .into_iter()
            .filter_map(|(k, v)| {
                let (w, seq) = ledger::audit_event_of(&k)?;
                Some((w, seq, BASE64.decode(v.as_bytes()).ok()?))
            })
            .collect()
    }

    /// How far the audit log holds `writer`'s events without a gap.
    pub fn audit_head_of(&mut self, writer: &PeerKey) -> u64 {
        let seqs: BTreeSet<u64> = self
            .private_items(SectionId::AUDIT, &ledger::audit_writer_prefix(writer))
            .into_iter()
            .filter_map(|(k, _)| ledger::audit_event_of(&k).map(|(_, s)| s))
            .collect();
        let mut head = 0;
        while seqs.contains(&(head + 1)) {
            head += 1;
        }
        head
    }

    /// Keeps `events` (each already opened, so signed by its writer) in the record's audit
    /// log, those not yet there, in one change (a patient's device only). Returns how many
    /// were new.
    pub(super) fn keep_audit_events(
        &mut self,
        events: &[SignedEvent],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        self.check_ledger_writer()?;
        let stored: BTreeSet<(PeerKey, u64)> = self
            .audit_stored()
            .into_iter()
            .map(|(w, s, _)| (w, s))
            .collect();
        let items: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.event().writer, e.event().seq, e))
            .filter(|(w, s, _)| !stored.contains(&(*w, *s)) && *s <= MAX_EVENTS_PER_WRITER)
            .map(|(w, s, e)| (Key::AuditEvent(&w, s).text(), BASE64.encode(e.bytes())))
            .collect();
        if items.is_empty() {
            return Ok(0);
        }
        let n = items.len();
        self.put_private_items(SectionId::AUDIT, items, now, rng)?;
        Ok(n)
    }

    /// On a patient's device: moves this device's journal events not yet in the record's
    /// audit log into it. Returns how many; none (and no error) on a linked device that has
    /// not yet received the audit log's key.
    pub fn collect_journal(&mut self, now: Timestamp, rng: &mut impl CryptoRng) -> Result<usize> {
        if !self.owner {
            return Ok(0);
        }
        if !self.keys.contains_key(&SectionId::AUDIT) && !self.holds_root() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let sent = self.vault.journal_sent(&self.id)?;
            let batch = self
                .vault
                .journal_after(&self.id, sent, MAX_EVENTS_PER_SESSION)?;
            if batch.is_empty() {
                return Ok(total);
            }
            let events: Vec<SignedEvent> = batch
                .iter()
                .filter_map(|b| SignedEvent::open(b).ok())
                .collect();
            let last = events.last().map_or(sent, |e| e.event().seq);
            total += self.keep_audit_events(&events, now, rng)?;
            if last <= sent {
                return Ok(total);
            }
            self.vault.set_journal_sent(&self.id, last)?;
        }
    }

    /// On a patient's device: takes the audit events `remote` (the key its connection proved)
    /// sent about its own use of the record, and of what it served other grantees. Events of
    /// another writer or record, receipts marking an emergency use (only the patient's devices
    /// and relays attest those), unsigned or beyond the bounds, are dropped. Returns how far
    /// the log now holds `remote`'s events without a gap (what `remote` may stop sending).
    pub fn receive_audit(
        &mut self,
        remote: &PeerKey,
        bytes: &[impl AsRef<[u8]>],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<u64> {
        if !self.owner || !self.keys.contains_key(&SectionId::AUDIT) && !self.holds_root() {
            return Ok(0);
        }
        let events: Vec<SignedEvent> = bytes
            .iter()
            .take(MAX_EVENTS_PER_SESSION)
            .filter_map(|b| SignedEvent::open(b.as_ref()).ok())
            .filter(|e| e.event().writer == *remote && e.event().record == self.id)
            // A grantee's receipt of what it served another grantee is kept, as its own word.
            .filter(|e| !e.event().action.attests_emergency())
            .collect();
        if !events.is_empty() {
            self.keep_audit_events(&events, now, rng)?;
            self.take_proxy_answers(&events, now, rng)?;
        }
        Ok(self.audit_head_of(remote))
    }

    /// Who may write to the record's audit log: the patient's devices (removed ones too, for
    /// what they wrote before), the audiences of the grants recorded, and every peer the
    /// patient's devices served under a chain (delegates included).
    fn audit_writers(&self, stored: &[SignedEvent]) -> BTreeSet<PeerKey> {
        let mut out: BTreeSet<PeerKey> = self.all_device_peers();
        for chain in self.recorded_chains() {
            out.extend(chain.iter().map(|g| g.body().audience));
        }
        let devices = out.clone();
        for e in stored {
            if devices.contains(&e.event().writer)
                && let Action::Served { to, .. } = &e.event().action
            {
                out.insert(*to);
            }
        }
        out
    }

    /// Checks the whole audit log (see [`audit::verify`]), against this device's own
    /// journal as far as it was collected.
    pub fn verify_audit(&mut self) -> Result<Verified> {
        let stored = self.audit_stored();
        let authentic: Vec<SignedEvent> = stored
            .iter()
            .filter_map(|(_, _, b)| SignedEvent::open(b).ok())
            .collect();
        let writers = self.audit_writers(&authentic);
        // Receipts come from the patient's devices and from the record's relays.
        let mut servers: BTreeSet<PeerKey> = self.all_device_peers();
        servers.extend(self.relay_peers());
        let id = self.id;
        let heads = BTreeMap::from([(self.identity.peer(), self.vault.journal_sent(&id)?)]);
        let proxies = self.proxy_grants();
        Ok(audit::verify(
            stored.iter().map(|(w, s, b)| (*w, *s, b.as_slice())),
            &Expect {
                record_of: &|_| id,
                known: &|p| writers.contains(p),
                heads: &heads,
                serves: &|p| servers.contains(p),
                answers: &|w, a| proxy::answer_founded(&proxies, w, a),
            },
        ))
    }
}
