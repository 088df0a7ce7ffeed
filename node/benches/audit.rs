//! Audit benchmarks, each against a baseline measured in the same run:
//!
//! - the cost of keeping an access receipt (one durable journal commit) per served session,
//!   against the served session itself (an incremental sync of one new entry, on sled);
//! - `hearth audit verify` of 10,000 events (loading the sealed audit section, checking every
//!   signature, number and link), against checking 10,000 ed25519 signatures alone.
//!
//! Run: `cargo bench -p hearth-node --bench audit` (`-- quick` for a short run).
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use ed25519_dalek::{Signer, Verifier};
use hearth_core::audit::{Action, SectionAt, SignedEvent};
use hearth_core::grant::Ability;
use hearth_core::ids::SectionId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{NewEntry, Vault};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::Local;
use serde_json::json;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One sync round trip from the GP's side through the wire encoding; returns the patient's
/// receipt for it.
fn session(
    gs: &Local<'_, SledStore>,
    ps: &Local<'_, SledStore>,
    gp: &Identity,
    patient: &Identity,
    rid: hearth_core::ids::RecordId,
    rng: &mut TestRng,
) -> Option<Action> {
    let mut req = gs.start_as(rid, patient.peer(), true, TEST_NOW).unwrap();
    let mut receipt = None;
    loop {
        let w = protocol::encode(&Message::Request(req));
        let Message::Request(r) = protocol::decode(&w).unwrap() else {
            unreachable!()
        };
        let (resp, report) = ps.on_request(gp.peer(), r, TEST_NOW, rng).unwrap();
        receipt = report.served.map(|b| *b).or(receipt);
        let w = protocol::encode(&Message::Response(resp));
        let Message::Response(r) = protocol::decode(&w).unwrap() else {
            unreachable!()
        };
        match gs.on_response(patient.peer(), r, TEST_NOW, rng).unwrap().0 {
            Some(n) => req = n,
            None => return receipt,
        }
    }
}

fn receipt_cost(rounds: usize) {
    let mut rng = TestRng::new(3);
    let (pd, gd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = Vault::open(SledStore::open(pd.path()).unwrap()).unwrap();
    let g = Vault::open(SledStore::open(gd.path()).unwrap()).unwrap();
    let (patient, rid) = patient_record(&p, "P", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
    let notes: hearth_core::section::SectionName = "notes".parse().unwrap();
    {
        let mut rec = p.open_record(&patient, &rid).unwrap();
        let items: Vec<NewEntry> = (0..1000)
            .map(|i| NewEntry {
                section: notes,
                body: json!({"text": format!("{i:05} note")}),
                supersedes: None,
            })
            .collect();
        rec.add_entries(&items, TEST_NOW, &mut rng).unwrap();
        let gr = record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            TEST_NOW,
            1,
            &mut rng,
        );
        g.hold_grant(&rid, &[gr]).unwrap();
    }
    let (gs, ps) = (Local::new(&g, &gp), Local::new(&p, &patient));
    session(&gs, &ps, &gp, &patient, rid, &mut rng);
    let mut sessions = Vec::new();
    let mut receipts = Vec::new();
    for i in 0..rounds {
        {
            let mut rec = p.open_record(&patient, &rid).unwrap();
            rec.add_entry(
                &notes,
                &json!({"text": format!("new {i}")}),
                TEST_NOW,
                &mut rng,
            )
            .unwrap();
        }
        let t = Instant::now();
        let receipt = session(&gs, &ps, &gp, &patient, rid, &mut rng).expect("a receipt");
        sessions.push(t.elapsed());
        let t = Instant::now();
        p.journal(&patient, rid, receipt, TEST_NOW).unwrap();
        receipts.push(t.elapsed());
    }
    let (s, r) = (median(sessions), median(receipts));
    println!(
        "receipt per served session (1,000-entry section, one new entry, {rounds} rounds): \
         session {:.3} ms, receipt {:.3} ms = {:.1}% of the session (target < 10%)",
        ms(s),
        ms(r),
        100.0 * r.as_secs_f64() / s.as_secs_f64()
    );
}

fn verify_cost(events: usize, runs: usize) {
    let mut rng = TestRng::new(4);
    let dir = tempfile::tempdir().unwrap();
    let p = Vault::open(SledStore::open(dir.path()).unwrap()).unwrap();
    let (patient, rid) = patient_record(&p, "P", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
    let mut rec = p.open_record(&patient, &rid).unwrap();
    let gr = record_grant(
        &patient,
        &mut rec,
        gp.peer(),
        "notes",
        Ability::Read,
        TEST_NOW,
        1,
        &mut rng,
    );
    drop(gr);
    // The GP's reports, taken in as a session takes them (256 at a time).
    let mut prev = None;
    let mut all = Vec::with_capacity(events);
    for i in 0..events {
        let ev = SignedEvent::sign(
            &gp,
            rid,
            prev,
            TEST_NOW.saturating_add_millis(i as i64),
            Action::Read {
                sections: vec![SectionAt {
                    section: SectionId([1; 16]),
                    epoch: 0,
                }],
                authority: None,
            },
        )
        .unwrap();
        prev = Some((ev.event().seq, ev.hash()));
        all.push(ev.bytes().to_vec());
    }
    for chunk in all.chunks(256) {
        rec.receive_audit(&gp.peer(), chunk, TEST_NOW, &mut rng)
            .unwrap();
    }
    drop(rec);
    // Baseline: 10,000 single ed25519 verifications of messages of the events' size.
    let key = hearth_core::keys::signing_key(&mut rng);
    let vk = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..events).map(|i| vec![i as u8; all[0].len()]).collect();
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs) {
            vk.verify(m, s).unwrap();
        }
        base.push(t.elapsed());
        let t = Instant::now();
        let mut rec = p.open_record(&patient, &rid).unwrap();
        let v = rec.verify_audit().unwrap();
        ours.push(t.elapsed());
        assert_eq!(v.events.len(), events);
        assert!(v.is_whole(), "{:?}", v.problems);
    }
    let (b, o) = (median(base), median(ours));
    println!(
        "audit verify of {events} events (open, load the sealed section, check all): {:.1} ms; \
         {events} ed25519 verifications alone {:.1} ms; ratio {:.2}",
        ms(o),
        ms(b),
        o.as_secs_f64() / b.as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    receipt_cost(if quick { 20 } else { 200 });
    verify_cost(
        if quick { 2_000 } else { 10_000 },
        if quick { 2 } else { 5 },
    );
}
