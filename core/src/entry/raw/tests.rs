//! Tests of the text scans: they accept only what serde_json accepts and agree with it.

use super::*;
use serde_json::{Value, json};

#[test]
fn members_split_an_object() {
    let m = members(r#" {"a": 1, "b" :{"c":[1,2]},"a":"x"} "#).unwrap();
    assert_eq!(
        m,
        vec![("a", "1"), ("b", r#"{"c":[1,2]}"#), ("a", r#""x""#)]
    );
    assert_eq!(member(r#"{"a":1,"a":2}"#, "a"), Some("2"));
    assert!(members(r#"{"\u0061":1}"#).is_none());
    assert!(members("[1]").is_none());
    assert!(members(r#"{"a":1"#).is_none());
    assert!(members(r#"{"a":1} x"#).is_none());
}

#[test]
fn scans_accept_only_what_serde_json_accepts() {
    for (text, ok) in [
        (r#"{"a":01}"#, false),
        (r#"{"a":1.}"#, false),
        (r#"{"a":-}"#, false),
        (r#"{"a":1e}"#, false),
        (r#"{"a":.5}"#, false),
        (r#"{"a":+1}"#, false),
        (r#"{"a":1-2}"#, false),
        (r#"{"a":tru}"#, false),
        (r#"{"a":[1,]}"#, false),
        (r#"{"a":1,}"#, false),
        (r#"{"a":"\x"}"#, false),
        (r#"{"a":"\u12"}"#, false),
        (
            r#"{"a":-0.5e+10,"b":[true,false,null,{}],"c":"\/\u00e9\n"}"#,
            true,
        ),
        (r#" { "a" : [ 1 , 2 ] } "#, true),
    ] {
        assert_eq!(members(text).is_some(), ok, "{text}");
        assert_eq!(serde_json::from_str::<Value>(text).is_ok(), ok, "{text}");
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(120), "]".repeat(120));
    assert!(members(&deep).is_none(), "deeper than followed");
}

#[test]
fn body_parts_read_fields_source_and_resource_in_one_pass() {
    let body = json!({"code": {"code": "x"}, "status": "final", "source": {
        "format": "fhir-r4", "full_url": "urn:uuid:1",
        "resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p"}}}});
    let text = serde_json::to_string(&body).unwrap();
    let p = body_parts(&text).unwrap();
    assert_eq!(
        p.fields,
        vec![("code", r#"{"code":"x"}"#), ("status", r#""final""#)]
    );
    assert_eq!(p.source_members.as_ref().unwrap().len(), 2);
    let (resource, found) = p.resource.unwrap();
    assert!(resource.starts_with(r#"{"id":"o1""#));
    let found = found.unwrap();
    assert_eq!(found.references, vec!["Patient/p"]);
    assert_eq!(found.resource_type, Some("Observation"));
    // A resource not in serde_json's form is found, and not vouched for.
    let odd = r#"{"source": {"resource": {"b": 1, "a": 2}, "format": "fhir-r4"}, "x": 1}"#;
    let p = body_parts(odd).unwrap();
    assert_eq!(p.resource.as_ref().unwrap().0, r#"{"b": 1, "a": 2}"#);
    assert!(p.resource.unwrap().1.is_none());
    assert_eq!(p.fields, vec![("x", "1")]);
    assert!(body_parts(r#"{"source": {"resource": {"a": 1,}}}"#).is_none());
}

#[test]
fn canonical_is_what_serde_json_writes() {
    let v = json!({"resourceType": "Observation", "id": "o1",
        "subject": {"reference": "Patient/p"},
        "performer": [{"reference": "urn:uuid:x"}, {"display": "d"}],
        "nested": [[{"reference": "not-visited"}]],
        "contained": [{"resourceType": "Goal", "id": "g", "subject": {"reference": "#p"}}],
        "value": 7.25, "n": -3, "big": 18446744073709551615u64, "e": 1e-7,
        "t": "tab\there \"quoted\" \u{1} é", "empty": {}, "none": [], "b": true, "z": null});
    let text = serde_json::to_string(&v).unwrap();
    let c = canonical_object(&text).unwrap();
    assert_eq!(c.resource_type, Some("Observation"));
    assert_eq!(c.id, Some("o1"));
    let mut refs = c.references.clone();
    refs.sort_unstable();
    assert_eq!(refs, vec!["#p", "Patient/p", "urn:uuid:x"]);
    for bad in [
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"a": 1}"#,
        r#"{"a":1.50}"#,
        r#"{"a":1E5}"#,
        r#"{"a":-0}"#,
        r#"{"a":18446744073709551616}"#,
        r#"{"a":"\u00e9"}"#,
        r#"{"a":"\/"}"#,
        r#"{"a":"\u000A"}"#,
        r#"{"a":"\u001F"}"#,
        r#"{"a":1}x"#,
    ] {
        assert!(canonical_object(bad).is_none(), "{bad}");
        if let Ok(v) = serde_json::from_str::<Value>(bad) {
            assert_ne!(serde_json::to_string(&v).unwrap(), bad);
        }
    }
    assert!(canonical_object(r#"{"a":"\u001f\n"}"#).is_some());
    assert!(canonical_object("[1]").is_none(), "not an object");
}

#[test]
fn plain_runs_stop_at_the_first_special_byte() {
    for text in [
        "abcdefghijklmnop\"",
        "abc\\def",
        "abcdefgh\u{1}ijk",
        "é日本語テキストとさらに\"x",
        "0123456\"",
        "01234567\"",
        "012345678",
        "\"",
        "",
        "\u{7f}\u{80}\u{ff}abcdefgh\u{1f}",
    ] {
        let b = text.as_bytes();
        let want = b
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .unwrap_or(b.len());
        for start in 0..=want {
            assert_eq!(plain_run(b, start), want, "{text:?} from {start}");
        }
    }
}

#[test]
fn pretty_is_serde_jsons_pretty() {
    let v = json!({"a": [], "b": {}, "c": [1, {"d": "x,y:{z}[\"]"}, []], "e": {"f": null}});
    let mut out = Vec::new();
    write_pretty(serde_json::to_string(&v).unwrap().as_bytes(), &mut out);
    assert_eq!(out, serde_json::to_vec_pretty(&v).unwrap());
}
