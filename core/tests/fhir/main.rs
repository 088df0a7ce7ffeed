//! FHIR import and export through the record engine on the in-memory store: every fixture
//! bundle round-trips with its clinical content intact, re-importing adds nothing, and bad input
//! changes nothing.
//!
//! The helpers (records, import and export as the node does them) are in `common`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;
mod in_error;
mod paths;
mod refusals;
mod round_trip;
