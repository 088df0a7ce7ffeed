#![no_main]
//! Fuzz target: a FHIR bundle file, parsed and planned for import (`hearth_core::fuzzing::fhir_import`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_core::fuzzing::fhir_import(data);
});
