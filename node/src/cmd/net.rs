//! Network commands: `run`, `status`, `peers`, `sync`, `patients`.
//!
//! `run` starts the daemon ([`crate::daemon`]) in the foreground.
//! `status` and `sync` are about the running daemon: run from the command line they are
//! forwarded to it (see [`crate::client`]); without a daemon, `status` says so and `sync`
//! runs one round in a short-lived node of its own.

use crate::api::Commands;
use crate::app::grants::held_grants;
use crate::app::patients;
use crate::app::{Ctx, now};
use crate::daemon::{self, RunOptions};
use crate::fail::{Failure, code};
use crate::live::Handle;
use crate::os::os_rng;
use crate::sled_store::SledStore;
use crate::status::status_json;
use clap::{Args, Subcommand};
use hearth_core::ids::PeerKey;
use hearth_core::record::Vault;
use hearth_sync::round::{RoundError, RoundOutcome};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde_json::{Value, json};
use std::time::Duration;

/// Adds `name` (`class:label`) to each section of each session that this node can read.
fn name_sections(v: &mut Value, vault: &Vault<SledStore>, identity: &hearth_core::keys::Identity) {
    let mut names: std::collections::HashMap<String, std::collections::HashMap<String, String>> =
        Default::default();
    let Some(sessions) = v["sessions"].as_array_mut() else {
        return;
    };
    for sess in sessions {
        let Some(rid) = sess["record"].as_str().map(String::from) else {
            continue;
        };
        let map = names.entry(rid.clone()).or_insert_with(|| {
            let mut m = std::collections::HashMap::new();
            m.insert(
                hearth_core::ids::SectionId::AUTH.to_string(),
                "(consent and directory)".to_string(),
            );
            m.insert(
                hearth_core::ids::SectionId::LEDGER.to_string(),
                "(private consent ledger)".to_string(),
            );
            if let Ok(r) = rid.parse()
                && let Ok(rec) = vault.open_record(identity, &r)
            {
                for s in rec.sections() {
                    for id in s.ids {
                        m.insert(id.to_string(), s.name.to_string());
                    }
                }
            }
            m
        });
        if let Some(secs) = sess["report"]["sections"].as_array_mut() {
            for sec in secs {
                if let Some(n) = sec["section"].as_str().and_then(|id| map.get(id)) {
                    sec["name"] = json!(n);
                }
            }
        }
    }
}

/// The grants this node holds, each with its record and state (`active`, `revoked`, `expired`).
fn held_grants_json(vault: &Vault<SledStore>, identity: &hearth_core::keys::Identity) -> Value {
    let t = now();
    let mut out = Vec::new();
    for rid in vault.records().unwrap_or_default() {
        for (id, status) in held_grants(vault, &identity.peer(), &rid, t) {
            out.push(json!({"record": rid, "id": id.to_string(), "status": status}));
        }
    }
    Value::Array(out)
}

/// `hearth run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Listen on this address (repeatable); an address in use is refused. Default: the last
    /// run's addresses (a port taken since is replaced by a fresh one), else
    /// /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Seconds between background sync rounds with connected peers.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub sync_interval: u64,
    /// Discover peers on the local network with mDNS (builds with the `mdns` feature only;
    /// announces this node's peer id on the network).
    #[arg(long)]
    pub mdns: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (loopback only, e.g. 127.0.0.1:9464;
    /// port 0 picks a free one, written to daemon.json). Counts only: no ids, no content.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Log format on standard error: `text`, or `json` (one object per line).
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        env = "HEARTH_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: crate::logs::LogFormat,
    /// Relay nodes: another organisation's relay to join the relays' network through (its
    /// address, ending in /p2p/PEER; repeatable). Remembered: later runs dial it again.
    #[arg(long, value_name = "MULTIADDR")]
    pub relay_peer: Vec<String>,
}

/// `hearth peers …`.
#[derive(Subcommand, Debug)]
pub enum PeersCommand {
    /// Remember a peer's address; the daemon dials it and keeps it connected.
    Add {
        /// The peer id.
        peer: String,
        /// Its address, e.g. /ip4/192.0.2.7/tcp/4001.
        multiaddr: String,
    },
}

/// `hearth sync`.
#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Sync with this peer only.
    #[arg(long, value_name = "PEER")]
    pub with: Option<String>,
    /// Wait until in sync (exit 0), or fail with the reason.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `hearth run`: the daemon in the foreground, running the commands forwarded to it and
/// serving the resource API with `commands` (handed down by the command line).
pub fn run(ctx: &Ctx, args: RunArgs, commands: Commands) -> Result<(), Failure> {
    if ctx.daemon.is_some() {
        return Err(Failure::new(code::REFUSED, "the daemon is already running"));
    }
    let options = RunOptions {
        listen: args.listen,
        sync_interval: args.sync_interval,
        mdns: args.mdns,
        json: ctx.json,
        metrics: args.metrics,
        log_format: args.log_format,
        relay_peers: args.relay_peer,
    };
    daemon::run(&ctx.home, options, || ctx.unlock(), commands)
}

/// `hearth status`.
pub fn status(ctx: &Ctx) -> Result<(), Failure> {
    let info = ctx.node_info()?;
    let v = match &ctx.daemon {
        Some(d) => {
            let st = d.node.status();
            let api = daemon::read_daemon_file(&ctx.home).map(|f| f.api);
            let mut v = status_json(&info, api.as_deref(), Some(&st));
            // The caller proved the passphrase: name the sections this node can read.
            if let (Ok((_, identity)), Ok(vault)) = (ctx.unlock(), ctx.vault()) {
                name_sections(&mut v, &vault, &identity);
                v["grants"] = held_grants_json(&vault, &identity);
                if let Some(rid) = identity.record_id()
                    && let Ok(mut rec) = vault.open_record(&identity, &rid)
                {
                    let names = crate::app::audit::Names::of(&mut rec, &identity, now());
                    let open = crate::app::audit::open_emergencies(&mut rec, &names, now());
                    v["emergency"] = json!(open.iter().map(|(j, _)| j).collect::<Vec<_>>());
                    v["emergency_words"] = json!(open.iter().map(|(_, w)| w).collect::<Vec<_>>());
                }
            }
            v
        }
        None => status_json(&info, None, None),
    };
    ctx.print(v.clone(), || crate::status::status_text(&v));
    Ok(())
}

/// Parses `PEER MULTIADDR`: the address may end in `/p2p/PEER`, which must match.
fn parse_peer_addr(peer: &str, addr: &str) -> Result<(PeerKey, Multiaddr), Failure> {
    let key: PeerKey = peer
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("peer id: {e}")))?;
    let mut ma: Multiaddr = addr
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("address: {e}")))?;
    if let Some(Protocol::P2p(id)) = ma.iter().last() {
        if hearth_sync::net::peer_key(&id) != Some(key) {
            return Err(Failure::new(
                code::INVALID,
                "the address names another peer than PEER",
            ));
        }
        ma.pop();
    }
    if ma.iter().count() == 0 {
        return Err(Failure::new(code::INVALID, "the address is empty"));
    }
    Ok((key, ma))
}

/// `hearth peers [add PEER MULTIADDR]`.
pub fn peers(ctx: &Ctx, cmd: Option<PeersCommand>) -> Result<(), Failure> {
    let (_info, _identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    match cmd {
        Some(PeersCommand::Add { peer, multiaddr }) => {
            let (key, ma) = parse_peer_addr(&peer, &multiaddr)?;
            let mut known = vault.peer_addrs(&key)?;
            known.put_first(ma.to_string());
            vault.set_peer_addrs(&key, &known)?;
            let addrs = known.addrs;
            if let Some(d) = &ctx.daemon {
                d.node.add_peer(key, ma.clone());
            }
            ctx.print(json!({"peer_id": key, "addrs": addrs}), || {
                format!("added {key} at {ma}")
            });
        }
        None => {
            let connected = ctx
                .daemon
                .as_ref()
                .map(|d| d.node.status().connected)
                .unwrap_or_default();
            let list: Vec<Value> = vault
                .known_peers()?
                .into_iter()
                .map(|(p, known)| {
                    let p = p.to_string();
                    let addrs: Vec<String> = hearth_sync::net::multiaddrs(&known)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    json!({"peer_id": p, "addrs": addrs, "connected": connected.contains(&p)})
                })
                .collect();
            ctx.print(json!({ "peers": list }), || {
                if list.is_empty() {
                    return "no known peers (add one with `hearth peers add PEER MULTIADDR`)"
                        .to_string();
                }
                list.iter()
                    .map(|p| {
                        format!(
                            "{}  {}{}",
                            p["peer_id"].as_str().unwrap_or_default(),
                            strings(&p["addrs"]).join(" "),
                            if p["connected"].as_bool() == Some(true) {
                                "  (connected)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

fn outcomes_json(outcomes: &[RoundOutcome]) -> Vec<Value> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(rep) => json!({"peer": o.peer, "record": o.record, "in_sync": rep.in_sync, "received": rep.received, "sent": rep.sent, "refused": rep.refused, "rejected": rep.rejected, "sections": rep.sections}),
            Err(e) => json!({"peer": o.peer, "record": o.record, "in_sync": false, "error": e.to_string()}),
        })
        .collect()
}

/// Whether every record of `outcomes` is in sync with at least one peer: a record reached
/// through one of its relays while the patient's node is offline is in sync (the other
/// rounds' failures are still reported).
fn every_record_in_sync(outcomes: &[RoundOutcome]) -> bool {
    !outcomes.is_empty()
        && outcomes.iter().all(|o| {
            outcomes
                .iter()
                .any(|x| x.record == o.record && x.result.as_ref().is_ok_and(|r| r.in_sync))
        })
}

/// Who `peer` is to `record`, in words, from what this node holds: one of the patient's
/// devices, one of the record's relays (its auth document or a grant names it), or a peer id.
fn peer_words(
    vault: &Vault<SledStore>,
    identity: &hearth_core::keys::Identity,
    record: &hearth_core::ids::RecordId,
    peer: &PeerKey,
) -> String {
    let local = hearth_sync::session::Local::new(vault, identity);
    if local.relays(record, now()).iter().any(|(p, _)| p == peer) {
        return format!("the relay {peer}");
    }
    if let Ok(rec) = vault.open_record(identity, record)
        && let Some(d) = rec.device_certs().into_iter().find(|d| d.peer == *peer)
    {
        return format!("the patient's device \"{}\"", d.name);
    }
    peer.to_string()
}

fn report_round(ctx: &Ctx, outcomes: Vec<RoundOutcome>, wait: bool) -> Result<(), Failure> {
    let list = outcomes_json(&outcomes);
    let all_in_sync = every_record_in_sync(&outcomes);
    let words: std::collections::BTreeMap<(PeerKey, hearth_core::ids::RecordId), String> = outcomes
        .iter()
        .map(|o| ((o.peer, o.record), o.peer.to_string()))
        .collect();
    let mut words = words;
    if !ctx.json
        && !outcomes.is_empty()
        && let (Ok((_, identity)), Ok(vault)) = (ctx.unlock(), ctx.vault())
    {
        for o in &outcomes {
            let w = peer_words(&vault, &identity, &o.record, &o.peer);
            words.insert((o.peer, o.record), w);
        }
    }
    ctx.print(json!({"in_sync": all_in_sync, "sessions": list}), || {
        if outcomes.is_empty() {
            return "nothing to sync: no connected or known peer shares a record with this node"
                .to_string();
        }
        outcomes
            .iter()
            .map(|o| (&words[&(o.peer, o.record)], o.record, &o.result))
            .map(|(p, r, res)| match res {
                Ok(rep) => format!(
                    "record {r} with {p}: {} ({} received, {} sent{})",
                    if rep.in_sync {
                        "in sync"
                    } else {
                        "not yet in sync"
                    },
                    rep.received,
                    rep.sent,
                    if rep.refused.is_empty() {
                        String::new()
                    } else {
                        format!(", {} refused", rep.refused.len())
                    }
                ),
                Err(e) => format!("record {r} with {p}: failed: {e}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if !wait {
        return Ok(());
    }
    if outcomes.is_empty() {
        return Err(Failure::new(
            code::NOT_FOUND,
            "nothing to sync: no connected or known peer shares a record with this node",
        ));
    }
    let reached = |o: &RoundOutcome| {
        outcomes
            .iter()
            .any(|x| x.record == o.record && x.result.as_ref().is_ok_and(|r| r.in_sync))
    };
    if let Some(o) = outcomes.iter().find(|o| o.result.is_err() && !reached(o))
        && let Err(e) = &o.result
    {
        return Err(Failure::new(
            code::IO,
            format!("sync of {} with {} failed: {e}", o.record, o.peer),
        ));
    }
    if let Some((o, n)) = outcomes.iter().filter(|o| !reached(o)).find_map(|o| {
        o.result
            .as_ref()
            .ok()
            .map(|r| (o, r.rejected))
            .filter(|x| x.1 > 0)
    }) {
        return Err(Failure::new(
            code::REFUSED,
            format!(
                "not in sync: {} refused {n} change(s) this node sent for record {}; sending them \
                 again would not help (--json lists the reasons)",
                words[&(o.peer, o.record)],
                o.record
            ),
        ));
    }
    if !all_in_sync {
        return Err(Failure::new(code::IO, "not in sync yet"));
    }
    Ok(())
}

/// Runs rounds until in sync or the deadline.
fn sync_with(
    node: &Handle,
    with: Option<PeerKey>,
    args: &SyncArgs,
) -> Result<Vec<RoundOutcome>, Failure> {
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout.max(1));
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut outcomes = node
            .sync_blocking(with, left.max(Duration::from_millis(100)))
            .map_err(|e| Failure::new(code::IO, format!("sync: {e}")))?;
        // A pair with a peer that is no party to the record here had nothing to do (a
        // patient's own record, planned with the node they hold a grant from).
        outcomes.retain(|o| !o.result.as_ref().is_err_and(RoundError::is_no_party));
        let done = every_record_in_sync(&outcomes);
        // A peer that refuses us will refuse again: waiting would not change that.
        let refused = outcomes
            .iter()
            .any(|o| o.result.as_ref().is_err_and(|e| e.is_refusal()));
        // Nor would it for a peer that refused what this node pushed (it is pushed again, and
        // refused again, until a person looks).
        let rejected = outcomes
            .iter()
            .any(|o| o.result.as_ref().is_ok_and(|r| r.rejected > 0));
        // Nobody to sync with: waiting would not change that either.
        if !args.wait
            || outcomes.is_empty()
            || done
            || refused
            || rejected
            || std::time::Instant::now() >= deadline
        {
            return Ok(outcomes);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `hearth sync [--with PEER] [--wait]`.
pub fn sync(ctx: &Ctx, args: SyncArgs) -> Result<(), Failure> {
    let with = args
        .with
        .as_deref()
        .map(|p| {
            p.parse::<PeerKey>()
                .map_err(|e| Failure::new(code::INVALID, format!("--with: {e}")))
        })
        .transpose()?;
    match &ctx.daemon {
        Some(d) => {
            let outcomes = sync_with(&d.node, with, &args)?;
            report_round(ctx, outcomes, args.wait)
        }
        None => {
            // No daemon: a short-lived node of our own does one round.
            let (_info, identity) = ctx.unlock()?;
            let vault = ctx.vault()?;
            let a = args.clone();
            let outcomes =
                daemon::one_shot(identity, vault, move |node| sync_with(node, with, &a))?;
            report_round(ctx, outcomes?, args.wait)
        }
    }
}

/// The strings in a JSON array (none if it is not one).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// `hearth patients`: the records held, with the patient's name if readable.
pub fn patients(ctx: &Ctx) -> Result<(), Failure> {
    let (info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let list = patients::listing(&vault, &identity, info.record_id, now(), &mut os_rng())?;
    ctx.print(json!({ "patients": list }), || {
        if list.is_empty() {
            return "no patient records held yet".to_string();
        }
        list.iter()
            .map(|p| {
                let states: Vec<&str> = p["grants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g["status"].as_str())
                    .collect();
                let state = if states.contains(&"active") || states.is_empty() {
                    String::new()
                } else {
                    format!("  [grant {}]", states.join(", "))
                };
                format!(
                    "{}  {}  ({}){state}",
                    p["record_id"].as_str().unwrap_or_default(),
                    p["name"].as_str().unwrap_or("(name not shared)"),
                    strings(&p["sections"]).join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
