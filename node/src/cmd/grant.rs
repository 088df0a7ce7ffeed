//! `hearth grant` (issue, list, show, verify, revoke, delegate) and `hearth accept` (issue
//! #3). Grants travel as text (`HEARTH1G…`), files or QR codes; the network carries them later.
//!
//! Where things are kept is [`hearth_core::ledger`]'s concern: the grants and revocations of
//! a patient's record, and a grantee's held grants, each read and written through its typed
//! queries.

use crate::app::addresses::{grant_addresses, learn_addresses};
use crate::app::grants::{
    created_words, learnt_revocations, names, own_record, record_grant, refusal,
};
use crate::app::parse::{
    parse_ability, parse_expires, parse_peer, parse_recipient, parse_spec, when_words,
};
use crate::app::timeline::ledger_timeline;
use crate::app::token::emit_token;
use crate::app::{Ctx, invalid, now, os_rng, refused};
use crate::fail::{Failure, code};
use clap::{Args, Subcommand};
use hearth_core::grant::{self, Access, Grant, GrantId, GrantSpec, Purpose, Rights, interop};
use hearth_core::ledger::IssuedGrant;
use hearth_core::time::Timestamp;
use serde_json::{Value, json};
use std::path::PathBuf;

/// `hearth grant …`: issue (with --to), or a subcommand.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GrantArgs {
    /// list, show, verify.
    #[command(subcommand)]
    pub cmd: Option<GrantCommand>,
    /// Who: a peer id, or a contact card (HEARTH1I…) so the grant carries the keys.
    #[arg(long, value_name = "PEER")]
    pub to: Option<String>,
    /// Which sections: `class[:label]`, comma-separated; `class:*` for every label.
    #[arg(long, value_name = "SPEC")]
    pub sections: Option<String>,
    /// read or append.
    #[arg(long)]
    pub ability: Option<String>,
    /// Why: direct-care (default), social-care, emergency, research, planning.
    #[arg(long, default_value = "direct-care")]
    pub purpose: String,
    /// For how long: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years. Mandatory; the end is shown.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// How many further delegations the holder may make (0: none; 1: an organisation may
    /// delegate to its staff).
    #[arg(long, default_value_t = 0)]
    pub depth: u8,
    /// Make them your proxy (a carer, parent or attorney): they read the sections named
    /// (--ability defaults to read), and everything they do shows as theirs in your audit.
    #[arg(long, conflicts_with_all = ["purpose", "depth"])]
    pub proxy: bool,
    /// With --proxy: they may also approve or deny access requests on your behalf, granting
    /// at most what their proxy grant covers, never beyond its end.
    #[arg(long, requires = "proxy")]
    pub answers_requests: bool,
    /// Also print the token as a QR code in the terminal.
    #[arg(long)]
    pub qr: bool,
    /// Also write the token as a QR code SVG file.
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
}

/// `hearth grant list|show|verify|revoke|delegate`.
#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// The consent ledger in plain words: grants, requests, decisions, trust.
    List,
    /// One grant in full, or as FHIR Consent / SMART scopes.
    Show {
        /// The grant id (g…), or a unique prefix of it.
        id: String,
        /// Print it as a FHIR R4 Consent resource.
        #[arg(long, conflicts_with = "smart")]
        fhir: bool,
        /// Print its SMART v2 scope strings.
        #[arg(long)]
        smart: bool,
    },
    /// Check a grant: exit 0 and the rights if valid, non-zero and the reason if not.
    Verify {
        /// The grant's text form.
        token: String,
        /// Check as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339_TIME")]
        at: Option<String>,
    },
    /// Revoke a grant you issued (patient): holders are refused from now on.
    Revoke {
        /// The grant id.
        id: String,
    },
    /// Delegate part of a grant you hold to someone else (an organisation to its staff).
    Delegate {
        /// The grant id held (g…).
        id: String,
        /// Who.
        #[arg(long, value_name = "PEER")]
        to: String,
        /// Which sections (within the held grant).
        #[arg(long, value_name = "SPEC")]
        sections: String,
        /// read or append (within the held grant).
        #[arg(long)]
        ability: String,
        /// For how long (within the held grant): a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: String,
    },
}

/// `hearth grant …`.
pub fn grant(ctx: &Ctx, args: GrantArgs) -> Result<(), Failure> {
    match args.cmd {
        Some(GrantCommand::List) => list(ctx),
        Some(GrantCommand::Show { id, fhir, smart }) => show(ctx, &id, fhir, smart),
        Some(GrantCommand::Verify { token, at }) => verify(ctx, &token, at.as_deref()),
        Some(GrantCommand::Revoke { id }) => revoke(ctx, &id),
        Some(GrantCommand::Delegate {
            id,
            to,
            sections,
            ability,
            expires,
        }) => delegate(ctx, &id, &to, &sections, &ability, &expires),
        None => issue(ctx, args),
    }
}

fn issue(ctx: &Ctx, args: GrantArgs) -> Result<(), Failure> {
    let missing = |f: &str| {
        Failure::new(
            2,
            format!(
                "hearth grant needs {f} (or a subcommand: list, show, verify, revoke, delegate)"
            ),
        )
    };
    let (audience, card) = parse_recipient(args.to.as_deref().ok_or_else(|| missing("--to"))?)?;
    // Keys travel in the grant: to the agreement key the card certifies, or, for a bare peer
    // id, to the X25519 form of that device key, so the grantee reads through a relay while
    // this node is offline (THREAT_MODEL.md, "A grant to a bare peer id"). Checked before
    // anything is written.
    let recipient = match &card {
        Some(c) => c.body().agreement.into_array(),
        None => audience.device_agreement().map_err(|_| {
            invalid("--to: that peer id is not a usable device key (no keys can be wrapped to it)")
        })?,
    };
    let spec = parse_spec(
        args.sections
            .as_deref()
            .ok_or_else(|| missing("--sections"))?,
    )?;
    let ability = parse_ability(match (&args.ability, args.proxy) {
        (Some(a), _) => a.as_str(),
        (None, true) => "read",
        (None, false) => return Err(missing("--ability")),
    })?;
    let expires_arg = args
        .expires
        .as_deref()
        .ok_or_else(|| missing("--expires (grants always expire)"))?;
    // Checked before the passphrase is asked for; counted from the issuing time below.
    parse_expires(expires_arg, now())?;
    let (purpose, depth) = if args.proxy {
        (Purpose::Proxy, u8::from(args.answers_requests))
    } else {
        (args.purpose.parse().map_err(invalid)?, args.depth)
    };
    if depth > grant::MAX_DEPTH {
        return Err(invalid(format!("--depth is at most {}", grant::MAX_DEPTH)));
    }
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    let mut rng = os_rng();
    let t = now();
    let mut gspec = GrantSpec::new(audience, spec, ability, t, parse_expires(expires_arg, t)?);
    gspec.purpose = purpose;
    gspec.depth = depth;
    gspec.addresses = grant_addresses(ctx, &vault, &rec, &identity.peer(), t);
    // The grant is checked whole (a trial issue, keys aside) before any section is made; then
    // sections they may add to are made if the record has none yet (only this device can).
    Grant::issue_root(&identity, gspec.clone(), &[], &mut rng).map_err(refusal)?;
    let created = rec.create_sections_for(&gspec.scopes, t, &mut rng)?;
    let keys = rec.wrap_keys_for(recipient, &gspec.scopes, &mut rng)?;
    let g = Grant::issue_root(&identity, gspec, &keys, &mut rng).map_err(refusal)?;
    let token = grant::chain_to_token(std::slice::from_ref(&g));
    let item = IssuedGrant {
        token: token.clone(),
        issued_at: t,
        audience,
        audience_name: card.as_ref().map(|c| c.body().name.clone()),
        request: None,
        keys_included: !keys.is_empty(),
    };
    record_grant(&mut rec, &g, &item, None, t, &mut rng)?;
    let id = g.id().to_string();
    let who = card
        .as_ref()
        .map_or_else(|| audience.to_string(), |c| c.body().name.clone());
    let patterns = g
        .body()
        .scopes
        .iter()
        .map(|s| s.pattern().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let keys_words = if keys.is_empty() {
        " Keys follow when their node first syncs with yours."
    } else {
        ""
    };
    let until = when_words(g.body().expires);
    let headline = if args.proxy {
        format!(
            "{who} is now your proxy until {until}: they may {} {patterns}{}. What they do shows \
             as theirs in your audit.{keys_words}{}",
            ability.as_str(),
            if args.answers_requests {
                ", and approve or deny access requests on your behalf"
            } else {
                " (they cannot answer access requests for you)"
            },
            created_words(&created)
        )
    } else {
        format!(
            "Granted {who} {} access to {patterns} for {}, until {until}.{keys_words}{}",
            ability.as_str(),
            purpose.words(),
            created_words(&created)
        )
    };
    emit_token(
        ctx,
        json!({"audience": audience, "expires": g.body().expires, "keys_included": !keys.is_empty(), "smart": interop::smart_scopes(&g), "sections_created": names(&created)}),
        &token,
        &id,
        args.qr,
        args.qr_svg.as_deref(),
        headline,
    )
}

fn verify(ctx: &Ctx, token: &str, at: Option<&str>) -> Result<(), Failure> {
    let when = match at {
        Some(a) => Timestamp::parse_rfc3339(a)
            .ok_or_else(|| invalid("--at must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z"))?,
        None => now(),
    };
    let chain = grant::chain_from_token(token).map_err(refusal)?;
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    // The patient who owns the record knows its revocations; a grantee's node learns those of
    // its own grants from the patient's node (signed by the record root) when it syncs.
    let mut revoked: Vec<GrantId> = Vec::new();
    if let Ok((info, identity)) = ctx.unlock() {
        let vault = ctx.vault()?;
        if info.record_id == Some(leaf.body().record) {
            let rec = own_record(&vault, &identity)?;
            revoked = rec.revoked_grants();
        } else {
            revoked = learnt_revocations(&vault, &leaf.body().record);
        }
    }
    let access = Access::any(leaf.body().audience);
    let rights =
        grant::verify_chain(&chain, &access, when, &|g| revoked.contains(g)).map_err(refusal)?;
    ctx.print(
        json!({"valid": true, "rights": rights_json(&rights)}),
        || rights_words(&rights),
    );
    Ok(())
}

/// `hearth accept TOKEN`.
pub fn accept(ctx: &Ctx, token: &str) -> Result<(), Failure> {
    let chain = grant::chain_from_token(token).map_err(refusal)?;
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let a = vault
        .accept_grant(&identity, &chain, now())
        .map_err(take_failure)?;
    // The patient node's addresses travel in the grant: remember them, so the node dials it.
    learn_addresses(ctx, &vault, &a.addresses)?;
    let record = a.record;
    ctx.print(
        json!({"id": a.grant.to_string(), "record_id": record, "keys": a.wraps, "rights": rights_json(&a.rights)}),
        || format!("Accepted grant {} for record {record}.\n  {}\n  {}", a.grant, rights_words(&a.rights),
            if a.wraps == 0 { "Section keys will arrive when you first sync with the patient's node." } else { "Section keys received." }),
    );
    Ok(())
}

/// The failure for a grant or request not taken in.
pub(crate) fn take_failure(e: hearth_core::record::TakeError) -> Failure {
    use hearth_core::record::TakeError;
    match e {
        TakeError::Record(r) => r.into(),
        TakeError::Grant(r) => refusal(r),
        TakeError::Request(why) => refused(format!("request refused: {why}")),
        TakeError::Refused(why) => refused(why),
        other => refused(other.to_string()),
    }
}

/// Grants issued (patient) or held (others), by id.
fn find_grant(
    ctx: &Ctx,
    id_prefix: &str,
) -> Result<(Vec<Grant>, bool, Option<Timestamp>), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut found: Vec<(Vec<Grant>, bool, Option<Timestamp>)> = Vec::new();
    if identity.record_id().is_some() {
        let mut rec = own_record(&vault, &identity)?;
        let revoked = rec.revoked_grants();
        for (gid, item) in rec.issued_grants() {
            if gid.starts_with(id_prefix)
                && let Ok(chain) = grant::chain_from_token(&item.token)
            {
                let is_revoked = chain.iter().any(|g| revoked.contains(&g.id()));
                found.push((chain, is_revoked, Some(item.issued_at)));
            }
        }
    }
    for (_, gid, chain) in vault.all_held_chains()? {
        if gid.to_string().starts_with(id_prefix) {
            let revoked = chain
                .first()
                .map(|r| learnt_revocations(&vault, &r.body().record))
                .unwrap_or_default();
            let is_revoked = chain.iter().any(|g| revoked.contains(&g.id()));
            found.push((chain, is_revoked, None));
        }
    }
    match found.len() {
        0 => Err(Failure::new(code::NOT_FOUND, "no grant with that id")),
        1 => Ok(found.remove(0)),
        _ => Err(invalid("several grants match that id; give more of it")),
    }
}

fn show(ctx: &Ctx, id: &str, fhir: bool, smart: bool) -> Result<(), Failure> {
    if id.len() < 6 {
        return Err(invalid("give at least 6 characters of the grant id"));
    }
    let (chain, revoked, issued_at) = find_grant(ctx, id)?;
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    let t = now();
    let status = grant::verify_chain(&chain, &Access::any(leaf.body().audience), t, &|_| revoked);
    let active = status.is_ok();
    if fhir {
        let consent = interop::consent(leaf, active);
        ctx.println(&serde_json::to_string_pretty(&consent).unwrap_or_default());
        return Ok(());
    }
    if smart {
        let scopes = interop::smart_scopes(leaf);
        ctx.print(
            json!({"id": leaf.id().to_string(), "smart": scopes}),
            || scopes.join(" "),
        );
        return Ok(());
    }
    let b = leaf.body();
    ctx.print(
        json!({
            "id": leaf.id().to_string(),
            "token": grant::chain_to_token(&chain),
            "issuer": b.issuer, "audience": b.audience, "record_id": b.record,
            "scopes": b.scopes.iter().map(|s| json!({"section": s.pattern().to_string(), "ability": s.ability})).collect::<Vec<_>>(),
            "not_before": b.not_before, "expires": b.expires, "depth": b.depth,
            "purpose": b.purpose, "parent": b.parent.map(|p| p.to_string()), "keys": b.keys.len(),
            "issued_at": issued_at, "status": match &status { Ok(_) => "active".to_string(), Err(e) => e.to_string() },
        }),
        || {
            let scopes: Vec<String> = b.scopes.iter().map(ToString::to_string).collect();
            format!(
                "Grant {}\n  to:       {}\n  record:   {}\n  may:      {}\n  purpose:  {}\n  valid:    {} to {}\n  delegate: {} level(s)\n  status:   {}",
                leaf.id(), b.audience, b.record, scopes.join(", "), b.purpose.words(), b.not_before, b.expires, b.depth,
                match &status { Ok(_) => "active".to_string(), Err(e) => e.to_string() },
            )
        },
    );
    Ok(())
}

fn revoke(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let (chain, revoked, _) = find_grant(ctx, id)?;
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    let gid = leaf.id();
    if revoked {
        return Err(refused("that grant is already revoked"));
    }
    if !rec.holds_root() {
        return Err(refused(
            "revoke from the device holding your record's root key: it also moves the sections \
             to new keys",
        ));
    }
    // Signed by the record root, so the patient's nodes can hand it to the grantee when they
    // refuse it; every section the holder could read moves to a new key it never receives.
    let rekeyed = rec.revoke(leaf, now(), &mut os_rng())?;
    ctx.print(
        json!({"id": gid.to_string(), "revoked": true, "sections_rekeyed": rekeyed}),
        || {
            let keys = if rekeyed > 0 {
                format!(" {rekeyed} sections moved to new keys the holder does not get.")
            } else {
                String::new()
            };
            format!(
                "Revoked {gid}. Its holder is refused from now on; what they already synced \
                 cannot be recalled.{keys}"
            )
        },
    );
    Ok(())
}

fn delegate(
    ctx: &Ctx,
    id: &str,
    to: &str,
    sections: &str,
    ability: &str,
    expires: &str,
) -> Result<(), Failure> {
    let (mut chain, _, _) = find_grant(ctx, id)?;
    let (_, identity) = ctx.unlock()?;
    let parent = chain
        .last()
        .cloned()
        .ok_or_else(|| invalid("empty grant"))?;
    let audience = parse_peer(to)?;
    let t = now();
    let mut spec = GrantSpec::new(
        audience,
        parse_spec(sections)?,
        parse_ability(ability)?,
        t.max(parent.body().not_before),
        parse_expires(expires, t)?,
    );
    spec.purpose = parent.body().purpose;
    let child = Grant::delegate(&parent, &identity, spec, &mut os_rng()).map_err(refusal)?;
    chain.push(child);
    grant::verify_chain(&chain, &Access::any(audience), t, &|_| false).map_err(refusal)?;
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    let token = grant::chain_to_token(&chain);
    emit_token(
        ctx,
        json!({"audience": audience, "expires": leaf.body().expires}),
        &token,
        &leaf.id().to_string(),
        false,
        None,
        format!(
            "Delegated to {audience} until {}.",
            when_words(leaf.body().expires)
        ),
    )
}

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let events = ledger_timeline(&vault, &identity, now())?;
    ctx.print(json!({"events": events.iter().map(|(t, v, _)| { let mut v = v.clone(); v["at"] = json!(t); v }).collect::<Vec<_>>()}), || {
        if events.is_empty() {
            return "No grants, requests or decisions yet.".to_string();
        }
        events.iter().map(|(t, _, s)| format!("{t}  {s}")).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

fn rights_json(r: &Rights) -> Value {
    json!({
        "record_id": r.record,
        "holder": r.holder,
        "scopes": r.scopes.iter().map(|s| json!({"section": s.pattern().to_string(), "ability": s.ability})).collect::<Vec<_>>(),
        "not_before": r.not_before,
        "expires": r.expires,
        "purpose": r.purpose,
        "depth": r.depth,
        "chain": r.chain.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn rights_words(r: &Rights) -> String {
    let scopes: Vec<String> = r.scopes.iter().map(ToString::to_string).collect();
    format!(
        "valid: {} may {} for {} until {}{}",
        r.holder,
        scopes.join(", "),
        r.purpose.words(),
        r.expires,
        if r.depth > 0 {
            format!(" (may delegate {} more level(s))", r.depth)
        } else {
            String::new()
        }
    )
}
