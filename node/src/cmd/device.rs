//! A patient's own devices: `hearth device link|list|remove` and `hearth init --join CODE`.
//! The pairing protocol itself is in [`hearth_sync::pairing`] (glue in [`crate::link`]).

use crate::app::{
    Ctx, ensure_new_home, new_node_name_and_passphrase, now, os_rng, patient_record, refused,
};
use crate::fail::{Failure, code};
use crate::home::{self, NodeInfo};
use crate::link::{Joiner, LinkCode, LinkOutcome, Welcome};
use crate::live::{self, LiveConfig, Shared};
use clap::Subcommand;
use hearth_core::ids::PeerKey;
use hearth_core::keys::{Identity, KdfParams, Keystore, Role};
use hearth_core::record::{OpenRecord, Vault};
use hearth_core::time::Timestamp;
use hearth_sync::net::{self, BehaviourEvent, HearthSwarm, NetConfig};
use libp2p::futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, multiaddr::Protocol};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sled_store::SledStore;

/// `hearth device …`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Print a one-time code (and QR code) that links a new device to your record: run
    /// `hearth init --join CODE` on the new device. Waits for it unless the daemon runs.
    Link {
        /// How long the code stays valid, in seconds.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        ttl: u64,
        /// Without a running daemon: listen here for the new device (repeatable). Default:
        /// every interface, TCP, a free port.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// The devices that hold your record, and those removed.
    List,
    /// Remove a device: it is no longer served or trusted, and every section moves to new
    /// keys it does not get.
    Remove {
        /// The device's peer id (see `hearth device list`).
        device: String,
    },
}

/// `hearth device …`.
pub fn device(ctx: &Ctx, cmd: DeviceCommand) -> Result<(), Failure> {
    match cmd {
        DeviceCommand::Link { ttl, listen, no_qr } => link(ctx, ttl, &listen, !no_qr),
        DeviceCommand::List => list(ctx),
        DeviceCommand::Remove { device } => remove(ctx, &device),
    }
}

const NO_RECORD: &str = "devices belong to a patient's record; this node has none";

const NOT_ROOT: &str = "only the device holding your record's root key (the one you ran `hearth init --role patient` on, or one restored from the recovery phrase) can do this";

/// The patient's own record, on a device that holds its root key.
fn root_record<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
) -> Result<OpenRecord<'v, SledStore>, Failure> {
    if identity
        .record_id()
        .is_some_and(|rid| !identity.holds_root_of(&rid))
    {
        return Err(refused(NOT_ROOT));
    }
    patient_record(vault, identity, NO_RECORD)
}

/// A terminal drawing of `text` as a QR code (two rows per character).
pub fn qr_text(text: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

fn code_text(code: &str, expires: Timestamp, qr: bool, hint: Option<&str>) -> String {
    let mut s = format!(
        "On the new device, run:\n\n  hearth init --join {code}\n\n\
         The code works once, until {} (and only while this node runs).",
        expires.to_rfc3339()
    );
    if let Some(h) = hint {
        s.push_str(&format!("\n{h}"));
    }
    if qr && let Some(q) = qr_text(code) {
        s.push_str("\n\nOr scan the code:\n");
        s.push_str(&q);
    }
    s
}

/// Listen addresses worth putting in a code: the reachable ones first, loopback last.
fn code_addresses(listen: &[String]) -> Vec<String> {
    let mut addrs: Vec<String> = listen
        .iter()
        .filter(|a| a.parse::<Multiaddr>().is_ok())
        .cloned()
        .collect();
    addrs.sort_by_key(|a| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1"));
    addrs
}

fn loopback_only(addrs: &[String]) -> bool {
    addrs
        .iter()
        .all(|a| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1"))
}

/// `hearth device link`.
fn link(ctx: &Ctx, ttl: u64, listen: &[String], qr: bool) -> Result<(), Failure> {
    if !(30..=86_400).contains(&ttl) {
        return Err(Failure::new(
            code::INVALID,
            "--ttl must be between 30 seconds and one day",
        ));
    }
    let ttl = Duration::from_secs(ttl);
    let (_info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    drop(root_record(&vault, &identity)?);
    let me = identity.peer();
    if let Some(d) = &ctx.daemon {
        if !listen.is_empty() {
            return Err(Failure::new(
                code::INVALID,
                "--listen is for a node that is not running; the daemon listens where `hearth run` told it to",
            ));
        }
        let addrs = code_addresses(&d.node.status().listen_addrs);
        let t = now();
        let code = d.node.pairing().open(me, &addrs, ttl, t)?;
        let expires = t.saturating_add_millis(ttl.as_millis() as i64);
        let hint = loopback_only(&addrs).then_some(
            "(The node listens on this machine only: for a device elsewhere on your network, \
             restart it with `hearth run --listen /ip4/0.0.0.0/tcp/PORT`.)",
        );
        ctx.print(json!({"code": code, "expires": expires}), || {
            code_text(&code, expires, qr, hint)
        });
        return Ok(());
    }
    // No daemon: run a node of our own until the new device has joined and synced.
    let listen: Vec<Multiaddr> = if listen.is_empty() {
        vec!["/ip4/0.0.0.0/tcp/0".to_string()]
    } else {
        listen.to_vec()
    }
    .iter()
    .map(|a| {
        a.parse()
            .map_err(|e| Failure::new(code::INVALID, format!("--listen {a}: {e}")))
    })
    .collect::<Result<_, _>>()?;
    let config = LiveConfig::default();
    let pairing = config.pairing.clone();
    let json_out = ctx.json;
    let outcome = crate::daemon::one_shot_on(identity, vault, &listen, config, move |node| {
        let addrs = code_addresses(&node.status().listen_addrs);
        let t = now();
        let code = pairing.open(me, &addrs, ttl, t)?;
        let expires = t.saturating_add_millis(ttl.as_millis() as i64);
        let text = if json_out {
            json!({"code": code, "expires": expires}).to_string()
        } else {
            format!(
                "{}\n\nWaiting for the new device (Ctrl-C to stop)…",
                code_text(&code, expires, qr, None)
            )
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        drop(out);
        let outcome = loop {
            if let Some(o) = pairing.outcome() {
                break o;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if let LinkOutcome::Linked { peer, .. } = &outcome {
            // Serve the new device's first sync: wait until it has come and gone.
            let id = peer.to_string();
            let start = std::time::Instant::now();
            let mut seen = false;
            while start.elapsed() < Duration::from_secs(120) {
                let connected = node.status().connected.contains(&id);
                seen |= connected;
                // Gone after its sync, or (a connection too brief to notice) never seen.
                if (seen && !connected) || (!seen && start.elapsed() > Duration::from_secs(10)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok::<_, Failure>(outcome)
    })??;
    report_outcome(ctx, outcome)
}

fn report_outcome(ctx: &Ctx, outcome: LinkOutcome) -> Result<(), Failure> {
    match outcome {
        LinkOutcome::Linked { peer, name } => {
            ctx.print(json!({"linked": {"peer_id": peer, "name": name}}), || {
                format!("Linked {name} ({peer}). It now holds and syncs your whole record.")
            });
            Ok(())
        }
        LinkOutcome::Failed(why) => Err(refused(format!("linking failed: {why}"))),
        LinkOutcome::Expired => Err(refused(
            "nobody used the code before it expired; run `hearth device link` again",
        )),
    }
}

/// `hearth device list`.
fn list(ctx: &Ctx) -> Result<(), Failure> {
    let (_info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let rec = patient_record(&vault, &identity, NO_RECORD)?;
    let rid = rec.id();
    let me = identity.peer();
    let removed = rec.removed_devices();
    let mut all: Vec<Value> = Vec::new();
    let mut certs = rec.all_device_certs();
    certs.sort_by_key(|c| c.added);
    for c in certs {
        let this = c.peer == me;
        all.push(json!({
            "peer_id": c.peer,
            "name": c.name,
            "added": c.added,
            "this_device": this,
            "holds_root_key": this && identity.holds_root_of(&rid),
            "removed": removed.get(&c.peer),
        }));
    }
    ctx.print(json!({"record_id": rid, "devices": all}), || {
        let mut lines = vec![format!("Devices of record {rid}:")];
        for d in &all {
            let mut notes = Vec::new();
            if d["this_device"].as_bool() == Some(true) {
                notes.push("this device".to_string());
            }
            if d["holds_root_key"].as_bool() == Some(true) {
                notes.push("holds the record root key".to_string());
            }
            if let Some(t) = d["removed"].as_str() {
                notes.push(format!("removed {t}"));
            }
            let added = d["added"].as_str().unwrap_or_default();
            lines.push(format!(
                "  {}  {}  added {}{}",
                d["peer_id"].as_str().unwrap_or_default(),
                d["name"].as_str().unwrap_or_default(),
                added,
                if notes.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", notes.join(", "))
                }
            ));
        }
        lines.join("\n")
    });
    Ok(())
}

/// `hearth device remove ID`.
fn remove(ctx: &Ctx, device: &str) -> Result<(), Failure> {
    let peer: PeerKey = device
        .trim()
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("not a device id: {e}")))?;
    let (_info, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = root_record(&vault, &identity)?;
    let name = rec
        .device_certs()
        .into_iter()
        .find(|c| c.peer == peer)
        .map(|c| c.name)
        .ok_or_else(|| Failure::new(code::NOT_FOUND, "no such device is linked to your record"))?;
    let mut rng = os_rng();
    let rotated = rec.remove_device(peer, now(), &mut rng)?;
    ctx.print(
        json!({"removed": {"peer_id": peer, "name": name}, "sections_rekeyed": rotated}),
        || {
            format!(
                "Removed {name} ({peer}).\n\
                 Your devices and the people you granted access stop serving it and refuse its \
                 changes as soon as they sync with this device; {rotated} sections moved to new \
                 keys it does not have, so nothing written from now on can be read with it.\n\
                 What it already holds cannot be recalled: if it was lost or stolen, its \
                 passphrase is what protects that copy."
            )
        },
    );
    Ok(())
}

/// `hearth init --join CODE`: pair with the device holding the record, then set up this node
/// as another of the patient's devices and fetch the record.
pub fn join(ctx: &Ctx, code_text: &str, name: Option<&str>) -> Result<(), Failure> {
    ensure_new_home(ctx)?;
    let code = LinkCode::parse(code_text)?;
    let t = now();
    if code.expires.as_millis() + 60_000 < t.as_millis() {
        return Err(refused(format!(
            "that link code expired at {}; run `hearth device link` again",
            code.expires.to_rfc3339()
        )));
    }
    let (name, pass) = new_node_name_and_passphrase(ctx, name, "linked device")?;
    let mut rng = os_rng();
    let identity = Identity::new_device(name.clone(), &mut rng);
    let keypair =
        net::keypair(&identity).map_err(|e| Failure::new(code::INTEGRITY, e.to_string()))?;
    let root_pid = net::peer_id(&code.peer)
        .ok_or_else(|| Failure::new(code::INVALID, "that link code names an invalid device"))?;
    let addrs: Vec<Multiaddr> = code
        .addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .map(|a| match a.iter().last() {
            Some(Protocol::P2p(_)) => a,
            _ => a.with(Protocol::P2p(root_pid)),
        })
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            code::INVALID,
            "that link code carries no usable address",
        ));
    }
    let home = crate::home::Home::new(ctx.home.dir().to_path_buf());
    let json_out = ctx.json;
    let (info, received, synced) = crate::runtime::block_on(async move {
        let mut swarm: HearthSwarm = net::swarm(keypair, &NetConfig::default())
            .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        let welcome = exchange(&mut swarm, &identity, &code, root_pid, addrs.clone()).await?;
        // Paired: write this node's home (node.json last, marking it complete).
        let identity = identity.link_to(welcome.record);
        let keystore = Keystore::seal(&identity, pass.as_bytes(), KdfParams::DEFAULT, &mut rng)
            .map_err(Failure::from_key_error)?;
        home.create_dir()?;
        let store = SledStore::open(&home.store_dir())?;
        let vault = Vault::open(store)?;
        vault.register_linked(&welcome.record, &welcome.wraps, now())?;
        let known = hearth_core::ledger::PeerAddrs {
            addrs: addrs.iter().map(ToString::to_string).collect(),
        };
        vault.set_peer_addrs(&code.peer, &known)?;
        let info = NodeInfo {
            format: home::node_format(),
            role: Role::Patient,
            peer_id: identity.peer(),
            record_id: Some(welcome.record),
            org_code: None,
        };
        home.write_new(&info, &keystore)?;
        if !json_out {
            crate::os::print_line(&format!(
                "Linked to record {} as {} ({}). Fetching the record…",
                welcome.record,
                welcome.cert.name,
                identity.peer()
            ));
        }
        // First sync, on the connection we already have.
        let shared = Arc::new(Mutex::new(Shared { vault, identity }));
        let (handle, task) = live::start(swarm, shared, LiveConfig::default());
        let h = handle.clone();
        let peer = code.peer;
        let (received, synced) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            let mut received = 0;
            loop {
                if let Ok(outcomes) = h.sync_blocking(Some(peer), Duration::from_secs(60)) {
                    let mut all = !outcomes.is_empty();
                    for o in &outcomes {
                        match &o.result {
                            Ok(r) => {
                                received += r.received;
                                all &= r.in_sync;
                            }
                            Err(_) => all = false,
                        }
                    }
                    if all {
                        return (received, true);
                    }
                }
                if std::time::Instant::now() >= deadline {
                    return (received, false);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await
        .unwrap_or((0, false));
        handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        Ok::<_, Failure>((info, received, synced))
    })??;
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "role": info.role,
            "record_id": info.record_id,
            "linked": true,
            "received": received,
            "in_sync": synced,
        }),
        || {
            if synced {
                format!("In sync: received {received} bundles. This device now holds your record.")
            } else {
                "Linked, but the first sync did not finish; run `hearth sync --wait` (or \
                 `hearth run`) while the other device is on."
                    .to_string()
            }
        },
    );
    Ok(())
}

/// The joiner's side of the pairing on `swarm`.
async fn exchange(
    swarm: &mut HearthSwarm,
    identity: &Identity,
    code: &LinkCode,
    root: libp2p::PeerId,
    addrs: Vec<Multiaddr>,
) -> Result<Welcome, Failure> {
    use request_response::{Event, Message as M};
    swarm
        .dial(DialOpts::peer_id(root).addresses(addrs).build())
        .map_err(|e| refused(format!("cannot reach the other device: {e}")))?;
    let mut joiner = Joiner::new(code, identity);
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut step = 0;
    loop {
        let ev = tokio::select! {
            _ = &mut deadline => {
                return Err(refused("no answer from the other device within 60 s (is `hearth device link` still waiting there, and reachable from here?)"));
            }
            ev = swarm.select_next_some() => ev,
        };
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == root && step == 0 => {
                let first = joiner.start();
                swarm.behaviour_mut().sync.send_request(&root, first);
                step = 1;
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } if p == root && step == 0 => {
                return Err(refused(format!("cannot reach the other device: {error}")));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::Message {
                peer,
                message: M::Response { response, .. },
                ..
            })) if peer == root => match step {
                1 => {
                    let next = joiner.on_pake(response)?;
                    swarm.behaviour_mut().sync.send_request(&root, next);
                    step = 2;
                }
                _ => return joiner.on_welcome(response),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::OutboundFailure {
                peer,
                error,
                ..
            })) if peer == root => {
                return Err(refused(format!("the other device did not answer: {error}")));
            }
            _ => {}
        }
    }
}
