//! The clinical entry shapes: demographics, allergies, medications, conditions, observations
//! and encounters.

use super::common::{Code, Source};
use super::read::{Fault, Obj, read_datetime, read_email};
use super::values::{
    AllergyCategory, AllergyClinicalStatus, AllergyVerificationStatus, ConditionClinicalStatus,
    ConditionVerificationStatus, Criticality, EncounterStatus, Gender, MedicationStatus,
    ObservationStatus, Severity,
};
use crate::nhs::NhsNumber;

entry_schema! {
    /// `demographics`: who the patient is and how to reach them (FHIR `Patient`).
    pub struct Demographics {
        /// Full name, as the patient wants it written.
        pub name: String = req,
        /// Date of birth.
        pub birth_date: Option<String> = date,
        /// Administrative gender.
        pub gender: Option<Gender> = opt,
        /// NHS number (validated; spaces or hyphens between groups are accepted on input).
        pub nhs_number: Option<NhsNumber> = opt,
        /// Postal address, lines separated by commas or new lines.
        pub address: Option<String> = opt,
        /// Postcode.
        pub postcode: Option<String> = opt,
        /// Telephone number.
        pub phone: Option<String> = opt,
        /// Email address.
        pub email: Option<String> = opt_with(read_email),
        /// Preferred language, e.g. `Welsh` or a BCP 47 tag such as `cy`.
        pub preferred_language: Option<String> = opt,
        /// Whether an interpreter is needed.
        pub interpreter_needed: Option<bool> = opt,
        /// The registered GP practice: its name or ODS code.
        pub gp_practice: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
}

entry_schema! {
    /// `allergies`: an allergy or intolerance (FHIR `AllergyIntolerance`).
    pub struct Allergy {
        /// What the patient reacts to, e.g. `Penicillin`.
        pub substance: String = req,
        /// The substance, coded (SNOMED CT or dm+d).
        pub code: Option<Code> = opt,
        /// What kind of substance it is.
        pub category: Option<AllergyCategory> = opt,
        /// The reaction, e.g. `rash`, `anaphylaxis`.
        pub reaction: Option<String> = opt,
        /// How severe the reaction was.
        pub severity: Option<Severity> = opt,
        /// How dangerous a future reaction could be.
        pub criticality: Option<Criticality> = opt,
        /// Whether the allergy is current.
        pub clinical_status: Option<AllergyClinicalStatus> = opt,
        /// How certain it is.
        pub verification_status: Option<AllergyVerificationStatus> = opt,
        /// When it started (a date).
        pub onset: Option<String> = date,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
}

entry_schema! {
    /// `medications`: a medicine the patient takes or was prescribed (FHIR `MedicationStatement`).
    pub struct Medication {
        /// The medicine, e.g. `Metformin 500 mg tablets`.
        pub name: String = req,
        /// The medicine, coded (dm+d or SNOMED CT).
        pub code: Option<Code> = opt,
        /// How much per dose, e.g. `500 mg`, `one tablet`.
        pub dose: Option<String> = opt,
        /// How it is taken, e.g. `oral`, `subcutaneous`.
        pub route: Option<String> = opt,
        /// How often, e.g. `twice a day`.
        pub frequency: Option<String> = opt,
        /// First day (a date).
        pub start: Option<String> = date,
        /// Last day (a date, not before `start`).
        pub end: Option<String> = date,
        /// Whether it is being taken.
        pub status: Option<MedicationStatus> = opt,
        /// Why it is taken.
        pub reason: Option<String> = opt,
        /// Who prescribed it.
        pub prescriber: Option<String> = opt,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, m| in_order!(o, m.start => m.end)
}

entry_schema! {
    /// `conditions`: a problem or diagnosis (FHIR `Condition`).
    pub struct Condition {
        /// The condition, e.g. `Type 2 diabetes mellitus`.
        pub name: String = req,
        /// The condition, coded (SNOMED CT or ICD-10).
        pub code: Option<Code> = opt,
        /// Whether it is current. With `abatement`, it must be `inactive`, `remission` or `resolved`.
        pub clinical_status: Option<ConditionClinicalStatus> = opt,
        /// How certain the diagnosis is.
        pub verification_status: Option<ConditionVerificationStatus> = opt,
        /// How severe it is.
        pub severity: Option<Severity> = opt,
        /// When it started (a date).
        pub onset: Option<String> = date,
        /// When it resolved or went into remission (a date, not before `onset`).
        pub abatement: Option<String> = date,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, c| {
        in_order!(o, c.onset => c.abatement)?;
        // FHIR con-4: an abated condition is not current.
        if c.abatement.is_some()
            && matches!(
                c.clinical_status,
                Some(
                    ConditionClinicalStatus::Active
                        | ConditionClinicalStatus::Recurrence
                        | ConditionClinicalStatus::Relapse
                )
            )
        {
            return Err(Fault::new(
                &o.path(stringify!(clinical_status)),
                "must be inactive, remission or resolved when abatement is given",
            ));
        }
        Ok(())
    }
}

entry_schema! {
    /// `observations`: a measurement or test result (FHIR `Observation`). It has a numeric `value`
    /// (with a `unit`), a `value_text`, or `components` (e.g. systolic and diastolic blood pressure).
    pub struct Observation {
        /// What was observed, e.g. `Body weight`.
        pub name: String = req,
        /// What was observed, coded (SNOMED CT or LOINC).
        pub code: Option<Code> = opt,
        /// How final the result is.
        pub status: Option<ObservationStatus> = opt,
        /// The numeric result.
        pub value: Option<f64> = opt,
        /// The unit of `value`, preferably UCUM, e.g. `kg`, `mm[Hg]`, `mmol/L`, `/min`.
        pub unit: Option<String> = opt,
        /// A result in words, when it is not a number, e.g. `negative`.
        pub value_text: Option<String> = opt,
        /// Parts of a result measured together.
        pub components: Vec<ObservationComponent> = list,
        /// When it was observed (a date-time or a date).
        pub effective: Option<String> = datetime,
        /// How to read the result, e.g. `normal`, `high`, `low`, `abnormal`.
        pub interpretation: Option<String> = opt,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, obs| {
        check_result(
            o,
            obs.value,
            obs.unit.as_ref(),
            obs.value_text.as_ref(),
            !obs.components.is_empty(),
            "give a value, a value_text or components",
        )
    }
}

entry_schema! {
    /// One part of an [`Observation`], e.g. the systolic pressure of a blood pressure reading. It
    /// has a `value` or a `value_text`.
    pub struct ObservationComponent {
        /// What this part is, e.g. `Systolic blood pressure`.
        pub name: String = req,
        /// What this part is, coded.
        pub code: Option<Code> = opt,
        /// The numeric result.
        pub value: Option<f64> = opt,
        /// The unit of `value`.
        pub unit: Option<String> = opt,
        /// A result in words.
        pub value_text: Option<String> = opt,
    }
    check |o, c| {
        check_result(
            o,
            c.value,
            c.unit.as_ref(),
            c.value_text.as_ref(),
            false,
            "give a value or a value_text",
        )
    }
}

entry_schema! {
    /// `encounters`: a contact with a service: an appointment, a visit, an admission (FHIR
    /// `Encounter`).
    pub struct Encounter {
        /// What kind of contact, e.g. `home visit`, `outpatient`, `A&E`, `telephone`.
        pub class: String = req,
        /// The kind of contact or the procedure done, coded (e.g. SNOMED CT).
        pub code: Option<Code> = opt,
        /// Where it is in its life.
        pub status: Option<EncounterStatus> = opt,
        /// Why it happened.
        pub reason: Option<String> = opt,
        /// When it started (a date-time or a date).
        pub start: String = req_with(read_datetime),
        /// When it ended (a date-time or a date, not before `start`).
        pub end: Option<String> = datetime,
        /// Where, e.g. `Riverside Practice`, `patient's home`.
        pub location: Option<String> = opt,
        /// Who the patient saw.
        pub practitioner: Option<String> = opt,
        /// What came of it, e.g. `discharged home`, `referred to falls clinic`.
        pub outcome: Option<String> = opt,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, e| in_order!(o, e.start => e.end)
}

/// The rules shared by observations and their components: a numeric `value` or a `value_text`
/// (not both), and a `unit` only with a numeric value.
fn check_result(
    o: &Obj<'_>,
    value: Option<f64>,
    unit: Option<&String>,
    value_text: Option<&String>,
    has_components: bool,
    missing: &str,
) -> Result<(), Fault> {
    if value.is_some() && value_text.is_some() {
        return Err(Fault::new(
            &o.path("value_text"),
            "give either value or value_text, not both",
        ));
    }
    if unit.is_some() && value.is_none() {
        return Err(Fault::new(&o.path("unit"), "needs a numeric value"));
    }
    if value.is_none() && value_text.is_none() && !has_components {
        return Err(Fault::new(&o.path("value"), missing));
    }
    Ok(())
}
