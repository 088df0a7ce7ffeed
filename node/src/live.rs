//! The live node: moves bytes between the libp2p swarm ([`hearth_sync::net`]), the store and
//! the sans-I/O sync state ([`hearth_sync::round`], [`hearth_sync::changes`],
//! [`hearth_sync::dial`], [`hearth_sync::pairing`]), on tokio.
//!
//! One task owns the swarm and the round state; it never touches the store. Every store or
//! record operation runs as a *job* on tokio's blocking pool, holding the one mutex around the
//! shared state ([`Shared`]), and sends its result back over a bounded channel. Jobs are
//! bounded ([`LiveConfig::max_jobs`]): an inbound request arriving when the node is saturated
//! is dropped (the peer sees its stream close and retries later).
//!
//! The driver keeps no sync policy of its own: which rounds run, their step and per-peer
//! limits, their deadlines and who waits for them are [`Rounds`]'; whom a change is announced
//! to, what is pushed with it and how long peers' rights are reused are [`Changes`]'; when
//! known peers are redialled is [`Dials`]'; the pairing slot is
//! [`Pairing`](hearth_sync::pairing::Pairing)'s. The driver feeds them swarm events, job
//! results and the time, and carries out what they ask:
//!
//! ```text
//!   swarm events ──► Rounds::handle_*(…, now) ──► poll_job ──► blocking job (session) ─┐
//!        ▲                     ▲                                                        │
//!        └── poll_transmit ◄───┴──────────── handle_started / handle_stepped ◄──────────┘
//! ```
//!
//! What makes it *live*:
//! - after a local change the records whose logs moved are announced with `Notify` to every
//!   connected peer interested in them ([`Changes::check`]): a command that wrote under the
//!   store's lock runs the check itself before letting go of it ([`Handle::changed`]) and hands
//!   the driver only what to send; a network command asks the driver to check, in a job
//!   ([`Handle::local_change`]);
//! - a `Notify` from a peer starts a round with that peer for that record at once, if the peer
//!   is a party to it here ([`Local::start`](hearth_sync::session::Local::start) refuses
//!   anyone else before anything is sent);
//! - bundles received from one peer are announced to the other interested peers;
//! - a round runs with every connected interested peer every [`LiveConfig::interval`], and on
//!   every new connection (catch-up after a restart);
//! - known peers (`hearth peers add`) are dialled, and redialled with exponential backoff;
//! - every planning pass tells the network's inbound gate which peers the records know
//!   (they get a grantee's frame limits; anyone else a stranger's: [`hearth_sync::net::inbound`]).
//!
//! Logs carry peer ids, record ids, counts and reasons; never record content.

use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_core::store::Store;
use hearth_sync::changes::{Announce, Changes};
use hearth_sync::dial::{DialConfig, Dials};
use hearth_sync::net::HearthSwarm;
use hearth_sync::net::notify::{NotifyReceiver, NotifySender};
use hearth_sync::protocol::Message;
use hearth_sync::relay::limits::RateLimiter;
use hearth_sync::round::{
    Event, RequestId, RoundConfig, RoundError, RoundOutcome, Rounds, WaiterId,
};
use hearth_sync::session::Local;
use libp2p::Multiaddr;
use libp2p::futures::StreamExt;
use libp2p::request_response::OutboundRequestId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod config;
mod jobs;
mod locate;
mod network;
mod pairing;
mod reach;
mod receipts;
mod status;
#[cfg(test)]
mod tests;

pub use config::{Clock, LiveConfig};
use jobs::Work;
pub use locate::Located;
pub use pairing::PairingSlot;
use status::StatusInner;
pub use status::{KnownPeer, NotifyCounters, RelayCounters, SessionState, Status};

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

/// Why [`Handle::sync_blocking`] got no outcomes.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The node's control queue is full.
    #[error("the node is busy; try again")]
    Busy,
    /// No answer in the time given (seconds).
    #[error("no answer within {0} s")]
    NoAnswer(u64),
}

enum Control {
    AddPeer(PeerKey, Multiaddr),
    LocalChange,
    /// A command's changes, already checked under the store's lock ([`Handle::changed`]).
    /// What a command's check found to announce, and the store's count of peer writes then
    /// (peers are read again only if it moved).
    Changed(Vec<Announce>, u64),
    Sync {
        with: Option<PeerKey>,
        reply: std::sync::mpsc::SyncSender<Vec<RoundOutcome>>,
    },
    Find {
        record: RecordId,
        via: Option<(PeerKey, Multiaddr)>,
        timeout: Duration,
        reply: std::sync::mpsc::SyncSender<Vec<Located>>,
    },
    Shutdown,
}

/// The count of bundles received from peers and stored since the node started. The job that
/// stored them adds them just after its commit, on its own thread, so that a watcher (the web
/// page's live updates, [`Handle::received`]) hears of an arrival without waiting for the
/// driver's task to take the job's result.
#[derive(Clone)]
struct Arrivals(Arc<tokio::sync::watch::Sender<u64>>);

impl Arrivals {
    /// Counts `n` bundles just stored (none: nobody is woken).
    fn add(&self, n: usize) {
        if n > 0 {
            self.0.send_modify(|r| *r = r.saturating_add(n as u64));
        }
    }
}

/// The most records a node may hold for [`Handle::changed`] to check them in the caller.
pub const INLINE_CHECK_RECORDS: usize = 64;

/// The tracing target of the stages a pushed edit passes through, each a `TRACE` event with
/// one field, `stage`: on the writer's node `changed` (the command's change check hands what
/// to announce to the driver), `announce` (the driver took it)
/// and `sent` (the push handed to the swarm); on the receiver's node `received` (the swarm
/// yielded the push), `storing` (its store job holds the shared state) and `stored` (readers
/// see it). Off unless asked for (`HEARTH_LOG=hearth_node::edit=trace`); the benchmark
/// harness times an edit's parts by them. They name no peer, record or content.
pub const EDIT_STAGES: &str = "hearth_node::edit";

/// A handle on the running node, for the API and for commands running in the daemon.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Control>,
    pairing: PairingSlot,
    status: Arc<Mutex<StatusInner>>,
    received: tokio::sync::watch::Receiver<u64>,
    /// The driver's change checker, shared with [`Handle::changed`].
    changes: Arc<Mutex<Changes>>,
    clock: Clock,
}

impl Handle {
    /// The current network state.
    pub fn status(&self) -> Status {
        let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.snapshot(*self.received.borrow())
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

    /// [`Handle::local_change`] for a caller that holds the store's lock (a command that just
    /// wrote): the change check runs here, under that lock, and the driver is handed only
    /// what to send, so an edit reaches online peers without waiting for a job of the
    /// driver's. A check reads every held record's log heads, so a node holding more than
    /// [`INLINE_CHECK_RECORDS`] records (a professional's) leaves it to the driver's job as
    /// [`Handle::local_change`] does, and the command's answer does not wait for it. Never
    /// blocks on the network; a dropped announcement is covered by the next background round.
    pub fn changed<S: Store>(&self, shared: &Shared<S>) {
        let connected = {
            let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st.connected_keys.clone()
        };
        let targets = {
            let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            if changes.records_seen() > INLINE_CHECK_RECORDS {
                drop(changes);
                return self.local_change();
            }
            let p = Local::new(&shared.vault, &shared.identity);
            changes.check(&p, &connected, None, Instant::now(), self.clock.now())
        };
        let written = shared.vault.peers_written();
        tracing::trace!(target: EDIT_STAGES, stage = "changed");
        let _ = self.tx.try_send(Control::Changed(targets, written));
    }

    /// Runs a round now with `with` (or every connected and known peer) for every record they
    /// are interested in, and waits for it (from a blocking context) up to `timeout`.
    pub fn sync_blocking(
        &self,
        with: Option<PeerKey>,
        timeout: Duration,
    ) -> Result<Vec<RoundOutcome>, HandleError> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .try_send(Control::Sync { with, reply })
            .map_err(|_| HandleError::Busy)?;
        rx.recv_timeout(timeout)
            .map_err(|_| HandleError::NoAnswer(timeout.as_secs()))
    }

    /// The relays that keep `record`, found on the relays' Kademlia network through `via` (or
    /// else this node's records' relays), waiting up to `timeout` (from a blocking context).
    pub fn find_relays(
        &self,
        record: RecordId,
        via: Option<(PeerKey, Multiaddr)>,
        timeout: Duration,
    ) -> Result<Vec<Located>, HandleError> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .try_send(Control::Find {
                record,
                via,
                timeout,
                reply,
            })
            .map_err(|_| HandleError::Busy)?;
        rx.recv_timeout(timeout + Duration::from_secs(2))
            .map_err(|_| HandleError::NoAnswer(timeout.as_secs()))
    }

    /// The count of bundles received from peers, watchable: changes as soon as a round
    /// stores bundles.
    pub fn received(&self) -> tokio::sync::watch::Receiver<u64> {
        self.received.clone()
    }

    /// The node's device-pairing slot.
    pub fn pairing(&self) -> &PairingSlot {
        &self.pairing
    }

    /// Asks the node to stop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Control::Shutdown).await;
    }
}

/// Starts the node on `swarm` (already listening or not), returning its handle and the task.
pub fn start<S: Store + Clone + Send + 'static>(
    swarm: HearthSwarm,
    shared: SharedState<S>,
    config: LiveConfig,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let status = Arc::new(Mutex::new(StatusInner::default()));
    let (received_tx, received_rx) = tokio::sync::watch::channel(0u64);
    let arrivals = Arrivals(Arc::new(received_tx));
    let changes = Arc::new(Mutex::new(Changes::default()));
    let handle = Handle {
        tx,
        pairing: config.pairing.clone(),
        status: status.clone(),
        received: received_rx,
        changes: changes.clone(),
        clock: config.clock,
    };
    let (work_tx, work_rx) = mpsc::channel(config.max_jobs + 8);
    let rounds = Rounds::new(RoundConfig {
        max_steps: config.max_steps,
        max_rounds_per_peer: config.max_rounds_per_peer,
        ..RoundConfig::default()
    });
    let dials = Dials::new(DialConfig {
        backoff_min: config.backoff_min,
        backoff_max: config.backoff_max,
        max_known: config.max_known,
        ..DialConfig::default()
    });
    let (burst, every) = (config.relay_burst, config.relay_every);
    let inbound = swarm.behaviour().gate.inbound().clone();
    let mut control = swarm.behaviour().notify.new_control();
    let notify_in = NotifyReceiver::start(&mut control, inbound.clone());
    let notify_out = NotifySender::new(control, inbound.notify_limits());
    let mut driver = Driver {
        swarm,
        shared,
        config,
        status,
        work_tx,
        jobs: 0,
        rounds,
        outbound: HashMap::new(),
        replies: HashMap::new(),
        dials,
        connected: BTreeSet::new(),
        net_changed: true,
        changes,
        arrivals,
        outbound_store: HashMap::new(),
        relays: BTreeSet::new(),
        rate: RateLimiter::new(burst, every, 4096),
        relay_counters: RelayCounters::default(),
        notify_counters: NotifyCounters::default(),
        snapshotting: false,
        relay_peers: std::collections::HashSet::new(),
        last_sweep: None,
        last_rotation_check: None,
        known_loaded: None,
        unreceipted: receipts::Waiting::default(),
        relay_unreceipted: Vec::new(),
        reach: reach::Reach::default(),
        locate: locate::Locate::default(),
        notify_in,
        notify_out,
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
    /// Every round's state.
    rounds: Rounds,
    /// The network's ids of requests awaiting answers, to the round state's.
    outbound: HashMap<OutboundRequestId, RequestId>,
    /// Who waits for the rounds a `sync` asked for.
    replies: HashMap<WaiterId, std::sync::mpsc::SyncSender<Vec<RoundOutcome>>>,
    /// Known peers and when to dial them.
    dials: Dials<Multiaddr>,
    connected: BTreeSet<PeerKey>,
    /// Whether listeners or connections changed since the status last showed them (each
    /// showing formats every peer id and address: not redone for every event).
    net_changed: bool,
    /// The change checker's memory (used by jobs).
    changes: Arc<Mutex<Changes>>,
    /// Bundles received from peers and stored, counted by the jobs that store them.
    arrivals: Arrivals,
    /// Requests on `/hearth/store/1` awaiting answers (the two protocols number theirs apart).
    outbound_store: HashMap<OutboundRequestId, RequestId>,
    /// The relays of the records held here (rounds with them use `/hearth/store/1`).
    relays: BTreeSet<PeerKey>,
    /// Relay nodes: each peer's request rate.
    rate: RateLimiter,
    relay_counters: RelayCounters,
    /// How `Notify`s reached connected peers (see [`NotifyCounters`]).
    notify_counters: NotifyCounters,
    /// Whether the snapshot job of a tick is running.
    snapshotting: bool,
    /// Relay nodes: the peers served (bounded like the rate table).
    relay_peers: std::collections::HashSet<PeerKey>,
    /// Relay nodes: when records past retention were last looked for.
    last_sweep: Option<Instant>,
    /// Patient's root device: when finished emergency uses were last looked for.
    last_rotation_check: Option<Instant>,
    /// [`Vault::peers_written`] when the known peers were last read (none yet).
    known_loaded: Option<u64>,
    /// Pushes sent whose access receipts are still to be written: written on the next tick,
    /// or at once past `MAX_UNRECEIPTED` pushes or `MAX_UNRECEIPTED_BYTES`.
    unreceipted: receipts::Waiting,
    /// On a relay node: the receipts of requests answered, written on the next tick.
    relay_unreceipted: Vec<(RecordId, hearth_core::audit::Action)>,
    /// Reachability: AutoNAT's verdict, circuit reservations, connections' addresses.
    reach: reach::Reach,
    /// The relays' Kademlia network: records announced, lookups running.
    locate: locate::Locate,
    /// `Notify` messages peers sent on their notify streams.
    notify_in: NotifyReceiver<Message>,
    /// This node's notify streams, one per peer it notified.
    notify_out: NotifySender<Message>,
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    async fn run(&mut self, mut rx: mpsc::Receiver<Control>, mut work_rx: mpsc::Receiver<Work>) {
        let mut periodic = tokio::time::interval(self.config.interval);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(Duration::from_millis(500));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.load_known();
        // Baseline fingerprints, so that later checks announce only real changes.
        self.check_changes(None, None);
        loop {
            let deadline = self.rounds.poll_timeout();
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some((pid, m)) = self.notify_in.recv() => self.on_notify_stream(pid, m),
                Some((pid, m)) = self.notify_out.returned() => self.notify_by_request(pid, m),
                Some(w) = work_rx.recv() => { self.jobs = self.jobs.saturating_sub(1); self.on_work(w); }
                c = rx.recv() => match c {
                    Some(Control::Shutdown) | None => break,
                    Some(c) => self.on_control(c),
                },
                _ = periodic.tick() => { self.plan(None, None, false); self.reach_tick(); self.locate_tick(); self.receipt_pushes(); self.receipt_relay_serves(); self.collect_audit(); self.snapshot_tick(); }
                _ = redial.tick() => self.redial(),
                _ = until(deadline) => self.rounds.handle_timeout(Instant::now()),
            }
            self.drive();
            self.publish();
        }
        // Receipts waiting for the tick, and snapshots edits left due, are written before
        // the node stops.
        self.receipt_all_now();
        self.snapshot_all_now();
        tracing::info!("network stopped");
    }

    /// Carries out what the round state asks for until it asks for nothing: store jobs,
    /// messages, and reports.
    fn drive(&mut self) {
        loop {
            let mut busy = false;
            while let Some(job) = self.rounds.poll_job() {
                busy = true;
                self.run_job(job);
            }
            while let Some(t) = self.rounds.poll_transmit() {
                busy = true;
                self.transmit(t);
            }
            while let Some(ev) = self.rounds.poll_event() {
                busy = true;
                self.on_round_event(ev);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_round_event(&mut self, ev: Event) {
        match ev {
            Event::Finished(o) => self.record_outcome(o),
            Event::Received {
                peer,
                record,
                count,
            } => {
                // Counted in the job that stored them (`Arrivals`).
                tracing::info!(%peer, record = %record, received = count, "received bundles");
                self.check_changes(Some(peer), Some(record));
            }
            Event::Answered { waiter, outcomes } => {
                if let Some(reply) = self.replies.remove(&waiter) {
                    let _ = reply.try_send(outcomes);
                }
            }
        }
    }

    /// Keeps how a round ended for `status` (rounds with a record not held here, such as a
    /// stranger's `Notify` draws, are not kept).
    fn record_outcome(&mut self, o: RoundOutcome) {
        let (peer, record) = (o.peer, o.record);
        if let Err(e) = &o.result {
            tracing::info!(%peer, record = %record, "sync round failed: {e}");
        }
        if matches!(o.result, Err(RoundError::NotHeld)) {
            return;
        }
        let state = SessionState {
            peer: peer.to_string(),
            record: record.to_string(),
            at: self.config.clock.now(),
            in_sync: o.result.as_ref().is_ok_and(|r| r.in_sync),
            error: o.result.as_ref().err().map(ToString::to_string),
            report: o.result.ok(),
        };
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.rounds_finished += 1;
        st.rounds_failed += u64::from(state.error.is_some());
        if st.sessions.len() < 4096 || st.sessions.contains_key(&(record, peer)) {
            st.sessions.insert((record, peer), state);
        }
    }

    /// Updates the shared status (cheap fields every time; listeners, connections and known
    /// peers when they changed; sessions are updated in place as rounds end).
    fn publish(&mut self) {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut self.net_changed) {
            let mut addrs: Vec<String> = self.swarm.listeners().map(ToString::to_string).collect();
            // A stable order, TCP first: scripts take the first address.
            addrs.sort_by_key(|a| (!a.contains("/tcp/"), a.clone()));
            st.listen_addrs = addrs;
            st.connected = self.connected.iter().map(ToString::to_string).collect();
            st.connected_keys = self.connected.clone();
            st.connections = self.reach.connections();
        }
        if self.dials.take_changed() {
            st.known = self
                .dials
                .iter()
                .map(|(p, d)| {
                    (
                        p.to_string(),
                        KnownPeer {
                            addrs: d.addrs().iter().map(ToString::to_string).collect(),
                            failures: d.failures(),
                            last_error: d.last_error().map(str::to_string),
                        },
                    )
                })
                .collect();
        }
        st.reachability = self.reach.nat.word().to_string();
        st.notify = self.notify_counters;
        if self.config.relay.is_some() {
            let mut c = self.relay_counters.clone();
            c.peers = self.relay_peers.len();
            st.relay = Some(c);
        }
        drop(st);
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::AddPeer(peer, addr) => {
                self.remember(peer, vec![addr]);
                self.dials.retry_now(&peer, Instant::now());
                self.redial();
            }
            Control::LocalChange => {
                self.check_changes(None, None);
                // A command may have added peers (`peers add`, `accept`).
                self.load_known();
            }
            Control::Changed(targets, written) => {
                tracing::trace!(target: EDIT_STAGES, stage = "announce");
                self.announce(targets);
                // A command may have added peers (`accept`); an edit did not.
                self.load_known_since(written);
            }
            Control::Sync { with, reply } => {
                let waiter = self.rounds.new_waiter();
                self.replies.insert(waiter, reply);
                self.plan(with, Some(waiter), true);
            }
            Control::Find {
                record,
                via,
                timeout,
                reply,
            } => {
                self.find_relays(record, via, timeout, reply);
            }
            Control::Shutdown => {}
        }
    }
}
