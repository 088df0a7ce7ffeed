//! Records and their entries: `hearth patients`, `record show|sections|history|add|correct|
//! mark-error` and `record export --fhir`.

use super::{Answer, Bad, bad, flag, plain_id, run, run_as, section_spec};
use crate::api::{ApiState, Authed};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/records", get(list))
        .route("/api/v1/records/{rid}", get(show))
        .route("/api/v1/records/{rid}/sections", get(sections))
        .route("/api/v1/records/{rid}/history", get(history))
        .route("/api/v1/records/{rid}/entries", post(add))
        .route("/api/v1/records/{rid}/entries/{eid}/correct", post(correct))
        .route(
            "/api/v1/records/{rid}/entries/{eid}/mark-error",
            post(mark_error),
        )
        .route("/api/v1/records/{rid}/export", get(export))
}

/// The records this node holds for others (a professional's patients), with names where
/// readable (as `hearth patients --json`).
#[utoipa::path(get, path = "/api/v1/records", tag = "records",
    responses((status = 200, description = "`{patients: [{record_id, name, grants, sections}]}`")))]
pub(super) async fn list(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
) -> Result<Response, Bad> {
    Ok(run(st, a, vec!["patients".into()]).await)
}

/// A record's current entries, section by section, each with who wrote it from verified
/// facts and, apart, what the writer claims (as `hearth record show --json`).
#[utoipa::path(get, path = "/api/v1/records/{rid}", tag = "records",
    params(("rid" = String, Path, description = "the record id")),
    responses((status = 200, description = "`{record_id, sections: [{class, label, entries}], errors, unapplied}`"),
              (status = 404, description = "no such record here")))]
pub(super) async fn show(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(rid): Path<String>,
) -> Result<Response, Bad> {
    let rid = plain_id("record", &rid)?;
    Ok(run(st, a, record_args("show", rid, Vec::new(), None)).await)
}

/// The sections of a record this node holds and can read.
#[utoipa::path(get, path = "/api/v1/records/{rid}/sections", tag = "records",
    params(("rid" = String, Path, description = "the record id")),
    responses((status = 200, description = "as `hearth record sections --json`")))]
pub(super) async fn sections(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(rid): Path<String>,
) -> Result<Response, Bad> {
    let rid = plain_id("record", &rid)?;
    Ok(run(st, a, record_args("sections", rid, Vec::new(), None)).await)
}

/// The query of `GET /api/v1/records/{rid}/history`.
#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct HistoryQuery {
    /// The section, `class[:label]`.
    section: String,
}

/// Every version in a section: who wrote what, when.
#[utoipa::path(get, path = "/api/v1/records/{rid}/history", tag = "records",
    params(("rid" = String, Path, description = "the record id"), HistoryQuery),
    responses((status = 200, description = "as `hearth record history SECTION --json`")))]
pub(super) async fn history(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(rid): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, Bad> {
    let (rid, section) = (plain_id("record", &rid)?, section_spec(&q.section)?);
    Ok(run(
        st,
        a,
        record_args("history", rid, Vec::new(), Some(section)),
    )
    .await)
}

/// The body of `POST /api/v1/records/{rid}/entries`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct NewEntry {
    /// The section, `class[:label]` (created on first use by the patient).
    section: String,
    /// The entry: its fields as docs/ENTRIES.md gives them for the section's class (a
    /// `notes` entry: `{"text": "…"}`).
    #[schema(value_type = Object)]
    entry: serde_json::Value,
}

/// `record VERB --record=RID FLAGS… [-- LAST]`: the command a route runs (`LAST`, a section
/// or an entry id, after `--`).
fn record_args(verb: &str, rid: &str, flags: Vec<String>, last: Option<&str>) -> Vec<String> {
    let mut args = vec!["record".to_string(), verb.to_string(), flag("record", rid)];
    args.extend(flags);
    if let Some(l) = last {
        args.extend(["--".to_string(), l.to_string()]);
    }
    args
}

fn entry_json(v: &serde_json::Value) -> Result<String, Bad> {
    if !v.is_object() {
        return Err(bad("entry: expected a JSON object"));
    }
    Ok(v.to_string())
}

/// Adds an entry to a section (as `hearth record add`).
#[utoipa::path(post, path = "/api/v1/records/{rid}/entries", tag = "records",
    params(("rid" = String, Path, description = "the record id")),
    request_body = NewEntry,
    responses((status = 200, description = "`{entry_id, record_id, section}`"),
              (status = 400, description = "invalid entry"),
              (status = 403, description = "no grant to append here")))]
pub(super) async fn add(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(rid): Path<String>,
    Json(body): Json<NewEntry>,
) -> Result<Response, Bad> {
    let (rid, section, entry) = (
        plain_id("record", &rid)?,
        section_spec(&body.section)?,
        entry_json(&body.entry)?,
    );
    let args = record_args("add", rid, vec![flag("entry", &entry)], Some(section));
    Ok(run(st, a, args).await)
}

/// The body of `POST …/entries/{eid}/correct`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Correction {
    /// The corrected entry, whole.
    #[schema(value_type = Object)]
    entry: serde_json::Value,
}

/// Corrects an entry: a new version replaces it (the old one stays in history).
#[utoipa::path(post, path = "/api/v1/records/{rid}/entries/{eid}/correct", tag = "records",
    params(("rid" = String, Path, description = "the record id"),
           ("eid" = String, Path, description = "the newest version's entry id")),
    request_body = Correction,
    responses((status = 200, description = "as `hearth record correct --json`")))]
pub(super) async fn correct(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path((rid, eid)): Path<(String, String)>,
    Json(body): Json<Correction>,
) -> Result<Response, Bad> {
    let (rid, eid, entry) = (
        plain_id("record", &rid)?,
        plain_id("entry", &eid)?,
        entry_json(&body.entry)?,
    );
    let args = record_args("correct", rid, vec![flag("entry", &entry)], Some(eid));
    Ok(run(st, a, args).await)
}

/// The body of `POST …/entries/{eid}/mark-error`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct MarkError {
    /// Why the entry is in error.
    reason: String,
}

/// Marks an entry as entered in error (it stays in history, flagged, with the reason).
#[utoipa::path(post, path = "/api/v1/records/{rid}/entries/{eid}/mark-error", tag = "records",
    params(("rid" = String, Path, description = "the record id"),
           ("eid" = String, Path, description = "the newest version's entry id")),
    request_body = MarkError,
    responses((status = 200, description = "as `hearth record mark-error --json`")))]
pub(super) async fn mark_error(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path((rid, eid)): Path<(String, String)>,
    Json(body): Json<MarkError>,
) -> Result<Response, Bad> {
    let (rid, eid) = (plain_id("record", &rid)?, plain_id("entry", &eid)?);
    let args = record_args(
        "mark-error",
        rid,
        vec![flag("reason", &body.reason)],
        Some(eid),
    );
    Ok(run(st, a, args).await)
}

/// The record as a FHIR R4 Bundle, downloaded (as `hearth record export --fhir -`): every
/// readable section, the grants as Consents and, on the patient's node, the audit log.
#[utoipa::path(get, path = "/api/v1/records/{rid}/export", tag = "records",
    params(("rid" = String, Path, description = "the record id")),
    responses((status = 200, description = "a FHIR R4 Bundle (attachment)", content_type = "application/fhir+json")))]
pub(super) async fn export(
    State(st): State<ApiState>,
    Extension(a): Extension<Authed>,
    Path(rid): Path<String>,
) -> Result<Response, Bad> {
    let rid = plain_id("record", &rid)?;
    let args = record_args("export", rid, vec!["--fhir=-".into()], None);
    let file = format!("hearth-{}.fhir.json", &rid[..rid.len().min(12)]);
    let answer = Answer::Download {
        content_type: "application/fhir+json",
        file,
    };
    Ok(run_as(st, a, args, answer).await)
}
