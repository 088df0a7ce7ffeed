//! The sync crate's fuzz targets, in the form of `hearth_core::fuzzing` (which holds the
//! mutator and the runs): every frame a peer or a relay can send, decoded and then handled by
//! the state machine it reaches, on a small world of in-memory nodes built once per thread (a
//! patient with notes, a GP granted append on them, a relay, a root device with an open pairing
//! slot). A frame a stranger sends must never panic the node, and one that decodes is handled
//! as the node would handle it.

use crate::pairing::{LinkCode, Pairing};
use crate::protocol::{self, Message};
use crate::relay::server::{RelayLimits, Server};
use crate::session::Local;
use hearth_core::fuzzing::{Form, Target};
use hearth_core::grant::Ability;
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::Vault;
use hearth_core::store::MemoryStore;
use hearth_core::test_utils::{self, TEST_NOW, TestRng};
use std::time::{Duration, Instant};

/// The sync crate's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "sync_frame",
        run: sync_frame,
        form: Form::Binary,
        signed: false,
    },
    Target {
        name: "link_code",
        run: link_code,
        form: Form::Token,
        signed: false,
    },
];

struct Node {
    id: Identity,
    vault: Vault<MemoryStore>,
}

struct World {
    patient: Node,
    gp: Node,
    relay: Node,
    record: RecordId,
    joiner: Identity,
    /// The one moment the world's monotonic clock reads (the harness is the driver here, as
    /// the node is in a running node: it passes time in).
    now: Instant,
}

impl World {
    #[allow(clippy::disallowed_methods)]
    fn new() -> World {
        let mut rng = TestRng::new(23);
        let vault = Vault::new(MemoryStore::new());
        let (patient, record) =
            test_utils::patient_record(&vault, "Edith Jones", TEST_NOW, &mut rng);
        let (gp, _) = Identity::generate(Role::Professional, "Dr A. Shah".into(), &mut rng);
        let (relay, _) = Identity::generate(Role::Relay, "Calder relay".into(), &mut rng);
        let (joiner, _) = Identity::generate(Role::Patient, "Edith's phone".into(), &mut rng);
        let grant = {
            let mut rec = vault.open_record(&patient, &record).expect("open");
            for text in ["Two falls at home this month", "Apixaban reviewed"] {
                rec.add_entry(
                    &"notes".parse().expect("section"),
                    &serde_json::json!({ "text": text }),
                    TEST_NOW,
                    &mut rng,
                )
                .expect("add");
            }
            test_utils::record_grant(
                &patient,
                &mut rec,
                gp.peer(),
                "notes",
                Ability::Append,
                TEST_NOW,
                30,
                &mut rng,
            )
        };
        let gp_vault = Vault::new(MemoryStore::new());
        gp_vault
            .hold_grant(&record, std::slice::from_ref(&grant))
            .expect("hold");
        World {
            patient: Node { id: patient, vault },
            gp: Node {
                id: gp,
                vault: gp_vault,
            },
            relay: Node {
                id: relay,
                vault: Vault::new(MemoryStore::new()),
            },
            record,
            joiner,
            now: Instant::now(),
        }
    }

    /// A pairing slot opened by the patient's root device, the same for every call.
    fn pairing(&self) -> (Pairing, String) {
        let mut p = Pairing::default();
        let code = p
            .open(
                self.patient.id.peer(),
                &["/ip4/127.0.0.1/tcp/4001".into()],
                Duration::from_secs(600),
                TEST_NOW,
                self.now,
                &mut TestRng::new(5),
            )
            .expect("open a slot");
        (p, code)
    }
}

thread_local! {
    static WORLD: World = World::new();
}

/// Decodes a frame as it arrives on `/hearth/sync/1` or `/hearth/store/1` and hands what
/// decodes to the state machine that would take it: a request to the patient's node (as from
/// the GP), a response to the GP's node, a notification's push to the patient's node, a relay
/// request to the relay, a pairing message to the patient's open slot.
pub fn sync_frame(data: &[u8]) -> bool {
    let Ok(msg) = protocol::decode(data) else {
        return false;
    };
    WORLD.with(|w| {
        let mut rng = TestRng::new(9);
        let (patient, gp) = (&w.patient, &w.gp);
        match msg {
            Message::Request(req) => Local::new(&patient.vault, &patient.id)
                .on_request(gp.id.peer(), req, TEST_NOW, &mut rng)
                .is_ok(),
            Message::Response(resp) => Local::new(&gp.vault, &gp.id)
                .on_response(patient.id.peer(), resp, TEST_NOW, &mut rng)
                .is_ok(),
            Message::Notify(n) => Local::new(&patient.vault, &patient.id)
                .on_push(n.record, &n.push, TEST_NOW)
                .is_ok(),
            Message::Store(req) => {
                let limits = RelayLimits::default();
                Server::new(&w.relay.vault, &w.relay.id, &limits)
                    .answer(gp.id.peer(), req, TEST_NOW, &mut rng)
                    .is_ok()
            }
            Message::Stored(_) => true,
            Message::Link(link) => {
                let (mut pairing, _) = w.pairing();
                let now = w.now;
                let me = patient.id.peer();
                matches!(
                    pairing.handle(me, w.joiner.peer(), link, now, &mut rng),
                    crate::pairing::Step::Certify(_)
                ) || pairing.outcome(now).is_none()
            }
        }
    })
}

/// Parses a device-link code as typed or scanned.
pub fn link_code(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|t| LinkCode::parse(t).is_ok())
}

/// Valid frames and codes for the targets above, by target name.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    WORLD.with(|w| {
        let mut rng = TestRng::new(31);
        let gp = Local::new(&w.gp.vault, &w.gp.id);
        let patient = Local::new(&w.patient.vault, &w.patient.id);
        let request = gp
            .start_as(w.record, w.patient.id.peer(), true, TEST_NOW)
            .expect("start");
        let (response, _) = patient
            .on_request(w.gp.id.peer(), request.clone(), TEST_NOW, &mut rng)
            .expect("answer");
        let notify = Message::Notify(protocol::Notify {
            record: w.record,
            push: Vec::new(),
        });
        let store =
            crate::relay::StoreRequest::new(crate::relay::blind(&w.record, &w.relay.id.peer()));
        let (_, code) = w.pairing();
        let parsed = LinkCode::parse(&code).expect("parse the code");
        let start = crate::pairing::Joiner::new(&parsed, &w.joiner).start(&mut rng);
        let frames = [
            Message::Request(request),
            Message::Response(response),
            notify,
            Message::Store(store),
            start,
        ];
        vec![
            ("sync_frame", frames.iter().map(protocol::encode).collect()),
            ("link_code", vec![code.into_bytes()]),
        ]
    })
}
