//! The one output format: each figure is one JSON line on standard output,
//!
//! ```text
//! {"name":"sync.initial_10k_plus_first_read","value":188.0,"unit":"ms","baseline":49.11,"ratio":3.827,"target":"ratio<=1.0","met":false}
//! ```
//!
//! `name` is dotted by module; `baseline` is the comparison measured in the same run (null when
//! the figure has none); `ratio` is `value / baseline` (null without a baseline); `target` a
//! comparison of `value` or `ratio` with a number (null when there is none) and `met` whether it
//! holds (null without a target, or for a ratio target without a ratio).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::str::FromStr;

/// One printed figure, as it appears on a line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Line {
    /// `module.figure`.
    pub(crate) name: String,
    /// The measured value, in `unit`.
    pub(crate) value: f64,
    /// `ms`, `µs`, `/s`, `B`, `KiB`, `MiB`, `%`…
    pub(crate) unit: String,
    /// The comparison measured in the same run, in the same unit.
    pub(crate) baseline: Option<f64>,
    /// `value / baseline`.
    pub(crate) ratio: Option<f64>,
    /// What the figure should satisfy, such as `ratio<=1.0`.
    pub(crate) target: Option<String>,
    /// Whether `target` holds.
    pub(crate) met: Option<bool>,
}

impl Line {
    /// Whether a larger value is better: rates (a unit ending in `/s`) are; times, sizes and
    /// shares are not.
    pub(crate) fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s")
    }

    /// The module this figure belongs to (the name up to its first dot).
    pub(crate) fn module(&self) -> &str {
        self.name.split('.').next().unwrap_or_default()
    }

    /// The figure in a few words for people (standard error).
    pub(crate) fn human(&self) -> String {
        let mut s = format!("{:<44} {:>11} {}", self.name, num(self.value), self.unit);
        if let (Some(b), Some(r)) = (self.baseline, self.ratio) {
            s += &format!("   baseline {} {}   ratio {}", num(b), self.unit, num(r));
        }
        if let Some(t) = &self.target {
            let verdict = match self.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not evaluated",
            };
            s += &format!("   target {t}: {verdict}");
        }
        s
    }
}

/// A number for people: four significant digits, no exponent.
pub(crate) fn num(x: f64) -> String {
    let r = round_sig(x);
    if r.abs() >= 1000.0 || r == r.trunc() {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

/// `x` rounded to four significant digits (the figures are noisier than that); whole numbers
/// of four digits or more keep their digits (byte counts are exact).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 4 - 1 - x.abs().log10().floor() as i32;
    if digits <= 0 {
        return x.round();
    }
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Which side of a figure a target is about.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Subject {
    Value,
    Ratio,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A target such as `ratio<=1.0`, `ratio>=0.8` or `value<1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Target {
    subject: Subject,
    op: Op,
    limit: f64,
}

impl Target {
    /// Whether the target holds for `value` and `ratio` (`None` for a ratio target without a
    /// ratio).
    fn holds(&self, value: f64, ratio: Option<f64>) -> Option<bool> {
        let x = match self.subject {
            Subject::Value => value,
            Subject::Ratio => ratio?,
        };
        Some(match self.op {
            Op::Lt => x < self.limit,
            Op::Le => x <= self.limit,
            Op::Gt => x > self.limit,
            Op::Ge => x >= self.limit,
        })
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (subject, rest) = if let Some(rest) = s.strip_prefix("ratio") {
            (Subject::Ratio, rest)
        } else if let Some(rest) = s.strip_prefix("value") {
            (Subject::Value, rest)
        } else {
            bail!("a target starts with `ratio` or `value`: {s:?}");
        };
        // Two-character operators first.
        let (op, limit) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find_map(|(text, op)| rest.strip_prefix(text).map(|l| (op, l)))
            .with_context(|| format!("a target has one of <, <=, >, >=: {s:?}"))?;
        let limit = limit
            .trim()
            .parse()
            .with_context(|| format!("a target ends with a number: {s:?}"))?;
        Ok(Target { subject, op, limit })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.subject {
            Subject::Value => "value",
            Subject::Ratio => "ratio",
        };
        let op = match self.op {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        };
        // `{:?}` keeps a decimal point on whole numbers (`1.0`, not `1`).
        write!(f, "{subject}{op}{:?}", self.limit)
    }
}

/// A figure being put together by a module: name, value and unit, then optionally a baseline
/// and a target.
#[derive(Debug)]
#[must_use = "a figure is printed by Report::emit"]
pub(crate) struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    baseline: Option<f64>,
    target: Option<Target>,
}

impl Figure {
    /// `value` in `unit`, called `name` within its module.
    pub(crate) fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            baseline: None,
            target: None,
        }
    }

    /// The comparison measured in the same run, in the same unit.
    pub(crate) fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// The target, written as on the line (`ratio<=1.0`, `value<5.0`…). A malformed target is
    /// a mistake in the harness and stops it.
    pub(crate) fn target(mut self, target: &str) -> Self {
        self.target = Some(target.parse().expect("a well-formed target"));
        self
    }

    /// The line for this figure in `module`: ratio and verdict worked out from the unrounded
    /// numbers, the numbers then rounded to four significant digits.
    fn line(self, module: &str) -> Line {
        let ratio = self
            .baseline
            .filter(|b| *b != 0.0)
            .map(|b| self.value / b)
            .filter(|r| r.is_finite());
        let met = self.target.and_then(|t| t.holds(self.value, ratio));
        Line {
            name: format!("{module}.{}", self.name),
            value: round_sig(self.value),
            unit: self.unit.to_string(),
            baseline: self.baseline.map(round_sig),
            ratio: ratio.map(round_sig),
            target: self.target.map(|t| t.to_string()),
            met,
        }
    }
}

/// Where a module's figures go: one JSON line each on standard output, flushed at once (the
/// harness reads them as they come).
pub(crate) struct Report {
    module: &'static str,
}

impl Report {
    /// The report of `module` (the first part of every name it prints).
    pub(crate) fn new(module: &'static str) -> Self {
        Report { module }
    }

    /// Prints `figure` as one line.
    pub(crate) fn emit(&mut self, figure: Figure) -> Result<()> {
        let line = serde_json::to_string(&figure.line(self.module))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_print_and_hold() {
        let t: Target = "ratio<=1.0".parse().expect("parses");
        assert_eq!(t.to_string(), "ratio<=1.0");
        assert_eq!(t.holds(5.0, Some(1.0)), Some(true));
        assert_eq!(t.holds(5.0, Some(1.01)), Some(false));
        assert_eq!(t.holds(5.0, None), None);
        let t: Target = "value<5".parse().expect("parses");
        assert_eq!(t.to_string(), "value<5.0");
        assert_eq!(t.holds(5.0, None), Some(false));
        let t: Target = "ratio>=0.8".parse().expect("parses");
        assert_eq!(t.holds(0.0, Some(0.8)), Some(true));
        for bad in ["ratio=1", "time<1", "value<", "ratio<=x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_has_the_documented_shape() {
        let line = Figure::new("initial_10k_plus_first_read", 206.73, "ms")
            .baseline(53.1)
            .target("ratio<=1.0")
            .line("sync");
        let text = serde_json::to_string(&line).expect("serialises");
        assert_eq!(
            text,
            r#"{"name":"sync.initial_10k_plus_first_read","value":206.7,"unit":"ms","baseline":53.1,"ratio":3.893,"target":"ratio<=1.0","met":false}"#
        );
        let bare = Figure::new("x", 0.5, "ms").line("m");
        assert_eq!(
            serde_json::to_string(&bare).expect("serialises"),
            r#"{"name":"m.x","value":0.5,"unit":"ms","baseline":null,"ratio":null,"target":null,"met":null}"#
        );
        let zero = Figure::new("x", 1.0, "MiB").baseline(0.0).line("m");
        assert_eq!(zero.ratio, None);
    }

    #[test]
    fn rounding_keeps_four_significant_digits() {
        assert_eq!(round_sig(51629.4), 51629.0);
        assert_eq!(round_sig(0.0123456), 0.01235);
        assert_eq!(round_sig(3.8926), 3.893);
        assert_eq!(num(1234.5), "1235");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.125), "0.125");
    }
}
