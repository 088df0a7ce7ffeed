#![no_main]
//! Fuzz target: a sync or relay frame, decoded and handled by the state machine it reaches (`hearth_sync::fuzzing::sync_frame`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_sync::fuzzing::sync_frame(data);
});
