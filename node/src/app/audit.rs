//! The audit as people read it: what this node notes when its user reads or writes a
//! patient's record, and the patient's audit log in plain words, each line naming people by
//! verified facts ([`super::people`]) and saying what is only a claim.

use super::people::verified_people;
use super::refused;
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use hearth_core::audit::{
    Action, Authority, EmergencyMark, Problem, SectionAt, SignedEvent, Verified,
};
use hearth_core::grant::request::{AccessRequest, Credential, Verification, verify_credential};
use hearth_core::grant::{self, Grant, Purpose};
use hearth_core::ids::{EntryId, PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::record::{OpenRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::time::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The authority this node holds over `record`: its first held chain's last grant and
/// purpose.
fn authority_held(vault: &Vault<SledStore>, record: &RecordId) -> Option<Authority> {
    let chains: Vec<Vec<Grant>> = vault.held_chains(record).ok()?;
    let leaf = chains.first()?.last()?;
    Some(Authority {
        grant: leaf.id(),
        purpose: leaf.body().purpose,
    })
}

/// The ids and current epochs of the sections named.
fn sections_at(rec: &OpenRecord<'_, SledStore>, names: &[SectionName]) -> Vec<SectionAt> {
    let epochs = rec.current_epochs();
    rec.sections()
        .into_iter()
        .filter(|s| names.contains(&s.name))
        .flat_map(|s| s.ids)
        .take(hearth_core::audit::MAX_SECTIONS)
        .map(|section| SectionAt {
            section,
            epoch: epochs.get(&section).copied().unwrap_or(0),
        })
        .collect()
}

fn note(
    vault: &Vault<SledStore>,
    identity: &Identity,
    rec: &OpenRecord<'_, SledStore>,
    action: Action,
    now: Timestamp,
) -> Result<(), Failure> {
    vault
        .journal(identity, rec.id(), action, now)
        .map(drop)
        .map_err(|e| {
            Failure::new(
                code::IO,
                format!("could not note this in the audit journal, so nothing is shown: {e}"),
            )
        })
}

/// Notes, before a person at this node sees them, that they read `names` of someone else's
/// record (nothing is noted for the patient's own devices). An error means: do not show.
pub fn note_read(
    vault: &Vault<SledStore>,
    identity: &Identity,
    rec: &OpenRecord<'_, SledStore>,
    names: &[SectionName],
    now: Timestamp,
) -> Result<(), Failure> {
    if rec.is_owner() || names.is_empty() {
        return Ok(());
    }
    let sections = sections_at(rec, names);
    let authority = authority_held(vault, &rec.id());
    note(
        vault,
        identity,
        rec,
        Action::Read {
            sections,
            authority,
        },
        now,
    )
}

/// Notes that this node wrote `entry` in `name` of someone else's record. The write itself
/// is already committed (and signed by this node in its bundle), so a failure to note it is
/// logged, not returned: the command must not look as if the write had failed.
pub fn note_write(
    vault: &Vault<SledStore>,
    identity: &Identity,
    rec: &OpenRecord<'_, SledStore>,
    name: &SectionName,
    entry: EntryId,
    now: Timestamp,
) {
    if rec.is_owner() {
        return;
    }
    let Some(section) = sections_at(rec, std::slice::from_ref(name))
        .first()
        .copied()
    else {
        return;
    };
    let authority = authority_held(vault, &rec.id());
    let noted = note(
        vault,
        identity,
        rec,
        Action::Wrote {
            section,
            entries: vec![entry],
            authority,
        },
        now,
    );
    if let Err(e) = noted {
        tracing::warn!("{}", e.message);
    }
}

/// Who a key is to the patient, in words, and whether that is verified.
pub struct Names {
    me: PeerKey,
    devices: BTreeMap<PeerKey, String>,
    people: BTreeMap<PeerKey, (String, String, String)>,
    claimed: BTreeMap<PeerKey, String>,
    proxies: BTreeSet<PeerKey>,
    relays: BTreeMap<PeerKey, Option<String>>,
    sections: BTreeMap<SectionId, SectionName>,
    orgs: BTreeMap<PeerKey, String>,
}

impl Names {
    /// What the patient's node knows of the people and sections of `rec` at `t`.
    pub fn of(rec: &mut OpenRecord<'_, SledStore>, identity: &Identity, t: Timestamp) -> Names {
        let devices = rec
            .all_device_certs()
            .into_iter()
            .map(|d| (d.peer, d.name))
            .collect();
        let people = verified_people(rec, identity, t);
        let proxies = rec
            .recorded_chains()
            .iter()
            .filter_map(|c| c.first())
            .filter(|g| g.body().purpose == Purpose::Proxy)
            .map(|g| g.body().audience)
            .collect();
        let claimed = rec
            .issued_grants()
            .into_iter()
            .filter_map(|(_, g)| Some((g.audience, g.audience_name?)))
            .collect();
        let relays = rec
            .relays(t)
            .into_iter()
            .map(|(p, item)| (p, item.name))
            .collect();
        let mut orgs: BTreeMap<PeerKey, String> = rec
            .trust_items()
            .into_iter()
            .filter_map(|(p, t)| Some((p, t?.name?)))
            .collect();
        for (org, a) in rec.arrangements(t) {
            if let Some(n) = a.org_name {
                orgs.insert(org, n);
            }
        }
        Names {
            orgs,
            me: identity.peer(),
            devices,
            people,
            claimed,
            proxies,
            relays,
            sections: rec.directory().clone(),
        }
    }

    /// `peer` in words, and whether the name is verified.
    pub fn who(&self, peer: &PeerKey) -> (String, bool) {
        if *peer == self.me {
            return ("this device".into(), true);
        }
        if let Some(n) = self.devices.get(peer) {
            return (format!("your device \"{n}\""), true);
        }
        if let Some((name, role, org)) = self.people.get(peer) {
            return (format!("{name} ({role}, {org}, verified)"), true);
        }
        if self.proxies.contains(peer) {
            // The key is the one the patient made their proxy; the name is the one they gave.
            return match self.claimed.get(peer) {
                Some(n) => (format!("your proxy \"{n}\""), true),
                None => (format!("your proxy ({peer})"), true),
            };
        }
        if let Some(name) = self.relays.get(peer) {
            return match name {
                Some(n) => (
                    format!("the relay \"{n}\" (its own name for itself)"),
                    false,
                ),
                None => (format!("the relay {peer}"), false),
            };
        }
        if let Some(n) = self.claimed.get(peer) {
            return (format!("\"{n}\" (name not verified)"), false);
        }
        (format!("an unverified device ({peer})"), false)
    }

    /// Whether `peer` serves the record: this device, another of the patient's devices, or
    /// one of the record's relays. A receipt by anyone else is that grantee's own report.
    pub fn serves(&self, peer: &PeerKey) -> bool {
        *peer == self.me || self.devices.contains_key(peer) || self.relays.contains_key(peer)
    }

    /// An organisation in words: the name the patient gave it, or its key.
    pub fn org(&self, org: &PeerKey) -> String {
        self.orgs
            .get(org)
            .map_or_else(|| format!("the organisation {org}"), |n| format!("\"{n}\""))
    }

    /// Who used emergency access: the name the arranged organisation's credential gives,
    /// checked against that organisation at the time of use.
    pub fn emergency_user(&self, peer: &PeerKey, m: &EmergencyMark, at: Timestamp) -> String {
        let cred = Credential::from_token(&m.credential).ok();
        match verify_credential(cred.as_ref(), peer, &[m.org], at) {
            Verification::Verified {
                name,
                role,
                organisation,
                ..
            } => format!("{name} ({role}, {organisation}, verified)"),
            Verification::Unverified { .. } => self.who(peer).0,
        }
    }

    /// Section names in words ("notes and medications"; unknown ids as "a section you no
    /// longer have").
    pub fn sections(&self, list: &[SectionAt]) -> (Vec<String>, String) {
        let mut names: Vec<String> = Vec::new();
        for s in list {
            let n = match self.sections.get(&s.section) {
                Some(n) => n.to_string(),
                None if s.section == SectionId::AUTH => "consent and directory".to_string(),
                None => "a section not in your directory".to_string(),
            };
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let words = match names.as_slice() {
            [] => "nothing".to_string(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        };
        (names, words)
    }
}

/// One line of the audit: when (the serving node's clock for receipts, the writer's for
/// reports), as JSON, in words.
pub struct Line {
    /// When.
    pub at: Timestamp,
    /// Whose event.
    pub writer: PeerKey,
    /// The peer it is about (the one served, or the writer).
    pub subject: PeerKey,
    /// Whether it records an emergency (break-glass) use.
    pub emergency: bool,
    /// As JSON.
    pub json: Value,
    /// In words.
    pub words: String,
}

/// An event in words.
pub fn line(ev: &SignedEvent, names: &Names) -> Line {
    let e = ev.event();
    let (by, by_verified) = names.who(&e.writer);
    let purpose = |a: &Option<Authority>| {
        a.map(|a| format!(", for {}", a.purpose.words()))
            .unwrap_or_default()
    };
    let (kind, subject, words, extra) = match &e.action {
        Action::Served {
            to,
            sections,
            bundles,
            authority,
            reported,
            emergency,
            pushed,
        } => {
            let (_, what) = names.sections(sections);
            let silent = if reported.is_none() && !pushed {
                " It did not report what its user read."
            } else {
                ""
            };
            match emergency {
                Some(m) => {
                    let who = names.emergency_user(to, m, e.at);
                    (
                        "emergency",
                        *to,
                        format!(
                            "EMERGENCY ACCESS: {who} opened your {what} on {}, sent by {by}, \
                             under your emergency arrangement with {}, until {}. \
                             Reason given: \"{}\".{silent}",
                            super::parse::when_words(e.at),
                            names.org(&m.org),
                            super::parse::when_words(m.until),
                            m.reason
                        ),
                        json!({"to": to, "to_name": who, "bundles": bundles, "reported_head": reported,
                               "emergency": {"reason": m.reason, "org": m.org, "org_name": names.org(&m.org), "until": m.until}}),
                    )
                }
                None => {
                    let (who, _) = names.who(to);
                    // Another grantee's node that passed data on: its word, not your devices'.
                    let by_grantee = !names.serves(&e.writer);
                    (
                        "served",
                        *to,
                        format!(
                            "{who} received your {what} from {by} on {}{}{}.{}",
                            super::parse::when_words(e.at),
                            purpose(authority),
                            if *pushed {
                                " (sent without their asking)"
                            } else {
                                ""
                            },
                            if by_grantee {
                                format!(
                                    " This is {by}'s own report: your devices and relays did not \
                                     send it."
                                )
                            } else {
                                silent.to_string()
                            }
                        ),
                        json!({"to": to, "to_name": who, "bundles": bundles, "reported_head": reported, "pushed": pushed, "by_grantee": by_grantee}),
                    )
                }
            }
        }
        Action::Read {
            sections,
            authority,
        } => {
            let (_, what) = names.sections(sections);
            (
                "read",
                e.writer,
                format!(
                    "{by} read your {what} on {}{} (as their device reports).",
                    super::parse::when_words(e.at),
                    purpose(authority)
                ),
                json!({}),
            )
        }
        Action::Wrote {
            section,
            entries,
            authority,
        } => {
            let (_, what) = names.sections(std::slice::from_ref(section));
            let n = entries.len();
            (
                "wrote",
                e.writer,
                format!(
                    "{by} wrote {n} {} in your {what} on {}{} (as their device reports).",
                    if n == 1 { "entry" } else { "entries" },
                    super::parse::when_words(e.at),
                    purpose(authority)
                ),
                json!({"entries": entries}),
            )
        }
        Action::Approved { request, grant, .. } => {
            let req = AccessRequest::from_token(request).ok();
            let leaf = grant::chain_from_token(grant)
                .ok()
                .and_then(|mut c| c.pop());
            let (asker, peer) = match &req {
                Some(r) => (
                    names.who(&r.body().requester.peer).0,
                    r.body().requester.peer,
                ),
                None => ("someone".to_string(), e.writer),
            };
            let what = leaf.as_ref().map_or_else(String::new, |l| {
                let scopes: Vec<String> = l.body().scopes.iter().map(ToString::to_string).collect();
                format!(
                    ": {} for {} until {}",
                    scopes.join(", "),
                    l.body().purpose.words(),
                    super::parse::when_words(l.body().expires)
                )
            });
            (
                "proxy-approved",
                peer,
                format!(
                    "{by} approved, on your behalf, the access request of {asker} on {}{what} (as their \
                     device reports).",
                    super::parse::when_words(e.at),
                ),
                json!({"requester": peer, "requester_name": asker,
                       "request": req.map(|r| r.short_id('q')), "issued_grant": leaf.map(|l| l.id().to_string())}),
            )
        }
        Action::Denied {
            request, reason, ..
        } => {
            let req = AccessRequest::from_token(request).ok();
            let (asker, peer) = match &req {
                Some(r) => (
                    names.who(&r.body().requester.peer).0,
                    r.body().requester.peer,
                ),
                None => ("someone".to_string(), e.writer),
            };
            (
                "proxy-denied",
                peer,
                format!(
                    "{by} denied, on your behalf, the access request of {asker} on {}{} (as \
                     their device reports).",
                    super::parse::when_words(e.at),
                    reason
                        .as_ref()
                        .map(|r| format!(". Reason given: \"{r}\""))
                        .unwrap_or_default()
                ),
                json!({"requester": peer, "requester_name": asker, "request": req.map(|r| r.short_id('q')), "reason": reason}),
            )
        }
    };
    let (section_names, _) = names.sections(&e.action.sections());
    let authority = e.action.authority();
    let mut json = json!({
        "at": e.at,
        "event": kind,
        "by": e.writer,
        "by_name": by,
        "by_verified": by_verified,
        "sections": section_names,
        "purpose": authority.map(|a| a.purpose),
        "grant": authority.map(|a| a.grant.to_string()),
        "writer_seq": e.seq,
        "time_basis": if (kind == "served" || kind == "emergency") && names.serves(&e.writer) { "the serving device's clock" } else { "the writer's clock (a claim)" },
    });
    if let (Some(o), Some(x)) = (json.as_object_mut(), extra.as_object()) {
        o.extend(x.clone());
    }
    Line {
        at: e.at,
        writer: e.writer,
        subject,
        emergency: kind == "emergency",
        json,
        words,
    }
}

/// A problem in words, naming the writer.
pub fn problem(p: &Problem, names: &Names) -> Value {
    let (who, _) = names.who(&p.peer());
    let mut j = json!(p);
    j["words"] = json!(p.words(&who));
    j
}

/// The patient's own record with its journal collected into the audit log, and the log
/// checked.
pub fn checked_log<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
    now: Timestamp,
) -> Result<(OpenRecord<'v, SledStore>, Verified), Failure> {
    let rid = identity
        .record_id()
        .ok_or_else(|| refused("the audit log is the patient's: run this on the patient's node"))?;
    let mut rec = vault.open_record(identity, &rid)?;
    rec.collect_journal(now, &mut super::os_rng())?;
    let verified = rec.verify_audit()?;
    Ok((rec, verified))
}

/// The emergency uses of the patient's record not yet closed (still open, or over but their
/// sections not yet moved to new keys), for the top of `status` and `audit`: JSON and words.
pub fn open_emergencies(
    rec: &mut OpenRecord<'_, SledStore>,
    names: &Names,
    now: Timestamp,
) -> Vec<(Value, String)> {
    rec.emergency_uses()
        .into_iter()
        .filter(|u| !u.rotated)
        .map(|u| {
            let who = names.emergency_user(&u.by, &u.mark, u.first);
            let state = if u.mark.until > now {
                "in use"
            } else {
                "over; keys to be moved"
            };
            (
                json!({"by": u.by, "by_name": who, "org": u.mark.org, "reason": u.mark.reason,
                       "since": u.first, "until": u.mark.until, "state": state}),
                format!(
                    "EMERGENCY ACCESS {state}: {who} since {}, until {}, under your arrangement \
                     with {}. Reason given: \"{}\".",
                    super::parse::when_words(u.first),
                    super::parse::when_words(u.mark.until),
                    names.org(&u.mark.org),
                    u.mark.reason
                ),
            )
        })
        .collect()
}
