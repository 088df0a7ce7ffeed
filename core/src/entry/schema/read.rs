//! Reading and checking untrusted JSON, field by field, and [`entry_schema!`], which declares an
//! entry shape once.
//!
//! `from_json` does not use the derived `Deserialize`: serde's messages carry no field path and
//! quote the offending value ("invalid type: string \"…\", expected f64"), which would leak record
//! content. Instead each type reads itself from a `serde_json::Value` with `Read`, knowing where it
//! is, and reports a `Fault` that names the path and describes the problem only.

use super::code_system_uri;
use super::dates::{check_date, check_datetime, not_before};
use super::{
    MAX_BASE64_CHARS, MAX_CODE_CHARS, MAX_ENTRY_JSON_BYTES, MAX_LIST_ITEMS, MAX_TEXT_CHARS,
};
use crate::nhs::NhsNumber;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A problem at a place in the body; it becomes a [`SchemaError`](super::SchemaError) once the class is added.
#[derive(Debug)]
pub(super) struct Fault {
    pub(super) field: String,
    pub(super) problem: String,
}

impl Fault {
    /// A fault at path `at` (empty for the body itself).
    pub(super) fn new(at: &str, problem: impl Into<String>) -> Fault {
        Fault {
            field: if at.is_empty() {
                "(body)".to_owned()
            } else {
                at.to_owned()
            },
            problem: problem.into(),
        }
    }
}

/// Reads and checks one JSON value as `Self`; `at` is the value's path, for errors.
pub(super) trait Read: Sized {
    fn read(value: &Value, at: &str) -> Result<Self, Fault>;
}
/// Refuses a body larger than [`MAX_ENTRY_JSON_BYTES`](super::MAX_ENTRY_JSON_BYTES) as compact JSON, without building the
/// JSON text: the writer stops as soon as the budget is spent.
pub(super) fn check_size(value: &Value) -> Result<(), Fault> {
    check_size_within(value, MAX_ENTRY_JSON_BYTES)
}

/// [`check_size`] for a body of which `budget` bytes are still free.
pub(super) fn check_size_within(value: &Value, budget: usize) -> Result<(), Fault> {
    struct Budget(usize);
    impl std::io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over budget"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(budget), value).map_err(|_| too_large())
}

pub(super) fn too_large() -> Fault {
    Fault::new(
        "",
        format!("is too large: at most {MAX_ENTRY_JSON_BYTES} bytes as JSON"),
    )
}

/// `at.key`, or `key` at the top.
pub(super) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// A field name fit to put in an error: at most 40 characters, no control characters.
pub(super) fn printable_key(key: &str) -> String {
    let mut out: String = key
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if key.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// A JSON object being read field by field. Making one refuses fields the schema does not have;
/// `null` counts as an absent field.
pub(super) struct Obj<'a> {
    map: &'a Map<String, Value>,
    pub(super) at: &'a str,
}

impl<'a> Obj<'a> {
    pub(super) fn new(value: &'a Value, at: &'a str, fields: &[&str]) -> Result<Obj<'a>, Fault> {
        let map = value
            .as_object()
            .ok_or_else(|| Fault::new(at, "must be a JSON object"))?;
        if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(Fault::new(
                &join(at, &printable_key(unknown)),
                format!("unknown field; expected one of: {}", fields.join(", ")),
            ));
        }
        Ok(Obj { map, at })
    }

    pub(super) fn path(&self, key: &str) -> String {
        join(self.at, key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn req_with<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Value, &str) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let at = self.path(key);
        match self.get(key) {
            Some(value) => read(value, &at),
            None => Err(Fault::new(&at, "is required")),
        }
    }

    pub(super) fn opt_with<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Value, &str) -> Result<T, Fault>,
    ) -> Result<Option<T>, Fault> {
        self.get(key)
            .map(|value| read(value, &self.path(key)))
            .transpose()
    }

    pub(super) fn req<T: Read>(&self, key: &str) -> Result<T, Fault> {
        self.req_with(key, T::read)
    }

    pub(super) fn opt<T: Read>(&self, key: &str) -> Result<Option<T>, Fault> {
        self.opt_with(key, T::read)
    }

    pub(super) fn list<T: Read>(&self, key: &str) -> Result<Vec<T>, Fault> {
        Ok(self.opt_with(key, read_list)?.unwrap_or_default())
    }

    /// The value as it is, unchecked.
    pub(super) fn any(&self, key: &str) -> Result<Option<Value>, Fault> {
        Ok(self.get(key).cloned())
    }

    pub(super) fn date(&self, key: &str) -> Result<Option<String>, Fault> {
        self.opt_with(key, read_date)
    }

    pub(super) fn datetime(&self, key: &str) -> Result<Option<String>, Fault> {
        self.opt_with(key, read_datetime)
    }

    /// Checks that the value of `end_key` is not before that of `start_key`.
    pub(super) fn in_order(
        &self,
        start_key: &str,
        start: Option<&String>,
        end_key: &str,
        end: Option<&String>,
    ) -> Result<(), Fault> {
        match (start, end) {
            (Some(start), Some(end)) if !not_before(end, start) => Err(Fault::new(
                &self.path(end_key),
                format!("must not be before {start_key}"),
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn read_text_limited(
    value: &Value,
    at: &str,
    max_chars: usize,
) -> Result<String, Fault> {
    let text = value
        .as_str()
        .ok_or_else(|| Fault::new(at, "must be text (a JSON string)"))?;
    if text.trim().is_empty() {
        return Err(Fault::new(at, "must not be blank"));
    }
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Fault::new(
            at,
            format!("is too long: at most {max_chars} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Fault::new(
            at,
            "must not contain control characters (other than tab and new line)",
        ));
    }
    Ok(text.to_owned())
}

impl Read for String {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        read_text_limited(value, at, MAX_TEXT_CHARS)
    }
}

impl Read for f64 {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        match value.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            Some(_) => Err(Fault::new(at, "must be a finite number")),
            None => Err(Fault::new(at, "must be a number")),
        }
    }
}

impl Read for bool {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        value
            .as_bool()
            .ok_or_else(|| Fault::new(at, "must be true or false"))
    }
}

impl Read for NhsNumber {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let text = value
            .as_str()
            .ok_or_else(|| Fault::new(at, "must be text (a JSON string), e.g. \"943 476 5919\""))?;
        // NhsError messages never repeat the number.
        text.parse()
            .map_err(|e: crate::nhs::NhsError| Fault::new(at, e.to_string()))
    }
}

pub(super) fn read_list<T: Read>(value: &Value, at: &str) -> Result<Vec<T>, Fault> {
    let items = value
        .as_array()
        .ok_or_else(|| Fault::new(at, "must be a list (a JSON array)"))?;
    if items.len() > MAX_LIST_ITEMS {
        return Err(Fault::new(
            at,
            format!("has too many items: at most {MAX_LIST_ITEMS}"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| T::read(item, &format!("{at}[{i}]")))
        .collect()
}

pub(super) fn read_date(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    check_date(&text).map_err(|p| Fault::new(at, p))?;
    Ok(text)
}

pub(super) fn read_datetime(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    check_datetime(&text).map_err(|p| Fault::new(at, p))?;
    Ok(text)
}

/// Whether `text` is an absolute URI: a scheme, a colon, something after it, no white space.
pub(crate) fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut scheme = scheme.chars();
    scheme.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(super) fn read_code_system(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    let uri = code_system_uri(&text);
    if !is_absolute_uri(uri) {
        return Err(Fault::new(
            at,
            "must be a code system URI, e.g. http://snomed.info/sct, \
             or one of the aliases snomed, loinc, dmd, icd10",
        ));
    }
    Ok(uri.to_owned())
}

pub(super) fn read_code(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    if text.trim() != text {
        return Err(Fault::new(at, "must not start or end with white space"));
    }
    Ok(text)
}

pub(super) fn read_email(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    match text.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(char::is_whitespace) =>
        {
            Ok(text)
        }
        _ => Err(Fault::new(
            at,
            "must be an email address, e.g. name@example.org",
        )),
    }
}

pub(super) fn read_uri(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_TEXT_CHARS)?;
    if !is_absolute_uri(&text) {
        return Err(Fault::new(
            at,
            "must be an absolute URI, e.g. https://example.org/letter.pdf",
        ));
    }
    Ok(text)
}

pub(super) fn read_content_type(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => Ok(text),
        _ => Err(Fault::new(
            at,
            "must be a MIME type, e.g. application/pdf or image/jpeg",
        )),
    }
}

pub(super) fn read_base64(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_BASE64_CHARS)?;
    data_encoding::BASE64.decode(text.as_bytes()).map_err(|_| {
        Fault::new(
            at,
            "must be standard base64 (A-Z, a-z, 0-9, +, /) with = padding and no line breaks",
        )
    })?;
    Ok(text)
}

pub(super) fn read_money(value: &Value, at: &str) -> Result<f64, Fault> {
    let amount = f64::read(value, at)?;
    if amount < 0.0 {
        return Err(Fault::new(at, "must not be negative"));
    }
    Ok(amount)
}

/// A field that may hold a date: a required one always does.
pub(super) trait OptText {
    fn opt_text(&self) -> Option<&String>;
}

impl OptText for String {
    fn opt_text(&self) -> Option<&String> {
        Some(self)
    }
}

impl OptText for Option<String> {
    fn opt_text(&self) -> Option<&String> {
        self.as_ref()
    }
}

/// Checks that `$w.$end` is not before `$v.$start`, naming the two fields in the error.
macro_rules! in_order {
    ($o:expr, $v:ident . $start:ident => $w:ident . $end:ident) => {
        $o.in_order(
            stringify!($start),
            $crate::entry::schema::read::OptText::opt_text(&$v.$start),
            stringify!($end),
            $crate::entry::schema::read::OptText::opt_text(&$w.$end),
        )
    };
}

/// `field_name!(Shape.field)`: the JSON name of a field of an entry shape, `"field"`, checked
/// by the compiler: it fails to compile once `Shape` has no field `field`. For code that reads
/// or writes stored bodies as JSON by key.
macro_rules! field_name {
    ($shape:ident . $field:ident) => {{
        const _: fn(&$shape) = |s| {
            let _ = &s.$field;
        };
        stringify!($field)
    }};
}
pub(crate) use field_name;

/// How a field's value is left out: an absent `Option` or an empty list is not written, and
/// may be missing when read structurally; a required field is always written.
pub(super) trait Absent: Sized {
    /// Whether the value is not written.
    fn absent(&self) -> bool;
    /// The value of a missing field, if it may be missing.
    fn missing() -> Option<Self>;
}

impl<T> Absent for Option<T> {
    fn absent(&self) -> bool {
        self.is_none()
    }
    fn missing() -> Option<Self> {
        Some(None)
    }
}

impl<T> Absent for Vec<T> {
    fn absent(&self) -> bool {
        self.is_empty()
    }
    fn missing() -> Option<Self> {
        Some(Vec::new())
    }
}

impl Absent for String {
    fn absent(&self) -> bool {
        false
    }
    fn missing() -> Option<Self> {
        None
    }
}

/// The structural reading of an entry shape (the `Deserialize` of a type [`entry_schema!`]
/// declares): the shape only, as a derived `Deserialize` with `deny_unknown_fields` checks it.
pub(super) struct Structural(Map<String, Value>);

impl Structural {
    /// Reads an object and refuses fields not in `fields`.
    pub(super) fn new<'de, D: Deserializer<'de>>(
        d: D,
        fields: &'static [&'static str],
    ) -> Result<Structural, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(D::Error::unknown_field(unknown, fields));
        }
        Ok(Structural(map))
    }

    /// Takes field `key`: its value, or what a missing field of its type is.
    pub(super) fn take<T: DeserializeOwned + Absent, E: serde::de::Error>(
        &mut self,
        key: &'static str,
    ) -> Result<T, E> {
        match self.0.remove(key) {
            Some(value) => serde_json::from_value(value).map_err(E::custom),
            None => T::missing().ok_or_else(|| E::missing_field(key)),
        }
    }
}

/// Declares an entry shape once: its fields, each with its docs, type and how it is read.
/// From that one declaration come the struct, `FIELDS` (the JSON names, in order), the checked
/// reader (`Read`, for [`EntryBody::from_json`](super::EntryBody::from_json)), `Serialize`
/// (absent options and empty lists left out), a structural `Deserialize` (the shape only, unknown
/// fields refused) and `empty()` (every field absent, for FHIR import to fill in). The JSON name
/// of a field is its Rust name, so renaming a field renames it everywhere, and every place that
/// reads or writes it by name fails to compile until it follows.
///
/// How a field is read is a method of `Obj`: `req` and `opt` (by the type's `Read`), `list`,
/// `date`, `datetime`, `any` (kept as it is), or `req_with(f)` / `opt_with(f)` with a reader
/// `f`. An optional `check |obj, value| { … }` adds the rules between fields.
macro_rules! entry_schema {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident: $ty:ty = $how:ident $(($with:expr))?,
            )+
        }
        $(check |$o:ident, $v:ident| $check:expr)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)+
        }

        impl $name {
            /// The JSON field names, in declaration order.
            pub(crate) const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            /// Every field absent (required text empty), to be filled in.
            #[allow(dead_code)]
            pub(crate) fn empty() -> Self {
                $name { $($field: Default::default()),+ }
            }
        }

        impl $crate::entry::schema::read::Read for $name {
            fn read(
                value: &serde_json::Value,
                at: &str,
            ) -> Result<Self, $crate::entry::schema::read::Fault> {
                let obj = $crate::entry::schema::read::Obj::new(value, at, Self::FIELDS)?;
                let read = $name { $($field: obj.$how(stringify!($field) $(, $with)?)?),+ };
                $(
                    let ($o, $v) = (&obj, &read);
                    let checked: Result<(), $crate::entry::schema::read::Fault> = $check;
                    checked?;
                )?
                Ok(read)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use $crate::entry::schema::read::Absent as _;
                use serde::ser::SerializeStruct as _;
                let mut st = s.serialize_struct(stringify!($name), Self::FIELDS.len())?;
                $(
                    if self.$field.absent() {
                        st.skip_field(stringify!($field))?;
                    } else {
                        st.serialize_field(stringify!($field), &self.$field)?;
                    }
                )+
                st.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut fields = $crate::entry::schema::read::Structural::new(d, Self::FIELDS)?;
                Ok($name { $($field: fields.take(stringify!($field))?),+ })
            }
        }
    };
}
