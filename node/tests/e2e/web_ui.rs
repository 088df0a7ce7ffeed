//! The web app in a real browser (headless Chromium, Debian's `chromium`, driven over the
//! DevTools protocol) against two real daemons on loopback: a professional asks for access
//! in their browser; the patient adds the request in hers, narrows it and approves; the
//! professional's page shows the granted section as it arrives, without a reload, and never
//! the section left out; the patient revokes (after the honest warning); her audit screen
//! shows the access. Every page runs under the strict Content-Security-Policy with no error.
//!
//! Screenshots of the main screens are written to `$HEARTH_SCREENSHOTS` when it is set
//! (`scripts/screenshots.sh` sets it to `docs/screenshots`), else to a temporary folder.
//! Without Chromium the test is skipped with a note, except under CI (`.ci/run` installs it).

use crate::common::browser::Browser;
use crate::common::web::Web;
use crate::common::{Daemon, Pair, hearth, json, ok};
use std::path::{Path, PathBuf};

/// Where screenshots go.
fn shots() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("HEARTH_SCREENSHOTS") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).unwrap();
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// Opens the login address `hearth ui` printed and waits for the first screen.
fn sign_in(b: &mut Browser, home: &Path, d: &Daemon, first: &str) {
    let web = Web::address(home, d);
    b.goto(&web.url);
    b.wait_for(
        &format!("the {first} screen after login"),
        &format!("document.querySelector('main[data-screen={first}]') !== null"),
        30,
    );
    // The code is gone from the address bar at once.
    let href = b.eval("location.href");
    assert!(!href.as_str().unwrap().contains("login="), "{href}");
}

/// Goes to a screen by its link in the navigation, waits for it, and checks what can be
/// checked of its accessibility without a person: no screen failed to load, every form field
/// has a label, every button and link has words, every image a text alternative, one `h1`.
fn open(b: &mut Browser, nav: &str, screen: &str) {
    b.click(&format!("#nav a[data-nav={nav}]"));
    wait_screen(b, screen);
    let problems = b.eval(
        r#"(() => {
            const out = [];
            const m = document.querySelector('main');
            if (m.dataset.error) out.push('the screen failed to load: ' + document.querySelector('#status-message').innerText);
            for (const f of m.querySelectorAll('input:not([type=hidden]), select, textarea'))
                if (!(f.labels && f.labels.length) && !f.getAttribute('aria-label') && !f.getAttribute('aria-labelledby'))
                    out.push('unlabelled field ' + (f.id || f.outerHTML.slice(0, 60)));
            for (const x of document.querySelectorAll('button, a[href]'))
                if (!(x.innerText || '').trim() && !x.getAttribute('aria-label')) out.push('a control without words: ' + x.outerHTML.slice(0, 60));
            for (const i of document.querySelectorAll('img')) if (!i.getAttribute('alt')) out.push('an image without alt');
            if (m.querySelectorAll('h1').length !== 1) out.push('h1 count ' + m.querySelectorAll('h1').length);
            return out;
        })()"#,
    );
    assert_eq!(problems, serde_json::json!([]), "{screen}: {problems}");
}

fn wait_screen(b: &mut Browser, screen: &str) {
    b.wait_for(
        &format!("the {screen} screen"),
        &format!(
            "(() => {{ const m = document.querySelector('main'); return m.dataset.screen === '{screen}' && !m.dataset.loading; }})()"
        ),
        30,
    );
}

#[test]
fn a_patient_approves_a_narrowed_request_the_professional_sees_it_live_then_she_revokes() {
    let Some(mut pb) = Browser::try_launch(1100, 900) else {
        return;
    };
    let mut gb = Browser::launch(1100, 900);
    let (dir, _keep) = shots();
    let pair = Pair::new("Dr Asha Patel");
    let rid = pair.rid.clone();
    let add = |section: &str, entry: &str| {
        ok(&hearth(
            &pair.p,
            &["record", "add", section, "--entry", entry],
        ));
    };
    add(
        "notes",
        r#"{"text": "Knee pain after the fall; physio booked"}"#,
    );
    add(
        "medications",
        r#"{"name": "Amoxicillin", "dose": "500 mg", "frequency": "three times a day"}"#,
    );
    add(
        "allergies",
        r#"{"substance": "Penicillin", "reaction": "rash"}"#,
    );
    let dp = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let dg = Daemon::start(&pair.g, Some("/ip4/127.0.0.1/tcp/0"));

    // Both sign in with the one-time address `hearth ui` prints.
    sign_in(&mut pb, &pair.p, &dp, "record");
    assert!(pb.text("main").contains("Knee pain"));
    assert!(pb.text("#who").contains("Pat"));
    pb.screenshot(&dir.join("patient-record.png"));
    sign_in(&mut gb, &pair.g, &dg, "patients");
    assert!(gb.text("#who").contains("Dr Asha Patel"));

    // The professional asks for notes and medicines.
    open(&mut gb, "ask", "ask");
    gb.type_into("#ask-record", &rid);
    gb.click("#ask-sec-notes");
    gb.click("#ask-sec-medications");
    gb.type_into("#ask-reason", "Follow-up of the knee injury");
    gb.click("[data-action=send-request]");
    gb.wait_for(
        "the request's text",
        "document.querySelector('#request-token') !== null",
        30,
    );
    let request = gb.text("#request-token");
    assert!(request.starts_with("HEARTH1R"), "{request}");
    gb.screenshot(&dir.join("professional-ask.png"));

    // The patient adds it, sees exactly what is asked and by whom, narrows it to notes.
    open(&mut pb, "requests", "requests");
    pb.type_into("#receive-token", &request);
    pb.click("[data-action=receive]");
    pb.wait_for(
        "the pending request",
        "document.querySelector('[data-request]') !== null",
        30,
    );
    let card = pb.text("[data-request]");
    assert!(
        card.contains("“Dr Asha Patel”"),
        "the name is shown as a claim: {card}"
    );
    assert!(
        card.contains("NOT verified") || card.contains("not verified"),
        "{card}"
    );
    assert!(card.contains("Follow-up of the knee injury"), "{card}");
    assert_eq!(
        pb.count("[data-request] input[type=checkbox][data-section]"),
        2
    );
    pb.click("[data-request] input[type=checkbox][data-section=medications]");
    pb.screenshot(&dir.join("patient-request.png"));
    pb.click("[data-request] button[data-action=approve]");
    pb.wait_for(
        "the grant to hand over",
        "document.querySelector('#grant-token') !== null",
        30,
    );
    let grant = pb.text("#grant-token");
    assert!(grant.starts_with("HEARTH1G"), "{grant}");
    pb.click("#grant-result [data-action=qr]");
    pb.wait_for(
        "the grant's QR code",
        "(() => { const i = document.querySelector('#grant-result img.qr'); return i && i.complete && i.naturalWidth > 0; })()",
        30,
    );

    // The professional adds the grant, opens the patient, and sees notes arrive live.
    gb.eval("window.__sameDocument = true");
    open(&mut gb, "patients", "patients");
    gb.type_into("#accept-token", &grant);
    gb.click("[data-action=accept]");
    gb.wait_for(
        "the patient in the list",
        &format!("document.querySelector('[data-patient=\"{rid}\"]') !== null"),
        30,
    );
    gb.click(&format!("[data-patient=\"{rid}\"] a"));
    wait_screen(&mut gb, "patient");
    gb.wait_for(
        "the granted notes, live",
        "(() => { const s = document.querySelector('[data-section-view=notes]'); return s && s.innerText.includes('Knee pain'); })()",
        90,
    );
    assert_eq!(
        gb.eval("window.__sameDocument === true"),
        true,
        "the page was not reloaded"
    );
    let page = gb.text("main");
    assert!(
        page.contains(&rid[..12])
            || gb.eval(&format!("document.body.innerHTML.includes('{rid}')")) == true
    );
    assert!(
        !page.contains("Amoxicillin"),
        "a section left out is never shown"
    );
    assert!(
        !page.contains("Penicillin"),
        "a section never asked for is never shown"
    );
    assert_eq!(gb.count("[data-section-view=medications]"), 0);
    // Who wrote it is the verified fact: the patient's own device.
    let notes = gb.text("[data-section-view=notes]");
    assert!(notes.contains("Pat"), "{notes}");
    gb.screenshot(&dir.join("professional-patient.png"));

    // The patient's grants: the professional's access, revoked after the warning.
    open(&mut pb, "grants", "grants");
    let gid = json(&hearth(&pair.p, &["grant", "list", "--json"]))["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "granted")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let row = format!("[data-grant=\"{gid}\"]");
    let held = pb.text(&row);
    assert!(
        held.contains("“Dr Asha Patel” (name not verified)"),
        "{held}"
    );
    pb.screenshot(&dir.join("patient-grants.png"));
    pb.click(&format!("{row} button[data-action=revoke]"));
    pb.wait_for(
        "the revoke warning",
        "document.querySelector('dialog[open]') !== null",
        10,
    );
    let warning = pb.text("dialog[open]");
    assert!(
        warning.contains("Copies of what they already received stay on their system"),
        "{warning}"
    );
    pb.click("dialog[open] [data-action=confirm]");
    pb.wait_for(
        "the grant shown revoked",
        &format!(
            "(() => {{ const r = document.querySelector('{}'); return !r || !r.querySelector('button[data-action=revoke]'); }})()",
            row.replace('\'', "\\'")
        ),
        30,
    );
    let ledger = json(&hearth(&pair.p, &["grant", "list", "--json"]));
    assert!(
        ledger["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "revoked"),
        "{ledger}"
    );

    // Her audit screen shows who received her record.
    open(&mut pb, "audit", "audit");
    pb.wait_for(
        "the professional's access in the audit",
        "[...document.querySelectorAll('[data-audit-event]')].some(e => e.innerText.includes('Dr Asha Patel'))",
        90,
    );
    pb.screenshot(&dir.join("patient-audit.png"));

    // She links her phone from the page: a one-time code, as text and QR code.
    open(&mut pb, "devices", "devices");
    pb.click("[data-action=link-device]");
    pb.wait_for(
        "the device-link code",
        "document.querySelector('#link-code') !== null",
        30,
    );
    let code = pb.text("#link-code");
    assert!(code.starts_with("HEARTH1L"), "{code}");
    let phone = pair.dir.path().join("phone");
    ok(&hearth(
        &phone,
        &["init", "--join", &code, "--name", "Pat's phone"],
    ));
    open(&mut pb, "record", "record");
    open(&mut pb, "devices", "devices");
    pb.wait_for(
        "the phone in her devices",
        "[...document.querySelectorAll('[data-device]')].some(d => d.innerText.includes(\"Pat's phone\"))",
        30,
    );
    pb.screenshot(&dir.join("patient-devices.png"));

    // Every other screen of hers loads, and passes the same checks.
    for (nav, screen) in [
        ("emergency", "emergency"),
        ("choices", "choices"),
        ("status", "status"),
    ] {
        open(&mut pb, nav, screen);
    }
    for (nav, screen) in [("emergency", "emergency"), ("status", "status")] {
        open(&mut gb, nav, screen);
    }

    // A phone-sized screen works too.
    pb.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    open(&mut pb, "record", "record");
    pb.screenshot(&dir.join("patient-record-phone.png"));

    for (who, b) in [("patient", &mut pb), ("professional", &mut gb)] {
        let errors = b.console_errors();
        assert!(errors.is_empty(), "{who}'s page logged errors: {errors:?}");
    }
    dg.stop();
    dp.stop();
}
