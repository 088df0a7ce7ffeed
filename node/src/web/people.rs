//! Devices (`hearth device list`), the audit log (`hearth audit`) and QR codes of tokens.

use super::{Bad, bad, plain_id, run};
use crate::api::{ApiState, Authed};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

/// The longest text made into a QR code (a version-40 code holds 2,953 bytes).
const MAX_QR_TEXT: usize = 2953;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/link", post(link))
        .route("/api/v1/devices/{peer}/remove", post(remove))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/qr", post(qr))
}

/// The patient's devices, and those removed (as `hearth device list --json`).
#[utoipa::path(get, path = "/api/v1/devices", tag = "people",
    responses((status = 200, description = "as `hearth device list --json`")))]
pub(super) async fn devices(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["device".into(), "list".into()]).await)
}

/// Opens a one-time code that links a new device to the record (as `hearth device link`):
/// the new device runs `hearth init --join CODE` (or scans its QR code) while this node runs.
#[utoipa::path(post, path = "/api/v1/devices/link", tag = "people",
    responses((status = 200, description = "`{code, expires}`"),
              (status = 403, description = "only the device holding the record's root key links devices")))]
pub(super) async fn link(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["device".into(), "link".into()]).await)
}

/// Removes a device: no longer served or trusted, and every section moves to new keys it does
/// not get (as `hearth device remove`).
#[utoipa::path(post, path = "/api/v1/devices/{peer}/remove", tag = "people",
    params(("peer" = String, Path, description = "the device's peer id")),
    responses((status = 200, description = "as `hearth device remove --json`"),
              (status = 404, description = "no such device")))]
pub(super) async fn remove(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(peer): Path<String>,
) -> Result<Response, Bad> {
    let peer = plain_id("device", &peer)?;
    let args = vec!["device".into(), "remove".into(), "--".into(), peer.into()];
    Ok(run(st, a, args).await)
}

/// The query of `GET /api/v1/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct AuditQuery {
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events by or about this peer, or whose name contains this text.
    who: Option<String>,
}

/// Who received, read and wrote the record, newest first, emergency uses on top (as
/// `hearth audit --json`).
#[utoipa::path(get, path = "/api/v1/audit", tag = "people",
    params(AuditQuery),
    responses((status = 200, description = "`{record_id, emergency, events, problems, whole}`")))]
pub(super) async fn audit(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Bad> {
    let mut args = vec!["audit".to_string()];
    if let Some(s) = &q.since {
        args.push(format!("--since={s}"));
    }
    if let Some(w) = &q.who {
        args.push(format!("--who={w}"));
    }
    Ok(run(st, a, args).await)
}

/// The body of `POST /api/v1/qr`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct QrBody {
    /// The text to draw (a grant's, request's or device link's text form).
    text: String,
}

/// `text` as a QR code (SVG), to show a token to another device's camera.
#[utoipa::path(post, path = "/api/v1/qr", tag = "people",
    request_body = QrBody,
    responses((status = 200, description = "the QR code", content_type = "image/svg+xml"),
              (status = 400, description = "empty, or too long for a QR code")))]
pub(super) async fn qr(
    Extension(_): Extension<Authed>,
    Json(b): Json<QrBody>,
) -> Result<Response, Bad> {
    if b.text.is_empty() || b.text.len() > MAX_QR_TEXT {
        return Err(bad("text: empty, or too long for a QR code"));
    }
    let svg = crate::app::token::qr_svg(&b.text).map_err(|f| Bad(f.message))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
