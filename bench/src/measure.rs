//! Measuring helpers the modules share: medians and percentiles, unit conversions, the
//! process's resident memory, and the runtime the live modules run on.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// The `p` quantile of `v` (sorted in place), nearest rank: `v[round((len - 1) · p)]`. The
/// median is `quantile(v, 0.5)` (the upper middle for an even count).
pub(crate) fn quantile(v: &mut [f64], p: f64) -> f64 {
    assert!(!v.is_empty(), "a quantile of no samples");
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The median of `v` (the upper middle for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

/// The median of `v` (the upper middle for an even count).
pub(crate) fn median_duration(mut v: Vec<Duration>) -> Duration {
    assert!(!v.is_empty(), "a median of no samples");
    v.sort();
    v[v.len() / 2]
}

/// The CPU time the calling thread has used so far (Unix): the time a step spent working, not
/// waiting for the disk or another thread. Elsewhere, `None`.
pub(crate) fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let secs = u64::try_from(t.tv_sec).ok()?;
        let nanos = u32::try_from(t.tv_nsec).ok()?;
        Some(Duration::new(secs, nanos))
    }
    #[cfg(not(unix))]
    None
}

/// Milliseconds of `d`.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Microseconds of `d`.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `n` events in `d`, per second.
pub(crate) fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// A size for a figure's name: `10k` for 10,000, `2500` for 2,500.
pub(crate) fn size_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// This process's resident set now and at its peak, in KiB (Linux; zeros elsewhere).
pub(crate) fn rss_kib() -> (u64, u64) {
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
/// start, in MiB (the peak is reset through `/proc/self/clear_refs` first).
pub(crate) fn peak_growth_mib<T>(f: impl FnOnce() -> T) -> (T, f64) {
    // Best effort: where it cannot be reset, the peak is the process's whole-life peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (start, _) = rss_kib();
    let out = f();
    let (_, peak) = rss_kib();
    (out, peak.saturating_sub(start) as f64 / 1024.0)
}

/// (apparent bytes, allocated bytes) of the files under `dir`.
pub(crate) fn disk_usage(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            let (a, b) = disk_usage(&e.path())?;
            out.0 += a;
            out.1 += b;
        } else {
            out.0 += m.len();
            out.1 += m.blocks() * 512;
        }
    }
    Ok(out)
}

/// The runtime every live module runs on: two worker threads (the machines have two cores).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")
}

/// How long [`run_nodes`] waits for the nodes' last jobs once its future is done.
const CLOSE: Duration = Duration::from_secs(10);

/// Runs `fut`, which starts live nodes, on a [`runtime`], then shuts the runtime down,
/// waiting at most [`CLOSE`] for the jobs still running (each closes its node's sled store if
/// it holds the last handle on it; see [`hearth_node::runtime::shut_down_within`], which
/// tells of a flush at that point seen to wait forever): the figures are taken by then, so a
/// job left running is reported and the run goes on rather than hanging.
pub(crate) fn run_nodes<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = runtime()?;
    let out = rt.block_on(fut);
    if !hearth_node::runtime::shut_down_within(rt, CLOSE) {
        eprintln!(
            "  (a node's store did not close within {} s of the run's end; left to the process's exit)",
            CLOSE.as_secs()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.99), 5.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        // The upper middle, as the earlier benchmarks' `v[len / 2]`.
        assert_eq!(median(vec![1.0, 2.0, 3.0, 4.0]), 3.0);
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(median_duration(vec![d(4), d(1), d(3), d(2)]), d(3));
    }

    #[test]
    fn sizes_read_as_in_the_issue() {
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(1_000), "1k");
        assert_eq!(size_label(2_500), "2500");
        assert_eq!(size_label(300), "300");
    }
}
