//! The core's fuzz entry points: each decodes (and verifies) raw bytes and never panics.

use crate::bundle::Bundle;
use crate::grant::request::{AccessRequest, Card, Credential};
use crate::grant::{self, Access};

/// Decodes a grant token's text and verifies the chain for its leaf audience.
pub fn grant_token(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match grant::chain_from_token(text) {
        Ok(chain) => verify_any(&chain),
        Err(_) => false,
    }
}

/// Decodes encoded chain bytes (as stored) and verifies them.
pub fn grant_chain(data: &[u8]) -> bool {
    match grant::chain_from_bytes(data) {
        Ok(chain) => verify_any(&chain),
        Err(_) => false,
    }
}

fn verify_any(chain: &[grant::Grant]) -> bool {
    let Some(leaf) = chain.last() else {
        return false;
    };
    let at = leaf.body().not_before;
    grant::verify_chain(chain, &Access::any(leaf.body().audience), at, &|_| false).is_ok()
}

/// Decodes request, credential and card tokens.
pub fn signed_tokens(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let r = AccessRequest::from_token(text).is_ok();
    let c = Credential::from_token(text).is_ok();
    let i = Card::from_token(text).is_ok();
    r || c || i
}

/// Decodes a bundle and checks its signature.
pub fn bundle(data: &[u8]) -> bool {
    Bundle::decode(data).and_then(|b| b.verify()).is_ok()
}

/// Reads and verifies a de-identified contribution file.
pub fn contribution(data: &[u8]) -> bool {
    crate::extract::Contribution::from_file(data).is_ok()
}

/// Decodes a signed audit event and checks its signature and bounds.
pub fn audit_event(data: &[u8]) -> bool {
    crate::audit::SignedEvent::open(data).is_ok()
}

/// Decodes a signed revocation (as peers and the auth document carry it) and verifies it.
pub fn revocation(data: &[u8]) -> bool {
    crate::grant::Revocation::from_bytes(data).is_some()
}

/// Every decoder of a value read back from the store: log heads, key wraps (verified), shared
/// snapshots, remembered peer addresses, the keystore file, and the ledger's JSON items. The
/// store is the node's own, but its files can be damaged or edited by another local user.
pub fn store_item(data: &[u8]) -> bool {
    use crate::ledger::{
        ArrangementItem, DecisionItem, HeldEmergency, IgUseItem, IssuedGrant, PeerAddrs,
        ProxyRequestItem, RecordedGrant, RelayItem, RequestItem, RevokeItem, TrustItem,
    };
    let mut accepted = crate::log::LogHead::from_bytes(data).is_some();
    accepted |=
        serde_ipld_dagcbor::from_slice::<crate::record::KeyWrap>(data).is_ok_and(|w| w.verify());
    accepted |= crate::record::SharedSnapshot::decode(data).is_some();
    accepted |= !PeerAddrs::from_bytes(data).addrs.is_empty();
    accepted |= crate::keys::Keystore::from_bytes(data).is_ok();
    if let Ok(text) = std::str::from_utf8(data) {
        accepted |= RecordedGrant::chain_in(text).is_some();
        accepted |= RevokeItem::from_json(text).is_ok();
        accepted |= IgUseItem::from_json(text).is_ok();
        accepted |= ProxyRequestItem::from_json(text).is_ok();
        accepted |= RelayItem::from_json(text).is_ok();
        accepted |= IssuedGrant::from_json(text).is_ok();
        accepted |= RequestItem::from_json(text).is_ok();
        accepted |= DecisionItem::from_json(text).is_ok();
        accepted |= TrustItem::from_json(text).is_ok();
        accepted |= ArrangementItem::from_json(text).is_ok();
        accepted |= HeldEmergency::from_json(text).is_ok();
    }
    accepted
}

/// Parses a FHIR bundle file and plans its import into an empty record (every check an import
/// makes before writing: sizes, resource types, references, the patient's identity).
pub fn fhir_import(data: &[u8]) -> bool {
    match crate::fhir::parse_bundle(data) {
        Ok(parsed) => crate::fhir::plan_import(&parsed, &crate::fhir::Existing::default()).is_ok(),
        Err(_) => false,
    }
}
