//! The relay (`/hearth/store/1`) in process: a real relay vault answering the patient's node
//! (which supplies it), grantees (who fetch and push through it) and strangers, every message
//! moved through the wire encoding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::bundle::Bundle;
use hearth_core::crypto::{self, Domain, SymmetricKey};
use hearth_core::grant::{self, Ability, Grant, GrantSpec, Revocation};
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::Role;
use hearth_core::keywrap::KeyWrap;
use hearth_core::ledger::RelayItem;
use hearth_core::log::VersionVector;
use hearth_core::record::{AuthItem, NewRecord};
use hearth_core::section::{SectionClass, SectionSpec};
use hearth_core::store::Store;
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use hearth_sync::protocol::{self, Message, SectionHave, WireError};
use hearth_sync::relay::access::{AccessError, AccessList, SignedAccess};
use hearth_sync::relay::server::{
    HOSTED_COUNT, Hosted, IG_USE_COUNT, RelayLimits, Server, refusal_of,
};
use hearth_sync::relay::wire::{pad, unpad};
use hearth_sync::relay::{NOTHING_HERE, QUOTA_FULL, StoreRequest, StoreResponse, blind};
use hearth_sync::session::{Report, SyncError};
use serde_bytes::{ByteArray, ByteBuf};
use serde_json::json;

#[path = "../common/mod.rs"]
mod common;
use common::*;

const PATIENT_NAME: &str = "Edith Canarywood";
const NHS: &str = "9434765919";
const NOTE: &str = "CANARY-NOTE swollen left knee";
const MED: &str = "CANARY-MED Metformin 500mg";
const GP_NOTE: &str = "CANARY-GP knee reviewed, no effusion";
/// How long the patient's relay grant lasts (the grantees' grants last 30 days).
const RELAY_DAYS: i64 = 10;

struct Fixture {
    rng: TestRng,
    patient: Node,
    /// A professional with an `append` grant on notes, who never met the patient.
    gp: Node,
    /// A grantee with a `read` grant on notes.
    reader: Node,
    stranger: Node,
    relay: Node,
    rid: RecordId,
    gp_grant: Grant,
    relay_grant: Grant,
}

impl Fixture {
    fn notes(&self) -> SectionId {
        section_id(&self.patient, &self.rid, "notes")
    }
    fn meds(&self) -> SectionId {
        section_id(&self.patient, &self.rid, "medications")
    }
    fn blinded(&self) -> hearth_sync::relay::Blinded {
        blind(&self.rid, &self.relay.id.peer())
    }
    fn hosted(&self) -> Hosted {
        let limits = RelayLimits::default();
        Server::new(&self.relay.vault, &self.relay.id, &limits)
            .hosted(&self.blinded())
            .unwrap()
            .expect("the relay keeps the record")
    }
    fn revoke_gp(&mut self, now: Timestamp) {
        let r = Revocation::sign(&self.patient.id, self.gp_grant.id(), now).unwrap();
        let mut rec = self
            .patient
            .vault
            .open_record(&self.patient.id, &self.rid)
            .unwrap();
        rec.put_auth(vec![AuthItem::Revoke(r)], now, &mut self.rng)
            .unwrap();
    }
}

/// The patient issues `to` a grant of `ability` over `spec` carrying the section keys, records
/// it in the auth document, and `to` accepts it as `hearth accept` does (the key wraps
/// addressed to it and the chain; it never syncs with the patient's node).
fn grant_with_keys(
    patient: &Node,
    rid: &RecordId,
    to: &Node,
    spec: &str,
    ability: Ability,
    rng: &mut TestRng,
) -> Grant {
    let s = GrantSpec::new(
        to.id.peer(),
        spec.parse().unwrap(),
        ability,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(30 * DAY),
    );
    let mut rec = patient.vault.open_record(&patient.id, rid).unwrap();
    let keys = rec
        .wrap_keys_for(to.id.agreement_public(), &s.scopes, rng)
        .unwrap();
    let g = Grant::issue_root(&patient.id, s, &keys, rng).unwrap();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], at(3), rng)
        .unwrap();
    let mine = to.id.agreement_public();
    let wraps: Vec<_> = g
        .body()
        .keys
        .iter()
        .filter(|w| w.recipient.into_array() == mine)
        .cloned()
        .collect();
    assert!(!wraps.is_empty(), "the grant carries the keys");
    to.vault.register_replica(rid, &wraps, at(3)).unwrap();
    to.vault.hold_grant(rid, std::slice::from_ref(&g)).unwrap();
    g
}

/// `hearth relay use`: a `relay` grant over every section class, recorded, and the relay item.
fn use_relay(patient: &Node, rid: &RecordId, relay: &Node, rng: &mut TestRng) -> Grant {
    let whole: SectionSpec = SectionClass::ALL
        .iter()
        .map(|c| format!("{c}:*"))
        .collect::<Vec<_>>()
        .join(",")
        .parse()
        .unwrap();
    let s = GrantSpec::new(
        relay.id.peer(),
        whole,
        Ability::Relay,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(RELAY_DAYS * DAY),
    );
    let g = Grant::issue_root(&patient.id, s, &[], rng).unwrap();
    let mut rec = patient.vault.open_record(&patient.id, rid).unwrap();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], at(4), rng)
        .unwrap();
    let item = RelayItem {
        addrs: vec![format!("/ip4/192.0.2.1/tcp/4001/p2p/{}", relay.id.peer())],
        name: None,
        added_at: at(4),
    };
    rec.put_auth(vec![AuthItem::Relay(relay.id.peer(), item)], at(4), rng)
        .unwrap();
    g
}

fn fixture(seed: u64) -> Fixture {
    let mut rng = TestRng::new(seed);
    let patient = Node::new(Role::Patient, PATIENT_NAME, &mut rng);
    let gp = Node::new(Role::Professional, "Dr Gee", &mut rng);
    let reader = Node::new(Role::Professional, "Rita Reader", &mut rng);
    let stranger = Node::new(Role::Professional, "Stan Stranger", &mut rng);
    let relay = Node::new(Role::Relay, "Org relay", &mut rng);
    let rid = patient
        .vault
        .create_record(
            &patient.id,
            NewRecord {
                demographics: Some(json!({"name": PATIENT_NAME, "nhs_number": NHS})),
            },
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    patient.add(&rid, "notes", NOTE, at(1), &mut rng);
    {
        let mut rec = patient.vault.open_record(&patient.id, &rid).unwrap();
        rec.add_entry(
            &name("medications"),
            &json!({ "name": MED }),
            at(2),
            &mut rng,
        )
        .unwrap();
    }
    let gp_grant = grant_with_keys(&patient, &rid, &gp, "notes", Ability::Append, &mut rng);
    grant_with_keys(&patient, &rid, &reader, "notes", Ability::Read, &mut rng);
    let relay_grant = use_relay(&patient, &rid, &relay, &mut rng);
    Fixture {
        rng,
        patient,
        gp,
        reader,
        stranger,
        relay,
        rid,
        gp_grant,
        relay_grant,
    }
}

/// Moves a message through the wire encoding.
fn wire(m: Message) -> Message {
    protocol::decode(&protocol::encode(&m)).expect("the message decodes")
}

/// The relay's answer to `req` from `from` at the relay's clock `now`, through the wire.
fn ask(
    relay: &Node,
    limits: &RelayLimits,
    from: &Node,
    req: StoreRequest,
    now: Timestamp,
) -> StoreResponse {
    let Message::Store(req) = wire(Message::Store(req)) else {
        panic!("not a store request")
    };
    let (resp, served) = Server::new(&relay.vault, &relay.id, limits)
        .answer(from.id.peer(), req, now, &mut TestRng::new(77))
        .unwrap();
    // The relay's daemon writes its receipts (here, at once).
    if let Some(r) = served.receipt.clone() {
        relay.vault.journal_many(&relay.id, vec![r], now).unwrap();
    }
    assert_eq!(served.refused, resp.refused.is_some());
    let Message::Stored(resp) = wire(Message::Stored(resp)) else {
        panic!("not a store response")
    };
    resp
}

/// A whole exchange of `node` with `relay` for `rid`: `node` at `now`, the relay at
/// `relay_now`. Returns the node's reports summed: bundles received and sent and refusals over
/// every round trip, the last round's sync state.
fn exchange_at(
    node: &Node,
    relay: &Node,
    limits: &RelayLimits,
    rid: RecordId,
    now: Timestamp,
    relay_now: Timestamp,
) -> Result<Report, SyncError> {
    let relay_peer = relay.id.peer();
    let mut req = node
        .peer()
        .relay_start(rid, relay_peer, now, &mut TestRng::new(99))?;
    let (mut received, mut sent, mut refused) = (0, 0, Vec::new());
    for _ in 0..16 {
        let resp = ask(relay, limits, node, req, relay_now);
        let (next, mut report) =
            node.peer()
                .on_relay_response(relay_peer, rid, resp, now, &mut TestRng::new(98))?;
        received += report.received;
        sent += report.sent;
        refused.append(&mut report.refused);
        match next {
            Some(n) => req = n,
            None => {
                return Ok(Report {
                    received,
                    sent,
                    refused,
                    ..report
                });
            }
        }
    }
    panic!("the exchange did not finish in 16 round trips");
}

/// [`exchange_at`] with one clock.
fn exchange(
    node: &Node,
    relay: &Node,
    limits: &RelayLimits,
    rid: RecordId,
    now: Timestamp,
) -> Result<Report, SyncError> {
    exchange_at(node, relay, limits, rid, now, now)
}

fn refused_nothing_here(r: Result<Report, SyncError>) {
    match r {
        Err(SyncError::Refused(why)) => assert_eq!(why, NOTHING_HERE),
        other => panic!("expected the relay's refusal, got {other:?}"),
    }
}

/// Every bundle of `rid` in `node`'s store.
fn bundles(node: &Node, rid: &RecordId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut prefix = vec![b'B'];
    prefix.extend_from_slice(&rid.0);
    node.vault.store().scan_prefix(&prefix).unwrap()
}

/// The encoded bundles of one log of `node`'s.
fn log_of(node: &Node, rid: &RecordId, sid: &SectionId, author: &Node) -> Vec<Vec<u8>> {
    let mut budget = usize::MAX;
    node.vault
        .bundles_from(rid, sid, &author.id.peer(), 1, &mut budget)
        .unwrap()
        .into_iter()
        .map(|b| b.to_vec())
        .collect()
}

/// Everything in the relay's store.
fn everything(node: &Node) -> Vec<(Vec<u8>, Vec<u8>)> {
    node.vault.store().scan_prefix(&[]).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Test 1's story: the patient supplies the relay, the GP fetches and pushes a note through
/// it, the patient collects the note.
fn supply_fetch_push_collect(f: &mut Fixture) {
    let limits = RelayLimits::default();
    let rid = f.rid;
    assert!(bundles(&f.relay, &rid).is_empty());
    let report = exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert!(report.sent > 0, "{report:?}");
    // Every bundle is stored: the relay's heads are the patient's, bundle for bundle.
    assert_eq!(
        f.relay.vault.held_sections(&rid).unwrap(),
        f.patient.vault.held_sections(&rid).unwrap()
    );
    assert_eq!(
        bundles(&f.relay, &rid).len(),
        bundles(&f.patient, &rid).len()
    );
    // A relay notes no receipt times beside them (it never reads what it keeps); the
    // patient's node does (tag `A` of the store's layout).
    assert!(f.relay.vault.store().scan_prefix(b"A").unwrap().is_empty());
    assert!(
        !f.patient
            .vault
            .store()
            .scan_prefix(b"A")
            .unwrap()
            .is_empty()
    );
    let hosted = f.hosted();
    assert_eq!(hosted.record, rid);
    assert!(
        !hosted.wraps.is_empty(),
        "the recovery key's wraps are kept"
    );
    assert!(hosted.used > 0);
    // A second exchange finds nothing to do.
    let again = exchange(&f.patient, &f.relay, &limits, rid, at(11)).unwrap();
    assert!(
        again.in_sync && again.sent == 0 && again.received == 0,
        "{again:?}"
    );

    // The GP has only its accepted grant; through the relay it reads the patient's notes.
    let got = exchange(&f.gp, &f.relay, &limits, rid, at(12)).unwrap();
    assert!(got.refused.is_empty(), "{got:?}");
    assert!(got.received > 0, "{got:?}");
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    assert_eq!(f.gp.bundles_in(&rid, &f.meds()), 0);
    // It writes a note and pushes it.
    f.gp.add(&rid, "notes", GP_NOTE, at(13), &mut f.rng);
    let before = bundles(&f.relay, &rid).len();
    let pushed = exchange(&f.gp, &f.relay, &limits, rid, at(14)).unwrap();
    assert!(pushed.refused.is_empty(), "{pushed:?}");
    assert_eq!(pushed.sent, 1, "{pushed:?}");
    assert_eq!(bundles(&f.relay, &rid).len(), before + 1);
    assert_eq!(f.patient.texts(&rid, "notes"), vec![NOTE]);
    // The patient's next exchange collects it, judged by the patient's own rules.
    let collected = exchange(&f.patient, &f.relay, &limits, rid, at(15)).unwrap();
    assert!(collected.refused.is_empty(), "{collected:?}");
    assert_eq!(collected.received, 1, "{collected:?}");
    assert_eq!(f.patient.texts(&rid, "notes"), vec![NOTE, GP_NOTE]);
    let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
    let view = rec.show(&name("notes")).unwrap();
    let gps = view
        .entries
        .iter()
        .find(|e| e.body["text"] == GP_NOTE)
        .unwrap();
    assert_eq!(gps.provenance.author, f.gp.id.peer());
    assert_eq!(
        gps.verified.as_ref().map(|v| v.author),
        Some(f.gp.id.peer())
    );
    let mine = view
        .entries
        .iter()
        .find(|e| e.body["text"] == NOTE)
        .unwrap();
    assert_eq!(mine.provenance.author, f.patient.id.peer());
}

mod audit;
mod emergency;
mod flow;
mod hostile;
