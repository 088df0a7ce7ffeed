//! End-to-end grant flows with the real binary and three homes: a patient, a professional and
//! an organisation.

use crate::common::world::{refused, str_of, world};
use crate::common::{delegate_cmd, grant, grant_cmd, hearth, json, scope_args};

#[test]
fn direct_grant_expiry_tamper_and_delegation() {
    let w = world();
    // A grant to the organisation with depth 1; the organisation delegates to the GP.
    let g = json(&grant_cmd(
        &w.patient,
        &w.org_peer,
        "notes,medications",
        "read",
        "30d",
        &["--depth", "1", "--json"],
    ));
    let token = str_of(&g["token"]);
    json(&hearth(&w.org, &["accept", &token, "--json"]));
    let d = json(&delegate_cmd(
        &w.org,
        &str_of(&g["id"]),
        &w.gp_peer,
        "notes",
        "read",
        "7d",
        &["--json"],
    ));
    let staff_token = str_of(&d["token"]);
    let v = json(&hearth(&w.gp, &["grant", "verify", &staff_token, "--json"]));
    assert_eq!(v["rights"]["chain"].as_array().unwrap().len(), 2);
    json(&hearth(&w.gp, &["accept", &staff_token, "--json"]));
    // Delegating wider than held is refused before anything is signed.
    refused(
        delegate_cmd(
            &w.org,
            &str_of(&g["id"]),
            &w.gp_peer,
            "notes,allergies",
            "read",
            "7d",
            &[],
        ),
        7,
        "scope exceeded",
    );
    refused(
        delegate_cmd(
            &w.org,
            &str_of(&g["id"]),
            &w.gp_peer,
            "notes",
            "append",
            "7d",
            &[],
        ),
        7,
        "scope exceeded",
    );
    // The GP (depth 0) cannot delegate further.
    let gid_staff = str_of(&d["id"]);
    refused(
        delegate_cmd(&w.gp, &gid_staff, &w.org_peer, "notes", "read", "1d", &[]),
        7,
        "depth",
    );

    // Expiry via --at, both sides of the ±60 s tolerance.
    let exp = str_of(
        &json(&hearth(
            &w.patient,
            &["grant", "show", &str_of(&g["id"]), "--json"],
        ))["expires"],
    );
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
        grant_cmd(&w.patient, &w.gp_peer, "notes", "admin", "1d", &[]),
        3,
        "read or append",
    );
    refused(
        grant_cmd(&w.patient, &w.gp_peer, "notes", "read", "10y", &[]),
        3,
        "five years",
    );
    refused(
        grant_cmd(&w.patient, "12D3KooWnotapeer", "notes", "read", "1d", &[]),
        3,
        "peer id",
    );
    refused(
        grant_cmd(&w.gp, &w.org_peer, "notes", "read", "1d", &[]),
        7,
        "only a patient",
    );
}

#[test]
fn card_grant_carries_keys_and_qr_forms() {
    let w = world();
    let card = str_of(&json(&hearth(&w.gp, &["id", "--card", "--json"]))["card"]);
    assert!(card.starts_with("HEARTH1I"));
    let svg = w.h.root.join("grant.svg");
    let g = json(&grant_cmd(
        &w.patient,
        &card,
        "notes:*",
        "append",
        "1d",
        &["--qr-svg", svg.to_str().unwrap(), "--json"],
    ));
    assert_eq!(g["keys_included"], true);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let text = String::from_utf8(
        grant_cmd(&w.patient, &w.gp_peer, "notes", "read", "1d", &["--qr"]).stdout,
    )
    .unwrap();
    assert!(
        text.contains('█') || text.contains('▀'),
        "a QR code in the terminal"
    );
    let acc = json(&hearth(&w.gp, &["accept", &str_of(&g["token"]), "--json"]));
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
    let out = grant_cmd(&w.patient, &bad, "notes", "read", "1d", &[]);
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
    let window = ["--window", "2020-01-01.."];
    let scope = scope_args(&w.gp_peer, "notes", "read", "1d");
    let with_window = |head: &[&'static str]| -> Vec<&str> {
        head.iter().copied().chain(scope).chain(window).collect()
    };
    for args in [
        with_window(&["grant"]),
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
        with_window(&["grant", "delegate", "gabcdef"]),
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
    let text =
        String::from_utf8(grant_cmd(&w.patient, &w.gp_peer, "notes", "read", "1y", &[]).stdout)
            .unwrap();
    assert!(text.contains(" UTC."), "the end in words: {text}");
    let r = w.request("notes", "2mo", "Review");
    ends_near(&r["expires"], 2);
    json(&hearth(
        &w.patient,
        &["requests", "add", &str_of(&r["token"]), "--json"],
    ));
    let a = json(&hearth(
        &w.patient,
        &[
            "requests",
            "approve",
            &str_of(&r["id"]),
            "--expires",
            "1mo",
            "--json",
        ],
    ));
    ends_near(&a["expires"], 1);
    let c = w.attest("1y");
    ends_near(&c["expires"], 12);
    refused(
        grant_cmd(&w.patient, &w.gp_peer, "notes", "read", "6y", &[]),
        3,
        "five years at most",
    );
}
