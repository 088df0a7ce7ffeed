//! The driver's store work: every job runs on the blocking pool with the shared state locked
//! (the snapshot job only while it copies documents and writes snapshots, not while it saves
//! them), and its result comes back to the driver as [`Work`].

use super::{Driver, EDIT_STAGES, Shared, SharedState, lock};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::record::{RecordError, Vault};
use hearth_core::store::Store;
use hearth_sync::changes::Announce;
use hearth_sync::net::{peer_id, peer_key};
use hearth_sync::protocol::Message;
use hearth_sync::relay::server::{RelayLimits, Served, Server};
use hearth_sync::round::{Job, Plan, WaiterId};
use hearth_sync::session::{Local, Report, SyncError};
use libp2p::Multiaddr;
use libp2p::request_response::ResponseChannel;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Results of jobs, back to the swarm task.
pub(super) enum Work {
    Started {
        peer: PeerKey,
        record: RecordId,
        req: Result<Message, SyncError>,
    },
    Stepped {
        peer: PeerKey,
        record: RecordId,
        res: Result<(Option<Message>, Report), SyncError>,
    },
    Pushed {
        peer: PeerKey,
        record: RecordId,
        named: bool,
        res: Result<Report, SyncError>,
    },
    /// A relay's answer to a `/hearth/store/1` request.
    Stored {
        peer: PeerKey,
        channel: ResponseChannel<Message>,
        resp: Message,
        served: Served,
        /// The peers on the lists of the records kept here, when a list changed.
        parties: Option<BTreeSet<PeerKey>>,
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
        waiter: Option<WaiterId>,
        /// Every peer some record here makes interested (they get a grantee's network limits,
        /// not a stranger's).
        parties: BTreeSet<PeerKey>,
        /// The records' relays, with their addresses.
        relays: Vec<(PeerKey, Vec<Multiaddr>)>,
    },
    Announce(Vec<Announce>),
    /// Known peers, and [`Vault::peers_written`](hearth_core::record::Vault::peers_written)
    /// when they were read.
    Known(Vec<(PeerKey, Vec<Multiaddr>)>, u64),
    /// How many of this patient device's audit journal events went into the record's audit
    /// log (which then syncs to the patient's other devices).
    Collected(usize),
    /// The snapshot job ended ([`Driver::snapshot_tick`]).
    SnapshotsWritten,
}

/// The node's random generator (the OS's).
pub(super) fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

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
    // Records this node asked for access to through a relay: the answer is collected there.
    for r in hearth_sync::session::asked_records(vault) {
        out.entry(r).or_default();
    }
    // Records this node's user opened with emergency access.
    for r in vault.emergency_records().unwrap_or_default() {
        out.entry(r).or_default();
    }
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

/// The peers to sync `record` with: those the session says are interested (its relays
/// among them), plus those the grants name as holding it.
fn peers_for<S: Store>(
    p: &Local<'_, S>,
    record: &RecordId,
    named: &BTreeSet<PeerKey>,
    relays: &[(PeerKey, hearth_core::ledger::RelayItem)],
) -> BTreeSet<PeerKey> {
    let mut s: BTreeSet<PeerKey> = p.interested_peers(record).into_iter().collect();
    s.extend(named.iter().copied());
    s.extend(relays.iter().map(|(r, _)| *r));
    s
}

/// On a relay node, the peers on the access lists of the records it keeps (after deleting
/// those past retention when `sweep`); none elsewhere.
fn hosted_parties<S: Store>(
    sh: &Shared<S>,
    relay: Option<&RelayLimits>,
    sweep: bool,
    now: hearth_core::time::Timestamp,
) -> BTreeSet<PeerKey> {
    match relay {
        Some(limits) => {
            let server = Server::new(&sh.vault, &sh.identity, limits);
            match if sweep { server.sweep(now) } else { Ok(0) } {
                Ok(0) => {}
                Ok(n) => tracing::info!(records = n, "relay: records past retention deleted"),
                Err(e) => tracing::warn!("relay: retention sweep failed: {e}"),
            }
            server.parties(now)
        }
        None => BTreeSet::new(),
    }
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// Loads the known peers from the store.
    pub(super) fn load_known(&mut self) {
        self.job(|sh| {
            // Read before the peers: a write after it is seen by the next load.
            let written = sh.vault.peers_written();
            let known = sh
                .vault
                .known_peers()
                .unwrap_or_default()
                .into_iter()
                .map(|(peer, addrs)| (peer, hearth_sync::net::multiaddrs(&addrs)))
                .collect();
            Work::Known(known, written)
        });
    }

    /// [`Driver::load_known`] unless the peers were last loaded at `written`
    /// ([`Vault::peers_written`](hearth_core::record::Vault::peers_written)): an edit does not
    /// read them again.
    pub(super) fn load_known_since(&mut self, written: u64) {
        if self.known_loaded != Some(written) {
            self.load_known();
        }
    }

    /// Writes the section snapshots that adds left due (a daemon's vault defers them:
    /// [`Vault::deferring_snapshots`](hearth_core::record::Vault::deferring_snapshots)), in a
    /// job of their own, so an edit is answered and pushed without waiting for one. Run on
    /// every tick; skipped while the node is saturated (what is due stays due) or the last
    /// tick's job is still saving.
    pub(super) fn snapshot_tick(&mut self) {
        if self.jobs >= self.config.max_jobs || self.snapshotting {
            return;
        }
        self.jobs += 1;
        self.snapshotting = true;
        let shared = self.shared.clone();
        let tx = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            // Told even if the save panics, or no snapshot would be written again until the
            // node restarts (the lock recovers from the poisoning; what was due stays due).
            let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_due_snapshots(&shared);
            }));
            if saved.is_err() {
                tracing::warn!("the section snapshot job failed; its snapshots stay due");
            }
            let _ = tx.blocking_send(Work::SnapshotsWritten);
        });
    }

    /// Writes the snapshots due now, on this thread (the node is stopping: no job would run).
    pub(super) fn snapshot_all_now(&mut self) {
        write_due_snapshots(&self.shared);
    }

    /// Runs `f` on the blocking pool with the shared state locked; its result comes back as
    /// work. Returns false (and runs nothing) when the node is saturated.
    pub(super) fn job(&mut self, f: impl FnOnce(&Shared<S>) -> Work + Send + 'static) -> bool {
        if self.jobs >= self.config.max_jobs {
            tracing::warn!("busy: a sync step was dropped");
            return false;
        }
        self.spawn_job(f);
        true
    }

    /// [`Driver::job`] whatever the number of jobs running: for work that must not be
    /// dropped (the receipts of data already sent), small and bounded by what was sent.
    pub(super) fn spawn_job(&mut self, f: impl FnOnce(&Shared<S>) -> Work + Send + 'static) {
        self.spawn_job_then(f, |w| w);
    }

    /// [`Driver::spawn_job`] whose result goes through `then`, on the same thread, once the
    /// shared state is let go, before it reaches the driver.
    fn spawn_job_then<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Shared<S>) -> T + Send + 'static,
        then: impl FnOnce(T) -> Work + Send + 'static,
    ) {
        self.jobs += 1;
        let shared = self.shared.clone();
        let tx = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let t = {
                let g = lock(&shared);
                f(&g)
            };
            let _ = tx.blocking_send(then(t));
        });
    }

    /// Runs a job the round state asked for, or tells it the node is saturated.
    pub(super) fn run_job(&mut self, job: Job) {
        if self.jobs >= self.config.max_jobs {
            tracing::warn!("busy: a sync step was dropped");
            self.rounds.refuse_job(job, Instant::now());
            return;
        }
        let clock = self.config.clock;
        match job {
            Job::Start {
                peer,
                record,
                named,
            } => self.job(move |sh| {
                let req = if all_records(&sh.vault).contains_key(&record) {
                    Local::new(&sh.vault, &sh.identity).begin(
                        record,
                        peer,
                        named,
                        clock.now(),
                        &mut os_rng(),
                    )
                } else {
                    // Not held here: the same answer as a peer that is no party to it.
                    Err(SyncError::NotAParty)
                };
                Work::Started { peer, record, req }
            }),
            Job::Step {
                peer,
                record,
                response,
            } => {
                let arrivals = self.arrivals.clone();
                self.job(move |sh| {
                    let p = Local::new(&sh.vault, &sh.identity);
                    let mut res = p.on_answer(peer, record, *response, clock.now(), &mut os_rng());
                    if let Ok((_, report)) = &mut res {
                        arrivals.add(report.received);
                        // The receipt is durable before the next request carries the data.
                        if let Some(a) = report.served.take() {
                            super::receipts::keep_receipts(sh, vec![(record, *a)], clock.now());
                        }
                    }
                    Work::Stepped { peer, record, res }
                })
            }
            Job::Push {
                peer,
                record,
                named,
                push,
            } => {
                self.store_push(peer, record, named, push);
                true
            }
        };
    }

    /// Stores a push (new bundles a peer sent outside a round) on the blocking pool: under the
    /// shared state's lock they are checked and committed visible-first
    /// ([`Local::visible_first`]); once the lock is let go, readers (who take it) can see them,
    /// so they are counted as arrived, and then the store is flushed, before the driver hears
    /// of them. An edit thus reaches the grantee's screen without waiting for the grantee's
    /// disk; the patient's node, which made it durable before sending, sends it again at the
    /// next sync if this node's flush never happens.
    fn store_push(&mut self, peer: PeerKey, record: RecordId, named: bool, push: Vec<ByteBuf>) {
        let (arrivals, clock) = (self.arrivals.clone(), self.config.clock);
        self.spawn_job_then(
            move |sh| {
                tracing::trace!(target: EDIT_STAGES, stage = "storing");
                let p = Local::new(&sh.vault, &sh.identity).visible_first();
                (
                    p.on_push(record, &push, clock.now()),
                    sh.vault.store().clone(),
                )
            },
            move |(res, store)| {
                let res = res.and_then(|report| {
                    tracing::trace!(target: EDIT_STAGES, stage = "stored");
                    arrivals.add(report.received);
                    store.flush().map_err(RecordError::from)?;
                    Ok(report)
                });
                Work::Pushed {
                    peer,
                    record,
                    named,
                    res,
                }
            },
        );
    }

    pub(super) fn on_work(&mut self, w: Work) {
        let now = Instant::now();
        match w {
            Work::Started { peer, record, req } => {
                self.rounds.handle_started(peer, record, req, now)
            }
            Work::Stepped { peer, record, res } => {
                self.rounds.handle_stepped(peer, record, res, now)
            }
            Work::Pushed {
                peer,
                record,
                named,
                res,
            } => self.rounds.handle_pushed(peer, record, named, res, now),
            Work::Stored {
                peer,
                channel,
                resp,
                served,
                parties,
            } => self.on_stored(peer, channel, resp, served, parties),
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
                    tracing::info!(%peer, record = %record, received = n, "received pushed bundles");
                    self.check_changes(Some(peer), Some(record));
                }
                if let Some(record) = linked {
                    // The auth document changed (a new device): tell the others.
                    tracing::debug!(device = %peer, record = %record, "device linked: announcing the auth document change");
                    self.check_changes(Some(peer), Some(record));
                }
            }
            Work::Plan {
                pairs,
                waiter,
                parties,
                relays,
            } => {
                self.relays = relays.iter().map(|(p, _)| *p).collect();
                for (peer, addrs) in relays {
                    self.remember(peer, addrs);
                }
                let known: Vec<libp2p::PeerId> = parties
                    .iter()
                    .chain(self.dials.peers())
                    .filter_map(peer_id)
                    .collect();
                self.swarm.behaviour().gate.inbound().set_known(known);
                if let Some(w) = waiter {
                    self.rounds.expect(w, pairs.len());
                }
                for (peer, record, named) in pairs {
                    self.rounds.start(peer, record, named, waiter, now);
                }
            }
            Work::Announce(targets) => self.announce(targets),
            Work::Collected(n) => {
                if n > 0 {
                    self.check_changes(None, None);
                }
            }
            Work::SnapshotsWritten => self.snapshotting = false,
            Work::Known(known, written) => {
                self.known_loaded = Some(written);
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
    pub(super) fn plan(&mut self, with: Option<PeerKey>, waiter: Option<WaiterId>, explicit: bool) {
        let plan = Plan {
            with,
            connected: self.connected.clone(),
            known: self.dials.peers().copied().collect(),
            explicit,
        };
        let clock = self.config.clock;
        let relay = self.config.relay.clone();
        // A relay deletes records past retention at most once an hour.
        let sweep = relay.is_some()
            && self
                .last_sweep
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(3600));
        if sweep {
            self.last_sweep = Some(Instant::now());
        }
        let ok = self.job(move |sh| {
            let p = Local::new(&sh.vault, &sh.identity);
            let now = clock.now();
            // Each record's relays, read once: they are peers to plan with, and addresses to
            // remember.
            let mut relays: BTreeMap<PeerKey, Vec<Multiaddr>> = BTreeMap::new();
            let records: Vec<(RecordId, BTreeSet<PeerKey>)> = all_records(&sh.vault)
                .into_iter()
                .map(|(record, named)| {
                    let rel = p.relays(&record, now);
                    for (peer, item) in &rel {
                        let addrs = item.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                        relays.insert(*peer, addrs);
                    }
                    (record, peers_for(&p, &record, &named, &rel))
                })
                .collect();
            let relays: Vec<(PeerKey, Vec<Multiaddr>)> = relays.into_iter().collect();
            let hosted = hosted_parties(sh, relay.as_ref(), sweep, now);
            let parties = records
                .iter()
                .flat_map(|(_, i)| i.iter().copied())
                .chain(hosted)
                .collect();
            Work::Plan {
                pairs: plan.pairs(records),
                waiter,
                parties,
                relays,
            }
        });
        if !ok && let Some(w) = waiter {
            tracing::warn!("sync request dropped: busy");
            // Dropping the reply tells the caller at once.
            self.rounds.forget_waiter(w);
            self.replies.remove(&w);
        }
    }

    /// Announces the records whose logs moved since the last check (of all records, or only
    /// `only` when nothing else can have moved) to their interested connected peers (except
    /// `except`, the peer the change came from): [`Changes`] decides, in a job.
    ///
    /// [`Changes`]: hearth_sync::changes::Changes
    pub(super) fn check_changes(&mut self, except: Option<PeerKey>, only: Option<RecordId>) {
        let changes = self.changes.clone();
        let connected = self.connected.clone();
        let clock = self.config.clock;
        self.job(move |sh| {
            let p = Local::new(&sh.vault, &sh.identity);
            let mut changes = changes.lock().unwrap_or_else(|e| e.into_inner());
            let (now, at) = (Instant::now(), clock.now());
            Work::Announce(match only {
                Some(record) => changes.check_record(&p, record, &connected, except, now, at),
                None => changes.check(&p, &connected, except, now, at),
            })
        });
    }
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// Sends what a change check decided: a notification (with the bundles the peer may
    /// hold) to each connected peer, a round to each relay.
    pub(super) fn announce(&mut self, targets: Vec<Announce>) {
        let now = Instant::now();
        let mut pushed = Vec::new();
        for a in targets {
            if self.relays.contains(&a.peer) {
                // A relay is not notified: it is supplied, in a round.
                self.rounds.start(a.peer, a.record, false, None, now);
            } else if self.connected.contains(&a.peer) {
                if !a.push.is_empty() {
                    pushed.push((a.record, a.peer, a.push.clone()));
                }
                self.rounds.notify(a.peer, a.record, a.push, now);
            }
        }
        self.note_pushes(pushed);
    }
}

/// Writes the section snapshots due on this node, saying how it went in the log. The shared
/// state is locked to copy the documents and to write the snapshots, not while they are saved
/// and sealed (about 300 ms for a section of 100,000 notes, against 20 ms to copy it): an edit
/// or a read meanwhile does not wait for the save.
fn write_due_snapshots<S: Store>(shared: &SharedState<S>) {
    let taken = {
        let sh = lock(shared);
        sh.vault.take_due_snapshots(&sh.identity)
    };
    if taken.is_empty() {
        return;
    }
    let sealed = taken
        .into_iter()
        .map(|p| p.seal(&mut os_rng()))
        .collect::<Result<Vec<_>, _>>();
    let written = sealed.and_then(|sealed| {
        let sh = lock(shared);
        sh.vault.put_sealed_snapshots(&sh.identity, sealed)
    });
    match written {
        Ok(0) => {}
        Ok(n) => tracing::debug!(sections = n, "section snapshots written"),
        Err(e) => tracing::warn!("cannot write section snapshots: {e}"),
    }
}
