//! Rounds and live propagation with simulated pairs: two nodes' round state machines wired in
//! memory over real in-memory vaults, a simulated clock, and messages that can be lost.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::grant::Ability;
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::time::Timestamp;
use hearth_sync::changes::{Announce, Changes, RIGHTS_TTL};
use hearth_sync::protocol::{Message, Notify};
use hearth_sync::round::{
    Event, Job, Plan, RoundConfig, RoundError, RoundOutcome, Rounds, Transmit, WaiterId,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// The simulated clock's origin: any instant will do, only offsets matter.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// One node: its store and identity, its rounds, and what its rounds reported.
struct Side {
    node: Node,
    rounds: Rounds,
    finished: Vec<RoundOutcome>,
    answered: Vec<(WaiterId, Vec<RoundOutcome>)>,
    received: usize,
}

impl Side {
    fn new(node: Node, config: RoundConfig) -> Side {
        Side {
            node,
            rounds: Rounds::new(config),
            finished: Vec::new(),
            answered: Vec::new(),
            received: 0,
        }
    }
    fn peer(&self) -> PeerKey {
        self.node.id.peer()
    }
}

/// Two sides and the network between them: every transmit is delivered at once unless it is
/// to be lost; the clock moves only when told.
struct Pair {
    sides: [Side; 2],
    rng: hearth_core::test_utils::TestRng,
    now: Instant,
    wall: Timestamp,
    /// Responses to lose on the way (counting down).
    lose_responses: usize,
    /// What was lost: (the side that sent the request, its transmit, the lost response).
    lost: Vec<(usize, Transmit, Message)>,
}

impl Pair {
    fn new(w: World, a: Node, b: Node, config: RoundConfig) -> Pair {
        Pair {
            sides: [Side::new(a, config.clone()), Side::new(b, config)],
            rng: w.rng,
            now: origin(),
            wall: at(10),
            lose_responses: 0,
            lost: Vec::new(),
        }
    }

    /// Runs both sides until neither has anything to do: jobs against their vaults,
    /// transmits to the other side, events into their logs.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            for i in 0..2 {
                busy |= self.step(i);
            }
            if !busy {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn step(&mut self, i: usize) -> bool {
        let (now, wall) = (self.now, self.wall);
        let mut busy = false;
        while let Some(job) = self.sides[i].rounds.poll_job() {
            busy = true;
            let side = &mut self.sides[i];
            let local = side.node.peer();
            match job {
                Job::Start {
                    peer,
                    record,
                    named,
                } => {
                    let req = local.begin(record, peer, named, wall, &mut self.rng);
                    side.rounds.handle_started(peer, record, req, now);
                }
                Job::Step {
                    peer,
                    record,
                    response,
                } => {
                    let res = local.on_answer(peer, record, *response, wall, &mut self.rng);
                    side.rounds.handle_stepped(peer, record, res, now);
                }
                Job::Push {
                    peer,
                    record,
                    named,
                    push,
                } => {
                    let res = local.on_push(record, &push, wall);
                    side.rounds.handle_pushed(peer, record, named, res, now);
                }
            }
        }
        while let Some(t) = self.sides[i].rounds.poll_transmit() {
            busy = true;
            self.deliver(i, t);
        }
        while let Some(ev) = self.sides[i].rounds.poll_event() {
            busy = true;
            let side = &mut self.sides[i];
            match ev {
                Event::Finished(o) => side.finished.push(o),
                Event::Received { count, .. } => side.received += count,
                Event::Answered { waiter, outcomes } => side.answered.push((waiter, outcomes)),
            }
        }
        busy
    }

    /// Carries a transmit of side `from` to the other side, and the answer back.
    fn deliver(&mut self, from: usize, t: Transmit) {
        let to = 1 - from;
        let (sender, now, wall) = (self.sides[from].peer(), self.now, self.wall);
        assert_eq!(t.peer, self.sides[to].peer(), "sent to a third party");
        let answer = match &t.message {
            Message::Request(req) => {
                let local = self.sides[to].node.peer();
                match local.on_request(sender, req.clone(), wall, &mut self.rng) {
                    Ok((resp, _)) => Message::Response(resp),
                    Err(e) => {
                        // The responder drops the stream: the requester sees a failure.
                        let e = RoundError::Network(e.to_string());
                        self.sides[from].rounds.handle_failure(t.id, e, now);
                        return;
                    }
                }
            }
            Message::Notify(n) => {
                let named = false;
                self.sides[to]
                    .rounds
                    .handle_notify(sender, n.clone(), named, now);
                Message::Notify(Notify {
                    record: n.record,
                    push: Vec::new(),
                })
            }
            other => panic!("rounds sent {other:?}"),
        };
        if matches!(answer, Message::Response(_)) && self.lose_responses > 0 {
            self.lose_responses -= 1;
            self.lost.push((from, t, answer));
            return;
        }
        self.sides[from].rounds.handle_response(t.id, answer, now);
    }

    /// Moves the clock on by `d`, firing whatever deadlines passed.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.wall = self
            .wall
            .saturating_add_millis(i64::try_from(d.as_millis()).unwrap());
        for s in &mut self.sides {
            s.rounds.handle_timeout(self.now);
        }
        self.run();
    }

    /// Starts a round at side `i` with the other side, waited for by a new waiter.
    fn start(&mut self, i: usize, rid: RecordId, named: bool) -> WaiterId {
        let other = self.sides[1 - i].peer();
        let now = self.now;
        let rounds = &mut self.sides[i].rounds;
        let w = rounds.new_waiter();
        rounds.expect(w, 1);
        rounds.start(other, rid, named, Some(w), now);
        w
    }

    /// The outcomes side `i`'s waiter `w` was answered with.
    fn answer(&self, i: usize, w: WaiterId) -> &[RoundOutcome] {
        self.sides[i]
            .answered
            .iter()
            .find(|(x, _)| *x == w)
            .map(|(_, o)| o.as_slice())
            .expect("no answer")
    }
}

/// Takes node `which` out of the world (another stands in for it).
fn take(w: &mut World, which: &str) -> Node {
    use hearth_core::keys::Role;
    let stand_in = Node::new(Role::Professional, "stand-in", &mut w.rng);
    let slot = match which {
        "gp" => &mut w.gp,
        "sw" => &mut w.sw,
        _ => &mut w.patient,
    };
    std::mem::replace(slot, stand_in)
}

const GP: usize = 0;

fn assert_holds_no_mental_health_notes(pair: &Pair, rid: RecordId) {
    let held = pair.sides[GP].node.texts(&rid, "notes:mental-health");
    assert!(held.is_empty(), "{held:?}");
}
const PATIENT: usize = 1;

/// A patient's record granting the GP `notes`, as a GP–patient pair.
fn gp_and_patient(seed: u64, config: RoundConfig) -> (Pair, RecordId) {
    let mut w = world(seed);
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let rid = w.rid;
    let (gp, patient) = (take(&mut w, "gp"), take(&mut w, "patient"));
    (Pair::new(w, gp, patient, config), rid)
}

fn add_note(pair: &mut Pair, section: &str, text: &str) {
    let side = &pair.sides[PATIENT];
    let mut rec = side
        .node
        .vault
        .open_record(&side.node.id, &side.node.vault.records().unwrap()[0])
        .unwrap();
    rec.add_entry(
        &name(section),
        &json!({ "text": text }),
        pair.wall,
        &mut pair.rng,
    )
    .unwrap();
}

#[test]
fn a_round_completes_and_a_second_finds_both_in_sync() {
    let (mut pair, rid) = gp_and_patient(1, RoundConfig::default());
    let w = pair.start(GP, rid, true);
    pair.run();
    let out = pair.answer(GP, w);
    assert_eq!(out.len(), 1);
    assert!(out[0].result.is_ok(), "{out:?}");
    assert!(pair.sides[GP].received > 0);
    assert_eq!(pair.sides[GP].node.texts(&rid, "notes"), vec!["note 1"]);
    assert_holds_no_mental_health_notes(&pair, rid);
    assert!(pair.sides[GP].rounds.is_empty());
    assert_eq!(pair.sides[GP].rounds.poll_timeout(), None);

    let w = pair.start(GP, rid, true);
    pair.run();
    let report = pair.answer(GP, w)[0].result.as_ref().unwrap().clone();
    assert!(report.in_sync, "{report:?}");
    assert_eq!(report.received, 0);
}

#[test]
fn a_round_asked_for_while_running_runs_once_more_and_answers_every_waiter() {
    let (mut pair, rid) = gp_and_patient(2, RoundConfig::default());
    let first = pair.start(GP, rid, true);
    let second = pair.start(GP, rid, true);
    pair.run();
    assert_eq!(pair.answer(GP, first).len(), 1);
    assert_eq!(pair.answer(GP, second).len(), 1);
    // The round ran twice: the re-run found nothing new.
    assert_eq!(pair.sides[GP].finished.len(), 2);
    let last = pair.sides[GP].finished[1].result.as_ref().unwrap();
    assert!(last.in_sync && last.received == 0, "{last:?}");
}

#[test]
fn max_steps_abandons_a_round_with_a_typed_error() {
    let config = RoundConfig {
        max_steps: 1,
        ..RoundConfig::default()
    };
    let (mut pair, rid) = gp_and_patient(3, config);
    pair.start(GP, rid, true);
    pair.run();
    // A change at the patient: its round with the GP needs a second step (the push).
    add_note(&mut pair, "notes", "note 2");
    let w = pair.start(PATIENT, rid, false);
    pair.run();
    let out = pair.answer(PATIENT, w);
    assert!(
        matches!(out[0].result, Err(RoundError::TooManySteps)),
        "{out:?}"
    );
    assert_eq!(
        out[0].result.as_ref().unwrap_err().to_string(),
        "too many steps in one round"
    );
    assert_eq!(pair.sides[GP].node.texts(&rid, "notes"), vec!["note 1"]);
    assert!(pair.sides[PATIENT].rounds.is_empty());
}

#[test]
fn a_lost_response_times_out_and_a_late_one_is_ignored() {
    let (mut pair, rid) = gp_and_patient(4, RoundConfig::default());
    let step = pair.sides[GP].rounds.config().step_timeout;
    pair.lose_responses = 1;
    let w = pair.start(GP, rid, true);
    pair.run();
    assert!(pair.sides[GP].finished.is_empty());
    assert_eq!(pair.sides[GP].rounds.poll_timeout(), Some(pair.now + step));
    pair.advance(step - Duration::from_millis(1));
    assert!(pair.sides[GP].finished.is_empty());
    pair.advance(Duration::from_millis(1));
    let out = pair.answer(GP, w);
    assert!(matches!(out[0].result, Err(RoundError::Timeout)), "{out:?}");
    assert!(pair.sides[GP].rounds.is_empty());
    assert_eq!(pair.sides[GP].rounds.poll_timeout(), None);
    // The answer turns up after all: nobody waits for it any more.
    let (from, t, answer) = pair.lost.pop().unwrap();
    pair.sides[from]
        .rounds
        .handle_response(t.id, answer, pair.now);
    pair.run();
    assert_eq!(pair.sides[GP].finished.len(), 1);
    assert_eq!(pair.sides[GP].received, 0);
}

#[test]
fn rounds_per_peer_are_bounded() {
    let config = RoundConfig::default();
    let n = config.max_rounds_per_peer;
    let mut rounds = Rounds::new(config);
    let peer = PeerKey([7; 32]);
    let w = rounds.new_waiter();
    rounds.expect(w, n + 1);
    for i in 0..=n {
        rounds.start(peer, RecordId([i as u8; 32]), false, Some(w), origin());
    }
    assert_eq!(rounds.len(), n);
    // The one over the bound is answered at once; the others wait for their jobs.
    for i in 0..n {
        let Some(Job::Start { record, .. }) = rounds.poll_job() else {
            panic!("no start job")
        };
        assert_eq!(record, RecordId([i as u8; 32]));
    }
    assert!(rounds.poll_job().is_none());
    for i in 0..n {
        rounds.handle_started(
            peer,
            RecordId([i as u8; 32]),
            Err(hearth_sync::session::SyncError::NotAParty),
            origin(),
        );
    }
    let mut answered = None;
    while let Some(ev) = rounds.poll_event() {
        if let Event::Answered { outcomes, .. } = ev {
            answered = Some(outcomes);
        }
    }
    let outcomes = answered.unwrap();
    assert_eq!(outcomes.len(), n + 1);
    assert!(matches!(outcomes[0].result, Err(RoundError::TooManyRounds)));
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o.result, Err(RoundError::NotHeld)))
    );
}

/// Runs a change check at the patient with both other nodes connected.
fn check(
    changes: &mut Changes,
    patient: &Node,
    connected: &BTreeSet<PeerKey>,
    now: Instant,
    wall: Timestamp,
) -> Vec<Announce> {
    changes.check(&patient.peer(), connected, None, now, wall)
}

#[test]
fn a_local_change_is_announced_to_interested_peers_only_with_what_each_may_hold() {
    let mut w = world(5);
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let rid = w.rid;
    let connected: BTreeSet<PeerKey> = [w.gp.id.peer(), w.sw.id.peer()].into();
    let mut changes = Changes::default();
    let t0 = origin();
    // The first look is a baseline: nothing to announce.
    assert!(check(&mut changes, &w.patient, &connected, t0, at(10)).is_empty());
    let mut from_gp = Changes::default();
    check(&mut from_gp, &w.patient, &connected, t0, at(10));
    write(&mut w, "notes", "note 2", at(11));
    write(&mut w, "notes:mental-health", "CANARY-MH-2", at(11));
    let t1 = t0 + Duration::from_secs(1);
    // The peer the change came from (bundles it pushed) is not told.
    let gp_peer = w.gp.id.peer();
    let back = from_gp.check(&w.patient.peer(), &connected, Some(gp_peer), t1, at(12));
    assert!(back.is_empty(), "{back:?}");
    let out = check(&mut changes, &w.patient, &connected, t1, at(12));
    // The social worker holds no grant: not interested, not told.
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].peer, w.gp.id.peer());
    assert_eq!(out[0].record, rid);
    // Only the notes bundle: the mental-health one is not the GP's to hold.
    assert_eq!(out[0].push.len(), 1);
    // Nothing moved since: nothing more to say.
    assert!(check(&mut changes, &w.patient, &connected, t1, at(12)).is_empty());

    // The GP's round state takes the notification: the push is stored (after a first sync
    // gave it the section's key and history).
    let (gp, patient) = (take(&mut w, "gp"), take(&mut w, "patient"));
    let mut pair = Pair::new(w, gp, patient, RoundConfig::default());
    pair.wall = at(12);
    pair.start(GP, rid, true);
    pair.run();
    assert_eq!(
        pair.sides[GP].node.texts(&rid, "notes"),
        vec!["note 1", "note 2"]
    );
    add_note(&mut pair, "notes", "note 3");
    let out = check(
        &mut changes,
        &pair.sides[PATIENT].node,
        &connected,
        t1,
        at(13),
    );
    assert_eq!(out.len(), 1);
    let before = pair.sides[GP].received;
    let now = pair.now;
    pair.sides[PATIENT]
        .rounds
        .notify(out[0].peer, out[0].record, out[0].push.clone(), now);
    pair.run();
    assert_eq!(pair.sides[GP].received, before + 1);
    assert_eq!(
        pair.sides[GP].node.texts(&rid, "notes"),
        vec!["note 1", "note 2", "note 3"]
    );
    assert_holds_no_mental_health_notes(&pair, rid);
    // Pushed bundles that arrive whole draw no round.
    assert!(pair.sides[GP].rounds.is_empty());
}

#[test]
fn a_check_of_one_record_announces_what_a_full_check_would_and_nothing_of_others() {
    let mut w = world(8);
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let rid = w.rid;
    let connected: BTreeSet<PeerKey> = [w.gp.id.peer()].into();
    let mut changes = Changes::default();
    let t0 = origin();
    let one = |changes: &mut Changes, w: &World, record, now, wall| {
        changes.check_record(&w.patient.peer(), record, &connected, None, now, wall)
    };
    // A baseline first, as for a full check.
    assert!(one(&mut changes, &w, rid, t0, at(10)).is_empty());
    write(&mut w, "notes", "note 2", at(11));
    let t1 = t0 + Duration::from_secs(1);
    // A record not held here: nothing looked at, nothing announced.
    let stranger = RecordId([0xAB; 32]);
    assert!(one(&mut changes, &w, stranger, t1, at(12)).is_empty());
    let out = one(&mut changes, &w, rid, t1, at(12));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].peer, out[0].record), (w.gp.id.peer(), rid));
    assert_eq!(out[0].push.len(), 1);
    // The full check after it finds nothing new to say.
    assert!(check(&mut changes, &w.patient, &connected, t1, at(12)).is_empty());
    assert_eq!(changes.records_seen(), 1);
    // A record no longer held is forgotten at the next full check.
    w.patient.vault.forget_record(&rid).unwrap();
    assert!(check(&mut changes, &w.patient, &connected, t1, at(13)).is_empty());
    assert_eq!(changes.records_seen(), 0);
}

#[test]
fn a_strangers_notify_draws_no_request() {
    let mut w = world(6);
    let rid = w.rid;
    // The social worker, no party to the record, notifies the patient's node.
    let (sw, patient) = (take(&mut w, "sw"), take(&mut w, "patient"));
    let mut pair = Pair::new(w, sw, patient, RoundConfig::default());
    let now = pair.now;
    let to = pair.sides[PATIENT].peer();
    pair.sides[0].rounds.notify(to, rid, Vec::new(), now);
    pair.run();
    let out = &pair.sides[PATIENT].finished;
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].result, Err(RoundError::NotHeld)), "{out:?}");
    assert!(pair.sides[PATIENT].rounds.poll_transmit().is_none());
    assert!(pair.sides[PATIENT].rounds.is_empty());
}

#[test]
fn the_rights_cache_is_recomputed_after_its_ttl_of_simulated_time() {
    let mut w = world(7);
    grant_to(&mut w, "gp", "notes", Ability::Read);
    let connected: BTreeSet<PeerKey> = [w.gp.id.peer()].into();
    let mut changes = Changes::new(RIGHTS_TTL);
    let t0 = origin();
    let note = |w: &mut World, i: i64| write(w, "notes", &format!("n{i}"), at(10 + i));
    assert!(check(&mut changes, &w.patient, &connected, t0, at(10)).is_empty());
    // Within the TTL the cached rights are used: the new bundle travels with the notification.
    note(&mut w, 1);
    let out = check(
        &mut changes,
        &w.patient,
        &connected,
        t0 + Duration::from_secs(10),
        at(11),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].push.len(), 1);
    // Past the TTL the rights are worked out again (from the grants, at the wall time): this
    // notification carries nothing ("sync with me"), and the cache starts again from here.
    note(&mut w, 2);
    let t_recompute = t0 + RIGHTS_TTL + Duration::from_secs(1);
    let out = check(&mut changes, &w.patient, &connected, t_recompute, at(12));
    assert_eq!(out.len(), 1);
    assert!(out[0].push.is_empty());
    note(&mut w, 3);
    let soon = t_recompute + Duration::from_secs(5);
    let out = check(&mut changes, &w.patient, &connected, soon, at(13));
    assert_eq!(out[0].push.len(), 1);
    // The grant expires (30 days after it was made): once the cache is worked out again at
    // a wall time past that, the GP may hold nothing, so nothing is pushed.
    note(&mut w, 4);
    let later = soon + RIGHTS_TTL + Duration::from_secs(1);
    check(
        &mut changes,
        &w.patient,
        &connected,
        later,
        at(31 * 24 * 60),
    );
    note(&mut w, 5);
    let out = check(
        &mut changes,
        &w.patient,
        &connected,
        later + Duration::from_secs(1),
        at(31 * 24 * 60 + 1),
    );
    assert_eq!(out.len(), 1);
    assert!(
        out[0].push.is_empty(),
        "pushed to an expired grant: {out:?}"
    );
}

#[test]
fn a_plan_pairs_peers_with_the_records_they_are_interested_in() {
    let (a, b, c) = (PeerKey([1; 32]), PeerKey([2; 32]), PeerKey([3; 32]));
    let (r1, r2) = (RecordId([1; 32]), RecordId([2; 32]));
    // r1: a is interested; r2: nobody is known to be yet (a grant accepted before any sync).
    let records = || vec![(r1, [a].into()), (r2, BTreeSet::new())];
    let background = Plan {
        with: None,
        connected: [a, b].into(),
        known: [c].into(),
        explicit: false,
    };
    // Connected peers only, each for what it is interested in; nobody is named.
    assert_eq!(background.pairs(records()), vec![(a, r1, false)]);
    // `hearth sync`: known peers too, and each may be asked about r2.
    let asked = Plan {
        explicit: true,
        ..background.clone()
    };
    assert_eq!(
        asked.pairs(records()),
        vec![(a, r1, true), (a, r2, true), (b, r2, true), (c, r2, true)]
    );
    // A catch-up with a known peer that just connected.
    let catch_up = Plan {
        with: Some(c),
        ..background
    };
    assert_eq!(catch_up.pairs(records()), vec![(c, r2, true)]);
}

#[test]
fn a_notify_sent_one_way_leaves_no_deadline_and_a_requests_flight_stays() {
    let now = origin();
    let (peer, record) = (PeerKey([1; 32]), RecordId([2; 32]));
    let mut rounds = Rounds::new(RoundConfig::default());
    rounds.notify(peer, record, Vec::new(), now);
    let sent = rounds.poll_transmit().expect("the notify to send");
    assert!(
        rounds.poll_timeout().is_some(),
        "awaiting an acknowledgement"
    );
    rounds.handle_sent(sent.id);
    assert_eq!(rounds.poll_timeout(), None, "nothing left to wait for");
    // A round's request is not ended by being called sent: its answer is still awaited.
    rounds.start(peer, record, false, None, now);
    assert!(matches!(rounds.poll_job(), Some(Job::Start { .. })));
    let request = Message::Notify(Notify {
        record,
        push: Vec::new(),
    });
    rounds.handle_started(peer, record, Ok(request), now);
    let asked = rounds.poll_transmit().expect("the round's request");
    rounds.handle_sent(asked.id);
    assert!(rounds.poll_timeout().is_some());
    assert!(!rounds.is_empty());
}
