//! Forwarding commands to a running daemon, over its Unix socket only.
//!
//! sled locks the store while the daemon runs, so every command except `init`, `run` and
//! `extract aggregate` (which reads only its files) is sent to `POST /api/v1/exec` on the
//! socket `HOME/api.sock`, with the passphrase read the usual way, and the daemon's stdout,
//! stderr and exit code are reproduced exactly. `status` uses `GET /api/v1/status` there and
//! needs no passphrase.
//!
//! Before anything is sent (before the passphrase is even asked for) the client checks whom
//! it talks to: the socket must be a socket owned by this user and not accessible to others,
//! the peer's credentials (reported by the kernel) must be this user, and the peer's pid must
//! be the one in `daemon.json` (written before the daemon binds the socket). Only the user
//! can create files in the 0700 home, so nobody else can stand in for the daemon; the TCP
//! address in `daemon.json` is never used by the CLI (a process holding that port after a
//! crash learns nothing). When nothing answers (no socket, or a stale one after `kill -9`:
//! connection refused), the command runs locally as if no daemon existed.
//!
//! Relative paths in the arguments are made absolute (the daemon has another working
//! folder), and an entry or bundle read from standard input (`-`) is read here, bounded by
//! the command's own limit, and sent inside the request: it never touches the disk.
//!
//! If the daemon stops before answering, the client says so and says that whether the change
//! was made is unknown, naming the command that shows it.
//!
//! The HTTP client is a few lines of HTTP/1.1 over a socket: the only server it ever talks
//! to is our own.

use crate::api::ExecResponse;
use crate::daemon::read_daemon_file;
use crate::fail::Failure;
use crate::home::Home;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The largest answer accepted from the daemon.
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// Why a request to the daemon did not get an answer.
#[derive(Debug)]
pub enum HttpError {
    /// Nobody listens (the daemon is not running).
    Refused,
    /// Anything else.
    Other(String),
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (the TCP API, for the web UI and tests; the CLI
/// never uses it); returns the status and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            HttpError::Refused
        } else {
            HttpError::Other(e.to_string())
        }
    })?;
    s.set_read_timeout(Some(Duration::from_secs(15 * 60)))
        .map_err(|e| HttpError::Other(e.to_string()))?;
    let host = format!("127.0.0.1:{port}");
    exchange(s, &host, method, path, headers, body).map_err(|e| HttpError::Other(e.to_string()))
}

/// Why an exchange failed once connected.
#[derive(Debug)]
enum Exchange {
    /// The request could not be sent.
    Send(std::io::Error),
    /// The answer was cut short or unreadable (the server stopped).
    Cut,
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exchange::Send(e) => write!(f, "{e}"),
            Exchange::Cut => write!(f, "the answer was cut short"),
        }
    }
}

fn exchange(
    mut s: impl Read + Write,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), Exchange> {
    let body = body.unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).map_err(Exchange::Send)?;
    s.write_all(body).map_err(Exchange::Send)?;
    s.flush().map_err(Exchange::Send)?;
    let mut raw = Vec::new();
    // A reset or a timeout after the request went out is an answer cut short.
    let read = s.take(MAX_ANSWER).read_to_end(&mut raw);
    let parsed = parse_response(&raw);
    match (read, parsed) {
        (Ok(_), Some(r)) => Ok(r),
        // A complete answer followed by a reset is still complete.
        (Err(_), Some(r)) => Ok(r),
        _ => Err(Exchange::Cut),
    }
}

fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let l = l.to_ascii_lowercase();
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = Some(v.trim().parse().ok()?);
        }
    }
    let body = &raw[end + 4..];
    if !chunked {
        // An answer shorter than it announced was cut short.
        return match length {
            Some(n) if body.len() < n => None,
            Some(n) => Some((status, body[..n].to_vec())),
            None => Some((status, body.to_vec())),
        };
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Rewrites `argv` for the daemon: relative paths made absolute. Returns what standard
/// input holds when an argument reads it (`-`), read here and kept in memory only.
fn rewrite(
    paths: &[(PathBuf, Option<u64>)],
    argv: &mut [String],
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current folder: {e}"))?;
    let mut stdin = None;
    for (p, stdin_limit) in paths {
        let stdin_limit = *stdin_limit;
        let text = p.to_string_lossy().to_string();
        if text == "-"
            && let Some(limit) = stdin_limit
        {
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading standard input: {e}"))?;
            stdin = Some(buf);
            continue;
        }
        if !p.is_relative() {
            continue;
        }
        let new = cwd.join(p).to_string_lossy().to_string();
        for a in argv.iter_mut() {
            if *a == text {
                *a = new.clone();
                break;
            }
            if let Some((flag, v)) = a.split_once('=')
                && flag.starts_with("--")
                && v == text
            {
                *a = format!("{flag}={new}");
                break;
            }
        }
    }
    Ok(stdin)
}

fn emit(out: &str, err: &str) {
    let mut so = std::io::stdout();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
    let mut se = std::io::stderr();
    let _ = se.write_all(err.as_bytes());
}

/// Why the daemon's socket could not be used.
#[derive(Debug)]
pub enum SocketError {
    /// No daemon: no socket, or a stale one nobody answers on.
    NoDaemon,
    /// Something answers that is not provably this user's daemon: nothing was sent.
    Untrusted(String),
    /// Anything else.
    Other(String),
}

/// Connects to the daemon's socket in `home` and proves it is this user's daemon: the socket
/// is a socket owned by this user and closed to others, the peer runs as this user, and the
/// peer is the process `daemon.json` names. Nothing is sent before these checks pass.
#[cfg(unix)]
pub fn connect(home: &Home) -> Result<std::os::unix::net::UnixStream, SocketError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = crate::api::socket_file(home);
    let me = rustix::process::geteuid().as_raw();
    let untrusted = |why: String| {
        SocketError::Untrusted(format!(
            "refusing to talk to {}: {why}; nothing was sent",
            path.display()
        ))
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SocketError::NoDaemon),
        Err(e) => return Err(SocketError::Other(format!("{}: {e}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(untrusted("it is not a socket".into()));
    }
    if meta.uid() != me {
        return Err(untrusted(format!("it belongs to user {}", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(untrusted("other users may use it".into()));
    }
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            return Err(SocketError::NoDaemon);
        }
        Err(e) => return Err(SocketError::Other(format!("{}: {e}", path.display()))),
    };
    let (stream, uid, pid) = peer_of(stream)
        .map_err(|e| untrusted(format!("cannot read the peer's credentials ({e})")))?;
    if uid != me {
        return Err(untrusted(format!(
            "the process answering runs as user {uid}"
        )));
    }
    let expected = read_daemon_file(home).map(|f| f.pid);
    match (expected, pid) {
        (Some(e), Some(p)) if i64::from(e) == i64::from(p) => {}
        (Some(e), Some(p)) => {
            return Err(untrusted(format!(
                "the process answering (pid {p}) is not the daemon daemon.json names (pid {e})"
            )));
        }
        (None, _) => return Err(untrusted("daemon.json is missing or damaged".into())),
        // The platform does not report the peer's pid: the uid checks stand alone.
        (Some(_), None) => {}
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(15 * 60)))
        .map_err(|e| SocketError::Other(e.to_string()))?;
    Ok(stream)
}

/// The peer's uid and (where the platform reports it) pid, through tokio's portable
/// `peer_cred` on a throwaway current-thread runtime; the stream comes back blocking.
#[cfg(unix)]
fn peer_of(
    s: std::os::unix::net::UnixStream,
) -> std::io::Result<(std::os::unix::net::UnixStream, u32, Option<i32>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _enter = rt.enter();
    s.set_nonblocking(true)?;
    let t = tokio::net::UnixStream::from_std(s)?;
    let cred = t.peer_cred()?;
    let s = t.into_std()?;
    s.set_nonblocking(false)?;
    Ok((s, cred.uid(), cred.pid()))
}

/// One request to the daemon over its socket, after [`connect`]'s checks.
#[cfg(unix)]
fn socket_request(
    home: &Home,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), SocketRequestError> {
    let s = connect(home).map_err(SocketRequestError::Connect)?;
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    exchange(s, "localhost", method, path, headers, body).map_err(|e| match e {
        Exchange::Send(e) => SocketRequestError::NotSent(e.to_string()),
        Exchange::Cut => SocketRequestError::Stopped,
    })
}

/// Why a request over the socket failed.
#[derive(Debug)]
enum SocketRequestError {
    Connect(SocketError),
    /// The request did not go out (the daemon did not receive the command).
    NotSent(String),
    /// The daemon stopped (or closed the connection) before its answer was complete.
    Stopped,
}

/// What the command line tells the client about the command it forwards: the client knows
/// no command.
pub struct Forward<'a> {
    /// The node's home.
    pub home: Home,
    /// The whole command line, the program name first.
    pub args: &'a [OsString],
    /// `--json`.
    pub json: bool,
    /// The command is `status`: without a passphrase at hand it asks `GET /api/v1/status`.
    pub status: bool,
    /// A passphrase is at hand without a prompt (`--passphrase-file` or `HEARTH_PASSPHRASE`).
    pub have_passphrase: bool,
    /// Paths in the command that the daemon would resolve against its own folder, each with
    /// the most standard input the command reads when the path is `-` (`None`: `-` is not
    /// standard input there).
    pub paths: Vec<(PathBuf, Option<u64>)>,
    /// What to tell the user if the daemon stops while running the command: whether the
    /// change was made is unknown, and how to find out.
    pub stopped: String,
    /// Reads the passphrase the usual way (environment, file or prompt).
    pub passphrase: &'a dyn Fn() -> Result<zeroize::Zeroizing<String>, Failure>,
}

/// Sends the command to the running daemon, if there is one. `None`: no daemon answered, run
/// the command locally.
#[cfg(unix)]
pub fn forward(fwd: Forward<'_>) -> Option<ExitCode> {
    let home = &fwd.home;
    let fail = |msg: &str, code: u8| {
        emit("", &format!("error: {msg}\n"));
        Some(ExitCode::from(code))
    };
    // Is our daemon there? (A stale socket must not cost a passphrase prompt; an untrusted
    // one gets nothing.) The connection is closed at once: the passphrase prompt may take a
    // while.
    match connect(home) {
        Ok(_) => {}
        Err(SocketError::NoDaemon) => return None,
        Err(SocketError::Untrusted(m)) => return fail(&m, crate::fail::code::REFUSED),
        Err(SocketError::Other(m)) => {
            return fail(
                &format!("cannot reach the daemon: {m}"),
                crate::fail::code::IO,
            );
        }
    }
    let connect_failed = |e: SocketRequestError| match e {
        SocketRequestError::Connect(SocketError::NoDaemon) => fail(
            "the daemon stopped before the command was sent: nothing was changed; run it again",
            crate::fail::code::IO,
        ),
        SocketRequestError::Connect(SocketError::Untrusted(m)) => {
            fail(&m, crate::fail::code::REFUSED)
        }
        SocketRequestError::Connect(SocketError::Other(m)) => fail(
            &format!("cannot reach the daemon: {m}"),
            crate::fail::code::IO,
        ),
        SocketRequestError::NotSent(m) => fail(
            &format!(
                "the daemon stopped before receiving the command ({m}): nothing was changed; run it again"
            ),
            crate::fail::code::IO,
        ),
        SocketRequestError::Stopped => fail(&fwd.stopped, crate::fail::code::IO),
    };
    // `status` needs no passphrase: without one at hand (no HEARTH_PASSPHRASE or
    // --passphrase-file) it asks the status endpoint, which leaves sections unnamed.
    if fwd.status && !fwd.have_passphrase {
        return match socket_request(home, "GET", "/api/v1/status", None) {
            Err(e) => connect_failed(e),
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let text = if fwd.json {
                    v.to_string()
                } else {
                    crate::status::status_text(&v)
                };
                emit(&format!("{text}\n"), "");
                Some(ExitCode::SUCCESS)
            }
            Ok((code, _)) => fail(
                &format!("the daemon refused the request (HTTP {code})"),
                crate::fail::code::IO,
            ),
        };
    }
    let pass = match (fwd.passphrase)() {
        Ok(p) => p,
        Err(f) => return fail(&f.message, f.code),
    };
    let mut argv: Vec<String> = match fwd
        .args
        .iter()
        .skip(1)
        .map(|a| a.to_str().map(String::from))
        .collect::<Option<Vec<_>>>()
    {
        Some(v) => v,
        None => return fail("arguments must be valid UTF-8 while the daemon runs", 2),
    };
    let stdin = match rewrite(&fwd.paths, &mut argv) {
        Ok(t) => t,
        Err(e) => return fail(&e, crate::fail::code::IO),
    };
    let stdin_b64 = stdin.map(|b| zeroize::Zeroizing::new(data_encoding::BASE64.encode(&b)));
    let body = zeroize::Zeroizing::new(
        serde_json::json!({
            "argv": argv,
            "passphrase": pass.as_str(),
            "stdin": stdin_b64.as_ref().map(|b| b.as_str()),
        })
        .to_string(),
    );
    drop(stdin_b64);
    match socket_request(home, "POST", "/api/v1/exec", Some(body.as_bytes())) {
        Err(e) => connect_failed(e),
        Ok((200, answer)) => match serde_json::from_slice::<ExecResponse>(&answer) {
            Ok(r) => {
                emit(&r.stdout, &r.stderr);
                Some(ExitCode::from(r.code))
            }
            Err(_) => fail(&fwd.stopped, crate::fail::code::IO),
        },
        Ok((code, _)) => fail(
            &format!("the daemon refused the request (HTTP {code})"),
            crate::fail::code::IO,
        ),
    }
}

/// Without Unix sockets there is no local API to forward to: commands open the store
/// themselves (and find it locked while a daemon runs).
#[cfg(not(unix))]
pub fn forward(_fwd: Forward<'_>) -> Option<ExitCode> {
    None
}
