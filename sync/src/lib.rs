//! # hearth-sync
//!
//! Hearth's sync protocol. [`protocol`] is the wire format of `/hearth/sync/1`; [`session`]
//! is the sans-I/O logic that decides, for a request or response, what to send, what to
//! accept and what to refuse — pure functions of the local store, the identity, the message,
//! the time and a random number generator, driven by the network adapter. Above it, also
//! sans-I/O with the time passed in: [`round`] runs rounds (steps, limits, deadlines, who
//! waits for what), [`changes`] decides whom a change is announced to and what is pushed
//! with it, [`dial`] when known peers are dialled again. The node's live driver only moves bytes between them, the store and the network.
//!
//! ```
//! use hearth_core::grant::{Ability, Grant, GrantSpec};
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::record::{NewRecord, Vault};
//! use hearth_core::store::MemoryStore;
//! use hearth_core::test_utils::{TEST_NOW, TestRng};
//! use hearth_sync::session::Local;
//!
//! let mut rng = TestRng::new(1);
//! let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
//! let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
//! let p_vault = Vault::new(MemoryStore::new());
//! let rid = p_vault.create_record(&patient, NewRecord::default(), TEST_NOW, &mut rng).unwrap();
//! let mut rec = p_vault.open_record(&patient, &rid).unwrap();
//! rec.add_entry(&"notes".parse().unwrap(), &serde_json::json!({"text": "hello"}), TEST_NOW, &mut rng).unwrap();
//! let spec = GrantSpec::new(gp.peer(), "notes".parse().unwrap(), Ability::Read, TEST_NOW,
//!     TEST_NOW.saturating_add_millis(86_400_000));
//! let grant = Grant::issue_root(&patient, spec, &[], &mut rng).unwrap();
//!
//! // The GP's node holds the grant, and syncs with the patient's node (named by its user: the
//! // grant carries no address).
//! let g_vault = Vault::new(MemoryStore::new());
//! g_vault.hold_grant(&rid, &[grant]).unwrap();
//! let (gp_side, p_side) = (Local::new(&g_vault, &gp), Local::new(&p_vault, &patient));
//! let req = gp_side.start_as(rid, patient.peer(), true, TEST_NOW).unwrap();
//! let (resp, _) = p_side.on_request(gp.peer(), req, TEST_NOW, &mut rng).unwrap();
//! let (next, report) = gp_side.on_response(patient.peer(), resp, TEST_NOW, &mut rng).unwrap();
//! assert!(next.is_none() && report.received > 0);
//! let mut replica = g_vault.open_record(&gp, &rid).unwrap();
//! assert_eq!(replica.show(&"notes".parse().unwrap()).unwrap().entries.len(), 1);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod changes;
pub mod dial;
#[cfg(feature = "test-utils")]
pub mod fuzzing;
#[cfg(feature = "libp2p")]
pub mod net;
pub mod pairing;
pub mod protocol;
pub mod relay;
pub mod round;
pub mod session;
