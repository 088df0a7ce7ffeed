//! Sync benchmarks: Hearth's session (wire encoding, signature and hash-chain checks, key
//! delivery, sled on disk) against automerge's own sync protocol between two in-memory
//! documents of the same content, measured in the same run.
//!
//! Run: `cargo bench -p hearth-node --bench sync` (`-- quick` for a short run).
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use hearth_core::grant::Ability;
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::store::{Batch, MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::Local;
use serde_json::json;
use std::time::{Duration, Instant};

fn note(i: usize) -> serde_json::Value {
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. \
        Daughter present; discussed respite options and medication timing. Plan: review in two weeks.")})
}

struct Pair {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    patient: Identity,
    gp: Identity,
    p: Vault<SledStore>,
    g: Vault<SledStore>,
    rid: RecordId,
    rng: TestRng,
}

/// A patient record of `n` notes (one bundle each), built in memory then copied to sled, and a
/// GP holding a read grant.
fn pair(n: usize) -> Pair {
    let mut rng = TestRng::new(n as u64);
    let mem = Vault::new(MemoryStore::new());
    let (patient, rid) = patient_record(&mem, "P", TEST_NOW, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
    {
        let mut rec = mem.open_record(&patient, &rid).unwrap();
        let notes = "notes".parse().unwrap();
        for i in 0..n {
            // A note a minute, as a record grows over time (entry ids sort by time).
            let at = TEST_NOW.saturating_add_millis(i as i64 * 60_000);
            rec.add_entry(&notes, &note(i), at, &mut rng).unwrap();
        }
        let g = record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            TEST_NOW,
            1,
            &mut rng,
        );
        mem.hold_grant(&rid, &[g]).unwrap();
    }
    let (pd, gd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = Vault::open(SledStore::open(pd.path()).unwrap()).unwrap();
    let g = Vault::open(SledStore::open(gd.path()).unwrap()).unwrap();
    let mut b = Batch::new();
    let mut gb = Batch::new();
    for (k, v) in mem.store().scan(&[], &[0xff; 4]).unwrap() {
        if k.starts_with(b"N/grant/") {
            gb.put(k, v);
        } else {
            b.put(k, v);
        }
    }
    p.store().commit(b).unwrap();
    g.store().commit(gb).unwrap();
    Pair {
        _dirs: (pd, gd),
        patient,
        gp,
        p,
        g,
        rid,
        rng,
    }
}

/// One Hearth sync from the GP to the patient through the wire encoding. Returns (time, bytes).
fn hearth_sync(x: &mut Pair) -> (Duration, usize) {
    let (gs, ps) = (Local::new(&x.g, &x.gp), Local::new(&x.p, &x.patient));
    let t = Instant::now();
    let mut bytes = 0;
    let mut req = gs
        .start_as(x.rid, x.patient.peer(), true, TEST_NOW)
        .unwrap();
    loop {
        let w = protocol::encode(&Message::Request(req));
        bytes += w.len();
        let Message::Request(r) = protocol::decode(&w).unwrap() else {
            unreachable!()
        };
        let (resp, _) = ps.on_request(x.gp.peer(), r, TEST_NOW, &mut x.rng).unwrap();
        let w = protocol::encode(&Message::Response(resp));
        bytes += w.len();
        let Message::Response(r) = protocol::decode(&w).unwrap() else {
            unreachable!()
        };
        let (next, _) = gs
            .on_response(x.patient.peer(), r, TEST_NOW, &mut x.rng)
            .unwrap();
        match next {
            Some(n) => req = n,
            None => break,
        }
    }
    (t.elapsed(), bytes)
}

/// automerge's own sync between two in-memory documents until both are done.
fn automerge_sync(
    a: &mut automerge::AutoCommit,
    b: &mut automerge::AutoCommit,
    sa: &mut State,
    sb: &mut State,
) -> (Duration, usize) {
    let t = Instant::now();
    let mut bytes = 0;
    loop {
        let m1 = a.sync().generate_sync_message(sa);
        if let Some(m) = m1.clone() {
            let enc = m.encode();
            bytes += enc.len();
            b.sync()
                .receive_sync_message(sb, automerge::sync::Message::decode(&enc).unwrap())
                .unwrap();
        }
        let m2 = b.sync().generate_sync_message(sb);
        if let Some(m) = m2.clone() {
            let enc = m.encode();
            bytes += enc.len();
            a.sync()
                .receive_sync_message(sa, automerge::sync::Message::decode(&enc).unwrap())
                .unwrap();
        }
        if m1.is_none() && m2.is_none() {
            break;
        }
    }
    (t.elapsed(), bytes)
}

fn doc_of(n: usize) -> automerge::AutoCommit {
    let mut d = automerge::AutoCommit::new();
    for i in 0..n {
        d.put(automerge::ROOT, format!("e/{i:08}"), note(i).to_string())
            .unwrap();
        d.commit();
    }
    d
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    println!(
        "hearth sync benchmarks ({}; in-process, through the wire encoding, sled on disk)",
        if quick { "quick" } else { "full" }
    );
    let n = if quick { 2_000 } else { 10_000 };

    // Initial sync.
    let mut x = pair(n);
    let (ht, hb) = hearth_sync(&mut x);
    let mut src = doc_of(n);
    let mut dst = automerge::AutoCommit::new();
    let (at, ab) = automerge_sync(&mut src, &mut dst, &mut State::new(), &mut State::new());
    println!(
        "initial sync, {n} entries     hearth {:>8.1} ms {:>9} B   automerge sync {:>8.1} ms {:>9} B   ratio {:.2} (target <= 1.0)",
        ht.as_secs_f64() * 1e3,
        hb,
        at.as_secs_f64() * 1e3,
        ab,
        ht.as_secs_f64() / at.as_secs_f64()
    );
    // The GP's first read after it: open the record and load the section (from the shared
    // snapshot plus the bundles after it), against automerge loading the same notes' saved
    // document, which the baseline's sync did not need.
    let t = Instant::now();
    let mut replica = x.g.open_record(&x.gp, &x.rid).unwrap();
    let vvs = replica.version_vectors().unwrap();
    let read = t.elapsed();
    let saved = src.save();
    let t = Instant::now();
    let loaded = automerge::AutoCommit::load(&saved).unwrap();
    let load = t.elapsed();
    drop((vvs, loaded));
    println!(
        "  then the first read of the section   hearth {:>8.1} ms   (automerge load() of the same notes {:.1} ms); sync + read ratio {:.2}",
        read.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        (ht + read).as_secs_f64() / at.as_secs_f64()
    );
    assert_eq!(
        replica
            .show(&"notes".parse().unwrap())
            .unwrap()
            .entries
            .len(),
        n
    );

    // Incremental sync of one new entry at several history sizes.
    let sizes: &[usize] = if quick {
        &[1_000, 2_000]
    } else {
        &[1_000, 10_000, 50_000]
    };
    for &h in sizes {
        let mut x = pair(h);
        hearth_sync(&mut x);
        let mut a = doc_of(h);
        let mut b = automerge::AutoCommit::new();
        let (mut sa, mut sb) = (State::new(), State::new());
        automerge_sync(&mut a, &mut b, &mut sa, &mut sb);
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for k in 0..5 {
            {
                let mut rec = x.p.open_record(&x.patient, &x.rid).unwrap();
                rec.add_entry(
                    &"notes".parse().unwrap(),
                    &note(h + k),
                    TEST_NOW,
                    &mut x.rng,
                )
                .unwrap();
            }
            ours.push(hearth_sync(&mut x));
            a.put(
                automerge::ROOT,
                format!("e/{:08}", h + k),
                note(h + k).to_string(),
            )
            .unwrap();
            a.commit();
            theirs.push(automerge_sync(&mut a, &mut b, &mut sa, &mut sb));
        }
        ours.sort();
        theirs.sort();
        let (ot, ob) = ours[2];
        let (tt, tb) = theirs[2];
        println!(
            "incremental sync, {h:>6} history   hearth {:>7.2} ms {:>6} B   automerge sync {:>7.2} ms {:>6} B",
            ot.as_secs_f64() * 1e3,
            ob,
            tt.as_secs_f64() * 1e3,
            tb
        );
    }
}
