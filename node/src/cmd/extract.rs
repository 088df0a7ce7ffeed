//! `hearth consent` and `hearth extract` (issue #5): the patient's research and planning
//! choices, de-identified contributions, and the recipient's counts. The logic (choices,
//! pseudonyms, what a contribution holds, signatures, suppression) is pure and lives in
//! [`hearth_core::extract`]; this module reads and writes the ledger and the files.
//!
//! Where things are kept, in the patient's private consent ledger (see [`hearth_core::ledger`]):
//! `consent/<purpose>/<time>-<random>` for every choice (signed by the record root key), and
//! `contribution/<id>` for every contribution made (recipient, purpose, time, id, pseudonym;
//! never the content).
//!
//! `extract aggregate` touches no store and needs no passphrase: it checks files against the
//! recipient's peer id (`--as`, or this node's), so it runs beside a running daemon and on a
//! machine with no node at all.

use crate::app::parse::{parse_peer, parse_recipient};
use crate::app::{Ctx, invalid, now, os_rng, patient_record, refused};
use crate::fail::{Failure, code};
use crate::sled_store::SledStore;
use clap::{Args, Subcommand, ValueEnum};
use hearth_core::extract::{
    Aggregator, ConsentChoice, Consents, Contribution, ContributionRecord, Dimension, ExtractError,
    ExtractPurpose, MAX_FILE_BYTES, Suppression,
};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::keys::Identity;
use hearth_core::record::{OpenRecord, SectionView, Vault};
use hearth_core::section::{Label, SectionClass};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A secondary use of the record.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PurposeArg {
    /// Research.
    Research,
    /// Planning and commissioning of services.
    Planning,
}

impl From<PurposeArg> for ExtractPurpose {
    fn from(p: PurposeArg) -> ExtractPurpose {
        match p {
            PurposeArg::Research => ExtractPurpose::Research,
            PurposeArg::Planning => ExtractPurpose::Planning,
        }
    }
}

/// Opt in or out.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnOff {
    /// Opt in.
    On,
    /// Opt out.
    Off,
}

/// `hearth consent [PURPOSE on|off]`.
#[derive(Args, Debug)]
pub struct ConsentArgs {
    /// research or planning; without it, your current choices are shown.
    #[arg(value_enum, requires = "choice")]
    pub purpose: Option<PurposeArg>,
    /// on (opt in) or off (opt out). Both are off until you choose.
    #[arg(value_enum)]
    pub choice: Option<OnOff>,
}

/// `hearth extract …`.
#[derive(Subcommand, Debug)]
pub enum ExtractCommand {
    /// Write a signed, de-identified contribution of your record for one recipient and purpose
    /// (patient; only after `hearth consent PURPOSE on`). It is recorded in your consent ledger.
    Contribute(ContributeArgs),
    /// Count contributions received (recipient): checks every file, then prints counts grouped
    /// by the dimensions asked, small counts suppressed. Needs no passphrase.
    Aggregate(AggregateArgs),
}

/// `hearth extract contribute`.
#[derive(Args, Debug)]
pub struct ContributeArgs {
    /// The recipient: its node's peer id, or its contact card (HEARTH1I…).
    #[arg(long, value_name = "RECIPIENT")]
    pub to: String,
    /// research or planning.
    #[arg(long, value_enum)]
    pub purpose: PurposeArg,
    /// Where to write the contribution (a new file).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `hearth extract aggregate`.
#[derive(Args, Debug)]
pub struct AggregateArgs {
    /// The contribution files.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Group by these, comma-separated: age-band, age-band-10, gender, postcode-district,
    /// postcode-area, condition, medication.
    #[arg(long, value_name = "DIMS")]
    pub by: String,
    /// Counts from 1 to N-1 are shown as `*` (0 or 1: none are).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub suppress_below: u64,
    /// Other counts are rounded to the nearest multiple of M (0 or 1: no rounding).
    #[arg(long, default_value_t = 5, value_name = "M")]
    pub round_to: u64,
    /// Count as this recipient (a peer id) instead of this node.
    #[arg(long = "as", value_name = "PEER")]
    pub as_peer: Option<String>,
    /// Accept only contributions for this purpose (default: the first file's).
    #[arg(long, value_enum)]
    pub purpose: Option<PurposeArg>,
}

/// The most contribution files one aggregation reads.
const MAX_FILES: usize = 1_000_000;
/// The most dimensions one aggregation groups by.
const MAX_DIMS: usize = 4;

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string(v).map_err(|e| Failure::new(code::IO, format!("encoding: {e}")))
}

/// The patient's own record and its id (patient nodes only).
fn own_record<'v>(
    vault: &'v Vault<SledStore>,
    identity: &'v Identity,
) -> Result<(RecordId, OpenRecord<'v, SledStore>), Failure> {
    let rec = patient_record(
        vault,
        identity,
        "only a patient node holds a record to make these choices about",
    )?;
    Ok((rec.id(), rec))
}

fn consents(rec: &mut OpenRecord<'_, SledStore>, rid: &RecordId) -> Consents {
    Consents::from_ledger(rid, &rec.ledger_items(hearth_core::extract::CONSENT_PREFIX))
}

fn choice_json(c: &Consents, p: ExtractPurpose) -> Value {
    let cur = c.current(p);
    json!({"opted_in": c.allows(p), "since": cur.map(|c| c.at), "chosen": cur.is_some()})
}

fn title(p: ExtractPurpose) -> &'static str {
    match p {
        ExtractPurpose::Research => "Research",
        ExtractPurpose::Planning => "Planning",
    }
}

fn choice_words(c: &Consents, p: ExtractPurpose) -> String {
    let name = title(p);
    match c.current(p) {
        Some(ch) if ch.opted_in => format!("{name}: on since {}", ch.at),
        Some(ch) => format!("{name}: off since {}", ch.at),
        None => format!("{name}: off (you have not chosen; off is the default)"),
    }
}

/// `hearth consent [research|planning on|off]` (patient).
pub fn consent(ctx: &Ctx, args: ConsentArgs) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let (rid, mut rec) = own_record(&vault, &identity)?;
    let current = consents(&mut rec, &rid);
    let (Some(purpose), Some(choice)) = (args.purpose, args.choice) else {
        let made = rec
            .ledger_items(hearth_core::extract::CONTRIBUTION_PREFIX)
            .len();
        let [r, p] = ExtractPurpose::ALL;
        ctx.print(
            json!({"research": choice_json(&current, r), "planning": choice_json(&current, p), "contributions": made}),
            || {
                format!(
                    "{}\n{}\nContributions made: {made} (hearth grant list shows each one).",
                    choice_words(&current, r),
                    choice_words(&current, p)
                )
            },
        );
        return Ok(());
    };
    let purpose = ExtractPurpose::from(purpose);
    let opted_in = matches!(choice, OnOff::On);
    let word = if opted_in { "on" } else { "off" };
    if current
        .current(purpose)
        .is_some_and(|c| c.opted_in == opted_in)
    {
        ctx.print(
            json!({"purpose": purpose, "opted_in": opted_in, "changed": false}),
            || format!("{}: already {word}; nothing changed.", title(purpose)),
        );
        return Ok(());
    }
    let root = identity
        .root_key()
        .ok_or_else(|| refused("only a patient node makes these choices"))?;
    let t = now();
    let mut rng = os_rng();
    let c = ConsentChoice::sign(root, &rid, purpose, opted_in, t);
    rec.put_ledger_items(vec![(c.ledger_key(&mut rng), to_json(&c)?)], t, &mut rng)?;
    ctx.print(
        json!({"purpose": purpose, "opted_in": opted_in, "changed": true, "at": t}),
        || {
            if opted_in {
                format!(
                    "You opted in to {purpose} use of your record ({}). Nothing is sent by \
                     itself: each de-identified contribution is made by `hearth extract \
                     contribute` and kept in your consent ledger; `hearth consent {purpose} off` \
                     stops further ones.",
                    purpose.words()
                )
            } else {
                format!(
                    "You opted out of {purpose} use of your record: no further contributions \
                     will be made. Contributions already given cannot be recalled."
                )
            }
        },
    );
    Ok(())
}

/// The sections a contribution reads, read in full (an unreadable one stops the command:
/// a contribution is never made from part of the record).
fn contribution_sections(rec: &mut OpenRecord<'_, SledStore>) -> Result<Vec<SectionView>, Failure> {
    let mut views = Vec::new();
    for s in rec.sections() {
        if s.name.label == Label::General
            && matches!(
                s.name.class,
                SectionClass::Demographics | SectionClass::Conditions | SectionClass::Medications
            )
        {
            views.push(rec.show(&s.name)?);
        }
    }
    Ok(views)
}

/// A temporary file beside `out`, written and synced.
fn write_temp(out: &Path, bytes: &[u8]) -> Result<PathBuf, Failure> {
    let name = out
        .file_name()
        .ok_or_else(|| invalid("--out must name a file"))?;
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).map_err(|_| Failure::new(code::IO, "no randomness"))?;
    let tmp = out.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        data_encoding::HEXLOWER.encode(&r)
    ));
    let err = |e: std::io::Error| Failure::new(code::IO, format!("writing {}: {e}", out.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(tmp)
}

/// `hearth extract contribute` (patient).
fn contribute(ctx: &Ctx, args: ContributeArgs) -> Result<(), Failure> {
    // Check the arguments before the passphrase.
    let (recipient, card) = parse_recipient(&args.to)?;
    let purpose = ExtractPurpose::from(args.purpose);
    if args.out.exists() {
        return Err(refused(format!(
            "{} already exists; choose a new file",
            args.out.display()
        )));
    }
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let (rid, mut rec) = own_record(&vault, &identity)?;
    let root = identity
        .root_key()
        .ok_or_else(|| refused("only a patient node contributes its record"))?;
    let current = consents(&mut rec, &rid);
    if !current.allows(purpose) {
        return Err(refused(format!(
            "you have not opted in to {purpose} use of your record: nothing was written \
             (`hearth consent {purpose} on` first)"
        )));
    }
    let views = contribution_sections(&mut rec)?;
    let t = now();
    let mut rng = os_rng();
    let c = Contribution::create(root, &current, recipient, purpose, &views, t, &mut rng).map_err(
        |e| match e {
            ExtractError::NotOptedIn(_) => refused(e),
            other => Failure::new(code::IO, other),
        },
    )?;
    drop(views);
    let name = card.as_ref().map(|c| c.body().name.clone());
    let entry = ContributionRecord::of(&c, name.clone(), t);
    // The file is written (synced, under a temporary name) before the ledger records it, and
    // appears under its name only once recorded: a failure on either side leaves neither.
    let tmp = write_temp(&args.out, &c.to_file())?;
    if let Err(f) = to_json(&entry).and_then(|v| {
        rec.put_ledger_items(vec![(entry.ledger_key(), v)], t, &mut rng)
            .map_err(Failure::from)
    }) {
        let _ = std::fs::remove_file(&tmp);
        return Err(f);
    }
    std::fs::rename(&tmp, &args.out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(
            code::IO,
            format!(
                "the contribution {} is in your ledger but {} could not be written: {e}",
                entry.id,
                args.out.display()
            ),
        )
    })?;
    let b = c.body();
    let who = name.clone().unwrap_or_else(|| recipient.to_string());
    ctx.print(
        json!({"id": b.id, "recipient": recipient, "recipient_name": name, "purpose": purpose,
               "created": b.created, "pseudonym": b.pseudonym, "out": args.out}),
        || {
            format!(
                "Wrote a de-identified contribution for {who} ({}) to {}.\n  id:        {}\n  \
                 pseudonym: {} (the same every time for this recipient and purpose)\n\
                 It is recorded in your consent ledger (hearth grant list).",
                purpose.words(),
                args.out.display(),
                b.id,
                b.pseudonym
            )
        },
    );
    Ok(())
}

fn read_contribution(path: &Path) -> Result<Contribution, Failure> {
    let shown = path.display();
    let f = std::fs::File::open(path).map_err(|e| {
        let c = if e.kind() == std::io::ErrorKind::NotFound {
            code::NOT_FOUND
        } else {
            code::IO
        };
        Failure::new(c, format!("{shown}: cannot read it: {e}"))
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::new(code::IO, format!("{shown}: cannot read it: {e}")))?;
    Contribution::from_file(&bytes).map_err(|e| refusal(path, None, e))
}

/// A refused file, named, with the exit code for the kind of refusal.
fn refusal(path: &Path, earlier: Option<&Path>, e: ExtractError) -> Failure {
    let shown = path.display();
    let c = match e {
        ExtractError::Malformed(_) | ExtractError::TooLarge => code::INVALID,
        ExtractError::BadSignature | ExtractError::Tampered | ExtractError::Invalid(_) => {
            code::INTEGRITY
        }
        _ => code::REFUSED,
    };
    let msg = match (&e, earlier) {
        (ExtractError::DuplicateContribution { .. }, Some(p)) => format!(
            "{shown}: refused: the same contribution as {} (duplicate)",
            p.display()
        ),
        (ExtractError::DuplicatePseudonym { .. }, Some(p)) => format!(
            "{shown}: refused: a second contribution from the record that made {} (same pseudonym)",
            p.display()
        ),
        _ => format!("{shown}: refused: {e}"),
    };
    Failure::new(c, msg)
}

fn parse_dims(s: &str) -> Result<Vec<Dimension>, Failure> {
    let mut dims: Vec<Dimension> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let d: Dimension = part.parse().map_err(|e| invalid(format!("--by: {e}")))?;
        if dims.contains(&d) {
            return Err(invalid(format!("--by: {d} is given twice")));
        }
        dims.push(d);
    }
    if dims.is_empty() {
        return Err(invalid(
            "--by needs at least one dimension, e.g. age-band,gender",
        ));
    }
    if dims.len() > MAX_DIMS {
        return Err(invalid(format!(
            "--by: at most {MAX_DIMS} dimensions (more make every group small)"
        )));
    }
    Ok(dims)
}

/// `hearth extract aggregate` (recipient).
fn aggregate(ctx: &Ctx, args: AggregateArgs) -> Result<(), Failure> {
    let dims = parse_dims(&args.by)?;
    if args.files.len() > MAX_FILES {
        return Err(invalid(format!("at most {MAX_FILES} files at once")));
    }
    let recipient: PeerKey = match &args.as_peer {
        Some(p) => parse_peer(p).map_err(|f| invalid(format!("--as: {}", f.message)))?,
        None => {
            ctx.node_info()
                .map_err(|f| {
                    Failure::new(
                        f.code,
                        format!("{}; or name the recipient with --as PEER", f.message),
                    )
                })?
                .peer_id
        }
    };
    let rule = Suppression {
        below: args.suppress_below,
        round_to: args.round_to,
    };
    let mut agg = Aggregator::new(recipient, args.purpose.map(ExtractPurpose::from));
    for path in &args.files {
        let c = read_contribution(path)?;
        agg.add(c).map_err(|e| {
            let earlier = match &e {
                ExtractError::DuplicateContribution { earlier }
                | ExtractError::DuplicatePseudonym { earlier } => {
                    args.files.get(*earlier).map(PathBuf::as_path)
                }
                _ => None,
            };
            refusal(path, earlier, e)
        })?;
    }
    let table = agg.finish(&dims, rule);
    let names: Vec<&str> = dims.iter().map(|d| d.as_str()).collect();
    let rows: Vec<Value> = table
        .rows
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (d, v) in names.iter().zip(&r.values) {
                o.insert((*d).to_string(), json!(v));
            }
            o.insert("count".into(), json!(r.count));
            Value::Object(o)
        })
        .collect();
    ctx.print(
        json!({
            "recipient": recipient, "purpose": table.purpose, "dimensions": names,
            "suppress_below": rule.below, "round_to": rule.round_to,
            "total": table.total, "rows": rows,
        }),
        || table_text(&table, &names, recipient),
    );
    Ok(())
}

fn table_text(t: &hearth_core::extract::Table, names: &[&str], recipient: PeerKey) -> String {
    let mut head: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
    head.push("count".into());
    let body: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            let mut v = r.values.clone();
            v.push(r.count.to_string());
            v
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let rule = t.suppression;
    let suppressed = if rule.below <= 1 {
        "nothing suppressed".to_string()
    } else {
        format!("counts 1-{} shown as *", rule.below - 1)
    };
    let rounded = if rule.round_to <= 1 {
        "others exact".to_string()
    } else {
        format!("others rounded to the nearest {}", rule.round_to)
    };
    let mut s = format!(
        "{} contributions for {recipient}: {} ({suppressed}, {rounded})",
        t.purpose.map_or("No", title),
        t.total,
    );
    s.push('\n');
    s.push_str(&line(&head));
    for r in &body {
        s.push('\n');
        s.push_str(&line(r));
    }
    s
}

/// `hearth extract …`.
pub fn extract(ctx: &Ctx, cmd: ExtractCommand) -> Result<(), Failure> {
    match cmd {
        ExtractCommand::Contribute(args) => contribute(ctx, args),
        ExtractCommand::Aggregate(args) => aggregate(ctx, args),
    }
}
