//! # hearth-tests
//!
//! The workspace member for cross-crate integration tests. The multi-process tests that run the
//! real `hearth` binary live in `node/tests/` (`cli.rs`, `grants.rs`, `p2p.rs`, `fhir.rs`),
//! because Cargo gives the binary's path (`CARGO_BIN_EXE_hearth`) only to the integration
//! tests of the package that builds it; the pure protocol tests with simulated pairs live in
//! `sync/tests/`, and the black-box acceptance scripts in `../shared/acceptance/` run in CI.
//! This crate holds no code of its own yet.
