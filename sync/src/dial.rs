//! Known peers and when to dial them again, sans-I/O: exponential backoff by the time passed
//! in.
//!
//! A node dials the peers it knows (`hearth peers add`, the issuers of its grants, a linked
//! device's root holder) and redials them when a dial fails or a connection is lost: the first
//! redial after a lost connection comes after [`DialConfig::backoff_min`], and each failed dial
//! in a row doubles the wait, up to [`DialConfig::backoff_max`]. A dial in progress is not
//! repeated until it resolves (or `backoff_max` passes). A connection made with a known peer
//! shows the network works again (a laptop back on its network, a cut link healed): the peers
//! still waiting out a backoff are then dialled at once ([`DialConfig::wake_max`] of them, at
//! most once every [`DialConfig::wake_every`]; a stranger's connection wakes nothing), so a
//! healed partition converges in seconds rather than at the end of a minute's backoff. The
//! table is bounded
//! ([`DialConfig::max_known`] peers, [`DialConfig::max_addrs`] addresses each): a stranger who
//! announces addresses cannot grow it.
//!
//! Addresses are the driver's type (libp2p's `Multiaddr` in the node); [`Dials`] only keeps
//! and returns them.

use hearth_core::ids::PeerKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bounds and timing of redials.
#[derive(Clone, Debug)]
pub struct DialConfig {
    /// First redial delay after a lost connection (failed dials wait twice as long each time).
    pub backoff_min: Duration,
    /// Longest redial delay.
    pub backoff_max: Duration,
    /// Known peers remembered at once.
    pub max_known: usize,
    /// Addresses remembered per peer.
    pub max_addrs: usize,
    /// Failing peers woken at once by a connection with a known peer (those with the fewest
    /// failures first)...
    pub wake_max: usize,
    /// ...at most once in this long.
    pub wake_every: Duration,
}

impl Default for DialConfig {
    fn default() -> Self {
        DialConfig {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_known: 1024,
            max_addrs: 8,
            // A node's peers that share its network come back together; 32 dials at once stay
            // within the transport's pending-dial limit (64).
            wake_max: 32,
            wake_every: Duration::from_secs(10),
        }
    }
}

/// One known peer's dialling state.
#[derive(Clone, Debug)]
pub struct Dial<A> {
    addrs: Vec<A>,
    failures: u32,
    next: Instant,
    last_error: Option<String>,
}

impl<A> Dial<A> {
    /// Its addresses.
    pub fn addrs(&self) -> &[A] {
        &self.addrs
    }
    /// Failed dials in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// The last dial error.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

/// The known peers (see the module docs).
#[derive(Debug)]
pub struct Dials<A> {
    config: DialConfig,
    peers: HashMap<PeerKey, Dial<A>>,
    changed: bool,
    /// When failing peers were last woken.
    woken: Option<Instant>,
}

impl<A: Clone + PartialEq> Dials<A> {
    /// No known peers yet.
    pub fn new(config: DialConfig) -> Self {
        Dials {
            config,
            peers: HashMap::new(),
            changed: true,
            woken: None,
        }
    }

    /// Remembers `peer` (if the table has room) with `addrs`, to be dialled from `now`;
    /// returns the addresses that were new (the driver gives them to its transport).
    pub fn remember(
        &mut self,
        peer: PeerKey,
        addrs: impl IntoIterator<Item = A>,
        now: Instant,
    ) -> Vec<A> {
        self.changed = true;
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_known {
            return Vec::new();
        }
        let max_addrs = self.config.max_addrs;
        let d = self.peers.entry(peer).or_insert_with(|| Dial {
            addrs: Vec::new(),
            failures: 0,
            next: now,
            last_error: None,
        });
        let mut added = Vec::new();
        for a in addrs {
            if !d.addrs.contains(&a) && d.addrs.len() < max_addrs {
                d.addrs.push(a.clone());
                added.push(a);
            }
        }
        added
    }

    /// The user asked for `peer` (again): dial it at once, forgetting past failures.
    pub fn retry_now(&mut self, peer: &PeerKey, now: Instant) {
        if let Some(d) = self.peers.get_mut(peer) {
            d.next = now;
            d.failures = 0;
            self.changed = true;
        }
    }

    /// The peers to dial now, with their addresses: known, not `connected`, with an address,
    /// and due. Each is not due again until its dial resolves or `backoff_max` passes.
    pub fn due(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerKey) -> bool,
    ) -> Vec<(PeerKey, Vec<A>)> {
        let mut out = Vec::new();
        for (p, d) in &mut self.peers {
            if !connected(p) && d.next <= now && !d.addrs.is_empty() {
                d.next = now + self.config.backoff_max;
                out.push((*p, d.addrs.clone()));
            }
        }
        out
    }

    /// A dial of `peer` failed (`why`, no content): the next waits twice as long as the last.
    pub fn failed(&mut self, peer: &PeerKey, why: String, now: Instant) {
        let (min, max) = (self.config.backoff_min, self.config.backoff_max);
        if let Some(d) = self.peers.get_mut(peer) {
            d.failures = d.failures.saturating_add(1);
            let delay = min.saturating_mul(1u32 << d.failures.min(16)).min(max);
            d.next = now + delay;
            d.last_error = Some(why);
            self.changed = true;
        }
    }

    /// `peer` is connected at `now`: its failures are forgotten, and if it is a known peer the
    /// peers waiting out a backoff are woken (see the module docs).
    pub fn connected(&mut self, peer: &PeerKey, now: Instant) {
        let Some(d) = self.peers.get_mut(peer) else {
            return;
        };
        d.failures = 0;
        d.last_error = None;
        self.changed = true;
        if self
            .woken
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.wake_every)
        {
            return;
        }
        let mut waiting: Vec<(u32, PeerKey)> = self
            .peers
            .iter()
            .filter(|(p, d)| *p != peer && d.failures > 0 && d.next > now)
            .map(|(p, d)| (d.failures, *p))
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort_unstable();
        for (_, p) in waiting.into_iter().take(self.config.wake_max) {
            if let Some(d) = self.peers.get_mut(&p) {
                d.next = now;
            }
        }
        self.woken = Some(now);
    }

    /// The last connection to `peer` closed: redial after `backoff_min`.
    pub fn disconnected(&mut self, peer: &PeerKey, now: Instant) {
        if let Some(d) = self.peers.get_mut(peer) {
            d.next = now + self.config.backoff_min;
        }
    }

    /// Whether `peer` is known.
    pub fn contains(&self, peer: &PeerKey) -> bool {
        self.peers.contains_key(peer)
    }

    /// The known peers.
    pub fn peers(&self) -> impl Iterator<Item = &PeerKey> {
        self.peers.keys()
    }

    /// The known peers and their state.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &Dial<A>)> {
        self.peers.iter()
    }

    /// Whether the table changed since the last call (for publishing it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}
