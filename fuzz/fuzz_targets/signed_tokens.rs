#![no_main]
//! Fuzz target: request, credential and card tokens (`hearth_core::fuzzing::signed_tokens`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::signed_tokens(data);
});
