//! `hearth emergency access`: a professional of an organisation the patient arranged emergency
//! access with opens the arranged sections, from the patient's device when it answers, else
//! through the record's relays.

use crate::app::parse::{parse_expires, parse_peer, when_words};
use crate::app::{Ctx, invalid, now, refused};
use crate::daemon;
use crate::fail::{Failure, code};
use hearth_core::grant::emergency::{EmergencyBody, EmergencyUse};
use hearth_core::grant::request::Credential;
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::ledger::HeldEmergency;
use serde_json::json;
use std::time::Duration;

/// The plain answer when no emergency access exists.
const NO_ACCESS: &str = "no emergency access to this record: its patient has not arranged \
    emergency access with your organisation (or it was cancelled, has ended, or allows a \
    shorter use). Hearth records are end-to-end encrypted: without the patient's arrangement \
    nobody — not Hearth, not a relay, not your organisation — can open them";

/// What `hearth emergency access` was given.
pub(super) struct AccessArgs<'a> {
    pub(super) record: &'a str,
    pub(super) reason: &'a str,
    pub(super) with: Option<&'a str>,
    pub(super) via: &'a [String],
    pub(super) duration: &'a str,
    pub(super) timeout: u64,
    pub(super) org_at: Option<&'a str>,
}

/// How asking the patient's device ended.
enum Direct {
    /// It served the arranged sections.
    Opened,
    /// It refused the use.
    Refused,
    /// It could not be reached, or the session failed (why).
    Unreachable(Option<String>),
}

pub(super) fn access(ctx: &Ctx, a: &AccessArgs<'_>) -> Result<(), Failure> {
    let rid: RecordId = a
        .record
        .parse()
        .map_err(|e| invalid(format!("--record: {e}")))?;
    if a.reason.trim().is_empty() {
        return Err(invalid("--reason: emergency access needs a reason"));
    }
    let t = now();
    let duration_ms = parse_expires(a.duration, t)?.as_millis() - t.as_millis();
    let with = a
        .with
        .map(
            |w| -> Result<(PeerKey, Option<libp2p::Multiaddr>), Failure> {
                match w.rsplit_once("/p2p/") {
                    Some((_, p)) => Ok((
                        parse_peer(p)?,
                        Some(
                            w.parse::<libp2p::Multiaddr>()
                                .map_err(|_| invalid("--with: not a multiaddress"))?,
                        ),
                    )),
                    None => Ok((parse_peer(w)?, None)),
                }
            },
        )
        .transpose()?;
    let mut via: Vec<(PeerKey, Vec<libp2p::Multiaddr>)> = Vec::new();
    for v in a.via {
        let (addr, peer) = crate::cmd::relay::relay_peer(v)?;
        via.push((peer, vec![addr]));
    }
    let org_at: Option<libp2p::Multiaddr> = a
        .org_at
        .map(|a| {
            a.parse()
                .map_err(|_| invalid("--org-at: not a multiaddress"))
        })
        .transpose()?;
    let timeout = Duration::from_secs(a.timeout.max(1));
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    // The credential: the organisation attesting this professional.
    let credential = vault
        .credential_tokens()?
        .into_iter()
        .filter_map(|tok| Credential::from_token(&tok).ok())
        .filter(|c| c.body().subject == identity.peer() && c.body().expires > t)
        .max_by_key(|c| c.body().expires)
        .ok_or_else(|| {
            refused(
                "you hold no current organisation credential: emergency access is for \
                 professionals attested by an organisation (hearth credential add)",
            )
        })?;
    let body = EmergencyBody {
        v: 1,
        record: rid,
        holder: identity.peer(),
        org: credential.body().org,
        reason: a.reason.trim().to_string(),
        at: t,
        duration_ms,
    };
    let use_ =
        EmergencyUse::sign(body, identity.device_key()).map_err(|e| invalid(e.to_string()))?;
    // The organisation logs the use for its IG review before it can open anything.
    let org_addrs: Vec<libp2p::Multiaddr> = org_at
        .into_iter()
        .chain(
            credential
                .body()
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok()),
        )
        .collect();
    let logged = crate::org_log::log(
        &identity,
        credential.body().org,
        org_addrs.clone(),
        &use_,
        &credential,
        timeout,
    )?;
    vault.hold_emergency(
        &rid,
        &HeldEmergency {
            token: use_.to_token(),
            credential: credential.to_token(),
            logged: Some(logged.to_token()),
        },
    )?;
    drop(vault);
    // The patient's device first, if named; then the record's relays.
    let mut failed: Option<String> = None;
    let mut through: Option<PeerKey> = None;
    let direct = match with {
        Some((peer, addr)) => direct(ctx, &identity, rid, peer, addr, timeout)?,
        None => Direct::Unreachable(None),
    };
    match direct {
        Direct::Opened => {}
        Direct::Refused => return Err(forget_and_refuse(ctx, &rid)),
        Direct::Unreachable(why) => {
            failed = why;
            let relays = relays_for(ctx, &identity, rid, via, &credential, &org_addrs, timeout)?;
            let vault = ctx.vault()?;
            let attempt = crate::break_glass::Attempt {
                identity: &identity,
                vault: &vault,
                record: rid,
                use_: &use_,
                credential: &credential,
                org_addrs: &org_addrs,
                timeout,
            };
            match attempt.through(&relays, now()) {
                crate::break_glass::Through::Opened { relay } => through = Some(relay),
                crate::break_glass::Through::Refused => {
                    drop(vault);
                    return Err(forget_and_refuse(ctx, &rid));
                }
                crate::break_glass::Through::Failed(why) => {
                    failed = Some(match failed {
                        Some(f) => format!("{f}; {why}"),
                        None => why,
                    });
                }
            }
        }
    }
    // Opened: this node now holds keys to sections of the record.
    let opened: Vec<String> = ctx
        .vault()?
        .open_record(&identity, &rid)
        .map(|r| {
            r.sections()
                .into_iter()
                .map(|s| s.name.to_string())
                .collect()
        })
        .unwrap_or_default();
    if opened.is_empty() {
        // Nothing was opened: forget the use so that it is not presented again.
        ctx.vault()?
            .delete_local(&[hearth_core::ledger::Key::HeldEmergency(&rid).text()])?;
        return Err(Failure::new(
            code::IO,
            format!(
                "neither the patient's devices nor the record's relays could be reached ({}): \
                 no emergency access was used",
                failed.unwrap_or_else(|| "no address known".into())
            ),
        ));
    }
    let until = use_.until();
    let relay_words = match through {
        Some(_) => " The patient's devices were offline: the record came through a relay that \
                     keeps it for them, and its keys from your organisation."
            .to_string(),
        None => String::new(),
    };
    ctx.print(
        json!({"record_id": rid, "until": until, "sections": opened, "org": use_.body().org, "through_relay": through}),
        || {
            format!(
                "Emergency access open until {}: {}. Your organisation logged it for its IG \
                 review, and the patient sees it, with your reason, at the top of their audit.{relay_words} \
                 Read it with: hearth record show --record {rid}",
                when_words(until),
                opened.join(", ")
            )
        },
    );
    Ok(())
}

/// Forgets the use held for `record` (so that it is not presented again) and says plainly
/// that there is no emergency access.
fn forget_and_refuse(ctx: &Ctx, record: &RecordId) -> Failure {
    if let Ok(v) = ctx.vault() {
        let _ = v.delete_local(&[hearth_core::ledger::Key::HeldEmergency(record).text()]);
    }
    refused(NO_ACCESS)
}

/// Asks the patient's device `peer` (at `addr`, if given) to serve the use held for `rid`.
fn direct(
    ctx: &Ctx,
    identity: &Identity,
    rid: RecordId,
    peer: PeerKey,
    addr: Option<libp2p::Multiaddr>,
    wait: Duration,
) -> Result<Direct, Failure> {
    let vault = ctx.vault()?;
    if let Some(a) = &addr {
        let mut known = vault.peer_addrs(&peer)?;
        known.put_first(a.to_string());
        vault.set_peer_addrs(&peer, &known)?;
        if let Some(d) = &ctx.daemon {
            d.node.add_peer(peer, a.clone());
        }
    }
    let outcomes = match &ctx.daemon {
        Some(d) => d.node.sync_blocking(Some(peer), wait),
        None => {
            // The one-shot node opens the store itself (sled allows one opener).
            drop(vault);
            daemon::one_shot(identity.duplicate(), ctx.vault()?, move |node| {
                node.sync_blocking(Some(peer), wait)
            })?
        }
    }
    .map_err(|e| Failure::new(code::IO, format!("emergency access: {e}")))?;
    let ours: Vec<_> = outcomes.iter().filter(|o| o.record == rid).collect();
    if ours
        .iter()
        .any(|o| o.result.as_ref().is_err_and(|e| e.is_refusal()))
    {
        return Ok(Direct::Refused);
    }
    let held = ctx
        .vault()?
        .open_record(identity, &rid)
        .is_ok_and(|r| !r.sections().is_empty());
    if held {
        return Ok(Direct::Opened);
    }
    let why = ours
        .iter()
        .find_map(|o| o.result.as_ref().err())
        .map(|e| format!("the patient's device: {e}"))
        .or_else(|| Some("the patient's device could not be reached".into()));
    Ok(Direct::Unreachable(why))
}

/// The relays to ask for `rid`: those given, then those this node knows for the record, then
/// those the organisation's node finds on the relays' network.
fn relays_for(
    ctx: &Ctx,
    identity: &Identity,
    rid: RecordId,
    mut via: Vec<(PeerKey, Vec<libp2p::Multiaddr>)>,
    credential: &Credential,
    org_addrs: &[libp2p::Multiaddr],
    timeout: Duration,
) -> Result<Vec<(PeerKey, Vec<libp2p::Multiaddr>)>, Failure> {
    let parse = |addrs: &[String]| -> Vec<libp2p::Multiaddr> {
        addrs.iter().filter_map(|a| a.parse().ok()).collect()
    };
    {
        let vault = ctx.vault()?;
        let local = hearth_sync::session::Local::new(&vault, identity);
        for (peer, item) in local.relays(&rid, now()) {
            if !via.iter().any(|(p, _)| *p == peer) {
                via.push((peer, parse(&item.addrs)));
            }
        }
    }
    if !via.is_empty() {
        return Ok(via);
    }
    // Ask the relays' network, through the organisation's node (a relay node itself).
    let org = credential.body().org;
    let Some(mut at) = org_addrs.first().cloned() else {
        return Ok(via);
    };
    if matches!(at.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
        at.pop();
    }
    let find = move |node: &crate::live::Handle| node.find_relays(rid, Some((org, at)), timeout);
    let found = match &ctx.daemon {
        Some(d) => find(&d.node),
        None => daemon::one_shot(identity.duplicate(), ctx.vault()?, find)?,
    }
    .unwrap_or_default();
    for l in found {
        let Ok(peer) = l.relay.parse::<PeerKey>() else {
            continue;
        };
        let addrs: Vec<libp2p::Multiaddr> = l
            .addrs
            .iter()
            .filter_map(|a| format!("{a}/p2p/{peer}").parse().ok())
            .collect();
        if !addrs.is_empty() && peer != org {
            via.push((peer, addrs));
        }
    }
    Ok(via)
}
