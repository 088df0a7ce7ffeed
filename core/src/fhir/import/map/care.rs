//! What happened and what was found: Observation, DiagnosticReport, DocumentReference and
//! QuestionnaireResponse (results and documents), Encounter and Procedure (`encounters`), and
//! CarePlan (`care-plan`).

use super::super::super::FhirError;
use super::super::read::{Concept, Draft, Mapped, Res, check_coding, clip};
use super::typed;
use crate::entry::EntryBody;
use crate::entry::schema::{
    CarePlan, Document, Encounter, EncounterStatus, MAX_LIST_ITEMS, Note, Observation,
    ObservationComponent, ObservationStatus, PlanStatus,
};
use serde_json::Value;

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

pub(super) fn observation(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str =
        "registered preliminary final amended corrected cancelled entered-in-error unknown";
    let status = unless_in_error!(r.code("status", ST)?);
    let mut b = Draft::new(Observation::empty());
    let Some((name, code)) = r.named("code")? else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "code");
    set!(b.code, code, "code");
    let status = match status.as_deref() {
        Some("corrected") => Some(ObservationStatus::Amended),
        Some(s) => ObservationStatus::from_text(s),
        None => None,
    };
    set!(b.status, status, "status");
    let (value, unit, text, path) = obs_value(r, "")?;
    set!(b.value, value.as_ref().and_then(Value::as_f64), &path);
    text!(b.unit, unit, &path);
    text!(b.value_text, text, &path);
    let mut components = Vec::new();
    for i in 0..r.list("component")?.len().min(MAX_LIST_ITEMS) {
        let cp = format!("component[{i}]");
        let cc = r.concept(&format!("{cp}.code"))?;
        let (value, unit, text, _) = obs_value(r, &cp)?;
        let value = value.as_ref().and_then(Value::as_f64);
        let text = if value.is_some() {
            text
        } else {
            text.or_else(|| Some("no value recorded".to_owned()))
        };
        components.push(ObservationComponent {
            name: clip(
                &cc.as_ref()
                    .and_then(Concept::words)
                    .unwrap_or_else(|| "component".to_owned()),
            ),
            code: cc.as_ref().and_then(Concept::coded),
            value,
            unit: unit.as_deref().map(clip),
            value_text: text.as_deref().map(clip),
        });
    }
    if !components.is_empty() {
        set!(b.components, Some(components), "component");
    }
    let o = &b.shape;
    if o.value.is_none() && o.value_text.is_none() && o.components.is_empty() {
        let members = r.list("hasMember")?.len();
        let t = if members > 0 {
            format!("a panel of {members} results")
        } else {
            "no value recorded".to_owned()
        };
        text!(b.value_text, Some(t), "hasMember");
    }
    if let Some(e) = r.datetime("effectiveDateTime")? {
        set!(b.effective, Some(e), "effectiveDateTime");
    } else if let Some(e) = r.datetime("effectiveInstant")? {
        set!(b.effective, Some(e), "effectiveInstant");
    } else {
        fill!(b.effective, r.datetime("effectivePeriod.start"));
    }
    r.datetime("issued")?;
    text!(
        b.interpretation,
        r.first_concept_words("interpretation")?,
        "interpretation[0]"
    );
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Observation)
}

pub(super) fn diagnostic_report(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str = "registered partial preliminary final amended corrected appended cancelled \
                      entered-in-error unknown";
    unless_in_error!(r.code("status", ST)?);
    let mut b = Draft::new(Document::empty());
    let Some((title, code)) = r.named("code")? else {
        return Ok(Mapped::Kept);
    };
    text!(b.title, Some(title), "code");
    set!(b.code, code, "code");
    let date = match r.datetime_as_date("effectiveDateTime")? {
        Some(d) => Some((d, "effectiveDateTime")),
        None => match r.datetime_as_date("effectivePeriod.start")? {
            Some(d) => Some((d, "effectivePeriod.start")),
            None => r.datetime_as_date("issued")?.map(|d| (d, "issued")),
        },
    };
    if let Some((d, p)) = date {
        set!(b.date, Some(d), p);
    }
    r.datetime("issued")?;
    text!(b.description, r.string("conclusion")?, "conclusion");
    if !r.list("presentedForm")?.is_empty() {
        attachment(r, "presentedForm[0]", &mut b)?;
    }
    typed(b, EntryBody::Document)
}

fn attachment(r: &Res<'_>, path: &str, b: &mut Draft<Document>) -> Result<(), FhirError> {
    let ct = r.string(&format!("{path}.contentType"))?;
    let data = r.string(&format!("{path}.data"))?;
    let url = r.string(&format!("{path}.url"))?;
    set!(b.content_type, ct, format!("{path}.contentType"));
    set!(b.data_base64, data, format!("{path}.data"));
    set!(b.url, url, format!("{path}.url"));
    Ok(())
}

pub(super) fn document_reference(r: &Res<'_>) -> Result<Mapped, FhirError> {
    unless_in_error!(r.code("status", "current superseded entered-in-error")?);
    let mut b = Draft::new(Document::empty());
    let doc_type = r.concept("type")?;
    set!(b.code, doc_type.as_ref().and_then(Concept::coded), "type");
    let title = match r.string("content[0].attachment.title")? {
        Some(t) => Some((t, "content[0].attachment.title")),
        None => match doc_type.as_ref().and_then(Concept::words) {
            Some(t) => Some((t, "type")),
            None => r.string("description")?.map(|t| (t, "description")),
        },
    };
    let (title, from) = title.unwrap_or_else(|| ("Document".to_owned(), "type"));
    text!(b.title, Some(title), from);
    fill!(b.date, r.datetime_as_date("date"));
    text!(b.description, r.string("description")?, "description");
    if !r.list("content")?.is_empty() {
        attachment(r, "content[0].attachment", &mut b)?;
    }
    typed(b, EntryBody::Document)
}

pub(super) fn questionnaire_response(r: &Res<'_>) -> Result<Mapped, FhirError> {
    unless_in_error!(r.code(
        "status",
        "in-progress completed amended entered-in-error stopped"
    )?);
    r.datetime("authored")?;
    let mut b = Draft::new(Note::empty());
    let mut lines = Vec::new();
    answers(r, "item", 0, &mut lines)?;
    let text = if lines.is_empty() {
        "(no answers)".to_owned()
    } else {
        lines.join("\n")
    };
    text!(b.text, Some(text), "item");
    let title = r
        .string("questionnaire")?
        .and_then(|q| q.rsplit('/').next().map(str::to_owned))
        .map(|q| format!("Questionnaire response: {q}"))
        .unwrap_or_else(|| "Questionnaire response".to_owned());
    text!(b.title, Some(title), "questionnaire");
    text!(
        b.category,
        Some("questionnaire response".to_owned()),
        "resourceType"
    );
    typed(b, EntryBody::Note)
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

pub(super) fn encounter(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str =
        "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown";
    let status = unless_in_error!(r.code("status", ST)?);
    let mut b = Draft::new(Encounter::empty());
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
    text!(b.class, Some(class), "class");
    set!(
        b.code,
        type_concept.as_ref().and_then(Concept::coded),
        "type[0]"
    );
    let status = match status.as_deref() {
        Some("planned") => Some(EncounterStatus::Planned),
        Some("arrived" | "triaged" | "in-progress" | "onleave") => {
            Some(EncounterStatus::InProgress)
        }
        Some("finished") => Some(EncounterStatus::Finished),
        Some("cancelled") => Some(EncounterStatus::Cancelled),
        _ => None,
    };
    set!(b.status, status, "status");
    text!(b.reason, r.reason()?, "reasonCode[0]");
    set!(b.start, Some(start), "period.start");
    fill!(b.end, r.datetime("period.end"));
    if !r.list("location")?.is_empty() {
        text!(
            b.location,
            r.reference_words("location[0].location"),
            "location[0].location"
        );
    }
    if !r.list("participant")?.is_empty() {
        text!(
            b.practitioner,
            r.reference_words("participant[0].individual"),
            "participant[0].individual"
        );
    }
    text!(
        b.outcome,
        r.concept("hospitalization.dischargeDisposition")?
            .and_then(|c| c.words()),
        "hospitalization.dischargeDisposition"
    );
    typed(b, EntryBody::Encounter)
}

pub(super) fn procedure(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str =
        "preparation in-progress not-done on-hold stopped completed entered-in-error unknown";
    let status = unless_in_error!(r.code("status", ST)?);
    let mut b = Draft::new(Encounter::empty());
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
    text!(b.class, Some(class), "code");
    set!(b.code, code.as_ref().and_then(Concept::coded), "code");
    let status = match status.as_deref() {
        Some("preparation") => Some(EncounterStatus::Planned),
        Some("in-progress" | "on-hold") => Some(EncounterStatus::InProgress),
        Some("not-done" | "stopped") => Some(EncounterStatus::Cancelled),
        Some("completed") => Some(EncounterStatus::Finished),
        _ => None,
    };
    set!(b.status, status, "status");
    text!(b.reason, r.reason()?, "reasonCode[0]");
    set!(b.start, Some(start), from);
    fill!(b.end, r.datetime("performedPeriod.end"));
    text!(b.location, r.reference_words("location"), "location");
    if !r.list("performer")?.is_empty() {
        text!(
            b.practitioner,
            r.reference_words("performer[0].actor"),
            "performer[0].actor"
        );
    }
    text!(
        b.outcome,
        r.concept("outcome")?.and_then(|c| c.words()),
        "outcome"
    );
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Encounter)
}

pub(super) fn care_plan(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str = "draft active on-hold revoked completed entered-in-error unknown";
    let status = unless_in_error!(r.code("status", ST)?);
    let mut b = Draft::new(CarePlan::empty());
    let title = match r.string("title")? {
        Some(t) => Some((t, "title")),
        None => r
            .first_concept_words("category")?
            .map(|t| (t, "category[0]")),
    };
    let (title, from) = title.unwrap_or_else(|| ("Care plan".to_owned(), "title"));
    text!(b.title, Some(title), from);
    text!(b.description, r.string("description")?, "description");
    set!(
        b.status,
        status.as_deref().and_then(PlanStatus::from_text),
        "status"
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
            goals.push(clip(&w));
        }
    }
    if !goals.is_empty() {
        set!(b.goals, Some(goals), "goal");
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
            activities.push(clip(&w));
        }
    }
    if !activities.is_empty() {
        set!(b.activities, Some(activities), "activity");
    }
    fill!(b.start, r.datetime_as_date("period.start"));
    fill!(b.end, r.datetime_as_date("period.end"));
    typed(b, EntryBody::CarePlan)
}
