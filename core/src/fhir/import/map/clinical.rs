//! Clinical resources: AllergyIntolerance, Condition, and the medicines (MedicationStatement,
//! MedicationRequest, Immunization), all as `medications` entries but for the first two.

use super::super::super::FhirError;
use super::super::IN_ERROR;
use super::super::read::{Concept, Draft, Mapped, Res};
use super::typed;
use crate::entry::EntryBody;
use crate::entry::schema::{
    Allergy, AllergyCategory, AllergyClinicalStatus, AllergyVerificationStatus, Condition,
    ConditionClinicalStatus, ConditionVerificationStatus, Criticality, Medication,
    MedicationStatus, Severity,
};
use serde_json::Value;

pub(super) fn allergy(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const VER: &[&str] = &["unconfirmed", "confirmed", "refuted", "entered-in-error"];
    let mut b = Draft::new(Allergy::empty());
    let verification = r.status_concept("verificationStatus", VER)?;
    if verification.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let code = r.concept("code")?;
    let substance = match code.as_ref().and_then(Concept::words) {
        Some(s) => s,
        None => match r.concept("reaction[0].substance")?.and_then(|c| c.words()) {
            Some(s) => s,
            None => return Ok(Mapped::Kept),
        },
    };
    text!(b.substance, Some(substance), "code");
    set!(b.code, code.as_ref().and_then(Concept::coded), "code");
    let cats = r.list("category")?;
    if !cats.is_empty() {
        set!(
            b.category,
            r.code(
                "category[0]",
                &["food", "medication", "environment", "biologic"],
            )?
            .and_then(|c| AllergyCategory::from_text(&c)),
            "category[0]"
        );
    }
    set!(
        b.criticality,
        r.code("criticality", &["low", "high", "unable-to-assess"])?
            .and_then(|c| Criticality::from_text(&c)),
        "criticality"
    );
    set!(
        b.clinical_status,
        r.status_concept("clinicalStatus", &["active", "inactive", "resolved"])?
            .and_then(|c| AllergyClinicalStatus::from_text(&c)),
        "clinicalStatus"
    );
    set!(
        b.verification_status,
        verification.and_then(|v| AllergyVerificationStatus::from_text(&v)),
        "verificationStatus"
    );
    if !r.list("reaction")?.is_empty() {
        let mut words = Vec::new();
        for i in 0..r.list("reaction[0].manifestation")?.len() {
            if let Some(w) = r
                .concept(&format!("reaction[0].manifestation[{i}]"))?
                .and_then(|c| c.words())
            {
                words.push(w);
            }
        }
        text!(
            b.reaction,
            (!words.is_empty()).then(|| words.join(", ")),
            "reaction[0].manifestation"
        );
        set!(
            b.severity,
            r.code("reaction[0].severity", &["mild", "moderate", "severe"])?
                .and_then(|s| Severity::from_text(&s)),
            "reaction[0].severity"
        );
    }
    set!(
        b.onset,
        r.datetime_as_date("onsetDateTime")?,
        "onsetDateTime"
    );
    if b.shape.onset.is_none() {
        set!(
            b.onset,
            r.datetime_as_date("onsetPeriod.start")?,
            "onsetPeriod.start"
        );
    }
    r.datetime("recordedDate")?;
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Allergy)
}

pub(super) fn condition(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const CLIN: &[&str] = &[
        "active",
        "recurrence",
        "relapse",
        "inactive",
        "remission",
        "resolved",
    ];
    const VER: &[&str] = &[
        "unconfirmed",
        "provisional",
        "differential",
        "confirmed",
        "refuted",
        "entered-in-error",
    ];
    let mut b = Draft::new(Condition::empty());
    let verification = r.status_concept("verificationStatus", VER)?;
    if verification.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let code = r.concept("code")?;
    let Some(name) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "code");
    set!(b.code, code.as_ref().and_then(Concept::coded), "code");
    set!(
        b.clinical_status,
        r.status_concept("clinicalStatus", CLIN)?
            .and_then(|c| ConditionClinicalStatus::from_text(&c)),
        "clinicalStatus"
    );
    set!(
        b.verification_status,
        verification.and_then(|v| ConditionVerificationStatus::from_text(&v)),
        "verificationStatus"
    );
    let severity = r
        .concept("severity")?
        .and_then(|c| c.words())
        .and_then(|w| Severity::from_text(&w.to_lowercase()));
    set!(b.severity, severity, "severity");
    if let Some((v, from)) = date_or_period_start(r, "onset")? {
        set!(b.onset, Some(v), from);
    }
    if let Some((v, from)) = date_or_period_start(r, "abatement")? {
        set!(b.abatement, Some(v), from);
    }
    r.datetime("recordedDate")?;
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Condition)
}

/// The date of `<element>DateTime`, else of `<element>Period.start`, with the path read.
fn date_or_period_start(r: &Res<'_>, element: &str) -> Result<Option<(String, String)>, FhirError> {
    let dt = format!("{element}DateTime");
    Ok(match r.datetime_as_date(&dt)? {
        Some(v) => Some((v, dt)),
        None => {
            let p = format!("{element}Period.start");
            r.datetime_as_date(&p)?.map(|v| (v, p))
        }
    })
}

/// Medicine name and code from `medicationCodeableConcept` or a referenced Medication.
fn medicine(r: &Res<'_>, b: &mut Draft<Medication>) -> Result<bool, FhirError> {
    let concept = match r.concept("medicationCodeableConcept")? {
        Some(c) => Some((c, "medicationCodeableConcept")),
        None => match r.referenced("medicationReference") {
            Some(m) => {
                let sub = Res {
                    map: m,
                    at: r.at,
                    index: r.index,
                };
                sub.concept("code")?.map(|c| (c, "medicationReference"))
            }
            None => None,
        },
    };
    let name = concept
        .as_ref()
        .and_then(|(c, _)| c.words())
        .or_else(|| r.reference_words("medicationReference"));
    let Some(name) = name else {
        return Ok(false);
    };
    let from = concept.as_ref().map_or("medicationReference", |(_, p)| p);
    text!(b.name, Some(name), from);
    set!(b.code, concept.as_ref().and_then(|(c, _)| c.coded()), from);
    Ok(true)
}

fn dosage(r: &Res<'_>, path: &str, b: &mut Draft<Medication>) -> Result<(), FhirError> {
    if r.list(path)?.is_empty() {
        return Ok(());
    }
    let d = format!("{path}[0]");
    text!(b.dose, r.string(&format!("{d}.text"))?, format!("{d}.text"));
    text!(
        b.route,
        r.concept(&format!("{d}.route"))?.and_then(|c| c.words()),
        format!("{d}.route")
    );
    let freq = match r
        .concept(&format!("{d}.timing.code"))?
        .and_then(|c| c.words())
    {
        Some(w) => Some(w),
        None => {
            let rep = r.get(&format!("{d}.timing.repeat"));
            match (
                rep.and_then(|x| x.get("frequency")).and_then(Value::as_f64),
                rep.and_then(|x| x.get("period")).and_then(Value::as_f64),
                rep.and_then(|x| x.get("periodUnit"))
                    .and_then(Value::as_str),
            ) {
                (Some(f), Some(p), Some(u)) => Some(format!("{f} times per {p} {u}")),
                _ => None,
            }
        }
    };
    text!(b.frequency, freq, format!("{d}.timing"));
    Ok(())
}

pub(super) fn medication_statement(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Draft::new(Medication::empty());
    if !medicine(r, &mut b)? {
        return Ok(Mapped::Kept);
    }
    let status = match status.as_deref() {
        Some("not-taken") => Some(MedicationStatus::Stopped),
        Some("unknown") | None => None,
        Some(s) => MedicationStatus::from_text(s),
    };
    set!(b.status, status, "status");
    if let Some(d) = r.datetime_as_date("effectiveDateTime")? {
        set!(b.start, Some(d), "effectiveDateTime");
    } else {
        set!(
            b.start,
            r.datetime_as_date("effectivePeriod.start")?,
            "effectivePeriod.start"
        );
        set!(
            b.end,
            r.datetime_as_date("effectivePeriod.end")?,
            "effectivePeriod.end"
        );
    }
    dosage(r, "dosage", &mut b)?;
    text!(
        b.reason,
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]"
    );
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Medication)
}

pub(super) fn medication_request(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &[&str] = &[
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ];
    let status = r.code("status", ST)?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Draft::new(Medication::empty());
    if !medicine(r, &mut b)? {
        return Ok(Mapped::Kept);
    }
    let status = match status.as_deref() {
        Some("active") => Some(MedicationStatus::Active),
        Some("on-hold") => Some(MedicationStatus::OnHold),
        Some("cancelled" | "stopped") => Some(MedicationStatus::Stopped),
        Some("completed") => Some(MedicationStatus::Completed),
        Some("draft") => Some(MedicationStatus::Intended),
        _ => None,
    };
    set!(b.status, status, "status");
    set!(b.start, r.datetime_as_date("authoredOn")?, "authoredOn");
    dosage(r, "dosageInstruction", &mut b)?;
    text!(
        b.reason,
        r.first_concept_words("reasonCode")?,
        "reasonCode[0]"
    );
    text!(b.prescriber, r.reference_words("requester"), "requester");
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Medication)
}

pub(super) fn immunization(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = r.code("status", &["completed", "entered-in-error", "not-done"])?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(IN_ERROR));
    }
    let mut b = Draft::new(Medication::empty());
    let code = r.concept("vaccineCode")?;
    let Some(name) = code.as_ref().and_then(Concept::words) else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "vaccineCode");
    set!(
        b.code,
        code.as_ref().and_then(Concept::coded),
        "vaccineCode"
    );
    set!(
        b.status,
        status.map(|s| {
            if s == "not-done" {
                MedicationStatus::Stopped
            } else {
                MedicationStatus::Completed
            }
        }),
        "status"
    );
    let when = r.datetime_as_date("occurrenceDateTime")?;
    set!(b.start, when.clone(), "occurrenceDateTime");
    set!(b.end, when, "occurrenceDateTime");
    text!(
        b.route,
        r.concept("route")?.and_then(|c| c.words()),
        "route"
    );
    if let (Some(v), u) = (
        r.get("doseQuantity.value").and_then(Value::as_f64),
        r.string("doseQuantity.unit")?,
    ) {
        let dose = match u {
            Some(u) => format!("{v} {u}"),
            None => v.to_string(),
        };
        text!(b.dose, Some(dose), "doseQuantity");
    }
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Medication)
}
