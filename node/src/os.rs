//! What the node takes from the operating system for the pure crates: the clock and the
//! random number generator. `hearth-core` and `hearth-sync` never read either; every caller
//! here passes [`now`] and [`os_rng`] in (tests pass a fixed time and a seeded generator).

use hearth_core::time::Timestamp;

/// The random number generator the node uses: the operating system's.
pub type NodeRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's random number generator.
pub fn os_rng() -> NodeRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// The current time, read once per command.
pub fn now() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}
