//! Opening a store as a command would, measured in a fresh child process of this binary
//! (`__probe WHAT PATH …`). The modules that use it have just built thousands of records in
//! memory: in their own process the allocator would hand that freed memory back to the
//! opening, and a memory figure would see nothing. A child starts clean, opens cold (from the
//! page cache: the files were just written) and measures only what it is asked to.
//!
//! Each probe prints `<milliseconds> <peak growth MiB>` on standard output; [`measure`] runs
//! one probe in several children, one after another, and keeps the medians.

use crate::holding;
use crate::measure::{median, ms, peak_growth_mib};
use anyhow::{Context, Result, bail, ensure};
use hearth_core::ids::RecordId;
use hearth_core::record::Vault;
use hearth_core::section::SectionName;
use hearth_node::sled_store::SledStore;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What a child measures.
pub(crate) enum Probe {
    /// Open the professional's store in `dir` and list what it holds as `hearth patients`
    /// does ([`holding::list`]); it holds `expect` records.
    List { dir: PathBuf, expect: usize },
    /// sled alone: open the store in `dir` and read every key and value in it.
    Scan { dir: PathBuf },
    /// Open the store in `dir`, then the professional's replica of `record`, and read its
    /// `notes`, which hold `expect` entries.
    Read {
        dir: PathBuf,
        record: RecordId,
        expect: usize,
    },
    /// automerge loading the document saved in `file` (read into memory first).
    Load { file: PathBuf },
}

/// A probe's medians over its runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Milliseconds.
    pub(crate) ms: f64,
    /// Growth of the peak resident set during the probe, MiB.
    pub(crate) peak_mib: f64,
}

impl Probe {
    /// The arguments of `__probe` for this probe.
    fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        match self {
            Probe::List { dir, expect } => {
                vec![
                    "list".into(),
                    path(dir),
                    "--expect".into(),
                    expect.to_string(),
                ]
            }
            Probe::Scan { dir } => vec!["scan".into(), path(dir)],
            Probe::Read {
                dir,
                record,
                expect,
            } => vec![
                "read".into(),
                path(dir),
                "--record".into(),
                record.to_string(),
                "--expect".into(),
                expect.to_string(),
            ],
            Probe::Load { file } => vec!["load".into(), path(file)],
        }
    }
}

/// Runs `probe` in `runs` children, one after another: the medians of their times and peaks.
pub(crate) fn measure(probe: &Probe, runs: usize) -> Result<Sample> {
    let mut args = vec!["__probe".to_string()];
    args.extend(probe.args());
    let mut samples = Vec::new();
    for _ in 0..runs {
        let (ms, peak_mib) = run_child(&args)?;
        samples.push(Sample { ms, peak_mib });
    }
    Ok(median_sample(samples))
}

/// Runs this binary with `args` (one of its internal commands that prints
/// `<milliseconds> <peak growth MiB>`) and reads the two numbers.
pub(crate) fn run_child(args: &[String]) -> Result<(f64, f64)> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .output()
        .with_context(|| format!("run {args:?}"))?;
    ensure!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next()) {
        (Some(t), Some(m)) => Ok((t?, m?)),
        _ => bail!("{args:?} printed {text:?}"),
    }
}

/// The medians of `samples`' times and of their peaks.
pub(crate) fn median_sample(samples: Vec<Sample>) -> Sample {
    Sample {
        ms: median(samples.iter().map(|s| s.ms).collect()),
        peak_mib: median(samples.iter().map(|s| s.peak_mib).collect()),
    }
}

/// The child's side of `__probe`: measures once and prints `<ms> <peak growth MiB>`.
pub(crate) fn child(what: &str, path: &Path, record: Option<&str>, expect: usize) -> Result<()> {
    let (elapsed, peak) = match what {
        "list" => {
            let t = Instant::now();
            let (listed, peak) = peak_growth_mib(|| -> Result<usize> {
                let vault = Vault::open(SledStore::open(path)?)?;
                let listing = holding::list(&vault, &holding::professional())?;
                // What the command prints, made but not printed.
                black_box(listing.to_string());
                // Only those whose name was read: the grants' section was decrypted.
                Ok(listing["patients"]
                    .as_array()
                    .map_or(0, |l| l.iter().filter(|p| p["name"].is_string()).count()))
            });
            let elapsed = t.elapsed();
            let listed = listed?;
            ensure!(
                listed == expect,
                "listed {listed} named records of {expect}"
            );
            (elapsed, peak)
        }
        "scan" => {
            let t = Instant::now();
            let (bytes, peak) = peak_growth_mib(|| -> Result<usize> {
                let db = sled::Config::new().path(path).flush_every_ms(None).open()?;
                let mut bytes = 0;
                for kv in db.iter() {
                    let (k, v) = kv?;
                    bytes += k.len() + v.len();
                }
                Ok(bytes)
            });
            let elapsed = t.elapsed();
            black_box(bytes?);
            (elapsed, peak)
        }
        "read" => {
            let rid: RecordId = record.context("--record")?.parse()?;
            let notes: SectionName = "notes".parse()?;
            let gp = holding::professional();
            let t = Instant::now();
            let (read, peak) = peak_growth_mib(|| -> Result<usize> {
                let vault = Vault::open(SledStore::open(path)?)?;
                let mut rec = vault.open_record(&gp, &rid)?;
                Ok(rec.show(&notes)?.entries.len())
            });
            let elapsed = t.elapsed();
            let read = read?;
            ensure!(read == expect, "read {read} entries of {expect}");
            (elapsed, peak)
        }
        "load" => {
            let bytes = std::fs::read(path)?;
            let t = Instant::now();
            let (doc, peak) = peak_growth_mib(|| automerge::AutoCommit::load(&bytes));
            let elapsed = t.elapsed();
            black_box(doc?);
            (elapsed, peak)
        }
        other => bail!("unknown probe {other}"),
    };
    println!("{} {peak}", ms(elapsed));
    Ok(())
}
