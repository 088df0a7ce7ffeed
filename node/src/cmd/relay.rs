//! Relay commands: `relay use` (a patient asks an organisation's relay to keep the record
//! reachable), `relay list` (the record's relays), `relay status` (a relay node's records and
//! counters).

use crate::app::grants::{own_record, record_grant};
use crate::app::parse::parse_expires;
use crate::app::{Ctx, now, os_rng};
use crate::daemon;
use crate::fail::{Failure, code};
use crate::live::Handle;
use clap::Subcommand;
use hearth_core::grant::{self, Ability, Grant, GrantSpec, Purpose};
use hearth_core::ids::PeerKey;
use hearth_core::keys::Role;
use hearth_core::ledger::{IssuedGrant, RelayItem};
use hearth_core::record::AuthItem;
use hearth_core::section::{SectionClass, SectionSpec};
use hearth_sync::relay::server::{RelayLimits, Server};
use hearth_sync::round::RoundOutcome;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde_json::json;
use std::time::Duration;

/// `hearth relay …`.
#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Ask an organisation's relay to keep your record reachable while your devices are
    /// offline (patient). It stores the record encrypted and cannot read it; professionals
    /// you granted sync through it, and their notes wait there for you.
    Use {
        /// The relay's address, ending in /p2p/PEER (its operator gives it to you).
        address: String,
        /// How long the relay may keep your record (`1y`, `6mo`, `30d`…).
        #[arg(long, default_value = "1y")]
        expires: String,
    },
    /// Your record's relays (or, on a professional's node, the relays of the records held).
    List,
    /// This relay's records, storage and counters (relay nodes).
    Status,
    /// Find which organisations' relays keep a record, on the relays' network. Anyone who
    /// knows a record's id can ask; the answer names relays and their addresses, nothing
    /// else.
    Find {
        /// The record id.
        record: String,
        /// Ask through this relay (its address, ending in /p2p/PEER); by default through
        /// the relays of the records this node holds.
        #[arg(long, value_name = "MULTIADDR")]
        via: Option<String>,
        /// How long to look, in seconds (at most 120).
        #[arg(long, default_value_t = 20, value_name = "SECONDS")]
        timeout: u64,
    },
}

/// Runs a relay command.
pub fn relay(ctx: &Ctx, cmd: RelayCommand) -> Result<(), Failure> {
    match cmd {
        RelayCommand::Use { address, expires } => use_relay(ctx, &address, &expires),
        RelayCommand::List => list(ctx),
        RelayCommand::Status => status(ctx),
        RelayCommand::Find {
            record,
            via,
            timeout,
        } => find(ctx, &record, via.as_deref(), timeout),
    }
}

/// The peer an address ends with.
pub(crate) fn relay_peer(address: &str) -> Result<(Multiaddr, PeerKey), Failure> {
    let bad = |why: &str| Failure::new(code::INVALID, format!("relay address {address}: {why}"));
    let addr: Multiaddr = address.parse().map_err(|_| bad("not a multiaddress"))?;
    let Some(Protocol::P2p(pid)) = addr.iter().last() else {
        return Err(bad("it must end with /p2p/PEER (the relay's peer id)"));
    };
    let peer = hearth_sync::net::peer_key(&pid).ok_or_else(|| bad("not a Hearth peer id"))?;
    Ok((addr, peer))
}

/// Every section class, every label: a relay keeps the whole record (as ciphertext).
pub(crate) fn whole_record() -> Result<SectionSpec, Failure> {
    let spec: Vec<String> = SectionClass::ALL.iter().map(|c| format!("{c}:*")).collect();
    spec.join(",")
        .parse()
        .map_err(|_| Failure::new(code::IO, "internal: the whole-record section pattern"))
}

fn use_relay(ctx: &Ctx, address: &str, expires: &str) -> Result<(), Failure> {
    let (addr, peer) = relay_peer(address)?;
    parse_expires(expires, now())?;
    let (_, identity) = ctx.unlock()?;
    if identity.peer() == peer {
        return Err(Failure::new(
            code::INVALID,
            "that address is this node's own",
        ));
    }
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    let mut rng = os_rng();
    let t = now();
    // The converse of the rule `emergency arrange` keeps: an organisation may not hold both
    // the record's ciphertext and, in an emergency, the right to its keys.
    if rec.arrangements(t).contains_key(&peer) {
        return Err(Failure::new(
            code::REFUSED,
            "that organisation holds an emergency arrangement for this record: as a relay it \
             would hold both the record's ciphertext and, in an emergency, the right to its \
             keys. Cancel the arrangement first (hearth emergency cancel --org ORG_ID)",
        ));
    }
    let mut spec = GrantSpec::new(
        peer,
        whole_record()?,
        Ability::Relay,
        t,
        parse_expires(expires, t)?,
    );
    spec.purpose = Purpose::DirectCare;
    let g = Grant::issue_root(&identity, spec, &[], &mut rng)
        .map_err(|e| Failure::new(code::INVALID, e.to_string()))?;
    let item = IssuedGrant {
        token: grant::chain_to_token(std::slice::from_ref(&g)),
        issued_at: t,
        audience: peer,
        audience_name: None,
        request: None,
        keys_included: false,
    };
    record_grant(&mut rec, &g, &item, None, t, &mut rng)?;
    // The relay's name for itself, from its signed card (shown as its own claim).
    let name = crate::org_log::card_of(
        &identity,
        peer,
        vec![addr.clone()],
        Duration::from_secs(10),
        "the relay",
    )
    .ok()
    .map(|c| c.body().name.clone());
    let relay_item = RelayItem {
        addrs: vec![addr.to_string()],
        name,
        added_at: t,
    };
    rec.put_auth(vec![AuthItem::Relay(peer, relay_item)], t, &mut rng)?;
    let mut known = vault.peer_addrs(&peer)?;
    known.put_first(addr.to_string());
    vault.set_peer_addrs(&peer, &known)?;
    let until = g.body().expires;
    drop(rec);
    // Supply it: the signed access list, the recovery key's wraps, every bundle. A running
    // daemon does it on its own (the relay is now a known peer and one of the record's
    // relays); without one, a short-lived node does it now.
    let outcomes = match &ctx.daemon {
        Some(_) => None,
        None => Some(daemon::one_shot(identity, vault, move |node| {
            node.add_peer(peer, addr.clone());
            supply(node, peer)
        })?),
    };
    let sent: usize = outcomes
        .iter()
        .flatten()
        .filter_map(|o| o.result.as_ref().ok())
        .map(|r| r.sent)
        .sum();
    let error = outcomes.as_ref().and_then(|o| {
        o.iter()
            .find_map(|o| o.result.as_ref().err().map(ToString::to_string))
            .or_else(|| o.is_empty().then(|| "no answer".to_string()))
    });
    let supplied = outcomes.is_some() && error.is_none();
    ctx.print(
        json!({"relay": peer, "address": address, "expires": until, "supplied": supplied, "bundles_sent": sent, "error": error}),
        || {
            let head = format!(
                "The relay {peer} now keeps your record reachable until {} (encrypted: it cannot read it).",
                crate::app::parse::when_words(until)
            );
            match (&outcomes, &error) {
                (None, _) => format!("{head}\nYour node is supplying it now (`hearth status` shows it)."),
                (Some(_), None) => format!("{head}\nSent it {sent} bundles."),
                (Some(_), Some(e)) => format!(
                    "{head}\nIt could not be reached just now ({e}); your node supplies it whenever it runs."
                ),
            }
        },
    );
    Ok(())
}

/// Rounds with the relay, for up to 20 seconds, until it is supplied.
fn supply(node: &Handle, relay: PeerKey) -> Vec<RoundOutcome> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let outcomes = node
            .sync_blocking(Some(relay), left.max(Duration::from_millis(100)))
            .unwrap_or_default();
        let done = outcomes
            .iter()
            .all(|o| o.result.as_ref().is_ok_and(|r| r.in_sync));
        if (done && !outcomes.is_empty()) || std::time::Instant::now() >= deadline {
            return outcomes;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let t = now();
    let mut out = Vec::new();
    for record in vault.records()? {
        let Ok(rec) = vault.open_record(&identity, &record) else {
            continue;
        };
        for (peer, item) in rec.relays(t) {
            out.push(json!({"record": record, "relay": peer, "name": item.name, "addresses": item.addrs, "added_at": item.added_at}));
        }
    }
    ctx.print(json!({ "relays": out }), || {
        if out.is_empty() {
            return "no relays: `hearth relay use ADDRESS` asks an organisation's relay to keep your record reachable".into();
        }
        out.iter()
            .map(|r| {
                format!(
                    "record {}: relay {} at {}",
                    r["record"].as_str().unwrap_or_default(),
                    match r["name"].as_str() {
                        Some(n) => format!("\"{n}\" (its own name for itself)"),
                        None => r["relay"].as_str().unwrap_or_default().to_string(),
                    },
                    r["addresses"][0].as_str().unwrap_or("(no address)")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

fn status(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    if identity.role != Role::Relay {
        return Err(Failure::new(
            code::REFUSED,
            "this node is not a relay (an organisation's node, `hearth init --role relay`); `hearth relay list` shows your record's relays",
        ));
    }
    let vault = ctx.vault()?;
    let limits = RelayLimits::default();
    let server = Server::new(&vault, &identity, &limits);
    let t = now();
    let me = identity.peer();
    let mut records = Vec::new();
    let mut bytes = 0u64;
    for (id, h) in server
        .all_hosted()
        .map_err(|e| Failure::new(code::IO, e.to_string()))?
    {
        // A damaged record is listed as such (its own items; the others read on).
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                records.push(json!({"record": id, "serving": false, "unreadable": e.to_string()}));
                continue;
            }
        };
        let open = hearth_sync::relay::access::SignedAccess::open(&h.access, &me, t);
        let (serving, until, peers) = match &open {
            Ok((list, until)) => (true, Some(*until), list.entries.len()),
            Err(_) => (false, None, 0),
        };
        bytes += h.used;
        records.push(json!({"record": id, "bytes": h.used, "serving": serving, "until": until, "peers": peers, "updated": h.updated}));
    }
    let counters = ctx.daemon.as_ref().and_then(|d| d.node.status().relay);
    ctx.print(
        json!({"records": records.len(), "bytes": bytes, "quota_per_record": limits.quota_bytes, "hosted": records, "since_start": counters, "daemon": ctx.daemon.is_some()}),
        || {
            let mut lines = vec![format!(
                "Relay {me}: keeps {} records, {} bytes of ciphertext (quota {} bytes per record).",
                records.len(),
                bytes,
                limits.quota_bytes
            )];
            for r in &records {
                let id = r["record"].as_str().unwrap_or_default();
                let short = id.get(..12).unwrap_or(id);
                if let Some(why) = r["unreadable"].as_str() {
                    lines.push(format!(
                        "  {short}…  unreadable here: {why}",
                    ));
                    continue;
                }
                lines.push(format!(
                    "  {short}…  {} bytes, {} peers, {}",
                    r["bytes"],
                    r["peers"],
                    if r["serving"].as_bool() == Some(true) { "serving" } else { "not serving (the patient's relay grant ended)" }
                ));
            }
            match &counters {
                Some(c) => lines.push(format!(
                    "Since start: {} requests, {} refused, {} over rate, {} bundles stored, {} served, {} rejected, {} peers.",
                    c.requests, c.refused, c.rate_limited, c.stored, c.served, c.rejected, c.peers
                )),
                None => lines.push("The relay is not running (`hearth run` starts it).".into()),
            }
            lines.join("\n")
        },
    );
    Ok(())
}

fn find(ctx: &Ctx, record: &str, via: Option<&str>, timeout: u64) -> Result<(), Failure> {
    let record: hearth_core::ids::RecordId = record
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("record id: {e}")))?;
    let via = match via {
        Some(a) => {
            let (mut addr, peer) = relay_peer(a)?;
            addr.pop();
            Some((peer, addr))
        }
        None => None,
    };
    let timeout = Duration::from_secs(timeout.clamp(1, 120));
    let found = match &ctx.daemon {
        Some(d) => d.node.find_relays(record, via, timeout),
        None => {
            let (_, identity) = ctx.unlock()?;
            let vault = ctx.vault()?;
            daemon::one_shot(identity, vault, move |node| {
                node.find_relays(record, via, timeout)
            })?
        }
    }
    .map_err(|e| Failure::new(code::IO, format!("relay find: {e}")))?;
    // Remembered for this record: a grantee's syncs then go through them too.
    if !found.is_empty() {
        let (_, identity) = ctx.unlock()?;
        let vault = ctx.vault()?;
        let local = hearth_sync::session::Local::new(&vault, &identity);
        for l in found.iter().filter(|l| !l.addrs.is_empty()) {
            let Ok(peer) = l.relay.parse::<PeerKey>() else {
                continue;
            };
            let addrs = hearth_core::ledger::PeerAddrs {
                addrs: l
                    .addrs
                    .iter()
                    .take(hearth_core::ledger::MAX_PEER_ADDRS)
                    .map(|a| format!("{a}/p2p/{peer}"))
                    .collect(),
            };
            local
                .found_at(&record, &peer, &addrs)
                .map_err(|e| Failure::new(code::IO, e.to_string()))?;
        }
    }
    ctx.print(json!({"record": record, "relays": found}), || {
        if found.is_empty() {
            return format!("no relay was found keeping record {record}");
        }
        found
            .iter()
            .map(|l| match l.addrs.first() {
                Some(a) => format!(
                    "relay {} keeps record {record}: {a}/p2p/{}",
                    l.relay, l.relay
                ),
                None => format!(
                    "relay {} keeps record {record} (it could not be reached)",
                    l.relay
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
