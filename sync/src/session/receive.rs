//! Receiving bundles from a peer: each is checked, authorised at this node's clock and stored,
//! held for the patient's review, or refused and reported.

use super::*;

/// A bundle from a peer, decoded, or why it does not decode (no content).
pub(super) type Decoded = Result<Bundle, String>;

/// Decodes each of `raw`, once: what [`Local::receive`] takes.
pub(super) fn decoded(raw: &[ByteBuf]) -> Vec<Decoded> {
    raw.iter()
        .map(|r| Bundle::decode(r).map_err(|e| e.to_string()))
        .collect()
}

impl<'a, S: Store> Local<'a, S> {
    /// Authorises a bundle authored by someone for this record at `now`, this node's clock
    /// (see the module docs). A late write that the patient should review is refused and added
    /// to `held`; the caller holds it if this node `holds` such writes.
    pub(super) fn authorize(
        rec: &mut OpenRecord<'_, S>,
        devices: &[PeerKey],
        rules: &WriteRules,
        b: &Bundle,
        now: Timestamp,
        held: &mut Vec<(Bundle, HeldReason)>,
        holds: bool,
    ) -> Result<(), String> {
        let h = b.header();
        if devices.contains(&h.author) {
            return rec.check_device_bundle(b);
        }
        match rec.judge_write(rules, devices, b, now) {
            Verdict::Allow => Ok(()),
            Verdict::Hold(reason) => {
                held.push((b.clone(), reason));
                let author = b.header().author;
                Err(if holds {
                    let ended = if reason == HeldReason::Revoked {
                        "was revoked"
                    } else {
                        "ended"
                    };
                    format!(
                        "a write by {author} from before its grant {ended} awaits the patient's review"
                    )
                } else {
                    format!(
                        "a write by {author} from before its grant ended: only the patient's \
                         device holding the record root holds it for review"
                    )
                })
            }
            Verdict::Refuse(why) => Err(why),
        }
    }

    /// Verifies and stores bundles from a peer: auth document first (its authors must be
    /// devices certified in `devices`), then content, checked against the updated auth
    /// document.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive(
        &self,
        record: &RecordId,
        rec: &mut Option<OpenRecord<'a, S>>,
        bundles: Vec<Decoded>,
        snapshots: &[ByteBuf],
        extra_devices: &[PeerKey],
        only_author: Option<PeerKey>,
        refuse_section: &dyn Fn(&SectionId) -> Option<&'static str>,
        now: Timestamp,
    ) -> Result<(usize, Vec<String>), SyncError> {
        let mut refused = Vec::new();
        let mut auth = Vec::new();
        let mut content = Vec::new();
        for b in bundles {
            match b {
                Ok(b) if only_author.is_some_and(|a| a != b.header().author) => {
                    refused.push("a pushed bundle by someone other than the pusher".into())
                }
                Ok(b) if let Some(why) = refuse_section(&b.header().section) => {
                    refused.push(why.into())
                }
                Ok(b) if b.header().section == SectionId::AUTH => auth.push(b),
                Ok(b) => content.push(b),
                Err(e) => refused.push(e),
            }
        }
        let mut stored = 0;
        // Devices known before this exchange, plus certificates the peer sent (verified).
        let mut devices: Vec<PeerKey> = extra_devices.to_vec();
        if let Some(r) = rec.as_ref() {
            update_devices(&mut devices, r);
        }
        if !auth.is_empty() {
            let devs = devices.clone();
            let rep = self.vault.store_remote_as(
                record,
                auth,
                now,
                &mut |b| {
                    if devs.contains(&b.header().author) {
                        Ok(())
                    } else {
                        Err("an auth-document change not by a patient device".into())
                    }
                },
                self.durability,
            )?;
            stored += rep.stored;
            refused.extend(rep.refused);
            if rep.stored > 0 {
                match rec.as_mut() {
                    Some(r) => r.reload()?,
                    None => *rec = self.vault.open_record(self.identity, record).ok(),
                }
            }
        }
        if !snapshots.is_empty() {
            if rec.is_none() {
                *rec = self.vault.open_record(self.identity, record).ok();
            }
            match rec.as_mut() {
                Some(r) => {
                    update_devices(&mut devices, r);
                    for snap in snapshots {
                        match r.accept_snapshot(snap, &devices) {
                            Ok(true) => stored += 1,
                            Ok(false) => {}
                            Err(why) => refused.push(why),
                        }
                    }
                }
                None => refused.push("a snapshot arrived before its record's keys".into()),
            }
        }
        if !content.is_empty() {
            if rec.is_none() {
                *rec = self.vault.open_record(self.identity, record).ok();
            }
            match rec.as_mut() {
                Some(r) => {
                    update_devices(&mut devices, r);
                    // What the auth document says of grantees' writes is read only when a
                    // bundle by someone other than the patient's devices is to be judged (the
                    // patient's own edits, the usual push, never are).
                    let mut rules: Option<WriteRules> = None;
                    let none = WriteRules::default();
                    // Late writes are held only where the patient decides on them: the
                    // device holding the record root (see `hearth_core::record::HeldWrite`).
                    let holds = self.identity.holds_root_of(record);
                    let mut held = Vec::new();
                    let batch = if holds { content.clone() } else { Vec::new() };
                    let rep = self.vault.store_remote_as(
                        record,
                        content,
                        now,
                        &mut |b| {
                            if rules.is_none() && !devices.contains(&b.header().author) {
                                rules = Some(r.write_rules());
                            }
                            let rules = rules.as_ref().unwrap_or(&none);
                            Self::authorize(r, &devices, rules, b, now, &mut held, holds)
                        },
                        self.durability,
                    )?;
                    stored += rep.stored;
                    refused.extend(rep.refused);
                    if !held.is_empty() {
                        if holds {
                            let rules = rules.take().unwrap_or_else(|| r.write_rules());
                            refused.extend(r.judge_after_held(&rules, &batch, &mut held, now));
                            let rep = self.vault.hold(held, now)?;
                            refused.extend(rep.refused);
                        }
                        // What was checked into the in-memory documents is not applied.
                        r.reload()?;
                    }
                }
                None => refused.push("content arrived before its record's keys".into()),
            }
        }
        Ok((stored, refused))
    }

    /// Receiver of a change notification with bundles: checks and stores them exactly as a
    /// response's (authorship, append-only rules, hash chains), for a record this node holds
    /// and sections it holds keys for. The caller syncs with the sender when anything was
    /// refused (a gap: something in between was missed).
    ///
    /// A pushed bundle under a key epoch this node was not given is refused too: this node is
    /// behind on the auth document (the keys moved, perhaps after a revocation it has not
    /// heard of), so it must neither keep the bundle nor pass it on to peers it still counts
    /// as readers. The sync the refusal draws brings the auth document and the keys first.
    pub fn on_push(
        &self,
        record: RecordId,
        push: &[ByteBuf],
        now: Timestamp,
    ) -> Result<Report, SyncError> {
        // A record held but not open here (its keys not yet come) still takes what it can.
        let mut rec = match self.vault.open_record(self.identity, &record) {
            Ok(r) => Some(r),
            Err(RecordError::NoRecord(_)) => {
                return Err(SyncError::Refused("record not available".into()));
            }
            Err(e @ RecordError::Store(_)) => return Err(e.into()),
            Err(_) => None,
        };
        let holdable = holdable_sections(rec.as_ref());
        let keys: BTreeSet<(SectionId, u32)> = rec
            .as_ref()
            .map(|r| r.keys_held().into_iter().collect())
            .unwrap_or_default();
        let mut unkeyed = Vec::new();
        let push: Vec<Decoded> = decoded(push)
            .into_iter()
            .filter(|b| match b {
                Ok(b) if !keys.contains(&(b.header().section, b.header().epoch)) => {
                    unkeyed
                        .push("a pushed bundle under a key this node does not hold (yet)".into());
                    false
                }
                _ => true,
            })
            .collect();
        let (stored, mut refused) = self.receive(
            &record,
            &mut rec,
            push,
            &[],
            &[],
            None,
            &|s| (!holdable.contains(s)).then_some(NO_KEY_YET),
            now,
        )?;
        refused.extend(unkeyed);
        Ok(Report {
            record: Some(record),
            received: stored,
            refused,
            ..Report::default()
        })
    }
}
