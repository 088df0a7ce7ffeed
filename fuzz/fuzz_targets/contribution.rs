#![no_main]
//! Fuzz target: `hearth_core::fuzzing::contribution` must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::contribution(data);
});
