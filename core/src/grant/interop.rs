//! Grants as FHIR R4 `Consent` resources and as SMART App Launch v2 scope strings.

use super::{Ability, Grant, Purpose, Scope};
use crate::section::{Label, SectionClass};
use serde_json::{Value, json};

/// The FHIR resource types a section class holds.
pub fn resource_types(class: SectionClass) -> &'static [&'static str] {
    match class {
        SectionClass::Demographics => &["Patient"],
        SectionClass::Allergies => &["AllergyIntolerance"],
        SectionClass::Medications => &["MedicationStatement", "MedicationRequest"],
        SectionClass::Conditions => &["Condition"],
        SectionClass::Observations => &["Observation", "DiagnosticReport"],
        SectionClass::Encounters => &["Encounter", "Procedure"],
        SectionClass::CarePlan => &["CarePlan", "CareTeam"],
        SectionClass::SocialCareAssessments => &["QuestionnaireResponse"],
        SectionClass::SocialCareSupportPlan => &["CarePlan"],
        SectionClass::Carers => &["RelatedPerson"],
        SectionClass::Notes => &["DocumentReference"],
        SectionClass::Documents => &["DocumentReference"],
        SectionClass::AdvanceCarePlan => &["Consent"],
    }
}

/// The HL7 v3 information-sensitivity code for a label (`None` for general).
pub fn sensitivity_code(label: Label) -> Option<(&'static str, &'static str)> {
    match label {
        Label::General => None,
        Label::MentalHealth => Some(("PSY", "psychiatry disorder information sensitivity")),
        Label::SexualHealth => Some((
            "SEX",
            "sexuality and reproductive health information sensitivity",
        )),
        Label::Safeguarding => Some((
            "SDV",
            "sexual assault, abuse, or domestic violence information sensitivity",
        )),
        Label::SocialCare => Some(("SOC", "social services information sensitivity")),
    }
}

/// The HL7 v3 purpose-of-use code.
pub fn purpose_code(p: Purpose) -> (&'static str, &'static str) {
    match p {
        Purpose::DirectCare => ("TREAT", "treatment"),
        Purpose::SocialCare => ("TREAT", "treatment"),
        Purpose::Emergency => ("ETREAT", "emergency treatment"),
        Purpose::Research => ("HRESCH", "healthcare research"),
        Purpose::Planning => ("HOPERAT", "healthcare operations"),
        Purpose::Proxy => ("PWATRNY", "power of attorney"),
    }
}

fn smart_permissions(a: Ability) -> &'static str {
    match a {
        // Relays hold ciphertext only: no FHIR permission at all; shown for completeness.
        Ability::Relay => "",
        Ability::Read => "rs",
        Ability::Append => "crus",
        Ability::Admin => "cruds",
    }
}

fn scope_strings(s: &Scope) -> Vec<String> {
    let perms = smart_permissions(s.ability);
    if perms.is_empty() {
        return Vec::new();
    }
    let label = match s.label {
        None => String::new(),
        Some(l) => match sensitivity_code(l) {
            None => "?_security:not=PSY,SEX,SDV,SOC".to_string(),
            Some((code, _)) => format!("?_security={code}"),
        },
    };
    resource_types(s.class)
        .iter()
        .map(|rt| format!("patient/{rt}.{perms}{label}"))
        .collect()
}

/// SMART v2 scope strings for a grant, e.g. `patient/Observation.rs`. A general-label scope is
/// restricted to resources without a sensitivity label; `class:*` has no restriction.
pub fn smart_scopes(grant: &Grant) -> Vec<String> {
    let mut v: Vec<String> = grant.body().scopes.iter().flat_map(scope_strings).collect();
    v.sort();
    v.dedup();
    v
}

/// The grant as a FHIR R4 `Consent` (status `active`, or `inactive` when `active` is false).
pub fn consent(grant: &Grant, active: bool) -> Value {
    let b = grant.body();
    let (pcode, pdisplay) = purpose_code(b.purpose);
    let provisions: Vec<Value> = b
        .scopes
        .iter()
        .map(|s| {
            let mut p = json!({
                "type": "permit",
                "action": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                    "code": if s.ability >= Ability::Append { "collect" } else { "access" },
                }]}],
                "class": resource_types(s.class).iter().map(|rt| json!({
                    "system": "http://hl7.org/fhir/resource-types", "code": rt
                })).collect::<Vec<_>>(),
                "code": [{"coding": [{
                    "system": "https://hearth.example/section",
                    "code": s.pattern().to_string(),
                }], "text": format!("{} ({})", s.pattern(), s.ability.as_str())}],
            });
            if let Some(l) = s.label
                && let Some((code, display)) = sensitivity_code(l)
            {
                p["securityLabel"] = json!([{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": code, "display": display
                }]);
            }
            p
        })
        .collect();
    let provision = json!({
        "type": "permit",
        "period": {"start": b.not_before.to_rfc3339(), "end": b.expires.to_rfc3339()},
        "actor": [{
            "role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP", "display": "information recipient"
            }]},
            "reference": {"identifier": {"system": "urn:hearth:peer", "value": b.audience.to_string()}}
        }],
        "purpose": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": pcode, "display": pdisplay
        }],
        "provision": provisions,
    });
    json!({
        "resourceType": "Consent",
        "id": grant.id().to_string(),
        "identifier": [{"system": "urn:hearth:grant", "value": grant.id().to_string()}],
        "status": if active { "active" } else { "inactive" },
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy", "display": "Privacy Consent"
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": "urn:hearth:record", "value": b.record.to_string()}},
        "dateTime": b.not_before.to_rfc3339(),
        "performer": [{"identifier": {"system": "urn:hearth:peer", "value": b.issuer.to_string()}}],
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN", "display": "opt-in"
        }]},
        "provision": provision,
    })
}
