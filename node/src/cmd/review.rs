//! `hearth review`: writes held for the patient's review (see
//! [`hearth_core::record::HeldWrite`]), and the patient's decisions on them.
//!
//! A write is held when its author's grant allowed it at the time the write declares but had
//! expired or been revoked when this node received it. The listing shows what this node can
//! verify: the signing key (and, where the patient holds a verified credential for it, the
//! name), the time this node received the write, and the section; the declared time is shown
//! as the author's claim. Decisions are items of the auth document, signed by the patient, so
//! every node then accepts (or refuses) that exact bundle.

use crate::app::people::verified_name;
use crate::app::{Ctx, now, os_rng};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use clap::Subcommand;
use hearth_core::ids::RecordId;
use hearth_core::record::{Decision, HeldWrite, OpenRecord, Vault};
use hearth_core::time::Timestamp;
use serde_json::{Value, json};

/// `hearth review …`.
#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// List the writes held for your review (the default).
    List,
    /// Accept a held write (and the held writes before it by the same author in that
    /// section): it is applied, and every node accepts it (device holding the record root).
    Accept {
        /// The write's id (its hash, or a unique prefix of at least 8 characters).
        id: String,
    },
    /// Reject a held write (and the held writes after it by the same author in that
    /// section): it is dropped, and every node refuses it (device holding the record root).
    Reject {
        /// The write's id (its hash, or a unique prefix of at least 8 characters).
        id: String,
    },
}

/// Runs `hearth review [list|accept ID|reject ID]`.
pub fn review(ctx: &Ctx, cmd: Option<ReviewCommand>) -> Result<(), Failure> {
    match cmd.unwrap_or(ReviewCommand::List) {
        ReviewCommand::List => list(ctx),
        ReviewCommand::Accept { id } => decide(ctx, &id, Decision::Accept),
        ReviewCommand::Reject { id } => decide(ctx, &id, Decision::Reject),
    }
}

/// One held write as JSON and as a line.
fn describe(
    h: &HeldWrite,
    rec: Option<&mut OpenRecord<'_, SledStore>>,
    t: Timestamp,
) -> (Value, String) {
    let (section, name) = match rec {
        Some(rec) => {
            let section = rec.directory().get(&h.section).map(ToString::to_string);
            (section, verified_name(rec, &h.author, t))
        }
        None => (None, None),
    };
    let section_words = section.clone().unwrap_or_else(|| h.section.to_string());
    let who = match &name {
        Some(n) => format!("{} (verified: {n})", h.author),
        None => format!("{} (no verified credential)", h.author),
    };
    let why = match h.reason.as_str() {
        "expired" => "the grant expired before it arrived",
        "revoked" => "the grant was revoked before it arrived",
        _ => "it follows a held write",
    };
    (
        json!({
            "id": h.id.to_string(),
            "record_id": h.record,
            "section": section,
            "section_id": h.section,
            "author": h.author,
            "author_name": name,
            "seq": h.seq,
            "received": h.received,
            "declared": h.declared,
            "reason": h.reason.as_str(),
            "bytes": h.bytes,
        }),
        format!(
            "{}\n  by {who}\n  in {section_words}, received {}; says it was written {} (the \
             author's claim)\n  held: {why}",
            h.id, h.received, h.declared
        ),
    )
}

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let t = now();
    let held = vault.held_writes()?;
    let mut rec = match identity.record_id() {
        Some(rid) => Some(vault.open_record(&identity, &rid)?),
        None => None,
    };
    let (items, lines): (Vec<Value>, Vec<String>) = held
        .iter()
        .map(|h| {
            let mine = rec.as_mut().filter(|r| r.id() == h.record);
            describe(h, mine, t)
        })
        .unzip();
    ctx.print(json!({ "held": items }), || {
        if lines.is_empty() {
            if identity.record_id().is_some() {
                "No writes await your review.".to_string()
            } else {
                "No writes held: late writes are held on the patient's root device only."
                    .to_string()
            }
        } else {
            let n = lines.len();
            format!(
                "{n} write{} await{} your review (hearth review accept|reject ID):\n\n{}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" },
                lines.join("\n\n")
            )
        }
    });
    Ok(())
}

fn decide(ctx: &Ctx, id: &str, decision: Decision) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let rid: RecordId = identity.record_id().ok_or_else(|| {
        Failure::new(
            code::REFUSED,
            "only the patient decides on held writes, on the device holding the record root",
        )
    })?;
    let vault: Vault<SledStore> = ctx.vault()?;
    if vault.held_write(id)?.is_none_or(|(h, _)| h.record != rid) {
        return Err(Failure::new(
            code::NOT_FOUND,
            "no held write with that id (see hearth review)",
        ));
    }
    let mut rec = vault.open_record(&identity, &rid)?;
    let t = now();
    let (decided, settled) = rec.decide_held(id, decision, t, &mut os_rng())?;
    let ids: Vec<String> = decided.iter().map(|h| h.id.to_string()).collect();
    ctx.print(
        json!({
            "decision": decision.as_str(),
            "decided": ids,
            "applied": settled.applied,
            "dropped": settled.dropped,
            "not_applied": settled.refused,
        }),
        || {
            let n = decided.len();
            let s = if n == 1 { "" } else { "s" };
            match decision {
                Decision::Accept => {
                    let mut line = format!(
                        "Accepted {n} held write{s}; {} applied to the record. Every node now \
                         accepts {}.",
                        settled.applied,
                        if n == 1 { "it" } else { "them" }
                    );
                    if !settled.refused.is_empty() {
                        line.push_str(&format!(
                            "\nNot applied yet: {}",
                            settled.refused.join("; ")
                        ));
                    }
                    line
                }
                Decision::Reject => {
                    format!("Rejected {n} held write{s}: dropped here, and refused by every node.")
                }
            }
        },
    );
    Ok(())
}
