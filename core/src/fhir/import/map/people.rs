//! People: the Patient (`demographics`), a RelatedPerson (`carers`), a CareTeam (a note).

use super::super::super::{FhirError, NHS_NUMBER_SYSTEM};
use super::super::read::{Draft, Mapped, Res, display_name, nonblank};
use super::typed;
use crate::entry::EntryBody;
use crate::entry::schema::{Carer, Demographics, Gender, Note};
use crate::nhs::NhsNumber;
use serde_json::Value;

pub(super) fn patient(r: &Res<'_>) -> Result<Mapped, FhirError> {
    let mut b = Draft::new(Demographics::empty());
    let Some(name) = display_name(r.map) else {
        return Ok(Mapped::Kept);
    };
    text!(b.name, Some(name), "name");
    set!(b.birth_date, r.date("birthDate")?, "birthDate");
    set!(
        b.gender,
        r.code("gender", &["male", "female", "other", "unknown"])?
            .and_then(|g| Gender::from_text(&g)),
        "gender"
    );
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
    let status = r.code(
        "status",
        &[
            "proposed",
            "active",
            "suspended",
            "inactive",
            "entered-in-error",
        ],
    )?;
    if status.as_deref() == Some("entered-in-error") {
        return Ok(Mapped::Skip(super::super::IN_ERROR));
    }
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
