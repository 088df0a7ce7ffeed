//! `hearth audit`: who looked at the patient's record, in plain words, newest first, and
//! `hearth audit verify`, which checks the whole log (see [`hearth_core::audit`]).

use crate::app::audit::{Line, Names, checked_log, line, problem};
use crate::app::{Ctx, invalid, now};
use crate::fail::{Failure, code};
use clap::{Args, Subcommand};
use hearth_core::ids::PeerKey;
use hearth_core::time::Timestamp;
use serde_json::json;

/// `hearth audit …`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// What to do (default: list the log).
    #[command(subcommand)]
    pub cmd: Option<AuditCommand>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events by or about this peer (its peer id), or whose name contains this text.
    #[arg(long, value_name = "PEER")]
    pub who: Option<String>,
}

/// `hearth audit verify`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole log: every event signed by its writer, numbered without gaps, linked
    /// to the one before, and every peer that received data reporting its reads. Exits 6 if
    /// anything is wrong.
    Verify,
}

/// Runs `hearth audit [verify]`.
pub fn audit(ctx: &Ctx, args: AuditArgs) -> Result<(), Failure> {
    let since = args
        .since
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| invalid("--since: give a time such as 2026-12-01T00:00:00Z"))
        })
        .transpose()?;
    let who = args.who.as_deref().map(str::trim).filter(|w| !w.is_empty());
    if args.who.is_some() && who.is_none() {
        return Err(invalid("--who: give a peer id or part of a name"));
    }
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let t = now();
    let (mut rec, verified) = checked_log(&vault, &identity, t)?;
    let names = Names::of(&mut rec, &identity, t);
    let problems: Vec<serde_json::Value> = verified
        .problems
        .iter()
        .map(|p| problem(p, &names))
        .collect();
    match args.cmd {
        Some(AuditCommand::Verify) => {
            let writers: std::collections::BTreeSet<PeerKey> =
                verified.events.iter().map(|e| e.event().writer).collect();
            let whole = verified.is_whole();
            ctx.print(
                json!({"whole": whole, "events": verified.events.len(), "writers": writers.len(), "problems": problems}),
                || {
                    if whole {
                        format!(
                            "The audit log is whole: {} events from {} writers, each signed, \
                             numbered without gaps and linked to the one before.",
                            verified.events.len(),
                            writers.len()
                        )
                    } else {
                        let mut s = format!(
                            "The audit log has {} problem(s):",
                            verified.problems.len()
                        );
                        for p in &problems {
                            s.push_str(&format!("\n  - {}", p["words"].as_str().unwrap_or("")));
                        }
                        s
                    }
                },
            );
            if !whole {
                return Err(Failure::new(
                    code::INTEGRITY,
                    "the audit log is not whole (see above)",
                ));
            }
            Ok(())
        }
        None => {
            let peer: Option<PeerKey> = who.and_then(|w| w.parse().ok());
            let mut lines: Vec<Line> = verified
                .events
                .iter()
                .map(|e| line(e, &names))
                .filter(|l| since.is_none_or(|s| l.at >= s))
                .filter(|l| match (peer, who) {
                    (Some(p), _) => l.writer == p || l.subject == p,
                    (None, Some(text)) => {
                        let text = text.to_lowercase();
                        [&l.writer, &l.subject]
                            .iter()
                            .any(|p| names.who(p).0.to_lowercase().contains(&text))
                    }
                    (None, None) => true,
                })
                .collect();
            // Emergency uses first, then newest first.
            lines.sort_by_key(|l| (!l.emergency, std::cmp::Reverse(l.at)));
            let events: Vec<&serde_json::Value> = lines.iter().map(|l| &l.json).collect();
            let open = crate::app::audit::open_emergencies(&mut rec, &names, t);
            ctx.print(
                json!({"record_id": rec.id(), "whole": verified.is_whole(), "problems": problems,
                       "emergency": open.iter().map(|(j, _)| j).collect::<Vec<_>>(), "events": events}),
                || {
                    let mut s = String::new();
                    for (_, w) in &open {
                        s.push_str(w);
                        s.push('\n');
                    }
                    for p in &problems {
                        s.push_str(&format!(
                            "WARNING: {}\n",
                            p["words"].as_str().unwrap_or("")
                        ));
                    }
                    if lines.is_empty() {
                        s.push_str("Nobody else has received or read your record yet.");
                    }
                    for l in &lines {
                        s.push_str(&l.words);
                        s.push('\n');
                    }
                    s.trim_end().to_string()
                },
            );
            Ok(())
        }
    }
}
