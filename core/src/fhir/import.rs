//! FHIR R4 Bundle → planned entries. Pure: checks and maps the whole bundle, writes nothing.

use super::patient::PatientFacts;
use super::{
    FhirError, HEARTH_ENTRY_SYSTEM, HEARTH_FIELD_EXTENSION, MAX_BUNDLE_ENTRIES, NHS_NUMBER_SYSTEM,
    SOURCE_FORMAT, body_sha256, is_fhir_id,
};
use crate::entry::schema::{
    EntryBody, MAX_LIST_ITEMS, MAX_TEXT_CHARS, check_date, check_datetime, is_absolute_uri,
};
use crate::entry::{CheckedBody, EntryStatus, EntryVersion};
use crate::ids::EntryId;
use crate::nhs::NhsNumber;
use crate::section::{Label, SectionClass, SectionName};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The bundle types Hearth imports.
const BUNDLE_TYPES: &[&str] = &[
    "collection",
    "transaction",
    "batch",
    "document",
    "searchset",
];

/// The largest single resource accepted, as JSON (an entry keeps the resource whole and is at
/// most 2 MiB with its typed fields).
pub(crate) const MAX_RESOURCE_JSON: usize = 1 << 20;

/// Resource types that name actors rather than facts about the patient; they are kept as
/// `documents` entries holding the resource, and used to name authors and performers.
const ACTOR_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Goal",
    "Device",
    "Specimen",
];

/// Why a resource marked `entered-in-error` is not imported as an entry.
const IN_ERROR: &str = "marked entered in error";

/// An entry to mark entered in error: a resource marked `entered-in-error` that is an entry
/// imported earlier (the same full URL or business identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRetraction {
    /// The entry's current version.
    pub entry: EntryId,
    /// The FHIR resource type.
    pub resource_type: String,
    /// The resource's index in the bundle's `entry` list.
    pub entry_index: usize,
}

/// One entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEntry {
    /// The section it goes in.
    pub section: SectionName,
    /// The validated, normalised body, with its `source` but without the resource the source
    /// keeps (so the resource is not copied again): the typed fields and how to recognise the
    /// resource. (`Null` in the entries [`plan_import_each`] hands out.)
    pub body: Value,
    /// The whole body, the kept resource included, checked against its class's schema: what
    /// the record engine writes ([`crate::record::OpenRecord::add_checked_entries`]).
    pub checked: CheckedBody,
    /// The entry version it replaces (an updated resource imported earlier).
    pub supersedes: Option<EntryId>,
    /// The FHIR resource type it came from.
    pub resource_type: String,
    /// Its index in the bundle's `entry` list.
    pub entry_index: usize,
}

/// What happened to the resources of one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    /// New entries.
    pub imported: usize,
    /// New versions of entries imported earlier from a resource that has changed since.
    pub updated: usize,
    /// Already in the record (or twice in the bundle): nothing written.
    pub unchanged: usize,
    /// Not imported: entered in error, or a search outcome.
    pub skipped: usize,
    /// Marked entered in error at the source: the entry imported earlier from it is marked so.
    pub retracted: usize,
}

/// What an import did (or will do), for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The bundle's type.
    pub bundle_type: String,
    /// How many resources the bundle held.
    pub resources: usize,
    /// Per resource type.
    pub by_type: BTreeMap<String, TypeCounts>,
    /// New entries, all types.
    pub imported: usize,
    /// New versions, all types.
    pub updated: usize,
    /// Already present, all types.
    pub unchanged: usize,
    /// Skipped, all types.
    pub skipped: usize,
    /// Entries to mark entered in error, all types.
    pub retracted: usize,
    /// Resource types Hearth has no mapping for, kept whole as `documents` entries.
    pub unknown_types: BTreeMap<String, usize>,
    /// Known resources kept whole as `documents` entries: actors (Practitioner, Organization…)
    /// and resources lacking what their typed entry needs (e.g. an Encounter with no start).
    pub kept_as_documents: BTreeMap<String, usize>,
    /// Extension URLs met, with counts; each is kept in its resource.
    pub extensions: BTreeMap<String, usize>,
    /// Other things worth knowing (entries skipped and why), without record content.
    pub notes: Vec<String>,
}

/// The checked, mapped bundle: what to write, and the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportPlan {
    /// The entries to write, in bundle order.
    pub entries: Vec<PlannedEntry>,
    /// The entries to mark entered in error, in bundle order.
    pub retractions: Vec<PlannedRetraction>,
    /// What the import does.
    pub report: ImportReport,
    /// Who the bundle's Patient is (`None`: the bundle holds no Patient), for
    /// [`super::check_patient`].
    pub patient: Option<PatientFacts>,
}

/// What the record already holds, for de-duplication and consistency checks: built from every
/// version of every readable entry.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    hashes: HashSet<String>,
    identities: HashMap<String, EntryId>,
    superseded_by: HashMap<EntryId, EntryId>,
    versions: HashSet<EntryId>,
    in_error: HashSet<EntryId>,
    /// Who each demographics version says the patient is.
    demographics: HashMap<EntryId, PatientFacts>,
}

impl Existing {
    /// Notes one stored version.
    pub fn add_version(&mut self, v: &EntryVersion) {
        self.versions.insert(v.id);
        if v.status == EntryStatus::EnteredInError {
            self.in_error.insert(v.id);
        }
        if let Some(old) = v.supersedes {
            self.superseded_by.insert(old, v.id);
        }
        if let Some(src) = v.body.get("source") {
            if let Some(h) = src.get("sha256").and_then(Value::as_str) {
                self.hashes.insert(h.to_owned());
            }
            for key in identity_keys_of_source(src) {
                self.identities.insert(key, v.id);
            }
        }
        if v.class == SectionClass::Demographics {
            self.demographics
                .insert(v.id, PatientFacts::of_demographics(&v.body));
        }
    }

    /// Who the record's current demographics entries (neither replaced nor entered in error)
    /// say the patient is: what [`super::check_patient`] compares a bundle's Patient with.
    pub fn record_patient(&self) -> Vec<PatientFacts> {
        let mut ids: Vec<&EntryId> = self
            .demographics
            .keys()
            .filter(|id| !self.superseded_by.contains_key(id) && !self.in_error.contains(id))
            .collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.demographics.get(id).cloned())
            .collect()
    }

    /// Notes the entries of a plan as written with `ids` (in plan order).
    pub fn add_written(&mut self, plan: &ImportPlan, ids: &[EntryId]) {
        for (p, id) in plan.entries.iter().zip(ids) {
            self.add_version(&EntryVersion {
                id: *id,
                class: p.section.class,
                version: 1,
                supersedes: p.supersedes,
                status: EntryStatus::Final,
                status_reason: None,
                body: p.body.clone(),
                provenance: crate::entry::Provenance {
                    author: crate::ids::PeerKey([0; 32]),
                    author_name: String::new(),
                    author_role: crate::keys::Role::Patient,
                    recorded_at: crate::time::Timestamp::from_millis(0),
                    purpose: None,
                },
            });
        }
    }

    /// The newest version descending from `id`.
    fn current(&self, mut id: EntryId) -> EntryId {
        for _ in 0..10_000 {
            match self.superseded_by.get(&id) {
                Some(next) => id = *next,
                None => break,
            }
        }
        id
    }
}

/// Identity keys of a stored source: its type with its full URL or business identifiers.
fn identity_keys_of_source(src: &Value) -> Vec<String> {
    let rt = src
        .get("resource_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut keys = Vec::new();
    if let Some(u) = src.get("full_url").and_then(Value::as_str) {
        keys.push(format!("{rt}|url|{u}"));
    }
    for i in src
        .get("identifiers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(s), Some(v)) = (
            i.get("system").and_then(Value::as_str),
            i.get("value").and_then(Value::as_str),
        ) {
            keys.push(format!("{rt}|id|{s}|{v}"));
        }
    }
    keys
}

/// A bundle whose JSON and outer shape are checked (a Bundle of an importable type with a
/// bounded list of entries), each entry still its JSON text. Entries are parsed one by one when
/// they are checked and mapped, on all cores, and dropped once mapped: the bundle is never held
/// as one tree of JSON values, which would take about ten times the file's size.
pub struct ParsedBundle<'a> {
    bundle_type: String,
    entries: Vec<&'a RawValue>,
}

/// Its type and size, never its content.
impl std::fmt::Debug for ParsedBundle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedBundle")
            .field("bundle_type", &self.bundle_type)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl ParsedBundle<'_> {
    /// The bundle's `type` (one of the importable types).
    pub fn bundle_type(&self) -> &str {
        &self.bundle_type
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The Bundle's own fields that the import reads; its other fields are skipped (and their JSON
/// checked) without being kept.
#[derive(Deserialize)]
struct Outer<'a> {
    #[serde(rename = "resourceType", default)]
    resource_type: Option<Value>,
    #[serde(rename = "type", default)]
    ty: Option<Value>,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

/// A bundle's entry list, refused past [`MAX_BUNDLE_ENTRIES`] before more is held.
struct EntryList<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for EntryList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> Visitor<'de> for Items {
            type Value = EntryList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of bundle entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    if items.len() == MAX_BUNDLE_ENTRIES {
                        return Err(serde::de::Error::custom("too many entries"));
                    }
                    items.push(item);
                }
                Ok(EntryList(items))
            }
        }
        d.deserialize_seq(Items)
    }
}

/// A JSON syntax error, by line and column (never the text).
fn json_error(e: &serde_json::Error) -> FhirError {
    FhirError::Json {
        line: e.line(),
        column: e.column(),
        kind: match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        },
    }
}

/// Checks a bundle file's JSON and outer shape, and splits it into its entries (see
/// [`ParsedBundle`]). The size limit is the caller's ([`super::parse_bundle`]).
pub(crate) fn split_bundle(bytes: &[u8]) -> Result<ParsedBundle<'_>, FhirError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Not an object: a syntax error if it is not JSON at all, else not a bundle.
        serde_json::from_slice::<IgnoredAny>(bytes).map_err(|e| json_error(&e))?;
        return Err(FhirError::NotBundle("the file holds no JSON object".into()));
    }
    let outer: Outer<'_> = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    match outer.resource_type.as_ref().and_then(Value::as_str) {
        Some("Bundle") => {}
        Some(other) if is_type_name(other) => {
            return Err(FhirError::NotBundle(format!(
                "resourceType is {other}, not Bundle"
            )));
        }
        _ => return Err(FhirError::NotBundle("resourceType is not Bundle".into())),
    }
    let ty = outer
        .ty
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::NotBundle("type is missing".into()))?;
    if !BUNDLE_TYPES.contains(&ty) {
        return Err(FhirError::NotBundle(format!(
            "type must be one of {}",
            BUNDLE_TYPES.join(", ")
        )));
    }
    let entries = match outer.entry {
        None => Vec::new(),
        Some(raw) if raw.get().starts_with('[') => {
            // The list's JSON is already checked, so the only refusal left is its length.
            serde_json::from_str::<EntryList<'_>>(raw.get())
                .map_err(|_| {
                    FhirError::NotBundle(format!("more than {MAX_BUNDLE_ENTRIES} entries"))
                })?
                .0
        }
        Some(_) => return Err(FhirError::NotBundle("entry must be a list".into())),
    };
    Ok(ParsedBundle {
        bundle_type: ty.to_owned(),
        entries,
    })
}

fn is_type_name(s: &str) -> bool {
    let mut c = s.chars();
    s.len() <= 64
        && c.next().is_some_and(|c| c.is_ascii_uppercase())
        && c.all(|c| c.is_ascii_alphanumeric())
}

/// Where references can point inside the bundle.
struct Index<'a> {
    by_url: HashMap<&'a str, usize>,
    by_type_id: HashMap<String, usize>,
    by_identifier: HashMap<String, usize>,
    /// Each entry's resource, as JSON text.
    resources: Vec<Option<&'a RawValue>>,
    /// Resources parsed when another resource refers to them for their content (a name, say),
    /// kept for the next reference.
    parsed: Vec<OnceLock<Option<Map<String, Value>>>>,
    /// The entry holding the bundle's Patient (a bundle holds one at most).
    patient: Option<usize>,
}

impl Index<'_> {
    /// Entry `i`'s resource, parsed.
    fn resource(&self, i: usize) -> Option<&Map<String, Value>> {
        let raw = self.resources.get(i).copied().flatten()?;
        self.parsed
            .get(i)?
            .get_or_init(|| match serde_json::from_str(raw.get()) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            })
            .as_ref()
    }
}

enum Target {
    Local(usize),
    Contained,
    External,
    Missing,
    Invalid,
}

fn resolve(index: &Index<'_>, resource: &Map<String, Value>, reference: &str) -> Target {
    if let Some(local) = reference.strip_prefix('#') {
        if local.is_empty() {
            return Target::Contained;
        }
        let found = resource
            .get("contained")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|r| r.get("id").and_then(Value::as_str) == Some(local))
            });
        return if found {
            Target::Contained
        } else {
            Target::Missing
        };
    }
    if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
        return index
            .by_url
            .get(reference)
            .map_or(Target::Missing, |i| Target::Local(*i));
    }
    if let Some((ty, query)) = reference.split_once('?') {
        if !is_type_name(ty) {
            return Target::Invalid;
        }
        let Some(ident) = query.strip_prefix("identifier=") else {
            return Target::Missing;
        };
        return index
            .by_identifier
            .get(&format!("{ty}|{ident}"))
            .map_or(Target::Missing, |i| Target::Local(*i));
    }
    if reference.contains("://") {
        if let Some(i) = index.by_url.get(reference) {
            return Target::Local(*i);
        }
        let parts: Vec<&str> = reference.rsplit('/').collect();
        // …/Type/id or …/Type/id/_history/v
        let tail = match parts.as_slice() {
            [_, "_history", id, ty, ..] | [id, ty, ..] => format!("{ty}/{id}"),
            _ => return Target::External,
        };
        return index
            .by_type_id
            .get(&tail)
            .map_or(Target::External, |i| Target::Local(*i));
    }
    let parts: Vec<&str> = reference.split('/').collect();
    match parts.as_slice() {
        [ty, id] | [ty, id, "_history", _] if is_type_name(ty) && is_fhir_id(id) => index
            .by_type_id
            .get(&format!("{ty}/{id}"))
            .map_or(Target::Missing, |i| Target::Local(*i)),
        _ => Target::Invalid,
    }
}

/// Checks and maps a parsed bundle against what the record already holds.
pub fn plan_import(
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
) -> Result<ImportPlan, FhirError> {
    plan_import_on(None, bundle, existing)
}

/// [`plan_import`], handing each entry to write to `each`, in bundle order, as soon as it is
/// planned, while the resources after it are still being checked: so that writing overlaps
/// checking. The plan returned has no `entries` (`each` had them). An error from `each` stops
/// the planning and is returned. The entries' `body` is `Null`: `checked`, the whole body, is
/// what is written.
///
/// `each` may have been given entries before a later resource is refused: whatever it did with
/// them must then be undone, as the record engine's [`EntryWriter`] does when dropped
/// unfinished.
///
/// [`EntryWriter`]: crate::record::EntryWriter
pub fn plan_import_each<E: From<FhirError>>(
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
    each: impl FnMut(PlannedEntry) -> Result<(), E>,
) -> Result<ImportPlan, E> {
    plan_import_each_on(None, bundle, existing, false, each)
}

/// [`plan_import`] on `threads` threads (`None`: as many as help on this machine). The plan
/// does not depend on the number.
pub(crate) fn plan_import_on(
    threads: Option<usize>,
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
) -> Result<ImportPlan, FhirError> {
    let mut entries = Vec::new();
    let mut plan = plan_import_each_on(threads, bundle, existing, true, |p| {
        entries.push(p);
        Ok::<(), FhirError>(())
    })?;
    plan.entries = entries;
    Ok(plan)
}

/// What pass 1 reads of an entry.
#[derive(Deserialize)]
struct EntryHead<'a> {
    #[serde(rename = "fullUrl", default)]
    full_url: Option<Value>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// What pass 1 reads of a resource.
#[derive(Deserialize)]
struct ResourceHead {
    #[serde(rename = "resourceType", default)]
    resource_type: Option<Value>,
    /// `Some(Null)` for an explicit `null`, which is refused like any id that is not one.
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    identifier: Option<Value>,
}

/// A field's value when the field is there, even `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// An entry's head and, when it has a resource, the resource's head.
type Head<'a> = (EntryHead<'a>, Option<ResourceHead>);

/// Why JSON text already checked for syntax could not be read: a key given twice (which FHIR's
/// JSON forbids), or a number beyond what a JSON number can hold here. Never the text itself.
fn unreadable(e: &serde_json::Error) -> &'static str {
    let message = e.to_string();
    if message.starts_with("number out of range") {
        "holds a number out of range"
    } else if message.starts_with("duplicate field") {
        "has a key given twice"
    } else {
        "cannot be read as JSON"
    }
}

/// Entry `i`'s head and, when it has one, its resource's head.
fn read_head(i: usize, raw: &RawValue) -> Result<Head<'_>, FhirError> {
    let bad = |field: &str, problem: &str| FhirError::Resource {
        at: format!("entry[{i}]"),
        field: field.into(),
        problem: problem.into(),
    };
    if !raw.get().starts_with('{') {
        return Err(bad("(entry)", "must be a JSON object"));
    }
    let head: EntryHead<'_> =
        serde_json::from_str(raw.get()).map_err(|e| bad("(entry)", unreadable(&e)))?;
    let Some(resource) = head.resource else {
        return Ok((head, None));
    };
    if !resource.get().starts_with('{') {
        return Err(bad("resource", "must be a JSON object"));
    }
    let rh = serde_json::from_str(resource.get()).map_err(|e| bad("resource", unreadable(&e)))?;
    Ok((head, Some(rh)))
}

/// Entry `i` parsed whole, refusing an object anywhere in it that gives a key twice: FHIR's JSON
/// forbids it, and silently taking either value could import the wrong one.
fn read_entry(i: usize, raw: &RawValue) -> Result<Value, FhirError> {
    serde_json::from_str::<Strict>(raw.get())
        .map(|s| s.0)
        .map_err(|e| FhirError::Resource {
            at: format!("entry[{i}]"),
            field: "(entry)".into(),
            problem: unreadable(&e).into(),
        })
}

/// A JSON value in which no object gives a key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// serde_json's own reading of a value, but for keys given twice.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if object.insert(key, v).is_some() {
                // The same words as serde's own refusal, which `unreadable` names.
                return Err(serde::de::Error::custom("duplicate field"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Whether two entries' resources are the same JSON value (layout aside).
fn same_resource(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    let parse = |r: Option<&RawValue>| r.map(|r| serde_json::from_str::<Value>(r.get()).ok());
    match (parse(a), parse(b)) {
        (Some(Some(a)), Some(Some(b))) => a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Pass 1: where references can point, from each entry's head, in bundle order.
fn index_of<'a>(heads: &'a [Result<Head<'a>, FhirError>]) -> Result<Index<'a>, FhirError> {
    let mut index = Index {
        by_url: HashMap::new(),
        by_type_id: HashMap::new(),
        by_identifier: HashMap::new(),
        resources: Vec::with_capacity(heads.len()),
        parsed: (0..heads.len()).map(|_| OnceLock::new()).collect(),
        patient: None,
    };
    let mut patients = 0usize;
    for (i, head) in heads.iter().enumerate() {
        let at = || format!("entry[{i}]");
        let (head, resource_head) = match head {
            Ok(h) => h,
            Err(e) => return Err(e.clone()),
        };
        if let Some(r) = resource_head {
            let rt = match r.resource_type.as_ref().and_then(Value::as_str) {
                Some(t) if is_type_name(t) => t,
                _ => {
                    return Err(FhirError::Resource {
                        at: at(),
                        field: "resource.resourceType".into(),
                        problem: "must name a resource type, e.g. Observation".into(),
                    });
                }
            };
            if rt == "Bundle" {
                return Err(FhirError::Resource {
                    at: at(),
                    field: "resource.resourceType".into(),
                    problem: "bundles inside bundles are not imported".into(),
                });
            }
            if rt == "Patient" {
                patients += 1;
                index.patient = Some(i);
            }
            match &r.id {
                None => {}
                Some(Value::String(id)) if is_fhir_id(id) => {
                    index.by_type_id.insert(format!("{rt}/{id}"), i);
                }
                Some(_) => {
                    return Err(FhirError::Resource {
                        at: format!("entry[{i}] {rt}"),
                        field: "id".into(),
                        problem: "must be 1 to 64 letters, digits, '-' or '.'".into(),
                    });
                }
            }
            for ident in r
                .identifier
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(s), Some(v)) = (
                    ident.get("system").and_then(Value::as_str),
                    ident.get("value").and_then(Value::as_str),
                ) {
                    index.by_identifier.insert(format!("{rt}|{s}|{v}"), i);
                }
            }
        }
        match &head.full_url {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if is_absolute_uri(u) && u.len() <= 4096 => {
                if let Some(prev) = index.by_url.insert(u.as_str(), i) {
                    let earlier = heads[prev].as_ref().ok().and_then(|h| h.0.resource);
                    if !same_resource(earlier, head.resource) {
                        return Err(FhirError::Resource {
                            at: at(),
                            field: "fullUrl".into(),
                            problem: format!(
                                "the same fullUrl is used by entry[{prev}] for a different resource"
                            ),
                        });
                    }
                }
            }
            Some(_) => {
                return Err(FhirError::Resource {
                    at: at(),
                    field: "fullUrl".into(),
                    problem: "must be an absolute URI".into(),
                });
            }
        }
        index.resources.push(head.resource);
    }
    if patients > 1 {
        return Err(FhirError::NotBundle(format!(
            "it holds {patients} Patient resources; a record is one patient's, so import one patient's bundle"
        )));
    }
    Ok(index)
}

/// `f` for every entry, on `threads` threads (`None`: as many as help), results in order.
fn map_entries<'a, R: Send>(
    threads: Option<usize>,
    entries: &[&'a RawValue],
    f: impl Fn(usize, &&'a RawValue) -> R + Sync,
) -> Vec<R> {
    match threads {
        None => crate::par::map(entries, f),
        Some(n) => crate::par::map_on(n, entries, f),
    }
}

/// [`plan_import_each`] on `threads` threads (`None`: as many as help on this machine). What
/// `each` is given, and in which order, does not depend on the number.
///
/// With `bodies` false, the entries' `body` is left `Null`, its JSON values dropped by the
/// thread that made them (freeing them on the calling thread, which writes, would slow it).
fn plan_import_each_on<E: From<FhirError>>(
    threads: Option<usize>,
    bundle: &ParsedBundle<'_>,
    existing: &Existing,
    bodies: bool,
    mut each: impl FnMut(PlannedEntry) -> Result<(), E>,
) -> Result<ImportPlan, E> {
    let entries = &bundle.entries[..];
    let report = ImportReport {
        bundle_type: bundle.bundle_type.clone(),
        ..ImportReport::default()
    };

    // Pass 1: the index, and the shape of each entry. Reading the heads is shared among the
    // cores; the index is built in bundle order, so the first error is that of a plain loop.
    let heads = map_entries(threads, entries, |i, raw| read_head(i, raw));
    let index = index_of(&heads)?;
    let patient = index
        .patient
        .and_then(|i| index.resource(i))
        .map(PatientFacts::of_patient);

    // Pass 2: parse, check and map each resource. Resources are checked and mapped
    // independently of one another, so that work is shared among the machine's cores, and each
    // entry's parsed JSON is dropped as soon as it is mapped. The outcomes are taken one by one
    // in bundle order, each as soon as it and those before it are ready, so the plan, the
    // report and the first error are exactly what a single pass gives, and `each` (writing the
    // entries, say) overlaps the checking of the resources after.
    let mut fold = Fold {
        report,
        ..Fold::default()
    };
    crate::par::stream(
        threads,
        entries,
        |i, raw| {
            let e = read_entry(i, raw)?;
            check_and_map(i, &e, &index, existing, bodies)
        },
        |i, outcome| match fold.take(i, outcome)? {
            Some(planned) => each(planned),
            None => Ok(()),
        },
    )?;
    let Fold {
        mut report,
        skipped_why,
        retractions,
        ..
    } = fold;
    for ((rt, why), n) in skipped_why {
        report.notes.push(format!("{n} {rt} not imported: {why}"));
    }
    Ok(ImportPlan {
        entries: Vec::new(),
        retractions,
        report,
        patient,
    })
}

/// Pass 2's outcomes taken in bundle order: de-duplication, retractions and the report.
#[derive(Default)]
struct Fold {
    report: ImportReport,
    retractions: Vec<PlannedRetraction>,
    /// Hashes of the resources taken so far.
    seen: HashSet<String>,
    skipped_why: BTreeMap<(String, &'static str), usize>,
    retracted: HashSet<EntryId>,
    updated: HashSet<EntryId>,
}

impl Fold {
    /// Takes entry `i`'s outcome; returns the entry to write, if it makes one.
    fn take(
        &mut self,
        i: usize,
        outcome: Result<Outcome, FhirError>,
    ) -> Result<Option<PlannedEntry>, FhirError> {
        // A resource retracted and changed in the same bundle: which one holds is unclear.
        // Refused at the second of the two, so the first error in bundle order is the one
        // reported.
        let both = |rt: &str| FhirError::Resource {
            at: format!("entry[{i}] {rt}"),
            field: "status".into(),
            problem: "the bundle both marks this resource entered-in-error and holds a changed \
                      version of it"
                .into(),
        };
        let report = &mut self.report;
        let (rt, checked) = match outcome? {
            Outcome::Deleted => {
                report.notes.push(format!(
                    "entry[{i}]: a DELETE request; an import never deletes"
                ));
                return Ok(None);
            }
            Outcome::SearchResult(rt) => {
                report.resources += 1;
                report.by_type.entry(rt).or_default().skipped += 1;
                report.skipped += 1;
                return Ok(None);
            }
            Outcome::Checked(rt, checked) => (rt, checked),
        };
        report.resources += 1;
        let Checked {
            hash,
            extensions,
            present,
            mapped,
        } = *checked;
        for (url, n) in extensions {
            *report.extensions.entry(url).or_default() += n;
        }
        let counts = report.by_type.entry(rt.clone()).or_default();
        if !self.seen.insert(hash) || present {
            counts.unchanged += 1;
            report.unchanged += 1;
            return Ok(None);
        }
        match mapped? {
            MappedOne::Skip(why) => {
                counts.skipped += 1;
                report.skipped += 1;
                *self.skipped_why.entry((rt, why)).or_default() += 1;
                Ok(None)
            }
            MappedOne::Retract(entry) => {
                if self.updated.contains(&entry) {
                    return Err(both(&rt));
                }
                // The same entry retracted by two resources of the bundle: marked once.
                if !self.retracted.insert(entry) {
                    counts.unchanged += 1;
                    report.unchanged += 1;
                    return Ok(None);
                }
                counts.retracted += 1;
                report.retracted += 1;
                self.retractions.push(PlannedRetraction {
                    entry,
                    resource_type: rt,
                    entry_index: i,
                });
                Ok(None)
            }
            MappedOne::Entry { kept, planned } => {
                if let Some(old) = planned.supersedes {
                    if self.retracted.contains(&old) {
                        return Err(both(&rt));
                    }
                    self.updated.insert(old);
                }
                if planned.supersedes.is_some() {
                    counts.updated += 1;
                    report.updated += 1;
                } else {
                    counts.imported += 1;
                    report.imported += 1;
                }
                match kept {
                    Some(Kept::Known) => *report.kept_as_documents.entry(rt).or_default() += 1,
                    Some(Kept::Unknown) => *report.unknown_types.entry(rt).or_default() += 1,
                    None => {}
                }
                Ok(Some(planned))
            }
        }
    }
}

/// What pass 2 makes of one bundle entry, before de-duplication (which depends on the entries
/// before it, so is done afterwards, in order).
enum Outcome {
    /// A `DELETE` request with no resource: noted, never done.
    Deleted,
    /// A search result marked `outcome` (or an `OperationOutcome`): counted as skipped.
    SearchResult(String),
    /// A resource that passed the whole-resource checks, with its type.
    Checked(String, Box<Checked>),
}

/// A resource that passed the whole-resource checks (size, references, extensions, NHS
/// numbers).
struct Checked {
    /// SHA-256 of its canonical JSON: the de-duplication key.
    hash: String,
    /// Extension URLs met in it, with counts.
    extensions: BTreeMap<String, usize>,
    /// Whether the record already holds it (the same resource, or this record's own export).
    present: bool,
    /// What it maps to. An error here counts only if the resource is not a duplicate.
    mapped: Result<MappedOne, FhirError>,
}

/// Whether a resource kept whole as a `documents` entry is of a type Hearth knows.
enum Kept {
    Known,
    Unknown,
}

/// What a resource that is not a duplicate becomes.
enum MappedOne {
    /// Not imported, and why.
    Skip(&'static str),
    /// Marked entered in error at the source: the entry imported earlier from it (current
    /// version) is to be marked so.
    Retract(EntryId),
    /// An entry to write; `kept` when the resource is kept whole as a `documents` entry.
    Entry {
        kept: Option<Kept>,
        planned: PlannedEntry,
    },
}

/// Pass 2 for entry `i`: the checks that hold for every resource, then the mapping. Reads only
/// the entry, the index and `existing`, so entries can be done in any order or at once.
fn check_and_map(
    i: usize,
    e: &Value,
    index: &Index<'_>,
    existing: &Existing,
    bodies: bool,
) -> Result<Outcome, FhirError> {
    let Some(resource) = e.get("resource").and_then(Value::as_object) else {
        let method = e
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("");
        if method == "DELETE" {
            return Ok(Outcome::Deleted);
        }
        return Err(FhirError::Resource {
            at: format!("entry[{i}]"),
            field: "resource".into(),
            problem: "is missing".into(),
        });
    };
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if e.pointer("/search/mode").and_then(Value::as_str) == Some("outcome")
        || rt == "OperationOutcome"
    {
        return Ok(Outcome::SearchResult(rt));
    }
    let at = match resource.get("id").and_then(Value::as_str) {
        Some(id) => format!("entry[{i}] {rt}/{id}"),
        None => format!("entry[{i}] {rt}"),
    };

    // Whole-resource checks: size, references, extensions, NHS numbers.
    // The resource's canonical JSON: hashed, measured, and (once checked) kept as it is.
    let resource_json = super::canonical_json(resource);
    let hash = super::sha256_hex(resource_json.as_bytes());
    if resource_json.len() > MAX_RESOURCE_JSON {
        return Err(FhirError::Resource {
            at,
            field: "(resource)".into(),
            problem: format!("is too large: at most {MAX_RESOURCE_JSON} bytes of JSON"),
        });
    }
    let mut extensions = BTreeMap::new();
    let mut path = String::new();
    walk(resource, &mut path, &mut |p, obj| {
        check_node(index, resource, &at, p, obj, &mut extensions)
    })?;
    check_identifiers(resource, &at)?;
    let present = existing.hashes.contains(&hash) || is_own_export(resource, existing);
    let mut mapped = if present {
        Ok(MappedOne::Skip("already present"))
    } else {
        let full_url = e.get("fullUrl").and_then(Value::as_str);
        map_one(
            i,
            resource,
            &rt,
            &at,
            full_url,
            &hash,
            &resource_json,
            index,
            existing,
        )
    };
    if !bodies && let Ok(MappedOne::Entry { planned, .. }) = &mut mapped {
        planned.body = Value::Null;
    }
    Ok(Outcome::Checked(
        rt,
        Box::new(Checked {
            hash,
            extensions,
            present,
            mapped,
        }),
    ))
}

/// The business identifiers an entry's `source` keeps of a resource (at most
/// [`MAX_LIST_ITEMS`]; each value non-blank and at most 256 characters, its system kept when it
/// is an absolute URI of at most 256).
fn source_identifiers(resource: &Map<String, Value>) -> Vec<Value> {
    let mut identifiers = Vec::new();
    for ident in resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = ident.get("value").and_then(Value::as_str);
        let system = ident.get("system").and_then(Value::as_str);
        if let Some(v) = value
            && v.chars().count() <= 256
            && !v.trim().is_empty()
        {
            let mut o = Map::new();
            if let Some(s) = system.filter(|s| is_absolute_uri(s) && s.len() <= 256) {
                o.insert("system".into(), json!(s));
            }
            o.insert("value".into(), json!(v));
            identifiers.push(Value::Object(o));
        }
    }
    identifiers.truncate(MAX_LIST_ITEMS);
    identifiers
}

/// The entry imported earlier from the resource with this identity (the same full URL or
/// business identifier), at its current version.
fn earlier_entry(
    resource: &Map<String, Value>,
    rt: &str,
    full_url: Option<&str>,
    existing: &Existing,
) -> Option<EntryId> {
    let mut source = Map::new();
    source.insert("resource_type".into(), json!(rt));
    if let Some(u) = full_url {
        source.insert("full_url".into(), json!(u));
    }
    source.insert(
        "identifiers".into(),
        Value::Array(source_identifiers(resource)),
    );
    identity_keys_of_source(&Value::Object(source))
        .into_iter()
        .find_map(|key| existing.identities.get(&key))
        .map(|v| existing.current(*v))
}

/// Maps a checked resource that the record does not hold yet to the entry it becomes.
#[allow(clippy::too_many_arguments)]
fn map_one(
    i: usize,
    resource: &Map<String, Value>,
    rt: &str,
    at: &str,
    full_url: Option<&str>,
    hash: &str,
    resource_json: &str,
    index: &Index<'_>,
    existing: &Existing,
) -> Result<MappedOne, FhirError> {
    let r = Res {
        map: resource,
        at,
        index,
    };
    let mapped = if is_hearth_metadata(resource) {
        Mapped::Skip("written by a Hearth export: the entries carry it")
    } else if super::consent::is_exported_grant(resource) {
        Mapped::Skip("a grant written by a Hearth export: grants live in the consent ledger")
    } else if says_entered_in_error(resource) {
        // Whatever the type (those kept whole too): never an entry, perhaps a retraction.
        Mapped::Skip(IN_ERROR)
    } else {
        map_resource(&r, rt)?
    };
    let mut kept = None;
    let (section, mut body) = match mapped {
        Mapped::Skip(IN_ERROR) => {
            return Ok(match earlier_entry(resource, rt, full_url, existing) {
                Some(e) if existing.in_error.contains(&e) => {
                    MappedOne::Skip("marked entered in error, as the entry imported from it is")
                }
                Some(e) => MappedOne::Retract(e),
                None => MappedOne::Skip(IN_ERROR),
            });
        }
        Mapped::Skip(why) => return Ok(MappedOne::Skip(why)),
        Mapped::Typed(section, body) => (section, body),
        Mapped::Kept => {
            kept = Some(if ACTOR_TYPES.contains(&rt) || KNOWN_TYPES.contains(&rt) {
                Kept::Known
            } else {
                Kept::Unknown
            });
            (
                SectionName::new(SectionClass::Documents, Label::General),
                kept_body(&r, rt),
            )
        }
    };
    let section = SectionName::new(section.class, security_label(resource));
    read_hearth_extensions(resource, section.class, &mut body);

    // Validate the typed fields; errors name the FHIR field they came from.
    let paths = std::mem::take(&mut body.paths);
    let located = |e: crate::entry::SchemaError| {
        let key = e.field.split(['.', '[']).next().unwrap_or_default();
        let field = paths.iter().find(|(k, _)| k == key).map_or_else(
            || format!("({} field {})", section.class, e.field),
            |(_, p)| p.clone(),
        );
        FhirError::Resource {
            at: at.to_owned(),
            field,
            problem: e.problem,
        }
    };
    let normalised = EntryBody::from_json(section.class, &Value::Object(body.map))
        .map_err(located)?
        .to_json();
    let body_hash = body_sha256(&normalised);

    let identifiers = source_identifiers(resource);
    let mut source = Map::new();
    source.insert("format".into(), json!(SOURCE_FORMAT));
    source.insert("resource_type".into(), json!(rt));
    if let Some(id) = resource.get("id").and_then(Value::as_str) {
        source.insert("id".into(), json!(id));
    }
    if let Some(u) = full_url {
        source.insert("full_url".into(), json!(u));
    }
    if !identifiers.is_empty() {
        source.insert("identifiers".into(), Value::Array(identifiers));
    }
    source.insert("sha256".into(), json!(hash));
    source.insert("body_sha256".into(), json!(body_hash));
    let source = Value::Object(source);

    // An entry imported earlier from the same resource (by identity) gets a new version.
    let mut supersedes = None;
    for key in identity_keys_of_source(&source) {
        if let Some(v) = existing.identities.get(&key) {
            supersedes = Some(existing.current(*v));
            break;
        }
    }
    let mut full = normalised;
    if let Some(m) = full.as_object_mut() {
        m.insert("source".into(), source);
    }
    // The whole body, source and resource included, checked once: this is what is written.
    let checked =
        CheckedBody::with_resource_of_checked(section.class, &full, resource, resource_json)
            .map_err(located)?;
    Ok(MappedOne::Entry {
        kept,
        planned: PlannedEntry {
            section,
            body: full,
            checked,
            supersedes,
            resource_type: rt.to_owned(),
            entry_index: i,
        },
    })
}

/// Whether a resource says it was entered in error: its `status` (most types), `lifecycleStatus`
/// (a Goal) or `verificationStatus` (a Condition or an AllergyIntolerance).
fn says_entered_in_error(resource: &Map<String, Value>) -> bool {
    const EIE: &str = "entered-in-error";
    let text = |k: &str| resource.get(k).and_then(Value::as_str) == Some(EIE);
    let coded = resource
        .get("verificationStatus")
        .and_then(|v| v.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|x| x.get("code").and_then(Value::as_str) == Some(EIE))
        });
    text("status") || text("lifecycleStatus") || coded
}

/// Whether the resource is a Hearth export's own bookkeeping: a `Provenance` whose agents are
/// all Hearth devices (the entries it describes carry their provenance), or the placeholder
/// `Patient` naming only a record.
fn is_hearth_metadata(resource: &Map<String, Value>) -> bool {
    let ty = resource.get("resourceType").and_then(Value::as_str);
    match ty {
        Some("Provenance") => {
            let agents = resource.get("agent").and_then(Value::as_array);
            agents.is_some_and(|a| {
                !a.is_empty()
                    && a.iter().all(|x| {
                        x.pointer("/who/identifier/system").and_then(Value::as_str)
                            == Some(super::HEARTH_PEER_SYSTEM)
                    })
            })
        }
        Some("Patient") => {
            resource.get("name").is_none()
                && resource
                    .get("identifier")
                    .and_then(Value::as_array)
                    .is_some_and(|ids| {
                        ids.iter().all(|i| {
                            i.get("system").and_then(Value::as_str)
                                == Some(super::HEARTH_RECORD_SYSTEM)
                        })
                    })
        }
        _ => false,
    }
}

/// Whether the resource carries this record's own entry id (an export coming back).
fn is_own_export(resource: &Map<String, Value>, existing: &Existing) -> bool {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|ident| {
            ident.get("system").and_then(Value::as_str) == Some(HEARTH_ENTRY_SYSTEM)
                && ident
                    .get("value")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<EntryId>().ok())
                    .is_some_and(|id| existing.versions.contains(&id))
        })
}

/// Visits every JSON object in a resource with its path.
fn walk(
    map: &Map<String, Value>,
    path: &mut String,
    f: &mut impl FnMut(&str, &Map<String, Value>) -> Result<(), FhirError>,
) -> Result<(), FhirError> {
    f(path, map)?;
    for (k, v) in map {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        match v {
            Value::Object(m) => walk(m, path, f)?,
            Value::Array(items) => {
                let base = path.len();
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        let _ = write!(path, "[{i}]");
                        walk(m, path, f)?;
                        path.truncate(base);
                    }
                }
            }
            _ => {}
        }
        path.truncate(len);
    }
    Ok(())
}

/// Checks one object inside a resource: a reference must resolve, an extension must have a URL
/// (it is counted for the report).
fn check_node(
    index: &Index<'_>,
    resource: &Map<String, Value>,
    at: &str,
    path: &str,
    obj: &Map<String, Value>,
    extensions: &mut BTreeMap<String, usize>,
) -> Result<(), FhirError> {
    let err = |field: String, problem: &str| FhirError::Resource {
        at: at.to_owned(),
        field,
        problem: problem.to_owned(),
    };
    for key in ["extension", "modifierExtension"] {
        if let Some(list) = obj.get(key) {
            let field = |i: usize| {
                if path.is_empty() {
                    format!("{key}[{i}].url")
                } else {
                    format!("{path}.{key}[{i}].url")
                }
            };
            let items = list
                .as_array()
                .ok_or_else(|| err(field(0).replace("[0].url", ""), "must be a list"))?;
            for (i, x) in items.iter().enumerate() {
                match x.get("url").and_then(Value::as_str) {
                    Some(u) if is_absolute_uri(u) && u.len() <= 1024 => {
                        *extensions.entry(u.to_owned()).or_default() += 1;
                    }
                    _ => return Err(err(field(i), "must be an absolute URI")),
                }
            }
        }
    }
    // A Reference's `reference` is text; an element named `reference` whose value is an object
    // is itself of type Reference (`Consent.provision.actor.reference`), checked when visited.
    if let Some(r) = obj.get("reference").filter(|r| !r.is_object()) {
        let field = if path.is_empty() {
            "reference".to_owned()
        } else {
            format!("{path}.reference")
        };
        let Some(r) = r.as_str() else {
            return Err(err(field, "must be text"));
        };
        match resolve(index, resource, r) {
            Target::Local(_) | Target::Contained | Target::External => {}
            Target::Missing => {
                return Err(err(field, "refers to a resource that is not in the bundle"));
            }
            Target::Invalid => {
                return Err(err(
                    field,
                    "is not a valid reference (Type/id, a full URL, urn:uuid: or #contained)",
                ));
            }
        }
    }
    Ok(())
}

/// NHS numbers in `identifier` must be valid.
fn check_identifiers(resource: &Map<String, Value>, at: &str) -> Result<(), FhirError> {
    let Some(list) = resource.get("identifier") else {
        return Ok(());
    };
    let items = list.as_array().ok_or_else(|| FhirError::Resource {
        at: at.to_owned(),
        field: "identifier".into(),
        problem: "must be a list".into(),
    })?;
    for (i, ident) in items.iter().enumerate() {
        if ident.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM) {
            let value = ident.get("value").and_then(Value::as_str).unwrap_or("");
            value
                .parse::<NhsNumber>()
                .map_err(|e| FhirError::Resource {
                    at: at.to_owned(),
                    field: format!("identifier[{i}].value"),
                    problem: e.to_string(),
                })?;
        }
    }
    Ok(())
}

/// The sensitivity label from `meta.security` (HL7 v3 ActCode sensitivity codes).
fn security_label(resource: &Map<String, Value>) -> Label {
    let codes = resource
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str));
    for code in codes {
        match code {
            "PSY" | "PSYTHPN" | "BH" | "ETH" | "SUD" => return Label::MentalHealth,
            "HIV" | "STD" | "SDV" | "SEX" => return Label::SexualHealth,
            "SOC" => return Label::SocialCare,
            _ => {}
        }
    }
    Label::General
}

/// Resource types with a typed mapping.
const KNOWN_TYPES: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "AllergyIntolerance",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "Immunization",
    "Observation",
    "DiagnosticReport",
    "Encounter",
    "Procedure",
    "CarePlan",
    "CareTeam",
    "DocumentReference",
    "QuestionnaireResponse",
];

/// A body being built, with the FHIR path each field came from (for errors).
#[derive(Default)]
struct Body {
    map: Map<String, Value>,
    paths: Vec<(String, String)>,
}

impl Body {
    fn set(&mut self, key: &str, value: Option<Value>, from: &str) {
        if let Some(v) = value {
            self.map.insert(key.to_owned(), v);
            self.paths.push((key.to_owned(), from.to_owned()));
        }
    }
    fn text(&mut self, key: &str, value: Option<String>, from: &str) {
        self.set(key, value.map(|t| Value::String(clip(&t))), from);
    }
    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

enum Mapped {
    Typed(SectionName, Body),
    /// No typed home (or missing what the typed entry needs): keep the resource as a document.
    Kept,
    /// Not imported, with the reason.
    Skip(&'static str),
}

/// A resource being read.
struct Res<'a> {
    map: &'a Map<String, Value>,
    at: &'a str,
    index: &'a Index<'a>,
}

/// Text cut to the longest text field, without control characters other than tab and new line.
fn clip(t: &str) -> String {
    let t: String = t
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .take(MAX_TEXT_CHARS)
        .collect();
    t
}

fn nonblank(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

/// A CodeableConcept, checked.
#[derive(Default)]
struct Concept {
    text: Option<String>,
    /// (system, code, display) of the first coding with a system and a code.
    code: Option<(String, String, Option<String>)>,
    first_display: Option<String>,
    first_code: Option<String>,
}

impl Concept {
    /// Words for the concept: its text, else a display, else a code.
    fn words(&self) -> Option<String> {
        self.text
            .clone()
            .or_else(|| self.code.as_ref().and_then(|c| c.2.clone()))
            .or_else(|| self.first_display.clone())
            .or_else(|| self.first_code.clone())
    }

    fn code_json(&self) -> Option<Value> {
        self.code.as_ref().map(|(s, c, d)| {
            let mut m = Map::new();
            m.insert("system".into(), json!(s));
            m.insert("code".into(), json!(c));
            if let Some(d) = d {
                m.insert("display".into(), json!(clip(d)));
            }
            Value::Object(m)
        })
    }
}

impl Res<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> FhirError {
        FhirError::Resource {
            at: self.at.to_owned(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    fn get(&self, path: &str) -> Option<&Value> {
        get_path(self.map, path)
    }

    fn string(&self, path: &str) -> Result<Option<String>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(nonblank(Some(s))),
            Some(_) => Err(self.err(path, "must be text (a JSON string)")),
        }
    }

    fn boolean(&self, path: &str) -> Result<Option<bool>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(path, "must be true or false")),
        }
    }

    /// A FHIR `date`.
    fn date(&self, path: &str) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        check_date(&s).map_err(|p| self.err(path, fhir_date_problem(p)))?;
        Ok(Some(s))
    }

    /// A FHIR `dateTime` or `instant`.
    fn datetime(&self, path: &str) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        check_datetime(&s).map_err(|p| self.err(path, fhir_date_problem(p)))?;
        Ok(Some(s))
    }

    /// A `dateTime` cut to its date, for Hearth fields that hold dates.
    fn datetime_as_date(&self, path: &str) -> Result<Option<String>, FhirError> {
        Ok(self
            .datetime(path)?
            .map(|s| s.get(..10).map_or(s.clone(), str::to_owned)))
    }

    /// A `code` element from a required value set.
    fn code(&self, path: &str, allowed: &[&str]) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        if !allowed.contains(&s.as_str()) {
            return Err(self.err(path, format!("must be one of: {}", allowed.join(", "))));
        }
        Ok(Some(s))
    }

    /// A CodeableConcept at `path`, checked.
    fn concept(&self, path: &str) -> Result<Option<Concept>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => concept_at(v, path, self).map(Some),
        }
    }

    /// The code of the first coding of a CodeableConcept whose system is `system` (a required
    /// status value set), checked against `allowed`.
    fn status_concept(&self, path: &str, allowed: &[&str]) -> Result<Option<String>, FhirError> {
        let Some(c) = self.concept(path)? else {
            return Ok(None);
        };
        let Some(code) = c.code.map(|c| c.1).or(c.first_code) else {
            return Ok(None);
        };
        if !allowed.contains(&code.as_str()) {
            return Err(self.err(
                &format!("{path}.coding[0].code"),
                format!("must be one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Some(code))
    }

    fn list(&self, path: &str) -> Result<&[Value], FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.err(path, "must be a list")),
        }
    }

    /// Words for a Reference: its display, else the referenced resource's name.
    fn reference_words(&self, path: &str) -> Option<String> {
        let r = self.get(path)?;
        if let Some(d) = nonblank(r.get("display").and_then(Value::as_str)) {
            return Some(d);
        }
        let target = r.get("reference").and_then(Value::as_str)?;
        match resolve(self.index, self.map, target) {
            Target::Local(i) => self.index.resource(i).and_then(display_name),
            _ => None,
        }
    }

    /// The referenced resource, when it is in the bundle.
    fn referenced(&self, path: &str) -> Option<&Map<String, Value>> {
        let target = self.get(path)?.get("reference").and_then(Value::as_str)?;
        match resolve(self.index, self.map, target) {
            Target::Local(i) => self.index.resource(i),
            _ => None,
        }
    }

    /// Annotation texts, joined.
    fn notes(&self, path: &str) -> Result<Option<String>, FhirError> {
        let mut out = Vec::new();
        for (i, n) in self.list(path)?.iter().enumerate() {
            match n.get("text") {
                Some(Value::String(s)) if !s.trim().is_empty() => out.push(s.clone()),
                Some(Value::String(_)) | None => {}
                Some(_) => return Err(self.err(&format!("{path}[{i}].text"), "must be text")),
            }
        }
        Ok((!out.is_empty()).then(|| out.join("\n\n")))
    }

    /// Words for the first CodeableConcept of a list.
    fn first_concept_words(&self, path: &str) -> Result<Option<String>, FhirError> {
        if self.list(path)?.is_empty() {
            return Ok(None);
        }
        Ok(self.concept(&format!("{path}[0]"))?.and_then(|c| c.words()))
    }
}

fn fhir_date_problem(p: &str) -> String {
    if p.contains("real") {
        p.to_owned()
    } else {
        "must be a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime with a time zone \
         (e.g. 2024-05-01T14:30:00Z)"
            .to_owned()
    }
}

/// Follows a path like `reaction[0].manifestation` through objects and lists.
fn get_path<'v>(map: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut cur: Option<&Value> = None;
    for (n, seg) in path.split('.').enumerate() {
        let (key, idx) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let next = if n == 0 { map.get(key) } else { cur?.get(key) };
        cur = match idx {
            Some(i) => next?.get(i),
            None => next,
        };
    }
    cur
}

fn concept_at(v: &Value, path: &str, r: &Res<'_>) -> Result<Concept, FhirError> {
    let o = v
        .as_object()
        .ok_or_else(|| r.err(path, "must be a CodeableConcept (a JSON object)"))?;
    let mut c = Concept {
        text: match o.get("text") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => nonblank(Some(s)),
            Some(_) => return Err(r.err(&format!("{path}.text"), "must be text")),
        },
        ..Concept::default()
    };
    let codings = match o.get("coding") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(r.err(&format!("{path}.coding"), "must be a list")),
    };
    for (i, coding) in codings.iter().enumerate() {
        let (system, code, display) = check_coding(coding, &format!("{path}.coding[{i}]"), r)?;
        if c.first_display.is_none() {
            c.first_display = display.clone();
        }
        if c.first_code.is_none() {
            c.first_code = code.clone();
        }
        if c.code.is_none()
            && let (Some(s), Some(k)) = (system, code)
        {
            c.code = Some((s, k, display));
        }
    }
    Ok(c)
}

/// Checks a Coding: system a URI, code without surrounding white space.
#[allow(clippy::type_complexity)]
fn check_coding(
    v: &Value,
    path: &str,
    r: &Res<'_>,
) -> Result<(Option<String>, Option<String>, Option<String>), FhirError> {
    let o = v
        .as_object()
        .ok_or_else(|| r.err(path, "must be a Coding (a JSON object)"))?;
    let text = |k: &str| -> Result<Option<String>, FhirError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(r.err(&format!("{path}.{k}"), "must be text")),
        }
    };
    let system = text("system")?;
    if let Some(s) = &system
        && (!is_absolute_uri(s) || s.len() > 256)
    {
        return Err(r.err(&format!("{path}.system"), "must be an absolute URI"));
    }
    let code = text("code")?;
    if let Some(k) = &code
        && (k.is_empty()
            || k.len() > 256
            || k.trim() != k
            || k.contains("  ")
            || k.chars().any(|c| c.is_control()))
    {
        return Err(r.err(
            &format!("{path}.code"),
            "is not a valid code (no white space at either end, no double spaces, at most 256 characters)",
        ));
    }
    Ok((system, code, nonblank(text("display")?.as_deref())))
}

/// A person's or organisation's name for display.
fn display_name(r: &Map<String, Value>) -> Option<String> {
    match r.get("name") {
        Some(Value::String(s)) => nonblank(Some(s)),
        Some(Value::Array(names)) => {
            let chosen = names
                .iter()
                .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
                .or_else(|| names.first())?;
            human_name(chosen)
        }
        _ => None,
    }
}

fn human_name(n: &Value) -> Option<String> {
    if let Some(t) = nonblank(n.get("text").and_then(Value::as_str)) {
        return Some(t);
    }
    let mut parts: Vec<String> = Vec::new();
    for key in ["prefix", "given"] {
        for p in n.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = p.as_str() {
                parts.push(s.to_owned());
            }
        }
    }
    if let Some(f) = n.get("family").and_then(Value::as_str) {
        parts.push(f.to_owned());
    }
    for p in n
        .get("suffix")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = p.as_str() {
            parts.push(s.to_owned());
        }
    }
    let joined = parts.join(" ");
    nonblank(Some(joined.trim()))
}

fn typed(class: SectionClass, body: Body) -> Mapped {
    Mapped::Typed(SectionName::new(class, Label::General), body)
}

fn map_resource(r: &Res<'_>, rt: &str) -> Result<Mapped, FhirError> {
    match rt {
        "Patient" => patient(r),
        "RelatedPerson" => related_person(r),
        "AllergyIntolerance" => allergy(r),
        "Condition" => condition(r),
        "MedicationStatement" => medication_statement(r),
        "MedicationRequest" => medication_request(r),
        "Immunization" => immunization(r),
        "Observation" => observation(r),
        "DiagnosticReport" => diagnostic_report(r),
        "Encounter" => encounter(r),
        "Procedure" => procedure(r),
        "CarePlan" => care_plan(r),
        "CareTeam" => care_team(r),
        "DocumentReference" => document_reference(r),
        "QuestionnaireResponse" => questionnaire_response(r),
        _ => Ok(Mapped::Kept),
    }
}

/// A `documents` entry that holds a resource with no typed home.
fn kept_body(r: &Res<'_>, rt: &str) -> Body {
    let mut b = Body::default();
    let title = match display_name(r.map) {
        Some(n) => format!("{rt}: {n}"),
        None => rt.to_owned(),
    };
    b.text("title", Some(title), "name");
    b.set(
        "content_type",
        Some(json!("application/fhir+json")),
        "resourceType",
    );
    b
}

fn patient(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let mut b = Body::default();
    let Some(name) = display_name(r.map) else {
        return Ok(Mapped::Kept);
    };
    b.text("name", Some(name), "name");
    b.set(
        "birth_date",
        r.date("birthDate")?.map(Value::from),
        "birthDate",
    );
    b.set(
        "gender",
        r.code("gender", &["male", "female", "other", "unknown"])?
            .map(Value::from),
        "gender",
    );
    for (i, ident) in r.list("identifier")?.iter().enumerate() {
        if ident.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM)
            && !b.has("nhs_number")
        {
            b.set(
                "nhs_number",
                ident.get("value").cloned(),
                &format!("identifier[{i}].value"),
            );
        }
    }
    if let Some(addr) = r.list("address")?.first() {
        let mut parts: Vec<String> = Vec::new();
        if let Some(t) = nonblank(addr.get("text").and_then(Value::as_str)) {
            parts.push(t);
        } else {
            for l in addr
                .get("line")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(s) = nonblank(l.as_str()) {
                    parts.push(s);
                }
            }
            for k in ["city", "district", "state"] {
                if let Some(s) = nonblank(addr.get(k).and_then(Value::as_str)) {
                    parts.push(s);
                }
            }
        }
        b.text(
            "address",
            (!parts.is_empty()).then(|| parts.join(", ")),
            "address[0]",
        );
        b.text(
            "postcode",
            nonblank(addr.get("postalCode").and_then(Value::as_str)),
            "address[0].postalCode",
        );
    }
    telecom(r, &mut b)?;
    if !r.list("communication")?.is_empty() {
        b.text(
            "preferred_language",
            r.concept("communication[0].language")?
                .and_then(|c| c.words()),
            "communication[0].language",
        );
    }
    if !r.list("generalPractitioner")?.is_empty() {
        b.text(
            "gp_practice",
            r.reference_words("generalPractitioner[0]"),
            "generalPractitioner[0]",
        );
    }
    Ok(typed(SectionClass::Demographics, b))
}

fn telecom(r: &Res<'_>, b: &mut Body) -> Result<(), FhirError> {
    for (i, t) in r.list("telecom")?.iter().enumerate() {
        let system = t.get("system").and_then(Value::as_str);
        let value = nonblank(t.get("value").and_then(Value::as_str));
        match system {
            Some("phone" | "sms") if !b.has("phone") => {
                b.text("phone", value, &format!("telecom[{i}].value"));
            }
            Some("email") if !b.has("email") => {
                b.text("email", value, &format!("telecom[{i}].value"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn related_person(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let mut b = Body::default();
    let (Some(name), Some(rel)) = (display_name(r.map), r.first_concept_words("relationship")?)
    else {
        return Ok(Mapped::Kept);
    };
    b.text("name", Some(name), "name");
    b.text("relationship", Some(rel), "relationship[0]");
    telecom(r, &mut b)?;
    Ok(typed(SectionClass::Carers, b))
}

fn allergy(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const VER: &[&str] = &["unconfirmed", "confirmed", "refuted", "entered-in-error"];
    let mut b = Body::default();
    let verification = r.status_concept("verificationStatus", VER)?;
    if verification.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let code = r.concept("code")?;
    let substance = match code.as_ref().and_then(Concept::words) {
        Some(s) => s,
        None => match r.concept("reaction[0].substance")?.and_then(|c| c.words()) {
            Some(s) => s,
            None => return Ok(Mapped::Kept),
        },
    };
    b.text("substance", Some(substance), "code");
    b.set("code", code.as_ref().and_then(Concept::code_json), "code");
    let cats = r.list("category")?;
    if !cats.is_empty() {
        b.set(
            "category",
            r.code(
                "category[0]",
                &["food", "medication", "environment", "biologic"],
            )?
            .map(Value::from),
            "category[0]",
        );
    }
    b.set(
        "criticality",
        r.code("criticality", &["low", "high", "unable-to-assess"])?
            .map(Value::from),
        "criticality",
    );
    b.set(
        "clinical_status",
        r.status_concept("clinicalStatus", &["active", "inactive", "resolved"])?
            .map(Value::from),
        "clinicalStatus",
    );
    b.set(
        "verification_status",
        verification.map(Value::from),
        "verificationStatus",
    );
    if !r.list("reaction")?.is_empty() {
        let mut words = Vec::new();
        for i in 0..r.list("reaction[0].manifestation")?.len() {
            if let Some(w) = r
                .concept(&format!("reaction[0].manifestation[{i}]"))?
                .and_then(|c| c.words())
            {
                words.push(w);
            }
        }
        b.text(
            "reaction",
            (!words.is_empty()).then(|| words.join(", ")),
            "reaction[0].manifestation",
        );
        b.set(
            "severity",
            r.code("reaction[0].severity", &["mild", "moderate", "severe"])?
                .map(Value::from),
            "reaction[0].severity",
        );
    }
    b.set(
        "onset",
        r.datetime_as_date("onsetDateTime")?.map(Value::from),
        "onsetDateTime",
    );
    if !b.has("onset") {
        b.set(
            "onset",
            r.datetime_as_date("onsetPeriod.start")?.map(Value::from),
            "onsetPeriod.start",
        );
    }
    r.datetime("recordedDate")?;
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Allergies, b))
}

fn condition(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const CLIN: &[&str] = &[
        "active",
        "recurrence",
        "relapse",
        "inactive",
        "remission",
        "resolved",
    ];
    const VER: &[&str] = &[
        "unconfirmed",
        "provisional",
        "differential",
        "confirmed",
        "refuted",
        "entered-in-error",
    ];
    let mut b = Body::default();
    let verification = r.status_concept("verificationStatus", VER)?;
    if verification.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let code = r.concept("code")?;
    let Some(name) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    b.text("name", Some(name), "code");
    b.set("code", code.as_ref().and_then(Concept::code_json), "code");
    b.set(
        "clinical_status",
        r.status_concept("clinicalStatus", CLIN)?.map(Value::from),
        "clinicalStatus",
    );
    b.set(
        "verification_status",
        verification.map(Value::from),
        "verificationStatus",
    );
    let severity = r
        .concept("severity")?
        .and_then(|c| c.words())
        .map(|w| w.to_lowercase())
        .filter(|w| ["mild", "moderate", "severe"].contains(&w.as_str()));
    b.set("severity", severity.map(Value::from), "severity");
    for (key, field) in [("onset", "onset"), ("abatement", "abatement")] {
        let dt = format!("{field}DateTime");
        let v = match r.datetime_as_date(&dt)? {
            Some(v) => Some((v, dt)),
            None => {
                let p = format!("{field}Period.start");
                r.datetime_as_date(&p)?.map(|v| (v, p))
            }
        };
        if let Some((v, p)) = v {
            b.set(key, Some(Value::from(v)), &p);
        }
    }
    r.datetime("recordedDate")?;
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Conditions, b))
}

/// Medicine name and code from `medicationCodeableConcept` or a referenced Medication.
fn medicine(r: &Res<'_>, b: &mut Body) -> Result<bool, FhirError> {
    let concept = match r.concept("medicationCodeableConcept")? {
        Some(c) => Some((c, "medicationCodeableConcept")),
        None => match r.referenced("medicationReference") {
            Some(m) => {
                let sub = Res {
                    map: m,
                    at: r.at,
                    index: r.index,
                };
                sub.concept("code")?.map(|c| (c, "medicationReference"))
            }
            None => None,
        },
    };
    let name = concept
        .as_ref()
        .and_then(|(c, _)| c.words())
        .or_else(|| r.reference_words("medicationReference"));
    let Some(name) = name else {
        return Ok(false);
    };
    let from = concept.as_ref().map_or("medicationReference", |(_, p)| p);
    b.text("name", Some(name), from);
    b.set(
        "code",
        concept.as_ref().and_then(|(c, _)| c.code_json()),
        from,
    );
    Ok(true)
}

fn dosage(r: &Res<'_>, path: &str, b: &mut Body) -> Result<(), FhirError> {
    if r.list(path)?.is_empty() {
        return Ok(());
    }
    let d = format!("{path}[0]");
    b.text(
        "dose",
        r.string(&format!("{d}.text"))?,
        &format!("{d}.text"),
    );
    b.text(
        "route",
        r.concept(&format!("{d}.route"))?.and_then(|c| c.words()),
        &format!("{d}.route"),
    );
    let freq = match r
        .concept(&format!("{d}.timing.code"))?
        .and_then(|c| c.words())
    {
        Some(w) => Some(w),
        None => {
            let rep = r.get(&format!("{d}.timing.repeat"));
            match (
                rep.and_then(|x| x.get("frequency")).and_then(Value::as_f64),
                rep.and_then(|x| x.get("period")).and_then(Value::as_f64),
                rep.and_then(|x| x.get("periodUnit"))
                    .and_then(Value::as_str),
            ) {
                (Some(f), Some(p), Some(u)) => Some(format!("{f} times per {p} {u}")),
                _ => None,
            }
        }
    };
    b.text("frequency", freq, &format!("{d}.timing"));
    Ok(())
}

fn medication_statement(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    if !medicine(r, &mut b)? {
        return Ok(Mapped::Kept);
    }
    let status = match status.as_deref() {
        Some("not-taken") => Some("stopped"),
        Some("unknown") | None => None,
        Some(s) => ST.iter().find(|x| **x == s).copied(),
    };
    b.set("status", status.map(Value::from), "status");
    if let Some(d) = r.datetime_as_date("effectiveDateTime")? {
        b.set("start", Some(d.into()), "effectiveDateTime");
    } else {
        b.set(
            "start",
            r.datetime_as_date("effectivePeriod.start")?
                .map(Value::from),
            "effectivePeriod.start",
        );
        b.set(
            "end",
            r.datetime_as_date("effectivePeriod.end")?.map(Value::from),
            "effectivePeriod.end",
        );
    }
    dosage(r, "dosage", &mut b)?;
    b.text(
        "reason",
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]",
    );
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Medications, b))
}

fn medication_request(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    if !medicine(r, &mut b)? {
        return Ok(Mapped::Kept);
    }
    let status = match status.as_deref() {
        Some("active") => Some("active"),
        Some("on-hold") => Some("on-hold"),
        Some("cancelled" | "stopped") => Some("stopped"),
        Some("completed") => Some("completed"),
        Some("draft") => Some("intended"),
        _ => None,
    };
    b.set("status", status.map(Value::from), "status");
    b.set(
        "start",
        r.datetime_as_date("authoredOn")?.map(Value::from),
        "authoredOn",
    );
    dosage(r, "dosageInstruction", &mut b)?;
    b.text(
        "reason",
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]",
    );
    b.text("prescriber", r.reference_words("requester"), "requester");
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Medications, b))
}

fn immunization(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = r.code("status", &["completed", "entered-in-error", "not-done"])?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let code = r.concept("vaccineCode")?;
    let Some(name) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    b.text("name", Some(name), "vaccineCode");
    b.set(
        "code",
        code.as_ref().and_then(Concept::code_json),
        "vaccineCode",
    );
    b.set(
        "status",
        status
            .map(|s| {
                if s == "not-done" {
                    "stopped"
                } else {
                    "completed"
                }
            })
            .map(Value::from),
        "status",
    );
    let when = r.datetime_as_date("occurrenceDateTime")?;
    b.set("start", when.clone().map(Value::from), "occurrenceDateTime");
    b.set("end", when.map(Value::from), "occurrenceDateTime");
    b.text(
        "route",
        r.concept("route")?.and_then(|c| c.words()),
        "route",
    );
    if let (Some(v), u) = (
        r.get("doseQuantity.value").and_then(Value::as_f64),
        r.string("doseQuantity.unit")?,
    ) {
        let dose = match u {
            Some(u) => format!("{v} {u}"),
            None => v.to_string(),
        };
        b.text("dose", Some(dose), "doseQuantity");
    }
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Medications, b))
}

/// A value[x] read: (value, unit, value_text, path).
type ReadValue = (Option<Value>, Option<String>, Option<String>, String);

/// A value[x] of an Observation or component: (value, unit, value_text, path).
fn obs_value(r: &Res<'_>, base: &str) -> Result<ReadValue, FhirError> {
    let p = |k: &str| {
        if base.is_empty() {
            k.to_owned()
        } else {
            format!("{base}.{k}")
        }
    };
    if let Some(q) = r.get(&p("valueQuantity")) {
        let path = p("valueQuantity");
        let value = match q.get("value") {
            Some(Value::Number(n)) => Some(Value::Number(n.clone())),
            None | Some(Value::Null) => None,
            Some(_) => return Err(r.err(&format!("{path}.value"), "must be a number")),
        };
        let unit_code = r.string(&format!("{path}.code"))?;
        let unit_text = r.string(&format!("{path}.unit"))?;
        let ucum = r.string(&format!("{path}.system"))?.as_deref() == Some(UCUM);
        let unit = if ucum {
            unit_code.or(unit_text)
        } else {
            unit_text.or(unit_code)
        };
        return Ok(match value {
            Some(v) => (Some(v), unit, None, path),
            None => (None, None, Some("no value recorded".to_owned()), path),
        });
    }
    if let Some(v) = r.get(&p("valueInteger")) {
        let path = p("valueInteger");
        if !v.is_i64() {
            return Err(r.err(&path, "must be a whole number"));
        }
        return Ok((Some(v.clone()), None, None, path));
    }
    if let Some(s) = r.string(&p("valueString"))? {
        return Ok((None, None, Some(s), p("valueString")));
    }
    if let Some(c) = r.concept(&p("valueCodeableConcept"))? {
        return Ok((None, None, c.words(), p("valueCodeableConcept")));
    }
    if let Some(v) = r.boolean(&p("valueBoolean"))? {
        let t = if v { "yes" } else { "no" };
        return Ok((None, None, Some(t.to_owned()), p("valueBoolean")));
    }
    if let Some(d) = r.datetime(&p("valueDateTime"))? {
        return Ok((None, None, Some(d), p("valueDateTime")));
    }
    for k in [
        "valueTime",
        "valueRange",
        "valueRatio",
        "valuePeriod",
        "valueSampledData",
    ] {
        if let Some(v) = r.get(&p(k)) {
            return Ok((None, None, Some(compact_words(v)), p(k)));
        }
    }
    if let Some(c) = r.concept(&p("dataAbsentReason"))? {
        let why = c.words().unwrap_or_else(|| "unknown".to_owned());
        return Ok((
            None,
            None,
            Some(format!("no value: {why}")),
            p("dataAbsentReason"),
        ));
    }
    Ok((None, None, None, p("value")))
}

/// Scalars of a complex value in words, e.g. a Range as `low 3 mmol/L, high 5 mmol/L`.
fn compact_words(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", compact_words(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The UCUM system URI.
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

fn observation(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let code = r.concept("code")?;
    let Some(name) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    b.text("name", Some(name), "code");
    b.set("code", code.as_ref().and_then(Concept::code_json), "code");
    let status = match status.as_deref() {
        Some("corrected") => Some("amended"),
        Some(s @ ("registered" | "preliminary" | "final" | "amended")) => Some(s),
        _ => None,
    };
    b.set("status", status.map(Value::from), "status");
    let (value, unit, text, path) = obs_value(r, "")?;
    b.set("value", value, &path);
    b.text("unit", unit, &path);
    b.text("value_text", text, &path);
    let mut components = Vec::new();
    for i in 0..r.list("component")?.len().min(MAX_LIST_ITEMS) {
        let cp = format!("component[{i}]");
        let cc = r.concept(&format!("{cp}.code"))?;
        let mut c = Map::new();
        c.insert(
            "name".into(),
            json!(clip(
                &cc.as_ref()
                    .and_then(Concept::words)
                    .unwrap_or_else(|| "component".to_owned())
            )),
        );
        if let Some(code) = cc.as_ref().and_then(Concept::code_json) {
            c.insert("code".into(), code);
        }
        let (value, unit, text, _) = obs_value(r, &cp)?;
        if let Some(v) = value {
            c.insert("value".into(), v);
        }
        if let Some(u) = unit {
            c.insert("unit".into(), json!(clip(&u)));
        }
        let text = if c.contains_key("value") {
            text
        } else {
            text.or_else(|| Some("no value recorded".to_owned()))
        };
        if let Some(t) = text {
            c.insert("value_text".into(), json!(clip(&t)));
        }
        components.push(Value::Object(c));
    }
    if !components.is_empty() {
        b.set("components", Some(Value::Array(components)), "component");
    }
    if !b.has("value") && !b.has("value_text") && !b.has("components") {
        let members = r.list("hasMember")?.len();
        let t = if members > 0 {
            format!("a panel of {members} results")
        } else {
            "no value recorded".to_owned()
        };
        b.text("value_text", Some(t), "hasMember");
    }
    if let Some(e) = r.datetime("effectiveDateTime")? {
        b.set("effective", Some(e.into()), "effectiveDateTime");
    } else if let Some(e) = r.datetime("effectiveInstant")? {
        b.set("effective", Some(e.into()), "effectiveInstant");
    } else {
        b.set(
            "effective",
            r.datetime("effectivePeriod.start")?.map(Value::from),
            "effectivePeriod.start",
        );
    }
    r.datetime("issued")?;
    b.text(
        "interpretation",
        r.first_concept_words("interpretation")?,
        "interpretation[0]",
    );
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Observations, b))
}

fn diagnostic_report(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    ];
    if r.code("status", ST)?.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let code = r.concept("code")?;
    let Some(title) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    b.text("title", Some(title), "code");
    b.set("code", code.as_ref().and_then(Concept::code_json), "code");
    let date = match r.datetime_as_date("effectiveDateTime")? {
        Some(d) => Some((d, "effectiveDateTime")),
        None => match r.datetime_as_date("effectivePeriod.start")? {
            Some(d) => Some((d, "effectivePeriod.start")),
            None => r.datetime_as_date("issued")?.map(|d| (d, "issued")),
        },
    };
    if let Some((d, p)) = date {
        b.set("date", Some(d.into()), p);
    }
    r.datetime("issued")?;
    b.text("description", r.string("conclusion")?, "conclusion");
    if !r.list("presentedForm")?.is_empty() {
        attachment(r, "presentedForm[0]", &mut b)?;
    }
    Ok(typed(SectionClass::Documents, b))
}

fn attachment(r: &Res<'_>, path: &str, b: &mut Body) -> Result<(), FhirError> {
    let ct = r.string(&format!("{path}.contentType"))?;
    let data = r.string(&format!("{path}.data"))?;
    let url = r.string(&format!("{path}.url"))?;
    b.set(
        "content_type",
        ct.map(Value::from),
        &format!("{path}.contentType"),
    );
    b.set(
        "data_base64",
        data.map(Value::from),
        &format!("{path}.data"),
    );
    b.set("url", url.map(Value::from), &format!("{path}.url"));
    Ok(())
}

fn encounter(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let class = match r.get("class") {
        Some(c) => {
            let (_, code, display) = check_coding(c, "class", r)?;
            display.or(code)
        }
        None => None,
    };
    let types = r.list("type")?;
    let type_concept = if types.is_empty() {
        None
    } else {
        r.concept("type[0]")?
    };
    let class = class.or_else(|| type_concept.as_ref().and_then(Concept::words));
    let start = r.datetime("period.start")?;
    let (Some(class), Some(start)) = (class, start) else {
        return Ok(Mapped::Kept);
    };
    b.text("class", Some(class), "class");
    b.set(
        "code",
        type_concept.as_ref().and_then(Concept::code_json),
        "type[0]",
    );
    let status = match status.as_deref() {
        Some("planned") => Some("planned"),
        Some("arrived" | "triaged" | "in-progress" | "onleave") => Some("in-progress"),
        Some("finished") => Some("finished"),
        Some("cancelled") => Some("cancelled"),
        _ => None,
    };
    b.set("status", status.map(Value::from), "status");
    b.text(
        "reason",
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]",
    );
    b.set("start", Some(start.into()), "period.start");
    b.set(
        "end",
        r.datetime("period.end")?.map(Value::from),
        "period.end",
    );
    if !r.list("location")?.is_empty() {
        b.text(
            "location",
            r.reference_words("location[0].location"),
            "location[0].location",
        );
    }
    if !r.list("participant")?.is_empty() {
        b.text(
            "practitioner",
            r.reference_words("participant[0].individual"),
            "participant[0].individual",
        );
    }
    b.text(
        "outcome",
        r.concept("hospitalization.dischargeDisposition")?
            .and_then(|c| c.words()),
        "hospitalization.dischargeDisposition",
    );
    Ok(typed(SectionClass::Encounters, b))
}

fn procedure(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let code = r.concept("code")?;
    let start = match r.datetime("performedDateTime")? {
        Some(s) => Some((s, "performedDateTime")),
        None => r
            .datetime("performedPeriod.start")?
            .map(|s| (s, "performedPeriod.start")),
    };
    let Some((start, from)) = start else {
        return Ok(Mapped::Kept);
    };
    let class = match code.as_ref().and_then(Concept::words) {
        Some(w) => format!("procedure: {w}"),
        None => "procedure".to_owned(),
    };
    b.text("class", Some(class), "code");
    b.set("code", code.as_ref().and_then(Concept::code_json), "code");
    let status = match status.as_deref() {
        Some("preparation") => Some("planned"),
        Some("in-progress" | "on-hold") => Some("in-progress"),
        Some("not-done" | "stopped") => Some("cancelled"),
        Some("completed") => Some("finished"),
        _ => None,
    };
    b.set("status", status.map(Value::from), "status");
    b.text(
        "reason",
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]",
    );
    b.set("start", Some(start.into()), from);
    b.set(
        "end",
        r.datetime("performedPeriod.end")?.map(Value::from),
        "performedPeriod.end",
    );
    b.text("location", r.reference_words("location"), "location");
    if !r.list("performer")?.is_empty() {
        b.text(
            "practitioner",
            r.reference_words("performer[0].actor"),
            "performer[0].actor",
        );
    }
    b.text(
        "outcome",
        r.concept("outcome")?.and_then(|c| c.words()),
        "outcome",
    );
    b.text("note", r.notes("note")?, "note");
    Ok(typed(SectionClass::Encounters, b))
}

fn plan_status(s: Option<&str>) -> Option<&'static str> {
    match s {
        Some("draft") => Some("draft"),
        Some("active") => Some("active"),
        Some("on-hold") => Some("on-hold"),
        Some("revoked") => Some("revoked"),
        Some("completed") => Some("completed"),
        _ => None,
    }
}

fn care_plan(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let title = match r.string("title")? {
        Some(t) => Some((t, "title")),
        None => r
            .first_concept_words("category")?
            .map(|t| (t, "category[0]")),
    };
    let (title, from) = title.unwrap_or_else(|| ("Care plan".to_owned(), "title"));
    b.text("title", Some(title), from);
    b.text("description", r.string("description")?, "description");
    b.set(
        "status",
        plan_status(status.as_deref()).map(Value::from),
        "status",
    );
    let mut goals = Vec::new();
    for i in 0..r.list("goal")?.len().min(MAX_LIST_ITEMS) {
        let p = format!("goal[{i}]");
        let words = match r.referenced(&p) {
            Some(g) => {
                let sub = Res {
                    map: g,
                    at: r.at,
                    index: r.index,
                };
                sub.concept("description")?.and_then(|c| c.words())
            }
            None => None,
        }
        .or_else(|| r.reference_words(&p));
        if let Some(w) = words {
            goals.push(json!(clip(&w)));
        }
    }
    if !goals.is_empty() {
        b.set("goals", Some(Value::Array(goals)), "goal");
    }
    let mut activities = Vec::new();
    for i in 0..r.list("activity")?.len().min(MAX_LIST_ITEMS) {
        let p = format!("activity[{i}]");
        let words = match r.string(&format!("{p}.detail.description"))? {
            Some(d) => Some(d),
            None => r
                .concept(&format!("{p}.detail.code"))?
                .and_then(|c| c.words())
                .or_else(|| r.reference_words(&format!("{p}.reference"))),
        };
        if let Some(w) = words {
            activities.push(json!(clip(&w)));
        }
    }
    if !activities.is_empty() {
        b.set("activities", Some(Value::Array(activities)), "activity");
    }
    b.set(
        "start",
        r.datetime_as_date("period.start")?.map(Value::from),
        "period.start",
    );
    b.set(
        "end",
        r.datetime_as_date("period.end")?.map(Value::from),
        "period.end",
    );
    Ok(typed(SectionClass::CarePlan, b))
}

fn care_team(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = r.code(
        "status",
        &[
            "proposed",
            "active",
            "suspended",
            "inactive",
            "entered-in-error",
        ],
    )?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let mut lines = Vec::new();
    for i in 0..r.list("participant")?.len() {
        let p = format!("participant[{i}]");
        let who = r.reference_words(&format!("{p}.member"));
        let role = r.first_concept_words(&format!("{p}.role"))?;
        match (role, who) {
            (Some(role), Some(who)) => lines.push(format!("{role}: {who}")),
            (None, Some(who)) => lines.push(who),
            (Some(role), None) => lines.push(role),
            (None, None) => {}
        }
    }
    let name = r.string("name")?;
    let text = if lines.is_empty() {
        name.clone().unwrap_or_else(|| "Care team".to_owned())
    } else {
        lines.join("\n")
    };
    b.text("text", Some(text), "participant");
    b.text(
        "title",
        Some(name.unwrap_or_else(|| "Care team".to_owned())),
        "name",
    );
    b.text("category", Some("care team".to_owned()), "resourceType");
    Ok(typed(SectionClass::Notes, b))
}

fn document_reference(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = r.code("status", &["current", "superseded", "entered-in-error"])?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Body::default();
    let doc_type = r.concept("type")?;
    b.set(
        "code",
        doc_type.as_ref().and_then(Concept::code_json),
        "type",
    );
    let title = match r.string("content[0].attachment.title")? {
        Some(t) => Some((t, "content[0].attachment.title")),
        None => match doc_type.as_ref().and_then(Concept::words) {
            Some(t) => Some((t, "type")),
            None => r.string("description")?.map(|t| (t, "description")),
        },
    };
    let (title, from) = title.unwrap_or_else(|| ("Document".to_owned(), "type"));
    b.text("title", Some(title), from);
    b.set("date", r.datetime_as_date("date")?.map(Value::from), "date");
    b.text("description", r.string("description")?, "description");
    if !r.list("content")?.is_empty() {
        attachment(r, "content[0].attachment", &mut b)?;
    }
    Ok(typed(SectionClass::Documents, b))
}

fn questionnaire_response(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = r.code(
        "status",
        &[
            "in-progress",
            "completed",
            "amended",
            "entered-in-error",
            "stopped",
        ],
    )?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    r.datetime("authored")?;
    let mut b = Body::default();
    let mut lines = Vec::new();
    answers(r, "item", 0, &mut lines)?;
    let text = if lines.is_empty() {
        "(no answers)".to_owned()
    } else {
        lines.join("\n")
    };
    b.text("text", Some(text), "item");
    let title = r
        .string("questionnaire")?
        .and_then(|q| q.rsplit('/').next().map(str::to_owned))
        .map(|q| format!("Questionnaire response: {q}"))
        .unwrap_or_else(|| "Questionnaire response".to_owned());
    b.text("title", Some(title), "questionnaire");
    b.text(
        "category",
        Some("questionnaire response".to_owned()),
        "resourceType",
    );
    Ok(typed(SectionClass::Notes, b))
}

fn answers(r: &Res<'_>, path: &str, depth: usize, out: &mut Vec<String>) -> Result<(), FhirError> {
    if depth > 8 {
        return Ok(());
    }
    for i in 0..r.list(path)?.len() {
        let p = format!("{path}[{i}]");
        let q = r
            .string(&format!("{p}.text"))?
            .or(r.string(&format!("{p}.linkId"))?)
            .unwrap_or_default();
        let mut words = Vec::new();
        for j in 0..r.list(&format!("{p}.answer"))?.len() {
            let a = format!("{p}.answer[{j}]");
            let (value, unit, text, _) = obs_value(r, &a)?;
            let w = match (value, text) {
                (Some(v), _) => match unit {
                    Some(u) => format!("{v} {u}"),
                    None => v.to_string(),
                },
                (None, Some(t)) => t,
                (None, None) => match r.get(&format!("{a}.valueCoding")) {
                    Some(c) => {
                        let (_, code, display) = check_coding(c, &format!("{a}.valueCoding"), r)?;
                        display.or(code).unwrap_or_default()
                    }
                    None => r.date(&format!("{a}.valueDate"))?.unwrap_or_default(),
                },
            };
            if !w.is_empty() {
                words.push(w);
            }
            answers(r, &format!("{a}.item"), depth + 1, out)?;
        }
        if !q.is_empty() || !words.is_empty() {
            out.push(format!("{q}: {}", words.join("; ")));
        }
        answers(r, &format!("{p}.item"), depth + 1, out)?;
    }
    Ok(())
}

/// Reads Hearth's own field extensions (`urn:hearth:field:<class>:<field>`), written by export
/// for fields FHIR has no element for, back into the body.
fn read_hearth_extensions(resource: &Map<String, Value>, class: SectionClass, body: &mut Body) {
    let prefix = format!("{HEARTH_FIELD_EXTENSION}{}:", class.as_str());
    for x in resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(field) = x
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix(prefix.as_str()))
        else {
            continue;
        };
        if body.has(field) {
            continue;
        }
        let value = ["valueString", "valueBoolean", "valueDate", "valueDecimal"]
            .iter()
            .find_map(|k| x.get(*k).cloned())
            .or_else(|| x.get("valueMoney").and_then(|m| m.get("value")).cloned());
        if let Some(v) = value {
            let v = match v {
                Value::String(s) => Value::String(clip(&s)),
                other => other,
            };
            body.set(field, Some(v), &format!("extension[{field}]"));
        }
    }
}
