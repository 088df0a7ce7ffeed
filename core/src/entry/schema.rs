//! Entry schemas: the typed shape of an entry's body, one per [`SectionClass`].
//!
//! Every entry in a section is a JSON object whose shape depends on the section's class: an
//! `allergies` entry is an [`Allergy`], a `notes` entry a [`Note`], and so on. The shapes follow
//! what a UK integrated health and social care record holds, and keep what a FHIR R4 export needs
//! (codes, statuses, dates, values and units), so nothing has to be invented on the way out.
//! `docs/ENTRIES.md` is the user's guide to the same shapes.
//!
//! [`EntryBody::from_json`] is the front door: it takes untrusted JSON (typed on the command line,
//! posted to the local API, or imported), checks it field by field and returns the typed body or
//! a [`SchemaError`] that names the offending field as a path (`components[1].value`). It checks
//! more than the JSON types:
//!
//! - unknown fields are refused, so a typo (`txt` for `text`) is an error, not silently lost data;
//! - text is never blank, has no control characters other than tab and new line, and is at most
//!   [`MAX_TEXT_CHARS`] characters; lists hold at most [`MAX_LIST_ITEMS`] items; the whole body is
//!   at most [`MAX_ENTRY_JSON_BYTES`] as JSON. Nobody can grow an entry without bound;
//! - dates are ISO 8601 calendar dates `YYYY-MM-DD`, or the partial forms `YYYY-MM` and `YYYY`
//!   (as in FHIR); date-times are RFC 3339 with an offset (`2024-05-01T14:30:00Z`) or a date;
//! - numbers are finite; an end is never before its start;
//! - code systems are URIs; the aliases `snomed`, `loinc`, `dmd` and `icd10` are accepted and
//!   replaced by their URIs, so [`EntryBody::to_json`] gives the normalised form;
//! - each class's own rules, e.g. an observation has a value, a text value or components.
//!
//! Error messages describe the problem but never repeat the value: record content must not leak
//! into error messages or logs.
//!
//! ```
//! use hearth_core::entry::schema::{EntryBody, SNOMED_CT};
//! use hearth_core::section::SectionClass;
//! use serde_json::json;
//!
//! let body = json!({
//!     "substance": "Penicillin",
//!     "code": {"system": "snomed", "code": "764146007", "display": "Penicillin"},
//!     "reaction": "rash",
//!     "severity": "severe"
//! });
//! let entry = EntryBody::from_json(SectionClass::Allergies, &body).unwrap();
//! assert_eq!(entry.summary(), "Penicillin — severe (rash)");
//! assert_eq!(entry.to_json()["code"]["system"], SNOMED_CT);
//!
//! let err = EntryBody::from_json(SectionClass::Notes, &json!({"txt": "hello"})).unwrap_err();
//! assert_eq!(err.field, "txt");
//! assert_eq!(err.to_string(), "notes entry: txt: unknown field; expected one of: text, title, category, source");
//! ```
//!
//! The structs also derive `Deserialize` (with `deny_unknown_fields`) for reading data that was
//! validated before, e.g. from storage; that checks the shape only. Untrusted input goes through
//! [`EntryBody::from_json`], and deserialising an [`EntryBody`] always does.

use crate::nhs::NhsNumber;
use crate::section::SectionClass;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The longest text field, in characters (except [`Document::data_base64`]).
pub const MAX_TEXT_CHARS: usize = 10_000;
/// The longest code (`code` of a [`Code`]) or code system URI, in characters.
pub const MAX_CODE_CHARS: usize = 256;
/// The longest [`Document::data_base64`], in characters (1 MiB of base64 text).
pub const MAX_BASE64_CHARS: usize = 1 << 20;
/// The most items in any list field.
pub const MAX_LIST_ITEMS: usize = 256;
/// The largest entry body, as compact JSON, in bytes.
pub const MAX_ENTRY_JSON_BYTES: usize = 2 << 20;
/// How long [`EntryBody::summary`] may be, in characters.
pub const SUMMARY_CHARS: usize = 120;

/// SNOMED CT, the clinical terminology used across the NHS (alias `snomed`).
pub const SNOMED_CT: &str = "http://snomed.info/sct";
/// LOINC, for laboratory and clinical observations (alias `loinc`).
pub const LOINC: &str = "http://loinc.org";
/// The NHS Dictionary of medicines and devices, dm+d (alias `dmd`).
pub const DMD: &str = "https://dmd.nhs.uk";
/// ICD-10, for diagnoses in hospital episodes (alias `icd10`).
pub const ICD_10: &str = "http://hl7.org/fhir/sid/icd-10";

/// The code system aliases accepted on input (compared without regard to case), and the URIs
/// they stand for.
pub const CODE_SYSTEM_ALIASES: &[(&str, &str)] = &[
    ("snomed", SNOMED_CT),
    ("loinc", LOINC),
    ("dmd", DMD),
    ("icd10", ICD_10),
];

/// The URI a code system alias stands for, or the input unchanged when it is not an alias.
pub fn code_system_uri(system: &str) -> &str {
    CODE_SYSTEM_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(system.trim()))
        .map_or(system, |(_, uri)| uri)
}

/// An entry body that does not fit its class's schema.
///
/// `field` is a path into the body (`text`, `code.system`, `components[1].value`), or `(body)`
/// when the problem is with the body as a whole. `problem` describes what is wrong without
/// repeating the value, so the error is safe to show and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} entry: {field}: {problem}")]
pub struct SchemaError {
    /// The section class whose schema was applied.
    pub class: SectionClass,
    /// Where the problem is: a field path, or `(body)`.
    pub field: String,
    /// What is wrong, in plain English, without the value.
    pub problem: String,
}

// ---------------------------------------------------------------------------------------------
// Value sets

macro_rules! value_enum {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The JSON text form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            fn from_text(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            fn one_of() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("must be one of: {}", names.join(", "))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::from_text(&text).ok_or_else(|| serde::de::Error::custom(Self::one_of()))
            }
        }

        impl Read for $name {
            fn read(value: &Value, at: &str) -> Result<Self, Fault> {
                value
                    .as_str()
                    .and_then(Self::from_text)
                    .ok_or_else(|| Fault::new(at, Self::one_of()))
            }
        }
    };
}

value_enum!(
    /// Administrative gender, as FHIR `AdministrativeGender`.
    Gender {
        /// Male.
        Male => "male",
        /// Female.
        Female => "female",
        /// Other.
        Other => "other",
        /// Not known.
        Unknown => "unknown",
    }
);

value_enum!(
    /// How severe a reaction or condition is.
    Severity {
        /// Mild.
        Mild => "mild",
        /// Moderate.
        Moderate => "moderate",
        /// Severe.
        Severe => "severe",
    }
);

value_enum!(
    /// The potential for a serious, life-threatening future reaction (FHIR
    /// `AllergyIntolerance.criticality`).
    Criticality {
        /// Unlikely to cause a life-threatening reaction.
        Low => "low",
        /// May cause a life-threatening reaction.
        High => "high",
        /// Cannot be assessed.
        UnableToAssess => "unable-to-assess",
    }
);

value_enum!(
    /// What an allergy or intolerance is to (FHIR `AllergyIntolerance.category`).
    AllergyCategory {
        /// A food.
        Food => "food",
        /// A medicine.
        Medication => "medication",
        /// Something in the environment, e.g. pollen, latex.
        Environment => "environment",
        /// A biological product, e.g. a vaccine or blood product.
        Biologic => "biologic",
    }
);

value_enum!(
    /// Whether an allergy is current (FHIR `AllergyIntolerance.clinicalStatus`).
    AllergyClinicalStatus {
        /// Current.
        Active => "active",
        /// No longer a concern, but not known to be gone.
        Inactive => "inactive",
        /// Gone.
        Resolved => "resolved",
    }
);

value_enum!(
    /// How certain an allergy is (FHIR `AllergyIntolerance.verificationStatus`).
    AllergyVerificationStatus {
        /// Not yet confirmed.
        Unconfirmed => "unconfirmed",
        /// Presumed from history, not tested.
        Presumed => "presumed",
        /// Confirmed, e.g. by a challenge test.
        Confirmed => "confirmed",
        /// Ruled out.
        Refuted => "refuted",
    }
);

value_enum!(
    /// Whether a medication is being taken (FHIR `MedicationStatement.status`).
    MedicationStatus {
        /// Being taken.
        Active => "active",
        /// The course is finished.
        Completed => "completed",
        /// Stopped before the course was finished.
        Stopped => "stopped",
        /// Paused for now.
        OnHold => "on-hold",
        /// Planned, not yet started.
        Intended => "intended",
    }
);

value_enum!(
    /// Whether a condition is current (FHIR `Condition.clinicalStatus`).
    ConditionClinicalStatus {
        /// Current.
        Active => "active",
        /// Back after being resolved.
        Recurrence => "recurrence",
        /// Back after remission.
        Relapse => "relapse",
        /// Not current.
        Inactive => "inactive",
        /// In remission.
        Remission => "remission",
        /// Gone.
        Resolved => "resolved",
    }
);

value_enum!(
    /// How certain a diagnosis is (FHIR `Condition.verificationStatus`).
    ConditionVerificationStatus {
        /// Not yet confirmed.
        Unconfirmed => "unconfirmed",
        /// A working diagnosis.
        Provisional => "provisional",
        /// One of several possible diagnoses.
        Differential => "differential",
        /// Confirmed.
        Confirmed => "confirmed",
        /// Ruled out.
        Refuted => "refuted",
    }
);

value_enum!(
    /// How final an observation is (FHIR `Observation.status`).
    ObservationStatus {
        /// Expected, no result yet.
        Registered => "registered",
        /// An early result that may change.
        Preliminary => "preliminary",
        /// The final result.
        Final => "final",
        /// Changed after it was final.
        Amended => "amended",
    }
);

value_enum!(
    /// Where an encounter is in its life (FHIR `Encounter.status`).
    EncounterStatus {
        /// Booked, not yet happened.
        Planned => "planned",
        /// Happening now, e.g. an admission.
        InProgress => "in-progress",
        /// Happened.
        Finished => "finished",
        /// Did not happen.
        Cancelled => "cancelled",
    }
);

value_enum!(
    /// Where a care or support plan is in its life (FHIR `CarePlan.status`).
    PlanStatus {
        /// Being written.
        Draft => "draft",
        /// In force.
        Active => "active",
        /// Paused.
        OnHold => "on-hold",
        /// Finished.
        Completed => "completed",
        /// Withdrawn before it was finished.
        Revoked => "revoked",
    }
);

// ---------------------------------------------------------------------------------------------
// Entry shapes

/// A coded concept: a code from a code system, e.g. SNOMED CT `764146007` "Penicillin".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// The code system's URI, e.g. [`SNOMED_CT`]. On input the aliases in
    /// [`CODE_SYSTEM_ALIASES`] are accepted and replaced by their URIs.
    #[serde(deserialize_with = "deserialize_code_system")]
    pub system: String,
    /// The code within the system.
    pub code: String,
    /// The code's human-readable meaning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// Where an imported entry came from: the resource it was made from, how to recognise it again
/// (so importing the same data twice adds nothing), and the resource itself, kept whole so that
/// no element Hearth has no field for (extensions, extra codings, narrative) is lost.
///
/// Entries written in Hearth have no source. `docs/FHIR.md` describes how FHIR import fills it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The format the entry was imported from: `fhir-r4`.
    pub format: String,
    /// The resource type, e.g. `Observation`.
    pub resource_type: String,
    /// The resource's logical id, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The bundle entry's `fullUrl`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    /// The resource's business identifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<SourceIdentifier>,
    /// SHA-256 (lower-case hex) of the resource's canonical JSON: the de-duplication key.
    pub sha256: String,
    /// SHA-256 of the entry's other fields as imported: tells an export whether the entry was
    /// corrected since (then its fields, not the kept resource, are authoritative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// The resource as received (a JSON object whose `resourceType` is `resource_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
}

/// A business identifier of an imported resource, e.g. an NHS number or a laboratory's
/// accession number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceIdentifier {
    /// The identifier's namespace, a URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The identifier.
    pub value: String,
}

/// `demographics`: who the patient is and how to reach them (FHIR `Patient`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demographics {
    /// Full name, as the patient wants it written.
    pub name: String,
    /// Date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Administrative gender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// NHS number (validated; spaces or hyphens between groups are accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<NhsNumber>,
    /// Postal address, lines separated by commas or new lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Postcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    /// Telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Preferred language, e.g. `Welsh` or a BCP 47 tag such as `cy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    /// Whether an interpreter is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter_needed: Option<bool>,
    /// The registered GP practice: its name or ODS code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gp_practice: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `allergies`: an allergy or intolerance (FHIR `AllergyIntolerance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allergy {
    /// What the patient reacts to, e.g. `Penicillin`.
    pub substance: String,
    /// The substance, coded (SNOMED CT or dm+d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// What kind of substance it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<AllergyCategory>,
    /// The reaction, e.g. `rash`, `anaphylaxis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    /// How severe the reaction was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// How dangerous a future reaction could be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    /// Whether the allergy is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<AllergyClinicalStatus>,
    /// How certain it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<AllergyVerificationStatus>,
    /// When it started (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `medications`: a medicine the patient takes or was prescribed (FHIR `MedicationStatement`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Medication {
    /// The medicine, e.g. `Metformin 500 mg tablets`.
    pub name: String,
    /// The medicine, coded (dm+d or SNOMED CT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// How much per dose, e.g. `500 mg`, `one tablet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dose: Option<String>,
    /// How it is taken, e.g. `oral`, `subcutaneous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// How often, e.g. `twice a day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// First day (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last day (a date, not before `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Whether it is being taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MedicationStatus>,
    /// Why it is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who prescribed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prescriber: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `conditions`: a problem or diagnosis (FHIR `Condition`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The condition, e.g. `Type 2 diabetes mellitus`.
    pub name: String,
    /// The condition, coded (SNOMED CT or ICD-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Whether it is current. With `abatement`, it must be `inactive`, `remission` or `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<ConditionClinicalStatus>,
    /// How certain the diagnosis is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<ConditionVerificationStatus>,
    /// How severe it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// When it started (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<String>,
    /// When it resolved or went into remission (a date, not before `onset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abatement: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `observations`: a measurement or test result (FHIR `Observation`). It has a numeric `value`
/// (with a `unit`), a `value_text`, or `components` (e.g. systolic and diastolic blood pressure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// What was observed, e.g. `Body weight`.
    pub name: String,
    /// What was observed, coded (SNOMED CT or LOINC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// How final the result is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ObservationStatus>,
    /// The numeric result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The unit of `value`, preferably UCUM, e.g. `kg`, `mm[Hg]`, `mmol/L`, `/min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A result in words, when it is not a number, e.g. `negative`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
    /// Parts of a result measured together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ObservationComponent>,
    /// When it was observed (a date-time or a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<String>,
    /// How to read the result, e.g. `normal`, `high`, `low`, `abnormal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// One part of an [`Observation`], e.g. the systolic pressure of a blood pressure reading. It
/// has a `value` or a `value_text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationComponent {
    /// What this part is, e.g. `Systolic blood pressure`.
    pub name: String,
    /// What this part is, coded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// The numeric result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The unit of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A result in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
}

/// `encounters`: a contact with a service: an appointment, a visit, an admission (FHIR
/// `Encounter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encounter {
    /// What kind of contact, e.g. `home visit`, `outpatient`, `A&E`, `telephone`.
    pub class: String,
    /// The kind of contact or the procedure done, coded (e.g. SNOMED CT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Where it is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EncounterStatus>,
    /// Why it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started (a date-time or a date).
    pub start: String,
    /// When it ended (a date-time or a date, not before `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Where, e.g. `Riverside Practice`, `patient's home`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Who the patient saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<String>,
    /// What came of it, e.g. `discharged home`, `referred to falls clinic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `care-plan`: a health care plan (FHIR `CarePlan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarePlan {
    /// The plan's title, e.g. `Diabetes care plan`.
    pub title: String,
    /// What the plan is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the plan is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PlanStatus>,
    /// What the plan aims for, one goal per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<String>,
    /// What will be done, one activity per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activities: Vec<String>,
    /// First day (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last day (a date, not before `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// When the plan is next reviewed (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_date: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `social-care/assessments`: a social care assessment, e.g. a Care Act needs assessment or a
/// carer's assessment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocialCareAssessment {
    /// What kind of assessment, e.g. `Care Act needs assessment`.
    pub assessment_type: String,
    /// When it was done (a date).
    pub date: String,
    /// Who did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessor: Option<String>,
    /// The needs found, one per outcome domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<AssessedNeed>,
    /// What was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Whether the person has eligible needs overall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<bool>,
    /// A summary in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// One need found by a [`SocialCareAssessment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessedNeed {
    /// The outcome domain, e.g. `managing and maintaining nutrition`, `maintaining personal
    /// hygiene`, `being able to make use of the home safely`.
    pub domain: String,
    /// The need, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether this need meets the eligibility criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<bool>,
}

/// `social-care/support-plan`: a care and support plan: which needs are met, by which services,
/// funded how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportPlan {
    /// The plan's title, e.g. `Care and support plan`.
    pub title: String,
    /// Where the plan is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PlanStatus>,
    /// The needs the plan meets, one per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The services that meet them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<SupportService>,
    /// The personal budget in pounds sterling per year; zero or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_budget_gbp: Option<f64>,
    /// First day (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last day (a date, not before `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// When the plan is next reviewed (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_date: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// One service in a [`SupportPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportService {
    /// The service, e.g. `home care: morning call`.
    pub name: String,
    /// Who provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// How often, e.g. `daily, 30 minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// Who pays, e.g. `local authority`, `NHS continuing healthcare`, `direct payment`, `self`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funded_by: Option<String>,
}

/// `carers`: a carer or someone else who supports the patient (FHIR `RelatedPerson`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carer {
    /// Their name.
    pub name: String,
    /// How they are related to the patient, e.g. `daughter`, `neighbour`, `paid carer`.
    pub relationship: String,
    /// Telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether they live with the patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lives_with_patient: Option<bool>,
    /// Whether they are the main carer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_carer: Option<bool>,
    /// Any lasting power of attorney they hold, e.g. `health and welfare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lasting_power_of_attorney: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `notes`: a free-text note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The note (not blank).
    pub text: String,
    /// A title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A category, e.g. `progress note`, `telephone call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `documents`: a letter, report or scan, held inline or by reference (FHIR
/// `DocumentReference`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The document's title, e.g. `Discharge letter`.
    pub title: String,
    /// The kind of document or report, coded (e.g. LOINC `11490-0` discharge summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Its MIME type, e.g. `application/pdf`; required with `data_base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// When it was written (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// What it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The document itself, in standard padded base64, at most [`MAX_BASE64_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Where the document can be fetched (an absolute URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `advance-care-plan`: the patient's wishes for future care (FHIR `Consent` or `CarePlan` on
/// export). At least one of `statement`, `dnacpr`, `preferred_place_of_care`,
/// `preferred_place_of_death`, `lasting_power_of_attorney` or `note` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceCarePlan {
    /// The patient's wishes, in their words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Whether a Do Not Attempt Cardiopulmonary Resuscitation decision is in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnacpr: Option<bool>,
    /// Where the patient wants to be cared for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_place_of_care: Option<String>,
    /// Where the patient wants to die.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_place_of_death: Option<String>,
    /// Who holds a lasting power of attorney, and of which kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lasting_power_of_attorney: Option<String>,
    /// When the wishes were recorded (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_on: Option<String>,
    /// When they are next reviewed (a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_date: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the entry came from when it was imported (e.g. a FHIR resource), with the
    /// original kept so nothing is lost; absent for entries written in Hearth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A typed entry body: one variant per [`SectionClass`].
///
/// Serialised as `{"class": "allergies", "body": {...}}`; deserialising runs
/// [`EntryBody::from_json`], so an `EntryBody` read from anywhere has been validated.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryBody {
    /// A `demographics` entry.
    Demographics(Demographics),
    /// An `allergies` entry.
    Allergy(Allergy),
    /// A `medications` entry.
    Medication(Medication),
    /// A `conditions` entry.
    Condition(Condition),
    /// An `observations` entry.
    Observation(Observation),
    /// An `encounters` entry.
    Encounter(Encounter),
    /// A `care-plan` entry.
    CarePlan(CarePlan),
    /// A `social-care/assessments` entry.
    SocialCareAssessment(SocialCareAssessment),
    /// A `social-care/support-plan` entry.
    SupportPlan(SupportPlan),
    /// A `carers` entry.
    Carer(Carer),
    /// A `notes` entry.
    Note(Note),
    /// A `documents` entry.
    Document(Document),
    /// An `advance-care-plan` entry.
    AdvanceCarePlan(AdvanceCarePlan),
}

/// Runs `$e` with `$b` bound to the body inside whichever variant `$self` is.
macro_rules! with_body {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            EntryBody::Demographics($b) => $e,
            EntryBody::Allergy($b) => $e,
            EntryBody::Medication($b) => $e,
            EntryBody::Condition($b) => $e,
            EntryBody::Observation($b) => $e,
            EntryBody::Encounter($b) => $e,
            EntryBody::CarePlan($b) => $e,
            EntryBody::SocialCareAssessment($b) => $e,
            EntryBody::SupportPlan($b) => $e,
            EntryBody::Carer($b) => $e,
            EntryBody::Note($b) => $e,
            EntryBody::Document($b) => $e,
            EntryBody::AdvanceCarePlan($b) => $e,
        }
    };
}

impl EntryBody {
    /// Checks untrusted JSON against `class`'s schema and returns the typed, normalised body.
    ///
    /// The body must be a JSON object of the class's shape; `null` counts as an absent field.
    /// The error names the first offending field as a path and never includes its value.
    pub fn from_json(class: SectionClass, value: &Value) -> Result<EntryBody, SchemaError> {
        let located = |fault: Fault| SchemaError {
            class,
            field: fault.field,
            problem: fault.problem,
        };
        check_size(value).map_err(located)?;
        read_body(class, value).map_err(located)
    }

    /// The body as JSON, in normalised form (code system aliases replaced by URIs, absent
    /// fields left out). [`EntryBody::from_json`] accepts it unchanged.
    pub fn to_json(&self) -> Value {
        with_body!(self, b => serde_json::to_value(b).unwrap_or_default())
    }

    /// The section class this body belongs in.
    pub fn class(&self) -> SectionClass {
        match self {
            EntryBody::Demographics(_) => SectionClass::Demographics,
            EntryBody::Allergy(_) => SectionClass::Allergies,
            EntryBody::Medication(_) => SectionClass::Medications,
            EntryBody::Condition(_) => SectionClass::Conditions,
            EntryBody::Observation(_) => SectionClass::Observations,
            EntryBody::Encounter(_) => SectionClass::Encounters,
            EntryBody::CarePlan(_) => SectionClass::CarePlan,
            EntryBody::SocialCareAssessment(_) => SectionClass::SocialCareAssessments,
            EntryBody::SupportPlan(_) => SectionClass::SocialCareSupportPlan,
            EntryBody::Carer(_) => SectionClass::Carers,
            EntryBody::Note(_) => SectionClass::Notes,
            EntryBody::Document(_) => SectionClass::Documents,
            EntryBody::AdvanceCarePlan(_) => SectionClass::AdvanceCarePlan,
        }
    }

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

impl Serialize for EntryBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("EntryBody", 2)?;
        st.serialize_field("class", &self.class())?;
        with_body!(self, b => st.serialize_field("body", b)?);
        st.end()
    }
}

impl<'de> Deserialize<'de> for EntryBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tagged {
            class: SectionClass,
            body: Value,
        }
        let tagged = Tagged::deserialize(d)?;
        EntryBody::from_json(tagged.class, &tagged.body).map_err(serde::de::Error::custom)
    }
}

/// An entry body checked against its class's schema and normalised, as
/// [`EntryBody::from_json`] and [`EntryBody::to_json`] do, held as its compact JSON text: what
/// the record engine stores. A body is checked once, and a large one (an imported entry keeps
/// its FHIR resource whole) is never copied into another `Value` to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedBody {
    class: SectionClass,
    json: String,
}

impl CheckedBody {
    /// Checks untrusted JSON against `class`'s schema, exactly as [`EntryBody::from_json`].
    pub fn new(class: SectionClass, value: &Value) -> Result<CheckedBody, SchemaError> {
        let body = EntryBody::from_json(class, value)?.to_json();
        Ok(CheckedBody {
            class,
            json: body.to_string(),
        })
    }

    /// Checks an imported body given in two parts: `fields`, which are [`EntryBody::to_json`]
    /// of a body already checked with a `source` (lacking its `resource`) added, and the
    /// `resource` kept in that source, with `resource_json` its compact JSON text. Only what is
    /// not checked yet is checked (the source, the resource's type, the whole body's size), with
    /// the errors [`EntryBody::from_json`] gives; the text is the same as [`CheckedBody::new`]
    /// gives for the whole body when `resource_json` is the resource's canonical JSON (keys
    /// sorted). FHIR import maps each resource to such fields, so that the typed fields are not
    /// read twice. (Debug builds check that `fields` are so.)
    pub(crate) fn with_resource_of_checked(
        class: SectionClass,
        fields: &Value,
        resource: &Map<String, Value>,
        resource_json: &str,
    ) -> Result<CheckedBody, SchemaError> {
        let located = |fault: Fault| SchemaError {
            class,
            field: fault.field,
            problem: fault.problem,
        };
        let source = fields
            .get("source")
            .filter(|s| s.is_object())
            .ok_or_else(|| located(Fault::new("source", "must be a JSON object")))?;
        if source.get("resource").is_some() {
            return Err(located(Fault::new("source.resource", "is given twice")));
        }
        let read = Source::read(source, "source").map_err(located)?;
        debug_assert!(
            read_body(class, fields).is_ok_and(|b| b.to_json() == *fields),
            "fields that are not a checked body's"
        );
        if resource.get("resourceType").and_then(Value::as_str) != Some(&read.resource_type) {
            return Err(located(Fault::new(
                "source.resource",
                "must have the resourceType given in resource_type",
            )));
        }
        let json = write_with_resource(fields, resource_json);
        if json.len() > MAX_ENTRY_JSON_BYTES {
            return Err(located(too_large()));
        }
        Ok(CheckedBody { class, json })
    }

    /// The section class whose schema the body was checked against.
    pub fn class(&self) -> SectionClass {
        self.class
    }

    /// The normalised body as compact JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The normalised body as compact JSON text, taken out (its buffer reused).
    pub(crate) fn into_json(self) -> String {
        self.json
    }
}

/// `body` as compact JSON with `"resource": <resource_json>` added to its `source` object, keys
/// in the order serde_json's map keeps them (sorted). The buffer has room for an entry version's
/// other fields, written around it when it is stored.
fn write_with_resource(body: &Value, resource_json: &str) -> String {
    // Writing JSON to a `Vec` cannot fail.
    fn put(out: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut out: Vec<u8> = Vec::with_capacity(resource_json.len() + 1536);
    match body {
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                put(&mut out, k);
                out.push(b':');
                match v {
                    Value::Object(source) if k == "source" => {
                        out.push(b'{');
                        let mut placed = false;
                        let mut first = true;
                        let mut field = |out: &mut Vec<u8>, key: &str, v: Option<&Value>| {
                            if !first {
                                out.push(b',');
                            }
                            first = false;
                            put(out, key);
                            out.push(b':');
                            match v {
                                Some(v) => put(out, v),
                                None => out.extend_from_slice(resource_json.as_bytes()),
                            }
                        };
                        for (sk, sv) in source {
                            if !placed && sk.as_str() > "resource" {
                                field(&mut out, "resource", None);
                                placed = true;
                            }
                            field(&mut out, sk, Some(sv));
                        }
                        if !placed {
                            field(&mut out, "resource", None);
                        }
                        out.push(b'}');
                    }
                    other => put(&mut out, other),
                }
            }
            out.push(b'}');
        }
        other => put(&mut out, other),
    }
    // Only valid UTF-8 is written: serde_json's JSON text, and `resource_json`, a `str`.
    String::from_utf8(out).unwrap_or_default()
}

/// Deserialises a code system, replacing an alias with its URI.
fn deserialize_code_system<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    Ok(code_system_uri(&text).to_owned())
}

// ---------------------------------------------------------------------------------------------
// Reading and checking untrusted JSON
//
// `from_json` does not use the derived `Deserialize`: serde's messages carry no field path and
// quote the offending value ("invalid type: string \"…\", expected f64"), which would leak record
// content. Instead each type reads itself from a `serde_json::Value` with `Read`, knowing where it
// is, and reports a `Fault` that names the path and describes the problem only.

/// A problem at a place in the body; it becomes a [`SchemaError`] once the class is added.
#[derive(Debug)]
struct Fault {
    field: String,
    problem: String,
}

impl Fault {
    /// A fault at path `at` (empty for the body itself).
    fn new(at: &str, problem: impl Into<String>) -> Fault {
        Fault {
            field: if at.is_empty() {
                "(body)".to_owned()
            } else {
                at.to_owned()
            },
            problem: problem.into(),
        }
    }
}

/// Reads and checks one JSON value as `Self`; `at` is the value's path, for errors.
trait Read: Sized {
    fn read(value: &Value, at: &str) -> Result<Self, Fault>;
}

fn read_body(class: SectionClass, value: &Value) -> Result<EntryBody, Fault> {
    Ok(match class {
        SectionClass::Demographics => EntryBody::Demographics(Read::read(value, "")?),
        SectionClass::Allergies => EntryBody::Allergy(Read::read(value, "")?),
        SectionClass::Medications => EntryBody::Medication(Read::read(value, "")?),
        SectionClass::Conditions => EntryBody::Condition(Read::read(value, "")?),
        SectionClass::Observations => EntryBody::Observation(Read::read(value, "")?),
        SectionClass::Encounters => EntryBody::Encounter(Read::read(value, "")?),
        SectionClass::CarePlan => EntryBody::CarePlan(Read::read(value, "")?),
        SectionClass::SocialCareAssessments => {
            EntryBody::SocialCareAssessment(Read::read(value, "")?)
        }
        SectionClass::SocialCareSupportPlan => EntryBody::SupportPlan(Read::read(value, "")?),
        SectionClass::Carers => EntryBody::Carer(Read::read(value, "")?),
        SectionClass::Notes => EntryBody::Note(Read::read(value, "")?),
        SectionClass::Documents => EntryBody::Document(Read::read(value, "")?),
        SectionClass::AdvanceCarePlan => EntryBody::AdvanceCarePlan(Read::read(value, "")?),
    })
}

/// Refuses a body larger than [`MAX_ENTRY_JSON_BYTES`] as compact JSON, without building the
/// JSON text: the writer stops as soon as the budget is spent.
fn check_size(value: &Value) -> Result<(), Fault> {
    check_size_within(value, MAX_ENTRY_JSON_BYTES)
}

/// [`check_size`] for a body of which `budget` bytes are still free.
fn check_size_within(value: &Value, budget: usize) -> Result<(), Fault> {
    struct Budget(usize);
    impl std::io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over budget"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(budget), value).map_err(|_| too_large())
}

fn too_large() -> Fault {
    Fault::new(
        "",
        format!("is too large: at most {MAX_ENTRY_JSON_BYTES} bytes as JSON"),
    )
}

/// `at.key`, or `key` at the top.
fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// A field name fit to put in an error: at most 40 characters, no control characters.
fn printable_key(key: &str) -> String {
    let mut out: String = key
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if key.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// A JSON object being read field by field. Making one refuses fields the schema does not have;
/// `null` counts as an absent field.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: &'a str,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, at: &'a str, fields: &[&str]) -> Result<Obj<'a>, Fault> {
        let map = value
            .as_object()
            .ok_or_else(|| Fault::new(at, "must be a JSON object"))?;
        if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(Fault::new(
                &join(at, &printable_key(unknown)),
                format!("unknown field; expected one of: {}", fields.join(", ")),
            ));
        }
        Ok(Obj { map, at })
    }

    fn path(&self, key: &str) -> String {
        join(self.at, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn req_with<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Value, &str) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let at = self.path(key);
        match self.get(key) {
            Some(value) => read(value, &at),
            None => Err(Fault::new(&at, "is required")),
        }
    }

    fn opt_with<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Value, &str) -> Result<T, Fault>,
    ) -> Result<Option<T>, Fault> {
        self.get(key)
            .map(|value| read(value, &self.path(key)))
            .transpose()
    }

    fn req<T: Read>(&self, key: &str) -> Result<T, Fault> {
        self.req_with(key, T::read)
    }

    fn opt<T: Read>(&self, key: &str) -> Result<Option<T>, Fault> {
        self.opt_with(key, T::read)
    }

    fn list<T: Read>(&self, key: &str) -> Result<Vec<T>, Fault> {
        Ok(self.opt_with(key, read_list)?.unwrap_or_default())
    }

    fn date(&self, key: &str) -> Result<Option<String>, Fault> {
        self.opt_with(key, read_date)
    }

    fn datetime(&self, key: &str) -> Result<Option<String>, Fault> {
        self.opt_with(key, read_datetime)
    }

    /// Checks that the value of `end_key` is not before that of `start_key`.
    fn in_order(
        &self,
        start_key: &str,
        start: Option<&String>,
        end_key: &str,
        end: Option<&String>,
    ) -> Result<(), Fault> {
        match (start, end) {
            (Some(start), Some(end)) if !not_before(end, start) => Err(Fault::new(
                &self.path(end_key),
                format!("must not be before {start_key}"),
            )),
            _ => Ok(()),
        }
    }
}

fn read_text_limited(value: &Value, at: &str, max_chars: usize) -> Result<String, Fault> {
    let text = value
        .as_str()
        .ok_or_else(|| Fault::new(at, "must be text (a JSON string)"))?;
    if text.trim().is_empty() {
        return Err(Fault::new(at, "must not be blank"));
    }
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Fault::new(
            at,
            format!("is too long: at most {max_chars} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Fault::new(
            at,
            "must not contain control characters (other than tab and new line)",
        ));
    }
    Ok(text.to_owned())
}

impl Read for String {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        read_text_limited(value, at, MAX_TEXT_CHARS)
    }
}

impl Read for f64 {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        match value.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            Some(_) => Err(Fault::new(at, "must be a finite number")),
            None => Err(Fault::new(at, "must be a number")),
        }
    }
}

impl Read for bool {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        value
            .as_bool()
            .ok_or_else(|| Fault::new(at, "must be true or false"))
    }
}

impl Read for NhsNumber {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let text = value
            .as_str()
            .ok_or_else(|| Fault::new(at, "must be text (a JSON string), e.g. \"943 476 5919\""))?;
        // NhsError messages never repeat the number.
        text.parse()
            .map_err(|e: crate::nhs::NhsError| Fault::new(at, e.to_string()))
    }
}

fn read_list<T: Read>(value: &Value, at: &str) -> Result<Vec<T>, Fault> {
    let items = value
        .as_array()
        .ok_or_else(|| Fault::new(at, "must be a list (a JSON array)"))?;
    if items.len() > MAX_LIST_ITEMS {
        return Err(Fault::new(
            at,
            format!("has too many items: at most {MAX_LIST_ITEMS}"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| T::read(item, &format!("{at}[{i}]")))
        .collect()
}

const DATE_FORMAT: &str = "must be a date written YYYY-MM-DD, YYYY-MM or YYYY";
const DATETIME_FORMAT: &str = "must be a date and time with a UTC offset, e.g. \
     2024-05-01T14:30:00Z or 2024-05-01T14:30:00+01:00, or a date written YYYY-MM-DD, YYYY-MM or YYYY";
const NOT_A_DATE: &str = "is not a real calendar date";

/// Checks an ISO 8601 calendar date, `YYYY-MM-DD`, or the partial `YYYY-MM` or `YYYY`.
pub(crate) fn check_date(text: &str) -> Result<(), &'static str> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i16> {
        b.get(from..to)?.iter().try_fold(0i16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i16::from(d - b'0'))
        })
    };
    let dash = |i: usize| b.get(i) == Some(&b'-');
    let (year, month, day) = match b.len() {
        4 => (number(0, 4), Some(1), Some(1)),
        7 if dash(4) => (number(0, 4), number(5, 7), Some(1)),
        10 if dash(4) && dash(7) => (number(0, 4), number(5, 7), number(8, 10)),
        _ => return Err(DATE_FORMAT),
    };
    let (Some(year), Some(month), Some(day)) = (year, month, day) else {
        return Err(DATE_FORMAT);
    };
    let month = i8::try_from(month).map_err(|_| NOT_A_DATE)?;
    let day = i8::try_from(day).map_err(|_| NOT_A_DATE)?;
    if year == 0 {
        return Err(NOT_A_DATE);
    }
    jiff::civil::Date::new(year, month, day)
        .map(drop)
        .map_err(|_| NOT_A_DATE)
}

/// Checks an RFC 3339 date-time with an offset (`2024-05-01T14:30:00Z`, fractional seconds
/// allowed) or a date as [`check_date`] accepts.
pub(crate) fn check_datetime(text: &str) -> Result<(), &'static str> {
    let as_datetime = |p: &'static str| if p == DATE_FORMAT { DATETIME_FORMAT } else { p };
    let Some((date, time)) = text.split_once('T') else {
        return check_date(text).map_err(as_datetime);
    };
    if date.len() != 10 {
        return Err(DATETIME_FORMAT);
    }
    check_date(date).map_err(as_datetime)?;
    if !rfc3339_time_shape(time.as_bytes()) {
        return Err(DATETIME_FORMAT);
    }
    text.parse::<jiff::Timestamp>()
        .map(drop)
        .map_err(|_| "is not a real date and time")
}

/// `HH:MM:SS`, then optionally `.` and 1 to 9 digits, then `Z` or `+HH:MM` or `-HH:MM`.
fn rfc3339_time_shape(b: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (hms, mut rest) = match b {
        [h1, h2, b':', m1, m2, b':', s1, s2, rest @ ..] => ([*h1, *h2, *m1, *m2, *s1, *s2], rest),
        _ => return false,
    };
    if !digits(&hms) {
        return false;
    }
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    }
}

/// Whether `end` is not before `start`, both already checked as dates or date-times. Two
/// date-times with offsets compare as instants; otherwise the calendar dates compare to the
/// precision both have (so `2024` is not before `2024-05-01`).
fn not_before(end: &str, start: &str) -> bool {
    if let (Ok(end), Ok(start)) = (
        end.parse::<jiff::Timestamp>(),
        start.parse::<jiff::Timestamp>(),
    ) {
        return end >= start;
    }
    let n = end.len().min(start.len()).min(10);
    end.as_bytes().get(..n) >= start.as_bytes().get(..n)
}

fn read_date(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    check_date(&text).map_err(|p| Fault::new(at, p))?;
    Ok(text)
}

fn read_datetime(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    check_datetime(&text).map_err(|p| Fault::new(at, p))?;
    Ok(text)
}

/// Whether `text` is an absolute URI: a scheme, a colon, something after it, no white space.
pub(crate) fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut scheme = scheme.chars();
    scheme.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn read_code_system(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    let uri = code_system_uri(&text);
    if !is_absolute_uri(uri) {
        return Err(Fault::new(
            at,
            "must be a code system URI, e.g. http://snomed.info/sct, \
             or one of the aliases snomed, loinc, dmd, icd10",
        ));
    }
    Ok(uri.to_owned())
}

fn read_code(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    if text.trim() != text {
        return Err(Fault::new(at, "must not start or end with white space"));
    }
    Ok(text)
}

fn read_email(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    match text.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(char::is_whitespace) =>
        {
            Ok(text)
        }
        _ => Err(Fault::new(
            at,
            "must be an email address, e.g. name@example.org",
        )),
    }
}

fn read_uri(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_TEXT_CHARS)?;
    if !is_absolute_uri(&text) {
        return Err(Fault::new(
            at,
            "must be an absolute URI, e.g. https://example.org/letter.pdf",
        ));
    }
    Ok(text)
}

fn read_content_type(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => Ok(text),
        _ => Err(Fault::new(
            at,
            "must be a MIME type, e.g. application/pdf or image/jpeg",
        )),
    }
}

fn read_base64(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_BASE64_CHARS)?;
    data_encoding::BASE64.decode(text.as_bytes()).map_err(|_| {
        Fault::new(
            at,
            "must be standard base64 (A-Z, a-z, 0-9, +, /) with = padding and no line breaks",
        )
    })?;
    Ok(text)
}

fn read_money(value: &Value, at: &str) -> Result<f64, Fault> {
    let amount = f64::read(value, at)?;
    if amount < 0.0 {
        return Err(Fault::new(at, "must not be negative"));
    }
    Ok(amount)
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

impl Code {
    const FIELDS: &'static [&'static str] = &["system", "code", "display"];
}

impl Read for Code {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(Code {
            system: o.req_with("system", read_code_system)?,
            code: o.req_with("code", read_code)?,
            display: o.opt("display")?,
        })
    }
}

impl Source {
    const FIELDS: &'static [&'static str] = &[
        "format",
        "resource_type",
        "id",
        "full_url",
        "identifiers",
        "sha256",
        "body_sha256",
        "resource",
    ];
}

fn read_sha256(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, MAX_CODE_CHARS)?;
    if text.len() != 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Fault::new(
            at,
            "must be a SHA-256 digest: 64 lower-case hex digits",
        ));
    }
    Ok(text)
}

fn read_resource_type(value: &Value, at: &str) -> Result<String, Fault> {
    let text = read_text_limited(value, at, 64)?;
    let mut chars = text.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_uppercase())
        || !chars.all(|c| c.is_ascii_alphanumeric())
    {
        return Err(Fault::new(
            at,
            "must be a resource type name, e.g. Observation",
        ));
    }
    Ok(text)
}

impl Read for Source {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let source = Source {
            format: o.req_with("format", |v, at| read_text_limited(v, at, 64))?,
            resource_type: o.req_with("resource_type", read_resource_type)?,
            id: o.opt_with("id", |v, at| read_text_limited(v, at, MAX_CODE_CHARS))?,
            full_url: o.opt_with("full_url", read_uri)?,
            identifiers: o.list("identifiers")?,
            sha256: o.req_with("sha256", read_sha256)?,
            body_sha256: o.opt_with("body_sha256", read_sha256)?,
            resource: o.get("resource").cloned(),
        };
        if let Some(resource) = &source.resource {
            let at = o.path("resource");
            let map = resource
                .as_object()
                .ok_or_else(|| Fault::new(&at, "must be a JSON object"))?;
            if map.get("resourceType").and_then(Value::as_str)
                != Some(source.resource_type.as_str())
            {
                return Err(Fault::new(
                    &at,
                    "must have the resourceType given in resource_type",
                ));
            }
        }
        Ok(source)
    }
}

impl Read for SourceIdentifier {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, &["system", "value"])?;
        Ok(SourceIdentifier {
            system: o.opt_with("system", read_uri)?,
            value: o.req_with("value", |v, at| read_text_limited(v, at, MAX_CODE_CHARS))?,
        })
    }
}

impl Demographics {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "birth_date",
        "gender",
        "nhs_number",
        "address",
        "postcode",
        "phone",
        "email",
        "preferred_language",
        "interpreter_needed",
        "gp_practice",
        "source",
    ];
}

impl Read for Demographics {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(Demographics {
            name: o.req("name")?,
            birth_date: o.date("birth_date")?,
            gender: o.opt("gender")?,
            nhs_number: o.opt("nhs_number")?,
            address: o.opt("address")?,
            postcode: o.opt("postcode")?,
            phone: o.opt("phone")?,
            email: o.opt_with("email", read_email)?,
            preferred_language: o.opt("preferred_language")?,
            interpreter_needed: o.opt("interpreter_needed")?,
            gp_practice: o.opt("gp_practice")?,
            source: o.opt("source")?,
        })
    }
}

impl Allergy {
    const FIELDS: &'static [&'static str] = &[
        "substance",
        "code",
        "category",
        "reaction",
        "severity",
        "criticality",
        "clinical_status",
        "verification_status",
        "onset",
        "note",
        "source",
    ];
}

impl Read for Allergy {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(Allergy {
            substance: o.req("substance")?,
            code: o.opt("code")?,
            category: o.opt("category")?,
            reaction: o.opt("reaction")?,
            severity: o.opt("severity")?,
            criticality: o.opt("criticality")?,
            clinical_status: o.opt("clinical_status")?,
            verification_status: o.opt("verification_status")?,
            onset: o.date("onset")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        })
    }
}

impl Medication {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "code",
        "dose",
        "route",
        "frequency",
        "start",
        "end",
        "status",
        "reason",
        "prescriber",
        "note",
        "source",
    ];
}

impl Read for Medication {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let m = Medication {
            name: o.req("name")?,
            code: o.opt("code")?,
            dose: o.opt("dose")?,
            route: o.opt("route")?,
            frequency: o.opt("frequency")?,
            start: o.date("start")?,
            end: o.date("end")?,
            status: o.opt("status")?,
            reason: o.opt("reason")?,
            prescriber: o.opt("prescriber")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        o.in_order("start", m.start.as_ref(), "end", m.end.as_ref())?;
        Ok(m)
    }
}

impl Condition {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "code",
        "clinical_status",
        "verification_status",
        "severity",
        "onset",
        "abatement",
        "note",
        "source",
    ];
}

impl Read for Condition {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let c = Condition {
            name: o.req("name")?,
            code: o.opt("code")?,
            clinical_status: o.opt("clinical_status")?,
            verification_status: o.opt("verification_status")?,
            severity: o.opt("severity")?,
            onset: o.date("onset")?,
            abatement: o.date("abatement")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        o.in_order("onset", c.onset.as_ref(), "abatement", c.abatement.as_ref())?;
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
                &o.path("clinical_status"),
                "must be inactive, remission or resolved when abatement is given",
            ));
        }
        Ok(c)
    }
}

impl Observation {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "code",
        "status",
        "value",
        "unit",
        "value_text",
        "components",
        "effective",
        "interpretation",
        "note",
        "source",
    ];
}

impl Read for Observation {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let obs = Observation {
            name: o.req("name")?,
            code: o.opt("code")?,
            status: o.opt("status")?,
            value: o.opt("value")?,
            unit: o.opt("unit")?,
            value_text: o.opt("value_text")?,
            components: o.list("components")?,
            effective: o.datetime("effective")?,
            interpretation: o.opt("interpretation")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        check_result(
            &o,
            obs.value,
            obs.unit.as_ref(),
            obs.value_text.as_ref(),
            !obs.components.is_empty(),
            "give a value, a value_text or components",
        )?;
        Ok(obs)
    }
}

impl ObservationComponent {
    const FIELDS: &'static [&'static str] = &["name", "code", "value", "unit", "value_text"];
}

impl Read for ObservationComponent {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let c = ObservationComponent {
            name: o.req("name")?,
            code: o.opt("code")?,
            value: o.opt("value")?,
            unit: o.opt("unit")?,
            value_text: o.opt("value_text")?,
        };
        check_result(
            &o,
            c.value,
            c.unit.as_ref(),
            c.value_text.as_ref(),
            false,
            "give a value or a value_text",
        )?;
        Ok(c)
    }
}

impl Encounter {
    const FIELDS: &'static [&'static str] = &[
        "class",
        "code",
        "status",
        "reason",
        "start",
        "end",
        "location",
        "practitioner",
        "outcome",
        "note",
        "source",
    ];
}

impl Read for Encounter {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let e = Encounter {
            class: o.req("class")?,
            code: o.opt("code")?,
            status: o.opt("status")?,
            reason: o.opt("reason")?,
            start: o.req_with("start", read_datetime)?,
            end: o.datetime("end")?,
            location: o.opt("location")?,
            practitioner: o.opt("practitioner")?,
            outcome: o.opt("outcome")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        o.in_order("start", Some(&e.start), "end", e.end.as_ref())?;
        Ok(e)
    }
}

impl CarePlan {
    const FIELDS: &'static [&'static str] = &[
        "title",
        "description",
        "status",
        "goals",
        "activities",
        "start",
        "end",
        "review_date",
        "source",
    ];
}

impl Read for CarePlan {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let p = CarePlan {
            title: o.req("title")?,
            description: o.opt("description")?,
            status: o.opt("status")?,
            goals: o.list("goals")?,
            activities: o.list("activities")?,
            start: o.date("start")?,
            end: o.date("end")?,
            review_date: o.date("review_date")?,
            source: o.opt("source")?,
        };
        o.in_order("start", p.start.as_ref(), "end", p.end.as_ref())?;
        Ok(p)
    }
}

impl SocialCareAssessment {
    const FIELDS: &'static [&'static str] = &[
        "assessment_type",
        "date",
        "assessor",
        "needs",
        "outcome",
        "eligible",
        "summary",
        "source",
    ];
}

impl Read for SocialCareAssessment {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(SocialCareAssessment {
            assessment_type: o.req("assessment_type")?,
            date: o.req_with("date", read_date)?,
            assessor: o.opt("assessor")?,
            needs: o.list("needs")?,
            outcome: o.opt("outcome")?,
            eligible: o.opt("eligible")?,
            summary: o.opt("summary")?,
            source: o.opt("source")?,
        })
    }
}

impl AssessedNeed {
    const FIELDS: &'static [&'static str] = &["domain", "description", "eligible"];
}

impl Read for AssessedNeed {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(AssessedNeed {
            domain: o.req("domain")?,
            description: o.opt("description")?,
            eligible: o.opt("eligible")?,
        })
    }
}

impl SupportPlan {
    const FIELDS: &'static [&'static str] = &[
        "title",
        "status",
        "needs",
        "services",
        "personal_budget_gbp",
        "start",
        "end",
        "review_date",
        "note",
        "source",
    ];
}

impl Read for SupportPlan {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let p = SupportPlan {
            title: o.req("title")?,
            status: o.opt("status")?,
            needs: o.list("needs")?,
            services: o.list("services")?,
            personal_budget_gbp: o.opt_with("personal_budget_gbp", read_money)?,
            start: o.date("start")?,
            end: o.date("end")?,
            review_date: o.date("review_date")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        o.in_order("start", p.start.as_ref(), "end", p.end.as_ref())?;
        Ok(p)
    }
}

impl SupportService {
    const FIELDS: &'static [&'static str] = &["name", "provider", "frequency", "funded_by"];
}

impl Read for SupportService {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(SupportService {
            name: o.req("name")?,
            provider: o.opt("provider")?,
            frequency: o.opt("frequency")?,
            funded_by: o.opt("funded_by")?,
        })
    }
}

impl Carer {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "relationship",
        "phone",
        "email",
        "lives_with_patient",
        "main_carer",
        "lasting_power_of_attorney",
        "note",
        "source",
    ];
}

impl Read for Carer {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(Carer {
            name: o.req("name")?,
            relationship: o.req("relationship")?,
            phone: o.opt("phone")?,
            email: o.opt_with("email", read_email)?,
            lives_with_patient: o.opt("lives_with_patient")?,
            main_carer: o.opt("main_carer")?,
            lasting_power_of_attorney: o.opt("lasting_power_of_attorney")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        })
    }
}

impl Note {
    const FIELDS: &'static [&'static str] = &["text", "title", "category", "source"];
}

impl Read for Note {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        Ok(Note {
            text: o.req("text")?,
            title: o.opt("title")?,
            category: o.opt("category")?,
            source: o.opt("source")?,
        })
    }
}

impl Document {
    const FIELDS: &'static [&'static str] = &[
        "title",
        "code",
        "content_type",
        "date",
        "description",
        "data_base64",
        "url",
        "source",
    ];
}

impl Read for Document {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let d = Document {
            title: o.req("title")?,
            code: o.opt("code")?,
            content_type: o.opt_with("content_type", read_content_type)?,
            date: o.date("date")?,
            description: o.opt("description")?,
            data_base64: o.opt_with("data_base64", read_base64)?,
            url: o.opt_with("url", read_uri)?,
            source: o.opt("source")?,
        };
        // FHIR att-1: inline data needs its content type.
        if d.data_base64.is_some() && d.content_type.is_none() {
            return Err(Fault::new(
                &o.path("content_type"),
                "is required when data_base64 is given",
            ));
        }
        Ok(d)
    }
}

impl AdvanceCarePlan {
    const FIELDS: &'static [&'static str] = &[
        "statement",
        "dnacpr",
        "preferred_place_of_care",
        "preferred_place_of_death",
        "lasting_power_of_attorney",
        "recorded_on",
        "review_date",
        "note",
        "source",
    ];
}

impl Read for AdvanceCarePlan {
    fn read(value: &Value, at: &str) -> Result<Self, Fault> {
        let o = Obj::new(value, at, Self::FIELDS)?;
        let p = AdvanceCarePlan {
            statement: o.opt("statement")?,
            dnacpr: o.opt("dnacpr")?,
            preferred_place_of_care: o.opt("preferred_place_of_care")?,
            preferred_place_of_death: o.opt("preferred_place_of_death")?,
            lasting_power_of_attorney: o.opt("lasting_power_of_attorney")?,
            recorded_on: o.date("recorded_on")?,
            review_date: o.date("review_date")?,
            note: o.opt("note")?,
            source: o.opt("source")?,
        };
        // Dates alone record no wishes.
        if p.statement.is_none()
            && p.dnacpr.is_none()
            && p.preferred_place_of_care.is_none()
            && p.preferred_place_of_death.is_none()
            && p.lasting_power_of_attorney.is_none()
            && p.note.is_none()
        {
            return Err(Fault::new(
                at,
                "give at least one of: statement, dnacpr, preferred_place_of_care, \
                 preferred_place_of_death, lasting_power_of_attorney, note",
            ));
        }
        Ok(p)
    }
}

// ---------------------------------------------------------------------------------------------
// Summaries

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    /// Valid bodies: between them, every field of every class appears at least once.
    /// Every example, and the first of each class again with an import `source`.
    fn examples() -> Vec<(SectionClass, Value)> {
        let mut all = base_examples();
        for class in SectionClass::ALL {
            if let Some((_, body)) = base_examples().into_iter().find(|(c, _)| c == class) {
                let mut body = body;
                body["source"] = json!({
                    "format": "fhir-r4",
                    "resource_type": "Basic",
                    "id": "b1",
                    "full_url": "urn:uuid:2a0c9d1e-5b7f-4c3e-8a6d-1f2e3d4c5b6a",
                    "identifiers": [{"system": "https://example.org/ids", "value": "42"}],
                    "sha256": "0".repeat(64),
                    "body_sha256": "a".repeat(64),
                    "resource": {"resourceType": "Basic", "id": "b1"}
                });
                all.push((*class, body));
            }
        }
        all
    }

    fn base_examples() -> Vec<(SectionClass, Value)> {
        use SectionClass as C;
        vec![
            (
                C::Demographics,
                json!({
                    "name": "Edith Jones",
                    "birth_date": "1941-03-09",
                    "gender": "female",
                    "nhs_number": "943 476 5919",
                    "address": "12 Mill Lane\nHebden Bridge",
                    "postcode": "HX7 8AA",
                    "phone": "01422 000000",
                    "email": "edith@example.org",
                    "preferred_language": "English",
                    "interpreter_needed": false,
                    "gp_practice": "Riverside Practice (B82000)"
                }),
            ),
            (C::Demographics, json!({"name": "Edith Jones"})),
            (
                C::Allergies,
                json!({
                    "substance": "Penicillin",
                    "code": {"system": "snomed", "code": "764146007", "display": "Penicillin"},
                    "category": "medication",
                    "reaction": "rash",
                    "severity": "severe",
                    "criticality": "high",
                    "clinical_status": "active",
                    "verification_status": "confirmed",
                    "onset": "1978",
                    "note": "Reacted as a child."
                }),
            ),
            (C::Allergies, json!({"substance": "Peanuts"})),
            (
                C::Medications,
                json!({
                    "name": "Metformin 500 mg tablets",
                    "code": {"system": "http://snomed.info/sct", "code": "372567009", "display": "Metformin"},
                    "dose": "500 mg",
                    "route": "oral",
                    "frequency": "twice a day",
                    "start": "2015-06-01",
                    "end": "2025-06",
                    "status": "active",
                    "reason": "Type 2 diabetes",
                    "prescriber": "Dr A. Shah",
                    "note": "With meals."
                }),
            ),
            (C::Medications, json!({"name": "Paracetamol"})),
            (
                C::Conditions,
                json!({
                    "name": "Type 2 diabetes mellitus",
                    "code": {"system": "icd10", "code": "E11"},
                    "clinical_status": "remission",
                    "verification_status": "confirmed",
                    "severity": "moderate",
                    "onset": "2015-06",
                    "abatement": "2023-01-10",
                    "note": "Diet controlled since 2023."
                }),
            ),
            (
                C::Conditions,
                json!({"name": "Hypertension", "clinical_status": "active"}),
            ),
            (
                C::Observations,
                json!({
                    "name": "Body weight",
                    "code": {"system": "loinc", "code": "29463-7"},
                    "status": "final",
                    "value": 72.5,
                    "unit": "kg",
                    "effective": "2024-05-01T09:30:00+01:00",
                    "interpretation": "normal",
                    "note": "Weighed at home."
                }),
            ),
            (
                C::Observations,
                json!({
                    "name": "Blood pressure",
                    "code": {"system": "loinc", "code": "85354-9"},
                    "components": [
                        {"name": "Systolic", "code": {"system": "loinc", "code": "8480-6"}, "value": 128, "unit": "mm[Hg]"},
                        {"name": "Diastolic", "code": {"system": "loinc", "code": "8462-4"}, "value": 82, "unit": "mm[Hg]"},
                        {"name": "Position", "value_text": "sitting"}
                    ],
                    "effective": "2024-05-01"
                }),
            ),
            (
                C::Observations,
                json!({"name": "COVID-19 antigen test", "value_text": "negative", "effective": "2024-05-01T09:30:00.5Z"}),
            ),
            (
                C::Encounters,
                json!({
                    "class": "home visit",
                    "code": {"system": "snomed", "code": "439708006", "display": "Home visit"},
                    "status": "finished",
                    "reason": "Leg ulcer dressing",
                    "start": "2024-05-01T10:00:00+01:00",
                    "end": "2024-05-01T09:40:00Z",
                    "location": "Patient's home",
                    "practitioner": "District nurse J. Patel",
                    "outcome": "Healing well; next visit in 3 days",
                    "note": "Patient in good spirits."
                }),
            ),
            (
                C::Encounters,
                json!({"class": "A&E", "start": "2024-04-20"}),
            ),
            (
                C::CarePlan,
                json!({
                    "title": "Diabetes care plan",
                    "description": "Keep blood sugar in range and protect the feet.",
                    "status": "active",
                    "goals": ["HbA1c below 58 mmol/mol", "Walk 30 minutes a day"],
                    "activities": ["Annual foot check", "Retinal screening"],
                    "start": "2024-01-15",
                    "end": "2025-01-15",
                    "review_date": "2024-07-15"
                }),
            ),
            (C::CarePlan, json!({"title": "Falls prevention"})),
            (
                C::SocialCareAssessments,
                json!({
                    "assessment_type": "Care Act needs assessment",
                    "date": "2024-03-12",
                    "assessor": "S. Okafor, social worker",
                    "needs": [
                        {"domain": "managing and maintaining nutrition", "description": "Cannot prepare hot meals", "eligible": true},
                        {"domain": "maintaining personal hygiene"}
                    ],
                    "outcome": "Eligible; support plan to follow",
                    "eligible": true,
                    "summary": "Lives alone, managing with difficulty."
                }),
            ),
            (
                C::SocialCareAssessments,
                json!({"assessment_type": "Carer's assessment", "date": "2024-03"}),
            ),
            (
                C::SocialCareSupportPlan,
                json!({
                    "title": "Care and support plan",
                    "status": "active",
                    "needs": ["Hot meal daily", "Help with washing"],
                    "services": [
                        {"name": "Home care: morning call", "provider": "Calder Care Ltd", "frequency": "daily, 30 minutes", "funded_by": "local authority"},
                        {"name": "Meals on wheels"}
                    ],
                    "personal_budget_gbp": 12480.5,
                    "start": "2024-04-01",
                    "end": "2025-03-31",
                    "review_date": "2024-10-01",
                    "note": "Daughter helps at weekends."
                }),
            ),
            (
                C::SocialCareSupportPlan,
                json!({"title": "Interim plan", "personal_budget_gbp": 0}),
            ),
            (
                C::Carers,
                json!({
                    "name": "Mary Jones",
                    "relationship": "daughter",
                    "phone": "07700 900123",
                    "email": "mary@example.org",
                    "lives_with_patient": false,
                    "main_carer": true,
                    "lasting_power_of_attorney": "health and welfare",
                    "note": "Visits every evening."
                }),
            ),
            (
                C::Carers,
                json!({"name": "Tom", "relationship": "neighbour"}),
            ),
            (
                C::Notes,
                json!({"text": "Feeling better today.\nSlept well.", "title": "Diary", "category": "patient note"}),
            ),
            (C::Notes, json!({"text": "Feeling better today"})),
            (
                C::Documents,
                json!({
                    "title": "Discharge letter",
                    "code": {"system": "loinc", "code": "18842-5", "display": "Discharge summary"},
                    "content_type": "application/pdf",
                    "date": "2024-04-21",
                    "description": "From Calderdale Royal Hospital",
                    "data_base64": "JVBERi0xLjQK",
                    "url": "https://example.org/letters/1.pdf"
                }),
            ),
            (C::Documents, json!({"title": "Scan report"})),
            (
                C::AdvanceCarePlan,
                json!({
                    "statement": "I want to stay at home with my family.",
                    "dnacpr": true,
                    "preferred_place_of_care": "home",
                    "preferred_place_of_death": "home",
                    "lasting_power_of_attorney": "Mary Jones (health and welfare)",
                    "recorded_on": "2024-02-01",
                    "review_date": "2025-02-01",
                    "note": "Discussed with GP and family."
                }),
            ),
            (C::AdvanceCarePlan, json!({"dnacpr": false})),
        ]
    }

    /// The required fields of each class.
    const REQUIRED: &[(SectionClass, &[&str])] = &[
        (SectionClass::Demographics, &["name"]),
        (SectionClass::Allergies, &["substance"]),
        (SectionClass::Medications, &["name"]),
        (SectionClass::Conditions, &["name"]),
        (SectionClass::Observations, &["name"]),
        (SectionClass::Encounters, &["class", "start"]),
        (SectionClass::CarePlan, &["title"]),
        (
            SectionClass::SocialCareAssessments,
            &["assessment_type", "date"],
        ),
        (SectionClass::SocialCareSupportPlan, &["title"]),
        (SectionClass::Carers, &["name", "relationship"]),
        (SectionClass::Notes, &["text"]),
        (SectionClass::Documents, &["title"]),
        (SectionClass::AdvanceCarePlan, &[]),
    ];

    fn fields_of(class: SectionClass) -> &'static [&'static str] {
        match class {
            SectionClass::Demographics => Demographics::FIELDS,
            SectionClass::Allergies => Allergy::FIELDS,
            SectionClass::Medications => Medication::FIELDS,
            SectionClass::Conditions => Condition::FIELDS,
            SectionClass::Observations => Observation::FIELDS,
            SectionClass::Encounters => Encounter::FIELDS,
            SectionClass::CarePlan => CarePlan::FIELDS,
            SectionClass::SocialCareAssessments => SocialCareAssessment::FIELDS,
            SectionClass::SocialCareSupportPlan => SupportPlan::FIELDS,
            SectionClass::Carers => Carer::FIELDS,
            SectionClass::Notes => Note::FIELDS,
            SectionClass::Documents => Document::FIELDS,
            SectionClass::AdvanceCarePlan => AdvanceCarePlan::FIELDS,
        }
    }

    fn err(class: SectionClass, body: Value) -> SchemaError {
        match EntryBody::from_json(class, &body) {
            Ok(b) => panic!("{class}: accepted {body}: {b:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error names `field` and its problem contains `problem`.
    #[track_caller]
    fn assert_err(class: SectionClass, body: Value, field: &str, problem: &str) {
        let e = err(class, body);
        assert_eq!(e.class, class);
        assert_eq!(e.field, field, "{e}");
        assert!(e.problem.contains(problem), "{e}");
    }

    fn valid(class: SectionClass) -> Value {
        examples()
            .into_iter()
            .find(|(c, _)| *c == class)
            .map(|(_, v)| v)
            .unwrap()
    }

    fn with(mut body: Value, key: &str, value: Value) -> Value {
        body.as_object_mut().unwrap().insert(key.to_owned(), value);
        body
    }

    fn without(mut body: Value, key: &str) -> Value {
        body.as_object_mut().unwrap().remove(key);
        body
    }

    #[test]
    fn every_class_has_examples() {
        for class in SectionClass::ALL {
            assert!(examples().iter().any(|(c, _)| c == class), "{class}");
            assert!(REQUIRED.iter().any(|(c, _)| c == class), "{class}");
        }
    }

    #[test]
    fn examples_round_trip() {
        for (class, body) in examples() {
            let entry = EntryBody::from_json(class, &body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(entry.class(), class);
            let json = entry.to_json();
            let again = EntryBody::from_json(class, &json).unwrap();
            assert_eq!(again, entry, "{class}");
            assert_eq!(again.to_json(), json);
            // The structural serde derive agrees with the checked reader.
            let structural = match &entry {
                EntryBody::Demographics(_) => {
                    EntryBody::Demographics(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Allergy(_) => {
                    EntryBody::Allergy(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Medication(_) => {
                    EntryBody::Medication(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Condition(_) => {
                    EntryBody::Condition(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Observation(_) => {
                    EntryBody::Observation(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Encounter(_) => {
                    EntryBody::Encounter(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::CarePlan(_) => {
                    EntryBody::CarePlan(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::SocialCareAssessment(_) => {
                    EntryBody::SocialCareAssessment(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::SupportPlan(_) => {
                    EntryBody::SupportPlan(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Carer(_) => {
                    EntryBody::Carer(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Note(_) => {
                    EntryBody::Note(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::Document(_) => {
                    EntryBody::Document(serde_json::from_value(json.clone()).unwrap())
                }
                EntryBody::AdvanceCarePlan(_) => {
                    EntryBody::AdvanceCarePlan(serde_json::from_value(json.clone()).unwrap())
                }
            };
            assert_eq!(structural, entry, "{class}");
        }
    }

    #[test]
    fn field_lists_match_serialised_fields() {
        for class in SectionClass::ALL {
            let mut seen = BTreeSet::new();
            for (_, body) in examples().into_iter().filter(|(c, _)| c == class) {
                let json = EntryBody::from_json(*class, &body).unwrap().to_json();
                seen.extend(json.as_object().unwrap().keys().cloned());
            }
            let declared: BTreeSet<String> =
                fields_of(*class).iter().map(|s| s.to_string()).collect();
            assert_eq!(seen, declared, "{class}: examples must use every field");
        }
        let nested =
            |v: Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        let set = |f: &[&str]| -> BTreeSet<String> { f.iter().map(|s| s.to_string()).collect() };
        let code = Code {
            system: SNOMED_CT.into(),
            code: "1".into(),
            display: Some("x".into()),
        };
        assert_eq!(
            nested(serde_json::to_value(&code).unwrap()),
            set(Code::FIELDS)
        );
        let component = ObservationComponent {
            name: "x".into(),
            code: Some(code),
            value: Some(1.0),
            unit: Some("kg".into()),
            value_text: Some("x".into()),
        };
        assert_eq!(
            nested(serde_json::to_value(&component).unwrap()),
            set(ObservationComponent::FIELDS)
        );
        let need = AssessedNeed {
            domain: "x".into(),
            description: Some("x".into()),
            eligible: Some(true),
        };
        assert_eq!(
            nested(serde_json::to_value(&need).unwrap()),
            set(AssessedNeed::FIELDS)
        );
        let service = SupportService {
            name: "x".into(),
            provider: Some("x".into()),
            frequency: Some("x".into()),
            funded_by: Some("x".into()),
        };
        assert_eq!(
            nested(serde_json::to_value(&service).unwrap()),
            set(SupportService::FIELDS)
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (class, required) in REQUIRED {
            for field in *required {
                assert_err(*class, without(valid(*class), field), field, "is required");
                // null counts as absent
                assert_err(
                    *class,
                    with(valid(*class), field, Value::Null),
                    field,
                    "is required",
                );
            }
        }
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"code": "1"}}),
            "code.system",
            "is required",
        );
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"system": "snomed"}}),
            "code.code",
            "is required",
        );
        assert_err(
            SectionClass::Observations,
            json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"value": 2}]}),
            "components[1].name",
            "is required",
        );
        assert_err(
            SectionClass::SocialCareAssessments,
            json!({"assessment_type": "x", "date": "2024", "needs": [{"eligible": true}]}),
            "needs[0].domain",
            "is required",
        );
        assert_err(
            SectionClass::SocialCareSupportPlan,
            json!({"title": "x", "services": [{"provider": "y"}]}),
            "services[0].name",
            "is required",
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err(SectionClass::Notes, json!({"txt": "hello"}));
        assert_eq!(e.field, "txt");
        assert_eq!(
            e.to_string(),
            "notes entry: txt: unknown field; expected one of: text, title, category, source"
        );
        assert_err(
            SectionClass::Notes,
            json!({"text": "hello", "colour": "red"}),
            "colour",
            "unknown field",
        );
        assert_err(
            SectionClass::Observations,
            json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"name": "b", "value": 2, "colour": 1}]}),
            "components[1].colour",
            "unknown field",
        );
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"system": "snomed", "code": "1", "version": "1"}}),
            "code.version",
            "unknown field",
        );
        // Field names in errors are cut short and made printable.
        let e = err(SectionClass::Notes, json!({"text": "x", "a\u{1b}b": 1}));
        assert_eq!(e.field, "a?b");
        let long = "k".repeat(100);
        let e = err(SectionClass::Notes, json!({"text": "x", long: 1}));
        assert_eq!(e.field.chars().count(), 41);
    }

    #[test]
    fn wrong_types_are_named() {
        use SectionClass as C;
        let cases = [
            (C::Notes, json!({"text": 5}), "text", "must be text"),
            (C::Notes, json!({"text": ["a"]}), "text", "must be text"),
            (
                C::Notes,
                json!({"text": "x", "title": true}),
                "title",
                "must be text",
            ),
            (
                C::Observations,
                json!({"name": "w", "value": "72"}),
                "value",
                "must be a number",
            ),
            (
                C::Demographics,
                json!({"name": "x", "interpreter_needed": "yes"}),
                "interpreter_needed",
                "true or false",
            ),
            (
                C::Demographics,
                json!({"name": "x", "gender": "F"}),
                "gender",
                "must be one of: male, female, other, unknown",
            ),
            (
                C::Demographics,
                json!({"name": "x", "nhs_number": 9434765919u64}),
                "nhs_number",
                "must be text",
            ),
            (
                C::CarePlan,
                json!({"title": "x", "goals": "walk"}),
                "goals",
                "must be a list",
            ),
            (
                C::CarePlan,
                json!({"title": "x", "goals": ["walk", 2]}),
                "goals[1]",
                "must be text",
            ),
            (
                C::Allergies,
                json!({"substance": "x", "code": "764146007"}),
                "code",
                "must be a JSON object",
            ),
            (
                C::Allergies,
                json!({"substance": "x", "severity": "SEVERE"}),
                "severity",
                "must be one of: mild, moderate, severe",
            ),
            (
                C::Allergies,
                json!({"substance": "x", "criticality": "unable to assess"}),
                "criticality",
                "unable-to-assess",
            ),
            (
                C::Medications,
                json!({"name": "x", "status": "on hold"}),
                "status",
                "on-hold",
            ),
            (
                C::Observations,
                json!({"name": "BP", "components": [{"name": "a", "value": 1}, {"name": "b", "value": "high"}]}),
                "components[1].value",
                "must be a number",
            ),
            (
                C::SocialCareSupportPlan,
                json!({"title": "x", "services": {"name": "y"}}),
                "services",
                "must be a list",
            ),
        ];
        for (class, body, field, problem) in cases {
            assert_err(class, body, field, problem);
        }
    }

    #[test]
    fn non_object_bodies_are_refused() {
        for body in [json!([]), json!("text"), json!(null), json!(5), json!(true)] {
            for class in SectionClass::ALL {
                assert_err(*class, body.clone(), "(body)", "must be a JSON object");
            }
        }
        assert_eq!(
            err(SectionClass::Notes, json!(["x"])).to_string(),
            "notes entry: (body): must be a JSON object"
        );
    }

    #[test]
    fn dates() {
        for good in [
            "2024",
            "2024-05",
            "2024-05-01",
            "2024-02-29",
            "0001-01-01",
            "9999-12-31",
        ] {
            assert!(check_date(good).is_ok(), "{good}");
        }
        for bad in [
            "2024-5-1",
            "01/05/2024",
            "2024/05/01",
            "24-05-01",
            "20240501",
            "2024-05-01T10:00:00Z",
            " 2024",
            "2024-05-",
            "2024-0a-01",
            "+2024-05-01",
            "２０２４",
        ] {
            assert_eq!(check_date(bad), Err(DATE_FORMAT), "{bad}");
        }
        for unreal in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "0000",
            "2024-05-00",
        ] {
            assert_eq!(check_date(unreal), Err(NOT_A_DATE), "{unreal}");
        }
        for good in [
            "2024",
            "2024-05",
            "2024-05-01",
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00+01:00",
            "2024-05-01T10:00:00-05:30",
            "2024-05-01T10:00:00.123456789Z",
        ] {
            assert!(check_datetime(good).is_ok(), "{good}");
        }
        for bad in [
            "2024-05-01T10:00:00",
            "2024-05-01T10:00Z",
            "2024-05-01 10:00:00Z",
            "2024-05-01t10:00:00z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00.1234567890Z",
            "2024-05-01T10:00:00+0100",
            "2024-05T10:00:00Z",
            "yesterday",
        ] {
            assert_eq!(check_datetime(bad), Err(DATETIME_FORMAT), "{bad}");
        }
        assert_eq!(check_datetime("2024-02-30T10:00:00Z"), Err(NOT_A_DATE));
        assert!(check_datetime("2024-05-01T25:00:00Z").is_err());

        use SectionClass as C;
        assert_err(
            C::Demographics,
            json!({"name": "x", "birth_date": "09/03/1941"}),
            "birth_date",
            "YYYY-MM-DD",
        );
        assert_err(
            C::Demographics,
            json!({"name": "x", "birth_date": "1941-02-30"}),
            "birth_date",
            "not a real calendar date",
        );
        assert_err(
            C::Demographics,
            json!({"name": "x", "birth_date": 1941}),
            "birth_date",
            "must be text",
        );
        assert_err(
            C::Allergies,
            json!({"substance": "x", "onset": "last year"}),
            "onset",
            "YYYY-MM-DD",
        );
        assert_err(
            C::Encounters,
            json!({"class": "x", "start": "2024-05-01T10:00"}),
            "start",
            "UTC offset",
        );
        assert_err(
            C::Observations,
            json!({"name": "x", "value": 1, "effective": "today"}),
            "effective",
            "UTC offset",
        );
        assert_err(
            C::SocialCareAssessments,
            json!({"assessment_type": "x", "date": "2024-05-01T10:00:00Z"}),
            "date",
            "YYYY-MM-DD",
        );
        assert_err(
            C::AdvanceCarePlan,
            json!({"dnacpr": true, "review_date": "soon"}),
            "review_date",
            "YYYY-MM-DD",
        );
    }

    #[test]
    fn ends_are_not_before_starts() {
        assert!(not_before("2024-05-02", "2024-05-01"));
        assert!(not_before("2024-05-01", "2024-05-01"));
        assert!(not_before("2024", "2024-05-01"));
        assert!(not_before("2024-05", "2024-05-31"));
        assert!(!not_before("2023-12", "2024"));
        assert!(not_before(
            "2024-05-01T09:00:00Z",
            "2024-05-01T10:00:00+01:00"
        ));
        assert!(!not_before(
            "2024-05-01T09:59:59Z",
            "2024-05-01T11:00:00+01:00"
        ));
        assert!(not_before("2024-05-01", "2024-05-01T23:00:00Z"));

        use SectionClass as C;
        assert_err(
            C::Medications,
            json!({"name": "x", "start": "2024-05-01", "end": "2024-04-30"}),
            "end",
            "must not be before start",
        );
        assert_err(
            C::Encounters,
            json!({"class": "x", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"}),
            "end",
            "must not be before start",
        );
        assert_err(
            C::Conditions,
            json!({"name": "x", "onset": "2020", "abatement": "2019"}),
            "abatement",
            "must not be before onset",
        );
        assert_err(
            C::CarePlan,
            json!({"title": "x", "start": "2024-05", "end": "2024-04"}),
            "end",
            "must not be before start",
        );
        assert_err(
            C::SocialCareSupportPlan,
            json!({"title": "x", "start": "2024-05-01", "end": "2023"}),
            "end",
            "must not be before start",
        );
    }

    #[test]
    fn code_system_aliases_are_normalised() {
        for (alias, uri) in [
            ("snomed", SNOMED_CT),
            ("SNOMED", SNOMED_CT),
            ("loinc", LOINC),
            ("dmd", DMD),
            ("icd10", ICD_10),
            (
                "https://fhir.nhs.uk/Id/ods-organization-code",
                "https://fhir.nhs.uk/Id/ods-organization-code",
            ),
            (
                "urn:oid:2.16.840.1.113883.6.96",
                "urn:oid:2.16.840.1.113883.6.96",
            ),
        ] {
            let body = json!({"substance": "x", "code": {"system": alias, "code": "1"}});
            let entry = EntryBody::from_json(SectionClass::Allergies, &body).unwrap();
            assert_eq!(entry.to_json()["code"]["system"], uri, "{alias}");
            // The structural serde derive normalises too.
            let code: Code = serde_json::from_value(json!({"system": alias, "code": "1"})).unwrap();
            assert_eq!(code.system, uri);
        }
        assert_eq!(code_system_uri("read"), "read");
        for bad in [
            "read",
            "snomed ct",
            "http:",
            ":x",
            "1http://x",
            "http://exa mple",
        ] {
            assert_err(
                SectionClass::Allergies,
                json!({"substance": "x", "code": {"system": bad, "code": "1"}}),
                "code.system",
                "code system URI",
            );
        }
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"system": "snomed", "code": " 1"}}),
            "code.code",
            "white space",
        );
    }

    #[test]
    fn class_rules() {
        use SectionClass as C;
        assert_err(
            C::Observations,
            json!({"name": "w"}),
            "value",
            "give a value, a value_text or components",
        );
        assert_err(
            C::Observations,
            json!({"name": "w", "components": []}),
            "value",
            "give a value",
        );
        assert_err(
            C::Observations,
            json!({"name": "w", "value": 1, "value_text": "one"}),
            "value_text",
            "not both",
        );
        assert_err(
            C::Observations,
            json!({"name": "w", "value_text": "one", "unit": "kg"}),
            "unit",
            "needs a numeric value",
        );
        assert_err(
            C::Observations,
            json!({"name": "BP", "components": [{"name": "a"}]}),
            "components[0].value",
            "give a value or a value_text",
        );
        assert_err(
            C::Conditions,
            json!({"name": "x", "clinical_status": "active", "abatement": "2020"}),
            "clinical_status",
            "inactive, remission or resolved",
        );
        assert_err(
            C::Notes,
            json!({"text": "   \n "}),
            "text",
            "must not be blank",
        );
        assert_err(C::Notes, json!({"text": ""}), "text", "must not be blank");
        assert_err(
            C::Notes,
            json!({"text": "x", "title": ""}),
            "title",
            "must not be blank",
        );
        assert_err(
            C::Notes,
            json!({"text": "bell\u{7}"}),
            "text",
            "control characters",
        );
        assert_err(
            C::AdvanceCarePlan,
            json!({}),
            "(body)",
            "give at least one of",
        );
        assert_err(
            C::AdvanceCarePlan,
            json!({"recorded_on": "2024-01-01", "review_date": "2025-01-01"}),
            "(body)",
            "give at least one of",
        );
        assert_err(
            C::Documents,
            json!({"title": "x", "data_base64": "aGVsbG8="}),
            "content_type",
            "is required when data_base64",
        );
        assert_err(
            C::Documents,
            json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVsbG8"}),
            "data_base64",
            "base64",
        );
        assert_err(
            C::Documents,
            json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVs\nbG8="}),
            "data_base64",
            "base64",
        );
        assert_err(
            C::Documents,
            json!({"title": "x", "content_type": "pdf"}),
            "content_type",
            "MIME type",
        );
        assert_err(
            C::Documents,
            json!({"title": "x", "url": "letters/1.pdf"}),
            "url",
            "absolute URI",
        );
        assert!(
            EntryBody::from_json(
                C::Documents,
                &json!({"title": "x", "content_type": "text/plain; charset=utf-8"})
            )
            .is_ok()
        );
        assert_err(
            C::Demographics,
            json!({"name": "x", "email": "edith.example.org"}),
            "email",
            "email address",
        );
        assert_err(
            C::Carers,
            json!({"name": "x", "relationship": "y", "email": "a@b@c"}),
            "email",
            "email address",
        );
        assert_err(
            C::Demographics,
            json!({"name": "x", "nhs_number": "943 476 5918"}),
            "nhs_number",
            "check digit",
        );
        assert_err(
            C::Demographics,
            json!({"name": "x", "nhs_number": "943 476 591"}),
            "nhs_number",
            "10 digits, found 9",
        );
        assert_err(
            C::SocialCareSupportPlan,
            json!({"title": "x", "personal_budget_gbp": -1}),
            "personal_budget_gbp",
            "negative",
        );
    }

    #[test]
    fn sizes_are_bounded() {
        use SectionClass as C;
        let at_limit = "x".repeat(MAX_TEXT_CHARS);
        assert!(EntryBody::from_json(C::Notes, &json!({"text": at_limit})).is_ok());
        // Characters, not bytes: 10,000 two-byte characters are fine.
        let wide = "é".repeat(MAX_TEXT_CHARS);
        assert!(EntryBody::from_json(C::Notes, &json!({"text": wide})).is_ok());
        assert_err(
            C::Notes,
            json!({"text": "x".repeat(MAX_TEXT_CHARS + 1)}),
            "text",
            "too long",
        );
        let goals: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| format!("goal {i}")).collect();
        assert_err(
            C::CarePlan,
            json!({"title": "x", "goals": goals}),
            "goals",
            "too many items",
        );
        let goals: Vec<String> = (0..MAX_LIST_ITEMS).map(|i| format!("goal {i}")).collect();
        assert!(EntryBody::from_json(C::CarePlan, &json!({"title": "x", "goals": goals})).is_ok());
        // A large document is fine up to the base64 limit.
        let data = data_encoding::BASE64.encode(&vec![7u8; MAX_BASE64_CHARS / 4 * 3]);
        assert_eq!(data.len(), MAX_BASE64_CHARS);
        let doc =
            json!({"title": "x", "content_type": "application/octet-stream", "data_base64": data});
        assert!(EntryBody::from_json(C::Documents, &doc).is_ok());
        let data = data_encoding::BASE64.encode(&vec![7u8; MAX_BASE64_CHARS / 4 * 3 + 3]);
        let doc =
            json!({"title": "x", "content_type": "application/octet-stream", "data_base64": data});
        assert_err(C::Documents, doc, "data_base64", "too long");
        // Whatever the fields, the whole body is bounded.
        let huge = json!({"text": "x", "junk": "y".repeat(MAX_ENTRY_JSON_BYTES)});
        assert_err(C::Notes, huge, "(body)", "too large");
    }

    #[test]
    fn errors_never_contain_the_value() {
        use SectionClass as C;
        const SECRET: &str = "S3CRET-Value";
        let cases = [
            (C::Demographics, json!({"name": "x", "gender": SECRET})),
            (C::Demographics, json!({"name": "x", "birth_date": SECRET})),
            (
                C::Demographics,
                json!({"name": "x", "birth_date": "2024-02-30"}),
            ),
            (C::Demographics, json!({"name": "x", "nhs_number": SECRET})),
            (
                C::Demographics,
                json!({"name": "x", "nhs_number": "9434765918"}),
            ),
            (C::Demographics, json!({"name": "x", "email": SECRET})),
            (
                C::Allergies,
                json!({"substance": "x", "code": {"system": format!("{SECRET} x"), "code": "1"}}),
            ),
            (
                C::Allergies,
                json!({"substance": "x", "code": {"system": "snomed", "code": format!(" {SECRET}")}}),
            ),
            (C::Observations, json!({"name": "x", "value": SECRET})),
            (
                C::Observations,
                json!({"name": "x", "value": 1, "value_text": SECRET}),
            ),
            (C::Encounters, json!({"class": "x", "start": SECRET})),
            (
                C::Documents,
                json!({"title": "x", "content_type": "text/plain", "data_base64": SECRET}),
            ),
            (C::Documents, json!({"title": "x", "content_type": SECRET})),
            (C::Documents, json!({"title": "x", "url": SECRET})),
            (C::Notes, json!({"text": format!("{SECRET}\u{1b}[31m")})),
            (C::Notes, json!({"text": [SECRET]})),
            (C::Notes, json!({"text": {"a": SECRET}})),
            (C::Notes, json!(SECRET)),
            (C::Notes, json!({"text": SECRET.repeat(MAX_TEXT_CHARS)})),
        ];
        for (class, body) in cases {
            let e = err(class, body);
            assert!(!e.to_string().contains("S3CRET"), "{e}");
            assert!(!format!("{e:?}").contains("S3CRET"), "{e:?}");
        }
        let e = serde_json::from_value::<Gender>(json!(SECRET)).unwrap_err();
        assert!(!e.to_string().contains("S3CRET"), "{e}");
    }

    #[test]
    fn summaries() {
        let s = |class: SectionClass, body: Value| {
            EntryBody::from_json(class, &body).unwrap().summary()
        };
        use SectionClass as C;
        assert_eq!(
            s(
                C::Allergies,
                json!({"substance": "Penicillin", "severity": "severe", "reaction": "rash"})
            ),
            "Penicillin — severe (rash)"
        );
        assert_eq!(
            s(
                C::Allergies,
                json!({"substance": "Latex", "clinical_status": "resolved"})
            ),
            "Latex [resolved]"
        );
        assert_eq!(
            s(C::Demographics, valid(C::Demographics)),
            "Edith Jones, born 1941-03-09, NHS 943 476 5919"
        );
        assert_eq!(
            s(C::Medications, valid(C::Medications)),
            "Metformin 500 mg tablets, 500 mg, twice a day [active]"
        );
        assert_eq!(
            s(C::Conditions, valid(C::Conditions)),
            "Type 2 diabetes mellitus [remission, confirmed], since 2015-06, until 2023-01-10"
        );
        assert_eq!(
            s(C::Observations, valid(C::Observations)),
            "Body weight: 72.5 kg (normal) on 2024-05-01T09:30:00+01:00"
        );
        assert_eq!(
            s(C::Observations, examples()[9].1.clone()),
            "Blood pressure: Systolic 128 mm[Hg], Diastolic 82 mm[Hg], Position sitting on 2024-05-01"
        );
        assert_eq!(
            s(
                C::Encounters,
                json!({"class": "A&E", "start": "2024-04-20", "reason": "Fall"})
            ),
            "A&E on 2024-04-20: Fall"
        );
        assert_eq!(
            s(C::CarePlan, valid(C::CarePlan)),
            "Diabetes care plan [active], review 2024-07-15"
        );
        assert_eq!(
            s(C::SocialCareAssessments, valid(C::SocialCareAssessments)),
            "Care Act needs assessment on 2024-03-12 — eligible, 2 needs"
        );
        assert_eq!(
            s(C::SocialCareSupportPlan, valid(C::SocialCareSupportPlan)),
            "Care and support plan [active], 2 services, budget £12480.50 a year"
        );
        assert_eq!(
            s(C::Carers, valid(C::Carers)),
            "Mary Jones (daughter), main carer"
        );
        assert_eq!(
            s(C::Notes, valid(C::Notes)),
            "Diary: Feeling better today. Slept well."
        );
        assert_eq!(
            s(C::Documents, valid(C::Documents)),
            "Discharge letter (application/pdf, 2024-04-21)"
        );
        assert_eq!(
            s(
                C::AdvanceCarePlan,
                json!({"dnacpr": true, "preferred_place_of_death": "home"})
            ),
            "DNACPR: yes; preferred place of death: home"
        );
        let long = s(C::Notes, json!({"text": "word ".repeat(100)}));
        assert_eq!(long.chars().count(), SUMMARY_CHARS);
        assert!(long.ends_with("word…"), "{long}");
        for (class, body) in examples() {
            let summary = s(class, body);
            assert!(summary.chars().count() <= SUMMARY_CHARS, "{summary}");
            assert!(!summary.contains('\n'));
        }
    }

    #[test]
    fn entry_body_serde_is_tagged_and_validated() {
        let entry = EntryBody::from_json(SectionClass::Notes, &json!({"text": "hi"})).unwrap();
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json, json!({"class": "notes", "body": {"text": "hi"}}));
        assert_eq!(serde_json::from_value::<EntryBody>(json).unwrap(), entry);
        for (class, body) in examples() {
            let entry = EntryBody::from_json(class, &body).unwrap();
            let text = serde_json::to_string(&entry).unwrap();
            assert_eq!(serde_json::from_str::<EntryBody>(&text).unwrap(), entry);
        }
        let bad = json!({"class": "notes", "body": {"txt": "hi"}});
        let e = serde_json::from_value::<EntryBody>(bad).unwrap_err();
        assert!(
            e.to_string().contains("notes entry: txt: unknown field"),
            "{e}"
        );
        let bad = json!({"class": "nosuch", "body": {}});
        assert!(serde_json::from_value::<EntryBody>(bad).is_err());
    }

    /// Every field name of every schema, so generated objects often hit real fields.
    fn all_field_names() -> Vec<&'static str> {
        let mut names: BTreeSet<&'static str> = BTreeSet::new();
        for class in SectionClass::ALL {
            names.extend(fields_of(*class));
        }
        for nested in [
            Code::FIELDS,
            ObservationComponent::FIELDS,
            AssessedNeed::FIELDS,
            SupportService::FIELDS,
        ] {
            names.extend(nested);
        }
        names.into_iter().collect()
    }

    const INTERESTING: &[&str] = &[
        "",
        " ",
        "x",
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-02-30",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00+01:00",
        "2024-05-01T10:00",
        "snomed",
        "http://loinc.org",
        "active",
        "resolved",
        "mild",
        "female",
        "on-hold",
        "final",
        "9434765919",
        "943 476 5919",
        "aGVsbG8=",
        "application/pdf",
        "https://example.org/x",
        "a@b",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            proptest::sample::select(INTERESTING).prop_map(Value::from),
            "\\PC{0,16}".prop_map(Value::String),
        ];
        let keys = prop_oneof![
            3 => proptest::sample::select(all_field_names()).prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(keys.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects whose keys are mostly real field names: these get past the first checks.
    fn arb_body() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map(
            proptest::sample::select(all_field_names()).prop_map(str::to_owned),
            arb_json(),
            0..10,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// A valid example with a few fields removed or replaced by arbitrary JSON: often still
    /// valid, often wrong in just one place.
    fn arb_mutated_example() -> impl Strategy<Value = (SectionClass, Value)> {
        let edit = (
            proptest::sample::select(all_field_names()),
            proptest::option::of(arb_json()),
        );
        (
            proptest::sample::select(examples()),
            proptest::collection::vec(edit, 0..4),
        )
            .prop_map(|((class, mut body), edits)| {
                if let Some(map) = body.as_object_mut() {
                    for (key, value) in edits {
                        match value {
                            Some(value) => map.insert(key.to_owned(), value),
                            None => map.remove(key),
                        };
                    }
                }
                (class, body)
            })
    }

    fn check_anything(class: SectionClass, value: &Value) -> Result<(), TestCaseError> {
        match EntryBody::from_json(class, value) {
            Ok(entry) => {
                prop_assert_eq!(entry.class(), class);
                let again = EntryBody::from_json(class, &entry.to_json());
                prop_assert_eq!(again.as_ref(), Ok(&entry));
                prop_assert!(entry.summary().chars().count() <= SUMMARY_CHARS);
            }
            Err(e) => {
                prop_assert_eq!(e.class, class);
                prop_assert!(!e.field.is_empty());
                prop_assert!(!e.problem.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn from_json_never_panics_on_any_json(
            class in proptest::sample::select(SectionClass::ALL),
            value in arb_json(),
        ) {
            check_anything(class, &value)?;
        }

        #[test]
        fn from_json_never_panics_on_plausible_bodies(
            class in proptest::sample::select(SectionClass::ALL),
            value in arb_body(),
        ) {
            check_anything(class, &value)?;
        }

        #[test]
        fn from_json_never_panics_on_edited_examples((class, value) in arb_mutated_example()) {
            check_anything(class, &value)?;
        }

        #[test]
        fn dates_and_datetimes_never_panic(s in "[0-9T:Z+.-]{0,30}") {
            let _ = check_date(&s);
            let _ = check_datetime(&s);
        }
    }
}
