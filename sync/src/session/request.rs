//! The requester's side of a round: the opening request and what to do with each answer.

use super::*;

impl<'a, S: Store> Local<'a, S> {
    /// Takes in the part of an answer (a peer's or a relay's) that carries data: the key wraps
    /// addressed to this node (kept by every node but the root holder: a linked device too, so
    /// new sections and rotated keys reach it this way), then the bundles, accepted per
    /// authorship (`devices`: the patient's devices the answer vouched for) and only for
    /// sections this node holds a key for. Returns the record as it is open afterwards.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_answer(
        &self,
        record: &RecordId,
        wraps: Vec<hearth_core::record::KeyWrap>,
        bundles: &[ByteBuf],
        snapshots: &[ByteBuf],
        devices: &[PeerKey],
        now: Timestamp,
        report: &mut Report,
    ) -> Result<Option<OpenRecord<'a, S>>, SyncError> {
        let wraps: Vec<_> = wraps
            .into_iter()
            .filter(|w| w.is_for(self.identity, record))
            .collect();
        // No wraps, nothing to keep: a record this node holds is registered already, and one
        // it does not is registered with its first keys.
        if !self.identity.holds_root_of(record)
            && !wraps.is_empty()
            && let Err(e) = self.vault.register_replica(record, &wraps, now)
        {
            report.refused.push(format!("key wraps refused: {e}"));
        }
        let mut rec = self.vault.open_record(self.identity, record).ok();
        let holdable = holdable_sections(rec.as_ref());
        let (stored, refused) = self.receive(
            record,
            &mut rec,
            receive::decoded(bundles),
            snapshots,
            devices,
            None,
            &|s| (!holdable.contains(s)).then_some(NO_KEY_YET),
            now,
        )?;
        report.received = stored;
        report.refused.extend(refused);
        Ok(rec)
    }

    /// Requester: the first request of a sync of `record` with `remote`, holding only what
    /// `remote` may hold (see `party` below): the version vectors and key lists of the sections it
    /// may hold, and this node's grant chains for this record. Refused
    /// ([`SyncError::NotAParty`]) when `remote` is no party to the record here, with the same
    /// error whether or not the record exists, so a stranger's `Notify` never draws a request.
    pub fn start(
        &self,
        record: RecordId,
        remote: PeerKey,
        now: Timestamp,
    ) -> Result<SyncRequest, SyncError> {
        self.start_as(record, remote, false, now)
    }

    /// [`Local::start`] with a peer the user named for this sync (`sync --with`, a known peer):
    /// it is also sent a request for a record this node holds grants for but has no auth
    /// document of yet (no patient device is known to ask instead).
    pub fn start_as(
        &self,
        record: RecordId,
        remote: PeerKey,
        named_by_user: bool,
        now: Timestamp,
    ) -> Result<SyncRequest, SyncError> {
        // Opened once for every question below (each open would load the auth document).
        let rec = self.vault.open_record(self.identity, &record).ok();
        let may = self
            .party(rec.as_ref(), &record, &remote, named_by_user, now)
            .ok_or(SyncError::NotAParty)?;
        let held = self.vault.held_sections(&record)?;
        let holds = |s: &SectionId| may.as_ref().is_none_or(|m| m.contains(s));
        let mut keys = rec.as_ref().map(|r| r.keys_held()).unwrap_or_default();
        keys.retain(|(s, _)| holds(s));
        let (audit, audit_head) = self.journal_for(rec.as_ref(), &record, &remote);
        drop(rec);
        let emergency = self.emergency_for(&record, &remote, now);
        Ok(SyncRequest {
            v: 1,
            record,
            card: self.my_card()?.envelope().clone(),
            grants: self.held_chains(&record)?,
            have: have_of(&held, holds),
            keys,
            push: Vec::new(),
            audit,
            audit_head,
            emergency,
        })
    }

    /// Requester: handles a response. Returns the next request to send, if any (a push of
    /// what the responder lacks, or a continuation when the response was partial).
    pub fn on_response(
        &self,
        remote: PeerKey,
        resp: SyncResponse,
        now: Timestamp,
        _rng: &mut impl CryptoRng,
    ) -> Result<(Option<SyncRequest>, Report), SyncError> {
        self.learn_revocations(&resp.record, &resp.revocations);
        // A refusal acknowledges nothing (a responder never sends both).
        if let Some(why) = resp.refused {
            return Err(SyncError::Refused(why));
        }
        let record = resp.record;
        let mut report = Report {
            record: Some(record),
            ..Report::default()
        };
        // Device certificates, verified against the record root.
        let devices: Vec<PeerKey> = resp
            .devices
            .iter()
            .filter_map(|d| serde_json::from_str::<DeviceCert>(d).ok())
            .filter(|d| d.verify(&record))
            .map(|d| d.peer)
            .collect();
        let rec = self.take_answer(
            &record,
            resp.wraps,
            &resp.bundles,
            &resp.snapshots,
            &devices,
            now,
            &mut report,
        )?;
        // Judged on the record as the answer left it: an auth-document change it brought
        // was accepted only from the patient's devices.
        self.journal_acked(rec.as_ref(), &record, &remote, resp.audit_ack);
        // If the responder refused something we pushed, pushing it again would not help: the
        // log stays stuck there until a person looks (the refusal is reported).
        let pushes_refused = !resp.rejected.is_empty();
        report.rejected = resp.rejected.len();
        report.refused.extend(resp.rejected);
        // What the responder lacks that we may send it.
        let ours = self.vault.held_sections(&record)?;
        let theirs: BTreeMap<SectionId, VersionVector> =
            resp.have.iter().map(|h| (h.section, h.vv())).collect();
        let me = self.identity.peer();
        let i_am_device = devices.contains(&me) || rec.as_ref().is_some_and(|r| r.is_device(&me));
        let push = match rec.as_ref() {
            _ if pushes_refused => Vec::new(),
            Some(rec) if i_am_device => {
                // Send the remote only what it may hold: everything if it is a device, else
                // what its recorded grants allow.
                let (rights, _) = self.rights_of(rec, &remote, None, now);
                let dir = rec.directory().clone();
                let include = |s: &SectionId| rights.may_read(s, &dir);
                let push = self
                    .missing_for(&record, &ours, &theirs, &include, None, MAX_BUNDLE_BYTES)?
                    .0;
                // A grantee sent record data in this node's own round is owed a receipt
                // (kept by the caller before the push leaves). It did not ask, so it had no
                // chance to report: the receipt says so, as a push's does.
                report.served =
                    audit::receipt(rec, remote, &rights, &push, &[], None, true).map(Box::new);
                push
            }
            Some(_) => {
                // A grantee pushes only its own bundles, to sections the remote offered.
                let include = |s: &SectionId| theirs.contains_key(s);
                self.missing_for(
                    &record,
                    &ours,
                    &theirs,
                    &include,
                    Some(me),
                    MAX_BUNDLE_BYTES,
                )?
                .0
            }
            None => Vec::new(),
        };
        report.sent = push.len();
        report.sections = statuses(&ours, &resp.have);
        // A responder that refused what was pushed does not hold this node's copy.
        report.in_sync = push.is_empty()
            && !pushes_refused
            && !resp.more
            && report.sections.iter().all(|s| s.behind == 0)
            && !report.lacks_keys();
        let next = if !push.is_empty() || resp.more {
            let mut req = self.start_as(record, remote, true, now)?;
            req.push = push;
            Some(req)
        } else {
            None
        };
        Ok((next, report))
    }
}
