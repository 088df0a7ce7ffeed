#![no_main]
//! Fuzz target: a bundle, decoded and its signature checked (`hearth_core::fuzzing::bundle`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::bundle(data);
});
