//! Merging: a corrected imported resource (the kept resource with the elements the entry's
//! fields manage taken from the built one), the patients of several demographics entries, and
//! references made to resolve inside the export.

use super::super::HEARTH_FIELD_EXTENSION;
use super::build::PATIENT;
use crate::section::Label;
use serde_json::{Map, Value, json};
use std::collections::HashSet;

pub(super) fn merge_patient(into: &mut Map<String, Value>, other: &Map<String, Value>) {
    for key in ["name", "identifier", "telecom", "address"] {
        let Some(extra) = other.get(key).and_then(Value::as_array) else {
            continue;
        };
        let list = into.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            for x in extra {
                let dup = a.iter().any(|y| {
                    y == x
                        || (key == "identifier"
                            && y.get("system") == x.get("system")
                            && y.get("value") == x.get("value"))
                        || (key == "name" && name_words(y) == name_words(x))
                });
                if !dup {
                    a.push(x.clone());
                }
            }
        }
    }
    for key in ["birthDate", "gender"] {
        if !into.contains_key(key)
            && let Some(v) = other.get(key)
        {
            into.insert(key.to_owned(), v.clone());
        }
    }
}

pub(super) fn name_words(n: &Value) -> String {
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return t.to_lowercase();
    }
    let mut parts: Vec<String> = n
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    if let Some(f) = n.get("family").and_then(Value::as_str) {
        parts.push(f.to_owned());
    }
    parts.join(" ").to_lowercase()
}

/// Where references may point in the export.
pub(super) struct References<'r> {
    pub(super) urls: &'r HashSet<String>,
    pub(super) type_ids: &'r HashSet<String>,
    pub(super) patient_aliases: &'r HashSet<String>,
    pub(super) patient_url: &'r str,
}

/// What to do with one reference.
pub(super) enum RefFix {
    Keep,
    /// Point it at the exported Patient.
    ToPatient,
    /// Replace it by its display text.
    Cut,
}

impl References<'_> {
    pub(super) fn decide(&self, r: &str) -> RefFix {
        if r == PATIENT {
            return RefFix::ToPatient;
        }
        let resolves = r.starts_with('#')
            || self.urls.contains(r)
            || self.type_ids.contains(&relative_tail(r));
        if resolves {
            return RefFix::Keep;
        }
        let external = r.contains("://") && !self.urls.contains(r);
        if self.patient_aliases.contains(r)
            || r.starts_with("Patient/") && self.patient_aliases.contains(&relative_tail(r))
        {
            RefFix::ToPatient
        } else if !external {
            RefFix::Cut
        } else {
            RefFix::Keep
        }
    }

    /// Whether [`References::fix`] would change anything in `map`.
    pub(super) fn would_change(&self, map: &Map<String, Value>) -> bool {
        if let Some(Value::String(r)) = map.get("reference")
            && !matches!(self.decide(r), RefFix::Keep)
        {
            return true;
        }
        map.values().any(|v| match v {
            Value::Object(m) => self.would_change(m),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_object().is_some_and(|m| self.would_change(m))),
            _ => false,
        })
    }

    pub(super) fn fix(&self, map: &mut Map<String, Value>, cut: &mut usize) {
        if let Some(Value::String(r)) = map.get("reference") {
            match self.decide(r) {
                RefFix::Keep => {}
                RefFix::ToPatient => {
                    map.insert("reference".into(), json!(self.patient_url));
                }
                RefFix::Cut => {
                    map.remove("reference");
                    if !map.contains_key("display") {
                        map.insert("display".into(), json!("not included in this export"));
                    }
                    *cut += 1;
                }
            }
        }
        for v in map.values_mut() {
            match v {
                Value::Object(m) => self.fix(m, cut),
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(m) = item {
                            self.fix(m, cut);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// `Type/id` of a reference (relative or the tail of an absolute URL), or the reference.
pub(super) fn relative_tail(r: &str) -> String {
    let parts: Vec<&str> = r.rsplit('/').collect();
    match parts.as_slice() {
        [_, "_history", id, ty, ..] | [id, ty, ..] => format!("{ty}/{id}"),
        _ => r.to_owned(),
    }
}

pub(super) fn set_security_label(r: &mut Map<String, Value>, label: Label) {
    let code = match label {
        Label::MentalHealth => "PSY",
        Label::SexualHealth => "STD",
        Label::SocialCare => "SOC",
        Label::Safeguarding | Label::General => return,
    };
    r.insert(
        "meta".into(),
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}]}),
    );
}

/// Elements each built resource type can set: on a corrected imported entry, these are taken
/// from the entry (or removed when the entry no longer has them); everything else in the kept
/// resource stays.
pub(super) fn managed(rt: &str) -> &'static [&'static str] {
    match rt {
        "Patient" => &[
            "name",
            "birthDate",
            "gender",
            "address",
            "telecom",
            "communication",
            "generalPractitioner",
        ],
        "RelatedPerson" => &["name", "relationship", "telecom"],
        "AllergyIntolerance" => &[
            "code",
            "category",
            "criticality",
            "clinicalStatus",
            "verificationStatus",
            "reaction",
            "onsetDateTime",
            "onsetPeriod",
            "note",
        ],
        "Condition" => &[
            "code",
            "clinicalStatus",
            "verificationStatus",
            "severity",
            "onsetDateTime",
            "onsetPeriod",
            "abatementDateTime",
            "abatementPeriod",
            "note",
        ],
        "MedicationStatement" => &[
            "status",
            "medicationCodeableConcept",
            "effectiveDateTime",
            "effectivePeriod",
            "dosage",
            "reasonCode",
            "note",
        ],
        "MedicationRequest" => &[
            "status",
            "medicationCodeableConcept",
            "authoredOn",
            "dosageInstruction",
            "reasonCode",
            "requester",
            "note",
        ],
        "Immunization" => &[
            "status",
            "vaccineCode",
            "occurrenceDateTime",
            "route",
            "note",
        ],
        "Observation" => &[
            "status",
            "code",
            "valueQuantity",
            "valueString",
            "valueInteger",
            "valueCodeableConcept",
            "valueBoolean",
            "component",
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "interpretation",
            "note",
        ],
        "DiagnosticReport" => &["code", "effectiveDateTime", "conclusion", "presentedForm"],
        "Encounter" => &[
            "status",
            "class",
            "type",
            "reasonCode",
            "period",
            "location",
            "participant",
            "hospitalization",
        ],
        "Procedure" => &[
            "status",
            "code",
            "reasonCode",
            "performedDateTime",
            "performedPeriod",
            "performer",
            "outcome",
            "note",
        ],
        "CarePlan" => &["status", "title", "description", "activity", "period"],
        "DocumentReference" => &["type", "description", "date", "content"],
        _ => &[],
    }
}

/// A corrected imported resource: the kept resource, with the managed elements taken from the
/// entry unless the kept element already says the same (so extra codings and units survive).
pub(super) fn merge(base: &Map<String, Value>, built: Map<String, Value>) -> Map<String, Value> {
    let rt = base
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if built.get("resourceType") != base.get("resourceType") {
        return built;
    }
    let mut out = base.clone();
    for key in managed(rt) {
        match (base.get(*key), built.get(*key)) {
            (Some(b), Some(n)) => {
                out.insert((*key).to_owned(), merge_value(b, n));
            }
            (None, Some(n)) => {
                out.insert((*key).to_owned(), n.clone());
            }
            (_, None) => {
                out.remove(*key);
            }
        }
    }
    // Hearth's own field extensions come from the entry; other extensions stay.
    let mut ext: Vec<Value> = base
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|x| {
            !x.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with(HEARTH_FIELD_EXTENSION))
        })
        .cloned()
        .collect();
    ext.extend(
        built
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    if ext.is_empty() {
        out.remove("extension");
    } else {
        out.insert("extension".into(), Value::Array(ext));
    }
    out
}

/// `new`, keeping the parts of `old` that say the same: objects merge key by key (keys only
/// `old` has stay), lists of the same length item by item.
pub(super) fn merge_value(old: &Value, new: &Value) -> Value {
    if says_same(old, new) {
        return old.clone();
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = o.clone();
            for (k, v) in n {
                let merged = match o.get(k) {
                    Some(ov) if says_same(old, v) => ov.clone(),
                    Some(ov) => merge_value(ov, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            Value::Array(o.iter().zip(n).map(|(a, b)| merge_value(a, b)).collect())
        }
        _ => new.clone(),
    }
}

/// Whether `new` says nothing `old` does not: every scalar in it appears in `old`, and lists
/// have the same length.
pub(super) fn says_same(old: &Value, new: &Value) -> bool {
    fn leaves(v: &Value, out: &mut HashSet<String>) {
        match v {
            Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
            Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
            Value::Number(n) => {
                out.insert(n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()));
            }
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Bool(b) => {
                out.insert(b.to_string());
            }
            Value::Null => {}
        }
    }
    if let (Value::Array(a), Value::Array(b)) = (old, new)
        && a.len() != b.len()
    {
        return false;
    }
    let (mut o, mut n) = (HashSet::new(), HashSet::new());
    leaves(old, &mut o);
    leaves(new, &mut n);
    n.is_subset(&o)
}
