//! Typed queries and writes of the consent ledger ([`crate::ledger`]) over an open record and a
//! vault: the one place that reads or writes ledger items by key.

use super::{OpenRecord, RecordError, Result, Vault};
use crate::grant::{self, Grant, GrantId, Revocation};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::ledger::{
    self, DecisionItem, IssuedGrant, Key, Kind, PeerAddrs, RecordedGrant, RelayItem, RequestItem,
    RevokeItem, TrustItem,
};
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most held grant chains read for one record (a hostile store or peer cannot make a node
/// present an unbounded list).
pub const MAX_HELD_CHAINS: usize = 64;

/// An item for the auth document.
pub enum AuthItem {
    /// A grant the patient issued.
    Grant(Vec<Grant>),
    /// A revocation, signed by the record root.
    Revoke(Revocation),
    /// A relay that keeps the record, and where to reach it.
    Relay(PeerKey, RelayItem),
}

/// An item for the patient's private ledger section.
pub enum LedgerItem<'a> {
    /// The details of an issued grant.
    Grant(&'a GrantId, &'a IssuedGrant),
    /// An access request received.
    Request(&'a str, &'a RequestItem),
    /// The answer to a request.
    Decision(&'a str, &'a DecisionItem),
    /// A trusted organisation.
    Trust(&'a PeerKey, &'a TrustItem),
}

/// Writes of known peers' addresses in this process ([`Vault::peers_written`]).
static PEERS_WRITTEN: AtomicU64 = AtomicU64::new(0);

impl LedgerItem<'_> {
    fn pair(&self) -> (String, String) {
        match self {
            LedgerItem::Grant(g, v) => (Key::IssuedGrant(g).text(), v.to_json()),
            LedgerItem::Request(r, v) => (Key::Request(r).text(), v.to_json()),
            LedgerItem::Decision(r, v) => (Key::Decision(r).text(), v.to_json()),
            LedgerItem::Trust(o, v) => (Key::Trust(o).text(), v.to_json()),
        }
    }
}

/// The items of `kind` among `items`, by the id after the prefix.
fn by_id(kind: Kind, items: Vec<(String, String)>) -> impl Iterator<Item = (String, String)> {
    items
        .into_iter()
        .filter_map(move |(k, v)| Some((kind.id_in(&k)?.to_string(), v)))
}

impl<S: Store> OpenRecord<'_, S> {
    /// Writes items into the auth document as one signed change (owner only; see
    /// [`OpenRecord::put_auth_items`]).
    pub fn put_auth(
        &mut self,
        items: Vec<AuthItem>,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        let pairs = items
            .iter()
            .map(|i| match i {
                AuthItem::Grant(chain) => {
                    let leaf = chain
                        .last()
                        .ok_or(RecordError::Invalid("an empty grant chain"))?;
                    Ok((
                        Key::RecordedGrant(&leaf.id()).text(),
                        RecordedGrant::new(chain).to_json(),
                    ))
                }
                AuthItem::Revoke(r) => {
                    Ok((Key::Revoke(&r.grant).text(), RevokeItem::new(r).to_json()))
                }
                AuthItem::Relay(p, item) => Ok((Key::Relay(p).text(), item.to_json())),
            })
            .collect::<Result<Vec<_>>>()?;
        self.put_auth_items(pairs, now, rng)
    }

    /// Writes items into the private ledger as one signed change (owner only; see
    /// [`OpenRecord::put_ledger_items`]).
    pub fn put_ledger(
        &mut self,
        items: &[LedgerItem<'_>],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        self.put_ledger_items(items.iter().map(LedgerItem::pair).collect(), now, rng)
    }

    /// The grants revoked in the auth document.
    pub fn revoked_grants(&self) -> Vec<GrantId> {
        by_id(Kind::Revoke, self.auth_items(Kind::Revoke.prefix()))
            .filter_map(|(id, _)| id.parse().ok())
            .collect()
    }

    /// Revokes `grant` (one the patient issued for this record; device holding the record
    /// root only). The record root signs the revocation, which is written to the auth
    /// document first, so every node that syncs the auth document refuses the grant from
    /// then on; then every section the grant let its holder read moves, with the auth
    /// document, to a new key epoch that the holder is never sent ([`OpenRecord::rotate_keys`]).
    /// Returns how many sections moved (none when it could read none).
    pub fn revoke(
        &mut self,
        grant: &Grant,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        self.root_for("only the device holding the record root key revokes grants")?;
        if grant.body().record != self.id {
            return Err(RecordError::Invalid("a grant for another record"));
        }
        let signed = Revocation::sign(self.identity, grant.id(), now)
            .map_err(|_| RecordError::NotPermitted("only the record's owner signs revocations"))?;
        self.put_auth(vec![AuthItem::Revoke(signed)], now, rng)?;
        let mut readable: Vec<SectionId> = self
            .directory()
            .iter()
            .filter(|(_, n)| {
                grant
                    .body()
                    .scopes
                    .iter()
                    .any(|s| s.allows(n, grant::Ability::Read))
            })
            .map(|(s, _)| *s)
            .collect();
        if readable.is_empty() {
            return Ok(0);
        }
        readable.push(SectionId::AUTH);
        self.rotate_keys(&readable, now, rng)
    }

    /// Every revocation in the auth document with when it was made (`None` when the item's
    /// time cannot be read).
    pub fn revoked_at(&self) -> Vec<(GrantId, Option<Timestamp>)> {
        by_id(Kind::Revoke, self.auth_items(Kind::Revoke.prefix()))
            .filter_map(|(id, v)| {
                Some((
                    id.parse().ok()?,
                    RevokeItem::from_json(&v).ok().map(|r| r.at),
                ))
            })
            .collect()
    }

    /// The revocations in the auth document, by grant (unreadable items left out).
    pub fn revocations(&self) -> BTreeMap<GrantId, RevokeItem> {
        by_id(Kind::Revoke, self.auth_items(Kind::Revoke.prefix()))
            .filter_map(|(id, v)| Some((id.parse().ok()?, RevokeItem::from_json(&v).ok()?)))
            .collect()
    }

    /// The record's relays at `now`: each relay item whose peer also holds a recorded,
    /// unrevoked `relay` grant that verifies at `now` (an item alone gives a relay nothing).
    pub fn relays(&self, now: Timestamp) -> Vec<(PeerKey, RelayItem)> {
        let revoked = self.revoked_grants();
        let granted: Vec<PeerKey> = self
            .recorded_chains()
            .iter()
            .filter_map(|chain| {
                let leaf = chain.last()?;
                let access = grant::Access::any(leaf.body().audience);
                grant::verify_chain(chain, &access, now, &|g| revoked.contains(g)).ok()?;
                leaf.body()
                    .scopes
                    .iter()
                    .all(|s| s.ability == grant::Ability::Relay)
                    .then_some(leaf.body().audience)
            })
            .collect();
        by_id(Kind::Relay, self.auth_items(Kind::Relay.prefix()))
            .filter_map(|(id, v)| {
                let peer: PeerKey = id.parse().ok()?;
                let item = RelayItem::from_json(&v).ok()?;
                granted.contains(&peer).then_some((peer, item))
            })
            .collect()
    }

    /// The grant chains recorded in the auth document (undecodable ones left out).
    pub fn recorded_chains(&self) -> Vec<Vec<Grant>> {
        self.auth_facts().recorded_chains.clone()
    }

    /// [`OpenRecord::recorded_chains`], read from the auth document.
    pub(super) fn read_recorded_chains(&self) -> Vec<Vec<Grant>> {
        by_id(
            Kind::RecordedGrant,
            self.auth_items(Kind::RecordedGrant.prefix()),
        )
        .filter_map(|(_, v)| RecordedGrant::chain_in(&v))
        .collect()
    }

    /// The grants the patient issued, with their details, by id (unreadable items left out).
    pub fn issued_grants(&mut self) -> Vec<(String, IssuedGrant)> {
        by_id(
            Kind::IssuedGrant,
            self.ledger_items(Kind::IssuedGrant.prefix()),
        )
        .filter_map(|(id, v)| Some((id, IssuedGrant::from_json(&v).ok()?)))
        .collect()
    }

    /// The access requests the patient received, by id, with the raw item for requests whose
    /// value does not decode (the caller decides whether that is an integrity failure).
    pub fn request_items(&mut self) -> Vec<(String, Option<RequestItem>)> {
        by_id(Kind::Request, self.ledger_items(Kind::Request.prefix()))
            .map(|(id, v)| (id, RequestItem::from_json(&v).ok()))
            .collect()
    }

    /// The access requests the patient received that decode, by id.
    pub fn requests(&mut self) -> Vec<(String, RequestItem)> {
        self.request_items()
            .into_iter()
            .filter_map(|(id, v)| Some((id, v?)))
            .collect()
    }

    /// Whether a request with this exact id was recorded.
    pub fn has_request(&mut self, id: &str) -> bool {
        !self.ledger_items(&Key::Request(id).text()).is_empty()
    }

    /// The decisions on requests, by request id.
    pub fn decisions(&mut self) -> Vec<(String, DecisionItem)> {
        by_id(Kind::Decision, self.ledger_items(Kind::Decision.prefix()))
            .filter_map(|(id, v)| Some((id, DecisionItem::from_json(&v).ok()?)))
            .collect()
    }

    /// The decision on request `id`, if there is one (an unreadable one counts as made).
    pub fn decision(&mut self, id: &str) -> Option<Option<DecisionItem>> {
        let key = Key::Decision(id).text();
        self.ledger_items(&key)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| DecisionItem::from_json(&v).ok())
    }

    /// The organisations the patient trusts, with when and by what name (`None` for an item
    /// whose value does not decode: the key alone is the trust).
    pub fn trust_items(&mut self) -> Vec<(PeerKey, Option<TrustItem>)> {
        by_id(Kind::Trust, self.ledger_items(Kind::Trust.prefix()))
            .filter_map(|(id, v)| Some((id.parse().ok()?, TrustItem::from_json(&v).ok())))
            .collect()
    }

    /// Whether the patient trusts `org`.
    pub fn trusts(&mut self, org: &PeerKey) -> bool {
        !self.ledger_items(&Key::Trust(org).text()).is_empty()
    }

    /// The organisations the patient trusts (an item that does not decode still counts: the
    /// key is the trust).
    pub fn trusted_orgs(&mut self) -> Vec<PeerKey> {
        by_id(Kind::Trust, self.ledger_items(Kind::Trust.prefix()))
            .filter_map(|(id, _)| id.parse().ok())
            .collect()
    }
}

impl<S: Store> Vault<S> {
    /// Keeps an accepted grant chain for `record` (keyed by its leaf).
    pub fn hold_grant(&self, record: &RecordId, chain: &[Grant]) -> Result<()> {
        let Some(leaf) = chain.last() else {
            return Ok(());
        };
        self.put_local(
            &Key::HeldGrant(record, &leaf.id()).text(),
            &grant::chain_to_bytes(chain),
        )
    }

    /// Whether this node holds the grant `id` for `record`.
    pub fn holds_grant(&self, record: &RecordId, id: &GrantId) -> Result<bool> {
        Ok(self
            .get_local(&Key::HeldGrant(record, id).text())?
            .is_some())
    }

    /// The encoded grant chains this node holds for `record`, at most [`MAX_HELD_CHAINS`].
    pub fn held_chain_bytes(&self, record: &RecordId) -> Result<Vec<Vec<u8>>> {
        let mut out: Vec<Vec<u8>> = self
            .local_items(&ledger::held_prefix(record))?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        out.truncate(MAX_HELD_CHAINS);
        Ok(out)
    }

    /// The grant chains this node holds for `record` that decode.
    pub fn held_chains(&self, record: &RecordId) -> Result<Vec<Vec<Grant>>> {
        Ok(self
            .held_chain_bytes(record)?
            .iter()
            .filter_map(|b| grant::chain_from_bytes(b).ok())
            .collect())
    }

    /// Every grant chain this node holds, with the record and grant its key names.
    pub fn all_held_chains(&self) -> Result<Vec<(RecordId, GrantId, Vec<Grant>)>> {
        Ok(self
            .local_items(Kind::HeldGrant.prefix())?
            .into_iter()
            .filter_map(|(k, v)| {
                let (r, g) = ledger::record_and_grant(Kind::HeldGrant, &k)?;
                Some((r, g, grant::chain_from_bytes(&v).ok()?))
            })
            .collect())
    }

    /// Keeps a revocation of a held grant, learnt from the patient's node (the caller has
    /// checked it names a grant this node holds).
    pub fn learn_revocation(&self, r: &Revocation) -> Result<()> {
        self.put_local(
            &Key::LearntRevocation(&r.record, &r.grant).text(),
            &r.to_bytes(),
        )
    }

    /// The revocations of grants of `record` this node learnt, each re-verified against the
    /// record root: a grantee's view of which of its grants were revoked.
    pub fn learnt_revocations(&self, record: &RecordId) -> Vec<Revocation> {
        self.local_items(&ledger::learnt_prefix(record))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| Revocation::from_bytes(&v))
            .filter(|r| r.record == *record)
            .collect()
    }

    /// Keeps a credential (by its hash); `false` if it was already kept.
    pub fn keep_credential(&self, hash: &[u8; 32], token: &str) -> Result<bool> {
        let key = Key::Credential(hash).text();
        if self.get_local(&key)?.is_some() {
            return Ok(false);
        }
        self.put_local(&key, token.as_bytes())?;
        Ok(true)
    }

    /// The credential tokens this node keeps.
    pub fn credential_tokens(&self) -> Result<Vec<String>> {
        Ok(self
            .local_items(Kind::Credential.prefix())?
            .into_iter()
            .filter_map(|(_, v)| String::from_utf8(v).ok())
            .collect())
    }

    /// The known addresses of `peer`.
    pub fn peer_addrs(&self, peer: &PeerKey) -> Result<PeerAddrs> {
        Ok(self
            .get_local(&Key::Peer(peer).text())?
            .map(|v| PeerAddrs::from_bytes(&v))
            .unwrap_or_default())
    }

    /// Replaces the known addresses of `peer`.
    pub fn set_peer_addrs(&self, peer: &PeerKey, addrs: &PeerAddrs) -> Result<()> {
        self.put_local(&Key::Peer(peer).text(), &addrs.to_bytes())?;
        PEERS_WRITTEN.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// How many times [`Vault::set_peer_addrs`] wrote in this process, through any vault (a
    /// daemon's commands open vaults of their own over its store): a caller that read
    /// [`Vault::known_peers`] at one count need not read them again while it stays the same.
    /// Other stores' writes in the same process move it too, which costs a needless read,
    /// never a missed one.
    pub fn peers_written(&self) -> u64 {
        PEERS_WRITTEN.load(Ordering::SeqCst)
    }

    /// The addresses this node's daemon last listened on.
    pub fn listen_addrs(&self) -> Result<PeerAddrs> {
        Ok(self
            .get_local(&Key::Listen.text())?
            .map(|v| PeerAddrs::from_bytes(&v))
            .unwrap_or_default())
    }

    /// Remembers the addresses this node's daemon listens on.
    pub fn set_listen_addrs(&self, addrs: &PeerAddrs) -> Result<()> {
        self.put_local(&Key::Listen.text(), &addrs.to_bytes())
    }

    /// Every known peer with its addresses.
    pub fn known_peers(&self) -> Result<Vec<(PeerKey, PeerAddrs)>> {
        Ok(self
            .local_items(Kind::Peer.prefix())?
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    Kind::Peer.id_in(&k)?.parse().ok()?,
                    PeerAddrs::from_bytes(&v),
                ))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::test_utils::{TEST_NOW, TestRng, patient_record};

    #[test]
    fn an_empty_grant_chain_is_refused_and_nothing_is_written() {
        let vault = Vault::new(MemoryStore::new());
        let mut rng = TestRng::new(3);
        let (patient, rid) = patient_record(&vault, "Edith", TEST_NOW, &mut rng);
        let mut rec = vault.open_record(&patient, &rid).unwrap();
        let before = rec.version_vectors().unwrap();
        let err = rec
            .put_auth(vec![AuthItem::Grant(Vec::new())], TEST_NOW, &mut rng)
            .unwrap_err();
        assert!(
            matches!(err, crate::record::RecordError::Invalid(_)),
            "{err}"
        );
        assert!(rec.recorded_chains().is_empty());
        assert_eq!(rec.version_vectors().unwrap(), before);
    }
}
