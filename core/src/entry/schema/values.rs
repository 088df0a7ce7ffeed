//! The value sets of coded fields (statuses, severities, categories), each with its JSON text
//! forms.

use super::read::{Fault, Read};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// One of Hearth's value sets, read from its JSON text forms.
pub(crate) trait ValueSet: Sized {
    /// The value whose text form is `text`.
    fn from_text(text: &str) -> Option<Self>;
    /// What to say of a text that is none of them: `must be one of: …`.
    fn one_of() -> String;
    /// The value's text form.
    fn text(self) -> &'static str;
}

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

            /// The value whose JSON text form is `text`.
            pub(crate) fn from_text(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            fn one_of() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("must be one of: {}", names.join(", "))
            }
        }

        impl ValueSet for $name {
            fn from_text(text: &str) -> Option<Self> {
                $name::from_text(text)
            }

            fn one_of() -> String {
                $name::one_of()
            }

            fn text(self) -> &'static str {
                self.as_str()
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
