//! The audit log as `AuditEvent`s: each kind of action, the purpose codes, names verified or
//! not, the chain, and ids and full URLs stable across exports.

use super::*;
use crate::fhir::{ExportInput, ExportOptions, export_bundle};
use crate::grant::{GrantId, Purpose};
use crate::ids::RecordId;
use crate::keys::{Identity, Role};
use crate::test_utils::{TEST_NOW, TestRng};

const RECORD: RecordId = RecordId([7; 32]);
const PATIENT: &str = "urn:uuid:00000000-0000-4000-8000-000000000001";

fn who(seed: u64, role: Role) -> Identity {
    Identity::generate(role, format!("n{seed}"), &mut TestRng::new(seed)).0
}

fn authority(purpose: Purpose) -> Option<Authority> {
    Some(Authority {
        grant: GrantId(serde_bytes::ByteArray::new([9; 32])),
        purpose,
    })
}

fn at(section: u8, epoch: u32) -> SectionAt {
    SectionAt {
        section: SectionId([section; 16]),
        epoch,
    }
}

/// `actions` signed in order by `writer`, one millisecond apart.
fn signed(writer: &Identity, actions: Vec<Action>) -> Vec<SignedEvent> {
    let mut prev = None;
    let mut out = Vec::new();
    for (i, a) in actions.into_iter().enumerate() {
        let ev = SignedEvent::sign(
            writer,
            RECORD,
            prev,
            TEST_NOW.saturating_add_millis(i as i64),
            a,
        )
        .unwrap();
        prev = Some((ev.event().seq, ev.hash()));
        out.push(ev);
    }
    out
}

struct World {
    phone: Identity,
    gp: Identity,
    names: AuditNames,
}

fn world() -> World {
    let phone = who(1, Role::Patient);
    let gp = who(2, Role::Professional);
    let mut names = AuditNames::default();
    names.peers.insert(
        phone.peer(),
        PeerName {
            display: "the patient's device \"phone\"".into(),
            verified: true,
        },
    );
    names.peers.insert(
        gp.peer(),
        PeerName {
            display: "Dr A. Shah (GP, Riverside Practice, verified)".into(),
            verified: true,
        },
    );
    names.sections.insert(SectionId([1; 16]), "notes".into());
    names
        .sections
        .insert(SectionId([2; 16]), "medications".into());
    World { phone, gp, names }
}

fn served(to: PeerKey, reported: Option<u64>, purpose: Purpose) -> Action {
    Action::Served {
        to,
        sections: vec![at(1, 0), at(2, 3)],
        bundles: 5,
        authority: authority(purpose),
        reported,
        emergency: None,
        pushed: false,
    }
}

/// Two receipts by the patient's phone of sessions served to the GP.
fn two_receipts(w: &World) -> Vec<SignedEvent> {
    signed(
        &w.phone,
        vec![
            served(w.gp.peer(), Some(0), Purpose::DirectCare),
            served(w.gp.peer(), Some(1), Purpose::DirectCare),
        ],
    )
}

/// The one chain extension `name`.
fn chain<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    let ext = r["extension"].as_array().unwrap();
    assert!(ext.iter().all(|x| {
        x["url"]
            .as_str()
            .unwrap()
            .starts_with(AUDIT_CHAIN_EXTENSION)
    }));
    let url = format!("{AUDIT_CHAIN_EXTENSION}{name}");
    let mut found = ext.iter().filter(|x| x["url"] == url.as_str());
    let one = found.next();
    assert!(found.next().is_none());
    one
}

fn section_entities(r: &Value) -> Vec<(String, String, String)> {
    r["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"]["identifier"]["system"] == HEARTH_SECTION_SYSTEM)
        .map(|e| {
            assert_eq!(e["detail"][0]["type"], "epoch");
            (
                e["what"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                e["what"]["display"].as_str().unwrap().to_owned(),
                e["detail"][0]["valueString"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_receipt_is_an_export_the_receiver_requested_from_the_serving_device() {
    let w = world();
    let evs = signed(
        &w.phone,
        vec![served(w.gp.peer(), Some(4), Purpose::DirectCare)],
    );
    let x = AuditEvents::new(evs.clone(), w.names.clone());
    let r = &x.audit_events(PATIENT, TEST_NOW)[0];
    assert_eq!(r["resourceType"], "AuditEvent");
    assert_eq!(r["type"]["system"], DCM);
    assert_eq!(r["type"]["code"], "110106");
    assert_eq!(r["type"]["display"], "Export");
    assert_eq!(r["subtype"][0]["code"], "served");
    assert_eq!(r["action"], "R");
    assert_eq!(r["outcome"], "0");
    assert_eq!(r["recorded"], TEST_NOW.to_rfc3339());
    let agents = r["agent"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    let (receiver, server) = (&agents[0], &agents[1]);
    assert_eq!(receiver["requestor"], true);
    assert_eq!(receiver["type"]["coding"][0]["code"], "110152");
    assert_eq!(
        receiver["who"]["identifier"]["value"],
        w.gp.peer().to_string()
    );
    assert_eq!(receiver["who"]["identifier"]["system"], HEARTH_PEER_SYSTEM);
    assert_eq!(
        receiver["who"]["display"],
        "Dr A. Shah (GP, Riverside Practice, verified)"
    );
    assert_eq!(
        receiver["policy"][0],
        format!(
            "urn:hearth:grant:{}",
            GrantId(serde_bytes::ByteArray::new([9; 32]))
        )
    );
    assert_eq!(server["requestor"], false);
    assert_eq!(server["type"]["coding"][0]["code"], "110153");
    assert_eq!(
        server["who"]["identifier"]["value"],
        w.phone.peer().to_string()
    );
    assert!(server.get("policy").is_none());
    // The observer is the writer: the serving device.
    assert_eq!(
        r["source"]["observer"]["identifier"]["value"],
        w.phone.peer().to_string()
    );
    // The patient first, then each section with its epoch.
    assert_eq!(r["entity"][0]["what"]["reference"], PATIENT);
    assert_eq!(r["entity"][0]["role"]["code"], "1");
    assert_eq!(r["entity"][0]["detail"][0]["type"], "bundles");
    assert_eq!(r["entity"][0]["detail"][0]["valueString"], "5");
    assert_eq!(
        section_entities(r),
        vec![
            (SectionId([1; 16]).to_string(), "notes".into(), "0".into()),
            (
                SectionId([2; 16]).to_string(),
                "medications".into(),
                "3".into()
            ),
        ]
    );
    assert_eq!(chain(r, "reported-head").unwrap()["valueUnsignedInt"], 4);
    // A receiver that reported nothing has no reported head.
    let silent = signed(
        &w.phone,
        vec![served(w.gp.peer(), None, Purpose::DirectCare)],
    );
    let r = &AuditEvents::new(silent, w.names).audit_events(PATIENT, TEST_NOW)[0];
    assert!(chain(r, "reported-head").is_none());
}

#[test]
fn a_reported_read_is_a_patient_record_read_by_its_writer() {
    let w = world();
    let evs = signed(
        &w.gp,
        vec![Action::Read {
            sections: vec![at(2, 1)],
            authority: authority(Purpose::DirectCare),
        }],
    );
    let r = &AuditEvents::new(evs, w.names).audit_events(PATIENT, TEST_NOW)[0];
    assert_eq!(r["type"]["code"], "110110");
    assert_eq!(r["type"]["display"], "Patient Record");
    assert_eq!(r["subtype"][0]["code"], "read");
    assert_eq!(r["action"], "R");
    let agents = r["agent"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["requestor"], true);
    assert_eq!(agents[0]["type"]["coding"][0]["code"], "IRCP");
    assert_eq!(
        agents[0]["who"]["identifier"]["value"],
        w.gp.peer().to_string()
    );
    assert_eq!(
        r["source"]["observer"]["identifier"]["value"],
        w.gp.peer().to_string()
    );
    assert_eq!(
        section_entities(r),
        vec![(
            SectionId([2; 16]).to_string(),
            "medications".into(),
            "1".into()
        )]
    );
    assert!(r["entity"][0].get("detail").is_none());
}

#[test]
fn a_reported_write_creates_or_updates_as_the_entries_are_new_or_new_versions() {
    let mut w = world();
    let (new, corrected) = (EntryId([1; 16]), EntryId([2; 16]));
    let wrote = |entries: Vec<EntryId>| Action::Wrote {
        section: at(1, 2),
        entries,
        authority: authority(Purpose::DirectCare),
    };
    w.names.new_versions.insert(corrected);
    let evs = signed(
        &w.gp,
        vec![
            wrote(vec![new]),
            wrote(vec![corrected]),
            wrote(vec![new, corrected]),
        ],
    );
    let out = AuditEvents::new(evs, w.names).audit_events(PATIENT, TEST_NOW);
    let actions: Vec<&str> = out.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["C", "U", "C"]);
    for r in &out {
        assert_eq!(r["type"]["code"], "110110");
        assert_eq!(r["subtype"][0]["code"], "wrote");
        assert_eq!(r["agent"][0]["type"]["coding"][0]["code"], "AUT");
        assert_eq!(r["agent"][0]["requestor"], true);
        assert_eq!(section_entities(r)[0].1, "notes");
    }
    let entries: Vec<&Value> = out[2]["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"]["identifier"]["system"] == HEARTH_ENTRY_SYSTEM)
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["what"]["identifier"]["value"], new.to_string());
    assert_eq!(entries[0]["role"]["code"], "4");
}

#[test]
fn each_purpose_has_its_v3_act_reason_and_hearth_code() {
    let w = world();
    let cases = [
        (Purpose::DirectCare, "TREAT", "direct-care"),
        (Purpose::SocialCare, "TREAT", "social-care"),
        (Purpose::Emergency, "ETREAT", "emergency"),
        (Purpose::Research, "HRESCH", "research"),
        (Purpose::Planning, "HOPERAT", "planning"),
    ];
    let evs = signed(
        &w.phone,
        cases
            .iter()
            .map(|(p, _, _)| served(w.gp.peer(), Some(0), *p))
            .collect(),
    );
    let out = AuditEvents::new(evs, w.names.clone()).audit_events(PATIENT, TEST_NOW);
    for (r, (p, v3, hearth)) in out.iter().zip(cases) {
        let c = &r["purposeOfEvent"][0];
        assert_eq!(c["coding"][0]["system"], ACT_REASON);
        assert_eq!(c["coding"][0]["code"], v3, "{p:?}");
        assert_eq!(c["coding"][1]["system"], HEARTH_PURPOSE_SYSTEM);
        assert_eq!(c["coding"][1]["code"], hearth);
        assert_eq!(c["text"], p.words());
    }
    // Without an authority (one of the patient's devices), no purpose and no policy.
    let own = signed(
        &w.phone,
        vec![Action::Served {
            to: w.gp.peer(),
            sections: vec![at(1, 0)],
            bundles: 1,
            authority: None,
            reported: None,
            emergency: None,
            pushed: false,
        }],
    );
    let r = &AuditEvents::new(own, w.names).audit_events(PATIENT, TEST_NOW)[0];
    assert!(r.get("purposeOfEvent").is_none());
    assert!(r["agent"][0].get("policy").is_none());
}

#[test]
fn names_say_whether_they_are_verified_and_unknown_ones_are_not() {
    let mut w = world();
    let claimed = who(3, Role::Professional);
    let stranger = who(4, Role::Professional);
    w.names.peers.insert(
        claimed.peer(),
        PeerName {
            display: "\"Dr B\" (name not verified)".into(),
            verified: false,
        },
    );
    let evs = signed(
        &w.phone,
        vec![
            served(w.gp.peer(), Some(0), Purpose::DirectCare),
            served(claimed.peer(), Some(0), Purpose::DirectCare),
            served(stranger.peer(), Some(0), Purpose::DirectCare),
        ],
    );
    let out = AuditEvents::new(evs, w.names).audit_events(PATIENT, TEST_NOW);
    let receiver = |r: &Value| {
        let who = &r["agent"][0]["who"];
        assert_eq!(who["extension"][0]["url"], NAME_VERIFIED_EXTENSION);
        (
            who["display"].as_str().unwrap().to_owned(),
            who["extension"][0]["valueBoolean"].as_bool().unwrap(),
        )
    };
    assert_eq!(
        receiver(&out[0]),
        (
            "Dr A. Shah (GP, Riverside Practice, verified)".to_owned(),
            true
        )
    );
    assert_eq!(
        receiver(&out[1]),
        ("\"Dr B\" (name not verified)".to_owned(), false)
    );
    assert_eq!(
        receiver(&out[2]),
        (format!("an unverified device ({})", stranger.peer()), false)
    );
    // The observer's reference says so too.
    assert_eq!(
        out[0]["source"]["observer"]["extension"][0]["valueBoolean"],
        true
    );
}

#[test]
fn a_section_not_in_the_directory_is_named_as_such() {
    let w = world();
    let evs = signed(
        &w.gp,
        vec![Action::Read {
            sections: vec![at(9, 0)],
            authority: None,
        }],
    );
    let r = &AuditEvents::new(evs, w.names).audit_events(PATIENT, TEST_NOW)[0];
    assert_eq!(
        section_entities(r)[0].1,
        "a section not in the record's directory"
    );
}

#[test]
fn the_chain_can_be_traced_and_each_event_checked_from_the_export() {
    let w = world();
    let evs = two_receipts(&w);
    let out = AuditEvents::new(evs.clone(), w.names).audit_events(PATIENT, TEST_NOW);
    for (i, (r, ev)) in out.iter().zip(&evs).enumerate() {
        assert_eq!(chain(r, "seq").unwrap()["valueUnsignedInt"], i + 1);
        let hash = HEXLOWER.encode(&ev.hash());
        assert_eq!(chain(r, "hash").unwrap()["valueString"], hash.as_str());
        assert_eq!(r["id"], hash.as_str());
        let signed = chain(r, "signed").unwrap()["valueBase64Binary"]
            .as_str()
            .unwrap();
        let back = SignedEvent::open(&BASE64.decode(signed.as_bytes()).unwrap()).unwrap();
        assert_eq!(&back, ev);
    }
    assert_eq!(
        chain(&out[0], "previous").unwrap()["valueString"],
        HEXLOWER.encode(&[0; 32])
    );
    assert_eq!(
        chain(&out[1], "previous").unwrap()["valueString"],
        chain(&out[0], "hash").unwrap()["valueString"]
    );
}

#[test]
fn ids_and_full_urls_are_stable_across_exports_and_names() {
    let w = world();
    let evs = two_receipts(&w);
    let first = AuditEvents::new(evs.clone(), w.names.clone());
    // Later the GP's name is no longer verified, and the events come in another order.
    let mut names = w.names.clone();
    names.peers.insert(
        w.gp.peer(),
        PeerName {
            display: "\"Dr A. Shah\" (name not verified)".into(),
            verified: false,
        },
    );
    let later = AuditEvents::new(evs.iter().rev().cloned().collect(), names);
    let a = first.audit_events(PATIENT, TEST_NOW);
    let b = later.audit_events(PATIENT, TEST_NOW.saturating_add_millis(86_400_000));
    assert_ne!(a, b);
    let urls = |x: &AuditEvents, rs: &[Value]| -> Vec<String> {
        rs.iter().map(|r| x.full_url(r).unwrap()).collect()
    };
    let ids = |rs: &[Value]| -> Vec<Value> { rs.iter().map(|r| r["id"].clone()).collect() };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(urls(&first, &a), urls(&later, &b));
    assert_ne!(urls(&first, &a)[0], urls(&first, &a)[1]);
    assert!(urls(&first, &a)[0].starts_with("urn:uuid:"));
    // An event given twice is written once.
    let twice = AuditEvents::new([evs.clone(), evs].concat(), w.names);
    assert_eq!(twice.len(), 2);
}

#[test]
fn a_time_no_instant_can_hold_is_kept_beside_the_export_time() {
    let w = world();
    let far = Timestamp::from_millis(i64::MAX / 2);
    let ev = SignedEvent::sign(
        &w.gp,
        RECORD,
        None,
        far,
        Action::Read {
            sections: vec![at(1, 0)],
            authority: None,
        },
    )
    .unwrap();
    let r = &AuditEvents::new(vec![ev], w.names).audit_events(PATIENT, TEST_NOW)[0];
    assert_eq!(r["recorded"], TEST_NOW.to_rfc3339());
    assert_eq!(
        chain(r, "time-ms").unwrap()["valueString"],
        far.as_millis().to_string()
    );
    let first = Timestamp::from_millis(FIRST_INSTANT_MS);
    assert!(instant(first).unwrap().starts_with("0001-01-01T00:00:00"));
    assert!(instant(first.saturating_add_millis(-1)).is_none());
    let last = Timestamp::parse_rfc3339("9999-12-30T00:00:00Z").unwrap();
    assert!(instant(last).unwrap().starts_with("9999-12-30T00:00:00"));
    assert!(instant(last.saturating_add_millis(2 * 86_400_000)).is_none());
}

#[test]
fn in_an_export_each_event_has_its_stable_full_url_and_refers_to_the_patient() {
    let w = world();
    let evs = signed(
        &w.phone,
        vec![served(w.gp.peer(), Some(0), Purpose::DirectCare)],
    );
    let x = AuditEvents::new(evs, w.names);
    let input = ExportInput {
        record: RECORD,
        sections: &[],
        now: TEST_NOW,
    };
    let (bundle, report) = export_bundle(&input, ExportOptions::default(), &[&x]);
    assert_eq!(report.resources.get("AuditEvent"), Some(&1));
    let entries = bundle["entry"].as_array().unwrap();
    let patient = entries[0]["fullUrl"].as_str().unwrap();
    let audit = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "AuditEvent")
        .unwrap();
    assert_eq!(
        audit["fullUrl"].as_str().unwrap(),
        x.full_url(&audit["resource"]).unwrap()
    );
    assert_eq!(audit["resource"]["entity"][0]["what"]["reference"], patient);
}

#[test]
fn import_skips_the_audit_events_of_an_export_but_not_another_systems() {
    let w = world();
    let evs = signed(
        &w.gp,
        vec![served(w.phone.peer(), None, Purpose::DirectCare)],
    );
    let ours = AuditEvents::new(evs, w.names).audit_events(PATIENT, TEST_NOW);
    assert!(is_exported_audit_event(ours[0].as_object().unwrap()));
    let mut theirs = ours[0].clone();
    theirs.as_object_mut().unwrap().remove("extension");
    assert!(!is_exported_audit_event(theirs.as_object().unwrap()));
}
