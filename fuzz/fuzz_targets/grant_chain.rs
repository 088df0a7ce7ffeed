#![no_main]
//! Fuzz target: a grant chain's stored bytes, decoded and verified (`hearth_core::fuzzing::grant_chain`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::grant_chain(data);
});
