//! Proxy access: a carer, parent or attorney the patient chose to act for them.
//!
//! A proxy holds a root grant of purpose [`Purpose::Proxy`]: it reads the sections the grant
//! names. When the patient also let it answer requests (the grant's depth is 1), the proxy
//! approves an access request by delegating its own grant to the requester ([`approve`]),
//! narrowed to what was asked and to what the proxy holds, for the purpose the requester asked;
//! it can never make another proxy, and a revocation of the proxy grant ends every grant it
//! gave. The patient's node serves such a chain like any other and wraps the keys to the
//! requester.
//!
//! Every answer a proxy gives is an event of its audit journal ([`crate::audit::Action::Approved`],
//! [`crate::audit::Action::Denied`]) carrying the signed request and the grant issued, which
//! reaches the patient's audit at the proxy's next sync. The patient's node checks each such
//! event against the proxy grants it recorded ([`answer_founded`]) before it shows one.

use super::request::AccessRequest;
use super::{
    Access, Grant, GrantSpec, Purpose, Refusal, Scope, chain_from_token, chain_to_token,
    verify_chain,
};
use crate::audit::Action;
use crate::ids::PeerKey;
use crate::keys::Identity;
use crate::time::Timestamp;
use rand_core::CryptoRng;

/// Whether `grant` makes its audience the patient's proxy with the power to answer requests.
pub fn answers_requests(grant: &Grant) -> bool {
    grant.body().purpose == Purpose::Proxy && grant.body().depth >= 1
}

/// What a proxy's approval grants, and what of the request it could not.
#[derive(Clone, Debug)]
pub struct Approval {
    /// The grant issued to the requester, as the chain from the patient (proxy grant, then it).
    pub chain: Vec<Grant>,
    /// Scopes asked for that the proxy's own grant does not cover (not granted).
    pub not_granted: Vec<Scope>,
}

/// A proxy (`holder`, the audience of `proxy`) approves `request`: the sections asked (or
/// `narrower`, each within what was asked), as far as the proxy's own grant covers them, for
/// at most `duration_ms` from `now` (and never past the proxy grant's end).
pub fn approve(
    proxy: &Grant,
    holder: &Identity,
    request: &AccessRequest,
    narrower: Option<&[Scope]>,
    duration_ms: i64,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Approval, Refusal> {
    if !answers_requests(proxy) {
        return Err(Refusal::Invalid(
            "your grant does not let you answer requests for this patient",
        ));
    }
    let b = request.body();
    if b.record != proxy.body().record {
        return Err(Refusal::WrongRecord);
    }
    if b.purpose == Purpose::Proxy {
        return Err(Refusal::Invalid(
            "only the patient can make someone their proxy",
        ));
    }
    let asked: &[Scope] = narrower.unwrap_or(&b.scopes);
    // Each scope asked, as far as the proxy's grant covers it: an ability the proxy holds on
    // the same pattern, or a narrower pattern the proxy holds.
    let mut scopes: Vec<Scope> = Vec::new();
    let mut not_granted = Vec::new();
    for s in asked {
        let held: Vec<Scope> = proxy
            .body()
            .scopes
            .iter()
            .filter_map(|p| {
                let mut within = *s;
                within.ability = s.ability.min(p.ability);
                if p.covers(&within) {
                    return Some(within);
                }
                let mut narrower = *p;
                narrower.ability = s.ability.min(p.ability);
                s.covers(&narrower).then_some(narrower)
            })
            .collect();
        if held.is_empty() {
            not_granted.push(*s);
        }
        scopes.extend(held);
    }
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Refusal::Invalid(
            "your proxy grant covers none of the sections asked for",
        ));
    }
    let expires = now
        .saturating_add_millis(duration_ms)
        .min(proxy.body().expires);
    let spec = GrantSpec {
        audience: b.requester.peer,
        scopes,
        not_before: now.max(proxy.body().not_before),
        expires,
        depth: 0,
        purpose: b.purpose,
        addresses: proxy.body().addresses.clone(),
    };
    let child = Grant::delegate(proxy, holder, spec, rng)?;
    let chain = vec![proxy.clone(), child];
    verify_chain(&chain, &Access::any(b.requester.peer), now, &|_| false)?;
    Ok(Approval { chain, not_granted })
}

/// Whether a proxy's answer (`action`, an [`Action::Approved`] or [`Action::Denied`] signed by
/// `writer`) is founded on one of `proxy_grants` (the root grants the patient issued): the writer
/// is the audience of a grant that [`answers_requests`], the request is for that grant's record,
/// and an approval's grant is a delegation of that grant to the requester. Revocation is not
/// judged here: an answer given before it stays a fact of the record's history.
pub fn answer_founded<'g>(
    proxy_grants: impl IntoIterator<Item = &'g Grant>,
    writer: &PeerKey,
    action: &Action,
) -> bool {
    let (request, grant) = match action {
        Action::Approved { request, grant, .. } => (request, Some(grant)),
        Action::Denied { request, .. } => (request, None),
        _ => return false,
    };
    let Ok(req) = AccessRequest::from_token(request) else {
        return false;
    };
    let leaf = match grant.map(|g| chain_from_token(g)) {
        None => None,
        Some(Ok(mut c)) if c.len() == 1 => c.pop(),
        Some(_) => return false,
    };
    proxy_grants.into_iter().any(|p| {
        if p.body().audience != *writer
            || !answers_requests(p)
            || p.body().record != req.body().record
        {
            return false;
        }
        let Some(leaf) = &leaf else { return true };
        if leaf.body().audience != req.body().requester.peer {
            return false;
        }
        let chain = [p.clone(), leaf.clone()];
        verify_chain(
            &chain,
            &Access::any(leaf.body().audience),
            leaf.body().not_before,
            &|_| false,
        )
        .is_ok()
    })
}

/// The one-link token of the grant a proxy issued (what its audit event carries: the patient's
/// node holds the proxy grant itself).
pub fn issued_token(approval: &Approval) -> String {
    chain_to_token(&approval.chain[approval.chain.len() - 1..])
}
