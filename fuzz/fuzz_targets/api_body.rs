#![no_main]
//! Fuzz target: the local API's JSON request bodies (`hearth_node::web::decode_body`) must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth_node::web::decode_body(data);
});
