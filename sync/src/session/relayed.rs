//! Rounds with a record's relays: supplying one (a patient device), and fetching from and
//! pushing to one (a grantee, or the patient collecting what grantees left there). What comes
//! back is checked exactly as a peer's response is ([`Local::receive`]): a relay is trusted
//! with nothing.

use super::*;
use crate::protocol::Message;
use crate::relay::access::{AccessEntry, AccessList, SignedAccess};
use crate::relay::wire::{Agreement, pad, unpad};
use crate::relay::{StoreRequest, StoreResponse, blind};
use hearth_core::crypto::{self, Domain};
use hearth_core::ledger::RelayItem;
use serde_bytes::ByteArray;

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
    ) -> Result<Message, SyncError> {
        if self.relays(&record, now).iter().any(|(p, _)| *p == peer) {
            Ok(Message::Store(self.relay_start(record, peer, now)?))
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
                let (next, report) = self.on_relay_response(peer, record, r, now)?;
                Ok((next.map(Message::Store), report))
            }
            _ => Err(SyncError::Protocol(
                "not an answer to a sync or store request",
            )),
        }
    }

    fn agreement(&self) -> Agreement {
        let key = self.identity.agreement_public();
        let sig = crypto::sign(self.identity.device_key(), Domain::AgreementKey, &[&key]);
        Agreement {
            key: ByteArray::new(key),
            sig: ByteArray::new(sig),
        }
    }

    /// The first request to `relay` for `record`: what this node holds of the sections it may
    /// hold, and, from the device holding the record root, the signed access list and the key
    /// wraps to the recovery key.
    pub fn relay_start(
        &self,
        record: RecordId,
        relay: PeerKey,
        now: Timestamp,
    ) -> Result<StoreRequest, SyncError> {
        let rec = self.vault.open_record(self.identity, &record).ok();
        let held = self.vault.held_sections(&record)?;
        let holdable = holdable_sections(rec.as_ref());
        let (access, wraps) = match &rec {
            Some(r) if self.identity.holds_root_of(&record) => {
                let list = self.relay_access(r, &relay, now)?;
                let wraps = match self.identity.recovery_public() {
                    Some(k) => self.vault.key_wraps_to(&record, &k)?,
                    None => Vec::new(),
                };
                (
                    Some(ByteBuf::from(list.to_bytes())),
                    wraps
                        .into_iter()
                        .take(crate::relay::wire::MAX_WRAPS)
                        .collect(),
                )
            }
            _ => (None, Vec::new()),
        };
        Ok(StoreRequest {
            v: 1,
            record: blind(&record, &relay),
            agreement: Some(self.agreement()),
            access,
            wraps,
            have: have_of(&held, |s| holdable.contains(s)),
            push: Vec::new(),
        })
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
            });
        }
        let dir = rec.directory();
        let held: BTreeSet<SectionId> = self
            .vault
            .held_sections(&record)?
            .into_keys()
            .chain(dir.keys().copied())
            .collect();
        let mut audiences: BTreeMap<PeerKey, Timestamp> = BTreeMap::new();
        for chain in &chains {
            let Some(leaf) = chain.last() else { continue };
            let who = leaf.body().audience;
            if who == *relay || entries.iter().any(|e| e.peer == who) {
                continue;
            }
            if grant::verify_chain(chain, &Access::any(who), now, &|g| revoked.contains(g)).is_ok()
            {
                let end = chain.iter().map(|g| g.body().expires).min().unwrap_or(now);
                let e = audiences.entry(who).or_insert(end);
                *e = (*e).max(end);
            }
        }
        for (who, until) in audiences {
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
            });
        }
        entries.truncate(crate::relay::access::MAX_ENTRIES);
        let list = AccessList {
            v: 1,
            record,
            relay: *relay,
            version: u64::try_from(now.as_millis()).unwrap_or(0),
            grant: ByteBuf::from(grant::chain_to_bytes(grant)),
            entries,
        };
        SignedAccess::sign(self.identity, &list).ok_or(SyncError::Protocol(
            "only the device holding the record root supplies relays",
        ))
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
    ) -> Result<(Option<StoreRequest>, Report), SyncError> {
        if let Some(why) = resp.refused {
            return Err(SyncError::Refused(why));
        }
        if resp.record != blind(&record, &relay) {
            return Err(SyncError::Protocol("a relay answered for another record"));
        }
        let mut report = Report {
            record: Some(record),
            ..Report::default()
        };
        let mut bundles = Vec::with_capacity(resp.bundles.len());
        for p in &resp.bundles {
            match unpad(p) {
                Some(b) => bundles.push(ByteBuf::from(b.to_vec())),
                None => report.refused.push("a padded bundle is malformed".into()),
            }
        }
        let owner = self.identity.holds_root_of(&record);
        let mine = self.identity.agreement_public();
        let wraps: Vec<_> = resp
            .wraps
            .into_iter()
            .filter(|w| w.recipient.into_array() == mine && w.record == record)
            .collect();
        if !owner
            && (!wraps.is_empty() || self.vault.records()?.contains(&record))
            && let Err(e) = self.vault.register_replica(&record, &wraps, now)
        {
            report.refused.push(format!("key wraps refused: {e}"));
        }
        let devices = resp
            .access
            .as_deref()
            .map(|a| crate::relay::access::devices_in(a, &record))
            .unwrap_or_default();
        let mut rec = self.vault.open_record(self.identity, &record).ok();
        let holdable = holdable_sections(rec.as_ref());
        let (stored, refused) = self.receive(
            &record,
            &mut rec,
            &bundles,
            &[],
            &devices,
            None,
            &|s| holdable.contains(s),
            now,
        )?;
        report.received = stored;
        report.refused.extend(refused);
        let pushes_refused = !resp.rejected.is_empty();
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
        report.in_sync =
            push.is_empty() && !resp.more && report.sections.iter().all(|s| s.behind == 0);
        let next = if !push.is_empty() || resp.more {
            let mut req = self.relay_start(record, relay, now)?;
            // The list and wraps went with the first request.
            req.access = None;
            req.wraps = Vec::new();
            req.push = push.iter().map(|b| pad(b)).collect();
            Some(req)
        } else {
            None
        };
        Ok((next, report))
    }
}
