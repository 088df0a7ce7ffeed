//! The resource API the web app uses, over real HTTP to a real daemon (`hearth run`): every
//! route refuses a request without a session, from a foreign Host or Origin, or marked
//! cross-site; login codes are one-time; malformed bodies, wrong content types, oversized
//! bodies, unknown ids and values shaped like options get a JSON error and change nothing;
//! the OpenAPI document lists every route; live updates arrive.

use crate::common::web::Web;
use crate::common::{Daemon, Pair, hearth, json, ok};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};

/// Every resource route, with a body where it takes one (ids are made up: the checks come
/// first).
fn routes(rid: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let r = |p: &str| format!("/api/v1/records/{rid}{p}");
    vec![
        ("GET", "/api/v1/session".into(), None),
        ("DELETE", "/api/v1/session".into(), None),
        ("GET", "/api/v1/events".into(), None),
        ("GET", "/api/v1/records".into(), None),
        ("GET", r(""), None),
        ("GET", r("/sections"), None),
        ("GET", r("/history?section=notes"), None),
        (
            "POST",
            r("/entries"),
            Some(json!({"section": "notes", "entry": {"text": "x"}})),
        ),
        (
            "POST",
            r("/entries/eabc/correct"),
            Some(json!({"entry": {"text": "x"}})),
        ),
        (
            "POST",
            r("/entries/eabc/mark-error"),
            Some(json!({"reason": "x"})),
        ),
        ("GET", r("/export"), None),
        ("GET", "/api/v1/requests".into(), None),
        (
            "POST",
            "/api/v1/requests".into(),
            Some(
                json!({"record": rid, "sections": "notes", "ability": "read", "purpose": "direct-care", "expires": "1d", "reason": "x"}),
            ),
        ),
        (
            "POST",
            "/api/v1/requests/receive".into(),
            Some(json!({"token": "HEARTH1RX"})),
        ),
        (
            "POST",
            "/api/v1/requests/qabc/approve".into(),
            Some(json!({})),
        ),
        ("POST", "/api/v1/requests/qabc/deny".into(), Some(json!({}))),
        ("GET", "/api/v1/grants".into(), None),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(json!({"to": "x", "sections": "notes", "ability": "read", "expires": "1d"})),
        ),
        ("POST", "/api/v1/grants/gabc/revoke".into(), Some(json!({}))),
        (
            "POST",
            "/api/v1/grants/accept".into(),
            Some(json!({"token": "HEARTH1GX"})),
        ),
        ("GET", "/api/v1/devices".into(), None),
        ("POST", "/api/v1/devices/link".into(), Some(json!({}))),
        (
            "POST",
            "/api/v1/devices/12D3KooWabc/remove".into(),
            Some(json!({})),
        ),
        ("GET", "/api/v1/audit".into(), None),
        ("GET", "/api/v1/emergency".into(), None),
        (
            "POST",
            "/api/v1/emergency/access".into(),
            Some(json!({"record": rid, "reason": "x"})),
        ),
        ("GET", "/api/v1/consent".into(), None),
        (
            "POST",
            "/api/v1/consent".into(),
            Some(json!({"purpose": "research", "choice": "on"})),
        ),
        ("POST", "/api/v1/qr".into(), Some(json!({"text": "x"}))),
        ("GET", "/api/v1/status".into(), None),
    ]
}

/// A bad request: method, path, extra headers, body, the status and error code it must get.
type Case<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    String,
    u16,
    &'a str,
);

#[track_caller]
fn is_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// The number of entries the patient's record shows, and its audit and ledger, as the CLI
/// sees them: what "nothing changed" is checked against.
fn state(p: &std::path::Path) -> (Value, Value) {
    let show = json(&hearth(p, &["record", "show", "--json"]));
    let ledger = json(&hearth(p, &["grant", "list", "--json"]));
    (show["sections"].clone(), ledger["events"].clone())
}

#[test]
fn every_route_refuses_strangers_foreign_pages_and_missing_sessions() {
    let pair = Pair::new("Dr Patel");
    let d = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let web = Web::login(&pair.p, &d);
    let install_token = std::fs::read_to_string(pair.p.join("api-token")).unwrap();
    let before = state(&pair.p);
    let host = format!("127.0.0.1:{}", web.port);
    let session = format!("Bearer {}", web.token);
    let install = format!("Bearer {}", install_token.trim());
    for (method, path, body) in routes(&pair.rid) {
        let text = body.as_ref().map(Value::to_string);
        let b = text.as_deref();
        // No token, a wrong one, a login code instead of a token.
        let code_as_token = format!("Bearer {}", web.code());
        for auth in [None, Some("Bearer wrong"), Some(code_as_token.as_str())] {
            let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
            let (c, v) = web.raw(method, &path, &h, b);
            assert_eq!(c, 401, "{method} {path} with {auth:?}: {v}");
            is_error(&v, "unauthorized");
        }
        // The install's API token opens the status alone.
        let (c, v) = web.raw(method, &path, &[("Authorization", &install)], b);
        if path == "/api/v1/status" {
            assert_eq!(c, 200, "{v}");
        } else {
            assert_eq!(c, 401, "{method} {path} with the install token: {v}");
        }
        // A valid session from a foreign Host (DNS rebinding), a foreign Origin, or a
        // request the browser marks cross-site.
        for extra in [
            ("Host", "evil.example"),
            ("Origin", "http://evil.example"),
            ("Origin", "http://127.0.0.1:1"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "cross-site"),
        ] {
            let mut h = vec![("Authorization", session.as_str()), extra];
            if extra.0 != "Host" {
                h.push(("Host", &host));
            }
            let (c, v) = web.raw(method, &path, &h, b);
            assert_eq!(c, 403, "{method} {path} with {extra:?}: {v}");
            assert!(
                v["error"]["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("forbidden")),
                "{v}"
            );
        }
    }
    // The login itself from a foreign page is refused, and the code is not spent by it.
    let fresh = Web::address(&pair.p, &d);
    let body = json!({"code": fresh.code()}).to_string();
    let (c, _) = fresh.raw(
        "POST",
        "/api/v1/session",
        &[("Origin", "http://evil.example")],
        Some(&body),
    );
    assert_eq!(c, 403);
    let (c, v) = fresh.raw("POST", "/api/v1/session", &[], Some(&body));
    assert_eq!(c, 200, "{v}");
    // exec is never run over TCP, even with a session.
    let (c, v) = web.call(
        "POST",
        "/api/v1/exec",
        Some(&json!({"argv": ["id"], "passphrase": crate::common::PASS})),
    );
    assert_eq!(c, 403, "{v}");
    assert_eq!(state(&pair.p), before, "nothing changed");
    // The page and its assets need no session and hold nothing of the node; every answer
    // carries the strict policy.
    for path in [
        "/",
        "/assets/js/app.js",
        "/assets/js/core.js",
        "/assets/app.css",
        "/api/openapi.json",
    ] {
        let (c, _) = web.raw("GET", path, &[], None);
        assert_eq!(c, 200, "{path}");
    }
    d.stop();
}

#[test]
fn login_codes_are_one_time_and_sessions_end() {
    let pair = Pair::new("Dr Patel");
    let d = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let w = Web::address(&pair.p, &d);
    let body = json!({"code": w.code()}).to_string();
    let (c, v) = w.raw("POST", "/api/v1/session", &[], Some(&body));
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["me"]["record_id"], pair.rid.as_str());
    assert_eq!(v["me"]["name"], "Pat");
    let token = v["token"].as_str().unwrap().to_string();
    assert_ne!(token, w.code());
    let (c, v) = w.raw("POST", "/api/v1/session", &[], Some(&body));
    assert_eq!(c, 401, "a code works once: {v}");
    is_error(&v, "unauthorized");
    for bad in [
        r#"{"code": ""}"#,
        r#"{"code": "aaaa"}"#,
        r#"{}"#,
        "nonsense",
    ] {
        let (c, v) = w.raw("POST", "/api/v1/session", &[], Some(bad));
        assert!(matches!(c, 400 | 401 | 422), "{bad}: {c} {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let auth = format!("Bearer {token}");
    let (c, v) = w.raw("GET", "/api/v1/session", &[("Authorization", &auth)], None);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["me"]["role"], "patient");
    let (c, _) = w.raw(
        "DELETE",
        "/api/v1/session",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(c, 204);
    let (c, _) = w.raw("GET", "/api/v1/session", &[("Authorization", &auth)], None);
    assert_eq!(c, 401, "logged out");
    // Without the daemon, `hearth ui` says how to start it.
    d.stop();
    let out = hearth(&pair.p, &["ui"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hearth run"));
}

#[test]
fn ui_open_never_puts_the_login_address_in_a_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let pair = Pair::new("Dr Patel");
    // A stand-in for the desktop's opener, first on the daemon's PATH: it records its
    // arguments (which every user of the machine can see) and what the page it was given says.
    let bin = pair.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = pair.dir.path().join("opener-saw");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{0}.args'\ncat \"${{1#file://}}\" > '{0}.page'\n",
        seen.display()
    );
    std::fs::write(bin.join("xdg-open"), script).unwrap();
    std::fs::set_permissions(bin.join("xdg-open"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = Daemon::start_in(
        &pair.p,
        Some("/ip4/127.0.0.1/tcp/0"),
        &[],
        &[("PATH", &path)],
    );
    let out = json(&hearth(&pair.p, &["ui", "--open", "--json"]));
    assert_eq!(out["opened"], true, "{out}");
    let url = out["url"].as_str().unwrap();
    let code = url.split("#login=").nth(1).unwrap();
    let args = crate::common::wait_file(&seen.with_extension("args"));
    assert!(
        !args.contains(code),
        "the code is in a command line: {args}"
    );
    assert!(args.starts_with("file://"), "{args}");
    let page = crate::common::wait_file(&seen.with_extension("page"));
    assert!(page.contains(url), "{page}");
    let file = args.trim().trim_start_matches("file://");
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the forwarding page is private");
    d.stop();
}

#[test]
fn bad_input_gets_a_json_error_and_changes_nothing() {
    let pair = Pair::new("Dr Patel");
    ok(&hearth(
        &pair.p,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "Seen in clinic"}"#,
        ],
    ));
    let d = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let web = Web::login(&pair.p, &d);
    let before = state(&pair.p);
    let auth = format!("Bearer {}", web.token);
    let rid = pair.rid.clone();
    // A well-formed record id this node does not hold.
    let other = crate::common::init(&pair.dir.path().join("q"), "patient", "Quinn");
    let elsewhere = other["record_id"].as_str().unwrap().to_string();
    let entries = format!("/api/v1/records/{rid}/entries");
    let cases: Vec<Case> =
        vec![
        // Malformed JSON, the wrong content type, the wrong shape.
        ("POST", entries.clone(), vec![], "{".into(), 400, "invalid"),
        (
            "POST",
            entries.clone(),
            vec![("Content-Type", "text/plain")],
            r#"{"section":"notes","entry":{"text":"x"}}"#.into(),
            415,
            "not_json",
        ),
        ("POST", entries.clone(), vec![], r#"{"section": "notes"}"#.into(), 422, "invalid"),
        (
            "POST",
            entries.clone(),
            vec![],
            r#"{"section": "notes", "entry": "text"}"#.into(),
            400,
            "invalid",
        ),
        // An entry the section's class does not take.
        (
            "POST",
            entries.clone(),
            vec![],
            r#"{"section": "notes", "entry": {"bogus": 1}}"#.into(),
            400,
            "invalid",
        ),
        // Values shaped like options stay values, and are refused as values.
        (
            "POST",
            entries.clone(),
            vec![],
            r#"{"section": "--help", "entry": {"text": "x"}}"#.into(),
            400,
            "invalid",
        ),
        (
            "POST",
            entries.clone(),
            vec![],
            r#"{"section": "notes --record=x", "entry": {"text": "x"}}"#.into(),
            400,
            "invalid",
        ),
        // Oversized.
        (
            "POST",
            entries.clone(),
            vec![],
            format!(
                r#"{{"section": "notes", "entry": {{"text": "{}"}}}}"#,
                "a".repeat(300 * 1024)
            ),
            413,
            "too_large",
        ),
        // Unknown ids, and ids that are not ids.
        (
            "POST",
            "/api/v1/requests/qnothere/approve".into(),
            vec![],
            "{}".into(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/grants/gnothere/revoke".into(),
            vec![],
            "{}".into(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/grants/--help/revoke".into(),
            vec![],
            "{}".into(),
            400,
            "invalid",
        ),
        (
            "POST",
            format!("/api/v1/records/{rid}/entries/e{}/correct", "a".repeat(26)),
            vec![],
            r#"{"entry": {"text": "y"}}"#.into(),
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/records/rnothere".into(),
            vec![],
            String::new(),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("/api/v1/records/{elsewhere}"),
            vec![],
            String::new(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/requests/receive".into(),
            vec![],
            r#"{"token": "HEARTH1RAAAA"}"#.into(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/requests/receive".into(),
            vec![],
            r#"{"token": "--json"}"#.into(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            vec![],
            r#"{"to": "12D3KooWxyz", "sections": "notes", "ability": "read", "expires": "--5d"}"#
                .into(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/consent".into(),
            vec![],
            r#"{"purpose": "research", "choice": "--json"}"#.into(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/qr".into(),
            vec![],
            format!(r#"{{"text": "{}"}}"#, "A".repeat(5000)),
            400,
            "invalid",
        ),
        ("GET", "/api/v1/nothing".into(), vec![], String::new(), 404, "not_found"),
        (
            "PUT",
            "/api/v1/grants".into(),
            vec![],
            "{}".into(),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, extra, body, want, code) in cases {
        let mut h = vec![("Authorization", auth.as_str())];
        h.extend(extra.iter().copied());
        let b = (!body.is_empty()).then_some(body.as_str());
        let (c, v) = web.raw(method, &path, &h, b);
        assert_eq!(
            c,
            want,
            "{method} {path} {}: {v}",
            &body[..body.len().min(80)]
        );
        is_error(&v, code);
    }
    // A reason shaped like an option is the reason, not an option.
    let added = web.post(
        &entries,
        json!({"section": "notes", "entry": {"text": "--record=rnothere"}}),
    );
    let eid = added["entry_id"].as_str().unwrap().to_string();
    let marked = web.post(
        &format!("/api/v1/records/{rid}/entries/{eid}/mark-error"),
        json!({"reason": "--help"}),
    );
    assert!(marked.is_object(), "{marked}");
    let show = web.get(&format!("/api/v1/records/{rid}"));
    let notes = show["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["class"] == "notes")
        .unwrap();
    let e = notes["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["body"]["text"] == "--record=rnothere")
        .unwrap();
    assert_eq!(e["body"]["text"], "--record=rnothere");
    assert_eq!(e["status"], "entered-in-error");
    assert_eq!(e["status_reason"], "--help");
    // Nothing else changed: the earlier entry is there as it was.
    let after = state(&pair.p);
    assert_eq!(after.1, before.1, "the ledger is unchanged");
    assert!(after.0.to_string().contains("Seen in clinic"));
    d.stop();
}

#[test]
fn the_openapi_document_lists_every_route_and_live_updates_arrive() {
    let pair = Pair::new("Dr Patel");
    let d = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let web = Web::login(&pair.p, &d);
    let (c, doc) = web.raw("GET", "/api/openapi.json", &[], None);
    assert_eq!(c, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, _) in routes("{rid}") {
        let templ = path
            .split('?')
            .next()
            .unwrap()
            .replace("eabc", "{eid}")
            .replace("qabc", "{id}")
            .replace("gabc", "{id}")
            .replace("12D3KooWabc", "{peer}");
        let ops = paths
            .get(&templ)
            .unwrap_or_else(|| panic!("{templ} missing from the OpenAPI document"));
        assert!(
            ops.get(method.to_ascii_lowercase()).is_some(),
            "{method} {templ} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    // Live updates: a change made on the command line reaches an open stream.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\r\n",
        web.port, web.token
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    ok(&hearth(
        &pair.p,
        &["record", "add", "notes", "--entry", r#"{"text": "x"}"#],
    ));
    let mut seen = String::new();
    while !seen.contains("event: changed") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended: {seen}");
        seen.push_str(&line);
    }
    d.stop();
}
