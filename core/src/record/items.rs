//! The auth document's and the private ledger's raw items (key → JSON text), written once.

use super::keyring::put_wrap;
use super::memo::AuthFacts;
use super::section_doc::SectionDoc;
use super::{OpenRecord, RecordError, Result};
use crate::ids::SectionId;
use crate::store::Store;
use crate::time::Timestamp;
use automerge::{AutoCommit, ROOT, ReadDoc};
use rand_core::CryptoRng;
use std::collections::BTreeMap;
use std::sync::Arc;

impl<'v, S: Store> OpenRecord<'v, S> {
    /// What the auth document says about devices and recorded grants: from the vault's memo
    /// while the document is at the log heads it was read at, else read now (and remembered
    /// when every bundle of the document applied).
    pub(super) fn auth_facts(&self) -> Arc<AuthFacts> {
        let auth = self.loaded.get(&SectionId::AUTH);
        let whole = auth.filter(|a| a.unapplied.is_empty());
        if let Some(a) = whole
            && let Some(facts) = self.vault.memo.auth.get(&self.id, &a.vv)
        {
            return facts;
        }
        let facts = Arc::new(AuthFacts {
            device_certs: self.read_device_certs(),
            removed: self.read_removed_devices(),
            recorded_chains: self.read_recorded_chains(),
            sealed_names: self.read_sealed_names(),
        });
        if let Some(a) = whole {
            self.vault.memo.auth.put(&self.id, &a.vv, facts.clone());
        }
        facts
    }

    /// The auth document's items whose keys start with `prefix` (key, JSON text).
    pub fn auth_items(&self, prefix: &str) -> Vec<(String, String)> {
        let Some(auth) = self.loaded.get(&SectionId::AUTH) else {
            return Vec::new();
        };
        string_items(&auth.doc, prefix)
    }

    /// Writes items (key → JSON text) into the auth document as one signed change (owner
    /// only). Items are written once: an existing key is refused.
    pub fn put_auth_items(
        &mut self,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        self.check_ledger_writer()?;
        if let Some(auth) = self.loaded.get(&SectionId::AUTH)
            && items
                .iter()
                .any(|(k, _)| auth.doc.get(ROOT, k.as_str()).ok().flatten().is_some())
        {
            return Err(RecordError::NotPermitted("that ledger item already exists"));
        }
        self.mutate(|rec, batch| rec.append_items(SectionId::AUTH, items, now, rng, batch))
    }

    /// Writes items into the patient's private ledger (requests, decisions, trusted
    /// organisations): a section readable only by the patient's own devices and recovery key,
    /// created on first use. Items are written once: an existing key is refused.
    pub fn put_ledger_items(
        &mut self,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        self.check_ledger_writer()?;
        let existing = self.ledger_items("");
        if items
            .iter()
            .any(|(k, _)| existing.iter().any(|(e, _)| e == k))
        {
            return Err(RecordError::NotPermitted("that ledger item already exists"));
        }
        self.put_private_items(SectionId::LEDGER, items, now, rng)
    }

    /// Writes items into one of the patient's private sections (the ledger, the audit log),
    /// creating the section's key on first use on the device that holds the record root.
    pub(super) fn put_private_items(
        &mut self,
        sid: SectionId,
        items: Vec<(String, String)>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        let mut fresh = Vec::new();
        if !self.keys.contains_key(&sid) {
            let root = self.root_for(
                "the patient's private sections are started on the device that holds the \
                 record root key",
            )?;
            let (key, wraps) = self.new_section_key(root, &sid, rng)?;
            fresh = wraps;
            self.keys.insert(sid, BTreeMap::from([(0, key)]));
            self.loaded.insert(sid, SectionDoc::empty(self.identity));
        }
        self.mutate(|rec, batch| {
            for w in &fresh {
                put_wrap(batch, w)?;
            }
            rec.append_items(sid, items, now, rng, batch)
        })
    }

    /// Whether this node may write the consent ledger (the auth document's items or the
    /// private ledger) or the audit log: a patient's device, still linked to the record.
    pub(super) fn check_ledger_writer(&self) -> Result<()> {
        if !self.owner {
            return Err(RecordError::NotPermitted(
                "only the patient writes the consent ledger",
            ));
        }
        self.check_linked()
    }

    /// The private ledger's items whose keys start with `prefix` (empty if there is none or
    /// this node cannot read it).
    pub fn ledger_items(&mut self, prefix: &str) -> Vec<(String, String)> {
        self.private_items(SectionId::LEDGER, prefix)
    }

    /// A private section's items whose keys start with `prefix` (empty if there is none or
    /// this node cannot read it).
    pub(super) fn private_items(&mut self, sid: SectionId, prefix: &str) -> Vec<(String, String)> {
        if !self.keys.contains_key(&sid) || self.ensure_loaded(&sid).is_err() {
            return Vec::new();
        }
        self.loaded
            .get(&sid)
            .map(|d| string_items(&d.doc, prefix))
            .unwrap_or_default()
    }
}

/// The root-map keys that start with `prefix` (for the prefixes and keys the engine writes: a
/// key's characters after the prefix are never `char::MAX`), as a range for `map_range`, which
/// visits only those keys.
pub(super) fn prefixed(prefix: &str) -> std::ops::Range<String> {
    let mut end = prefix.to_string();
    end.push(char::MAX);
    prefix.to_string()..end
}

/// The root-map keys starting with `prefix`, in order, each once (whatever its values).
pub(super) fn keys_starting(doc: &AutoCommit, prefix: &str) -> Vec<String> {
    doc.map_range(ROOT, prefixed(prefix))
        .map(|item| item.key.into_owned())
        .collect()
}

/// The string values of root-map keys starting with `prefix`.
pub(super) fn string_items(doc: &AutoCommit, prefix: &str) -> Vec<(String, String)> {
    doc.map_range(ROOT, prefixed(prefix))
        .filter_map(|item| {
            let s = match &item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => s.to_string(),
                _ => return None,
            };
            Some((item.key.to_string(), s))
        })
        .collect()
}
