//! The relays' private Kademlia network ([`hearth_sync::net::KAD_PROTOCOL`]).
//!
//! A relay node announces itself as a provider of the [`locator`] of every record it keeps
//! (read from its store by a blocking task whenever a patient's device supplied it, and once at
//! start), and re-announces them when it meets a new relay (at most every
//! [`REANNOUNCE_EVERY`]); it learns other relays from the peers it is told of
//! (`hearth run --relay-peer`) and from identify (peers speaking the Kademlia protocol).
//!
//! Any node can ask where a record is kept ([`Handle::find_relays`](super::Handle)): it asks
//! the relay given (or its records' relays) for the providers of the record's locator, dials
//! each one found and answers with the addresses it reached them at.

use super::{Driver, SharedState, lock};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::store::Store;
use hearth_sync::net::{BehaviourEvent, KAD_PROTOCOL, locator, peer_id, peer_key};
use hearth_sync::protocol::Message;
use hearth_sync::relay::server::{RelayLimits, Server};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, kad};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shortest time between two re-announcements of every record kept.
pub(super) const REANNOUNCE_EVERY: Duration = Duration::from_secs(10 * 60);
/// Lookups running at once (each is one `relay find`).
const MAX_FINDS: usize = 16;
/// Relays reported per lookup.
const MAX_FOUND: usize = 16;

/// A relay that keeps a record, as found.
#[derive(Clone, Debug, Serialize)]
pub struct Located {
    /// Its peer id.
    pub relay: String,
    /// Where it was reached (empty if it could not be dialled).
    pub addrs: Vec<String>,
}

struct Find {
    reply: std::sync::mpsc::SyncSender<Vec<Located>>,
    found: BTreeMap<PeerKey, Vec<Multiaddr>>,
    /// Providers being dialled.
    pending: BTreeSet<PeerKey>,
    /// The query ended.
    done: bool,
    deadline: Instant,
}

/// The driver's Kademlia state.
#[derive(Default)]
pub(super) struct Locate {
    /// Records announced (bounded by the Kademlia store's provided keys).
    provided: HashSet<RecordId>,
    /// The records kept, read by a blocking task; taken on the next tick.
    scanned: Arc<Mutex<Option<Vec<RecordId>>>>,
    /// The relay counter of supplied access lists at the last scan.
    scanned_at: Option<u64>,
    last_announce: Option<Instant>,
    /// A relay joined the routing table since the last announcement.
    new_peer: bool,
    finds: HashMap<kad::QueryId, Find>,
}

/// The records this relay keeps.
fn hosted_records<S: Store>(shared: &SharedState<S>, limits: &RelayLimits) -> Vec<RecordId> {
    let sh = lock(shared);
    let server = Server::new(&sh.vault, &sh.identity, limits);
    server
        .readable_hosted()
        .map(|v| v.into_iter().map(|(_, h)| h.record).collect())
        .unwrap_or_default()
}

impl<S: Store + Clone + Send + 'static> Driver<S> {
    /// Relay nodes: reads the records kept when a patient supplied something new, announces
    /// the new ones, and re-announces all after meeting a new relay. Every node: answers
    /// lookups past their deadline.
    pub(super) fn locate_tick(&mut self) {
        let now = Instant::now();
        self.answer_finds(now);
        let Some(limits) = self.config.relay.clone() else {
            return;
        };
        let supplied = self.relay_counters.supplied;
        if self.locate.scanned_at != Some(supplied) {
            self.locate.scanned_at = Some(supplied);
            let slot = self.locate.scanned.clone();
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                let records = hosted_records(&shared, &limits);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(records);
            });
        }
        let scanned = self
            .locate
            .scanned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let again = self.locate.new_peer
            && self
                .locate
                .last_announce
                .is_none_or(|t| now.duration_since(t) >= REANNOUNCE_EVERY);
        let records: Vec<RecordId> = match scanned {
            Some(all) if again => all,
            Some(all) => all
                .into_iter()
                .filter(|r| !self.locate.provided.contains(r))
                .collect(),
            None if again => self.locate.provided.iter().copied().collect(),
            None => return,
        };
        if again {
            self.locate.new_peer = false;
            self.locate.last_announce = Some(now);
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        let mut announced = 0;
        for r in records {
            match kad.start_providing(locator(&r)) {
                Ok(_) => {
                    self.locate.provided.insert(r);
                    announced += 1;
                }
                Err(e) => {
                    tracing::warn!("cannot announce a kept record: {e:?}");
                    break;
                }
            }
        }
        if announced > 0 {
            tracing::info!(
                records = announced,
                "announced kept records on the relay network"
            );
        }
    }

    /// Starts a lookup of `record`'s relays, through `via` or else this node's records'
    /// relays; the answer goes to `reply` (empty if there is nobody to ask).
    pub(super) fn find_relays(
        &mut self,
        record: RecordId,
        via: Option<(PeerKey, Multiaddr)>,
        timeout: Duration,
        reply: std::sync::mpsc::SyncSender<Vec<Located>>,
    ) {
        if self.locate.finds.len() >= MAX_FINDS {
            let _ = reply.try_send(Vec::new());
            return;
        }
        let mut asked = Vec::new();
        if let Some((peer, addr)) = via {
            asked.push((peer, addr));
        } else {
            for r in self.relays.clone() {
                let addrs = self
                    .dials
                    .iter()
                    .find(|(p, _)| **p == r)
                    .map(|(_, d)| d.addrs().to_vec())
                    .unwrap_or_default();
                for a in addrs.into_iter().take(2) {
                    asked.push((r, a));
                }
            }
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for (peer, addr) in &asked {
            if let Some(pid) = peer_id(peer) {
                kad.add_address(&pid, addr.clone());
            }
        }
        if asked.is_empty() {
            let _ = reply.try_send(Vec::new());
            return;
        }
        let id = kad.get_providers(locator(&record));
        tracing::info!(record = %record, asked = asked.len(), "looking for the relays that keep a record");
        self.locate.finds.insert(
            id,
            Find {
                reply,
                found: BTreeMap::new(),
                pending: BTreeSet::new(),
                done: false,
                deadline: Instant::now() + timeout,
            },
        );
    }

    /// Answers the lookups that ended (query over, every provider dialled) or timed out.
    fn answer_finds(&mut self, now: Instant) {
        let over: Vec<kad::QueryId> = self
            .locate
            .finds
            .iter()
            .filter(|(_, f)| (f.done && f.pending.is_empty()) || now >= f.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            if let Some(f) = self.locate.finds.remove(&id) {
                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                    q.finish();
                }
                let out = f
                    .found
                    .into_iter()
                    .map(|(p, addrs)| Located {
                        relay: p.to_string(),
                        addrs: addrs.iter().map(ToString::to_string).collect(),
                    })
                    .collect();
                let _ = f.reply.try_send(out);
            }
        }
    }

    /// A provider was found: dial it (Kademlia knows its addresses while the query runs).
    fn on_provider(&mut self, id: kad::QueryId, pid: PeerId) {
        let Some(peer) = peer_key(&pid) else { return };
        let connected: Option<Vec<Multiaddr>> = self.connected.contains(&peer).then(|| {
            self.reach
                .connections()
                .get(&peer.to_string())
                .map(|v| v.iter().filter_map(|a| a.parse().ok()).collect())
                .unwrap_or_default()
        });
        let Some(f) = self.locate.finds.get_mut(&id) else {
            return;
        };
        if f.found.len() + f.pending.len() >= MAX_FOUND || f.found.contains_key(&peer) {
            return;
        }
        match connected {
            Some(addrs) => {
                f.found.insert(peer, addrs);
            }
            None => {
                f.pending.insert(peer);
                let opts = DialOpts::peer_id(pid)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if self.swarm.dial(opts).is_err() {
                    self.dialled(&peer, None);
                }
            }
        }
    }

    /// A dial of a found provider ended (with the address reached, or not).
    fn dialled(&mut self, peer: &PeerKey, addr: Option<Multiaddr>) {
        for f in self.locate.finds.values_mut() {
            if f.pending.remove(peer) {
                f.found.insert(*peer, addr.iter().cloned().collect());
            }
        }
    }

    /// The Kademlia side of every swarm event.
    pub(super) fn observe_kad(&mut self, ev: &SwarmEvent<BehaviourEvent<Message>>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id: pid,
                endpoint,
                ..
            } => {
                if let Some(peer) = peer_key(pid) {
                    self.dialled(&peer, Some(endpoint.get_remote_address().clone()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(pid), ..
            } => {
                if let Some(peer) = peer_key(pid)
                    && !self.connected.contains(&peer)
                {
                    self.dialled(&peer, None);
                }
            }
            // Relays: a peer speaking the relays' protocol joins the routing table with the
            // addresses it listens on (an inbound connection alone gives none).
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received {
                    peer_id: pid, info, ..
                },
            )) if self.config.relay.is_some()
                && info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) =>
            {
                let kad = &mut self.swarm.behaviour_mut().kad;
                for a in info.listen_addrs.iter().take(8) {
                    kad.add_address(pid, a.clone());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            _ => {}
        }
        self.answer_finds(Instant::now());
    }

    fn on_kad(&mut self, e: &kad::Event) {
        match e {
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } => {
                tracing::info!(%peer, "a relay joined the relay network's routing table");
                self.locate.new_peer = true;
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                match result {
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })) => {
                        for p in providers.iter().take(MAX_FOUND) {
                            self.on_provider(*id, *p);
                        }
                    }
                    kad::QueryResult::GetProviders(Err(e)) => {
                        tracing::info!("relay lookup: {e:?}");
                    }
                    kad::QueryResult::StartProviding(Err(e)) => {
                        tracing::debug!("announcing a kept record: {e:?}");
                    }
                    _ => {}
                }
                if step.last
                    && let Some(f) = self.locate.finds.get_mut(id)
                {
                    f.done = true;
                }
            }
            _ => {}
        }
    }
}
