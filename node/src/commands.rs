//! The clock and the random number generator under their old paths, for the sync driver,
//! the pairing glue, the tests and the benches. New code uses [`crate::os`].

pub use crate::os::{NodeRng, now, os_rng};
