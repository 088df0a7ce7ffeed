//! What each step measures over libp2p (memory transport): the relays' Kademlia network
//! forming and announcing every record kept, an A&E clinician's lookups of records' relays,
//! and the fan-out of patients' edits through their relays to their online grantees.

use super::model::{Area, Kept, Staff};
use super::net::Node;
use crate::automerge_base::note;
use anyhow::{Context, Result, ensure};
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_core::section::SectionName;
use hearth_core::store::MemoryStore;
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_sync::net::{locator, peer_id};
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::Local;
use libp2p::PeerId;
use libp2p::futures::future::join_all;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The relays' network formed and announced.
pub(super) struct Announcing {
    /// Time until every relay's routing table held every other relay.
    pub(super) formed: Duration,
    /// Records announced (one per record per keeping relay).
    pub(super) announced: usize,
    /// Kademlia requests the announcements sent.
    pub(super) messages: u64,
    /// Announcements that failed.
    pub(super) failed: usize,
    /// Wall time for all relays to announce all they keep, at once.
    pub(super) took: Duration,
    /// ADD_PROVIDER requests each relay received.
    pub(super) received: Vec<usize>,
    /// Records each relay's Kademlia store can name a keeper of (bounded by
    /// `NetConfig::kad_max_keys`).
    pub(super) held: Vec<usize>,
}

/// Starts a node for each relay, joins them into one Kademlia network through relay 0 (the
/// others know only it, as a relay configured with one `--relay-peer` does), and has every
/// relay announce every record it keeps.
pub(super) async fn relay_network(area: &Area) -> Result<(Vec<Node>, Announcing)> {
    let mut nodes = Vec::with_capacity(area.relays.len());
    for r in &area.relays {
        nodes.push(Node::start(&r.id, Some(r.clone())).await?);
    }
    let t = Instant::now();
    for n in nodes.iter().skip(1) {
        n.dial(&nodes[0]).await?;
    }
    let deadline = t + Duration::from_secs(60);
    loop {
        for n in &nodes {
            n.bootstrap().await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut full = true;
        for n in &nodes {
            full &= n.routing().await? + 1 >= nodes.len();
        }
        if full {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the relays' routing tables did not fill within a minute"
        );
    }
    let formed = t.elapsed();
    let mut keys = vec![Vec::new(); nodes.len()];
    for p in &area.patients {
        for &r in &p.relays {
            keys[r].push(locator(&p.record));
        }
    }
    let announced = keys.iter().map(Vec::len).sum();
    let t = Instant::now();
    let results = join_all(nodes.iter().zip(keys).map(|(n, k)| n.provide(k))).await;
    let took = t.elapsed();
    let (mut messages, mut failed) = (0, 0);
    for a in results {
        let a = a?;
        messages += a.messages;
        failed += a.failed;
    }
    let received = nodes
        .iter()
        .map(|n| {
            n.counters
                .add_provider
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect();
    // ADD_PROVIDER is sent without an answer: let the last ones arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all: Vec<_> = area.patients.iter().map(|p| locator(&p.record)).collect();
    let mut held = Vec::with_capacity(nodes.len());
    for n in &nodes {
        held.push(n.held(all.clone()).await?);
    }
    let announcing = Announcing {
        held,
        formed,
        announced,
        messages,
        failed,
        took,
        received,
    };
    Ok((nodes, announcing))
}

/// Lookups of records' relays.
pub(super) struct Lookups {
    /// Each lookup's time (to the query's end).
    pub(super) times: Vec<f64>,
    /// Kademlia requests per lookup.
    pub(super) messages: Vec<f64>,
    /// Each baseline exchange's time: one store request to the trust's relay, already known
    /// and connected.
    pub(super) direct: Vec<f64>,
    /// Lookups that found every relay keeping the record.
    pub(super) complete: usize,
}

/// An A&E clinician's node, knowing only its trust's relay, looks up the relays of `n`
/// patients spread over the area (patients it holds no grant for: an emergency). Baseline,
/// for each: one store request for the record to the trust's relay (answered by the real
/// server, usually with a refusal), the cost of asking a relay already known.
pub(super) async fn lookups(area: &Area, relays: &[Node], n: usize) -> Result<Lookups> {
    let ae = area
        .pros
        .iter()
        .find(|p| p.staff == Staff::Emergency)
        .context("the area has an A&E clinician")?;
    let node = Node::start(&ae.id, None).await?;
    node.dial(&relays[0]).await?;
    let empty = Vault::new(MemoryStore::new());
    let local = Local::new(&empty, &ae.id);
    let trust = area.relays[0].id.peer();
    let mut rng = TestRng::new(21);
    let mut out = Lookups {
        times: Vec::new(),
        messages: Vec::new(),
        direct: Vec::new(),
        complete: 0,
    };
    let total = area.patients.len();
    for i in 0..n {
        let p = &area.patients[(i * total) / n + (total / n) / 2];
        // Warm the connection first (untimed), then the baseline, then the lookup.
        let req = local.relay_start(p.record, trust, TEST_NOW, &mut rng)?;
        node.store(relays[0].peer, req.clone()).await?;
        let t = Instant::now();
        node.store(relays[0].peer, req).await?;
        out.direct.push(crate::measure::ms(t.elapsed()));
        let l = node.find(locator(&p.record)).await?;
        out.times.push(crate::measure::ms(l.took));
        out.messages.push(f64::from(l.messages));
        let want: BTreeSet<PeerId> = p.relays.iter().map(|&r| relays[r].peer).collect();
        if want.is_subset(&l.found) {
            out.complete += 1;
        }
    }
    Ok(out)
}

/// One patient's edit, spread.
pub(super) struct Edit {
    /// Relays and grantees that must receive it.
    pub(super) receivers: usize,
    /// Grantees online when it was made.
    pub(super) online: usize,
    /// Store exchanges it took (the patient's with its relays, the grantees' fetches).
    pub(super) exchanges: usize,
    /// Bytes of their frames.
    pub(super) bytes: usize,
    /// From the edit to every relay holding it.
    pub(super) to_relays: Duration,
    /// From the edit to every online grantee holding it (verified and stored).
    pub(super) to_grantees: Duration,
}

/// A grantee's node for the fan-out: its store (holding the record as of before the edit)
/// and its network node.
struct Grantee<'a> {
    id: &'a Identity,
    vault: Vault<MemoryStore>,
    node: Node,
}

/// The kept patients each add a note: the patient's node pushes it to each of its relays at
/// once (`relay_start`, then the push, over libp2p), then each online grantee (60 % of
/// them) fetches it from the patient's practice relay at once (the grantee's node would do
/// so on its next round: the delay of a round is not counted). Every grantee already holds the
/// record as it was before (fetched untimed, in process).
pub(super) async fn fanout(area: &mut Area, relays: &[Node]) -> Result<Vec<Edit>> {
    let kept = std::mem::take(&mut area.kept);
    let mut edits = Vec::with_capacity(kept.len());
    let notes: SectionName = "notes".parse()?;
    for (
        k,
        Kept {
            patient,
            vault,
            grants,
        },
    ) in kept.into_iter().enumerate()
    {
        let p = &area.patients[patient];
        let first = p.relays[0];
        let relay_peer = area.relays[first].id.peer();
        let mut rng = TestRng::new(100 + k as u64);
        let mut grantees = Vec::new();
        for (i, (g, grant)) in grants.iter().enumerate() {
            if (i + k) % 5 >= 3 {
                continue; // offline
            }
            let id = &area.pros[*g].id;
            let gv = Vault::new(MemoryStore::new());
            let mine = id.agreement_public();
            let wraps: Vec<_> = grant
                .body()
                .keys
                .iter()
                .filter(|w| w.recipient.into_array() == mine)
                .cloned()
                .collect();
            gv.register_replica(&p.record, &wraps, TEST_NOW)?;
            gv.hold_grant(&p.record, std::slice::from_ref(grant))?;
            let local = Local::new(&gv, id);
            let req = local.relay_start(p.record, relay_peer, TEST_NOW, &mut rng)?;
            let frame = protocol::encode(&Message::Store(req));
            let (resp, _, _, _) = area.relays[first].exchange(id, &frame)?;
            local.on_relay_response(relay_peer, p.record, resp, TEST_NOW, &mut rng)?;
            let node = Node::start(id, None).await?;
            node.dial(&relays[first]).await?;
            grantees.push(Grantee {
                id,
                vault: gv,
                node,
            });
        }
        let pnode = Node::start(&p.id, None).await?;
        for &r in &p.relays {
            pnode.dial(&relays[r]).await?;
        }
        let plocal = Local::new(&vault, &p.id);
        // Warm every connection (untimed): a round that finds nothing new.
        for &r in &p.relays {
            push(&plocal, &pnode, &relays[r], p.record, area, r, &mut rng).await?;
        }
        for g in &grantees {
            fetch(g, &relays[first], p.record, relay_peer, &mut rng).await?;
        }
        let t = Instant::now();
        {
            let mut rec = vault.open_record(&p.id, &p.record)?;
            rec.add_entry(&notes, &note(1_000_000 + k), TEST_NOW, &mut rng)?;
        }
        let pushed = join_all(p.relays.iter().enumerate().map(|(j, &r)| {
            let mut rng = TestRng::new(200 + j as u64);
            let (plocal, pnode, area) = (&plocal, &pnode, &*area);
            async move { push(plocal, pnode, &relays[r], p.record, area, r, &mut rng).await }
        }))
        .await;
        let to_relays = t.elapsed();
        let fetched = join_all(grantees.iter().enumerate().map(|(j, g)| {
            let mut rng = TestRng::new(300 + j as u64);
            async move { fetch(g, &relays[first], p.record, relay_peer, &mut rng).await }
        }))
        .await;
        let to_grantees = t.elapsed();
        let (mut exchanges, mut bytes) = (0, 0);
        for x in pushed {
            let (n, b, stored) = x?;
            ensure!(stored > 0, "a relay stored the edit");
            exchanges += n;
            bytes += b;
        }
        for x in fetched {
            let (b, received) = x?;
            ensure!(received > 0, "an online grantee received the edit");
            exchanges += 1;
            bytes += b;
        }
        edits.push(Edit {
            receivers: p.relays.len() + p.grantees.len(),
            online: grantees.len(),
            exchanges,
            bytes,
            to_relays,
            to_grantees,
        });
    }
    Ok(edits)
}

/// The patient's node brings relay `r` up to date over libp2p: (exchanges, frame bytes,
/// bundles the relay stored).
async fn push(
    local: &Local<'_, MemoryStore>,
    node: &Node,
    relay: &Node,
    record: RecordId,
    area: &Area,
    r: usize,
    rng: &mut TestRng,
) -> Result<(usize, usize, u32)> {
    let relay_peer = area.relays[r].id.peer();
    let (mut n, mut bytes, mut stored) = (0, 0, 0);
    let mut req = Some(local.relay_start(record, relay_peer, TEST_NOW, rng)?);
    while let Some(q) = req.take() {
        bytes += protocol::encode(&Message::Store(q.clone())).len();
        let resp = node.store(relay.peer, q).await?;
        bytes += protocol::encode(&Message::Stored(resp.clone())).len();
        n += 1;
        stored += resp.stored;
        req = local
            .on_relay_response(relay_peer, record, resp, TEST_NOW, rng)?
            .0;
    }
    Ok((n, bytes, stored))
}

/// A grantee fetches what it lacks of `record` from its relay over libp2p: (frame bytes,
/// bundles received and stored).
async fn fetch(
    g: &Grantee<'_>,
    relay: &Node,
    record: RecordId,
    relay_peer: hearth_core::ids::PeerKey,
    rng: &mut TestRng,
) -> Result<(usize, usize)> {
    let local = Local::new(&g.vault, g.id);
    let req = local.relay_start(record, relay_peer, TEST_NOW, rng)?;
    let mut bytes = protocol::encode(&Message::Store(req.clone())).len();
    let resp = g.node.store(relay.peer, req).await?;
    bytes += protocol::encode(&Message::Stored(resp.clone())).len();
    let (_, report) = local.on_relay_response(relay_peer, record, resp, TEST_NOW, rng)?;
    Ok((bytes, report.received))
}

/// The relay nodes' peer ids match the relays' keys (a check that the network is the area's).
pub(super) fn check_peers(area: &Area, relays: &[Node]) -> Result<()> {
    for (r, n) in area.relays.iter().zip(relays) {
        ensure!(
            peer_id(&r.id.peer()) == Some(n.peer),
            "a relay node's peer id is its key"
        );
    }
    Ok(())
}
