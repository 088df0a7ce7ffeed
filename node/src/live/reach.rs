//! Reachability: AutoNAT tells the node whether its relays can dial it back; a node that is
//! not publicly reachable makes a circuit relay v2 reservation on each of its records' relays
//! (at most [`MAX_CIRCUITS`]) and so listens on, and advertises, `/p2p-circuit` addresses
//! through them. Peers that reach it through a relay try a direct connection with DCUtR.
//!
//! A circuit carries little (2 min, 128 KiB by the relays' limits): enough to connect, hole
//! punch and run a small sync round; bulk record data goes over `/hearth/store/1` or a direct
//! connection.

use super::Driver;
use hearth_core::ids::PeerKey;
use hearth_core::store::Store;
use hearth_sync::net::{BehaviourEvent, peer_id, peer_key};
use hearth_sync::protocol::Message;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, autonat};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Reservations held at once (one per relay).
pub(super) const MAX_CIRCUITS: usize = 3;
/// AutoNAT servers asked (the first relays of the records held).
const MAX_SERVERS: usize = 8;
/// After a reservation ends or fails, wait this long before asking that relay again.
const RESERVE_AGAIN: Duration = Duration::from_secs(30);

/// What AutoNAT last concluded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Nat {
    /// Not known yet (no relay answered).
    #[default]
    Unknown,
    /// A relay dialled this node back.
    Public,
    /// Relays could not dial it back: it is reached through circuits.
    Private,
}

impl Nat {
    /// The word `status` shows.
    pub(super) fn word(self) -> &'static str {
        match self {
            Nat::Unknown => "unknown",
            Nat::Public => "public",
            Nat::Private => "private",
        }
    }
}

/// The driver's reachability state.
#[derive(Default)]
pub(super) struct Reach {
    pub(super) nat: Nat,
    /// AutoNAT servers added.
    servers: Vec<PeerKey>,
    /// Reservations asked for, by relay.
    circuits: BTreeMap<PeerKey, ListenerId>,
    /// When a relay's reservation last ended.
    ended: HashMap<PeerKey, Instant>,
    /// Every open connection's peer and remote address (bounded by the connection limits).
    conns: HashMap<ConnectionId, (PeerKey, Multiaddr)>,
}

impl Reach {
    /// Each connected peer's connections, by remote address (a relayed one contains
    /// `/p2p-circuit`).
    pub(super) fn connections(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (peer, addr) in self.conns.values() {
            out.entry(peer.to_string())
                .or_default()
                .push(addr.to_string());
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }
}

/// `addr` without a trailing `/p2p/…`.
fn bare(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// The first direct address known for `peer`.
    fn direct_addr(&self, peer: &PeerKey) -> Option<Multiaddr> {
        self.dials
            .iter()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, d)| d.addrs().iter().find(|a| !is_circuit(a)).map(bare))
    }

    /// Asks the records' relays for AutoNAT probes, and, when this node is not publicly
    /// reachable, reserves a circuit on the connected ones. Runs on every planning tick.
    pub(super) fn reach_tick(&mut self) {
        let relays: Vec<PeerKey> = self.relays.iter().copied().collect();
        for r in &relays {
            if self.reach.servers.len() >= MAX_SERVERS || self.reach.servers.contains(r) {
                continue;
            }
            let Some(pid) = peer_id(r) else { continue };
            let addr = self.direct_addr(r);
            self.swarm.behaviour_mut().autonat.add_server(pid, addr);
            self.reach.servers.push(*r);
        }
        if self.reach.nat != Nat::Private || self.config.relay.is_some() {
            return;
        }
        let now = Instant::now();
        for r in relays {
            if self.reach.circuits.len() >= MAX_CIRCUITS {
                break;
            }
            if self.reach.circuits.contains_key(&r)
                || !self.connected.contains(&r)
                || self
                    .reach
                    .ended
                    .get(&r)
                    .is_some_and(|t| now.duration_since(*t) < RESERVE_AGAIN)
            {
                continue;
            }
            let (Some(pid), Some(addr)) = (peer_id(&r), self.direct_addr(&r)) else {
                continue;
            };
            let circuit = addr.with(Protocol::P2p(pid)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::info!(relay = %r, address = %circuit, "not publicly reachable: reserving a circuit on the relay");
                    self.reach.circuits.insert(r, id);
                }
                Err(e) => {
                    tracing::info!(relay = %r, "cannot reserve a circuit: {e}");
                    self.reach.ended.insert(r, now);
                }
            }
        }
    }

    /// Drops every reservation (the node is publicly reachable after all).
    fn release_circuits(&mut self) {
        for (r, id) in std::mem::take(&mut self.reach.circuits) {
            tracing::info!(relay = %r, "publicly reachable: releasing the circuit");
            self.swarm.remove_listener(id);
        }
    }

    /// What the reachability side needs to see of every swarm event (before the driver's own
    /// handling): connections and their addresses, ended reservations, AutoNAT's verdicts, and
    /// the relay, DCUtR and Kademlia events.
    pub(super) fn observe(&mut self, ev: &SwarmEvent<BehaviourEvent<Message>>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id: pid,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(peer) = peer_key(pid) {
                    let addr = endpoint.get_remote_address().clone();
                    if is_circuit(&addr) {
                        tracing::info!(%peer, %addr, "connected through a relay");
                    }
                    self.reach.conns.insert(*connection_id, (peer, addr));
                    // A relay (re)connected: ask it at once, rather than at the next tick.
                    if self.relays.contains(&peer) {
                        self.reach_tick();
                    }
                }
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.reach.conns.remove(connection_id);
            }
            // An organisation's relay is reachable where it listens: its circuit relay server
            // hands these addresses out in reservations, and its announcements carry them.
            SwarmEvent::NewListenAddr { address, .. }
                if self.config.relay.is_some() && !is_circuit(address) =>
            {
                self.swarm.add_external_address(address.clone());
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let ended: Vec<PeerKey> = self
                    .reach
                    .circuits
                    .iter()
                    .filter(|(_, id)| *id == listener_id)
                    .map(|(r, _)| *r)
                    .collect();
                for r in ended {
                    tracing::info!(relay = %r, "circuit reservation ended: {reason:?}");
                    self.reach.circuits.remove(&r);
                    self.reach.ended.insert(r, Instant::now());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::v1::Event::StatusChanged {
                new,
                ..
            })) => {
                let nat = match new {
                    autonat::v1::NatStatus::Public(_) => Nat::Public,
                    autonat::v1::NatStatus::Private => Nat::Private,
                    autonat::v1::NatStatus::Unknown => Nat::Unknown,
                };
                tracing::info!(reachability = nat.word(), "AutoNAT");
                self.reach.nat = nat;
                if nat == Nat::Public {
                    self.release_circuits();
                }
                self.reach_tick();
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => {
                tracing::info!("circuit relay: {e:?}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(e)) => {
                tracing::debug!("circuit relay server: {e:?}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => match &e.result {
                Ok(_) => {
                    tracing::info!(peer = %e.remote_peer_id, "direct connection through hole punching")
                }
                Err(err) => tracing::info!(peer = %e.remote_peer_id, "hole punching failed: {err}"),
            },
            _ => {}
        }
    }
}
