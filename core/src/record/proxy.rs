//! Proxy access on the proxy's node: the proxy grant it holds, the access requests it received
//! for the patient, and its answers, each journalled for the patient's audit in the same
//! commit. The rules are in [`crate::grant::proxy`].

use super::inbox::TakeError;
use super::layout::local_key;
use super::{AuthItem, LedgerItem, OpenRecord, RecordError, Result, Vault};
use crate::audit::{Action, Authority, SignedEvent};
use crate::grant::request::AccessRequest;
use crate::grant::{self, Access, Grant, GrantId, Purpose, proxy};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keys::Identity;
use crate::ledger::{Answer, DecisionItem, IssuedGrant, Key, Kind, ProxyRequestItem, RequestItem};
use crate::store::{Batch, Store};
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::BTreeSet;

/// The most requests a proxy keeps per record (a stranger handing it requests cannot grow
/// its store without bound).
pub const MAX_PROXY_REQUESTS: usize = 1_000;

impl<S: Store> Vault<S> {
    /// The proxy grant `holder` holds for `record` that lets it answer requests: valid at
    /// `now`, not known to be revoked. The newest-ending one if several.
    pub fn proxy_grant(
        &self,
        record: &RecordId,
        holder: &PeerKey,
        now: Timestamp,
    ) -> Result<Option<Grant>> {
        let revoked: Vec<_> = self
            .learnt_revocations(record)
            .into_iter()
            .map(|r| r.grant)
            .collect();
        Ok(self
            .held_chains(record)?
            .into_iter()
            .filter(|c| c.len() == 1 && proxy::answers_requests(&c[0]))
            .filter(|c| {
                grant::verify_chain(c, &Access::any(*holder), now, &|g| revoked.contains(g)).is_ok()
            })
            .filter_map(|mut c| c.pop())
            .max_by_key(|g| g.body().expires))
    }

    /// The records `holder` is the proxy of, with the power to answer requests, at `now`.
    pub fn proxied_records(&self, holder: &PeerKey, now: Timestamp) -> Result<Vec<RecordId>> {
        let mut out: Vec<RecordId> = Vec::new();
        for (record, _, chain) in self.all_held_chains()? {
            if chain.len() == 1
                && chain[0].body().purpose == Purpose::Proxy
                && !out.contains(&record)
                && self.proxy_grant(&record, holder, now)?.is_some()
            {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Takes in an access request (its text form) for a record `holder` is the proxy of,
    /// with the power to answer: it must verify, still be open, and be new. Returns its id.
    pub fn receive_proxy_request(
        &self,
        token: &str,
        holder: &PeerKey,
        now: Timestamp,
    ) -> std::result::Result<(String, AccessRequest), TakeError> {
        let req =
            AccessRequest::from_token(token).map_err(|e| TakeError::Request(e.to_string()))?;
        let record = req.body().record;
        if self.proxy_grant(&record, holder, now)?.is_none() {
            return Err(TakeError::Refused(
                "this request is for another record, whose patient has not made you their proxy \
                 with the power to answer requests",
            ));
        }
        req.check_open(now)
            .map_err(|e| TakeError::Request(e.to_string()))?;
        let rid = req.short_id('q');
        let key = Key::ProxyRequest(&record, &rid).text();
        if self.get_local(&key)?.is_some() {
            return Err(TakeError::Refused(
                "this request was already received (a replay changes nothing)",
            ));
        }
        if self.count_local(&proxy_prefix(&record))? >= MAX_PROXY_REQUESTS {
            return Err(TakeError::Refused(
                "too many requests kept for this record; answer some first",
            ));
        }
        let item = ProxyRequestItem {
            token: token.to_string(),
            received_at: now,
            decision: None,
        };
        self.put_local(&key, item.to_json().as_bytes())?;
        Ok((rid, req))
    }

    /// Every request received as a proxy: record, id, and the item (unreadable ones skipped).
    pub fn proxy_requests(&self) -> Result<Vec<(RecordId, String, ProxyRequestItem)>> {
        Ok(self
            .local_items(Kind::ProxyRequest.prefix())?
            .into_iter()
            .filter_map(|(k, v)| {
                let (record, rid) = Kind::ProxyRequest.id_in(&k)?.split_once('/')?;
                let item = ProxyRequestItem::from_json(std::str::from_utf8(&v).ok()?).ok()?;
                Some((record.parse().ok()?, rid.to_string(), item))
            })
            .collect())
    }

    /// Records the proxy's answer to request `rid`, given under the proxy grant `under` (for
    /// its record), and journals it for the patient's audit (an [`Action::Approved`] carrying
    /// `issued`, the one-link token of the grant given, or an [`Action::Denied`]), in one
    /// durable commit. Refused when the request is unknown or already answered.
    pub fn answer_proxy_request(
        &self,
        identity: &Identity,
        rid: &str,
        decision: DecisionItem,
        issued: Option<String>,
        under: &Grant,
        now: Timestamp,
    ) -> Result<()> {
        let record = &under.body().record;
        let key = Key::ProxyRequest(record, rid).text();
        let mut item = self
            .get_local(&key)?
            .and_then(|b| ProxyRequestItem::from_json(std::str::from_utf8(&b).ok()?).ok())
            .ok_or(RecordError::Invalid("no such request"))?;
        if item.decision.is_some() {
            return Err(RecordError::Invalid("this request was already answered"));
        }
        let authority = Some(Authority {
            grant: under.id(),
            purpose: under.body().purpose,
        });
        let action = match issued {
            Some(grant) => Action::Approved {
                request: item.token.clone(),
                grant,
                authority,
            },
            None => Action::Denied {
                request: item.token.clone(),
                reason: decision.reason.clone(),
                authority,
            },
        };
        item.decision = Some(decision);
        let mut batch = Batch::new();
        self.journal_into(&mut batch, identity, vec![(*record, action)], now)?;
        batch.put(local_key(&key), item.to_json().into_bytes());
        self.store.commit(batch)?;
        Ok(())
    }
}

/// The prefix of the requests kept for `record` as its proxy.
fn proxy_prefix(record: &RecordId) -> String {
    format!("{}{record}/", Kind::ProxyRequest.prefix())
}

impl<S: Store> OpenRecord<'_, S> {
    /// The proxy grants the patient issued that let their holder answer requests (what a
    /// proxy's answer must be founded on).
    pub(super) fn proxy_grants(&self) -> Vec<Grant> {
        self.recorded_chains()
            .into_iter()
            .filter_map(|c| c.into_iter().next())
            .filter(proxy::answers_requests)
            .collect()
    }

    /// On a patient's device: enters the founded proxy answers among `events` (approvals and
    /// denials, checked with [`proxy::answer_founded`] against the proxy grants recorded) into
    /// the patient's ledger, where a request the patient answered themselves would be: the
    /// request, the decision marked as the proxy's, and for an approval the grant given (the
    /// chain from the proxy grant, also recorded in the auth document). What the ledger already holds is left as it is. Returns how
    /// many answers were entered.
    pub(super) fn take_proxy_answers(
        &mut self,
        events: &[SignedEvent],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        if !self.keys.contains_key(&SectionId::LEDGER) && !self.holds_root() {
            return Ok(0);
        }
        let proxies = self.proxy_grants();
        let issued: BTreeSet<GrantId> = self
            .issued_grants()
            .into_iter()
            .filter_map(|(g, _)| g.parse().ok())
            .collect();
        let mut requests: Vec<(String, RequestItem)> = Vec::new();
        let mut decisions: Vec<(String, DecisionItem)> = Vec::new();
        let mut grants: Vec<(GrantId, IssuedGrant)> = Vec::new();
        for ev in events {
            let e = ev.event();
            if !proxy::answer_founded(&proxies, &e.writer, &e.action) {
                continue;
            }
            let (token, leaf, reason) = match &e.action {
                Action::Approved { request, grant, .. } => {
                    (request, grant::chain_from_token(grant).ok(), None)
                }
                Action::Denied {
                    request, reason, ..
                } => (request, None, reason.clone()),
                _ => continue,
            };
            let Ok(req) = AccessRequest::from_token(token) else {
                continue;
            };
            let rid = req.short_id('q');
            let leaf = leaf.and_then(|mut c| c.pop());
            // The grant is entered even when the patient answered the request themselves (a
            // proxy's approval of a request the patient denied is still a grant in force, and
            // the patient must see it to revoke it).
            if let Some(leaf) = &leaf
                && !issued.contains(&leaf.id())
                && !grants.iter().any(|(g, _)| *g == leaf.id())
                && let Some(p) = proxies.iter().find(|p| Some(p.id()) == leaf.body().parent)
            {
                grants.push((
                    leaf.id(),
                    IssuedGrant {
                        token: grant::chain_to_token(&[p.clone(), leaf.clone()]),
                        issued_at: e.at.min(now),
                        audience: leaf.body().audience,
                        audience_name: Some(req.body().requester.name.clone()),
                        request: Some(rid.clone()),
                        keys_included: false,
                    },
                ));
            }
            if self.decision(&rid).is_some() || decisions.iter().any(|(r, _)| *r == rid) {
                continue;
            }
            if !self.has_request(&rid) {
                requests.push((
                    rid.clone(),
                    RequestItem {
                        token: token.clone(),
                        received_at: e.at.min(now),
                    },
                ));
            }
            decisions.push((
                rid,
                DecisionItem {
                    decision: if leaf.is_some() {
                        Answer::Approved
                    } else {
                        Answer::Denied
                    },
                    at: e.at.min(now),
                    grant: leaf.map(|l| l.id().to_string()),
                    reason,
                    by: Some(e.writer),
                },
            ));
        }
        if decisions.is_empty() && grants.is_empty() {
            return Ok(0);
        }
        // The grants are recorded in the auth document too, like the patient's own, so that
        // every holder can check them and the record's relays serve them.
        let recorded: BTreeSet<GrantId> = self
            .recorded_chains()
            .iter()
            .filter_map(|c| c.last().map(Grant::id))
            .collect();
        let chains: Vec<AuthItem> = grants
            .iter()
            .filter(|(g, _)| !recorded.contains(g))
            .filter_map(|(_, item)| grant::chain_from_token(&item.token).ok())
            .map(AuthItem::Grant)
            .collect();
        if !chains.is_empty() {
            self.put_auth(chains, now, rng)?;
        }
        let mut items: Vec<LedgerItem<'_>> = Vec::new();
        items.extend(requests.iter().map(|(r, i)| LedgerItem::Request(r, i)));
        items.extend(grants.iter().map(|(g, i)| LedgerItem::Grant(g, i)));
        items.extend(decisions.iter().map(|(r, d)| LedgerItem::Decision(r, d)));
        self.put_ledger(&items, now, rng)?;
        Ok(decisions.len())
    }
}
