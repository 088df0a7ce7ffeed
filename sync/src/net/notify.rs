//! `/hearth/notify/1`: `Notify` messages (a pushed edit, or "sync this record with me") on a
//! stream held open, one way, per peer.
//!
//! A request-response exchange opens a new stream for every message, negotiates its protocol,
//! arms timers in libp2p's swarm and request-response handler on both sides (each wakes
//! libp2p's shared timer thread) and carries an acknowledgement back. A `Notify` needs none
//! of that: its answer is ignored ([`Rounds::notify`](crate::round::Rounds::notify)), and
//! what it pushed is sent again at the next round if it is lost. So it travels as one frame
//! on a stream opened once and kept ([`NotifySender`]): about 0.2 ms less from one node to
//! the other after a quiet spell on a loopback connection (PERFORMANCE.md, session 35).
//!
//! The frames are [`codec`](super::codec)'s, and the reader admits each as a request of the
//! peer's ([`Inbound::admit`]), so a stranger gets the small frames and few streams it gets on
//! `/hearth/sync/1`, and a frame counts against the same memory budget while its body is
//! read. Beyond that the reader bounds what a held-open stream could otherwise let a peer keep:
//!
//! - a frame's body must arrive within [`NotifyLimits::frame_timeout`] of its length, or the
//!   stream is closed (a peer dripping bytes holds its admission that long and no longer);
//! - a peer keeps at most [`NotifyLimits::streams_per_peer`] streams open, and the node at
//!   most [`NotifyLimits::streams_total`]; a stream beyond either is closed at once;
//! - anything but a `Notify`, or a frame that does not decode, closes the stream;
//! - messages are handed to the driver through a bounded channel, each with its frame's
//!   admission: messages waiting for the driver hold at most the inbound budget, and a driver
//!   that falls behind stops the reading (the peer's writes wait for the stream's window).
//!
//! The sender, for its part, queues at most a few messages per peer and gives a peer's stream
//! up if a frame cannot be written within the frame timeout (a peer that takes the stream and
//! never reads it).
//!
//! A notify stream does not keep its connection open: a connection with nothing but notify
//! streams closes after the idle timeout, as before. The driver sends a `Notify` on a stream
//! only to a peer it is connected to; to any other by request, which dials the peer.
//!
//! A sender whose peer does not speak the protocol (or whose stream cannot be opened) gets
//! its messages back ([`NotifySender::returned`]) to send them by request instead.

use super::codec::{WireMessage, read_body, read_len_or_end, write_frame};
use super::inbound::Inbound;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The protocol's name on the wire.
pub const NOTIFY_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearth/notify/1");

/// Messages queued for one peer's stream before more are handed back to be sent by request
/// (each holds at most one push of 1 MiB).
const QUEUED_PER_PEER: usize = 16;

/// The byte a reader writes on a stream it takes, before it reads (see [`open`]).
const READY: u8 = 1;

/// Messages read and not yet taken by the driver, from every stream.
const DELIVERED_QUEUE: usize = 256;

/// What a reader allows (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct NotifyLimits {
    /// The largest frame a sender writes; a reader admits frames through [`Inbound::admit`],
    /// which holds peers to the same limit and strangers to a smaller one.
    pub max_frame: usize,
    /// The time a frame's body may take once its length has arrived.
    pub frame_timeout: Duration,
    /// Streams one peer may keep open at once (a peer has one per connection, and at most
    /// two connections).
    pub streams_per_peer: usize,
    /// Streams open at once, from everyone.
    pub streams_total: usize,
}

/// A message read, from whom, and its admission: a frame counts against the inbound budget
/// until the driver takes it, so messages waiting for the driver hold at most that budget.
type Delivered<M> = (PeerId, M, super::inbound::Admission);

/// Reads the notify streams peers open, handing what they carry to the driver.
pub struct NotifyReceiver<M> {
    delivered: mpsc::Receiver<Delivered<M>>,
}

impl<M: WireMessage + IsNotify> NotifyReceiver<M> {
    /// Accepts the protocol's streams on `control`, reading each within `inbound`'s limits
    /// and admission, on tasks of the current tokio runtime. A swarm has one receiver: a
    /// second, on the same swarm, receives nothing (and says so in the log).
    pub fn start(control: &mut libp2p_stream::Control, inbound: Inbound) -> Self {
        let (tx, delivered) = mpsc::channel(DELIVERED_QUEUE);
        let mut incoming = match control.accept(NOTIFY_PROTOCOL) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::warn!("notify streams not accepted: {e}");
                return NotifyReceiver { delivered };
            }
        };
        let limits = inbound.notify_limits();
        let open: Arc<Mutex<Open>> = Arc::default();
        tokio::spawn(async move {
            while let Some((peer, mut stream)) = incoming.next().await {
                stream.ignore_for_keep_alive();
                let Some(slot) = Open::take(&open, peer, &limits) else {
                    tracing::debug!(%peer, "notify stream refused: too many open");
                    continue;
                };
                let (tx, inbound) = (tx.clone(), inbound.clone());
                tokio::spawn(async move {
                    let ready = async {
                        stream.write_all(&[READY]).await?;
                        stream.flush().await
                    };
                    if let Err(e) = ready.await {
                        tracing::debug!(%peer, "notify stream closed before use: {e}");
                        return;
                    }
                    if let Err(why) = read_stream(stream, peer, &inbound, &limits, &tx).await {
                        tracing::debug!(%peer, "notify stream closed: {why}");
                    }
                    drop(slot);
                });
            }
        });
        NotifyReceiver { delivered }
    }

    /// The next message read, and from whom (its frame's admission ends here).
    pub async fn recv(&mut self) -> Option<(PeerId, M)> {
        let (peer, message, _admission) = self.delivered.recv().await?;
        Some((peer, message))
    }
}

/// Whether a message is a `Notify` (the only kind the protocol carries).
pub trait IsNotify {
    /// Whether it is.
    fn is_notify(&self) -> bool;
}

impl IsNotify for Vec<u8> {
    fn is_notify(&self) -> bool {
        true
    }
}

/// Reads `stream` until it ends or breaks a rule; the reason it ended.
async fn read_stream<M: WireMessage + IsNotify>(
    mut stream: Stream,
    peer: PeerId,
    inbound: &Inbound,
    limits: &NotifyLimits,
    tx: &mpsc::Sender<Delivered<M>>,
) -> Result<(), String> {
    loop {
        // Waiting for the next frame holds nothing; its body is admitted before it is read.
        let Some(len) = read_len_or_end(&mut stream)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let admission = inbound.admit(Some(peer), len, true)?;
        let frame =
            match tokio::time::timeout(limits.frame_timeout, read_body(&mut stream, len)).await {
                Ok(read) => read.map_err(|e| e.to_string())?,
                Err(_) => return Err(format!("a frame of {len} bytes took too long")),
            };
        let message = M::from_frame(&frame)?;
        if !message.is_notify() {
            return Err("a message other than Notify".into());
        }
        if tx.send((peer, message, admission)).await.is_err() {
            return Ok(());
        }
    }
}

/// The streams open, per peer and in all.
#[derive(Default)]
struct Open {
    per_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// One open stream's place in [`Open`], given back on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    peer: PeerId,
}

impl Open {
    fn take(open: &Arc<Mutex<Open>>, peer: PeerId, limits: &NotifyLimits) -> Option<Slot> {
        let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
        let n = o.per_peer.get(&peer).copied().unwrap_or(0);
        if n >= limits.streams_per_peer || o.total >= limits.streams_total {
            return None;
        }
        o.per_peer.insert(peer, n + 1);
        o.total += 1;
        Some(Slot {
            open: open.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        o.total = o.total.saturating_sub(1);
        match o.per_peer.get(&self.peer).copied().unwrap_or(0) {
            0 | 1 => o.per_peer.remove(&self.peer),
            n => o.per_peer.insert(self.peer, n - 1),
        };
    }
}

/// Sends `Notify` messages on one stream per peer, each written by a task of its own.
pub struct NotifySender<M> {
    control: libp2p_stream::Control,
    limits: NotifyLimits,
    writers: HashMap<PeerId, mpsc::Sender<M>>,
    returned_tx: mpsc::UnboundedSender<(PeerId, M)>,
    returned: mpsc::UnboundedReceiver<(PeerId, M)>,
}

impl<M: WireMessage> NotifySender<M> {
    /// A sender opening streams through `control`, refusing to write frames above
    /// `limits.max_frame` bytes, and waiting at most `limits.frame_timeout` for a new stream
    /// to be taken.
    pub fn new(control: libp2p_stream::Control, limits: NotifyLimits) -> Self {
        let (returned_tx, returned) = mpsc::unbounded_channel();
        NotifySender {
            control,
            limits,
            writers: HashMap::new(),
            returned_tx,
            returned,
        }
    }

    /// Queues `message` for `peer`'s stream (opened by the first message). Handed back at
    /// once if the peer's queue is full; later, through [`NotifySender::returned`], if
    /// the stream could not be opened or written.
    pub fn send(&mut self, peer: PeerId, message: M) -> Result<(), M> {
        let writer = self.writers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUED_PER_PEER);
            let (control, limits) = (self.control.clone(), self.limits);
            tokio::spawn(write_stream(
                peer,
                control,
                limits,
                rx,
                self.returned_tx.clone(),
            ));
            tx
        });
        match writer.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m)) => Err(m),
            Err(mpsc::error::TrySendError::Closed(m)) => {
                // The writer ended (its stream broke): the next message starts another.
                self.writers.remove(&peer);
                self.send(peer, m)
            }
        }
    }

    /// Ends `peer`'s writer (the peer disconnected): it writes what is still queued if its
    /// stream takes it, and hands back what it cannot.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.writers.remove(peer);
    }

    /// A message that could not be sent on its stream, to send by request instead.
    pub async fn returned(&mut self) -> Option<(PeerId, M)> {
        self.returned.recv().await
    }
}

/// Writes `peer`'s queued messages on a stream opened for the first of them, until the queue
/// closes. A message that cannot be written goes back. If no stream can be opened, the peer
/// does not take it (it does not speak the protocol, or has no room for another stream), or
/// a frame cannot be written within `limits.frame_timeout` (the peer does not read), every
/// message goes back, until the queue closes.
async fn write_stream<M: WireMessage>(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    limits: NotifyLimits,
    mut queue: mpsc::Receiver<M>,
    returned: mpsc::UnboundedSender<(PeerId, M)>,
) {
    let mut stream: Option<Stream> = None;
    let mut refused = false;
    while let Some(message) = queue.recv().await {
        if stream.is_none() && !refused {
            match open(&mut control, peer, limits.frame_timeout).await {
                Ok(s) => stream = Some(s),
                Err(why) => {
                    tracing::debug!(%peer, "notify stream not opened: {why}");
                    refused = true;
                }
            }
        }
        let Some(s) = stream.as_mut() else {
            let _ = returned.send((peer, message));
            continue;
        };
        let frame = message.to_frame();
        let write = write_frame(s, &frame, limits.max_frame);
        match tokio::time::timeout(limits.frame_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, "notify stream broke: {e}");
                stream = None;
                let _ = returned.send((peer, message));
            }
            Err(_) => {
                tracing::debug!(%peer, "notify stream not read: given up");
                (stream, refused) = (None, true);
                let _ = returned.send((peer, message));
            }
        }
    }
}

/// Opens a notify stream to `peer` and waits (at most `wait`) for the peer's sign that it took
/// it: the protocol's name is only confirmed with the peer's first bytes (it is proposed
/// without waiting, see `swarm_config`), so a frame written before them would be lost on a
/// peer that does not speak the protocol, or has no room for the stream.
async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    wait: Duration,
) -> Result<Stream, String> {
    let taken = async {
        let mut s = control
            .open_stream(peer, NOTIFY_PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        // The stream does not keep an idle connection open (see the module docs).
        s.ignore_for_keep_alive();
        // Sends the protocol's name, then reads the peer's answer and its sign.
        s.flush().await.map_err(|e| e.to_string())?;
        let mut sign = [0u8; 1];
        s.read_exact(&mut sign).await.map_err(|e| e.to_string())?;
        match sign {
            [READY] => Ok(s),
            _ => Err("the peer's first byte is not the ready sign".into()),
        }
    };
    tokio::time::timeout(wait, taken)
        .await
        .map_err(|_| "the peer did not take the stream in time".to_string())?
}

#[cfg(test)]
mod tests;
