//! The commands, one module per command group (as mini-redis's `cmd/`): each holds its
//! group's argument types (clap) and its handlers. A handler parses and checks its arguments,
//! calls into the application layer ([`crate::app`]) and the engine, and prints.
//!
//! Command groups do not call each other: what two of them share lives in [`crate::app`].
//! The command line composes their argument types into one `Command` and dispatches to them.

pub mod audit;
pub mod device;
pub mod emergency;
pub mod extract;
pub mod fhir;
pub mod grant;
pub mod init;
pub mod net;
pub mod org;
pub mod proxy;
pub mod record;
pub mod recover;
pub mod relay;
pub mod request;
pub mod review;
pub mod store;
pub mod trust;
pub mod ui;
