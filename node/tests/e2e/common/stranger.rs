//! A peer that speaks `/hearth/sync/1` with raw frames: a stranger with a fresh key, or a
//! hostile grantee using the real device key of a test home, to send hand-built messages to
//! a real daemon over libp2p on loopback.

use hearth_sync::net::{self, Behaviour, BehaviourEvent, NetConfig};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{Event, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use std::path::Path;
use std::time::Duration;

/// Sends each frame as one request to `peer` at `addr` from a fresh key; returns, per frame,
/// the answer's bytes or the failure.
#[allow(dead_code)]
pub(crate) fn send(
    peer: PeerId,
    addr: Multiaddr,
    frames: Vec<Vec<u8>>,
) -> Vec<Result<Vec<u8>, String>> {
    send_as(Keypair::generate_ed25519(), peer, addr, frames)
}

/// The libp2p keypair of the node at `home` (its device key), unlocked with the test
/// passphrase: a test can then speak as that node, e.g. as a grantee turned hostile.
#[allow(dead_code)]
pub(crate) fn keypair_of(home: &Path) -> Keypair {
    let identity = hearth_node::home::Home::new(home.to_path_buf())
        .unlock(super::PASS.as_bytes())
        .expect("unlock the test home");
    net::keypair(&identity).expect("device keypair")
}

/// [`send`] from `key`.
#[allow(dead_code)]
pub(crate) fn send_as(
    key: Keypair,
    peer: PeerId,
    addr: Multiaddr,
    frames: Vec<Vec<u8>>,
) -> Vec<Result<Vec<u8>, String>> {
    send_and_listen(key, peer, addr, frames, Duration::ZERO).0
}

/// [`send_as`] on `/hearth/store/1` (a relay's protocol).
#[allow(dead_code)]
pub(crate) fn send_store(
    key: Keypair,
    peer: PeerId,
    addr: Multiaddr,
    frames: Vec<Vec<u8>>,
) -> Answers {
    exchange(key, peer, addr, frames, Duration::ZERO, true).0
}

/// Per frame sent, the answer's bytes or the failure.
pub(crate) type Answers = Vec<Result<Vec<u8>, String>>;

/// [`send_as`], then stays connected for `linger`, answering nothing: also returns every
/// request the node sent this peer meanwhile (e.g. a sync request a `Notify` drew).
#[allow(dead_code)]
pub(crate) fn send_and_listen(
    key: Keypair,
    peer: PeerId,
    addr: Multiaddr,
    frames: Vec<Vec<u8>>,
    linger: Duration,
) -> (Answers, Vec<Vec<u8>>) {
    exchange(key, peer, addr, frames, linger, false)
}

/// The request-response event of the protocol a test speaks (`store`: `/hearth/store/1`).
fn event_of(
    ev: SwarmEvent<BehaviourEvent<Vec<u8>>>,
    store: bool,
) -> Option<Event<Vec<u8>, Vec<u8>>> {
    match ev {
        SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) if !store => Some(e),
        SwarmEvent::Behaviour(BehaviourEvent::Store(e)) if store => Some(e),
        _ => None,
    }
}

fn exchange(
    key: Keypair,
    peer: PeerId,
    addr: Multiaddr,
    frames: Vec<Vec<u8>>,
    linger: Duration,
    store: bool,
) -> (Answers, Vec<Vec<u8>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cfg = NetConfig {
            max_frame: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(20),
            ..NetConfig::default()
        };
        let mut swarm: Swarm<Behaviour<Vec<u8>>> = net::swarm(key, &cfg).expect("swarm");
        swarm.add_peer_address(peer, addr);
        let mut out = Vec::new();
        let mut inbound = Vec::new();
        for f in frames {
            if store {
                swarm.behaviour_mut().store.send_request(&peer, f);
            } else {
                swarm.behaviour_mut().sync.send_request(&peer, f);
            }
            let r = loop {
                match event_of(swarm.select_next_some().await, store) {
                    Some(Event::Message {
                        message: Message::Response { response, .. },
                        ..
                    }) => break Ok(response),
                    Some(Event::Message {
                        message: Message::Request { request, .. },
                        ..
                    }) => inbound.push(request),
                    Some(Event::OutboundFailure { error, .. }) => break Err(error.to_string()),
                    _ => {}
                }
            };
            out.push(r);
        }
        let deadline = tokio::time::Instant::now() + linger;
        while let Ok(ev) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            if let Some(Event::Message {
                message: Message::Request { request, .. },
                ..
            }) = event_of(ev, store)
            {
                inbound.push(request);
            }
        }
        (out, inbound)
    })
}
