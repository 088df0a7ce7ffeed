//! What the node takes from the operating system for the pure crates: the clock and the
//! random number generator. `hearth-core` and `hearth-sync` never read either; every caller
//! here passes [`now`] and [`os_rng`] in (tests pass a fixed time and a seeded generator).
//! Also the one way the binary writes a line to standard output ([`print_line`]).

use hearth_core::time::Timestamp;

/// The random number generator the node uses: the operating system's.
pub type NodeRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's random number generator.
pub fn os_rng() -> NodeRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Writes `line` and a new line to standard output. A reader that has gone away (`hearth … |
/// head`) is not an error of the command: what it did is done, and the rest of its output has
/// nobody to read it, so a failed write is dropped rather than turned into a panic.
pub fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The current time, read once per command.
pub fn now() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}
