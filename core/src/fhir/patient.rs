//! Whose data is this? An import compares the bundle's `Patient` with the record's own
//! demographics before anything is written, so that another person's bundle is not merged into
//! a record without a word.
//!
//! The rule ([`check_patient`]):
//! 1. **NHS number first.** When the bundle's Patient and the record both have one, they decide:
//!    the same number is the same patient, a different one is a different patient, whatever the
//!    names say.
//! 2. Otherwise **name and birth date**, both: a name or a birth date that differs is a
//!    different patient; both the same is the same patient.
//! 3. Anything less cannot be checked (no Patient in the bundle, no demographics this node can
//!    read, or a fact missing on one side): the import is not shown to be this patient's.
//!
//! Only [`PatientCheck::Same`] lets an import through on its own; the node refuses the rest
//! unless the user says otherwise. Nothing here holds or prints a value: the outcome names the
//! facts (NHS number, name, birth date), never what they are.
//!
//! Names are compared as words, ignoring case, punctuation, order and common titles
//! ("Mrs Edith JONES" is "Jones, Edith"); a birth date only when it is a full date on both sides.

use crate::entry::schema::{Demographics, field_name};
use crate::nhs::NhsNumber;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// One fact about who a patient is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientFact {
    /// The NHS number.
    NhsNumber,
    /// The name.
    Name,
    /// The date of birth.
    BirthDate,
}

impl PatientFact {
    /// Plain words.
    pub fn words(self) -> &'static str {
        match self {
            PatientFact::NhsNumber => "NHS number",
            PatientFact::Name => "name",
            PatientFact::BirthDate => "birth date",
        }
    }
}

/// Which facts showed the bundle's Patient to be the record's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SameBy {
    /// The same NHS number.
    NhsNumber,
    /// The same name and the same birth date (no NHS number on one side).
    NameAndBirthDate,
}

/// Why the check could not decide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Unchecked {
    /// The bundle has no Patient resource: nothing in it says whose data it is.
    NoPatient,
    /// This node reads no demographics entry of the record (none written, or none it may read).
    NoDemographics,
    /// No NHS number on one side, and a name or birth date is missing on one side.
    Missing {
        /// Facts the bundle's Patient does not give.
        bundle: Vec<PatientFact>,
        /// Facts the record's demographics do not give.
        record: Vec<PatientFact>,
    },
}

/// The outcome of comparing a bundle's Patient with a record's demographics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum PatientCheck {
    /// The same patient.
    Same {
        /// By which facts.
        by: SameBy,
    },
    /// Another patient: these facts differ.
    Different {
        /// The facts that differ (never their values).
        differs: Vec<PatientFact>,
    },
    /// Not decidable: the import is not shown to be this patient's.
    Unchecked(Unchecked),
}

impl PatientCheck {
    /// Whether the bundle was shown to be the record's patient's.
    pub fn is_same(&self) -> bool {
        matches!(self, PatientCheck::Same { .. })
    }

    /// The outcome in plain words, naming facts, never values.
    pub fn words(&self) -> String {
        match self {
            PatientCheck::Same {
                by: SameBy::NhsNumber,
            } => "the bundle's Patient has this record's NHS number".into(),
            PatientCheck::Same {
                by: SameBy::NameAndBirthDate,
            } => "the bundle's Patient has this record's name and birth date".into(),
            PatientCheck::Different { differs } => {
                let facts: Vec<&str> = differs.iter().map(|f| f.words()).collect();
                format!(
                    "the bundle is about another patient: the {} {} from this record's",
                    join_words(&facts),
                    if facts.len() == 1 {
                        "differs"
                    } else {
                        "differ"
                    }
                )
            }
            PatientCheck::Unchecked(Unchecked::NoPatient) => {
                "the bundle has no Patient resource, so nothing in it says whose data it is".into()
            }
            PatientCheck::Unchecked(Unchecked::NoDemographics) => {
                "this node reads no demographics for the record (none written, or no grant to \
                 read them), so there is nothing to compare the bundle's Patient with"
                    .into()
            }
            PatientCheck::Unchecked(Unchecked::Missing { bundle, record }) => {
                let mut parts = vec![
                    "the bundle's Patient and the record do not both have an NHS \
                                      number, and"
                        .to_string(),
                ];
                let side = |who: &str, facts: &[PatientFact]| {
                    let f: Vec<&str> = facts.iter().map(|f| f.words()).collect();
                    format!("{who} no {}", join_words(&f).replace(" and ", " or "))
                };
                let mut missing = Vec::new();
                if !bundle.is_empty() {
                    missing.push(side("the bundle's Patient gives", bundle));
                }
                if !record.is_empty() {
                    missing.push(side("the record has", record));
                }
                parts.push(missing.join(", and "));
                parts.join(" ")
            }
        }
    }
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Who a Patient resource or a demographics entry says the patient is, normalised for
/// comparison. Its `Debug` shows which facts are present, never their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    nhs_number: Option<String>,
    /// Each name as its sorted, lower-case words, titles left out.
    names: Vec<Vec<String>>,
    /// A full `YYYY-MM-DD` date.
    birth_date: Option<String>,
}

impl fmt::Debug for PatientFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientFacts")
            .field("nhs_number", &self.nhs_number.is_some())
            .field("names", &self.names.len())
            .field("birth_date", &self.birth_date.is_some())
            .finish()
    }
}

/// Titles left out of names when comparing them.
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "professor",
    "sir",
    "dame",
    "lady",
    "lord",
    "rev",
    "revd",
];

/// A name as sorted lower-case words, titles left out; `None` when nothing is left.
fn name_words(name: &str) -> Option<Vec<String>> {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !TITLES.contains(&w.as_str()))
        .collect();
    words.sort();
    (!words.is_empty()).then_some(words)
}

/// A full date (`YYYY-MM-DD`, perhaps followed by a time), else `None`.
fn full_date(s: &str) -> Option<String> {
    let d = s.get(..10)?;
    let b = d.as_bytes();
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    shape.then(|| d.to_owned())
}

fn nhs(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<NhsNumber>().ok())
        .map(|n| n.as_str().to_owned())
}

impl PatientFacts {
    /// The facts of a demographics entry's body (`name`, `birth_date`, `nhs_number`).
    pub fn of_demographics(body: &Value) -> PatientFacts {
        PatientFacts {
            nhs_number: nhs(body.get(field_name!(Demographics.nhs_number))),
            names: body
                .get(field_name!(Demographics.name))
                .and_then(Value::as_str)
                .and_then(name_words)
                .into_iter()
                .collect(),
            birth_date: body
                .get(field_name!(Demographics.birth_date))
                .and_then(Value::as_str)
                .and_then(full_date),
        }
    }

    /// The facts of a FHIR `Patient` resource: its NHS number identifier, every name it gives
    /// (text, or given and family names), and its birth date.
    pub fn of_patient(resource: &Map<String, Value>) -> PatientFacts {
        let nhs_number = resource
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|i| i.get("system").and_then(Value::as_str) == Some(super::NHS_NUMBER_SYSTEM))
            .and_then(|i| nhs(i.get("value")));
        let mut names = Vec::new();
        let mut add = |s: &str| {
            if let Some(w) = name_words(s)
                && !names.contains(&w)
            {
                names.push(w);
            }
        };
        match resource.get("name") {
            Some(Value::String(s)) => add(s),
            Some(Value::Array(list)) => {
                for n in list {
                    if let Some(t) = n.get("text").and_then(Value::as_str) {
                        add(t);
                    }
                    let mut parts: Vec<&str> = n
                        .get("given")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if let Some(f) = n.get("family").and_then(Value::as_str) {
                        parts.push(f);
                    }
                    add(&parts.join(" "));
                }
            }
            _ => {}
        }
        PatientFacts {
            nhs_number,
            names,
            birth_date: resource
                .get("birthDate")
                .and_then(Value::as_str)
                .and_then(full_date),
        }
    }
}

/// Compares the bundle's Patient (`None`: the bundle has none) with the record's current
/// demographics entries (empty: none this node reads). See the module's rule.
pub fn check_patient(bundle: Option<&PatientFacts>, record: &[PatientFacts]) -> PatientCheck {
    let Some(b) = bundle else {
        return PatientCheck::Unchecked(Unchecked::NoPatient);
    };
    if record.is_empty() {
        return PatientCheck::Unchecked(Unchecked::NoDemographics);
    }
    let record_nhs: Vec<&String> = record
        .iter()
        .filter_map(|r| r.nhs_number.as_ref())
        .collect();
    let name_same = || {
        b.names
            .iter()
            .any(|n| record.iter().any(|r| r.names.contains(n)))
    };
    let record_dates: Vec<&String> = record
        .iter()
        .filter_map(|r| r.birth_date.as_ref())
        .collect();
    let has_names = !b.names.is_empty();
    let record_names = record.iter().any(|r| !r.names.is_empty());
    let name_differs = has_names && record_names && !name_same();
    let date_differs = b
        .birth_date
        .as_ref()
        .is_some_and(|d| !record_dates.is_empty() && !record_dates.contains(&d));
    if let Some(n) = &b.nhs_number
        && !record_nhs.is_empty()
    {
        if record_nhs.contains(&n) {
            return PatientCheck::Same {
                by: SameBy::NhsNumber,
            };
        }
        let mut differs = vec![PatientFact::NhsNumber];
        if name_differs {
            differs.push(PatientFact::Name);
        }
        if date_differs {
            differs.push(PatientFact::BirthDate);
        }
        return PatientCheck::Different { differs };
    }
    let mut differs = Vec::new();
    if name_differs {
        differs.push(PatientFact::Name);
    }
    if date_differs {
        differs.push(PatientFact::BirthDate);
    }
    if !differs.is_empty() {
        return PatientCheck::Different { differs };
    }
    let mut missing_bundle = Vec::new();
    let mut missing_record = Vec::new();
    if !has_names {
        missing_bundle.push(PatientFact::Name);
    }
    if !record_names {
        missing_record.push(PatientFact::Name);
    }
    if b.birth_date.is_none() {
        missing_bundle.push(PatientFact::BirthDate);
    }
    if record_dates.is_empty() {
        missing_record.push(PatientFact::BirthDate);
    }
    if missing_bundle.is_empty() && missing_record.is_empty() {
        return PatientCheck::Same {
            by: SameBy::NameAndBirthDate,
        };
    }
    PatientCheck::Unchecked(Unchecked::Missing {
        bundle: missing_bundle,
        record: missing_record,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn patient(v: Value) -> PatientFacts {
        PatientFacts::of_patient(v.as_object().unwrap())
    }

    const NHS: &str = "9434765919";
    const OTHER_NHS: &str = "9000000009";

    fn edith() -> Vec<PatientFacts> {
        vec![
            PatientFacts::of_demographics(&json!({"name": "Mrs Edith Jones", "nhs_number": NHS})),
            PatientFacts::of_demographics(
                &json!({"name": "Edith Jones", "birth_date": "1938-03-02"}),
            ),
        ]
    }

    #[test]
    fn nhs_number_decides_whatever_the_names_say() {
        let same = patient(json!({"name": [{"family": "Smith", "given": ["Anne"]}],
            "identifier": [{"system": crate::fhir::NHS_NUMBER_SYSTEM, "value": "943 476 5919"}]}));
        assert_eq!(
            check_patient(Some(&same), &edith()),
            PatientCheck::Same {
                by: SameBy::NhsNumber
            }
        );
        let other = patient(json!({"name": [{"family": "Jones", "given": ["Edith"]}],
            "birthDate": "1938-03-02",
            "identifier": [{"system": crate::fhir::NHS_NUMBER_SYSTEM, "value": OTHER_NHS}]}));
        assert_eq!(
            check_patient(Some(&other), &edith()),
            PatientCheck::Different {
                differs: vec![PatientFact::NhsNumber]
            }
        );
    }

    #[test]
    fn without_an_nhs_number_name_and_birth_date_decide() {
        let same = patient(
            json!({"name": [{"use": "official", "family": "JONES", "given": ["Edith"], "prefix": ["Mrs"]}],
            "birthDate": "1938-03-02"}),
        );
        assert!(check_patient(Some(&same), &edith()).is_same());
        let other = patient(json!({"name": [{"family": "Sampleton", "given": ["Cato"]}],
            "birthDate": "1948-10-17"}));
        let c = check_patient(Some(&other), &edith());
        assert_eq!(
            c,
            PatientCheck::Different {
                differs: vec![PatientFact::Name, PatientFact::BirthDate]
            }
        );
        assert_eq!(
            c.words(),
            "the bundle is about another patient: the name and birth date differ from this record's"
        );
        let born_elsewhen = patient(json!({"name": "Edith Jones", "birthDate": "1940-01-01"}));
        assert_eq!(
            check_patient(Some(&born_elsewhen), &edith()),
            PatientCheck::Different {
                differs: vec![PatientFact::BirthDate]
            }
        );
    }

    #[test]
    fn too_little_to_compare_is_unchecked() {
        assert_eq!(
            check_patient(None, &edith()),
            PatientCheck::Unchecked(Unchecked::NoPatient)
        );
        let p = patient(json!({"name": "Edith Jones", "birthDate": "1938-03-02"}));
        assert_eq!(
            check_patient(Some(&p), &[]),
            PatientCheck::Unchecked(Unchecked::NoDemographics)
        );
        // The record from `init` alone: a name and an NHS number, no birth date.
        let init_only = vec![PatientFacts::of_demographics(
            &json!({"name": "Edith Jones", "nhs_number": NHS}),
        )];
        let c = check_patient(Some(&p), &init_only);
        assert_eq!(
            c,
            PatientCheck::Unchecked(Unchecked::Missing {
                bundle: vec![],
                record: vec![PatientFact::BirthDate]
            })
        );
        assert!(
            c.words().contains("the record has no birth date"),
            "{}",
            c.words()
        );
        // A partial birth date is not compared.
        let partial = patient(json!({"name": "Edith Jones", "birthDate": "1938"}));
        assert!(!check_patient(Some(&partial), &edith()).is_same());
    }

    #[test]
    fn words_and_debug_hold_no_value() {
        let other = patient(json!({"name": "Cato Sampleton", "birthDate": "1948-10-17",
            "identifier": [{"system": crate::fhir::NHS_NUMBER_SYSTEM, "value": OTHER_NHS}]}));
        let c = check_patient(Some(&other), &edith());
        let all = format!(
            "{} {:?} {:?} {}",
            c.words(),
            c,
            other,
            serde_json::to_string(&c).unwrap()
        );
        for v in ["Cato", "Sampleton", "1948", OTHER_NHS, "Edith", NHS] {
            assert!(!all.contains(v), "{v} in {all}");
        }
    }
}
