//! Fixtures shared by the sync tests: nodes with in-memory vaults, a patient's record with
//! notes, mental-health notes and a social-care assessment, and grants to a GP and a social
//! worker.
#![allow(dead_code, unreachable_pub)] // each test binary uses some of these

use hearth_core::audit::Action;
use hearth_core::grant::{Ability, Grant, GrantSpec};
use hearth_core::ids::PeerKey;
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::{Identity, Role};
use hearth_core::ledger::Key;
use hearth_core::log::VersionVector;
use hearth_core::record::{AuthItem, NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use hearth_core::time::Timestamp;
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::{Local, Report, SyncError};
use serde_bytes::ByteBuf;
use serde_json::json;
use std::collections::BTreeMap;

pub const DAY: i64 = 86_400_000;

pub struct Node {
    pub id: Identity,
    pub vault: Vault<MemoryStore>,
}

impl Node {
    pub fn new(role: Role, name: &str, rng: &mut TestRng) -> Node {
        let (id, _) = Identity::generate(role, name.into(), rng);
        Node {
            id,
            vault: Vault::new(MemoryStore::new()),
        }
    }
    pub fn peer(&self) -> Local<'_, MemoryStore> {
        Local::new(&self.vault, &self.id)
    }
    pub fn hold(&self, g: &Grant) {
        let rid = g.body().record;
        self.vault
            .hold_grant(&rid, std::slice::from_ref(g))
            .unwrap();
    }
    /// Writes `{"text": text}` in `section` of `rid` at `when`, which must succeed.
    pub fn add(
        &self,
        rid: &RecordId,
        section: &str,
        text: &str,
        when: Timestamp,
        rng: &mut TestRng,
    ) {
        self.add_all(rid, section, [text], when, rng);
    }
    /// Writes `{"text": t}` in `section` of `rid` at `when` for each of `texts`, in order.
    pub fn add_all<T: AsRef<str>>(
        &self,
        rid: &RecordId,
        section: &str,
        texts: impl IntoIterator<Item = T>,
        when: Timestamp,
        rng: &mut TestRng,
    ) {
        let mut rec = self.vault.open_record(&self.id, rid).unwrap();
        for t in texts {
            rec.add_entry(&name(section), &json!({ "text": t.as_ref() }), when, rng)
                .unwrap();
        }
    }
    /// Appends the raw item `key` = `{}` to `section` of `rid` at `when`, skipping this node's
    /// own checks (as a hostile node would).
    pub fn add_raw(
        &self,
        rid: &RecordId,
        section: &str,
        key: &str,
        when: Timestamp,
        rng: &mut TestRng,
    ) {
        self.vault
            .open_record(&self.id, rid)
            .unwrap()
            .append_raw_for_tests(&name(section), vec![(key.into(), "{}".into())], when, rng)
            .unwrap();
    }
    pub fn texts(&self, rid: &RecordId, section: &str) -> Vec<String> {
        let mut rec = self.vault.open_record(&self.id, rid).unwrap();
        match rec.show(&name(section)) {
            Ok(v) => v
                .entries
                .iter()
                .map(|e| e.body["text"].as_str().unwrap_or("").to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    pub fn bundles_in(&self, rid: &RecordId, sid: &SectionId) -> usize {
        let mut prefix = vec![b'B'];
        prefix.extend_from_slice(&rid.0);
        prefix.extend_from_slice(&sid.0);
        self.vault.store().scan_prefix(&prefix).unwrap().len()
    }
}

pub fn name(s: &str) -> SectionName {
    s.parse().unwrap()
}

pub fn at(mins: i64) -> Timestamp {
    TEST_NOW.saturating_add_millis(mins * 60_000)
}

pub struct World {
    pub rng: TestRng,
    pub patient: Node,
    pub gp: Node,
    pub sw: Node,
    pub rid: RecordId,
}

/// Records in the patient's auth document that `g` is revoked, as the unsigned item nodes wrote
/// before revocations were signed (`{"at": when}`, or `{}` with no time): every node must
/// still honour it.
pub fn revoke_unsigned(w: &mut World, g: &Grant, when: Option<Timestamp>, now: Timestamp) {
    let value = when.map_or_else(|| "{}".to_string(), |t| json!({ "at": t }).to_string());
    let mut rec = w.patient.vault.open_record(&w.patient.id, &w.rid).unwrap();
    rec.put_auth_items(vec![(Key::Revoke(&g.id()).text(), value)], now, &mut w.rng)
        .unwrap();
}

pub fn world(seed: u64) -> World {
    let mut rng = TestRng::new(seed);
    let patient = Node::new(Role::Patient, "Edith", &mut rng);
    let gp = Node::new(Role::Professional, "Dr Gee", &mut rng);
    let sw = Node::new(Role::Professional, "Sam (social worker)", &mut rng);
    let rid = patient
        .vault
        .create_record(&patient.id, NewRecord::default(), TEST_NOW, &mut rng)
        .unwrap();
    {
        let mut rec = patient.vault.open_record(&patient.id, &rid).unwrap();
        rec.add_entry(&name("notes"), &json!({"text": "note 1"}), at(1), &mut rng)
            .unwrap();
        rec.add_entry(
            &name("notes:mental-health"),
            &json!({"text": "CANARY-MH"}),
            at(2),
            &mut rng,
        )
        .unwrap();
        rec.add_entry(
            &name("social-care/assessments"),
            &json!({"assessment_type": "Care Act needs assessment", "date": "2026-11-01"}),
            at(3),
            &mut rng,
        )
        .unwrap();
    }
    World {
        rng,
        patient,
        gp,
        sw,
        rid,
    }
}

pub fn grant_to(w: &mut World, who: &str, spec: &str, ability: Ability) -> Grant {
    let audience = if who == "gp" {
        w.gp.id.peer()
    } else {
        w.sw.id.peer()
    };
    let s = GrantSpec::new(
        audience,
        spec.parse().unwrap(),
        ability,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(30 * DAY),
    );
    let g = Grant::issue_root(&w.patient.id, s, &[], &mut w.rng).unwrap();
    // The patient records the grant in the auth document, as `hearth grant` does.
    let mut rec = w.patient.vault.open_record(&w.patient.id, &w.rid).unwrap();
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], at(4), &mut w.rng)
        .unwrap();
    if who == "gp" {
        w.gp.hold(&g)
    } else {
        w.sw.hold(&g)
    }
    g
}

/// The patient writes an entry `{"text": text}` in `section` at `when`.
pub fn write(w: &mut World, section: &str, text: &str, when: Timestamp) {
    w.patient.add(&w.rid, section, text, when, &mut w.rng);
}

/// Runs a whole sync from `a` (requester) to `b` (responder), moving messages through the
/// wire encoding. Returns the requester's last report.
pub fn sync(
    a: &Node,
    b: &Node,
    rid: RecordId,
    now: Timestamp,
    rng: &mut TestRng,
) -> Result<Report, SyncError> {
    Ok(sync_receipts(a, b, rid, now, rng)?.0)
}

/// [`sync`], with the access receipts each side owes for what it sent: `a`'s (for what its
/// requests pushed) and `b`'s (for what its responses carried).
pub fn sync_receipts(
    a: &Node,
    b: &Node,
    rid: RecordId,
    now: Timestamp,
    rng: &mut TestRng,
) -> Result<(Report, Receipts), SyncError> {
    let mut receipts = Receipts::default();
    let mut req = a.peer().start_as(rid, b.id.peer(), true, now)?;
    for _ in 0..8 {
        let wire = protocol::encode(&Message::Request(req));
        let Message::Request(req_in) = protocol::decode(&wire).unwrap() else {
            panic!()
        };
        let (resp, mut served) = b.peer().on_request(a.id.peer(), req_in, now, rng)?;
        receipts.by_b.extend(served.served.take().map(|r| *r));
        let wire = protocol::encode(&Message::Response(resp));
        let Message::Response(resp_in) = protocol::decode(&wire).unwrap() else {
            panic!()
        };
        let (next, mut report) = a.peer().on_response(b.id.peer(), resp_in, now, rng)?;
        receipts.by_a.extend(report.served.take().map(|r| *r));
        match next {
            Some(n) => req = n,
            None => return Ok((report, receipts)),
        }
    }
    panic!("sync did not finish in 8 round trips");
}

/// The access receipts the two sides of [`sync_receipts`] owe.
#[derive(Debug, Default)]
pub struct Receipts {
    /// The requester's, for what its requests pushed.
    pub by_a: Vec<Action>,
    /// The responder's, for what its responses carried.
    pub by_b: Vec<Action>,
}

pub fn section_id(node: &Node, rid: &RecordId, s: &str) -> SectionId {
    let rec = node.vault.open_record(&node.id, rid).unwrap();
    rec.sections()
        .into_iter()
        .find(|x| x.name == name(s))
        .unwrap()
        .ids[0]
}

/// Copies every bundle of `rid` the source holds into the target's store, bypassing the
/// session (as a careless relay or a stale copy elsewhere might hand them over).
pub fn copy_all_bundles(from: &Node, to: &Node, rid: &RecordId) {
    let mut bundles = Vec::new();
    for (sid, vv) in from.vault.held_sections(rid).unwrap() {
        for author in vv.keys() {
            let mut budget = usize::MAX;
            for b in from
                .vault
                .bundles_from(rid, &sid, author, 1, &mut budget)
                .unwrap()
            {
                bundles.push(hearth_core::bundle::Bundle::decode(&b).unwrap());
            }
        }
    }
    to.vault
        .store_remote(rid, bundles, TEST_NOW, &mut |_| Ok(()))
        .unwrap();
}

/// What `p` pushes to `remote` with a change notification, as the node's change check
/// does: the bundles newer than `since` (what it held at its last check) in the sections
/// `remote` may hold, if they fit in a push; otherwise none.
pub fn push_for(
    p: &Local<'_, MemoryStore>,
    rid: &RecordId,
    remote: &PeerKey,
    since: &BTreeMap<SectionId, VersionVector>,
    now: Timestamp,
) -> Result<Vec<ByteBuf>, SyncError> {
    let sections = p.holdable_by(rid, remote, now)?;
    p.bundles_since(rid, &sections, since, protocol::MAX_PUSH_BYTES)
}
