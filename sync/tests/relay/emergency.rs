//! Emergency access while the patient's devices are offline: the relay serves the arranged
//! sections and the keys escrowed to the organisation to a professional whose logged use it
//! accepts at its own clock; the organisation releases the keys to that professional; the
//! relay's receipt reaches the patient, whose node then moves the sections to new keys.

use super::*;
use hearth_core::grant::emergency::{EmergencyBody, EmergencyUse, log_use};
use hearth_core::grant::request::{Credential, attest};
use hearth_core::keywrap::EscrowedKey;
use hearth_core::ledger::{ArrangementItem, HeldEmergency};
use hearth_sync::relay::wire::{Agreement, EmergencyLogRequest};

/// An organisation (a relay-role node that attests its staff), one of its professionals with
/// a credential, and the patient's arrangement with it over medications, escrowed.
struct Emergency {
    org: Node,
    pro: Node,
    credential: Credential,
}

fn arranged(f: &mut Fixture) -> Emergency {
    let org = Node::new(Role::Relay, "Riverside A&E", &mut f.rng);
    let pro = Node::new(Role::Professional, "Dr Amber Ward", &mut f.rng);
    let credential = attest(
        &org.id,
        pro.id.peer(),
        "Dr Amber Ward".into(),
        "A&E consultant".into(),
        "GMC 7654321".into(),
        None,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(30 * DAY),
        Vec::new(),
        &mut f.rng,
    )
    .unwrap();
    let mut rec = f.patient.vault.open_record(&f.patient.id, &f.rid).unwrap();
    rec.arrange_emergency(
        org.id.peer(),
        ArrangementItem {
            scopes: grant::scopes(&"medications".parse().unwrap(), Ability::Read),
            max_duration_ms: 4 * 3_600_000,
            arranged_at: at(5),
            expires: TEST_NOW.saturating_add_millis(60 * DAY),
            org_name: Some("Riverside A&E".into()),
            agreement: Some(ByteArray::new(org.id.agreement_public())),
        },
        at(5),
        &mut f.rng,
    )
    .unwrap();
    Emergency {
        org,
        pro,
        credential,
    }
}

/// `pro`'s use of the arrangement from `start` (minutes) for an hour, and its organisation's
/// log entry for it.
fn use_at(e: &Emergency, rid: RecordId, start: i64) -> (EmergencyUse, HeldEmergency) {
    let u = EmergencyUse::sign(
        EmergencyBody {
            v: 1,
            record: rid,
            holder: e.pro.id.peer(),
            org: e.org.id.peer(),
            reason: "Unconscious on arrival, no family present".into(),
            at: at(start),
            duration_ms: 3_600_000,
        },
        e.pro.id.device_key(),
    )
    .unwrap();
    let logged = log_use(
        &e.org.id,
        &u,
        Some(&e.credential),
        &e.pro.id.peer(),
        at(start),
    )
    .unwrap();
    let held = HeldEmergency {
        token: u.to_token(),
        credential: e.credential.to_token(),
        logged: Some(logged.to_token()),
    };
    (u, held)
}

/// The organisation's answer to `from` asking it to release `wraps` for `u`.
fn release(
    e: &Emergency,
    from: &Node,
    u: &EmergencyUse,
    agreement: Agreement,
    wraps: Vec<hearth_core::record::KeyWrap>,
    now: Timestamp,
) -> StoreResponse {
    let req = StoreRequest {
        agreement: Some(agreement),
        emergency: Some(EmergencyLogRequest {
            token: u.to_token(),
            credential: e.credential.to_token(),
            wraps,
        }),
        ..StoreRequest::new(blind(&u.body().record, &e.org.id.peer()))
    };
    ask(&e.org, &RelayLimits::default(), from, req, now)
}

/// `node`'s first request to `relay` for `rid` at `now`, presenting the emergency use it
/// holds, if any (as `hearth emergency access` does once the relay proved it keeps the
/// record), and the relay's answer at `relay_now`.
fn present(
    node: &Node,
    relay: &Node,
    rid: RecordId,
    now: Timestamp,
    relay_now: Timestamp,
) -> StoreResponse {
    let mut req = node
        .peer()
        .relay_start(rid, relay.id.peer(), now, &mut TestRng::new(5))
        .unwrap();
    // Presented whatever the node's own clock says (as a hostile node would).
    req.claim =
        node.vault
            .held_emergency(&rid)
            .unwrap()
            .map(|h| hearth_sync::protocol::EmergencyClaim {
                token: h.token,
                credential: h.credential,
                logged: h.logged,
            });
    ask(relay, &RelayLimits::default(), node, req, relay_now)
}

#[track_caller]
fn refused_use(node: &Node, relay: &Node, rid: RecordId, now: Timestamp, relay_now: Timestamp) {
    let resp = present(node, relay, rid, now, relay_now);
    assert_eq!(resp.refused.as_deref(), Some(NOTHING_HERE));
    assert!(resp.bundles.is_empty() && resp.wraps.is_empty());
}

fn medications(node: &Node, rid: &RecordId) -> Vec<String> {
    let Ok(mut rec) = node.vault.open_record(&node.id, rid) else {
        return Vec::new();
    };
    rec.show(&name("medications"))
        .map(|v| {
            v.entries
                .iter()
                .map(|e| e.body["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_arranged_use_opens_the_record_through_a_relay_and_ends_in_a_key_move() {
    let mut f = fixture(31);
    let e = arranged(&mut f);
    let limits = RelayLimits::default();
    let rid = f.rid;
    // The patient's node supplies the relay: the arrangement is on the signed list, the keys
    // escrowed to the organisation are among the wraps kept. Then the patient goes offline.
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let org_key = ByteArray::new(e.org.id.agreement_public());
    assert!(f.hosted().wraps.iter().any(|w| w.recipient == org_key));

    // Without a use, the professional is a stranger to the relay.
    refused_use(&e.pro, &f.relay, rid, at(20), at(20));
    // With a use the organisation did not log: the same answer.
    let (u, held) = use_at(&e, rid, 20);
    e.pro
        .vault
        .hold_emergency(
            &rid,
            &HeldEmergency {
                logged: None,
                ..held.clone()
            },
        )
        .unwrap();
    refused_use(&e.pro, &f.relay, rid, at(20), at(20));

    // Before presenting a use, the professional has the relay prove it keeps the record: the
    // patient's relay grant to it. A peer that does not keep it (say, one that announced the
    // record on the relays' network) has nothing to show.
    let proof = |relay: &Node| {
        let mut req = e
            .pro
            .peer()
            .relay_start(rid, relay.id.peer(), at(21), &mut TestRng::new(5))
            .unwrap();
        assert!(req.claim.is_none(), "no use before the proof");
        req.proof_wanted = true;
        ask(relay, &limits, &e.pro, req, at(21))
            .relay_grant
            .is_some_and(|g| {
                hearth_sync::relay::access::relay_grant_proves(&g, &rid, &relay.id.peer(), at(21))
            })
    };
    assert!(proof(&f.relay));
    let pretender = Node::new(Role::Relay, "Pretender", &mut f.rng);
    assert!(!proof(&pretender));
    // Nor does the relay's grant prove anything for another relay.
    let mut req = e
        .pro
        .peer()
        .relay_start(rid, f.relay.id.peer(), at(21), &mut TestRng::new(5))
        .unwrap();
    req.proof_wanted = true;
    let grant_bytes = ask(&f.relay, &limits, &e.pro, req, at(21))
        .relay_grant
        .unwrap();
    assert!(!hearth_sync::relay::access::relay_grant_proves(
        &grant_bytes,
        &rid,
        &pretender.id.peer(),
        at(21)
    ));

    // Logged: the relay serves the arranged section's ciphertext and the escrow wraps, and
    // nothing the arrangement does not cover.
    e.pro.vault.hold_emergency(&rid, &held).unwrap();
    let served = present(&e.pro, &f.relay, rid, at(21), at(21));
    assert_eq!(served.refused, None);
    assert!(!served.bundles.is_empty());
    assert!(!served.wraps.is_empty());
    assert!(served.wraps.iter().all(|w| w.recipient == org_key));
    let meds = f.meds();
    let notes = f.notes();
    assert!(served.wraps.iter().any(|w| w.section == meds));
    assert!(served.wraps.iter().all(|w| w.section != notes));
    for b in &served.bundles {
        let b = Bundle::decode(unpad(b).unwrap()).unwrap();
        assert_ne!(b.header().section, notes, "notes are not arranged");
    }
    // The relay wrote a receipt marked as an emergency, naming the professional.
    let receipt = f.relay.vault.journal_after(&rid, 0, 10).unwrap();
    assert_eq!(receipt.len(), 1);
    let ev = hearth_core::audit::SignedEvent::open(&receipt[0]).unwrap();
    match &ev.event().action {
        hearth_core::audit::Action::Served { to, emergency, .. } => {
            assert_eq!(*to, e.pro.id.peer());
            assert_eq!(emergency.as_ref().unwrap().org, e.org.id.peer());
        }
        other => panic!("not a receipt: {other:?}"),
    }
    // The relay cannot open what it holds: the wraps are to the organisation.
    assert!(
        served
            .wraps
            .iter()
            .all(|w| w.open(f.relay.id.agreement_secret()).is_err())
    );

    // The organisation releases the keys only to its professional, for that logged use.
    let stranger_asks = release(
        &e,
        &f.stranger,
        &u,
        Agreement::of(&f.stranger.id),
        served.wraps.clone(),
        at(22),
    );
    assert!(stranger_asks.released.is_empty());
    assert!(stranger_asks.emergency_refused.is_some());
    // Its professional with another's agreement key gets nothing either.
    let wrong_key = release(
        &e,
        &e.pro,
        &u,
        Agreement::of(&f.stranger.id),
        served.wraps.clone(),
        at(22),
    );
    assert!(wrong_key.released.is_empty());
    // Wraps of another record are left out.
    let other_wraps: Vec<_> = f
        .hosted()
        .wraps
        .into_iter()
        .filter(|w| w.recipient != org_key)
        .collect();
    let others = release(
        &e,
        &e.pro,
        &u,
        Agreement::of(&e.pro.id),
        other_wraps,
        at(22),
    );
    assert!(
        others.released.is_empty(),
        "not addressed to the organisation"
    );
    let released = release(
        &e,
        &e.pro,
        &u,
        Agreement::of(&e.pro.id),
        served.wraps.clone(),
        at(22),
    );
    assert_eq!(released.released.len(), served.wraps.len());
    // The use is logged once at the organisation, however often it was presented.
    assert_eq!(e.org.vault.local_count(&IG_USE_COUNT).unwrap(), 1);
    assert_eq!(e.org.vault.count_local("ig-use/").unwrap(), 1);
    // After the use, nothing is released.
    let late = release(
        &e,
        &e.pro,
        &u,
        Agreement::of(&e.pro.id),
        served.wraps.clone(),
        at(90),
    );
    assert!(late.released.is_empty());

    // The professional keeps the keys and stores what the relay sent: the medications read.
    let kept = e
        .pro
        .vault
        .keep_escrowed_keys(&e.pro.id, &rid, &released.released, at(22))
        .unwrap();
    assert!(kept > 0);
    // A key released to someone else is not kept.
    let theirs: Vec<EscrowedKey> = released
        .released
        .iter()
        .map(|k| EscrowedKey {
            recipient: ByteArray::new(f.stranger.id.agreement_public()),
            ..k.clone()
        })
        .collect();
    assert_eq!(
        f.stranger
            .vault
            .keep_escrowed_keys(&f.stranger.id, &rid, &theirs, at(22))
            .unwrap(),
        0
    );
    let (mut next, _) = e
        .pro
        .peer()
        .on_relay_response(f.relay.id.peer(), rid, served, at(22), &mut TestRng::new(6))
        .unwrap();
    while let Some(mut req) = next {
        req.claim = e.pro.peer().held_claim(&rid, at(22));
        let resp = ask(&f.relay, &limits, &e.pro, req, at(22));
        next = e
            .pro
            .peer()
            .on_relay_response(f.relay.id.peer(), rid, resp, at(22), &mut TestRng::new(6))
            .unwrap()
            .0;
    }
    assert_eq!(medications(&e.pro, &rid), vec![MED]);
    assert!(
        e.pro.texts(&rid, "notes").is_empty(),
        "notes were not arranged"
    );

    // Once the use is over, the relay refuses it.
    refused_use(&e.pro, &f.relay, rid, at(90), at(90));

    // A hostile relay adds receipts of its own making: one whose reason is not what the
    // professional signed, one without the signed use. The patient's device takes neither.
    let genuine = hearth_core::audit::SignedEvent::open(&receipt[0]).unwrap();
    let hearth_core::audit::Action::Served {
        emergency: Some(mark),
        ..
    } = genuine.event().action.clone()
    else {
        panic!("not an emergency receipt")
    };
    let forge = |m: hearth_core::audit::EmergencyMark| hearth_core::audit::Action::Served {
        to: e.pro.id.peer(),
        sections: Vec::new(),
        bundles: 1,
        authority: None,
        reported: None,
        emergency: Some(m),
        pushed: false,
    };
    let reworded = hearth_core::audit::EmergencyMark {
        reason: "Routine check".into(),
        ..mark.clone()
    };
    let unsigned = hearth_core::audit::EmergencyMark {
        signed_use: None,
        ..mark.clone()
    };
    f.relay
        .vault
        .journal_many(
            &f.relay.id,
            vec![(rid, forge(reworded)), (rid, forge(unsigned))],
            at(60),
        )
        .unwrap();

    // The patient comes back: the relay's emergency receipt reaches the audit, and the device
    // holding the root moves the opened sections to new keys.
    exchange(&f.patient, &f.relay, &limits, rid, at(95)).unwrap();
    let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
    let from_relay: Vec<u64> = rec
        .audit_stored()
        .into_iter()
        .filter(|(w, _, _)| *w == f.relay.id.peer())
        .map(|(_, seq, _)| seq)
        .collect();
    assert_eq!(from_relay, vec![1], "only the genuine receipt");
    let uses = rec.emergency_uses();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].mark.reason, mark.reason);
    assert_eq!(uses[0].by, e.pro.id.peer());
    assert!(uses[0].sections.contains(&meds));
    let before = rec.current_epochs()[&meds];
    assert_eq!(rec.rotate_after_emergencies(at(95), &mut f.rng).unwrap(), 1);
    assert_eq!(rec.current_epochs()[&meds], before + 1);
    assert!(rec.emergency_rotations_due(at(96)).is_empty());
}

#[test]
fn a_relay_refuses_uses_outside_the_arrangement() {
    let mut f = fixture(32);
    let e = arranged(&mut f);
    let limits = RelayLimits::default();
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    // Another organisation's professional, with a use its own organisation logged: there is
    // no arrangement with that organisation.
    let other_org = Node::new(Role::Relay, "Elsewhere", &mut f.rng);
    let other_pro = Node::new(Role::Professional, "Dr Otto Other", &mut f.rng);
    let other = Emergency {
        credential: attest(
            &other_org.id,
            other_pro.id.peer(),
            "Dr Otto Other".into(),
            "A&E consultant".into(),
            "GMC 1234567".into(),
            None,
            TEST_NOW,
            TEST_NOW.saturating_add_millis(30 * DAY),
            Vec::new(),
            &mut f.rng,
        )
        .unwrap(),
        org: other_org,
        pro: other_pro,
    };
    let (_, held) = use_at(&other, rid, 20);
    other.pro.vault.hold_emergency(&rid, &held).unwrap();
    refused_use(&other.pro, &f.relay, rid, at(20), at(20));
    // The arranged organisation's use presented by someone else: refused.
    let (_, held) = use_at(&e, rid, 20);
    f.stranger.vault.hold_emergency(&rid, &held).unwrap();
    refused_use(&f.stranger, &f.relay, rid, at(20), at(20));
    // A use dated after the relay's clock: refused.
    let (_, held) = use_at(&e, rid, 200);
    e.pro.vault.hold_emergency(&rid, &held).unwrap();
    refused_use(&e.pro, &f.relay, rid, at(200), at(20));
    // Once the patient cancels, the next list the relay receives has no arrangement.
    let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
    rec.cancel_emergency(&e.org.id.peer(), at(30), &mut f.rng)
        .unwrap();
    drop(rec);
    exchange(&f.patient, &f.relay, &limits, rid, at(31)).unwrap();
    assert!(
        f.hosted()
            .wraps
            .iter()
            .all(|w| w.recipient.into_array() != e.org.id.agreement_public()),
        "the escrow wraps are gone"
    );
    let (_, held) = use_at(&e, rid, 32);
    e.pro.vault.hold_emergency(&rid, &held).unwrap();
    refused_use(&e.pro, &f.relay, rid, at(32), at(32));
}

/// The same use presented in a sync request rather than to a relay: the patient's device
/// serves the arranged sections; a grantee's node that holds the record (the arrangement
/// included) answers as to a stranger, since it could not attest the use in the patient's
/// audit.
#[test]
fn over_sync_only_the_patients_device_serves_an_emergency_use() {
    let mut f = fixture(35);
    let e = arranged(&mut f);
    let rid = f.rid;
    sync(&f.gp, &f.patient, rid, at(10), &mut f.rng).unwrap();
    let (_, held) = use_at(&e, rid, 20);
    e.pro.vault.hold_emergency(&rid, &held).unwrap();
    let ask = |server: &Node| {
        let req = e
            .pro
            .peer()
            .start_as(rid, server.id.peer(), true, at(25))
            .unwrap();
        assert!(req.emergency.is_some(), "the use is presented");
        server
            .peer()
            .on_request(e.pro.id.peer(), req, at(25), &mut TestRng::new(3))
            .unwrap()
            .0
    };
    let at_gp = ask(&f.gp);
    assert_eq!(at_gp.refused.as_deref(), Some("record not available"));
    assert!(at_gp.bundles.is_empty() && at_gp.wraps.is_empty());
    let at_patient = ask(&f.patient);
    assert!(at_patient.refused.is_none(), "{:?}", at_patient.refused);
    assert!(!at_patient.bundles.is_empty());
}
