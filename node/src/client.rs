//! Forwarding commands to a running daemon.
//!
//! sled locks the store while the daemon runs, so when `HOME/daemon.json` exists and the
//! daemon answers at its `api` address, every command except `init`, `run` and `extract
//! aggregate` (which reads only its files) is sent to `POST /api/v1/exec` with the passphrase
//! read the usual way, and the daemon's stdout, stderr and exit code are reproduced exactly.
//! `status` uses `GET /api/v1/status` and needs no passphrase. When nobody answers (a stale
//! `daemon.json` after a crash: connection refused), the command runs locally as if no daemon
//! existed, and nothing is removed.
//!
//! Relative paths in the arguments are made absolute (the daemon has another working
//! folder), and an entry or bundle read from standard input (`-`) is read here and handed
//! over as a private temporary file in the home.
//!
//! The HTTP client is a few lines of HTTP/1.1 over a loopback `TcpStream`: the only server it
//! ever talks to is our own.

use crate::api::ExecResponse;
use crate::cli::{Cli, Command, RecordCommand};
use crate::commands::Ctx;
use crate::daemon::{read_daemon_file, token_file};
use crate::extract_cmd::ExtractCommand;
use crate::home::{self, Home};
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

fn port_of(api: &str) -> Option<u16> {
    api.strip_prefix("http://127.0.0.1:")?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// One HTTP/1.1 request to the daemon at 127.0.0.1:`port`; returns the status and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            HttpError::Refused
        } else {
            HttpError::Other(e.to_string())
        }
    })?;
    let other = |e: std::io::Error| HttpError::Other(e.to_string());
    s.set_read_timeout(Some(Duration::from_secs(15 * 60)))
        .map_err(other)?;
    let body = body.unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).map_err(other)?;
    s.write_all(body).map_err(other)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(other)?;
    parse_response(&raw).ok_or_else(|| HttpError::Other("malformed answer from the daemon".into()))
}

fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Some((status, body.to_vec()));
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

/// Paths in the parsed command that the daemon would resolve against its own folder.
fn path_args(cli: &Cli) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match &cli.command {
        Command::Record(RecordCommand::Add { source, .. })
        | Command::Record(RecordCommand::Correct { source, .. }) => {
            out.extend(source.file.clone());
        }
        Command::Record(RecordCommand::Import(a)) => out.push(a.fhir.clone()),
        Command::Record(RecordCommand::Export(a)) => {
            out.extend(a.fhir.clone());
            out.extend(a.automerge.clone());
        }
        Command::Grant(a) => out.extend(a.qr_svg.clone()),
        Command::Extract(ExtractCommand::Contribute(a)) => out.push(a.out.clone()),
        _ => {}
    }
    out
}

/// Rewrites `argv` for the daemon: absolute paths, standard input saved to a temporary file
/// (returned, to be removed afterwards).
fn rewrite(cli: &Cli, argv: &mut [String], home: &Home) -> Result<Option<PathBuf>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current folder: {e}"))?;
    let mut temp = None;
    for p in path_args(cli) {
        let text = p.to_string_lossy().to_string();
        let replacement = if text == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(64 * 1024 * 1024)
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading standard input: {e}"))?;
            let mut r = [0u8; 8];
            getrandom::fill(&mut r).map_err(|_| "no randomness".to_string())?;
            let path = home
                .dir()
                .join(format!(".stdin-{}.tmp", data_encoding::HEXLOWER.encode(&r)));
            home::atomic_write(&path, &buf).map_err(|f| f.message)?;
            temp = Some(path.clone());
            path
        } else if p.is_relative() {
            cwd.join(&p)
        } else {
            continue;
        };
        let new = replacement.to_string_lossy().to_string();
        for (i, a) in argv.iter_mut().enumerate() {
            let _ = i;
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
    Ok(temp)
}

fn emit(out: &str, err: &str) {
    let mut so = std::io::stdout();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
    let mut se = std::io::stderr();
    let _ = se.write_all(err.as_bytes());
}

/// Sends the command to the running daemon, if there is one. `None`: no daemon answered, run
/// the command locally.
pub fn forward(cli: &Cli, args: &[OsString]) -> Option<ExitCode> {
    // `extract aggregate` reads only the files it is given (no store, no passphrase).
    if matches!(
        cli.command,
        Command::Init(_) | Command::Run(_) | Command::Extract(ExtractCommand::Aggregate(_))
    ) {
        return None;
    }
    let home = Home::new(cli.home.clone().unwrap_or_else(home::default_dir));
    let file = read_daemon_file(&home)?;
    let port = port_of(&file.api)?;
    let token = std::fs::read_to_string(token_file(&home)).ok()?;
    let auth = format!("Bearer {}", token.trim());
    // `status` needs no passphrase: without one at hand (no HEARTH_PASSPHRASE or
    // --passphrase-file) it asks the token-only endpoint, which leaves sections unnamed.
    let have_pass =
        cli.passphrase_file.is_some() || std::env::var_os("HEARTH_PASSPHRASE").is_some();
    if matches!(cli.command, Command::Status) && !have_pass {
        return match request(
            port,
            "GET",
            "/api/v1/status",
            &[("Authorization", &auth)],
            None,
        ) {
            Err(HttpError::Refused) => None,
            Err(HttpError::Other(e)) => {
                emit("", &format!("error: the daemon did not answer: {e}\n"));
                Some(ExitCode::from(1))
            }
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let text = if cli.json {
                    v.to_string()
                } else {
                    crate::net_cmd::status_text(&v)
                };
                emit(&format!("{text}\n"), "");
                Some(ExitCode::SUCCESS)
            }
            Ok((code, _)) => {
                emit(
                    "",
                    &format!("error: the daemon refused the request (HTTP {code})\n"),
                );
                Some(ExitCode::from(1))
            }
        };
    }
    // Is anyone there? (A stale daemon.json must not cost a passphrase prompt.)
    match TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(3),
    ) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return None,
        _ => {}
    }
    let ctx = Ctx::new(
        Home::new(home.dir().to_path_buf()),
        cli.json,
        cli.passphrase_file.clone(),
    );
    let pass = match ctx.passphrase_for_forwarding() {
        Ok(p) => p,
        Err(f) => {
            emit("", &format!("error: {}\n", f.message));
            return Some(ExitCode::from(f.code));
        }
    };
    let mut argv: Vec<String> = match args
        .iter()
        .skip(1)
        .map(|a| a.to_str().map(String::from))
        .collect::<Option<Vec<_>>>()
    {
        Some(v) => v,
        None => {
            emit(
                "",
                "error: arguments must be valid UTF-8 while the daemon runs\n",
            );
            return Some(ExitCode::from(2));
        }
    };
    let temp = match rewrite(cli, &mut argv, &home) {
        Ok(t) => t,
        Err(e) => {
            emit("", &format!("error: {e}\n"));
            return Some(ExitCode::from(1));
        }
    };
    let body = zeroize::Zeroizing::new(
        serde_json::json!({"argv": argv, "passphrase": pass.as_str()}).to_string(),
    );
    let res = request(
        port,
        "POST",
        "/api/v1/exec",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    match res {
        Err(HttpError::Refused) => None,
        Err(HttpError::Other(e)) => {
            emit("", &format!("error: the daemon did not answer: {e}\n"));
            Some(ExitCode::from(1))
        }
        Ok((200, body)) => match serde_json::from_slice::<ExecResponse>(&body) {
            Ok(r) => {
                emit(&r.stdout, &r.stderr);
                Some(ExitCode::from(r.code))
            }
            Err(_) => {
                emit("", "error: malformed answer from the daemon\n");
                Some(ExitCode::from(1))
            }
        },
        Ok((code, _)) => {
            emit(
                "",
                &format!("error: the daemon refused the request (HTTP {code})\n"),
            );
            Some(ExitCode::from(1))
        }
    }
}
