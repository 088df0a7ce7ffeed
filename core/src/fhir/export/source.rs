//! The resources of an export, and what an export reads of a stored entry body: its fields,
//! and of an imported entry's `source`, the kept resource as text.

use super::super::SOURCE_FORMAT;
use crate::entry::raw::CanonicalObject;
use crate::entry::schema::{SOURCE, SOURCE_RESOURCE, Source, field_name};
use crate::record::EntryView;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;

/// The fields of an entry's [`Source`] that an export reads.
const FORMAT: &str = field_name!(Source.format);
const RESOURCE_TYPE: &str = field_name!(Source.resource_type);
const FULL_URL: &str = field_name!(Source.full_url);
const BODY_SHA256: &str = field_name!(Source.body_sha256);

/// A resource of the export.
pub(super) enum Res<'a> {
    /// A kept resource copied as it is: its text is exactly what serde_json writes for the
    /// resource (checked), so it is written as it is unless one of its references changes.
    /// `resource_type`, `id` and `references` are ranges of `text`.
    Raw {
        text: Cow<'a, str>,
        resource_type: Option<Range<usize>>,
        id: Option<Range<usize>>,
        references: Vec<Range<usize>>,
    },
    /// A resource built, changed, or not in serde_json's form as stored.
    Value(Value),
    /// A resource written here as text, in serde_json's form (a Provenance), and its type.
    Text(String, &'static str),
}

impl<'a> Res<'a> {
    /// A kept resource: the text of a JSON object, and what [`canonical_object`] found in
    /// that very text, if it is in serde_json's form (`None`: not, or not checked yet).
    ///
    /// [`canonical_object`]: crate::entry::raw::canonical_object
    pub(super) fn kept(text: Cow<'a, str>, found: Option<CanonicalObject<'_>>) -> Res<'a> {
        let ranges = |text: &str, c: CanonicalObject<'_>| {
            let base = text.as_ptr() as usize;
            let range = |s: &str| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            (
                c.resource_type.map(range),
                c.id.map(range),
                c.references.into_iter().map(range).collect::<Vec<_>>(),
            )
        };
        let found = match (found, &text) {
            (Some(c), _) => Some(ranges(&text, c)),
            (None, Cow::Owned(t)) => crate::entry::raw::canonical_object(t).map(|c| ranges(t, c)),
            (None, Cow::Borrowed(_)) => None,
        };
        match found {
            Some((resource_type, id, references)) => Res::Raw {
                text,
                resource_type,
                id,
                references,
            },
            // Not in serde_json's form (stored by something else): through a `Value`, as
            // serde_json writes it.
            None => Res::Value(serde_json::from_str(&text).unwrap_or_default()),
        }
    }

    pub(super) fn resource_type(&self) -> Option<&str> {
        match self {
            Res::Raw {
                text,
                resource_type,
                ..
            } => resource_type.clone().and_then(|r| text.get(r)),
            Res::Value(v) => v.get("resourceType").and_then(Value::as_str),
            Res::Text(_, t) => Some(t),
        }
    }

    pub(super) fn id(&self) -> Option<&str> {
        match self {
            Res::Raw { text, id, .. } => id.clone().and_then(|r| text.get(r)),
            Res::Value(v) => v.get("id").and_then(Value::as_str),
            // Provenance, written after references are resolved: nothing refers to it.
            Res::Text(..) => None,
        }
    }

    /// The resource as a `Value` (parsing a kept one).
    pub(super) fn value(&self) -> Cow<'_, Value> {
        match self {
            Res::Raw { text, .. } => Cow::Owned(serde_json::from_str(text).unwrap_or_default()),
            Res::Text(text, _) => Cow::Owned(serde_json::from_str(text).unwrap_or_default()),
            Res::Value(v) => Cow::Borrowed(v),
        }
    }

    /// The resource as a `Value` to change (parsing a kept one, once).
    pub(super) fn value_mut(&mut self) -> &mut Value {
        match self {
            Res::Raw { text, .. } => {
                *self = Res::Value(serde_json::from_str(text).unwrap_or_default())
            }
            Res::Text(text, _) => {
                *self = Res::Value(serde_json::from_str(text).unwrap_or_default())
            }
            Res::Value(_) => {}
        }
        match self {
            Res::Value(v) => v,
            Res::Raw { .. } | Res::Text(..) => unreachable!("made a value above"),
        }
    }

    /// Writes the resource as compact JSON.
    pub(super) fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Res::Raw { text, .. } => {
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Res::Text(text, _) => {
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Res::Value(v) => serde_json::to_writer(&mut *out, v),
        }
    }
}

/// One resource of the export.
pub(super) struct Out<'a> {
    pub(super) full_url: String,
    pub(super) resource: Res<'a>,
    pub(super) entry: Option<&'a EntryView>,
    /// Whether the entry's body has a `source`.
    pub(super) has_source: bool,
}

/// One entry of the bundle.
pub(super) struct EntryOut<'a> {
    pub(super) full_url: String,
    pub(super) resource: Res<'a>,
}

/// The parts of an entry body the export reads: the fields other than `source`, parsed (they
/// are small), and of a FHIR `source`, the kept resource as text.
pub(super) struct Body<'a> {
    pub(super) fields: Fields<'a>,
    pub(super) has_source: bool,
    pub(super) src: Option<Src<'a>>,
}

/// An entry's fields other than `source`.
pub(super) enum Fields<'a> {
    /// As stored: each member's key and value text.
    Text(Vec<(&'a str, &'a str)>),
    /// Parsed.
    Value(Map<String, Value>),
}

impl Fields<'_> {
    /// The fields as a map.
    pub(super) fn map(&self) -> Map<String, Value> {
        match self {
            Fields::Text(members) => members
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::from_str(v).unwrap_or_default()))
                .collect(),
            Fields::Value(m) => m.clone(),
        }
    }

    /// The SHA-256 of their canonical JSON (as [`super::body_sha256`] hashes a body): the
    /// stored text itself when it is already in that form.
    pub(super) fn sha256(&self) -> String {
        if let Fields::Text(members) = self {
            let mut text = String::with_capacity(
                2 + members
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>(),
            );
            text.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push('"');
                text.push_str(k);
                text.push_str("\":");
                text.push_str(v);
            }
            text.push('}');
            if crate::entry::raw::canonical_object(&text).is_some() {
                return super::super::sha256_hex(text.as_bytes());
            }
        }
        let mut out = Vec::new();
        super::super::write_canonical_map(&self.map(), None, &mut out);
        super::super::sha256_hex(&out)
    }
}

/// An entry's `source` of format [`SOURCE_FORMAT`].
#[derive(Default)]
pub(super) struct Src<'a> {
    /// The kept resource, if it is an object: its text and, when that text is in serde_json's
    /// form, what [`crate::entry::raw::canonical_object`] finds in it.
    pub(super) resource: Option<(Cow<'a, str>, Option<CanonicalObject<'a>>)>,
    pub(super) resource_type: Option<String>,
    pub(super) full_url: Option<String>,
    pub(super) body_sha256: Option<String>,
}

pub(super) fn as_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl<'a> Body<'a> {
    /// Reads a body's JSON text; `None` if it is not an object.
    pub(super) fn read(text: &'a str) -> Option<Body<'a>> {
        let Some(parts) = crate::entry::raw::body_parts(text) else {
            // An unusual layout (an escaped key): read through a `Value`.
            return Self::from_value(serde_json::from_str(text).ok()?);
        };
        let src = match (parts.source, parts.source_members) {
            (Some(_), Some(members)) => {
                let mut src = Src::default();
                let mut format = None;
                for (k, v) in members {
                    let text = || serde_json::from_str(v).ok().and_then(as_string);
                    match k {
                        FORMAT => format = text(),
                        RESOURCE_TYPE => src.resource_type = text(),
                        FULL_URL => src.full_url = text(),
                        BODY_SHA256 => src.body_sha256 = text(),
                        _ => {}
                    }
                }
                src.resource = parts.resource.map(|(t, c)| (Cow::Borrowed(t), c));
                (format.as_deref() == Some(SOURCE_FORMAT)).then_some(src)
            }
            _ => None,
        };
        Some(Body {
            fields: Fields::Text(parts.fields),
            has_source: parts.source.is_some(),
            src,
        })
    }

    pub(super) fn from_value(v: Value) -> Option<Body<'a>> {
        let Value::Object(mut fields) = v else {
            return None;
        };
        let source = fields.remove(SOURCE);
        Some(Body {
            fields: Fields::Value(fields),
            has_source: source.is_some(),
            src: source.and_then(Src::from_value),
        })
    }
}

impl Src<'_> {
    pub(super) fn from_value(v: Value) -> Option<Self> {
        let Value::Object(mut m) = v else {
            return None;
        };
        if m.get(FORMAT).and_then(Value::as_str) != Some(SOURCE_FORMAT) {
            return None;
        }
        let mut take = |k: &str| m.remove(k).and_then(as_string);
        let (resource_type, full_url, body_sha256) =
            (take(RESOURCE_TYPE), take(FULL_URL), take(BODY_SHA256));
        let resource = m
            .remove(SOURCE_RESOURCE)
            .filter(Value::is_object)
            .and_then(|r| serde_json::to_string(&r).ok())
            .map(|t| (Cow::Owned(t), None));
        Some(Src {
            resource,
            resource_type,
            full_url,
            body_sha256,
        })
    }
}
