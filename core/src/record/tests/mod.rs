//! Tests of the record engine as a whole.

mod hostile_bundles;
mod merge;
mod restore;
mod revoke;
