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
        /// The organisation's peer id (the key that signs its staff's credentials).
        #[arg(long, value_name = "ORG_ID")]
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
        /// The node to ask: the patient's device (peer id; its address known, or given as a
        /// multiaddress ending in /p2p/PEER).
        #[arg(long, value_name = "PEER")]
        with: String,
        /// For how long (at most what the patient's arrangement allows).
        #[arg(long, value_name = "D", default_value = "4h")]
        duration: String,
        /// How long to wait for the patient's node, in seconds.
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
                .map(|(org, a)| json!({"org": org, "org_name": a.org_name, "sections": a.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "max_duration_ms": a.max_duration_ms, "expires": a.expires}))
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
            duration,
            timeout,
            org_at,
        } => access(
            ctx,
            &record,
            &reason,
            &with,
            &duration,
            timeout,
            org_at.as_deref(),
        ),
    }
}

fn arrangement_words(org: &PeerKey, a: &ArrangementItem) -> String {
    let scopes: Vec<String> = a.scopes.iter().map(|s| s.pattern().to_string()).collect();
    format!(
        "Emergency access arranged with {}: its attested professionals may read {} for up to \
         {} hours per use, each use with a reason, until {}.",
        a.org_name.clone().unwrap_or_else(|| org.to_string()),
        scopes.join(", "),
        a.max_duration_ms / 3_600_000,
        when_words(a.expires)
    )
}

fn arrange(
    ctx: &Ctx,
    org: &str,
    name: Option<String>,
    sections: Option<&str>,
    max_duration: &str,
    expires: &str,
) -> Result<(), Failure> {
    let org = parse_peer(org)?;
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
    };
    rec.arrange_emergency(org, item.clone(), t, &mut os_rng())?;
    ctx.print(
        json!({"org": org, "sections": item.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "max_duration_ms": max, "expires": expires}),
        || arrangement_words(&org, &item),
    );
    Ok(())
}

fn identity_again(ctx: &Ctx) -> Result<hearth_core::keys::Identity, Failure> {
    Ok(ctx.unlock()?.1)
}

/// The plain answer when no emergency access exists.
const NO_ACCESS: &str = "no emergency access to this record: its patient has not arranged \
    emergency access with your organisation (or it was cancelled, has ended, or allows a \
    shorter use). Hearth records are end-to-end encrypted: without the patient's arrangement \
    nobody — not Hearth, not a relay, not your organisation — can open them";

fn access(
    ctx: &Ctx,
    record: &str,
    reason: &str,
    with: &str,
    duration: &str,
    timeout: u64,
    org_at: Option<&str>,
) -> Result<(), Failure> {
    let rid: RecordId = record
        .parse()
        .map_err(|e| invalid(format!("--record: {e}")))?;
    if reason.trim().is_empty() {
        return Err(invalid("--reason: emergency access needs a reason"));
    }
    let t = now();
    let duration_ms = parse_expires(duration, t)?.as_millis() - t.as_millis();
    let (peer, addr) = match with.rsplit_once("/p2p/") {
        Some((_, p)) => (
            parse_peer(p)?,
            Some(
                with.parse::<libp2p::Multiaddr>()
                    .map_err(|_| invalid("--with: not a multiaddress"))?,
            ),
        ),
        None => (parse_peer(with)?, None),
    };
    let org_at: Option<libp2p::Multiaddr> = org_at
        .map(|a| {
            a.parse()
                .map_err(|_| invalid("--org-at: not a multiaddress"))
        })
        .transpose()?;
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
        reason: reason.trim().to_string(),
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
        org_addrs,
        &use_,
        &credential,
        Duration::from_secs(timeout.max(1)),
    )?;
    vault.hold_emergency(
        &rid,
        &HeldEmergency {
            token: use_.to_token(),
            credential: credential.to_token(),
            logged: Some(logged.to_token()),
        },
    )?;
    if let Some(a) = &addr {
        let mut known = vault.peer_addrs(&peer)?;
        known.put_first(a.to_string());
        vault.set_peer_addrs(&peer, &known)?;
        if let Some(d) = &ctx.daemon {
            d.node.add_peer(peer, a.clone());
        }
    }
    let wait = Duration::from_secs(timeout.max(1));
    let outcomes = match &ctx.daemon {
        Some(d) => d.node.sync_blocking(Some(peer), wait),
        None => {
            // The one-shot node opens the store itself (sled allows one opener).
            drop(vault);
            let (_info, identity) = ctx.unlock()?;
            daemon::one_shot(identity, ctx.vault()?, move |node| {
                node.sync_blocking(Some(peer), wait)
            })?
        }
    }
    .map_err(|e| Failure::new(code::IO, format!("emergency access: {e}")))?;
    let ours: Vec<_> = outcomes.iter().filter(|o| o.record == rid).collect();
    let refused_now = ours
        .iter()
        .any(|o| o.result.as_ref().is_err_and(|e| e.is_refusal()));
    let failed: Option<String> = ours
        .iter()
        .find_map(|o| o.result.as_ref().err().filter(|e| !e.is_refusal()))
        .map(ToString::to_string);
    // Opened: this node now holds keys to sections of the record (the round's last report
    // counts only its last step).
    let vault = ctx.vault()?;
    let opened: Vec<String> = vault
        .open_record(&identity_again(ctx)?, &rid)
        .map(|r| {
            r.sections()
                .into_iter()
                .map(|s| s.name.to_string())
                .collect()
        })
        .unwrap_or_default();
    drop(vault);
    if ours.is_empty() || refused_now || opened.is_empty() {
        // Nothing was opened: forget the use so that it is not presented again.
        ctx.vault()?
            .delete_local(&[hearth_core::ledger::Key::HeldEmergency(&rid).text()])?;
        if let (Some(why), false) = (&failed, refused_now) {
            return Err(Failure::new(
                code::IO,
                format!("emergency access: the session failed ({why}); nothing was opened"),
            ));
        }
        if refused_now || !ours.is_empty() {
            return Err(refused(NO_ACCESS));
        }
        return Err(Failure::new(
            code::IO,
            "the patient's node could not be reached: no emergency access was used",
        ));
    }
    let until = use_.until();
    ctx.print(
        json!({"record_id": rid, "until": until, "sections": opened, "org": use_.body().org}),
        || {
            format!(
                "Emergency access open until {}: {}. Your organisation logged it for its IG \
                 review, and the patient sees it, with your reason, at the top of their audit. \
                 Read it with: hearth record show --record {rid}",
                when_words(until),
                opened.join(", ")
            )
        },
    );
    Ok(())
}
