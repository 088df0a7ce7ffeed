//! Sync rounds, sans-I/O: which rounds run with which peer, when one is abandoned, and who is
//! told how it ended.
//!
//! A *round* is one sync of one record with one peer: a first request built by
//! [`Local::start_as`](crate::session::Local::start_as), then request/response steps until the
//! requester has nothing more to ask or push. [`Rounds`] holds every round of a node, in the
//! manner of quinn-proto's `Connection`: the driver feeds it what happened, with the time
//! passed in, and pulls out what to do next. It never touches the store, the network or the
//! clock:
//!
//! - **in**: [`Rounds::start`] (a round is wanted), [`Rounds::handle_notify`] (a peer's
//!   `Notify`), [`Rounds::handle_started`], [`Rounds::handle_stepped`] and
//!   [`Rounds::handle_pushed`] (results of store jobs), [`Rounds::handle_response`] and
//!   [`Rounds::handle_failure`] and [`Rounds::handle_sent`] (the network),
//!   [`Rounds::handle_timeout`];
//! - **out**: [`Rounds::poll_job`] (store work to run: the session needs the vault),
//!   [`Rounds::poll_transmit`] (messages to send), [`Rounds::poll_event`] (rounds that ended,
//!   bundles that arrived, answers for whoever waited), [`Rounds::poll_timeout`] (the next
//!   deadline).
//!
//! The bounds a stranger could otherwise grow live here: [`RoundConfig::max_steps`] steps per
//! round, [`RoundConfig::max_rounds_per_peer`] rounds at once with one peer, and a deadline on
//! every request sent.
//!
//! ```
//! use hearth_sync::round::{Event, Job, RoundConfig, Rounds};
//! # use hearth_core::ids::{PeerKey, RecordId};
//! # let (peer, record) = (PeerKey([1; 32]), RecordId([2; 32]));
//! let now = std::time::Instant::now();
//! let mut rounds = Rounds::new(RoundConfig::default());
//! let waiter = rounds.new_waiter();
//! rounds.expect(waiter, 1);
//! rounds.start(peer, record, false, Some(waiter), now);
//! // The driver runs the session's `start_as` on its store and feeds the result back.
//! let Some(Job::Start { .. }) = rounds.poll_job() else { panic!() };
//! rounds.handle_started(peer, record, Err(hearth_sync::session::SyncError::NotAParty), now);
//! assert!(matches!(rounds.poll_event(), Some(Event::Finished(_))));
//! assert!(matches!(rounds.poll_event(), Some(Event::Answered { .. })));
//! ```

use crate::protocol::{Message, Notify};
use crate::session::{Report, SyncError};

mod error;
mod plan;

pub use error::{RoundError, RoundOutcome};
use hearth_core::ids::{PeerKey, RecordId};
pub use plan::{Plan, RoundConfig};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Names a request this node sent, until its answer (or failure) is fed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// Names someone waiting for a set of rounds (a `hearth sync` call); opaque to [`Rounds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// A message to send.
#[derive(Debug)]
pub struct Transmit {
    /// Feed the answer back with this id.
    pub id: RequestId,
    /// To whom.
    pub peer: PeerKey,
    /// What: a [`Message::Request`] or a [`Message::Notify`].
    pub message: Message,
}

/// Store work the driver runs (with the session over its vault) and feeds back.
#[derive(Debug)]
pub enum Job {
    /// Build the first request ([`Local::start_as`](crate::session::Local::start_as), after
    /// checking the record is held here); result to [`Rounds::handle_started`].
    Start {
        /// The peer.
        peer: PeerKey,
        /// The record.
        record: RecordId,
        /// The user named the peer (`sync --with`, a known peer).
        named: bool,
    },
    /// Take the peer's response
    /// ([`Local::on_response`](crate::session::Local::on_response)); result to
    /// [`Rounds::handle_stepped`].
    Step {
        /// The peer.
        peer: PeerKey,
        /// The record.
        record: RecordId,
        /// Its response: a [`Message::Response`], or a relay's [`Message::Stored`].
        response: Box<Message>,
    },
    /// Store bundles a peer pushed with a `Notify`
    /// ([`Local::on_push`](crate::session::Local::on_push)); result to
    /// [`Rounds::handle_pushed`].
    Push {
        /// The peer.
        peer: PeerKey,
        /// The record.
        record: RecordId,
        /// Whether the user named the peer (for the round that follows a refusal).
        named: bool,
        /// The bundles.
        push: Vec<ByteBuf>,
    },
}

/// What happened, for the driver to report.
#[derive(Debug)]
pub enum Event {
    /// A round ended (not reported to the user when it failed with [`RoundError::NotHeld`]).
    Finished(RoundOutcome),
    /// Bundles from `peer` were stored: announce them to the record's other peers.
    Received {
        /// From whom.
        peer: PeerKey,
        /// The record.
        record: RecordId,
        /// How many bundles.
        count: usize,
    },
    /// Every round a waiter expected has ended.
    Answered {
        /// The waiter.
        waiter: WaiterId,
        /// How each ended.
        outcomes: Vec<RoundOutcome>,
    },
}

/// One round in progress.
#[derive(Debug)]
struct Round {
    waiters: Vec<WaiterId>,
    /// Asked for again while running: run once more when it ends.
    again: bool,
    steps: u32,
    /// The user named the peer (see [`Local::start_as`](crate::session::Local::start_as)).
    named: bool,
}

/// A request awaiting its answer.
#[derive(Debug)]
struct Flight {
    peer: PeerKey,
    record: RecordId,
    /// A notification (its acknowledgement is ignored) rather than a round's step.
    notify: bool,
    deadline: Instant,
}

/// Rounds awaited by one waiter.
#[derive(Debug, Default)]
struct Waiting {
    remaining: usize,
    outcomes: Vec<RoundOutcome>,
}

/// Every round of one node (see the module docs).
#[derive(Debug)]
pub struct Rounds {
    config: RoundConfig,
    rounds: HashMap<(PeerKey, RecordId), Round>,
    flights: HashMap<RequestId, Flight>,
    waiting: HashMap<WaiterId, Waiting>,
    next_id: u64,
    jobs: VecDeque<Job>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Rounds {
    /// No rounds yet.
    pub fn new(config: RoundConfig) -> Self {
        Rounds {
            config,
            rounds: HashMap::new(),
            flights: HashMap::new(),
            waiting: HashMap::new(),
            next_id: 0,
            jobs: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The bounds in use.
    pub fn config(&self) -> &RoundConfig {
        &self.config
    }

    /// Rounds in progress.
    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    /// Whether no round is in progress.
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    fn next(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// A new waiter: pass it to [`Rounds::expect`] and [`Rounds::start`]; its answer comes as
    /// [`Event::Answered`].
    pub fn new_waiter(&mut self) -> WaiterId {
        let w = WaiterId(self.next());
        self.waiting.insert(w, Waiting::default());
        w
    }

    /// `waiter` waits for `n` more rounds (answered at once when it waits for none).
    pub fn expect(&mut self, waiter: WaiterId, n: usize) {
        let Some(w) = self.waiting.get_mut(&waiter) else {
            return;
        };
        w.remaining += n;
        if w.remaining == 0 {
            self.answer(waiter);
        }
    }

    /// Forgets a waiter nobody listens to any more.
    pub fn forget_waiter(&mut self, waiter: WaiterId) {
        self.waiting.remove(&waiter);
        for r in self.rounds.values_mut() {
            r.waiters.retain(|w| *w != waiter);
        }
    }

    fn answer(&mut self, waiter: WaiterId) {
        if let Some(w) = self.waiting.remove(&waiter) {
            self.events.push_back(Event::Answered {
                waiter,
                outcomes: w.outcomes,
            });
        }
    }

    fn done(&mut self, waiter: WaiterId, outcome: RoundOutcome) {
        let Some(w) = self.waiting.get_mut(&waiter) else {
            return;
        };
        w.outcomes.push(outcome);
        w.remaining = w.remaining.saturating_sub(1);
        if w.remaining == 0 {
            self.answer(waiter);
        }
    }

    /// Starts a round with `peer` for `record`, or, if one is running, has it run once more
    /// when it ends. `named`: the user named the peer (see
    /// [`Local::start_as`](crate::session::Local::start_as)).
    pub fn start(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        named: bool,
        waiter: Option<WaiterId>,
        _now: Instant,
    ) {
        if let Some(r) = self.rounds.get_mut(&(peer, record)) {
            r.again = true;
            r.waiters.extend(waiter);
            return;
        }
        // A peer cannot occupy the node with rounds for many records at once (a stranger
        // sending `Notify` for made-up records): a few at a time, the rest wait for the next
        // background round.
        let per_peer = self.rounds.keys().filter(|(p, _)| *p == peer).count();
        if per_peer >= self.config.max_rounds_per_peer {
            if let Some(w) = waiter {
                let result = Err(RoundError::TooManyRounds);
                self.done(
                    w,
                    RoundOutcome {
                        peer,
                        record,
                        result,
                    },
                );
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
        self.jobs.push_back(Job::Start {
            peer,
            record,
            named,
        });
    }

    /// A peer's `Notify` arrived (already acknowledged): store what it pushed, or, if it
    /// pushed nothing, sync that record with it. Whether a round actually sends anything is
    /// the session's decision (a stranger is no party: nothing is sent).
    pub fn handle_notify(&mut self, peer: PeerKey, notify: Notify, named: bool, now: Instant) {
        if notify.push.is_empty() {
            self.start(peer, notify.record, named, None, now);
        } else {
            self.jobs.push_back(Job::Push {
                peer,
                record: notify.record,
                named,
                push: notify.push,
            });
        }
    }

    /// Sends `Notify { record, push }` to `peer` (its acknowledgement is ignored).
    pub fn notify(&mut self, peer: PeerKey, record: RecordId, push: Vec<ByteBuf>, now: Instant) {
        let message = Message::Notify(Notify { record, push });
        self.transmit(peer, record, true, message, now);
    }

    /// Queues `message` to `peer` with a deadline for its answer.
    fn transmit(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        notify: bool,
        message: Message,
        now: Instant,
    ) {
        let id = RequestId(self.next());
        let deadline = now + self.config.step_timeout;
        let flight = Flight {
            peer,
            record,
            notify,
            deadline,
        };
        self.flights.insert(id, flight);
        self.transmits.push_back(Transmit { id, peer, message });
    }

    /// The driver could not run `job` (it is saturated): the round it belongs to fails as
    /// busy; a push is turned into a round (which may well be busy too).
    pub fn refuse_job(&mut self, job: Job, now: Instant) {
        match job {
            Job::Start { peer, record, .. } | Job::Step { peer, record, .. } => {
                self.finish(peer, record, Err(RoundError::Busy), now);
            }
            Job::Push {
                peer,
                record,
                named,
                ..
            } => self.start(peer, record, named, None, now),
        }
    }

    /// The result of [`Job::Start`]: the first request, or why there is none
    /// ([`SyncError::NotAParty`]: the record is not held here or the peer is no party to it).
    ///
    /// The request is a [`Message::Request`], or a [`Message::Store`] when the peer is one
    /// of the record's relays.
    pub fn handle_started(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        request: Result<Message, SyncError>,
        now: Instant,
    ) {
        match request {
            Ok(req) => self.send(peer, record, req, now),
            Err(SyncError::NotAParty) => self.finish(peer, record, Err(RoundError::NotHeld), now),
            Err(e) => self.finish(peer, record, Err(e.into()), now),
        }
    }

    /// The result of [`Job::Step`]: the next request (if any) and the step's report.
    pub fn handle_stepped(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        result: Result<(Option<Message>, Report), SyncError>,
        now: Instant,
    ) {
        match result {
            Ok((next, report)) => {
                if report.received > 0 {
                    self.events.push_back(Event::Received {
                        peer,
                        record,
                        count: report.received,
                    });
                }
                match next {
                    Some(req) => self.send(peer, record, req, now),
                    None => self.finish(peer, record, Ok(report), now),
                }
            }
            Err(e) => self.finish(peer, record, Err(e.into()), now),
        }
    }

    /// The result of [`Job::Push`]. All stored: done. Anything refused (a gap: something was
    /// missed in between) or a failure: a full round sorts it out, if the peer is a party to
    /// the record (the session decides).
    pub fn handle_pushed(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        named: bool,
        result: Result<Report, SyncError>,
        now: Instant,
    ) {
        match result {
            Ok(report) if report.refused.is_empty() => {
                if report.received > 0 {
                    self.events.push_back(Event::Received {
                        peer,
                        record,
                        count: report.received,
                    });
                }
            }
            _ => self.start(peer, record, named, None, now),
        }
    }

    fn send(&mut self, peer: PeerKey, record: RecordId, req: Message, now: Instant) {
        let Some(round) = self.rounds.get_mut(&(peer, record)) else {
            return;
        };
        round.steps += 1;
        if round.steps > self.config.max_steps {
            self.finish(peer, record, Err(RoundError::TooManySteps), now);
            return;
        }
        self.transmit(peer, record, false, req, now);
    }

    /// The peer answered request `id`. A response for the round's record becomes a
    /// [`Job::Step`]; anything else ends the round (the peer's fault). Unknown or timed-out
    /// ids and acknowledgements of notifications are ignored.
    pub fn handle_response(&mut self, id: RequestId, message: Message, now: Instant) {
        let Some(f) = self.flights.remove(&id) else {
            return;
        };
        if f.notify {
            return;
        }
        let (peer, record) = (f.peer, f.record);
        match message {
            Message::Response(ref r) if r.record == record => {
                self.jobs.push_back(Job::Step {
                    peer,
                    record,
                    response: Box::new(message),
                });
            }
            Message::Stored(ref r) if r.record == crate::relay::blind(&record, &peer) => {
                self.jobs.push_back(Job::Step {
                    peer,
                    record,
                    response: Box::new(message),
                });
            }
            Message::Response(_) | Message::Stored(_) => {
                self.finish(peer, record, Err(RoundError::OtherRecord), now)
            }
            _ => self.finish(peer, record, Err(RoundError::UnexpectedAnswer), now),
        }
    }

    /// Request `id` failed (the network, or [`RoundError::InvalidPeer`]): its round ends.
    pub fn handle_failure(&mut self, id: RequestId, error: RoundError, now: Instant) {
        if let Some(f) = self.flights.remove(&id)
            && !f.notify
        {
            self.finish(f.peer, f.record, Err(error), now);
        }
    }

    /// Request `id` was a `Notify` sent one way (on `/hearth/notify/1`): no answer will
    /// come, and none was wanted.
    pub fn handle_sent(&mut self, id: RequestId) {
        if self.flights.get(&id).is_some_and(|f| f.notify) {
            self.flights.remove(&id);
        }
    }

    /// When [`Rounds::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flights.values().map(|f| f.deadline).min()
    }

    /// Ends the rounds whose requests went unanswered past their deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<RequestId> = self
            .flights
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.handle_failure(id, RoundError::Timeout, now);
        }
    }

    /// The next store job to run.
    pub fn poll_job(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the round with `peer` for `record`: reports it, answers its waiters, and runs it
    /// again if something asked for that meanwhile.
    fn finish(
        &mut self,
        peer: PeerKey,
        record: RecordId,
        result: Result<Report, RoundError>,
        now: Instant,
    ) {
        let outcome = RoundOutcome {
            peer,
            record,
            result,
        };
        let round = self.rounds.remove(&(peer, record));
        // A request of this round still in flight (a timeout raced its answer) is forgotten.
        self.flights
            .retain(|_, f| f.notify || (f.peer, f.record) != (peer, record));
        self.events.push_back(Event::Finished(outcome.clone()));
        if let Some(r) = &round {
            for w in &r.waiters {
                self.done(*w, outcome.clone());
            }
        }
        if let Some(r) = round
            && r.again
        {
            self.start(peer, record, r.named, None, now);
        }
    }
}
