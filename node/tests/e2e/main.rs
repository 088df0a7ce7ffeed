//! Hearth's end-to-end tests: the real `hearth` binary (`CARGO_BIN_EXE_hearth`) in temporary
//! homes, real daemons on loopback, real sled stores on disk, a real browser for the web app.
//!
//! One test binary with a module per concern, rather than one binary per file: the node's
//! dependencies are linked once, and the tests that wait on the clock (a grant's end plus the
//! 60 s tolerance, an emergency use's minute) overlap with the rest instead of queueing. Run one
//! concern with `cargo test -p hearth-node --test e2e review::`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;

mod audit;
mod cli;
mod disputes;
mod emergency;
mod extract;
mod fhir;
mod fhir_export;
mod fhir_import;
mod floods;
mod fuzz_smoke;
mod grants;
mod hostile_grantee;
mod hostile_peer;
mod local;
mod nat;
mod ops;
mod p2p;
mod proxy;
mod relay;
mod relay_net;
mod requests;
mod review;
mod revocation;
mod store_repair;
mod web_api;
mod web_ui;
