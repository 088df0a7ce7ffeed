//! Section documents: loading one from its snapshot and bundles (checking every bundle). Writing
//! a change into one as a new bundle: `append.rs`.

use super::layout::{author_in, k_bundle, k_cache, k_head_prefix, k_shared};
use super::replica::check_change_head;
use super::snapshot::{SNAPSHOT_REFRESH_ON_READ, SharedSnapshot};
use super::{OpenRecord, RecordError, Result, new_doc};
use crate::bundle::Bundle;
use crate::crypto::SymmetricKey;
use crate::ids::{PeerKey, SectionId};
use crate::keys::Identity;
use crate::log::{self, LogHead, VersionVector};
use crate::store::Store;
use automerge::{AutoCommit, ReadDoc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Payloads of at least this many bytes in all are decrypted on all cores when a section loads.
const PARALLEL_DECRYPT_BYTES: usize = 1 << 20;

/// What a section document holds in memory.
pub(super) struct SectionDoc {
    pub(super) doc: AutoCommit,
    pub(super) vv: VersionVector,
    pub(super) since_snapshot: u32,
    /// Authors whose bundles could not be applied when the section was loaded.
    pub(super) unapplied: Vec<Unapplied>,
}

impl SectionDoc {
    /// A new section's document, empty, written as `identity`'s device.
    pub(super) fn empty(identity: &Identity) -> SectionDoc {
        SectionDoc {
            doc: new_doc(identity),
            vv: VersionVector::new(),
            since_snapshot: 0,
            unapplied: Vec::new(),
        }
    }
}

/// Bundles of one author that a section was loaded without, because they break the rules
/// every bundle follows or do not apply (see the module docs). The section is readable
/// without them; they stay stored, as evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unapplied {
    /// The section (its name, or its opaque id if the name is unreadable).
    pub section: String,
    /// Whose bundles.
    pub author: PeerKey,
    /// The first sequence number left out; every later one of the author's is left out too.
    pub from_seq: u64,
    /// How many bundles were left out.
    pub count: u64,
    /// Why the first one was (no content).
    pub reason: String,
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// Loads a section document from the store if it is not loaded yet.
    pub(super) fn ensure_loaded(&mut self, sid: &SectionId) -> Result<()> {
        if self.loaded.contains_key(sid) {
            return Ok(());
        }
        let sd = self.load_section(sid)?;
        self.loaded.insert(*sid, sd);
        Ok(())
    }

    /// The document a section loads from, the logs it covers, and how many bundles it holds
    /// beyond the section's last snapshot: the document this vault kept from its last load of
    /// the section ([`DocMemo`](super::memo::DocMemo)) when every log still ends at or beyond
    /// it, else the local snapshot when it is intact and consistent with the logs, else the
    /// shared snapshot this node may have started the section from, else an empty document.
    /// The last item says whether the start is the kept document (`from_memo` allows it).
    fn start_doc(
        &self,
        sid: &SectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
        heads: &VersionVector,
        from_memo: bool,
    ) -> Result<(AutoCommit, VersionVector, u32, bool)> {
        if from_memo
            && let Some(kept) = self
                .vault
                .memo
                .docs
                .take(&self.id, sid, &self.identity.peer())
            && kept.have.iter().all(|(a, h)| {
                heads
                    .get(a)
                    .is_some_and(|x| x.seq > h.seq || (x.seq == h.seq && x.hash == h.hash))
            })
        {
            return Ok((kept.doc, kept.have, kept.since_snapshot, true));
        }
        let store = &self.vault.store;
        let shared = || -> Result<Option<Vec<u8>>> {
            Ok(store
                .get(&k_shared(&self.id, sid))?
                .and_then(|b| SharedSnapshot::decode(&b))
                .map(|s| s.blob))
        };
        for which in 0..2 {
            let blob = if which == 0 {
                store.get(&k_cache(&self.id, sid))?
            } else {
                shared()?
            };
            let Some(blob) = blob else { continue };
            if let Some((mut d, vv)) = self.open_snapshot(sid, keys, &blob)
                && vv
                    .iter()
                    .all(|(a, h)| heads.get(a).is_some_and(|x| x.seq >= h.seq))
            {
                d.set_actor(automerge::ActorId::from(self.identity.peer().0));
                return Ok((d, vv, 0, false));
            }
        }
        Ok((new_doc(self.identity), VersionVector::new(), 0, false))
    }

    /// Loads a section document from the store, in these steps:
    ///
    /// 1. [`log_heads`](Self::log_heads): the section's log heads, from the index;
    /// 2. [`start_doc`](Self::start_doc): the snapshot to start from (or an empty document);
    /// 3. [`readable_bundles`](Self::readable_bundles): each log's bundles after the start,
    ///    chain- and signature-checked, up to the first under a key epoch this node lacks;
    /// 4. [`decrypt`](Self::decrypt): all their payloads into one buffer;
    /// 5. [`misnumbered`]: the authors whose changes are not numbered as their bundles;
    /// 6. [`apply`](Self::apply): the payloads applied in one pass, leaving out any author
    ///    whose change does not apply;
    /// 7. [`left_out`](Self::left_out): what was left out, reported as [`Unapplied`];
    /// 8. [`refresh_snapshot`](Self::refresh_snapshot) when many bundles were replayed.
    ///
    /// A document the vault kept from an earlier open of the record is taken as the start (see
    /// [`start_doc`]); if a load from it fails, the load runs again from the store alone. The
    /// document goes back to the vault when this record is dropped.
    ///
    /// [`start_doc`]: Self::start_doc
    fn load_section(&self, sid: &SectionId) -> Result<SectionDoc> {
        let mut from_memo = false;
        match self.load_section_once(sid, true, &mut from_memo) {
            Err(_) if from_memo => self.load_section_once(sid, false, &mut from_memo),
            done => done,
        }
    }

    /// One attempt of [`load_section`](Self::load_section).
    /// `memo`: whether a kept document may be the start; `from_memo` is set when it was.
    fn load_section_once(
        &self,
        sid: &SectionId,
        memo: bool,
        from_memo: &mut bool,
    ) -> Result<SectionDoc> {
        let keys = self
            .keys
            .get(sid)
            .ok_or_else(|| RecordError::NoKey(self.section_label(sid)))?;
        let heads = self.log_heads(sid)?;
        let (doc, mut have, before, kept) = self.start_doc(sid, keys, &heads, memo)?;
        *from_memo = kept;
        let start_have = have.clone();
        let readable = self.readable_bundles(sid, keys, &heads, &mut have)?;
        let replayed = u32::try_from(readable.len()).unwrap_or(u32::MAX);
        let mut applied = before.saturating_add(replayed);
        let payloads = self.decrypt(sid, readable)?;
        let mut skip = misnumbered(&payloads);
        let mut doc = self.apply(sid, keys, &heads, doc, kept, &payloads, &mut skip)?;
        let unapplied = self.left_out(sid, &skip, &payloads.placed, &start_have, &mut have);
        // A read that replayed many bundles refreshes the local snapshot, so that the next open
        // does not replay them again. Bundles a kept document already held were not replayed:
        // the next open starts from it too, and a snapshot due for them is an add's or the
        // snapshot job's to write (a read of a large section would otherwise save it in the
        // reader's time: 270 ms at 100,000 notes).
        if replayed >= SNAPSHOT_REFRESH_ON_READ
            && unapplied.is_empty()
            && doc.get_missing_deps(&[]).is_empty()
            && self.refresh_snapshot(sid, keys, &mut doc, &have)
        {
            applied = 0;
        }
        Ok(SectionDoc {
            doc,
            vv: have,
            since_snapshot: applied,
            unapplied,
        })
    }

    /// The section's log heads, from the index; a malformed one makes the section corrupt.
    fn log_heads(&self, sid: &SectionId) -> Result<VersionVector> {
        let mut heads = VersionVector::new();
        for (k, v) in self
            .vault
            .store
            .scan_prefix(&k_head_prefix(&self.id, sid))?
        {
            let author = author_in(&k).ok_or_else(|| self.corrupt(sid, "bad log key"))?;
            let head = LogHead::from_bytes(&v).ok_or_else(|| self.corrupt(sid, "bad log head"))?;
            heads.insert(author, head);
        }
        Ok(heads)
    }

    /// Every log's bundles after `have` (where the start document left it) up to its head,
    /// each checked to be stored under its own key and to extend the log's hash chain, and the
    /// newest of each log signature-checked; `have` is moved on to what can be read. All of
    /// them are decrypted and applied together afterwards: automerge applies one
    /// concatenation of change chunks much faster than many small loads.
    fn readable_bundles<'k>(
        &self,
        sid: &SectionId,
        keys: &'k BTreeMap<u32, SymmetricKey>,
        heads: &VersionVector,
        have: &mut VersionVector,
    ) -> Result<Vec<Readable<'k>>> {
        let mut readable = Vec::new();
        for (author, head) in heads {
            self.read_log(sid, keys, author, head, have, &mut readable)?;
        }
        Ok(readable)
    }

    /// [`readable_bundles`](Self::readable_bundles) for one author's log.
    fn read_log<'k>(
        &self,
        sid: &SectionId,
        keys: &'k BTreeMap<u32, SymmetricKey>,
        author: &PeerKey,
        head: &LogHead,
        have: &mut VersionVector,
        readable: &mut Vec<Readable<'k>>,
    ) -> Result<()> {
        let from = have.get(author).map_or(1, |h| h.seq + 1);
        if from > head.seq {
            return Ok(());
        }
        let start = k_bundle(&self.id, sid, author, from);
        let end = k_bundle(&self.id, sid, author, head.seq.saturating_add(1));
        let mut prev = have.get(author).copied();
        let mut newest = None;
        // A bundle under a key epoch this node does not hold (not yet, or never: after a
        // revocation) ends what it can read of this log.
        let mut locked = false;
        for (expect, (_, bytes)) in (from..).zip(self.vault.store.scan(&start, &end)?) {
            let b = Bundle::decode_owned(bytes).map_err(|e| self.corrupt(sid, e))?;
            let h = b.header();
            if h.record != self.id || h.section != *sid || h.author != *author || h.seq != expect {
                return Err(self.corrupt(sid, "bundle stored under the wrong key"));
            }
            // The hash links tie every bundle to the newest one, whose signature is checked
            // below: one signature check per log covers the whole suffix.
            log::check_append(prev.as_ref(), None, h, b.hash())
                .map_err(|e| self.corrupt(sid, e))?;
            let Some(key) = keys.get(&h.epoch) else {
                locked = true;
                break;
            };
            prev = Some(LogHead {
                seq: h.seq,
                hash: b.hash(),
            });
            readable.push((b, key));
            newest = Some(readable.len() - 1);
        }
        let newest = newest.and_then(|i| readable.get(i)).map(|(b, _)| b);
        match (newest, prev) {
            (Some(b), Some(p)) if p.seq == head.seq && p.hash == head.hash => {
                b.verify().map_err(|e| self.corrupt(sid, e))?;
            }
            // Readable up to a bundle under an unknown key: the last one read is signed.
            (Some(b), Some(_)) if locked => {
                b.verify().map_err(|e| self.corrupt(sid, e))?;
            }
            (None, _) if locked => {}
            _ => {
                return Err(self.corrupt(sid, "log is missing bundles or its head does not match"));
            }
        }
        match prev {
            Some(p) if locked => {
                have.insert(*author, p);
            }
            Some(_) => {
                have.insert(*author, *head);
            }
            None => {}
        }
        Ok(())
    }

    /// Decrypts every readable bundle's payload into one buffer, and says where each lies.
    /// Room for all of them is made first (a growing buffer would leave plaintext in freed
    /// memory), then each payload decrypted into its own part of it, on all cores when there
    /// is much to decrypt.
    fn decrypt(&self, sid: &SectionId, readable: Vec<Readable<'_>>) -> Result<Payloads> {
        let total: usize = readable.iter().map(|(b, _)| b.payload_len()).sum();
        let mut payloads = zeroize::Zeroizing::new(vec![0u8; total]);
        let mut parts = Vec::with_capacity(readable.len());
        let mut placed: Vec<Placed> = Vec::with_capacity(readable.len());
        let mut rest: &mut [u8] = &mut payloads;
        let mut at = 0;
        for (b, key) in &readable {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(b.payload_len());
            parts.push((b, *key, part));
            rest = tail;
            let h = b.header();
            let head = LogHead {
                seq: h.seq,
                hash: b.hash(),
            };
            placed.push((h.author, head, at..at + b.payload_len()));
            at += b.payload_len();
        }
        let threads = if total >= PARALLEL_DECRYPT_BYTES {
            crate::par::cores().min(parts.len())
        } else {
            1
        };
        let opened =
            crate::par::map_vec_on(threads, parts, |_, (b, key, part)| b.open_to(key, part));
        for outcome in opened {
            outcome.map_err(|e| self.corrupt(sid, e))?;
        }
        drop(readable);
        Ok(Payloads {
            bytes: payloads,
            placed,
        })
    }

    /// Applies the payloads to `doc` in one pass, without the authors `skip` leaves out; if
    /// that fails, finds the first bundle that does not apply, leaves its author out from
    /// there, and starts again from the start document (at most once per author). A start
    /// the vault kept (`kept`) was moved out of it, so there is no second copy to start again
    /// from: that failure is returned, and the load runs again from the store alone.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        sid: &SectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
        heads: &VersionVector,
        doc: AutoCommit,
        kept: bool,
        all: &Payloads,
        skip: &mut Skip,
    ) -> Result<AutoCommit> {
        let (payloads, placed) = (&all.bytes[..], &all.placed[..]);
        let mut first = Some(doc);
        loop {
            let mut d = match first.take() {
                Some(d) => d,
                None if kept => {
                    return Err(self.corrupt(sid, "the kept document did not take the bundles"));
                }
                None => self.start_doc(sid, keys, heads, false)?.0,
            };
            let loaded = if skip.is_empty() {
                payloads.is_empty() || d.load_incremental(payloads).is_ok()
            } else {
                let mut kept = zeroize::Zeroizing::new(Vec::with_capacity(payloads.len()));
                for (a, head, range) in placed {
                    if !is_skipped(skip, a, head.seq) {
                        kept.extend_from_slice(&payloads[range.clone()]);
                    }
                }
                kept.is_empty() || d.load_incremental(&kept).is_ok()
            };
            // automerge skips a chunk it cannot read, and what follows it, without an error:
            // unless changes wait for missing ones, each log's newest change must be in.
            if loaded
                && (!d.get_missing_deps(&[]).is_empty()
                    || newest_of(placed, skip).iter().all(|range| {
                        let hash = crate::bundle::change_hash(&payloads[range.clone()]);
                        d.get_change_meta_by_hash(&automerge::ChangeHash(hash))
                            .is_some()
                    }))
            {
                return Ok(d);
            }
            if kept {
                return Err(self.corrupt(sid, "the kept document did not take the bundles"));
            }
            let mut probe = self.start_doc(sid, keys, heads, false)?.0;
            let offender = placed.iter().find(|(a, head, range)| {
                if is_skipped(skip, a, head.seq) {
                    return false;
                }
                match automerge::Change::from_bytes(payloads[range.clone()].to_vec()) {
                    Ok(c) => probe.apply_changes(std::iter::once(c)).is_err(),
                    Err(_) => true,
                }
            });
            let Some((a, head, _)) = offender else {
                return Err(self.corrupt(sid, "payload is not valid automerge data"));
            };
            skip.insert(
                *a,
                (head.seq, "its change does not apply to the section".into()),
            );
        }
    }

    /// The authors `skip` left out, as reported, with `have` set back for each to the bundle
    /// before the first left out (or to where the start document left it).
    fn left_out(
        &self,
        sid: &SectionId,
        skip: &Skip,
        placed: &[Placed],
        start_have: &VersionVector,
        have: &mut VersionVector,
    ) -> Vec<Unapplied> {
        let mut unapplied = Vec::new();
        for (author, (from, reason)) in skip {
            let count = placed
                .iter()
                .filter(|(a, h, _)| a == author && h.seq >= *from)
                .count() as u64;
            // The author's log is held (applied) up to the bundle before the first left out.
            match placed
                .iter()
                .rfind(|(a, h, _)| a == author && h.seq < *from)
            {
                Some((_, h, _)) => {
                    have.insert(*author, *h);
                }
                None => match start_have.get(author) {
                    Some(h) => {
                        have.insert(*author, *h);
                    }
                    None => {
                        have.remove(author);
                    }
                },
            }
            unapplied.push(Unapplied {
                section: self.section_label(sid),
                author: *author,
                from_seq: *from,
                count,
                reason: reason.clone(),
            });
        }
        unapplied
    }

    /// Bundles left out of the sections read so far (the auth document is always read), each
    /// with its author and why: `N bundles by X could not be applied`.
    pub fn unapplied(&self) -> Vec<Unapplied> {
        let mut out: Vec<Unapplied> = self
            .loaded
            .values()
            .flat_map(|sd| sd.unapplied.iter().cloned())
            .collect();
        out.sort_by(|a, b| (&a.section, a.author).cmp(&(&b.section, b.author)));
        out
    }

    /// The version vector of each readable section (for status and sync).
    pub fn version_vectors(&mut self) -> Result<BTreeMap<SectionId, VersionVector>> {
        let sids: Vec<SectionId> = std::iter::once(SectionId::AUTH)
            .chain(self.directory.keys().copied())
            .collect();
        let mut out = BTreeMap::new();
        for sid in sids {
            self.ensure_loaded(&sid)?;
            if let Some(sd) = self.loaded.get(&sid) {
                out.insert(sid, sd.vv.clone());
            }
        }
        Ok(out)
    }
}

/// Where the newest payload of each author's log lies among `placed`, leaving out the bundles
/// `skip` leaves out.
fn newest_of(placed: &[Placed], skip: &Skip) -> Vec<std::ops::Range<usize>> {
    let mut newest: BTreeMap<PeerKey, std::ops::Range<usize>> = BTreeMap::new();
    for (a, head, range) in placed {
        if skip.get(a).is_none_or(|(from, _)| head.seq < *from) {
            newest.insert(*a, range.clone());
        }
    }
    newest.into_values().collect()
}

/// A bundle checked and ready to decrypt, and the key of its epoch.
type Readable<'k> = (Bundle, &'k SymmetricKey);

/// A decrypted bundle's author, its place in the author's log, and where its payload lies in
/// the buffer of all payloads.
type Placed = (PeerKey, LogHead, std::ops::Range<usize>);

/// Every readable bundle's payload, decrypted into one buffer, and where each lies in it (in
/// the order the bundles were read: by author, then sequence number).
struct Payloads {
    bytes: zeroize::Zeroizing<Vec<u8>>,
    placed: Vec<Placed>,
}

/// The authors left out of a section: from which sequence number, and why.
type Skip = BTreeMap<PeerKey, (u64, String)>;

/// Whether `skip` leaves out `a`'s bundle `seq`.
fn is_skipped(skip: &Skip, a: &PeerKey, seq: u64) -> bool {
    skip.get(a).is_some_and(|(from, _)| seq >= *from)
}

/// The authors to leave out because a payload is not one uncompressed change by its author,
/// numbered as its bundle (checked before automerge reads it), each from that bundle on.
fn misnumbered(payloads: &Payloads) -> Skip {
    let mut skip = Skip::new();
    for (author, head, range) in &payloads.placed {
        if skip.contains_key(author) {
            continue;
        }
        let ok = crate::bundle::read_change_head(&payloads.bytes[range.clone()])
            .map_err(|e| e.to_string())
            .and_then(|c| check_change_head(&c, author, head.seq));
        if let Err(why) = ok {
            skip.insert(*author, (head.seq, why));
        }
    }
    skip
}
