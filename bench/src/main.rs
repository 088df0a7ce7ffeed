//! # hearth-bench
//!
//! Hearth's one benchmark harness. Every figure is printed as one JSON line on standard output
//! (see [`report`]), beside a baseline measured in the same run wherever there is one, because
//! these machines are noisy and the ratio is what matters; people read standard error.
//!
//! ```sh
//! cargo run --release --locked -p hearth-bench -- [--quick] [--only NAME[,NAME…]] \
//!     [--compare FILE] [--out FILE]
//! ```
//!
//! Each module runs in its own process (this binary, `__module NAME`), as the separate
//! benchmarks it replaces did: memory figures see only their own module's heap, and one
//! module's background tasks cannot disturb the next. The `locate` module's `hearth` nodes are
//! this binary too (`__hearth ARGS…`, the `hearth` binary's `main`), and each FHIR phase runs
//! in a process of its own (`__fhir-phase`), as does each opening of a store that `holding`
//! and `curves` measure (`__probe`).

mod area;
mod audit;
mod automerge_base;
mod compare;
mod curves;
mod fhir;
mod foundation;
mod grants;
mod holding;
mod live;
mod live_command;
mod live_floor;
mod live_limit;
mod live_node;
mod live_stages;
mod locate;
mod measure;
mod probe;
mod relay;
mod report;
mod revocation;
mod store_tap;
mod sync;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use report::{Line, Report};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// A module of the harness: a former benchmark.
struct Module {
    /// The first part of its figures' names, and its name for `--only`.
    name: &'static str,
    /// What it measures, in a few words.
    about: &'static str,
    /// Measures and prints its figures; `true` for the small sizes of `--quick`.
    run: fn(&mut Report, bool) -> Result<()>,
}

/// Every module, in the order they run.
const MODULES: &[Module] = &[
    Module {
        name: "foundation",
        about: "bundle crypto, record adds, opening a record",
        run: foundation::run,
    },
    Module {
        name: "grants",
        about: "cold verification of a three-link grant chain",
        run: grants::run,
    },
    Module {
        name: "audit",
        about: "access receipts, audit verify",
        run: audit::run,
    },
    Module {
        name: "fhir",
        about: "FHIR import and export against serde_json",
        run: fhir::run,
    },
    Module {
        name: "sync",
        about: "initial and incremental sync in process, against automerge",
        run: sync::run,
    },
    Module {
        name: "live",
        about: "initial sync and an edit's delay over libp2p on loopback",
        run: live::run,
    },
    Module {
        name: "relay",
        about: "a relay's throughput, memory per connection, storage",
        run: relay::run,
    },
    Module {
        name: "locate",
        about: "finding a record's relays through Kademlia, real processes",
        run: locate::run,
    },
    Module {
        name: "revocation",
        about: "revocation to refusal and rekey across three live nodes",
        run: revocation::run,
    },
    Module {
        name: "holding",
        about: "a professional's node holding 10,000 records: open and list",
        run: holding::run,
    },
    Module {
        name: "curves",
        about: "cost curves against record size and records held",
        run: curves::run,
    },
    Module {
        name: "area",
        about: "an area of relays, patients and professionals grown in steps",
        run: area::run,
    },
];

/// Hearth's benchmark harness: each figure as one JSON line on standard output
/// (`{"name","value","unit","baseline","ratio","target","met"}`), every baseline measured in
/// the same run; progress on standard error.
#[derive(Parser)]
#[command(name = "hearth-bench", version)]
struct Cli {
    /// Small sizes: every module, in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Only these modules (comma-separated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// After the run, tell on standard error which figures got worse than those saved in FILE
    /// (JSON lines, such as docs/bench-baseline.jsonl) by more than the noise margin. Never
    /// fails the run.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// The noise margin of `--compare`: 0.3 is 30 %.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.3)]
    margin: f64,
    /// Also write the figures to FILE (JSON lines, as printed).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// The harness's own child processes.
#[derive(Subcommand)]
enum Internal {
    /// Runs one module and prints its figures.
    #[command(name = "__module", hide = true)]
    Module {
        /// The module.
        name: String,
        /// Small sizes.
        #[arg(long)]
        quick: bool,
    },
    /// Runs one FHIR phase and prints `<median ms> <peak growth MiB>`.
    #[command(name = "__fhir-phase", hide = true)]
    FhirPhase {
        /// parse, serialise, import or export.
        phase: String,
        /// The bundle.
        file: PathBuf,
        /// Runs (the median is printed).
        runs: usize,
        /// Resources in the bundle.
        n: usize,
    },
    /// Opens a store once and prints `<ms> <peak growth MiB>` (see `probe`).
    #[command(name = "__probe", hide = true)]
    Probe {
        /// list, scan, read or load.
        what: String,
        /// The store's folder (a saved document for load).
        path: PathBuf,
        /// The record to read.
        #[arg(long)]
        record: Option<String>,
        /// Records listed, or entries read.
        #[arg(long, default_value_t = 0)]
        expect: usize,
    },
}

fn main() -> ExitCode {
    // `hearth-bench __hearth ARGS…` is the `hearth` binary (the `locate` module's nodes).
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__hearth") {
        return hearth_node::main_with(std::iter::once("hearth".into()).chain(args));
    }
    let modules: String = MODULES
        .iter()
        .map(|m| format!("  {:<12}{}\n", m.name, m.about))
        .collect();
    let matches = Cli::command()
        .after_help(format!("Modules:\n{modules}"))
        .get_matches();
    let run = Cli::from_arg_matches(&matches)
        .map_err(anyhow::Error::from)
        .and_then(run);
    match run {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs what `cli` asks for.
fn run(cli: Cli) -> Result<ExitCode> {
    // The nodes in this process log as the daemon does (its filter and formatting), to
    // nowhere: without a subscriber, libp2p's spans would each go through `log` instead.
    // An edit's stages are recorded beside them (`live_stages`).
    hearth_node::logs::init_discarded_with(live_stages::layer());
    match cli.internal {
        Some(Internal::Module { name, quick }) => {
            let m = module(&name)?;
            (m.run)(&mut Report::new(m.name), quick)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Internal::FhirPhase {
            phase,
            file,
            runs,
            n,
        }) => {
            fhir::phase(&phase, &file, runs, n)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Internal::Probe {
            what,
            path,
            record,
            expect,
        }) => {
            probe::child(&what, &path, record.as_deref(), expect)?;
            Ok(ExitCode::SUCCESS)
        }
        None => harness(&cli),
    }
}

/// The module called `name`.
fn module(name: &str) -> Result<&'static Module> {
    MODULES.iter().find(|m| m.name == name).with_context(|| {
        let names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
        format!("no module {name:?}; the modules are {}", names.join(", "))
    })
}

/// Runs the chosen modules one after another, each in its own process; prints their figures,
/// writes `--out`, compares with `--compare`. Fails when a module failed (after running the
/// others), never because a figure got worse.
fn harness(cli: &Cli) -> Result<ExitCode> {
    let chosen: Vec<&Module> = if cli.only.is_empty() {
        MODULES.iter().collect()
    } else {
        cli.only
            .iter()
            .map(|n| module(n.trim()))
            .collect::<Result<_>>()?
    };
    // Read before the run, so that `--out` may name the same file.
    let saved = cli.compare.as_deref().map(compare::read_lines);
    let mode = if cli.quick { "quick" } else { "full" };
    eprintln!("hearth-bench ({mode} run): {}", environment());
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for m in chosen {
        eprintln!("== {}: {}", m.name, m.about);
        let t = Instant::now();
        if let Err(e) = run_child(m.name, cli.quick, &mut lines) {
            eprintln!("{}: FAILED: {e:#}", m.name);
            failed.push(m.name);
        }
        eprintln!("   ({} took {:.1} s)", m.name, t.elapsed().as_secs_f64());
    }
    eprintln!(
        "== {} figures in {:.1} s",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
    summarise_targets(&lines);
    if let Some(out) = &cli.out {
        write_lines(out, &lines)?;
    }
    // Informative: a missing or unreadable file is said, not fatal.
    match (saved, &cli.compare) {
        (Some(Ok(before)), Some(file)) => {
            compare::print(&compare::compare(&before, &lines), file, cli.margin);
        }
        (Some(Err(e)), _) => eprintln!("compare: {e:#}"),
        _ => {}
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Runs module `name` in a child process, passing its figures on to standard output as they
/// come (and to people on standard error) and collecting them in `lines`.
fn run_child(name: &str, quick: bool, lines: &mut Vec<Line>) -> Result<()> {
    let mut cmd = Command::new(std::env::current_exe().context("find this binary")?);
    cmd.args(["__module", name]);
    if quick {
        cmd.arg("--quick");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the module's process")?;
    let stdout = child.stdout.take().context("the module's output")?;
    for text in BufReader::new(stdout).lines() {
        let text = text?;
        match serde_json::from_str::<Line>(&text) {
            Ok(line) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")?;
                out.flush()?;
                eprintln!("   {}", line.human());
                lines.push(line);
            }
            // Anything else a module prints is for people: keep standard output parseable.
            Err(_) => eprintln!("   {name}: {text}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the module's process ended with {status}");
    }
    Ok(())
}

/// The machine, as far as it changes what the figures mean: cores and load.
fn environment() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} cores, load average {load}")
}

/// Says on standard error how many targets were met and which were missed.
fn summarise_targets(lines: &[Line]) {
    let missed: Vec<&str> = lines
        .iter()
        .filter(|l| l.met == Some(false))
        .map(|l| l.name.as_str())
        .collect();
    let met = lines.iter().filter(|l| l.met == Some(true)).count();
    eprint!("targets: {met} met, {} missed", missed.len());
    if missed.is_empty() {
        eprintln!();
    } else {
        eprintln!(": {}", missed.join(", "));
    }
}

/// Writes `lines` to `path`, one JSON line each.
fn write_lines(path: &Path, lines: &[Line]) -> Result<()> {
    let mut text = String::new();
    for l in lines {
        text += &serde_json::to_string(l)?;
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
