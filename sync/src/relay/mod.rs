//! Organisation relays: `/hearth/store/1`, store-and-forward that cannot read.
//!
//! A relay keeps a patient's record reachable while the patient's devices are offline. It holds
//! bundles (ciphertext with signed headers), the patient's key wraps (ciphertext to their
//! recipients) and the patient's signed [`access::AccessList`]; it holds no key and never sees
//! a name, a section name or an NHS number.
//!
//! One exchange is a [`StoreRequest`] and its [`StoreResponse`], the same shape as a sync
//! round: "this is what I hold; here is what you lack" → "here is what you lack; this is where
//! you may push" (→ a push, answered the same way). Three kinds of peer use it:
//!
//! - **the patient's device** supplies the relay: its first request carries the signed access
//!   list and the key wraps, then it pushes every bundle the relay lacks and collects what
//!   professionals left there ([`crate::session::Local::relay_start`]);
//! - **a grantee** fetches the sections its entry lets it read and pushes its own bundles to
//!   those it may write, which wait at the relay until the patient's node collects them and
//!   judges them by its own rules (a write whose grant ended is held for review, as ever);
//! - **a recovering device** (the record root re-derived from the recovery phrase) signs a new
//!   list naming itself and fetches the whole record and the wraps to the recovery key.
//!
//! What the relay checks, every time, at its own clock ([`server::Server::answer`]): the list's
//! root signature, that it names this relay, that the patient's `relay` grant inside it holds;
//! the requester's entry on it (the transport authenticated the requester's key); every pushed
//! bundle's signature, hash chain and author; the record's quota. A refusal reads
//! [`NOTHING_HERE`] whether the record is unknown or the requester may not have it.
//!
//! Honest limits: bundle headers carry the record id (the root's public key) and author keys,
//! so relays that pooled their copies could link one record across them; the blinding keeps
//! their lookup and storage keys apart and keeps names, sections and content from all of them.

pub mod access;
pub mod limits;
pub mod mailbox;
pub mod server;
pub mod wire;

pub use wire::{Blinded, STORE_PROTOCOL, StoreRequest, StoreResponse, blind};

/// The refusal for a record that is not here *or* not for the requester: the same words, so a
/// stranger learns nothing.
pub const NOTHING_HERE: &str = "nothing here for this peer";
/// A push that would pass the record's quota (nothing already stored is lost).
pub const QUOTA_FULL: &str = "the relay's quota for this record is full";
/// A requester over its rate.
pub const SLOW_DOWN: &str = "too many requests: try again shortly";
