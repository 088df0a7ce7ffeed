//! The node's fuzz target (the API's request bodies), and every target of the workspace in one
//! list, for the stable hostile runs (`tests/fuzz_smoke.rs`) and the cargo-fuzz targets in
//! `fuzz/`. Each target's committed corpus is `fuzz/corpus/<name>/`.

use hearth_core::fuzzing::{Form, Target};

/// The node's targets.
pub const TARGETS: &[Target] = &[Target {
    name: "api_body",
    run: crate::web::decode_body,
    form: Form::Json,
    signed: false,
}];

/// Every target: the core's, the sync crate's and the node's.
pub fn all_targets() -> Vec<Target> {
    [
        hearth_core::fuzzing::TARGETS,
        hearth_sync::fuzzing::TARGETS,
        TARGETS,
    ]
    .concat()
}

/// Valid inputs for every target, by name.
pub fn all_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut out = hearth_core::fuzzing::seeds::all();
    out.extend(hearth_sync::fuzzing::seeds());
    out.push((
        "api_body",
        API_BODIES.iter().map(|b| b.as_bytes().to_vec()).collect(),
    ));
    out
}

/// One well-formed body of each route's kind.
const API_BODIES: &[&str] = &[
    r#"{"code":"Q2X7-4KJP-9WMB"}"#,
    r#"{"argv":["record","show","--json"],"passphrase":"correct horse","stdin":null}"#,
    r#"{"record":"HEARTH-RECORD","sections":"notes","ability":"read","purpose":"direct-care","expires":"7d","reason":"review after a fall"}"#,
    r#"{"token":"HEARTH1R-EXAMPLE"}"#,
    r#"{"sections":"notes","expires":"30d"}"#,
    r#"{"to":"HEARTH1C-EXAMPLE","sections":"notes","ability":"append","purpose":"direct-care","expires":"30d","proxy":false}"#,
    r#"{"record":"HEARTH-RECORD","reason":"unconscious in A&E","duration":"4h"}"#,
    r#"{"purpose":"planning","choice":"opt-out"}"#,
    r#"{"text":"HEARTH1G-EXAMPLE"}"#,
    r#"{"section":"notes","entry":{"text":"Seen in clinic; BP 142/88"}}"#,
    r#"{"entry":{"text":"BP 124/80"}}"#,
    r#"{"reason":"entered in the wrong record"}"#,
];
