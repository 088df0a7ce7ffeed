//! `hearth emergency`: break-glass access, arranged in advance by the patient with an
//! organisation, and used by one of its attested professionals with a reason (see
//! [`hearth_core::grant::emergency`]).

use crate::app::parse::{parse_expires, parse_peer, parse_spec, when_words};
use crate::app::{Ctx, invalid, now, os_rng, patient_record, refused};
use crate::daemon;
use crate::fail::{Failure, code};
use clap::Subcommand;
use hearth_core::grant::emergency::{EmergencyBody, EmergencyUse};
use hearth_core::grant::request::Credential;
use hearth_core::grant::{self, Ability};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::ledger::{ArrangementItem, HeldEmergency};
use serde_json::json;
use std::time::Duration;

/// The sections arranged when none are named: what an emergency team most needs.
const DEFAULT_SECTIONS: &str = "allergies,medications,conditions,advance-care-plan";

/// `hearth emergency …`.
#[derive(Subcommand, Debug)]
pub enum EmergencyCommand {
    /// Arrange emergency access with an organisation (patient): its attested professionals
    /// may then read the sections named, each use with a reason and for a limited time, and
    /// every use is shown at the top of your audit.
    Arrange {
        /// The organisation: its node's address ending in /p2p/ORG_ID (its operator gives it
        /// to you), or its peer id alone if this node already knows where it listens. The
        /// node is asked for its key, so that the arranged sections' keys can be escrowed to
        /// it with your relays: emergency access then works while your devices are offline.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// What to call it (shown in your audit).
        #[arg(long)]
        name: Option<String>,
        /// The sections (default: allergies, medications, conditions, advance care plan).
        #[arg(long, value_name = "SPEC")]
        sections: Option<String>,
        /// The longest one use may last (e.g. 12h; at most 3d).
        #[arg(long, value_name = "D", default_value = "24h")]
        max_duration: String,
        /// When the arrangement ends (e.g. 1y).
        #[arg(long, value_name = "D", default_value = "1y")]
        expires: String,
    },
    /// Cancel the arrangement with an organisation (patient).
    Cancel {
        /// The organisation's peer id.
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
    /// The arrangements in force (patient).
    List,
    /// Use emergency access to a patient's record (professional attested by an organisation
    /// the patient arranged it with): needs a reason, lasts a limited time, and is shown to
    /// the patient.
    Access {
        /// The patient's record.
        #[arg(long, value_name = "RECORD_ID")]
        record: String,
        /// Why (required; the patient and your organisation's IG review see it).
        #[arg(long)]
        reason: String,
        /// The patient's device to ask first (peer id; its address known, or given as a
        /// multiaddress ending in /p2p/PEER). Without it, or if it cannot be reached, the
        /// record's relays are asked.
        #[arg(long, value_name = "PEER")]
        with: Option<String>,
        /// A relay of the record to ask (its address, ending in /p2p/RELAY); by default the
        /// relays this node knows for the record, or those your organisation's node finds on
        /// the relays' network.
        #[arg(long, value_name = "MULTIADDR")]
        via: Vec<String>,
        /// For how long (at most what the patient's arrangement allows).
        #[arg(long, value_name = "D", default_value = "4h")]
        duration: String,
        /// How long to wait for each node asked (your organisation's, the patient's, a relay),
        /// in seconds.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
        /// Where your organisation's node listens (a multiaddress ending in /p2p/ORG), if
        /// your credential does not say: it must log the use before it can be used.
        #[arg(long, value_name = "ADDR")]
        org_at: Option<String>,
    },
}

/// Runs `hearth emergency …`.
pub fn emergency(ctx: &Ctx, cmd: EmergencyCommand) -> Result<(), Failure> {
    match cmd {
        EmergencyCommand::Arrange {
            org,
            name,
            sections,
            max_duration,
            expires,
        } => arrange(
            ctx,
            &org,
            name,
            sections.as_deref(),
            &max_duration,
            &expires,
        ),
        EmergencyCommand::Cancel { org } => {
            let org = parse_peer(&org)?;
            let (_, identity) = ctx.unlock()?;
            let vault = ctx.vault()?;
            let mut rec = patient_record(
                &vault,
                &identity,
                "emergency access is arranged by the patient",
            )?;
            let n = rec.cancel_emergency(&org, now(), &mut os_rng())?;
            if n == 0 {
                return Err(Failure::new(
                    code::NOT_FOUND,
                    "no emergency access is arranged with that organisation",
                ));
            }
            ctx.print(json!({"org": org, "cancelled": n}), || {
                format!("Emergency access with {org} cancelled.")
            });
            Ok(())
        }
        EmergencyCommand::List => {
            let (_, identity) = ctx.unlock()?;
            let vault = ctx.vault()?;
            let rec = patient_record(
                &vault,
                &identity,
                "emergency access is arranged by the patient",
            )?;
            let list = rec.arrangements(now());
            let json: Vec<_> = list
                .iter()
                .map(|(org, a)| json!({"org": org, "org_name": a.org_name, "sections": a.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "max_duration_ms": a.max_duration_ms, "expires": a.expires, "escrowed": a.agreement.is_some()}))
                .collect();
            ctx.print(json!({"arrangements": json}), || {
                if list.is_empty() {
                    return "No emergency access is arranged: in an emergency, nobody can open \
                            your record without your devices."
                        .into();
                }
                list.iter()
                    .map(|(org, a)| arrangement_words(org, a))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        EmergencyCommand::Access {
            record,
            reason,
            with,
            via,
            duration,
            timeout,
            org_at,
        } => access(
            ctx,
            &AccessArgs {
                record: &record,
                reason: &reason,
                with: with.as_deref(),
                via: &via,
                duration: &duration,
                timeout,
                org_at: org_at.as_deref(),
            },
        ),
    }
}

fn arrangement_words(org: &PeerKey, a: &ArrangementItem) -> String {
    let scopes: Vec<String> = a.scopes.iter().map(|s| s.pattern().to_string()).collect();
    format!(
        "Emergency access arranged with {}: its attested professionals may read {} for up to \
         {} hours per use, each use with a reason, until {}. {}",
        a.org_name.clone().unwrap_or_else(|| org.to_string()),
        scopes.join(", "),
        a.max_duration_ms / 3_600_000,
        when_words(a.expires),
        if a.agreement.is_some() {
            "The keys are escrowed to the organisation with your relays: it works while your \
             devices are offline, and neither the relays nor the organisation can read \
             anything without a use you will see."
        } else {
            "It works only while one of your devices is online (the organisation's node \
             could not be asked for its key: arrange again with its address to escrow the \
             keys)."
        }
    )
}

/// The organisation `org` names (a peer id, or an address ending in /p2p/ORG_ID) and its
/// signed agreement key, asked of its node (at the address given, or those known); none when
/// it cannot be reached.
fn org_and_agreement(
    ctx: &Ctx,
    identity: &Identity,
    org: &str,
) -> Result<(PeerKey, Option<serde_bytes::ByteArray<32>>), Failure> {
    let (org, given) = match org.rsplit_once("/p2p/") {
        Some(_) => {
            let (addr, peer) = crate::cmd::relay::relay_peer(org)?;
            (peer, Some(addr))
        }
        None => (parse_peer(org)?, None),
    };
    let explicit = given.is_some();
    let mut addrs: Vec<libp2p::Multiaddr> = given.into_iter().collect();
    addrs.extend(
        ctx.vault()?
            .peer_addrs(&org)?
            .addrs
            .iter()
            .filter_map(|a| a.parse().ok()),
    );
    if addrs.is_empty() {
        return Ok((org, None));
    }
    match crate::org_log::card_of(
        identity,
        org,
        addrs,
        Duration::from_secs(20),
        "the organisation's node",
    ) {
        Ok(card) => Ok((org, Some(card.body().agreement))),
        // An address the patient gave must work; one merely remembered may be stale.
        Err(f) if explicit => Err(f),
        Err(_) => Ok((org, None)),
    }
}

fn arrange(
    ctx: &Ctx,
    org: &str,
    name: Option<String>,
    sections: Option<&str>,
    max_duration: &str,
    expires: &str,
) -> Result<(), Failure> {
    let spec = parse_spec(sections.unwrap_or(DEFAULT_SECTIONS))?;
    let t = now();
    let max = parse_expires(max_duration, t)?.as_millis() - t.as_millis();
    if !(grant::emergency::MIN_DURATION_MS..=grant::emergency::MAX_DURATION_MS).contains(&max) {
        return Err(invalid("--max-duration: from one minute to three days"));
    }
    let expires = parse_expires(expires, t)?;
    if let Some(n) = &name
        && (n.trim().is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control))
    {
        return Err(invalid(
            "--name: up to 200 characters, no control characters",
        ));
    }
    let (_, identity) = ctx.unlock()?;
    let (org, agreement) = org_and_agreement(ctx, &identity, org)?;
    let vault = ctx.vault()?;
    let mut rec = patient_record(
        &vault,
        &identity,
        "emergency access is arranged by the patient",
    )?;
    let item = ArrangementItem {
        scopes: grant::scopes(&spec, Ability::Read),
        max_duration_ms: max,
        arranged_at: t,
        expires,
        org_name: name,
        agreement,
    };
    rec.arrange_emergency(org, item.clone(), t, &mut os_rng())?;
    ctx.print(
        json!({"org": org, "sections": item.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "max_duration_ms": max, "expires": expires, "escrowed": item.agreement.is_some()}),
        || arrangement_words(&org, &item),
    );
    Ok(())
}

/// The plain answer when no emergency access exists.
const NO_ACCESS: &str = "no emergency access to this record: its patient has not arranged \
    emergency access with your organisation (or it was cancelled, has ended, or allows a \
    shorter use). Hearth records are end-to-end encrypted: without the patient's arrangement \
    nobody — not Hearth, not a relay, not your organisation — can open them";

/// What `hearth emergency access` was given.
struct AccessArgs<'a> {
    record: &'a str,
    reason: &'a str,
    with: Option<&'a str>,
    via: &'a [String],
    duration: &'a str,
    timeout: u64,
    org_at: Option<&'a str>,
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

fn access(ctx: &Ctx, a: &AccessArgs<'_>) -> Result<(), Failure> {
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
