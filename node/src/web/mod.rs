//! The resource API and the web app (served by `hearth run` on 127.0.0.1, behind
//! [`crate::api::guard`]: Host and Origin checked, a session's token on every route).
//!
//! This layer sits beside the command line, at the top of the node: each route is a typed
//! request (its path, query and JSON body, described in the OpenAPI document generated from
//! these handlers) that becomes one of the commands and runs inside the daemon exactly as a
//! forwarded command does ([`crate::cli::run_captured`]): the same checks, the same lock, the
//! same JSON document as `--json` prints. Values from the body are passed as `--flag=value`
//! and ids are checked to be plain ids, so nothing a client sends can become another option.
//! A failure is a JSON error whose `code` follows the command's exit code
//! (`status_of`). The routes by resource: `records` (records, entries, export),
//! `consent` (requests, grants, emergency access, research and planning choices) and
//! `people` (devices, audit, QR codes). The page and its assets are `assets`.

mod assets;
mod consent;
mod people;
mod records;

use crate::api::{ApiState, Authed, Commands, ExecCall, error};
use crate::cli::{parse_in_daemon, run_captured};
use crate::fail::{Failure, code};
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What `hearth run` is handed: the forwarded commands' runner, these routes and their
/// OpenAPI document.
pub fn commands() -> Commands {
    Commands {
        exec: crate::cli::exec_in_daemon,
        resources: routes,
        openapi,
    }
}

/// Decodes `data` as each route's JSON body, as the router does before a handler runs; whether
/// any accepted it (the `api_body` fuzz target).
#[cfg(feature = "test-utils")]
pub fn decode_body(data: &[u8]) -> bool {
    fn takes<T: serde::de::DeserializeOwned>(data: &[u8]) -> bool {
        serde_json::from_slice::<T>(data).is_ok()
    }
    [
        takes::<crate::api::LoginRequest>,
        takes::<crate::api::ExecRequest>,
        takes::<consent::AskBody>,
        takes::<consent::TokenBody>,
        takes::<consent::ApproveBody>,
        takes::<consent::DenyBody>,
        takes::<consent::GrantBody>,
        takes::<consent::BreakGlassBody>,
        takes::<consent::ChoiceBody>,
        takes::<people::QrBody>,
        takes::<records::NewEntry>,
        takes::<records::Correction>,
        takes::<records::MarkError>,
    ]
    .iter()
    .fold(false, |any, decode| decode(data) | any)
}

/// Every resource route, and the web app's page and assets.
fn routes() -> Router<ApiState> {
    Router::new()
        .merge(assets::routes())
        .merge(records::routes())
        .merge(consent::routes())
        .merge(people::routes())
}

/// The HTTP status and stable error code of a command's exit code.
fn status_of(exit: u8) -> (StatusCode, &'static str) {
    match exit {
        2 | code::INVALID => (StatusCode::BAD_REQUEST, "invalid"),
        code::PASSPHRASE => (StatusCode::UNAUTHORIZED, "unauthorized"),
        code::NOT_FOUND => (StatusCode::NOT_FOUND, "not_found"),
        code::INTEGRITY => (StatusCode::UNPROCESSABLE_ENTITY, "integrity"),
        code::REFUSED => (StatusCode::FORBIDDEN, "refused"),
        code::LOCKED => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
    }
}

fn failure(f: &Failure) -> Response {
    let (status, c) = status_of(f.code);
    error(status, c, &f.message)
}

/// A value in a request that is not what the route takes: 400 `invalid`, with why.
struct Bad(String);

impl IntoResponse for Bad {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, "invalid", &self.0)
    }
}

fn bad(message: &str) -> Bad {
    Bad(message.to_string())
}

/// `id` if it is a plain id (letters and digits, at most 128), else why not.
fn plain_id<'a>(what: &str, id: &'a str) -> Result<&'a str, Bad> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(bad(&format!("{what}: not a valid id")))
    }
}

/// `spec` if it reads as a section spec (`class[:label]`, comma-separated, `*` for every
/// label), else why not. The command checks it fully.
fn section_spec(spec: &str) -> Result<&str, Bad> {
    let ok = !spec.is_empty()
        && spec.len() <= 512
        && !spec.starts_with('-')
        && spec
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b",:*-_".contains(&b));
    if ok {
        Ok(spec)
    } else {
        Err(bad("sections: expected class[:label], comma-separated"))
    }
}

/// How a route's command is run and answered.
enum Answer {
    /// The command's JSON document.
    Json,
    /// The command's output as a download of `content_type` named `file`.
    Download {
        content_type: &'static str,
        file: String,
    },
}

/// Runs `hearth --json ARGS…` inside the daemon as the session's identity, and answers with
/// its JSON document, or its failure as a JSON error.
async fn run(st: ApiState, authed: Authed, args: Vec<String>) -> Response {
    run_as(st, authed, args, Answer::Json).await
}

async fn run_as(st: ApiState, Authed(keys): Authed, args: Vec<String>, answer: Answer) -> Response {
    let argv = ["hearth", "--json"]
        .into_iter()
        .map(String::from)
        .chain(args);
    let cli = match parse_in_daemon(argv) {
        Ok(c) => c,
        Err(e) => {
            // clap's first line names the argument and why; the value is the caller's own.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid request");
            return bad(line.trim_start_matches("error: ")).into_response();
        }
    };
    let Some(permit) = st.slot().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is stopping",
        );
    };
    let call = ExecCall {
        argv: Vec::new(),
        home: st.home(),
        passphrase: keys.passphrase.clone(),
        identity: keys.identity.duplicate(),
        stdin: None,
        node: st.node().clone(),
        shared: st.shared().clone(),
        api: st.clone(),
    };
    let done = crate::runtime::run_blocking(move || {
        let _permit = permit;
        run_captured(call, cli)
    })
    .await;
    let (out, res) = match done {
        Some(r) => r,
        None => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
                "the command failed inside the node",
            );
        }
    };
    if let Err(f) = res {
        return failure(&f);
    }
    match answer {
        Answer::Json => {
            let body: serde_json::Value = if out.iter().all(u8::is_ascii_whitespace) {
                serde_json::json!({})
            } else {
                match serde_json::from_slice(&out) {
                    Ok(v) => v,
                    Err(_) => {
                        return error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "failed",
                            "the command's answer was not one JSON document",
                        );
                    }
                }
            };
            axum::Json(body).into_response()
        }
        Answer::Download { content_type, file } => (
            [
                (axum::http::header::CONTENT_TYPE, content_type.to_string()),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            out,
        )
            .into_response(),
    }
}

/// `--name=value`: a value that starts with `-` stays a value.
fn flag(name: &str, value: &str) -> String {
    format!("--{name}={value}")
}

/// The OpenAPI document of the whole local API, generated from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Hearth node local API",
        description = "Served by `hearth run`. On 127.0.0.1 (TCP): every request needs a Host header of 127.0.0.1:PORT or localhost:PORT, and an Origin, when sent, of that address; every route but the login, the web app's assets and this document needs `Authorization: Bearer TOKEN`, a session's token (from `POST /api/v1/session` with the one-time code `hearth ui` prints) or, for `/api/v1/status` alone, the install's token in HOME/api-token. Answers are the JSON documents the matching `hearth … --json` command prints; errors are `{\"error\": {\"code\", \"message\"}}`. On the Unix socket HOME/api.sock (owner only): `/api/v1/exec` runs a command line with its passphrase; it is refused on TCP."
    ),
    paths(
        crate::api::login,
        crate::api::whoami,
        crate::api::logout,
        crate::api::events,
        crate::api::status,
        crate::api::exec,
        records::list,
        records::show,
        records::sections,
        records::history,
        records::add,
        records::correct,
        records::mark_error,
        records::export,
        consent::requests,
        consent::ask,
        consent::receive,
        consent::approve,
        consent::deny,
        consent::grants,
        consent::grant,
        consent::revoke,
        consent::accept,
        consent::arrangements,
        consent::break_glass,
        consent::choices,
        consent::choose,
        people::devices,
        people::link,
        people::remove,
        people::audit,
        people::qr,
    ),
    components(schemas(
        crate::api::LoginRequest,
        crate::api::ExecRequest,
        crate::api::ExecResponse,
        records::NewEntry,
        records::Correction,
        records::MarkError,
        consent::AskBody,
        consent::TokenBody,
        consent::ApproveBody,
        consent::DenyBody,
        consent::GrantBody,
        consent::BreakGlassBody,
        consent::ChoiceBody,
        people::QrBody,
    )),
    modifiers(&Bearer),
    security(("session" = [])),
)]
struct ApiDoc;

/// Adds the bearer scheme the routes name.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "session",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The OpenAPI 3.1 document, as JSON.
pub fn openapi() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}
