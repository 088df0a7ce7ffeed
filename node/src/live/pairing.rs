//! The root holder's pairing slot as the live node holds it: the sans-I/O slot
//! ([`hearth_sync::pairing::Pairing`]) behind a mutex shared by the command that opened it and
//! the driver that answers the new device, with this node's clock and random generator.

use super::Shared;
use super::jobs::os_rng;
use hearth_core::ids::PeerKey;
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use hearth_sync::pairing::{self, LinkOutcome, OpenError, Pairing, Step};
use hearth_sync::protocol::LinkMessage;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The node's device-pairing slot (one at a time: a new code replaces an open one).
#[derive(Clone, Default, Debug)]
pub struct PairingSlot(Arc<Mutex<Pairing>>);

impl PairingSlot {
    fn lock(&self) -> MutexGuard<'_, Pairing> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a slot for `ttl` from `wall` (now, by the wall clock) and returns its code, for
    /// the root device `peer` reachable at `addrs`.
    pub fn open(
        &self,
        peer: PeerKey,
        addrs: &[String],
        ttl: Duration,
        wall: Timestamp,
    ) -> Result<String, OpenError> {
        self.lock()
            .open(peer, addrs, ttl, wall, Instant::now(), &mut os_rng())
    }

    /// How the slot ended, if it has (an open slot past its time counts as expired).
    pub fn outcome(&self) -> Option<LinkOutcome> {
        self.lock().outcome(Instant::now())
    }

    /// Closes any open slot.
    pub fn close(&self) {
        self.lock().close()
    }

    /// Answers one link message from `peer` (authenticated by the transport), certifying the
    /// device in the store when its join opens.
    pub(super) fn answer<S: Store>(
        &self,
        sh: &Shared<S>,
        peer: PeerKey,
        msg: LinkMessage,
        wall: Timestamp,
    ) -> LinkMessage {
        let me = sh.identity.peer();
        let mut rng = os_rng();
        let mut slot = self.lock();
        let answer = match slot.handle(me, peer, msg, Instant::now(), &mut rng) {
            Step::Answer(a) => a,
            Step::Certify(req) => {
                let certified = pairing::certify(&sh.vault, &sh.identity, &req, wall, &mut rng);
                slot.certified(me, peer, certified, &mut rng)
            }
        };
        match &answer {
            LinkMessage::Welcome { .. } => {
                tracing::info!(device = %peer, "linked a new device to the record");
            }
            LinkMessage::Refused { reason } => {
                tracing::warn!(%peer, "device link attempt refused: {reason}");
            }
            _ => {}
        }
        answer
    }
}
