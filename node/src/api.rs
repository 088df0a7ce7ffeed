//! The local API of the daemon (axum, HTTP/1.1), served on two listeners with two
//! authentication schemes, designed once for the CLI and the coming web UI:
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
//! - **TCP on 127.0.0.1** (for the web UI to come): every request must carry
//!   `Host: 127.0.0.1:PORT` or `Host: localhost:PORT` (else 403: a web page the user visits
//!   cannot reach the API through DNS rebinding, because its requests carry the attacker's
//!   host name), and every route but `/api/openapi.json` needs `Authorization: Bearer TOKEN`
//!   (else 401), the per-install random token in `HOME/api-token` (0600). It never runs
//!   commands and never accepts a passphrase: `POST /api/v1/exec` answers 403 there without
//!   reading the body. No CORS headers are sent, so browsers refuse cross-origin reads.
//!
//! | method | path | where | what |
//! |---|---|---|---|
//! | GET | `/api/v1/status` | both | the node's network status (as `hearth status --json`) |
//! | POST | `/api/v1/exec` | socket | run one `hearth` command: `{"argv": [...], "passphrase": "...", "stdin": "BASE64"?}` → `{"stdout", "stderr", "code"}` |
//! | GET | `/api/openapi.json` | both | this API as OpenAPI 3.1 |
//!
//! `exec` checks the passphrase against the keystore first (exit code 4 when wrong, as on the
//! command line), then hands the command to the daemon's [`Exec`]: the runner the binary's
//! top level gave the daemon when it started it (the command line's own dispatch, run
//! against the daemon's open store, its output captured). So this module knows no command. `stdin` carries what the caller
//! read from its standard input for an argument `-` (an entry: at most 4 MiB; a FHIR bundle:
//! at most 64 MiB); it is held in memory only. Commands that change records run under the
//! lock the sync driver uses, one at a time.

use crate::fail::code;
use crate::home::Home;
use crate::live::{Handle, SharedState};
use crate::sled_store::SledStore;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearth_core::keys::Identity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Commands running at once (each unlocks the keystore: Argon2id uses 19 MiB).
const EXEC_SLOTS: usize = 4;
/// The largest request body on TCP (which runs no commands).
const MAX_WEB_BODY: usize = 64 * 1024;
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
    /// The daemon's open store.
    pub store: SledStore,
    /// The running node.
    pub node: Handle,
    /// The lock the sync driver uses: commands that change records run under it.
    pub shared: SharedState<SledStore>,
}

/// Runs one forwarded command inside the daemon. The binary's top level hands it to the
/// daemon when it starts it (`daemon::run`), so that the engine never calls up into
/// the commands.
pub type Exec = fn(ExecCall) -> ExecResponse;

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    home: PathBuf,
    store: SledStore,
    node: Handle,
    shared: SharedState<SledStore>,
    token: Zeroizing<String>,
    hosts: [String; 2],
    slots: Arc<tokio::sync::Semaphore>,
    exec: Exec,
}

impl ApiState {
    /// The state for a daemon at `home` serving on `port`, running commands with `exec`.
    pub fn new(
        home: Home,
        store: SledStore,
        node: Handle,
        shared: SharedState<SledStore>,
        token: String,
        port: u16,
        exec: Exec,
    ) -> ApiState {
        ApiState {
            inner: Arc::new(Inner {
                home: home.dir().to_path_buf(),
                store,
                node,
                shared,
                token: Zeroizing::new(token),
                hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
                slots: Arc::new(tokio::sync::Semaphore::new(EXEC_SLOTS)),
                exec,
            }),
        }
    }
}

/// The body of `POST /api/v1/exec`.
#[derive(Deserialize)]
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
#[derive(Serialize, Deserialize, Debug)]
pub struct ExecResponse {
    /// What the command wrote to standard output.
    pub stdout: String,
    /// What it wrote to standard error (the `error: …` line).
    pub stderr: String,
    /// Its exit code.
    pub code: u8,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The TCP listener's checks: the Host header on every route, the bearer token on every
/// route but the OpenAPI document.
async fn guard(
    State(st): State<ApiState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| st.inner.hosts.iter().any(|x| x == h));
    if !host_ok {
        return (StatusCode::FORBIDDEN, "forbidden host\n").into_response();
    }
    if req.uri().path() == "/api/openapi.json" {
        return next.run(req).await;
    }
    let token_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), st.inner.token.as_bytes()));
    if !token_ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong API token\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// The routes served on TCP (127.0.0.1), behind the Host and token checks: no command runs
/// there and no passphrase is ever accepted.
pub fn web_router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/exec", post(exec_refused))
        .route("/api/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_WEB_BODY))
        .with_state(state)
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
    (
        StatusCode::FORBIDDEN,
        "commands run only over the local socket HOME/api.sock; never send a passphrase here\n",
    )
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

async fn status(State(st): State<ApiState>) -> Response {
    // Reads two small files: off the async workers all the same.
    let inner = st.inner.clone();
    let res = tokio::task::spawn_blocking(move || {
        let home = Home::new(inner.home.clone());
        home.node_info().map(|info| {
            // The address `daemon.json` gives: this listener's own.
            let api = format!("http://{}", inner.hosts[0]);
            let net = inner.node.status();
            crate::status::status_json(&info, Some(&api), Some(&net))
        })
    })
    .await;
    match res {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(f)) => (StatusCode::INTERNAL_SERVER_ERROR, f.message).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn exec(State(st): State<ApiState>, axum::Json(req): axum::Json<ExecRequest>) -> Response {
    let Ok(permit) = st.inner.slots.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let inner = st.inner.clone();
    let res = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        run_exec(&inner, req)
    })
    .await;
    match res {
        Ok(r) => axum::Json(r).into_response(),
        Err(_) => axum::Json(ExecResponse {
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

fn run_exec(st: &Inner, req: ExecRequest) -> ExecResponse {
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
    (st.exec)(ExecCall {
        argv: req.argv,
        home,
        passphrase,
        identity,
        stdin,
        store: st.store.clone(),
        node: st.node.clone(),
        shared: st.shared.clone(),
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The API described as OpenAPI 3.1 (hand-written; served at `/api/openapi.json`).
pub const OPENAPI: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "Hearth node local API", "version": "1",
           "description": "Served by `hearth run` on the Unix socket HOME/api.sock (0600; only the node's own user may connect, checked by peer credentials; the only place commands run and a passphrase is accepted) and on 127.0.0.1 (TCP, for a web UI: every request needs a Host header of 127.0.0.1:PORT or localhost:PORT, and every route but this document needs `Authorization: Bearer TOKEN`, the token in HOME/api-token; exec is refused there with 403 and a passphrase is never accepted)."},
  "components": {
    "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "ExecRequest": {"type": "object", "required": ["argv", "passphrase"],
        "properties": {"argv": {"type": "array", "items": {"type": "string"}, "description": "hearth's arguments without the program name"},
                       "passphrase": {"type": "string"},
                       "stdin": {"type": ["string", "null"], "contentEncoding": "base64", "description": "standard input for an argument `-` (an entry: at most 4 MiB; a FHIR bundle: at most 64 MiB)"}}},
      "ExecResponse": {"type": "object", "required": ["stdout", "stderr", "code"],
        "properties": {"stdout": {"type": "string"}, "stderr": {"type": "string"},
                       "code": {"type": "integer", "description": "the exit code, as on the command line (4: wrong passphrase)"}}},
      "Status": {"type": "object", "required": ["peer_id", "listen_addrs", "api", "running"],
        "properties": {"peer_id": {"type": "string"}, "role": {"type": "string"}, "record_id": {"type": ["string", "null"]},
                       "running": {"type": "boolean"}, "listen_addrs": {"type": "array", "items": {"type": "string"}},
                       "api": {"type": ["string", "null"]}, "connected": {"type": "array", "items": {"type": "string"}},
                       "known_peers": {"type": "object"}, "sessions": {"type": "array", "items": {"type": "object"}}}}
    }
  },
  "security": [{"token": []}],
  "paths": {
    "/api/v1/status": {"get": {"summary": "The node's network status", "responses": {
      "200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
      "401": {"description": "missing or wrong token"}, "403": {"description": "forbidden Host header"}}}},
    "/api/v1/exec": {"post": {"summary": "Run one hearth command inside the daemon (Unix socket only; 403 on TCP, body unread)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecRequest"}}}},
      "responses": {"200": {"description": "the command ran (see code)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecResponse"}}}},
                    "401": {"description": "TCP: missing or wrong token"}, "403": {"description": "TCP: forbidden Host header, or exec over TCP"}}}},
    "/api/openapi.json": {"get": {"summary": "This document (no token needed)", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
  }
}"##;
