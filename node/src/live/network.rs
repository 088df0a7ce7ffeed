//! The driver's network side: swarm events in, messages out, and redials of known peers.

use super::jobs::os_rng;
use super::receipts::keep_receipts;
use super::{Driver, EDIT_STAGES, Work};
use hearth_core::ids::PeerKey;
use hearth_core::store::Store;
use hearth_sync::net::{BehaviourEvent, peer_id, peer_key};
use hearth_sync::protocol::{LinkMessage, Message, Notify};
use hearth_sync::relay::server::{Served, Server, refusal_of};
use hearth_sync::round::{RequestId, RoundError, Transmit};
use hearth_sync::session::Local;
use libp2p::Multiaddr;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use std::time::Instant;

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// Sends a message the round state asked for.
    pub(super) fn transmit(&mut self, t: Transmit) {
        let Some(pid) = peer_id(&t.peer) else {
            self.rounds
                .handle_failure(t.id, RoundError::InvalidPeer, Instant::now());
            return;
        };
        if t.message.is_store() {
            let id = self
                .swarm
                .behaviour_mut()
                .store
                .send_request(&pid, t.message);
            self.outbound_store.insert(id, t.id);
        } else {
            let pushes = matches!(&t.message, Message::Notify(n) if !n.push.is_empty());
            let mut message = t.message;
            if matches!(message, Message::Notify(_)) && self.connected.contains(&t.peer) {
                // One way, on the peer's notify stream; by request if that cannot take it (or
                // the peer is not connected: a request dials it, as before).
                match self.notify_out.send(pid, message) {
                    Ok(()) => {
                        self.notify_counters.streamed += 1;
                        self.rounds.handle_sent(t.id);
                        if pushes {
                            tracing::trace!(target: EDIT_STAGES, stage = "sent");
                        }
                        return;
                    }
                    Err(m) => {
                        self.notify_counters.by_request += 1;
                        message = m;
                    }
                }
            }
            let id = self.swarm.behaviour_mut().sync.send_request(&pid, message);
            if pushes {
                tracing::trace!(target: EDIT_STAGES, stage = "sent");
            }
            self.outbound.insert(id, t.id);
        }
    }

    /// A `Notify` its stream could not carry (the peer does not speak `/hearth/notify/1`, or
    /// the stream broke), sent by request instead; its acknowledgement is ignored.
    pub(super) fn notify_by_request(&mut self, pid: libp2p::PeerId, message: Message) {
        // Counted as streamed when handed to the stream; it was not written there.
        let c = &mut self.notify_counters;
        c.streamed = c.streamed.saturating_sub(1);
        c.by_request += 1;
        let _ = self.swarm.behaviour_mut().sync.send_request(&pid, message);
    }

    /// A message read from a peer's notify stream (only `Notify` passes its reader).
    pub(super) fn on_notify_stream(&mut self, pid: libp2p::PeerId, message: Message) {
        if let (Some(peer), Message::Notify(n)) = (peer_key(&pid), message) {
            self.on_notify(peer, n);
        }
    }

    /// A peer's `Notify`, by either protocol: the round state stores what came with it, or
    /// syncs that record with the sender (only if the sender is a party to the record here:
    /// the session refuses anyone else before anything is sent, so a stranger's `Notify`
    /// draws no request, whether or not the record exists).
    fn on_notify(&mut self, peer: PeerKey, n: Notify) {
        if !n.push.is_empty() {
            tracing::trace!(target: EDIT_STAGES, stage = "received");
        }
        tracing::debug!(%peer, record = %n.record, pushed = n.push.len(), "notified");
        let named = self.dials.contains(&peer);
        self.rounds.handle_notify(peer, n, named, Instant::now());
    }

    /// Remembers a known peer's addresses (the dial table decides what it keeps).
    pub(super) fn remember(&mut self, peer: PeerKey, addrs: Vec<Multiaddr>) {
        let Some(pid) = peer_id(&peer) else { return };
        for a in self.dials.remember(peer, addrs, Instant::now()) {
            self.swarm.add_peer_address(pid, a);
        }
    }

    /// Dials the known peers that are due.
    pub(super) fn redial(&mut self) {
        let connected = &self.connected;
        let due = self.dials.due(Instant::now(), |p| connected.contains(p));
        for (p, addrs) in due {
            let Some(pid) = peer_id(&p) else { continue };
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(pid)
                .addresses(addrs)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                self.dial_failed(p, e.to_string());
            }
        }
    }

    pub(super) fn dial_failed(&mut self, peer: PeerKey, why: String) {
        tracing::debug!(%peer, "dial failed: {why}");
        self.dials.failed(&peer, why, Instant::now());
    }

    pub(super) fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent<Message>>) {
        // Listeners and connections change only on the swarm's own events.
        self.net_changed |= !matches!(ev, SwarmEvent::Behaviour(_));
        self.observe(&ev);
        self.observe_kad(&ev);
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
                self.dials.connected(&peer, Instant::now());
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
                    self.notify_out.disconnected(&pid);
                    self.connected.remove(&peer);
                    self.dials.disconnected(&peer, Instant::now());
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
                    && self.dials.contains(&peer)
                {
                    let addrs: Vec<Multiaddr> = info.listen_addrs.into_iter().take(8).collect();
                    self.remember(peer, addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_exchange(ev, false),
            SwarmEvent::Behaviour(BehaviourEvent::Store(ev)) => self.on_exchange(ev, true),
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

    /// An event of `/hearth/sync/1` or (`store`) `/hearth/store/1`: requests go to their
    /// protocol's handler, answers and failures to the round state.
    fn on_exchange(&mut self, ev: request_response::Event<Message, Message>, store: bool) {
        use request_response::{Event, Message as M};
        match ev {
            Event::Message {
                peer: pid, message, ..
            } => {
                let Some(peer) = peer_key(&pid) else { return };
                match message {
                    M::Request {
                        request, channel, ..
                    } if store => self.on_store_request(peer, request, channel),
                    M::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    M::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(id) = self.outbound_of(store).remove(&request_id) {
                            self.rounds.handle_response(id, response, Instant::now());
                        }
                    }
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(id) = self.outbound_of(store).remove(&request_id) {
                    let e = RoundError::Network(error.to_string());
                    self.rounds.handle_failure(id, e, Instant::now());
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                let which = if store { "store" } else { "sync" };
                tracing::debug!(%peer, "inbound {which} stream failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// The requests awaiting answers on one protocol (the two number theirs apart).
    fn outbound_of(
        &mut self,
        store: bool,
    ) -> &mut std::collections::HashMap<request_response::OutboundRequestId, RequestId> {
        if store {
            &mut self.outbound_store
        } else {
            &mut self.outbound
        }
    }

    fn on_request(&mut self, peer: PeerKey, msg: Message, channel: ResponseChannel<Message>) {
        let clock = self.config.clock;
        match msg {
            Message::Request(req) => {
                let record = req.record;
                let arrivals = self.arrivals.clone();
                let ok = self.job(move |sh| {
                    let p = Local::new(&sh.vault, &sh.identity);
                    match p.on_request(peer, req, clock.now(), &mut os_rng()) {
                        Ok((resp, mut report)) => {
                            arrivals.add(report.received);
                            // The receipt is durable before the data leaves this node.
                            if let Some(a) = report.served.take() {
                                keep_receipts(sh, vec![(record, *a)], clock.now());
                            }
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
                // Acknowledged (by a node that sent it by request), then taken as from a
                // stream.
                let record = n.record;
                let _ = self.swarm.behaviour_mut().sync.send_response(
                    channel,
                    Message::Notify(Notify {
                        record,
                        push: Vec::new(),
                    }),
                );
                self.on_notify(peer, n);
            }
            Message::Link(l) => {
                let pairing = self.config.pairing.clone();
                let ok = self.job(move |sh| {
                    let answer = pairing.answer(sh, peer, l, clock.now());
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
            Message::Response(_) | Message::Stored(_) => {
                tracing::info!(%peer, "peer sent a response as a request; ignored");
            }
            Message::Store(_) => {
                tracing::info!(%peer, "a relay request on the sync protocol; ignored");
            }
        }
    }
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// A `/hearth/store/1` request: answered by a relay node within the peer's rate, refused by
    /// anyone else with the words a relay uses for a record it does not keep.
    fn on_store_request(&mut self, peer: PeerKey, msg: Message, channel: ResponseChannel<Message>) {
        let Message::Store(req) = msg else {
            tracing::info!(%peer, "not a relay request on the store protocol; ignored");
            return;
        };
        let refuse = |record, why: &str| Message::Stored(refusal_of(record, why));
        let Some(limits) = self.config.relay.clone() else {
            let r = refuse(req.record, hearth_sync::relay::NOTHING_HERE);
            let _ = self.swarm.behaviour_mut().store.send_response(channel, r);
            return;
        };
        if !self.rate.allow(&peer, Instant::now()) {
            self.relay_counters.rate_limited += 1;
            let r = refuse(req.record, hearth_sync::relay::SLOW_DOWN);
            let _ = self.swarm.behaviour_mut().store.send_response(channel, r);
            return;
        }
        let clock = self.config.clock;
        let ok = self.job(move |sh| {
            let server = Server::new(&sh.vault, &sh.identity, &limits);
            let record = req.record;
            let now = clock.now();
            let (resp, served) = match server.answer(peer, req, now, &mut super::jobs::os_rng()) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(%peer, "relay request failed: {e}");
                    let served = Served {
                        refused: true,
                        ..Served::default()
                    };
                    let why = "the relay could not answer: try again later";
                    (refusal_of(record, why), served)
                }
            };
            let parties = served.supplied.then(|| server.parties(now));
            Work::Stored {
                peer,
                channel,
                resp: Message::Stored(resp),
                served,
                parties,
            }
        });
        if !ok {
            self.relay_counters.busy += 1;
        }
    }

    /// Sends a relay's answer and counts what it did.
    pub(super) fn on_stored(
        &mut self,
        peer: PeerKey,
        channel: ResponseChannel<Message>,
        resp: Message,
        served: Served,
        parties: Option<std::collections::BTreeSet<PeerKey>>,
    ) {
        let _ = self
            .swarm
            .behaviour_mut()
            .store
            .send_response(channel, resp);
        let c = &mut self.relay_counters;
        c.requests += 1;
        c.refused += u64::from(served.refused);
        c.stored += served.stored as u64;
        c.served += served.sent as u64;
        c.rejected += served.rejected as u64;
        c.supplied += u64::from(served.supplied);
        if let Some(r) = served.receipt {
            self.relay_unreceipted.push(r);
            if self.relay_unreceipted.len() >= super::receipts::MAX_RELAY_UNRECEIPTED {
                self.receipt_relay_serves();
            }
        }
        if !served.refused && self.relay_peers.len() < 4096 {
            self.relay_peers.insert(peer);
        }
        tracing::info!(%peer, stored = served.stored, sent = served.sent, rejected = served.rejected, refused = served.refused, "relay request answered");
        if let Some(parties) = parties {
            let known: Vec<libp2p::PeerId> = parties.iter().filter_map(peer_id).collect();
            self.swarm.behaviour().gate.inbound().set_known(known);
        }
    }
}
