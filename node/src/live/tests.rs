//! The driver in memory: two nodes on libp2p's `MemoryTransport` with `MemoryStore`s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::config::system_time;
use super::jobs::os_rng;
use super::*;
use hearth_core::grant::{Ability, Grant, GrantSpec};
use hearth_core::keys::Role;
use hearth_core::record::{AuthItem, NewRecord};
use hearth_core::store::{Batch, MemoryStore, StoreError, Visit};
use hearth_core::time::Timestamp;
use hearth_sync::net::{NetConfig, keypair, memory_swarm};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The wall clock the nodes run on.
fn now() -> Timestamp {
    system_time()
}

fn node<S: Store + Clone + Send + 'static>(
    identity: Identity,
    vault: Vault<S>,
    port: u64,
) -> (Handle, SharedState<S>, Multiaddr) {
    // No background round within a test's time: what arrives was pushed or asked for.
    node_ticking(identity, vault, port, Duration::from_secs(600))
}

/// [`node`] whose driver ticks every `interval`.
fn node_ticking<S: Store + Clone + Send + 'static>(
    identity: Identity,
    vault: Vault<S>,
    port: u64,
    interval: Duration,
) -> (Handle, SharedState<S>, Multiaddr) {
    let mut swarm = memory_swarm(keypair(&identity).unwrap(), &NetConfig::default()).unwrap();
    let addr: Multiaddr = format!("/memory/{port}").parse().unwrap();
    swarm.listen_on(addr.clone()).unwrap();
    let shared = Arc::new(Mutex::new(Shared { vault, identity }));
    let config = LiveConfig {
        interval,
        ..LiveConfig::default()
    };
    let (h, _task) = start(swarm, shared.clone(), config);
    (h, shared, addr)
}

fn texts<S: Store>(shared: &SharedState<S>, rid: &RecordId) -> String {
    let g = lock(shared);
    let Ok(mut rec) = g.vault.open_record(&g.identity, rid) else {
        return String::new();
    };
    rec.show(&"notes".parse().unwrap())
        .map(|v| serde_json::to_string(&v.entries).unwrap())
        .unwrap_or_default()
}

/// The patient grants `gp` reading `notes` for a day from `t` (recorded in `rec`, the
/// patient's record), and `gp`'s vault holds the grant.
fn grant_notes<S: Store>(
    patient: &Identity,
    rec: &mut hearth_core::record::OpenRecord<'_, MemoryStore>,
    gp: &Identity,
    gp_vault: &Vault<S>,
    t: Timestamp,
    rng: &mut hearth_core::test_utils::TestRng,
) {
    let spec = GrantSpec::new(
        gp.peer(),
        "notes".parse().unwrap(),
        Ability::Read,
        t,
        t.saturating_add_millis(86_400_000),
    );
    let g = Grant::issue_root(patient, spec, &[], rng).unwrap();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], t, rng)
        .unwrap();
    gp_vault.hold_grant(&rec.id(), &[g]).unwrap();
}

/// A patient with a record (made at `t`) and a GP, not yet granted anything.
fn patient_and_gp(
    t: Timestamp,
    rng: &mut hearth_core::test_utils::TestRng,
) -> (Identity, Identity, Vault<MemoryStore>, RecordId) {
    let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), rng);
    let p_vault = Vault::new(MemoryStore::new());
    let rid = p_vault
        .create_record(&patient, NewRecord::default(), t, rng)
        .unwrap();
    (patient, gp, p_vault, rid)
}

/// `h`'s node learns `peer`'s address and syncs with it once (as `hearth sync` does).
async fn first_sync(h: &Handle, peer: PeerKey, addr: Multiaddr) -> Vec<RoundOutcome> {
    h.add_peer(peer, addr);
    let h = h.clone();
    tokio::task::spawn_blocking(move || h.sync_blocking(Some(peer), Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap()
}

/// Adds a note to `rid` as a command run in the daemon does: under the store's lock, the
/// change then checked under that lock ([`Handle::changed`]).
fn command_adds_note(shared: &SharedState<MemoryStore>, h: &Handle, rid: &RecordId, text: &str) {
    let sh = lock(shared);
    {
        let mut rec = sh.vault.open_record(&sh.identity, rid).unwrap();
        rec.add_entry(
            &"notes".parse().unwrap(),
            &json!({ "text": text }),
            now(),
            &mut os_rng(),
        )
        .unwrap();
    }
    h.changed(&sh);
}

async fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_else(what, f, String::new).await;
}

/// [`eventually`], saying what `explain` finds when the wait times out.
async fn eventually_else(
    what: &str,
    mut f: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {}", explain());
}

/// The access receipts among a journal's events: to whom, how many bundles, whether pushed.
fn served_said(events: &[Vec<u8>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|b| hearth_core::audit::SignedEvent::open(b).ok())
        .filter_map(|e| match &e.event().action {
            hearth_core::audit::Action::Served {
                to,
                bundles,
                pushed,
                ..
            } => Some(format!("{to}: {bundles} bundles, pushed {pushed}")),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_memory_sync_granted_sections_and_keep_syncing() {
    let (mut rng, t) = (hearth_core::test_utils::TestRng::new(7), now());
    let (patient, gp, p_vault, rid) = patient_and_gp(t, &mut rng);
    let mut rec = p_vault.open_record(&patient, &rid).unwrap();
    rec.add_entry(
        &"notes".parse().unwrap(),
        &json!({"text": "granted one"}),
        t,
        &mut rng,
    )
    .unwrap();
    rec.add_entry(
        &"notes:mental-health".parse().unwrap(),
        &json!({"text": "not granted"}),
        t,
        &mut rng,
    )
    .unwrap();
    let g_vault = Vault::new(MemoryStore::new());
    grant_notes(&patient, &mut rec, &gp, &g_vault, t, &mut rng);
    drop(rec);
    let (p_peer, gp_peer) = (patient.peer(), gp.peer());
    let (ph, p_shared, p_addr) = node(patient, p_vault, 52_001);
    let (gh, g_shared, _) = node(gp, g_vault, 52_002);

    // The professional knows the patient's address; one explicit round brings it in sync.
    let outcomes = first_sync(&gh, p_peer, p_addr).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(outcomes[0].result.is_ok(), "{outcomes:?}");
    let held = texts(&g_shared, &rid);
    assert!(held.contains("granted one"), "{held}");
    assert!(!held.contains("not granted"));
    assert!(gh.status().connected.contains(&p_peer.to_string()));

    // A later change at the patient reaches the professional without any request.
    {
        let sh = lock(&p_shared);
        let mut rec = sh.vault.open_record(&sh.identity, &rid).unwrap();
        let mut rng = os_rng();
        rec.add_entry(
            &"notes".parse().unwrap(),
            &json!({"text": "written later"}),
            now(),
            &mut rng,
        )
        .unwrap();
    }
    ph.local_change();
    eventually("the later entry at the professional", || {
        texts(&g_shared, &rid).contains("written later")
    })
    .await;
    // A command that wrote checks what to announce under the lock it wrote under, as the
    // daemon's commands do; the entry is pushed at once.
    command_adds_note(&p_shared, &ph, &rid, "written by a command");
    eventually("the command's entry at the professional", || {
        texts(&g_shared, &rid).contains("written by a command")
    })
    .await;
    // A command that learnt a peer's addresses (as `accept` does, through a vault of its own
    // over the daemon's store) has the driver read the known peers again.
    let (newcomer, _) = Identity::generate(Role::Professional, "Newcomer".into(), &mut rng);
    {
        let sh = lock(&p_shared);
        let own = Vault::new(sh.vault.store().clone());
        let addrs = hearth_core::ledger::PeerAddrs {
            addrs: vec!["/memory/52999".into()],
        };
        own.set_peer_addrs(&newcomer.peer(), &addrs).unwrap();
        ph.changed(&sh);
    }
    eventually("the newcomer known to the driver", || {
        ph.status().known.contains_key(&newcomer.peer().to_string())
    })
    .await;
    let st = gh.status();
    assert!(st.sessions.iter().any(|s| s.error.is_none()));
    // The bundles stored are counted where they were stored, and watchers see the count the
    // status shows: at least the round's entry and the two pushed ones.
    let received = *gh.received().borrow();
    assert_eq!(received, st.received);
    assert!(received >= 3, "{received}");

    // The pushes' access receipts wait for the tick (ten minutes away here); stopping the
    // node writes them, naming the professional. The two entries went in two pushes of one
    // bundle each, or, when the patient's own round on connecting carried the first (its
    // receipt written at once), both in the command's push: two bundles pushed either way.
    // (Both kinds are receipted as sent without the GP asking.)
    let journal = |shared: &SharedState<MemoryStore>| {
        let g = lock(shared);
        g.vault.journal_after(&rid, 0, 1_000).unwrap()
    };
    let pushed_to_gp = |events: &[Vec<u8>]| -> Vec<u32> {
        events
            .iter()
            .map(|b| hearth_core::audit::SignedEvent::open(b).unwrap())
            .filter_map(|e| match e.event().action {
                hearth_core::audit::Action::Served {
                    to,
                    bundles,
                    pushed: true,
                    ..
                } if to == gp_peer => Some(bundles),
                _ => None,
            })
            .collect()
    };
    let said_before = served_said(&journal(&p_shared));
    let before: u32 = pushed_to_gp(&journal(&p_shared)).iter().sum();
    ph.shutdown().await;
    eventually_else(
        "the pushes' receipts",
        || pushed_to_gp(&journal(&p_shared)).iter().sum::<u32>() >= before + 2,
        || {
            let after = served_said(&journal(&p_shared));
            format!("before the stop: {said_before:?}; after: {after:?}")
        },
    )
    .await;
}

/// A node holding more records than a command checks inline (a professional's, usually; here
/// a node holding other patients' records beside its own): a command's edit is checked in the
/// driver's job instead, and still reaches the online professional at once, not at the next
/// background round (ten minutes away in these tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_a_node_of_many_records_is_checked_by_the_driver_and_still_pushed() {
    let mut rng = hearth_core::test_utils::TestRng::new(9);
    let t = now();
    let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let p_vault = Vault::new(MemoryStore::new());
    for i in 0..INLINE_CHECK_RECORDS {
        let (other, _) = Identity::generate(Role::Patient, format!("Other {i}"), &mut rng);
        p_vault
            .create_record(&other, NewRecord::default(), t, &mut rng)
            .unwrap();
    }
    let rid = p_vault
        .create_record(&patient, NewRecord::default(), t, &mut rng)
        .unwrap();
    let g_vault = Vault::new(MemoryStore::new());
    {
        let mut rec = p_vault.open_record(&patient, &rid).unwrap();
        grant_notes(&patient, &mut rec, &gp, &g_vault, t, &mut rng);
        rec.add_entry(
            &"notes".parse().unwrap(),
            &json!({"text": "first"}),
            t,
            &mut rng,
        )
        .unwrap();
    }
    let p_peer = patient.peer();
    let (ph, p_shared, p_addr) = node(patient, p_vault, 52_011);
    let (gh, g_shared, _) = node(gp, g_vault, 52_012);
    let outcomes = first_sync(&gh, p_peer, p_addr).await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert!(texts(&g_shared, &rid).contains("first"));

    // The driver's full check has seen every record held: more than a command checks. Then
    // the driver is left to finish what it was doing, so that only the command's own check
    // can announce the edit below.
    ph.local_change();
    eventually("the driver's check of every record", || {
        ph.changes.lock().unwrap().records_seen() > INLINE_CHECK_RECORDS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    command_adds_note(&p_shared, &ph, &rid, "written by a command");
    eventually("the command's entry at the professional", || {
        texts(&g_shared, &rid).contains("written by a command")
    })
    .await;
}

/// A store that keeps count of commits made visible before they were durable
/// ([`Store::commit_visible`]) and not flushed since: a durable commit or a flush makes every
/// earlier one durable, as in sled, whose log is replayed in order.
#[derive(Clone, Default)]
struct Deferring {
    inner: MemoryStore,
    unflushed: Arc<AtomicUsize>,
    visible: Arc<AtomicUsize>,
}

impl Store for Deferring {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan_while(&self, start: &[u8], end: &[u8], visit: Visit<'_>) -> Result<(), StoreError> {
        self.inner.scan_while(start, end, visit)
    }
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        self.unflushed.store(0, Ordering::SeqCst);
        Ok(())
    }
    fn commit_visible(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        self.visible.fetch_add(1, Ordering::SeqCst);
        self.unflushed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.unflushed.store(0, Ordering::SeqCst);
        Ok(())
    }
}

/// A pushed edit is stored visible-first at the grantee (readers see it before the grantee's
/// disk has it) and flushed before the grantee's driver counts it as received: by the time
/// the status shows it, nothing is left unflushed. It travels on the grantee's notify stream,
/// not by request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_edit_is_shown_before_the_grantees_flush_and_flushed_before_it_is_counted() {
    let (mut rng, t) = (hearth_core::test_utils::TestRng::new(11), now());
    let (patient, gp, p_vault, rid) = patient_and_gp(t, &mut rng);
    let g_store = Deferring::default();
    let g_vault = Vault::new(g_store.clone());
    {
        let mut rec = p_vault.open_record(&patient, &rid).unwrap();
        grant_notes(&patient, &mut rec, &gp, &g_vault, t, &mut rng);
    }
    let p_peer = patient.peer();
    let (ph, p_shared, p_addr) = node(patient, p_vault, 52_021);
    let (gh, g_shared, _) = node(gp, g_vault, 52_022);
    let outcomes = first_sync(&gh, p_peer, p_addr).await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    // What a round stores is durable when the round ends.
    assert_eq!(g_store.unflushed.load(Ordering::SeqCst), 0);
    let visible_before = g_store.visible.load(Ordering::SeqCst);

    for i in 0..3 {
        let text = format!("pushed {i}");
        let received = gh.status().received;
        command_adds_note(&p_shared, &ph, &rid, &text);
        eventually(
            "the pushed entry shown and counted at the professional",
            || texts(&g_shared, &rid).contains(&text) && gh.status().received > received,
        )
        .await;
        assert_eq!(
            g_store.unflushed.load(Ordering::SeqCst),
            0,
            "a push counted as received before it was flushed"
        );
    }
    // Edits close together may also travel in a round the push drew; the pushes among them
    // were stored visible-first.
    assert!(
        g_store.visible.load(Ordering::SeqCst) > visible_before,
        "no push was stored visible-first"
    );
    // The pushes went one way on the GP's notify stream, none by request.
    eventually("the patient's node counting its notifications", || {
        ph.status().notify.streamed >= 3
    })
    .await;
    assert_eq!(ph.status().notify.by_request, 0, "a push went by request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_an_edit_made_due_is_written_by_the_drivers_tick() {
    let mut rng = hearth_core::test_utils::TestRng::new(53);
    let (patient, _, p_vault, rid) = patient_and_gp(now(), &mut rng);
    let me = patient.peer();
    let (ph, p_shared, _) = node_ticking(
        patient,
        p_vault.deferring_snapshots(),
        52_031,
        Duration::from_millis(100),
    );
    adds_leaving_a_snapshot_due(&p_shared, &ph, &rid);
    eventually("the driver to write the due snapshot", || {
        lock(&p_shared).vault.snapshots_due(&me).is_empty()
    })
    .await;
    ph.shutdown().await;
}

/// A snapshot left due and no tick to write it: the driver writes it as it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_left_due_is_written_when_the_node_stops() {
    let mut rng = hearth_core::test_utils::TestRng::new(57);
    let (patient, _, p_vault, rid) = patient_and_gp(now(), &mut rng);
    let me = patient.peer();
    // The first tick comes at once, before the adds; the next not within the test.
    let (ph, p_shared, _) = node(patient, p_vault.deferring_snapshots(), 52_041);
    tokio::time::sleep(Duration::from_millis(100)).await;
    adds_leaving_a_snapshot_due(&p_shared, &ph, &rid);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lock(&p_shared).vault.snapshots_due(&me).len(), 1);
    ph.shutdown().await;
    eventually("the stopping driver to write the due snapshot", || {
        lock(&p_shared).vault.snapshots_due(&me).is_empty()
    })
    .await;
}

/// The patient's adds that make the notes section's snapshot due, under one hold of the lock
/// (so no tick comes between them and the look at what is due), told to the driver.
fn adds_leaving_a_snapshot_due<S: Store + Clone + Send + 'static>(
    shared: &SharedState<S>,
    handle: &Handle,
    rid: &RecordId,
) {
    let sh = lock(shared);
    for i in 0..hearth_core::record::SNAPSHOT_EVERY_MIN {
        let mut rec = sh.vault.open_record(&sh.identity, rid).unwrap();
        rec.add_entry(
            &"notes".parse().unwrap(),
            &json!({ "text": format!("note {i}") }),
            now(),
            &mut os_rng(),
        )
        .unwrap();
    }
    handle.changed(&sh);
    let due = sh.vault.snapshots_due(&sh.identity.peer());
    assert_eq!(due.len(), 1, "the adds left the snapshot due");
    assert_eq!(due[0].0, *rid);
}
