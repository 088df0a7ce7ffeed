//! Grant, request, credential and trust commands (issue #3). Grants and requests travel as
//! text (`HEARTH1…`), files or QR codes; the network carries them later.
//!
//! Where things are kept is [`hearth_core::ledger`]'s concern: the grants, revocations,
//! requests, decisions and trusted organisations of a patient's record, and a professional's
//! held grants and credentials, each read and written through its typed queries.

use crate::cli::{
    CredentialCommand, GrantArgs, GrantCommand, OrgCommand, RequestArgs, RequestsCommand,
    TrustCommand,
};
use crate::commands::{Ctx, now, os_rng};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use hearth_core::grant::request::{
    self, AccessRequest, Card, Credential, RequestSpec, verify_credential,
};
use hearth_core::grant::{
    self, Ability, Access, Grant, GrantId, GrantSpec, Purpose, Refusal, Rights, interop,
};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::{Identity, Role};
use hearth_core::ledger::{Answer, DecisionItem, IssuedGrant, RequestItem, TrustItem};
use hearth_core::record::{AuthItem, LedgerItem, OpenRecord, Vault};
use hearth_core::section::{SectionName, SectionSpec};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;
/// How long a patient has to answer a request.
const ANSWER_WITHIN_MS: i64 = 14 * DAY_MS;

fn invalid(msg: impl ToString) -> Failure {
    Failure::new(code::INVALID, msg)
}

fn refused(msg: impl ToString) -> Failure {
    Failure::new(code::REFUSED, msg)
}

/// The one parser of `--expires`: a number and a unit, `s`, `m` (minutes), `h`, `d`, `w`, or
/// the calendar units `mo` (months) and `y` (years), counted from `from` in UTC (a month from
/// 31 January is the last day of February). Returns the end; at most five years after `from`.
pub fn parse_expires(s: &str, from: Timestamp) -> Result<Timestamp, Failure> {
    let s = s.trim();
    let bad = || {
        invalid(format!(
            "duration '{}': use a number and s, m (minutes), h, d, w, mo (months) or y (years), \
             e.g. 30d or 6mo",
            s.chars().take(20).collect::<String>()
        ))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(invalid("a duration must be positive"));
    }
    let fixed = |unit_ms: i64| n.checked_mul(unit_ms).ok_or_else(bad);
    let end = match unit {
        "s" => from.saturating_add_millis(fixed(1_000)?),
        "m" => from.saturating_add_millis(fixed(60_000)?),
        "h" => from.saturating_add_millis(fixed(3_600_000)?),
        "d" => from.saturating_add_millis(fixed(DAY_MS)?),
        "w" => from.saturating_add_millis(fixed(7 * DAY_MS)?),
        "mo" | "y" => {
            // Beyond five years is refused below; a bound here keeps the arithmetic in range.
            let months = if unit == "y" { n.saturating_mul(12) } else { n };
            let months = months.min(12 * 6);
            let start = jiff::Timestamp::from_millisecond(from.as_millis())
                .map_err(|_| invalid("the current time is out of range"))?
                .to_zoned(jiff::tz::TimeZone::UTC);
            let span = jiff::Span::new().try_months(months).map_err(|_| bad())?;
            let end = start.checked_add(span).map_err(|_| bad())?;
            Timestamp::from_millis(end.timestamp().as_millisecond())
        }
        _ => return Err(bad()),
    };
    if end.as_millis().saturating_sub(from.as_millis()) > grant::MAX_VALIDITY_MS {
        return Err(invalid("a duration may be five years at most"));
    }
    Ok(end)
}

/// An end time in plain words, e.g. `Thursday 3 June 2027 at 09:15 UTC`.
pub fn when_words(t: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.as_millis()) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%A %-d %B %Y at %H:%M UTC")
            .to_string(),
        Err(_) => t.to_string(),
    }
}

fn parse_spec(s: &str) -> Result<SectionSpec, Failure> {
    s.parse::<SectionSpec>()
        .map_err(|e| invalid(format!("--sections: {e}")))
}

fn parse_ability(s: &str) -> Result<Ability, Failure> {
    let a: Ability = s.parse().map_err(invalid)?;
    if !matches!(a, Ability::Read | Ability::Append) {
        return Err(invalid("--ability must be read or append"));
    }
    Ok(a)
}

/// Parses a peer id, refusing keys that are not valid ed25519 points.
pub fn parse_peer(s: &str) -> Result<PeerKey, Failure> {
    let p: PeerKey = s
        .trim()
        .parse()
        .map_err(|e| invalid(format!("peer id: {e}")))?;
    p.verifying_key()
        .map_err(|_| invalid("peer id: not a valid ed25519 key"))?;
    Ok(p)
}

/// A peer id, or a contact card (which also gives the agreement key).
pub fn parse_recipient(s: &str) -> Result<(PeerKey, Option<Card>), Failure> {
    if s.trim().to_ascii_uppercase().starts_with("HEARTH1I") {
        let card =
            Card::from_token(s).map_err(|e| invalid(format!("contact card refused: {e}")))?;
        Ok((card.body().peer, Some(card)))
    } else {
        Ok((parse_peer(s)?, None))
    }
}

fn refusal(e: Refusal) -> Failure {
    let c = match e {
        Refusal::Malformed(_) => code::INVALID,
        _ => code::REFUSED,
    };
    Failure::new(c, format!("grant refused: {e}"))
}

fn print_qr(token: &str) -> Result<String, Failure> {
    let code = qrcode::QrCode::new(token.as_bytes())
        .map_err(|e| Failure::new(code::IO, format!("cannot make a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

fn write_qr_svg(token: &str, path: &std::path::Path) -> Result<(), Failure> {
    let code = qrcode::QrCode::new(token.as_bytes())
        .map_err(|e| Failure::new(code::IO, format!("cannot make a QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(300, 300)
        .build();
    crate::home::atomic_write(path, svg.as_bytes())
}

/// Prints a token (and its QR forms when asked) with extra JSON fields.
fn emit_token(
    ctx: &Ctx,
    mut json: Value,
    token: &str,
    id: &str,
    qr: bool,
    qr_svg: Option<&std::path::Path>,
    headline: String,
) -> Result<(), Failure> {
    if let Some(p) = qr_svg {
        write_qr_svg(token, p)?;
    }
    let qr_text = if qr { Some(print_qr(token)?) } else { None };
    json["id"] = json!(id);
    json["token"] = json!(token);
    ctx.print(json, || {
        let mut s = format!("{headline}\n  id:    {id}\n  token: {token}");
        if let Some(q) = &qr_text {
            s.push('\n');
            s.push_str(q);
        }
        s
    });
    Ok(())
}

/// The patient's own record, opened.
fn own_record<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
) -> Result<OpenRecord<'v, SledStore>, Failure> {
    let rid = identity
        .record_id()
        .ok_or_else(|| refused("only a patient node has a record to grant access to"))?;
    Ok(vault.open_record(identity, &rid)?)
}

/// Records an issued grant: the chain in the auth document (so holders of the record can check
/// each other's authority, and relays can enforce it), and the details (who, why, which
/// request) in the private ledger, with an optional extra ledger item (the decision).
fn record_grant(
    rec: &mut OpenRecord<'_, SledStore>,
    g: &Grant,
    item: &IssuedGrant,
    decision: Option<(&str, &DecisionItem)>,
    t: Timestamp,
    rng: &mut crate::commands::Rng,
) -> Result<(), Failure> {
    let gid = g.id();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], t, rng)?;
    let mut items = vec![LedgerItem::Grant(&gid, item)];
    items.extend(decision.map(|(rid, d)| LedgerItem::Decision(rid, d)));
    rec.put_ledger(&items, t, rng)?;
    Ok(())
}

/// The grants of `record` this (grantee's) node learnt were revoked: revocations signed by the
/// record root, received from the patient's node when it refused this node.
pub fn learnt_revocations(vault: &Vault<SledStore>, record: &RecordId) -> Vec<GrantId> {
    vault
        .learnt_revocations(record)
        .into_iter()
        .map(|r| r.grant)
        .collect()
}

/// The state of a grant chain this node holds, by the local clock: `active`, `revoked`,
/// `expired`, or why it is not valid.
pub fn held_state(
    vault: &Vault<SledStore>,
    holder: &PeerKey,
    chain: &[Grant],
    t: Timestamp,
) -> String {
    let Some(root) = chain.first() else {
        return "empty grant".to_string();
    };
    let revoked = learnt_revocations(vault, &root.body().record);
    match grant::verify_chain(chain, &Access::any(*holder), t, &|x| revoked.contains(x)) {
        Ok(_) => "active".to_string(),
        Err(Refusal::Revoked { .. }) => "revoked".to_string(),
        Err(Refusal::Expired { .. }) => "expired".to_string(),
        Err(e) => e.to_string(),
    }
}

/// The grants this node holds for `record`: (id, state by [`held_state`]).
pub fn held_grants(
    vault: &Vault<SledStore>,
    holder: &PeerKey,
    record: &RecordId,
    t: Timestamp,
) -> Vec<(GrantId, String)> {
    vault
        .held_chains(record)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.last()?.id(), held_state(vault, holder, &c, t))))
        .collect()
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

/// `hearth id --card`.
pub fn card(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let card = request::card(&identity).map_err(|e| invalid(e.to_string()))?;
    let token = card.to_token();
    ctx.print(json!({"peer_id": identity.peer(), "card": token}), || {
        token.clone()
    });
    Ok(())
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
    let spec = parse_spec(
        args.sections
            .as_deref()
            .ok_or_else(|| missing("--sections"))?,
    )?;
    let ability = parse_ability(
        args.ability
            .as_deref()
            .ok_or_else(|| missing("--ability"))?,
    )?;
    let expires_arg = args
        .expires
        .as_deref()
        .ok_or_else(|| missing("--expires (grants always expire)"))?;
    // Checked before the passphrase is asked for; counted from the issuing time below.
    parse_expires(expires_arg, now())?;
    let purpose: Purpose = args.purpose.parse().map_err(invalid)?;
    if args.depth > grant::MAX_DEPTH {
        return Err(invalid(format!("--depth is at most {}", grant::MAX_DEPTH)));
    }
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    let mut rng = os_rng();
    let t = now();
    let mut gspec = GrantSpec::new(audience, spec, ability, t, parse_expires(expires_arg, t)?);
    gspec.purpose = purpose;
    gspec.depth = args.depth;
    gspec.addresses = crate::net_cmd::own_addresses(ctx, &vault, &identity.peer());
    // The grant is checked whole (a trial issue, keys aside) before any section is made; then
    // sections they may add to are made if the record has none yet (only this device can).
    Grant::issue_root(&identity, gspec.clone(), &[], &mut rng).map_err(refusal)?;
    let created = rec.create_sections_for(&gspec.scopes, t, &mut rng)?;
    let keys = match &card {
        Some(c) => rec.wrap_keys_for(c.body().agreement.into_array(), &gspec.scopes, &mut rng)?,
        None => Vec::new(),
    };
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
    emit_token(
        ctx,
        json!({"audience": audience, "expires": g.body().expires, "keys_included": !keys.is_empty(), "smart": interop::smart_scopes(&g), "sections_created": names(&created)}),
        &token,
        &id,
        args.qr,
        args.qr_svg.as_deref(),
        format!(
            "Granted {} {} access to {} for {}, until {}.{}{}",
            card.as_ref()
                .map_or_else(|| audience.to_string(), |c| c.body().name.clone()),
            ability.as_str(),
            g.body()
                .scopes
                .iter()
                .map(|s| s.pattern().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            purpose.words(),
            when_words(g.body().expires),
            if keys.is_empty() {
                " Keys follow when their node first syncs with yours."
            } else {
                ""
            },
            created_words(&created)
        ),
    )
}

/// Section names as text, for JSON.
fn names(sections: &[SectionName]) -> Vec<String> {
    sections.iter().map(ToString::to_string).collect()
}

/// " Created the empty sections …" when a grant made sections, else nothing.
fn created_words(created: &[SectionName]) -> String {
    if created.is_empty() {
        return String::new();
    }
    format!(
        " Created the empty section{} {} for them to add to.",
        if created.len() == 1 { "" } else { "s" },
        names(created).join(", ")
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
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    let record = leaf.body().record;
    if identity.record_id() == Some(record) {
        return Err(refused("this grant is for your own record"));
    }
    let rights = grant::verify_chain(&chain, &Access::any(identity.peer()), now(), &|_| false)
        .map_err(refusal)?;
    let vault = ctx.vault()?;
    if vault.holds_grant(&record, &leaf.id())? {
        return Err(refused(
            "this grant was already accepted (a replay changes nothing)",
        ));
    }
    let mine = identity.agreement_public();
    let wraps: Vec<_> = leaf
        .body()
        .keys
        .iter()
        .filter(|w| w.recipient.into_array() == mine)
        .cloned()
        .collect();
    vault.register_replica(&record, &wraps, now())?;
    vault.hold_grant(&record, &chain)?;
    // The patient node's addresses travel in the grant: remember them, so the node dials it.
    let addresses: Vec<String> = chain
        .iter()
        .flat_map(|g| g.body().addresses.iter().cloned())
        .collect();
    crate::net_cmd::learn_addresses(ctx, &vault, &addresses)?;
    ctx.print(
        json!({"id": leaf.id().to_string(), "record_id": record, "keys": wraps.len(), "rights": rights_json(&rights)}),
        || format!("Accepted grant {} for record {record}.\n  {}\n  {}", leaf.id(), rights_words(&rights),
            if wraps.is_empty() { "Section keys will arrive when you first sync with the patient's node." } else { "Section keys received." }),
    );
    Ok(())
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
    let gid = chain
        .last()
        .map(Grant::id)
        .ok_or_else(|| invalid("empty grant"))?;
    if revoked {
        return Err(refused("that grant is already revoked"));
    }
    if !rec.holds_root() {
        return Err(refused(
            "revoke from the device holding your record's root key: it also moves the sections \
             to new keys",
        ));
    }
    let t = now();
    let mut rng = os_rng();
    // Signed by the record root, so the patient's nodes can hand it to the grantee when they
    // refuse it, and the grantee's node can check it.
    let signed = grant::Revocation::sign(&identity, gid, t).map_err(refusal)?;
    rec.put_auth(vec![AuthItem::Revoke(signed)], t, &mut rng)?;
    // Every section the holder could read moves to a new key it never receives (and the auth
    // document with them).
    let leaf = chain.last().ok_or_else(|| invalid("empty grant"))?;
    let mut readable: Vec<SectionId> = rec
        .directory()
        .iter()
        .filter(|(_, n)| {
            leaf.body()
                .scopes
                .iter()
                .any(|s| s.allows(n, Ability::Read))
        })
        .map(|(s, _)| *s)
        .collect();
    let rekeyed = if readable.is_empty() {
        0
    } else {
        readable.push(SectionId::AUTH);
        rec.rotate_keys(&readable, t, &mut rng)?
    };
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
    let t = now();
    let mut events: Vec<(Timestamp, Value, String)> = Vec::new();
    if identity.record_id().is_some() {
        let mut rec = own_record(&vault, &identity)?;
        let revoked = rec.revoked_grants();
        let revoked_at: std::collections::HashMap<String, Timestamp> = rec
            .revocations()
            .into_iter()
            .map(|(g, item)| (g.to_string(), item.at))
            .collect();
        for (gid, item) in rec.issued_grants() {
            let Ok(chain) = grant::chain_from_token(&item.token) else {
                continue;
            };
            let Some(g) = chain.last() else { continue };
            let state =
                match grant::verify_chain(&chain, &Access::any(g.body().audience), t, &|x| {
                    revoked.contains(x)
                }) {
                    Ok(_) => "active".to_string(),
                    Err(Refusal::Revoked { .. }) => "revoked".to_string(),
                    Err(Refusal::Expired { .. }) => "expired".to_string(),
                    Err(e) => e.to_string(),
                };
            let who = item
                .audience_name
                .clone()
                .unwrap_or_else(|| item.audience.to_string());
            let scopes: Vec<String> = g.body().scopes.iter().map(ToString::to_string).collect();
            events.push((item.issued_at, json!({"event": "granted", "id": gid, "to": item.audience, "to_name": item.audience_name, "scopes": scopes, "purpose": g.body().purpose, "expires": g.body().expires, "status": state, "request": item.request}),
                format!("granted {who} {} for {} until {} [{state}] ({gid})", scopes.join(", "), g.body().purpose.words(), g.body().expires)));
            if let Some(at) = revoked_at.get(&gid) {
                events.push((
                    *at,
                    json!({"event": "revoked", "id": gid}),
                    format!("revoked the grant to {who} ({gid})"),
                ));
            }
        }
        let trusted = rec.trusted_orgs();
        for (rid, item) in rec.requests() {
            let Ok(req) = AccessRequest::from_token(&item.token) else {
                continue;
            };
            let who = verify_credential(
                req.credential().as_ref(),
                &req.body().requester.peer,
                &trusted,
                t,
            );
            let name = req.body().requester.name.clone();
            let scopes: Vec<String> = req.body().scopes.iter().map(ToString::to_string).collect();
            events.push((item.received_at, json!({"event": "request", "id": rid, "from": req.body().requester.peer, "from_name": name, "identity": who, "scopes": scopes, "purpose": req.body().purpose, "reason": req.body().reason}),
                format!("{name} ({}) asked for {} for {} ({rid})", who.words(), scopes.join(", "), req.body().purpose.words())));
        }
        for (rid, d) in rec.decisions() {
            events.push((
                d.at,
                json!({"event": d.decision.as_str(), "request": rid, "grant": d.grant, "reason": d.reason}),
                format!(
                    "{} request {rid}{}",
                    d.decision.as_str(),
                    d.grant
                        .as_ref()
                        .map(|g| format!(" with grant {g}"))
                        .unwrap_or_default()
                ),
            ));
        }
        for (org, item) in rec.trust_items() {
            let Some(item) = item else { continue };
            events.push((
                item.added_at,
                json!({"event": "trusted", "org": org, "name": item.name}),
                format!(
                    "trusted organisation {} ({org})",
                    item.name.clone().unwrap_or_default()
                ),
            ));
        }
        let rid = rec.id();
        events.extend(crate::extract_cmd::ledger_events(&mut rec, &rid));
        events.extend(crate::review_cmd::ledger_events(&rec));
    } else {
        for (_, _, chain) in vault.all_held_chains()? {
            let Some(g) = chain.last() else { continue };
            let state = held_state(&vault, &identity.peer(), &chain, t);
            let scopes: Vec<String> = g.body().scopes.iter().map(ToString::to_string).collect();
            events.push((g.body().not_before, json!({"event": "held", "id": g.id().to_string(), "record_id": g.body().record, "scopes": scopes, "expires": g.body().expires, "status": state}),
                format!("holding {} on record {} until {} [{state}] ({})", scopes.join(", "), g.body().record, g.body().expires, g.id())));
        }
    }
    events.sort_by_key(|(t, _, _)| *t);
    ctx.print(json!({"events": events.iter().map(|(t, v, _)| { let mut v = v.clone(); v["at"] = json!(t); v }).collect::<Vec<_>>()}), || {
        if events.is_empty() {
            return "No grants, requests or decisions yet.".to_string();
        }
        events.iter().map(|(t, _, s)| format!("{t}  {s}")).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

/// `hearth request …` (professional).
pub fn request(ctx: &Ctx, args: RequestArgs) -> Result<(), Failure> {
    let record: RecordId = args
        .to
        .trim()
        .parse()
        .map_err(|e| invalid(format!("--to: {e}")))?;
    let spec = parse_spec(&args.sections)?;
    let ability = parse_ability(&args.ability)?;
    let purpose: Purpose = args.purpose.parse().map_err(invalid)?;
    parse_expires(&args.expires, now())?;
    let (_, identity) = ctx.unlock()?;
    if identity.record_id() == Some(record) {
        return Err(refused("this is your own record"));
    }
    let vault = ctx.vault()?;
    let t = now();
    // A request asks for a length of time, counted from its approval: the calendar units are
    // counted from now, which is when access would end were it approved at once.
    let until = parse_expires(&args.expires, t)?;
    let duration = until.as_millis().saturating_sub(t.as_millis());
    // Attach the newest current credential this node holds, if any.
    let credential = vault
        .credential_tokens()?
        .iter()
        .filter_map(|t| Credential::from_token(t).ok())
        .filter(|c| c.body().subject == identity.peer() && c.body().expires > t)
        .max_by_key(|c| c.body().issued);
    let req = request::request(
        &identity,
        RequestSpec {
            record,
            scopes: grant::scopes(&spec, ability),
            purpose,
            duration_ms: duration,
            reason: args.reason.trim().to_string(),
            answer_within_ms: ANSWER_WITHIN_MS,
        },
        credential.as_ref(),
        t,
        &mut os_rng(),
    )
    .map_err(|e| invalid(format!("request: {e}")))?;
    let token = req.to_token();
    emit_token(
        ctx,
        json!({"record_id": record, "credential": credential.is_some(), "expires": until}),
        &token,
        &req.short_id('q'),
        args.qr,
        None,
        format!(
            "Access request for record {record}, for access until {} if approved now. Give this \
             to the patient (hearth requests add TOKEN).{}",
            when_words(until),
            if credential.is_none() {
                " It carries no organisation credential, so it will show as unverified."
            } else {
                ""
            }
        ),
    )
}

fn find_request(
    rec: &mut OpenRecord<'_, SledStore>,
    prefix: &str,
) -> Result<(String, AccessRequest, Option<DecisionItem>), Failure> {
    let prefix = prefix.trim();
    if prefix.len() < 6 {
        return Err(invalid("give at least 6 characters of the request id"));
    }
    let mut found = Vec::new();
    for (rid, item) in rec.request_items() {
        if !rid.starts_with(prefix) {
            continue;
        }
        let item =
            item.ok_or_else(|| Failure::new(code::INTEGRITY, "a stored request is unreadable"))?;
        let req = AccessRequest::from_token(&item.token)
            .map_err(|_| Failure::new(code::INTEGRITY, "a stored request does not verify"))?;
        let decision = rec.decision(&rid).flatten();
        found.push((rid, req, decision));
    }
    match found.len() {
        0 => Err(Failure::new(code::NOT_FOUND, "no request with that id")),
        1 => Ok(found.remove(0)),
        _ => Err(invalid("several requests match that id; give more of it")),
    }
}

/// `hearth requests …` (patient).
pub fn requests(ctx: &Ctx, cmd: Option<RequestsCommand>) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    let t = now();
    let mut rng = os_rng();
    match cmd {
        None => {
            let trusted = rec.trusted_orgs();
            let mut pending = Vec::new();
            for (rid, item) in rec.requests() {
                if rec.decision(&rid).is_some() {
                    continue;
                }
                let Ok(req) = AccessRequest::from_token(&item.token) else {
                    continue;
                };
                let expired = req.check_open(t).is_err();
                let who = verify_credential(
                    req.credential().as_ref(),
                    &req.body().requester.peer,
                    &trusted,
                    t,
                );
                pending.push((rid, req, who, expired, item.received_at));
            }
            ctx.print(
                json!({"pending": pending.iter().map(|(rid, r, who, expired, at)| json!({
                    "id": rid, "from": r.body().requester.peer, "name": r.body().requester.name, "identity": who,
                    "scopes": r.body().scopes.iter().map(|s| json!({"section": s.pattern().to_string(), "ability": s.ability})).collect::<Vec<_>>(),
                    "purpose": r.body().purpose, "duration_days": r.body().duration_ms / DAY_MS, "reason": r.body().reason,
                    "received_at": at, "answer_by": r.body().answer_by, "lapsed": expired,
                })).collect::<Vec<_>>()}),
                || {
                    if pending.is_empty() {
                        return "No pending requests.".to_string();
                    }
                    pending.iter().map(|(rid, r, who, expired, _)| {
                        let b = r.body();
                        let scopes: Vec<String> = b.scopes.iter().map(ToString::to_string).collect();
                        format!("{rid}{}\n  from:    {} — {}\n  asks:    {} for {}, {} days\n  reason:  {}",
                            if *expired { "  [lapsed]" } else { "" }, b.requester.name, who.words(), scopes.join(", "),
                            b.purpose.words(), b.duration_ms / DAY_MS, b.reason)
                    }).collect::<Vec<_>>().join("\n")
                },
            );
        }
        Some(RequestsCommand::Add { token }) => {
            let req = AccessRequest::from_token(&token).map_err(|e| {
                let c = match e {
                    request::SignedError::Malformed(_) => code::INVALID,
                    _ => code::REFUSED,
                };
                Failure::new(c, format!("request refused: {e}"))
            })?;
            if req.body().record != rec.id() {
                return Err(refused("this request is for another record"));
            }
            req.check_open(t)
                .map_err(|e| refused(format!("request refused: {e}")))?;
            let rid = req.short_id('q');
            if rec.has_request(&rid) {
                return Err(refused(
                    "this request was already received (a replay changes nothing)",
                ));
            }
            let who = verify_credential(
                req.credential().as_ref(),
                &req.body().requester.peer,
                &rec.trusted_orgs(),
                t,
            );
            let item = RequestItem {
                token,
                received_at: t,
            };
            rec.put_ledger(&[LedgerItem::Request(&rid, &item)], t, &mut rng)?;
            ctx.print(json!({"id": rid, "from": req.body().requester.peer, "identity": who}), || {
                format!("Received request {rid} from {} — {}.\nApprove with `hearth requests approve {rid}` or deny with `hearth requests deny {rid}`.", req.body().requester.name, who.words())
            });
        }
        Some(RequestsCommand::Approve {
            id,
            sections,
            expires,
        }) => {
            let (rid, req, decision) = find_request(&mut rec, &id)?;
            if decision.is_some() {
                return Err(refused("this request was already answered"));
            }
            req.check_open(t)
                .map_err(|e| refused(format!("cannot approve: {e}")))?;
            let b = req.body();
            let ability = b
                .scopes
                .iter()
                .map(|s| s.ability)
                .max()
                .unwrap_or(Ability::Read);
            // Narrower sections: each pattern given must lie within what was asked.
            let scopes = match sections.as_deref() {
                None => b.scopes.clone(),
                Some(s) => {
                    let wanted = grant::scopes(&parse_spec(s)?, ability);
                    for w in &wanted {
                        if !b.scopes.iter().any(|asked| asked.covers(w)) {
                            return Err(invalid(format!(
                                "{} was not asked for; you may only narrow a request",
                                w.pattern()
                            )));
                        }
                    }
                    wanted
                }
            };
            let duration = match expires.as_deref() {
                None => b.duration_ms,
                Some(e) => {
                    let d = parse_expires(e, t)?
                        .as_millis()
                        .saturating_sub(t.as_millis());
                    if d > b.duration_ms {
                        return Err(invalid("you may only shorten the duration asked for"));
                    }
                    d
                }
            };
            let spec = GrantSpec {
                audience: b.requester.peer,
                scopes,
                not_before: t,
                expires: t.saturating_add_millis(duration),
                depth: 0,
                purpose: b.purpose,
                addresses: crate::net_cmd::own_addresses(ctx, &vault, &identity.peer()),
            };
            // The grant is checked whole (a trial issue, keys aside) before any section is made.
            Grant::issue_root(&identity, spec.clone(), &[], &mut rng).map_err(refusal)?;
            let created = rec.create_sections_for(&spec.scopes, t, &mut rng)?;
            let keys =
                rec.wrap_keys_for(b.requester.agreement.into_array(), &spec.scopes, &mut rng)?;
            let g = Grant::issue_root(&identity, spec, &keys, &mut rng).map_err(refusal)?;
            let token = grant::chain_to_token(std::slice::from_ref(&g));
            let gid = g.id().to_string();
            let item = IssuedGrant {
                token: token.clone(),
                issued_at: t,
                audience: b.requester.peer,
                audience_name: Some(b.requester.name.clone()),
                request: Some(rid.clone()),
                keys_included: !keys.is_empty(),
            };
            let decision = DecisionItem {
                decision: Answer::Approved,
                at: t,
                grant: Some(gid.clone()),
                reason: None,
            };
            record_grant(&mut rec, &g, &item, Some((&rid, &decision)), t, &mut rng)?;
            emit_token(
                ctx,
                json!({"request": rid, "audience": b.requester.peer, "expires": g.body().expires, "sections_created": names(&created)}),
                &token,
                &gid,
                false,
                None,
                format!(
                    "Approved {rid}: {} may {} until {}.{} Give them this grant (hearth accept TOKEN).",
                    b.requester.name,
                    g.body()
                        .scopes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    when_words(g.body().expires),
                    created_words(&created)
                ),
            )?;
        }
        Some(RequestsCommand::Deny { id, reason }) => {
            let (rid, req, decision) = find_request(&mut rec, &id)?;
            if decision.is_some() {
                return Err(refused("this request was already answered"));
            }
            if let Some(r) = &reason
                && r.chars().count() > request::MAX_TEXT
            {
                return Err(invalid("the reason is too long"));
            }
            let decision = DecisionItem {
                decision: Answer::Denied,
                at: t,
                grant: None,
                reason,
            };
            rec.put_ledger(&[LedgerItem::Decision(&rid, &decision)], t, &mut rng)?;
            ctx.print(json!({"id": rid, "denied": true}), || {
                format!("Denied {rid} from {}.", req.body().requester.name)
            });
        }
    }
    Ok(())
}

/// `hearth org …` (organisation).
pub fn org(ctx: &Ctx, cmd: OrgCommand) -> Result<(), Failure> {
    let OrgCommand::Attest {
        staff,
        name,
        role,
        registration,
        org_code,
        expires,
    } = cmd;
    let staff = parse_peer(&staff)?;
    parse_expires(&expires, now())?;
    let (_, identity) = ctx.unlock()?;
    if identity.role != Role::Relay {
        return Err(refused(
            "only an organisation node (initialised with --role relay) attests staff",
        ));
    }
    let t = now();
    let cred = request::attest(
        &identity,
        staff,
        name.trim().to_string(),
        role.trim().to_string(),
        registration.trim().to_string(),
        org_code.map(|c| c.trim().to_string()),
        t,
        parse_expires(&expires, t)?,
        &mut os_rng(),
    )
    .map_err(|e| invalid(format!("credential: {e}")))?;
    let token = cred.to_token();
    emit_token(
        ctx,
        json!({"staff": staff, "expires": cred.body().expires}),
        &token,
        &cred.short_id('c'),
        false,
        None,
        format!(
            "Credential for {} ({}, {}) until {}. Give it to them (hearth credential add TOKEN).",
            cred.body().name,
            cred.body().role,
            cred.body().org_name,
            when_words(cred.body().expires)
        ),
    )
}

/// `hearth trust …` (patient).
pub fn trust(ctx: &Ctx, cmd: TrustCommand) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    match cmd {
        TrustCommand::AddOrg { org_id, name } => {
            let org = parse_peer(&org_id)?;
            if rec.trusts(&org) {
                return Err(refused("you already trust that organisation"));
            }
            let t = now();
            let item = TrustItem {
                name: name.clone(),
                added_at: t,
            };
            rec.put_ledger(&[LedgerItem::Trust(&org, &item)], t, &mut os_rng())?;
            ctx.print(json!({"org": org, "name": name}), || {
                format!("You now trust {org} to attest professionals.")
            });
        }
        TrustCommand::List => {
            let items = rec.trust_items();
            ctx.print(
                json!({"trusted": items.iter().map(|(o, i)| json!({"org": o, "name": i.as_ref().and_then(|i| i.name.clone()), "added_at": i.as_ref().map(|i| i.added_at)})).collect::<Vec<_>>()}),
                || if items.is_empty() { "You trust no organisation yet (hearth trust add-org ORG_ID).".into() } else {
                    items.iter().map(|(o, i)| format!("{o}  {}", i.as_ref().and_then(|i| i.name.clone()).unwrap_or_default())).collect::<Vec<_>>().join("\n") },
            );
        }
    }
    Ok(())
}

/// `hearth credential …` (professional).
pub fn credential(ctx: &Ctx, cmd: CredentialCommand) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    match cmd {
        CredentialCommand::Add { token } => {
            let cred = Credential::from_token(&token).map_err(|e| {
                let c = match e {
                    request::SignedError::Malformed(_) => code::INVALID,
                    _ => code::REFUSED,
                };
                Failure::new(c, format!("credential refused: {e}"))
            })?;
            if cred.body().subject != identity.peer() {
                return Err(refused("this credential names another professional"));
            }
            if cred.body().expires <= now() {
                return Err(refused("this credential has expired"));
            }
            if !vault.keep_credential(&cred.hash(), &cred.to_token())? {
                return Err(refused("this credential is already stored"));
            }
            ctx.print(json!({"id": cred.short_id('c'), "org": cred.body().org, "expires": cred.body().expires}), || {
                format!("Stored: {} ({}) attested by {} until {}.", cred.body().name, cred.body().role, cred.body().org_name, cred.body().expires)
            });
        }
        CredentialCommand::List => {
            let creds: Vec<Credential> = vault
                .credential_tokens()?
                .iter()
                .filter_map(|t| Credential::from_token(t).ok())
                .collect();
            ctx.print(
                json!({"credentials": creds.iter().map(|c| json!({"id": c.short_id('c'), "org": c.body().org, "org_name": c.body().org_name, "name": c.body().name, "role": c.body().role, "registration": c.body().registration, "expires": c.body().expires})).collect::<Vec<_>>()}),
                || if creds.is_empty() { "No credentials.".into() } else {
                    creds.iter().map(|c| format!("{} {} ({}) by {} until {}", c.short_id('c'), c.body().name, c.body().role, c.body().org_name, c.body().expires)).collect::<Vec<_>>().join("\n") },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    /// Issue #11: `--expires` took no months, and years were 365 days.
    #[test]
    fn expires_takes_calendar_months_and_years() {
        let from = at("2027-01-31T09:15:00Z");
        let cases = [
            ("90s", "2027-01-31T09:16:30Z"),
            ("45m", "2027-01-31T10:00:00Z"),
            ("12h", "2027-01-31T21:15:00Z"),
            ("30d", "2027-03-02T09:15:00Z"),
            ("2w", "2027-02-14T09:15:00Z"),
            ("1mo", "2027-02-28T09:15:00Z"),
            ("13mo", "2028-02-29T09:15:00Z"),
            ("1y", "2028-01-31T09:15:00Z"),
            ("5y", "2032-01-31T09:15:00Z"),
            (" 6mo ", "2027-07-31T09:15:00Z"),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_expires(arg, from).unwrap(), at(want), "{arg}");
        }
        let leap = at("2028-02-29T00:00:00Z");
        assert_eq!(
            parse_expires("1y", leap).unwrap(),
            at("2029-02-28T00:00:00Z")
        );
        for bad in [
            "6y",
            "61mo",
            "0d",
            "0mo",
            "-1d",
            "mo",
            "1",
            "1x",
            "1 mo",
            "1M",
            "1yr",
            "",
            "99999999999999999999d",
            "9223372036854775807y",
        ] {
            assert!(parse_expires(bad, from).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_end_in_plain_words() {
        assert_eq!(
            when_words(at("2027-06-03T09:05:00Z")),
            "Thursday 3 June 2027 at 09:05 UTC"
        );
    }
}
