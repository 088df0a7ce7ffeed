//! Per-peer request rates at a relay: a token bucket per peer, with time passed in.

use hearth_core::ids::PeerKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A token bucket per peer: `burst` requests at once, then one per `every`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    every: Duration,
    buckets: HashMap<PeerKey, (f64, Instant)>,
    max_peers: usize,
}

impl RateLimiter {
    /// A limiter allowing `burst` requests at once and then one per `every`, tracking at most
    /// `max_peers` peers (the oldest full buckets are forgotten first).
    pub fn new(burst: u32, every: Duration, max_peers: usize) -> Self {
        RateLimiter {
            burst,
            every,
            buckets: HashMap::new(),
            max_peers,
        }
    }

    /// Whether `peer` may make a request at `now` (and counts it if so).
    pub fn allow(&mut self, peer: &PeerKey, now: Instant) -> bool {
        let (burst, every) = (f64::from(self.burst), self.every.as_secs_f64().max(1e-6));
        if self.buckets.len() >= self.max_peers && !self.buckets.contains_key(peer) {
            // Forget the peers whose buckets have refilled: they owe nothing.
            self.buckets
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() / every < burst);
            if self.buckets.len() >= self.max_peers {
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(*peer).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / every).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // a fixed starting instant; the tests move it by hand
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let mut r = RateLimiter::new(3, Duration::from_secs(1), 10);
        let (p, t0) = (PeerKey([1; 32]), Instant::now());
        assert!((0..3).all(|_| r.allow(&p, t0)));
        assert!(!r.allow(&p, t0), "the burst is spent");
        assert!(r.allow(&PeerKey([2; 32]), t0), "another peer is not harmed");
        assert!(r.allow(&p, t0 + Duration::from_millis(1001)));
        assert!(!r.allow(&p, t0 + Duration::from_millis(1002)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = RateLimiter::new(1, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert!(r.allow(&PeerKey([1; 32]), t0));
        assert!(r.allow(&PeerKey([2; 32]), t0));
        assert!(!r.allow(&PeerKey([3; 32]), t0), "full of owing peers");
        assert!(r.allow(&PeerKey([3; 32]), t0 + Duration::from_secs(61)));
    }
}
