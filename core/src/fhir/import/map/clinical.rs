//! The patient, the people around them and their clinical facts: Patient (`demographics`),
//! RelatedPerson (`carers`), CareTeam (a note), AllergyIntolerance, Condition, and the medicines
//! (MedicationStatement, MedicationRequest, Immunization) as `medications` entries.

use super::super::super::{FhirError, NHS_NUMBER_SYSTEM};
use super::super::read::{Concept, Draft, Mapped, Res, display_name, nonblank};
use super::typed;
use crate::entry::EntryBody;
use crate::entry::schema::{
    Allergy, AllergyVerificationStatus, Carer, Condition, ConditionVerificationStatus,
    Demographics, Medication, MedicationStatus, Note, Severity,
};
use crate::nhs::NhsNumber;
use serde_json::Value;

pub(super) fn patient(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let mut b = Draft::new(Demographics::empty());
    let Some(name) = display_name(r.map) else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "name");
    fill!(b.birth_date, r.date("birthDate"));
    fill!(b.gender, r.value("gender"));
    for (i, ident) in r.list("identifier")?.iter().enumerate() {
        if ident.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM)
            && b.shape.nhs_number.is_none()
        {
            // Checked with the resource's identifiers: a valid NHS number.
            set!(
                b.nhs_number,
                ident
                    .get("value")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<NhsNumber>().ok()),
                format!("identifier[{i}].value")
            );
        }
    }
    if let Some(addr) = r.list("address")?.first() {
        let mut parts: Vec<String> = Vec::new();
        if let Some(t) = nonblank(addr.get("text").and_then(Value::as_str)) {
            parts.push(t);
        } else {
            for l in addr
                .get("line")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(s) = nonblank(l.as_str()) {
                    parts.push(s);
                }
            }
            for k in ["city", "district", "state"] {
                if let Some(s) = nonblank(addr.get(k).and_then(Value::as_str)) {
                    parts.push(s);
                }
            }
        }
        text!(
            b.address,
            (!parts.is_empty()).then(|| parts.join(", ")),
            "address[0]"
        );
        text!(
            b.postcode,
            nonblank(addr.get("postalCode").and_then(Value::as_str)),
            "address[0].postalCode"
        );
    }
    let (phone, email) = telecom(r)?;
    if let Some((p, from)) = phone {
        text!(b.phone, Some(p), from);
    }
    if let Some((e, from)) = email {
        text!(b.email, Some(e), from);
    }
    if !r.list("communication")?.is_empty() {
        text!(
            b.preferred_language,
            r.concept("communication[0].language")?
                .and_then(|c| c.words()),
            "communication[0].language"
        );
    }
    if !r.list("generalPractitioner")?.is_empty() {
        text!(
            b.gp_practice,
            r.reference_words("generalPractitioner[0]"),
            "generalPractitioner[0]"
        );
    }
    typed(b, EntryBody::Demographics)
}

/// A contact point found in `telecom`, with its path.
type Contact = Option<(String, String)>;

/// The first phone (or SMS) number and the first email address in `telecom`.
fn telecom(r: &Res<'_>) -> Result<(Contact, Contact), FhirError> {
    let (mut phone, mut email) = (None, None);
    for (i, t) in r.list("telecom")?.iter().enumerate() {
        let system = t.get("system").and_then(Value::as_str);
        let Some(value) = nonblank(t.get("value").and_then(Value::as_str)) else {
            continue;
        };
        let found = Some((value, format!("telecom[{i}].value")));
        match system {
            Some("phone" | "sms") if phone.is_none() => phone = found,
            Some("email") if email.is_none() => email = found,
            _ => {}
        }
    }
    Ok((phone, email))
}

pub(super) fn related_person(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let mut b = Draft::new(Carer::empty());
    let (Some(name), Some(rel)) = (display_name(r.map), r.first_concept_words("relationship")?)
    else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "name");
    text!(b.relationship, Some(rel), "relationship[0]");
    let (phone, email) = telecom(r)?;
    if let Some((p, from)) = phone {
        text!(b.phone, Some(p), from);
    }
    if let Some((e, from)) = email {
        text!(b.email, Some(e), from);
    }
    typed(b, EntryBody::Carer)
}

pub(super) fn care_team(r: &Res<'_>) -> Result<Mapped, FhirError> {
    unless_in_error!(r.code(
        "status",
        "proposed active suspended inactive entered-in-error"
    )?);
    let mut b = Draft::new(Note::empty());
    let mut lines = Vec::new();
    for i in 0..r.list("participant")?.len() {
        let p = format!("participant[{i}]");
        let who = r.reference_words(&format!("{p}.member"));
        let role = r.first_concept_words(&format!("{p}.role"))?;
        match (role, who) {
            (Some(role), Some(who)) => lines.push(format!("{role}: {who}")),
            (None, Some(who)) => lines.push(who),
            (Some(role), None) => lines.push(role),
            (None, None) => {}
        }
    }
    let name = r.string("name")?;
    let text = if lines.is_empty() {
        name.clone().unwrap_or_else(|| "Care team".to_owned())
    } else {
        lines.join("\n")
    };
    text!(b.text, Some(text), "participant");
    text!(
        b.title,
        Some(name.unwrap_or_else(|| "Care team".to_owned())),
        "name"
    );
    text!(b.category, Some("care team".to_owned()), "resourceType");
    typed(b, EntryBody::Note)
}

pub(super) fn allergy(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const VER: &str = "unconfirmed confirmed refuted entered-in-error";
    let mut b = Draft::new(Allergy::empty());
    let verification = unless_in_error!(r.status_concept("verificationStatus", VER)?);
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
        fill!(b.category, r.value("category[0]"));
    }
    fill!(b.criticality, r.value("criticality"));
    let clinical = r.status_value("clinicalStatus")?;
    set!(b.clinical_status, clinical, "clinicalStatus");
    let v = verification.and_then(|v| AllergyVerificationStatus::from_text(&v));
    set!(b.verification_status, v, "verificationStatus");
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
        fill!(b.severity, r.value("reaction[0].severity"));
    }
    fill!(b.onset, r.datetime_as_date("onsetDateTime"));
    if b.shape.onset.is_none() {
        fill!(b.onset, r.datetime_as_date("onsetPeriod.start"));
    }
    r.datetime("recordedDate")?;
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Allergy)
}

pub(super) fn condition(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const VER: &str = "unconfirmed provisional differential confirmed refuted entered-in-error";
    let mut b = Draft::new(Condition::empty());
    let verification = unless_in_error!(r.status_concept("verificationStatus", VER)?);
    let Some((name, code)) = r.named("code")? else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "code");
    set!(b.code, code, "code");
    let clinical = r.status_value("clinicalStatus")?;
    set!(b.clinical_status, clinical, "clinicalStatus");
    let v = verification.and_then(|v| ConditionVerificationStatus::from_text(&v));
    set!(b.verification_status, v, "verificationStatus");
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

/// Medicine name and code from `medicationCodeableConcept` or a referenced Medication, then
/// `status`: the draft of a MedicationStatement's or MedicationRequest's entry, or `None` when
/// it names no medicine.
fn medicine(
    r: &Res<'_>,
    status: Option<MedicationStatus>,
) -> Result<Option<Draft<Medication>>, FhirError> {
    let mut b = Draft::new(Medication::empty());
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
        return Ok(None);
    };
    let from = concept.as_ref().map_or("medicationReference", |(_, p)| p);
    text!(b.name, Some(name), from);
    set!(b.code, concept.as_ref().and_then(|(c, _)| c.coded()), from);
    set!(b.status, status, "status");
    Ok(Some(b))
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
    const ST: &str = "active completed entered-in-error intended stopped on-hold unknown not-taken";
    let status = match unless_in_error!(r.code("status", ST)?).as_deref() {
        Some("not-taken") => Some(MedicationStatus::Stopped),
        Some("unknown") | None => None,
        Some(s) => MedicationStatus::from_text(s),
    };
    let Some(mut b) = medicine(r, status)? else {
        return Ok(Mapped::Kept);
    };
    if let Some(d) = r.datetime_as_date("effectiveDateTime")? {
        set!(b.start, Some(d), "effectiveDateTime");
    } else {
        fill!(b.start, r.datetime_as_date("effectivePeriod.start"));
        fill!(b.end, r.datetime_as_date("effectivePeriod.end"));
    }
    dosage(r, "dosage", &mut b)?;
    text!(b.reason, r.reason()?, "reasonCode[0]");
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Medication)
}

pub(super) fn medication_request(r: &Res<'_>) -> Result<Mapped, FhirError> {
    const ST: &str = "active on-hold cancelled completed entered-in-error stopped draft unknown";
    let status = match unless_in_error!(r.code("status", ST)?).as_deref() {
        Some("active") => Some(MedicationStatus::Active),
        Some("on-hold") => Some(MedicationStatus::OnHold),
        Some("cancelled" | "stopped") => Some(MedicationStatus::Stopped),
        Some("completed") => Some(MedicationStatus::Completed),
        Some("draft") => Some(MedicationStatus::Intended),
        _ => None,
    };
    let Some(mut b) = medicine(r, status)? else {
        return Ok(Mapped::Kept);
    };
    fill!(b.start, r.datetime_as_date("authoredOn"));
    dosage(r, "dosageInstruction", &mut b)?;
    text!(b.reason, r.reason()?, "reasonCode[0]");
    text!(b.prescriber, r.reference_words("requester"), "requester");
    text!(b.note, r.notes("note")?, "note");
    typed(b, EntryBody::Medication)
}

pub(super) fn immunization(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let status = unless_in_error!(r.code("status", "completed entered-in-error not-done")?);
    let mut b = Draft::new(Medication::empty());
    let Some((name, code)) = r.named("vaccineCode")? else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "vaccineCode");
    set!(b.code, code, "vaccineCode");
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
