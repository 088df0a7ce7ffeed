//! `hearth store check` and `hearth store repair`: find what a damaged store still holds
//! intact, and make it open again (the engine is `hearth_core::record::check`).
//!
//! `check` only reads: with a daemon running it runs inside the daemon, on its open store.
//! `repair` writes one atomic batch and needs the store to itself: inside the daemon it is
//! refused, and a store locked by a daemon that does not answer is reported as such.

use crate::app::Ctx;
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use clap::Subcommand;
use hearth_core::record::{RepairReport, StoreReport, check_store, repair_store};
use hearth_core::store::StoreError;

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
        return Ok(d.store.clone());
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
    let report = check_store(&open(ctx)?).map_err(|e| store_failure(ctx, e))?;
    ctx.print(json_of(&report), || report_text(&report));
    damaged_failure(&report)
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

fn report_text(r: &StoreReport) -> String {
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
        out.push(format!(
            "  - {}{record}: {}. Repair: {}.",
            d.item, d.problem, d.repair
        ));
    }
    for b in &r.broken_logs {
        out.push(format!(
            "  - log of author {} in section {}: verified up to bundle {}{}.",
            b.author.get(..12).unwrap_or(&b.author),
            b.section.get(..12).unwrap_or(&b.section),
            b.verified,
            b.head
                .map(|h| format!(" of {h}"))
                .unwrap_or_else(|| " (its head is unreadable)".into())
        ));
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
