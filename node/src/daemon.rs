//! `hearth run`: the node in the foreground.
//!
//! It unlocks the keystore once, opens the sled store once (sled locks its folder, so while
//! the daemon runs the other commands talk to it through its local API), starts the libp2p
//! swarm and the live sync driver ([`crate::live`]) on tokio, serves the local API
//! ([`crate::api`]) on 127.0.0.1, and writes `HOME/daemon.json`:
//!
//! ```json
//! {"pid": 4242, "peer_id": "12D3Koo…", "listen_addrs": ["/ip4/127.0.0.1/tcp/40155"],
//!  "api": "http://127.0.0.1:40156"}
//! ```
//!
//! written atomically once it listens, then the local API's socket `HOME/api.sock` (0600) is
//! bound; both are removed on a clean shutdown (Ctrl-C or SIGTERM), after the store has been
//! flushed. With `--metrics 127.0.0.1:PORT` the file also names the Prometheus endpoint
//! (`"metrics": "http://127.0.0.1:PORT/metrics"`, the bound port when 0 was asked; see
//! [`crate::metrics`]). Stale files (after a crash) are harmless: commands find the socket refusing
//! connections and open the store themselves (sled's lock still guards it); the next daemon
//! replaces a socket nothing answers on. Commands never use the TCP address in `api`: it is
//! for the web UI to come (see [`crate::api`]).
//!
//! `--listen` of an address another process holds fails with a clear error before anything
//! is written; without `--listen`, the last run's ports are reused where still free and a
//! taken one falls back to a fresh port (logged); only addresses actually bound are
//! remembered for the next run.

use crate::api::Commands;
use crate::fail::{Failure, code};
use crate::home::{Home, NodeInfo, atomic_write};
use crate::live::{self, Handle, LiveConfig, Shared};
use crate::runtime::runtime;
use crate::sled_store::SledStore;
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_core::store::Store;
use hearth_sync::net::{self, NetConfig};
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `HOME/daemon.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonFile {
    /// The daemon's process id.
    pub pid: u32,
    /// Its peer id.
    pub peer_id: String,
    /// Where it listens for peers.
    pub listen_addrs: Vec<String>,
    /// The local API's base URL (`http://127.0.0.1:PORT`).
    pub api: String,
    /// The Prometheus endpoint (`http://127.0.0.1:PORT/metrics`), with `--metrics` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// Where the daemon file lives.
pub fn daemon_file(home: &Home) -> std::path::PathBuf {
    home.dir().join("daemon.json")
}

/// Where the API token lives.
pub fn token_file(home: &Home) -> std::path::PathBuf {
    home.dir().join("api-token")
}

/// Where the local API's socket lives.
pub fn socket_file(home: &Home) -> std::path::PathBuf {
    crate::api::socket_file(home)
}

/// Removes a socket left by a daemon that did not stop cleanly (`kill -9`): only when it is a
/// socket and nothing answers on it. A daemon answering there means this home is served
/// already.
fn free_stale_socket(path: &std::path::Path) -> Result<(), Failure> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(Failure::new(
                code::REFUSED,
                format!(
                    "{} exists and is not the daemon's socket: remove it",
                    path.display()
                ),
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(Failure::new(
                code::REFUSED,
                format!("another daemon answers on {}", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!("removing the stale socket of a daemon that did not stop cleanly");
                std::fs::remove_file(path).map_err(|e| {
                    Failure::new(code::IO, format!("cannot remove {}: {e}", path.display()))
                })
            }
            Err(e) => Err(Failure::new(
                code::IO,
                format!("cannot check {}: {e}", path.display()),
            )),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(())
    }
}

/// Binds the local API's socket, private to the user (0600) in the private home.
#[cfg(unix)]
fn bind_socket(path: &std::path::Path) -> Result<crate::api::OwnerOnly, Failure> {
    let l = tokio::net::UnixListener::bind(path).map_err(|e| {
        Failure::new(
            code::IO,
            format!("cannot open the local API socket {}: {e}", path.display()),
        )
    })?;
    crate::home::make_private(path, false)?;
    Ok(crate::api::OwnerOnly::new(
        l,
        rustix::process::geteuid().as_raw(),
    ))
}

/// Reads `daemon.json` if present and valid.
pub fn read_daemon_file(home: &Home) -> Option<DaemonFile> {
    let bytes = std::fs::read(daemon_file(home)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The API token of this install, created (random, 0600) on first use.
pub fn api_token(home: &Home) -> Result<String, Failure> {
    let path = token_file(home);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|_| Failure::new(code::IO, "no operating system randomness"))?;
    let token = data_encoding::HEXLOWER.encode(&bytes);
    atomic_write(&path, token.as_bytes())?;
    Ok(token)
}

fn default_listen() -> Vec<String> {
    let mut v = vec!["/ip4/127.0.0.1/tcp/0".to_string()];
    if net::HAS_QUIC {
        v.push("/ip4/127.0.0.1/udp/0/quic-v1".to_string());
    }
    v
}

/// Waits until the swarm reports an address for every listener (or 10 s pass).
async fn wait_listening(handle: &Handle, listeners: usize) -> Vec<String> {
    for _ in 0..500 {
        let st = handle.status();
        if st.listen_addrs.len() >= listeners {
            return st.listen_addrs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.status().listen_addrs
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// How `hearth run` was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Listen on these addresses (default: the last run's, else loopback TCP and QUIC).
    pub listen: Vec<String>,
    /// Seconds between background sync rounds.
    pub sync_interval: u64,
    /// Discover peers with mDNS.
    pub mdns: bool,
    /// Print `daemon.json` on standard output once listening.
    pub json: bool,
    /// Serve Prometheus metrics on this loopback address (`IP:PORT`).
    pub metrics: Option<String>,
    /// How log lines are written (JSON: the start-up lines go to the log, not as text).
    pub log_format: crate::logs::LogFormat,
    /// Relay nodes: other relays to join the relays' network through (`…/p2p/PEER`).
    pub relay_peers: Vec<String>,
}

/// The relay peers of `--relay-peer`, checked: each address must end in `/p2p/PEER`.
fn relay_peers(addrs: &[String]) -> Result<Vec<(hearth_core::ids::PeerKey, Multiaddr)>, Failure> {
    use libp2p::multiaddr::Protocol;
    addrs
        .iter()
        .map(|a| {
            let bad = |why: &str| Failure::new(code::INVALID, format!("--relay-peer {a}: {why}"));
            let mut ma: Multiaddr = a.parse().map_err(|_| bad("not a multiaddress"))?;
            let Some(Protocol::P2p(pid)) = ma.pop() else {
                return Err(bad("it must end with /p2p/PEER (the relay's peer id)"));
            };
            let peer = net::peer_key(&pid).ok_or_else(|| bad("not a Hearth peer id"))?;
            Ok((peer, ma))
        })
        .collect()
}

/// How long a stopping daemon waits, once its store is flushed, for jobs still running.
const LAST_JOBS: Duration = Duration::from_secs(10);

/// `hearth run`: the node at `home`, unlocked by `unlock` once the arguments are checked,
/// running forwarded commands and serving the resource API with `commands`, until Ctrl-C or
/// SIGTERM.
pub fn run(
    home: &Home,
    args: RunOptions,
    unlock: impl FnOnce() -> Result<(NodeInfo, Identity), Failure>,
    commands: Commands,
) -> Result<(), Failure> {
    let explicit = !args.listen.is_empty();
    let listen: Vec<Multiaddr> = if explicit {
        args.listen.clone()
    } else {
        default_listen()
    }
    .iter()
    .map(|a| {
        a.parse()
            .map_err(|e| Failure::new(code::INVALID, format!("--listen {a}: {e}")))
    })
    .collect::<Result<_, _>>()?;
    if args.mdns && !cfg!(feature = "mdns") {
        return Err(Failure::new(
            code::INVALID,
            "--mdns: this hearth was built without the `mdns` feature",
        ));
    }
    let metrics_addr = args
        .metrics
        .as_deref()
        .map(crate::metrics::loopback)
        .transpose()?;
    let text_lines = args.log_format == crate::logs::LogFormat::Text;
    let peers = relay_peers(&args.relay_peers)?;
    let (info, identity) = unlock()?;
    if !peers.is_empty() && identity.role != hearth_core::keys::Role::Relay {
        return Err(Failure::new(
            code::INVALID,
            "--relay-peer: only relay nodes join the relays' network",
        ));
    }
    let store = SledStore::open(&home.private_store_dir()?)?;
    // Snapshots that adds make due are written by the driver's tick, off the edits' path.
    let vault = Vault::open(store.clone())?.deferring_snapshots();
    let stamped = vault.stamp_unstamped_keyrings()?;
    if stamped > 0 {
        tracing::info!(
            records = stamped,
            "keyring stamps given to records stored without one"
        );
    }
    // Remembered as known peers: dialled now and on every later run.
    for (peer, addr) in &peers {
        if *peer == identity.peer() {
            return Err(Failure::new(
                code::INVALID,
                "--relay-peer: that address is this node's own",
            ));
        }
        let mut known = vault.peer_addrs(peer)?;
        known.put_first(addr.to_string());
        vault.set_peer_addrs(peer, &known)?;
    }
    let token = api_token(home)?;
    let keypair =
        net::keypair(&identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let rt = runtime()?;
    let home = Home::new(home.dir().to_path_buf());
    let result = rt.block_on(async move {
        let net_config = NetConfig {
            mdns: args.mdns,
            relay_server: identity.role == hearth_core::keys::Role::Relay,
            ..NetConfig::default()
        };
        let mut swarm =
            net::swarm(keypair, &net_config).map_err(|e| Failure::new(code::IO, e.to_string()))?;
        // Without --listen, listen where the last run did (peers remember those addresses);
        // a port another process took since falls back to a fresh one. Only the addresses
        // actually bound are remembered below.
        let previous: Vec<Multiaddr> = if explicit {
            Vec::new()
        } else {
            vault
                .listen_addrs()
                .map(|a| net::multiaddrs(&a))
                .unwrap_or_default()
        };
        let mut listeners = 0;
        for a in &previous {
            match net::listen_exclusive(&mut swarm, a) {
                Ok(_) => listeners += 1,
                Err(e) => {
                    let fresh = net::with_fresh_port(a);
                    tracing::info!(address = %a, "previous address unavailable ({e}): listening on {fresh} instead");
                    match net::listen_exclusive(&mut swarm, &fresh) {
                        Ok(_) => listeners += 1,
                        Err(e) => tracing::info!(address = %fresh, "cannot listen: {e}"),
                    }
                }
            }
        }
        if listeners == 0 {
            for a in &listen {
                net::listen_exclusive(&mut swarm, a).map_err(|e| match e {
                    net::NetError::AddressInUse(_) => Failure::new(
                        code::REFUSED,
                        format!("cannot listen on {a}: the address is already in use by another process"),
                    ),
                    e => Failure::new(code::IO, e.to_string()),
                })?;
                listeners += 1;
            }
        }
        // An organisation's node serves `/hearth/store/1` as a relay.
        let relay = (identity.role == hearth_core::keys::Role::Relay)
            .then(hearth_sync::relay::server::RelayLimits::default);
        let shared = Arc::new(Mutex::new(Shared { vault, identity }));
        let config = LiveConfig {
            interval: Duration::from_secs(args.sync_interval.max(1)),
            relay,
            ..LiveConfig::default()
        };
        let (handle, task) = live::start(swarm, shared.clone(), config);
        let addrs = wait_listening(&handle, listeners).await;
        if addrs.is_empty() {
            return Err(Failure::new(code::IO, "could not listen on any address"));
        }
        let saved = hearth_core::ledger::PeerAddrs {
            addrs: addrs.clone(),
        };
        let sh = shared.clone();
        let _ = tokio::task::spawn_blocking(move || live::lock(&sh).vault.set_listen_addrs(&saved))
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Failure::new(code::IO, format!("cannot open the local API: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Failure::new(code::IO, e.to_string()))?
            .port();
        let api_url = format!("http://127.0.0.1:{port}");
        // The metrics listener, bound before daemon.json is written so the file names it.
        let metrics = match metrics_addr {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                    let c = if e.kind() == std::io::ErrorKind::AddrInUse { code::REFUSED } else { code::IO };
                    Failure::new(c, format!("--metrics {a}: cannot listen: {e}"))
                })?;
                let bound = l.local_addr().map_err(|e| Failure::new(code::IO, e.to_string()))?;
                let is_relay = live::lock(&shared).identity.role == hearth_core::keys::Role::Relay;
                let state = crate::metrics::MetricsState::new(handle.clone(), shared.clone(), is_relay, bound);
                Some((l, bound, state))
            }
            None => None,
        };
        let metrics_url = metrics.as_ref().map(|(_, b, _)| format!("http://{b}/metrics"));
        // Ctrl-C or SIGTERM turns this true (the signal is awaited below).
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = crate::api::ApiState::new(
            Home::new(home.dir().to_path_buf()),
            info.clone(),
            handle.clone(),
            shared.clone(),
            token,
            port,
            commands,
            stop_rx.clone(),
        );
        let file = DaemonFile {
            pid: std::process::id(),
            peer_id: info.peer_id.to_string(),
            listen_addrs: addrs.clone(),
            api: api_url.clone(),
            metrics: metrics_url.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| Failure::new(code::IO, e.to_string()))?;
        // daemon.json first, then the socket: whoever reaches the socket finds this process's
        // pid in daemon.json.
        let socket = socket_file(&home);
        free_stale_socket(&socket)?;
        atomic_write(&daemon_file(&home), &json)?;
        let unix = match bind_socket(&socket) {
            Ok(l) => l,
            Err(f) => {
                let _ = std::fs::remove_file(daemon_file(&home));
                return Err(f);
            }
        };
        if args.json {
            crate::os::print_line(&serde_json::to_string(&file).unwrap_or_default());
        }
        tracing::info!(peer = %info.peer_id, api = %api_url, listen = %addrs.join(" "), metrics = metrics_url.as_deref().unwrap_or("off"), "hearth node running");
        if text_lines {
            eprintln!("hearth node {} running", info.peer_id);
            for a in &addrs {
                eprintln!("  listening on {a}");
            }
            if let Some(m) = &metrics_url {
                eprintln!("  metrics on {m}");
            }
            eprintln!("  local API on {} and {api_url} (Ctrl-C stops)", socket.display());
        }
        // On Ctrl-C or SIGTERM: stop accepting API requests, let running commands finish for
        // up to 10 s (a forwarded `sync --wait` may wait longer: it is cut short), then stop.
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let mut graceful = stop_rx.clone();
        let mut graceful_unix = stop_rx.clone();
        let mut graceful_metrics = stop_rx.clone();
        let mut deadline = stop_rx;
        // Metrics are served until the stop signal; a failure there is logged, never fatal.
        let serve_metrics = async move {
            let Some((l, _, state)) = metrics else { return };
            let served = axum::serve(l, crate::metrics::router(state))
                .with_graceful_shutdown(async move {
                    let _ = graceful_metrics.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!("metrics listener stopped: {e}");
            }
        };
        let serve_web = axum::serve(listener, crate::api::web_router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = graceful.wait_for(|s| *s).await;
            });
        let serve_unix = axum::serve(unix, crate::api::socket_router(state))
            .with_graceful_shutdown(async move {
                let _ = graceful_unix.wait_for(|s| *s).await;
            });
        let served = tokio::select! {
            (a, b, ()) = async { tokio::join!(serve_web, serve_unix, serve_metrics) } => a.and(b),
            _ = async move {
                let _ = deadline.wait_for(|s| *s).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            } => {
                tracing::warn!("API requests still running after 10 s: stopping anyway");
                Ok(())
            }
        };
        let _ = std::fs::remove_file(&socket);
        tracing::info!("shutting down");
        handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        // Wait for running jobs: they hold the lock while they write.
        let flushed = tokio::task::spawn_blocking(move || {
            let g = live::lock(&shared);
            let _ = &g.vault;
            store.flush()
        })
        .await;
        let _ = std::fs::remove_file(daemon_file(&home));
        served.map_err(|e| Failure::new(code::IO, format!("local API: {e}")))?;
        match flushed {
            Ok(Ok(())) => Ok(()),
            _ => Err(Failure::new(code::IO, "could not flush the store")),
        }
    });
    // The store is flushed: a job still running (one that closes the store, say) is waited
    // for only so long (see `runtime::shut_down_within`).
    if !crate::runtime::shut_down_within(rt, LAST_JOBS) {
        tracing::warn!(
            "a job was still running {} s after the node stopped: left to the process's exit",
            LAST_JOBS.as_secs()
        );
    }
    if text_lines {
        eprintln!("hearth node stopped");
    } else {
        tracing::info!("hearth node stopped");
    }
    result
}

/// Runs `f` against a short-lived node (no API, no daemon file): used by `hearth sync` when
/// no daemon runs. Listens on an ephemeral loopback port so peers can answer.
pub fn one_shot<T>(
    identity: Identity,
    vault: Vault<SledStore>,
    f: impl FnOnce(&Handle) -> T + Send + 'static,
) -> Result<T, Failure>
where
    T: Send + 'static,
{
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .map_err(|_| Failure::new(code::IO, "internal: address"))?;
    one_shot_on(identity, vault, &[listen], LiveConfig::default(), f)
}

/// [`one_shot`] listening on `listen`, with `config`: `f` runs once every listener has an
/// address (see [`Handle::status`]).
pub fn one_shot_on<T>(
    identity: Identity,
    vault: Vault<SledStore>,
    listen: &[Multiaddr],
    config: LiveConfig,
    f: impl FnOnce(&Handle) -> T + Send + 'static,
) -> Result<T, Failure>
where
    T: Send + 'static,
{
    let keypair =
        net::keypair(&identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let mut swarm = net::swarm(keypair, &NetConfig::default())
            .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        for a in listen {
            net::listen_exclusive(&mut swarm, a)
                .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        }
        let shared = Arc::new(Mutex::new(Shared { vault, identity }));
        let (handle, task) = live::start(swarm, shared, config);
        wait_listening(&handle, listen.len()).await;
        // Let known peers load and dials start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let h = handle.clone();
        let out = tokio::task::spawn_blocking(move || f(&h))
            .await
            .map_err(|_| Failure::new(code::IO, "sync task failed"))?;
        handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        Ok(out)
    })
}
