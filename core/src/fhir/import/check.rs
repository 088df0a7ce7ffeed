//! Pass 2 for one entry: the checks that hold for every resource (size, references,
//! extensions, NHS numbers), then the mapping to an entry, its fields checked against their
//! schema and its `source` added.

use super::super::{FhirError, HEARTH_ENTRY_SYSTEM, NHS_NUMBER_SYSTEM, SOURCE_FORMAT, body_sha256};
use super::existing::{Existing, identity_keys};
use super::index::{Index, Target, resolve};
use super::map::{is_known_type, kept_body, map_resource, read_hearth_extensions};
use super::plan::{Checked, Kept, MappedOne, Outcome};
use super::read::{Mapped, Res};
use super::{ACTOR_TYPES, IN_ERROR, MAX_RESOURCE_JSON, PlannedEntry};
use crate::entry::schema::{
    MAX_LIST_ITEMS, Note, Source, SourceIdentifier, field_name, is_absolute_uri,
};
use crate::entry::{CheckedBody, EntryBody};
use crate::ids::EntryId;
use crate::nhs::NhsNumber;
use crate::section::{Label, SectionClass, SectionName};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Pass 2 for entry `i`: the checks that hold for every resource, then the mapping. Reads only
/// the entry, the index and `existing`, so entries can be done in any order or at once.
pub(super) fn check_and_map(
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
    let resource_json = super::super::canonical_json(resource);
    let hash = super::super::sha256_hex(resource_json.as_bytes());
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
fn source_identifiers(resource: &Map<String, Value>) -> Vec<SourceIdentifier> {
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
            identifiers.push(SourceIdentifier {
                system: system
                    .filter(|s| is_absolute_uri(s) && s.len() <= 256)
                    .map(str::to_owned),
                value: v.to_owned(),
            });
        }
    }
    identifiers.truncate(MAX_LIST_ITEMS);
    identifiers
}

/// The entry imported earlier from the resource with this identity (the same full URL or
/// business identifier), at its current version.
fn earlier_entry(
    identifiers: &[SourceIdentifier],
    rt: &str,
    full_url: Option<&str>,
    existing: &Existing,
) -> Option<EntryId> {
    identity_keys(rt, full_url, identifiers)
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
    } else if super::super::consent::is_exported_grant(resource) {
        Mapped::Skip("a grant written by a Hearth export: grants live in the consent ledger")
    } else if super::super::audit_event::is_exported_audit_event(resource) {
        Mapped::Skip("an audit event written by a Hearth export: the audit log is the record's own")
    } else if says_entered_in_error(resource) {
        // Whatever the type (those kept whole too): never an entry, perhaps a retraction.
        Mapped::Skip(IN_ERROR)
    } else {
        map_resource(&r, rt)?
    };
    let identifiers = source_identifiers(resource);
    let mut kept = None;
    let (section, draft) = match mapped {
        Mapped::Skip(IN_ERROR) => {
            return Ok(match earlier_entry(&identifiers, rt, full_url, existing) {
                Some(e) if existing.in_error.contains(&e) => {
                    MappedOne::Skip("marked entered in error, as the entry imported from it is")
                }
                Some(e) => MappedOne::Retract(e),
                None => MappedOne::Skip(IN_ERROR),
            });
        }
        Mapped::Skip(why) => return Ok(MappedOne::Skip(why)),
        Mapped::Typed(section, draft) => (section, *draft),
        Mapped::Kept => {
            kept = Some(if ACTOR_TYPES.contains(&rt) || is_known_type(rt) {
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
    let Value::Object(mut fields) = draft.shape.to_json() else {
        unreachable!("an entry body is a JSON object")
    };
    let mut paths: Vec<(String, String)> = draft
        .paths
        .into_iter()
        .map(|(k, p)| (k.to_owned(), p))
        .collect();
    read_hearth_extensions(resource, section.class, &mut fields, &mut paths);

    // Validate the typed fields; errors name the FHIR field they came from.
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
    let normalised = EntryBody::from_json(section.class, &Value::Object(fields))
        .map_err(located)?
        .to_json();
    let source = Source {
        format: SOURCE_FORMAT.to_owned(),
        resource_type: rt.to_owned(),
        id: resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        full_url: full_url.map(str::to_owned),
        identifiers,
        sha256: hash.to_owned(),
        body_sha256: Some(body_sha256(&normalised)),
        resource: None,
    };

    // An entry imported earlier from the same resource (by identity) gets a new version.
    let supersedes = earlier_entry(&source.identifiers, rt, full_url, existing);
    let mut full = normalised;
    if let Some(m) = full.as_object_mut() {
        m.insert(
            field_name!(Note.source).to_owned(),
            serde_json::to_value(&source).unwrap_or_default(),
        );
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
pub(super) fn says_entered_in_error(resource: &Map<String, Value>) -> bool {
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
/// all Hearth devices (the entries it describes carry their provenance), a patient's dispute
/// (a `Communication` whose identifiers are all dispute ids: the record holds the dispute), or
/// the placeholder `Patient` naming only a record.
pub(super) fn is_hearth_metadata(resource: &Map<String, Value>) -> bool {
    let ty = resource.get("resourceType").and_then(Value::as_str);
    match ty {
        Some("Provenance") => {
            let agents = resource.get("agent").and_then(Value::as_array);
            agents.is_some_and(|a| {
                !a.is_empty()
                    && a.iter().all(|x| {
                        x.pointer("/who/identifier/system").and_then(Value::as_str)
                            == Some(super::super::HEARTH_PEER_SYSTEM)
                    })
            })
        }
        Some("Communication") => resource
            .get("identifier")
            .and_then(Value::as_array)
            .is_some_and(|ids| {
                !ids.is_empty()
                    && ids.iter().all(|i| {
                        i.get("system").and_then(Value::as_str)
                            == Some(super::super::HEARTH_DISPUTE_SYSTEM)
                    })
            }),
        Some("Patient") => {
            resource.get("name").is_none()
                && resource
                    .get("identifier")
                    .and_then(Value::as_array)
                    .is_some_and(|ids| {
                        ids.iter().all(|i| {
                            i.get("system").and_then(Value::as_str)
                                == Some(super::super::HEARTH_RECORD_SYSTEM)
                        })
                    })
        }
        _ => false,
    }
}

/// Whether the resource carries this record's own entry id (an export coming back).
pub(super) fn is_own_export(resource: &Map<String, Value>, existing: &Existing) -> bool {
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
pub(super) fn walk(
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
pub(super) fn check_node(
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
pub(super) fn check_identifiers(resource: &Map<String, Value>, at: &str) -> Result<(), FhirError> {
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
pub(super) fn security_label(resource: &Map<String, Value>) -> Label {
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
