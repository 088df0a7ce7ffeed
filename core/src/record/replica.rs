//! What peers send: bundles verified and stored, and the checks a bundle passes first.

use super::append::put_bundle;
use super::disputes::is_dispute_key;
use super::entries::entry_key;
use super::layout::{k_base, k_bundle, k_fork, k_head};
use super::{OpenRecord, Result, Vault};
use crate::bundle::Bundle;
use crate::crypto::{self};
use crate::entry::{EntryBody, EntryVersion};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::log::{self, LogHead};
use crate::store::{Batch, Durability, Store};
use crate::time::Timestamp;
use automerge::{ROOT, ReadDoc};

/// What [`Vault::store_remote`] did with a batch of bundles from a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteReport {
    /// Bundles stored.
    pub stored: usize,
    /// Bundles already held.
    pub duplicates: usize,
    /// Bundles refused, with the reason (no content).
    pub refused: Vec<String>,
    /// Forks detected (evidence kept).
    pub forks: usize,
}

/// A bundle's decrypted payload and what its change chunk's header says.
type OpenedChange = (zeroize::Zeroizing<Vec<u8>>, crate::bundle::ChangeHead);

/// [`OpenRecord::check_append_only`]'s refusal of a bundle whose change depends on changes this
/// node does not hold yet: [`Vault::store_remote`] retries it after the batch's other logs.
pub const WAITS_FOR_DEPS: &str = "the change depends on changes this node does not hold yet";

impl<S: Store> Vault<S> {
    /// Verifies and stores bundles received from a peer, without decrypting them (so a relay
    /// can do it too): each must decode, be signed by its author, be allowed by `authorize`,
    /// and extend its log's hash chain. Forks are kept as evidence and refused. Everything
    /// accepted is committed atomically, with `now` (this node's clock) as each bundle's
    /// receipt time.
    ///
    /// A log whose next bundle `authorize` refuses with [`WAITS_FOR_DEPS`] is tried again after
    /// the batch's other logs (whose changes it may depend on), as long as that makes progress.
    pub fn store_remote(
        &self,
        record: &RecordId,
        bundles: Vec<Bundle>,
        now: Timestamp,
        authorize: &mut dyn FnMut(&Bundle) -> std::result::Result<(), String>,
    ) -> Result<RemoteReport> {
        self.store_remote_as(record, bundles, now, authorize, Durability::Now)
    }

    /// [`Vault::store_remote`], committed as `durability` says.
    pub fn store_remote_as(
        &self,
        record: &RecordId,
        bundles: Vec<Bundle>,
        now: Timestamp,
        authorize: &mut dyn FnMut(&Bundle) -> std::result::Result<(), String>,
        durability: Durability,
    ) -> Result<RemoteReport> {
        let mut batch = Batch::new();
        let report = self.stage_remote(record, bundles, Some(now), authorize, &mut batch)?;
        if !batch.is_empty() {
            match durability {
                Durability::Now => self.store.commit(batch)?,
                Durability::AtNextFlush => self.store.commit_visible(batch)?,
            }
        }
        Ok(report)
    }

    /// [`Vault::store_remote`] with what it accepts put into `batch`, which the caller commits
    /// (with writes of its own, in one commit). Nothing is written before that commit. Each
    /// bundle's receipt time is `received` (this node's clock), or none for a node that keeps
    /// bundles for others and never reads them (a relay: nothing it shows needs one).
    pub fn stage_remote(
        &self,
        record: &RecordId,
        bundles: Vec<Bundle>,
        received: Option<Timestamp>,
        authorize: &mut dyn FnMut(&Bundle) -> std::result::Result<(), String>,
        batch: &mut Batch,
    ) -> Result<RemoteReport> {
        let mut report = RemoteReport::default();
        let mut sorted = bundles;
        sorted.retain(|b| {
            let ok = b.header().record == *record;
            if !ok {
                report.refused.push("a bundle for another record".into());
            }
            ok
        });
        sorted.sort_by_key(|b| (b.header().section, b.header().author, b.header().seq));
        // Per log: the bundles that extend it (signature-checked), and how many are authorised.
        let mut runs: Vec<Run<'_>> = Vec::new();
        // One (section, author) log at a time.
        for run in sorted.chunk_by(|x, y| {
            (x.header().section, x.header().author) == (y.header().section, y.header().author)
        }) {
            let (section, author) = (run[0].header().section, run[0].header().author);
            let extend = self.extending(record, &section, &author, run, batch, &mut report)?;
            runs.push((section, author, extend, 0));
        }
        authorize_runs(&mut runs, authorize, &mut report);
        put_authorized(record, &runs, received, batch, &mut report);
        Ok(report)
    }

    /// The bundles of `run` (one log's, oldest first) that extend the log as this node holds
    /// it, the newest one's signature checked; bundles already held (or covered by the shared
    /// snapshot this node started from) are counted as duplicates, forks kept in `batch` as
    /// evidence, and refusals reported.
    fn extending<'b>(
        &self,
        record: &RecordId,
        section: &SectionId,
        author: &PeerKey,
        run: &'b [Bundle],
        batch: &mut Batch,
        report: &mut RemoteReport,
    ) -> Result<Vec<&'b Bundle>> {
        let mut head = self
            .store
            .get(&k_head(record, section, author))?
            .and_then(|v| LogHead::from_bytes(&v));
        let base = self
            .store
            .get(&k_base(record, section, author))?
            .and_then(|v| LogHead::from_bytes(&v))
            .map_or(0, |h| h.seq);
        // Walk the chain: which bundles extend the log, which are already held, which fork.
        let mut extend: Vec<&Bundle> = Vec::new();
        for b in run {
            let h = b.header();
            if h.seq <= base
                && self
                    .store
                    .get(&k_bundle(record, section, author, h.seq))?
                    .is_none()
            {
                // Covered by the shared snapshot this node started from.
                report.duplicates += 1;
                continue;
            }
            let held = if head.is_some_and(|x| h.seq <= x.seq) {
                self.store
                    .get(&k_bundle(record, section, author, h.seq))?
                    .map(|bytes| crate::ids::BundleHash(crypto::sha256(&[&bytes])))
            } else {
                None
            };
            match log::check_append(head.as_ref(), held, h, b.hash()) {
                Ok(log::Append::Extend) => {
                    extend.push(b);
                    head = Some(LogHead {
                        seq: h.seq,
                        hash: b.hash(),
                    });
                }
                Ok(log::Append::Duplicate) => report.duplicates += 1,
                Err(log::LogError::Fork { seq }) => {
                    // Evidence counts only if the author really signed it.
                    if b.verify().is_ok() {
                        batch.put(k_fork(record, section, author, seq), b.encoded().to_vec());
                        report.forks += 1;
                        report
                            .refused
                            .push(format!("fork by {author} at seq {seq}"));
                    } else {
                        report
                            .refused
                            .push("bundle signature does not verify (altered or forged)".into());
                    }
                }
                Err(e) => report.refused.push(e.to_string()),
            }
        }
        // Signatures: the newest bundle's signature covers its header, which names the
        // hash of the one before, and so on down the run; so one check authenticates the
        // whole run. If it fails, check one by one and keep the good prefix.
        let mut good = extend.len();
        if extend.last().is_some_and(|b| b.verify().is_err()) {
            good = extend
                .iter()
                .position(|b| b.verify().is_err())
                .unwrap_or(extend.len());
            report
                .refused
                .push("bundle signature does not verify (altered or forged)".into());
        }
        if good < extend.len() {
            report.refused.extend(std::iter::repeat_n(
                "follows a bundle that was refused".to_string(),
                extend.len() - good - 1,
            ));
        }
        extend.truncate(good);
        Ok(extend)
    }
}

/// One log's bundles in a batch from a peer: its section and author, the bundles that extend
/// it, and how many of them are authorised so far.
type Run<'b> = (SectionId, PeerKey, Vec<&'b Bundle>, usize);

/// Authorises each log's bundles in order; a log waiting for changes another log of the batch
/// carries is tried again once the others have gone as far as they can. What stays refused is
/// reported.
fn authorize_runs(
    runs: &mut [Run<'_>],
    authorize: &mut dyn FnMut(&Bundle) -> std::result::Result<(), String>,
    report: &mut RemoteReport,
) {
    let mut waiting: Vec<Option<String>> = vec![None; runs.len()];
    let mut done = vec![false; runs.len()];
    loop {
        let mut progress = false;
        for (r, (_, _, extend, next)) in runs.iter_mut().enumerate() {
            if done[r] {
                continue;
            }
            while let Some(b) = extend.get(*next) {
                match authorize(b) {
                    Ok(()) => {
                        *next += 1;
                        progress = true;
                        waiting[r] = None;
                    }
                    Err(why) => {
                        if why != WAITS_FOR_DEPS {
                            done[r] = true;
                        }
                        waiting[r] = Some(why);
                        break;
                    }
                }
            }
            if *next == extend.len() {
                done[r] = true;
            }
        }
        if !progress || done.iter().all(|d| *d) {
            break;
        }
    }
    report.refused.extend(waiting.into_iter().flatten());
}

/// Puts into `batch` the authorised bundles of `runs`, each with its receipt time (`now`), and
/// each log's new head.
fn put_authorized(
    record: &RecordId,
    runs: &[Run<'_>],
    received: Option<Timestamp>,
    batch: &mut Batch,
    report: &mut RemoteReport,
) {
    for (section, author, extend, next) in runs {
        for b in &extend[..*next] {
            put_bundle(batch, b, received);
            report.stored += 1;
        }
        if let Some(b) = next.checked_sub(1).and_then(|n| extend.get(n)) {
            let nh = LogHead {
                seq: b.header().seq,
                hash: b.hash(),
            };
            batch.put(k_head(record, section, author), nh.to_bytes().to_vec());
        }
    }
}

/// The rule every bundle's change follows: its actor is the bundle author's device key and its
/// sequence number is the bundle's.
pub(super) fn check_change_head(
    head: &crate::bundle::ChangeHead,
    author: &PeerKey,
    seq: u64,
) -> std::result::Result<(), String> {
    if head.actor != author.0 {
        return Err("the change's actor is not the bundle author's own".into());
    }
    if head.seq != seq {
        return Err("the change's sequence number is not the bundle's".into());
    }
    Ok(())
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// The payload of `bundle` decrypted, after the checks every author's bundle must pass: it
    /// is one uncompressed automerge change (nothing is inflated), whose actor is the bundle
    /// author's device key and whose sequence number is the bundle's. `Ok(None)` when this
    /// node holds no key for the bundle's epoch.
    fn opened_change(&self, bundle: &Bundle) -> std::result::Result<Option<OpenedChange>, String> {
        let h = bundle.header();
        let Some(key) = self.keys.get(&h.section).and_then(|m| m.get(&h.epoch)) else {
            return Ok(None);
        };
        let payload = zeroize::Zeroizing::new(bundle.open(key).map_err(|e| e.to_string())?);
        let head = crate::bundle::read_change_head(&payload).map_err(|e| e.to_string())?;
        check_change_head(&head, &h.author, h.seq)?;
        Ok(Some((payload, head)))
    }

    /// Checks a bundle by one of the patient's devices before it is stored: the rules every
    /// author's bundles follow (see the module docs), when this node can read it. Its change
    /// is not applied here; a device's bundles are otherwise trusted as the device's.
    pub fn check_device_bundle(&mut self, bundle: &Bundle) -> std::result::Result<(), String> {
        if let Some((payload, _)) = self.opened_change(bundle)? {
            self.accepted.insert(crate::bundle::change_hash(&payload));
        }
        Ok(())
    }

    /// Checks a bundle from an `append` holder before it is stored: it must decrypt and hold
    /// exactly one uncompressed automerge change by the bundle author's own actor, numbered
    /// as the bundle and continuing the author's log, depending only on changes this node
    /// holds, whose every operation writes a new `e/<id>` key at the root with an entry version
    /// of the section's class authored by the bundle's author (never a patient's dispute or
    /// its withdrawal); any version it supersedes must be the author's own; and the change
    /// must apply to the section.
    pub fn check_append_only(&mut self, bundle: &Bundle) -> std::result::Result<(), String> {
        let h = bundle.header();
        let class = self
            .directory
            .get(&h.section)
            .map(|n| n.class)
            .ok_or("a bundle for a section this node cannot name")?;
        let (payload, head) = self
            .opened_change(bundle)?
            .ok_or("no key for the bundle's section")?;
        self.ensure_loaded(&h.section).map_err(|e| e.to_string())?;
        let sd = self
            .loaded
            .get_mut(&h.section)
            .ok_or("section not loaded")?;
        let held = sd.vv.get(&h.author).map_or(0, |x| x.seq);
        if h.seq != held + 1 {
            return Err("the bundle does not continue its author's log in this section".into());
        }
        for dep in &head.deps {
            let hash = automerge::ChangeHash(*dep);
            if !self.accepted.contains(dep) && sd.doc.get_change_meta_by_hash(&hash).is_none() {
                return Err(WAITS_FOR_DEPS.into());
            }
        }
        let change = automerge::Change::from_bytes(payload.to_vec())
            .map_err(|_| "payload is not one automerge change".to_string())?;
        // Uncompressed, each operation takes at least a byte: an expansion past that is a
        // run-length trick, refused before anything is expanded.
        if change.len() > payload.len() {
            return Err("the change holds more operations than its size allows".into());
        }
        let expanded = serde_json::to_value(change.decode())
            .map_err(|_| "change cannot be inspected".to_string())?;
        let ops = expanded
            .get("ops")
            .and_then(|o| o.as_array())
            .ok_or("change has no operations")?;
        let doc = &sd.doc;
        for op in ops {
            let on_root = op.get("obj").and_then(|o| o.as_str()) == Some("_root");
            let is_set = op.get("action").and_then(|a| a.as_str()) == Some("set");
            let fresh = op
                .get("pred")
                .and_then(|p| p.as_array())
                .is_some_and(Vec::is_empty);
            let key = op.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let value = op.get("value").and_then(|v| v.as_str());
            if is_dispute_key(key) {
                return Err("only the patient's devices write disputes".into());
            }
            if !(on_root && is_set && fresh && key.starts_with("e/")) {
                return Err("an append holder may only add entries".into());
            }
            if doc.get(ROOT, key).ok().flatten().is_some() {
                return Err("an append holder may not overwrite an entry".into());
            }
            let v: EntryVersion = value
                .and_then(|v| serde_json::from_str(v).ok())
                .ok_or("an entry that is not a valid entry version")?;
            if key != entry_key(&v.id) || v.provenance.author != h.author {
                return Err("an entry not authored by the bundle's author".into());
            }
            if v.class != class {
                return Err("an entry of another class than its section's".into());
            }
            if let Some(old) = v.supersedes {
                let old_author = doc
                    .get(ROOT, entry_key(&old))
                    .ok()
                    .flatten()
                    .and_then(|(val, _)| val.into_string().ok())
                    .and_then(|s| serde_json::from_str::<EntryVersion>(&s).ok())
                    .map(|o| o.provenance.author);
                if old_author != Some(h.author) {
                    return Err("an append holder may only correct their own entries".into());
                }
            }
            EntryBody::from_json(v.class, &v.body).map_err(|e| e.to_string())?;
        }
        // Accepted only if it applies: the next bundle of the same batch is checked against
        // the document with this one in it (an entry and its correction can travel together).
        if sd.doc.apply_changes(std::iter::once(change)).is_err() {
            // The document may be half changed: read it again from the store when next used.
            self.loaded.remove(&h.section);
            return Err("the change does not apply to the section".into());
        }
        sd.vv.insert(
            h.author,
            LogHead {
                seq: h.seq,
                hash: bundle.hash(),
            },
        );
        self.accepted.insert(crate::bundle::change_hash(&payload));
        Ok(())
    }
}

#[cfg(test)]
mod change_shape {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    /// The expanded-change JSON shape `check_append_only` relies on.
    #[test]
    fn expanded_change_json_shape() {
        let mut d = AutoCommit::new();
        d.put(ROOT, "e/x", "v").unwrap();
        d.commit();
        let c = d.get_last_local_change().unwrap();
        let v = serde_json::to_value(c.decode()).unwrap();
        let op = &v["ops"][0];
        assert_eq!(op["obj"], "_root", "{v}");
        assert_eq!(op["action"], "set", "{v}");
        assert_eq!(op["key"], "e/x", "{v}");
        assert_eq!(op["value"], "v", "{v}");
        assert!(op["pred"].as_array().unwrap().is_empty(), "{v}");
        d.put(ROOT, "e/x", "w").unwrap();
        d.commit();
        let c = d.get_last_local_change().unwrap();
        let v = serde_json::to_value(c.decode()).unwrap();
        assert!(!v["ops"][0]["pred"].as_array().unwrap().is_empty(), "{v}");
    }
}
