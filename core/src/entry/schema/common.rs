//! What entries of every class share: code systems and coded concepts, and the `source` of an
//! imported entry.

use super::MAX_CODE_CHARS;
use super::read::{Fault, Obj, Read, read_code, read_code_system, read_text_limited, read_uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Deserialises a code system, replacing an alias with its URI.
fn deserialize_code_system<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    Ok(code_system_uri(&text).to_owned())
}

impl Code {
    pub(crate) const FIELDS: &'static [&'static str] = &["system", "code", "display"];
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

entry_schema! {
    /// Where an imported entry came from: the resource it was made from, how to recognise it again
    /// (so importing the same data twice adds nothing), and the resource itself, kept whole so that
    /// no element Hearth has no field for (extensions, extra codings, narrative) is lost.
    ///
    /// Entries written in Hearth have no source. `docs/FHIR.md` describes how FHIR import fills it.
    pub struct Source {
        /// The format the entry was imported from: `fhir-r4`.
        pub format: String = req_with(|v, at| read_text_limited(v, at, 64)),
        /// The resource type, e.g. `Observation`.
        pub resource_type: String = req_with(read_resource_type),
        /// The resource's logical id, if it had one.
        pub id: Option<String> = opt_with(|v, at| read_text_limited(v, at, MAX_CODE_CHARS)),
        /// The bundle entry's `fullUrl`, if it had one.
        pub full_url: Option<String> = opt_with(read_uri),
        /// The resource's business identifiers.
        pub identifiers: Vec<SourceIdentifier> = list,
        /// SHA-256 (lower-case hex) of the resource's canonical JSON: the de-duplication key.
        pub sha256: String = req_with(read_sha256),
        /// SHA-256 of the entry's other fields as imported: tells an export whether the entry was
        /// corrected since (then its fields, not the kept resource, are authoritative).
        pub body_sha256: Option<String> = opt_with(read_sha256),
        /// The resource as received (a JSON object whose `resourceType` is `resource_type`).
        pub resource: Option<Value> = any,
    }
    check |o, source| {
        if let Some(resource) = &source.resource {
            let at = o.path(stringify!(resource));
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
        Ok(())
    }
}

entry_schema! {
    /// A business identifier of an imported resource, e.g. an NHS number or a laboratory's
    /// accession number.
    #[derive(Eq)]
    pub struct SourceIdentifier {
        /// The identifier's namespace, a URI.
        pub system: Option<String> = opt_with(read_uri),
        /// The identifier.
        pub value: String = req_with(|v, at| read_text_limited(v, at, MAX_CODE_CHARS)),
    }
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
