//! `hearth run --metrics 127.0.0.1:PORT`: the node's counters for Prometheus, off by default.
//!
//! `GET /metrics` answers in the Prometheus text exposition format (version 0.0.4), written
//! here by hand: a handful of counters and gauges need no library. It is served on its own
//! listener, on a loopback address only ([`loopback`] refuses any other), and answers only
//! requests whose `Host` names that address (`127.0.0.1:PORT`, `[::1]:PORT` or
//! `localhost:PORT`), so a web page in a browser cannot read it through DNS rebinding. No
//! token is asked: the numbers are counts, and whoever can reach a loopback port is on the
//! machine already. To scrape from elsewhere, put an authenticating proxy in front.
//!
//! What is exposed (see [`render`]): peers connected and known, bundles received, sync rounds
//! ended and failed, and on a relay node its counters ([`RelayCounters`]) with the records it
//! keeps and their bytes. Metrics carry **no labels at all**: no record id, peer id, section
//! or content can appear in them.
//!
//! ```text
//! # HELP hearth_peers_connected Peers connected now.
//! # TYPE hearth_peers_connected gauge
//! hearth_peers_connected 2
//! ```

use crate::fail::{Failure, code};
use crate::live::{self, Handle, RelayCounters, SharedState, Status};
use crate::sled_store::SledStore;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearth_sync::relay::server::{RelayLimits, Server};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a relay's store figures (records kept, bytes) are reused between scrapes: they
/// need a scan of the records kept, under the store's lock.
const STORE_FIGURES_FOR: Duration = Duration::from_secs(5);

/// `--metrics ADDR` as a socket address, if it is a loopback one (`127.0.0.1:PORT`,
/// `[::1]:PORT`; port 0 picks a free port, written to `daemon.json`).
pub fn loopback(addr: &str) -> Result<SocketAddr, Failure> {
    let a: SocketAddr = addr.parse().map_err(|_| {
        Failure::new(
            code::INVALID,
            format!("--metrics {addr}: expected IP:PORT, e.g. 127.0.0.1:9464"),
        )
    })?;
    if !a.ip().is_loopback() {
        return Err(Failure::new(
            code::INVALID,
            format!(
                "--metrics {addr}: only a loopback address (127.0.0.1 or [::1]) is allowed; \
                 put an authenticating proxy in front to scrape from another machine"
            ),
        ));
    }
    Ok(a)
}

/// A relay's store, as the metrics see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStore {
    /// Records kept.
    pub records: u64,
    /// Bytes of bundles stored for them.
    pub bytes: u64,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition of `status` (and, on a relay, of its store).
pub fn render(status: &Status, store: Option<RelayStore>) -> String {
    let mut o = String::with_capacity(2048);
    let m = &mut o;
    metric(
        m,
        "hearth_peers_connected",
        "gauge",
        "Peers connected now.",
        status.connected.len() as u64,
    );
    metric(
        m,
        "hearth_peers_known",
        "gauge",
        "Known peers (dialled and redialled).",
        status.known.len() as u64,
    );
    metric(
        m,
        "hearth_bundles_received_total",
        "counter",
        "Bundles received from peers and stored since the node started.",
        status.received,
    );
    metric(
        m,
        "hearth_rounds_finished_total",
        "counter",
        "Sync rounds ended since the node started, whatever their outcome.",
        status.rounds_finished,
    );
    metric(
        m,
        "hearth_rounds_failed_total",
        "counter",
        "Sync rounds that ended in failure since the node started.",
        status.rounds_failed,
    );
    metric(
        m,
        "hearth_notify_streamed_total",
        "counter",
        "Change notifications sent to connected peers on their notify stream.",
        status.notify.streamed,
    );
    metric(
        m,
        "hearth_notify_by_request_total",
        "counter",
        "Change notifications sent to connected peers by request, their stream unable to take them.",
        status.notify.by_request,
    );
    if let Some(r) = &status.relay {
        relay(m, r, store.unwrap_or_default());
    }
    o
}

fn relay(m: &mut String, r: &RelayCounters, store: RelayStore) {
    let counters: [(&str, &str, u64); 8] = [
        ("requests", "/hearth/store/1 requests answered.", r.requests),
        (
            "refused",
            "Requests refused whole (unknown record or peer, ended grant).",
            r.refused,
        ),
        (
            "rate_limited",
            "Requests refused for going over a peer's rate.",
            r.rate_limited,
        ),
        (
            "busy",
            "Requests dropped because the node was busy.",
            r.busy,
        ),
        ("stored", "Bundles stored.", r.stored),
        ("served", "Bundles served.", r.served),
        (
            "rejected",
            "Pushed bundles refused (signature, chain, author, quota).",
            r.rejected,
        ),
        (
            "supplied",
            "Access lists from patients' devices that said something new (one signed afresh saying the same is not counted).",
            r.supplied,
        ),
    ];
    for (name, help, v) in counters {
        metric(m, &format!("hearth_relay_{name}_total"), "counter", help, v);
    }
    metric(
        m,
        "hearth_relay_peers",
        "gauge",
        "Distinct peers served since the node started.",
        r.peers as u64,
    );
    metric(
        m,
        "hearth_relay_records",
        "gauge",
        "Records this relay keeps.",
        store.records,
    );
    metric(
        m,
        "hearth_relay_stored_bytes",
        "gauge",
        "Bytes of bundles stored for the records kept.",
        store.bytes,
    );
}

/// What the metrics listener needs.
#[derive(Clone)]
pub struct MetricsState {
    handle: Handle,
    shared: SharedState<SledStore>,
    relay: bool,
    hosts: Arc<Vec<String>>,
    store: Arc<tokio::sync::Mutex<Option<(Instant, RelayStore)>>>,
}

impl MetricsState {
    /// The state of a node reached through `handle` and `shared`, a relay if `relay`, served
    /// at `bound`.
    pub fn new(
        handle: Handle,
        shared: SharedState<SledStore>,
        relay: bool,
        bound: SocketAddr,
    ) -> Self {
        let port = bound.port();
        let hosts = vec![bound.to_string(), format!("localhost:{port}")];
        MetricsState {
            handle,
            shared,
            relay,
            hosts: Arc::new(hosts),
            store: Arc::default(),
        }
    }

    /// The relay's store figures, reused for [`STORE_FIGURES_FOR`]; scrapes wait for one
    /// another rather than scan the store side by side.
    async fn store_figures(&self) -> RelayStore {
        let mut cached = self.store.lock().await;
        if let Some((at, s)) = *cached
            && at.elapsed() < STORE_FIGURES_FOR
        {
            return s;
        }
        let shared = self.shared.clone();
        let figures = tokio::task::spawn_blocking(move || {
            let g = live::lock(&shared);
            let limits = RelayLimits::default();
            let server = Server::new(&g.vault, &g.identity, &limits);
            let hosted = server.all_hosted().unwrap_or_default();
            RelayStore {
                records: hosted.len() as u64,
                bytes: hosted
                    .iter()
                    .filter_map(|(_, h)| h.as_ref().ok())
                    .map(|h| h.used)
                    .sum(),
            }
        })
        .await
        .unwrap_or_default();
        *cached = Some((Instant::now(), figures));
        figures
    }
}

async fn metrics(State(st): State<MetricsState>, headers: HeaderMap) -> Response {
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| st.hosts.iter().any(|x| x == h));
    if !host_ok {
        return (StatusCode::FORBIDDEN, "forbidden host\n").into_response();
    }
    let store = if st.relay {
        Some(st.store_figures().await)
    } else {
        None
    };
    let body = render(&st.handle.status(), store);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// `GET /metrics`, and nothing else.
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::NotifyCounters;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback("127.0.0.1:9464").is_ok());
        assert!(loopback("[::1]:0").is_ok());
        for bad in [
            "0.0.0.0:9464",
            "192.0.2.7:9464",
            "[::]:9464",
            "localhost:9464",
            "9464",
        ] {
            let e = loopback(bad).unwrap_err();
            assert_eq!(e.code, code::INVALID, "{bad}");
        }
    }

    #[test]
    fn the_exposition_is_well_formed_and_has_no_labels() {
        let mut st = Status {
            received: 7,
            rounds_finished: 3,
            rounds_failed: 1,
            notify: NotifyCounters {
                streamed: 5,
                by_request: 2,
            },
            ..Status::default()
        };
        st.connected.insert("12D3KooWpeer".into());
        let text = render(&st, None);
        assert!(text.contains("hearth_peers_connected 1\n"), "{text}");
        assert!(text.contains("hearth_bundles_received_total 7\n"));
        assert!(text.contains("hearth_rounds_failed_total 1\n"));
        assert!(text.contains("hearth_notify_streamed_total 5\n"));
        assert!(text.contains("hearth_notify_by_request_total 2\n"));
        assert!(!text.contains("hearth_relay_"), "not a relay");
        st.relay = Some(RelayCounters {
            requests: 5,
            stored: 4,
            peers: 2,
            ..RelayCounters::default()
        });
        let text = render(
            &st,
            Some(RelayStore {
                records: 1,
                bytes: 4096,
            }),
        );
        assert!(text.contains("hearth_relay_requests_total 5\n"), "{text}");
        assert!(text.contains("hearth_relay_stored_total 4\n"));
        assert!(text.contains("hearth_relay_stored_bytes 4096\n"));
        assert!(text.contains("hearth_relay_records 1\n"));
        assert!(!text.contains("12D3KooW"), "no peer ids");
        for line in text.lines() {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            if line.starts_with('#') {
                assert!(matches!(parts[1], "HELP" | "TYPE"), "{line}");
                continue;
            }
            assert_eq!(parts.len(), 2, "a name and a value, no labels: {line}");
            assert!(!parts[0].contains('{'), "{line}");
            parts[1].parse::<u64>().unwrap();
        }
    }
}
