//! Pass 1: the index of what references can point at in the bundle, and resolving a
//! reference against it.

use super::super::{FhirError, is_fhir_id};
use super::bundle::{Head, is_type_name, same_resource};
use crate::entry::schema::is_absolute_uri;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Where references can point inside the bundle.
pub(super) struct Index<'a> {
    by_url: HashMap<&'a str, usize>,
    by_type_id: HashMap<String, usize>,
    by_identifier: HashMap<String, usize>,
    /// Each entry's resource, as JSON text.
    resources: Vec<Option<&'a RawValue>>,
    /// Resources parsed when another resource refers to them for their content (a name, say),
    /// kept for the next reference.
    parsed: Vec<OnceLock<Option<Map<String, Value>>>>,
    /// The entry holding the bundle's Patient (a bundle holds one at most).
    pub(super) patient: Option<usize>,
}

impl Index<'_> {
    /// Entry `i`'s resource, parsed.
    pub(super) fn resource(&self, i: usize) -> Option<&Map<String, Value>> {
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

pub(super) enum Target {
    Local(usize),
    Contained,
    External,
    Missing,
    Invalid,
}

pub(super) fn resolve(index: &Index<'_>, resource: &Map<String, Value>, reference: &str) -> Target {
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

/// Pass 1: where references can point, from each entry's head, in bundle order.
pub(super) fn index_of<'a>(
    heads: &'a [Result<Head<'a>, FhirError>],
) -> Result<Index<'a>, FhirError> {
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
