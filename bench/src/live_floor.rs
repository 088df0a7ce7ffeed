//! The floor under an edit's delay to an online grantee, measured in the same run as the
//! delay itself (`live.edit_visible_floor`).
//!
//! However fast the node, an edit reaches an online grantee only after three things that are
//! not Hearth's own work: the patient's disk makes the new bundle durable (one sled
//! insert+flush), one frame of about a bundle's size crosses libp2p on loopback (a
//! `hearth_sync::net` swarm to another: TCP, Noise, Yamux, request-response, clocked from the
//! send until the receiving swarm hands the request over), and the grantee's store takes it
//! (one sled insert, seen by reads at once). The grantee's flush follows, but the edit is
//! shown before it (`Local::visible_first`: the patient's node holds the bundle durably and
//! sends it again if the grantee loses it). Each sample is one of each, added up.
//!
//! Every part starts after the same pause as each edit ([`PAUSE`]): a person's edit comes to a
//! quiet machine, and a disk that has been idle answers a flush far more slowly than one
//! flushed a moment before (here, a sled insert+flush takes about 35 µs right after another
//! and 300–600 µs after 5 ms of quiet; a bare `pwrite`+`fdatasync` behaves the same way).

use crate::relay::net::{identity, listen, open_config};
use anyhow::{Context, Result, bail};
use hearth_core::keys::Role;
use hearth_core::test_utils::TestRng;
use hearth_sync::net::{self, BehaviourEvent};
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use std::time::{Duration, Instant};

/// About one pushed note: a bundle and its frame.
const FRAME_BYTES: usize = 1024;

/// The quiet before each edit and each part of the floor: a person's edits are seconds apart.
pub(crate) const PAUSE: Duration = Duration::from_millis(5);

/// `n` samples of the floor (see the module docs), each the sum of an insert and a flush on
/// one sled, a one-way frame, and an insert on another sled; with each, the insert and flush
/// alone.
pub(crate) async fn edit_visible_floor(n: usize) -> Result<Vec<(Duration, Duration)>> {
    let dir = tempfile::tempdir()?;
    let open = |name: &str| {
        sled::Config::new()
            .path(dir.path().join(name))
            .flush_every_ms(None)
            .open()
    };
    let (sender_db, receiver_db) = (open("sender")?, open("receiver")?);
    let ways = one_way(n).await?;
    let value = vec![7u8; FRAME_BYTES];
    let write = |db: &sled::Db, i: usize, durable: bool| -> Result<Duration> {
        let t = Instant::now();
        db.insert((i as u64).to_be_bytes(), value.as_slice())?;
        if durable {
            db.flush()?;
        }
        Ok(t.elapsed())
    };
    let mut floor = Vec::with_capacity(ways.len());
    for (i, way) in ways.into_iter().enumerate() {
        tokio::time::sleep(PAUSE).await;
        let durable = write(&sender_db, i, true)?;
        floor.push((durable + way + write(&receiver_db, i, false)?, durable));
        // The grantee's flush, outside the floor, as the grantee's node does after showing it.
        receiver_db.flush()?;
    }
    Ok(floor)
}

/// `n` one-way trips of a frame from one `hearth_sync::net` swarm to another on loopback:
/// from the sender's `send_request` until the receiver's swarm yields the request. The two
/// swarms run on the same runtime, as a node's do.
async fn one_way(n: usize) -> Result<Vec<Duration>> {
    let mut rng = TestRng::new(31);
    let (a, b) = (
        identity(Role::Patient, "A", &mut rng),
        identity(Role::Professional, "B", &mut rng),
    );
    let mut receiver = net::swarm::<Vec<u8>>(net::keypair(&b)?, &open_config())?;
    let addr = listen(&mut receiver).await?;
    let receiver_id = *receiver.local_peer_id();
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel::<Instant>(1);
    let receiver_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Store(
                request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                },
            )) = receiver.select_next_some().await
            {
                let _ = arrived_tx.try_send(Instant::now());
                let _ = receiver
                    .behaviour_mut()
                    .store
                    .send_response(channel, Vec::new());
            }
        }
    });
    let mut sender = net::swarm::<Vec<u8>>(net::keypair(&a)?, &open_config())?;
    sender.dial(addr.with(Protocol::P2p(receiver_id)))?;
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = sender.select_next_some().await {
            break;
        }
    }
    let mut ways = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sender
            .behaviour_mut()
            .store
            .send_request(&receiver_id, vec![7u8; FRAME_BYTES]);
        // The answer closes the exchange before the next one starts.
        loop {
            match sender.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::Message {
                        message: request_response::Message::Response { .. },
                        ..
                    },
                )) => break,
                SwarmEvent::Behaviour(BehaviourEvent::Store(
                    request_response::Event::OutboundFailure { error, .. },
                )) => bail!("a floor frame failed: {error}"),
                _ => {}
            }
        }
        let at = arrived
            .recv()
            .await
            .context("the receiving swarm stopped")?;
        ways.push(at.saturating_duration_since(t));
        // Spaced out as the edits are.
        tokio::time::sleep(PAUSE).await;
    }
    receiver_task.abort();
    Ok(ways)
}
