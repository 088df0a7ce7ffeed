//! FHIR import and export of a record of 10,000 resources, beside the baseline of parsing and
//! serialising the same bundle with serde_json alone, in the same run. Time is the median of
//! several runs; peak memory is the growth of the process's peak resident set (`VmHWM`, reset
//! through `/proc/self/clear_refs`) during one run. Each phase runs in its own process (this
//! binary's hidden `__fhir-phase` command), so that its peak memory is its own.
//!
//! Beside them, the floor under the import: the record engine writing the import's entries,
//! already checked, through the same writer on the calling thread (`write`), with no FHIR work.
//! An import cannot be faster than that part of it, which no other core can share.
//!
//! The bundle is built from `shared/fixtures/fhir/type2-diabetes-seed1.json` beside the
//! repository.

use crate::measure::{median_duration, peak_growth_mib, size_label};
use crate::report::{Figure, Report};
use anyhow::{Context, Result, bail, ensure};
use hearth_core::fhir::{self, Existing, ExportOptions, RawExportInput};
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::record::{CheckedEntry, RawSectionView, Vault};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
use hearth_node::sled_store::SledStore;
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The phases, each measured in its own process.
const PHASES: [&str; 5] = ["parse", "serialise", "import", "export", "write"];

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let (n, runs) = if quick { (2_000, 3) } else { (10_000, 5) };
    let bytes = bundle_of(n)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bytes)?;
    eprintln!(
        "  (FHIR bundle: {n} resources, {:.1} MiB of JSON; time: median of {runs} runs; memory: \
         peak resident growth, each phase in its own process)",
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    let mut results = Vec::new();
    for name in PHASES {
        results.push(run_phase(name, &file, runs, n)?);
    }
    let [
        (parse, parse_mem),
        (ser, ser_mem),
        (import, import_mem),
        (export, export_mem),
        (write, _),
    ] = results[..]
    else {
        bail!("one result per phase");
    };
    let size = size_label(n);
    r.emit(
        Figure::new(format!("import_{size}"), import, "ms")
            .baseline(parse)
            .target("ratio<=2.0"),
    )?;
    r.emit(Figure::new(format!("import_write_floor_{size}"), write, "ms").baseline(parse))?;
    r.emit(Figure::new(format!("export_{size}"), export, "ms").baseline(ser))?;
    r.emit(
        Figure::new(format!("import_export_{size}"), import + export, "ms")
            .baseline(parse + ser)
            .target("ratio<=3.0"),
    )?;
    r.emit(Figure::new(format!("import_peak_{size}"), import_mem, "MiB").baseline(parse_mem))?;
    r.emit(Figure::new(format!("export_peak_{size}"), export_mem, "MiB").baseline(ser_mem))
}

/// Runs `phase` in a child process of this binary: (median milliseconds, peak growth MiB).
fn run_phase(name: &str, file: &Path, runs: usize, n: usize) -> Result<(f64, f64)> {
    crate::probe::run_child(&[
        "__fhir-phase".into(),
        name.into(),
        file.display().to_string(),
        runs.to_string(),
        n.to_string(),
    ])
}

/// One measured phase (in its own process): prints `<median ms> <peak growth MiB>`.
pub(crate) fn phase(name: &str, file: &Path, runs: usize, n: usize) -> Result<()> {
    let bytes = std::fs::read(file)?;
    let mut times = Vec::new();
    let mut peak = 0.0f64;
    for run in 0..runs {
        let seed = run as u64 + 1;
        let (elapsed, mem) = match name {
            "parse" => {
                let t = Instant::now();
                let (parsed, mem) = peak_growth_mib(|| serde_json::from_slice::<Value>(&bytes));
                black_box(parsed?);
                (t.elapsed(), mem)
            }
            "serialise" => {
                let parsed: Value = serde_json::from_slice(&bytes)?;
                let t = Instant::now();
                let (out, mem) = peak_growth_mib(|| serde_json::to_vec(&parsed));
                black_box(out?);
                (t.elapsed(), mem)
            }
            "import" => {
                let home = Home::new(seed)?;
                let t = Instant::now();
                let (written, mem) = peak_growth_mib(|| home.import(&bytes, seed + 100));
                ensure!(written? == n, "every resource imported");
                (t.elapsed(), mem)
            }
            "write" => {
                let entries = Home::plan(&bytes)?;
                let home = Home::new(seed)?;
                let t = Instant::now();
                let (written, mem) = peak_growth_mib(|| home.write(entries, seed + 100));
                ensure!(written? == n, "every entry written");
                (t.elapsed(), mem)
            }
            "export" => {
                let home = Home::new(seed)?;
                home.import(&bytes, seed + 100)?;
                let t = Instant::now();
                let (out, mem) = peak_growth_mib(|| home.export());
                black_box(out?);
                (t.elapsed(), mem)
            }
            other => bail!("unknown FHIR phase {other}"),
        };
        times.push(elapsed);
        peak = peak.max(mem);
    }
    println!("{} {peak}", median_duration(times).as_secs_f64() * 1000.0);
    Ok(())
}

/// A bundle of `n` resources for one patient: the fixture's resources repeated, each copy with
/// its own id and full URL (so none is a duplicate), references kept inside the bundle.
fn bundle_of(n: usize) -> Result<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/fhir/type2-diabetes-seed1.json");
    let text = std::fs::read(&path)
        .with_context(|| format!("the FHIR fixtures are missing: {}", path.display()))?;
    let fixture: Value = serde_json::from_slice(&text)?;
    let all = fixture["entry"]
        .as_array()
        .context("the fixture is a bundle with entries")?;
    // Patient, Practitioner and Encounter once; the clinical resources (not the reports, whose
    // result lists would point at the first copies only) repeated.
    let (fixed, repeated): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|e| {
        matches!(
            e["resource"]["resourceType"].as_str(),
            Some("Patient" | "Practitioner" | "Encounter")
        )
    });
    let repeated: Vec<&Value> = repeated
        .into_iter()
        .filter(|e| e["resource"]["resourceType"] != "DiagnosticReport")
        .collect();
    ensure!(!repeated.is_empty(), "the fixture has clinical resources");
    let mut entries: Vec<Value> = fixed.into_iter().cloned().collect();
    let mut k = 0usize;
    while entries.len() < n {
        let mut e = repeated[k % repeated.len()].clone();
        e["fullUrl"] = json!(format!("urn:uuid:00000000-0000-4000-8000-{k:012}"));
        e["resource"]["id"] = json!(format!("r{k}"));
        entries.push(e);
        k += 1;
    }
    Ok(serde_json::to_vec(
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )?)
}

/// A patient's node: a new record on sled in a temporary folder.
struct Home {
    _dir: tempfile::TempDir,
    vault: Vault<SledStore>,
    identity: Identity,
    record: RecordId,
}

impl Home {
    fn new(seed: u64) -> Result<Home> {
        let dir = tempfile::tempdir()?;
        let mut rng = TestRng::new(seed);
        let vault = Vault::open(SledStore::open(&dir.path().join("store"))?)?;
        let (identity, record) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
        Ok(Home {
            _dir: dir,
            vault,
            identity,
            record,
        })
    }

    /// What `hearth record import --fhir` does after reading the file: parse, check and map,
    /// each entry put into the record's documents as soon as it is planned, all of them
    /// committed in one durable write. Returns the number of entries written.
    fn import(&self, bytes: &[u8], seed: u64) -> Result<usize> {
        let bundle = fhir::parse_bundle(bytes)?;
        let mut rec = self.vault.open_record(&self.identity, &self.record)?;
        let mut rng = TestRng::new(seed);
        let mut writer = rec.entry_writer(TEST_NOW, &mut rng);
        writer.expect(bundle.len());
        fhir::plan_import_each(&bundle, &Existing::default(), |p| {
            writer.add(CheckedEntry {
                section: p.section,
                body: p.checked,
                supersedes: p.supersedes,
            })?;
            Ok::<(), Box<dyn std::error::Error>>(())
        })
        .map_err(|e| anyhow::anyhow!("plan the import: {e}"))?;
        Ok(writer.finish(&[], "")?.0.len())
    }

    /// The entries an import of `bytes` writes, checked.
    fn plan(bytes: &[u8]) -> Result<Vec<CheckedEntry>> {
        let bundle = fhir::parse_bundle(bytes)?;
        let plan = fhir::plan_import(&bundle, &Existing::default())?;
        Ok(plan
            .entries
            .into_iter()
            .map(|p| CheckedEntry {
                section: p.section,
                body: p.checked,
                supersedes: p.supersedes,
            })
            .collect())
    }

    /// What the import's writing alone costs: `entries` put through the writer, in order, as
    /// the import puts them, and committed in one durable write.
    fn write(&self, entries: Vec<CheckedEntry>, seed: u64) -> Result<usize> {
        let mut rec = self.vault.open_record(&self.identity, &self.record)?;
        let mut rng = TestRng::new(seed);
        let mut writer = rec.entry_writer(TEST_NOW, &mut rng);
        writer.expect(entries.len());
        for entry in entries {
            writer.add(entry)?;
        }
        Ok(writer.finish(&[], "")?.0.len())
    }

    /// What `hearth record export --fhir` does before writing the file: open the record, read
    /// every section, build the bundle, serialise it.
    fn export(&self) -> Result<Vec<u8>> {
        let mut rec = self.vault.open_record(&self.identity, &self.record)?;
        let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
        let views = names
            .iter()
            .map(|n| rec.show_raw(n))
            .collect::<Result<Vec<RawSectionView>, _>>()?;
        let input = RawExportInput {
            record: self.record,
            sections: &views,
            now: TEST_NOW,
        };
        Ok(fhir::export_raw_json(&input, ExportOptions::default(), &[], false)?.0)
    }
}
