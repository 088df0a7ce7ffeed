//! What the benchmarks over live nodes share: a percentile, and a node driven by the daemon's
//! sync driver on its own sled store and its own swarm on TCP 127.0.0.1.

#![allow(dead_code)] // each benchmark uses a part

use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_node::live::{self, Handle, LiveConfig, Shared, SharedState};
use hearth_node::sled_store::SledStore;
use hearth_sync::net::{self, NetConfig};
use libp2p::Multiaddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `p` quantile of `v` (sorted in place), nearest rank.
pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The runtime every live benchmark runs on: two worker threads (the machines have two cores).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A live node for `identity` over `vault`, listening on a fresh loopback port: its handle,
/// its shared state and its address.
pub(crate) async fn live_node(
    identity: Identity,
    vault: Vault<SledStore>,
    config: LiveConfig,
) -> (Handle, SharedState<SledStore>, Multiaddr) {
    let mut swarm = net::swarm(net::keypair(&identity).unwrap(), &NetConfig::default()).unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let shared = Arc::new(Mutex::new(Shared { vault, identity }));
    let (h, _task) = live::start(swarm, shared.clone(), config);
    for _ in 0..500 {
        if let Some(a) = h.status().listen_addrs.first() {
            return (h.clone(), shared, a.parse().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no listen address");
}
