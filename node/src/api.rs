//! The local API of the daemon (axum, HTTP/1.1), served on two listeners with two
//! authentication schemes:
//!
//! - **The socket `HOME/api.sock`** (Unix domain socket, mode 0600, in the 0700 home): the CLI
//!   talks to the daemon only here. The daemon accepts a connection only from a process of its
//!   own user (the peer's credentials, `SO_PEERCRED`); the client checks, before sending
//!   anything, that the socket is owned by its user, that the peer runs as its user and that
//!   the peer is the process named in `daemon.json` (the `client` module). Nobody else can
//!   create a file in the home, so a stale socket (the daemon killed) is only refused
//!   connections, never someone else's listener. The passphrase and the command's standard
//!   input travel only here. Endpoints: `GET /api/v1/status`, `POST /api/v1/exec`,
//!   `GET /api/openapi.json`.
//! - **TCP on 127.0.0.1**, for the web UI and scripts: the resource API (the routes the top
//!   level hands the daemon as [`Commands::resources`], see the `web` module), the web UI's
//!   assets, login ([`session`]) and live updates (`GET /api/v1/events`). Every request must
//!   carry `Host: 127.0.0.1:PORT` or `Host: localhost:PORT` (else 403: a web page the user
//!   visits cannot reach the API through DNS rebinding, because its requests carry the
//!   attacker's host name); a request with an `Origin` header must come from this origin, and
//!   one a browser marks `Sec-Fetch-Site: cross-site` is refused (403). Every API route but
//!   `POST /api/v1/session` and `/api/openapi.json` needs `Authorization: Bearer TOKEN`: a web
//!   session's token, or, for `GET /api/v1/status` only, the per-install token in
//!   `HOME/api-token` (0600). No cookies are used and no CORS headers are sent, so another
//!   site can neither ride on a session nor read an answer. It never runs `exec` and never
//!   accepts a passphrase: `POST /api/v1/exec` answers 403 there without reading the body.
//!   Every answer carries a strict Content-Security-Policy, `nosniff`, `no-referrer`,
//!   `DENY` framing and `no-store`. Errors are JSON: `{"error": {"code", "message"}}`.
//!
//! `exec` checks the passphrase against the keystore first (exit code 4 when wrong, as on the
//! command line), then hands the command to the daemon's [`Exec`]: the runner the binary's
//! top level gave the daemon when it started it (the command line's own dispatch, run
//! against the daemon's open store, its output captured). So this module knows no command.
//! `stdin` carries what the caller read from its standard input for an argument `-` (an
//! entry: at most 4 MiB; a FHIR bundle: at most 64 MiB); it is held in memory only. Commands
//! that change records run under the lock the sync driver uses, one at a time.

mod guard;
pub mod session;

use crate::fail::code;
use crate::home::{Home, NodeInfo};
use crate::live::{Handle, SharedState};
use crate::sled_store::SledStore;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
pub use guard::guard;
use guard::{bearer, hardened, json_errors};
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Commands running at once (each unlocks the keystore: Argon2id uses 19 MiB).
const EXEC_SLOTS: usize = 4;
/// The largest request body on TCP (which runs no commands).
const MAX_WEB_BODY: usize = 256 * 1024;
/// The largest standard input forwarded with a command: a FHIR bundle's limit (entries are
/// refused above 4 MiB by the command itself).
pub const MAX_STDIN: u64 = hearth_core::fhir::MAX_BUNDLE_BYTES + 1;
/// The largest request body on the socket: the arguments plus standard input in base64.
const MAX_SOCKET_BODY: usize = (MAX_STDIN as usize).div_ceil(3) * 4 + 1024 * 1024;
/// The socket's file name in the home.
pub const SOCKET: &str = "api.sock";

/// Where the daemon's socket lives.
pub fn socket_file(home: &Home) -> PathBuf {
    home.dir().join(SOCKET)
}

/// One command sent to `POST /api/v1/exec`, its passphrase already checked: what the
/// daemon's [`Exec`] needs to run it against the running node.
pub struct ExecCall {
    /// The command's arguments, without the program name.
    pub argv: Vec<String>,
    /// The node's home.
    pub home: Home,
    /// The passphrase the caller sent.
    pub passphrase: Zeroizing<String>,
    /// The identity it unlocked.
    pub identity: Identity,
    /// What the caller read from its standard input for an argument `-`.
    pub stdin: Option<Zeroizing<Vec<u8>>>,
    /// The running node.
    pub node: Handle,
    /// The lock the sync driver uses: commands that change records run under it.
    pub shared: SharedState<SledStore>,
    /// The local API itself (`hearth ui` leaves a login code in its sessions).
    pub api: ApiState,
}

/// Runs one forwarded command inside the daemon. The binary's top level hands it to the
/// daemon when it starts it (`daemon::run`), so that the engine never calls up into
/// the commands.
pub type Exec = fn(ExecCall) -> ExecResponse;

/// What the binary's top level hands the daemon: the runner of forwarded commands, the
/// resource routes of the web UI and scripts (served on TCP behind [`guard`]), and the
/// OpenAPI document describing all of it, generated from the code.
#[derive(Clone, Copy)]
pub struct Commands {
    /// Runs `POST /api/v1/exec` (socket only).
    pub exec: Exec,
    /// The resource routes (TCP), each behind a session.
    pub resources: fn() -> Router<ApiState>,
    /// The OpenAPI 3.1 document, as JSON.
    pub openapi: fn() -> String,
}

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    home: PathBuf,
    /// node.json, as read when the daemon started (see [`ApiState::node_info`]).
    info: NodeInfo,
    node: Handle,
    shared: SharedState<SledStore>,
    /// A vault beside the daemon's own, made once at start (see [`ApiState::command_vault`]).
    vault: Vault<SledStore>,
    token: Zeroizing<String>,
    hosts: [String; 2],
    origins: [String; 2],
    slots: Arc<tokio::sync::Semaphore>,
    streams: Arc<tokio::sync::Semaphore>,
    commands: Commands,
    sessions: session::Sessions,
    changes: tokio::sync::watch::Sender<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// A request's web session, put in its extensions by [`guard`]: the resource handlers act
/// with its identity.
#[derive(Clone)]
pub struct Authed(pub Arc<session::Unlocked>);

/// Live-update streams open at once (`GET /api/v1/events`).
const MAX_STREAMS: usize = 16;

impl ApiState {
    /// The state for a daemon at `home` (whose node.json reads `info`) serving on `port`,
    /// running commands with `commands`, its live-update streams ending when `stop` turns true.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        home: Home,
        info: NodeInfo,
        node: Handle,
        shared: SharedState<SledStore>,
        token: String,
        port: u16,
        commands: Commands,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> ApiState {
        let vault = crate::live::lock(&shared).vault.beside();
        ApiState {
            inner: Arc::new(Inner {
                home: home.dir().to_path_buf(),
                info,
                node,
                shared,
                vault,
                token: Zeroizing::new(token),
                hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
                origins: [
                    format!("http://127.0.0.1:{port}"),
                    format!("http://localhost:{port}"),
                ],
                slots: Arc::new(tokio::sync::Semaphore::new(EXEC_SLOTS)),
                streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
                commands,
                sessions: session::Sessions::default(),
                changes: tokio::sync::watch::channel(0).0,
                stop,
            }),
        }
    }

    /// The node's home.
    pub fn home(&self) -> Home {
        Home::new(self.inner.home.clone())
    }

    /// The node's public facts (node.json), as read when the daemon started: the file is
    /// written only by the commands that make a home (`init`, `recover`, `device join`), which
    /// refuse a home already made, so a command in the daemon takes them from here rather than
    /// reading the file again.
    pub fn node_info(&self) -> &NodeInfo {
        &self.inner.info
    }

    /// The vault a command run by the daemon works through: beside the daemon's own
    /// ([`Vault::beside`]: the same store, the same memory of opened records), made from a
    /// vault kept here rather than from the daemon's, so that getting one never waits for the
    /// lock the sync driver's jobs hold. A network command (`status`, `sync`…) runs without
    /// that lock, and must answer while a long sync step holds it.
    pub fn command_vault(&self) -> Vault<SledStore> {
        self.inner.vault.beside()
    }

    /// The running node.
    pub fn node(&self) -> &Handle {
        &self.inner.node
    }

    /// The lock the sync driver uses.
    pub fn shared(&self) -> &SharedState<SledStore> {
        &self.inner.shared
    }

    /// The web UI's address (`http://127.0.0.1:PORT`).
    pub fn origin(&self) -> &str {
        &self.inner.origins[0]
    }

    /// The login codes and sessions.
    pub fn sessions(&self) -> &session::Sessions {
        &self.inner.sessions
    }

    /// A slot to run one command in (each may unlock the keystore or hold the store's lock
    /// for a while): waits while `EXEC_SLOTS` run.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.slots.clone().acquire_owned().await.ok()
    }

    /// Tells the live-update streams that something changed here (a command through the API).
    pub fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The body of `POST /api/v1/exec`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ExecRequest {
    /// The command's arguments, without the program name (e.g. `["record", "show", "--json"]`).
    pub argv: Vec<String>,
    /// The node's passphrase.
    pub passphrase: String,
    /// The caller's standard input for an argument `-`, in base64 (at most [`MAX_STDIN`]
    /// bytes once decoded).
    #[serde(default)]
    pub stdin: Option<String>,
}

/// The answer of `POST /api/v1/exec`.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct ExecResponse {
    /// What the command wrote to standard output.
    pub stdout: String,
    /// What it wrote to standard error (the `error: …` line).
    pub stderr: String,
    /// Its exit code.
    pub code: u8,
}

/// A JSON error: `{"error": {"code": CODE, "message": MESSAGE}}` with `status`. `code` is
/// stable (scripts and the web UI match on it); `message` is plain words for a person and
/// never holds record content, a key or a token.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The routes served on TCP (127.0.0.1), behind the Host, Origin and token checks: the
/// resource routes, login, live updates and status. No command line runs there and no
/// passphrase is ever accepted.
pub fn web_router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/exec", post(exec_refused))
        .route("/api/v1/session", post(login).get(whoami).delete(logout))
        .route("/api/v1/events", get(events))
        .route("/api/openapi.json", get(openapi))
        .merge((state.inner.commands.resources)())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::map_response(hardened))
        .layer(DefaultBodyLimit::max(MAX_WEB_BODY))
        .with_state(state)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The routes served on the socket `HOME/api.sock`, whose listener admits only the daemon's
/// own user ([`OwnerOnly`]).
pub fn socket_router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/exec", post(exec))
        .route("/api/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_SOCKET_BODY))
        .with_state(state)
}

/// `POST /api/v1/exec` on TCP: refused, body unread.
async fn exec_refused() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "commands run only over the local socket HOME/api.sock; never send a passphrase here",
    )
}

/// The body of `POST /api/v1/session`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The one-time code from the address `hearth ui` printed (after `#login=`).
    pub code: String,
}

/// Who the session acts as.
fn me(keys: &session::Unlocked) -> serde_json::Value {
    let id = &keys.identity;
    serde_json::json!({
        "name": id.name,
        "role": id.role,
        "peer_id": id.peer(),
        "record_id": id.record_id(),
        "agreement_key": data_encoding::HEXLOWER.encode(&id.agreement_public()),
    })
}

/// Spends a login code for a session.
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body = LoginRequest,
    responses((status = 200, description = "`{token, me}`: send `Authorization: Bearer TOKEN` from now on"),
              (status = 401, description = "unknown, spent or expired code")))]
pub async fn login(State(st): State<ApiState>, body: axum::Json<LoginRequest>) -> Response {
    match st.inner.sessions.redeem(&body.code) {
        Some((token, keys)) => {
            tracing::info!("web UI session opened");
            axum::Json(serde_json::json!({"token": token.as_str(), "me": me(&keys)}))
                .into_response()
        }
        None => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this login address was already used or has expired: run `hearth ui` again",
        ),
    }
}

/// Who this session acts as.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, description = "`{me}`: name, role, peer_id, record_id"),
              (status = 401, description = "no session")))]
pub async fn whoami(axum::Extension(Authed(keys)): axum::Extension<Authed>) -> Response {
    axum::Json(serde_json::json!({"me": me(&keys)})).into_response()
}

/// Ends this session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204, description = "ended"), (status = 401, description = "no session")))]
pub async fn logout(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(t) = bearer(&headers) {
        st.inner.sessions.end(t);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Live updates as server-sent events: `changed` with `{"what": "received"}` when bundles
/// arrive from peers (entries, requests, audit events), `{"what": "local"}` when a command
/// changed something here. At most `MAX_STREAMS` at once; each ends when the daemon stops.
#[utoipa::path(get, path = "/api/v1/events", tag = "session",
    responses((status = 200, description = "text/event-stream of `changed` events", content_type = "text/event-stream"),
              (status = 401, description = "no session"),
              (status = 503, description = "too many streams open")))]
pub async fn events(State(st): State<ApiState>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Ok(permit) = st.inner.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many live-update streams are open",
        );
    };
    let mut received = st.inner.node.received();
    // Only what arrives from now on: the stream's reader has just loaded what is there.
    received.borrow_and_update();
    let local = st.inner.changes.subscribe();
    let stop = st.inner.stop.clone();
    let stream = futures::stream::unfold(
        (received, local, stop, permit),
        |(mut received, mut local, mut stop, permit)| async move {
            if *stop.borrow() {
                return None;
            }
            let what = tokio::select! {
                r = received.changed() => { r.ok()?; "received" }
                r = local.changed() => { r.ok()?; "local" }
                _ = stop.wait_for(|s| *s) => return None,
            };
            let ev = Event::default()
                .event("changed")
                .data(format!("{{\"what\":\"{what}\"}}"));
            Some((
                Ok::<_, std::convert::Infallible>(ev),
                (received, local, stop, permit),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

/// The socket's listener: accepts a connection only from a process running as the daemon's
/// own user (the peer credentials the kernel reports), drops any other.
#[cfg(unix)]
pub struct OwnerOnly {
    inner: tokio::net::UnixListener,
    uid: u32,
}

#[cfg(unix)]
impl OwnerOnly {
    /// Wraps `inner`, admitting only `uid`.
    pub fn new(inner: tokio::net::UnixListener, uid: u32) -> OwnerOnly {
        OwnerOnly { inner, uid }
    }
}

#[cfg(unix)]
impl axum::serve::Listener for OwnerOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => match s.peer_cred() {
                    Ok(c) if c.uid() == self.uid => return (s, a),
                    Ok(c) => {
                        tracing::warn!(
                            uid = c.uid(),
                            "refused a local API connection from another user"
                        )
                    }
                    Err(e) => tracing::warn!("refused a local API connection: {e}"),
                },
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::debug!("local API accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The node's network status (as `hearth status --json`).
#[utoipa::path(get, path = "/api/v1/status", tag = "node",
    responses((status = 200, description = "peer id, listen addresses, connected peers, per record and section whether in sync"),
              (status = 401, description = "no session or API token")))]
pub async fn status(State(st): State<ApiState>) -> Response {
    // The address `daemon.json` gives: this listener's own.
    let api = format!("http://{}", st.inner.hosts[0]);
    let net = st.inner.node.status();
    axum::Json(crate::status::status_json(
        &st.inner.info,
        Some(&api),
        Some(&net),
    ))
    .into_response()
}

/// Runs one `hearth` command inside the daemon: on the Unix socket only (403 on TCP, the body
/// unread). The passphrase is checked first (exit code 4 when wrong).
#[utoipa::path(post, path = "/api/v1/exec", tag = "socket",
    request_body = ExecRequest,
    responses((status = 200, description = "the command ran (see `code`)", body = ExecResponse),
              (status = 403, description = "on TCP: refused")))]
pub async fn exec(
    State(st): State<ApiState>,
    axum::Json(req): axum::Json<ExecRequest>,
) -> Response {
    let Some(permit) = st.slot().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let res = crate::runtime::run_blocking(move || {
        let _permit = permit;
        run_exec(&st, req)
    })
    .await;
    match res {
        Some(r) => axum::Json(r).into_response(),
        None => axum::Json(ExecResponse {
            stdout: String::new(),
            stderr: "error: the command failed inside the daemon\n".into(),
            code: code::IO,
        })
        .into_response(),
    }
}

/// The answer of a command that failed with exit code `code` and `message`.
pub fn failed(code: u8, message: &str) -> ExecResponse {
    ExecResponse {
        stdout: String::new(),
        stderr: format!("error: {message}\n"),
        code,
    }
}

fn run_exec(api: &ApiState, req: ExecRequest) -> ExecResponse {
    let st = &api.inner;
    let passphrase = Zeroizing::new(req.passphrase);
    if req.argv.len() > 512 {
        return failed(2, "too many arguments");
    }
    let stdin = match req.stdin.map(Zeroizing::new) {
        None => None,
        Some(b64) => match data_encoding::BASE64.decode(b64.as_bytes()) {
            Ok(bytes) if bytes.len() as u64 <= MAX_STDIN => Some(Zeroizing::new(bytes)),
            Ok(_) => return failed(code::INVALID, "standard input is too large"),
            Err(_) => return failed(code::INVALID, "standard input: not valid base64"),
        },
    };
    let home = Home::new(st.home.clone());
    let identity = match home.unlock(passphrase.as_bytes()) {
        Ok(id) => id,
        Err(f) => return failed(f.code, &f.message),
    };
    (st.commands.exec)(ExecCall {
        argv: req.argv,
        home,
        passphrase,
        identity,
        stdin,
        node: st.node.clone(),
        shared: st.shared.clone(),
        api: api.clone(),
    })
}

async fn openapi(State(st): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        (st.inner.commands.openapi)(),
    )
        .into_response()
}
