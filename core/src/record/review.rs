//! A record's rules for grantees' writes and the patient's review of the writes held
//! (see [`held`](super::held) for what is held and why): the write rules read from the auth
//! document, a write judged against them, and the patient's decisions applied.

use super::held::{Decision, HeldWrite, ReviewDecision, SettleReport, Verdict, WriteRules};
use super::layout::k_bundle;
use super::*;
use crate::bundle::Bundle;
use crate::ids::{BundleHash, PeerKey, SectionId};
use crate::ledger::{Key, Kind};
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::BTreeMap;

impl<S: Store> OpenRecord<'_, S> {
    /// The grant chains, revocations and review decisions of the auth document.
    pub fn write_rules(&self) -> WriteRules {
        let chains = self.recorded_chains();
        // A revocation whose time cannot be read counts from the beginning.
        let revoked = self
            .revoked_at()
            .into_iter()
            .map(|(id, at)| (id, at.unwrap_or(Timestamp::from_millis(i64::MIN))))
            .collect();
        let decisions = self
            .review_decisions()
            .into_iter()
            .map(|(h, d)| (h, d.decision))
            .collect();
        WriteRules {
            chains,
            revoked,
            decisions,
        }
    }

    /// The patient's review decisions recorded in the auth document, by bundle hash.
    pub fn review_decisions(&self) -> Vec<(BundleHash, ReviewDecision)> {
        self.auth_items(Kind::Review.prefix())
            .into_iter()
            .filter_map(|(k, v)| {
                let h: BundleHash = Kind::Review.id_in(&k)?.parse().ok()?;
                Some((h, serde_json::from_str(&v).ok()?))
            })
            .collect()
    }

    /// Judges a content bundle received from a peer (its signature and hash chain already
    /// checked): a patient device's is allowed; a grantee's by [`WriteRules::judge`] at `now`,
    /// then by the append-only rule ([`OpenRecord::check_append_only`]), which also applies
    /// it to the in-memory document so the next bundle of a batch is checked after it.
    pub fn judge_write(
        &mut self,
        rules: &WriteRules,
        devices: &[PeerKey],
        b: &Bundle,
        now: Timestamp,
    ) -> Verdict {
        let h = b.header();
        if devices.contains(&h.author) {
            return Verdict::Allow;
        }
        if h.section.is_reserved() {
            return Verdict::Refuse(
                "only the patient's devices write the auth document and ledger".into(),
            );
        }
        let Some(name) = self.directory().get(&h.section).copied() else {
            return Verdict::Refuse("a bundle for a section this node cannot name".into());
        };
        match rules.judge(&h.author, &name, &b.hash(), h.time, now) {
            Verdict::Refuse(why) => Verdict::Refuse(why),
            v => match self.check_append_only(b) {
                Ok(()) => v,
                Err(why) => Verdict::Refuse(why),
            },
        }
    }

    /// Judges bundles of `batch` that continue, in their author's log, a write of `held`
    /// (the next seq, naming its hash, validly signed): each is held too, with its own reason
    /// if its grant has ended since, else as [`HeldReason::AfterHeld`]. Adds them to `held`;
    /// returns refusals.
    pub fn judge_after_held(
        &mut self,
        rules: &WriteRules,
        batch: &[Bundle],
        held: &mut Vec<(Bundle, HeldReason)>,
        now: Timestamp,
    ) -> Vec<String> {
        let mut refused = Vec::new();
        let mut tips: BTreeMap<(SectionId, PeerKey), (u64, BundleHash)> = BTreeMap::new();
        for (b, _) in held.iter() {
            let h = b.header();
            let tip = tips
                .entry((h.section, h.author))
                .or_insert((h.seq, b.hash()));
            if h.seq > tip.0 {
                *tip = (h.seq, b.hash());
            }
        }
        let mut next: Vec<&Bundle> = batch
            .iter()
            .filter(|b| tips.contains_key(&(b.header().section, b.header().author)))
            .collect();
        next.sort_by_key(|b| (b.header().section, b.header().author, b.header().seq));
        for b in next {
            let h = b.header();
            let Some(tip) = tips.get_mut(&(h.section, h.author)) else {
                continue;
            };
            if h.seq != tip.0 + 1 || h.prev != Some(tip.1) {
                continue;
            }
            if b.verify().is_err() {
                refused.push("bundle signature does not verify (altered or forged)".into());
                tips.remove(&(h.section, h.author));
                continue;
            }
            let Some(name) = self.directory().get(&h.section).copied() else {
                continue;
            };
            let verdict = match rules.judge(&h.author, &name, &b.hash(), h.time, now) {
                Verdict::Allow => HeldReason::AfterHeld,
                Verdict::Hold(r) => r,
                Verdict::Refuse(why) => {
                    refused.push(why);
                    tips.remove(&(h.section, h.author));
                    continue;
                }
            };
            if let Err(why) = self.check_append_only(b) {
                refused.push(why);
                tips.remove(&(h.section, h.author));
                continue;
            }
            *tip = (h.seq, b.hash());
            held.push((b.clone(), verdict));
        }
        refused
    }

    /// Records the patient's decision on held write `id` (a unique hash prefix) in the auth
    /// document, on the device holding the record root: accepting it accepts the held writes
    /// before it in the same log, rejecting it rejects those after it. Then applies or drops
    /// them ([`OpenRecord::settle_held`]). Returns the writes decided.
    pub fn decide_held(
        &mut self,
        id: &str,
        decision: Decision,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(Vec<HeldWrite>, SettleReport)> {
        if !self.holds_root() {
            return Err(RecordError::NotPermitted(
                "held writes are decided on the device holding the record's root key",
            ));
        }
        let (target, _) = self
            .vault
            .held_write(id)?
            .filter(|(h, _)| h.record == self.id())
            .ok_or(RecordError::Invalid("no held write with that id"))?;
        let known = self.write_rules();
        let mut decided: Vec<HeldWrite> = self
            .vault
            .held_writes()?
            .into_iter()
            .filter(|h| {
                h.record == target.record
                    && h.author == target.author
                    && h.section == target.section
                    && match decision {
                        Decision::Accept => h.seq <= target.seq,
                        Decision::Reject => h.seq >= target.seq,
                    }
                    && known.decision(&h.id).is_none()
            })
            .collect();
        decided.sort_by_key(|h| h.seq);
        if decided.is_empty() {
            return Err(RecordError::Invalid("that held write is already decided"));
        }
        let items = decided
            .iter()
            .map(|h| {
                let d = ReviewDecision {
                    decision,
                    section: h.section,
                    author: h.author,
                    seq: h.seq,
                    declared: h.declared,
                    reason: h.reason,
                    at: now,
                };
                let text = serde_json::to_string(&d)
                    .map_err(|_| RecordError::Invalid("decision cannot be encoded"))?;
                Ok((Key::Review(&h.id.to_string()).text(), text))
            })
            .collect::<Result<Vec<_>>>()?;
        self.put_auth_items(items, now, rng)?;
        let settled = self.settle_held(now)?;
        Ok((decided, settled))
    }

    /// Applies the held writes of this record that the patient accepted (checked again, as any
    /// bundle from a peer) and drops those rejected. Writes still undecided stay held.
    pub fn settle_held(&mut self, now: Timestamp) -> Result<SettleReport> {
        let mut report = SettleReport::default();
        let rules = self.write_rules();
        let record = self.id();
        let vault = self.vault;
        let mine: Vec<HeldWrite> = vault
            .held_writes()?
            .into_iter()
            .filter(|h| h.record == record)
            .collect();
        let rejected: Vec<&HeldWrite> = mine
            .iter()
            .filter(|h| rules.decision(&h.id) == Some(Decision::Reject))
            .collect();
        vault.drop_held(&rejected)?;
        report.dropped = rejected.len();
        let mut accepted = Vec::new();
        for h in mine
            .iter()
            .filter(|h| rules.decision(&h.id) == Some(Decision::Accept))
        {
            if let Some((_, b)) = vault.held_write(&h.id.to_string())? {
                accepted.push(b);
            }
        }
        if accepted.is_empty() {
            return Ok(report);
        }
        let devices = self.device_peers();
        let rep = vault.store_remote(&record, accepted, now, &mut |b| match self
            .judge_write(&rules, &devices, b, now)
        {
            Verdict::Allow => Ok(()),
            Verdict::Hold(_) => Err("still awaits the patient's review".into()),
            Verdict::Refuse(why) => Err(why),
        })?;
        report.refused = rep.refused;
        // Whatever is now in its log (stored now, or already) leaves the held area.
        let mut applied = Vec::new();
        for h in mine
            .iter()
            .filter(|h| rules.decision(&h.id) == Some(Decision::Accept))
        {
            let in_log = vault
                .store()
                .get(&k_bundle(&record, &h.section, &h.author, h.seq))?
                .is_some_and(|bytes| crate::crypto::sha256(&[&bytes]) == h.id.0);
            if in_log {
                applied.push(h);
            }
        }
        vault.drop_held(&applied)?;
        report.applied = applied.len();
        self.reload()?;
        Ok(report)
    }
}
