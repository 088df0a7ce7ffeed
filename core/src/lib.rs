//! # hearth-core
//!
//! The pure heart of Hearth, a patient-owned care record. Everything here is deterministic
//! logic: no sockets, no files, no clock and no ambient randomness. Callers pass the current
//! time (a [`time::Timestamp`]) and a cryptographically secure random number generator
//! (`rand_core::CryptoRng`) into every function that needs them, so tests run with a fixed clock
//! and a seeded generator and the node decides where entropy comes from.
//!
//! The pieces, from the bottom up:
//!
//! - [`crypto`]: domain-separated ed25519 signatures, XChaCha20-Poly1305 sealing and HPKE key
//!   wrapping;
//! - [`keys`]: device keys, the patient's record root key, the recovery phrase, and the
//!   passphrase-encrypted [`keys::Keystore`];
//! - [`keywrap`]: a section key wrapped to one recipient and signed by the record root, as a
//!   record's keyring holds it and a grant carries it;
//! - [`ids`]: record, section, entry and peer identifiers with their text forms;
//! - [`section`] and [`entry`]: the record model: sections (class × sensitivity label) and the
//!   typed entries they hold;
//! - [`bundle`] and [`log`]: the signed, encrypted bundles that carry every change, and the
//!   per-(section, author) hash-chained logs they form;
//! - [`store`]: the narrow key–value [`store::Store`] trait, with an in-memory implementation;
//! - [`record`]: the record engine that ties these together: create a record, add, correct and
//!   read entries, with every change stored as a verified bundle.
//! - [`ledger`]: the consent ledger's items (grants, revocations, requests, decisions,
//!   trusted organisations, held grants, known peers) with every key spelled once; typed
//!   queries over a record and a vault are methods of [`record::OpenRecord`] and
//!   [`record::Vault`].
//! - [`nhs`]: NHS number validation.
//! - [`extract`]: the patient's research and planning choices, and signed, de-identified
//!   contributions with per-recipient pseudonyms, pooled into suppressed counts.
//!
//! ```
//! use hearth_core::record::{Vault, NewRecord};
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::store::MemoryStore;
//! use hearth_core::section::SectionName;
//! use hearth_core::time::Timestamp;
//! use hearth_core::test_utils::TestRng;
//!
//! let mut rng = TestRng::new(7);
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! let (identity, _phrase) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
//! let vault = Vault::new(MemoryStore::new());
//! let record_id = vault.create_record(&identity, NewRecord::default(), now, &mut rng).unwrap();
//! let mut record = vault.open_record(&identity, &record_id).unwrap();
//! let notes: SectionName = "notes".parse().unwrap();
//! let body = serde_json::json!({"text": "Feeling better today"});
//! let id = record.add_entry(&notes, &body, now, &mut rng).unwrap();
//! let view = record.show(&notes).unwrap();
//! assert_eq!(view.entries[0].id, id);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod bundle;
mod canonical;
pub mod crypto;
pub mod entry;
pub mod extract;
pub mod fhir;
pub mod grant;
pub mod ids;
pub mod keys;
pub mod keywrap;
pub mod ledger;
pub mod letter;
pub mod log;
pub mod nhs;
mod par;
pub mod record;
pub mod section;
pub mod store;
pub mod time;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
