//! Reading a resource: paths, texts, dates, codes and concepts, references, each checked, with
//! errors that name the FHIR field; and the draft of the entry body it becomes.

use super::super::FhirError;
use super::index::{Index, Target, resolve};
use crate::entry::EntryBody;
use crate::entry::schema::{
    Code, MAX_TEXT_CHARS, ValueSet, check_date, check_datetime, is_absolute_uri,
};
use crate::section::SectionName;
use serde_json::{Map, Value};

/// An entry body being built from a resource: its typed shape, and the FHIR path each field
/// came from (for errors).
pub(super) struct Draft<T> {
    pub(super) shape: T,
    pub(super) paths: Vec<(&'static str, String)>,
}

impl<T> Draft<T> {
    pub(super) fn new(shape: T) -> Draft<T> {
        Draft {
            shape,
            paths: Vec::new(),
        }
    }

    /// The draft of the entry body this shape is.
    pub(super) fn into_body(self, variant: impl FnOnce(T) -> EntryBody) -> Draft<EntryBody> {
        Draft {
            shape: variant(self.shape),
            paths: self.paths,
        }
    }
}

/// A field of a shape that a value can fill: an `Option` takes the value, a list or a required
/// text is the value.
pub(super) trait Fill<V> {
    fn fill(&mut self, value: V);
}

impl<T> Fill<T> for Option<T> {
    fn fill(&mut self, value: T) {
        *self = Some(value);
    }
}

impl<T> Fill<Vec<T>> for Vec<T> {
    fn fill(&mut self, value: Vec<T>) {
        *self = value;
    }
}

impl Fill<String> for String {
    fn fill(&mut self, value: String) {
        *self = value;
    }
}

/// `set!(draft.field, value, from)`: when `value` is `Some`, fills the shape's `field` with it
/// and notes that it came from FHIR path `from`. The field is named once, as the shape names
/// it: renaming it fails to compile here.
macro_rules! set {
    ($d:ident . $field:ident, $value:expr, $from:expr) => {
        if let Some(v) = $value {
            $crate::fhir::import::read::Fill::fill(&mut $d.shape.$field, v);
            $d.paths.push((stringify!($field), ($from).to_string()));
        }
    };
}

/// `fill!(draft.field, r.reader("path"))`: [`set!`] with what `r.reader` reads at `path`,
/// noted as coming from that path.
macro_rules! fill {
    ($d:ident . $field:ident, $r:ident . $reader:ident($path:expr)) => {{
        let path = $path;
        set!($d.$field, $r.$reader(path)?, path)
    }};
}

/// `text!(draft.field, text, from)`: [`set!`] for text, cut by [`clip`].
macro_rules! text {
    ($d:ident . $field:ident, $value:expr, $from:expr) => {
        set!(
            $d.$field,
            ($value).map(|t: String| $crate::fhir::import::read::clip(&t)),
            $from
        )
    };
}

/// `unless_in_error!(code)`: a status code read from the resource (`Option<String>`), unless it
/// says the resource was entered in error: then the mapping returns [`Mapped::Skip`] at once.
macro_rules! unless_in_error {
    ($code:expr) => {{
        let code: Option<String> = $code;
        if code.as_deref() == Some("entered-in-error") {
            return Ok($crate::fhir::import::read::Mapped::Skip(
                $crate::fhir::import::IN_ERROR,
            ));
        }
        code
    }};
}

/// What a resource maps to.
pub(super) enum Mapped {
    Typed(SectionName, Box<Draft<EntryBody>>),
    /// No typed home (or missing what the typed entry needs): keep the resource as a document.
    Kept,
    /// Not imported, with the reason.
    Skip(&'static str),
}

/// A resource being read.
pub(super) struct Res<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) at: &'a str,
    pub(super) index: &'a Index<'a>,
}

/// Text cut to the longest text field, without control characters other than tab and new line.
pub(super) fn clip(t: &str) -> String {
    let t: String = t
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .take(MAX_TEXT_CHARS)
        .collect();
    t
}

pub(super) fn nonblank(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

/// A CodeableConcept, checked.
#[derive(Default)]
pub(super) struct Concept {
    pub(super) text: Option<String>,
    /// (system, code, display) of the first coding with a system and a code.
    pub(super) code: Option<(String, String, Option<String>)>,
    pub(super) first_display: Option<String>,
    pub(super) first_code: Option<String>,
}

impl Concept {
    /// Words for the concept: its text, else a display, else a code.
    pub(super) fn words(&self) -> Option<String> {
        self.text
            .clone()
            .or_else(|| self.code.as_ref().and_then(|c| c.2.clone()))
            .or_else(|| self.first_display.clone())
            .or_else(|| self.first_code.clone())
    }

    /// The first coding with a system and a code, as an entry's [`Code`].
    pub(super) fn coded(&self) -> Option<Code> {
        self.code.as_ref().map(|(system, code, display)| Code {
            system: system.clone(),
            code: code.clone(),
            display: display.as_deref().map(clip),
        })
    }
}

impl Res<'_> {
    pub(super) fn err(&self, field: &str, problem: impl Into<String>) -> FhirError {
        FhirError::Resource {
            at: self.at.to_owned(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    pub(super) fn get(&self, path: &str) -> Option<&Value> {
        get_path(self.map, path)
    }

    pub(super) fn string(&self, path: &str) -> Result<Option<String>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(nonblank(Some(s))),
            Some(_) => Err(self.err(path, "must be text (a JSON string)")),
        }
    }

    pub(super) fn boolean(&self, path: &str) -> Result<Option<bool>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(path, "must be true or false")),
        }
    }

    /// A FHIR `date`.
    pub(super) fn date(&self, path: &str) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        check_date(&s).map_err(|p| self.err(path, fhir_date_problem(p)))?;
        Ok(Some(s))
    }

    /// A FHIR `dateTime` or `instant`.
    pub(super) fn datetime(&self, path: &str) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        check_datetime(&s).map_err(|p| self.err(path, fhir_date_problem(p)))?;
        Ok(Some(s))
    }

    /// A `dateTime` cut to its date, for Hearth fields that hold dates.
    pub(super) fn datetime_as_date(&self, path: &str) -> Result<Option<String>, FhirError> {
        Ok(self
            .datetime(path)?
            .map(|s| s.get(..10).map_or(s.clone(), str::to_owned)))
    }

    /// A `code` element from a required value set.
    /// `allowed` is FHIR's value set: its codes, separated by spaces.
    pub(super) fn code(&self, path: &str, allowed: &str) -> Result<Option<String>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        if !allowed.split(' ').any(|a| a == s) {
            return Err(self.err(path, one_of(allowed)));
        }
        Ok(Some(s))
    }

    /// Words for the first reason of `reasonCode`.
    pub(super) fn reason(&self) -> Result<Option<String>, FhirError> {
        self.first_concept_words("reasonCode")
    }

    /// A CodeableConcept at `path`, checked.
    pub(super) fn concept(&self, path: &str) -> Result<Option<Concept>, FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => concept_at(v, path, self).map(Some),
        }
    }

    /// The words and the code of the CodeableConcept at `path`, when it has words: what a
    /// typed entry is named by.
    pub(super) fn named(&self, path: &str) -> Result<Option<(String, Option<Code>)>, FhirError> {
        let concept = self.concept(path)?;
        Ok(concept
            .as_ref()
            .and_then(Concept::words)
            .map(|words| (words, concept.as_ref().and_then(Concept::coded))))
    }

    /// The code of the first coding of a CodeableConcept whose system is `system` (a required
    /// status value set), checked against `allowed`.
    pub(super) fn status_concept(
        &self,
        path: &str,
        allowed: &str,
    ) -> Result<Option<String>, FhirError> {
        let Some(code) = self.status_code(path)? else {
            return Ok(None);
        };
        if !allowed.split(' ').any(|a| a == code) {
            return Err(self.err(&format!("{path}.coding[0].code"), one_of(allowed)));
        }
        Ok(Some(code))
    }

    /// [`Res::status_concept`] for a status whose FHIR value set is one of Hearth's.
    pub(super) fn status_value<E: ValueSet>(&self, path: &str) -> Result<Option<E>, FhirError> {
        let Some(code) = self.status_code(path)? else {
            return Ok(None);
        };
        E::from_text(&code)
            .map(Some)
            .ok_or_else(|| self.err(&format!("{path}.coding[0].code"), E::one_of()))
    }

    /// The code of a status CodeableConcept: of its first coding with a system, else of its
    /// first coding.
    fn status_code(&self, path: &str) -> Result<Option<String>, FhirError> {
        let Some(c) = self.concept(path)? else {
            return Ok(None);
        };
        Ok(c.code.map(|c| c.1).or(c.first_code))
    }

    /// A `code` element whose FHIR value set is one of Hearth's (the same codes).
    pub(super) fn value<E: ValueSet>(&self, path: &str) -> Result<Option<E>, FhirError> {
        let Some(s) = self.string(path)? else {
            return Ok(None);
        };
        E::from_text(&s)
            .map(Some)
            .ok_or_else(|| self.err(path, E::one_of()))
    }

    pub(super) fn list(&self, path: &str) -> Result<&[Value], FhirError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.err(path, "must be a list")),
        }
    }

    /// Words for a Reference: its display, else the referenced resource's name.
    pub(super) fn reference_words(&self, path: &str) -> Option<String> {
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
    pub(super) fn referenced(&self, path: &str) -> Option<&Map<String, Value>> {
        let target = self.get(path)?.get("reference").and_then(Value::as_str)?;
        match resolve(self.index, self.map, target) {
            Target::Local(i) => self.index.resource(i),
            _ => None,
        }
    }

    /// Annotation texts, joined.
    pub(super) fn notes(&self, path: &str) -> Result<Option<String>, FhirError> {
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
    pub(super) fn first_concept_words(&self, path: &str) -> Result<Option<String>, FhirError> {
        if self.list(path)?.is_empty() {
            return Ok(None);
        }
        Ok(self.concept(&format!("{path}[0]"))?.and_then(|c| c.words()))
    }
}

pub(super) fn fhir_date_problem(p: &str) -> String {
    if p.contains("real") {
        p.to_owned()
    } else {
        "must be a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime with a time zone \
         (e.g. 2024-05-01T14:30:00Z)"
            .to_owned()
    }
}

/// The error for a code not in a value set given as its codes separated by spaces.
fn one_of(allowed: &str) -> String {
    format!("must be one of: {}", allowed.replace(' ', ", "))
}

/// Follows a path like `reaction[0].manifestation` through objects and lists.
pub(super) fn get_path<'v>(map: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
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

pub(super) fn concept_at(v: &Value, path: &str, r: &Res<'_>) -> Result<Concept, FhirError> {
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
pub(super) fn check_coding(
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
pub(super) fn display_name(r: &Map<String, Value>) -> Option<String> {
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

pub(super) fn human_name(n: &Value) -> Option<String> {
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
