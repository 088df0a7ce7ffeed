//! Bounds on what peers can make this node hold in memory, checked before a frame's body is
//! read, and a per-IP rate limit on new inbound connections.
//!
//! - **One budget for every frame in flight** ([`Budget`]): each frame being read reserves its
//!   announced length first; if the total would pass [`NetConfig::inbound_budget`], the frame is
//!   refused (its stream closes) before a byte of its body is read.
//! - **One share per peer** ([`NetConfig::inbound_per_peer`]): a peer's frames being read at
//!   once, over all its connections, may not pass its share, so a grantee turned hostile that
//!   drips bodies until the stream timeout holds one frame's worth, not the whole budget.
//! - **Strangers get far less** than peers known to a record (a patient device, a grantee, a
//!   known peer: the node tells [`Inbound::set_known`]): frames of at most
//!   [`NetConfig::max_frame_unknown`] bytes and [`NetConfig::max_streams_unknown`] requests
//!   being read at once, across all their connections, and all strangers together at most
//!   [`NetConfig::inbound_strangers`] bytes, so many stranger keys cannot spend the budget.
//! - **New connections per IP** are rate-limited ([`RateLimiter`], in [`Gate`]).
//!
//! The request-response codec has no notion of which peer it reads from, so [`Gate`], placed
//! before the sync protocol in the behaviour, names the peer of each new connection just before
//! the sync protocol clones its codec for that connection (the derived behaviour calls its
//! fields in order, synchronously); the clone keeps that peer for every stream of the
//! connection.

use super::NetConfig;
use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A global budget of bytes: reserve before allocating, released when the [`Permit`] drops.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    cap: usize,
}

/// Bytes reserved from a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    n: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            cap,
        })
    }

    /// Reserves `n` bytes, or `None` if that would pass the cap.
    pub fn try_take(self: &Arc<Self>, n: usize) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.cap)
            })
            .ok()?;
        Some(Permit {
            budget: self.clone(),
            n,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A token bucket per key: `burst` at once, then one more every `every`. Bounded: at most
/// `max_keys` keys are tracked; when full, keys whose bucket has refilled are forgotten, and
/// if none has, unknown keys are refused (a flood of addresses cannot grow the table).
#[derive(Debug)]
pub struct RateLimiter<K> {
    burst: u32,
    every: Duration,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `burst` events at once and one per `every` after that.
    pub fn new(burst: u32, every: Duration, max_keys: usize) -> Self {
        RateLimiter {
            burst: burst.max(1),
            every: every.max(Duration::from_millis(1)),
            max_keys,
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(since).as_secs_f64() / self.every.as_secs_f64();
        (tokens + gained).min(f64::from(self.burst))
    }

    /// Whether one more event for `key` at `now` is allowed (and counts it if so).
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            let full = f64::from(self.burst);
            let stale: Vec<K> = self
                .buckets
                .iter()
                .filter(|(_, (t, at))| self.refill(*t, *at, now) >= full)
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                self.buckets.remove(&k);
            }
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .get(key)
            .copied()
            .unwrap_or((f64::from(self.burst), now));
        let tokens = self.refill(tokens, at, now);
        if tokens < 1.0 {
            self.buckets.insert(key.clone(), (tokens, now));
            return false;
        }
        self.buckets.insert(key.clone(), (tokens - 1.0, now));
        true
    }
}

/// The inbound limits shared by the [`Gate`] and every copy of the codec.
#[derive(Clone, Debug)]
pub struct Inbound(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    budget: Arc<Budget>,
    /// The strangers' part of the budget (taken from both).
    strangers: Arc<Budget>,
    max_frame: usize,
    max_frame_unknown: usize,
    max_streams_unknown: usize,
    per_peer: usize,
    /// What a notify stream's reader allows ([`super::notify`]).
    notify: super::notify::NotifyLimits,
    known: RwLock<HashSet<PeerId>>,
    /// The peer of the connection being set up (see the module docs).
    next_peer: Mutex<Option<PeerId>>,
    /// Requests being read from unknown peers, per peer.
    reading: Mutex<HashMap<PeerId, usize>>,
    /// Bytes being read from peers that are not strangers, per peer.
    held: Mutex<HashMap<PeerId, usize>>,
}

/// What admits one frame: its part of the budget and, per peer, its stream slot (a
/// stranger) or its bytes in the peer's share (everyone else).
#[derive(Debug)]
pub struct Admission {
    _permit: Permit,
    _strangers: Option<Permit>,
    _share: Option<Share>,
}

/// Which per-peer table a [`Share`] counts in.
#[derive(Debug, Clone, Copy)]
enum Table {
    /// Requests being read from a stranger (counted one each).
    Streams,
    /// Bytes being read from a peer that is not a stranger.
    Bytes,
}

/// A peer's count in one per-peer table, given back on drop.
#[derive(Debug)]
struct Share {
    inbound: Inbound,
    table: Table,
    peer: PeerId,
    n: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut t = self.inbound.table(self.table);
        if let Some(n) = t.get_mut(&self.peer) {
            *n = n.saturating_sub(self.n);
            if *n == 0 {
                t.remove(&self.peer);
            }
        }
    }
}

impl Inbound {
    /// The limits of `config`.
    pub fn new(config: &NetConfig) -> Inbound {
        Inbound(Arc::new(Shared {
            budget: Budget::new(config.inbound_budget),
            max_frame: config.max_frame,
            max_frame_unknown: config.max_frame_unknown.min(config.max_frame),
            max_streams_unknown: config.max_streams_unknown.max(1),
            strangers: Budget::new(config.inbound_strangers),
            per_peer: config.inbound_per_peer,
            notify: super::notify::NotifyLimits {
                max_frame: config.max_frame,
                frame_timeout: config.request_timeout,
                streams_per_peer: config.max_established_per_peer as usize,
                streams_total: config.max_established_total as usize,
            },
            known: RwLock::new(HashSet::new()),
            next_peer: Mutex::new(None),
            reading: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }))
    }

    fn table(&self, t: Table) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        match t {
            Table::Streams => &self.0.reading,
            Table::Bytes => &self.0.held,
        }
        .lock()
        .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` more for `peer` in `table`, or `None` if that would pass `cap`.
    fn take_share(&self, table: Table, peer: PeerId, n: usize, cap: usize) -> Option<Share> {
        let mut t = self.table(table);
        let held = t.get(&peer).copied().unwrap_or(0);
        let total = held.checked_add(n).filter(|t| *t <= cap)?;
        t.insert(peer, total);
        Some(Share {
            inbound: self.clone(),
            table,
            peer,
            n,
        })
    }

    /// Replaces the set of peers known to a record (they get the full limits).
    pub fn set_known(&self, peers: impl IntoIterator<Item = PeerId>) {
        let set: HashSet<PeerId> = peers.into_iter().collect();
        *self.0.known.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    /// Whether `peer` is known to a record here.
    pub fn is_known(&self, peer: &PeerId) -> bool {
        self.0
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(peer)
    }

    /// What a notify stream's reader allows: frames as large as on `/hearth/sync/1`, each
    /// read within the request timeout, one stream per connection.
    pub fn notify_limits(&self) -> super::notify::NotifyLimits {
        self.0.notify
    }

    /// Bytes of frames being read now, from everyone.
    pub fn in_flight(&self) -> usize {
        self.0.budget.used()
    }

    pub(crate) fn name_next_peer(&self, peer: PeerId) {
        *self.0.next_peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
    }

    pub(crate) fn next_peer(&self) -> Option<PeerId> {
        *self.0.next_peer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a frame of `len` bytes announced by `peer` (`None`: unknown connection, treated
    /// as a stranger), as a `request` (a peer's own initiative) or a response to ours. The
    /// error is the reason, without content.
    pub fn admit(
        &self,
        peer: Option<PeerId>,
        len: usize,
        request: bool,
    ) -> Result<Admission, String> {
        let stranger = request && !peer.is_some_and(|p| self.is_known(&p));
        let max = if stranger {
            self.0.max_frame_unknown
        } else {
            self.0.max_frame
        };
        if len > max {
            return Err(format!(
                "frame of {len} bytes exceeds the limit of {max} bytes"
            ));
        }
        let share = match (stranger, peer) {
            (true, Some(p)) => Some(
                self.take_share(Table::Streams, p, 1, self.0.max_streams_unknown)
                    .ok_or("too many requests being read from an unknown peer")?,
            ),
            (false, Some(p)) => Some(
                self.take_share(Table::Bytes, p, len, self.0.per_peer)
                    .ok_or("this peer already has its share of the inbound memory budget")?,
            ),
            (_, None) => None,
        };
        let strangers = match stranger {
            true => Some(
                self.0
                    .strangers
                    .try_take(len)
                    .ok_or("the strangers' share of the inbound memory budget is spent")?,
            ),
            false => None,
        };
        let permit = self
            .0
            .budget
            .try_take(len)
            .ok_or("the node's inbound memory budget is spent; try again")?;
        Ok(Admission {
            _permit: permit,
            _strangers: strangers,
            _share: share,
        })
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// Refuses new inbound connections from an IP that opens them too fast, and names each new
/// connection's peer for the codec (see the module docs). Place it before the sync protocol.
pub struct Gate {
    inbound: Inbound,
    rate: RateLimiter<IpAddr>,
}

/// A connection refused by the per-IP rate limit.
#[derive(Debug, thiserror::Error)]
#[error("too many new connections from this address")]
pub struct RateLimited;

impl Gate {
    /// The gate for `inbound`, with `config`'s rate.
    pub fn new(inbound: Inbound, config: &NetConfig) -> Gate {
        Gate {
            inbound,
            rate: RateLimiter::new(config.conn_burst_per_ip, config.conn_every_per_ip, 4096),
        }
    }

    /// The shared inbound limits (the node updates the known peers through it).
    pub fn inbound(&self) -> &Inbound {
        &self.inbound
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // The one clock read of this module: the limiter takes time in (and is tested so);
        // this hook is the I/O edge, where libp2p's own timeouts read the clock too.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        match ip_of(remote) {
            Some(ip) if !self.rate.allow(&ip, now) => Err(ConnectionDenied::new(RateLimited)),
            _ => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inbound.name_next_peer(peer);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inbound.name_next_peer(peer);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    // A start instant for the limiter (which takes time in); nothing waits on the clock.
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;

    #[test]
    fn the_budget_refuses_what_would_pass_its_cap_and_frees_on_drop() {
        let b = Budget::new(100);
        let p1 = b.try_take(60).unwrap();
        assert!(b.try_take(41).is_none());
        let p2 = b.try_take(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(b.try_take(1).is_none());
        drop(p1);
        assert_eq!(b.used(), 40);
        assert!(b.try_take(60).is_some());
        drop(p2);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(usize::MAX).is_none());
    }

    #[test]
    fn the_rate_limiter_allows_a_burst_then_one_per_interval_and_stays_bounded() {
        let t0 = Instant::now();
        let mut r: RateLimiter<u32> = RateLimiter::new(3, Duration::from_secs(1), 2);
        assert!((0..3).all(|_| r.allow(&1, t0)));
        assert!(!r.allow(&1, t0));
        assert!(!r.allow(&1, t0 + Duration::from_millis(500)));
        assert!(r.allow(&1, t0 + Duration::from_millis(1600)));
        assert!(!r.allow(&1, t0 + Duration::from_millis(1700)));
        // Another key has its own bucket; a third is refused while both are in use.
        assert!(r.allow(&2, t0));
        assert!(!r.allow(&3, t0));
        // Once a bucket has refilled, its key is forgotten to make room.
        assert!(r.allow(&3, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn strangers_get_small_frames_and_few_streams_known_peers_the_full_limits() {
        let cfg = NetConfig {
            max_frame: 1000,
            max_frame_unknown: 100,
            max_streams_unknown: 2,
            inbound_budget: 1500,
            ..NetConfig::default()
        };
        let inb = Inbound::new(&cfg);
        let (stranger, friend) = (PeerId::random(), PeerId::random());
        inb.set_known([friend]);
        assert!(inb.admit(Some(stranger), 101, true).is_err());
        assert!(inb.admit(None, 101, true).is_err());
        let a = inb.admit(Some(stranger), 100, true).unwrap();
        let b = inb.admit(Some(stranger), 100, true).unwrap();
        assert!(
            inb.admit(Some(stranger), 1, true).is_err(),
            "a third stream"
        );
        drop(a);
        let _c = inb.admit(Some(stranger), 1, true).unwrap();
        drop(b);
        // A known peer: the full frame; a response to our own request: the full frame too.
        let big = inb.admit(Some(friend), 1000, true).unwrap();
        assert!(inb.admit(Some(friend), 1001, true).is_err());
        let _r = inb.admit(Some(stranger), 400, false).unwrap();
        // The global budget: 1000 + 400 + 1 reserved, so 100 more does not fit.
        assert!(inb.admit(Some(friend), 100, true).is_err());
        drop(big);
        assert!(inb.admit(Some(friend), 100, true).is_ok());
    }

    #[test]
    fn one_peer_holds_at_most_its_share_and_strangers_together_at_most_theirs() {
        let cfg = NetConfig {
            max_frame: 1000,
            max_frame_unknown: 100,
            max_streams_unknown: 2,
            inbound_budget: 4000,
            inbound_per_peer: 1000,
            inbound_strangers: 250,
            ..NetConfig::default()
        };
        let inb = Inbound::new(&cfg);
        let (hostile, honest) = (PeerId::random(), PeerId::random());
        inb.set_known([hostile, honest]);
        // A known peer dripping full frames holds one frame's worth, over any connections,
        // requests and responses alike; another known peer is still admitted in full.
        let drip = inb.admit(Some(hostile), 1000, true).unwrap();
        assert!(inb.admit(Some(hostile), 1, true).is_err());
        assert!(inb.admit(Some(hostile), 1, false).is_err());
        let fair = inb.admit(Some(honest), 1000, true).unwrap();
        assert_eq!(inb.in_flight(), 2000);
        drop(drip);
        let again = inb.admit(Some(hostile), 600, true).unwrap();
        let more = inb.admit(Some(hostile), 400, false).unwrap();
        assert!(inb.admit(Some(hostile), 1, true).is_err());
        drop(fair);
        // Strangers: 2 streams each, and 250 bytes all together, whatever their number.
        let many: Vec<_> = (0..2)
            .map(|_| inb.admit(Some(PeerId::random()), 100, true).unwrap())
            .collect();
        let another = PeerId::random();
        let fits = inb.admit(Some(another), 50, true).unwrap();
        assert!(inb.admit(Some(another), 1, true).is_err());
        assert!(inb.admit(Some(PeerId::random()), 1, true).is_err());
        // The known peers are not touched by the strangers' part.
        let known = inb.admit(Some(honest), 1000, true).unwrap();
        drop(many);
        let late = inb.admit(Some(PeerId::random()), 100, true).unwrap();
        // Everything given back: nothing left counted for anyone.
        drop((again, more, fits, known, late));
        assert_eq!(inb.in_flight(), 0);
        assert!(inb.table(Table::Streams).is_empty() && inb.table(Table::Bytes).is_empty());
        assert_eq!(inb.0.strangers.used(), 0);
    }
}
