//! Over libp2p on loopback (DESIGN §11): an initial sync, and an edit's delay to an online
//! grantee.
//!
//! Two live nodes in one process, each with its own sled store on disk and its own swarm on
//! TCP 127.0.0.1 (Noise, Yamux), driven by the daemon's sync driver (`hearth_node::live`).
//!
//! - *Initial sync*: a patient record of 10,000 notes (one bundle each); the clock runs from
//!   the GP's first dial (handshake included) until its sync round reports back, and the GP
//!   is then checked to hold every note. Baseline: automerge's own sync of the same notes
//!   between two in-memory documents.
//! - *A command's add* on the patient's record after it (10,000 notes; 1,000 in a quick run):
//!   through a vault beside the daemon's own, as a command in the daemon now adds
//!   (`live.command_add_*_beside`), against a fresh vault over the same store, as every
//!   command did before (its baseline): what the daemon's memory of opened records saves.
//! - *Edit delay*: on a fresh pair with a small record, the patient adds a note (one durable
//!   write) and checks what to announce under the same lock, exactly as the daemon does after
//!   a command ([`Handle::changed`](hearth_node::live::Handle::changed)), from a task on one of
//!   the runtime's workers through [`run_blocking`], as the daemon's request handler runs a
//!   command; the clock starts when that task does and
//!   stops when the GP's node has stored the new bundle where its readers see it (before
//!   its flush). Where the time went, part by part, from the stages the nodes mark
//!   ([`live_stages`]: `live.edit_part_*`). Reported beside it: the patient's
//!   durable add alone (open the record, add, flush), which every edit pays before anything is
//!   announced, and the floor under the delay measured in the same run ([`live_floor`]: the
//!   patient's sled insert+flush, one frame's one-way trip over libp2p, and the grantee's sled
//!   insert, which reads see before it is flushed; each after the same pause as an edit), and
//!   the floor's insert+flush alone (`live.sled_quiet_insert_flush_median`), and the same
//!   floor made back to back, as an edit makes it (`live.edit_visible_floor_back_to_back`).
//!   Above the floor, the limit ([`live_limit`]: `live.edit_visible_limit`): the floor plus
//!   the work every edit needs (the change made and sealed, the bundle checked and opened),
//!   done after the same pause on the very notes the timed edits wrote
//!   (`live.edit_work_median`); what an edit takes above it is the nodes' own.
//! - *The tail*, for the p99 target: the same limit's 99th percentile
//!   (`live.edit_visible_limit_p99`, its floor's beside it), the quiet insert+flush's
//!   (`live.sled_quiet_insert_flush_p99`), the patient's durable add's
//!   (`live.edit_durable_add_p99`), and the longest an edit's add waited for the patient
//!   node's lock (`live.edit_lock_wait_max`), held meanwhile by one of the node's own jobs: a
//!   slow edit is told apart as the disk's (its add or the floor slow too) or the node's.
//! - *An edit by command*, on the same nodes: the same note added by `hearth record add` as the
//!   daemon runs it for its exec endpoint and the web app's routes ([`live_command`]), timed
//!   the same way (`live.edit_command_visible_*`, the same targets): what a person's edit
//!   meets, the command's own work (its arguments parsed, its context made, its JSON answer)
//!   included; the passphrase's check, paid at a web login and not at each edit, left out.

use crate::automerge_base::{self, note};
use crate::live_command;
use crate::live_floor;
use crate::live_limit;
use crate::live_node::live_node;
use crate::live_stages;
use crate::measure::{median, ms, quantile, run_nodes, size_label};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, ensure};
use hearth_core::grant::Ability;
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::section::SectionName;
use hearth_core::test_utils::{patient_record, record_grant};
use hearth_node::live::{self, Handle, LiveConfig, SharedState};
use hearth_node::os::{now, os_rng};
use hearth_node::runtime::run_blocking;
use hearth_node::sled_store::SledStore;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let edits = if quick { 100 } else { 300 };
    let initial = if quick { 1_000 } else { 10_000 };
    run_nodes(async move {
        let big = setup(initial).await?;
        let (baseline, _, _) = automerge_base::initial_sync(initial)?;
        r.emit(
            Figure::new(
                format!("initial_{}_tcp", size_label(initial)),
                ms(big.initial_time),
                "ms",
            )
            .baseline(ms(baseline))
            .target("ratio<=1.0"),
        )?;
        let (beside, fresh) = command_adds(&big, if quick { 10 } else { 20 })?;
        r.emit(
            Figure::new(
                format!("command_add_{}_beside", size_label(initial)),
                beside,
                "ms",
            )
            .baseline(fresh),
        )?;
        drop(big);
        // The edit delay on a small record, so that it measures propagation rather than the
        // cost of adding to a long section.
        let written = edit_delay(r, setup(1).await?, edits).await?;
        let (mut floor, mut durable): (Vec<f64>, Vec<f64>) = live_floor::edit_visible_floor(edits)
            .await?
            .into_iter()
            .map(|(f, d)| (ms(f), ms(d)))
            .unzip();
        let mut work: Vec<f64> = live_limit::edit_work(written)
            .await?
            .into_iter()
            .map(ms)
            .collect();
        // Each floor sample with one sample of the work.
        let mut limit: Vec<f64> = floor.iter().zip(&work).map(|(f, w)| f + w).collect();
        r.emit(Figure::new(
            "edit_visible_floor",
            quantile(&mut floor, 0.5),
            "ms",
        ))?;
        r.emit(Figure::new(
            "edit_work_median",
            quantile(&mut work, 0.5),
            "ms",
        ))?;
        r.emit(
            Figure::new("edit_visible_limit", quantile(&mut limit, 0.5), "ms")
                .baseline(quantile(&mut floor, 0.5)),
        )?;
        r.emit(
            Figure::new("edit_visible_limit_p99", quantile(&mut limit, 0.99), "ms")
                .baseline(quantile(&mut floor, 0.99)),
        )?;
        r.emit(Figure::new(
            "sled_quiet_insert_flush_median",
            quantile(&mut durable, 0.5),
            "ms",
        ))?;
        r.emit(Figure::new(
            "sled_quiet_insert_flush_p99",
            quantile(&mut durable, 0.99),
            "ms",
        ))?;
        let mut back_to_back: Vec<f64> = live_floor::edit_visible_floor_back_to_back(edits)
            .await?
            .into_iter()
            .map(ms)
            .collect();
        r.emit(
            Figure::new(
                "edit_visible_floor_back_to_back",
                quantile(&mut back_to_back, 0.5),
                "ms",
            )
            .baseline(quantile(&mut floor, 0.5)),
        )
    })
}

/// Two connected live nodes after their initial sync.
struct Setup {
    _dir: tempfile::TempDir,
    ph: Handle,
    p_shared: SharedState<SledStore>,
    gh: Handle,
    rid: RecordId,
    initial_time: Duration,
}

/// Two connected live nodes: a patient whose record holds `initial` notes (one bundle each)
/// and a GP granted `notes`, after their initial sync, which is timed.
async fn setup(initial: usize) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let mut rng = os_rng();
    let t = now();
    let p_vault = Vault::open(SledStore::open(&dir.path().join("p"))?)?;
    let (patient, rid) = patient_record(&p_vault, "Pat", t, &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
    let g_vault = Vault::open(SledStore::open(&dir.path().join("g"))?)?;
    let notes: SectionName = "notes".parse()?;
    {
        let mut rec = p_vault.open_record(&patient, &rid)?;
        // One bundle per note, as a record written over months would be.
        for i in 0..initial {
            rec.add_entry(&notes, &note(i), t, &mut rng)?;
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
        g_vault.hold_grant(&rid, &[g])?;
    }
    let p_peer = patient.peer();
    let (ph, p_shared, p_addr) = live_node(patient, p_vault, LiveConfig::default()).await?;
    let (gh, g_shared, _) = live_node(gp, g_vault, LiveConfig::default()).await?;
    // Initial sync: dial, handshake, and rounds until the GP holds every note (the GP's
    // catch-up round on connecting, then the one asked for).
    let t_initial = Instant::now();
    gh.add_peer(p_peer, p_addr);
    let h = gh.clone();
    let first = tokio::task::spawn_blocking(move || {
        h.sync_blocking(Some(p_peer), Duration::from_secs(300))
    })
    .await??;
    let initial_time = t_initial.elapsed();
    ensure!(
        first.iter().all(|o| o.result.is_ok()),
        "the initial sync failed: {first:?}"
    );
    {
        let g = live::lock(&g_shared);
        let mut replica = g.vault.open_record(&g.identity, &rid)?;
        let held = replica.show(&notes)?.entries.len();
        ensure!(
            held == initial,
            "the GP holds every note ({held} of {initial})"
        );
    }
    Ok(Setup {
        _dir: dir,
        ph,
        p_shared,
        gh,
        rid,
        initial_time,
    })
}

/// An add of one note to the patient's record of `initial` notes, `n` times as a command in
/// the daemon makes it (through a vault beside the daemon's own), then `n` times through a
/// fresh vault over the same store (as every command did before session 24: its records
/// opened cold, the keys unwrapped, the auth document and the section read again). Medians,
/// in milliseconds: (beside, fresh).
fn command_adds(s: &Setup, n: usize) -> Result<(f64, f64)> {
    let notes: SectionName = "notes".parse()?;
    let g = live::lock(&s.p_shared);
    let add = |vault: &Vault<SledStore>, i: usize| -> Result<f64> {
        let t = Instant::now();
        let mut rec = vault.open_record(&g.identity, &s.rid)?;
        rec.add_entry(
            &notes,
            &json!({ "text": format!("command {i}") }),
            now(),
            &mut os_rng(),
        )?;
        Ok(ms(t.elapsed()))
    };
    // One add first, so that the vault's memory holds what a running daemon's would.
    add(&g.vault.beside(), 0)?;
    let beside = (0..n)
        .map(|i| add(&g.vault.beside(), i))
        .collect::<Result<Vec<_>>>()?;
    let fresh = (0..n)
        .map(|i| add(&Vault::new(g.vault.store().clone()), i))
        .collect::<Result<Vec<_>>>()?;
    Ok((median(beside), median(fresh)))
}

/// The patient's edit `i`, as a command in the daemon makes it (through a vault beside the
/// daemon's own): the note added durably, then what to announce checked under the same
/// lock. When the add ended, and how long it waited for the lock.
fn edit(
    shared: &SharedState<SledStore>,
    handle: &Handle,
    rid: RecordId,
    notes: &SectionName,
    i: usize,
) -> Result<(Instant, Duration)> {
    let asked = Instant::now();
    let g = live::lock(shared);
    let waited = asked.elapsed();
    {
        let vault = g.vault.beside();
        let mut rec = vault.open_record(&g.identity, &rid)?;
        let mut rng = os_rng();
        rec.add_entry(
            notes,
            &json!({ "text": format!("note {i}") }),
            now(),
            &mut rng,
        )?;
    }
    let added = Instant::now();
    // As the daemon does after a command, before letting go of the lock.
    handle.changed(&g);
    Ok((added, waited))
}

/// `n` edits on the patient's node, each timed until the GP's node has stored it, then `n`
/// more made by command. The section's first entry and the `n` the timed edits wrote, as its
/// document holds them (for [`live_limit`]).
async fn edit_delay(r: &mut Report, s: Setup, n: usize) -> Result<Vec<(String, String)>> {
    let Setup {
        _dir,
        ph,
        p_shared,
        gh,
        rid,
        ..
    } = s;
    // Let the connection settle (both sides' catch-up rounds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes: SectionName = "notes".parse()?;
    let mut delays = Vec::with_capacity(n);
    let mut adds = Vec::with_capacity(n);
    let mut waits = Vec::with_capacity(n);
    let mut received = gh.received();
    let mut parts = live_stages::Parts::default();
    live_stages::record(true);
    for i in 0..n {
        let before = *received.borrow_and_update();
        let (sh, handle) = (p_shared.clone(), ph.clone());
        // As the daemon runs a command: its request handler, a task on one of the runtime's
        // workers, runs the command's work through `run_blocking`; the clock starts when the
        // handler does.
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            (
                t0,
                run_blocking(move || edit(&sh, &handle, rid, &notes, i)).await,
            )
        });
        let (t0, done) = task.await?;
        let (added, waited) = done.context("the edit panicked")??;
        waits.push(ms(waited));
        let seen = arrived(&mut received, before, i).await?;
        delays.push(ms(seen - t0));
        adds.push(ms(added - t0));
        parts.add(&live_stages::Edit {
            start: t0,
            added,
            seen,
        });
        // Space the edits out, as a person would: each starts on a quiet network and disk.
        tokio::time::sleep(live_floor::PAUSE).await;
    }
    r.emit(
        Figure::new("edit_visible_median", quantile(&mut delays, 0.5), "ms").target("value<=1.0"),
    )?;
    r.emit(
        Figure::new("edit_visible_p99", quantile(&mut delays, 0.99), "ms").target("value<=5.0"),
    )?;
    r.emit(Figure::new(
        "edit_durable_add_median",
        quantile(&mut adds, 0.5),
        "ms",
    ))?;
    r.emit(Figure::new(
        "edit_durable_add_p99",
        quantile(&mut adds, 0.99),
        "ms",
    ))?;
    r.emit(Figure::new(
        "edit_lock_wait_max",
        quantile(&mut waits, 1.0),
        "ms",
    ))?;
    live_stages::record(false);
    parts.emit(r, n)?;
    // The same edit made by the command a person runs (`hearth record add`, through the
    // daemon's exec or a route of the web app), on the same nodes.
    let daemon = Arc::new(live_command::Daemon::new(
        &_dir.path().join("p-home"),
        ph,
        p_shared.clone(),
        rid,
    )?);
    let mut delays = Vec::with_capacity(n);
    for i in 0..n {
        let before = *received.borrow_and_update();
        let d = daemon.clone();
        let argv: Vec<String> = ["--json", "record", "add", "notes", "--entry"]
            .into_iter()
            .map(String::from)
            .chain([json!({ "text": format!("command note {i}") }).to_string()])
            .collect();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            (t0, run_blocking(move || d.run(&argv)).await)
        });
        let (t0, done) = task.await?;
        done.context("the command panicked")??;
        let seen = arrived(&mut received, before, i).await?;
        delays.push(ms(seen - t0));
        tokio::time::sleep(live_floor::PAUSE).await;
    }
    r.emit(
        Figure::new(
            "edit_command_visible_median",
            quantile(&mut delays, 0.5),
            "ms",
        )
        .target("value<=1.0"),
    )?;
    r.emit(
        Figure::new(
            "edit_command_visible_p99",
            quantile(&mut delays, 0.99),
            "ms",
        )
        .target("value<=5.0"),
    )?;
    let g = live::lock(&p_shared);
    let shown = g.vault.open_record(&g.identity, &rid)?.show(&notes)?;
    shown
        .entries
        .into_iter()
        .take(1 + n)
        .map(|e| {
            let (k, v) = automerge_base::stored_item(notes.class, e);
            Ok((k, v?))
        })
        .collect()
}

/// When the GP's node has stored edit `i`: its count of bundles received passed `before`.
async fn arrived(
    received: &mut tokio::sync::watch::Receiver<u64>,
    before: u64,
    i: usize,
) -> Result<Instant> {
    while *received.borrow_and_update() <= before {
        tokio::time::timeout(Duration::from_secs(10), received.changed())
            .await
            .with_context(|| format!("edit {i} never arrived"))??;
    }
    Ok(Instant::now())
}
