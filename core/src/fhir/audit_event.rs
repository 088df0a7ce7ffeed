//! The patient's audit log as FHIR R4 `AuditEvent` resources in an export: an
//! [`ExportExtension`].
//!
//! Each authentic event of the log ([`crate::audit::Verified::events`]) becomes one `AuditEvent`:
//!
//! - an access receipt ([`Action::Served`]: the patient's device, a relay or another grantee's
//!   node sent record data to a peer) is a DICOM *Export* (`110106`), action `R`, as DICOM
//!   PS3.15 A.5.3.4 defines a data export:
//!   the receiver is the requesting agent (role *Destination*), the serving device the second
//!   agent (role *Source*);
//! - a reported read ([`Action::Read`]) is a DICOM *Patient Record* event (`110110`), action
//!   `R`; a reported write ([`Action::Wrote`]) the same with action `U` when every entry written
//!   is known to be a new version of an earlier one (a correction, a retraction), else `C`;
//! - a proxy's answer to an access request ([`Action::Approved`], [`Action::Denied`]) is a
//!   DICOM *Security Alert* (`110113`), action `E`, the proxy the responsible party, the request
//!   (and the grant issued) its entities.
//!
//! `recorded` is the event's own time: the serving device's clock for a receipt, the writer's
//! clock (a claim) for a report. `purposeOfEvent` is the purpose of the grant the peer held or
//! presented, as an HL7 v3 `ActReason` code ([`crate::grant::interop::purpose_code`], the code
//! the grants' `Consent`s carry) with Hearth's own purpose beside it ([`HEARTH_PURPOSE_SYSTEM`]).
//! The grant itself is the agent's `policy` (`urn:hearth:grant:<id>`, the id of the `Consent`
//! the grant exports as). The patient is an entity referring to the exported `Patient`; each
//! section is an entity naming it, with its key epoch in `detail`; each entry written an entity
//! with its id.
//!
//! Names come from the node ([`AuditNames`]): core has no store to look people up in. Each
//! name is written as given, and whether the node verified it is said in the extension
//! [`NAME_VERIFIED_EXTENSION`] on the reference, so that a reader never takes a claim for a fact.
//!
//! Every `AuditEvent` carries the extensions [`AUDIT_CHAIN_EXTENSION`]`…`: the writer's sequence
//! number, the event's hash, the hash of the writer's event before it and the signed event
//! itself, so anyone holding the export can check each event's signature against its writer's
//! key (the peer id) and trace every writer's chain. Its `id` is the event's hash and its
//! `fullUrl` derives from it: the same event exports alike every time.
//!
//! Problems the log's check finds (missing events, peers not reporting) are no events and are not
//! written here; the caller reports them beside the export. Import skips these `AuditEvent`s
//! ([`is_exported_audit_event`]): the log is made by its writers, not from a file.

use super::export::{ExportExtension, uuid_from};
use super::{HEARTH_ENTRY_SYSTEM, HEARTH_PEER_SYSTEM};
use crate::audit::{Action, Authority, SectionAt, SignedEvent};
use crate::grant::interop::purpose_code;
use crate::ids::{EntryId, PeerKey, SectionId};
use crate::time::Timestamp;
use data_encoding::{BASE64, HEXLOWER};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The extensions on an exported `AuditEvent` that place it in its writer's chain are named
/// `urn:hearth:audit-chain:<name>`: `seq` (the writer's sequence number), `hash` and `previous`
/// (hex SHA-256 link hashes, as [`SignedEvent::hash`]), `signed` (the signed event, base64),
/// on a receipt `reported-head` (the head of its own audit log the receiver reported; absent
/// when it reported nothing), and `time-ms` (see [`AuditEvents::audit_event`]).
pub const AUDIT_CHAIN_EXTENSION: &str = "urn:hearth:audit-chain:";

/// The extension on an agent's or observer's reference saying whether its name is verified
/// (`valueBoolean`).
pub const NAME_VERIFIED_EXTENSION: &str = "urn:hearth:name-verified";

/// The code system of Hearth's own kind of audit event, in `AuditEvent.subtype`.
pub const HEARTH_AUDIT_ACTION_SYSTEM: &str = "urn:hearth:audit-action";

/// The code system of Hearth's purposes (`direct-care`, `social-care`, …), beside the HL7 v3
/// code in `purposeOfEvent`.
pub const HEARTH_PURPOSE_SYSTEM: &str = "urn:hearth:purpose";

/// The identifier system of a section id.
pub const HEARTH_SECTION_SYSTEM: &str = "urn:hearth:section";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// How the exporting node names a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName {
    /// The name as the node shows it, saying itself what kind of name it is (e.g. `Dr A. Shah
    /// (GP, Riverside Practice, verified)`, `"Dr B" (name not verified)`).
    pub display: String,
    /// Whether the node verified it (an attested professional, one of the patient's devices).
    pub verified: bool,
}

/// What the exporting node knows to name the people, sections and entries of the log.
#[derive(Debug, Clone, Default)]
pub struct AuditNames {
    /// Each peer's name. A peer not here is written as an unverified device.
    pub peers: BTreeMap<PeerKey, PeerName>,
    /// Each section's name. A section not here is written as one not in the directory.
    pub sections: BTreeMap<SectionId, String>,
    /// Entries known to be new versions of an earlier entry (a correction, or one marked
    /// entered in error): their writes are updates.
    pub new_versions: BTreeSet<EntryId>,
}

impl AuditNames {
    fn peer(&self, peer: &PeerKey) -> PeerName {
        self.peers
            .get(peer)
            .filter(|n| !n.display.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| PeerName {
                display: format!("an unverified device ({peer})"),
                verified: false,
            })
    }

    fn section(&self, section: &SectionId) -> &str {
        self.sections
            .get(section)
            .filter(|n| !n.trim().is_empty())
            .map_or("a section not in the record's directory", String::as_str)
    }
}

/// The audit log to export as `AuditEvent` resources, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditEvents {
    events: Vec<SignedEvent>,
    names: AuditNames,
}

impl AuditEvents {
    /// The authentic events of a checked log ([`crate::audit::Verified::events`]) and their
    /// names. Events are written oldest first (by time, then writer and number); an event given
    /// twice is written once.
    pub fn new(mut events: Vec<SignedEvent>, names: AuditNames) -> Self {
        events.sort_by_key(|e| (e.event().at, e.event().writer, e.event().seq, e.hash()));
        events.dedup_by_key(|e| e.hash());
        AuditEvents { events, names }
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Every event as an `AuditEvent`, its patient `patient` (a reference), exported at `now`.
    pub fn audit_events(&self, patient: &str, now: Timestamp) -> Vec<Value> {
        self.events
            .iter()
            .map(|e| self.audit_event(e, patient, now))
            .collect()
    }

    /// One event as an `AuditEvent`. `now` stands in for `recorded` only when the event's own
    /// time cannot be written as a FHIR `instant` (that time is then kept in the extension
    /// [`AUDIT_CHAIN_EXTENSION`]`time-ms`, milliseconds since 1970).
    pub fn audit_event(&self, ev: &SignedEvent, patient: &str, now: Timestamp) -> Value {
        let e = ev.event();
        let observer = self.reference(&e.writer);
        let mut chain = vec![
            count_extension("seq", e.seq),
            chain_extension("hash", "valueString", HEXLOWER.encode(&ev.hash())),
            chain_extension(
                "previous",
                "valueString",
                HEXLOWER.encode(e.prev.as_slice()),
            ),
            chain_extension("signed", "valueBase64Binary", BASE64.encode(ev.bytes())),
        ];
        let mut patient_entity = json!({
            "what": {"reference": patient},
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        });
        let mut entities = Vec::new();
        let (kind, action, agents, authority) = match &e.action {
            Action::Served {
                to,
                sections,
                bundles,
                authority,
                reported,
                emergency,
                ..
            } => {
                if let Some(h) = reported {
                    chain.push(count_extension("reported-head", *h));
                }
                let mut detail =
                    vec![json!({"type": "bundles", "valueString": bundles.to_string()})];
                if let Some(m) = emergency {
                    // Break-glass: the reason the professional signed, and when the use ends.
                    detail.push(json!({"type": "emergency-reason", "valueString": m.reason}));
                    if let Some(until) = instant(m.until) {
                        detail.push(json!({"type": "emergency-until", "valueString": until}));
                    }
                }
                patient_entity["detail"] = json!(detail);
                entities.extend(self.sections(sections));
                let receiver = self.agent(to, DCM, "110152", "Destination Role ID", true);
                let server = self.agent(&e.writer, DCM, "110153", "Source Role ID", false);
                (Kind::Served, "R", vec![receiver, server], authority)
            }
            Action::Read {
                sections,
                authority,
            } => {
                entities.extend(self.sections(sections));
                let reader = self.agent(
                    &e.writer,
                    PARTICIPATION,
                    "IRCP",
                    "information recipient",
                    true,
                );
                (Kind::Read, "R", vec![reader], authority)
            }
            Action::Wrote {
                section,
                entries,
                authority,
            } => {
                entities.extend(self.sections(std::slice::from_ref(section)));
                entities.extend(entries.iter().map(|id| {
                    json!({
                        "what": {"identifier": {"system": HEARTH_ENTRY_SYSTEM, "value": id.to_string()}},
                        "type": coding(ENTITY_TYPE, "2", "System Object"),
                        "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
                    })
                }));
                let updates = !entries.is_empty()
                    && entries
                        .iter()
                        .all(|id| self.names.new_versions.contains(id));
                let author = self.agent(&e.writer, PARTICIPATION, "AUT", "author", true);
                (
                    Kind::Wrote,
                    if updates { "U" } else { "C" },
                    vec![author],
                    authority,
                )
            }
            Action::Approved {
                request,
                grant,
                authority,
            } => {
                entities.extend(request_entity(request));
                // The grant the proxy issued, by the id it exports as a `Consent` under.
                if let Some(g) = crate::grant::chain_from_token(grant)
                    .ok()
                    .and_then(|c| c.last().map(crate::grant::Grant::id))
                {
                    entities.push(json!({
                        "what": {"identifier": {"system": "urn:hearth:grant", "value": g.to_string()}},
                        "type": coding(ENTITY_TYPE, "2", "System Object"),
                        "role": coding(OBJECT_ROLE, "13", "Security Resource"),
                    }));
                }
                let proxy = self.agent(&e.writer, PARTICIPATION, "RESP", "responsible party", true);
                (Kind::Approved, "E", vec![proxy], authority)
            }
            Action::Denied {
                request, authority, ..
            } => {
                entities.extend(request_entity(request));
                let proxy = self.agent(&e.writer, PARTICIPATION, "RESP", "responsible party", true);
                (Kind::Denied, "E", vec![proxy], authority)
            }
        };
        entities.insert(0, patient_entity);
        let agents = agents
            .into_iter()
            .enumerate()
            .map(|(i, mut a)| {
                // The grant is the requestor's authority (the first agent).
                if i == 0
                    && let Some(Authority { grant, .. }) = authority
                {
                    a["policy"] = json!([format!("urn:hearth:grant:{grant}")]);
                }
                a
            })
            .collect::<Vec<_>>();
        let (code, display) = kind.event_type();
        let mut r = Map::new();
        r.insert("resourceType".into(), json!("AuditEvent"));
        r.insert("id".into(), json!(HEXLOWER.encode(&ev.hash())));
        r.insert(
            "type".into(),
            json!({"system": DCM, "code": code, "display": display}),
        );
        r.insert(
            "subtype".into(),
            json!([{"system": HEARTH_AUDIT_ACTION_SYSTEM, "code": kind.code(), "display": kind.display()}]),
        );
        r.insert("action".into(), json!(action));
        let recorded = instant(e.at).unwrap_or_else(|| {
            // `recorded` is required: the time of the export stands in, and the writer's own
            // time is kept as it is.
            chain.push(chain_extension(
                "time-ms",
                "valueString",
                e.at.as_millis().to_string(),
            ));
            now.to_rfc3339()
        });
        r.insert("extension".into(), Value::Array(chain));
        r.insert("recorded".into(), json!(recorded));
        r.insert("outcome".into(), json!("0"));
        if let Some(a) = authority {
            let (code, display) = purpose_code(a.purpose);
            r.insert(
                "purposeOfEvent".into(),
                json!([{
                    "coding": [
                        {"system": ACT_REASON, "code": code, "display": display},
                        {"system": HEARTH_PURPOSE_SYSTEM, "code": a.purpose.as_str(), "display": a.purpose.words()},
                    ],
                    "text": a.purpose.words(),
                }]),
            );
        }
        r.insert("agent".into(), Value::Array(agents));
        r.insert("source".into(), json!({"observer": observer}));
        r.insert("entity".into(), Value::Array(entities));
        Value::Object(r)
    }

    /// A reference to `peer`: its peer id, its name and whether the name is verified.
    fn reference(&self, peer: &PeerKey) -> Value {
        let name = self.names.peer(peer);
        json!({
            "extension": [{"url": NAME_VERIFIED_EXTENSION, "valueBoolean": name.verified}],
            "identifier": {"system": HEARTH_PEER_SYSTEM, "value": peer.to_string()},
            "display": name.display,
        })
    }

    fn agent(
        &self,
        peer: &PeerKey,
        system: &str,
        code: &str,
        display: &str,
        requestor: bool,
    ) -> Value {
        json!({
            "type": {"coding": [{"system": system, "code": code, "display": display}]},
            "who": self.reference(peer),
            "requestor": requestor,
        })
    }

    /// Each section as an entity: its id and name, its key epoch in `detail`.
    fn sections<'a>(&'a self, list: &'a [SectionAt]) -> impl Iterator<Item = Value> + 'a {
        list.iter().map(|s| {
            json!({
                "what": {
                    "identifier": {"system": HEARTH_SECTION_SYSTEM, "value": s.section.to_string()},
                    "display": self.names.section(&s.section),
                },
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "detail": [{"type": "epoch", "valueString": s.epoch.to_string()}],
            })
        })
    }
}

/// The kinds of event, as exported.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Served,
    Read,
    Wrote,
    Approved,
    Denied,
}

/// An access request a proxy answered, as an entity naming it by its id.
fn request_entity(token: &str) -> Option<Value> {
    let req = crate::grant::request::AccessRequest::from_token(token).ok()?;
    Some(json!({
        "what": {"identifier": {"system": "urn:hearth:request", "value": req.short_id('q')}},
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "13", "Security Resource"),
    }))
}

impl Kind {
    /// The DICOM audit event type.
    fn event_type(self) -> (&'static str, &'static str) {
        match self {
            Kind::Served => ("110106", "Export"),
            Kind::Read | Kind::Wrote => ("110110", "Patient Record"),
            Kind::Approved | Kind::Denied => ("110113", "Security Alert"),
        }
    }

    fn code(self) -> &'static str {
        match self {
            Kind::Served => "served",
            Kind::Read => "read",
            Kind::Wrote => "wrote",
            Kind::Approved => "proxy-approved",
            Kind::Denied => "proxy-denied",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Kind::Served => "record data served to a peer (access receipt)",
            Kind::Read => "record read at the writer's node (reported)",
            Kind::Wrote => "entries written at the writer's node (reported)",
            Kind::Approved => "an access request approved by the patient's proxy (reported)",
            Kind::Denied => "an access request denied by the patient's proxy (reported)",
        }
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// The chain extension `name` with `value` of FHIR type `kind` (e.g. `valueString`).
fn chain_extension(name: &str, kind: &str, value: impl Into<Value>) -> Value {
    let mut x = Map::new();
    x.insert(
        "url".into(),
        json!(format!("{AUDIT_CHAIN_EXTENSION}{name}")),
    );
    x.insert(kind.into(), value.into());
    Value::Object(x)
}

/// A count as an `unsignedInt` chain extension; past FHIR's `unsignedInt` (2^31 − 1), as a
/// decimal string.
fn count_extension(name: &str, n: u64) -> Value {
    match i32::try_from(n) {
        Ok(n) => chain_extension(name, "valueUnsignedInt", n),
        Err(_) => chain_extension(name, "valueString", n.to_string()),
    }
}

/// The first millisecond of year 0001, FHIR's first year.
const FIRST_INSTANT_MS: i64 = -62_135_596_800_000;

/// `at` as a FHIR `instant` (with seconds, milliseconds and a zone), or `None` when it cannot
/// be one (a writer's clock, or claim, thousands of years off): before year 0001, or past the
/// last time [`Timestamp::to_rfc3339`] writes (late in year 9999).
fn instant(at: Timestamp) -> Option<String> {
    let text = at.to_rfc3339();
    (at.as_millis() >= FIRST_INSTANT_MS && text.starts_with(|c: char| c.is_ascii_digit()))
        .then_some(text)
}

/// The stable `fullUrl` of an exported `AuditEvent`, from its id (the event's hash).
fn full_url_of(id: &str) -> String {
    uuid_from(&[b"audit-event", id.as_bytes()])
}

impl ExportExtension for AuditEvents {
    fn name(&self) -> &str {
        "audit"
    }

    fn resources(&self, patient: &str, now: Timestamp) -> Vec<Value> {
        self.audit_events(patient, now)
    }

    fn full_url(&self, resource: &Value) -> Option<String> {
        (resource.get("resourceType")? == "AuditEvent")
            .then(|| resource.get("id")?.as_str().map(full_url_of))
            .flatten()
    }
}

/// Whether a resource is an audit event written by a Hearth export: an `AuditEvent` with the
/// extensions [`AUDIT_CHAIN_EXTENSION`]`…`. Import skips it: the audit log lives in the record's audit
/// section, written by its writers, and is not made from a file.
pub(crate) fn is_exported_audit_event(resource: &Map<String, Value>) -> bool {
    resource.get("resourceType").and_then(Value::as_str) == Some("AuditEvent")
        && resource
            .get("extension")
            .and_then(Value::as_array)
            .is_some_and(|x| {
                x.iter()
                    .filter_map(|e| e.get("url").and_then(Value::as_str))
                    .any(|u| u.starts_with(AUDIT_CHAIN_EXTENSION))
            })
}

#[cfg(test)]
mod tests;
