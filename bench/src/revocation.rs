//! Revocation to refusal across three online nodes (issue #14).
//!
//! Three live nodes in one process — a patient, a GP and a nurse, both granted `notes` — each
//! with its own sled store on disk and its own swarm on TCP 127.0.0.1 (Noise, Yamux), driven by
//! the daemon's sync driver (`hearth_node::live`), connected to the patient's node. Each run
//! starts three fresh nodes (so each is a record's first revocation), gives the nurse her grant
//! and brings both grantees in sync; then the patient revokes the nurse's grant exactly as
//! `hearth grant revoke` does (`OpenRecord::revoke`: the signed revocation, then notes and the
//! auth document moved to new keys, each durably committed) and announces the change as the
//! daemon does after a command. The clock starts when the revocation is committed, and stops:
//!
//! - **refusal**: when the nurse's next sync attempt, made at once, has been refused by the
//!   patient's node and the nurse's node has kept the signed revocation;
//! - **rekey**: when the GP's node holds the new keys of notes and the auth document (sent by
//!   the patient's node in the round its change notification draws).
//!
//! Baseline, in the same run between the same nodes: one plain sync round with nothing to
//! move (nurse to patient, and GP to patient), just before each revocation. Background rounds
//! are switched off (an interval of an hour) so that no round of the driver's own coincides
//! with the measured ones; in a running daemon the revoked node makes its next attempt at its
//! next background round (`--sync-interval`, 5 s by default), which this does not count.

use crate::live_node::live_node;
use crate::measure::{ms, quantile, run_nodes};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, ensure};
use hearth_core::grant::{Ability, Grant};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::section::SectionName;
use hearth_core::test_utils::{patient_record, record_grant};
use hearth_node::live::{self, Handle, LiveConfig, SharedState};
use hearth_node::os::{now, os_rng};
use hearth_node::sled_store::SledStore;
use hearth_sync::round::RoundOutcome;
use serde_json::json;
use std::time::{Duration, Instant};

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let runs = if quick { 20 } else { 100 };
    run_nodes(async move {
        // One run to warm up (the runtime, the allocator, the page cache), not counted.
        one_run(&setup().await?).await?;
        let mut all = Vec::with_capacity(runs);
        for _ in 0..runs {
            // Fresh nodes each time, so that every run is a record's first revocation (each
            // rotation adds key epochs that every later opening of the record unwraps).
            all.push(one_run(&setup().await?).await?);
        }
        let col = |f: fn(&Run) -> f64| -> Vec<f64> { all.iter().map(f).collect() };
        let (mut refusal, mut rekey) = (col(|r| r.refusal), col(|r| r.rekey));
        let (mut plain_n, mut plain_g) = (col(|r| r.plain_nurse), col(|r| r.plain_gp));
        let mut commit = col(|r| r.commit);
        let (base_n, base_g) = (quantile(&mut plain_n, 0.5), quantile(&mut plain_g, 0.5));
        r.emit(Figure::new("refusal_median", quantile(&mut refusal, 0.5), "ms").baseline(base_n))?;
        r.emit(
            Figure::new("refusal_p99", quantile(&mut refusal, 0.99), "ms")
                .baseline(quantile(&mut plain_n, 0.99)),
        )?;
        r.emit(Figure::new("rekey_median", quantile(&mut rekey, 0.5), "ms").baseline(base_g))?;
        r.emit(
            Figure::new("rekey_p99", quantile(&mut rekey, 0.99), "ms")
                .baseline(quantile(&mut plain_g, 0.99)),
        )?;
        r.emit(Figure::new(
            "revoke_commit_median",
            quantile(&mut commit, 0.5),
            "ms",
        ))?;
        r.emit(Figure::new(
            "revoke_commit_p99",
            quantile(&mut commit, 0.99),
            "ms",
        ))
    })
}

/// One live node: its handle and shared state.
struct Live {
    h: Handle,
    s: SharedState<SledStore>,
}

/// The three nodes of a run.
struct Nodes {
    _dir: tempfile::TempDir,
    patient: Live,
    gp: Live,
    nurse: Live,
    p_peer: PeerKey,
    rid: RecordId,
    notes: SectionId,
}

/// The patient (a record of 20 notes, the GP granted `notes`), the GP and the nurse, live and
/// connected to the patient's node, the GP in sync.
async fn setup() -> Result<Nodes> {
    let dir = tempfile::tempdir()?;
    let mut rng = os_rng();
    let t = now();
    let store = |name: &str| -> Result<Vault<SledStore>> {
        Ok(Vault::open(SledStore::open(&dir.path().join(name))?)?)
    };
    let p_vault = store("p")?;
    let (patient, rid) = patient_record(&p_vault, "Pat", t, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let (nurse, _) = Identity::generate(Role::Professional, "Sam".into(), &mut rng);
    let g_vault = store("g")?;
    let notes_name: SectionName = "notes".parse()?;
    let notes = {
        let mut rec = p_vault.open_record(&patient, &rid)?;
        for i in 0..20 {
            rec.add_entry(
                &notes_name,
                &json!({"text": format!("note {i}: reviewed at home, mobility stable")}),
                t,
                &mut rng,
            )?;
        }
        let g = record_grant(
            &patient,
            &mut rec,
            gp.peer(),
            "notes",
            Ability::Read,
            t,
            30,
            &mut rng,
        );
        g_vault.hold_grant(&rid, &[g])?;
        *rec.directory()
            .iter()
            .find(|(_, n)| **n == notes_name)
            .context("the notes section is in the directory")?
            .0
    };
    let p_peer = patient.peer();
    let config = LiveConfig {
        interval: Duration::from_secs(3600),
        ..LiveConfig::default()
    };
    let (ph, ps, p_addr) = live_node(patient, p_vault, config.clone()).await?;
    let (gh, gs, _) = live_node(gp, g_vault, config.clone()).await?;
    let (nh, ns, _) = live_node(nurse, store("n")?, config).await?;
    gh.add_peer(p_peer, p_addr.clone());
    nh.add_peer(p_peer, p_addr);
    let gp = Live { h: gh, s: gs };
    ensure!(in_sync(&sync(&gp, p_peer).await?), "the GP's first sync");
    Ok(Nodes {
        _dir: dir,
        patient: Live { h: ph, s: ps },
        gp,
        nurse: Live { h: nh, s: ns },
        p_peer,
        rid,
        notes,
    })
}

/// A round of `node` with `peer`, waited for.
async fn sync(node: &Live, peer: PeerKey) -> Result<Vec<RoundOutcome>> {
    let h = node.h.clone();
    let outcomes =
        tokio::task::spawn_blocking(move || h.sync_blocking(Some(peer), Duration::from_secs(60)))
            .await??;
    Ok(outcomes)
}

/// Whether every round reported the two sides in sync.
fn in_sync(outcomes: &[RoundOutcome]) -> bool {
    !outcomes.is_empty()
        && outcomes
            .iter()
            .all(|o| o.result.as_ref().is_ok_and(|r| r.in_sync))
}

/// Runs `f` on `node`'s shared state (its vault and identity), on the blocking pool.
async fn with<T: Send + 'static>(
    node: &Live,
    f: impl FnOnce(&Vault<SledStore>, &Identity) -> T + Send + 'static,
) -> Result<T> {
    let s = node.s.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let g = live::lock(&s);
        f(&g.vault, &g.identity)
    })
    .await?)
}

/// The newest key epoch `identity` holds of `section`.
fn newest(
    vault: &Vault<SledStore>,
    identity: &Identity,
    rid: &RecordId,
    section: SectionId,
) -> Result<u32> {
    Ok(vault
        .open_record(identity, rid)?
        .keys_held()
        .into_iter()
        .filter(|(s, _)| *s == section)
        .map(|(_, e)| e)
        .max()
        .unwrap_or(0))
}

/// Gives the nurse a grant to `notes` and brings both grantees in sync.
async fn new_reader(n: &Nodes) -> Result<Grant> {
    let (rid, nurse_peer) = (n.rid, with(&n.nurse, |_, id| id.peer()).await?);
    let g = with(&n.patient, move |vault, patient| -> Result<Grant> {
        let mut rec = vault.open_record(patient, &rid)?;
        Ok(record_grant(
            patient,
            &mut rec,
            nurse_peer,
            "notes",
            Ability::Read,
            now(),
            30,
            &mut os_rng(),
        ))
    })
    .await??;
    let held = g.clone();
    with(&n.nurse, move |vault, _| vault.hold_grant(&rid, &[held])).await??;
    n.patient.h.local_change();
    ensure!(
        in_sync(&sync(&n.nurse, n.p_peer).await?),
        "the nurse's sync"
    );
    ensure!(in_sync(&sync(&n.gp, n.p_peer).await?), "the GP's sync");
    Ok(g)
}

/// One run's figures, in milliseconds.
struct Run {
    plain_nurse: f64,
    plain_gp: f64,
    commit: f64,
    refusal: f64,
    rekey: f64,
}

/// One revocation on fresh nodes, with its baseline rounds just before.
async fn one_run(n: &Nodes) -> Result<Run> {
    let (rid, notes, p_peer) = (n.rid, n.notes, n.p_peer);
    let g = new_reader(n).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Baseline: one plain round each, nothing to move.
    let t = Instant::now();
    ensure!(in_sync(&sync(&n.nurse, p_peer).await?), "a plain round");
    let plain_nurse = ms(t.elapsed());
    let t = Instant::now();
    ensure!(in_sync(&sync(&n.gp, p_peer).await?), "a plain round");
    let plain_gp = ms(t.elapsed());

    // The revocation, committed; then the daemon's announcement of the change.
    let mut gp_received = n.gp.h.received();
    gp_received.borrow_and_update();
    let revoked = g.clone();
    let (commit, committed, want) = with(&n.patient, move |vault, patient| -> Result<_> {
        let t = Instant::now();
        let mut rec = vault.open_record(patient, &rid)?;
        ensure!(
            rec.revoke(&revoked, now(), &mut os_rng())? == 2,
            "the revocation moves two sections to new keys"
        );
        let committed = Instant::now();
        drop(rec);
        let want = (
            newest(vault, patient, &rid, notes)?,
            newest(vault, patient, &rid, SectionId::AUTH)?,
        );
        Ok((ms(committed - t), committed, want))
    })
    .await??;
    n.patient.h.local_change();

    // The nurse's next attempt, at once; meanwhile the GP is told and fetches the new keys.
    let nurse = n.nurse.h.clone();
    let attempt = tokio::task::spawn_blocking(move || {
        let out = nurse.sync_blocking(Some(p_peer), Duration::from_secs(60));
        (out, Instant::now())
    });
    let rekeyed = loop {
        tokio::time::timeout(Duration::from_secs(30), gp_received.changed())
            .await
            .context("the GP never received the rotation")??;
        let now_held = with(&n.gp, move |vault, gp| -> Result<_> {
            Ok((
                newest(vault, gp, &rid, notes)?,
                newest(vault, gp, &rid, SectionId::AUTH)?,
            ))
        })
        .await??;
        if now_held == want {
            break Instant::now();
        }
    };
    let (outcomes, refused) = attempt.await?;
    let outcomes = outcomes?;
    ensure!(
        !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| o.result.as_ref().is_err_and(|e| e.is_refusal())),
        "the revoked nurse was not refused: {outcomes:?}"
    );
    let gid = g.id();
    let learnt = with(&n.nurse, move |vault, _| {
        vault
            .learnt_revocations(&rid)
            .iter()
            .any(|r| r.grant == gid && r.verify())
    })
    .await?;
    ensure!(
        learnt,
        "the nurse's node did not keep the signed revocation"
    );
    Ok(Run {
        plain_nurse,
        plain_gp,
        commit,
        refusal: ms(refused - committed),
        rekey: ms(rekeyed - committed),
    })
}
