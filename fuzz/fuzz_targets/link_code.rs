#![no_main]
//! Fuzz target: a device-link code (`hearth_sync::fuzzing::link_code`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_sync::fuzzing::link_code(data);
});
