//! The responder's side of a round: what the requester is missing of what it may hold.

use super::audit;
use super::*;

impl<'a, S: Store> Local<'a, S> {
    /// Bundles of `ours` that `theirs` lacks, for the sections `include` allows and, when
    /// `author` is set, only that author's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn missing_for(
        &self,
        record: &RecordId,
        ours: &BTreeMap<SectionId, VersionVector>,
        theirs: &BTreeMap<SectionId, VersionVector>,
        include: &dyn Fn(&SectionId) -> bool,
        author: Option<PeerKey>,
        budget: usize,
    ) -> Result<(Vec<ByteBuf>, bool), SyncError> {
        let mut budget = budget;
        let mut out = Vec::new();
        let mut more = false;
        // The auth document first: it is what makes everything else checkable.
        let mut order: Vec<&SectionId> = ours.keys().collect();
        order.sort_by_key(|s| (**s != SectionId::AUTH, **s));
        for sid in order {
            if !include(sid) {
                continue;
            }
            let empty = VersionVector::new();
            let their = theirs.get(sid).unwrap_or(&empty);
            for (a, head) in &ours[sid] {
                if author.is_some_and(|x| x != *a) {
                    continue;
                }
                let from = their.get(a).map_or(0, |h| h.seq) + 1;
                if head.seq < from {
                    continue;
                }
                let got = self.vault.bundles_from(record, sid, a, from, &mut budget)?;
                if (got.len() as u64) < head.seq + 1 - from {
                    more = true;
                }
                out.extend(got.into_iter().map(ByteBuf::from));
            }
        }
        Ok((out, more))
    }

    /// Responder: answers a request from `remote` (authenticated by the transport).
    pub fn on_request(
        &self,
        remote: PeerKey,
        req: SyncRequest,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SyncResponse, Report), SyncError> {
        let refuse = |why: &str, revocations: Vec<ByteBuf>| {
            let resp = SyncResponse {
                v: 1,
                record: req.record,
                refused: Some(why.to_string()),
                bundles: Vec::new(),
                have: Vec::new(),
                wraps: Vec::new(),
                devices: Vec::new(),
                more: false,
                rejected: Vec::new(),
                snapshots: Vec::new(),
                revocations,
                audit_ack: None,
            };
            let report = Report {
                record: Some(req.record),
                refused: vec![why.to_string()],
                ..Report::default()
            };
            Ok((resp, report))
        };
        let Ok(card) = Card::open(req.card.clone()) else {
            return refuse("the requester's card does not verify", Vec::new());
        };
        if card.body().peer != remote {
            return refuse(
                "the requester's card names another key than the connection's",
                Vec::new(),
            );
        }
        let Ok(mut rec) = self.vault.open_record(self.identity, &req.record) else {
            return refuse("record not available", Vec::new());
        };
        // Revocations of the requester's own grants travel with any answer, a refusal too.
        let revocations = self.revocations_for(&rec, &remote, &req.grants, now);
        let (mut rights, why) = self.rights_of(&rec, &remote, Some(&req.grants), now);
        // Emergency (break-glass) access, for a professional without a grant: refused with
        // the same words as a stranger, so that a use without an arrangement learns nothing.
        // Only the patient's devices serve it here (the record's relays by their own
        // protocol): a grantee's node could not attest the use in the patient's audit.
        if !rights.device
            && rights.scopes.is_empty()
            && rec.is_device(&self.identity.peer())
            && let Some(claim) = &req.emergency
            && let Ok(r) = self.emergency_rights(&rec, &remote, claim, now)
        {
            rights = r;
        }
        if !rights.device && rights.scopes.is_empty() {
            // The same answer as for an unknown record: a stranger learns nothing (and only
            // the holder of a revoked grant, proven by the connection, hears of its revocation).
            let _ = why;
            return refuse("record not available", revocations);
        }
        // The grantee's report of its own reads and writes, into the patient's audit log.
        let audit_ack = if rights.device || req.audit_head.is_none() {
            None
        } else {
            // Not kept (a store failure): no acknowledgement, so the grantee sends them again.
            rec.receive_audit(&remote, &req.audit, now, rng).ok()
        };
        let dir = rec.directory().clone();
        // Pushes first, so the answer reflects them.
        let mut report = Report {
            record: Some(req.record),
            ..Report::default()
        };
        if !req.push.is_empty() {
            let only = if rights.device { None } else { Some(remote) };
            let mut slot = Some(rec);
            let (stored, refused) = self.receive(
                &req.record,
                &mut slot,
                receive::decoded(&req.push),
                &[],
                &[],
                only,
                &|s| {
                    (!rights.may_write(s, &dir))
                        .then_some("a bundle for a section the sender may not write")
                },
                now,
            )?;
            report.received = stored;
            report.refused = refused;
            rec = match slot {
                Some(r) => r,
                None => self.vault.open_record(self.identity, &req.record)?,
            };
        }
        let dir = rec.directory().clone();
        let ours = self.vault.held_sections(&req.record)?;
        let theirs: BTreeMap<SectionId, VersionVector> =
            req.have.iter().map(|h| (h.section, h.vv())).collect();
        let may_read = |s: &SectionId| rights.may_read(s, &dir);
        // A reader starting a section (or behind where this node's own copy starts) gets the
        // section's shared snapshot, then only the bundles after it.
        let mut theirs = theirs;
        let mut snapshots = Vec::new();
        let mut budget = MAX_BUNDLE_BYTES;
        let devices_now = rec.device_peers();
        for (sid, vv) in &ours {
            if !may_read(sid) {
                continue;
            }
            let empty = VersionVector::new();
            let their = theirs.get(sid).unwrap_or(&empty);
            let seq_of = |a: &PeerKey| their.get(a).map_or(0, |x| x.seq);
            let lacking = self
                .vault
                .base(&req.record, sid)?
                .iter()
                .any(|(a, h)| seq_of(a) < h.seq);
            let behind: u64 = vv
                .iter()
                .map(|(a, h)| h.seq.saturating_sub(seq_of(a)))
                .sum();
            if !(lacking || (their.is_empty() && behind >= SNAPSHOT_MIN)) {
                continue;
            }
            let Some(bytes) = self.vault.shared_snapshot(&req.record, sid)? else {
                continue;
            };
            let Some(snap) = SharedSnapshot::decode(&bytes) else {
                continue;
            };
            if bytes.len() > budget / 2 || !devices_now.contains(&snap.author) {
                continue;
            }
            budget -= bytes.len();
            let mut start = their.clone();
            for (a, h) in snap.version_vector() {
                if seq_of(&a) < h.seq {
                    start.insert(a, h);
                }
            }
            theirs.insert(*sid, start);
            snapshots.push(ByteBuf::from(bytes));
        }
        let (bundles, more) =
            self.missing_for(&req.record, &ours, &theirs, &may_read, None, budget)?;
        // Keys: the owner wraps missing ones to the requester's agreement key.
        let readable: Vec<SectionId> = if rights.device {
            [SectionId::AUTH, SectionId::LEDGER]
                .into_iter()
                .chain(dir.keys().copied())
                .collect()
        } else {
            grant::key_sections(&rights.scopes, &dir)
        };
        let agreement = card.body().agreement.into_array();
        let wraps = if rec.holds_root() {
            rec.wrap_missing_keys(agreement, &readable, &req.keys, rng)?
        } else {
            self.vault
                .key_wraps_to(&req.record, &agreement)?
                .into_iter()
                .filter(|w| {
                    readable.contains(&w.section) && !req.keys.contains(&(w.section, w.epoch))
                })
                .collect()
        };
        // Device certificates only to whom may read the auth document that holds them.
        let devices: Vec<String> = if may_read(&SectionId::AUTH) {
            rec.device_certs()
                .iter()
                .filter_map(|d| serde_json::to_string(d).ok())
                .collect()
        } else {
            Vec::new()
        };
        // What the requester may push to: a device, every section held here; a grantee, every
        // section it may add to, one still empty here too (a section created for an append
        // grant), or its writes there would wait for this node to pull them.
        let have = if rights.device {
            have_of(&ours, |_| true)
        } else {
            let empty = VersionVector::new();
            dir.keys()
                .filter(|s| rights.may_write(s, &dir))
                .map(|s| SectionHave::new(*s, ours.get(s).unwrap_or(&empty)))
                .collect()
        };
        report.sent = bundles.len();
        report.served = audit::receipt(
            &rec,
            remote,
            &rights,
            &bundles,
            &snapshots,
            req.audit_head,
            false,
        )
        .map(Box::new);
        report.sections = statuses(&ours, &req.have);
        report.in_sync = bundles.is_empty() && report.sections.iter().all(|s| s.behind == 0);
        Ok((
            SyncResponse {
                v: 1,
                record: req.record,
                refused: None,
                bundles,
                have,
                wraps,
                devices,
                more,
                rejected: report.refused.clone(),
                snapshots,
                revocations,
                audit_ack,
            },
            report,
        ))
    }

    /// The bundles of `sections` newer than `since`, if they fit in `budget` bytes (else
    /// none).
    pub fn bundles_since(
        &self,
        record: &RecordId,
        sections: &BTreeSet<SectionId>,
        since: &BTreeMap<SectionId, VersionVector>,
        budget: usize,
    ) -> Result<Vec<ByteBuf>, SyncError> {
        if sections.is_empty() {
            return Ok(Vec::new());
        }
        let ours = self.vault.held_sections(record)?;
        let include = |s: &SectionId| sections.contains(s);
        let (out, more) = self.missing_for(record, &ours, since, &include, None, budget)?;
        Ok(if more { Vec::new() } else { out })
    }
}
