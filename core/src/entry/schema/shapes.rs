//! The entry shapes, each declared once with [`entry_schema!`]: the clinical ones
//! (demographics, allergies, medications, conditions, observations, encounters), then care and
//! social care (care plans, assessments, support plans, carers, advance care plans) and the
//! record's own (notes, documents).

use super::common::{Code, Source};
use super::read::{
    Fault, Obj, read_base64, read_content_type, read_date, read_datetime, read_email, read_money,
    read_uri,
};
use super::values::{
    AllergyCategory, AllergyClinicalStatus, AllergyVerificationStatus, ConditionClinicalStatus,
    ConditionVerificationStatus, Criticality, EncounterStatus, Gender, MedicationStatus,
    ObservationStatus, PlanStatus, Severity,
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

entry_schema! {
    /// `care-plan`: a health care plan (FHIR `CarePlan`).
    pub struct CarePlan {
        /// The plan's title, e.g. `Diabetes care plan`.
        pub title: String = req,
        /// What the plan is about.
        pub description: Option<String> = opt,
        /// Where the plan is in its life.
        pub status: Option<PlanStatus> = opt,
        /// What the plan aims for, one goal per item.
        pub goals: Vec<String> = list,
        /// What will be done, one activity per item.
        pub activities: Vec<String> = list,
        /// First day (a date).
        pub start: Option<String> = date,
        /// Last day (a date, not before `start`).
        pub end: Option<String> = date,
        /// When the plan is next reviewed (a date).
        pub review_date: Option<String> = date,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, p| in_order!(o, p.start => p.end)
}

entry_schema! {
    /// `social-care/assessments`: a social care assessment, e.g. a Care Act needs assessment or a
    /// carer's assessment.
    pub struct SocialCareAssessment {
        /// What kind of assessment, e.g. `Care Act needs assessment`.
        pub assessment_type: String = req,
        /// When it was done (a date).
        pub date: String = req_with(read_date),
        /// Who did it.
        pub assessor: Option<String> = opt,
        /// The needs found, one per outcome domain.
        pub needs: Vec<AssessedNeed> = list,
        /// What was decided.
        pub outcome: Option<String> = opt,
        /// Whether the person has eligible needs overall.
        pub eligible: Option<bool> = opt,
        /// A summary in words.
        pub summary: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
}

entry_schema! {
    /// One need found by a [`SocialCareAssessment`].
    pub struct AssessedNeed {
        /// The outcome domain, e.g. `managing and maintaining nutrition`, `maintaining personal
        /// hygiene`, `being able to make use of the home safely`.
        pub domain: String = req,
        /// The need, in words.
        pub description: Option<String> = opt,
        /// Whether this need meets the eligibility criteria.
        pub eligible: Option<bool> = opt,
    }
}

entry_schema! {
    /// `social-care/support-plan`: a care and support plan: which needs are met, by which services,
    /// funded how.
    pub struct SupportPlan {
        /// The plan's title, e.g. `Care and support plan`.
        pub title: String = req,
        /// Where the plan is in its life.
        pub status: Option<PlanStatus> = opt,
        /// The needs the plan meets, one per item.
        pub needs: Vec<String> = list,
        /// The services that meet them.
        pub services: Vec<SupportService> = list,
        /// The personal budget in pounds sterling per year; zero or more.
        pub personal_budget_gbp: Option<f64> = opt_with(read_money),
        /// First day (a date).
        pub start: Option<String> = date,
        /// Last day (a date, not before `start`).
        pub end: Option<String> = date,
        /// When the plan is next reviewed (a date).
        pub review_date: Option<String> = date,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, p| in_order!(o, p.start => p.end)
}

entry_schema! {
    /// One service in a [`SupportPlan`].
    pub struct SupportService {
        /// The service, e.g. `home care: morning call`.
        pub name: String = req,
        /// Who provides it.
        pub provider: Option<String> = opt,
        /// How often, e.g. `daily, 30 minutes`.
        pub frequency: Option<String> = opt,
        /// Who pays, e.g. `local authority`, `NHS continuing healthcare`, `direct payment`, `self`.
        pub funded_by: Option<String> = opt,
    }
}

entry_schema! {
    /// `carers`: a carer or someone else who supports the patient (FHIR `RelatedPerson`).
    pub struct Carer {
        /// Their name.
        pub name: String = req,
        /// How they are related to the patient, e.g. `daughter`, `neighbour`, `paid carer`.
        pub relationship: String = req,
        /// Telephone number.
        pub phone: Option<String> = opt,
        /// Email address.
        pub email: Option<String> = opt_with(read_email),
        /// Whether they live with the patient.
        pub lives_with_patient: Option<bool> = opt,
        /// Whether they are the main carer.
        pub main_carer: Option<bool> = opt,
        /// Any lasting power of attorney they hold, e.g. `health and welfare`.
        pub lasting_power_of_attorney: Option<String> = opt,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
}

entry_schema! {
    /// `notes`: a free-text note.
    pub struct Note {
        /// The note (not blank).
        pub text: String = req,
        /// A title.
        pub title: Option<String> = opt,
        /// A category, e.g. `progress note`, `telephone call`.
        pub category: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
}

entry_schema! {
    /// `documents`: a letter, report or scan, held inline or by reference (FHIR
    /// `DocumentReference`).
    pub struct Document {
        /// The document's title, e.g. `Discharge letter`.
        pub title: String = req,
        /// The kind of document or report, coded (e.g. LOINC `11490-0` discharge summary).
        pub code: Option<Code> = opt,
        /// Its MIME type, e.g. `application/pdf`; required with `data_base64`.
        pub content_type: Option<String> = opt_with(read_content_type),
        /// When it was written (a date).
        pub date: Option<String> = date,
        /// What it is about.
        pub description: Option<String> = opt,
        /// The document itself, in standard padded base64, at most
        /// [`MAX_BASE64_CHARS`](super::MAX_BASE64_CHARS) characters.
        pub data_base64: Option<String> = opt_with(read_base64),
        /// Where the document can be fetched (an absolute URI).
        pub url: Option<String> = opt_with(read_uri),
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, d| {
        // FHIR att-1: inline data needs its content type.
        if d.data_base64.is_some() && d.content_type.is_none() {
            return Err(Fault::new(
                &o.path(stringify!(content_type)),
                "is required when data_base64 is given",
            ));
        }
        Ok(())
    }
}

entry_schema! {
    /// `advance-care-plan`: the patient's wishes for future care (FHIR `Consent` or `CarePlan` on
    /// export). At least one of `statement`, `dnacpr`, `preferred_place_of_care`,
    /// `preferred_place_of_death`, `lasting_power_of_attorney` or `note` is given.
    pub struct AdvanceCarePlan {
        /// The patient's wishes, in their words.
        pub statement: Option<String> = opt,
        /// Whether a Do Not Attempt Cardiopulmonary Resuscitation decision is in place.
        pub dnacpr: Option<bool> = opt,
        /// Where the patient wants to be cared for.
        pub preferred_place_of_care: Option<String> = opt,
        /// Where the patient wants to die.
        pub preferred_place_of_death: Option<String> = opt,
        /// Who holds a lasting power of attorney, and of which kind.
        pub lasting_power_of_attorney: Option<String> = opt,
        /// When the wishes were recorded (a date).
        pub recorded_on: Option<String> = date,
        /// When they are next reviewed (a date).
        pub review_date: Option<String> = date,
        /// Anything else.
        pub note: Option<String> = opt,
        /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
        /// original kept so nothing is lost; absent for entries written in Hearth.
        pub source: Option<Source> = opt,
    }
    check |o, p| {
        // Dates alone record no wishes.
        if p.statement.is_none()
            && p.dnacpr.is_none()
            && p.preferred_place_of_care.is_none()
            && p.preferred_place_of_death.is_none()
            && p.lasting_power_of_attorney.is_none()
            && p.note.is_none()
        {
            return Err(Fault::new(
                o.at,
                "give at least one of: statement, dnacpr, preferred_place_of_care, \
                 preferred_place_of_death, lasting_power_of_attorney, note",
            ));
        }
        Ok(())
    }
}
