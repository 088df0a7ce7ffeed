//! The area's network side: each relay, patient and professional taking part is a libp2p
//! swarm ([`hearth_sync::net::memory_swarm`]: the node's behaviour — Noise, Yamux, identify,
//! ping, `/hearth/store/1`, the relays' Kademlia network — over libp2p's in-memory transport),
//! driven by a task of its own. A relay's task answers store requests with the real
//! [`Server::answer`] over its sled store; every node's task runs the commands the measuring
//! code sends it (a store request, a lookup, announcements) and reports what Kademlia said.

use super::model::Relay;
use anyhow::{Context, Result, bail};
use hearth_core::keys::Identity;
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_sync::net::{self, BehaviourEvent, HearthSwarm, KAD_PROTOCOL, NetConfig};
use hearth_sync::protocol::Message;
use hearth_sync::relay::server::Server;
use hearth_sync::relay::{StoreRequest, StoreResponse};
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identify, kad, request_response};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Announcements a relay keeps in flight at once.
const IN_FLIGHT: usize = 64;

/// What a relay's task counted.
#[derive(Default)]
pub(super) struct Counters {
    /// Kademlia ADD_PROVIDER requests received from other relays.
    pub(super) add_provider: AtomicUsize,
}

/// The end of a lookup: the relays found, Kademlia's requests sent, and its time.
pub(super) struct Lookup {
    /// The providers found.
    pub(super) found: BTreeSet<PeerId>,
    /// Requests the query sent.
    pub(super) messages: u32,
    /// From the query's start to its last step.
    pub(super) took: Duration,
}

/// The end of announcing records: requests sent, announcements that failed.
pub(super) struct Announced {
    /// Requests the queries sent.
    pub(super) messages: u64,
    /// Queries that ended with an error.
    pub(super) failed: usize,
}

/// What the measuring code asks a node's task to do.
enum Cmd {
    /// Send a store request and hand back the answer.
    Store(
        PeerId,
        Box<StoreRequest>,
        oneshot::Sender<std::result::Result<StoreResponse, String>>,
    ),
    /// Find the providers of a key.
    Find(kad::RecordKey, oneshot::Sender<Lookup>),
    /// Announce this relay as a provider of every key.
    Provide(Vec<kad::RecordKey>, oneshot::Sender<Announced>),
    /// Learn a peer's address (Kademlia and dialling) and dial it.
    Dial(PeerId, Multiaddr),
    /// Start a Kademlia bootstrap.
    Bootstrap,
    /// How many peers the routing table holds.
    Routing(oneshot::Sender<usize>),
    /// How many of these keys the Kademlia store holds providers for.
    Held(Vec<kad::RecordKey>, oneshot::Sender<usize>),
}

/// A running node: its peer id, address and command channel.
pub(super) struct Node {
    /// Its peer id.
    pub(super) peer: PeerId,
    /// Where it listens.
    pub(super) addr: Multiaddr,
    cmds: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
    /// What it counted (relays).
    pub(super) counters: Arc<Counters>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A config for swarms in one process: the stranger limits lifted (nothing here tells the
/// inbound gate which peers the records know, as the node's driver does).
fn config(relay: bool) -> NetConfig {
    NetConfig {
        max_established_total: 4096,
        max_pending: 1024,
        max_frame_unknown: net::MAX_FRAME,
        max_streams_unknown: 8,
        inbound_strangers: NetConfig::default().inbound_budget,
        relay_server: relay,
        ..NetConfig::default()
    }
}

/// A fresh in-memory address (each port once in this process).
fn memory_addr() -> Multiaddr {
    static NEXT: AtomicU64 = AtomicU64::new(16_000);
    Multiaddr::empty().with(Protocol::Memory(NEXT.fetch_add(1, Ordering::Relaxed)))
}

impl Node {
    /// Starts a node for `id`: a relay (answering store requests from `relay`'s store, and
    /// Kademlia in server mode) or, without one, a patient's or professional's node.
    pub(super) async fn start(id: &Identity, relay: Option<Arc<Relay>>) -> Result<Node> {
        let mut swarm: HearthSwarm =
            net::memory_swarm(net::keypair(id)?, &config(relay.is_some()))?;
        let addr = memory_addr();
        swarm.listen_on(addr.clone())?;
        loop {
            if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
                break;
            }
        }
        let peer = *swarm.local_peer_id();
        let (tx, rx) = mpsc::channel(1024);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(drive(swarm, relay, rx, counters.clone()));
        Ok(Node {
            peer,
            addr,
            cmds: tx,
            task,
            counters,
        })
    }

    async fn send(&self, cmd: Cmd) -> Result<()> {
        self.cmds
            .send(cmd)
            .await
            .map_err(|_| anyhow::anyhow!("a node's task stopped"))
    }

    /// Sends `req` to `to` on `/hearth/store/1` and waits for the answer.
    pub(super) async fn store(&self, to: PeerId, req: StoreRequest) -> Result<StoreResponse> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Store(to, Box::new(req), tx)).await?;
        match rx.await.context("a node's task stopped")? {
            Ok(r) => Ok(r),
            Err(e) => bail!("a store request failed: {e}"),
        }
    }

    /// Looks up the relays announced for `key`, as `hearth relay find` does (to the query's
    /// end).
    pub(super) async fn find(&self, key: kad::RecordKey) -> Result<Lookup> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Find(key, tx)).await?;
        rx.await.context("a node's task stopped")
    }

    /// Announces this relay as a provider of each of `keys`.
    pub(super) async fn provide(&self, keys: Vec<kad::RecordKey>) -> Result<Announced> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Provide(keys, tx)).await?;
        rx.await.context("a node's task stopped")
    }

    /// Learns `other`'s address and dials it.
    pub(super) async fn dial(&self, other: &Node) -> Result<()> {
        self.send(Cmd::Dial(other.peer, other.addr.clone())).await
    }

    /// Starts a Kademlia bootstrap.
    pub(super) async fn bootstrap(&self) -> Result<()> {
        self.send(Cmd::Bootstrap).await
    }

    /// How many of `keys` this node's Kademlia store holds providers for.
    pub(super) async fn held(&self, keys: Vec<kad::RecordKey>) -> Result<usize> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Held(keys, tx)).await?;
        rx.await.context("a node's task stopped")
    }

    /// Peers in the routing table.
    pub(super) async fn routing(&self) -> Result<usize> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Routing(tx)).await?;
        rx.await.context("a node's task stopped")
    }
}

/// A node's task's state besides the swarm.
struct State {
    relay: Option<Arc<Relay>>,
    counters: Arc<Counters>,
    stores: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<std::result::Result<StoreResponse, String>>,
    >,
    finds: HashMap<kad::QueryId, (Lookup, oneshot::Sender<Lookup>)>,
    provide: Option<Providing>,
    rng: TestRng,
}

/// Announcements under way.
struct Providing {
    waiting: VecDeque<kad::RecordKey>,
    running: HashSet<kad::QueryId>,
    messages: u64,
    failed: usize,
    reply: oneshot::Sender<Announced>,
}

/// Drives `swarm`: runs commands and answers the network until aborted.
async fn drive(
    mut swarm: HearthSwarm,
    relay: Option<Arc<Relay>>,
    mut cmds: mpsc::Receiver<Cmd>,
    counters: Arc<Counters>,
) {
    let mut st = State {
        relay,
        counters,
        stores: HashMap::new(),
        finds: HashMap::new(),
        provide: None,
        rng: TestRng::new(11),
    };
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(c) => command(&mut swarm, &mut st, c),
                None => return,
            },
            ev = swarm.select_next_some() => event(&mut swarm, &mut st, ev),
        }
        refill(&mut swarm, &mut st);
    }
}

/// Runs one command.
fn command(swarm: &mut HearthSwarm, st: &mut State, cmd: Cmd) {
    match cmd {
        Cmd::Store(to, req, reply) => {
            let id = swarm
                .behaviour_mut()
                .store
                .send_request(&to, Message::Store(*req));
            st.stores.insert(id, reply);
        }
        Cmd::Find(key, reply) => {
            let id = swarm.behaviour_mut().kad.get_providers(key);
            let empty = Lookup {
                found: BTreeSet::new(),
                messages: 0,
                took: Duration::ZERO,
            };
            st.finds.insert(id, (empty, reply));
        }
        Cmd::Provide(keys, reply) => {
            st.provide = Some(Providing {
                waiting: keys.into(),
                running: HashSet::new(),
                messages: 0,
                failed: 0,
                reply,
            });
        }
        Cmd::Dial(peer, addr) => {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            let _ = swarm.dial(addr.with(Protocol::P2p(peer)));
        }
        Cmd::Bootstrap => {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        Cmd::Routing(reply) => {
            let n = swarm
                .behaviour_mut()
                .kad
                .kbuckets()
                .map(|b| b.num_entries())
                .sum();
            let _ = reply.send(n);
        }
        Cmd::Held(keys, reply) => {
            use kad::store::RecordStore;
            let store = swarm.behaviour_mut().kad.store_mut();
            let n = keys
                .iter()
                .filter(|k| !store.providers(k).is_empty())
                .count();
            let _ = reply.send(n);
        }
    }
}

/// Starts announcements while fewer than [`IN_FLIGHT`] run; replies when all have ended.
fn refill(swarm: &mut HearthSwarm, st: &mut State) {
    let Some(p) = st.provide.as_mut() else { return };
    while p.running.len() < IN_FLIGHT {
        let Some(key) = p.waiting.pop_front() else {
            break;
        };
        match swarm.behaviour_mut().kad.start_providing(key) {
            Ok(id) => {
                p.running.insert(id);
            }
            Err(_) => p.failed += 1,
        }
    }
    if p.waiting.is_empty()
        && p.running.is_empty()
        && let Some(p) = st.provide.take()
    {
        let _ = p.reply.send(Announced {
            messages: p.messages,
            failed: p.failed,
        });
    }
}

/// Handles one swarm event.
fn event(swarm: &mut HearthSwarm, st: &mut State, ev: SwarmEvent<BehaviourEvent<Message>>) {
    match ev {
        SwarmEvent::Behaviour(BehaviourEvent::Store(e)) => store_event(swarm, st, e),
        SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => kad_event(st, e),
        // A relay adds the relays it meets to its routing table, as the node does.
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if st.relay.is_some() && info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) => {
            for a in info.listen_addrs.iter().take(8) {
                swarm.behaviour_mut().kad.add_address(&peer_id, a.clone());
            }
        }
        _ => {}
    }
}

/// A store request to answer (relays) or an answer to hand back.
fn store_event(
    swarm: &mut HearthSwarm,
    st: &mut State,
    e: request_response::Event<Message, Message>,
) {
    match e {
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } => {
            let (Some(relay), Message::Store(req), Some(from)) =
                (&st.relay, request, net::peer_key(&peer))
            else {
                return;
            };
            let server = Server::new(&relay.vault, &relay.id, &relay.limits);
            if let Ok((resp, _)) = server.answer(from, req, TEST_NOW, &mut st.rng) {
                let _ = swarm
                    .behaviour_mut()
                    .store
                    .send_response(channel, Message::Stored(resp));
            }
        }
        request_response::Event::Message {
            message:
                request_response::Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            if let Some(reply) = st.stores.remove(&request_id) {
                let _ = reply.send(match response {
                    Message::Stored(r) => Ok(r),
                    _ => Err("an answer of another kind".into()),
                });
            }
        }
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } => {
            if let Some(reply) = st.stores.remove(&request_id) {
                let _ = reply.send(Err(error.to_string()));
            }
        }
        _ => {}
    }
}

/// Kademlia's events: lookups' providers and ends, announcements' ends, requests received.
fn kad_event(st: &mut State, e: kad::Event) {
    match e {
        kad::Event::InboundRequest {
            request: kad::InboundRequest::AddProvider { .. },
        } => {
            st.counters.add_provider.fetch_add(1, Ordering::Relaxed);
        }
        kad::Event::OutboundQueryProgressed {
            id,
            result,
            stats,
            step,
        } => match result {
            kad::QueryResult::GetProviders(r) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r
                    && let Some((l, _)) = st.finds.get_mut(&id)
                {
                    l.found.extend(providers);
                }
                if step.last
                    && let Some((mut l, reply)) = st.finds.remove(&id)
                {
                    l.messages = stats.num_requests();
                    l.took = stats.duration().unwrap_or_default();
                    let _ = reply.send(l);
                }
            }
            kad::QueryResult::StartProviding(r) => {
                if let Some(p) = st.provide.as_mut()
                    && step.last
                    && p.running.remove(&id)
                {
                    p.messages += u64::from(stats.num_requests());
                    if r.is_err() {
                        p.failed += 1;
                    }
                }
            }
            _ => {}
        },
        _ => {}
    }
}
