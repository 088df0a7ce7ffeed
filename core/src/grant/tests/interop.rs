//! The SMART scopes and FHIR Consent of a grant.

use super::*;
use crate::grant::interop;

#[test]
fn smart_and_fhir_forms() {
    let mut w = world(3);
    let g = to_gp(&mut w, "notes,observations:mental-health");
    let s = interop::smart_scopes(&g);
    assert!(
        s.contains(&"patient/DocumentReference.rs?_security:not=PSY,SEX,SDV,SOC".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"patient/Observation.rs?_security=PSY".to_string()),
        "{s:?}"
    );
    let c = interop::consent(&g, true);
    assert_eq!(c["resourceType"], "Consent");
    assert_eq!(c["status"], "active");
    assert_eq!(
        c["provision"]["actor"][0]["reference"]["identifier"]["value"],
        w.gp.peer().to_string()
    );
}
