//! The patient's disputes of exported entries, as one `Communication` each: from the patient
//! (`sender`, `subject`: the exported Patient), `about` the disputed entry's resource, the
//! reason as its `payload`, `sent` when the patient's device wrote it. Import skips them (every
//! identifier `urn:hearth:dispute`): disputes are written with `hearth record dispute`.

use super::super::HEARTH_DISPUTE_SYSTEM;
use super::source::{EntryOut, Res};
use super::uuid_from;
use crate::record::DisputeView;
use serde_json::json;

/// What the `topic` of a dispute's `Communication` says.
const TOPIC: &str = "Entry disputed by the patient";

/// Dispute `d` of the entry exported at `about`, as a `Communication` from the patient exported
/// at `patient`.
pub(super) fn dispute_resource<'a>(d: &DisputeView, about: &str, patient: &str) -> EntryOut<'a> {
    let id = d.id.to_string();
    let resource = json!({
        "resourceType": "Communication",
        "id": id,
        "identifier": [{"system": HEARTH_DISPUTE_SYSTEM, "value": id}],
        "status": "completed",
        "topic": {"text": TOPIC},
        "subject": {"reference": patient},
        "about": [{"reference": about}],
        "sent": d.disputed_at.to_rfc3339(),
        "sender": {"reference": patient},
        "payload": [{"contentString": d.reason}],
    });
    EntryOut {
        full_url: uuid_from(&[b"dispute", &d.id.0]),
        resource: Res::Value(resource),
    }
}
