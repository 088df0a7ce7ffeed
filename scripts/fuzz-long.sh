#!/usr/bin/env bash
# The long fuzzing run of docs/RELIABILITY.md: every cargo-fuzz target for SECONDS (default 600)
# with libFuzzer, JOBS at a time (default 2), on a stable toolchain (RUSTC_BOOTSTRAP=1, no
# sanitizer: Rust's bounds checks turn memory errors into panics, which libFuzzer reports).
# New inputs go to a scratch corpus; the committed corpus (fuzz/corpus/<target>) is only read.
# Prints one line per target: runs, coverage, and whether it found a crash (kept under
# fuzz/artifacts/<target>/). Exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-600}
JOBS=${2:-2}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O >/dev/null
targets=$(cargo fuzz list)
scratch=$(mktemp -d /tmp/hearth-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
run() {
  local t=$1
  mkdir -p "$scratch/$t"
  if cargo fuzz run "$t" "$scratch/$t" "corpus/$t" --sanitizer none -O -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    verdict="no crash"
  else
    verdict="CRASH (see fuzz/artifacts/$t/)"
  fi
  local runs cov
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$scratch/$t.log" | tail -1 | grep -o '[0-9]*' || echo "?")
  printf '%-14s %6ss %12s runs  coverage %6s  %s\n' "$t" "$SECONDS_EACH" "$runs" "$cov" "$verdict"
}
export -f run
export SECONDS_EACH scratch
echo "target         time          runs           coverage  result"
printf '%s\n' $targets | xargs -P "$JOBS" -I{} bash -c 'run {}' | tee "$scratch/summary"
! grep -q CRASH "$scratch/summary"
