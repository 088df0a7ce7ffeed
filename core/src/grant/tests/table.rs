//! The table of named valid and invalid tokens: what the verifier accepts and refuses, and
//! why.

use super::*;

fn flip_token_char(t: &str, at: usize) -> String {
    let c = t.as_bytes()[at];
    let r = if c == b'A' { 'B' } else { 'A' };
    format!("{}{}{}", &t[..at], r, &t[at + 1..])
}

#[derive(Debug)]
enum Expect {
    Ok,
    Malformed,
    Invalid,
    BadSignature,
    UnknownIssuer,
    BrokenChain,
    Scope,
    Depth,
    Expired,
    NotYet,
    Revoked,
    Audience,
    Record,
    Window,
}

fn matches(r: &Result<Rights, Refusal>, e: &Expect) -> bool {
    matches!(
        (r, e),
        (Ok(_), Expect::Ok)
            | (Err(Refusal::Malformed(_)), Expect::Malformed)
            | (Err(Refusal::Invalid(_)), Expect::Invalid)
            | (Err(Refusal::BadSignature { .. }), Expect::BadSignature)
            | (Err(Refusal::UnknownIssuer), Expect::UnknownIssuer)
            | (Err(Refusal::BrokenChain { .. }), Expect::BrokenChain)
            | (Err(Refusal::ScopeExceeded { .. }), Expect::Scope)
            | (Err(Refusal::DepthExceeded { .. }), Expect::Depth)
            | (Err(Refusal::Expired { .. }), Expect::Expired)
            | (Err(Refusal::NotYetValid { .. }), Expect::NotYet)
            | (Err(Refusal::Revoked { .. }), Expect::Revoked)
            | (Err(Refusal::WrongAudience), Expect::Audience)
            | (Err(Refusal::WrongRecord), Expect::Record)
            | (Err(Refusal::WindowNotSupported { .. }), Expect::Window)
    )
}

/// Parses a token and verifies it: what a node does with text it was given.
fn check_token(
    token: &str,
    access: &Access,
    now: Timestamp,
    revoked: &dyn Fn(&GrantId) -> bool,
) -> Result<Rights, Refusal> {
    let chain = chain_from_token(token)?;
    verify_chain(&chain, access, now, revoked)
}

#[test]
#[allow(clippy::vec_init_then_push)] // one named case per push reads best
fn named_token_table() {
    let mut w = world(42);
    let gp = w.gp.peer();
    let staff = w.staff.peer();
    let direct = to_gp(&mut w, "notes,medications");
    let direct_t = chain_to_token(std::slice::from_ref(&direct));
    let chain = org_chain(&mut w);
    let chain_t = chain_to_token(&chain);
    let org_key = w.org.device_key();
    // The GP's token, read and verified for notes now.
    let gp_token = |t: &str| check_token(t, &notes_read(gp), TEST_NOW, &never);
    // The direct grant alone, asked for `access` at `now`.
    let direct_at = |access: &Access, now: Timestamp| {
        verify_chain(std::slice::from_ref(&direct), access, now, &never)
    };
    // The org's root grant with `child` as its delegation, asked for notes by the staff.
    let under_org = |child: Grant| {
        verify_chain(
            &[chain[0].clone(), child],
            &notes_read(staff),
            TEST_NOW,
            &never,
        )
    };
    let mut cases: Vec<(&str, Result<Rights, Refusal>, Expect)> = Vec::new();

    // Valid ones.
    cases.push((
        "direct grant, granted section",
        gp_token(&direct_t),
        Expect::Ok,
    ));
    cases.push((
        "org delegation to staff",
        check_token(&chain_t, &notes_read(staff), TEST_NOW, &never),
        Expect::Ok,
    ));
    cases.push((
        "validity only, no section",
        check_token(&direct_t, &Access::any(gp), TEST_NOW, &never),
        Expect::Ok,
    ));
    cases.push((
        "59 s before start (clock tolerance)",
        direct_at(&notes_read(gp), TEST_NOW.saturating_add_millis(-59_000)),
        Expect::Ok,
    ));
    cases.push((
        "59 s after expiry (clock tolerance)",
        direct_at(
            &notes_read(gp),
            TEST_NOW.saturating_add_millis(30 * DAY + 59_000),
        ),
        Expect::Ok,
    ));
    cases.push((
        "token typed in lower case",
        gp_token(&direct_t.to_lowercase()),
        Expect::Ok,
    ));

    // Invalid ones.
    cases.push(("empty string", gp_token(""), Expect::Malformed));
    cases.push(("not a token", gp_token("hello"), Expect::Malformed));
    cases.push((
        "truncated",
        gp_token(&direct_t[..direct_t.len() / 2]),
        Expect::Malformed,
    ));
    cases.push((
        "one character altered",
        gp_token(&flip_token_char(&direct_t, direct_t.len() / 2)),
        Expect::Malformed,
    ));
    cases.push((
        "request token where a grant is expected",
        gp_token(&direct_t.replacen("HEARTH1G", "HEARTH1R", 1)),
        Expect::Malformed,
    ));
    let huge = format!("HEARTH1G{}", "A".repeat(token::MAX_TOKEN_LEN));
    cases.push(("oversized", gp_token(&huge), Expect::Malformed));
    cases.push((
        "expired",
        direct_at(&notes_read(gp), TEST_NOW.saturating_add_millis(31 * DAY)),
        Expect::Expired,
    ));
    cases.push((
        "not yet valid",
        direct_at(&notes_read(gp), TEST_NOW.saturating_add_millis(-61_000)),
        Expect::NotYet,
    ));
    for (name, section, ability) in [
        ("ungranted label", "notes:mental-health", Ability::Read),
        ("ungranted class", "allergies", Ability::Read),
        ("ability above the grant", "notes", Ability::Append),
    ] {
        let access = Access::section(gp, section.parse().unwrap(), ability);
        cases.push((name, direct_at(&access, TEST_NOW), Expect::Scope));
    }
    cases.push((
        "presented by someone else",
        direct_at(&notes_read(staff), TEST_NOW),
        Expect::Audience,
    ));
    let id = direct.id();
    cases.push((
        "revoked",
        verify_chain(
            std::slice::from_ref(&direct),
            &notes_read(gp),
            TEST_NOW,
            &|g| *g == id,
        ),
        Expect::Revoked,
    ));
    let root_id = chain[0].id();
    cases.push((
        "parent revoked",
        verify_chain(&chain, &notes_read(staff), TEST_NOW, &|g| *g == root_id),
        Expect::Revoked,
    ));
    // Re-signed by the wrong key: the body names the root, the signature is the GP's.
    let forged = {
        let mut g = direct.clone();
        g.envelope.sig =
            crypto::sign(w.gp.device_key(), Domain::Grant, &[&g.envelope.body]).to_vec();
        g
    };
    cases.push((
        "re-signed by the wrong key",
        verify_chain(&[forged], &notes_read(gp), TEST_NOW, &never),
        Expect::BadSignature,
    ));
    // A root grant signed by someone who is not the record's owner.
    let self_made = edited(&direct, w.gp.device_key(), |b| {
        b.issuer = gp;
        b.audience = staff;
    });
    cases.push((
        "issued by a stranger",
        verify_chain(&[self_made], &notes_read(staff), TEST_NOW, &never),
        Expect::UnknownIssuer,
    ));
    // Another patient's root key signing a grant for this record.
    let other_root = w.other_patient.root_key().unwrap();
    let other = edited(&direct, other_root, |b| {
        b.issuer = PeerKey(other_root.verifying_key().to_bytes());
    });
    cases.push((
        "signed by another patient's root",
        verify_chain(&[other], &notes_read(gp), TEST_NOW, &never),
        Expect::UnknownIssuer,
    ));
    // Delegation from a depth-0 grant.
    let deleg_from_direct = edited(&chain[1], w.gp.device_key(), |b| {
        b.issuer = gp;
        b.parent = Some(direct.id());
    });
    cases.push((
        "delegation from a depth-0 grant",
        verify_chain(
            &[direct.clone(), deleg_from_direct],
            &notes_read(staff),
            TEST_NOW,
            &never,
        ),
        Expect::Depth,
    ));
    // Over-delegated: child wider than parent.
    let wider = edited(&chain[1], org_key, |b| {
        b.scopes = scopes(&"notes,allergies".parse().unwrap(), Ability::Read);
    });
    cases.push((
        "delegation wider than its parent",
        under_org(wider),
        Expect::Scope,
    ));
    let stronger = edited(&chain[1], org_key, |b| {
        b.scopes = scopes(&"notes".parse().unwrap(), Ability::Append);
        b.depth = 0;
    });
    // Append was granted to the org, so append is fine here; make it exceed instead via label:
    let all_labels = edited(&chain[1], org_key, |b| {
        b.scopes = scopes(&"notes:*".parse().unwrap(), Ability::Read);
    });
    cases.push(("delegation within ability", under_org(stronger), Expect::Ok));
    cases.push((
        "delegation to every label of a class",
        under_org(all_labels),
        Expect::Scope,
    ));
    let longer = edited(&chain[1], org_key, |b| {
        b.expires = TEST_NOW.saturating_add_millis(60 * DAY);
    });
    cases.push((
        "delegation outliving its parent",
        under_org(longer),
        Expect::Scope,
    ));
    let same_depth = edited(&chain[1], org_key, |b| b.depth = 1);
    cases.push((
        "delegation keeping its parent's depth",
        under_org(same_depth),
        Expect::Depth,
    ));
    let wrong_parent = edited(&chain[1], org_key, |b| b.parent = Some(direct.id()));
    cases.push((
        "delegation naming another parent",
        under_org(wrong_parent),
        Expect::BrokenChain,
    ));
    let wrong_issuer = edited(&chain[1], w.gp.device_key(), |b| b.issuer = gp);
    cases.push((
        "delegation by someone other than the parent's audience",
        under_org(wrong_issuer),
        Expect::BrokenChain,
    ));
    let other_record = edited(&chain[1], org_key, |b| {
        b.record = w.other_patient.record_id().unwrap();
    });
    cases.push((
        "delegation for another record",
        under_org(other_record),
        Expect::Record,
    ));
    let other_purpose = edited(&chain[1], org_key, |b| b.purpose = Purpose::Research);
    cases.push((
        "delegation changing the purpose",
        under_org(other_purpose),
        Expect::Scope,
    ));
    let mut reversed = chain.clone();
    reversed.reverse();
    cases.push((
        "chain in the wrong order",
        verify_chain(&reversed, &notes_read(staff), TEST_NOW, &never),
        Expect::UnknownIssuer,
    ));
    cases.push((
        "empty chain",
        verify_chain(&[], &notes_read(staff), TEST_NOW, &never),
        Expect::Invalid,
    ));
    let admin = {
        let mut b = direct.body().clone();
        b.scopes = scopes(&"notes".parse().unwrap(), Ability::Admin);
        let bytes = serde_ipld_dagcbor::to_vec(&b).unwrap();
        let sig = crypto::sign(w.patient.root_key().unwrap(), Domain::Grant, &[&bytes]);
        let env = Envelope {
            body: bytes,
            sig: sig.to_vec(),
        };
        token::encode_envelopes(&[env])
    };
    cases.push((
        "admin granted",
        chain_from_bytes(&admin).and_then(|c| verify_chain(&c, &notes_read(gp), TEST_NOW, &never)),
        Expect::Invalid,
    ));

    // Record-time windows are not enforced, so a grant carrying one never verifies: a root
    // grant the patient's key signed with one, or a delegation adding one to a plain parent.
    let window = Some(Window {
        from: Some(TEST_NOW.saturating_add_millis(-365 * DAY)),
        to: None,
    });
    let windowed_root = edited(&direct, w.patient.root_key().unwrap(), |b| {
        b.window = window;
    });
    cases.push((
        "root grant carrying a record-time window",
        chain_from_token(&chain_to_token(std::slice::from_ref(&windowed_root)))
            .and_then(|c| verify_chain(&c, &notes_read(gp), TEST_NOW, &never)),
        Expect::Window,
    ));
    let windowed_child = edited(&chain[1], org_key, |b| b.window = window);
    cases.push((
        "delegation adding a record-time window",
        under_org(windowed_child),
        Expect::Window,
    ));

    let mut failures = Vec::new();
    let n = cases.len();
    for (name, got, want) in cases {
        if !matches(&got, &want) {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n >= 30);
}

/// Issue #11 (7): `--window` restricted nothing (sync moves whole section logs). A token
/// carrying a window still decodes, and is refused with the typed reason, whatever else it says.
#[test]
fn a_grant_carrying_a_window_is_refused_as_not_supported() {
    let mut w = world(7);
    let gp = w.gp.peer();
    let g = to_gp(&mut w, "notes");
    assert_eq!(g.body().window, None, "issuing never writes a window");
    let windowed = edited(&g, w.patient.root_key().unwrap(), |b| {
        b.window = Some(Window {
            from: None,
            to: Some(TEST_NOW),
        })
    });
    let chain = chain_from_token(&chain_to_token(&[windowed])).unwrap();
    let e = verify_chain(&chain, &Access::any(gp), TEST_NOW, &never).unwrap_err();
    assert_eq!(e, Refusal::WindowNotSupported { link: 0 });
    assert!(
        e.to_string()
            .starts_with("record-time windows are not supported")
    );
}
