//! End-to-end de-identified extracts with the real `hearth` binary: patients opt in and out,
//! contribute signed files for a named recipient, and the recipient counts them with
//! small-number suppression, refusing files that are unsigned, altered, duplicated or for
//! someone else. Contributions carry no name, NHS number, address or exact birth date.

use crate::common::{Daemon, json, s};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

const NAME: &str = "Edith Canary-Jones";
const NHS: &str = "9434765919";
const ADDRESS: &str = "17 Quarry Lane, Hebden Bridge";
const POSTCODE: &str = "HX7 8AA";
const BORN: &str = "1941-03-09";
const PHONE: &str = "01422 845123";

/// `hearth args` on `home` (if any) with `pass`, in `cwd` if given, with debug logs on stderr
/// (checked too: they must carry nothing identifying).
fn run(home: Option<&Path>, args: &[&str], pass: &str, cwd: Option<&Path>) -> Output {
    let mut c = crate::common::binary(pass);
    if let Some(h) = home {
        c.arg("--home").arg(h);
    }
    c.args(args).env("HEARTH_LOG", "debug,sled=off");
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().expect("run hearth")
}

fn hearth(home: &Path, args: &[&str]) -> Output {
    run(Some(home), args, crate::common::PASS, None)
}

/// Exits with `code`, one `error:` line naming the problem, nothing on stdout.
#[track_caller]
fn fails_with(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let last = err
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("error: "), "{err}");
    assert!(out.stdout.is_empty(), "stdout on failure");
    last
}

/// A new node at `home`; its peer id.
fn init(home: &Path, role: &str, name: &str) -> String {
    crate::common::init(home, role, name)["peer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A patient with demographics and, optionally, one coded condition.
fn patient(home: &Path, gender: &str, postcode: &str, diabetes: bool) {
    init(home, "patient", NAME);
    let demo = json!({"name": NAME, "nhs_number": NHS, "birth_date": BORN, "gender": gender,
        "address": ADDRESS, "postcode": postcode, "phone": PHONE});
    json(&hearth(
        home,
        &[
            "record",
            "add",
            "demographics",
            "--entry",
            &demo.to_string(),
            "--json",
        ],
    ));
    if diabetes {
        let c =
            json!({"name": "Type 2 diabetes", "code": {"system": "snomed", "code": "44054006"}});
        json(&hearth(
            home,
            &[
                "record",
                "add",
                "conditions",
                "--entry",
                &c.to_string(),
                "--json",
            ],
        ));
    }
}

fn consent(home: &Path, purpose: &str, choice: &str) -> Value {
    json(&hearth(home, &["consent", purpose, choice, "--json"]))
}

fn contribute(home: &Path, to: &str, purpose: &str, out: &Path) -> Output {
    hearth(
        home,
        &[
            "extract",
            "contribute",
            "--to",
            to,
            "--purpose",
            purpose,
            "--out",
            s(out),
            "--json",
        ],
    )
}

fn aggregate(recipient: &Path, files: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["extract", "aggregate"];
    args.extend(files.iter().map(|p| s(p)));
    args.extend(extra);
    hearth(recipient, &args)
}

fn ledger(home: &Path) -> Vec<Value> {
    json(&hearth(home, &["grant", "list", "--json"]))["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn opted_out_records_never_contribute_and_every_choice_and_contribution_is_in_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, icb) = (tmp.path().join("patient"), tmp.path().join("icb"));
    patient(&p, "female", "LS1 4AP", true);
    let icb_id = init(&icb, "relay", "West Yorkshire ICB");
    let out = tmp.path().join("c.json");

    // Off by default: refused, nothing written, nothing recorded.
    let shown = json(&hearth(&p, &["consent", "--json"]));
    assert_eq!(shown["research"]["opted_in"], false);
    assert_eq!(shown["planning"]["opted_in"], false);
    assert_eq!(shown["planning"]["chosen"], false);
    let err = fails_with(&contribute(&p, &icb_id, "planning", &out), 7);
    assert!(err.contains("not opted in"), "{err}");
    assert!(!out.exists());
    assert!(ledger(&p).is_empty());

    // Opted in to planning: a contribution is made and recorded.
    let on = consent(&p, "planning", "on");
    assert_eq!(on["changed"], true);
    assert_eq!(
        consent(&p, "planning", "on")["changed"],
        false,
        "already on"
    );
    let made = json(&contribute(&p, &icb_id, "planning", &out));
    assert!(out.exists());
    assert_eq!(made["recipient"], icb_id);
    assert_eq!(made["purpose"], "planning");
    // Research is a separate choice, still off.
    fails_with(
        &contribute(&p, &icb_id, "research", &tmp.path().join("r.json")),
        7,
    );
    assert!(!tmp.path().join("r.json").exists());

    // Opting out stops further contributions; the one given stays valid for its recipient.
    assert_eq!(consent(&p, "planning", "off")["opted_in"], false);
    let again = tmp.path().join("again.json");
    fails_with(&contribute(&p, &icb_id, "planning", &again), 7);
    assert!(!again.exists());
    json(&aggregate(&icb, &[&out], &["--by", "gender", "--json"]));
    // An explicit opt-out is recorded even when it is the default.
    assert_eq!(consent(&p, "research", "off")["changed"], true);

    // The consent ledger, in order and in plain words.
    let events = ledger(&p);
    let kinds: Vec<(&str, Value)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e.get("opted_in").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("consent", json!(true)),
            ("contributed", Value::Null),
            ("consent", json!(false)),
            ("consent", json!(false)),
        ]
    );
    assert_eq!(events[1]["id"], made["id"]);
    assert_eq!(events[1]["to"], icb_id);
    assert_eq!(events[1]["purpose"], "planning");
    let text = String::from_utf8(hearth(&p, &["grant", "list"]).stdout).unwrap();
    assert!(
        text.contains("opted in to planning use of the record"),
        "{text}"
    );
    assert!(
        text.contains("opted out of planning use of the record"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "contributed a de-identified extract to {icb_id} for planning services ({})",
            made["id"].as_str().unwrap()
        )),
        "{text}"
    );
    let shown = String::from_utf8(hearth(&p, &["consent"]).stdout).unwrap();
    assert!(shown.contains("Research: off since"), "{shown}");
    assert!(shown.contains("Planning: off since"), "{shown}");
    assert!(shown.contains("Contributions made: 1"), "{shown}");
}

#[test]
fn pseudonyms_are_stable_for_one_recipient_and_differ_across_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("patient");
    patient(&p, "male", "M1 1AE", false);
    let icb = init(&tmp.path().join("icb"), "relay", "ICB");
    let uni = init(&tmp.path().join("uni"), "relay", "University");
    consent(&p, "planning", "on");
    consent(&p, "research", "on");
    let mut made = Vec::new();
    for (i, (to, purpose)) in [
        (&icb, "planning"),
        (&icb, "planning"),
        (&uni, "planning"),
        (&icb, "research"),
    ]
    .into_iter()
    .enumerate()
    {
        made.push(json(&contribute(
            &p,
            to,
            purpose,
            &tmp.path().join(format!("{i}.json")),
        )));
    }
    let ps: Vec<&str> = made
        .iter()
        .map(|m| m["pseudonym"].as_str().unwrap())
        .collect();
    assert_eq!(ps[0], ps[1], "stable for one recipient and purpose");
    assert_ne!(ps[0], ps[2], "differs across recipients");
    assert_ne!(ps[0], ps[3], "differs across purposes");
    assert_ne!(
        made[0]["id"], made[1]["id"],
        "each contribution has its own id"
    );
    // The pseudonym is not the record id or the peer id.
    let id = json(&hearth(&p, &["id", "--json"]));
    let file = std::fs::read_to_string(tmp.path().join("0.json")).unwrap();
    for v in [&id["record_id"], &id["peer_id"]] {
        assert!(!file.contains(v.as_str().unwrap()));
    }
}

#[test]
fn aggregates_suppress_small_counts_and_refuse_unsigned_altered_duplicated_or_misdirected_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let icb = t.join("icb");
    let icb_id = init(&icb, "relay", "ICB");
    let other_id = init(&t.join("other"), "relay", "Someone else");
    // Nine women in LS1 with diabetes, one man in HX7 without.
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..10 {
        let home = t.join(format!("p{i}"));
        if i < 9 {
            patient(&home, "female", "LS1 4AP", true);
        } else {
            patient(&home, "male", POSTCODE, false);
        }
        consent(&home, "planning", "on");
        let f = t.join(format!("c{i}.json"));
        json(&contribute(&home, &icb_id, "planning", &f));
        files.push(f);
    }
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();

    // Default rule: 1-7 as *, others rounded to the nearest 5.
    let v = json(&aggregate(&icb, &all, &["--by", "gender", "--json"]));
    assert_eq!(v["purpose"], "planning");
    assert_eq!(v["recipient"], icb_id);
    assert_eq!(v["total"], 10);
    assert_eq!(
        v["rows"],
        json!([{"gender": "female", "count": 10}, {"gender": "male", "count": "*"}])
    );
    let v = json(&aggregate(
        &icb,
        &all,
        &["--by", "postcode-district,condition", "--json"],
    ));
    assert_eq!(
        v["rows"],
        json!([
            {"postcode-district": "HX7", "condition": "none", "count": "*"},
            {"postcode-district": "LS1", "condition": "snomed:44054006", "count": 10},
        ])
    );
    // Configurable: no suppression and no rounding shows the true counts.
    let v = json(&aggregate(
        &icb,
        &all,
        &[
            "--by",
            "gender",
            "--suppress-below",
            "0",
            "--round-to",
            "1",
            "--json",
        ],
    ));
    assert_eq!(
        v["rows"],
        json!([{"gender": "female", "count": 9}, {"gender": "male", "count": 1}])
    );
    assert_eq!(v["total"], 10);
    // Suppress below 10: nine women become *; the total, 10, is shown.
    let v = json(&aggregate(
        &icb,
        &all,
        &["--by", "gender", "--suppress-below", "10", "--json"],
    ));
    assert_eq!(v["rows"][0]["count"], "*");
    assert_eq!(v["total"], 10);
    // Text form, and without a home, naming the recipient.
    let text = run(
        None,
        &[
            "extract",
            "aggregate",
            s(&files[0]),
            s(&files[9]),
            "--by",
            "age-band-10,gender",
            "--as",
            &icb_id,
        ],
        "",
        Some(t),
    );
    let text = String::from_utf8(text.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "Planning contributions for {icb_id}: * (counts 1-7"
        )),
        "{text}"
    );
    assert!(lines[1].starts_with("age-band-10") && lines[1].ends_with("gender  count"));
    assert!(
        lines[2].ends_with("female  *") && lines[3].ends_with("male    *"),
        "{text}"
    );

    // Refusals name the file and print no counts.
    let form: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let write = |name: &str, v: &Value| {
        let p = t.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p
    };
    let mut edited = form.clone();
    edited["contribution"]["profile"]["gender"] = json!("male");
    let tampered = write("tampered.json", &edited);
    let mut unsigned = form.clone();
    unsigned["signature"] = json!("");
    let unsigned = write("unsigned.json", &unsigned);
    let mut resigned = form.clone();
    resigned["signature"] = form["signature"].as_str().unwrap().replace('A', "B").into();
    let other_form: Value = serde_json::from_slice(&std::fs::read(&files[9]).unwrap()).unwrap();
    resigned["signed"] = other_form["signed"].clone();
    let swapped = write("swapped.json", &resigned);
    let corrupt = t.join("corrupt.json");
    std::fs::write(&corrupt, b"{\"format\": \"hearth-contribution/1\", ").unwrap();
    let copy = t.join("copy.json");
    std::fs::copy(&files[3], &copy).unwrap();
    for (file, code, words) in [
        (&tampered, 6, "edited"),
        (&unsigned, 6, "bad signature"),
        (&swapped, 6, "bad signature"),
        (&corrupt, 3, "not a contribution"),
        (&copy, 7, "duplicate"),
    ] {
        let mut list = all.clone();
        list.push(file);
        let err = fails_with(&aggregate(&icb, &list, &["--by", "gender"]), code);
        assert!(err.contains(s(file)), "{err}");
        assert!(err.contains(words), "{err}");
    }
    // The same file twice, and a missing one.
    let err = fails_with(&aggregate(&icb, &[all[0], all[0]], &["--by", "gender"]), 7);
    assert!(err.contains("duplicate"), "{err}");
    fails_with(
        &aggregate(&icb, &[&t.join("missing.json")], &["--by", "gender"]),
        5,
    );
    // A second contribution from the same patient: same pseudonym.
    let second = t.join("second.json");
    json(&contribute(&t.join("p0"), &icb_id, "planning", &second));
    let err = fails_with(&aggregate(&icb, &[all[0], &second], &["--by", "gender"]), 7);
    assert!(
        err.contains("same pseudonym") && err.contains(s(all[0])),
        "{err}"
    );
    // Made for someone else: refused by the ICB, and the other recipient refuses the ICB's.
    let theirs = t.join("theirs.json");
    json(&contribute(&t.join("p1"), &other_id, "planning", &theirs));
    let err = fails_with(&aggregate(&icb, &[all[0], &theirs], &["--by", "gender"]), 7);
    assert!(
        err.contains("another recipient") && err.contains("theirs.json"),
        "{err}"
    );
    fails_with(
        &aggregate(&icb, &[all[0]], &["--by", "gender", "--as", &other_id]),
        7,
    );
    // Another purpose than asked.
    fails_with(
        &aggregate(
            &icb,
            &[all[0]],
            &["--by", "gender", "--purpose", "research"],
        ),
        7,
    );
    // Bad arguments.
    fails_with(&aggregate(&icb, &[all[0]], &["--by", "name"]), 3);
    fails_with(&aggregate(&icb, &[all[0]], &["--by", "gender,gender"]), 3);
    fails_with(
        &aggregate(&icb, &[all[0]], &["--by", "gender", "--as", "nobody"]),
        3,
    );
}

/// Every byte a contribution, its command's output and its logs show.
fn shown(out: &Output, file: &Path) -> String {
    let mut all = String::from_utf8_lossy(&out.stdout).to_string();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    // The file, with its random base64 parts (in which a short canary could turn up by
    // chance) taken out, and the signed part decoded.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let signed = data_encoding_free_b64url(v["signed"].as_str().unwrap());
    v["signed"] = Value::Null;
    v["signature"] = Value::Null;
    all.push_str(&v.to_string());
    all.push_str(&String::from_utf8_lossy(&signed));
    all
}

/// Base64url without padding, decoded (a few lines, so the test needs no extra crate).
fn data_encoding_free_b64url(text: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn a_contribution_holds_no_nhs_number_name_address_or_birth_date() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("patient");
    patient(&p, "female", POSTCODE, true);
    let note = json!({"text": "canary free text about the knee"});
    json(&hearth(
        &p,
        &[
            "record",
            "add",
            "notes",
            "--entry",
            &note.to_string(),
            "--json",
        ],
    ));
    let mh = json!({"name": "Depression", "code": {"system": "snomed", "code": "35489007"}});
    json(&hearth(
        &p,
        &[
            "record",
            "add",
            "conditions:mental-health",
            "--entry",
            &mh.to_string(),
            "--json",
        ],
    ));
    let icb = tmp.path().join("icb");
    let icb_id = init(&icb, "relay", "ICB");
    consent(&p, "research", "on");
    let file = tmp.path().join("c.json");
    let made = contribute(&p, &icb_id, "research", &file);
    json(&made);
    let agg = aggregate(
        &icb,
        &[&file],
        &[
            "--by",
            "age-band,gender,postcode-district,condition",
            "--suppress-below",
            "0",
        ],
    );
    assert!(agg.status.success());
    let mut all = shown(&made, &file);
    all.push_str(&String::from_utf8_lossy(&agg.stdout));
    all.push_str(&String::from_utf8_lossy(&agg.stderr));
    let lower = all.to_lowercase();
    let compact: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    for canary in [
        NAME,
        "canary",
        NHS,
        "943 476 5919",
        ADDRESS,
        "quarry",
        POSTCODE,
        "hx78aa",
        BORN,
        "1941",
        "09/03",
        PHONE,
        "845123",
        "knee",
        "35489007",
        "depression",
    ] {
        let c = canary.to_lowercase();
        let cc: String = c.chars().filter(char::is_ascii_alphanumeric).collect();
        assert!(!lower.contains(&c), "{canary} shown");
        assert!(!compact.contains(&cc), "{canary} shown (compacted)");
    }
    // What is there: the coarse facts.
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let profile = &v["contribution"]["profile"];
    assert_eq!(profile["gender"], "female");
    assert_eq!(profile["postcode_district"], "HX7");
    assert_eq!(profile["conditions"], json!(["snomed:44054006"]));
    assert!(
        ["85-89", "90+"].contains(&profile["age_band"].as_str().unwrap()),
        "{profile}"
    );
    // Nor in the patient's ledger entry for it.
    let ledger = serde_json::to_string(&ledger(&p)).unwrap();
    assert!(!ledger.contains("HX7") && !ledger.contains("44054006"));
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("patient");
    patient(&p, "female", "LS1 4AP", false);
    let icb_id = init(&tmp.path().join("icb"), "relay", "ICB");
    consent(&p, "planning", "on");
    let before = ledger(&p);
    let out = tmp.path().join("c.json");

    // Wrong passphrase: exit 4, nothing written.
    let args = [
        "extract",
        "contribute",
        "--to",
        &icb_id,
        "--purpose",
        "planning",
        "--out",
        s(&out),
    ];
    fails_with(&run(Some(&p), &args, "wrong passphrase!", None), 4);
    fails_with(
        &run(
            Some(&p),
            &["consent", "research", "on"],
            "wrong passphrase!",
            None,
        ),
        4,
    );
    // Not a peer id, a purpose that is not offered, an existing file, a missing folder.
    fails_with(&contribute(&p, "not-a-peer", "planning", &out), 3);
    assert_eq!(
        hearth(
            &p,
            &[
                "extract",
                "contribute",
                "--to",
                &icb_id,
                "--purpose",
                "direct-care",
                "--out",
                s(&out)
            ]
        )
        .status
        .code(),
        Some(2)
    );
    std::fs::write(&out, b"keep me").unwrap();
    fails_with(&contribute(&p, &icb_id, "planning", &out), 7);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::remove_file(&out).unwrap();
    fails_with(
        &contribute(
            &p,
            &icb_id,
            "planning",
            &tmp.path().join("no/such/dir/c.json"),
        ),
        1,
    );
    assert!(!out.exists());
    assert_eq!(ledger(&p), before, "nothing recorded");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    // A professional node has no record to contribute or choose about.
    let gp = tmp.path().join("gp");
    init(&gp, "professional", "Dr A");
    fails_with(&hearth(&gp, &["consent", "research", "on"]), 7);
    fails_with(&contribute(&gp, &icb_id, "planning", &out), 7);
    // `consent research` without on/off is a usage error.
    assert_eq!(hearth(&p, &["consent", "research"]).status.code(), Some(2));
}

#[test]
fn with_the_daemon_running_commands_are_forwarded_and_aggregate_runs_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("patient");
    patient(&p, "female", "LS1 4AP", true);
    let icb = tmp.path().join("icb");
    let icb_id = init(&icb, "relay", "ICB");
    let _daemon = Daemon::start(&p, None);
    consent(&p, "research", "on");
    // A relative --out is written in the caller's folder, not the daemon's.
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let made = run(
        Some(&p),
        &[
            "extract",
            "contribute",
            "--to",
            &icb_id,
            "--purpose",
            "research",
            "--out",
            "c.json",
            "--json",
        ],
        crate::common::PASS,
        Some(&work),
    );
    let made = json(&made);
    assert!(work.join("c.json").exists(), "{made}");
    // The ICB's own daemon would not matter either: aggregate opens no store.
    let v = json(&aggregate(
        &icb,
        &[&work.join("c.json")],
        &["--by", "condition", "--json"],
    ));
    assert_eq!(
        v["rows"],
        json!([{"condition": "snomed:44054006", "count": "*"}])
    );
    // And the patient's node, while its daemon runs, aggregates without a passphrase.
    let v = json(&run(
        Some(&p),
        &[
            "extract",
            "aggregate",
            s(&work.join("c.json")),
            "--by",
            "gender",
            "--as",
            &icb_id,
            "--json",
        ],
        "",
        None,
    ));
    assert_eq!(v["total"], "*");
    let events = ledger(&p);
    assert_eq!(events.last().unwrap()["event"], "contributed");
}
