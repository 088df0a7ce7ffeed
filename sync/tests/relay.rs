//! The relay (`/hearth/store/1`) in process: a real relay vault answering the patient's node
//! (which supplies it), grantees (who fetch and push through it) and strangers, every message
//! moved through the wire encoding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::bundle::Bundle;
use hearth_core::crypto::{self, Domain, SymmetricKey};
use hearth_core::grant::{self, Ability, Grant, GrantSpec, Revocation};
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::Role;
use hearth_core::ledger::RelayItem;
use hearth_core::log::VersionVector;
use hearth_core::record::{AuthItem, NewRecord};
use hearth_core::section::{SectionClass, SectionSpec};
use hearth_core::store::Store;
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use hearth_sync::protocol::{self, Message, SectionHave, WireError};
use hearth_sync::relay::access::{AccessError, AccessList, SignedAccess};
use hearth_sync::relay::server::{Hosted, RelayLimits, Server, refusal_of};
use hearth_sync::relay::wire::{pad, unpad};
use hearth_sync::relay::{NOTHING_HERE, QUOTA_FULL, StoreRequest, StoreResponse, blind};
use hearth_sync::session::{Report, SyncError};
use serde_bytes::{ByteArray, ByteBuf};
use serde_json::json;

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
        .answer(from.id.peer(), req, now)
        .unwrap();
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

#[test]
fn the_patient_supplies_the_relay_and_a_gp_who_never_met_them_syncs_through_it() {
    let mut f = fixture(1);
    supply_fetch_push_collect(&mut f);
}

#[test]
fn a_read_only_grantee_gets_its_sections_only_and_cannot_push() {
    let mut f = fixture(2);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let (notes, meds) = (f.notes(), f.meds());
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(
        f.relay.bundles_in(&rid, &meds) > 0,
        "the relay holds medications"
    );
    // What the relay sends the reader: the auth document and notes, nothing else.
    let req = f
        .reader
        .peer()
        .relay_start(rid, f.relay.id.peer(), at(11), &mut TestRng::new(99))
        .unwrap();
    let resp = ask(&f.relay, &limits, &f.reader, req, at(11));
    assert!(resp.refused.is_none());
    assert!(!resp.bundles.is_empty());
    let sections: Vec<SectionId> = resp
        .bundles
        .iter()
        .map(|p| Bundle::decode(unpad(p).unwrap()).unwrap().header().section)
        .collect();
    assert!(sections.contains(&notes));
    assert!(
        sections
            .iter()
            .all(|s| *s == notes || *s == SectionId::AUTH),
        "{sections:?}"
    );
    assert!(resp.have.is_empty(), "nowhere to push");
    let got = exchange(&f.reader, &f.relay, &limits, rid, at(11)).unwrap();
    assert!(got.refused.is_empty(), "{got:?}");
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
    assert_eq!(f.reader.bundles_in(&rid, &meds), 0);
    assert!(f.reader.texts(&rid, "medications").is_empty());
    // Its node would not push; a hostile one pushes a bundle of its own to notes, signed
    // and chained (the relay cannot tell what it holds): rejected, the store unchanged.
    let epoch = Bundle::decode(&log_of(&f.patient, &rid, &notes, &f.patient)[0])
        .unwrap()
        .header()
        .epoch;
    let sneaky = Bundle::seal(
        rid,
        notes,
        1,
        None,
        epoch,
        at(12),
        &SymmetricKey::from_bytes([7; 32]),
        b"sneaky",
        f.reader.id.device_key(),
        &mut f.rng,
    )
    .unwrap();
    assert!(sneaky.verify().is_ok());
    let store = everything(&f.relay);
    let report = exchange(&f.reader, &f.relay, &limits, rid, at(13)).unwrap();
    assert_eq!(report.sent, 0, "{report:?}");
    let mut req = f
        .reader
        .peer()
        .relay_start(rid, f.relay.id.peer(), at(13), &mut TestRng::new(99))
        .unwrap();
    req.push = vec![pad(sneaky.encoded())];
    let resp = ask(&f.relay, &limits, &f.reader, req, at(13));
    assert!(resp.refused.is_none());
    assert_eq!(resp.stored, 0);
    assert_eq!(resp.rejected.len(), 1, "{:?}", resp.rejected);
    assert_eq!(everything(&f.relay), store);
    // The same bundle from the GP (its own, to notes, which it may append to) is stored:
    // the check is about the reader's rights.
    let gps = Bundle::seal(
        rid,
        notes,
        1,
        None,
        epoch,
        at(12),
        &SymmetricKey::from_bytes([7; 32]),
        b"sneaky",
        f.gp.id.device_key(),
        &mut f.rng,
    )
    .unwrap();
    let mut req =
        f.gp.peer()
            .relay_start(rid, f.relay.id.peer(), at(14), &mut TestRng::new(99))
            .unwrap();
    req.push = vec![pad(gps.encoded())];
    let resp = ask(&f.relay, &limits, &f.gp, req, at(14));
    assert_eq!((resp.stored, resp.rejected.len()), (1, 0), "{resp:?}");
    assert_ne!(everything(&f.relay), store);
}

#[test]
fn a_stranger_and_an_unknown_record_get_the_same_refusal() {
    let f = fixture(3);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let unknown = RecordId([9; 32]);
    // Before the patient supplies the relay, the record is unknown there even to the GP.
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(9)));
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let store = everything(&f.relay);
    let req = f
        .stranger
        .peer()
        .relay_start(rid, relay, at(11), &mut TestRng::new(99))
        .unwrap();
    let for_record = ask(&f.relay, &limits, &f.stranger, req, at(11));
    assert_eq!(for_record, refusal_of(blind(&rid, &relay), NOTHING_HERE));
    let req = f
        .stranger
        .peer()
        .relay_start(unknown, relay, at(11), &mut TestRng::new(99))
        .unwrap();
    let for_unknown = ask(&f.relay, &limits, &f.stranger, req, at(11));
    assert_eq!(
        for_unknown,
        refusal_of(blind(&unknown, &relay), NOTHING_HERE)
    );
    // The same words, and nothing else, either way; the GP asking for the unknown record too.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
    let mut req = StoreRequest {
        record: blind(&unknown, &relay),
        ..req
    };
    req.have.clear();
    let gp_unknown = ask(&f.relay, &limits, &f.gp, req, at(11));
    for r in [&for_record, &for_unknown, &gp_unknown] {
        assert_eq!(r.refused.as_deref(), Some(NOTHING_HERE));
        assert!(r.bundles.is_empty() && r.wraps.is_empty() && r.have.is_empty());
        assert!(r.access.is_none());
    }
    refused_nothing_here(exchange(&f.stranger, &f.relay, &limits, rid, at(11)));
    // A stranger claiming to supply the record with a list it signed itself changes nothing.
    let mut req = f
        .stranger
        .peer()
        .relay_start(rid, relay, at(12), &mut TestRng::new(99))
        .unwrap();
    let list = f
        .patient
        .peer()
        .relay_access(
            &f.patient.vault.open_record(&f.patient.id, &rid).unwrap(),
            &relay,
            at(12),
        )
        .unwrap();
    req.access = Some(ByteBuf::from(list.to_bytes()));
    let resp = ask(&f.relay, &limits, &f.stranger, req, at(12));
    assert_eq!(resp.refused.as_deref(), Some(NOTHING_HERE));
    assert_eq!(everything(&f.relay), store);
    assert_eq!(f.stranger.vault.records().unwrap(), Vec::<RecordId>::new());
}

#[test]
fn a_revoked_grantee_is_refused_once_the_patient_supplies_the_relay_again() {
    let mut f = fixture(4);
    let limits = RelayLimits::default();
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    exchange(&f.gp, &f.relay, &limits, rid, at(11)).unwrap();
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    f.revoke_gp(at(20));
    // Until the patient's node supplies a new list, the relay goes by the old one.
    exchange(&f.gp, &f.relay, &limits, rid, at(21)).unwrap();
    exchange(&f.patient, &f.relay, &limits, rid, at(22)).unwrap();
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(23)));
    // Its pushes are refused with the rest.
    f.gp.add(&rid, "notes", GP_NOTE, at(24), &mut f.rng);
    let before = bundles(&f.relay, &rid);
    let mut req =
        f.gp.peer()
            .relay_start(rid, f.relay.id.peer(), at(24), &mut TestRng::new(99))
            .unwrap();
    let notes = f.notes();
    req.push = log_of(&f.gp, &rid, &notes, &f.gp)
        .iter()
        .map(|b| pad(b))
        .collect();
    let resp = ask(&f.relay, &limits, &f.gp, req, at(24));
    assert_eq!(resp.refused.as_deref(), Some(NOTHING_HERE));
    assert_eq!(bundles(&f.relay, &rid), before);
    // The reader's grant was not revoked.
    exchange(&f.reader, &f.relay, &limits, rid, at(25)).unwrap();
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
}

#[test]
fn once_the_relay_grant_expires_everyone_is_refused() {
    let f = fixture(5);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let server = Server::new(&f.relay.vault, &f.relay.id, &limits);
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    exchange(&f.gp, &f.relay, &limits, rid, at(11)).unwrap();
    // (grants allow a minute of clock skew)
    let expired = TEST_NOW.saturating_add_millis(RELAY_DAYS * DAY + 2 * 60_000);
    let just_before = TEST_NOW.saturating_add_millis(RELAY_DAYS * DAY - 1);
    // Right up to the end, it serves (the grantees' grants last longer than the relay's).
    exchange_at(&f.gp, &f.relay, &limits, rid, at(12), just_before).unwrap();
    assert!(server.parties(just_before).contains(&f.gp.id.peer()));
    for who in [&f.patient, &f.gp, &f.reader] {
        refused_nothing_here(exchange_at(who, &f.relay, &limits, rid, at(12), expired));
    }
    assert!(server.parties(expired).is_empty());
    // The patient's node itself no longer makes a list for the relay.
    assert!(
        f.patient
            .peer()
            .relay_start(rid, relay, expired, &mut TestRng::new(99))
            .is_err()
    );
}

#[test]
fn forged_misaddressed_and_replayed_access_lists_are_not_accepted() {
    let mut f = fixture(6);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let first = f.hosted();
    let list_now = |f: &Fixture, relay: &hearth_core::ids::PeerKey, t: Timestamp| {
        let rec = f.patient.vault.open_record(&f.patient.id, &f.rid).unwrap();
        f.patient.peer().relay_access(&rec, relay, t).unwrap()
    };

    // The GP forges a newer list naming itself a device, signed by its own key.
    let genuine = list_now(&f, &relay, at(11));
    let mut list: AccessList = serde_ipld_dagcbor::from_slice(&genuine.body).unwrap();
    let gp = f.gp.id.peer();
    let entry = list.entries.iter_mut().find(|e| e.peer == gp).unwrap();
    entry.device = true;
    list.version += 1_000_000;
    let body = serde_ipld_dagcbor::to_vec(&list).unwrap();
    let sig = crypto::sign(f.gp.id.device_key(), Domain::RelayAccess, &[&body]);
    let forged = SignedAccess {
        body: ByteBuf::from(body),
        sig: ByteArray::new(sig),
    };
    assert_eq!(
        SignedAccess::open(&forged.to_bytes(), &relay, at(11)).unwrap_err(),
        AccessError::BadSignature
    );
    for from in [&f.gp, &f.patient] {
        let mut req = from
            .peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
        req.access = Some(ByteBuf::from(forged.to_bytes()));
        let resp = ask(&f.relay, &limits, from, req, at(11));
        assert!(resp.refused.is_none());
        let now = f.hosted();
        assert_eq!((now.version, &now.access), (first.version, &first.access));
    }
    // The GP is still only a grantee: it gets the list back and only key wraps addressed to
    // it (never the recovery key's), and cannot write medications.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
    let resp = ask(&f.relay, &limits, &f.gp, req, at(11));
    let gp_key = f.gp.id.agreement_public();
    assert!(resp.access.is_some());
    assert!(
        resp.wraps
            .iter()
            .all(|w| w.recipient.into_array() == gp_key)
    );
    assert!(resp.have.iter().all(|h| h.section == f.notes()));

    // A genuine list for another relay (the patient uses two).
    let other = Node::new(Role::Relay, "Other relay", &mut f.rng);
    use_relay(&f.patient, &rid, &other, &mut f.rng);
    let elsewhere = list_now(&f, &other.id.peer(), at(12));
    assert_eq!(
        SignedAccess::open(&elsewhere.to_bytes(), &relay, at(12)).unwrap_err(),
        AccessError::Misaddressed
    );
    assert!(SignedAccess::open(&elsewhere.to_bytes(), &other.id.peer(), at(12)).is_ok());
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(12), &mut TestRng::new(99))
        .unwrap();
    req.access = Some(ByteBuf::from(elsewhere.to_bytes()));
    ask(&f.relay, &limits, &f.patient, req, at(12));
    assert_eq!(f.hosted().version, first.version);
    assert_eq!(f.hosted().access, first.access);

    // The patient revokes the GP and supplies a newer list; the older one, replayed, loses.
    f.revoke_gp(at(20));
    exchange(&f.patient, &f.relay, &limits, rid, at(21)).unwrap();
    let second = f.hosted();
    assert!(second.version > first.version);
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(22)));
    for from in [&f.patient, &f.gp] {
        let mut req = from
            .peer()
            .relay_start(rid, relay, at(23), &mut TestRng::new(99))
            .unwrap();
        req.access = Some(first.access.clone());
        ask(&f.relay, &limits, from, req, at(23));
        assert_eq!(f.hosted().version, second.version);
        assert_eq!(f.hosted().access, second.access);
    }
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(24)));
    // And the same list again (an equal version) is not "newer" either.
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(25), &mut TestRng::new(99))
        .unwrap();
    req.access = Some(second.access.clone());
    let resp = ask(&f.relay, &limits, &f.patient, req, at(25));
    assert!(resp.refused.is_none());
    assert_eq!(f.hosted().updated, second.updated);
}

#[test]
fn a_push_over_the_quota_is_refused_and_nothing_stored_is_lost() {
    let mut f = fixture(7);
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &RelayLimits::default(), rid, at(10)).unwrap();
    let used = f.hosted().used;
    let held = f.relay.vault.held_sections(&rid).unwrap();
    let stored = bundles(&f.relay, &rid);
    let small = RelayLimits {
        quota_bytes: used + 16,
        ..RelayLimits::default()
    };
    // The patient's new note does not fit.
    f.patient
        .add(&rid, "notes", "over the quota", at(11), &mut f.rng);
    let report = exchange(&f.patient, &f.relay, &small, rid, at(12)).unwrap();
    assert!(report.refused.iter().any(|r| r == QUOTA_FULL), "{report:?}");
    assert!(report.sections.iter().any(|s| s.ahead > 0), "{report:?}");
    assert_eq!(bundles(&f.relay, &rid), stored);
    assert_eq!(f.relay.vault.held_sections(&rid).unwrap(), held);
    assert_eq!(f.hosted().used, used);
    // Nor does the GP's (once it has fetched the record: fetching costs no quota).
    exchange(&f.gp, &f.relay, &small, rid, at(13)).unwrap();
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    f.gp.add(&rid, "notes", GP_NOTE, at(13), &mut f.rng);
    let report = exchange(&f.gp, &f.relay, &small, rid, at(13)).unwrap();
    assert!(report.refused.iter().any(|r| r == QUOTA_FULL), "{report:?}");
    assert_eq!(bundles(&f.relay, &rid), stored);
    // The record still serves what it holds.
    exchange(&f.reader, &f.relay, &small, rid, at(14)).unwrap();
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
    // With room again, the pushes go through.
    let report = exchange(&f.patient, &f.relay, &RelayLimits::default(), rid, at(15)).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(bundles(&f.relay, &rid).len(), stored.len() + 1);
    assert!(f.hosted().used > used);
}

#[test]
fn tampered_bundles_and_bad_padding_are_rejected_and_not_stored() {
    let mut f = fixture(8);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let notes = f.notes();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    f.patient.add(&rid, "notes", "next", at(11), &mut f.rng);
    let good = log_of(&f.patient, &rid, &notes, &f.patient).pop().unwrap();
    let held = f.relay.vault.held_sections(&rid).unwrap();
    let stored = bundles(&f.relay, &rid);
    // A byte of the ciphertext flipped: still a bundle, no longer the author's.
    let mut tampered = good.clone();
    let hlen = u32::from_be_bytes(tampered[4..8].try_into().unwrap()) as usize;
    tampered[8 + hlen + 4 + 1] ^= 1;
    assert!(Bundle::decode(&tampered).unwrap().verify().is_err());
    // A clean frame with a byte of padding set; a frame one byte short.
    let mut dirty = pad(&good).to_vec();
    *dirty.last_mut().unwrap() = 1;
    let mut short = pad(&good).to_vec();
    short.pop();
    for (frame, why) in [
        (pad(&tampered).to_vec(), "signature"),
        (dirty, "malformed"),
        (short, "malformed"),
    ] {
        let mut req = f
            .patient
            .peer()
            .relay_start(rid, relay, at(12), &mut TestRng::new(99))
            .unwrap();
        req.push = vec![ByteBuf::from(frame)];
        let resp = ask(&f.relay, &limits, &f.patient, req, at(12));
        assert!(resp.refused.is_none());
        assert_eq!(resp.stored, 0);
        assert_eq!(resp.rejected.len(), 1, "{:?}", resp.rejected);
        assert!(resp.rejected[0].contains(why), "{:?}", resp.rejected);
        assert_eq!(bundles(&f.relay, &rid), stored);
        assert_eq!(f.relay.vault.held_sections(&rid).unwrap(), held);
    }
    // The untouched bundle is stored.
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(13), &mut TestRng::new(99))
        .unwrap();
    req.push = vec![pad(&good)];
    let resp = ask(&f.relay, &limits, &f.patient, req, at(13));
    assert_eq!((resp.stored, resp.rejected.len()), (1, 0), "{resp:?}");
    // A relay that tampers with what it serves gets nothing stored by the GP either.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(14), &mut TestRng::new(99))
            .unwrap();
    let mut resp = ask(&f.relay, &limits, &f.gp, req, at(14));
    let mut flipped = 0;
    for p in &mut resp.bundles {
        let b = unpad(p).unwrap().to_vec();
        if Bundle::decode(&b).unwrap().header().section == notes {
            let mut t = b.clone();
            let hlen = u32::from_be_bytes(t[4..8].try_into().unwrap()) as usize;
            t[8 + hlen + 4 + 1] ^= 1;
            *p = pad(&t);
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    let (_, report) =
        f.gp.peer()
            .on_relay_response(relay, rid, resp, at(14), &mut TestRng::new(98))
            .unwrap();
    assert!(!report.refused.is_empty(), "{report:?}");
    assert_eq!(f.gp.bundles_in(&rid, &notes), 0);
}

#[test]
fn store_messages_round_trip_and_oversize_fields_break_a_limit() {
    let f = fixture(9);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    exchange(&f.patient, &f.relay, &limits, rid, at(9)).unwrap();
    let req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(10), &mut TestRng::new(99))
        .unwrap();
    assert!(req.access.is_some() && !req.wraps.is_empty() && !req.have.is_empty());
    let back = protocol::decode(&protocol::encode(&Message::Store(req.clone()))).unwrap();
    assert!(back.is_store());
    assert_eq!(back, Message::Store(req.clone()));
    let (resp, _) = Server::new(&f.relay.vault, &f.relay.id, &limits)
        .answer(f.patient.id.peer(), req.clone(), at(10))
        .unwrap();
    assert!(!resp.have.is_empty());
    let back = protocol::decode(&protocol::encode(&Message::Stored(resp.clone()))).unwrap();
    assert_eq!(back, Message::Stored(resp.clone()));
    let limit = |m: Message| match protocol::decode(&protocol::encode(&m)) {
        Err(WireError::Limit(why)) => why,
        other => panic!("expected a limit error, got {other:?}"),
    };
    // Too many wraps, sections, authors; an access list too large; another version.
    let wrap = req.wraps[0].clone();
    let mut r = req.clone();
    r.wraps = vec![wrap.clone(); hearth_sync::relay::wire::MAX_WRAPS + 1];
    limit(Message::Store(r));
    let mut r = req.clone();
    r.have = (0..=protocol::MAX_SECTIONS)
        .map(|i| {
            let mut id = [1u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SectionHave::new(SectionId(id), &VersionVector::new())
        })
        .collect();
    limit(Message::Store(r));
    let mut r = req.clone();
    let head = *req.have[0].vv().values().next().unwrap();
    let mut vv = VersionVector::new();
    for i in 0..=protocol::MAX_AUTHORS {
        let mut k = [2u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        vv.insert(hearth_core::ids::PeerKey(k), head);
    }
    r.have = vec![SectionHave::new(SectionId::AUTH, &vv)];
    limit(Message::Store(r));
    let mut r = req.clone();
    r.access = Some(ByteBuf::from(vec![
        0u8;
        hearth_sync::relay::access::MAX_ACCESS_LEN
            + 1
    ]));
    limit(Message::Store(r));
    let mut r = req.clone();
    r.v = 2;
    limit(Message::Store(r));
    let mut s = resp.clone();
    s.wraps = vec![wrap; hearth_sync::relay::wire::MAX_WRAPS + 1];
    limit(Message::Stored(s));
    let mut s = resp.clone();
    s.refused = Some("x".repeat(1_001));
    limit(Message::Stored(s));
    let mut s = resp.clone();
    s.access = Some(ByteBuf::from(vec![
        0u8;
        hearth_sync::relay::access::MAX_ACCESS_LEN
            + 1
    ]));
    limit(Message::Stored(s));
    let mut s = resp;
    s.v = 0;
    limit(Message::Stored(s));
}

#[test]
fn the_relay_store_holds_no_name_nhs_number_note_or_section_name() {
    let mut f = fixture(10);
    supply_fetch_push_collect(&mut f);
    // The patient's relay grant travels in the access list: its scopes name every section
    // class (`notes:*`, `medications:*`, ...), the same for every patient, so it says nothing
    // about this one. It is checked to be exactly that and then blanked; nothing else may
    // name anything.
    let scopes: Vec<String> = f
        .relay_grant
        .body()
        .scopes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    assert_eq!(f.relay_grant.body().keys.len(), 0);
    let whole = grant::scopes(
        &SectionClass::ALL
            .iter()
            .map(|c| format!("{c}:*"))
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .unwrap(),
        Ability::Relay,
    );
    assert_eq!(
        scopes,
        whole.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>()
    );
    let relay_grant = grant::chain_to_bytes(std::slice::from_ref(&f.relay_grant));
    let all: Vec<(Vec<u8>, Vec<u8>)> = everything(&f.relay)
        .into_iter()
        .map(|(k, mut v)| {
            while let Some(i) = v.windows(relay_grant.len()).position(|w| w == relay_grant) {
                v[i..i + relay_grant.len()].fill(0);
            }
            (k, v)
        })
        .collect();
    assert!(all.len() > 10);
    // The scan finds what is there: the record id in bundle headers, the blinded id in keys.
    assert!(all.iter().any(|(_, v)| contains(v, &f.rid.0)));
    let blinded = f.blinded().to_string();
    assert!(all.iter().any(|(k, _)| contains(k, blinded.as_bytes())));
    for canary in [
        PATIENT_NAME,
        "Canarywood",
        NHS,
        NOTE,
        "CANARY",
        MED,
        "Metformin",
        GP_NOTE,
        "notes",
        "medications",
        "Dr Gee",
    ] {
        for (k, v) in &all {
            assert!(
                !contains(k, canary.as_bytes()) && !contains(v, canary.as_bytes()),
                "the relay's store holds {canary:?} (key {:?})",
                String::from_utf8_lossy(k)
            );
        }
    }
}

/// Incompressible base64 of `len` random bytes.
fn noise(seed: u8, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&crypto::sha256(&[&[seed], &i.to_be_bytes()]));
        i += 1;
    }
    bytes.truncate(len);
    data_encoding::BASE64.encode(&bytes)
}

#[test]
fn a_record_larger_than_one_message_travels_in_several() {
    let mut f = fixture(11);
    let limits = RelayLimits::default();
    let rid = f.rid;
    // Documents of about 1 MiB each: a bundle just over 1 MiB pads to 2 MiB, so the bundles
    // that fit the 12 MiB bundle budget of one message pad to more than its 16 MiB limit.
    {
        let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
        for n in 0..12 {
            let doc = json!({
                "title": "scan",
                "content_type": "application/pdf",
                "data_base64": noise(n, 786_432),
            });
            rec.add_entry(&name("documents"), &doc, at(5), &mut f.rng)
                .unwrap();
        }
    }
    let docs = section_id(&f.patient, &rid, "documents");
    let sizes: Vec<usize> = log_of(&f.patient, &rid, &docs, &f.patient)
        .iter()
        .map(Vec::len)
        .collect();
    let raw: usize = sizes.iter().sum();
    let padded: usize = sizes.iter().map(|n| pad(&vec![0; *n]).len()).sum();
    assert!(
        raw < protocol::MAX_BUNDLE_BYTES + (2 << 20) && padded > protocol::MAX_MESSAGE + (4 << 20),
        "{sizes:?}"
    );
    let report = exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(
        f.relay.vault.held_sections(&rid).unwrap(),
        f.patient.vault.held_sections(&rid).unwrap()
    );
    // A grantee who may read the documents fetches them all.
    let archivist = Node::new(Role::Professional, "Archivist", &mut f.rng);
    grant_with_keys(
        &f.patient,
        &rid,
        &archivist,
        "documents",
        Ability::Read,
        &mut f.rng,
    );
    exchange(&f.patient, &f.relay, &limits, rid, at(11)).unwrap();
    let got = exchange(&archivist, &f.relay, &limits, rid, at(12)).unwrap();
    assert!(got.refused.is_empty(), "{got:?}");
    assert_eq!(archivist.bundles_in(&rid, &docs), 12);
}
