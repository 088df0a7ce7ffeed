//! Every fuzz target of the workspace on stable Rust (issue 17, items 3 and 4): the committed
//! corpus (`fuzz/corpus/<target>/`), then every single-bit flip and thousands of seeded
//! mutations of valid inputs. Nothing may panic, every valid seed must be accepted (so the
//! mutations start from inputs that reach deep), and no altered signed input (bundle, grant,
//! request, credential, card, audit event, revocation, contribution) may be accepted. Prints a
//! table of figures (`cargo test -p hearth-node --test e2e fuzz_smoke:: -- --nocapture`).
//!
//! `HEARTH_WRITE_CORPUS=1` rewrites the seed files of the committed corpus from the generators
//! (after a format change); inputs added by long fuzzing runs are kept beside them.
//! `HEARTH_FUZZ_MUTATIONS=N` sets the seeded mutations per seed (default 1,000).

use hearth_node::fuzzing::{all_seeds, all_targets};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name)
}

#[test]
fn every_fuzz_target_survives_its_corpus_every_bit_flip_and_mutations() {
    let seeds: BTreeMap<&str, Vec<Vec<u8>>> = all_seeds().into_iter().collect();
    let targets = all_targets();
    if std::env::var_os("HEARTH_WRITE_CORPUS").is_some() {
        for t in &targets {
            let dir = corpus_dir(t.name);
            std::fs::create_dir_all(&dir).expect("create the corpus folder");
            for (i, s) in seeds[t.name].iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).expect("write a seed");
            }
        }
    }
    let iterations: u64 = std::env::var("HEARTH_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut rows = Vec::new();
    let (mut total_tried, mut signed_tried) = (0, 0);
    for t in &targets {
        let mine = seeds
            .get(t.name)
            .unwrap_or_else(|| panic!("no seeds for {}", t.name));
        assert!(!mine.is_empty(), "{}: no seeds", t.name);
        for (i, s) in mine.iter().enumerate() {
            assert!((t.run)(s), "{}: seed {i} is not accepted", t.name);
        }
        let files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(t.name))
            .unwrap_or_else(|e| panic!("{}: no committed corpus: {e}", t.name))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        assert!(
            !files.is_empty(),
            "{}: the committed corpus is empty",
            t.name
        );
        for f in &files {
            let _ = (t.run)(&std::fs::read(f).expect("read a corpus file"));
        }
        let tally = t.hostile_run(mine, iterations);
        if t.signed {
            assert_eq!(
                tally.accepted, 0,
                "{}: an altered signed input was accepted",
                t.name
            );
            signed_tried += tally.tried;
        }
        total_tried += tally.tried;
        rows.push((t.name, files.len(), mine.len(), tally));
    }
    eprintln!("target          corpus  seeds   altered inputs   accepted (signed: must be 0)");
    for (name, files, n, tally) in &rows {
        eprintln!(
            "{name:<15} {files:>6} {n:>6} {:>16} {:>10}",
            tally.tried, tally.accepted
        );
    }
    eprintln!(
        "all targets: {total_tried} altered inputs, none panicked; signed: {signed_tried}, none accepted"
    );
    assert!(signed_tried >= 10_000);
}
