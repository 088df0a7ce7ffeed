//! An edit's delay to an online grantee, over libp2p on loopback (DESIGN §11: median under
//! 5 ms, p99 under 20 ms).
//!
//! Two live nodes in one process, each with its own sled store on disk and its own swarm on
//! TCP 127.0.0.1 (Noise, Yamux), driven by the daemon's sync driver (`hearth_node::live`). The
//! patient adds a note (one durable write) and announces the change, exactly as the daemon does
//! after a command; the clock stops when the GP's node has stored the new bundle. Printed
//! beside it: the patient's durable add alone (open the record, add, flush), which every edit
//! pays before anything is announced.
//!
//! `cargo bench -p hearth-node --bench live` (`-- quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use hearth_core::grant::Ability;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::test_utils::{patient_record, record_grant};
use hearth_node::live::{self, Handle, LiveConfig, SharedState};
use hearth_node::os::{now, os_rng};
use hearth_node::sled_store::SledStore;
use serde_json::json;
use std::time::{Duration, Instant};

mod common;
use common::{live_node, pct, runtime};

fn note(i: usize) -> serde_json::Value {
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. \
        Daughter present; discussed respite options and medication timing. Plan: review in two weeks.")})
}

/// automerge's own sync between two in-memory documents until both are done (the baseline of
/// DESIGN §11), returning the time taken.
fn automerge_sync(n: usize) -> Duration {
    use automerge::sync::{State, SyncDoc};
    use automerge::transaction::Transactable;
    let mut a = automerge::AutoCommit::new();
    for i in 0..n {
        a.put(automerge::ROOT, format!("e/{i:08}"), note(i).to_string())
            .unwrap();
        a.commit();
    }
    let mut b = automerge::AutoCommit::new();
    let (mut sa, mut sb) = (State::new(), State::new());
    let t = Instant::now();
    loop {
        let m1 = a.sync().generate_sync_message(&mut sa);
        if let Some(m) = &m1 {
            let enc = m.clone().encode();
            b.sync()
                .receive_sync_message(&mut sb, automerge::sync::Message::decode(&enc).unwrap())
                .unwrap();
        }
        let m2 = b.sync().generate_sync_message(&mut sb);
        if let Some(m) = &m2 {
            let enc = m.clone().encode();
            a.sync()
                .receive_sync_message(&mut sa, automerge::sync::Message::decode(&enc).unwrap())
                .unwrap();
        }
        if m1.is_none() && m2.is_none() {
            return t.elapsed();
        }
    }
}

/// Two connected live nodes: a patient whose record holds `initial` notes (one bundle each)
/// and a GP granted `notes`, after their initial sync, which is timed.
async fn setup(initial: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = os_rng();
    let t = now();
    let p_vault = Vault::open(SledStore::open(&dir.path().join("p")).unwrap()).unwrap();
    let (patient, rid) = patient_record(&p_vault, "Pat", t, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let g_vault = Vault::open(SledStore::open(&dir.path().join("g")).unwrap()).unwrap();
    let notes = "notes".parse().unwrap();
    {
        let mut rec = p_vault.open_record(&patient, &rid).unwrap();
        // One bundle per note, as a record written over months would be.
        for i in 0..initial {
            rec.add_entry(&notes, &note(i), t, &mut rng).unwrap();
        }
        let g = record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            t,
            1,
            &mut rng,
        );
        g_vault.hold_grant(&rid, &[g]).unwrap();
    }
    let p_peer = patient.peer();
    let (ph, p_shared, p_addr) = live_node(patient, p_vault, LiveConfig::default()).await;
    let (gh, g_shared, _) = live_node(gp, g_vault, LiveConfig::default()).await;
    // Initial sync: dial, handshake, and rounds until the GP holds every note (the GP's
    // catch-up round on connecting, then the one asked for).
    let t_initial = Instant::now();
    gh.add_peer(p_peer, p_addr);
    let h = gh.clone();
    let first = tokio::task::spawn_blocking(move || {
        h.sync_blocking(Some(p_peer), Duration::from_secs(300))
    })
    .await
    .unwrap()
    .unwrap();
    let initial_time = t_initial.elapsed();
    assert!(first.iter().all(|o| o.result.is_ok()), "{first:?}");
    {
        let g = live::lock(&g_shared);
        let mut replica = g.vault.open_record(&g.identity, &rid).unwrap();
        let held = replica.show(&notes).unwrap().entries.len();
        assert_eq!(held, initial, "the GP holds every note");
    }
    Setup {
        _dir: dir,
        ph,
        p_shared,
        gh,
        rid,
        initial_time,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    ph: Handle,
    p_shared: SharedState<SledStore>,
    gh: Handle,
    rid: hearth_core::ids::RecordId,
    initial_time: Duration,
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let n = if quick { 30 } else { 300 };
    let initial = if quick { 1_000 } else { 10_000 };
    runtime().block_on(async move {
        let big = setup(initial).await;
        let initial_time = big.initial_time;
        let baseline = automerge_sync(initial);
        println!(
            "initial sync over TCP loopback, {initial} entries   hearth {:8.1} ms   automerge sync (in memory) {:8.1} ms   ratio {:.2} (target <= 1.0)",
            initial_time.as_secs_f64() * 1e3,
            baseline.as_secs_f64() * 1e3,
            initial_time.as_secs_f64() / baseline.as_secs_f64()
        );
        drop(big);
        // The edit delay on a small record, so that it measures propagation rather than the
        // cost of adding to a long section.
        let Setup {
            _dir,
            ph,
            p_shared,
            gh,
            rid,
            ..
        } = setup(1).await;
        // Let the connection settle (both sides' catch-up rounds).
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut delays = Vec::with_capacity(n);
        let mut adds = Vec::with_capacity(n);
        let mut received = gh.received();
        for i in 0..n {
            let before = *received.borrow_and_update();
            let sh = p_shared.clone();
            let t0 = Instant::now();
            let add = tokio::task::spawn_blocking(move || {
                let g = live::lock(&sh);
                let mut rec = g.vault.open_record(&g.identity, &rid).unwrap();
                let mut rng = os_rng();
                rec.add_entry(
                    &"notes".parse().unwrap(),
                    &json!({ "text": format!("note {i}") }),
                    now(),
                    &mut rng,
                )
                .unwrap();
                t0.elapsed()
            })
            .await
            .unwrap();
            ph.local_change();
            while *received.borrow_and_update() <= before {
                tokio::time::timeout(Duration::from_secs(10), received.changed())
                    .await
                    .unwrap_or_else(|_| panic!("edit {i} never arrived"))
                    .unwrap();
            }
            delays.push(t0.elapsed().as_secs_f64() * 1e3);
            adds.push(add.as_secs_f64() * 1e3);
            // Space the edits out, as a person would: each starts on a quiet network.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (med, p99) = (pct(&mut delays, 0.5), pct(&mut delays, 0.99));
        let add_med = pct(&mut adds, 0.5);
        println!(
            "edit -> online grantee over TCP loopback ({n} edits)   median {med:6.2} ms   p99 {p99:6.2} ms   (targets: median < 5 ms, p99 < 20 ms)"
        );
        println!(
            "  of which the patient's durable add (open record, add, flush)   median {add_med:6.2} ms"
        );
    });
}
