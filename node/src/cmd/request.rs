//! `hearth request` (a professional asks a patient for access) and `hearth requests` (the
//! patient, or the patient's proxy, lists, receives, approves or denies them; the proxy's side
//! is in [`super::proxy`]). A request travels as text
//! (`HEARTH1R…`) and carries the requester's newest organisation credential, if any.

use super::proxy;
use crate::app::addresses::grant_addresses;
use crate::app::grants::{created_words, names, own_record, record_grant, refusal};
use crate::app::parse::{DAY_MS, parse_ability, parse_expires, parse_spec, when_words};
use crate::app::token::{emit_token, token_refused};
use crate::app::{Ctx, invalid, now, os_rng, refused};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use clap::{Args, Subcommand};
use hearth_core::grant::request::{
    self, AccessRequest, Credential, RequestSpec, Verification, verify_credential,
};
use hearth_core::grant::{self, Ability, Grant, GrantSpec, Purpose, Scope};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::ledger::{Answer, DecisionItem, IssuedGrant, RelayItem};
use hearth_core::letter::LetterBody;
use hearth_core::record::{LedgerItem, OpenRecord, Vault};
use hearth_core::time::Timestamp;
use hearth_sync::relay::blind;
use hearth_sync::relay::wire::Address;
use hearth_sync::session::Local;
use serde_json::json;

/// How long a patient has to answer a request.
const ANSWER_WITHIN_MS: i64 = 14 * DAY_MS;

/// `hearth request …`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The patient's record id.
    #[arg(long, value_name = "PATIENT_ID")]
    pub to: String,
    /// Which sections.
    #[arg(long, value_name = "SPEC")]
    pub sections: String,
    /// read or append.
    #[arg(long)]
    pub ability: String,
    /// Why: direct-care, social-care, emergency, research, planning.
    #[arg(long)]
    pub purpose: String,
    /// For how long access is asked (from its approval): a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
    #[arg(long, value_name = "DURATION")]
    pub expires: String,
    /// The reason, shown to the patient.
    #[arg(long)]
    pub reason: String,
    /// Print the request as a QR code too.
    #[arg(long)]
    pub qr: bool,
    /// Leave the request at this relay (an address ending in /p2p/PEER) for the patient's
    /// node to collect, sealed so only the patient can read it; the answer comes back the same
    /// way, and an approval's grant is accepted when it arrives.
    #[arg(long, value_name = "RELAY_ADDRESS")]
    pub via: Option<String>,
}

/// `hearth requests …`.
#[derive(Subcommand, Debug)]
pub enum RequestsCommand {
    /// Receive a request (its text form, from the requester).
    Add {
        /// The request's text form (HEARTH1R…).
        token: String,
    },
    /// Approve: issues a grant, possibly narrower than asked.
    Approve {
        /// The request id (q…), or a unique prefix.
        id: String,
        /// Grant fewer sections than asked.
        #[arg(long, value_name = "SPEC")]
        sections: Option<String>,
        /// Grant for less time than asked: a number and s, m (minutes), h, d, w, mo (months) or y (years), e.g. 30d or 6mo; at most five years.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Deny.
    Deny {
        /// The request id.
        id: String,
        /// Why (kept in your ledger).
        #[arg(long)]
        reason: Option<String>,
    },
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
    if let Some(via) = &args.via {
        return leave_at_relay(ctx, &vault, &identity, record, via, &req, token, until);
    }
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
    let t = now();
    // A node may answer for the patient's own record, and as a proxy for others' records.
    let own = identity.record_id();
    let as_proxy = match &cmd {
        None => None,
        Some(RequestsCommand::Add { token }) => {
            // Checked before anything is touched: a malformed token is the sender's fault.
            let req = AccessRequest::from_token(token).map_err(|e| token_refused("request", e))?;
            Some(Some(req.body().record) != own)
        }
        Some(RequestsCommand::Approve { id, .. } | RequestsCommand::Deny { id, .. }) => {
            let mine = match own {
                Some(_) => {
                    let mut rec = own_record(&vault, &identity)?;
                    !matches!(find_request(&mut rec, id), Err(f) if f.code == code::NOT_FOUND)
                }
                None => false,
            };
            Some(!mine)
        }
    };
    if as_proxy == Some(true) {
        return proxy::requests(ctx, &vault, &identity, cmd, t);
    }
    if own.is_none() {
        // Listing on a node without a record of its own: only what it holds as a proxy.
        return proxy::requests(ctx, &vault, &identity, None, t);
    }
    let mut rec = own_record(&vault, &identity)?;
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
                let who = verify_credential(
                    req.credential().as_ref(),
                    &req.body().requester.peer,
                    &trusted,
                    t,
                );
                pending.push(Pending::new(rid, req, who, item.received_at, None, t));
            }
            pending.extend(proxy::pending(&vault, t)?);
            print_pending(ctx, &pending);
        }
        Some(RequestsCommand::Add { token }) => {
            let (rid, req) = rec
                .receive_request(&token, t, &mut rng)
                .map_err(crate::cmd::grant::take_failure)?;
            let who = verify_credential(
                req.credential().as_ref(),
                &req.body().requester.peer,
                &rec.trusted_orgs(),
                t,
            );
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
            let (scopes, duration) = narrowed(&req, sections.as_deref(), expires.as_deref(), t)?;
            let spec = GrantSpec {
                audience: b.requester.peer,
                scopes,
                not_before: t,
                expires: t.saturating_add_millis(duration),
                depth: 0,
                purpose: b.purpose,
                addresses: grant_addresses(ctx, &vault, &rec, &identity.peer(), t),
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
                by: None,
            };
            record_grant(&mut rec, &g, &item, Some((&rid, &decision)), t, &mut rng)?;
            // The grant also goes back through the record's relays, sealed to the requester.
            let relays = rec.relays(t);
            send_grant(&vault, &identity, &relays, &req, &token)?;
            emit_token(
                ctx,
                json!({"request": rid, "audience": b.requester.peer, "expires": g.body().expires, "sections_created": names(&created)}),
                &token,
                &gid,
                false,
                None,
                format!(
                    "Approved {rid}: {} may {} until {}.{} {}",
                    b.requester.name,
                    g.body()
                        .scopes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    when_words(g.body().expires),
                    created_words(&created),
                    if relays.is_empty() {
                        "Give them this grant (hearth accept TOKEN)."
                    } else {
                        "It goes back to them through your relays (sealed to them); this text form works too."
                    }
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
                by: None,
            };
            rec.put_ledger(&[LedgerItem::Decision(&rid, &decision)], t, &mut rng)?;
            ctx.print(json!({"id": rid, "denied": true}), || {
                format!("Denied {rid} from {}.", req.body().requester.name)
            });
        }
    }
    Ok(())
}

/// A request waiting for an answer, as `hearth requests` lists it.
pub(crate) struct Pending {
    rid: String,
    req: AccessRequest,
    who: Verification,
    lapsed: bool,
    received_at: Timestamp,
    /// The patient's record, when this node is their proxy (not the patient).
    for_record: Option<RecordId>,
}

impl Pending {
    pub(crate) fn new(
        rid: String,
        req: AccessRequest,
        who: Verification,
        received_at: Timestamp,
        for_record: Option<RecordId>,
        t: Timestamp,
    ) -> Pending {
        let lapsed = req.check_open(t).is_err();
        Pending {
            rid,
            req,
            who,
            lapsed,
            received_at,
            for_record,
        }
    }
}

/// Prints the pending requests.
pub(crate) fn print_pending(ctx: &Ctx, pending: &[Pending]) {
    ctx.print(
        json!({"pending": pending.iter().map(|p| { let r = &p.req; json!({
            "id": p.rid, "from": r.body().requester.peer, "name": r.body().requester.name, "identity": p.who,
            "scopes": r.body().scopes.iter().map(|s| json!({"section": s.pattern().to_string(), "ability": s.ability})).collect::<Vec<_>>(),
            "purpose": r.body().purpose, "duration_days": r.body().duration_ms / DAY_MS, "reason": r.body().reason,
            "received_at": p.received_at, "answer_by": r.body().answer_by, "lapsed": p.lapsed,
            "record_id": r.body().record, "as_proxy": p.for_record.is_some(),
        })}).collect::<Vec<_>>()}),
        || {
            if pending.is_empty() {
                return "No pending requests.".to_string();
            }
            pending
                .iter()
                .map(|p| {
                    let b = p.req.body();
                    let scopes: Vec<String> = b.scopes.iter().map(ToString::to_string).collect();
                    let proxy = p.for_record.map_or_else(String::new, |r| {
                        format!("\n  for:     record {r}, whose proxy you are")
                    });
                    format!(
                        "{}{}{proxy}\n  from:    {} — {}\n  asks:    {} for {}, {} days\n  reason:  {}",
                        p.rid,
                        if p.lapsed { "  [lapsed]" } else { "" },
                        b.requester.name,
                        p.who.words(),
                        scopes.join(", "),
                        b.purpose.words(),
                        b.duration_ms / DAY_MS,
                        b.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
}

/// What an approval grants of `req`: the scopes asked, or `sections` (each within what was
/// asked), and the duration asked, or the shorter `expires` counted from `t`.
pub(crate) fn narrowed(
    req: &AccessRequest,
    sections: Option<&str>,
    expires: Option<&str>,
    t: Timestamp,
) -> Result<(Vec<Scope>, i64), Failure> {
    let b = req.body();
    let ability = b
        .scopes
        .iter()
        .map(|s| s.ability)
        .max()
        .unwrap_or(Ability::Read);
    // Narrower sections: each pattern given must lie within what was asked.
    let scopes = match sections {
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
    let duration = match expires {
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
    Ok((scopes, duration))
}

/// Sends a grant answering `req` back through `relays`, sealed to the requester.
pub(crate) fn send_grant(
    vault: &Vault<SledStore>,
    identity: &Identity,
    relays: &[(PeerKey, RelayItem)],
    req: &AccessRequest,
    token: &str,
) -> Result<(), Failure> {
    let b = req.body();
    let local = Local::new(vault, identity);
    for (relay, _) in relays {
        local
            .send_letter(
                relay,
                Address::Peer(b.requester.peer),
                &b.requester.agreement.into_array(),
                &LetterBody::Grant(token.to_string()),
                &mut os_rng(),
            )
            .map_err(|e| Failure::new(code::IO, e.to_string()))?;
    }
    Ok(())
}

/// `hearth request --via RELAY`: the request sealed to the record's inbox, left in the outbox
/// for that relay (sent with the next round with it), and the relay remembered as where the
/// answer will come.
#[allow(clippy::too_many_arguments)]
fn leave_at_relay(
    ctx: &Ctx,
    vault: &hearth_core::record::Vault<SledStore>,
    identity: &hearth_core::keys::Identity,
    record: RecordId,
    via: &str,
    req: &AccessRequest,
    token: String,
    until: hearth_core::time::Timestamp,
) -> Result<(), Failure> {
    let (addr, relay) = crate::cmd::relay::relay_peer(via)?;
    let inbox = hearth_core::letter::record_inbox(&record)
        .ok_or_else(|| invalid("--to: not a record id a letter can be sealed to"))?;
    let local = Local::new(vault, identity);
    let io = |e: hearth_sync::session::SyncError| Failure::new(code::IO, e.to_string());
    local
        .send_letter(
            &relay,
            Address::Record(blind(&record, &relay)),
            &inbox,
            &LetterBody::Request(token),
            &mut os_rng(),
        )
        .map_err(io)?;
    let mut addrs = vault.peer_addrs(&relay)?;
    addrs.put_first(addr.to_string());
    vault.set_peer_addrs(&relay, &addrs)?;
    local.asked_at(&record, &relay, &addrs).map_err(io)?;
    let id = req.short_id('q');
    ctx.print(
        json!({"record_id": record, "id": id, "via": relay, "expires": until}),
        || {
            format!(
                "Access request {id} for record {record} left at relay {relay}, sealed so only the patient can read it.\nThe patient's node collects it when it next reaches the relay; an approval comes back the same way and is accepted when it arrives (`hearth patients` shows it)."
            )
        },
    );
    Ok(())
}
