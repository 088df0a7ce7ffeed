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
//! The structs also implement `Deserialize` for reading data that was validated before, e.g. from
//! storage; that checks the shape only (unknown fields are refused). Untrusted input goes through
//! [`EntryBody::from_json`], and deserialising an [`EntryBody`] always does.
//!
//! Each shape is declared once (`shapes.rs`, with `entry_schema!`): its fields, their types and
//! how each is read. The struct, its field list, its checked reader and its JSON form all come
//! from that declaration, and a field's JSON name is its Rust name, so code that reads or fills
//! a field (the summaries, FHIR import and export) names it as a Rust field and fails to compile
//! when it is renamed. [`EntryBody`] and what follows from its classes come from one table.

// First: its macros declare the shapes in the modules below.
#[macro_use]
mod read;

mod common;
mod dates;
mod shapes;
mod summary;
#[cfg(test)]
mod tests;
mod values;

pub use common::{
    CODE_SYSTEM_ALIASES, Code, DMD, ICD_10, LOINC, SNOMED_CT, Source, SourceIdentifier,
    code_system_uri,
};
pub(crate) use dates::{check_date, check_datetime};
pub(crate) use read::{field_name, is_absolute_uri};
pub use shapes::{
    AdvanceCarePlan, Allergy, AssessedNeed, CarePlan, Carer, Condition, Demographics, Document,
    Encounter, Medication, Note, Observation, ObservationComponent, SocialCareAssessment,
    SupportPlan, SupportService,
};
pub(crate) use values::ValueSet;
pub use values::{
    AllergyCategory, AllergyClinicalStatus, AllergyVerificationStatus, ConditionClinicalStatus,
    ConditionVerificationStatus, Criticality, EncounterStatus, Gender, MedicationStatus,
    ObservationStatus, PlanStatus, Severity,
};

use crate::section::SectionClass;
use read::{Fault, Read, check_size, too_large};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// The JSON name of the `source` field that every entry shape has.
pub(crate) const SOURCE: &str = field_name!(Note.source);
/// The JSON name of the field of a [`Source`] that keeps the imported resource.
pub(crate) const SOURCE_RESOURCE: &str = field_name!(Source.resource);

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

/// Declares [`EntryBody`] from one table of its variants, their shapes and their section
/// classes, with what follows from the table: the class of a body, reading the shape a class
/// has, a body as JSON, and the field names of each class.
macro_rules! entry_bodies {
    ($($(#[$doc:meta])* $variant:ident($shape:ident) = $class:ident,)+) => {
        /// A typed entry body: one variant per [`SectionClass`].
        ///
        /// Serialised as `{"class": "allergies", "body": {...}}`; deserialising runs
        /// [`EntryBody::from_json`], so an `EntryBody` read from anywhere has been validated.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EntryBody {
            $($(#[$doc])* $variant($shape),)+
        }

        impl EntryBody {
            /// The section class this body belongs in.
            pub fn class(&self) -> SectionClass {
                match self {
                    $(EntryBody::$variant(_) => SectionClass::$class,)+
                }
            }

            /// The body as JSON, in normalised form (code system aliases replaced by URIs, absent
            /// fields left out). [`EntryBody::from_json`] accepts it unchanged.
            pub fn to_json(&self) -> Value {
                match self {
                    $(EntryBody::$variant(b) => serde_json::to_value(b).unwrap_or_default(),)+
                }
            }

            /// Reads a body that was checked before (e.g. as stored) by its shape only, as the
            /// shapes' `Deserialize` does: nothing beyond the JSON types is checked again.
            pub(crate) fn structural(class: SectionClass, value: Value) -> serde_json::Result<EntryBody> {
                Ok(match class {
                    $(SectionClass::$class => EntryBody::$variant(serde_json::from_value(value)?),)+
                })
            }

            fn serialize_body<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
                match self {
                    $(EntryBody::$variant(b) => st.serialize_field("body", b),)+
                }
            }
        }

        /// Reads and checks the body of a `class` entry.
        fn read_body(class: SectionClass, value: &Value) -> Result<EntryBody, Fault> {
            Ok(match class {
                $(SectionClass::$class => EntryBody::$variant(Read::read(value, "")?),)+
            })
        }

        /// The JSON field names of a `class` entry, in declaration order.
        #[cfg(test)]
        fn fields_of(class: SectionClass) -> &'static [&'static str] {
            match class {
                $(SectionClass::$class => $shape::FIELDS,)+
            }
        }
    };
}

entry_bodies! {
    /// A `demographics` entry.
    Demographics(Demographics) = Demographics,
    /// An `allergies` entry.
    Allergy(Allergy) = Allergies,
    /// A `medications` entry.
    Medication(Medication) = Medications,
    /// A `conditions` entry.
    Condition(Condition) = Conditions,
    /// An `observations` entry.
    Observation(Observation) = Observations,
    /// An `encounters` entry.
    Encounter(Encounter) = Encounters,
    /// A `care-plan` entry.
    CarePlan(CarePlan) = CarePlan,
    /// A `social-care/assessments` entry.
    SocialCareAssessment(SocialCareAssessment) = SocialCareAssessments,
    /// A `social-care/support-plan` entry.
    SupportPlan(SupportPlan) = SocialCareSupportPlan,
    /// A `carers` entry.
    Carer(Carer) = Carers,
    /// A `notes` entry.
    Note(Note) = Notes,
    /// A `documents` entry.
    Document(Document) = Documents,
    /// An `advance-care-plan` entry.
    AdvanceCarePlan(AdvanceCarePlan) = AdvanceCarePlan,
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
}

impl Serialize for EntryBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("EntryBody", 2)?;
        st.serialize_field("class", &self.class())?;
        self.serialize_body(&mut st)?;
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
            .get(SOURCE)
            .filter(|s| s.is_object())
            .ok_or_else(|| located(Fault::new(SOURCE, "must be a JSON object")))?;
        if source.get(SOURCE_RESOURCE).is_some() {
            let at = format!("{SOURCE}.{SOURCE_RESOURCE}");
            return Err(located(Fault::new(&at, "is given twice")));
        }
        let read = Source::read(source, SOURCE).map_err(located)?;
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
                    Value::Object(source) if k == SOURCE => {
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
                            if !placed && sk.as_str() > SOURCE_RESOURCE {
                                field(&mut out, SOURCE_RESOURCE, None);
                                placed = true;
                            }
                            field(&mut out, sk, Some(sv));
                        }
                        if !placed {
                            field(&mut out, SOURCE_RESOURCE, None);
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
