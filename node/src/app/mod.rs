//! The application layer: what commands share, callable from the command line and from the
//! daemon's API alike.
//!
//! [`Ctx`] is a command's context (its home, output, passphrase; inside the daemon, the open
//! store and captured output). The other modules are the parsing and the views that more than
//! one command needs: parsing what the user typed ([`parse`]), vouching for authors
//! ([`people`]), grants ([`grants`]), this node's addresses ([`addresses`]), the consent
//! ledger's timeline ([`timeline`]) and printing tokens ([`token`]).
//!
//! Layering: the command line (`cli`) and the commands (`cmd`) sit above this layer, the
//! engine (store, home, daemon, sync driver) below it. Nothing here names a command or its
//! arguments.

mod ctx;

pub mod addresses;
pub mod audit;
pub mod grants;
pub mod parse;
pub mod patients;
pub mod people;
pub mod timeline;
pub mod token;

pub use crate::os::{NodeRng, now, os_rng};
pub use ctx::{Ctx, InDaemon, ensure_new_home, new_node_name_and_passphrase};

use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use hearth_core::keys::Identity;
use hearth_core::record::{OpenRecord, Vault};

/// Invalid input (exit code 3).
pub fn invalid(msg: impl ToString) -> Failure {
    Failure::new(code::INVALID, msg)
}

/// Refused (exit code 7): understood, but not allowed here.
pub fn refused(msg: impl ToString) -> Failure {
    Failure::new(code::REFUSED, msg)
}

/// The patient's own record, opened; refused with `elsewhere` on a node that has none.
pub fn patient_record<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
    elsewhere: &str,
) -> Result<OpenRecord<'v, SledStore>, Failure> {
    let rid = identity.record_id().ok_or_else(|| refused(elsewhere))?;
    Ok(vault.open_record(identity, &rid)?)
}
