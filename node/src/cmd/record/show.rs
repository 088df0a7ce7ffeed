//! What `record show` and `record history` print: entries and versions, each with who wrote
//! it from verified facts ([`crate::app::people`]) and, apart, what the writer claims.

use crate::app::parse::when_words;
use crate::app::people::{verified_people, vouch};
use crate::app::{Ctx, now};
use crate::fail::Failure;
use crate::sled_store::SledStore;
use hearth_core::entry::{EntryBody, EntryStatus};
use hearth_core::ids::{EntryId, PeerKey};
use hearth_core::keys::Identity;
use hearth_core::record::{Attribution, Basis, DisputeView, OpenRecord, RecordError, SectionView};
use hearth_core::section::SectionName;
use serde_json::{Value, json};

/// `hearth record history`: every version in a section, who wrote it (verified) and what
/// they claim.
pub(super) fn history(
    ctx: &Ctx,
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    name: &SectionName,
) -> Result<(), Failure> {
    let rid = rec.id();
    let versions = rec.history(name)?;
    let mut facts = rec.attribution(name)?;
    let people = verified_people(rec, identity, now());
    for a in facts.values_mut() {
        vouch(a, &people, identity);
    }
    let versions_json: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut j = json!(v);
            j["claimed"] = json!(hearth_core::record::CLAIMED);
            if let Some(a) = facts.get(&v.id) {
                j["verified"] = json!(a);
            }
            j
        })
        .collect();
    ctx.print(
        json!({"record_id": rid, "section": name.to_string(), "class": name.class, "label": name.label, "versions": versions_json}),
        || {
            let mut s = format!("History of {name} ({} versions)", versions.len());
            for v in &versions {
                let what = match (v.status, v.supersedes) {
                    (EntryStatus::EnteredInError, _) => "marked entered in error".to_string(),
                    (_, Some(old)) => format!("corrected {old}"),
                    (_, None) => "added".to_string(),
                };
                let a = facts.get(&v.id);
                s.push_str(&format!(
                    "\n  {}  v{}  {}  {}  {}",
                    a.and_then(|a| a.received_at)
                        .map_or_else(|| v.provenance.recorded_at.to_string(), |t| t.to_string()),
                    v.version,
                    v.id,
                    who(a, v),
                    what
                ));
                if let Some(c) = claims(a, v) {
                    s.push_str(&format!("\n    {c}"));
                }
            }
            s
        },
    );
    Ok(())
}

/// `hearth record show`: the current entries of `names`, with who wrote them (verified)
/// and what they claim. `single`: one section was asked for, so its failure is the command's.
pub(super) fn show(
    ctx: &Ctx,
    rec: &mut OpenRecord<'_, SledStore>,
    identity: &Identity,
    names: Vec<SectionName>,
    single: bool,
) -> Result<(), Failure> {
    let mut views: Vec<SectionView> = Vec::new();
    let mut errors: Vec<(SectionName, RecordError)> = Vec::new();
    for name in names {
        match rec.show(&name) {
            Ok(v) => views.push(v),
            Err(e) if single => return Err(e.into()),
            Err(e) => errors.push((name, e)),
        }
    }
    let people = verified_people(rec, identity, now());
    for v in &mut views {
        for e in &mut v.entries {
            if let Some(a) = e.verified.as_mut() {
                vouch(a, &people, identity);
            }
        }
    }
    let unapplied = rec.unapplied();
    let rid = rec.id();
    ctx.print(
        json!({
            "record_id": rid,
            "sections": views,
            "errors": errors.iter().map(|(n, e)| json!({"section": n.to_string(), "error": e.to_string()})).collect::<Vec<_>>(),
            "unapplied": unapplied,
        }),
        || {
            let mut s = String::new();
            for u in &unapplied {
                s.push_str(&format!(
                    "WARNING: {} {} by {} could not be applied to {} from #{} ({}); the section is shown without them\n",
                    u.count,
                    if u.count == 1 { "bundle" } else { "bundles" },
                    u.author,
                    u.section,
                    u.from_seq,
                    u.reason
                ));
            }
            for v in &views {
                let name = SectionName::new(v.class, v.label);
                s.push_str(&format!("{name} ({} entries)\n", v.entries.len()));
                for e in &v.entries {
                    let summary = EntryBody::from_json(v.class, &e.body)
                        .map(|b| b.summary())
                        .unwrap_or_default();
                    let flag = match e.status {
                        EntryStatus::EnteredInError => format!(
                            "  [ENTERED IN ERROR: {}]",
                            e.status_reason.as_deref().unwrap_or("")
                        ),
                        EntryStatus::Final => String::new(),
                    };
                    let a = e.verified.as_ref();
                    s.push_str(&format!(
                        "  {}  v{}  {}  {}\n",
                        e.id,
                        e.version,
                        a.and_then(|a| a.received_at)
                            .map_or_else(|| e.provenance.recorded_at.to_string(), |t| t.to_string()),
                        who_of(a, &e.provenance.author),
                    ));
                    if let Some(c) = claims_of(a, &e.provenance) {
                        s.push_str(&format!("    {c}\n"));
                    }
                    s.push_str(&format!("    {summary}{flag}\n"));
                    for d in &e.disputes {
                        s.push_str(&format!("    {}\n", disputed(d, e.id)));
                    }
                }
            }
            s.trim_end().to_string()
        },
    );
    if let Some((name, e)) = errors.first() {
        let f: Failure = Failure::from(clone_err(e));
        return Err(Failure::new(
            f.code,
            format!("section {name} could not be read: {}", f.message),
        ));
    }
    Ok(())
}

fn clone_err(e: &RecordError) -> RecordError {
    match e {
        RecordError::Corrupt { section, reason } => RecordError::Corrupt {
            section: section.clone(),
            reason: reason.clone(),
        },
        RecordError::NoKey(s) => RecordError::NoKey(s.clone()),
        RecordError::Store(s) => RecordError::Store(s.clone()),
        _ => RecordError::Invalid("section unreadable"),
    }
}

/// A dispute of entry `current` (or of a version it replaced) in words, from verified facts:
/// `DISPUTED by the patient (device NAME) on … : REASON  [dispute ID]`.
fn disputed(d: &DisputeView, current: EntryId) -> String {
    let device = d.verified.name.as_deref().unwrap_or("a device");
    let of = if d.entry == current {
        String::new()
    } else {
        format!(" (an earlier version, {})", d.entry)
    };
    format!(
        "DISPUTED by the patient (device \"{device}\") on {}{of}: {}  [dispute {}]",
        when_words(d.disputed_at),
        d.reason,
        d.id
    )
}

/// Who wrote a version, from verified facts only.
fn who(a: Option<&Attribution>, v: &hearth_core::entry::EntryVersion) -> String {
    who_of(a, &v.provenance.author)
}

fn who_of(a: Option<&Attribution>, author: &PeerKey) -> String {
    match a {
        Some(a) => match (a.basis, &a.name) {
            (Basis::PatientDevice, Some(n)) => format!("{n} (patient's device)"),
            (Basis::OrganisationCredential, Some(n)) => format!(
                "{n} ({}, {}; verified credential)",
                a.role.as_deref().unwrap_or_default(),
                a.organisation.as_deref().unwrap_or_default()
            ),
            (Basis::ThisNode, Some(n)) => format!("{n} (this node)"),
            _ => format!("unverified key {}", a.author),
        },
        None => format!("unverified key {author}"),
    }
}

/// What the writer said of itself, shown as a claim unless it is the patient's own device.
fn claims(a: Option<&Attribution>, v: &hearth_core::entry::EntryVersion) -> Option<String> {
    claims_of(a, &v.provenance)
}

fn claims_of(a: Option<&Attribution>, p: &hearth_core::entry::Provenance) -> Option<String> {
    if a.is_some_and(|a| matches!(a.basis, Basis::PatientDevice | Basis::ThisNode)) {
        return None;
    }
    Some(format!(
        "claims (unchecked): \"{}\" ({}), written {}",
        p.author_name,
        p.author_role.as_str(),
        p.recorded_at
    ))
}
