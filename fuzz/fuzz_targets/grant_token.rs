#![no_main]
//! Fuzz target: a grant chain's text token, decoded and verified (`hearth_core::fuzzing::grant_token`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::grant_token(data);
});
