//! Cost curves (issue #16): how Hearth's costs grow with the size of a record and with the
//! number of records a professional's node holds, each point a figure with its same-run
//! baseline, and (in a full run, or when `HEARTH_BENCH_CURVES` names a folder) one SVG plot
//! per figure drawn by [`plot`].
//!
//! Against record size (entries in one section, a note a minute, as `sync` builds them): the
//! initial sync's time and bytes and an incremental one-entry sync against automerge's own
//! sync of the same notes; the patient's add of the entry before each of those syncs against
//! automerge's change of the same note in memory; the GP's store on disk against automerge's
//! saved document of the same notes; and opening the GP's replica cold and reading the
//! section, time and peak memory, against automerge loading that saved document, both in
//! fresh child processes ([`probe`]).
//!
//! Against records held (a professional's node built as `holding` builds it, grown from ten
//! records to ten thousand): opening the node and listing it as `hearth patients` does, time
//! and peak memory, against sled alone reading the same store; and the store on disk against
//! the bytes of its keys and values.

mod plot;

use crate::automerge_base;
use crate::holding::Builder;
use crate::measure::{disk_usage, ms, size_label};
use crate::probe::{self, Probe};
use crate::report::{Figure, Report};
use crate::sync::{self, Pair};
use anyhow::Result;
use hearth_core::store::Store;
use std::path::PathBuf;
use std::time::Instant;

/// The folder to draw the plots in, when not the default of a full run (`docs/curves`).
const PLOTS_ENV: &str = "HEARTH_BENCH_CURVES";

/// Child processes each opening is measured in; the medians are reported.
const RUNS: usize = 3;

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let (sizes, held): (&[usize], &[usize]) = if quick {
        (&[1_000, 2_000], &[10, 100])
    } else {
        (
            &[1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000],
            &[10, 100, 1_000, 10_000],
        )
    };
    let mut by_size = Curves::by_size();
    for &n in sizes {
        let t = Instant::now();
        record_size(&mut by_size, n)?;
        eprintln!(
            "  (a record of {n} entries measured in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    by_size.emit(r)?;
    let mut by_held = Curves::by_held();
    records_held(&mut by_held, held)?;
    by_held.emit(r)?;
    if let Some(dir) = plot_dir(quick) {
        std::fs::create_dir_all(&dir)?;
        for (_, c) in by_size.0.iter().chain(&by_held.0) {
            plot::draw(c, &dir)?;
        }
        eprintln!("  (plots drawn in {})", dir.display());
    }
    Ok(())
}

/// Where to draw the plots: the folder `HEARTH_BENCH_CURVES` names, else `docs/curves` in a
/// full run, else nowhere.
fn plot_dir(quick: bool) -> Option<PathBuf> {
    match std::env::var_os(PLOTS_ENV) {
        Some(dir) if !dir.is_empty() => Some(dir.into()),
        _ if !quick => Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/curves")),
        _ => None,
    }
}

/// One figure measured at several sizes: one plot.
pub(crate) struct Curve {
    /// The figure's name before the size (`initial_sync_ms`); the plot's file name.
    pub(crate) name: &'static str,
    /// The unit of the values.
    pub(crate) unit: &'static str,
    /// What is measured, as the plot's title.
    pub(crate) title: &'static str,
    /// What the sizes count.
    pub(crate) x_label: &'static str,
    /// What the baseline is, for the plot's legend.
    pub(crate) baseline: &'static str,
    /// (size, Hearth's value, the baseline's) at each size.
    pub(crate) points: Vec<(usize, f64, Option<f64>)>,
}

/// The curves of one axis, each with its key.
struct Curves(Vec<(Which, Curve)>);

/// Which curve of [`Curves::by_size`] or [`Curves::by_held`] a point belongs to.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    InitialMs,
    InitialBytes,
    IncrementalMs,
    AddMs,
    DiskMib,
    OpenReadMs,
    OpenReadPeak,
    HeldListMs,
    HeldListPeak,
    HeldDiskMib,
}

impl Curves {
    /// The curves against record size.
    fn by_size() -> Self {
        const X: &str = "entries in the record";
        const AM: &str = "automerge sync, in memory";
        Curves(vec![
            curve(
                Which::InitialMs,
                "initial_sync_ms",
                "ms",
                "Initial sync, GP from patient",
                X,
                AM,
            ),
            curve(
                Which::InitialBytes,
                "initial_sync_bytes",
                "B",
                "Initial sync: bytes on the wire",
                X,
                AM,
            ),
            curve(
                Which::IncrementalMs,
                "incremental_ms",
                "ms",
                "Incremental sync of one entry",
                X,
                AM,
            ),
            curve(
                Which::AddMs,
                "patient_add_ms",
                "ms",
                "The patient adds one entry (durably)",
                X,
                "automerge change, in memory",
            ),
            curve(
                Which::DiskMib,
                "disk_mib",
                "MiB",
                "The GP's store on disk",
                X,
                "automerge's saved document of the same notes",
            ),
            curve(
                Which::OpenReadMs,
                "open_read_ms",
                "ms",
                "Open the replica cold and read the section",
                X,
                "automerge load() of the same notes",
            ),
            curve(
                Which::OpenReadPeak,
                "open_read_peak_mib",
                "MiB",
                "Memory: peak growth to open and read",
                X,
                "automerge load() of the same notes",
            ),
        ])
    }

    /// The curves against records held.
    fn by_held() -> Self {
        const X: &str = "records held";
        const SCAN: &str = "sled: open and read every key";
        Curves(vec![
            curve(
                Which::HeldListMs,
                "held_open_list_ms",
                "ms",
                "Open the node and list its records",
                X,
                SCAN,
            ),
            curve(
                Which::HeldListPeak,
                "held_open_list_peak_mib",
                "MiB",
                "Memory: peak growth to open and list",
                X,
                SCAN,
            ),
            curve(
                Which::HeldDiskMib,
                "held_disk_mib",
                "MiB",
                "The node's store on disk",
                X,
                "its keys and values",
            ),
        ])
    }

    /// Adds a point to curve `which`.
    fn add(&mut self, which: Which, n: usize, value: f64, baseline: f64) {
        if let Some((_, c)) = self.0.iter_mut().find(|(w, _)| *w == which) {
            c.points.push((n, value, Some(baseline)));
        }
    }

    /// Prints every point as a figure, `name_size`.
    fn emit(&self, r: &mut Report) -> Result<()> {
        for (_, c) in &self.0 {
            for &(n, value, baseline) in &c.points {
                let mut f = Figure::new(format!("{}_{}", c.name, size_label(n)), value, c.unit);
                if let Some(b) = baseline {
                    f = f.baseline(b);
                }
                r.emit(f)?;
            }
        }
        Ok(())
    }
}

/// Curve `which`, without points yet.
fn curve(
    which: Which,
    name: &'static str,
    unit: &'static str,
    title: &'static str,
    x_label: &'static str,
    baseline: &'static str,
) -> (Which, Curve) {
    let c = Curve {
        name,
        unit,
        title,
        x_label,
        baseline,
        points: Vec::new(),
    };
    (which, c)
}

/// Every figure against record size at `n` entries.
fn record_size(c: &mut Curves, n: usize) -> Result<()> {
    let mut x = sync::pair(n)?;
    let (ht, hb) = sync::hearth_sync(&mut x)?;
    let (at, ab, src) = automerge_base::initial_sync(n)?;
    c.add(Which::InitialMs, n, ms(ht), ms(at));
    c.add(Which::InitialBytes, n, hb as f64, ab as f64);
    let m = sync::incremental_medians(&mut x, n)?;
    c.add(Which::IncrementalMs, n, ms(m.ours.0), ms(m.theirs.0));
    c.add(Which::AddMs, n, ms(m.add), ms(m.add_theirs));
    let held = n + m.added;

    // Close both stores: a child opens the GP's.
    let Pair {
        dirs, g, p, rid, ..
    } = x;
    g.store().flush()?;
    drop((g, p, src));
    let (_, disk) = disk_usage(dirs.1.path())?;
    let saved = tempfile::NamedTempFile::new()?;
    let doc = automerge_base::doc_of(held)?.save();
    std::fs::write(saved.path(), &doc)?;
    c.add(Which::DiskMib, n, disk as f64 / MIB, doc.len() as f64 / MIB);

    let read = Probe::Read {
        dir: dirs.1.path().to_path_buf(),
        record: rid,
        expect: held,
    };
    let load = Probe::Load {
        file: saved.path().to_path_buf(),
    };
    let (mut reads, mut loads) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        loads.push(probe::measure(&load, 1)?);
        reads.push(probe::measure(&read, 1)?);
    }
    let (read, load) = (probe::median_sample(reads), probe::median_sample(loads));
    c.add(Which::OpenReadMs, n, read.ms, load.ms);
    c.add(Which::OpenReadPeak, n, read.peak_mib, load.peak_mib);
    Ok(())
}

/// Every figure against records held, at each of `held` (ascending): one professional's
/// holdings grown from the smallest to the largest, a node written to disk at each.
fn records_held(c: &mut Curves, held: &[usize]) -> Result<()> {
    let mut b = Builder::new();
    for &n in held {
        let t = Instant::now();
        b.grow_to(n)?;
        let node = b.write_node()?;
        let m = node.measure()?;
        c.add(Which::HeldListMs, n, m.list.ms, m.scan.ms);
        c.add(Which::HeldListPeak, n, m.list.peak_mib, m.scan.peak_mib);
        c.add(
            Which::HeldDiskMib,
            n,
            node.disk_allocated as f64 / MIB,
            node.logical as f64 / MIB,
        );
        eprintln!(
            "  (a node of {n} records built and measured in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
