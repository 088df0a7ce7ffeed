//! The proxy's side of `hearth requests`: a carer, parent or attorney the patient made their
//! proxy, with the power to answer requests, receives, lists, approves and denies access
//! requests for the patient's record (see [`hearth_core::grant::proxy`]). Every answer is in
//! the proxy's audit journal before it is shown, and reaches the patient at the next sync.

use super::request::{Pending, RequestsCommand, narrowed, print_pending, send_grant};
use crate::app::grants::refusal;
use crate::app::parse::when_words;
use crate::app::token::emit_token;
use crate::app::{Ctx, invalid, os_rng, refused};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use hearth_core::grant::request::{AccessRequest, Verification, verify_credential};
use hearth_core::grant::{self, Grant, proxy};
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::ledger::{Answer, DecisionItem, ProxyRequestItem};
use hearth_core::record::{TakeError, Vault};
use hearth_core::time::Timestamp;
use serde_json::json;

/// `hearth requests …` for the records this node is the proxy of.
pub fn requests(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    identity: &Identity,
    cmd: Option<RequestsCommand>,
    t: Timestamp,
) -> Result<(), Failure> {
    match cmd {
        None => {
            print_pending(ctx, &pending(vault, t)?);
            Ok(())
        }
        Some(RequestsCommand::Add { token }) => add(ctx, vault, identity, &token, t),
        Some(RequestsCommand::Approve {
            id,
            sections,
            expires,
        }) => approve(
            ctx,
            vault,
            identity,
            &id,
            sections.as_deref(),
            expires.as_deref(),
            t,
        ),
        Some(RequestsCommand::Deny { id, reason }) => deny(ctx, vault, identity, &id, reason, t),
    }
}

/// Who the requester is, as far as a proxy can tell: the patient's list of trusted
/// organisations is theirs alone, so a credential is reported with the organisation that
/// signed it and never as verified.
fn identity_words(req: &AccessRequest, t: Timestamp) -> Verification {
    let cred = req.credential();
    let Some(c) = &cred else {
        return Verification::Unverified {
            reason: "no organisation credential".into(),
        };
    };
    let peer = req.body().requester.peer;
    match verify_credential(cred.as_ref(), &peer, &[c.body().org], t) {
        Verification::Verified {
            role, organisation, ..
        } => Verification::Unverified {
            reason: format!(
                "{role} by a credential from \"{organisation}\" (organisation {}), which you \
                 cannot check against the patient's trusted organisations",
                c.body().org
            ),
        },
        other => other,
    }
}

/// The requests this node holds as a proxy and has not answered.
pub(crate) fn pending(vault: &Vault<SledStore>, t: Timestamp) -> Result<Vec<Pending>, Failure> {
    let mut out = Vec::new();
    for (record, rid, item) in vault.proxy_requests()? {
        if item.decision.is_some() {
            continue;
        }
        let Ok(req) = AccessRequest::from_token(&item.token) else {
            continue;
        };
        let who = identity_words(&req, t);
        out.push(Pending::new(
            rid,
            req,
            who,
            item.received_at,
            Some(record),
            t,
        ));
    }
    Ok(out)
}

fn add(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    identity: &Identity,
    token: &str,
    t: Timestamp,
) -> Result<(), Failure> {
    let (rid, req) = vault
        .receive_proxy_request(token, &identity.peer(), t)
        .map_err(|e| match e {
            TakeError::Refused(m) => refused(m),
            other => crate::cmd::grant::take_failure(other),
        })?;
    let who = identity_words(&req, t);
    let record = req.body().record;
    ctx.print(
        json!({"id": rid, "from": req.body().requester.peer, "identity": who, "record_id": record, "as_proxy": true}),
        || {
            format!(
                "Received request {rid} for record {record}, whose proxy you are, from {} — {}.\n\
                 Approve with `hearth requests approve {rid}` or deny with `hearth requests deny \
                 {rid}`; the patient sees your answer in their audit.",
                req.body().requester.name,
                who.words()
            )
        },
    );
    Ok(())
}

/// The request this node holds as a proxy whose id starts with `prefix`.
fn find(
    vault: &Vault<SledStore>,
    prefix: &str,
) -> Result<(RecordId, String, ProxyRequestItem, AccessRequest), Failure> {
    let prefix = prefix.trim();
    if prefix.len() < 6 {
        return Err(invalid("give at least 6 characters of the request id"));
    }
    let mut found: Vec<_> = vault
        .proxy_requests()?
        .into_iter()
        .filter(|(_, rid, _)| rid.starts_with(prefix))
        .collect();
    match found.len() {
        0 => Err(Failure::new(code::NOT_FOUND, "no request with that id")),
        1 => {
            let (record, rid, item) = found.remove(0);
            let req = AccessRequest::from_token(&item.token)
                .map_err(|_| Failure::new(code::INTEGRITY, "a stored request does not verify"))?;
            if item.decision.is_some() {
                return Err(refused("this request was already answered"));
            }
            Ok((record, rid, item, req))
        }
        _ => Err(invalid("several requests match that id; give more of it")),
    }
}

/// The proxy grant this node holds for `record` now, or why it cannot answer.
fn proxy_grant(
    vault: &Vault<SledStore>,
    identity: &Identity,
    record: &RecordId,
    t: Timestamp,
) -> Result<Grant, Failure> {
    vault
        .proxy_grant(record, &identity.peer(), t)?
        .ok_or_else(|| {
            refused(
                "you can no longer answer for this patient: your proxy grant has ended or was \
             revoked",
            )
        })
}

fn approve(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    identity: &Identity,
    id: &str,
    sections: Option<&str>,
    expires: Option<&str>,
    t: Timestamp,
) -> Result<(), Failure> {
    let (record, rid, _, req) = find(vault, id)?;
    req.check_open(t)
        .map_err(|e| refused(format!("cannot approve: {e}")))?;
    let under = proxy_grant(vault, identity, &record, t)?;
    let (scopes, duration) = narrowed(&req, sections, expires, t)?;
    let mut rng = os_rng();
    let approval = proxy::approve(&under, identity, &req, Some(&scopes), duration, t, &mut rng)
        .map_err(refusal)?;
    let leaf = &approval.chain[approval.chain.len() - 1];
    let gid = leaf.id().to_string();
    // The answer is in the audit journal before the grant leaves this node.
    vault.answer_proxy_request(
        identity,
        &rid,
        DecisionItem {
            decision: Answer::Approved,
            at: t,
            grant: Some(gid.clone()),
            reason: None,
            by: None,
        },
        Some(proxy::issued_token(&approval)),
        &under,
        t,
    )?;
    let token = grant::chain_to_token(&approval.chain);
    // The grant also goes back through the record's relays, sealed to the requester.
    let relays = match vault.open_record(identity, &record) {
        Ok(rec) => rec.relays(t),
        Err(_) => Vec::new(),
    };
    send_grant(vault, identity, &relays, &req, &token)?;
    let b = req.body();
    let given: Vec<String> = leaf.body().scopes.iter().map(ToString::to_string).collect();
    let missing: Vec<String> = approval
        .not_granted
        .iter()
        .map(ToString::to_string)
        .collect();
    emit_token(
        ctx,
        json!({"request": rid, "record_id": record, "as_proxy": true, "audience": b.requester.peer,
               "expires": leaf.body().expires, "not_granted": missing}),
        &token,
        &gid,
        false,
        None,
        format!(
            "Approved {rid} as the patient's proxy: {} may {} for {} until {}.{} The patient \
             sees this approval, as yours, in their audit. {}",
            b.requester.name,
            given.join(", "),
            leaf.body().purpose.words(),
            when_words(leaf.body().expires),
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    " Not granted (your proxy grant does not cover it): {}.",
                    missing.join(", ")
                )
            },
            if relays.is_empty() {
                "Give them this grant (hearth accept TOKEN)."
            } else {
                "It goes back to them through the patient's relays (sealed to them); this text \
                 form works too."
            }
        ),
    )
}

fn deny(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    identity: &Identity,
    id: &str,
    reason: Option<String>,
    t: Timestamp,
) -> Result<(), Failure> {
    let (record, rid, _, req) = find(vault, id)?;
    if let Some(r) = &reason
        && (r.chars().count() > hearth_core::audit::MAX_REASON || r.contains(['\n', '\r']))
    {
        return Err(invalid(
            "the reason must be one line of at most 1000 characters",
        ));
    }
    let under = proxy_grant(vault, identity, &record, t)?;
    vault.answer_proxy_request(
        identity,
        &rid,
        DecisionItem {
            decision: Answer::Denied,
            at: t,
            grant: None,
            reason,
            by: None,
        },
        None,
        &under,
        t,
    )?;
    ctx.print(json!({"id": rid, "denied": true, "as_proxy": true}), || {
        format!(
            "Denied {rid} from {} as the patient's proxy. The patient sees this in their audit.",
            req.body().requester.name
        )
    });
    Ok(())
}
