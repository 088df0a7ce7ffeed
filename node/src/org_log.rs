//! Asking the organisation's node to log an emergency use before it is used (see
//! [`hearth_core::grant::emergency::log_use`]): one short-lived connection, one
//! `/hearth/store/1` request carrying the use and the credential, one signed entry back.

use crate::fail::{Failure, code};
use hearth_core::grant::emergency::{EmergencyUse, LoggedUse};
use hearth_core::grant::request::Credential;
use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use hearth_sync::net::{self, BehaviourEvent, NetConfig, peer_id};
use hearth_sync::protocol::Message;
use hearth_sync::relay::wire::EmergencyLogRequest;
use hearth_sync::relay::{StoreRequest, StoreResponse, blind};
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identity::Keypair, request_response};
use std::time::Duration;

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
    let keypair =
        net::keypair(identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let pid = peer_id(&org).ok_or_else(|| Failure::new(code::INVALID, "not an organisation id"))?;
    let request = Message::Store(StoreRequest {
        emergency: Some(EmergencyLogRequest {
            token: use_.to_token(),
            credential: credential.to_token(),
        }),
        ..StoreRequest::new(blind(&use_.body().record, &org))
    });
    // On a thread of its own: a command forwarded to the daemon runs inside its runtime.
    let answer = std::thread::scope(|scope| {
        scope
            .spawn(move || ask(keypair, pid, addrs, request, timeout))
            .join()
            .unwrap_or_else(|_| Err(Failure::new(code::IO, "logging the use failed")))
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

/// Sends `request` to `pid` and waits for its answer.
fn ask(
    keypair: Keypair,
    pid: PeerId,
    addrs: Vec<Multiaddr>,
    request: Message,
    timeout: Duration,
) -> Result<StoreResponse, Failure> {
    let rt = crate::daemon::runtime()?;
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
                                "your organisation's node answered out of turn",
                            )),
                        };
                    }
                    request_response::Event::OutboundFailure { error, .. } => {
                        return Err(Failure::new(
                            code::IO,
                            format!(
                                "could not reach your organisation's node to log the use \
                                 ({error}); no emergency access was used"
                            ),
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
                "your organisation's node did not answer in time; no emergency access was used",
            )),
        }
    })
}
