//! Relay benchmarks: what one organisation relay costs, each figure beside a baseline measured
//! in the same run.
//!
//! - **Throughput.** One relay (a real sled store in a temporary folder) takes on `R` patient
//!   records (default 1,000), each with a few notes and 5 grantees, exactly as patients' nodes
//!   supply it (the signed access list and the recovery key's wraps, then every bundle), and
//!   then serves every record to each of the 5 grantees. Timed: the relay's side only —
//!   decoding the request frame, [`Server::answer`] (list and signature checks, every pushed
//!   bundle's signature and chain, the durable sled commit) and encoding the answer. Baseline:
//!   the same exchanges, with frames of the same sizes, moved one after another through
//!   libp2p request-response (`hearth_sync::net` swarms, TCP on loopback, Noise, Yamux) to a
//!   server that answers with a frame of the recorded size and does nothing else. Target:
//!   the relay's rate at least 50 % of the baseline's.
//! - **Memory per idle connection.** `N` libp2p connections (both ends in this process) to a
//!   relay swarm, against `N` bare TCP connections on loopback (VmRSS before and after).
//! - **Storage overhead per bundle.** The relay's store (keys and values) and its sled folder
//!   on disk, against the bytes of the bundles it keeps.
//!
//! `cargo bench -p hearth-node --bench relay --locked` (`-- quick` for a short run). The
//! number of records is `HEARTH_BENCH_RELAY_RECORDS` (default 1,000; 100 with `quick`), the
//! idle connections `HEARTH_BENCH_RELAY_CONNS` (default 200; 50 with `quick`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use hearth_core::grant::Ability;
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::net::{self, BehaviourEvent, NetConfig};
use hearth_sync::protocol::{self, Message};
use hearth_sync::relay::server::{RelayLimits, Served, Server};
use hearth_sync::session::Local;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const GRANTEES: usize = 5;
const NOTES_PER_RECORD: usize = 5;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn note(i: usize) -> serde_json::Value {
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. \
        Daughter present; discussed respite options and medication timing. Plan: review in two weeks.")})
}

/// VmRSS of this process, in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// (apparent bytes, allocated bytes) of the files under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut out = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            let (a, b) = disk_usage(&e.path());
            out.0 += a;
            out.1 += b;
        } else {
            out.0 += m.len();
            out.1 += m.blocks() * 512;
        }
    }
    out
}

/// One request/response exchange as it crossed the relay: frame sizes and what it did.
#[derive(Clone, Copy)]
struct Exchange {
    req: usize,
    resp: usize,
}

struct Phase {
    exchanges: Vec<Exchange>,
    bundles: usize,
    time: Duration,
    /// Of `time`, the exchanges that carried an access list (a record taken on or updated).
    supplying: Duration,
}

struct Relay {
    _dir: tempfile::TempDir,
    store_dir: std::path::PathBuf,
    identity: Identity,
    vault: Vault<SledStore>,
    limits: RelayLimits,
}

impl Relay {
    /// Decodes `frame`, answers it as the relay does for `from`, and encodes the answer:
    /// (the answer, what it did, the answer's frame size, time taken).
    fn exchange(
        &self,
        from: &Identity,
        frame: &[u8],
    ) -> (hearth_sync::relay::StoreResponse, Served, usize, Duration) {
        let server = Server::new(&self.vault, &self.identity, &self.limits);
        let t = Instant::now();
        let Message::Store(req) = protocol::decode(frame).unwrap() else {
            unreachable!()
        };
        let (resp, served) = server
            .answer(from.peer(), req, TEST_NOW, &mut TestRng::new(9))
            .unwrap();
        let out = protocol::encode(&Message::Stored(resp.clone()));
        let took = t.elapsed();
        assert!(!served.refused, "the relay refused a request");
        assert_eq!(served.rejected, 0, "the relay rejected a bundle");
        (resp, served, out.len(), took)
    }
}

/// The patients' records (in memory: only the relay's side is measured), each with
/// [`NOTES_PER_RECORD`] notes, a `relay` grant to the relay and a read grant to each grantee.
fn records(
    n: usize,
    relay: &Identity,
    grantees: &[Identity],
    rng: &mut TestRng,
) -> (Vault<MemoryStore>, Vec<(Identity, RecordId)>) {
    let mem = Vault::new(MemoryStore::new());
    let notes = "notes".parse().unwrap();
    let mut out = Vec::with_capacity(n);
    for r in 0..n {
        let (patient, rid) = patient_record(&mem, &format!("P{r}"), TEST_NOW, rng);
        {
            let mut rec = mem.open_record(&patient, &rid).unwrap();
            for i in 0..NOTES_PER_RECORD {
                rec.add_entry(&notes, &note(r * 100 + i), TEST_NOW, rng)
                    .unwrap();
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
    (mem, out)
}

/// Each patient supplies the relay: its first request (list, wraps, what it holds), then
/// pushes until the relay holds everything.
fn supply(
    relay: &Relay,
    mem: &Vault<MemoryStore>,
    patients: &[(Identity, RecordId)],
    rng: &mut TestRng,
) -> (Phase, usize) {
    let (mut exchanges, mut bundles, mut time, mut bundle_bytes) =
        (Vec::new(), 0, Duration::ZERO, 0);
    let mut supplying = Duration::ZERO;
    let relay_peer = relay.identity.peer();
    for (patient, rid) in patients {
        let local = Local::new(mem, patient);
        let mut req = Some(local.relay_start(*rid, relay_peer, TEST_NOW, rng).unwrap());
        while let Some(r) = req.take() {
            bundle_bytes += r
                .push
                .iter()
                .map(|p| hearth_sync::relay::wire::unpad(p).unwrap().len())
                .sum::<usize>();
            let with_list = r.access.is_some();
            let frame = protocol::encode(&Message::Store(r));
            let (resp, did, resp_len, took) = relay.exchange(patient, &frame);
            if with_list {
                supplying += took;
            }
            exchanges.push(Exchange {
                req: frame.len(),
                resp: resp_len,
            });
            bundles += did.stored;
            time += took;
            req = local
                .on_relay_response(relay_peer, *rid, resp, TEST_NOW, rng)
                .unwrap()
                .0;
        }
    }
    (
        Phase {
            exchanges,
            bundles,
            time,
            supplying,
        },
        bundle_bytes,
    )
}

/// Each grantee fetches each record from the relay (it holds nothing yet).
fn serve(
    relay: &Relay,
    grantees: &[Identity],
    patients: &[(Identity, RecordId)],
    rng: &mut TestRng,
) -> Phase {
    let (mut exchanges, mut bundles, mut time) = (Vec::new(), 0, Duration::ZERO);
    let empty = Vault::new(MemoryStore::new());
    let relay_peer = relay.identity.peer();
    // The relay's access receipts, written as its daemon does: in one commit per tick, or at
    // once when 256 are waiting (timed with the serving).
    let mut receipts = Vec::new();
    let write = |receipts: &mut Vec<_>| {
        let t = Instant::now();
        relay
            .vault
            .journal_many(&relay.identity, std::mem::take(receipts), TEST_NOW)
            .unwrap();
        t.elapsed()
    };
    for g in grantees {
        let local = Local::new(&empty, g);
        for (_, rid) in patients {
            let req = local.relay_start(*rid, relay_peer, TEST_NOW, rng).unwrap();
            let frame = protocol::encode(&Message::Store(req));
            let (resp, did, resp_len, took) = relay.exchange(g, &frame);
            assert!(!resp.bundles.is_empty() && !resp.more);
            exchanges.push(Exchange {
                req: frame.len(),
                resp: resp_len,
            });
            bundles += did.sent;
            time += took;
            receipts.extend(did.receipt);
            if receipts.len() >= 256 {
                time += write(&mut receipts);
            }
        }
    }
    time += write(&mut receipts);
    Phase {
        exchanges,
        bundles,
        time,
        supplying: Duration::ZERO,
    }
}

/// A second baseline for storing: each exchange's request bytes written to a fresh sled store
/// as one durable commit (what any relay that keeps what it acknowledges pays at least).
fn sled_baseline(exchanges: &[Exchange]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("s")).unwrap();
    let t = Instant::now();
    for (i, x) in exchanges.iter().enumerate() {
        let mut b = hearth_core::store::Batch::new();
        b.put(format!("x/{i:08}").into_bytes(), vec![7u8; x.req]);
        store.commit(b).unwrap();
    }
    t.elapsed()
}

fn identity(role: Role, name: &str, rng: &mut TestRng) -> Identity {
    Identity::generate(role, name.into(), rng).0
}

/// A config for swarms in one process on loopback: no per-IP connection rate, no stranger
/// frame limit (the baseline's peers are strangers to each other).
fn open_config() -> NetConfig {
    NetConfig {
        conn_burst_per_ip: 1_000_000,
        max_established_total: 4096,
        max_pending: 1024,
        max_frame_unknown: net::MAX_FRAME,
        max_streams_unknown: 8,
        ..NetConfig::default()
    }
}

async fn listen<M: net::codec::WireMessage>(
    swarm: &mut libp2p::Swarm<net::Behaviour<M>>,
) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// The baseline: `exchanges` one after another over libp2p request-response on loopback, the
/// server answering each with a frame of the recorded size.
async fn libp2p_baseline(exchanges: &[Exchange], rng: &mut TestRng) -> Duration {
    let a = identity(Role::Professional, "A", rng);
    let b = identity(Role::Relay, "B", rng);
    let mut server = net::swarm::<Vec<u8>>(net::keypair(&b).unwrap(), &open_config()).unwrap();
    let addr = listen(&mut server).await;
    let server_id = *server.local_peer_id();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Store(
                request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) = server.select_next_some().await
            {
                let want = u32::from_be_bytes(request[..4].try_into().unwrap()) as usize;
                let _ = server
                    .behaviour_mut()
                    .store
                    .send_response(channel, vec![7u8; want]);
            }
        }
    });
    let mut client = net::swarm::<Vec<u8>>(net::keypair(&a).unwrap(), &open_config()).unwrap();
    client.dial(addr.with(Protocol::P2p(server_id))).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
            break;
        }
    }
    let t = Instant::now();
    for x in exchanges {
        let mut frame = vec![7u8; x.req.max(4)];
        frame[..4].copy_from_slice(&(x.resp as u32).to_be_bytes());
        client.behaviour_mut().store.send_request(&server_id, frame);
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => {
                    assert_eq!(response.len(), x.resp);
                    break;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::OutboundFailure { error, .. },
                )) => panic!("baseline request failed: {error}"),
                _ => {}
            }
        }
    }
    t.elapsed()
}

/// VmRSS growth per idle libp2p connection to a relay swarm (both ends in this process; the
/// clients' swarms are built before the first measurement), and per bare TCP connection.
async fn idle_connections(n: usize, rng: &mut TestRng) -> (f64, f64) {
    // Bare TCP first: N accepted and N connected sockets kept open.
    let before = rss();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut kept = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let c = tokio::net::TcpStream::connect(at).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        kept.push(c);
        kept.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tcp = (rss().saturating_sub(before)) as f64 / n as f64;
    drop(kept);

    let relay = identity(Role::Relay, "R", rng);
    let mut server = net::swarm::<Message>(net::keypair(&relay).unwrap(), &open_config()).unwrap();
    let addr = listen(&mut server)
        .await
        .with(Protocol::P2p(*server.local_peer_id()));
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<PeerId>(n);
    let server_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                server.select_next_some().await
            {
                let _ = conn_tx.try_send(peer_id);
            }
        }
    });
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let id = identity(Role::Professional, &format!("C{i}"), rng);
            net::swarm::<Message>(net::keypair(&id).unwrap(), &NetConfig::default()).unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss();
    let mut tasks = Vec::with_capacity(n);
    for mut c in clients {
        c.dial(addr.clone()).unwrap();
        tasks.push(tokio::spawn(async move {
            loop {
                c.select_next_some().await;
            }
        }));
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), conn_rx.recv())
            .await
            .expect("connections established")
            .unwrap();
    }
    // Let identify and the first pings finish: the connections are idle from here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p2p = (rss().saturating_sub(before)) as f64 / n as f64;
    for t in tasks {
        t.abort();
    }
    server_task.abort();
    (p2p, tcp)
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let n_records = knob(
        "HEARTH_BENCH_RELAY_RECORDS",
        if quick { 100 } else { 1_000 },
    );
    let n_conns = knob("HEARTH_BENCH_RELAY_CONNS", if quick { 50 } else { 200 });
    println!(
        "hearth relay benchmarks ({}; {n_records} records x {GRANTEES} grantees, {NOTES_PER_RECORD} notes each; relay on sled on disk)",
        if quick { "quick" } else { "full" }
    );
    let mut rng = TestRng::new(7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Memory first, before the store phases grow the heap.
    let (p2p, tcp) = rt.block_on(idle_connections(n_conns, &mut rng));
    println!(
        "memory per idle connection ({n_conns} connections, both ends in-process)   libp2p (Noise, Yamux, identify, ping) {:7.1} KiB   bare TCP pair {:5.1} KiB",
        p2p / 1024.0,
        tcp / 1024.0
    );

    let relay_id = identity(Role::Relay, "Riverside Relay", &mut rng);
    let grantees: Vec<Identity> = (0..GRANTEES)
        .map(|i| identity(Role::Professional, &format!("G{i}"), &mut rng))
        .collect();
    let t = Instant::now();
    let (mem, patients) = records(n_records, &relay_id, &grantees, &mut rng);
    println!(
        "  (built {n_records} records in memory in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("relay");
    let relay = Relay {
        vault: Vault::open(SledStore::open(&store_dir).unwrap()).unwrap(),
        _dir: dir,
        store_dir,
        identity: relay_id,
        limits: RelayLimits::default(),
    };

    let (stored, bundle_bytes) = supply(&relay, &mem, &patients, &mut rng);
    let served = serve(&relay, &grantees, &patients, &mut rng);
    assert!(stored.bundles > 0 && served.bundles > 0);

    let base_store = rt.block_on(libp2p_baseline(&stored.exchanges, &mut rng));
    let base_serve = rt.block_on(libp2p_baseline(&served.exchanges, &mut rng));
    for (what, p, base) in [
        ("stored", &stored, base_store),
        ("served", &served, base_serve),
    ] {
        let ours = p.bundles as f64 / p.time.as_secs_f64();
        let theirs = p.bundles as f64 / base.as_secs_f64();
        let bytes: usize = p.exchanges.iter().map(|x| x.req + x.resp).sum();
        let ratio = ours / theirs;
        println!(
            "bundles {what} per second ({} bundles, {} exchanges, {:.1} MiB of frames)   relay (decode, answer, encode; sled) {ours:9.0}/s   libp2p request-response, same frames, loopback {theirs:9.0}/s   ratio {ratio:.2} (target >= 0.50: {})",
            p.bundles,
            p.exchanges.len(),
            bytes as f64 / (1024.0 * 1024.0),
            if ratio >= 0.5 { "met" } else { "NOT met" }
        );
    }
    let durable = sled_baseline(&stored.exchanges);
    let theirs = stored.bundles as f64 / durable.as_secs_f64();
    let ours = stored.bundles as f64 / stored.time.as_secs_f64();
    println!(
        "  second baseline for storing: the same request bytes, one durable sled commit per exchange {theirs:9.0}/s   ratio {:.2}",
        ours / theirs
    );
    println!(
        "  of the storing time, first exchanges (access list and wraps; a record taken on) {:.2} ms each, pushes {:.2} ms each",
        stored.supplying.as_secs_f64() * 1e3 / n_records as f64,
        (stored.time - stored.supplying).as_secs_f64() * 1e3
            / (stored.exchanges.len() - n_records).max(1) as f64
    );

    // Storage: what the relay keeps per bundle, against the bundles' own bytes.
    relay.vault.store().flush().unwrap();
    let (mut keys, mut values, mut items) = (0usize, 0usize, 0usize);
    for (k, v) in relay.vault.store().scan(&[], &[0xff; 4]).unwrap() {
        keys += k.len();
        values += v.len();
        items += 1;
    }
    let (apparent, allocated) = disk_usage(&relay.store_dir);
    let per = |x: usize| x as f64 / stored.bundles as f64;
    println!(
        "storage per bundle ({} bundles, {items} store items)   bundle bytes {:6.0} B   relay store (keys + values) {:6.0} B (x{:.2})   sled folder on disk {:6.0} B apparent, {:6.0} B allocated (x{:.2})",
        stored.bundles,
        per(bundle_bytes),
        per(keys + values),
        (keys + values) as f64 / bundle_bytes as f64,
        per(apparent as usize),
        per(allocated as usize),
        allocated as f64 / bundle_bytes as f64
    );
    println!(
        "time to locate a record through Kademlia with 10 relays   measured by `cargo bench -p hearth-node --bench locate`"
    );
}
