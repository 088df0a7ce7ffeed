//! What the live node reports of its network state ([`Status`]), and the shared copy the
//! driver keeps up to date.

use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::time::Timestamp;
use hearth_sync::session::Report;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How the last round with a peer for a record ended.
#[derive(Clone, Debug, Serialize)]
pub struct SessionState {
    /// The peer.
    pub peer: String,
    /// The record.
    pub record: String,
    /// When it ended.
    pub at: Timestamp,
    /// Whether both sides held the same of every section they share.
    pub in_sync: bool,
    /// Why it failed, if it did (no content).
    pub error: Option<String>,
    /// The last step's report: bundles received, sent, refused; per section behind/ahead.
    pub report: Option<Report>,
}

/// A known peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KnownPeer {
    /// Its addresses.
    pub addrs: Vec<String>,
    /// Failed dials in a row.
    pub failures: u32,
    /// The last dial error.
    pub last_error: Option<String>,
}

/// A snapshot of the node's network state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Where it listens.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub connected: BTreeSet<String>,
    /// Known peers.
    pub known: BTreeMap<String, KnownPeer>,
    /// The last round per (record, peer).
    pub sessions: Vec<SessionState>,
    /// Bundles received from peers and stored since the node started.
    pub received: u64,
    /// What this node did as an organisation relay since it started (relay nodes only).
    pub relay: Option<RelayCounters>,
    /// Sync rounds that ended since the node started (in sync, behind, or failed; rounds
    /// drawn by a record not held here are not counted).
    pub rounds_finished: u64,
    /// Of [`Status::rounds_finished`], those that failed.
    pub rounds_failed: u64,
    /// Each connected peer's connections, by remote address (`/p2p-circuit` when through a
    /// relay).
    pub connections: BTreeMap<String, Vec<String>>,
    /// Whether this node's relays can dial it (`public`), cannot (`private`: it is reached
    /// through circuits on them), or have not said (`unknown`).
    pub reachability: String,
    /// How change notifications reached connected peers since the node started.
    pub notify: NotifyCounters,
}

/// Change notifications (`Notify`, with the edits pushed in them) sent to connected peers.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct NotifyCounters {
    /// Sent on the peer's notify stream (`/hearth/notify/1`), the usual way: handed to the
    /// stream and not handed back.
    pub streamed: u64,
    /// Sent by request instead, because the peer's stream could not take them: the peer does
    /// not speak the protocol, its stream broke or stalled, or too many waited for it. Each
    /// still arrives, at the cost of a request's round trip; a count that keeps growing
    /// points to a peer that cannot keep up or runs an older version.
    pub by_request: u64,
}

/// A relay's counters since it started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RelayCounters {
    /// `/hearth/store/1` requests answered.
    pub requests: u64,
    /// Requests refused whole (unknown record or peer, ended grant).
    pub refused: u64,
    /// Requests refused for going over a peer's rate.
    pub rate_limited: u64,
    /// Requests dropped because the node was busy.
    pub busy: u64,
    /// Bundles stored.
    pub stored: u64,
    /// Bundles served.
    pub served: u64,
    /// Pushed bundles refused (bad signature, broken chain, unauthorised author, quota).
    pub rejected: u64,
    /// Access lists from patients' devices that said something new (one signed afresh saying
    /// the same is not counted).
    pub supplied: u64,
    /// Distinct peers served.
    pub peers: usize,
}

/// The shared copy of the network state: the driver updates it in place, readers snapshot it.
#[derive(Default)]
pub(super) struct StatusInner {
    pub(super) listen_addrs: Vec<String>,
    pub(super) connected: BTreeSet<String>,
    /// The same peers, as keys (for [`Handle::changed`](super::Handle::changed)).
    pub(super) connected_keys: BTreeSet<PeerKey>,
    pub(super) known: BTreeMap<String, KnownPeer>,
    pub(super) sessions: BTreeMap<(RecordId, PeerKey), SessionState>,
    pub(super) relay: Option<RelayCounters>,
    pub(super) rounds_finished: u64,
    pub(super) rounds_failed: u64,
    pub(super) connections: BTreeMap<String, Vec<String>>,
    pub(super) reachability: String,
    pub(super) notify: NotifyCounters,
}

impl StatusInner {
    /// A snapshot for readers, with `received` bundles counted since the start.
    pub(super) fn snapshot(&self, received: u64) -> Status {
        Status {
            listen_addrs: self.listen_addrs.clone(),
            connected: self.connected.clone(),
            known: self.known.clone(),
            sessions: self.sessions.values().cloned().collect(),
            received,
            relay: self.relay.clone(),
            rounds_finished: self.rounds_finished,
            rounds_failed: self.rounds_failed,
            connections: self.connections.clone(),
            reachability: self.reachability.clone(),
            notify: self.notify,
        }
    }
}
