//! Tests of the record engine as a whole.

mod disputes;
mod hostile_bundles;
mod merge;
mod restore;
