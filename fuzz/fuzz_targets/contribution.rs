#![no_main]
//! Fuzz target: a de-identified contribution file (`hearth_core::fuzzing::contribution`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::contribution(data);
});
