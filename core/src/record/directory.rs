//! The section directory: each section's name, sealed under the section's own key in the auth
//! document, and the creation of sections.

use super::keyring::put_wrap;
use super::section_doc::SectionDoc;
use super::{OpenRecord, RecordError, Result, json_string, section_aad};
use crate::crypto::{self};
use crate::ids::{RecordId, SectionId};
use crate::section::{Label, SectionName};
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A directory item: a section's name, sealed under the section's key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DirectoryItem {
    name_sealed: String,
    created: Timestamp,
}

/// A section listed in the directory.
#[derive(Clone, Debug, Serialize)]
pub struct SectionInfo {
    /// Its readable name.
    pub name: SectionName,
    /// Its opaque id(s): two devices that created the same section offline each made one.
    pub ids: Vec<SectionId>,
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// Reads the section directory from the auth document: the names of the sections whose
    /// keys this node holds (the sealed names from [`OpenRecord::auth_facts`] when the
    /// document can be remembered, else read from it alone: an open does not work out the
    /// other facts of a document that would be read afresh anyway).
    pub(super) fn load_directory(&mut self) -> Result<()> {
        self.ensure_loaded(&SectionId::AUTH)?;
        let whole = self
            .loaded
            .get(&SectionId::AUTH)
            .is_some_and(|a| a.unapplied.is_empty());
        let (facts, read);
        let names: &[(SectionId, Vec<u8>)] = if whole {
            facts = self.auth_facts();
            &facts.sealed_names
        } else {
            read = self.read_sealed_names();
            &read
        };
        let mut dir = BTreeMap::new();
        let memo = &self.vault.memo.names;
        for (sid, sealed) in names {
            let Some(keys) = self.keys.get(sid) else {
                continue;
            };
            if let Some((epoch, name)) = memo.get(&self.id, sid, sealed)
                && keys.contains_key(&epoch)
            {
                dir.insert(*sid, name);
                continue;
            }
            let aad = name_aad(&self.id, sid);
            for (epoch, key) in keys {
                if let Ok(name) = crypto::open(key, &aad, sealed)
                    && let Ok(name) = std::str::from_utf8(&name)
                    && let Ok(name) = name.parse::<SectionName>()
                {
                    memo.put(&self.id, sid, sealed, *epoch, name);
                    dir.insert(*sid, name);
                    break;
                }
            }
        }
        self.directory = dir;
        Ok(())
    }

    /// Each section's sealed name, as the auth document's directory items hold them (items
    /// that do not parse are left out).
    pub(super) fn read_sealed_names(&self) -> Vec<(SectionId, Vec<u8>)> {
        self.auth_items("section/")
            .into_iter()
            .filter_map(|(k, v)| {
                let sid = k.trim_start_matches("section/").parse::<SectionId>().ok()?;
                let item = serde_json::from_str::<DirectoryItem>(&v).ok()?;
                let sealed = data_encoding::BASE64
                    .decode(item.name_sealed.as_bytes())
                    .ok()?;
                Some((sid, sealed))
            })
            .collect()
    }

    /// The sections this node can read, by name.
    pub fn sections(&self) -> Vec<SectionInfo> {
        let mut by_name: BTreeMap<SectionName, Vec<SectionId>> = BTreeMap::new();
        for (sid, name) in &self.directory {
            by_name.entry(*name).or_default().push(*sid);
        }
        by_name
            .into_iter()
            .map(|(name, ids)| SectionInfo { name, ids })
            .collect()
    }

    /// The section that writes to `name` go to: the lowest of its ids, if it has any.
    pub(super) fn write_id_of(&self, name: &SectionName) -> Option<SectionId> {
        self.ids_of(name).into_iter().min()
    }

    pub(super) fn ids_of(&self, name: &SectionName) -> Vec<SectionId> {
        self.directory
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The readable sections by id.
    pub fn directory(&self) -> &BTreeMap<SectionId, SectionName> {
        &self.directory
    }

    /// Creates a section (owner only): a fresh key wrapped to this device and the recovery
    /// key, and a directory item in the auth document.
    pub(super) fn create_section(
        &mut self,
        name: &SectionName,
        now: Timestamp,
        rng: &mut impl CryptoRng,
        batch: &mut Batch,
    ) -> Result<SectionId> {
        let root =
            self.identity
                .root_key()
                .filter(|_| self.owner)
                .ok_or(RecordError::NotPermitted(
                    "only the patient can create sections in their record",
                ))?;
        let sid = SectionId::generate(rng);
        let (key, wraps) = self.new_section_key(root, &sid, rng)?;
        for w in &wraps {
            put_wrap(batch, w)?;
        }
        let sealed = crypto::seal(
            &key,
            &name_aad(&self.id, &sid),
            name.to_string().as_bytes(),
            rng,
        );
        let item = DirectoryItem {
            name_sealed: data_encoding::BASE64.encode(&sealed),
            created: now,
        };
        self.keys.insert(sid, BTreeMap::from([(0, key)]));
        self.loaded.insert(sid, SectionDoc::empty(self.identity));
        self.append_items(
            SectionId::AUTH,
            vec![(format!("section/{sid}"), json_string(&item)?)],
            now,
            rng,
            batch,
        )?;
        self.directory.insert(sid, *name);
        Ok(sid)
    }

    /// Creates, empty, the sections that `scopes` let their holder add to and that the record
    /// does not have yet (patient's root device only), so that a grant of `append` can be used
    /// at once: a professional cannot create a section. A scope for every label of a class
    /// creates that class's `general` section. Returns the sections created.
    pub fn create_sections_for(
        &mut self,
        scopes: &[crate::grant::Scope],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<SectionName>> {
        let mut wanted: Vec<SectionName> = scopes
            .iter()
            .filter(|s| s.ability >= crate::grant::Ability::Append)
            .map(|s| SectionName::new(s.class, s.label.unwrap_or(Label::General)))
            .filter(|n| self.ids_of(n).is_empty())
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(wanted);
        }
        self.mutate(|rec, batch| {
            for name in &wanted {
                rec.create_section(name, now, rng, batch)?;
            }
            Ok(())
        })?;
        Ok(wanted)
    }
}

/// The associated data a section's sealed name is bound by.
fn name_aad(record: &RecordId, sid: &SectionId) -> Vec<u8> {
    section_aad(b"hearth/section-name/v1", record, sid)
}
