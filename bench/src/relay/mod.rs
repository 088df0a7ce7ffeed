//! Relays: what one organisation relay costs, each figure beside a baseline measured in the
//! same run.
//!
//! - **Throughput.** One relay (a real sled store in a temporary folder) takes on `R` patient
//!   records (1,000; 100 with `--quick`), each with a few notes and 5 grantees, exactly as
//!   patients' nodes supply it (the signed access list and the recovery key's wraps, then every
//!   bundle), and then serves every record to each of the 5 grantees. Timed: the relay's side
//!   only — decoding the request frame, [`Server::answer`] (list and signature checks, every
//!   pushed bundle's signature and chain, the durable sled commit) and encoding the answer.
//!   Baseline: the same exchanges, with frames of the same sizes, moved one after another
//!   through libp2p request-response (`hearth_sync::net` swarms, TCP on loopback, Noise,
//!   Yamux) to a server that answers with a frame of the recorded size and does nothing else.
//!   Target: the relay's rate at least 50 % of the baseline's. Three more baselines, in sled
//!   alone ([`sled_base`]): each exchange's request as one durable commit; the relay's own
//!   writes replayed, one durable commit per exchange (what keeping exactly what it keeps
//!   costs, with none of its other work); and the time the relay itself spent in those writes,
//!   in place (between them the patients' side ran, as it does between a real relay's
//!   requests). The rest of the relay's time, per exchange, is its work beside its writes.
//! - **Memory per idle connection.** `N` libp2p connections (both ends in this process) to a
//!   relay swarm, against `N` bare TCP connections on loopback (VmRSS before and after).
//! - **Storage overhead per bundle.** The relay's store (keys and values) and its sled folder
//!   on disk, against the bytes of the bundles it keeps.
//!
//! The number of records is `HEARTH_BENCH_RELAY_RECORDS`, the idle connections
//! `HEARTH_BENCH_RELAY_CONNS` (200; 50 with `--quick`).

pub(crate) mod net;
mod sled_base;

use crate::automerge_base::note;
use crate::measure::{disk_usage, ms, runtime};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, ensure};
use hearth_core::grant::Ability;
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::section::SectionName;
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::relay::StoreResponse;
use hearth_sync::relay::server::{RelayLimits, Served, Server};
use hearth_sync::relay::wire::unpad;
use hearth_sync::session::Local;
use net::identity;
use sled_base::Recording;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Grantees of each record.
const GRANTEES: usize = 5;
/// Notes in each record.
const NOTES_PER_RECORD: usize = 5;

/// `name` from the environment, or `default`.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let n_records = knob(
        "HEARTH_BENCH_RELAY_RECORDS",
        if quick { 100 } else { 1_000 },
    );
    let n_conns = knob("HEARTH_BENCH_RELAY_CONNS", if quick { 50 } else { 200 });
    eprintln!(
        "  ({n_records} records x {GRANTEES} grantees, {NOTES_PER_RECORD} notes each; relay on sled on disk; {n_conns} idle connections)"
    );
    let mut rng = TestRng::new(7);
    let rt = runtime()?;

    // Memory first, before the store phases grow the heap.
    let (p2p, tcp) = rt.block_on(net::idle_connections(n_conns, &mut rng))?;
    r.emit(Figure::new("memory_per_idle_connection", p2p / 1024.0, "KiB").baseline(tcp / 1024.0))?;

    let relay_id = identity(Role::Relay, "Riverside Relay", &mut rng);
    let grantees: Vec<Identity> = (0..GRANTEES)
        .map(|i| identity(Role::Professional, &format!("G{i}"), &mut rng))
        .collect();
    let t = Instant::now();
    let (mem, patients) = records(n_records, &relay_id, &grantees, &mut rng)?;
    eprintln!(
        "  (built {n_records} records in memory in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("relay");
    let relay = Relay {
        vault: Vault::open(Recording::new(SledStore::open(&store_dir)?))?,
        _dir: dir,
        store_dir,
        identity: relay_id,
        limits: RelayLimits::default(),
    };

    relay.vault.store().record(true);
    let (stored, bundle_bytes) = supply(&relay, &mem, &patients, &mut rng)?;
    let written = relay.vault.store().record(false);
    let served = serve(&relay, &grantees, &patients, &mut rng)?;
    ensure!(stored.bundles > 0 && served.bundles > 0, "bundles moved");

    let base_store = rt.block_on(net::request_response(&stored.exchanges, &mut rng))?;
    let base_serve = rt.block_on(net::request_response(&served.exchanges, &mut rng))?;
    for (what, p, base) in [
        ("stored", &stored, base_store),
        ("served", &served, base_serve),
    ] {
        let bytes: usize = p.exchanges.iter().map(|x| x.req + x.resp).sum();
        eprintln!(
            "  ({what}: {} bundles, {} exchanges, {:.1} MiB of frames)",
            p.bundles,
            p.exchanges.len(),
            bytes as f64 / (1024.0 * 1024.0)
        );
        r.emit(
            Figure::new(
                format!("bundles_{what}_rate"),
                p.bundles as f64 / p.time.as_secs_f64(),
                "/s",
            )
            .baseline(p.bundles as f64 / base.as_secs_f64())
            .target("ratio>=0.5"),
        )?;
    }
    // Three more baselines for storing, in sled alone: each exchange's request as one durable
    // commit; the relay's own writes replayed, one durable commit per exchange, one after
    // another; and the same writes as the relay made them, in place (the time it spent in its
    // store's commits and flushes, between which the patients' side ran: their disk and caches
    // as the relay met them).
    let (frames, replayed) = (sled_base::frames(&stored.exchanges)?, written.len());
    let replay = sled_base::replay(written)?;
    eprintln!(
        "  (the relay made {replayed} durable commits while storing; its writes took {:.0} ms of its {:.0} ms)",
        ms(stored.writes),
        ms(stored.time)
    );
    for (name, base) in [
        ("bundles_stored_rate_vs_sled", frames),
        ("bundles_stored_rate_vs_own_writes", replay),
        ("bundles_stored_rate_vs_writes_in_place", stored.writes),
    ] {
        r.emit(
            Figure::new(
                name,
                stored.bundles as f64 / stored.time.as_secs_f64(),
                "/s",
            )
            .baseline(stored.bundles as f64 / base.as_secs_f64()),
        )?;
    }
    // Of the storing time: first exchanges (access list and wraps; a record taken on), pushes.
    r.emit(Figure::new(
        "first_exchange",
        ms(stored.supplying) / n_records as f64,
        "ms",
    ))?;
    r.emit(Figure::new(
        "push_exchange",
        ms(stored.time - stored.supplying) / (stored.exchanges.len() - n_records).max(1) as f64,
        "ms",
    ))?;
    // The relay's own work beside its writes, per exchange (decoding, checks, the answer).
    r.emit(Figure::new(
        "store_work_beside_writes_per_exchange",
        ms(stored.time.saturating_sub(stored.writes)) / stored.exchanges.len().max(1) as f64,
        "ms",
    ))?;
    storage(r, &relay, stored.bundles, bundle_bytes)
}

/// What the relay keeps per bundle, against the bundles' own bytes.
fn storage(r: &mut Report, relay: &Relay, bundles: usize, bundle_bytes: usize) -> Result<()> {
    relay.vault.store().flush()?;
    let (mut keys, mut values, mut items) = (0usize, 0usize, 0usize);
    for (k, v) in relay.vault.store().scan(&[], &[0xff; 4])? {
        keys += k.len();
        values += v.len();
        items += 1;
    }
    let (apparent, allocated) = disk_usage(&relay.store_dir)?;
    let per = |x: usize| x as f64 / bundles as f64;
    eprintln!("  ({bundles} bundles kept in {items} store items)");
    r.emit(Figure::new("store_per_bundle", per(keys + values), "B").baseline(per(bundle_bytes)))?;
    r.emit(
        Figure::new("disk_apparent_per_bundle", per(apparent as usize), "B")
            .baseline(per(bundle_bytes)),
    )?;
    r.emit(
        Figure::new("disk_allocated_per_bundle", per(allocated as usize), "B")
            .baseline(per(bundle_bytes)),
    )
}

/// The patients and their records.
type Patients = Vec<(Identity, RecordId)>;

/// One request/response exchange as it crossed the relay: frame sizes.
#[derive(Clone, Copy)]
struct Exchange {
    req: usize,
    resp: usize,
}

/// A phase's exchanges and the relay's time on them.
struct Phase {
    exchanges: Vec<Exchange>,
    bundles: usize,
    time: Duration,
    /// Of `time`, the exchanges that carried an access list (a record taken on or updated).
    supplying: Duration,
    /// Of `time`, the relay's store writes (its commits and flushes).
    writes: Duration,
}

/// The relay: its identity and its store on disk.
struct Relay {
    _dir: tempfile::TempDir,
    store_dir: PathBuf,
    identity: Identity,
    vault: Vault<Recording>,
    limits: RelayLimits,
}

impl Relay {
    /// [`exchange`] with this relay, and the part of its time spent in the store's writes.
    /// The time the store's recording of the writes took (the benchmark's own bookkeeping) is
    /// not counted as the relay's.
    fn exchange(
        &self,
        from: &Identity,
        frame: &[u8],
    ) -> Result<(StoreResponse, Served, usize, Duration, Duration)> {
        let (writes, copies) = self.vault.store().spent();
        let (resp, served, len, took) =
            exchange(&self.vault, &self.identity, &self.limits, from, frame)?;
        let (writes_after, copies_after) = self.vault.store().spent();
        Ok((
            resp,
            served,
            len,
            took.saturating_sub(copies_after - copies),
            writes_after - writes,
        ))
    }
}

/// Decodes `frame`, answers it as the relay `relay` (its store `vault`, its `limits`) does for
/// `from`, and encodes the answer: (the answer, what it did, the answer's frame size, the
/// relay's time). A refusal or a rejected bundle is an error: the benchmarks feed only
/// requests a relay takes.
pub(crate) fn exchange<S: Store>(
    vault: &Vault<S>,
    relay: &Identity,
    limits: &RelayLimits,
    from: &Identity,
    frame: &[u8],
) -> Result<(StoreResponse, Served, usize, Duration)> {
    let server = Server::new(vault, relay, limits);
    let t = Instant::now();
    let Message::Store(req) = protocol::decode(frame)? else {
        anyhow::bail!("a store request decoded as something else")
    };
    let (resp, served) = server.answer(from.peer(), req, TEST_NOW, &mut TestRng::new(9))?;
    let out = protocol::encode(&Message::Stored(resp.clone()));
    let took = t.elapsed();
    ensure!(!served.refused, "the relay refused a request");
    ensure!(served.rejected == 0, "the relay rejected a bundle");
    Ok((resp, served, out.len(), took))
}

/// The patients' records (in memory: only the relay's side is measured), each with
/// [`NOTES_PER_RECORD`] notes, a `relay` grant to the relay and a read grant to each grantee.
fn records(
    n: usize,
    relay: &Identity,
    grantees: &[Identity],
    rng: &mut TestRng,
) -> Result<(Vault<MemoryStore>, Patients)> {
    let mem = Vault::new(MemoryStore::new());
    let notes: SectionName = "notes".parse()?;
    let mut out = Vec::with_capacity(n);
    for r in 0..n {
        let (patient, rid) = patient_record(&mem, &format!("P{r}"), TEST_NOW, rng);
        {
            let mut rec = mem.open_record(&patient, &rid)?;
            for i in 0..NOTES_PER_RECORD {
                rec.add_entry(&notes, &note(r * 100 + i), TEST_NOW, rng)?;
            }
            record_grant(
                &patient,
                &mut rec,
                relay.peer(),
                "notes",
                Ability::Relay,
                TEST_NOW,
                365,
                rng,
            );
            for g in grantees {
                record_grant(
                    &patient,
                    &mut rec,
                    g.peer(),
                    "notes",
                    Ability::Read,
                    TEST_NOW,
                    365,
                    rng,
                );
            }
        }
        out.push((patient, rid));
    }
    Ok((mem, out))
}

/// Each patient supplies the relay: its first request (list, wraps, what it holds), then
/// pushes until the relay holds everything. Returns the phase and the bundles' own bytes.
fn supply(
    relay: &Relay,
    mem: &Vault<MemoryStore>,
    patients: &[(Identity, RecordId)],
    rng: &mut TestRng,
) -> Result<(Phase, usize)> {
    let (mut exchanges, mut bundles, mut time, mut bundle_bytes) =
        (Vec::new(), 0, Duration::ZERO, 0);
    let (mut supplying, mut writes) = (Duration::ZERO, Duration::ZERO);
    let relay_peer = relay.identity.peer();
    for (patient, rid) in patients {
        let local = Local::new(mem, patient);
        let mut req = Some(local.relay_start(*rid, relay_peer, TEST_NOW, rng)?);
        while let Some(r) = req.take() {
            for p in &r.push {
                bundle_bytes += unpad(p).context("a padded bundle")?.len();
            }
            let with_list = r.access.is_some();
            let frame = protocol::encode(&Message::Store(r));
            let (resp, did, resp_len, took, wrote) = relay.exchange(patient, &frame)?;
            if with_list {
                supplying += took;
            }
            writes += wrote;
            exchanges.push(Exchange {
                req: frame.len(),
                resp: resp_len,
            });
            bundles += did.stored;
            time += took;
            req = local
                .on_relay_response(relay_peer, *rid, resp, TEST_NOW, rng)?
                .0;
        }
    }
    let phase = Phase {
        exchanges,
        bundles,
        time,
        supplying,
        writes,
    };
    Ok((phase, bundle_bytes))
}

/// Each grantee fetches each record from the relay (it holds nothing yet).
fn serve(
    relay: &Relay,
    grantees: &[Identity],
    patients: &[(Identity, RecordId)],
    rng: &mut TestRng,
) -> Result<Phase> {
    let (mut exchanges, mut bundles, mut time) = (Vec::new(), 0, Duration::ZERO);
    let empty = Vault::new(MemoryStore::new());
    let relay_peer = relay.identity.peer();
    // The relay's access receipts, written as its daemon does: in one commit per tick, or at
    // once when 256 are waiting (timed with the serving).
    let mut receipts = Vec::new();
    let write = |receipts: &mut Vec<_>| -> Result<Duration> {
        let t = Instant::now();
        relay
            .vault
            .journal_many(&relay.identity, std::mem::take(receipts), TEST_NOW)?;
        Ok(t.elapsed())
    };
    for g in grantees {
        let local = Local::new(&empty, g);
        for (_, rid) in patients {
            let req = local.relay_start(*rid, relay_peer, TEST_NOW, rng)?;
            let frame = protocol::encode(&Message::Store(req));
            let (resp, did, resp_len, took, _) = relay.exchange(g, &frame)?;
            ensure!(
                !resp.bundles.is_empty() && !resp.more,
                "the relay served the whole record at once"
            );
            exchanges.push(Exchange {
                req: frame.len(),
                resp: resp_len,
            });
            bundles += did.sent;
            time += took;
            receipts.extend(did.receipt);
            if receipts.len() >= 256 {
                time += write(&mut receipts)?;
            }
        }
    }
    time += write(&mut receipts)?;
    Ok(Phase {
        exchanges,
        bundles,
        time,
        supplying: Duration::ZERO,
        writes: Duration::ZERO,
    })
}
