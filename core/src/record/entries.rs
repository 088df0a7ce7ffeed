//! Writing entries: new entries, new versions (corrections, marking in error) and batches.

use super::items::string_items;
use super::writer;
use super::{OpenRecord, RecordError, Result, json_string};
use crate::entry::{CheckedBody, EntryBody, EntryStatus, EntryVersion, Provenance};
use crate::ids::{EntryId, SectionId};
use crate::section::SectionName;
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use automerge::{ROOT, ReadDoc};
use rand_core::CryptoRng;
use std::collections::{BTreeMap, HashMap};

/// One entry to write with [`OpenRecord::add_entries`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// The section it goes in (created on first use).
    pub section: SectionName,
    /// Its body, validated against the section class's schema before anything is written.
    pub body: serde_json::Value,
    /// The version it replaces, if it is a new version of an entry in the same section.
    pub supersedes: Option<EntryId>,
}

/// One entry to write with [`OpenRecord::add_checked_entries`]: its body checked already.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEntry {
    /// The section it goes in (created on first use); its class must be the body's.
    pub section: SectionName,
    /// Its body, checked against the section class's schema.
    pub body: CheckedBody,
    /// The version it replaces, if it is a new version of an entry in the same section.
    pub supersedes: Option<EntryId>,
}

/// About how much entry JSON [`OpenRecord::add_entries`] puts in one bundle: a bundle is closed
/// once it holds this much, so it may hold one entry more (well under
/// [`crate::bundle::MAX_BUNDLE_LEN`] either way).
pub(super) const ADD_ENTRIES_BUNDLE_BYTES: usize = 2 << 20;

/// Every version in one section, and which version replaced which.
pub(super) struct SectionVersions {
    pub(super) name: SectionName,
    pub(super) all: BTreeMap<EntryId, EntryVersion>,
    /// Version → the version that replaced it.
    pub(super) superseded_by: HashMap<EntryId, EntryId>,
}

impl SectionVersions {
    pub(super) fn new(name: SectionName, all: BTreeMap<EntryId, EntryVersion>) -> Self {
        let superseded_by = all
            .values()
            .filter_map(|v| v.supersedes.map(|old| (old, v.id)))
            .collect();
        SectionVersions {
            name,
            all,
            superseded_by,
        }
    }
}

impl<'v, S: Store> OpenRecord<'v, S> {
    pub(super) fn provenance(&self, now: Timestamp, purpose: Option<String>) -> Provenance {
        Provenance {
            author: self.identity.peer(),
            author_name: self.identity.name.clone(),
            author_role: self.identity.role,
            recorded_at: now,
            purpose,
        }
    }

    pub(super) fn add_entry_to_batch(
        &mut self,
        name: &SectionName,
        body: serde_json::Value,
        purpose: Option<String>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<EntryId> {
        let sid = match self.write_id_of(name) {
            Some(s) => s,
            None => self.create_section(name, now, rng, batch)?,
        };
        let v = EntryVersion {
            id: EntryId::generate_at(now, rng),
            class: name.class,
            version: 1,
            supersedes: None,
            status: EntryStatus::Final,
            status_reason: None,
            body,
            provenance: self.provenance(now, purpose),
        };
        self.append_items(
            sid,
            vec![(entry_key(&v.id), json_string(&v)?)],
            now,
            rng,
            batch,
        )?;
        Ok(v.id)
    }

    /// Adds an entry to a section, creating the section if needed. The body is validated
    /// against the section class's schema first; nothing is written if it does not fit.
    pub fn add_entry(
        &mut self,
        name: &SectionName,
        body: &serde_json::Value,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let body = EntryBody::from_json(name.class, body)?.to_json();
        self.check_may_append(name, now)?;
        self.mutate(|rec, batch| rec.add_entry_to_batch(name, body, None, now, rng, batch))
    }

    /// Writes raw items into a section as this node, skipping the local permission checks:
    /// for tests that play a misbehaving peer, to check that the *receiving* side refuses.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn append_raw_for_tests(
        &mut self,
        name: &SectionName,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        let sid = self
            .write_id_of(name)
            .ok_or(RecordError::NoSection(*name))?;
        self.mutate(|rec, batch| rec.append_items(sid, items, now, rng, batch))
    }

    /// Seals `payload` (taken as is: any bytes) as this node's bundle `seq` (after `prev`) in
    /// section `name`, under its current key, without storing it: for tests that hand-build a
    /// misbehaving peer's bundles, to check that the *receiving* side refuses them.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn seal_raw_for_tests(
        &self,
        name: &SectionName,
        seq: u64,
        prev: Option<crate::ids::BundleHash>,
        payload: &[u8],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<crate::bundle::Bundle> {
        let sid = self
            .write_id_of(name)
            .ok_or(RecordError::NoSection(*name))?;
        let (epoch, key) = self.current_key(&sid)?;
        crate::bundle::Bundle::seal(
            self.id,
            sid,
            seq,
            prev,
            epoch,
            now,
            key,
            payload,
            self.identity.device_key(),
            rng,
        )
        .map_err(|_| RecordError::Invalid("too large for one bundle"))
    }

    /// On a record this node does not own, whether a grant it holds lets it add to `name` now.
    /// Writing without one would only produce bundles the patient's node refuses (and a log
    /// stuck behind them), so it is refused here first.
    pub(super) fn check_may_append(&self, name: &SectionName, now: Timestamp) -> Result<()> {
        if self.holds_root() {
            return Ok(());
        }
        if self.owner {
            return self.check_linked();
        }
        let revoked = self.revoked_grants();
        let access = crate::grant::Access::section(
            self.identity.peer(),
            *name,
            crate::grant::Ability::Append,
        );
        let allowed = self.vault.held_chains(&self.id)?.into_iter().any(|chain| {
            crate::grant::verify_chain(&chain, &access, now, &|g| revoked.contains(g)).is_ok()
        });
        if allowed {
            Ok(())
        } else {
            Err(RecordError::NotPermitted(
                "no grant you hold lets you add to that section of this record",
            ))
        }
    }

    /// Finds the section and versions holding `entry`.
    pub(super) fn find(
        &mut self,
        entry: &EntryId,
    ) -> Result<(SectionName, BTreeMap<EntryId, EntryVersion>)> {
        let names: Vec<SectionName> = self.sections().into_iter().map(|s| s.name).collect();
        for name in names {
            let all = self.versions_in(&name)?;
            if all.contains_key(entry) {
                return Ok((name, all));
            }
        }
        Err(RecordError::NoEntry(*entry))
    }

    /// The section holding `entry` (any version).
    pub fn section_of(&mut self, entry: &EntryId) -> Result<SectionName> {
        self.find(entry).map(|(name, _)| name)
    }

    fn new_version(
        &mut self,
        entry: &EntryId,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let (sid, v) = self.prepare_version(entry, make, now, rng)?;
        let item = (entry_key(&v.id), json_string(&v)?);
        self.mutate(|rec, batch| rec.append_items(sid, vec![item], now, rng, batch))?;
        Ok(v.id)
    }

    /// The version that would replace `entry` (made by `make` from the current one), and the
    /// section it goes in, after every check a new version must pass: `entry` is current and not
    /// in error, this node may change it, and may append to its section now.
    fn prepare_version(
        &mut self,
        entry: &EntryId,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SectionId, EntryVersion)> {
        let (name, all) = self.find(entry)?;
        self.check_may_append(&name, now)?;
        self.version_from(entry, &SectionVersions::new(name, all), make, now, rng)
    }

    /// [`OpenRecord::prepare_version`] with `entry`'s section read (and this node's right to
    /// append to it checked) by the caller.
    pub(super) fn version_from(
        &mut self,
        entry: &EntryId,
        found: &SectionVersions,
        make: impl FnOnce(&EntryVersion) -> Result<(serde_json::Value, EntryStatus, Option<String>)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(SectionId, EntryVersion)> {
        if let Some(by) = found.superseded_by.get(entry) {
            return Err(RecordError::Superseded {
                entry: *entry,
                by: *by,
            });
        }
        let old = found.all.get(entry).ok_or(RecordError::NoEntry(*entry))?;
        if old.status == EntryStatus::EnteredInError {
            return Err(RecordError::AlreadyInError(*entry));
        }
        if !self.owner && old.provenance.author != self.identity.peer() {
            return Err(RecordError::NotPermitted(
                "on someone else's record you may only change entries you wrote",
            ));
        }
        let (body, status, reason) = make(old)?;
        let v = EntryVersion {
            id: EntryId::generate_at(now, rng),
            class: old.class,
            version: old.version.saturating_add(1),
            supersedes: Some(*entry),
            status,
            status_reason: reason,
            body,
            provenance: self.provenance(now, None),
        };
        let sid = self
            .section_holding(&found.name, entry)
            .ok_or(RecordError::NoEntry(*entry))?;
        Ok((sid, v))
    }

    /// Which of the (loaded) sections named `name` holds version `entry`.
    pub(super) fn section_holding(&self, name: &SectionName, entry: &EntryId) -> Option<SectionId> {
        self.ids_of(name).into_iter().find(|sid| {
            self.loaded
                .get(sid)
                .is_some_and(|sd| sd.doc.get(ROOT, entry_key(entry)).ok().flatten().is_some())
        })
    }

    /// Corrects an entry: writes a new version with `body` that supersedes `entry`.
    pub fn correct(
        &mut self,
        entry: &EntryId,
        body: &serde_json::Value,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        self.new_version(
            entry,
            |old| {
                let body = EntryBody::from_json(old.class, body)?.to_json();
                Ok((body, EntryStatus::Final, None))
            },
            now,
            rng,
        )
    }

    /// Marks an entry as entered in error, with a reason; the entry stays in the history.
    pub fn mark_error(
        &mut self,
        entry: &EntryId,
        reason: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<EntryId> {
        let reason = writer::checked_reason(reason)?;
        self.new_version(
            entry,
            |old| {
                Ok((
                    old.body.clone(),
                    EntryStatus::EnteredInError,
                    Some(reason.to_string()),
                ))
            },
            now,
            rng,
        )
    }

    /// Adds many entries in **one atomic commit**: all of them, or (on any error) none. Every
    /// body is validated first. The entries of one section share a few bundles (one automerge
    /// change per bundle, about 2 MiB of entry JSON each) instead of one bundle per entry.
    /// Returns the new version ids, in the order given.
    pub fn add_entries(
        &mut self,
        items: &[NewEntry],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<EntryId>> {
        let mut checked = Vec::with_capacity(items.len());
        for item in items {
            checked.push(CheckedEntry {
                section: item.section,
                body: CheckedBody::new(item.section.class, &item.body)?,
                supersedes: item.supersedes,
            });
        }
        self.add_checked_entries(&checked, now, rng)
    }

    /// [`OpenRecord::add_entries`] for bodies already checked against their schema (a
    /// [`CheckedBody`] is only made by checking), so that nothing is checked twice: FHIR import
    /// checks every body while planning, before anything is written.
    pub fn add_checked_entries(
        &mut self,
        items: &[CheckedEntry],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<EntryId>> {
        self.add_checked_and_mark_errors(items, &[], "", now, rng)
            .map(|(ids, _)| ids)
    }

    /// [`OpenRecord::add_checked_entries`], and in the same commit marks `in_error` entries as
    /// entered in error with `reason` (as [`OpenRecord::mark_error`] would, with its checks):
    /// all of it is written, or nothing. Returns the new entries' ids and the new versions' ids.
    pub fn add_checked_and_mark_errors(
        &mut self,
        items: &[CheckedEntry],
        in_error: &[EntryId],
        reason: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(Vec<EntryId>, Vec<EntryId>)> {
        if items.iter().any(|i| i.body.class() != i.section.class) {
            return Err(RecordError::Invalid(
                "an entry body was checked for another section class",
            ));
        }
        if !in_error.is_empty() {
            writer::checked_reason(reason)?;
        }
        let mut writer = self.entry_writer(now, rng);
        writer.expect(items.len());
        for item in items {
            writer.add(item.clone())?;
        }
        writer.finish(in_error, reason)
    }

    /// The section id holding version `old` among the sections named `name`, and the version
    /// number a version replacing it gets.
    pub(super) fn version_in_section(
        &mut self,
        name: &SectionName,
        old: &EntryId,
    ) -> Result<(SectionId, u32)> {
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get(&sid) else {
                continue;
            };
            if let Some((_, json)) = string_items(&sd.doc, &entry_key(old)).into_iter().next() {
                let v: EntryVersion = serde_json::from_str(&json)
                    .map_err(|_| self.corrupt(&sid, "an entry is not valid JSON"))?;
                return Ok((sid, v.version.saturating_add(1)));
            }
        }
        Err(RecordError::NoEntry(*old))
    }
}

pub(super) fn entry_key(id: &EntryId) -> String {
    format!("e/{id}")
}
