//! Fetching a whole record from a relay for `hearth recover`: one short-lived connection that
//! asks `/hearth/store/1` for everything, page by page, as the device restored from the
//! recovery phrase (see [`hearth_sync::relay::access::recovery_list`]).

use crate::fail::{Failure, code};
use hearth_core::bundle::Bundle;
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::log::{LogHead, VersionVector};
use hearth_core::record::KeyWrap;
use hearth_sync::net::{self, BehaviourEvent, NetConfig, peer_id};
use hearth_sync::protocol::{Message, SectionHave};
use hearth_sync::relay::wire::{Agreement, unpad};
use hearth_sync::relay::{StoreRequest, blind};
use libp2p::Multiaddr;
use libp2p::futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use serde_bytes::{ByteArray, ByteBuf};
use std::collections::BTreeMap;
use std::time::Duration;

/// The most pages fetched (each up to the protocol's bundle budget).
const MAX_PAGES: usize = 4096;

/// How many times a request is sent before an unreachable relay is reported (within the time
/// given): a relay restarting, or one whose allowance of new connections from this address is
/// spent for the moment, answers a later try.
const MAX_ATTEMPTS: u32 = 8;

/// The pause before the next try, times the tries so far (0.25 s, 0.5 s, … 7 s in all).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What a relay holds of a record.
pub struct Fetched {
    /// Every bundle.
    pub bundles: Vec<Bundle>,
    /// The key wraps it keeps.
    pub wraps: Vec<KeyWrap>,
}

fn have(heads: &BTreeMap<SectionId, VersionVector>) -> Vec<SectionHave> {
    heads
        .iter()
        .map(|(s, vv)| SectionHave::new(*s, vv))
        .collect()
}

/// Fetches `record` from the relay at `addr` (its peer `relay`), presenting `access` (the
/// recovery list), within `timeout`.
pub fn fetch(
    identity: &Identity,
    record: RecordId,
    relay: PeerKey,
    addr: Multiaddr,
    access: Vec<u8>,
    timeout: Duration,
) -> Result<Fetched, Failure> {
    let keypair =
        net::keypair(identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let agreement = {
        let key = identity.agreement_public();
        let sig = hearth_core::crypto::sign(
            identity.device_key(),
            hearth_core::crypto::Domain::AgreementKey,
            &[&key],
        );
        Agreement {
            key: ByteArray::new(key),
            sig: ByteArray::new(sig),
        }
    };
    let pid = peer_id(&relay).ok_or_else(|| Failure::new(code::INVALID, "not a relay peer id"))?;
    let rt = crate::runtime::runtime()?;
    rt.block_on(async move {
        let mut swarm: net::HearthSwarm = net::swarm(keypair, &NetConfig::default())
            .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        swarm.add_peer_address(pid, addr.clone());
        let mut heads: BTreeMap<SectionId, VersionVector> = BTreeMap::new();
        let mut bundles = Vec::new();
        let mut wraps = Vec::new();
        let request = |heads: &BTreeMap<SectionId, VersionVector>, first: bool| {
            Message::Store(StoreRequest {
                agreement: Some(agreement.clone()),
                access: first.then(|| ByteBuf::from(access.clone())),
                have: have(heads),
                ..StoreRequest::new(blind(&record, &relay))
            })
        };
        swarm
            .behaviour_mut()
            .store
            .send_request(&pid, request(&heads, true));
        let mut pages = 0;
        let mut attempts = 1;
        let work = async {
            loop {
                let ev = swarm.select_next_some().await;
                let SwarmEvent::Behaviour(BehaviourEvent::Store(ev)) = ev else {
                    continue;
                };
                match ev {
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    } => {
                        let Message::Stored(resp) = response else {
                            return Err(Failure::new(code::IO, "the relay answered out of turn"));
                        };
                        if let Some(why) = resp.refused {
                            return Err(Failure::new(
                                code::REFUSED,
                                format!("the relay refused: {why}"),
                            ));
                        }
                        for p in &resp.bundles {
                            let b =
                                unpad(p)
                                    .and_then(|b| Bundle::decode(b).ok())
                                    .ok_or_else(|| {
                                        Failure::new(
                                            code::INTEGRITY,
                                            "the relay sent a damaged bundle",
                                        )
                                    })?;
                            let h = b.header();
                            heads.entry(h.section).or_default().insert(
                                h.author,
                                LogHead {
                                    seq: h.seq,
                                    hash: b.hash(),
                                },
                            );
                            bundles.push(b);
                        }
                        wraps.extend(resp.wraps);
                        pages += 1;
                        if !resp.more || resp.bundles.is_empty() || pages >= MAX_PAGES {
                            return Ok(());
                        }
                        swarm
                            .behaviour_mut()
                            .store
                            .send_request(&pid, request(&heads, false));
                    }
                    request_response::Event::OutboundFailure { error, .. } => {
                        // A peer that speaks no Hearth store protocol is not asked again.
                        let unsupported = matches!(
                            error,
                            request_response::OutboundFailure::UnsupportedProtocols
                        );
                        if unsupported || attempts >= MAX_ATTEMPTS {
                            return Err(Failure::new(
                                code::IO,
                                format!("could not reach the relay: {error}"),
                            ));
                        }
                        tracing::debug!(
                            attempts,
                            "the relay did not answer ({error}); asking again"
                        );
                        tokio::time::sleep(RETRY_PAUSE * attempts).await;
                        attempts += 1;
                        // The address is given again: after a failed dial the swarm did not
                        // dial it again by itself (the end-to-end test shows it).
                        swarm.add_peer_address(pid, addr.clone());
                        swarm
                            .behaviour_mut()
                            .store
                            .send_request(&pid, request(&heads, pages == 0));
                    }
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => Ok(Fetched { bundles, wraps }),
            Ok(Err(f)) => Err(f),
            Err(_) => Err(Failure::new(code::IO, "the relay did not answer in time")),
        }
    })
}
