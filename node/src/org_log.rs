//! Asking an organisation's node, over one short-lived connection and one `/hearth/store/1`
//! request each:
//!
//! - to log an emergency use before it is used (see
//!   [`hearth_core::grant::emergency::log_use`]): the use and the credential go, one signed
//!   entry comes back;
//! - to release the keys a relay served in escrow for a logged use
//!   ([`hearth_core::keywrap::EscrowedKey`]);
//! - for its card: its name for itself and its agreement key, signed (a patient adding a
//!   relay names it by it; one arranging emergency access escrows the arranged sections' keys
//!   to the organisation's agreement key).
//!
//! The same one-off request ([`ask`]) reaches a record's relay for a professional using
//! emergency access while the patient's devices are offline.

use crate::fail::{Failure, code};
use hearth_core::grant::emergency::{EmergencyUse, LoggedUse};
use hearth_core::grant::request::{Card, Credential};
use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use hearth_core::keywrap::EscrowedKey;
use hearth_core::record::KeyWrap;
use hearth_sync::net::{self, BehaviourEvent, NetConfig, peer_id};
use hearth_sync::protocol::Message;
use hearth_sync::relay::wire::{Agreement, EmergencyLogRequest};
use hearth_sync::relay::{StoreRequest, StoreResponse, blind};
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identity::Keypair, request_response};
use std::time::Duration;

/// How errors name the professional's organisation's node.
const ORG: &str = "your organisation's node";

/// Has the organisation `org` (at any of `addrs`) log `use_`, presenting `credential`, within
/// `timeout`. Returns its signed entry, checked: signed by `org`, for this very use.
pub fn log(
    identity: &Identity,
    org: PeerKey,
    addrs: Vec<Multiaddr>,
    use_: &EmergencyUse,
    credential: &Credential,
    timeout: Duration,
) -> Result<LoggedUse, Failure> {
    if addrs.is_empty() {
        return Err(Failure::new(
            code::NOT_FOUND,
            "your organisation's node address is unknown: ask it for a new credential (which \
             carries its address), or give --org-at; no emergency access was used",
        ));
    }
    let request = use_request(org, use_, credential, Vec::new(), None);
    let answer = ask(identity, org, addrs, request, timeout, ORG).map_err(|f| Failure {
        message: format!("{}; no emergency access was used", f.message),
        ..f
    })?;
    if let Some(why) = answer.emergency_refused {
        return Err(Failure::new(
            code::REFUSED,
            format!("your organisation did not log the use: {why}; no emergency access was used"),
        ));
    }
    answer
        .logged
        .as_deref()
        .and_then(|t| LoggedUse::from_token(t).ok())
        .filter(|l| l.body().org == org && l.body().use_id.into_array() == use_.hash())
        .ok_or_else(|| {
            Failure::new(
                code::INTEGRITY,
                "your organisation's node did not log the use (it may not be an organisation's \
                 node running Hearth); no emergency access was used",
            )
        })
}

/// Has the organisation `org` (at any of `addrs`) release to this node the keys inside
/// `wraps` (the escrow wraps a relay served for `use_`, which `org` has logged). Returns the
/// keys released: the caller keeps those that open ([`hearth_core::record::Vault::keep_escrowed_keys`]).
pub fn release(
    identity: &Identity,
    org: PeerKey,
    addrs: Vec<Multiaddr>,
    use_: &EmergencyUse,
    credential: &Credential,
    wraps: Vec<KeyWrap>,
    timeout: Duration,
) -> Result<Vec<EscrowedKey>, Failure> {
    let request = use_request(org, use_, credential, wraps, Some(Agreement::of(identity)));
    let answer = ask(identity, org, addrs, request, timeout, ORG)?;
    if let Some(why) = answer.emergency_refused {
        return Err(Failure::new(
            code::REFUSED,
            format!("your organisation did not release the keys: {why}"),
        ));
    }
    Ok(answer.released)
}

/// A request to the organisation `org` about `use_`: to log it, and to release the keys in
/// `wraps` to `agreement`.
fn use_request(
    org: PeerKey,
    use_: &EmergencyUse,
    credential: &Credential,
    wraps: Vec<KeyWrap>,
    agreement: Option<Agreement>,
) -> StoreRequest {
    StoreRequest {
        agreement,
        emergency: Some(EmergencyLogRequest {
            token: use_.to_token(),
            credential: credential.to_token(),
            wraps,
        }),
        ..StoreRequest::new(blind(&use_.body().record, &org))
    }
}

/// The card of the organisation's or relay's node `peer` (at any of `addrs`; `who` names it in
/// errors): its name for itself, its role and its agreement key, signed by `peer`.
pub fn card_of(
    identity: &Identity,
    peer: PeerKey,
    addrs: Vec<Multiaddr>,
    timeout: Duration,
    who: &str,
) -> Result<Card, Failure> {
    let request = StoreRequest {
        card_wanted: true,
        ..StoreRequest::new(blind(&hearth_core::ids::RecordId([0; 32]), &peer))
    };
    let answer = ask(identity, peer, addrs, request, timeout, who)?;
    answer
        .card
        .as_deref()
        .and_then(|t| Card::from_token(t).ok())
        .filter(|c| c.body().peer == peer)
        .ok_or_else(|| {
            Failure::new(
                code::INTEGRITY,
                format!(
                    "{who} did not give its signed card (it may not be an organisation's node \
                     running Hearth)"
                ),
            )
        })
}

/// Sends `request` to `peer` (at any of `addrs`; `who` names it in errors) and waits up to
/// `timeout` for its answer, on a thread of its own (a command forwarded to the daemon runs
/// inside its runtime).
pub fn ask(
    identity: &Identity,
    peer: PeerKey,
    addrs: Vec<Multiaddr>,
    request: StoreRequest,
    timeout: Duration,
    who: &str,
) -> Result<StoreResponse, Failure> {
    if addrs.is_empty() {
        return Err(Failure::new(
            code::NOT_FOUND,
            format!("{who}'s address is unknown"),
        ));
    }
    let keypair =
        net::keypair(identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let pid = peer_id(&peer).ok_or_else(|| Failure::new(code::INVALID, "not a Hearth peer id"))?;
    let who = who.to_string();
    std::thread::scope(|scope| {
        scope
            .spawn(move || ask_on(keypair, pid, addrs, Message::Store(request), timeout, &who))
            .join()
            .unwrap_or_else(|_| Err(Failure::new(code::IO, "the request failed")))
    })
}

fn ask_on(
    keypair: Keypair,
    pid: PeerId,
    addrs: Vec<Multiaddr>,
    request: Message,
    timeout: Duration,
    who: &str,
) -> Result<StoreResponse, Failure> {
    let rt = crate::runtime::runtime()?;
    rt.block_on(async move {
        let mut swarm: net::HearthSwarm = net::swarm(keypair, &NetConfig::default())
            .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        for a in addrs {
            swarm.add_peer_address(pid, a);
        }
        swarm.behaviour_mut().store.send_request(&pid, request);
        let work = async {
            loop {
                let SwarmEvent::Behaviour(BehaviourEvent::Store(ev)) =
                    swarm.select_next_some().await
                else {
                    continue;
                };
                match ev {
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    } => {
                        return match response {
                            Message::Stored(resp) => Ok(resp),
                            _ => Err(Failure::new(
                                code::IO,
                                format!("{who} answered out of turn"),
                            )),
                        };
                    }
                    request_response::Event::OutboundFailure { error, .. } => {
                        return Err(Failure::new(
                            code::IO,
                            format!("could not reach {who} ({error})"),
                        ));
                    }
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                code::IO,
                format!("{who} did not answer in time"),
            )),
        }
    })
}
