use super::*;
use crate::grant::{GrantId, Purpose};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::{Identity, Role};
use crate::test_utils::{TEST_NOW, TestRng};
use proptest::prelude::*;
use std::collections::BTreeMap;

const RECORD: RecordId = RecordId([7; 32]);

fn who(seed: u64, role: Role) -> Identity {
    Identity::generate(role, format!("n{seed}"), &mut TestRng::new(seed)).0
}

fn read(n: u8) -> Action {
    Action::Read {
        sections: vec![SectionAt {
            section: SectionId([n; 16]),
            epoch: 0,
        }],
        authority: Some(Authority {
            grant: GrantId(serde_bytes::ByteArray::new([9; 32])),
            purpose: Purpose::DirectCare,
        }),
    }
}

/// A log of `n` events by `writer`, stored as (writer, seq, bytes).
fn log(writer: &Identity, n: u64) -> Vec<(PeerKey, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut prev = None;
    for i in 0..n {
        let ev = SignedEvent::sign(
            writer,
            RECORD,
            prev,
            TEST_NOW.saturating_add_millis(i as i64),
            read((i % 200) as u8),
        )
        .unwrap();
        prev = Some((ev.event().seq, ev.hash()));
        out.push((writer.peer(), ev.event().seq, ev.bytes().to_vec()));
    }
    out
}

fn check_with(
    stored: &[(PeerKey, u64, Vec<u8>)],
    known: &[PeerKey],
    heads: &BTreeMap<PeerKey, u64>,
) -> Verified {
    let known = known.to_vec();
    verify(
        stored.iter().map(|(w, s, b)| (*w, *s, b.as_slice())),
        &Expect {
            record_of: &|_| RECORD,
            known: &|p| known.contains(p),
            heads,
            serves: &|p| known.contains(p),
            answers: &|_, _| false,
        },
    )
}

fn check(stored: &[(PeerKey, u64, Vec<u8>)], known: &[PeerKey]) -> Verified {
    check_with(stored, known, &BTreeMap::new())
}

#[test]
fn a_whole_log_verifies_and_keeps_order() {
    let gp = who(1, Role::Professional);
    let stored = log(&gp, 50);
    let v = check(&stored, &[gp.peer()]);
    assert!(v.is_whole(), "{:?}", v.problems);
    assert_eq!(v.events.len(), 50);
    assert!(
        v.events
            .windows(2)
            .all(|w| w[0].event().seq + 1 == w[1].event().seq)
    );
}

#[test]
fn every_kind_of_tampering_in_a_10000_event_log_is_detected() {
    let gp = who(2, Role::Professional);
    let stored = log(&gp, 10_000);
    let known = [gp.peer()];
    let heads = BTreeMap::from([(gp.peer(), 10_000)]);
    assert!(check_with(&stored, &known, &heads).is_whole());
    for i in [0usize, 1, 4_999, 9_998, 9_999] {
        // Edited: one byte of the body changed.
        let mut edited = stored.clone();
        let b = &mut edited[i].2;
        let at = b.len() - 80;
        b[at] ^= 1;
        let v = check_with(&edited, &known, &heads);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, Problem::Altered { seq, .. } if *seq == i as u64 + 1)),
            "edit at {i}: {:?}",
            v.problems
        );
        // Dropped.
        let mut dropped = stored.clone();
        dropped.remove(i);
        let v = check_with(&dropped, &known, &heads);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, Problem::Missing { from, .. } if *from == i as u64 + 1)),
            "drop at {i}: {:?}",
            v.problems
        );
        // Reordered: two neighbours' contents swapped.
        let j = if i + 1 < stored.len() { i + 1 } else { i - 1 };
        let mut swapped = stored.clone();
        let (a, b) = (swapped[i].2.clone(), swapped[j].2.clone());
        swapped[i].2 = b;
        swapped[j].2 = a;
        let v = check_with(&swapped, &known, &heads);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, Problem::Misplaced { .. })),
            "swap at {i}: {:?}",
            v.problems
        );
    }
    // Reordered and renumbered by someone without the key: re-signing is the only way to make
    // numbers and links agree, and a forger's signature does not verify.
    let mallory = who(3, Role::Professional);
    let mut forged = stored.clone();
    let mut fake = SignedEvent::sign(&mallory, RECORD, None, TEST_NOW, read(1))
        .unwrap()
        .bytes()
        .to_vec();
    // Claim to be the GP: put the GP's key in the body; the signature is still Mallory's.
    let pos = fake
        .windows(32)
        .position(|w| w == mallory.peer().0)
        .unwrap();
    fake[pos..pos + 32].copy_from_slice(&gp.peer().0);
    forged[0].2 = fake;
    let v = check_with(&forged, &known, &heads);
    assert!(
        v.problems
            .iter()
            .any(|p| matches!(p, Problem::Altered { seq: 1, .. })),
        "{:?}",
        v.problems
    );
}

#[test]
fn a_replayed_or_foreign_event_is_out_of_place() {
    let gp = who(4, Role::Professional);
    let mut stored = log(&gp, 5);
    // Replay event 2 at place 6.
    let again = stored[1].2.clone();
    stored.push((gp.peer(), 6, again));
    let v = check(&stored, &[gp.peer()]);
    assert!(v.problems.contains(&Problem::Misplaced {
        writer: gp.peer(),
        seq: 6
    }));
    // An event of another record.
    let other = SignedEvent::sign(&gp, RecordId([8; 32]), None, TEST_NOW, read(1)).unwrap();
    let stored = vec![(gp.peer(), 1, other.bytes().to_vec())];
    assert!(!check(&stored, &[gp.peer()]).is_whole());
}

#[test]
fn strangers_and_unreported_sessions_are_named() {
    let gp = who(5, Role::Professional);
    let patient = who(6, Role::Patient);
    let stranger = who(7, Role::Professional);
    let mut stored = log(&stranger, 2);
    // The patient's device served the GP twice: once with a report of head 3 (the patient
    // holds only 2 of the GP's events), once without any report.
    stored.extend(log(&gp, 2));
    let authority = Some(Authority {
        grant: GrantId(serde_bytes::ByteArray::new([9; 32])),
        purpose: Purpose::DirectCare,
    });
    let mut prev = None;
    for reported in [Some(3), None] {
        let ev = SignedEvent::sign(
            &patient,
            RECORD,
            prev,
            TEST_NOW,
            Action::Served {
                to: gp.peer(),
                sections: vec![],
                bundles: 1,
                authority,
                reported,
                emergency: None,
                pushed: false,
            },
        )
        .unwrap();
        prev = Some((ev.event().seq, ev.hash()));
        stored.push((patient.peer(), ev.event().seq, ev.bytes().to_vec()));
    }
    let v = check(&stored, &[gp.peer(), patient.peer()]);
    assert!(v.problems.contains(&Problem::Stranger {
        writer: stranger.peer(),
        events: 2
    }));
    assert!(v.problems.contains(&Problem::Missing {
        writer: gp.peer(),
        from: 3,
        to: 3
    }));
    assert!(v.problems.iter().any(|p| matches!(
        p,
        Problem::NotReporting { peer, sessions: 1, .. } if *peer == gp.peer()
    )));
}

#[test]
fn bounds_are_kept_when_signing_and_opening() {
    let gp = who(8, Role::Professional);
    let many = Action::Read {
        sections: vec![
            SectionAt {
                section: SectionId([1; 16]),
                epoch: 0
            };
            MAX_SECTIONS + 1
        ],
        authority: None,
    };
    assert!(SignedEvent::sign(&gp, RECORD, None, TEST_NOW, many).is_err());
    assert!(SignedEvent::open(&[0u8; 3]).is_err());
    assert!(SignedEvent::open(&vec![0u8; MAX_EVENT_BYTES + 1]).is_err());
}

#[test]
fn fits_tells_beforehand_whether_a_receipt_can_be_signed() {
    let relay = who(10, Role::Relay);
    let served = |credential: usize, signed_use: usize| Action::Served {
        to: PeerKey([3; 32]),
        sections: vec![
            SectionAt {
                section: SectionId([1; 16]),
                epoch: u32::MAX
            };
            MAX_SECTIONS
        ],
        bundles: u32::MAX,
        authority: None,
        reported: Some(u64::MAX),
        emergency: Some(EmergencyMark {
            use_id: serde_bytes::ByteArray::new([4; 32]),
            org: PeerKey([5; 32]),
            reason: "é".repeat(MAX_REASON),
            until: TEST_NOW,
            credential: "C".repeat(credential),
            signed_use: Some("E".repeat(signed_use)),
        }),
        pushed: false,
    };
    for (c, u) in [
        (500, 700),
        (1000, 1500),
        (4096, MAX_TOKEN),
        (4097, 10),
        (10, MAX_TOKEN + 1),
    ] {
        let a = served(c, u);
        let fits = SignedEvent::fits(RECORD, &a);
        let signed = SignedEvent::sign(&relay, RECORD, Some((7, [1; 32])), TEST_NOW, a);
        assert_eq!(fits, signed.is_ok(), "credential {c} B, use {u} B");
    }
    assert!(SignedEvent::fits(RECORD, &served(500, 700)));
    assert!(!SignedEvent::fits(RECORD, &served(4096, MAX_TOKEN)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single change to a stored log (a flipped byte, a dropped or duplicated event, two
    /// events swapped) is reported.
    #[test]
    fn any_single_change_is_detected(op in 0u8..4, i in 0usize..40, j in 0usize..40, byte in 0usize..400) {
        let gp = who(9, Role::Professional);
        let stored = log(&gp, 40);
        let heads = BTreeMap::from([(gp.peer(), 40)]);
        let mut s = stored.clone();
        match op {
            0 => { let b = &mut s[i].2; let k = byte % b.len(); b[k] ^= 0x20; }
            1 => { s.remove(i); }
            2 => { let extra = s[i].2.clone(); s.push((gp.peer(), 41, extra)); }
            _ => {
                prop_assume!(i != j);
                let (a, b) = (s[i].2.clone(), s[j].2.clone());
                s[i].2 = b;
                s[j].2 = a;
            }
        }
        let v = check_with(&s, &[gp.peer()], &heads);
        prop_assert!(!v.is_whole());
    }
}

#[test]
fn a_grantees_receipt_is_its_own_word_and_only_servers_attest_an_emergency() {
    let gp = who(10, Role::Professional);
    let patient = who(11, Role::Patient);
    let sw = who(12, Role::Professional);
    let receipt = |reported, emergency| Action::Served {
        to: sw.peer(),
        sections: vec![],
        bundles: 1,
        authority: Some(Authority {
            grant: GrantId(serde_bytes::ByteArray::new([9; 32])),
            purpose: Purpose::DirectCare,
        }),
        reported,
        emergency,
        pushed: false,
    };
    // The GP's node served the social worker: its receipt says the social worker reported a
    // head of 5 (it holds none), and another says it reported nothing.
    let first = SignedEvent::sign(&gp, RECORD, None, TEST_NOW, receipt(Some(5), None)).unwrap();
    let second = SignedEvent::sign(
        &gp,
        RECORD,
        Some((1, first.hash())),
        TEST_NOW,
        receipt(None, None),
    )
    .unwrap();
    // And one marking an emergency use.
    let mark = EmergencyMark {
        use_id: serde_bytes::ByteArray::new([4; 32]),
        org: PeerKey([5; 32]),
        reason: "Unconscious in A&E".into(),
        until: TEST_NOW,
        credential: String::new(),
        signed_use: None,
    };
    let third = SignedEvent::sign(
        &gp,
        RECORD,
        Some((2, second.hash())),
        TEST_NOW,
        receipt(None, Some(mark)),
    )
    .unwrap();
    let v = verify(
        [
            (gp.peer(), 1, first.bytes()),
            (gp.peer(), 2, second.bytes()),
            (gp.peer(), 3, third.bytes()),
        ],
        &Expect {
            record_of: &|_| RECORD,
            known: &|_| true,
            heads: &BTreeMap::new(),
            serves: &|p| *p == patient.peer(),
            answers: &|_, _| false,
        },
    );
    // The two plain receipts are kept, as the GP's word: no gap and no silence is inferred
    // from what a grantee says a third party reported. The emergency one is left out.
    let kept: Vec<[u8; 32]> = v.events.iter().map(SignedEvent::hash).collect();
    assert_eq!(kept, vec![first.hash(), second.hash()]);
    assert_eq!(
        v.problems,
        vec![Problem::NotAServer {
            writer: gp.peer(),
            seq: 3
        }]
    );
}
