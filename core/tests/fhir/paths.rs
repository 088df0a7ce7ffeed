//! New versions of changed resources, all-or-nothing writes, and the checked and raw paths
//! giving what the `Value` paths give.

use crate::common::*;

#[test]
fn a_changed_resource_becomes_a_new_version_of_its_entry() {
    let bytes = fixture("uk-social-care");
    let mut r = new_record(8);
    import(&mut r, &bytes).unwrap();
    let mut changed: Value = serde_json::from_slice(&bytes).unwrap();
    changed["entry"][3]["resource"]["clinicalStatus"]["coding"][0]["code"] = json!("inactive");
    let (plan, ids) = import(&mut r, &serde_json::to_vec(&changed).unwrap()).unwrap();
    assert_eq!(plan.report.updated, 1, "{:?}", plan.report);
    assert_eq!(ids.len(), 1);
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let conditions = rec.show(&"conditions".parse().unwrap()).unwrap();
    assert_eq!(conditions.entries.len(), 1);
    assert_eq!(conditions.entries[0].version, 2);
    assert_eq!(conditions.entries[0].body["clinical_status"], "inactive");
}

#[test]
fn add_entries_is_all_or_nothing() {
    let mut r = new_record(9);
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let before = r.vault.store().scan(&[], &[0xff; 8]).unwrap();
    let items = vec![
        NewEntry {
            section: "notes".parse().unwrap(),
            body: json!({"text": "fine"}),
            supersedes: None,
        },
        NewEntry {
            section: "allergies".parse().unwrap(),
            body: json!({"substance": "x", "severity": "very"}),
            supersedes: None,
        },
    ];
    assert!(rec.add_entries(&items, TEST_NOW, &mut r.rng).is_err());
    assert_eq!(r.vault.store().scan(&[], &[0xff; 8]).unwrap(), before);
    let ids = rec.add_entries(&items[..1], TEST_NOW, &mut r.rng).unwrap();
    assert_eq!(ids.len(), 1);
    let doc = rec.section_document(&"notes".parse().unwrap()).unwrap();
    let loaded = automerge::AutoCommit::load(&doc).unwrap();
    use automerge::ReadDoc;
    assert_eq!(loaded.keys(automerge::ROOT).count(), 1);
}

/// Import writes the bodies its plan checked (`add_checked_entries`): the same entries as
/// `add_entries` with the same bodies as JSON. Export written straight to JSON text is the same bundle,
/// byte for byte, as the `Value` export serialised, whole or in part, kept or rebuilt.
#[test]
fn checked_import_and_direct_json_export_match_the_value_paths() {
    for (name, bytes) in fixtures() {
        let json = fhir::parse_bundle(&bytes).unwrap();
        let plan = fhir::plan_import(&json, &Existing::default()).unwrap();
        let mut a = new_record(5);
        let items: Vec<NewEntry> = plan
            .entries
            .iter()
            .map(|p| NewEntry {
                section: p.section,
                body: serde_json::from_str(p.checked.json()).unwrap(),
                supersedes: p.supersedes,
            })
            .collect();
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        rec.add_entries(&items, TEST_NOW, &mut a.rng).unwrap();
        drop(rec);
        let mut b = new_record(5);
        let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
        rec.add_checked_entries(&checked_items(&plan), TEST_NOW, &mut b.rng)
            .unwrap();
        let got = views(&mut rec);
        drop(rec);
        let mut rec = a.vault.open_record(&a.identity, &a.id).unwrap();
        let want = views(&mut rec);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap(),
            "{name}"
        );
        drop(rec);

        let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
        let all = views(&mut rec);
        let some: Vec<SectionView> = all
            .iter()
            .filter(|v| v.class.as_str() != "demographics" && v.class.as_str() != "documents")
            .cloned()
            .collect();
        for sections in [&all, &some] {
            for rebuild in [false, true] {
                let input = ExportInput {
                    record: b.id,
                    sections,
                    now: TEST_NOW,
                };
                let options = ExportOptions {
                    rebuild,
                    ..ExportOptions::default()
                };
                let (value, report) = fhir::export_bundle(&input, options, &[&FakeConsent]);
                let (compact, r2) =
                    fhir::export_bundle_json(&input, options, &[&FakeConsent], false).unwrap();
                assert_eq!(report, r2);
                assert_eq!(compact, serde_json::to_vec(&value).unwrap(), "{name}");
                let (pretty, _) =
                    fhir::export_bundle_json(&input, options, &[&FakeConsent], true).unwrap();
                assert_eq!(pretty, serde_json::to_vec_pretty(&value).unwrap(), "{name}");
                // The text is serde_json's own writing of the bundle it holds.
                let reparsed: Value = serde_json::from_slice(&compact).unwrap();
                assert_eq!(compact, serde_json::to_vec(&reparsed).unwrap(), "{name}");

                // From the bodies as stored (show_raw), and from bodies stored in any other
                // JSON layout (white space, escapes, other number forms), the same bytes.
                let mut rec = b.vault.open_record(&b.identity, &b.id).unwrap();
                let stored: Vec<RawSectionView> = sections
                    .iter()
                    .map(|v| {
                        let name = SectionName::new(v.class, v.label);
                        rec.show_raw(&name).unwrap()
                    })
                    .collect();
                let odd: Vec<RawSectionView> = stored
                    .iter()
                    .map(|v| RawSectionView {
                        class: v.class,
                        label: v.label,
                        entries: v
                            .entries
                            .iter()
                            .map(|e| RawEntryView::new(e.entry.clone(), odd_layout(e.body())))
                            .collect(),
                    })
                    .collect();
                for raw in [&stored, &odd] {
                    let input = RawExportInput {
                        record: b.id,
                        sections: raw,
                        now: TEST_NOW,
                    };
                    for pretty in [false, true] {
                        let (got, r3) =
                            fhir::export_raw_json(&input, options, &[&FakeConsent], pretty)
                                .unwrap();
                        assert_eq!(r3, report, "{name}");
                        assert!(
                            got == if pretty {
                                pretty_want(&value)
                            } else {
                                compact.clone()
                            },
                            "{name}: rebuild {rebuild}, pretty {pretty}"
                        );
                    }
                }
            }
        }
    }
}

fn pretty_want(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

/// The same JSON in another layout: pretty-printed, every non-ASCII character and `/` escaped,
/// and decimals with a trailing zero.
fn odd_layout(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let mut out = String::with_capacity(pretty.len() * 2);
    let mut in_string = false;
    let mut escaped = false;
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| {
        // A float keeps its value with a trailing zero (an integer would not stay one).
        if number.contains('.') && !number.contains(['e', 'E']) {
            number.push('0');
        }
        out.push_str(number);
        number.clear();
    };
    for ch in pretty.chars() {
        if in_string {
            match ch {
                _ if escaped => {
                    escaped = false;
                    out.push(ch);
                }
                '\\' => {
                    escaped = true;
                    out.push(ch);
                }
                '"' => {
                    in_string = false;
                    out.push(ch);
                }
                '/' => out.push_str("\\/"),
                c if !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
                c => out.push(c),
            }
        } else if ch.is_ascii_digit() || matches!(ch, '-' | '.' | 'e' | 'E' | '+') {
            number.push(ch);
        } else {
            flush(&mut number, &mut out);
            if ch == '"' {
                in_string = true;
            }
            out.push(ch);
        }
    }
    flush(&mut number, &mut out);
    let back: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back, v, "the odd layout holds the same JSON");
    out
}

/// `show_raw` gives the entries `show` gives, in the same order, with the same bodies.
#[test]
fn show_raw_is_show_with_bodies_as_text() {
    let (_, bytes) = fixtures().remove(0);
    let mut r = new_record(11);
    import(&mut r, &bytes).unwrap();
    let mut rec = r.vault.open_record(&r.identity, &r.id).unwrap();
    let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    assert!(names.len() > 3);
    for name in names {
        let shown = rec.show(&name).unwrap();
        let raw = rec.show_raw(&name).unwrap();
        assert_eq!((raw.class, raw.label), (shown.class, shown.label));
        assert_eq!(raw.entries.len(), shown.entries.len());
        for (a, b) in raw.entries.iter().zip(&shown.entries) {
            let body: Value = serde_json::from_str(a.body()).unwrap();
            assert_eq!(body, b.body);
            let mut entry = b.clone();
            entry.body = Value::Null;
            assert_eq!(
                serde_json::to_value(&a.entry).unwrap(),
                serde_json::to_value(&entry).unwrap()
            );
        }
    }
    let missing = "notes:safeguarding".parse().unwrap();
    assert!(rec.show_raw(&missing).is_err());
}
