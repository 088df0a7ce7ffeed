//! Splitting a bundle into its entries (still JSON text), and reading each entry: its head in
//! pass 1, the whole of it in pass 2.

use super::super::{FhirError, MAX_BUNDLE_ENTRIES};
use super::BUNDLE_TYPES;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A bundle whose JSON and outer shape are checked (a Bundle of an importable type with a
/// bounded list of entries), each entry still its JSON text. Entries are parsed one by one when
/// they are checked and mapped, on all cores, and dropped once mapped: the bundle is never held
/// as one tree of JSON values, which would take about ten times the file's size.
pub struct ParsedBundle<'a> {
    pub(super) bundle_type: String,
    pub(super) entries: Vec<&'a RawValue>,
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
pub(super) struct Outer<'a> {
    #[serde(rename = "resourceType", default)]
    resource_type: Option<Value>,
    #[serde(rename = "type", default)]
    ty: Option<Value>,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

/// A bundle's entry list, refused past [`MAX_BUNDLE_ENTRIES`] before more is held.
pub(super) struct EntryList<'a>(Vec<&'a RawValue>);

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
pub(super) fn json_error(e: &serde_json::Error) -> FhirError {
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

pub(super) fn is_type_name(s: &str) -> bool {
    let mut c = s.chars();
    s.len() <= 64
        && c.next().is_some_and(|c| c.is_ascii_uppercase())
        && c.all(|c| c.is_ascii_alphanumeric())
}

/// What pass 1 reads of an entry.
#[derive(Deserialize)]
pub(super) struct EntryHead<'a> {
    #[serde(rename = "fullUrl", default)]
    pub(super) full_url: Option<Value>,
    #[serde(borrow, default)]
    pub(super) resource: Option<&'a RawValue>,
}

/// What pass 1 reads of a resource.
#[derive(Deserialize)]
pub(super) struct ResourceHead {
    #[serde(rename = "resourceType", default)]
    pub(super) resource_type: Option<Value>,
    /// `Some(Null)` for an explicit `null`, which is refused like any id that is not one.
    #[serde(default, deserialize_with = "present")]
    pub(super) id: Option<Value>,
    #[serde(default)]
    pub(super) identifier: Option<Value>,
}

/// A field's value when the field is there, even `null`.
pub(super) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// An entry's head and, when it has a resource, the resource's head.
pub(super) type Head<'a> = (EntryHead<'a>, Option<ResourceHead>);

/// Why JSON text already checked for syntax could not be read: a key given twice (which FHIR's
/// JSON forbids), or a number beyond what a JSON number can hold here. Never the text itself.
pub(super) fn unreadable(e: &serde_json::Error) -> &'static str {
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
pub(super) fn read_head(i: usize, raw: &RawValue) -> Result<Head<'_>, FhirError> {
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
pub(super) fn read_entry(i: usize, raw: &RawValue) -> Result<Value, FhirError> {
    serde_json::from_str::<Strict>(raw.get())
        .map(|s| s.0)
        .map_err(|e| FhirError::Resource {
            at: format!("entry[{i}]"),
            field: "(entry)".into(),
            problem: unreadable(&e).into(),
        })
}

/// A JSON value in which no object gives a key twice.
pub(super) struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// serde_json's own reading of a value, but for keys given twice.
pub(super) struct StrictVisitor;

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
pub(super) fn same_resource(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    let parse = |r: Option<&RawValue>| r.map(|r| serde_json::from_str::<Value>(r.get()).ok());
    match (parse(a), parse(b)) {
        (Some(Some(a)), Some(Some(b))) => a == b,
        (None, None) => true,
        _ => false,
    }
}
