//! This node's addresses, and those it learns: a grant carries the patient's node's
//! addresses, so that accepting it is enough to find that node.

use super::Ctx;
use crate::fail::Failure;
use crate::sled_store::SledStore;
use hearth_core::ids::PeerKey;
use hearth_core::record::Vault;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// This node's addresses for others to dial (each ending in `/p2p/PEER`): the running
/// daemon's listen addresses, or without a daemon those it last listened on. Grants carry
/// them, so that accepting a grant is enough to find the patient's node.
pub fn own_addresses(ctx: &Ctx, vault: &Vault<SledStore>, peer: &PeerKey) -> Vec<String> {
    let addrs: Vec<Multiaddr> = match &ctx.daemon {
        Some(d) => d
            .node
            .status()
            .listen_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        None => vault
            .listen_addrs()
            .map(|a| hearth_sync::net::multiaddrs(&a))
            .unwrap_or_default(),
    };
    let Some(pid) = hearth_sync::net::peer_id(peer) else {
        return Vec::new();
    };
    addrs
        .into_iter()
        .take(hearth_core::grant::MAX_ADDRESSES)
        .map(|a| a.with(Protocol::P2p(pid)).to_string())
        .collect()
}

/// The addresses a grant of `rec` carries: this node's own, then the record's relays (as
/// [`hearth_core::grant::RELAY_HINT`]`<address>`), at most
/// [`hearth_core::grant::MAX_ADDRESSES`], so a grantee can reach the record through a relay
/// even before it has reached this node.
pub fn grant_addresses(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    rec: &hearth_core::record::OpenRecord<'_, SledStore>,
    peer: &PeerKey,
    now: hearth_core::time::Timestamp,
) -> Vec<String> {
    let mut out = own_addresses(ctx, vault, peer);
    out.truncate(hearth_core::grant::MAX_ADDRESSES / 2);
    for (_, item) in rec.relays(now) {
        for a in item.addrs.iter().take(1) {
            out.push(format!("{}{a}", hearth_core::grant::RELAY_HINT));
        }
    }
    out.truncate(hearth_core::grant::MAX_ADDRESSES);
    out
}

/// Remembers the peers named by addresses ending in `/p2p/PEER` (from a grant), so the node
/// dials them; returns how many were learnt. Addresses without a peer are ignored.
pub fn learn_addresses(
    ctx: &Ctx,
    vault: &Vault<SledStore>,
    addresses: &[String],
) -> Result<usize, Failure> {
    let mut n = 0;
    // In reverse, so that the first address given ends up first.
    for a in addresses
        .iter()
        .take(hearth_core::grant::MAX_ADDRESSES)
        .rev()
    {
        let Ok(ma) = a.parse::<Multiaddr>() else {
            continue;
        };
        let Some(Protocol::P2p(id)) = ma.iter().last() else {
            continue;
        };
        let Some(key) = hearth_sync::net::peer_key(&id) else {
            continue;
        };
        let mut bare = ma.clone();
        bare.pop();
        let mut known = vault.peer_addrs(&key)?;
        let text = bare.to_string();
        if !known.addrs.contains(&text) {
            known.put_first(text);
            vault.set_peer_addrs(&key, &known)?;
        }
        if let Some(d) = &ctx.daemon {
            d.node.add_peer(key, bare);
        }
        n += 1;
    }
    Ok(n)
}
