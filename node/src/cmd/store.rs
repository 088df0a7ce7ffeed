//! `hearth store check` and `hearth store repair`: find what a damaged store still holds
//! intact, and make it open again (the engine is `hearth_core::record::check`).
//!
//! `check` only reads: with a daemon running it runs inside the daemon, on its open store.
//! `repair` writes one atomic batch and needs the store to itself: inside the daemon it is
//! refused, and a store locked by a daemon that does not answer is reported as such.

use crate::app::Ctx;
use crate::app::people::verified_people;
use crate::fail::{Failure, code};
use crate::os::now;
use crate::sled_store::SledStore;
use clap::Subcommand;
use hearth_core::ids::RecordId;
use hearth_core::record::Vault;
use hearth_core::record::{RepairReport, StoreReport, check_store, repair_store};
use hearth_core::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// `hearth store …`.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Read every stored item and verify what can be verified (bundle signatures, each log's
    /// hash chain, key wraps, every item's encoding); print what is intact and what is
    /// damaged. Changes nothing; exits 6 if anything is damaged.
    Check,
    /// Keep everything that still verifies; in one atomic write, move damaged items to
    /// quarantine and set each broken log back to its last verified bundle, so the store
    /// opens again and the next sync fetches the rest from peers or relays. Stop the daemon
    /// (`hearth run`) first.
    Repair,
}

/// Runs a `hearth store` command.
pub fn store(ctx: &Ctx, cmd: StoreCommand) -> Result<(), Failure> {
    match cmd {
        StoreCommand::Check => check(ctx),
        StoreCommand::Repair => repair(ctx),
    }
}

/// The store of this home: the daemon's, or opened here.
fn open(ctx: &Ctx) -> Result<SledStore, Failure> {
    if let Some(d) = &ctx.daemon {
        return Ok(d.vault.store().clone());
    }
    let dir = ctx.home.store_dir();
    if !dir.is_dir() {
        return Err(Failure::new(
            code::NOT_FOUND,
            format!("no store in {}: nothing to check", ctx.home.dir().display()),
        ));
    }
    SledStore::open(&dir).map_err(|e| store_failure(ctx, e))
}

/// A store error in words that say what to do; sled's own files damaged is its own case.
fn store_failure(ctx: &Ctx, e: StoreError) -> Failure {
    match e {
        StoreError::Corrupt(_) => Failure::new(
            code::INTEGRITY,
            format!(
                "the store's own files are damaged: its database in {} cannot be read. \
                 Nothing was changed. Move that folder aside, then restore: a patient with \
                 `hearth recover` from a relay, a professional by syncing again from the patient",
                ctx.home.store_dir().display()
            ),
        ),
        StoreError::Locked(_) => Failure::new(
            code::LOCKED,
            "the store is locked by another hearth process for this home (a daemon that does \
             not answer, or a command still running): stop it (Ctrl-C, or kill -TERM its \
             process) and run this again",
        ),
        other => other.into(),
    }
}

fn check(ctx: &Ctx) -> Result<(), Failure> {
    let store = open(ctx)?;
    let report = check_store(&store).map_err(|e| store_failure(ctx, e))?;
    let names = if report.is_intact() {
        Names::default()
    } else {
        Names::of(ctx, &store, &report)
    };
    ctx.print(names.json(json_of(&report)), || {
        report_text(&report, &names)
    });
    damaged_failure(&report)
}

/// What a person reads instead of ids in a damage report: the names of sections and the
/// verified names of authors, from the records this node can still open. Empty when the
/// node stays locked (no daemon and no passphrase at hand without a prompt: a check never
/// asks for one, or the passphrase given does not unlock it) or a record does not open; the
/// ids are shown then.
#[derive(Default)]
struct Names {
    /// Why the node stayed locked, in words (a sentence's end), if it did.
    locked: Option<String>,
    /// (record, section id) → section name.
    sections: BTreeMap<(String, String), String>,
    /// (record, author peer id) → who that key verifiably is.
    authors: BTreeMap<(String, String), String>,
}

impl Names {
    fn of(ctx: &Ctx, store: &SledStore, report: &StoreReport) -> Names {
        let at_hand = ctx.daemon.is_some()
            || ctx.passphrase_file.is_some()
            || std::env::var_os("HEARTH_PASSPHRASE").is_some();
        let why = match at_hand.then(|| ctx.unlock()) {
            Some(Ok((_, identity))) => return Names::with(identity, store, report),
            Some(Err(f)) => format!(
                "the node did not unlock ({}; the check goes on without it)",
                f.message
            ),
            None => "the node is locked (run the check with the daemon running, or with \
                     HEARTH_PASSPHRASE or --passphrase-file, to name them)"
                .into(),
        };
        Names {
            locked: Some(why),
            ..Names::default()
        }
    }

    fn with(
        identity: hearth_core::keys::Identity,
        store: &SledStore,
        report: &StoreReport,
    ) -> Names {
        let Ok(vault) = Vault::open(store.clone()) else {
            return Names::default();
        };
        let records: BTreeSet<&str> = report
            .damage
            .iter()
            .filter_map(|d| d.record.as_deref())
            .chain(report.broken_logs.iter().map(|b| b.record.as_str()))
            .collect();
        let mut names = Names::default();
        let t = now();
        for text in records {
            let Ok(rid) = text.parse::<RecordId>() else {
                continue;
            };
            let Ok(mut rec) = vault.open_record(&identity, &rid) else {
                continue;
            };
            for (sid, name) in rec.directory() {
                names
                    .sections
                    .insert((text.to_string(), sid.to_string()), name.to_string());
            }
            let mut who = |peer: String, label: String| {
                names.authors.insert((text.to_string(), peer), label);
            };
            who(identity.peer().to_string(), "this node".into());
            for d in rec.device_certs() {
                who(
                    d.peer.to_string(),
                    format!("the patient's device \"{}\"", d.name),
                );
            }
            for (peer, (name, role, org)) in verified_people(&mut rec, &identity, t) {
                who(
                    peer.to_string(),
                    format!("{name}, {role}, {org} (verified)"),
                );
            }
        }
        names
    }

    fn section(&self, record: Option<&str>, section: Option<&str>) -> Option<&str> {
        let key = (record?.to_string(), section?.to_string());
        self.sections.get(&key).map(String::as_str)
    }

    fn author(&self, record: Option<&str>, author: Option<&str>) -> Option<&str> {
        let key = (record?.to_string(), author?.to_string());
        self.authors.get(&key).map(String::as_str)
    }

    /// `report` with `section_name` and `author_name` beside the ids this node can name.
    fn json(&self, mut report: serde_json::Value) -> serde_json::Value {
        for list in ["damage", "broken_logs"] {
            let Some(items) = report.get_mut(list).and_then(|v| v.as_array_mut()) else {
                continue;
            };
            for item in items {
                let field = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let (record, section, author) =
                    (field("record"), field("section"), field("author"));
                let section = self.section(record.as_deref(), section.as_deref());
                let author = self.author(record.as_deref(), author.as_deref());
                if let Some(o) = item.as_object_mut() {
                    if let Some(n) = section {
                        o.insert("section_name".into(), n.into());
                    }
                    if let Some(n) = author {
                        o.insert("author_name".into(), n.into());
                    }
                }
            }
        }
        report
    }

    /// " (section notes, written by Dr A, GP, Riverside (verified))", or nothing.
    fn words(&self, record: Option<&str>, section: Option<&str>, author: Option<&str>) -> String {
        let parts: Vec<String> = [
            self.section(record, section)
                .map(|n| format!("section {n}")),
            self.author(record, author)
                .map(|n| format!("written by {n}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

fn repair(ctx: &Ctx) -> Result<(), Failure> {
    if ctx.daemon.is_some() {
        return Err(Failure::new(
            code::REFUSED,
            "the daemon is running and holds the store: stop it (Ctrl-C, or kill -TERM its \
             process) before `hearth store repair`; `hearth store check` works while it runs",
        ));
    }
    let store = open(ctx)?;
    let rep = repair_store(&store).map_err(|e| store_failure(ctx, e))?;
    store.flush().map_err(|e| store_failure(ctx, e))?;
    ctx.print(
        serde_json::json!({
            "quarantined": rep.quarantined,
            "heads_moved": rep.heads_moved,
            "before": json_of(&rep.before),
            "after": json_of(&rep.after),
        }),
        || repair_text(&rep),
    );
    damaged_failure(&rep.after)
}

/// Exit 6 when damage remains.
fn damaged_failure(r: &StoreReport) -> Result<(), Failure> {
    if r.is_intact() {
        return Ok(());
    }
    Err(Failure::new(
        code::INTEGRITY,
        format!(
            "the store is damaged: {} problem(s) found; `hearth store repair` keeps what \
             verifies and the next sync fetches the rest",
            r.damage.len()
        ),
    ))
}

fn json_of(r: &StoreReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("damaged".into(), (!r.is_intact()).into());
    }
    v
}

/// "12 bundles, 3 key wraps".
fn counts(m: &std::collections::BTreeMap<&'static str, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_text(r: &StoreReport, names: &Names) -> String {
    let mut out = vec![format!("Store check: {} items read.", r.items)];
    out.push(format!(
        "Intact: {}; {} logs verify from their base to their head.",
        if r.intact.is_empty() {
            "nothing".to_string()
        } else {
            counts(&r.intact)
        },
        r.logs_intact
    ));
    if !r.not_checked.is_empty() {
        out.push(format!(
            "Not checked (sealed, or kept for other parts of hearth): {}.",
            counts(&r.not_checked)
        ));
    }
    if r.quarantined > 0 {
        out.push(format!(
            "Quarantined by an earlier repair: {} item(s).",
            r.quarantined
        ));
    }
    if r.is_intact() {
        out.push("No damage found.".into());
        return out.join("\n");
    }
    out.push(format!("DAMAGED: {} problem(s):", r.damage.len()));
    for d in &r.damage {
        let record = d
            .record
            .as_deref()
            .map(|x| format!(" of record {}", x.get(..12).unwrap_or(x)))
            .unwrap_or_default();
        let named = names.words(
            d.record.as_deref(),
            d.section.as_deref(),
            d.author.as_deref(),
        );
        out.push(format!(
            "  - {}{record}{named}: {}. Repair: {}.",
            d.item, d.problem, d.repair
        ));
    }
    for b in &r.broken_logs {
        let named = names.words(Some(&b.record), Some(&b.section), Some(&b.author));
        out.push(format!(
            "  - log of author {} in section {}{named}: verified up to bundle {}{}.",
            b.author.get(..12).unwrap_or(&b.author),
            b.section.get(..12).unwrap_or(&b.section),
            b.verified,
            b.head
                .map(|h| format!(" of {h}"))
                .unwrap_or_else(|| " (its head is unreadable)".into())
        ));
    }
    if let Some(why) = &names.locked {
        out.push(format!("Sections and authors are shown by id: {why}."));
    }
    out.push("Run `hearth store repair` (with the daemon stopped) to keep what verifies.".into());
    out.join("\n")
}

fn repair_text(rep: &RepairReport) -> String {
    let mut out = Vec::new();
    if rep.before.is_intact() {
        out.push("Nothing to repair: no damage found.".to_string());
    } else {
        out.push(format!(
            "Repaired: {} damaged item(s) moved to quarantine, {} log head(s) set back to \
             their last verified bundle, in one atomic write.",
            rep.quarantined, rep.heads_moved
        ));
        out.push(
            "Everything that verifies was kept. The next `hearth sync` (or the running \
             daemon) fetches the missing bundles from peers or relays."
                .into(),
        );
    }
    out.push(if rep.after.is_intact() {
        "The store checks clean now.".into()
    } else {
        format!(
            "Still damaged: {} problem(s) (see `hearth store check`).",
            rep.after.damage.len()
        )
    });
    out.join("\n")
}
