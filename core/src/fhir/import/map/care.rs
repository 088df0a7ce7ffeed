//! Care: Encounter and Procedure (`encounters`), CarePlan (`care-plan`).

use super::super::super::FhirError;
use super::super::IN_ERROR;
use super::super::read::{Concept, Draft, Mapped, Res, check_coding, clip};
use super::typed;
use crate::entry::EntryBody;
use crate::entry::schema::{CarePlan, Encounter, EncounterStatus, MAX_LIST_ITEMS, PlanStatus};

pub(super) fn encounter(r: &Res<'_>) -> Result<Mapped, FhirError> {
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
    text!(
        b.reason,
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]"
    );
    set!(b.start, Some(start), "period.start");
    set!(b.end, r.datetime("period.end")?, "period.end");
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
    text!(
        b.reason,
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]"
    );
    set!(b.start, Some(start), from);
    set!(
        b.end,
        r.datetime("performedPeriod.end")?,
        "performedPeriod.end"
    );
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
    set!(b.start, r.datetime_as_date("period.start")?, "period.start");
    set!(b.end, r.datetime_as_date("period.end")?, "period.end");
    typed(b, EntryBody::CarePlan)
}
