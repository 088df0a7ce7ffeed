//! `hearth org`: an organisation's node (a relay node) attests members of staff, and lists the
//! emergency uses its staff had it log, for its information governance review.

use crate::app::Ctx;
use crate::app::addresses::own_addresses;
use crate::app::parse::{parse_expires, parse_peer, when_words};
use crate::app::token::emit_token;
use crate::app::{invalid, now, os_rng, refused};
use crate::fail::Failure;
use clap::Subcommand;
use hearth_core::grant::emergency::{EmergencyUse, LoggedUse};
use hearth_core::grant::request::{self, Credential};
use hearth_core::keys::Role;
use hearth_core::ledger::{IgUseItem, Kind};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};

/// `hearth org …`.
#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Attest a member of staff's identity: prints a credential to give them (it carries
    /// this node's addresses, where their node asks it to log an emergency use).
    Attest {
        /// The staff member's peer id.
        #[arg(long, value_name = "PEER")]
        staff: String,
        /// Their name.
        #[arg(long)]
        name: String,
        /// Their role (e.g. an NHS job role code or title).
        #[arg(long)]
        role: String,
        /// Their professional registration number.
        #[arg(long)]
        registration: String,
        /// Your organisation's code (e.g. ODS code; default: the one given at `init`).
        #[arg(long)]
        org_code: Option<String>,
        /// For how long: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: String,
    },
    /// The emergency (break-glass) uses your staff had this node log, newest first: who,
    /// which record, why, when and for how long — for your IG review.
    Audit {
        /// Only uses logged at or after this time (RFC 3339).
        #[arg(long, value_name = "RFC3339_TIME")]
        since: Option<String>,
    },
}

/// `hearth org …` (organisation).
pub fn org(ctx: &Ctx, cmd: OrgCommand) -> Result<(), Failure> {
    match cmd {
        OrgCommand::Attest {
            staff,
            name,
            role,
            registration,
            org_code,
            expires,
        } => attest(ctx, &staff, name, role, registration, org_code, &expires),
        OrgCommand::Audit { since } => audit(ctx, since.as_deref()),
    }
}

fn organisation_only(role: Role, what: &str) -> Result<(), Failure> {
    if role != Role::Relay {
        return Err(refused(format!(
            "only an organisation node (initialised with --role relay) {what}"
        )));
    }
    Ok(())
}

fn attest(
    ctx: &Ctx,
    staff: &str,
    name: String,
    role: String,
    registration: String,
    org_code: Option<String>,
    expires: &str,
) -> Result<(), Failure> {
    let staff = parse_peer(staff)?;
    parse_expires(expires, now())?;
    let (info, identity) = ctx.unlock()?;
    organisation_only(identity.role, "attests staff")?;
    let org_code = org_code.or(info.org_code);
    let addresses = own_addresses(ctx, &ctx.vault()?, &identity.peer());
    let t = now();
    let cred = request::attest(
        &identity,
        staff,
        name.trim().to_string(),
        role.trim().to_string(),
        registration.trim().to_string(),
        org_code.map(|c| c.trim().to_string()),
        t,
        parse_expires(expires, t)?,
        addresses,
        &mut os_rng(),
    )
    .map_err(|e| invalid(format!("credential: {e}")))?;
    let token = cred.to_token();
    emit_token(
        ctx,
        json!({"staff": staff, "expires": cred.body().expires, "addresses": cred.body().addresses}),
        &token,
        &cred.short_id('c'),
        false,
        None,
        format!(
            "Credential for {} ({}, {}) until {}. Give it to them (hearth credential add TOKEN).{}",
            cred.body().name,
            cred.body().role,
            cred.body().org_name,
            when_words(cred.body().expires),
            if cred.body().addresses.is_empty() {
                " It carries no address of this node (it has not run yet): their node cannot \
                 reach it to log an emergency use unless told where (emergency access --org-at)."
            } else {
                ""
            }
        ),
    )
}

/// One logged use, as JSON and in words.
fn use_line(item: &IgUseItem) -> Option<(Timestamp, Value, String)> {
    let logged = LoggedUse::from_token(&item.logged).ok()?;
    let use_ = EmergencyUse::from_token(&item.token).ok()?;
    let cred = Credential::from_token(&item.credential).ok()?;
    let (l, u, c) = (logged.body(), use_.body(), cred.body());
    let json = json!({
        "logged_at": l.at, "professional": u.holder, "name": c.name, "role": c.role,
        "registration": c.registration, "record_id": u.record, "reason": u.reason,
        "from": u.at, "until": use_.until(), "use_id": data_encoding::HEXLOWER.encode(&use_.hash()),
    });
    let words = format!(
        "{}  {} ({}, {}) broke the glass on record {} until {}. Reason given: \"{}\".",
        when_words(l.at),
        c.name,
        c.role,
        c.registration,
        u.record,
        when_words(use_.until()),
        u.reason
    );
    Some((l.at, json, words))
}

fn audit(ctx: &Ctx, since: Option<&str>) -> Result<(), Failure> {
    let since = since
        .map(|s| {
            Timestamp::parse_rfc3339(s).ok_or_else(|| {
                invalid("--since must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
            })
        })
        .transpose()?;
    let (_, identity) = ctx.unlock()?;
    organisation_only(identity.role, "keeps a log of its staff's emergency uses")?;
    let vault = ctx.vault()?;
    let mut lines: Vec<(Timestamp, Value, String)> = vault
        .local_items(Kind::IgUse.prefix())?
        .into_iter()
        .filter_map(|(_, v)| IgUseItem::from_json(std::str::from_utf8(&v).ok()?).ok())
        // Each entry was signed here; one that no longer verifies is not shown as a use.
        .filter_map(|item| use_line(&item))
        .filter(|(at, _, _)| since.is_none_or(|s| *at >= s))
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.0));
    ctx.print(
        json!({"uses": lines.iter().map(|(_, j, _)| j.clone()).collect::<Vec<_>>()}),
        || {
            if lines.is_empty() {
                return "No emergency uses logged.".to_string();
            }
            lines
                .iter()
                .map(|(_, _, w)| w.clone())
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(())
}
