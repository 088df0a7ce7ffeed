//! Taking in what others send this node: a grant given to it ([`Vault::accept_grant`]) and an
//! access request for the patient's record ([`OpenRecord::receive_request`]). `hearth accept`,
//! `hearth requests add` and letters collected from a relay's mailbox all come through here.

use super::{OpenRecord, RecordError, Vault};
use crate::grant::request::AccessRequest;
use crate::grant::{self, Access, Grant, GrantId, Refusal, Rights};
use crate::ids::{PeerKey, RecordId};
use crate::keys::Identity;
use crate::ledger::{PeerAddrs, RequestItem};
use crate::record::LedgerItem;
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;

/// Why a grant or a request was not taken in. Messages name no content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    /// Storage or record failure.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The grant does not verify for this node now.
    #[error("{0}")]
    Grant(#[from] Refusal),
    /// The request does not verify, or is closed.
    #[error("request refused: {0}")]
    Request(String),
    /// Not for this node, or already taken (a replay changes nothing).
    #[error("{0}")]
    Refused(&'static str),
}

/// A grant accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The record.
    pub record: RecordId,
    /// The grant (the chain's leaf).
    pub grant: GrantId,
    /// What it allows.
    pub rights: Rights,
    /// Section keys it carried for this node.
    pub wraps: usize,
    /// The addresses the chain carries (the patient node's, and relay hints).
    pub addresses: Vec<String>,
}

impl<S: Store> Vault<S> {
    /// Accepts `chain`, given to `identity`'s node: it must verify for this node's key at
    /// `now` and be new; the section keys it carries for this node are kept, and the record is
    /// registered as a replica.
    pub fn accept_grant(
        &self,
        identity: &Identity,
        chain: &[Grant],
        now: Timestamp,
    ) -> Result<Accepted, TakeError> {
        let leaf = chain.last().ok_or(Refusal::Invalid("empty chain"))?;
        let record = leaf.body().record;
        if identity.record_id() == Some(record) {
            return Err(TakeError::Refused("this grant is for your own record"));
        }
        let rights = grant::verify_chain(chain, &Access::any(identity.peer()), now, &|_| false)?;
        if self.holds_grant(&record, &leaf.id())? {
            return Err(TakeError::Refused(
                "this grant was already accepted (a replay changes nothing)",
            ));
        }
        let wraps: Vec<_> = leaf
            .body()
            .keys
            .iter()
            .filter(|w| w.is_for(identity, &record))
            .cloned()
            .collect();
        self.register_replica(&record, &wraps, now)?;
        self.hold_grant(&record, chain)?;
        Ok(Accepted {
            record,
            grant: leaf.id(),
            rights,
            wraps: wraps.len(),
            addresses: chain
                .iter()
                .flat_map(|g| g.body().addresses.iter().cloned())
                .collect(),
        })
    }

    /// Remembers the peers that `addresses` (multiaddresses ending in `/p2p/PEER`, relay hints
    /// left out) name, each address first in its peer's list; returns how many.
    pub fn remember_addresses(&self, addresses: &[String]) -> Result<usize, RecordError> {
        let mut n = 0;
        for a in addresses.iter().take(grant::MAX_ADDRESSES).rev() {
            if a.starts_with(grant::RELAY_HINT) {
                continue;
            }
            let Some(peer) = a
                .rsplit_once("/p2p/")
                .and_then(|(_, p)| p.parse::<PeerKey>().ok())
            else {
                continue;
            };
            let mut known: PeerAddrs = self.peer_addrs(&peer)?;
            known.put_first(a.clone());
            self.set_peer_addrs(&peer, &known)?;
            n += 1;
        }
        Ok(n)
    }
}

impl<S: Store> OpenRecord<'_, S> {
    /// Takes in an access request for this record (its text form), received at `now`: it must
    /// verify, be for this record, still be open, and be new. Returns its id.
    pub fn receive_request(
        &mut self,
        token: &str,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(String, AccessRequest), TakeError> {
        let req =
            AccessRequest::from_token(token).map_err(|e| TakeError::Request(e.to_string()))?;
        if req.body().record != self.id() {
            return Err(TakeError::Refused("this request is for another record"));
        }
        req.check_open(now)
            .map_err(|e| TakeError::Request(e.to_string()))?;
        let rid = req.short_id('q');
        if self.has_request(&rid) {
            return Err(TakeError::Refused(
                "this request was already received (a replay changes nothing)",
            ));
        }
        let item = RequestItem {
            token: token.to_string(),
            received_at: now,
        };
        self.put_ledger(&[LedgerItem::Request(&rid, &item)], now, rng)?;
        Ok((rid, req))
    }
}
