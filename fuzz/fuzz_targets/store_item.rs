#![no_main]
//! Fuzz target: every decoder of a value read back from the store (`hearth_core::fuzzing::store_item`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::store_item(data);
});
