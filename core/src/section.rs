//! Sections: the unit of granting, encryption and sync.
//!
//! A section is a [`SectionClass`] (what kind of information) crossed with a [`Label`] (how
//! sensitive it is). The readable name, e.g. `notes:mental-health`, lives only in the record's
//! encrypted directory; on the wire a section is an opaque [`crate::ids::SectionId`].
//!
//! A [`SectionSpec`] is the comma-separated syntax used on the command line and in grants:
//! `class[:label]`, where no label means `general` and `class:*` means every label, e.g.
//! `notes,medications,notes:mental-health`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $what:expr, { $($(#[$vdoc:meta])* $variant:ident => $text:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in display order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = SectionError;
            fn from_str(s: &str) -> Result<Self, SectionError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(SectionError::Unknown {
                        what: $what,
                        given: s.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(
    /// What kind of information a section holds; each class has its own entry schema.
    SectionClass, "section class", {
        /// Name, date of birth, NHS number, address, contact details.
        Demographics => "demographics",
        /// Allergies and intolerances.
        Allergies => "allergies",
        /// Medications taken or prescribed.
        Medications => "medications",
        /// Problems and diagnoses.
        Conditions => "conditions",
        /// Measurements and test results.
        Observations => "observations",
        /// Contacts with services: appointments, visits, admissions.
        Encounters => "encounters",
        /// Health care plans.
        CarePlan => "care-plan",
        /// Social care needs assessments (e.g. Care Act assessments).
        SocialCareAssessments => "social-care/assessments",
        /// Social care and support plans.
        SocialCareSupportPlan => "social-care/support-plan",
        /// Carers and people who support the patient.
        Carers => "carers",
        /// Free-text notes.
        Notes => "notes",
        /// Documents: letters, reports, scans.
        Documents => "documents",
        /// Advance care planning: wishes, DNACPR, lasting power of attorney.
        AdvanceCarePlan => "advance-care-plan",
    }
);

string_enum!(
    /// How sensitive a section is. Grants name labels explicitly, so a grant for `notes` never
    /// covers `notes:mental-health`.
    Label, "label", {
        /// Ordinary clinical and care information.
        General => "general",
        /// Mental health.
        MentalHealth => "mental-health",
        /// Sexual health.
        SexualHealth => "sexual-health",
        /// Safeguarding concerns.
        Safeguarding => "safeguarding",
        /// Social care.
        SocialCare => "social-care",
    }
);

/// Errors parsing section names and specs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// An unknown class or label.
    #[error("unknown {what} '{given}'")]
    Unknown {
        /// `SectionClass` or `Label`.
        what: &'static str,
        /// What was given (truncated).
        given: String,
    },
    /// An empty spec or an empty item in it.
    #[error("empty section name")]
    Empty,
    /// A wildcard where a single section is needed.
    #[error("'*' names several sections; give one label here")]
    WildcardNotAllowed,
}

/// One section's readable name: class and label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SectionName {
    /// What kind of information.
    pub class: SectionClass,
    /// How sensitive.
    pub label: Label,
}

impl SectionName {
    /// A section name.
    pub fn new(class: SectionClass, label: Label) -> Self {
        SectionName { class, label }
    }
}

impl fmt::Display for SectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.label == Label::General {
            write!(f, "{}", self.class)
        } else {
            write!(f, "{}:{}", self.class, self.label)
        }
    }
}

impl FromStr for SectionName {
    type Err = SectionError;
    fn from_str(s: &str) -> Result<Self, SectionError> {
        match SectionPattern::from_str(s)? {
            SectionPattern {
                class,
                label: Some(label),
            } => Ok(SectionName { class, label }),
            SectionPattern { label: None, .. } => Err(SectionError::WildcardNotAllowed),
        }
    }
}

/// One item of a spec: a class with one label, or with every label (`class:*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SectionPattern {
    /// The class.
    pub class: SectionClass,
    /// `None` means every label.
    pub label: Option<Label>,
}

impl SectionPattern {
    /// Whether `name` is covered.
    pub fn matches(&self, name: &SectionName) -> bool {
        self.class == name.class && self.label.is_none_or(|l| l == name.label)
    }
}

impl fmt::Display for SectionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label {
            None => write!(f, "{}:*", self.class),
            Some(Label::General) => write!(f, "{}", self.class),
            Some(l) => write!(f, "{}:{}", self.class, l),
        }
    }
}

impl FromStr for SectionPattern {
    type Err = SectionError;
    fn from_str(s: &str) -> Result<Self, SectionError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SectionError::Empty);
        }
        let (class, label) = match s.split_once(':') {
            None => (s, Some(Label::General)),
            Some((c, "*")) => (c, None),
            Some((c, l)) => (c, Some(l.parse()?)),
        };
        Ok(SectionPattern {
            class: class.parse()?,
            label,
        })
    }
}

/// A comma-separated list of section patterns, e.g. `notes,medications,notes:mental-health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSpec(pub Vec<SectionPattern>);

impl SectionSpec {
    /// Whether any pattern covers `name`.
    pub fn matches(&self, name: &SectionName) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }
}

impl fmt::Display for SectionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for SectionSpec {
    type Err = SectionError;
    fn from_str(s: &str) -> Result<Self, SectionError> {
        let mut v: Vec<SectionPattern> = s
            .split(',')
            .map(SectionPattern::from_str)
            .collect::<Result<_, _>>()?;
        v.sort();
        v.dedup();
        Ok(SectionSpec(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_syntax() {
        let spec: SectionSpec = "notes,medications,notes:mental-health".parse().unwrap();
        assert!(spec.matches(&"notes".parse().unwrap()));
        assert!(spec.matches(&"notes:mental-health".parse().unwrap()));
        assert!(!spec.matches(&"notes:sexual-health".parse().unwrap()));
        assert!(!spec.matches(&"allergies".parse().unwrap()));
        let all: SectionSpec = "notes:*".parse().unwrap();
        assert!(all.matches(&"notes:safeguarding".parse().unwrap()));
        assert!("nosuch".parse::<SectionSpec>().is_err());
        assert!("notes:nosuch".parse::<SectionSpec>().is_err());
        assert!("notes,".parse::<SectionSpec>().is_err());
        assert!("notes:*".parse::<SectionName>().is_err());
        assert_eq!(
            "social-care/assessments:social-care"
                .parse::<SectionName>()
                .unwrap()
                .to_string(),
            "social-care/assessments:social-care"
        );
        assert_eq!(spec.to_string(), "medications,notes,notes:mental-health");
    }

    #[test]
    fn every_name_round_trips() {
        for c in SectionClass::ALL {
            for l in Label::ALL {
                let n = SectionName::new(*c, *l);
                assert_eq!(n.to_string().parse::<SectionName>().unwrap(), n);
            }
        }
    }
}
