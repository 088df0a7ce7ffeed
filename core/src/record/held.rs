//! Held writes: what a grantee wrote while its grant was valid but delivered after the grant
//! ended.
//!
//! Append authority is judged at the **receiver's** clock (`now`, passed in), never at the
//! time a bundle declares: that time is chosen by its author, so an expired grantee could
//! otherwise write for ever by backdating. A professional who works offline can still have a
//! genuine late delivery, so a bundle that
//!
//! - is not allowed at `now` (its grant expired beyond the clock tolerance, or was revoked),
//! - but declares a time when a grant chain of its author for that section allowed `append`
//!   (before the expiry; before the revocation's time), no later than `now`,
//! - and passes the signature, hash-chain and append-only checks,
//!
//! is **held for the patient's review** on the patient's device holding the record root key
//! (where the patient decides): stored in a held area of the store (as encrypted as any
//! bundle: the held bytes are the sealed bundle), never applied to the section, never offered
//! to peers. Anything else is refused as before. The declared time is
//! shown to the patient as the author's claim, nothing more.
//!
//! The patient decides on the root device (`hearth review accept|reject ID`). A decision is an
//! item of the auth document, `review/<bundle hash>` ([`ReviewDecision`]), signed like every
//! auth change, so every node that meets that exact bundle judges it the same way: accepted
//! bundles are applied (and reach the other nodes from the patient's log), rejected ones are
//! refused everywhere and never held again. Accepting a write accepts the held writes before
//! it in the same log (it cannot apply without them); rejecting one rejects the held writes
//! after it.
//!
//! Other nodes (professionals, relays, the patient's linked devices) do not hold: they refuse
//! a late bundle with a reason. Its author keeps it in its own log and offers it again on
//! every sync, so nothing is lost; only the patient can decide on it; and a late writer
//! cannot make every node of the care team store what the patient has not admitted.
//!
//! A stranger cannot fill the area: only bundles by a key that held a verified grant chain
//! for that very section (when the bundle says it was written) are held, and the area is
//! bounded per author and in total ([`MAX_HELD_PER_AUTHOR`], [`MAX_HELD`] and their byte
//! bounds); beyond them a bundle is refused, and the refusal reported.
//!
//! ## Layout in the store
//!
//! | key | value |
//! |---|---|
//! | `H` record author section seq | the held write's facts (CBOR, small: listing reads only these) |
//! | `J` record author section seq | the sealed bundle, as received |
//!
//! (Built in `layout.rs`, with every other key the record engine writes.)

use super::layout::{k_held, k_held_bytes, k_held_prefix};
use super::{RecordError, Result, Vault, cbor, decbor};
use crate::bundle::Bundle;
use crate::grant::{self, Ability, Access, CLOCK_TOLERANCE_MS, Grant, GrantId};
use crate::ids::{BundleHash, PeerKey, RecordId, SectionId};
use crate::section::SectionName;
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most writes held for one author (over all records and sections).
pub const MAX_HELD_PER_AUTHOR: usize = 64;
/// The most bytes of writes held for one author.
pub const MAX_HELD_BYTES_PER_AUTHOR: usize = 16 << 20;
/// The most writes held on a node.
pub const MAX_HELD: usize = 1024;
/// The most bytes of writes held on a node.
pub const MAX_HELD_BYTES: usize = 128 << 20;

/// Why a write is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HeldReason {
    /// The author's grant expired between the declared time and the receipt.
    Expired,
    /// The author's grant was revoked between the declared time and the receipt.
    Revoked,
    /// It follows, in its author's log, a write that is held (it cannot apply before it).
    AfterHeld,
}

impl HeldReason {
    /// A short word for people and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldReason::Expired => "expired",
            HeldReason::Revoked => "revoked",
            HeldReason::AfterHeld => "after-held",
        }
    }
}

/// The patient's decision on a held write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Apply it: every node accepts that exact bundle.
    Accept,
    /// Drop it: every node refuses that exact bundle.
    Reject,
}

impl Decision {
    /// `accept` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Reject => "reject",
        }
    }
}

/// A decision on one bundle, as recorded in the auth document under `review/<bundle hash>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    /// Accept or reject.
    pub decision: Decision,
    /// The bundle's section (opaque id).
    pub section: SectionId,
    /// The bundle's author (verified signer).
    pub author: PeerKey,
    /// Its place in the author's log.
    pub seq: u64,
    /// The time the bundle declared (the author's claim).
    pub declared: Timestamp,
    /// Why it was held.
    pub reason: HeldReason,
    /// When the patient decided.
    pub at: Timestamp,
}

/// A held write, as listed for review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWrite {
    /// The bundle's hash: the id `hearth review accept|reject` takes.
    pub id: BundleHash,
    /// The record.
    pub record: RecordId,
    /// The section (opaque id; the record's directory names it).
    pub section: SectionId,
    /// The author: the key whose signature verified.
    pub author: PeerKey,
    /// Its place in the author's log of the section.
    pub seq: u64,
    /// The time the bundle declares (the author's claim, not checked).
    pub declared: Timestamp,
    /// When this node received it (this node's clock).
    pub received: Timestamp,
    /// Why it is held.
    pub reason: HeldReason,
    /// The sealed bundle's size.
    pub bytes: usize,
}

/// What a bundle by someone else than this node deserves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store and apply it.
    Allow,
    /// Hold it for the patient's review.
    Hold(HeldReason),
    /// Refuse it (the reason, no content).
    Refuse(String),
}

/// What [`Vault::hold`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldReport {
    /// Writes newly held.
    pub held: usize,
    /// Writes that were held already.
    pub already: usize,
    /// Writes not held, with the reason (no content).
    pub refused: Vec<String>,
}

/// What [`OpenRecord::settle_held`](super::OpenRecord::settle_held) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Accepted writes now applied to their section.
    pub applied: usize,
    /// Rejected writes dropped from the held area.
    pub dropped: usize,
    /// Accepted writes that could not be applied yet, with the reason.
    pub refused: Vec<String>,
}

/// What the auth document says about writes by grantees, read once per batch: the recorded
/// grant chains, revocations with their times, and the patient's review decisions.
#[derive(Clone, Debug, Default)]
pub struct WriteRules {
    pub(super) chains: Vec<Vec<Grant>>,
    pub(super) revoked: BTreeMap<GrantId, Timestamp>,
    pub(super) decisions: BTreeMap<BundleHash, Decision>,
}

impl WriteRules {
    /// Judges the authority of `author` to have written `hash` into `name`, declared at
    /// `declared`, received at `now` (grants and decisions only; the caller checks
    /// authorship and the append-only rule).
    pub fn judge(
        &self,
        author: &PeerKey,
        name: &SectionName,
        hash: &BundleHash,
        declared: Timestamp,
        now: Timestamp,
    ) -> Verdict {
        match self.decisions.get(hash) {
            Some(Decision::Reject) => {
                return Verdict::Refuse("a write the patient rejected on review".into());
            }
            Some(Decision::Accept) => return Verdict::Allow,
            None => {}
        }
        let want = Access::section(*author, *name, Ability::Append);
        let mine: Vec<&Vec<Grant>> = self
            .chains
            .iter()
            .filter(|c| c.last().is_some_and(|l| l.body().audience == *author))
            .collect();
        let revoked_now = |g: &GrantId| self.revoked.contains_key(g);
        if mine
            .iter()
            .any(|c| grant::verify_chain(c, &want, now, &revoked_now).is_ok())
        {
            return Verdict::Allow;
        }
        let refused = || Verdict::Refuse(format!("{author} had no append grant for this section"));
        // A declared time after the receipt is no claim of a past right.
        if declared.as_millis() > now.as_millis().saturating_add(CLOCK_TOLERANCE_MS) {
            return refused();
        }
        let revoked_then = |g: &GrantId| {
            self.revoked
                .get(g)
                .is_some_and(|at| at.as_millis() <= declared.as_millis())
        };
        for c in mine {
            if grant::verify_chain(c, &want, declared, &revoked_then).is_ok() {
                let reason = if c.iter().any(|g| self.revoked.contains_key(&g.id())) {
                    HeldReason::Revoked
                } else {
                    HeldReason::Expired
                };
                return Verdict::Hold(reason);
            }
        }
        refused()
    }

    /// The patient's decision on a bundle, if any.
    pub fn decision(&self, hash: &BundleHash) -> Option<Decision> {
        self.decisions.get(hash).copied()
    }
}

impl<S: Store> Vault<S> {
    /// Every held write on this node (all records), oldest log position first.
    pub fn held_writes(&self) -> Result<Vec<HeldWrite>> {
        Ok(self
            .store()
            .scan_prefix(&k_held_prefix())?
            .into_iter()
            .filter_map(|(_, v)| decbor::<HeldWrite>(&v).ok())
            .collect())
    }

    /// A held write and its bundle, by id (a unique prefix of the hash is enough).
    pub fn held_write(&self, id: &str) -> Result<Option<(HeldWrite, Bundle)>> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 8 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(RecordError::Invalid(
                "a held write's id is its hash in hex (at least 8 characters)",
            ));
        }
        let found: Vec<HeldWrite> = self
            .held_writes()?
            .into_iter()
            .filter(|h| h.id.to_string().starts_with(&id))
            .collect();
        let [h] = found.as_slice() else {
            return if found.is_empty() {
                Ok(None)
            } else {
                Err(RecordError::Invalid(
                    "more than one held write starts with that id",
                ))
            };
        };
        let bytes = self
            .store()
            .get(&k_held_bytes(&h.record, &h.author, &h.section, h.seq))?
            .ok_or(RecordError::Invalid("a held write lost its bundle"))?;
        let b = Bundle::decode_owned(bytes).map_err(|_| RecordError::Corrupt {
            section: h.section.to_string(),
            reason: "a held bundle does not decode".into(),
        })?;
        if b.hash() != h.id {
            return Err(RecordError::Corrupt {
                section: h.section.to_string(),
                reason: "a held bundle does not match its id".into(),
            });
        }
        Ok(Some((h.clone(), b)))
    }

    /// Holds `writes` (already judged [`Verdict::Hold`]) for the patient's review, within the
    /// bounds; received at `now`.
    pub fn hold(&self, writes: Vec<(Bundle, HeldReason)>, now: Timestamp) -> Result<HoldReport> {
        let mut report = HoldReport::default();
        if writes.is_empty() {
            return Ok(report);
        }
        let existing = self.held_writes()?;
        let mut total = existing.len();
        let mut total_bytes: usize = existing.iter().map(|h| h.bytes).sum();
        let mut per_author: BTreeMap<PeerKey, (usize, usize)> = BTreeMap::new();
        for h in &existing {
            let e = per_author.entry(h.author).or_default();
            e.0 += 1;
            e.1 += h.bytes;
        }
        let mut batch = Batch::new();
        let mut placed: BTreeMap<Vec<u8>, BundleHash> = BTreeMap::new();
        for (b, reason) in writes {
            let hd = b.header();
            let k = k_held(&hd.record, &hd.author, &hd.section, hd.seq);
            let here = match placed.get(&k) {
                Some(h) => Some(*h),
                None => self
                    .store()
                    .get(&k)?
                    .and_then(|v| decbor::<HeldWrite>(&v).ok())
                    .map(|h| h.id),
            };
            match here {
                Some(h) if h == b.hash() => {
                    report.already += 1;
                    continue;
                }
                Some(_) => {
                    report.refused.push(format!(
                        "not held: {} already has another write held at seq {}",
                        hd.author, hd.seq
                    ));
                    continue;
                }
                None => {}
            }
            let size = b.encoded().len();
            let mine = per_author.entry(hd.author).or_default();
            if mine.0 >= MAX_HELD_PER_AUTHOR
                || mine.1.saturating_add(size) > MAX_HELD_BYTES_PER_AUTHOR
            {
                report.refused.push(format!(
                    "not held: {} has as many writes awaiting review as a node keeps",
                    hd.author
                ));
                continue;
            }
            if total >= MAX_HELD || total_bytes.saturating_add(size) > MAX_HELD_BYTES {
                report
                    .refused
                    .push("not held: the held area of this node is full".into());
                continue;
            }
            let item = HeldWrite {
                id: b.hash(),
                record: hd.record,
                section: hd.section,
                author: hd.author,
                seq: hd.seq,
                declared: hd.time,
                received: now,
                reason,
                bytes: size,
            };
            batch.put(k.clone(), cbor(&item)?);
            batch.put(
                k_held_bytes(&hd.record, &hd.author, &hd.section, hd.seq),
                b.encoded().to_vec(),
            );
            placed.insert(k, b.hash());
            mine.0 += 1;
            mine.1 += size;
            total += 1;
            total_bytes += size;
            report.held += 1;
        }
        if !batch.is_empty() {
            self.store().commit(batch)?;
        }
        Ok(report)
    }

    pub(super) fn drop_held(&self, writes: &[&HeldWrite]) -> Result<()> {
        let mut batch = Batch::new();
        for h in writes {
            batch.delete(k_held(&h.record, &h.author, &h.section, h.seq));
            batch.delete(k_held_bytes(&h.record, &h.author, &h.section, h.seq));
        }
        if !batch.is_empty() {
            self.store().commit(batch)?;
        }
        Ok(())
    }
}
