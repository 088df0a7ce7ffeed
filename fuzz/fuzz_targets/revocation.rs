#![no_main]
//! Fuzz target: a signed revocation (`hearth_core::fuzzing::revocation`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::revocation(data);
});
