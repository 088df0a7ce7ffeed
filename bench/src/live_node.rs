//! A live node as `hearth run` drives one: the daemon's sync driver (`hearth_node::live`) on its
//! own sled store and its own swarm on TCP 127.0.0.1 (Noise, Yamux). Used by the `live` and
//! `revocation` modules.

use anyhow::{Context, Result, bail};
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_node::live::{self, Handle, LiveConfig, Shared, SharedState};
use hearth_node::sled_store::SledStore;
use hearth_sync::net::{self, NetConfig};
use libp2p::Multiaddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A live node for `identity` over `vault`, listening on a fresh loopback port: its handle,
/// its shared state and its address. Its vault leaves due snapshots to the driver's tick, as
/// the daemon's does.
pub(crate) async fn live_node(
    identity: Identity,
    vault: Vault<SledStore>,
    config: LiveConfig,
) -> Result<(Handle, SharedState<SledStore>, Multiaddr)> {
    let vault = vault.deferring_snapshots();
    let mut swarm = net::swarm(net::keypair(&identity)?, &NetConfig::default())?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let shared = Arc::new(Mutex::new(Shared { vault, identity }));
    let (h, _task) = live::start(swarm, shared.clone(), config);
    for _ in 0..500 {
        if let Some(a) = h.status().listen_addrs.first() {
            let addr = a.parse().context("the node's listen address")?;
            return Ok((h.clone(), shared, addr));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the live node has no listen address after 5 s")
}
