//! Consent: access requests (`hearth request`, `hearth requests`), grants (`hearth grant`,
//! `accept`), emergency access (`hearth emergency`) and the research and planning choices
//! (`hearth consent`).

use super::{Bad, bad, flag, plain_id, run, section_spec};
use crate::api::{ApiState, Authed};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/requests", get(requests).post(ask))
        .route("/api/v1/requests/receive", post(receive))
        .route("/api/v1/requests/{id}/approve", post(approve))
        .route("/api/v1/requests/{id}/deny", post(deny))
        .route("/api/v1/grants", get(grants).post(grant))
        .route("/api/v1/grants/accept", post(accept))
        .route("/api/v1/grants/{id}/revoke", post(revoke))
        .route("/api/v1/emergency", get(arrangements))
        .route("/api/v1/emergency/access", post(break_glass))
        .route("/api/v1/consent", get(choices).post(choose))
}

/// A token's text form (`HEARTH1…`, base32), else why not.
fn token(t: &str) -> Result<&str, Bad> {
    let t = t.trim();
    let ok = t.starts_with("HEARTH1")
        && t.len() <= 64 * 1024
        && t.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(t)
    } else {
        Err(bad("token: expected the text form HEARTH1…"))
    }
}

/// A duration such as `30d` or `6mo` (checked fully by the command).
fn duration(d: &str) -> Result<&str, Bad> {
    let ok = !d.is_empty() && d.len() <= 16 && d.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(d)
    } else {
        Err(bad(
            "duration: expected a number and s, m, h, d, w, mo or y",
        ))
    }
}

/// Pending access requests, each with the requester's verified identity, purpose, duration,
/// reason and the sections asked (as `hearth requests --json`).
#[utoipa::path(get, path = "/api/v1/requests", tag = "consent",
    responses((status = 200, description = "`{pending: [{id, name, identity, purpose, scopes, duration_days, reason, answer_by, lapsed}]}`")))]
pub(super) async fn requests(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["requests".into()]).await)
}

/// The body of `POST /api/v1/requests`: a professional asks a patient for access.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct AskBody {
    /// The patient's record id.
    record: String,
    /// Which sections: `class[:label]`, comma-separated.
    sections: String,
    /// `read` or `append`.
    ability: String,
    /// `direct-care`, `social-care`, `emergency`, `research` or `planning`.
    purpose: String,
    /// For how long, from approval (e.g. `30d`).
    expires: String,
    /// The reason, shown to the patient.
    reason: String,
}

/// Asks a patient for access: the request's text form, to give them (as `hearth request`).
#[utoipa::path(post, path = "/api/v1/requests", tag = "consent",
    request_body = AskBody,
    responses((status = 200, description = "`{id, token, record_id, expires, credential}`")))]
pub(super) async fn ask(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<AskBody>,
) -> Result<Response, Bad> {
    let (record, sections, expires) = (
        plain_id("record", &b.record)?,
        section_spec(&b.sections)?,
        duration(&b.expires)?,
    );
    let args = vec![
        "request".into(),
        flag("to", record),
        flag("sections", sections),
        flag("ability", &b.ability),
        flag("purpose", &b.purpose),
        flag("expires", expires),
        flag("reason", &b.reason),
    ];
    Ok(run(st, a, args).await)
}

/// A token's text form in a body.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TokenBody {
    /// `HEARTH1…`.
    token: String,
}

/// Receives a request given as text (as `hearth requests add`).
#[utoipa::path(post, path = "/api/v1/requests/receive", tag = "consent",
    request_body = TokenBody,
    responses((status = 200, description = "`{id, from, identity}`"),
              (status = 400, description = "not a request")))]
pub(super) async fn receive(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<TokenBody>,
) -> Result<Response, Bad> {
    let t = token(&b.token)?;
    let args = vec!["requests".into(), "add".into(), "--".into(), t.into()];
    Ok(run(st, a, args).await)
}

/// The body of `POST /api/v1/requests/{id}/approve`: omit a field to grant what was asked.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ApproveBody {
    /// Fewer sections than asked (each within what was asked).
    #[serde(default)]
    sections: Option<String>,
    /// A shorter time than asked (e.g. `7d`).
    #[serde(default)]
    expires: Option<String>,
}

/// Approves a request, possibly narrower than asked: issues the grant and sends it back.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "consent",
    params(("id" = String, Path, description = "the request id")),
    request_body = ApproveBody,
    responses((status = 200, description = "`{id, token, request, audience, expires, sections_created}`"),
              (status = 400, description = "wider than asked"),
              (status = 403, description = "already answered or lapsed"),
              (status = 404, description = "no such request")))]
pub(super) async fn approve(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(id): Path<String>,
    Json(b): Json<ApproveBody>,
) -> Result<Response, Bad> {
    let id = plain_id("request", &id)?;
    let mut args = vec!["requests".to_string(), "approve".into()];
    if let Some(s) = b.sections.as_deref() {
        args.push(flag("sections", section_spec(s)?));
    }
    if let Some(e) = b.expires.as_deref() {
        args.push(flag("expires", duration(e)?));
    }
    args.extend(["--".into(), id.into()]);
    Ok(run(st, a, args).await)
}

/// The body of `POST /api/v1/requests/{id}/deny`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct DenyBody {
    /// Why (kept in the patient's ledger).
    #[serde(default)]
    reason: Option<String>,
}

/// Denies a request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "consent",
    params(("id" = String, Path, description = "the request id")),
    request_body = DenyBody,
    responses((status = 200, description = "`{id, denied: true}`"),
              (status = 404, description = "no such request")))]
pub(super) async fn deny(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(id): Path<String>,
    Json(b): Json<DenyBody>,
) -> Result<Response, Bad> {
    let id = plain_id("request", &id)?;
    let mut args = vec!["requests".to_string(), "deny".into()];
    if let Some(r) = b.reason.as_deref() {
        args.push(flag("reason", r));
    }
    args.extend(["--".into(), id.into()]);
    Ok(run(st, a, args).await)
}

/// The consent ledger in plain words: grants (with their state), requests, decisions, trust
/// (as `hearth grant list --json`).
#[utoipa::path(get, path = "/api/v1/grants", tag = "consent",
    responses((status = 200, description = "`{events: [...]}`")))]
pub(super) async fn grants(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["grant".into(), "list".into()]).await)
}

/// The body of `POST /api/v1/grants`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct GrantBody {
    /// Who: a peer id, or a contact card (`HEARTH1I…`) so the grant carries the keys.
    to: String,
    /// Which sections: `class[:label]`, comma-separated.
    sections: String,
    /// `read` or `append`.
    ability: String,
    /// `direct-care` (default), `social-care`, `emergency`, `research` or `planning`.
    #[serde(default)]
    purpose: Option<String>,
    /// For how long (e.g. `30d`).
    expires: String,
    /// Make them your proxy (a carer, parent or attorney).
    #[serde(default)]
    proxy: bool,
}

/// Grants access to sections of the patient's record (as `hearth grant`).
#[utoipa::path(post, path = "/api/v1/grants", tag = "consent",
    request_body = GrantBody,
    responses((status = 200, description = "`{id, token, …}`")))]
pub(super) async fn grant(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<GrantBody>,
) -> Result<Response, Bad> {
    let to = b.to.trim();
    if to.is_empty() || to.len() > 16 * 1024 || !to.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad("to: expected a peer id or a contact card"));
    }
    let (sections, expires) = (section_spec(&b.sections)?, duration(&b.expires)?);
    let mut args = vec![
        "grant".into(),
        flag("to", to),
        flag("sections", sections),
        flag("ability", &b.ability),
        flag("expires", expires),
    ];
    if let Some(p) = &b.purpose {
        args.push(flag("purpose", p));
    }
    if b.proxy {
        args.push("--proxy".into());
    }
    Ok(run(st, a, args).await)
}

/// Revokes a grant the patient issued: its holders are refused from now on (what they already
/// received stays with them).
#[utoipa::path(post, path = "/api/v1/grants/{id}/revoke", tag = "consent",
    params(("id" = String, Path, description = "the grant id")),
    responses((status = 200, description = "as `hearth grant revoke --json`"),
              (status = 404, description = "no such grant")))]
pub(super) async fn revoke(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(id): Path<String>,
) -> Result<Response, Bad> {
    let id = plain_id("grant", &id)?;
    let args = vec!["grant".into(), "revoke".into(), "--".into(), id.into()];
    Ok(run(st, a, args).await)
}

/// Accepts a grant given to this node as text (as `hearth accept`).
#[utoipa::path(post, path = "/api/v1/grants/accept", tag = "consent",
    request_body = TokenBody,
    responses((status = 200, description = "`{id, record_id, keys, rights}`"),
              (status = 400, description = "not a grant"),
              (status = 403, description = "not for this node, or no longer valid")))]
pub(super) async fn accept(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<TokenBody>,
) -> Result<Response, Bad> {
    let t = token(&b.token)?;
    Ok(run(st, a, vec!["accept".into(), "--".into(), t.into()]).await)
}

/// The emergency arrangements in force (patient).
#[utoipa::path(get, path = "/api/v1/emergency", tag = "consent",
    responses((status = 200, description = "as `hearth emergency list --json`")))]
pub(super) async fn arrangements(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["emergency".into(), "list".into()]).await)
}

/// The body of `POST /api/v1/emergency/access`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct BreakGlassBody {
    /// The patient's record.
    record: String,
    /// Why (required; the patient and the organisation's IG review see it).
    reason: String,
    /// For how long (at most what the arrangement allows; default 4h).
    #[serde(default)]
    duration: Option<String>,
}

/// Uses emergency access to a patient's record (a professional attested by an organisation
/// the patient arranged it with): logged by the organisation first, shown to the patient.
#[utoipa::path(post, path = "/api/v1/emergency/access", tag = "consent",
    request_body = BreakGlassBody,
    responses((status = 200, description = "as `hearth emergency access --json`"),
              (status = 403, description = "no arrangement covers this professional")))]
pub(super) async fn break_glass(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<BreakGlassBody>,
) -> Result<Response, Bad> {
    let record = plain_id("record", &b.record)?;
    if b.reason.trim().is_empty() {
        return Err(bad("reason: emergency access needs a reason"));
    }
    let mut args = vec![
        "emergency".into(),
        "access".into(),
        flag("record", record),
        flag("reason", &b.reason),
    ];
    if let Some(d) = b.duration.as_deref() {
        args.push(flag("duration", duration(d)?));
    }
    Ok(run(st, a, args).await)
}

/// The patient's research and planning choices (both off until chosen).
#[utoipa::path(get, path = "/api/v1/consent", tag = "consent",
    responses((status = 200, description = "as `hearth consent --json`")))]
pub(super) async fn choices(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["consent".into()]).await)
}

/// The body of `POST /api/v1/consent`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ChoiceBody {
    /// `research` or `planning`.
    purpose: String,
    /// `on` (opt in) or `off` (opt out).
    choice: String,
}

/// Opts in or out of research or planning uses.
#[utoipa::path(post, path = "/api/v1/consent", tag = "consent",
    request_body = ChoiceBody,
    responses((status = 200, description = "as `hearth consent PURPOSE CHOICE --json`")))]
pub(super) async fn choose(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Json(b): Json<ChoiceBody>,
) -> Result<Response, Bad> {
    let purpose = matches!(b.purpose.as_str(), "research" | "planning");
    let choice = matches!(b.choice.as_str(), "on" | "off");
    if !purpose || !choice {
        return Err(bad(
            "expected purpose research or planning, and choice on or off",
        ));
    }
    let args = vec!["consent".into(), "--".into(), b.purpose, b.choice];
    Ok(run(st, a, args).await)
}
