//! Each resource type with a typed home mapped to its entry: the shape's fields filled from the
//! resource's elements, each noted with the FHIR path it came from. What a resource lacks for
//! its typed entry (a name, a start) makes it [`Mapped::Kept`]: kept whole as a document.

mod care;
mod clinical;

use super::super::{FhirError, HEARTH_FIELD_EXTENSION};
use super::read::{Draft, Mapped, Res, clip, display_name};
use crate::entry::EntryBody;
use crate::entry::schema::Document;
use crate::section::{Label, SectionClass, SectionName};
use serde_json::{Map, Value};

pub(crate) use care::UCUM;

/// A mapping: a resource to what it becomes.
type Mapping = fn(&Res<'_>) -> Result<Mapped, FhirError>;

/// The resource types with a typed mapping, each with its mapping.
const MAPPINGS: &[(&str, Mapping)] = &[
    ("Patient", clinical::patient),
    ("RelatedPerson", clinical::related_person),
    ("AllergyIntolerance", clinical::allergy),
    ("Condition", clinical::condition),
    ("MedicationStatement", clinical::medication_statement),
    ("MedicationRequest", clinical::medication_request),
    ("Immunization", clinical::immunization),
    ("Observation", care::observation),
    ("DiagnosticReport", care::diagnostic_report),
    ("Encounter", care::encounter),
    ("Procedure", care::procedure),
    ("CarePlan", care::care_plan),
    ("CareTeam", clinical::care_team),
    ("DocumentReference", care::document_reference),
    ("QuestionnaireResponse", care::questionnaire_response),
];

/// Whether resources of type `rt` have a typed mapping.
pub(super) fn is_known_type(rt: &str) -> bool {
    MAPPINGS.iter().any(|(t, _)| *t == rt)
}

/// What a resource of type `rt` maps to.
pub(super) fn map_resource(r: &Res<'_>, rt: &str) -> Result<Mapped, FhirError> {
    match MAPPINGS.iter().find(|(t, _)| *t == rt) {
        Some((_, mapping)) => mapping(r),
        None => Ok(Mapped::Kept),
    }
}

/// A typed entry of the general section of its class.
fn typed<T>(draft: Draft<T>, variant: impl FnOnce(T) -> EntryBody) -> Result<Mapped, FhirError> {
    let draft = draft.into_body(variant);
    let class = draft.shape.class();
    Ok(Mapped::Typed(
        SectionName::new(class, Label::General),
        Box::new(draft),
    ))
}

/// A `documents` entry that holds a resource with no typed home.
pub(super) fn kept_body(r: &Res<'_>, rt: &str) -> Draft<EntryBody> {
    let mut b = Draft::new(Document::empty());
    let title = match display_name(r.map) {
        Some(n) => format!("{rt}: {n}"),
        None => rt.to_owned(),
    };
    text!(b.title, Some(title), "name");
    set!(
        b.content_type,
        Some("application/fhir+json".to_owned()),
        "resourceType"
    );
    b.into_body(EntryBody::Document)
}

/// Reads Hearth's own field extensions (`urn:hearth:field:<class>:<field>`), written by export
/// for fields FHIR has no element for, back into the body's fields (as JSON: the field is named
/// by the extension, and checked with the rest of the body).
pub(super) fn read_hearth_extensions(
    resource: &Map<String, Value>,
    class: SectionClass,
    fields: &mut Map<String, Value>,
    paths: &mut Vec<(String, String)>,
) {
    let prefix = format!("{HEARTH_FIELD_EXTENSION}{}:", class.as_str());
    for x in resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(field) = x
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix(prefix.as_str()))
        else {
            continue;
        };
        if fields.contains_key(field) {
            continue;
        }
        let value = ["valueString", "valueBoolean", "valueDate", "valueDecimal"]
            .iter()
            .find_map(|k| x.get(*k).cloned())
            .or_else(|| x.get("valueMoney").and_then(|m| m.get("value")).cloned());
        if let Some(v) = value {
            let v = match v {
                Value::String(s) => Value::String(clip(&s)),
                other => other,
            };
            fields.insert(field.to_owned(), v);
            paths.push((field.to_owned(), format!("extension[{field}]")));
        }
    }
}
