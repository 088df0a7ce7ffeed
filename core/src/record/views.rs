//! Reading entries: a section's current entries, their history, and what this node verified
//! of who wrote them.

use super::disputes::{DisputeView, attach_disputes};
use super::items::string_items;
use super::layout::k_received;
use super::{OpenRecord, RecordError, Result};
use crate::entry::{EntryStatus, EntryVersion, Provenance};
use crate::ids::{EntryId, PeerKey};
use crate::keys::Role;
use crate::section::SectionName;
use crate::store::Store;
use crate::time::Timestamp;
use automerge::{AutoCommit, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What vouches for the name of a version's author.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// A device certified by the record root: the patient's own.
    PatientDevice,
    /// A credential from an organisation this node trusts (filled in by the node).
    OrganisationCredential,
    /// This node's own key (filled in by the node).
    ThisNode,
    /// Nothing: only the signing key is known.
    Unverified,
}

/// Verified facts about who wrote a version and when this node received it, as opposed to what
/// the writer said of itself in the version's provenance (which is only a claim).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// The key that signed the bundle carrying the version.
    pub author: PeerKey,
    /// What vouches for the name (`patient-device`, `organisation-credential`, `this-node` or
    /// `unverified` in JSON).
    pub basis: Basis,
    /// The verified name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The verified role, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The verified organisation, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// When this node accepted that bundle (its own clock; `None` for bundles stored before
    /// receipt times were kept, or covered by a snapshot this node started from).
    pub received_at: Option<Timestamp>,
}

/// The fields of a version's `provenance` that only its writer vouches for: shown as claims,
/// never as facts (the author key is checked against the bundle's signer).
pub const CLAIMED: &[&str] = &[
    "provenance.author_name",
    "provenance.author_role",
    "provenance.recorded_at",
    "provenance.purpose",
];

/// An entry as shown to a reader: the current version and how many versions it has had.
#[derive(Clone, Debug, Serialize)]
pub struct EntryView {
    /// The current version's id (use it to correct or mark in error).
    pub id: EntryId,
    /// The version number.
    pub version: u32,
    /// Final or entered in error.
    pub status: EntryStatus,
    /// Why it was marked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The version it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<EntryId>,
    /// The entry's fields.
    pub body: serde_json::Value,
    /// Who wrote this version, when, as the writer said: its `author` is the bundle's signer
    /// (checked), the rest only the writer's word (see `claimed`).
    pub provenance: Provenance,
    /// The fields of `provenance` that are the writer's claims ([`CLAIMED`]).
    pub claimed: &'static [&'static str],
    /// What this node verified: the signing key, its verified identity, the receipt time
    /// ([`OpenRecord::show`] fills it; `None` where not looked up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Attribution>,
    /// Other current versions of the same entry made concurrently on another node (a conflict
    /// for a person to resolve by correcting one of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub concurrent_versions: Vec<EntryId>,
    /// The versions this one replaced, newest first, back to the entry's first version (at
    /// most [`EARLIER_VERSIONS_SHOWN`]): the ids the entry was known by before (an export names
    /// them, so that a system holding an earlier export recognises the entry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier_versions: Vec<EntryId>,
    /// The patient's disputes of this version and of the versions it replaced, oldest first
    /// (only those a device of the patient's wrote, and not withdrawn).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disputes: Vec<DisputeView>,
}

/// How many earlier versions an [`EntryView`] names.
pub const EARLIER_VERSIONS_SHOWN: usize = 32;

/// One section as shown to a reader.
#[derive(Clone, Debug, Serialize)]
pub struct SectionView {
    /// The section's class.
    pub class: crate::section::SectionClass,
    /// The section's label.
    pub label: crate::section::Label,
    /// Current entries, oldest first.
    pub entries: Vec<EntryView>,
}

/// A current entry as [`OpenRecord::show_raw`] reads it: the [`EntryView`] without its body
/// (`entry.body` is `null`), and the body as the JSON text stored.
#[derive(Clone, Debug)]
pub struct RawEntryView {
    /// The current version, as [`OpenRecord::show`] gives it, but for the body.
    pub entry: EntryView,
    text: String,
    body: std::ops::Range<usize>,
}

impl RawEntryView {
    /// The entry as `entry`, with its body as JSON text (`serde_json::to_string` of the body).
    pub fn new(mut entry: EntryView, body: String) -> Self {
        entry.body = serde_json::Value::Null;
        let len = body.len();
        RawEntryView {
            entry,
            text: body,
            body: 0..len,
        }
    }

    /// The body's JSON text: one JSON object, as stored (any valid JSON layout).
    pub fn body(&self) -> &str {
        self.text.get(self.body.clone()).unwrap_or("null")
    }
}

/// One section as [`OpenRecord::show_raw`] reads it.
#[derive(Clone, Debug)]
pub struct RawSectionView {
    /// The section's class.
    pub class: crate::section::SectionClass,
    /// The section's label.
    pub label: crate::section::Label,
    /// Current entries, oldest first (the order of [`SectionView::entries`]).
    pub entries: Vec<RawEntryView>,
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// All versions held in the sections named `name` (merging duplicates), by id.
    pub(super) fn versions_in(
        &mut self,
        name: &SectionName,
    ) -> Result<BTreeMap<EntryId, EntryVersion>> {
        let mut all = BTreeMap::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            if let Some(sd) = self.loaded.get(&sid) {
                for (_, v) in string_items(&sd.doc, "e/") {
                    let ver: EntryVersion = serde_json::from_str(&v)
                        .map_err(|_| self.corrupt(&sid, "an entry is not valid JSON"))?;
                    all.insert(ver.id, ver);
                }
            }
        }
        Ok(all)
    }

    /// The current entries of one section.
    pub fn show(&mut self, name: &SectionName) -> Result<SectionView> {
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let all = self.versions_in(name)?;
        let mut facts = self.attribution(name)?;
        let mut entries = current_view(all);
        for e in &mut entries {
            e.verified = facts.remove(&e.id);
        }
        attach_disputes(entries.iter_mut(), self.disputes_by_version(name)?);
        Ok(SectionView {
            class: name.class,
            label: name.label,
            entries,
        })
    }

    /// [`OpenRecord::show`] with each body as the JSON text stored, not parsed into a `Value`:
    /// the same entries in the same order, for readers that copy bodies (or parts of them) into
    /// their output as they are (the FHIR export). Every version's JSON is still checked whole
    /// (the body by a scan that follows JSON's grammar, the rest by serde_json).
    pub fn show_raw(&mut self, name: &SectionName) -> Result<RawSectionView> {
        /// An entry version's fields, its body checked as JSON and skipped.
        #[derive(Deserialize)]
        struct Head {
            id: EntryId,
            #[serde(rename = "type")]
            class: crate::section::SectionClass,
            version: u32,
            #[serde(default)]
            supersedes: Option<EntryId>,
            status: EntryStatus,
            #[serde(default)]
            status_reason: Option<String>,
            #[allow(dead_code)] // checked (or `null` in its place), not kept
            body: serde::de::IgnoredAny,
            provenance: Provenance,
        }
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let mut all = BTreeMap::new();
        let mut texts: HashMap<EntryId, (String, std::ops::Range<usize>)> = HashMap::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get(&sid) else {
                continue;
            };
            // Each version's text is read on its own, so the work is shared among the cores.
            let items = string_items(&sd.doc, "e/");
            let read = crate::par::map_vec(items, |_, (_, text)| read_version_head::<Head>(text));
            for r in read {
                let Some((head, body)) = r else {
                    return Err(self.corrupt(&sid, "an entry is not valid JSON"));
                };
                texts.insert(head.id, body);
                all.insert(
                    head.id,
                    EntryVersion {
                        id: head.id,
                        class: head.class,
                        version: head.version,
                        supersedes: head.supersedes,
                        status: head.status,
                        status_reason: head.status_reason,
                        body: serde_json::Value::Null,
                        provenance: head.provenance,
                    },
                );
            }
        }
        let mut facts = self.attribution(name)?;
        let mut entries: Vec<RawEntryView> = current_view(all)
            .into_iter()
            .map(|mut entry| {
                let (text, body) = texts.remove(&entry.id).unwrap_or_default();
                entry.verified = facts.remove(&entry.id);
                RawEntryView { entry, text, body }
            })
            .collect();
        let disputes = self.disputes_by_version(name)?;
        attach_disputes(entries.iter_mut().map(|r| &mut r.entry), disputes);
        Ok(RawSectionView {
            class: name.class,
            label: name.label,
            entries,
        })
    }

    /// What this node verified of each version in the sections named `name`: the key that
    /// signed the bundle carrying it (the change's actor, which must be the bundle's author),
    /// when this node accepted that bundle, and, for the patient's devices, the device's name
    /// from its certificate. A grantee's verified identity comes from credentials the node
    /// holds, outside the record: the caller fills it in.
    pub fn attribution(&mut self, name: &SectionName) -> Result<BTreeMap<EntryId, Attribution>> {
        let devices: BTreeMap<PeerKey, String> = self
            .device_certs()
            .into_iter()
            .map(|d| (d.peer, d.name))
            .collect();
        let vault = self.vault;
        let rid = self.id;
        let mut out = BTreeMap::new();
        let mut receipts = Receipts::new();
        for sid in self.ids_of(name) {
            self.ensure_loaded(&sid)?;
            let Some(sd) = self.loaded.get_mut(&sid) else {
                continue;
            };
            for (id, exid) in entry_writes(&sd.doc) {
                let Some(author) = writer_of(&exid) else {
                    continue;
                };
                let received_at = receipts.of(vault, &rid, &sid, &mut sd.doc, &exid, &author)?;
                out.insert(id, attributed(author, &devices, received_at));
            }
        }
        Ok(out)
    }

    /// Every version in a section, oldest first: who wrote what, when, which version.
    pub fn history(&mut self, name: &SectionName) -> Result<Vec<EntryVersion>> {
        if self.ids_of(name).is_empty() {
            return Err(RecordError::NoSection(*name));
        }
        let mut v: Vec<EntryVersion> = self.versions_in(name)?.into_values().collect();
        v.sort_by(|a, b| {
            (a.provenance.recorded_at, a.version, a.id).cmp(&(
                b.provenance.recorded_at,
                b.version,
                b.id,
            ))
        });
        Ok(v)
    }

    /// A section's automerge document as `AutoCommit::save()` writes it: a standard automerge
    /// file any automerge implementation opens. Its root map holds one key per entry version,
    /// `e/<entry id>`, whose value is the version as JSON text, and the patient's disputes
    /// (`d/<id>`) and their withdrawals (`w/<id>`). When two devices created the same section
    /// offline (two ids, one name), their documents are merged into one.
    pub fn section_document(&mut self, name: &SectionName) -> Result<Vec<u8>> {
        let ids = self.ids_of(name);
        let mut merged: Option<AutoCommit> = None;
        for sid in &ids {
            self.ensure_loaded(sid)?;
            let Some(sd) = self.loaded.get(sid) else {
                continue;
            };
            let mut doc = sd.doc.clone();
            match merged.as_mut() {
                None => merged = Some(doc),
                Some(m) => {
                    m.merge(&mut doc)
                        .map_err(|_| self.corrupt(sid, "documents do not merge"))?;
                }
            }
        }
        match merged {
            Some(mut d) => Ok(d.save()),
            None => Err(RecordError::NoSection(*name)),
        }
    }
}

/// Each entry version in a section document, in key order, with the operation that wrote its
/// current value (whose actor is the writer: [`writer_of`]). One pass over the entries' keys: a
/// lookup per key would seek each one and copy its value out.
pub(super) fn entry_writes(doc: &AutoCommit) -> Vec<(EntryId, automerge::ObjId)> {
    doc.map_range(ROOT, super::items::prefixed("e/"))
        .filter_map(|item| {
            let id = item.key.strip_prefix("e/")?.parse::<EntryId>().ok()?;
            Some((id, item.id()))
        })
        .collect()
}

/// The key that wrote the value `exid` names: its operation's actor, which the load rules make
/// the signer of the bundle carrying it.
pub(super) fn writer_of(exid: &automerge::ObjId) -> Option<PeerKey> {
    let automerge::ObjId::Id(_, actor, _) = exid else {
        return None;
    };
    <[u8; 32]>::try_from(actor.to_bytes()).map(PeerKey).ok()
}

/// What this node verified of a value written by `author`, the patient's device if `devices`
/// (certified devices, by key, with their names) holds it.
pub(super) fn attributed(
    author: PeerKey,
    devices: &BTreeMap<PeerKey, String>,
    received_at: Option<Timestamp>,
) -> Attribution {
    let device = devices.get(&author);
    Attribution {
        author,
        basis: if device.is_some() {
            Basis::PatientDevice
        } else {
            Basis::Unverified
        },
        name: device.cloned(),
        role: device.map(|_| Role::Patient.as_str().to_string()),
        organisation: None,
        received_at,
    }
}

/// When this node accepted the bundles carrying values of a section document, looked up once
/// per change (values written together share one).
pub(super) struct Receipts(HashMap<automerge::ChangeHash, Option<Timestamp>>);

impl Receipts {
    pub(super) fn new() -> Self {
        Receipts(HashMap::new())
    }

    /// When this node accepted the bundle carrying the value `exid` of `doc`, section `sid`
    /// of record `rid`, written by `author` (`None` if not known).
    pub(super) fn of<S: Store>(
        &mut self,
        vault: &super::Vault<S>,
        rid: &crate::ids::RecordId,
        sid: &crate::ids::SectionId,
        doc: &mut AutoCommit,
        exid: &automerge::ObjId,
        author: &PeerKey,
    ) -> Result<Option<Timestamp>> {
        let hash = doc.hash_for_opid(exid);
        if let Some(t) = hash.and_then(|h| self.0.get(&h).copied()) {
            return Ok(t);
        }
        let seq = hash.and_then(|h| doc.get_change_meta_by_hash(&h).map(|m| m.seq));
        let t = match seq {
            Some(seq) => vault
                .store
                .get(&k_received(rid, sid, author, seq))?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(|b| Timestamp::from_millis(i64::from_be_bytes(b))),
            None => None,
        };
        if let Some(h) = hash {
            self.0.insert(h, t);
        }
        Ok(t)
    }
}

/// An entry version's fields other than its body, and its body as text: `(text, range)` where
/// `text[range]` is the body. `None` when the text is not a valid version.
fn read_version_head<H: serde::de::DeserializeOwned>(
    text: String,
) -> Option<(H, (String, std::ops::Range<usize>))> {
    // The body's place, found by a scan that also checks it is JSON; the other fields are then
    // parsed without it.
    let span = crate::entry::raw::member(&text, "body").map(|b| {
        let start = b.as_ptr() as usize - text.as_ptr() as usize;
        start..start + b.len()
    });
    match span {
        Some(range) => {
            let rest = [&text[..range.start], "null", &text[range.end..]].concat();
            let head: H = serde_json::from_str(&rest).ok()?;
            Some((head, (text, range)))
        }
        // An unusual layout (an escaped key): the whole version parsed, the body written again.
        None => {
            let head: H = serde_json::from_str(&text).ok()?;
            let v: EntryVersion = serde_json::from_str(&text).ok()?;
            let t = serde_json::to_string(&v.body).ok()?;
            let len = t.len();
            Some((head, (t, 0..len)))
        }
    }
}

/// The current view: versions nobody supersedes, oldest first, with concurrent versions of
/// the same entry noted.
fn current_view(all: BTreeMap<EntryId, EntryVersion>) -> Vec<EntryView> {
    let superseded: HashSet<EntryId> = all.values().filter_map(|v| v.supersedes).collect();
    // Siblings: current versions that replace the same version.
    let mut by_parent: HashMap<EntryId, Vec<EntryId>> = HashMap::new();
    for v in all.values() {
        if let Some(p) = v.supersedes
            && !superseded.contains(&v.id)
        {
            by_parent.entry(p).or_default().push(v.id);
        }
    }
    // Each version's chain back to the first, newest first (bounded: a long or malformed
    // history costs no more).
    let parent: HashMap<EntryId, EntryId> = all
        .values()
        .filter_map(|v| v.supersedes.map(|p| (v.id, p)))
        .collect();
    let earlier = |id: EntryId| {
        let mut chain = Vec::new();
        let mut at = id;
        while let Some(p) = parent.get(&at) {
            if chain.len() >= EARLIER_VERSIONS_SHOWN || chain.contains(p) {
                break;
            }
            chain.push(*p);
            at = *p;
        }
        chain
    };
    let mut out: Vec<EntryView> = all
        .into_values()
        .filter(|v| !superseded.contains(&v.id))
        .map(|v| EntryView {
            earlier_versions: earlier(v.id),
            concurrent_versions: v
                .supersedes
                .and_then(|p| by_parent.get(&p))
                .map(|sib| sib.iter().filter(|s| **s != v.id).copied().collect())
                .unwrap_or_default(),
            id: v.id,
            version: v.version,
            status: v.status,
            status_reason: v.status_reason,
            supersedes: v.supersedes,
            body: v.body,
            claimed: CLAIMED,
            verified: None,
            disputes: Vec::new(),
            provenance: v.provenance,
        })
        .collect();
    out.sort_by_key(|e| (e.provenance.recorded_at, e.id));
    out
}
