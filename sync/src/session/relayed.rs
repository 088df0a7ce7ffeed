//! Rounds with a record's relays: supplying one (a patient device), and fetching from and
//! pushing to one (a grantee, or the patient collecting what grantees left there). What comes
//! back is checked exactly as a peer's response is ([`Local::receive`]): a relay is trusted
//! with nothing.

use super::*;
use crate::protocol::Message;
use crate::relay::access::{AccessEntry, AccessList, EmergencyEntry, SignedAccess};
use crate::relay::wire::{Agreement, AuditAck, MAX_AUDIT, MAX_AUDIT_ACKS, pad, unpad};
use crate::relay::{StoreRequest, StoreResponse, blind};
use hearth_core::audit::Authority;
use hearth_core::ledger::RelayItem;
use hearth_core::record::KeyWrap;
use serde_bytes::ByteArray;

/// What a request to a relay carries of the audit: a grantee's journal head and events, a
/// patient device's acknowledgements.
type RelayAudit = (Option<u64>, Vec<ByteBuf>, Vec<AuditAck>);

/// Which request of a round to a relay is being made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The first: it carries the list, the wraps, letters and audit events.
    First,
    /// A later one, pushing what the first answer showed the relay lacks.
    Later,
}

impl<'a, S: Store> Local<'a, S> {
    /// The record's relays at `now`: those in its auth document, and those the grants this
    /// node holds for it name ([`grant::relay_hints`]: the patient signed them, and they are
    /// how a grantee finds a relay before it has reached the patient's node).
    pub fn relays(&self, record: &RecordId, now: Timestamp) -> Vec<(PeerKey, RelayItem)> {
        let mut out = self
            .vault
            .open_record(self.identity, record)
            .map(|r| r.relays(now))
            .unwrap_or_default();
        for (peer, addrs) in self.noted_relays(record) {
            if !out.iter().any(|(p, _)| *p == peer) {
                out.push((
                    peer,
                    RelayItem {
                        addrs: addrs.addrs,
                        name: None,
                        added_at: now,
                    },
                ));
            }
        }
        for chain in self.vault.held_chains(record).unwrap_or_default() {
            let Some(root) = chain.first() else { continue };
            for a in grant::relay_hints(&root.body().addresses) {
                let Some(peer) = a.rsplit_once("/p2p/").and_then(|(_, p)| p.parse().ok()) else {
                    continue;
                };
                if !out.iter().any(|(p, _)| *p == peer) {
                    out.push((
                        peer,
                        RelayItem {
                            addrs: vec![a.to_string()],
                            name: None,
                            added_at: root.body().not_before,
                        },
                    ));
                }
            }
        }
        out
    }

    /// The first request of a round of `record` with `peer`: a [`StoreRequest`] when `peer` is
    /// one of the record's relays, else a sync request ([`Local::start_as`]).
    pub fn begin(
        &self,
        record: RecordId,
        peer: PeerKey,
        named: bool,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Message, SyncError> {
        if self.relays(&record, now).iter().any(|(p, _)| *p == peer) {
            Ok(Message::Store(self.relay_start(record, peer, now, rng)?))
        } else {
            Ok(Message::Request(self.start_as(record, peer, named, now)?))
        }
    }

    /// Handles a peer's answer in a round: a sync response ([`Local::on_response`]) or a
    /// relay's ([`Local::on_relay_response`]). Returns the next request, if any.
    pub fn on_answer(
        &self,
        peer: PeerKey,
        record: RecordId,
        answer: Message,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(Option<Message>, Report), SyncError> {
        match answer {
            Message::Response(r) => {
                let (next, report) = self.on_response(peer, r, now, rng)?;
                Ok((next.map(Message::Request), report))
            }
            Message::Stored(r) => {
                let (next, report) = self.on_relay_response(peer, record, r, now, rng)?;
                Ok((next.map(Message::Store), report))
            }
            _ => Err(SyncError::Protocol(
                "not an answer to a sync or store request",
            )),
        }
    }

    fn agreement(&self) -> Agreement {
        Agreement::of(self.identity)
    }

    /// The first request to `relay` for `record`: what this node holds of the sections it may
    /// hold, and, from the device holding the record root, the signed access list and the key
    /// wraps to the recovery key.
    pub fn relay_start(
        &self,
        record: RecordId,
        relay: PeerKey,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<StoreRequest, SyncError> {
        self.relay_request(record, relay, now, Turn::First, rng)
    }

    /// A request of a round to `relay` for `record`. A later one carries what this node holds
    /// and its audit position, but not what went with the first: the list, the wraps and
    /// their signature (the first answer carried the wraps this node may have), letters and
    /// audit events; so none of them is made again.
    fn relay_request(
        &self,
        record: RecordId,
        relay: PeerKey,
        now: Timestamp,
        turn: Turn,
        rng: &mut impl CryptoRng,
    ) -> Result<StoreRequest, SyncError> {
        let first = turn == Turn::First;
        let mut rec = self.vault.open_record(self.identity, &record).ok();
        let held = self.vault.held_sections(&record)?;
        let holdable = holdable_sections(rec.as_ref());
        let (access, wraps) = match &rec {
            Some(r) if first && self.identity.holds_root_of(&record) => {
                let list = self.relay_access(r, &relay, now)?;
                let mut wraps = match self.identity.recovery_public() {
                    Some(k) => self.vault.key_wraps_to(&record, &k)?,
                    None => Vec::new(),
                };
                // Grantees' keys and emergency escrow, kept once made: one scan, one commit.
                let mut wanted = self.grantee_recipients(r, &list, now);
                wanted.extend(Self::escrow_recipients(r, now));
                wraps.extend(r.kept_wraps_for(&wanted, rng)?);
                (
                    Some(ByteBuf::from(list.to_bytes())),
                    wraps
                        .into_iter()
                        .take(crate::relay::wire::MAX_WRAPS)
                        .collect::<Vec<_>>(),
                )
            }
            _ => (None, Vec::new()),
        };
        // The root vouches for all its wraps with one signature (the relay checks one, not
        // one per wrap).
        let wraps_signed = self
            .identity
            .root_key()
            .filter(|_| !wraps.is_empty())
            .map(|root| ByteArray::new(KeyWrap::sign_all(root, &wraps)));
        let (post, ack) = if first {
            self.outgoing(&relay)
        } else {
            (Vec::new(), Vec::new())
        };
        let (audit_head, audit, audit_ack) =
            self.relay_audit(rec.as_mut(), &record, &relay, first)?;
        // A professional using emergency access presents the use to the record's relays,
        // which hold the patient's arrangement on their access lists: only to those the auth
        // document names (a relay merely found on the network must first prove it keeps the
        // record, see `node::break_glass`); never to the patient's own devices.
        let named = rec
            .as_ref()
            .is_some_and(|r| r.relays(now).iter().any(|(p, _)| *p == relay));
        let claim = if self.identity.record_id() == Some(record) || !named {
            None
        } else {
            self.held_claim(&record, now)
        };
        Ok(StoreRequest {
            v: 1,
            record: blind(&record, &relay),
            agreement: Some(self.agreement()),
            access,
            wraps,
            wraps_signed,
            wraps_held: !first,
            have: have_of(&held, |s| holdable.contains(s)),
            push: Vec::new(),
            post,
            ack,
            audit_head,
            audit,
            audit_ack,
            emergency: None,
            claim,
            card_wanted: false,
            proof_wanted: false,
        })
    }

    /// The audit a request to `relay` carries: from a patient device, how far the record's
    /// audit log holds the relay's and the grantees' events; from a grantee, its journal's
    /// head and the events the patient's devices have not acknowledged.
    fn relay_audit(
        &self,
        rec: Option<&mut OpenRecord<'_, S>>,
        record: &RecordId,
        relay: &PeerKey,
        with_events: bool,
    ) -> Result<RelayAudit, SyncError> {
        if self.identity.record_id() == Some(*record) {
            let Some(rec) = rec else {
                return Ok((None, Vec::new(), Vec::new()));
            };
            let mut writers: Vec<PeerKey> = vec![*relay];
            for chain in rec.recorded_chains() {
                if let Some(leaf) = chain.last()
                    && !writers.contains(&leaf.body().audience)
                {
                    writers.push(leaf.body().audience);
                }
            }
            writers.truncate(MAX_AUDIT_ACKS);
            let acks = rec
                .audit_acks(&writers)
                .into_iter()
                .map(|(writer, seq)| AuditAck { writer, seq })
                .collect();
            return Ok((None, Vec::new(), acks));
        }
        let head = self.vault.journal_head(record)?.map_or(0, |(s, _)| s);
        if !with_events {
            return Ok((Some(head), Vec::new(), Vec::new()));
        }
        let sent = self.vault.journal_sent(record)?;
        let events = self
            .vault
            .journal_after(record, sent, MAX_AUDIT)?
            .into_iter()
            .map(ByteBuf::from)
            .collect();
        Ok((Some(head), events, Vec::new()))
    }

    /// The access list for `relay` (root holder only): the patient's devices may do
    /// everything; each holder of an unrevoked grant may fetch the sections it may read and
    /// push to those it may append to, until its grant ends.
    pub fn relay_access(
        &self,
        rec: &OpenRecord<'_, S>,
        relay: &PeerKey,
        now: Timestamp,
    ) -> Result<SignedAccess, SyncError> {
        let record = rec.id();
        let revoked = rec.revoked_grants();
        let chains = rec.recorded_chains();
        let grant = chains
            .iter()
            .find(|c| {
                c.last().is_some_and(|g| {
                    g.body().audience == *relay
                        && g.body().scopes.iter().all(|s| s.ability == Ability::Relay)
                        && grant::verify_chain(c, &Access::any(*relay), now, &|g| {
                            revoked.contains(g)
                        })
                        .is_ok()
                })
            })
            .ok_or(SyncError::Protocol("no valid relay grant to this relay"))?;
        let mut entries = Vec::new();
        let far = Timestamp::from_millis(i64::MAX);
        let mut devices: Vec<PeerKey> = vec![self.identity.peer()];
        update_devices(&mut devices, rec);
        for d in devices {
            entries.push(AccessEntry {
                peer: d,
                device: true,
                read: Vec::new(),
                write: Vec::new(),
                until: far,
                authority: None,
            });
        }
        let dir = rec.directory();
        let held: BTreeSet<SectionId> = self
            .vault
            .held_sections(&record)?
            .into_keys()
            .chain(dir.keys().copied())
            .collect();
        // Each audience's latest-ending valid chain: its end, and the grant named in receipts.
        let mut audiences: BTreeMap<PeerKey, (Timestamp, Authority)> = BTreeMap::new();
        for chain in &chains {
            let Some(leaf) = chain.last() else { continue };
            let who = leaf.body().audience;
            if who == *relay || entries.iter().any(|e| e.peer == who) {
                continue;
            }
            if grant::verify_chain(chain, &Access::any(who), now, &|g| revoked.contains(g)).is_ok()
            {
                let end = chain.iter().map(|g| g.body().expires).min().unwrap_or(now);
                let authority = Authority {
                    grant: leaf.id(),
                    purpose: leaf.body().purpose,
                };
                let e = audiences.entry(who).or_insert((end, authority));
                if end > e.0 {
                    *e = (end, authority);
                }
            }
        }
        for (who, (until, authority)) in audiences {
            let (rights, _) = self.rights_of(rec, &who, None, now);
            let read: Vec<SectionId> = held
                .iter()
                .filter(|s| **s != SectionId::AUTH && rights.may_read(s, dir))
                .copied()
                .collect();
            let write: Vec<SectionId> = held
                .iter()
                .filter(|s| **s != SectionId::AUTH && rights.may_write(s, dir))
                .copied()
                .collect();
            if read.is_empty() && write.is_empty() {
                continue;
            }
            entries.push(AccessEntry {
                peer: who,
                device: false,
                read,
                write,
                until,
                authority: Some(authority),
            });
        }
        entries.truncate(crate::relay::access::MAX_ENTRIES);
        // The emergency arrangements whose keys are escrowed (an organisation's agreement key
        // known): a use the relay accepts may fetch the arranged sections and their wraps.
        let emergency = rec
            .arrangements(now)
            .into_iter()
            .filter(|(org, _)| org != relay)
            .filter_map(|(org, a)| {
                let read: Vec<SectionId> = grant::key_sections(&a.scopes, dir)
                    .into_iter()
                    .filter(|s| *s != SectionId::AUTH && held.contains(s))
                    .collect();
                Some(EmergencyEntry {
                    org,
                    agreement: a.agreement?,
                    read,
                    max_duration_ms: a.max_duration_ms,
                    arranged_at: a.arranged_at,
                    expires: a.expires,
                })
            })
            .take(crate::relay::access::MAX_ARRANGEMENTS)
            .collect();
        let list = AccessList {
            v: 1,
            record,
            relay: *relay,
            version: u64::try_from(now.as_millis()).unwrap_or(0),
            grant: ByteBuf::from(grant::chain_to_bytes(grant)),
            entries,
            emergency,
        };
        SignedAccess::sign(self.identity, &list).ok_or(SyncError::Protocol(
            "only the device holding the record root supplies relays",
        ))
    }

    /// Who gets which keys among the grantees on `list`: each reader, with the sections it
    /// may read and the auth document, to the key its grant's keys were wrapped to (the
    /// agreement key of its card, or its device key's X25519 form for a grant made to a bare
    /// peer id), or else to that X25519 form. So keys of new epochs (after a revocation moved
    /// sections to new keys) reach grantees through the relay while the patient's node is
    /// offline.
    fn grantee_recipients(
        &self,
        rec: &OpenRecord<'_, S>,
        list: &SignedAccess,
        now: Timestamp,
    ) -> Vec<([u8; 32], Vec<SectionId>)> {
        let Some(me) = self.identity.record_id() else {
            return Vec::new();
        };
        let Ok(list) = AccessList::open_own(list, &me) else {
            return Vec::new();
        };
        let chains = rec.recorded_chains();
        let mut out = Vec::new();
        let mut wraps = 0;
        // Only readers: the auth document's key goes with a key-carrying scope alone.
        for e in list
            .entries
            .iter()
            .filter(|e| !e.device && e.until >= now && !e.read.is_empty())
        {
            let agreement = chains
                .iter()
                .filter_map(|c| c.last())
                .filter(|g| g.body().audience == e.peer)
                .find_map(|g| g.body().keys.first().map(|w| w.recipient.into_array()))
                .or_else(|| e.peer.device_agreement().ok());
            let Some(agreement) = agreement else { continue };
            let mut sections = e.read.clone();
            sections.push(SectionId::AUTH);
            wraps += sections.len();
            out.push((agreement, sections));
            if wraps >= crate::relay::wire::MAX_WRAPS {
                break;
            }
        }
        out
    }

    /// The keys of every emergency arrangement's sections (and of the auth document), for the
    /// arranged organisation's agreement key: escrowed with the relay, which hands them only
    /// to a professional whose use it accepted, for the organisation to release to them.
    fn escrow_recipients(
        rec: &OpenRecord<'_, S>,
        now: Timestamp,
    ) -> Vec<([u8; 32], Vec<SectionId>)> {
        let mut out = Vec::new();
        let mut wraps = 0;
        for a in rec.arrangements(now).into_values() {
            let Some(agreement) = a.agreement else {
                continue;
            };
            let sections = grant::key_sections(&a.scopes, rec.directory());
            wraps += sections.len();
            out.push((agreement.into_array(), sections));
            if wraps >= crate::relay::wire::MAX_WRAPS {
                break;
            }
        }
        out
    }

    /// Handles a relay's answer: stores what it sent by this node's own rules, then pushes
    /// what the relay lacks (a patient device: everything it holds; a grantee: its own
    /// bundles to the sections the relay lets it write).
    pub fn on_relay_response(
        &self,
        relay: PeerKey,
        record: RecordId,
        resp: StoreResponse,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(Option<StoreRequest>, Report), SyncError> {
        if resp.record != blind(&record, &relay) {
            return Err(SyncError::Protocol("a relay answered for another record"));
        }
        // Letters come whether or not the rest was refused.
        let opened = self.on_letters(&relay, &resp, now, rng)?;
        if let Some(why) = resp.refused {
            return Err(SyncError::Refused(why));
        }
        let mut report = Report {
            record: Some(record),
            letters: opened,
            ..Report::default()
        };
        let mut bundles = Vec::with_capacity(resp.bundles.len());
        for p in &resp.bundles {
            match unpad(p) {
                Some(b) => bundles.push(ByteBuf::from(b.to_vec())),
                None => report.refused.push("a padded bundle is malformed".into()),
            }
        }
        let devices = resp
            .access
            .as_deref()
            .map(|a| crate::relay::access::devices_in(a, &record))
            .unwrap_or_default();
        let rec = self.take_answer(
            &record,
            resp.wraps,
            &bundles,
            &[],
            &devices,
            now,
            &mut report,
        )?;
        self.take_relay_audit(&relay, &record, &resp.audit, resp.audit_acked, now, rng)?;
        let owner = self.identity.holds_root_of(&record);
        let pushes_refused = !resp.rejected.is_empty();
        report.rejected = resp.rejected.len();
        report.refused.extend(resp.rejected);
        let ours = self.vault.held_sections(&record)?;
        let theirs: BTreeMap<SectionId, VersionVector> =
            resp.have.iter().map(|h| (h.section, h.vv())).collect();
        let me = self.identity.peer();
        let device = rec.as_ref().is_some_and(|r| {
            let mut d = Vec::new();
            update_devices(&mut d, r);
            d.contains(&me) || owner
        });
        let push = if pushes_refused {
            Vec::new()
        } else if device {
            let all = |_: &SectionId| true;
            self.missing_for(&record, &ours, &theirs, &all, None, MAX_BUNDLE_BYTES)?
                .0
        } else {
            let offered = |s: &SectionId| theirs.contains_key(s);
            self.missing_for(
                &record,
                &ours,
                &theirs,
                &offered,
                Some(me),
                MAX_BUNDLE_BYTES,
            )?
            .0
        };
        // Padded, the push must still fit the message; the rest goes in the next request.
        let push = crate::relay::wire::fit_padded(push, MAX_BUNDLE_BYTES).0;
        report.sent = push.len();
        report.sections = statuses(&ours, &resp.have);
        // A relay that refused what was pushed (its quota, say) does not hold this node's copy.
        report.in_sync = push.is_empty()
            && !pushes_refused
            && !resp.more
            && report.sections.iter().all(|s| s.behind == 0)
            && !report.lacks_keys();
        let next = if !push.is_empty() || resp.more {
            let mut req = self.relay_request(record, relay, now, Turn::Later, rng)?;
            req.push = push.iter().map(|b| pad(b)).collect();
            Some(req)
        } else {
            None
        };
        Ok((next, report))
    }

    /// What a relay's answer carries of the audit: to a patient device, the relay's receipts
    /// and the grantees' events (kept by the record's own rules); to a grantee, how far the
    /// patient's devices hold its events.
    fn take_relay_audit(
        &self,
        relay: &PeerKey,
        record: &RecordId,
        audit: &[ByteBuf],
        acked: Option<u64>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(), SyncError> {
        if self.identity.record_id() == Some(*record) {
            if !audit.is_empty()
                && let Ok(mut rec) = self.vault.open_record(self.identity, record)
            {
                rec.receive_relayed_audit(relay, audit, now, rng)?;
            }
        } else if let Some(seq) = acked {
            self.vault.set_journal_sent(record, seq)?;
        }
        Ok(())
    }
}
