//! Emergency access while every one of the patient's devices is offline: through the record's
//! relays, with the keys the patient escrowed to the arranged organisation.
//!
//! The professional's node, holding a use its organisation has logged:
//!
//! 1. has the relay prove it keeps the record for its patient (the patient's `relay` grant to
//!    it; anyone can announce a record on the relays' network), then asks it for the record,
//!    presenting the use
//!    ([`hearth_sync::session::Local::relay_start`] attaches it). The relay checks it against
//!    the arrangement on the patient's signed access list, at its own clock, and answers with
//!    the arranged sections' ciphertext and the escrow wraps addressed to the organisation,
//!    writing an emergency receipt that reaches the patient's devices;
//! 2. has the organisation release the keys inside those wraps to its own agreement key
//!    ([`crate::org_log::release`]: the organisation checks the use again and logs it);
//! 3. keeps the keys ([`Vault::keep_escrowed_keys`]) and stores what the relay sent by its
//!    usual rules ([`hearth_sync::session::Local::on_relay_response`]), asking again while the
//!    relay has more.

use crate::fail::{Failure, code};
use crate::org_log;
use crate::os::os_rng;
use crate::sled_store::SledStore;
use hearth_core::grant::emergency::EmergencyUse;
use hearth_core::grant::request::Credential;
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::ledger::PeerAddrs;
use hearth_core::record::Vault;
use hearth_core::time::Timestamp;
use hearth_sync::session::Local;
use libp2p::Multiaddr;
use std::time::Duration;

/// The most round trips with one relay (each carries up to a message of bundles).
const MAX_ROUNDS: usize = 64;

/// How an attempt through the record's relays ended.
#[derive(Debug)]
pub enum Through {
    /// The record's arranged sections were fetched and their keys released, through `relay`.
    Opened {
        /// The relay.
        relay: PeerKey,
    },
    /// Every relay reached refused the use (no arrangement it holds accepts it).
    Refused,
    /// No relay could be reached, or none held escrowed keys; why, in words.
    Failed(String),
}

/// Everything the attempt needs.
pub struct Attempt<'a> {
    /// This node's identity.
    pub identity: &'a Identity,
    /// Its vault.
    pub vault: &'a Vault<SledStore>,
    /// The record.
    pub record: RecordId,
    /// The use, logged by its organisation and held in the vault.
    pub use_: &'a EmergencyUse,
    /// The organisation's credential for this professional.
    pub credential: &'a Credential,
    /// Where the organisation's node listens.
    pub org_addrs: &'a [Multiaddr],
    /// How long to wait for each answer.
    pub timeout: Duration,
}

impl Attempt<'_> {
    /// Tries `relays` in turn (each with the addresses to dial it at) until one opens the
    /// record.
    pub fn through(&self, relays: &[(PeerKey, Vec<Multiaddr>)], now: Timestamp) -> Through {
        let mut refused = false;
        let mut why: Vec<String> = Vec::new();
        for (relay, addrs) in relays {
            match self.one(*relay, addrs, now) {
                Ok(true) => return Through::Opened { relay: *relay },
                Ok(false) => refused = true,
                Err(f) => why.push(f.message),
            }
        }
        if refused {
            Through::Refused
        } else if why.is_empty() {
            Through::Failed("no relay of the record is known".into())
        } else {
            Through::Failed(why.join("; "))
        }
    }

    /// One relay: `Ok(false)` when it refused the use.
    fn one(&self, relay: PeerKey, addrs: &[Multiaddr], now: Timestamp) -> Result<bool, Failure> {
        let local = Local::new(self.vault, self.identity);
        let mut rng = os_rng();
        let io = |e: hearth_sync::session::SyncError| Failure::new(code::IO, e.to_string());
        let ask = |req| {
            org_log::ask(
                self.identity,
                relay,
                addrs.to_vec(),
                req,
                self.timeout,
                "the record's relay",
            )
        };
        // First the relay proves it keeps the record for its patient: a peer merely
        // announcing it on the relays' network is shown nothing of the use.
        let mut probe = local
            .relay_start(self.record, relay, now, &mut rng)
            .map_err(io)?;
        let first = if probe.claim.is_some() {
            ask(probe)?
        } else {
            probe.proof_wanted = true;
            let proof = ask(probe)?;
            let proved = proof.relay_grant.as_deref().is_some_and(|g| {
                hearth_sync::relay::access::relay_grant_proves(g, &self.record, &relay, now)
            });
            if !proved {
                return Err(Failure::new(
                    code::NOT_FOUND,
                    "a peer that does not keep the record for its patient",
                ));
            }
            let mut req = local
                .relay_start(self.record, relay, now, &mut rng)
                .map_err(io)?;
            req.claim = local.held_claim(&self.record, now);
            ask(req)?
        };
        if first.refused.is_some() {
            return Ok(false);
        }
        if first.wraps.is_empty() {
            return Err(Failure::new(
                code::NOT_FOUND,
                "the relay holds no keys escrowed to your organisation for this record",
            ));
        }
        let released = org_log::release(
            self.identity,
            self.use_.body().org,
            self.org_addrs.to_vec(),
            self.use_,
            self.credential,
            first.wraps.clone(),
            self.timeout,
        )?;
        let kept = self
            .vault
            .keep_escrowed_keys(self.identity, &self.record, &released, now)
            .map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
        if kept == 0 {
            return Err(Failure::new(
                code::INTEGRITY,
                "your organisation released no key that opens",
            ));
        }
        // Later syncs of the record (while the use lasts) go through this relay too.
        let noted = PeerAddrs {
            addrs: addrs
                .iter()
                .take(hearth_core::ledger::MAX_PEER_ADDRS)
                .map(ToString::to_string)
                .collect(),
        };
        local.found_at(&self.record, &relay, &noted).map_err(io)?;
        let mut answer = first;
        for _ in 0..MAX_ROUNDS {
            let (next, _) = local
                .on_relay_response(relay, self.record, answer, now, &mut rng)
                .map_err(io)?;
            let Some(mut next) = next else { break };
            // The relay proved itself: the use goes with every request.
            next.claim = local.held_claim(&self.record, now);
            answer = ask(next)?;
        }
        Ok(true)
    }
}
