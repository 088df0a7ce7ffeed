//! The live node: drives the sans-I/O sync session ([`hearth_sync::session`]) over the libp2p
//! swarm ([`hearth_sync::net`]) on tokio.
//!
//! One task owns the swarm and all bookkeeping; it never touches the store. Every store or
//! record operation runs as a *job* on tokio's blocking pool, holding the one mutex around the
//! shared state ([`Shared`]), and sends its result back over a bounded channel. Jobs are
//! bounded ([`LiveConfig::max_jobs`]): an inbound request arriving when the node is saturated
//! is dropped (the peer sees its stream close and retries later).
//!
//! What makes it *live*:
//! - after a local change (the daemon calls [`Handle::local_change`] after each command), the
//!   records whose logs moved are announced with `Notify` to every connected peer interested
//!   in them ([`Peer::interested_peers`]);
//! - a `Notify` from a peer starts a round with that peer for that record at once, if the peer
//!   is a party to it here ([`Peer::start`] refuses anyone else before anything is sent);
//! - bundles received from one peer are announced to the other interested peers;
//! - a round runs with every connected interested peer every [`LiveConfig::interval`], and on
//!   every new connection (catch-up after a restart);
//! - known peers (`hearth peers add`) are dialled, and redialled with exponential backoff;
//! - every planning pass tells the network's inbound gate which peers the records know
//!   (they get a grantee's frame limits; anyone else a stranger's: [`hearth_sync::net::inbound`]).
//!
//! Logs carry peer ids, record ids, counts and reasons; never record content.

use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use hearth_sync::net::{BehaviourEvent, HearthSwarm, peer_id, peer_key};
use hearth_sync::protocol::{LinkMessage, MAX_PUSH_BYTES, Message, Notify, SyncRequest};
use hearth_sync::session::{Peer, Report, SyncError};
use libp2p::Multiaddr;
use libp2p::futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What every job needs, behind one mutex: the vault and the node's identity.
pub struct Shared<S: Store> {
    /// The records.
    pub vault: Vault<S>,
    /// This node's keys.
    pub identity: Identity,
}

/// The shared state.
pub type SharedState<S> = Arc<Mutex<Shared<S>>>;

/// Locks the shared state, recovering from a poisoned lock (a panicked job leaves the store
/// consistent: every write is one atomic batch).
pub fn lock<S: Store>(s: &SharedState<S>) -> MutexGuard<'_, Shared<S>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Timing and bounds of the live node.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Between background rounds with connected peers.
    pub interval: Duration,
    /// First redial delay after a failed dial or a lost connection.
    pub backoff_min: Duration,
    /// Longest redial delay.
    pub backoff_max: Duration,
    /// Jobs (store operations) queued or running at once.
    pub max_jobs: usize,
    /// Request/response steps in one round before it is abandoned.
    pub max_steps: u32,
    /// Known peers remembered at once.
    pub max_known: usize,
    /// Rounds in flight with one peer.
    pub max_rounds_per_peer: usize,
    /// The pairing slot `hearth device link` opens (answered on the sync protocol).
    pub pairing: crate::link::Pairing,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interval: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_jobs: 32,
            max_steps: 64,
            max_known: 1024,
            max_rounds_per_peer: 8,
            pairing: crate::link::Pairing::default(),
        }
    }
}

/// How the last round with a peer for a record ended.
#[derive(Clone, Debug, Serialize)]
pub struct SessionState {
    /// The peer.
    pub peer: String,
    /// The record.
    pub record: String,
    /// When it ended.
    pub at: Timestamp,
    /// Whether both sides held the same of every section they share.
    pub in_sync: bool,
    /// Why it failed, if it did (no content).
    pub error: Option<String>,
    /// The last step's report: bundles received, sent, refused; per section behind/ahead.
    pub report: Option<Report>,
}

/// A known peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KnownPeer {
    /// Its addresses.
    pub addrs: Vec<String>,
    /// Failed dials in a row.
    pub failures: u32,
    /// The last dial error.
    pub last_error: Option<String>,
}

/// A snapshot of the node's network state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Where it listens.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub connected: BTreeSet<String>,
    /// Known peers.
    pub known: BTreeMap<String, KnownPeer>,
    /// The last round per (record, peer).
    pub sessions: Vec<SessionState>,
    /// Bundles received from peers and stored since the node started.
    pub received: u64,
}

/// The shared copy of the network state: the driver updates it in place, readers snapshot it.
#[derive(Default)]
struct StatusInner {
    listen_addrs: Vec<String>,
    connected: BTreeSet<String>,
    known: BTreeMap<String, KnownPeer>,
    sessions: BTreeMap<(RecordId, PeerKey), SessionState>,
    received: u64,
}

/// The result of one round: peer, record, and its last report or the reason it failed.
pub type Outcome = (PeerKey, RecordId, Result<Report, String>);

enum Control {
    AddPeer(PeerKey, Multiaddr),
    LocalChange,
    Sync {
        with: Option<PeerKey>,
        reply: std::sync::mpsc::SyncSender<Vec<Outcome>>,
    },
    Shutdown,
}

/// A handle on the running node, for the API and for commands running in the daemon.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Control>,
    pairing: crate::link::Pairing,
    status: Arc<Mutex<StatusInner>>,
    received: tokio::sync::watch::Receiver<u64>,
}

impl Handle {
    /// The current network state.
    pub fn status(&self) -> Status {
        let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            listen_addrs: st.listen_addrs.clone(),
            connected: st.connected.clone(),
            known: st.known.clone(),
            sessions: st.sessions.values().cloned().collect(),
            received: st.received,
        }
    }

    /// Remembers and dials a peer (from a blocking context).
    pub fn add_peer(&self, peer: PeerKey, addr: Multiaddr) {
        let _ = self.tx.try_send(Control::AddPeer(peer, addr));
    }

    /// Something may have changed locally: announce changed records to interested peers.
    /// Never blocks; a dropped announcement is covered by the next background round.
    pub fn local_change(&self) {
        let _ = self.tx.try_send(Control::LocalChange);
    }

    /// Runs a round now with `with` (or every connected and known peer) for every record they
    /// are interested in, and waits for it (from a blocking context) up to `timeout`.
    pub fn sync_blocking(
        &self,
        with: Option<PeerKey>,
        timeout: Duration,
    ) -> Result<Vec<Outcome>, String> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .try_send(Control::Sync { with, reply })
            .map_err(|_| "the node is busy; try again".to_string())?;
        rx.recv_timeout(timeout)
            .map_err(|_| format!("no answer within {} s", timeout.as_secs()))
    }

    /// The count of bundles received from peers, watchable: changes as soon as a round
    /// stores bundles.
    pub fn received(&self) -> tokio::sync::watch::Receiver<u64> {
        self.received.clone()
    }

    /// The node's device-pairing slot.
    pub fn pairing(&self) -> &crate::link::Pairing {
        &self.pairing
    }

    /// Asks the node to stop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Control::Shutdown).await;
    }
}

/// Results of jobs, back to the swarm task.
enum Work {
    Start {
        peer: PeerKey,
        record: RecordId,
        req: Result<SyncRequest, String>,
    },
    Responded {
        peer: PeerKey,
        record: RecordId,
        res: Result<(Option<SyncRequest>, Report), String>,
    },
    Answer {
        peer: PeerKey,
        channel: ResponseChannel<Message>,
        resp: Option<Message>,
        /// The record and how many pushed bundles were stored.
        received: Option<(RecordId, usize)>,
        /// The record a device was just linked to (its auth document changed).
        linked: Option<RecordId>,
    },
    Plan {
        /// Peer, record, and whether the user named the peer (`sync --with`, a known peer).
        pairs: Vec<(PeerKey, RecordId, bool)>,
        batch: Option<Batch>,
        /// Every peer some record here makes interested (they get a grantee's network limits,
        /// not a stranger's).
        parties: BTreeSet<PeerKey>,
    },
    Announce {
        /// Who, which record, and the new bundles to push with the notification.
        targets: Vec<(PeerKey, RecordId, Vec<serde_bytes::ByteBuf>)>,
    },
    Pushed {
        peer: PeerKey,
        record: RecordId,
        res: Result<Report, String>,
    },
    Known(Vec<(PeerKey, Vec<Multiaddr>)>),
}

/// Collects the outcomes of the rounds one `sync` asked for.
#[derive(Clone)]
struct Batch(Arc<Mutex<BatchInner>>);

struct BatchInner {
    remaining: usize,
    outcomes: Vec<Outcome>,
    reply: Option<std::sync::mpsc::SyncSender<Vec<Outcome>>>,
}

impl Batch {
    fn new(reply: std::sync::mpsc::SyncSender<Vec<Outcome>>) -> Batch {
        Batch(Arc::new(Mutex::new(BatchInner {
            remaining: 0,
            outcomes: Vec::new(),
            reply: Some(reply),
        })))
    }
    fn expect(&self, n: usize) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        b.remaining += n;
        if b.remaining == 0
            && let Some(r) = b.reply.take()
        {
            let _ = r.try_send(std::mem::take(&mut b.outcomes));
        }
    }
    fn done(&self, o: Outcome) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        b.outcomes.push(o);
        b.remaining = b.remaining.saturating_sub(1);
        if b.remaining == 0
            && let Some(r) = b.reply.take()
        {
            let _ = r.try_send(std::mem::take(&mut b.outcomes));
        }
    }
}

struct Round {
    waiters: Vec<Batch>,
    again: bool,
    steps: u32,
    /// The user named the peer (see [`Peer::start_as`]).
    named: bool,
}

struct Dial {
    addrs: Vec<Multiaddr>,
    failures: u32,
    next: Instant,
    last_error: Option<String>,
}

/// The clock and random generator of jobs (the node's: system time and the OS generator).
fn now() -> Timestamp {
    crate::commands::now()
}

/// Starts the node on `swarm` (already listening or not), returning its handle and the task.
pub fn start<S: Store + Send + 'static>(
    swarm: HearthSwarm,
    shared: SharedState<S>,
    config: LiveConfig,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let status = Arc::new(Mutex::new(StatusInner::default()));
    let (received_tx, received_rx) = tokio::sync::watch::channel(0u64);
    let handle = Handle {
        tx,
        pairing: config.pairing.clone(),
        status: status.clone(),
        received: received_rx,
    };
    let (work_tx, work_rx) = mpsc::channel(config.max_jobs + 8);
    let mut driver = Driver {
        swarm,
        shared,
        config,
        status,
        work_tx,
        jobs: 0,
        rounds: HashMap::new(),
        outbound: HashMap::new(),
        dials: HashMap::new(),
        connected: BTreeSet::new(),
        known_dirty: true,
        fingerprints: Arc::new(Mutex::new(HashMap::new())),
        received: 0,
        received_tx,
    };
    let task = tokio::spawn(async move { driver.run(rx, work_rx).await });
    (handle, task)
}

struct Driver<S: Store> {
    swarm: HearthSwarm,
    shared: SharedState<S>,
    config: LiveConfig,
    status: Arc<Mutex<StatusInner>>,
    work_tx: mpsc::Sender<Work>,
    jobs: usize,
    rounds: HashMap<(PeerKey, RecordId), Round>,
    outbound: HashMap<OutboundRequestId, (PeerKey, RecordId, bool)>,
    dials: HashMap<PeerKey, Dial>,
    connected: BTreeSet<PeerKey>,
    /// Known peers changed since the last publication.
    known_dirty: bool,
    fingerprints: Arc<Mutex<HashMap<RecordId, Seen>>>,
    received: u64,
    received_tx: tokio::sync::watch::Sender<u64>,
}

/// Cheap summaries of a record's logs: all sections, and the sections that decide who is
/// interested (the auth document and the consent ledger).
fn fingerprint(m: &BTreeMap<SectionId, hearth_core::log::VersionVector>) -> (u64, u64) {
    let sum = |vv: &hearth_core::log::VersionVector| {
        vv.values()
            .map(|h| h.seq)
            .fold(0u64, |a, s| a.wrapping_add(s))
    };
    let all = m
        .values()
        .map(sum)
        .fold(0u64, |a, s| a.wrapping_add(s))
        .wrapping_add(m.len() as u64);
    let auth = [SectionId::AUTH, SectionId::LEDGER]
        .iter()
        .filter_map(|s| m.get(s))
        .map(sum)
        .fold(0u64, |a, s| a.wrapping_add(s));
    (all, auth)
}

/// What the last change check saw of a record.
struct Seen {
    fp: (u64, u64),
    /// Interested peers and the sections each may hold, valid while the auth fingerprint is
    /// unchanged.
    interested: Vec<(PeerKey, BTreeSet<SectionId>)>,
    /// The log heads held then: what changed since is pushed with the notification.
    heads: BTreeMap<SectionId, hearth_core::log::VersionVector>,
    /// When `interested` was worked out (grants expire: it is redone every
    /// [`RIGHTS_TTL`]).
    computed: Instant,
}

/// How long the peers' rights worked out for a change check are reused.
const RIGHTS_TTL: Duration = Duration::from_secs(30);

/// Records held, plus records named by accepted grants (no replica yet before the first
/// sync), each with the peers the grants name as holding it (the issuer's addresses end in
/// `/p2p/PEER`).
fn all_records<S: Store>(vault: &Vault<S>) -> BTreeMap<RecordId, BTreeSet<PeerKey>> {
    let mut out: BTreeMap<RecordId, BTreeSet<PeerKey>> = vault
        .records()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r, BTreeSet::new()))
        .collect();
    for (r, _, chain) in vault.all_held_chains().unwrap_or_default() {
        let peers = out.entry(r).or_default();
        for g in &chain {
            for a in &g.body().addresses {
                if let Ok(ma) = a.parse::<Multiaddr>()
                    && let Some(libp2p::multiaddr::Protocol::P2p(id)) = ma.iter().last()
                    && let Some(p) = peer_key(&id)
                {
                    peers.insert(p);
                }
            }
        }
    }
    out
}

/// The peers to sync `record` with: those the session says are interested, plus those the
/// grants name as holding it.
fn peers_for<S: Store>(
    p: &Peer<'_, S>,
    record: &RecordId,
    named: &BTreeSet<PeerKey>,
) -> BTreeSet<PeerKey> {
    let mut s: BTreeSet<PeerKey> = p.interested_peers(record).into_iter().collect();
    s.extend(named.iter().copied());
    s
}

/// The reason of a round that was not started because this node does not hold the record
/// (a stranger's `Notify`); such rounds are not reported.
const NOT_HELD: &str = "record not held here";

impl<S: Store + Send + 'static> Driver<S> {
    async fn run(&mut self, mut rx: mpsc::Receiver<Control>, mut work_rx: mpsc::Receiver<Work>) {
        let mut periodic = tokio::time::interval(self.config.interval);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(Duration::from_millis(500));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.load_known();
        // Baseline fingerprints, so that later checks announce only real changes.
        self.check_changes(None);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(w) = work_rx.recv() => { self.jobs = self.jobs.saturating_sub(1); self.on_work(w); }
                c = rx.recv() => match c {
                    Some(Control::Shutdown) | None => break,
                    Some(c) => self.on_control(c),
                },
                _ = periodic.tick() => self.plan(None, None, false),
                _ = redial.tick() => self.redial(),
            }
            self.publish();
        }
        tracing::info!("network stopped");
    }

    /// Loads the known peers from the store (`peer/<id>` items).
    fn load_known(&mut self) {
        self.job(|sh| {
            let known = sh
                .vault
                .known_peers()
                .unwrap_or_default()
                .into_iter()
                .map(|(peer, addrs)| (peer, hearth_sync::net::multiaddrs(&addrs)))
                .collect();
            Work::Known(known)
        });
    }

    /// Runs `f` on the blocking pool with the shared state locked; its result comes back as
    /// work. Returns false (and runs nothing) when the node is saturated.
    fn job(&mut self, f: impl FnOnce(&Shared<S>) -> Work + Send + 'static) -> bool {
        if self.jobs >= self.config.max_jobs {
            tracing::warn!("busy: a sync step was dropped");
            return false;
        }
        self.jobs += 1;
        let shared = self.shared.clone();
        let tx = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let w = {
                let g = lock(&shared);
                f(&g)
            };
            let _ = tx.blocking_send(w);
        });
        true
    }

    /// Updates the shared status (cheap fields every time, known peers when they changed;
    /// sessions are updated in place as rounds end).
    fn publish(&mut self) {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let mut addrs: Vec<String> = self.swarm.listeners().map(ToString::to_string).collect();
        // A stable order, TCP first: scripts take the first address.
        addrs.sort_by_key(|a| (!a.contains("/tcp/"), a.clone()));
        st.listen_addrs = addrs;
        st.connected = self.connected.iter().map(ToString::to_string).collect();
        if self.known_dirty {
            self.known_dirty = false;
            st.known = self
                .dials
                .iter()
                .map(|(p, d)| {
                    (
                        p.to_string(),
                        KnownPeer {
                            addrs: d.addrs.iter().map(ToString::to_string).collect(),
                            failures: d.failures,
                            last_error: d.last_error.clone(),
                        },
                    )
                })
                .collect();
        }
        st.received = self.received;
        drop(st);
        self.received_tx.send_if_modified(|r| {
            let changed = *r != self.received;
            *r = self.received;
            changed
        });
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::AddPeer(peer, addr) => {
                self.remember(peer, vec![addr]);
                if let Some(d) = self.dials.get_mut(&peer) {
                    d.next = Instant::now();
                    d.failures = 0;
                }
                self.redial();
            }
            Control::LocalChange => {
                self.check_changes(None);
                // A command may have added peers (`peers add`, `accept`).
                self.load_known();
            }
            Control::Sync { with, reply } => {
                let batch = Batch::new(reply);
                self.plan(with, Some(batch), true);
            }
            Control::Shutdown => {}
        }
    }

    fn remember(&mut self, peer: PeerKey, addrs: Vec<Multiaddr>) {
        self.known_dirty = true;
        let Some(pid) = peer_id(&peer) else { return };
        if !self.dials.contains_key(&peer) && self.dials.len() >= self.config.max_known {
            return;
        }
        let d = self.dials.entry(peer).or_insert_with(|| Dial {
            addrs: Vec::new(),
            failures: 0,
            next: Instant::now(),
            last_error: None,
        });
        for a in addrs {
            if !d.addrs.contains(&a) && d.addrs.len() < 8 {
                self.swarm.add_peer_address(pid, a.clone());
                d.addrs.push(a);
            }
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerKey> = self
            .dials
            .iter()
            .filter(|(p, d)| !self.connected.contains(p) && d.next <= now && !d.addrs.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let Some(pid) = peer_id(&p) else { continue };
            let addrs = self
                .dials
                .get(&p)
                .map(|d| d.addrs.clone())
                .unwrap_or_default();
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(pid)
                .addresses(addrs)
                .build();
            if let Some(d) = self.dials.get_mut(&p) {
                // Until the dial resolves, do not dial again.
                d.next = now + self.config.backoff_max;
            }
            if let Err(e) = self.swarm.dial(opts) {
                self.dial_failed(p, e.to_string());
            }
        }
    }

    fn dial_failed(&mut self, peer: PeerKey, why: String) {
        self.known_dirty = true;
        let (min, max) = (self.config.backoff_min, self.config.backoff_max);
        if let Some(d) = self.dials.get_mut(&peer) {
            d.failures = d.failures.saturating_add(1);
            let delay = min.saturating_mul(1u32 << d.failures.min(16)).min(max);
            d.next = Instant::now() + delay;
            tracing::debug!(%peer, failures = d.failures, "dial failed: {why}");
            d.last_error = Some(why);
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent<Message>>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id: pid,
                num_established,
                ..
            } => {
                let Some(peer) = peer_key(&pid) else {
                    let _ = self.swarm.disconnect_peer_id(pid);
                    return;
                };
                self.connected.insert(peer);
                if let Some(d) = self.dials.get_mut(&peer) {
                    d.failures = 0;
                    d.last_error = None;
                    self.known_dirty = true;
                }
                if num_established.get() == 1 {
                    tracing::info!(%peer, "connected");
                    // Catch up at once with a peer that (re)appears.
                    self.plan(Some(peer), None, false);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id: pid,
                num_established,
                ..
            } => {
                if num_established == 0
                    && let Some(peer) = peer_key(&pid)
                {
                    tracing::info!(%peer, "disconnected");
                    self.connected.remove(&peer);
                    let min = self.config.backoff_min;
                    if let Some(d) = self.dials.get_mut(&peer) {
                        d.next = Instant::now() + min;
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(pid),
                error,
                ..
            } => {
                if let Some(peer) = peer_key(&pid)
                    && !self.connected.contains(&peer)
                {
                    self.dial_failed(peer, error.to_string());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received {
                    peer_id: pid, info, ..
                },
            )) => {
                // Remember the listen addresses of peers we dial anyway, for redials.
                if let Some(peer) = peer_key(&pid)
                    && self.dials.contains_key(&peer)
                {
                    let addrs: Vec<Multiaddr> = info.listen_addrs.into_iter().take(8).collect();
                    self.remember(peer, addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            #[cfg(feature = "mdns")]
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                // Peers on the local network: remember their addresses for this run (they
                // sync only if a grant or device certificate makes them interested).
                for (pid, addr) in found.into_iter().take(64) {
                    if let Some(peer) = peer_key(&pid) {
                        self.remember(peer, vec![addr]);
                    }
                }
                self.redial();
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, ev: request_response::Event<Message, Message>) {
        use request_response::{Event, Message as M};
        match ev {
            Event::Message {
                peer: pid, message, ..
            } => {
                let Some(peer) = peer_key(&pid) else { return };
                match message {
                    M::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    M::Response {
                        request_id,
                        response,
                    } => self.on_response(request_id, response),
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, record, is_notify)) = self.outbound.remove(&request_id)
                    && !is_notify
                {
                    self.finish(peer, record, Err(format!("network: {error}")));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound sync stream failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerKey, msg: Message, channel: ResponseChannel<Message>) {
        match msg {
            Message::Request(req) => {
                let record = req.record;
                let ok = self.job(move |sh| {
                    let p = Peer::new(&sh.vault, &sh.identity);
                    let mut rng = crate::commands::os_rng();
                    match p.on_request(peer, req, now(), &mut rng) {
                        Ok((resp, report)) => {
                            if !report.refused.is_empty() {
                                tracing::info!(%peer, record = %record, refused = report.refused.len(), "refused items from peer");
                            }
                            Work::Answer {
                                peer,
                                channel,
                                resp: Some(Message::Response(resp)),
                                received: (report.received > 0)
                                    .then_some((record, report.received)),
                                linked: None,
                            }
                        }
                        Err(e) => {
                            tracing::info!(%peer, "sync request failed: {e}");
                            Work::Answer {
                                peer,
                                channel,
                                resp: None,
                                received: None,
                                linked: None,
                            }
                        }
                    }
                });
                if !ok {
                    tracing::debug!(%peer, "request dropped: busy");
                }
            }
            Message::Notify(n) => {
                // Acknowledge; then store what came with it, or sync that record with the sender.
                let record = n.record;
                let _ = self.swarm.behaviour_mut().sync.send_response(
                    channel,
                    Message::Notify(Notify {
                        record,
                        push: Vec::new(),
                    }),
                );
                tracing::debug!(%peer, record = %record, pushed = n.push.len(), "notified");
                // A round starts only if the sender is a party to the record here (the session
                // refuses anyone else before anything is sent: a stranger's Notify draws no
                // request, whether or not the record exists).
                let named = self.dials.contains_key(&peer);
                if n.push.is_empty() {
                    self.round(peer, record, None, named);
                } else {
                    let push = n.push;
                    let ok = self.job(move |sh| {
                        let p = Peer::new(&sh.vault, &sh.identity);
                        Work::Pushed {
                            peer,
                            record,
                            res: p.on_push(record, &push, now()).map_err(|e| e.to_string()),
                        }
                    });
                    if !ok {
                        self.round(peer, record, None, named);
                    }
                }
            }
            Message::Link(l) => {
                let pairing = self.config.pairing.clone();
                let ok = self.job(move |sh| {
                    let answer = crate::link::respond(sh, &pairing, peer, l, now());
                    let linked = matches!(answer, LinkMessage::Welcome { .. });
                    Work::Answer {
                        peer,
                        channel,
                        resp: Some(Message::Link(answer)),
                        received: None,
                        linked: linked.then(|| sh.identity.record_id()).flatten(),
                    }
                });
                if !ok {
                    tracing::debug!(%peer, "link request dropped: busy");
                }
            }
            Message::Response(_) => {
                tracing::info!(%peer, "peer sent a response as a request; ignored");
            }
        }
    }

    fn on_response(&mut self, id: OutboundRequestId, msg: Message) {
        let Some((peer, record, is_notify)) = self.outbound.remove(&id) else {
            return;
        };
        if is_notify {
            return;
        }
        let Message::Response(resp) = msg else {
            self.finish(
                peer,
                record,
                Err("the peer answered with something else".into()),
            );
            return;
        };
        if resp.record != record {
            self.finish(
                peer,
                record,
                Err("the peer answered for another record".into()),
            );
            return;
        }
        let ok = self.job(move |sh| {
            let p = Peer::new(&sh.vault, &sh.identity);
            let mut rng = crate::commands::os_rng();
            let res = p
                .on_response(peer, resp, now(), &mut rng)
                .map_err(|e| e.to_string());
            Work::Responded { peer, record, res }
        });
        if !ok {
            self.finish(peer, record, Err("busy".into()));
        }
    }

    /// Starts (or re-arms) a round with `peer` for `record`; `named`: the user named the peer
    /// (see [`Peer::start_as`]).
    fn round(&mut self, peer: PeerKey, record: RecordId, waiter: Option<Batch>, named: bool) {
        if let Some(r) = self.rounds.get_mut(&(peer, record)) {
            r.again = true;
            if let Some(w) = waiter {
                r.waiters.push(w);
            }
            return;
        }
        // A peer cannot occupy the node with rounds for many records at once (a stranger
        // sending `Notify` for made-up records): a few at a time, the rest wait for the next
        // background round.
        let per_peer = self.rounds.keys().filter(|(p, _)| *p == peer).count();
        if per_peer >= self.config.max_rounds_per_peer {
            if let Some(w) = waiter {
                w.done((
                    peer,
                    record,
                    Err("too many rounds with this peer at once".into()),
                ));
            }
            return;
        }
        self.rounds.insert(
            (peer, record),
            Round {
                waiters: waiter.into_iter().collect(),
                again: false,
                steps: 0,
                named,
            },
        );
        let ok = self.job(move |sh| {
            if !all_records(&sh.vault).contains_key(&record) {
                return Work::Start {
                    peer,
                    record,
                    req: Err(NOT_HELD.into()),
                };
            }
            let p = Peer::new(&sh.vault, &sh.identity);
            let req = p.start_as(record, peer, named, now()).map_err(|e| match e {
                // Not reported: the same as a record not held.
                SyncError::NotAParty => NOT_HELD.to_string(),
                e => e.to_string(),
            });
            Work::Start { peer, record, req }
        });
        if !ok {
            self.finish(peer, record, Err("busy".into()));
        }
    }

    fn send(&mut self, peer: PeerKey, record: RecordId, req: SyncRequest) {
        let Some(pid) = peer_id(&peer) else {
            self.finish(peer, record, Err("not a valid peer id".into()));
            return;
        };
        let steps = self.rounds.get_mut(&(peer, record)).map(|r| {
            r.steps += 1;
            r.steps
        });
        if steps.unwrap_or(0) > self.config.max_steps {
            self.finish(peer, record, Err("too many steps in one round".into()));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&pid, Message::Request(req));
        self.outbound.insert(id, (peer, record, false));
    }

    /// Ends the round with `peer` for `record`: records the outcome, wakes waiters, and runs
    /// it again if something asked for that meanwhile.
    fn finish(&mut self, peer: PeerKey, record: RecordId, res: Result<Report, String>) {
        let not_held = res.as_ref().err().is_some_and(|e| e == NOT_HELD);
        if let Err(e) = &res {
            tracing::info!(%peer, record = %record, "sync round failed: {e}");
        }
        let state = SessionState {
            peer: peer.to_string(),
            record: record.to_string(),
            at: now(),
            in_sync: res.as_ref().is_ok_and(|r| r.in_sync),
            error: res.as_ref().err().cloned(),
            report: res.as_ref().ok().cloned(),
        };
        if !not_held {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if st.sessions.len() < 4096 || st.sessions.contains_key(&(record, peer)) {
                st.sessions.insert((record, peer), state);
            }
        }
        if let Some(r) = self.rounds.remove(&(peer, record)) {
            for w in &r.waiters {
                w.done((peer, record, res.clone()));
            }
            if r.again {
                self.round(peer, record, None, r.named);
            }
        }
    }

    fn on_work(&mut self, w: Work) {
        match w {
            Work::Start { peer, record, req } => match req {
                Ok(req) => self.send(peer, record, req),
                Err(e) => self.finish(peer, record, Err(e)),
            },
            Work::Responded { peer, record, res } => match res {
                Ok((Some(next), report)) => {
                    self.received += report.received as u64;
                    if report.received > 0 {
                        self.check_changes(Some(peer));
                    }
                    self.send(peer, record, next)
                }
                Ok((None, report)) => {
                    self.received += report.received as u64;
                    if report.received > 0 {
                        tracing::info!(%peer, record = %record, received = report.received, "received bundles");
                        self.check_changes(Some(peer));
                    }
                    self.finish(peer, record, Ok(report))
                }
                Err(e) => self.finish(peer, record, Err(e)),
            },
            Work::Answer {
                peer,
                channel,
                resp,
                received,
                linked,
            } => {
                if let Some(resp) = resp {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
                }
                if let Some((record, n)) = received {
                    self.received += n as u64;
                    tracing::info!(%peer, record = %record, received = n, "received pushed bundles");
                    self.check_changes(Some(peer));
                }
                if let Some(record) = linked {
                    // The auth document changed (a new device): tell the others.
                    tracing::debug!(device = %peer, record = %record, "device linked: announcing the auth document change");
                    self.check_changes(Some(peer));
                }
            }
            Work::Plan {
                pairs,
                batch,
                parties,
            } => {
                let known: Vec<libp2p::PeerId> = parties
                    .iter()
                    .chain(self.dials.keys())
                    .filter_map(peer_id)
                    .collect();
                self.swarm.behaviour().gate.inbound().set_known(known);
                if let Some(b) = &batch {
                    b.expect(pairs.len());
                }
                for (peer, record, named) in pairs {
                    self.round(peer, record, batch.clone(), named);
                }
            }
            Work::Announce { targets } => {
                for (peer, record, push) in targets {
                    if let Some(pid) = peer_id(&peer)
                        && self.connected.contains(&peer)
                    {
                        let id = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&pid, Message::Notify(Notify { record, push }));
                        self.outbound.insert(id, (peer, record, true));
                    }
                }
            }
            Work::Pushed { peer, record, res } => match res {
                Ok(report) if report.refused.is_empty() => {
                    if report.received > 0 {
                        self.received += report.received as u64;
                        tracing::debug!(%peer, record = %record, received = report.received, "received pushed bundles");
                        self.check_changes(Some(peer));
                    }
                }
                // Something was missed in between (or refused): a full round sorts it out (if
                // the peer is a party to the record: the session decides).
                _ => {
                    let named = self.dials.contains_key(&peer);
                    self.round(peer, record, None, named)
                }
            },
            Work::Known(known) => {
                for (peer, addrs) in known {
                    self.remember(peer, addrs);
                }
                self.redial();
            }
        }
    }

    /// Plans rounds: with `with` (or every connected and known peer), for each record they
    /// are interested in (or, for an explicit or known peer, records whose interested peers are
    /// not known yet: a grant accepted before the first sync).
    fn plan(&mut self, with: Option<PeerKey>, batch: Option<Batch>, explicit: bool) {
        let peers: BTreeSet<PeerKey> = match with {
            Some(p) => [p].into(),
            None => {
                let mut s = self.connected.clone();
                if explicit {
                    s.extend(self.dials.keys().copied());
                }
                s
            }
        };
        let known: BTreeSet<PeerKey> = self.dials.keys().copied().collect();
        let want_reply = batch.is_some();
        let ok = self.job(move |sh| {
            let p = Peer::new(&sh.vault, &sh.identity);
            let mut pairs = Vec::new();
            let mut parties = BTreeSet::new();
            for (record, named) in all_records(&sh.vault) {
                let interested = peers_for(&p, &record, &named);
                parties.extend(interested.iter().copied());
                for peer in &peers {
                    let trusted = explicit || known.contains(peer);
                    if interested.contains(peer) || (trusted && interested.is_empty()) {
                        pairs.push((*peer, record, trusted));
                    }
                }
            }
            Work::Plan {
                pairs,
                batch,
                parties,
            }
        });
        if !ok && want_reply {
            tracing::warn!("sync request dropped: busy");
        }
    }

    /// Finds records whose logs moved since the last check and announces them to interested
    /// connected peers (except `except`, the peer the change came from).
    fn check_changes(&mut self, except: Option<PeerKey>) {
        let fps = self.fingerprints.clone();
        let connected = self.connected.clone();
        self.job(move |sh| {
            let p = Peer::new(&sh.vault, &sh.identity);
            let mut fps = fps.lock().unwrap_or_else(|e| e.into_inner());
            let mut targets = Vec::new();
            for record in sh.vault.records().unwrap_or_default() {
                let heads = sh.vault.held_sections(&record).unwrap_or_default();
                let fp = fingerprint(&heads);
                let (changed, interested, since, computed) = match fps.get(&record) {
                    // Same logs: nothing to announce.
                    Some(seen) if seen.fp == fp => continue,
                    // Content moved, grants and devices did not: reuse the interested peers
                    // and what each may hold, and push what changed since.
                    Some(seen) if seen.fp.1 == fp.1 && seen.computed.elapsed() < RIGHTS_TTL => (
                        true,
                        seen.interested.clone(),
                        Some(seen.heads.clone()),
                        seen.computed,
                    ),
                    old => {
                        let peers = p.interested_peers(&record);
                        // One opening of the record for all of them; a failure leaves each
                        // peer with nothing pushed (a notification only).
                        let mut holdable = p
                            .holdable_by_many(&record, &peers, now())
                            .unwrap_or_default();
                        let interested = peers
                            .into_iter()
                            .map(|peer| {
                                let may = holdable.remove(&peer).unwrap_or_default();
                                (peer, may)
                            })
                            .collect();
                        (old.is_some(), interested, None, Instant::now())
                    }
                };
                if changed {
                    for (peer, may) in &interested {
                        if connected.contains(peer) && Some(*peer) != except {
                            let push = since
                                .as_ref()
                                .and_then(|since| {
                                    p.bundles_since(&record, may, since, MAX_PUSH_BYTES).ok()
                                })
                                .unwrap_or_default();
                            targets.push((*peer, record, push));
                        }
                    }
                }
                fps.insert(
                    record,
                    Seen {
                        fp,
                        interested,
                        heads,
                        computed,
                    },
                );
            }
            Work::Announce { targets }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The driver in memory: two nodes on libp2p's `MemoryTransport` with `MemoryStore`s.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use hearth_core::grant::{Ability, Grant, GrantSpec};
    use hearth_core::keys::Role;
    use hearth_core::record::{AuthItem, NewRecord};
    use hearth_core::store::MemoryStore;
    use hearth_sync::net::{NetConfig, keypair, memory_swarm};
    use serde_json::json;

    fn node(
        identity: Identity,
        vault: Vault<MemoryStore>,
        port: u64,
    ) -> (Handle, SharedState<MemoryStore>, Multiaddr) {
        let mut swarm = memory_swarm(keypair(&identity).unwrap(), &NetConfig::default()).unwrap();
        let addr: Multiaddr = format!("/memory/{port}").parse().unwrap();
        swarm.listen_on(addr.clone()).unwrap();
        let shared = Arc::new(Mutex::new(Shared { vault, identity }));
        let config = LiveConfig {
            interval: Duration::from_millis(200),
            ..LiveConfig::default()
        };
        let (h, _task) = start(swarm, shared.clone(), config);
        (h, shared, addr)
    }

    fn texts(shared: &SharedState<MemoryStore>, rid: &RecordId) -> String {
        let g = lock(shared);
        let Ok(mut rec) = g.vault.open_record(&g.identity, rid) else {
            return String::new();
        };
        rec.show(&"notes".parse().unwrap())
            .map(|v| serde_json::to_string(&v.entries).unwrap())
            .unwrap_or_default()
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_in_memory_sync_granted_sections_and_keep_syncing() {
        let mut rng = hearth_core::test_utils::TestRng::new(7);
        let t = now();
        let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
        let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
        let p_vault = Vault::new(MemoryStore::new());
        let rid = p_vault
            .create_record(&patient, NewRecord::default(), t, &mut rng)
            .unwrap();
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
        let spec = GrantSpec::new(
            gp.peer(),
            "notes".parse().unwrap(),
            Ability::Read,
            t,
            t.saturating_add_millis(86_400_000),
        );
        let g = Grant::issue_root(&patient, spec, &[], &mut rng).unwrap();
        rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], t, &mut rng)
            .unwrap();
        drop(rec);
        let g_vault = Vault::new(MemoryStore::new());
        g_vault.hold_grant(&rid, std::slice::from_ref(&g)).unwrap();
        let p_peer = patient.peer();
        let (ph, p_shared, p_addr) = node(patient, p_vault, 52_001);
        let (gh, g_shared, _) = node(gp, g_vault, 52_002);

        // The professional knows the patient's address; one explicit round brings it in sync.
        gh.add_peer(p_peer, p_addr);
        let h = gh.clone();
        let outcomes = tokio::task::spawn_blocking(move || {
            h.sync_blocking(Some(p_peer), Duration::from_secs(20))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert!(outcomes[0].2.is_ok(), "{outcomes:?}");
        let held = texts(&g_shared, &rid);
        assert!(held.contains("granted one"), "{held}");
        assert!(!held.contains("not granted"));
        assert!(gh.status().connected.contains(&p_peer.to_string()));

        // A later change at the patient reaches the professional without any request.
        {
            let sh = lock(&p_shared);
            let mut rec = sh.vault.open_record(&sh.identity, &rid).unwrap();
            let mut rng = crate::commands::os_rng();
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
        let st = gh.status();
        assert!(st.sessions.iter().any(|s| s.error.is_none()));
    }
}
