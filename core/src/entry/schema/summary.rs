//! One-line summaries of entries, for terminal display.

use super::shapes::{
    AdvanceCarePlan, Allergy, Condition, Demographics, Encounter, Medication, Observation,
    SocialCareAssessment, SupportPlan,
};
use super::values::{
    AllergyClinicalStatus, ConditionClinicalStatus, ConditionVerificationStatus, EncounterStatus,
    MedicationStatus, PlanStatus,
};
use super::{EntryBody, SUMMARY_CHARS};

impl EntryBody {
    /// A one-line summary for terminal display, e.g. `Penicillin — severe (rash)`: white space
    /// collapsed to single spaces and cut to [`SUMMARY_CHARS`] characters with `…`.
    ///
    /// It is record content: show it to the record's readers, never log it.
    pub fn summary(&self) -> String {
        let text = match self {
            EntryBody::Demographics(d) => summarise_demographics(d),
            EntryBody::Allergy(a) => summarise_allergy(a),
            EntryBody::Medication(m) => summarise_medication(m),
            EntryBody::Condition(c) => summarise_condition(c),
            EntryBody::Observation(o) => summarise_observation(o),
            EntryBody::Encounter(e) => summarise_encounter(e),
            EntryBody::CarePlan(p) => {
                let mut s = p.title.clone();
                push_status(&mut s, p.status.map(PlanStatus::as_str));
                if let Some(review) = &p.review_date {
                    s.push_str(&format!(", review {review}"));
                }
                s
            }
            EntryBody::SocialCareAssessment(a) => summarise_assessment(a),
            EntryBody::SupportPlan(p) => summarise_support_plan(p),
            EntryBody::Carer(c) => {
                let mut s = format!("{} ({})", c.name, c.relationship);
                if c.main_carer == Some(true) {
                    s.push_str(", main carer");
                }
                if c.lives_with_patient == Some(true) {
                    s.push_str(", lives with patient");
                }
                s
            }
            EntryBody::Note(n) => match &n.title {
                Some(title) => format!("{title}: {}", n.text),
                None => n.text.clone(),
            },
            EntryBody::Document(d) => {
                let details: Vec<&str> = [d.content_type.as_deref(), d.date.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                if details.is_empty() {
                    d.title.clone()
                } else {
                    format!("{} ({})", d.title, details.join(", "))
                }
            }
            EntryBody::AdvanceCarePlan(p) => summarise_advance_care_plan(p),
        };
        one_line(&text, SUMMARY_CHARS)
    }
}

/// Collapses white space to single spaces, drops control characters, and cuts to `max`
/// characters, ending with `…` when cut.
fn one_line(text: &str, max: usize) -> String {
    let collapsed: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Appends ` [status]`.
fn push_status(s: &mut String, status: Option<&str>) {
    if let Some(status) = status {
        s.push_str(&format!(" [{status}]"));
    }
}

/// `72.5 kg`, `negative`, or nothing.
fn result_text(value: Option<f64>, unit: Option<&String>, text: Option<&String>) -> Option<String> {
    match (value, text) {
        (Some(v), _) => Some(match unit {
            Some(unit) => format!("{v} {unit}"),
            None => v.to_string(),
        }),
        (None, Some(text)) => Some(text.clone()),
        (None, None) => None,
    }
}

fn summarise_demographics(d: &Demographics) -> String {
    let mut s = d.name.clone();
    if let Some(born) = &d.birth_date {
        s.push_str(&format!(", born {born}"));
    }
    if let Some(nhs) = &d.nhs_number {
        s.push_str(&format!(", NHS {}", nhs.formatted()));
    }
    s
}

fn summarise_allergy(a: &Allergy) -> String {
    let mut s = a.substance.clone();
    if let Some(severity) = a.severity {
        s.push_str(&format!(" — {severity}"));
    }
    if let Some(reaction) = &a.reaction {
        s.push_str(&format!(" ({reaction})"));
    }
    push_status(
        &mut s,
        a.clinical_status
            .filter(|c| *c != AllergyClinicalStatus::Active)
            .map(AllergyClinicalStatus::as_str),
    );
    s
}

fn summarise_medication(m: &Medication) -> String {
    let mut s = m.name.clone();
    for detail in [&m.dose, &m.frequency].into_iter().flatten() {
        s.push_str(&format!(", {detail}"));
    }
    push_status(&mut s, m.status.map(MedicationStatus::as_str));
    s
}

fn summarise_condition(c: &Condition) -> String {
    let mut s = c.name.clone();
    let statuses: Vec<&str> = [
        c.clinical_status.map(ConditionClinicalStatus::as_str),
        c.verification_status
            .map(ConditionVerificationStatus::as_str),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !statuses.is_empty() {
        s.push_str(&format!(" [{}]", statuses.join(", ")));
    }
    if let Some(onset) = &c.onset {
        s.push_str(&format!(", since {onset}"));
    }
    if let Some(abatement) = &c.abatement {
        s.push_str(&format!(", until {abatement}"));
    }
    s
}

fn summarise_observation(o: &Observation) -> String {
    let mut s = o.name.clone();
    let result = result_text(o.value, o.unit.as_ref(), o.value_text.as_ref()).or_else(|| {
        let parts: Vec<String> = o
            .components
            .iter()
            .map(
                |c| match result_text(c.value, c.unit.as_ref(), c.value_text.as_ref()) {
                    Some(r) => format!("{} {r}", c.name),
                    None => c.name.clone(),
                },
            )
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    });
    if let Some(result) = result {
        s.push_str(&format!(": {result}"));
    }
    if let Some(interpretation) = &o.interpretation {
        s.push_str(&format!(" ({interpretation})"));
    }
    if let Some(effective) = &o.effective {
        s.push_str(&format!(" on {effective}"));
    }
    s
}

fn summarise_encounter(e: &Encounter) -> String {
    let mut s = format!("{} on {}", e.class, e.start);
    if let Some(reason) = &e.reason {
        s.push_str(&format!(": {reason}"));
    }
    push_status(&mut s, e.status.map(EncounterStatus::as_str));
    s
}

fn summarise_assessment(a: &SocialCareAssessment) -> String {
    let mut s = format!("{} on {}", a.assessment_type, a.date);
    match a.eligible {
        Some(true) => s.push_str(" — eligible"),
        Some(false) => s.push_str(" — not eligible"),
        None => {}
    }
    match a.needs.len() {
        0 => {}
        1 => s.push_str(", 1 need"),
        n => s.push_str(&format!(", {n} needs")),
    }
    s
}

fn summarise_support_plan(p: &SupportPlan) -> String {
    let mut s = p.title.clone();
    push_status(&mut s, p.status.map(PlanStatus::as_str));
    match p.services.len() {
        0 => {}
        1 => s.push_str(", 1 service"),
        n => s.push_str(&format!(", {n} services")),
    }
    if let Some(budget) = p.personal_budget_gbp {
        s.push_str(&format!(", budget £{budget:.2} a year"));
    }
    s
}

fn summarise_advance_care_plan(p: &AdvanceCarePlan) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(dnacpr) = p.dnacpr {
        parts.push(format!("DNACPR: {}", if dnacpr { "yes" } else { "no" }));
    }
    if let Some(place) = &p.preferred_place_of_death {
        parts.push(format!("preferred place of death: {place}"));
    }
    if let Some(place) = &p.preferred_place_of_care {
        parts.push(format!("preferred place of care: {place}"));
    }
    if let Some(lpa) = &p.lasting_power_of_attorney {
        parts.push(format!("LPA: {lpa}"));
    }
    if let Some(statement) = &p.statement {
        parts.push(statement.clone());
    }
    if let Some(note) = &p.note {
        parts.push(note.clone());
    }
    if parts.is_empty() {
        "Advance care plan".to_owned()
    } else {
        parts.join("; ")
    }
}
