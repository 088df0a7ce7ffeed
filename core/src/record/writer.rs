//! Many checked entries written one at a time and committed together: [`EntryWriter`].

use super::entries::{ADD_ENTRIES_BUNDLE_BYTES, SectionVersions, entry_key};
use super::{CheckedEntry, OpenRecord, RecordError, Result, json_string};
use crate::entry::{EntryStatus, EntryVersion, MAX_REASON_LEN};
use crate::ids::{EntryId, SectionId};
use crate::section::SectionName;
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::HashSet;

/// Checked entries put into the record's section documents one at a time, as they come, and
/// committed to the store together by [`EntryWriter::finish`]: all of them, or none. After any
/// error (the writer then refuses to finish), or if the writer is dropped unfinished, nothing
/// reaches the store and the record's documents are reloaded as they were.
///
/// An importer hands it each entry as soon as the entry is planned
/// ([`crate::fhir::plan_import_each`]), so writing overlaps checking the rest of the bundle. The
/// entries of one section share bundles of about 2 MiB of entry JSON, each one automerge change.
pub struct EntryWriter<'w, 'v, S: Store, R: CryptoRng> {
    rec: &'w mut OpenRecord<'v, S>,
    rng: &'w mut R,
    now: Timestamp,
    batch: Batch,
    /// Per section, in first-use order: the items not yet put, and their size.
    pending: Vec<(SectionId, Vec<Item>, usize)>,
    /// The new entries' ids, in the order given.
    ids: Vec<EntryId>,
    /// The entries that get a new version.
    changed: HashSet<EntryId>,
    /// The sections this node was found allowed to append to.
    may_append: HashSet<SectionName>,
    /// Whether an `add` failed (see [`EntryWriter::add`]).
    spoilt: bool,
    /// Ids drawn ahead ([`EntryWriter::expect`]), the next to hand out last.
    drawn: Vec<EntryId>,
    /// The new versions' provenance (the same for all) as JSON text, once written.
    provenance: Option<String>,
    finished: bool,
}

/// Why a writer refuses after a failed `add`.
const SPOILT: RecordError =
    RecordError::Invalid("an entry could not be added, so this write cannot be finished");

/// A reason for marking entries in error, trimmed, if it is acceptable.
pub(super) fn checked_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RecordError::Invalid("a reason is required"));
    }
    if reason.chars().count() > MAX_REASON_LEN {
        return Err(RecordError::Invalid("the reason is too long"));
    }
    Ok(reason)
}

/// An item of a section document: an entry version's key and JSON text.
type Item = (String, String);

/// The most ids [`EntryWriter::expect`] draws ahead (4 MiB of them; a bundle holds at most
/// 200,000 entries).
const MAX_EXPECTED: usize = 1 << 18;

impl<'v, S: Store> OpenRecord<'v, S> {
    /// A writer of checked entries into this record, all committed at once by
    /// [`EntryWriter::finish`] (see [`EntryWriter`]).
    pub fn entry_writer<'w, R: CryptoRng>(
        &'w mut self,
        now: Timestamp,
        rng: &'w mut R,
    ) -> EntryWriter<'w, 'v, S, R> {
        EntryWriter {
            rec: self,
            rng,
            now,
            batch: Batch::new(),
            pending: Vec::new(),
            ids: Vec::new(),
            changed: HashSet::new(),
            may_append: HashSet::new(),
            spoilt: false,
            drawn: Vec::new(),
            provenance: None,
            finished: false,
        }
    }
}

impl<'v, S: Store, R: CryptoRng> EntryWriter<'_, 'v, S, R> {
    /// The record written to (for checks before [`EntryWriter::finish`]).
    pub fn record(&self) -> &OpenRecord<'v, S> {
        self.rec
    }

    /// How many entries were added so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no entry was added yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Says that about `n` entries are coming: their ids are drawn now (all of this moment,
    /// see [`EntryId::generate_at`]) and handed out in the order of their keys, so that each
    /// section's document grows at its end (automerge inserts a key after the last far faster
    /// than between two: 10,000 puts took ≈ 70 ms instead of 100–127 ms in a scratch
    /// program). Entries beyond `n` get ids drawn one by one.
    pub fn expect(&mut self, n: usize) {
        let n = n.min(MAX_EXPECTED);
        let mut ids: Vec<(String, EntryId)> = (0..n)
            .map(|_| {
                let id = EntryId::generate_at(self.now, self.rng);
                (entry_key(&id), id)
            })
            .collect();
        // Smallest last, to be taken first.
        ids.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        self.drawn = ids.into_iter().map(|(_, id)| id).collect();
    }

    /// Adds one entry (creating its section if this node may), and returns its id. Checks this
    /// node's right to append to the section, once per section.
    ///
    /// After an error the writer is spoilt: [`EntryWriter::finish`] refuses, and dropping it
    /// forgets everything it was given (part of an entry, or of a change, may have reached the
    /// documents before the error).
    pub fn add(&mut self, item: CheckedEntry) -> Result<EntryId> {
        if self.spoilt {
            return Err(SPOILT);
        }
        let added = self.add_one(item);
        self.spoilt = added.is_err();
        added
    }

    fn add_one(&mut self, item: CheckedEntry) -> Result<EntryId> {
        if item.body.class() != item.section.class {
            return Err(RecordError::Invalid(
                "an entry body was checked for another section class",
            ));
        }
        self.check_may_append(&item.section)?;
        let rec = &mut *self.rec;
        let (sid, version) = match item.supersedes {
            Some(old) => rec.version_in_section(&item.section, &old)?,
            None => match rec.write_id_of(&item.section) {
                Some(s) => (s, 1),
                None => (
                    rec.create_section(&item.section, self.now, self.rng, &mut self.batch)?,
                    1,
                ),
            },
        };
        if let Some(old) = item.supersedes {
            self.changed.insert(old);
        }
        let provenance = rec.provenance(self.now, None);
        if self.provenance.is_none() {
            self.provenance = Some(json_string(&provenance)?);
        }
        let v = EntryVersion {
            id: match self.drawn.pop() {
                Some(id) => id,
                None => EntryId::generate_at(self.now, self.rng),
            },
            class: item.section.class,
            version,
            supersedes: item.supersedes,
            status: EntryStatus::Final,
            status_reason: None,
            body: serde_json::Value::Null,
            provenance,
        };
        let text = crate::entry::version_json_owned(
            &v,
            item.body,
            self.provenance.as_deref().unwrap_or_default(),
        )
        .map_err(|_| RecordError::Invalid("value cannot be encoded"))?;
        self.push(sid, (entry_key(&v.id), text))?;
        self.ids.push(v.id);
        Ok(v.id)
    }

    /// Marks `in_error` entries as entered in error with `reason` (as
    /// [`OpenRecord::mark_error`] would, with its checks), writes everything, and commits it in
    /// one write. Returns the new entries' ids and the marked entries' new version ids.
    pub fn finish(
        mut self,
        in_error: &[EntryId],
        reason: &str,
    ) -> Result<(Vec<EntryId>, Vec<EntryId>)> {
        if self.spoilt {
            return Err(SPOILT);
        }
        let marked = self.mark_errors(in_error, reason)?;
        for (sid, list, _) in std::mem::take(&mut self.pending) {
            self.put(sid, list)?;
        }
        let batch = std::mem::take(&mut self.batch);
        if !batch.ops().is_empty() {
            self.rec.commit_batch(batch)?;
        }
        self.finished = true;
        Ok((std::mem::take(&mut self.ids), marked))
    }

    fn check_may_append(&mut self, name: &SectionName) -> Result<()> {
        if !self.may_append.contains(name) {
            self.rec.check_may_append(name, self.now)?;
            self.may_append.insert(*name);
        }
        Ok(())
    }

    /// Each entry of `in_error` checked as `mark_error` checks it, and its new version added.
    fn mark_errors(&mut self, in_error: &[EntryId], reason: &str) -> Result<Vec<EntryId>> {
        if in_error.is_empty() {
            return Ok(Vec::new());
        }
        let reason = checked_reason(reason)?;
        // Every section's versions read once, and this node's right to append to each checked
        // once, not once per entry marked.
        let names: Vec<SectionName> = self.rec.sections().into_iter().map(|s| s.name).collect();
        let mut versions: Vec<SectionVersions> = Vec::new();
        for name in names {
            let all = self.rec.versions_in(&name)?;
            versions.push(SectionVersions::new(name, all));
        }
        let mut marked = Vec::with_capacity(in_error.len());
        for entry in in_error {
            if !self.changed.insert(*entry) {
                return Err(RecordError::Invalid(
                    "an entry is changed twice in one write",
                ));
            }
            let found = versions
                .iter()
                .find(|v| v.all.contains_key(entry))
                .ok_or(RecordError::NoEntry(*entry))?;
            self.check_may_append(&found.name)?;
            let reason = Some(reason.to_string());
            let (sid, v) = self.rec.version_from(
                entry,
                found,
                |old| Ok((old.body.clone(), EntryStatus::EnteredInError, reason)),
                self.now,
                self.rng,
            )?;
            self.push(sid, (entry_key(&v.id), json_string(&v)?))?;
            marked.push(v.id);
        }
        Ok(marked)
    }

    /// Queues an item for a section's document, putting the section's queue once it holds
    /// about [`ADD_ENTRIES_BUNDLE_BYTES`].
    fn push(&mut self, sid: SectionId, item: Item) -> Result<()> {
        let size = item.0.len() + item.1.len();
        let at = match self.pending.iter().position(|(s, _, _)| *s == sid) {
            Some(at) => at,
            None => {
                self.pending.push((sid, Vec::new(), 0));
                self.pending.len() - 1
            }
        };
        let (_, list, queued) = &mut self.pending[at];
        list.push(item);
        *queued += size;
        if *queued >= ADD_ENTRIES_BUNDLE_BYTES {
            let list = std::mem::take(list);
            *queued = 0;
            self.put(sid, list)?;
        }
        Ok(())
    }

    /// Puts items into a section's document as one change, in key order (automerge inserts a
    /// key after the last far faster than between two), and adds the bundle to the batch.
    fn put(&mut self, sid: SectionId, mut list: Vec<Item>) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.rec
            .append_items(sid, list, self.now, self.rng, &mut self.batch)
    }
}

impl<S: Store, R: CryptoRng> Drop for EntryWriter<'_, '_, S, R> {
    fn drop(&mut self) {
        if !self.finished {
            // Nothing reached the store; the documents are reloaded from it. Should even that
            // fail (the store unreadable), the record is left with no keys, and refuses to be
            // used further rather than use what was not committed.
            let _ = self.rec.roll_back();
        }
    }
}
