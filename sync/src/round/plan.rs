//! Which rounds a planning pass starts ([`Plan`]) and the bounds every round keeps
//! ([`RoundConfig`]).

use hearth_core::ids::{PeerKey, RecordId};
use std::collections::BTreeSet;
use std::time::Duration;

/// Bounds and timing of rounds.
#[derive(Clone, Debug)]
pub struct RoundConfig {
    /// Request/response steps in one round before it is abandoned.
    pub max_steps: u32,
    /// Rounds in flight with one peer.
    pub max_rounds_per_peer: usize,
    /// How long a request waits for its answer before the round is abandoned (longer than the
    /// transport's own request timeout, which normally reports first).
    pub step_timeout: Duration,
}

impl Default for RoundConfig {
    fn default() -> Self {
        RoundConfig {
            max_steps: 64,
            max_rounds_per_peer: 8,
            step_timeout: Duration::from_secs(60),
        }
    }
}

/// Who a planning pass (a background round, a catch-up on a new connection, `hearth sync`)
/// syncs with.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// One peer (`sync --with`, a new connection), or else every connected peer.
    pub with: Option<PeerKey>,
    /// The connected peers.
    pub connected: BTreeSet<PeerKey>,
    /// The known peers (`hearth peers add`, a grant's issuer, a linked device's root holder).
    pub known: BTreeSet<PeerKey>,
    /// The user asked (`hearth sync`): known peers too, even unconnected, count as named.
    pub explicit: bool,
}

impl Plan {
    /// The rounds to start: `(peer, record, named)` for each of the planned peers and each
    /// record of `records` (with the peers interested in it here) that the peer is interested
    /// in, or, for a peer the user named or a known peer, a record nobody is known to be
    /// interested in yet (a grant accepted before the first sync). Whether a round then sends
    /// anything is still the session's decision.
    pub fn pairs(
        &self,
        records: impl IntoIterator<Item = (RecordId, BTreeSet<PeerKey>)>,
    ) -> Vec<(PeerKey, RecordId, bool)> {
        let peers: BTreeSet<PeerKey> = match self.with {
            Some(p) => [p].into(),
            None if self.explicit => self.connected.union(&self.known).copied().collect(),
            None => self.connected.clone(),
        };
        let mut pairs = Vec::new();
        for (record, interested) in records {
            for peer in &peers {
                let named = self.explicit || self.known.contains(peer);
                if interested.contains(peer) || (named && interested.is_empty()) {
                    pairs.push((*peer, record, named));
                }
            }
        }
        pairs
    }
}
