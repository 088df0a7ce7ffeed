//! The live node's timing and bounds, and its wall clock.

use super::PairingSlot;
use hearth_core::time::Timestamp;
use hearth_sync::relay::server::RelayLimits;
use hearth_sync::round::RoundConfig;
use std::time::Duration;

/// The wall clock of the node's jobs (receipt times, grant validity): the system's unless a
/// test passes its own.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub fn() -> Timestamp);

impl Clock {
    /// The system clock.
    pub const SYSTEM: Clock = Clock(system_time);

    /// The time now.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::SYSTEM
    }
}

pub(super) fn system_time() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}

/// Timing and bounds of the live node.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Between background rounds with connected peers.
    pub interval: Duration,
    /// First redial delay after a failed dial or a lost connection.
    pub backoff_min: Duration,
    /// Longest redial delay.
    pub backoff_max: Duration,
    /// Jobs (store operations) queued or running at once.
    pub max_jobs: usize,
    /// Request/response steps in one round before it is abandoned.
    pub max_steps: u32,
    /// Known peers remembered at once.
    pub max_known: usize,
    /// Rounds in flight with one peer.
    pub max_rounds_per_peer: usize,
    /// The pairing slot `hearth device link` opens (answered on the sync protocol).
    pub pairing: PairingSlot,
    /// The wall clock.
    pub clock: Clock,
    /// Serve `/hearth/store/1` as an organisation relay, with these limits (relay nodes only).
    pub relay: Option<RelayLimits>,
    /// Requests one peer may make of a relay at once, then one per [`LiveConfig::relay_every`].
    pub relay_burst: u32,
    /// See [`LiveConfig::relay_burst`].
    pub relay_every: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        let rounds = RoundConfig::default();
        LiveConfig {
            interval: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_jobs: 32,
            max_steps: rounds.max_steps,
            max_known: 1024,
            max_rounds_per_peer: rounds.max_rounds_per_peer,
            pairing: PairingSlot::default(),
            clock: Clock::SYSTEM,
            relay: None,
            relay_burst: 20,
            relay_every: Duration::from_millis(100),
        }
    }
}
