//! Building a resource from an entry's typed fields (a native entry, or one corrected since it
//! was imported). Every entry field is read here by its Rust name, so renaming a field fails to
//! compile until the export follows; the FHIR element names are FHIR's.

mod care;
mod clinical;

use super::super::HEARTH_FIELD_EXTENSION;
use super::super::import::UCUM;
use crate::entry::EntryBody;
use crate::entry::schema::{Code, ValueSet};
use crate::section::SectionClass;
use care::{
    advance_care_plan, assessment, care_plan, carer, document, note, plan, report, support_plan,
};
use clinical::{
    allergy, condition, demographics, encounter, immunization, medication_request,
    medication_statement, observation, procedure,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// References to the patient are written as this and fixed up by the caller.
pub(super) const PATIENT: &str = "#patient";

/// Builds a resource from an entry's fields. `src_type` picks among the resources a class can
/// come from (a `medications` entry imported from a MedicationRequest goes back as one).
/// References to the patient are written as [`PATIENT`] and fixed up by the caller.
pub(super) fn build(body: &EntryBody, src_type: Option<&str>) -> Map<String, Value> {
    let mut r = Map::new();
    match body {
        EntryBody::Demographics(d) => demographics(&mut r, d),
        EntryBody::Allergy(a) => allergy(&mut r, a),
        EntryBody::Medication(m) => match src_type {
            Some("MedicationRequest") => medication_request(&mut r, m),
            Some("Immunization") => immunization(&mut r, m),
            _ => medication_statement(&mut r, m),
        },
        EntryBody::Condition(c) => condition(&mut r, c),
        EntryBody::Observation(o) => observation(&mut r, o),
        EntryBody::Encounter(e) if src_type == Some("Procedure") => procedure(&mut r, e),
        EntryBody::Encounter(e) => encounter(&mut r, e),
        EntryBody::CarePlan(p) => plan(&mut r, care_plan(p)),
        EntryBody::SupportPlan(p) => plan(&mut r, support_plan(p)),
        EntryBody::AdvanceCarePlan(p) => plan(&mut r, advance_care_plan(p)),
        EntryBody::SocialCareAssessment(a) => assessment(&mut r, a),
        EntryBody::Carer(c) => carer(&mut r, c),
        EntryBody::Note(n) => note(&mut r, n, src_type),
        EntryBody::Document(d) if src_type == Some("DiagnosticReport") => report(&mut r, d),
        EntryBody::Document(d) => document(&mut r, d),
    }
    r
}

/// An entry field FHIR has no element for, carried as a Hearth extension: its name, value and
/// whether it is a date.
pub(super) type FieldExtension = (&'static str, Value, bool);

/// `ext!(b.field)`, or `ext!(b.field as date)`: the [`FieldExtension`] of an entry field, named
/// as the field is.
macro_rules! ext {
    ($b:ident . $field:ident) => {
        (stringify!($field), json!($b.$field), false)
    };
    ($b:ident . $field:ident as date) => {
        (stringify!($field), json!($b.$field), true)
    };
}
pub(super) use ext;

/// Extensions for fields FHIR has no element for (absent fields are left out).
pub(super) fn field_extensions(class: SectionClass, fields: &[FieldExtension]) -> Option<Value> {
    let mut out = Vec::new();
    for (k, v, date) in fields {
        let url = format!("{HEARTH_FIELD_EXTENSION}{}:{k}", class.as_str());
        let x = match v {
            Value::Bool(x) => json!({"url": url, "valueBoolean": x}),
            Value::Number(n) => json!({"url": url, "valueDecimal": n}),
            Value::String(t) if *date => json!({"url": url, "valueDate": t}),
            Value::String(t) => json!({"url": url, "valueString": t}),
            _ => continue,
        };
        out.push(x);
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

pub(super) fn concept(code: Option<&Code>, text: Option<&str>) -> Value {
    let mut c = Map::new();
    if let Some(code) = code {
        c.insert("coding".into(), json!([code]));
    }
    if let Some(t) = text {
        c.insert("text".into(), json!(t));
    }
    Value::Object(c)
}

pub(super) fn status_concept(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn quantity(value: f64, unit: Option<&str>) -> Value {
    let mut q = Map::new();
    q.insert("value".into(), json!(value));
    if let Some(u) = unit {
        q.insert("unit".into(), json!(u));
        if !u.contains(' ') {
            q.insert("system".into(), json!(UCUM));
            q.insert("code".into(), json!(u));
        }
    }
    Value::Object(q)
}

/// A result as `valueQuantity` or `valueString`.
pub(super) fn put_result(
    o: &mut Map<String, Value>,
    value: Option<f64>,
    unit: Option<&str>,
    text: Option<&str>,
) {
    if let Some(v) = value {
        o.insert("valueQuantity".into(), quantity(v, unit));
    } else if let Some(t) = text {
        o.insert("valueString".into(), json!(t));
    }
}

/// FHIR Annotations: the note, then each labelled extra field that is present.
pub(super) fn notes(note: Option<&str>, extra: &[(&str, Option<&str>)]) -> Option<Value> {
    let mut texts: Vec<String> = note.map(str::to_owned).into_iter().collect();
    for (label, v) in extra {
        if let Some(v) = v {
            texts.push(format!("{label}: {v}"));
        }
    }
    (!texts.is_empty())
        .then(|| Value::Array(texts.into_iter().map(|t| json!({"text": t})).collect()))
}

/// FHIR `telecom` from an entry's phone and email, if either is present.
pub(super) fn telecom(phone: Option<&str>, email: Option<&str>) -> Option<Value> {
    let mut t = Vec::new();
    if let Some(p) = phone {
        t.push(json!({"system": "phone", "value": p}));
    }
    if let Some(e) = email {
        t.push(json!({"system": "email", "value": e}));
    }
    (!t.is_empty()).then_some(Value::Array(t))
}

/// `key`: the value of an entry field, when present.
pub(super) fn put_value<T: Serialize>(r: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        r.insert(key.to_owned(), json!(v));
    }
}

/// A status element of a resource, and the code system of its codes.
pub(super) type StatusElement = (&'static str, &'static str);

/// The status element as a CodeableConcept of its code system, when the entry has the status.
pub(super) fn put_status<E: ValueSet>(
    r: &mut Map<String, Value>,
    (key, system): StatusElement,
    status: Option<E>,
) {
    put(r, key, status.map(|s| status_concept(system, s.text())));
}

/// `key`: a CodeableConcept of an entry's code and its words.
pub(super) fn put_concept(r: &mut Map<String, Value>, key: &str, code: &Option<Code>, text: &str) {
    r.insert(key.to_owned(), concept(code.as_ref(), Some(text)));
}

pub(super) fn put(r: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        r.insert(key.to_owned(), v);
    }
}

pub(super) fn text_of(t: Option<&String>) -> Option<Value> {
    t.map(|t| json!({"text": t}))
}

pub(super) fn texts_of(t: Option<&String>) -> Option<Value> {
    t.map(|t| json!([{"text": t}]))
}

pub(super) fn subject() -> Value {
    json!({"reference": PATIENT})
}

/// A period of the dates that are present, if any is.
pub(super) fn period(start: Option<&String>, end: Option<&String>) -> Option<Value> {
    let mut p = Map::new();
    put(&mut p, "start", start.map(|s| json!(s)));
    put(&mut p, "end", end.map(|e| json!(e)));
    (!p.is_empty()).then_some(Value::Object(p))
}
