#![no_main]
//! Fuzz target: a signed audit event (`hearth_core::fuzzing::audit_event`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::audit_event(data);
});
