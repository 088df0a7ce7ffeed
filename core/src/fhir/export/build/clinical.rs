//! Clinical resources from clinical entries: Patient, AllergyIntolerance, the medication
//! resources, Condition, Observation, Encounter and Procedure.

use super::super::super::NHS_NUMBER_SYSTEM;
use super::{
    StatusElement, concept, ext, field_extensions, notes, period, put, put_concept, put_result,
    put_status, put_value, subject, telecom, text_of, texts_of,
};
use crate::entry::schema::{
    Allergy, AllergyVerificationStatus, Condition, Demographics, Encounter, EncounterStatus,
    Medication, MedicationStatus, Observation, ObservationComponent,
};
use crate::section::SectionClass;
use serde_json::{Map, Value, json};

const ALLERGY_CLINICAL: StatusElement = (
    "clinicalStatus",
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
);
const ALLERGY_VERIFICATION: StatusElement = (
    "verificationStatus",
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
);
const CONDITION_CLINICAL: StatusElement = (
    "clinicalStatus",
    "http://terminology.hl7.org/CodeSystem/condition-clinical",
);
const CONDITION_VERIFICATION: StatusElement = (
    "verificationStatus",
    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
);

pub(super) fn demographics(r: &mut Map<String, Value>, d: &Demographics) {
    r.insert("resourceType".into(), json!("Patient"));
    if let Some(n) = &d.nhs_number {
        r.insert(
            "identifier".into(),
            json!([{"system": NHS_NUMBER_SYSTEM, "value": n}]),
        );
    }
    r.insert("name".into(), json!([{"text": d.name}]));
    put(
        r,
        "telecom",
        telecom(d.phone.as_deref(), d.email.as_deref()),
    );
    put_value(r, "gender", &d.gender);
    put_value(r, "birthDate", &d.birth_date);
    if d.address.is_some() || d.postcode.is_some() {
        let mut a = Map::new();
        put_value(&mut a, "text", &d.address);
        put_value(&mut a, "postalCode", &d.postcode);
        r.insert("address".into(), json!([a]));
    }
    if let Some(l) = &d.preferred_language {
        r.insert(
            "communication".into(),
            json!([{"language": {"text": l}, "preferred": true}]),
        );
    }
    put(
        r,
        "generalPractitioner",
        d.gp_practice.as_ref().map(|g| json!([{"display": g}])),
    );
    put(
        r,
        "extension",
        field_extensions(SectionClass::Demographics, &[ext!(d.interpreter_needed)]),
    );
}

pub(super) fn allergy(r: &mut Map<String, Value>, a: &Allergy) {
    r.insert("resourceType".into(), json!("AllergyIntolerance"));
    put_status(r, ALLERGY_CLINICAL, a.clinical_status);
    // R4 has no "presumed": the closest is unconfirmed.
    let verification = a.verification_status.map(|c| match c {
        AllergyVerificationStatus::Presumed => AllergyVerificationStatus::Unconfirmed,
        other => other,
    });
    put_status(r, ALLERGY_VERIFICATION, verification);
    put(r, "category", a.category.map(|c| json!([c])));
    put_value(r, "criticality", &a.criticality);
    put_concept(r, "code", &a.code, &a.substance);
    r.insert("patient".into(), subject());
    put_value(r, "onsetDateTime", &a.onset);
    if a.reaction.is_some() || a.severity.is_some() {
        let mut re = Map::new();
        re.insert(
            "manifestation".into(),
            json!([{"text": a.reaction.as_deref().unwrap_or("reaction")}]),
        );
        put_value(&mut re, "severity", &a.severity);
        r.insert("reaction".into(), json!([re]));
    }
    put(r, "note", notes(a.note.as_deref(), &[]));
}

pub(super) fn medication_request(r: &mut Map<String, Value>, m: &Medication) {
    r.insert("resourceType".into(), json!("MedicationRequest"));
    let status = match m.status {
        Some(MedicationStatus::Intended) => "draft",
        Some(s) => s.as_str(),
        None => "unknown",
    };
    r.insert("status".into(), json!(status));
    r.insert("intent".into(), json!("order"));
    put_concept(r, "medicationCodeableConcept", &m.code, &m.name);
    r.insert("subject".into(), subject());
    put_value(r, "authoredOn", &m.start);
    put(
        r,
        "requester",
        m.prescriber.as_ref().map(|p| json!({"display": p})),
    );
    put(r, "reasonCode", texts_of(m.reason.as_ref()));
    put(
        r,
        "note",
        notes(m.note.as_deref(), &[("Until", m.end.as_deref())]),
    );
    put(r, "dosageInstruction", dosage(m));
}

pub(super) fn immunization(r: &mut Map<String, Value>, m: &Medication) {
    r.insert("resourceType".into(), json!("Immunization"));
    let status = if m.status == Some(MedicationStatus::Stopped) {
        "not-done"
    } else {
        "completed"
    };
    r.insert("status".into(), json!(status));
    put_concept(r, "vaccineCode", &m.code, &m.name);
    r.insert("patient".into(), subject());
    match m.start.as_ref().or(m.end.as_ref()) {
        Some(d) => r.insert("occurrenceDateTime".into(), json!(d)),
        None => r.insert("occurrenceString".into(), json!("unknown")),
    };
    put(r, "route", text_of(m.route.as_ref()));
    put(
        r,
        "note",
        notes(
            m.note.as_deref(),
            &[
                ("Dose", m.dose.as_deref()),
                ("Prescriber", m.prescriber.as_deref()),
            ],
        ),
    );
}

pub(super) fn medication_statement(r: &mut Map<String, Value>, m: &Medication) {
    r.insert("resourceType".into(), json!("MedicationStatement"));
    let status = m.status.map_or("unknown", MedicationStatus::as_str);
    r.insert("status".into(), json!(status));
    put_concept(r, "medicationCodeableConcept", &m.code, &m.name);
    r.insert("subject".into(), subject());
    put(
        r,
        "effectivePeriod",
        period(m.start.as_ref(), m.end.as_ref()),
    );
    put(r, "reasonCode", texts_of(m.reason.as_ref()));
    put(
        r,
        "note",
        notes(
            m.note.as_deref(),
            &[("Prescriber", m.prescriber.as_deref())],
        ),
    );
    put(r, "dosage", dosage(m));
}

fn dosage(m: &Medication) -> Option<Value> {
    let mut d = Map::new();
    put_value(&mut d, "text", &m.dose);
    put(
        &mut d,
        "timing",
        m.frequency.as_ref().map(|f| json!({"code": {"text": f}})),
    );
    put(&mut d, "route", text_of(m.route.as_ref()));
    (!d.is_empty()).then(|| json!([d]))
}

pub(super) fn condition(r: &mut Map<String, Value>, c: &Condition) {
    r.insert("resourceType".into(), json!("Condition"));
    put_status(r, CONDITION_CLINICAL, c.clinical_status);
    put_status(r, CONDITION_VERIFICATION, c.verification_status);
    put(r, "severity", c.severity.map(|s| json!({"text": s})));
    put_concept(r, "code", &c.code, &c.name);
    r.insert("subject".into(), subject());
    put_value(r, "onsetDateTime", &c.onset);
    put_value(r, "abatementDateTime", &c.abatement);
    put(r, "note", notes(c.note.as_deref(), &[]));
}

pub(super) fn observation(r: &mut Map<String, Value>, o: &Observation) {
    r.insert("resourceType".into(), json!("Observation"));
    let status = o.status.map_or("unknown", |s| s.as_str());
    r.insert("status".into(), json!(status));
    put_concept(r, "code", &o.code, &o.name);
    r.insert("subject".into(), subject());
    put_value(r, "effectiveDateTime", &o.effective);
    put_result(r, o.value, o.unit.as_deref(), o.value_text.as_deref());
    put(r, "interpretation", texts_of(o.interpretation.as_ref()));
    put(r, "note", notes(o.note.as_deref(), &[]));
    let components: Vec<Value> = o.components.iter().map(component).collect();
    if !components.is_empty() {
        r.insert("component".into(), Value::Array(components));
    }
}

fn component(c: &ObservationComponent) -> Value {
    let mut o = Map::new();
    o.insert(
        "code".into(),
        concept(c.code.as_ref(), Some(c.name.as_str())),
    );
    put_result(&mut o, c.value, c.unit.as_deref(), c.value_text.as_deref());
    Value::Object(o)
}

pub(super) fn procedure(r: &mut Map<String, Value>, e: &Encounter) {
    r.insert("resourceType".into(), json!("Procedure"));
    let status = match e.status {
        Some(EncounterStatus::Planned) => "preparation",
        Some(EncounterStatus::InProgress) => "in-progress",
        Some(EncounterStatus::Cancelled) => "not-done",
        Some(EncounterStatus::Finished) => "completed",
        None => "unknown",
    };
    r.insert("status".into(), json!(status));
    let name = e.class.strip_prefix("procedure: ");
    r.insert("code".into(), concept(e.code.as_ref(), name));
    r.insert("subject".into(), subject());
    match &e.end {
        Some(end) => {
            r.insert(
                "performedPeriod".into(),
                json!({"start": e.start, "end": end}),
            );
        }
        None => {
            r.insert("performedDateTime".into(), json!(e.start));
        }
    }
    put(r, "reasonCode", texts_of(e.reason.as_ref()));
    put(
        r,
        "location",
        e.location.as_ref().map(|t| json!({"display": t})),
    );
    put(
        r,
        "performer",
        e.practitioner
            .as_ref()
            .map(|t| json!([{"actor": {"display": t}}])),
    );
    put(r, "outcome", text_of(e.outcome.as_ref()));
    put(r, "note", notes(e.note.as_deref(), &[]));
}

pub(super) fn encounter(r: &mut Map<String, Value>, e: &Encounter) {
    r.insert("resourceType".into(), json!("Encounter"));
    let status = e.status.map_or("unknown", EncounterStatus::as_str);
    r.insert("status".into(), json!(status));
    r.insert("class".into(), encounter_class(&e.class));
    put(r, "type", e.code.as_ref().map(|c| json!([{"coding": [c]}])));
    r.insert("subject".into(), subject());
    put(r, "period", period(Some(&e.start), e.end.as_ref()));
    put(r, "reasonCode", texts_of(e.reason.as_ref()));
    put(
        r,
        "participant",
        e.practitioner
            .as_ref()
            .map(|t| json!([{"individual": {"display": t}}])),
    );
    put(
        r,
        "location",
        e.location
            .as_ref()
            .map(|t| json!([{"location": {"display": t}}])),
    );
    put(
        r,
        "hospitalization",
        e.outcome
            .as_ref()
            .map(|t| json!({"dischargeDisposition": {"text": t}})),
    );
    put(
        r,
        "extension",
        field_extensions(SectionClass::Encounters, &[ext!(e.note)]),
    );
}

/// An Encounter.class Coding: a v3 ActCode when the words name one, else the words.
fn encounter_class(words: &str) -> Value {
    let w = words.to_lowercase();
    let code = if w.contains("home") {
        Some(("HH", "home health"))
    } else if w.contains("emergency") || w.contains("a&e") {
        Some(("EMER", "emergency"))
    } else if w.contains("inpatient") || w.contains("admission") {
        Some(("IMP", "inpatient encounter"))
    } else if w.contains("telephone") || w.contains("virtual") || w.contains("video") {
        Some(("VR", "virtual"))
    } else if w.contains("ambulatory") || w.contains("outpatient") || w.contains("clinic") {
        Some(("AMB", "ambulatory"))
    } else {
        None
    };
    match code {
        Some((c, _)) => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c, "display": words})
        }
        None => json!({"display": words}),
    }
}
