//! `hearth emergency`: break-glass access, arranged in advance by the patient with an
//! organisation, and used by one of its attested professionals with a reason (see
//! [`hearth_core::grant::emergency`]).

use crate::app::parse::{parse_expires, parse_peer, parse_spec, when_words};
use crate::app::{Ctx, invalid, now, os_rng, patient_record};
use crate::fail::{Failure, code};
use clap::Subcommand;
use hearth_core::grant::{self, Ability};
use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use hearth_core::ledger::ArrangementItem;
use serde_json::json;
use std::time::Duration;

mod access;

use access::{AccessArgs, access};

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
