//! End-to-end grant flows with the real binary and three homes: a patient, a professional and
//! an organisation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;

use common::{grant, hearth, init, json};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

struct Homes {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Homes {
    fn new() -> Homes {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Homes { _tmp: tmp, root }
    }
    fn home(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

#[track_caller]
fn refused(out: Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err:?} should mention {needle:?}"
    );
}

struct World {
    h: Homes,
    patient: PathBuf,
    gp: PathBuf,
    org: PathBuf,
    record: String,
    gp_peer: String,
    org_peer: String,
}

fn world() -> World {
    let h = Homes::new();
    let (patient, gp, org) = (h.home("patient"), h.home("gp"), h.home("org"));
    init(&patient, "patient", "Edith");
    init(&gp, "professional", "Dr A. Shah");
    init(&org, "relay", "Riverside Practice");
    json(&hearth(
        &patient,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            r#"{"text": "seen"}"#,
            "--json",
        ],
    ));
    json(&hearth(
        &patient,
        &[
            "record",
            "add",
            "medications",
            "--entry",
            r#"{"name": "Metformin 500mg"}"#,
            "--json",
        ],
    ));
    let record = json(&hearth(&patient, &["id", "--json"]))["record_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gp_peer = json(&hearth(&gp, &["id", "--json"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let org_peer = json(&hearth(&org, &["id", "--json"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    World {
        h,
        patient,
        gp,
        org,
        record,
        gp_peer,
        org_peer,
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

#[test]
fn attest_request_approve_accept_verify() {
    let w = world();
    // The organisation attests the GP; the GP stores the credential; the patient trusts the org.
    let cred = json(&hearth(
        &w.org,
        &[
            "org",
            "attest",
            "--staff",
            &w.gp_peer,
            "--name",
            "Dr A. Shah",
            "--role",
            "GP",
            "--registration",
            "GMC 1234567",
            "--expires",
            "365d",
            "--json",
        ],
    ));
    json(&hearth(
        &w.gp,
        &["credential", "add", &s(&cred["token"]), "--json"],
    ));
    json(&hearth(
        &w.patient,
        &[
            "trust",
            "add-org",
            &w.org_peer,
            "--name",
            "Riverside Practice",
            "--json",
        ],
    ));

    // The GP asks; the patient receives the request and sees the verified identity.
    let req = json(&hearth(
        &w.gp,
        &[
            "request",
            "--to",
            &w.record,
            "--sections",
            "notes,medications",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "90d",
            "--reason",
            "Annual diabetes review",
            "--json",
        ],
    ));
    assert_eq!(req["credential"], true);
    let added = json(&hearth(
        &w.patient,
        &["requests", "add", &s(&req["token"]), "--json"],
    ));
    assert_eq!(added["identity"]["status"], "verified");
    let pending = json(&hearth(&w.patient, &["requests", "--json"]));
    let p = &pending["pending"][0];
    assert_eq!(p["identity"]["name"], "Dr A. Shah");
    assert_eq!(p["reason"], "Annual diabetes review");
    let rid = s(&p["id"]);

    // Approve, narrower: notes only, 30 days.
    let granted = json(&hearth(
        &w.patient,
        &[
            "requests",
            "approve",
            &rid,
            "--sections",
            "notes",
            "--expires",
            "30d",
            "--json",
        ],
    ));
    let token = s(&granted["token"]);
    assert!(token.starts_with("HEARTH1G"));
    assert!(
        json(&hearth(&w.patient, &["requests", "--json"]))["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The GP accepts (keys included, since the request carried the GP's card) and verifies.
    let acc = json(&hearth(&w.gp, &["accept", &token, "--json"]));
    assert!(
        acc["keys"].as_u64().unwrap() >= 2,
        "auth key and notes key: {acc}"
    );
    let v = json(&hearth(&w.gp, &["grant", "verify", &token, "--json"]));
    let scopes = v["rights"]["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0]["section"], "notes");
    // Accepting twice is a replay: refused, nothing changes.
    refused(hearth(&w.gp, &["accept", &token]), 7, "already accepted");
    // Approving twice is refused too.
    refused(
        hearth(&w.patient, &["requests", "approve", &rid]),
        7,
        "already answered",
    );

    // The ledger tells the story in order.
    let ledger = json(&hearth(&w.patient, &["grant", "list", "--json"]));
    let kinds: Vec<String> = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["event"]))
        .collect();
    assert_eq!(kinds, vec!["trusted", "request", "granted", "approved"]);

    // FHIR Consent and SMART forms.
    let gid = s(&granted["id"]);
    let fhir: Value =
        serde_json::from_slice(&hearth(&w.patient, &["grant", "show", &gid, "--fhir"]).stdout)
            .unwrap();
    assert_eq!(fhir["resourceType"], "Consent");
    assert_eq!(fhir["status"], "active");
    let smart = json(&hearth(
        &w.patient,
        &["grant", "show", &gid, "--smart", "--json"],
    ));
    assert!(smart["smart"].as_array().unwrap().iter().any(|x| {
        x.as_str()
            .unwrap()
            .starts_with("patient/DocumentReference.rs")
    }));

    // Revocation: the patient's node refuses the grant from now on.
    json(&hearth(&w.patient, &["grant", "revoke", &gid, "--json"]));
    refused(
        hearth(&w.patient, &["grant", "verify", &token]),
        7,
        "revoked",
    );
    let fhir: Value =
        serde_json::from_slice(&hearth(&w.patient, &["grant", "show", &gid, "--fhir"]).stdout)
            .unwrap();
    assert_eq!(fhir["status"], "inactive");
}

#[test]
fn unverified_requester_and_deny() {
    let w = world();
    let req = json(&hearth(
        &w.gp,
        &[
            "request",
            "--to",
            &w.record,
            "--sections",
            "notes:mental-health",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "7d",
            "--reason",
            "Curious",
            "--json",
        ],
    ));
    assert_eq!(req["credential"], false);
    let added = json(&hearth(
        &w.patient,
        &["requests", "add", &s(&req["token"]), "--json"],
    ));
    assert_eq!(added["identity"]["status"], "unverified");
    let text = String::from_utf8(hearth(&w.patient, &["requests"]).stdout).unwrap();
    assert!(text.contains("UNVERIFIED"), "{text}");
    let rid = s(&added["id"]);
    json(&hearth(
        &w.patient,
        &["requests", "deny", &rid, "--reason", "not needed", "--json"],
    ));
    refused(
        hearth(&w.patient, &["requests", "approve", &rid]),
        7,
        "already answered",
    );
    // Replaying the request is refused.
    refused(
        hearth(&w.patient, &["requests", "add", &s(&req["token"])]),
        7,
        "already received",
    );
    // Widening on approval is impossible: approve a fresh request with more than asked.
    let req2 = json(&hearth(
        &w.gp,
        &[
            "request",
            "--to",
            &w.record,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "7d",
            "--reason",
            "Follow-up",
            "--json",
        ],
    ));
    let rid2 = s(&json(&hearth(
        &w.patient,
        &["requests", "add", &s(&req2["token"]), "--json"],
    ))["id"]);
    refused(
        hearth(
            &w.patient,
            &[
                "requests",
                "approve",
                &rid2,
                "--sections",
                "notes,medications",
            ],
        ),
        3,
        "not asked for",
    );
    refused(
        hearth(
            &w.patient,
            &["requests", "approve", &rid2, "--expires", "30d"],
        ),
        3,
        "shorten",
    );
    // A request for another patient's record is refused.
    let other = w.h.home("other");
    json(&hearth(
        &other,
        &["init", "--role", "patient", "--name", "Other", "--json"],
    ));
    refused(
        hearth(&other, &["requests", "add", &s(&req2["token"])]),
        7,
        "another record",
    );
}

#[test]
fn direct_grant_expiry_tamper_and_delegation() {
    let w = world();
    // A grant to the organisation with depth 1; the organisation delegates to the GP.
    let g = json(&hearth(
        &w.patient,
        &[
            "grant",
            "--to",
            &w.org_peer,
            "--sections",
            "notes,medications",
            "--ability",
            "read",
            "--expires",
            "30d",
            "--depth",
            "1",
            "--json",
        ],
    ));
    let token = s(&g["token"]);
    json(&hearth(&w.org, &["accept", &token, "--json"]));
    let d = json(&hearth(
        &w.org,
        &[
            "grant",
            "delegate",
            &s(&g["id"]),
            "--to",
            &w.gp_peer,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--expires",
            "7d",
            "--json",
        ],
    ));
    let staff_token = s(&d["token"]);
    let v = json(&hearth(&w.gp, &["grant", "verify", &staff_token, "--json"]));
    assert_eq!(v["rights"]["chain"].as_array().unwrap().len(), 2);
    json(&hearth(&w.gp, &["accept", &staff_token, "--json"]));
    // Delegating wider than held is refused before anything is signed.
    refused(
        hearth(
            &w.org,
            &[
                "grant",
                "delegate",
                &s(&g["id"]),
                "--to",
                &w.gp_peer,
                "--sections",
                "notes,allergies",
                "--ability",
                "read",
                "--expires",
                "7d",
            ],
        ),
        7,
        "scope exceeded",
    );
    refused(
        hearth(
            &w.org,
            &[
                "grant",
                "delegate",
                &s(&g["id"]),
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "append",
                "--expires",
                "7d",
            ],
        ),
        7,
        "scope exceeded",
    );
    // The GP (depth 0) cannot delegate further.
    let gid_staff = s(&d["id"]);
    refused(
        hearth(
            &w.gp,
            &[
                "grant",
                "delegate",
                &gid_staff,
                "--to",
                &w.org_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "1d",
            ],
        ),
        7,
        "depth",
    );

    // Expiry via --at, both sides of the ±60 s tolerance.
    let exp = s(&json(&hearth(
        &w.patient,
        &["grant", "show", &s(&g["id"]), "--json"],
    ))["expires"]);
    let exp_ms = exp.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let fmt = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
    json(&hearth(
        &w.gp,
        &[
            "grant",
            "verify",
            &token,
            "--at",
            &fmt(exp_ms + 30_000),
            "--json",
        ],
    ));
    refused(
        hearth(
            &w.gp,
            &["grant", "verify", &token, "--at", &fmt(exp_ms + 61_000)],
        ),
        7,
        "expired",
    );
    refused(
        hearth(
            &w.gp,
            &["grant", "verify", &token, "--at", "2100-01-01T00:00:00Z"],
        ),
        7,
        "expired",
    );
    refused(
        hearth(
            &w.gp,
            &["grant", "verify", &token, "--at", "2000-01-01T00:00:00Z"],
        ),
        7,
        "not valid until",
    );

    // Tampered text forms: every 37th character changed; each refused, nothing stored.
    for i in (10..token.len()).step_by(37) {
        let c = token.as_bytes()[i];
        let r = if c == b'A' { "B" } else { "A" };
        let bad = format!("{}{}{}", &token[..i], r, &token[i + 1..]);
        let out = hearth(&w.gp, &["grant", "verify", &bad]);
        assert!(!out.status.success(), "tampered at {i} accepted");
        let out = hearth(&w.gp, &["accept", &bad]);
        assert!(!out.status.success(), "tampered token accepted at {i}");
    }
    refused(
        hearth(&w.gp, &["grant", "verify", "HEARTH1Gnotatoken"]),
        3,
        "malformed",
    );
    refused(
        hearth(&w.gp, &["grant", "verify", &token[..token.len() - 10]]),
        3,
        "malformed",
    );
    // A grant for someone else cannot be accepted.
    let stranger = w.h.home("stranger");
    json(&hearth(
        &stranger,
        &["init", "--role", "professional", "--name", "S", "--json"],
    ));
    refused(hearth(&stranger, &["accept", &token]), 7, "wrong audience");
    // Bad grant arguments.
    refused(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "admin",
                "--expires",
                "1d",
            ],
        ),
        3,
        "read or append",
    );
    refused(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "10y",
            ],
        ),
        3,
        "five years",
    );
    refused(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                "12D3KooWnotapeer",
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "1d",
            ],
        ),
        3,
        "peer id",
    );
    refused(
        hearth(
            &w.gp,
            &[
                "grant",
                "--to",
                &w.org_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "1d",
            ],
        ),
        7,
        "only a patient",
    );
}

#[test]
fn card_grant_carries_keys_and_qr_forms() {
    let w = world();
    let card = s(&json(&hearth(&w.gp, &["id", "--card", "--json"]))["card"]);
    assert!(card.starts_with("HEARTH1I"));
    let svg = w.h.root.join("grant.svg");
    let g = json(&hearth(
        &w.patient,
        &[
            "grant",
            "--to",
            &card,
            "--sections",
            "notes:*",
            "--ability",
            "append",
            "--expires",
            "1d",
            "--qr-svg",
            svg.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(g["keys_included"], true);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let text = String::from_utf8(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "1d",
                "--qr",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains('█') || text.contains('▀'),
        "a QR code in the terminal"
    );
    let acc = json(&hearth(&w.gp, &["accept", &s(&g["token"]), "--json"]));
    assert!(acc["keys"].as_u64().unwrap() >= 2);
    let listed = json(&hearth(&w.gp, &["grant", "list", "--json"]));
    assert_eq!(listed["events"].as_array().unwrap().len(), 1);
    // A tampered card is refused.
    let r = if card.as_bytes()[20] == b'A' {
        "B"
    } else {
        "A"
    };
    let bad = format!("{}{r}{}", &card[..20], &card[21..]);
    let out = hearth(
        &w.patient,
        &[
            "grant",
            "--to",
            &bad,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--expires",
            "1d",
        ],
    );
    assert!(!out.status.success());
}

/// The time now, as the binary reads it.
fn now() -> hearth_core::time::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    hearth_core::time::Timestamp::from_millis(i64::try_from(ms).unwrap())
}

/// Issue #11 (7): `--window` restricted nothing (sync moves whole section logs). A grant that
/// carries a record-time window, signed by the record's own root key, is refused by
/// `grant verify` and by `accept` with the typed reason, and nothing is stored.
#[test]
fn a_grant_carrying_a_window_is_refused_by_verify_and_accept() {
    use hearth_core::crypto::{self, Domain};
    use hearth_core::grant::{self, Ability, Grant, GrantSpec, Window, token::Envelope};
    use hearth_core::keys::{Identity, Role};
    let w = world();
    let gp: hearth_core::ids::PeerKey = w.gp_peer.parse().unwrap();
    let mut rng = hearth_core::test_utils::TestRng::new(11);
    let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
    let t = now();
    let spec = GrantSpec::new(
        gp,
        "notes".parse().unwrap(),
        Ability::Read,
        t,
        t.saturating_add_millis(30 * 86_400_000),
    );
    let plain = Grant::issue_root(&patient, spec, &[], &mut rng).unwrap();
    // The same grant, with a window, signed by the record's root key.
    let mut body = plain.body().clone();
    body.window = Some(Window {
        from: Some(t.saturating_add_millis(-365 * 86_400_000)),
        to: None,
    });
    let bytes = serde_ipld_dagcbor::to_vec(&body).unwrap();
    let sig = crypto::sign(patient.root_key().unwrap(), Domain::Grant, &[&bytes]);
    let windowed = Grant::from_envelope(Envelope {
        body: bytes,
        sig: sig.to_vec(),
    })
    .unwrap();
    let token = grant::chain_to_token(&[windowed]);
    refused(
        hearth(&w.gp, &["grant", "verify", &token]),
        7,
        "record-time windows are not supported",
    );
    refused(
        hearth(&w.gp, &["accept", &token]),
        7,
        "record-time windows are not supported",
    );
    let listed = json(&hearth(&w.gp, &["grant", "list", "--json"]));
    assert_eq!(listed["events"], serde_json::json!([]), "{listed}");
    // The same grant without the window verifies.
    let ok = json(&hearth(
        &w.gp,
        &[
            "grant",
            "verify",
            &grant::chain_to_token(&[plain]),
            "--json",
        ],
    ));
    assert_eq!(ok["valid"], true);
}

/// Issue #11 (7): `--window` is not an option of any command any more.
#[test]
fn window_is_an_unknown_option() {
    let w = world();
    for args in [
        vec![
            "grant",
            "--to",
            &w.gp_peer,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--expires",
            "1d",
            "--window",
            "2020-01-01..",
        ],
        vec![
            "request",
            "--to",
            &w.record,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "1d",
            "--reason",
            "r",
            "--window",
            "2020-01-01..",
        ],
        vec![
            "grant",
            "delegate",
            "gabcdef",
            "--to",
            &w.gp_peer,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--expires",
            "1d",
            "--window",
            "2020-01-01..",
        ],
        vec!["requests", "approve", "qabcdef", "--window", "2020-01-01.."],
    ] {
        let out = hearth(&w.patient, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--window"), "{err}");
    }
    let help = String::from_utf8(hearth(&w.patient, &["grant", "--help"]).stdout).unwrap();
    assert!(!help.contains("window"), "{help}");
}

/// Issue #11: `--expires` takes calendar months (`mo`) and years (`y`), and every command
/// taking it says when the result ends: in words, and in `--json` as an RFC 3339 `expires`.
#[test]
fn expires_takes_months_and_years_and_echoes_the_end() {
    let w = world();
    let ends_near = |v: &serde_json::Value, months: i64| {
        let got = hearth_core::time::Timestamp::parse_rfc3339(v.as_str().unwrap())
            .unwrap_or_else(|| panic!("expires is RFC 3339: {v}"));
        let start = jiff::Timestamp::from_millisecond(now().as_millis())
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        let want = start
            .checked_add(jiff::Span::new().months(months))
            .unwrap()
            .timestamp()
            .as_millisecond();
        assert!(
            (got.as_millis() - want).abs() < 120_000,
            "{v}: not {months} calendar months from now"
        );
    };
    let g = grant(&w.patient, &w.gp_peer, "notes", "read", "6mo");
    ends_near(&g["expires"], 6);
    let text = String::from_utf8(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "1y",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(text.contains(" UTC."), "the end in words: {text}");
    let r = json(&hearth(
        &w.gp,
        &[
            "request",
            "--to",
            &w.record,
            "--sections",
            "notes",
            "--ability",
            "read",
            "--purpose",
            "direct-care",
            "--expires",
            "2mo",
            "--reason",
            "Review",
            "--json",
        ],
    ));
    ends_near(&r["expires"], 2);
    json(&hearth(
        &w.patient,
        &["requests", "add", &s(&r["token"]), "--json"],
    ));
    let a = json(&hearth(
        &w.patient,
        &[
            "requests",
            "approve",
            &s(&r["id"]),
            "--expires",
            "1mo",
            "--json",
        ],
    ));
    ends_near(&a["expires"], 1);
    let c = json(&hearth(
        &w.org,
        &[
            "org",
            "attest",
            "--staff",
            &w.gp_peer,
            "--name",
            "Dr A. Shah",
            "--role",
            "GP",
            "--registration",
            "GMC 1234567",
            "--expires",
            "1y",
            "--json",
        ],
    ));
    ends_near(&c["expires"], 12);
    refused(
        hearth(
            &w.patient,
            &[
                "grant",
                "--to",
                &w.gp_peer,
                "--sections",
                "notes",
                "--ability",
                "read",
                "--expires",
                "6y",
            ],
        ),
        3,
        "five years at most",
    );
}
