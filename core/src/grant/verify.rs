//! The chain verifier: the one pure function that decides what a chain grants its holder, and
//! the attenuation rule every delegation keeps.

use super::{
    Ability, CLOCK_TOLERANCE_MS, Grant, GrantBody, GrantId, MAX_CHAIN, Purpose, Refusal, Scope,
};
use crate::crypto::{self, Domain};
use crate::ids::{PeerKey, RecordId};
use crate::section::SectionName;
use crate::time::Timestamp;
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

/// What is being asked of a chain.
#[derive(Clone, Debug)]
pub struct Access {
    /// Who presents the chain (proven by the session handshake).
    pub holder: PeerKey,
    /// A section and ability sought, or `None` to check only that the chain is valid for the
    /// holder.
    pub want: Option<(SectionName, Ability)>,
}

impl Access {
    /// Access to one section with one ability.
    pub fn section(holder: PeerKey, name: SectionName, ability: Ability) -> Self {
        Access {
            holder,
            want: Some((name, ability)),
        }
    }

    /// Only that the chain is valid for `holder`.
    pub fn any(holder: PeerKey) -> Self {
        Access { holder, want: None }
    }
}

/// What a valid chain grants.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rights {
    /// The record.
    pub record: RecordId,
    /// The holder.
    pub holder: PeerKey,
    /// The holder's scopes (the last link's).
    pub scopes: Vec<Scope>,
    /// Valid from (latest of the chain).
    pub not_before: Timestamp,
    /// Valid until (earliest of the chain).
    pub expires: Timestamp,
    /// Why.
    pub purpose: Purpose,
    /// Further delegations allowed.
    pub depth: u8,
    /// The chain's ids, root first.
    pub chain: Vec<GrantId>,
}

impl Rights {
    /// Whether these rights allow `ability` on `name`.
    pub fn allows(&self, name: &SectionName, ability: Ability) -> bool {
        self.scopes.iter().any(|s| s.allows(name, ability))
    }
}

/// Verifies a chain (root grant first) for `access` at `now`. `revoked` says whether a grant id
/// has been revoked. Pure: same inputs, same answer.
pub fn verify_chain(
    chain: &[Grant],
    access: &Access,
    now: Timestamp,
    revoked: &dyn Fn(&GrantId) -> bool,
) -> Result<Rights, Refusal> {
    let root = chain.first().ok_or(Refusal::Invalid("empty chain"))?;
    if chain.len() > MAX_CHAIN {
        return Err(Refusal::Invalid("chain too long"));
    }
    let record = root.body.record;
    if root.body.issuer.0 != record.0 || root.body.parent.is_some() {
        return Err(Refusal::UnknownIssuer);
    }
    // A window would be a limit nobody enforces: no chain carrying one verifies.
    if let Some(link) = chain.iter().position(|g| g.body.window.is_some()) {
        return Err(Refusal::WindowNotSupported { link });
    }
    // Structure first (cheap), signatures after.
    for (i, pair) in chain.windows(2).enumerate() {
        let (parent, child) = (&pair[0], &pair[1]);
        if child.body.parent != Some(parent.id) {
            return Err(Refusal::BrokenChain { link: i + 1 });
        }
        check_link(&parent.body, &child.body, i + 1)?;
    }
    verify_signatures(chain)?;
    for (i, g) in chain.iter().enumerate() {
        if revoked(&g.id) {
            return Err(Refusal::Revoked { link: i });
        }
    }
    let leaf = &chain[chain.len() - 1];
    let not_before = chain
        .iter()
        .map(|g| g.body.not_before)
        .max()
        .unwrap_or(leaf.body.not_before);
    let expires = chain
        .iter()
        .map(|g| g.body.expires)
        .min()
        .unwrap_or(leaf.body.expires);
    if now.as_millis() > expires.as_millis().saturating_add(CLOCK_TOLERANCE_MS) {
        return Err(Refusal::Expired { at: expires });
    }
    if now.as_millis().saturating_add(CLOCK_TOLERANCE_MS) < not_before.as_millis() {
        return Err(Refusal::NotYetValid { from: not_before });
    }
    if leaf.body.audience != access.holder {
        return Err(Refusal::WrongAudience);
    }
    let rights = Rights {
        record,
        holder: access.holder,
        scopes: leaf.body.scopes.clone(),
        not_before,
        expires,
        purpose: leaf.body.purpose,
        depth: leaf.body.depth,
        chain: chain.iter().map(|g| g.id).collect(),
    };
    if let Some((name, ability)) = &access.want
        && !rights.allows(name, *ability)
    {
        return Err(Refusal::ScopeExceeded {
            link: chain.len(),
            what: "the section or ability asked for is not granted",
        });
    }
    Ok(rights)
}

/// Checks every signature of the chain with one batch verification, after refusing weak keys;
/// on failure, finds the first bad link.
pub(crate) fn verify_signatures(chain: &[Grant]) -> Result<(), Refusal> {
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(chain.len());
    let mut sigs: Vec<[u8; 64]> = Vec::with_capacity(chain.len());
    for (i, g) in chain.iter().enumerate() {
        let key = g
            .body
            .issuer
            .verifying_key()
            .map_err(|_| Refusal::BadSignature { link: i })?;
        if crypto::is_small_order(g.body.issuer.as_bytes()) {
            return Err(Refusal::BadSignature { link: i });
        }
        let sig: [u8; 64] = g
            .envelope
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| Refusal::BadSignature { link: i })?;
        keys.push(key);
        sigs.push(sig);
    }
    let bodies: Vec<[&[u8]; 1]> = chain.iter().map(|g| [g.envelope.body.as_slice()]).collect();
    let items: Vec<crypto::Signed<'_>> = keys
        .iter()
        .zip(&bodies)
        .zip(&sigs)
        .map(|((k, b), s)| (k, b.as_slice(), s))
        .collect();
    if crypto::verify_batch(Domain::Grant, &items).is_ok() {
        return Ok(());
    }
    for (i, g) in chain.iter().enumerate() {
        let sig: [u8; 64] = g.envelope.sig.as_slice().try_into().unwrap_or([0; 64]);
        if crypto::verify(&keys[i], Domain::Grant, &[&g.envelope.body], &sig).is_err() {
            return Err(Refusal::BadSignature { link: i });
        }
    }
    // Individually valid but the batch failed: refuse all the same.
    Err(Refusal::BadSignature { link: 0 })
}

/// Checks that `child` (at position `link`) stays within `parent`.
pub(super) fn check_link(
    parent: &GrantBody,
    child: &GrantBody,
    link: usize,
) -> Result<(), Refusal> {
    if child.record != parent.record {
        return Err(Refusal::WrongRecord);
    }
    if child.issuer != parent.audience {
        return Err(Refusal::BrokenChain { link });
    }
    if parent.depth == 0 || child.depth >= parent.depth {
        return Err(Refusal::DepthExceeded { link });
    }
    for s in &child.scopes {
        if !parent.scopes.iter().any(|p| p.covers(s)) {
            return Err(Refusal::ScopeExceeded {
                link,
                what: "a section or ability the parent does not grant",
            });
        }
    }
    if child.expires > parent.expires || child.not_before < parent.not_before {
        return Err(Refusal::ScopeExceeded {
            link,
            what: "validity outside the parent's",
        });
    }
    // A proxy answers requests for the purpose asked (never making another proxy); any
    // other delegation keeps its parent's purpose.
    let purpose_ok = match parent.purpose {
        Purpose::Proxy => child.purpose != Purpose::Proxy,
        p => child.purpose == p,
    };
    if !purpose_ok {
        return Err(Refusal::ScopeExceeded {
            link,
            what: "a purpose the parent does not allow",
        });
    }
    Ok(())
}
