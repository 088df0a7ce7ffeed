//! The care, social care and record-keeping entry shapes: care plans, social care assessments
//! and support plans, carers, notes, documents and advance care plans.

use super::common::{Code, Source};
use super::read::{
    Fault, read_base64, read_content_type, read_date, read_email, read_money, read_uri,
};
use super::values::PlanStatus;

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
        /// The document itself, in standard padded base64, at most [`MAX_BASE64_CHARS`] characters.
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
