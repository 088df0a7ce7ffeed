//! The relay module's network measurements: the libp2p request-response baseline, and memory
//! per idle connection.

use super::Exchange;
use crate::measure::rss_kib;
use anyhow::{Context, Result, bail};
use hearth_core::keys::{Identity, Role};
use hearth_core::test_utils::TestRng;
use hearth_sync::net::{self, BehaviourEvent, NetConfig};
use hearth_sync::protocol::Message;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

/// A new identity of `role` called `name`.
pub(crate) fn identity(role: Role, name: &str, rng: &mut TestRng) -> Identity {
    Identity::generate(role, name.into(), rng).0
}

/// A config for swarms in one process on loopback: no per-IP connection rate, no stranger
/// frame limit (the baseline's peers are strangers to each other).
pub(crate) fn open_config() -> NetConfig {
    NetConfig {
        conn_burst_per_ip: 1_000_000,
        max_established_total: 4096,
        max_pending: 1024,
        max_frame_unknown: net::MAX_FRAME,
        max_streams_unknown: 8,
        inbound_strangers: NetConfig::default().inbound_budget,
        ..NetConfig::default()
    }
}

/// A frame swarm's event, if it is a request from a peer on the store protocol: the request
/// and the channel to answer it on.
pub(crate) fn inbound_request(
    event: SwarmEvent<BehaviourEvent<Vec<u8>>>,
) -> Option<(Vec<u8>, request_response::ResponseChannel<Vec<u8>>)> {
    match event {
        SwarmEvent::Behaviour(BehaviourEvent::Store(request_response::Event::Message {
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        })) => Some((request, channel)),
        _ => None,
    }
}

/// Starts `swarm` listening on a fresh loopback port and returns its address.
pub(crate) async fn listen<M: net::codec::WireMessage>(
    swarm: &mut libp2p::Swarm<net::Behaviour<M>>,
) -> Result<Multiaddr> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

/// The baseline: `exchanges` one after another over libp2p request-response on loopback, the
/// server answering each with a frame of the recorded size and doing nothing else.
pub(super) async fn request_response(
    exchanges: &[Exchange],
    rng: &mut TestRng,
) -> Result<Duration> {
    let a = identity(Role::Professional, "A", rng);
    let b = identity(Role::Relay, "B", rng);
    let mut server = net::swarm::<Vec<u8>>(net::keypair(&b)?, &open_config())?;
    let addr = listen(&mut server).await?;
    let server_id = *server.local_peer_id();
    let server_task = tokio::spawn(async move {
        loop {
            if let Some((request, channel)) = inbound_request(server.select_next_some().await) {
                // The first four bytes of each request say how long its answer is.
                let want = request
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, |b| u32::from_be_bytes(b) as usize);
                let _ = server
                    .behaviour_mut()
                    .store
                    .send_response(channel, vec![7u8; want]);
            }
        }
    });
    let mut client = net::swarm::<Vec<u8>>(net::keypair(&a)?, &open_config())?;
    client.dial(addr.with(Protocol::P2p(server_id)))?;
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
            break;
        }
    }
    let t = Instant::now();
    for x in exchanges {
        let mut frame = vec![7u8; x.req.max(4)];
        frame[..4].copy_from_slice(&u32::try_from(x.resp)?.to_be_bytes());
        client.behaviour_mut().store.send_request(&server_id, frame);
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => {
                    anyhow::ensure!(response.len() == x.resp, "an answer of the asked size");
                    break;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::OutboundFailure { error, .. },
                )) => bail!("a baseline request failed: {error}"),
                _ => {}
            }
        }
    }
    let took = t.elapsed();
    server_task.abort();
    Ok(took)
}

/// Resident memory growth, in bytes, since `before` (KiB).
fn growth_since(before: u64) -> u64 {
    rss_kib().0.saturating_sub(before) * 1024
}

/// Resident memory growth per idle libp2p connection to a relay swarm (both ends in this
/// process; the clients' swarms are built before the first measurement), and per bare TCP
/// connection pair, in bytes: (libp2p, TCP).
pub(super) async fn idle_connections(n: usize, rng: &mut TestRng) -> Result<(f64, f64)> {
    // Bare TCP first: N accepted and N connected sockets kept open.
    let before = rss_kib().0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    let mut kept = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let c = tokio::net::TcpStream::connect(at).await?;
        let (s, _) = listener.accept().await?;
        kept.push(c);
        kept.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tcp = growth_since(before) as f64 / n as f64;
    drop(kept);

    let relay = identity(Role::Relay, "R", rng);
    let mut server = net::swarm::<Message>(net::keypair(&relay)?, &open_config())?;
    let addr = listen(&mut server)
        .await?
        .with(Protocol::P2p(*server.local_peer_id()));
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<PeerId>(n);
    let server_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                server.select_next_some().await
            {
                let _ = conn_tx.try_send(peer_id);
            }
        }
    });
    let clients = (0..n)
        .map(|i| {
            let id = identity(Role::Professional, &format!("C{i}"), rng);
            Ok(net::swarm::<Message>(
                net::keypair(&id)?,
                &NetConfig::default(),
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib().0;
    let mut tasks = Vec::with_capacity(n);
    for mut c in clients {
        c.dial(addr.clone())?;
        tasks.push(tokio::spawn(async move {
            loop {
                c.select_next_some().await;
            }
        }));
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), conn_rx.recv())
            .await
            .context("connections established within a minute")?
            .context("the relay swarm stopped")?;
    }
    // Let identify and the first pings finish: the connections are idle from here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p2p = growth_since(before) as f64 / n as f64;
    for t in tasks {
        t.abort();
    }
    server_task.abort();
    Ok((p2p, tcp))
}
