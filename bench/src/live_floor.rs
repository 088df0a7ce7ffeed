//! The floor under an edit's delay to an online grantee, measured in the same run as the
//! delay itself (`live.edit_visible_floor`).
//!
//! However fast the node, an edit reaches an online grantee only after three things that are
//! not Hearth's own work: the patient's disk makes the new bundle durable (one sled
//! insert+flush), one frame of about a bundle's size crosses libp2p on loopback (a
//! `hearth_sync::net` swarm to another: TCP, Noise, Yamux, on a stream held open as nodes
//! push their edits on `/hearth/notify/1`, clocked from the write until the receiving task
//! has read the frame), and the grantee's store takes it (one sled insert, seen by reads at
//! once). The grantee's flush follows, but the edit is shown before it
//! (`Local::visible_first`: the patient's node holds the bundle durably and sends it again if
//! the grantee loses it). Each sample is one of each, added up.
//!
//! Every part starts after the same pause as each edit ([`PAUSE`]): a person's edit comes to a
//! quiet machine, and a disk that has been idle answers a flush far more slowly than one
//! flushed a moment before (here, a sled insert+flush takes about 35 µs right after another
//! and 300–600 µs after 5 ms of quiet; a bare `pwrite`+`fdatasync` behaves the same way).
//!
//! Parts taken apart could understate what they cost one after another, as an edit makes them
//! (sled's flush wakes its IO threads, which then compete with the frame for the cores), so
//! the same floor is also measured back to back (`live.edit_visible_floor_back_to_back`,
//! its baseline the floor of parts apart): the patient's insert+flush, at once the frame, the
//! grantee's insert as it arrives, one timeline per sample.

use crate::relay::net::{identity, listen, open_config};
use anyhow::{Context, Result};
use hearth_core::keys::Role;
use hearth_core::test_utils::TestRng;
use hearth_sync::net;
use hearth_sync::net::codec::{read_frame, write_frame};
use hearth_sync::net::notify::NOTIFY_PROTOCOL;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use std::time::{Duration, Instant};

/// About one pushed note: a bundle and its frame.
const FRAME_BYTES: usize = 1024;

/// The quiet before each edit and each part of the floor: a person's edits are seconds apart.
pub(crate) const PAUSE: Duration = Duration::from_millis(5);

/// The patient's sled and the grantee's, in `dir`: flushed only when told to, as a node's.
fn two_sleds(dir: &std::path::Path) -> Result<(sled::Db, sled::Db)> {
    let open = |name: &str| {
        sled::Config::new()
            .path(dir.join(name))
            .flush_every_ms(None)
            .open()
    };
    Ok((open("sender")?, open("receiver")?))
}

/// `n` samples of the floor (see the module docs), each the sum of an insert and a flush on
/// one sled, a one-way frame, and an insert on another sled; with each, the insert and flush
/// alone.
pub(crate) async fn edit_visible_floor(n: usize) -> Result<Vec<(Duration, Duration)>> {
    let dir = tempfile::tempdir()?;
    let (sender_db, receiver_db) = two_sleds(dir.path())?;
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

/// `n` samples of the same floor made back to back, as an edit makes it
/// (`live.edit_visible_floor_back_to_back`): after the pause, one sled insert+flush, then at
/// once a frame sent to the other swarm, whose task inserts it into its sled on arrival; each
/// sample runs from the insert's start until that insert returns. Beside the floor of parts
/// taken apart, this one also pays for what the parts do to each other on the machine: sled's
/// flush hands its write to sled's own IO threads and wakes every idle one of them (sled
/// 0.34's thread pool notifies all its waiting threads for each task), and they are still
/// being scheduled while the frame crosses. The grantee's flush follows each sample, outside
/// it, as in the floor of parts apart.
pub(crate) async fn edit_visible_floor_back_to_back(n: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let (sender_db, receiver_db) = two_sleds(dir.path())?;
    let value = vec![7u8; FRAME_BYTES];
    let mut pair = Pair::connect(Some(receiver_db)).await?;
    let mut floor = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep(PAUSE).await;
        let t = Instant::now();
        sender_db.insert((i as u64).to_be_bytes(), value.as_slice())?;
        sender_db.flush()?;
        let at = pair.exchange().await?;
        floor.push(at.saturating_duration_since(t));
    }
    Ok(floor)
}

/// `n` one-way trips of a frame from one `hearth_sync::net` swarm to another on loopback:
/// from the sender's write until the receiver's task has read the frame. The two
/// swarms run on the same runtime, as a node's do.
async fn one_way(n: usize) -> Result<Vec<Duration>> {
    let mut pair = Pair::connect(None).await?;
    let mut ways = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let at = pair.exchange().await?;
        ways.push(at.saturating_duration_since(t));
        // Spaced out as the edits are.
        tokio::time::sleep(PAUSE).await;
    }
    Ok(ways)
}

/// Two `hearth_sync::net` swarms connected on loopback, with one stream held open between
/// them on the notify protocol, as a node pushes its edits: the sender, polled by whoever
/// calls [`Pair::exchange`], and the receiver, in a task of its own that reads every frame.
struct Pair {
    sender: libp2p::Swarm<net::Behaviour<Vec<u8>>>,
    stream: libp2p::Stream,
    arrived: tokio::sync::mpsc::Receiver<Instant>,
    receiver_task: tokio::task::JoinHandle<()>,
}

impl Pair {
    /// Connects a sender to a receiver whose task, on each frame, inserts it into `store` if
    /// there is one (then tells the moment, then flushes it), or else tells the moment the
    /// frame arrived.
    async fn connect(store: Option<sled::Db>) -> Result<Pair> {
        let mut rng = TestRng::new(31);
        let (a, b) = (
            identity(Role::Patient, "A", &mut rng),
            identity(Role::Professional, "B", &mut rng),
        );
        let mut receiver = net::swarm::<Vec<u8>>(net::keypair(&b)?, &open_config())?;
        let addr = listen(&mut receiver).await?;
        let receiver_id = *receiver.local_peer_id();
        let mut incoming = receiver
            .behaviour()
            .notify
            .new_control()
            .accept(NOTIFY_PROTOCOL)?;
        let (arrived_tx, arrived) = tokio::sync::mpsc::channel::<Instant>(1);
        // The swarm is polled in one task and the stream read in another, as a node does.
        let reader = tokio::spawn(async move {
            let Some((_, mut stream)) = incoming.next().await else {
                return;
            };
            let mut count = 0u64;
            while let Ok(frame) = read_frame(&mut stream, FRAME_BYTES).await {
                let at = match &store {
                    Some(db) => {
                        count += 1;
                        if db.insert(count.to_be_bytes(), frame).is_err() {
                            return;
                        }
                        Instant::now()
                    }
                    None => Instant::now(),
                };
                let _ = arrived_tx.try_send(at);
                // The grantee's flush, outside the sample, as its node does after showing
                // the entry.
                if let Some(db) = &store
                    && db.flush().is_err()
                {
                    return;
                }
            }
        });
        let receiver_task = tokio::spawn(async move {
            let _reader = AbortOnDrop(reader);
            loop {
                receiver.select_next_some().await;
            }
        });
        let mut sender = net::swarm::<Vec<u8>>(net::keypair(&a)?, &open_config())?;
        sender.dial(addr.with(Protocol::P2p(receiver_id)))?;
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = sender.select_next_some().await {
                break;
            }
        }
        let mut control = sender.behaviour().notify.new_control();
        let open = control.open_stream(receiver_id, NOTIFY_PROTOCOL);
        tokio::pin!(open);
        let stream = loop {
            tokio::select! {
                _ = sender.select_next_some() => {}
                s = &mut open => break s.context("the floor's stream was not opened")?,
            }
        };
        Ok(Pair {
            sender,
            stream,
            arrived,
            receiver_task,
        })
    }

    /// Sends one frame on the stream: the moment the receiver told it arrived.
    async fn exchange(&mut self) -> Result<Instant> {
        let frame = vec![7u8; FRAME_BYTES];
        let write = write_frame(&mut self.stream, &frame, FRAME_BYTES);
        tokio::pin!(write);
        let mut written = false;
        loop {
            tokio::select! {
                _ = self.sender.select_next_some() => {}
                w = &mut write, if !written => {
                    w.context("a floor frame failed")?;
                    written = true;
                }
                at = self.arrived.recv() => {
                    return at.context("the receiving swarm stopped");
                }
            }
        }
    }
}

/// Ends a task when dropped (the floor's reader, with the receiver's task).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.receiver_task.abort();
    }
}
