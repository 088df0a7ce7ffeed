//! The consent ledger as a timeline, for `hearth grant list`: each event a time, a JSON
//! object and a line of plain words.

use super::grants::{chain_state, held_state, own_record};
use crate::fail::Failure;
use crate::sled_store::SledStore;
use hearth_core::extract::{ConsentChoice, ContributionRecord};
use hearth_core::grant;
use hearth_core::grant::request::{AccessRequest, Verification, verify_credential};
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::record::{Decision, OpenRecord, Vault};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};

/// One event of the timeline: when, as JSON, in words.
pub type Event = (Timestamp, Value, String);

/// The consent ledger as a timeline, oldest first. On a patient's node: the grants issued
/// (and their revocations), requests, decisions, trusted organisations, research choices,
/// contributions and review decisions; on another node, the grants it holds, with their state
/// at `t`.
pub fn ledger_timeline(
    vault: &Vault<SledStore>,
    identity: &Identity,
    t: Timestamp,
) -> Result<Vec<Event>, Failure> {
    let mut events: Vec<Event> = Vec::new();
    if identity.record_id().is_some() {
        let mut rec = own_record(vault, identity)?;
        let revoked = rec.revoked_grants();
        let revoked_at: std::collections::HashMap<String, Timestamp> = rec
            .revocations()
            .into_iter()
            .map(|(g, item)| (g.to_string(), item.at))
            .collect();
        // Who each request came from, as this node can verify it now: a grant made from a
        // request names its holder with this, never with the name alone (a claim).
        let trusted = rec.trusted_orgs();
        let mut requests = Vec::new();
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
            requests.push((rid, item, req, who));
        }
        let unverified = Verification::Unverified {
            reason: "not given by a request with an organisation credential".into(),
        };
        for (gid, item) in rec.issued_grants() {
            let Ok(chain) = grant::chain_from_token(&item.token) else {
                continue;
            };
            let Some(g) = chain.last() else { continue };
            let state = chain_state(&chain, &g.body().audience, t, &revoked);
            let who = item
                .audience_name
                .clone()
                .unwrap_or_else(|| item.audience.to_string());
            let identity = item
                .request
                .as_ref()
                .and_then(|r| requests.iter().find(|(rid, ..)| rid == r))
                .map_or(&unverified, |(.., v)| v);
            let scopes: Vec<String> = g.body().scopes.iter().map(ToString::to_string).collect();
            events.push((item.issued_at, json!({"event": "granted", "id": gid, "to": item.audience, "to_name": item.audience_name, "to_identity": identity, "scopes": scopes, "purpose": g.body().purpose, "expires": g.body().expires, "status": state, "request": item.request}),
                format!("granted {who} ({}) {} for {} until {} [{state}] ({gid})", identity.words(), scopes.join(", "), g.body().purpose.words(), g.body().expires)));
            if let Some(at) = revoked_at.get(&gid) {
                events.push((
                    *at,
                    json!({"event": "revoked", "id": gid}),
                    format!("revoked the grant to {who} ({gid})"),
                ));
            }
        }
        for (rid, item, req, who) in &requests {
            let name = req.body().requester.name.clone();
            let scopes: Vec<String> = req.body().scopes.iter().map(ToString::to_string).collect();
            events.push((item.received_at, json!({"event": "request", "id": rid, "from": req.body().requester.peer, "from_name": name, "identity": who, "scopes": scopes, "purpose": req.body().purpose, "reason": req.body().reason}),
                format!("{name} ({}) asked for {} for {} ({rid})", who.words(), scopes.join(", "), req.body().purpose.words())));
        }
        let proxy_names: std::collections::HashMap<_, _> = rec
            .issued_grants()
            .into_iter()
            .filter_map(|(_, g)| Some((g.audience, g.audience_name?)))
            .collect();
        for (rid, d) in rec.decisions() {
            // A proxy's answer, from its audit event, checked against its proxy grant.
            let by = d.by.map(|p| match proxy_names.get(&p) {
                Some(n) => format!(" by your proxy \"{n}\""),
                None => format!(" by your proxy {p}"),
            });
            events.push((
                d.at,
                json!({"event": d.decision.as_str(), "request": rid, "grant": d.grant, "reason": d.reason, "by_proxy": d.by}),
                format!(
                    "{} request {rid}{}{}",
                    d.decision.as_str(),
                    by.unwrap_or_default(),
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
        events.extend(extract_events(&mut rec, &rid));
        events.extend(review_events(&rec));
    } else {
        for (_, _, chain) in vault.all_held_chains()? {
            let Some(g) = chain.last() else { continue };
            let state = held_state(vault, &identity.peer(), &chain, t);
            let scopes: Vec<String> = g.body().scopes.iter().map(ToString::to_string).collect();
            events.push((g.body().not_before, json!({"event": "held", "id": g.id().to_string(), "record_id": g.body().record, "scopes": scopes, "expires": g.body().expires, "status": state}),
                format!("holding {} on record {} until {} [{state}] ({})", scopes.join(", "), g.body().record, g.body().expires, g.id())));
        }
    }
    events.sort_by_key(|(t, _, _)| *t);
    Ok(events)
}

/// The ledger's choices and contributions as timeline events (time, JSON, plain words), for
/// `hearth grant list`.
fn extract_events(rec: &mut OpenRecord<'_, SledStore>, record: &RecordId) -> Vec<Event> {
    let mut events = Vec::new();
    for (_, v) in rec.ledger_items(hearth_core::extract::CONSENT_PREFIX) {
        let Ok(c) = serde_json::from_str::<ConsentChoice>(&v) else {
            continue;
        };
        if !c.verify(record) {
            continue;
        }
        events.push((
            c.at,
            json!({"event": "consent", "purpose": c.purpose, "opted_in": c.opted_in}),
            format!(
                "opted {} {} use of the record",
                if c.opted_in { "in to" } else { "out of" },
                c.purpose
            ),
        ));
    }
    for (_, v) in rec.ledger_items(hearth_core::extract::CONTRIBUTION_PREFIX) {
        let Ok(r) = serde_json::from_str::<ContributionRecord>(&v) else {
            continue;
        };
        let who = r
            .recipient_name
            .clone()
            .unwrap_or_else(|| r.recipient.to_string());
        events.push((
            r.at,
            json!({"event": "contributed", "id": r.id, "to": r.recipient, "to_name": r.recipient_name, "purpose": r.purpose, "pseudonym": r.pseudonym}),
            format!(
                "contributed a de-identified extract to {who} for {} ({})",
                r.purpose.words(),
                r.id
            ),
        ));
    }
    events
}

/// The review decisions in `rec`'s auth document, as events for `hearth grant list`.
fn review_events(rec: &OpenRecord<'_, SledStore>) -> Vec<Event> {
    rec.review_decisions()
        .into_iter()
        .map(|(h, d)| {
            let section = rec
                .directory()
                .get(&d.section)
                .map_or_else(|| d.section.to_string(), ToString::to_string);
            (
                d.at,
                json!({"event": "review", "decision": d.decision.as_str(), "write": h.to_string(), "author": d.author, "section": section, "declared": d.declared, "reason": d.reason.as_str()}),
                format!(
                    "{} the held write {h} by {} in {section} ({})",
                    match d.decision {
                        Decision::Accept => "accepted",
                        Decision::Reject => "rejected",
                    },
                    d.author,
                    d.reason.as_str()
                ),
            )
        })
        .collect()
}
