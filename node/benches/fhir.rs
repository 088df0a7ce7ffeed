//! FHIR import and export of a record of 10,000 resources, beside the baseline of parsing and
//! serialising the same bundle with serde_json alone, in the same run (these machines are noisy;
//! the ratio is what matters). Time is the median of several runs; peak memory is the growth of
//! the process's peak resident set (`VmHWM`, reset through `/proc/self/clear_refs`) during one run.
//!
//! Run: `cargo bench -p hearth-node --bench fhir` (add `-- quick` for 2,000 resources, one run).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: any failure should stop it loudly

use hearth_core::fhir::{self, Existing, ExportOptions, RawExportInput};
use hearth_core::keys::Identity;
use hearth_core::record::{CheckedEntry, RawSectionView, Vault};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
use hearth_node::sled_store::SledStore;
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Resident set now and at its peak, in KiB (Linux; zero elsewhere).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `f` once and returns how far the peak resident set rose above the resident set at the
/// start, in MiB.
fn peak_growth_mib<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (start, _) = rss();
    let out = f();
    let (_, peak) = rss();
    (out, peak.saturating_sub(start) as f64 / 1024.0)
}

/// A bundle of `n` resources for one patient: the fixture's resources repeated, each copy with
/// its own id and full URL (so none is a duplicate), references kept inside the bundle.
fn bundle_of(n: usize) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/fhir/type2-diabetes-seed1.json");
    let fixture: Value = serde_json::from_slice(
        &std::fs::read(&path)
            .unwrap_or_else(|e| panic!("the FHIR fixtures are missing: {} ({e})", path.display())),
    )
    .unwrap();
    let all = fixture["entry"].as_array().unwrap();
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
    let mut entries: Vec<Value> = fixed.into_iter().cloned().collect();
    let mut k = 0usize;
    while entries.len() < n {
        let mut e = repeated[k % repeated.len()].clone();
        e["fullUrl"] = json!(format!("urn:uuid:00000000-0000-4000-8000-{k:012}"));
        e["resource"]["id"] = json!(format!("r{k}"));
        entries.push(e);
        k += 1;
    }
    serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
        .unwrap()
}

struct Home {
    _dir: tempfile::TempDir,
    vault: Vault<SledStore>,
    identity: Identity,
    record: hearth_core::ids::RecordId,
}

fn new_home(seed: u64) -> Home {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(seed);
    let vault = Vault::open(SledStore::open(&dir.path().join("store")).unwrap()).unwrap();
    let (identity, record) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
    Home {
        _dir: dir,
        vault,
        identity,
        record,
    }
}

/// What `hearth record import --fhir` does after reading the file: parse, check and map, each
/// entry put into the record's documents as soon as it is planned, all of them committed in one
/// durable write.
fn import(home: &Home, bytes: &[u8], seed: u64) -> usize {
    let bundle = fhir::parse_bundle(bytes).unwrap();
    let mut rec = home
        .vault
        .open_record(&home.identity, &home.record)
        .unwrap();
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
    .unwrap();
    writer.finish(&[], "").unwrap().0.len()
}

/// What `hearth record export --fhir` does before writing the file: open the record, read every
/// section, build the bundle, serialise it.
fn export(home: &Home) -> Vec<u8> {
    let mut rec = home
        .vault
        .open_record(&home.identity, &home.record)
        .unwrap();
    let names: Vec<_> = rec.sections().into_iter().map(|s| s.name).collect();
    let views: Vec<RawSectionView> = names.iter().map(|n| rec.show_raw(n).unwrap()).collect();
    let input = RawExportInput {
        record: home.record,
        sections: &views,
        now: TEST_NOW,
    };
    fhir::export_raw_json(&input, ExportOptions::default(), &[], false)
        .unwrap()
        .0
}

/// One measured phase, run in its own process so that its peak memory is its own: prints
/// `<median ms> <peak growth MiB>`.
fn phase(name: &str, file: &str, runs: usize, n: usize) {
    let bytes = std::fs::read(file).unwrap();
    let mut times = Vec::new();
    let mut peak = 0.0f64;
    for run in 0..runs {
        let seed = run as u64 + 1;
        let (elapsed, mem) = match name {
            "parse" => {
                let t = Instant::now();
                let (_, mem) =
                    peak_growth_mib(|| black_box(serde_json::from_slice::<Value>(&bytes).unwrap()));
                (t.elapsed(), mem)
            }
            "serialise" => {
                let parsed: Value = serde_json::from_slice(&bytes).unwrap();
                let t = Instant::now();
                let (_, mem) = peak_growth_mib(|| black_box(serde_json::to_vec(&parsed).unwrap()));
                (t.elapsed(), mem)
            }
            "import" => {
                let home = new_home(seed);
                let t = Instant::now();
                let (written, mem) = peak_growth_mib(|| import(&home, &bytes, seed + 100));
                assert_eq!(written, n);
                (t.elapsed(), mem)
            }
            "export" => {
                let home = new_home(seed);
                import(&home, &bytes, seed + 100);
                let t = Instant::now();
                let (out, mem) = peak_growth_mib(|| export(&home));
                black_box(out);
                (t.elapsed(), mem)
            }
            other => panic!("unknown phase {other}"),
        };
        times.push(elapsed);
        peak = peak.max(mem);
    }
    println!("{} {peak}", median(times).as_secs_f64() * 1000.0);
}

fn run_phase(name: &str, file: &std::path::Path, runs: usize, n: usize) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--phase",
            name,
            file.to_str().unwrap(),
            &runs.to_string(),
            &n.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        phase(
            &args[i + 1],
            &args[i + 2],
            args[i + 3].parse().unwrap(),
            args[i + 4].parse().unwrap(),
        );
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let (n, runs) = if quick { (2_000, 1) } else { (10_000, 5) };
    let bytes = bundle_of(n);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bytes).unwrap();
    println!(
        "FHIR bundle: {n} resources, {:.1} MiB of JSON; time: median of {runs} runs; memory: \
         peak resident growth, each phase in its own process",
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    let (parse, parse_mem) = run_phase("parse", &file, runs, n);
    let (ser, ser_mem) = run_phase("serialise", &file, runs, n);
    let (import_t, import_mem) = run_phase("import", &file, runs, n);
    let (export_t, export_mem) = run_phase("export", &file, runs, n);
    println!(
        "import (parse, check, map, one durable sled commit) {import_t:>7.0} ms  peak +{import_mem:>5.0} MiB | serde_json parse     {parse:>5.0} ms  peak +{parse_mem:>4.0} MiB | time x{:.1}  memory x{:.1}",
        import_t / parse,
        import_mem / parse_mem.max(0.1)
    );
    println!(
        "export (open, read, build, serialise)              {export_t:>7.0} ms  peak +{export_mem:>5.0} MiB | serde_json serialise {ser:>5.0} ms  peak +{ser_mem:>4.0} MiB | time x{:.1}  memory x{:.1}",
        export_t / ser,
        export_mem / ser_mem.max(0.1)
    );
    println!(
        "import + export {:.0} ms vs serde_json parse + serialise {:.0} ms: x{:.1} (target x3)",
        import_t + export_t,
        parse + ser,
        (import_t + export_t) / (parse + ser)
    );
}
