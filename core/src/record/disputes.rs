//! The patient's disputes of entries, written and read (the model: [`crate::entry::dispute`]).
//!
//! A dispute is the item `d/<dispute id>` and a withdrawal the item `w/<id>`, each written once
//! in the section document holding the disputed entry. What readers are shown is decided from
//! verified facts only: a dispute or withdrawal counts when the key that wrote it (its
//! operation's actor, the signer of its bundle) is a device the record root certified as the
//! patient's, and is the author it names. Anything else found under those keys (which only a
//! damaged or hand-made store can hold: receivers refuse a grantee's bundle carrying one) is
//! left out.

use super::entries::SectionVersions;
use super::items::keys_starting;
use super::views::{Attribution, EntryView, Receipts, attributed, writer_of};
use super::{OpenRecord, RecordError, Result, json_string};
use crate::entry::dispute::{Dispute, Withdrawal, checked_reason};
use crate::ids::{DisputeId, EntryId, PeerKey, SectionId};
use crate::section::SectionName;
use crate::store::Store;
use crate::time::Timestamp;
use automerge::{ROOT, ReadDoc};
use rand_core::CryptoRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The section-document key of a dispute.
pub(super) fn dispute_key(id: &DisputeId) -> String {
    format!("d/{id}")
}

/// The section-document key of a withdrawal.
pub(super) fn withdrawal_key(id: &DisputeId) -> String {
    format!("w/{id}")
}

/// Whether a section-document key is a dispute's or a withdrawal's: only the patient's devices
/// write those.
pub(super) fn is_dispute_key(key: &str) -> bool {
    key.starts_with("d/") || key.starts_with("w/")
}

/// A dispute as shown with the entry it disputes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisputeView {
    /// The dispute's id (to withdraw it).
    pub id: DisputeId,
    /// The version disputed: the entry's current version, or one it has since replaced.
    pub entry: EntryId,
    /// Why the patient disputes it.
    pub reason: String,
    /// When the patient's device wrote it (its own clock: a patient device is taken at its word).
    pub disputed_at: Timestamp,
    /// What this node verified: the patient's device that signed it (`basis` is always
    /// `patient-device`), its certified name, and when this node received it.
    pub verified: Attribution,
}

/// An item a patient's device wrote, with what this node verified of it.
struct Verified<T> {
    item: T,
    sid: SectionId,
    facts: Attribution,
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// Disputes entry version `entry` (its newest version) with `reason`, as the patient: the
    /// dispute is written once, in the entry's own section document, so everyone who may read
    /// the entry receives it. Disputing an entry again adds another dispute. Refused, with
    /// nothing written, if the reason is not acceptable
    /// ([`crate::entry::dispute::checked_reason`]), this node is not one of the patient's
    /// linked devices, or the entry is unknown or replaced.
    pub fn dispute(
        &mut self,
        entry: &EntryId,
        reason: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<DisputeId> {
        let reason = checked_reason(reason).map_err(|e| RecordError::Invalid(e.as_str()))?;
        self.check_patient_device()?;
        let (name, all) = self.find(entry)?;
        let found = SectionVersions::new(name, all);
        if let Some(by) = found.superseded_by.get(entry) {
            return Err(RecordError::Superseded {
                entry: *entry,
                by: *by,
            });
        }
        let sid = self
            .section_holding(&name, entry)
            .ok_or(RecordError::NoEntry(*entry))?;
        let d = Dispute {
            id: DisputeId::generate(rng),
            entry: *entry,
            reason: reason.to_string(),
            provenance: self.provenance(now, None),
        };
        let item = (dispute_key(&d.id), json_string(&d)?);
        self.mutate(|rec, batch| rec.append_items(sid, vec![item], now, rng, batch))?;
        Ok(d.id)
    }

    /// Withdraws dispute `dispute`, as the patient: a withdrawal is written once beside it; the
    /// dispute is no longer shown. Returns the withdrawal's id and the entry version that was
    /// disputed. Refused if no dispute with that id is shown in this record (unknown, or
    /// withdrawn already) or this node is not one of the patient's linked devices.
    pub fn withdraw_dispute(
        &mut self,
        dispute: &DisputeId,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(DisputeId, EntryId)> {
        self.check_patient_device()?;
        let names: Vec<SectionName> = self.sections().into_iter().map(|s| s.name).collect();
        for name in names {
            let (disputes, withdrawn) = self.disputes_in(&name)?;
            if withdrawn.contains(dispute) {
                return Err(RecordError::NoDispute(*dispute));
            }
            let Some(d) = disputes.into_iter().find(|d| d.item.id == *dispute) else {
                continue;
            };
            let w = Withdrawal {
                id: DisputeId::generate(rng),
                withdraws: *dispute,
                provenance: self.provenance(now, None),
            };
            let item = (withdrawal_key(&w.id), json_string(&w)?);
            self.mutate(|rec, batch| rec.append_items(d.sid, vec![item], now, rng, batch))?;
            return Ok((w.id, d.item.entry));
        }
        Err(RecordError::NoDispute(*dispute))
    }

    /// The disputes shown in the sections named `name`, by the version each disputes, oldest
    /// first: those written by the patient's devices and not withdrawn.
    pub(super) fn disputes_by_version(
        &mut self,
        name: &SectionName,
    ) -> Result<HashMap<EntryId, Vec<DisputeView>>> {
        let (disputes, withdrawn) = self.disputes_in(name)?;
        let mut out: HashMap<EntryId, Vec<DisputeView>> = HashMap::new();
        for d in disputes {
            if withdrawn.contains(&d.item.id) {
                continue;
            }
            out.entry(d.item.entry).or_default().push(DisputeView {
                id: d.item.id,
                entry: d.item.entry,
                reason: d.item.reason,
                disputed_at: d.item.provenance.recorded_at,
                verified: d.facts,
            });
        }
        for list in out.values_mut() {
            list.sort_by_key(|d| (d.disputed_at, d.id));
        }
        Ok(out)
    }

    /// The disputes the patient's devices wrote in the sections named `name`, and the ids of
    /// those they withdrew.
    fn disputes_in(
        &mut self,
        name: &SectionName,
    ) -> Result<(Vec<Verified<Dispute>>, HashSet<DisputeId>)> {
        let disputes = self.patient_items(name, "d/", |d: &Dispute| {
            (dispute_key(&d.id), d.provenance.author)
        })?;
        let withdrawn = self
            .patient_items(name, "w/", |w: &Withdrawal| {
                (withdrawal_key(&w.id), w.provenance.author)
            })?
            .into_iter()
            .map(|w| w.item.withdraws)
            .collect();
        Ok((disputes, withdrawn))
    }

    /// The items under `prefix` in the sections named `name` that a device the record root
    /// certified as the patient's wrote, each under its own key and naming that device as its
    /// author (`key_and_author` says which key and author an item names). Every value of a key
    /// is looked at, so a value someone else wrote concurrently under the same key hides
    /// nothing. A removed device's items, written while it was the patient's, still count:
    /// receivers refuse its bundles after its removal.
    fn patient_items<T: DeserializeOwned>(
        &mut self,
        name: &SectionName,
        prefix: &str,
        key_and_author: impl Fn(&T) -> (String, PeerKey),
    ) -> Result<Vec<Verified<T>>> {
        let devices: BTreeMap<PeerKey, String> = self
            .all_device_certs()
            .into_iter()
            .map(|d| (d.peer, d.name))
            .collect();
        let vault = self.vault;
        let rid = self.id;
        let mut out = Vec::new();
        let mut receipts = Receipts::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get_mut(&sid) else {
                continue;
            };
            let keys = keys_starting(&sd.doc, prefix);
            for k in keys {
                let values: Vec<(Option<T>, automerge::ObjId)> = sd
                    .doc
                    .get_all(ROOT, k.as_str())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(v, exid)| {
                        let item = v.as_str().and_then(|t| serde_json::from_str::<T>(t).ok());
                        (item, exid)
                    })
                    .collect();
                for (item, exid) in values {
                    let Some(writer) = writer_of(&exid).filter(|w| devices.contains_key(w)) else {
                        continue;
                    };
                    let Some(item) = item else {
                        continue;
                    };
                    if key_and_author(&item) != (k.clone(), writer) {
                        continue;
                    }
                    let received = receipts.of(vault, &rid, &sid, &mut sd.doc, &exid, &writer)?;
                    out.push(Verified {
                        item,
                        sid,
                        facts: attributed(writer, &devices, received),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Refuses unless this node is one of the patient's devices, still linked to the record:
    /// only they dispute entries.
    fn check_patient_device(&self) -> Result<()> {
        if !self.owner {
            return Err(RecordError::NotPermitted(
                "only the patient's own devices dispute entries",
            ));
        }
        self.check_linked()
    }
}

/// Puts on each entry of `entries` the disputes of its current version and of the versions it
/// replaced (as far back as it names them), oldest first.
pub(super) fn attach_disputes<'e>(
    entries: impl Iterator<Item = &'e mut EntryView>,
    mut by_version: HashMap<EntryId, Vec<DisputeView>>,
) {
    if by_version.is_empty() {
        return;
    }
    for e in entries {
        let mut found: Vec<DisputeView> = std::iter::once(e.id)
            .chain(e.earlier_versions.iter().copied())
            .filter_map(|v| by_version.remove(&v))
            .flatten()
            .collect();
        found.sort_by_key(|d| (d.disputed_at, d.id));
        e.disputes = found;
    }
}
