//! Saying that an exported resource was entered in error, as its resource type says it.

use serde_json::{Value, json};

/// Resource types whose `status` can say `entered-in-error` (FHIR R4): those Hearth maps,
/// and those it keeps whole.
pub(super) const STATUS_IN_ERROR_TYPES: &[&str] = &[
    "Appointment",
    "CarePlan",
    "CareTeam",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Consent",
    "Coverage",
    "DetectedIssue",
    "Device",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "FamilyMemberHistory",
    "Flag",
    "ImagingStudy",
    "Immunization",
    "List",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "NutritionOrder",
    "Observation",
    "Procedure",
    "QuestionnaireResponse",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
    "Task",
];

/// The `abatement[x]` elements of a Condition.
pub(super) const ABATEMENT: &[&str] = &[
    "abatementDateTime",
    "abatementAge",
    "abatementPeriod",
    "abatementRange",
    "abatementString",
];

/// Marks a resource entered in error, as its type says it: `status`; a Goal's
/// `lifecycleStatus`; a Condition's or an AllergyIntolerance's `verificationStatus`, without
/// `clinicalStatus` (FHIR forbids it beside that: con-5, ait-2) and, for a Condition, without
/// `abatement[x]` (which would need a clinicalStatus: con-4). `false` for a type with no such
/// status (Patient, Practitioner, Organization…): such an entry is left out.
pub(super) fn mark_entered_in_error(resource: &mut Value) -> bool {
    let Some(r) = resource.as_object_mut() else {
        return false;
    };
    let system = match r.get("resourceType").and_then(Value::as_str) {
        Some("Condition") => {
            for a in ABATEMENT {
                r.remove(*a);
            }
            "http://terminology.hl7.org/CodeSystem/condition-ver-status"
        }
        Some("AllergyIntolerance") => {
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
        }
        Some("Goal") => {
            r.insert("lifecycleStatus".into(), json!("entered-in-error"));
            return true;
        }
        Some(t) if STATUS_IN_ERROR_TYPES.binary_search(&t).is_ok() => {
            r.insert("status".into(), json!("entered-in-error"));
            return true;
        }
        _ => return false,
    };
    r.remove("clinicalStatus");
    r.insert(
        "verificationStatus".into(),
        json!({"coding": [{"system": system, "code": "entered-in-error", "display": "Entered in Error"}]}),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_is_sorted_for_binary_search() {
        assert!(STATUS_IN_ERROR_TYPES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn entered_in_error_is_said_as_each_type_says_it() {
        let mut c = json!({"resourceType": "Condition", "clinicalStatus": {"text": "resolved"},
            "abatementDateTime": "2020-01-01", "abatementString": "gone"});
        assert!(mark_entered_in_error(&mut c));
        assert_eq!(
            c["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        for gone in ["clinicalStatus", "abatementDateTime", "abatementString"] {
            assert!(c.get(gone).is_none(), "{gone}");
        }
        let mut a = json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"text": "x"}});
        assert!(mark_entered_in_error(&mut a));
        assert!(a.get("clinicalStatus").is_none());
        let mut g = json!({"resourceType": "Goal", "lifecycleStatus": "active"});
        assert!(mark_entered_in_error(&mut g));
        assert_eq!(g["lifecycleStatus"], "entered-in-error");
        for t in [
            "Specimen",
            "Medication",
            "Observation",
            "FamilyMemberHistory",
        ] {
            let mut r = json!({"resourceType": t, "status": "final"});
            assert!(mark_entered_in_error(&mut r), "{t}");
            assert_eq!(r["status"], "entered-in-error");
        }
        for t in [
            "Patient",
            "Practitioner",
            "Organization",
            "Location",
            "RelatedPerson",
        ] {
            let mut r = json!({"resourceType": t});
            let before = r.clone();
            assert!(!mark_entered_in_error(&mut r), "{t}");
            assert_eq!(r, before);
        }
    }
}
