//! The audit through a relay: the relay receipts what it serves a grantee, keeps the grantee's
//! own reports for the patient's devices, hands both on when the patient's node next comes,
//! and forgets them once acknowledged; nobody can slip an emergency receipt or another's event
//! through.

use super::*;
use hearth_core::audit::{Action, EmergencyMark, Problem, SectionAt, SignedEvent};

/// `node`'s report that its user read notes of `rid` at `t`.
fn note_read(f: &Fixture, node: &Node, t: Timestamp) -> SignedEvent {
    let notes = f.notes();
    node.vault
        .journal(
            &node.id,
            f.rid,
            Action::Read {
                sections: vec![SectionAt {
                    section: notes,
                    epoch: 0,
                }],
                authority: None,
            },
            t,
        )
        .unwrap()
}

#[test]
fn a_relay_receipts_what_it_serves_and_hands_reports_on_to_the_patient() {
    let mut f = fixture(21);
    let limits = RelayLimits::default();
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    // The reader read notes before (its own journal), and syncs through the relay while the
    // patient is offline.
    note_read(&f, &f.reader, at(10));
    exchange(&f.reader, &f.relay, &limits, rid, at(11)).unwrap();
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
    // The relay wrote one receipt, naming the reader, its grant's purpose and its head.
    assert_eq!(f.relay.vault.journal_head(&rid).unwrap().unwrap().0, 1);
    assert_eq!(f.relay.vault.relayed_audit(&rid, 10).unwrap().len(), 1);

    // A hostile grantee slips in a receipt of an emergency use (only the patient's devices
    // and the record's relays attest those) and another grantee's event: the relay keeps
    // neither.
    let forged =
        f.gp.vault
            .journal(
                &f.gp.id,
                rid,
                Action::Served {
                    to: f.reader.id.peer(),
                    sections: Vec::new(),
                    bundles: 1,
                    authority: None,
                    reported: None,
                    emergency: Some(EmergencyMark {
                        use_id: serde_bytes::ByteArray::new([4; 32]),
                        org: f.gp.id.peer(),
                        reason: "Unconscious in A&E".into(),
                        until: at(20),
                        credential: String::new(),
                        signed_use: None,
                    }),
                    pushed: false,
                },
                at(11),
            )
            .unwrap();
    let others = note_read(&f, &f.reader, at(11));
    let mut req =
        f.gp.peer()
            .relay_start(rid, f.relay.id.peer(), at(11), &mut TestRng::new(7))
            .unwrap();
    req.audit = vec![
        ByteBuf::from(forged.bytes().to_vec()),
        ByteBuf::from(others.bytes().to_vec()),
    ];
    ask(&f.relay, &limits, &f.gp, req, at(11));
    assert_eq!(f.relay.vault.relayed_audit(&rid, 10).unwrap().len(), 1);

    // The patient comes back: the receipt and the reader's report reach the audit log, which
    // verifies without a problem.
    exchange(&f.patient, &f.relay, &limits, rid, at(12)).unwrap();
    let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
    let checked = rec.verify_audit().unwrap();
    // The one problem: the hostile grantee said its log had one event (the relay's receipt
    // of what it was sent names that head), and that event, its forged receipt, never
    // reached the log: a gap, not silence.
    assert_eq!(
        checked.problems,
        vec![Problem::Missing {
            writer: f.gp.id.peer(),
            from: 1,
            to: 1
        }]
    );
    let receipt = checked
        .events
        .iter()
        .find(|e| {
            e.event().writer == f.relay.id.peer()
                && matches!(&e.event().action, Action::Served { to, .. } if *to == f.reader.id.peer())
        })
        .expect("the relay's receipt");
    match &receipt.event().action {
        Action::Served {
            to,
            sections,
            authority,
            reported,
            ..
        } => {
            assert_eq!(*to, f.reader.id.peer());
            assert!(sections.iter().any(|s| s.section == f.notes()));
            assert_eq!(
                authority.map(|a| a.purpose),
                Some(grant::Purpose::DirectCare)
            );
            assert_eq!(*reported, Some(1), "the reader reported its head");
        }
        other => panic!("not a receipt: {other:?}"),
    }
    assert!(
        checked
            .events
            .iter()
            .any(|e| e.event().writer == f.reader.id.peer()),
        "the reader's report"
    );
    assert!(
        !checked
            .events
            .iter()
            .any(|e| e.event().writer == f.gp.id.peer()),
        "the forged receipt"
    );
    assert_eq!(
        checked
            .events
            .iter()
            .filter(|e| e.event().writer == f.relay.id.peer())
            .count(),
        2,
        "a receipt for each grantee served"
    );
    drop(rec);

    // The patient's next request acknowledges them: the relay forgets what it kept and tells
    // the reader, who stops sending that event.
    exchange(&f.patient, &f.relay, &limits, rid, at(13)).unwrap();
    assert!(f.relay.vault.relayed_audit(&rid, 10).unwrap().is_empty());
    assert_eq!(f.relay.vault.journal_sent(&rid).unwrap(), 2);
    exchange(&f.reader, &f.relay, &limits, rid, at(14)).unwrap();
    assert_eq!(f.reader.vault.journal_sent(&rid).unwrap(), 1);

    // Events handed over by a key that is not one of the record's relays count for nothing.
    let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
    let later = note_read(&f, &f.reader, at(15));
    let taken = rec
        .receive_relayed_audit(&f.stranger.id.peer(), &[later.bytes()], at(15), &mut f.rng)
        .unwrap();
    assert_eq!(taken, 0);
}
