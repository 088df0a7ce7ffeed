//! `--compare FILE`: this run's figures against figures saved earlier (JSON lines, as this
//! harness prints them), told on standard error. A figure is compared by its ratio when both
//! runs have one (the baseline absorbs the machine's speed of the moment), else by its value;
//! it got worse when it moved the wrong way (up for times and sizes, down for rates) by more
//! than the noise margin. Informative only: nothing here fails the run.

use crate::report::{Line, num};
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Reads the figures saved in `path` (blank lines skipped).
pub(crate) fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}, line {}: not a figure", path.display(), i + 1))
        })
        .collect()
}

/// How one figure moved.
#[derive(Debug, PartialEq)]
pub(crate) struct Change {
    /// The figure's name.
    pub(crate) name: String,
    /// `ratio` or `value`: what was compared.
    pub(crate) by: &'static str,
    /// In the file.
    pub(crate) before: f64,
    /// In this run.
    pub(crate) now: f64,
    /// How many times worse (above 1) or better (below 1) it is now.
    pub(crate) worse_by: f64,
    /// Its target held before and not now.
    pub(crate) newly_missed: bool,
}

/// The comparison of a run with the saved figures.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Figures in both, in this run's order.
    pub(crate) changes: Vec<Change>,
    /// Saved figures of the modules that ran, missing from this run.
    pub(crate) missing: Vec<String>,
    /// Figures of this run not in the file.
    pub(crate) new: Vec<String>,
}

/// Compares `now` with `before`: only modules that ran are expected to have their figures.
pub(crate) fn compare(before: &[Line], now: &[Line]) -> Comparison {
    let saved: HashMap<&str, &Line> = before.iter().map(|l| (l.name.as_str(), l)).collect();
    let ran: BTreeSet<&str> = now.iter().map(Line::module).collect();
    let names: BTreeSet<&str> = now.iter().map(|l| l.name.as_str()).collect();
    let mut out = Comparison::default();
    for line in now {
        match saved.get(line.name.as_str()) {
            Some(old) => out.changes.extend(change(old, line)),
            None => out.new.push(line.name.clone()),
        }
    }
    out.missing = before
        .iter()
        .filter(|l| ran.contains(l.module()) && !names.contains(l.name.as_str()))
        .map(|l| l.name.clone())
        .collect();
    out
}

/// How `now` moved from `old` (`None` when there is nothing comparable, such as a zero).
fn change(old: &Line, now: &Line) -> Option<Change> {
    let (by, before, after) = match (old.ratio, now.ratio) {
        (Some(b), Some(a)) => ("ratio", b, a),
        _ => ("value", old.value, now.value),
    };
    if before <= 0.0 || after <= 0.0 {
        return None;
    }
    let worse_by = if now.higher_is_better() {
        before / after
    } else {
        after / before
    };
    Some(Change {
        name: now.name.clone(),
        by,
        before,
        now: after,
        worse_by,
        newly_missed: old.met == Some(true) && now.met == Some(false),
    })
}

/// Prints the comparison on standard error: each figure worse than before by more than
/// `margin` (0.3: 30 %), each target newly missed, and a one-line summary.
pub(crate) fn print(c: &Comparison, file: &Path, margin: f64) {
    let worse: Vec<&Change> = c
        .changes
        .iter()
        .filter(|x| x.worse_by > 1.0 + margin)
        .collect();
    let better = c
        .changes
        .iter()
        .filter(|x| x.worse_by < 1.0 / (1.0 + margin))
        .count();
    eprintln!();
    eprintln!("== compared with {}", file.display());
    for x in &worse {
        eprintln!(
            "worse: {:<44} {} {} -> {} ({}x worse)",
            x.name,
            x.by,
            num(x.before),
            num(x.now),
            num(x.worse_by)
        );
    }
    for x in c.changes.iter().filter(|x| x.newly_missed) {
        eprintln!(
            "target now missed: {} ({} {} -> {})",
            x.name,
            x.by,
            num(x.before),
            num(x.now)
        );
    }
    if !c.missing.is_empty() {
        eprintln!("not measured this time: {}", c.missing.join(", "));
    }
    if !c.new.is_empty() {
        eprintln!("not in the file: {}", c.new.join(", "));
    }
    eprintln!(
        "compare: {} figures compared, {} worse by more than the {:.0}% noise margin, {} better by more than it, {} missing, {} new",
        c.changes.len(),
        worse.len(),
        margin * 100.0,
        better,
        c.missing.len(),
        c.new.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, value: f64, unit: &str, ratio: Option<f64>, met: Option<bool>) -> Line {
        Line {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline: ratio.map(|r| value / r),
            ratio,
            target: met.map(|_| "ratio<=1.0".into()),
            met,
        }
    }

    #[test]
    fn ratios_are_compared_first_and_direction_follows_the_unit() {
        let before = [
            line("sync.a", 10.0, "ms", Some(0.5), Some(true)),
            line("sync.b", 100.0, "/s", None, None),
            line("sync.gone", 1.0, "ms", None, None),
            line("live.x", 1.0, "ms", None, None),
        ];
        let now = [
            // Slower in value but the ratio is what counts: 0.5 -> 1.0 is 2x worse.
            line("sync.a", 30.0, "ms", Some(1.0), Some(false)),
            // A rate that fell from 100 to 50 per second: 2x worse.
            line("sync.b", 50.0, "/s", None, None),
            line("sync.new", 1.0, "ms", None, None),
        ];
        let c = compare(&before, &now);
        assert_eq!(c.changes.len(), 2);
        assert_eq!(c.changes[0].by, "ratio");
        assert_eq!(c.changes[0].worse_by, 2.0);
        assert!(c.changes[0].newly_missed);
        assert_eq!(c.changes[1].by, "value");
        assert_eq!(c.changes[1].worse_by, 2.0);
        // `live` did not run: its figure is not missing.
        assert_eq!(c.missing, vec!["sync.gone".to_string()]);
        assert_eq!(c.new, vec!["sync.new".to_string()]);
    }
}
