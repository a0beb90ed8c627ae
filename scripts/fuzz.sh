#!/usr/bin/env bash
# Fuzz the parsers: scripts/fuzz.sh [seconds-per-target] [targets...]
#
# Builds every target in fuzz/ once (cargo fuzz, release with debug assertions, so integer
# overflow panics too), then runs each target for the given seconds (default 60) from its seed
# corpus fuzz/corpus/<target>/ (checked in) plus fuzz/work/corpus/<target>/ (git-ignored; new
# inputs go there and are reused by the next run). Prints one line per target and exits non-zero
# when any target crashed, timed out or ran out of memory; the input that did it is in
# fuzz/artifacts/<target>/ (path printed), the libFuzzer log in fuzz/work/logs/<target>.log.
#
# Environment: FUZZ_SANITIZER (address | none; default address), FUZZ_RSS_MB (2048),
# FUZZ_TIMEOUT (seconds one input may take, 10), FUZZ_TOOLCHAIN (default: nightly if installed,
# else stable with RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
shift || true
SANITIZER="${FUZZ_SANITIZER:-address}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
UNIT_TIMEOUT="${FUZZ_TIMEOUT:-10}"

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
  echo "usage: $0 [seconds-per-target] [targets...]" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

# libFuzzer instrumentation needs -Z flags: nightly when installed, else stable told to allow them
# (FUZZ_TOOLCHAIN=stable forces the fallback).
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  TOOLCHAIN="+$FUZZ_TOOLCHAIN"
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=+nightly
else
  TOOLCHAIN=+stable
  echo "== no nightly toolchain: stable with RUSTC_BOOTSTRAP=1"
fi
case "$TOOLCHAIN" in +nightly*) ;; *) export RUSTC_BOOTSTRAP=1 ;; esac
echo "== toolchain: $(rustc "$TOOLCHAIN" --version)  sanitizer: $SANITIZER"

mapfile -t ALL < <(cargo "$TOOLCHAIN" fuzz list)
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
  for t in "${TARGETS[@]}"; do
    printf '%s\n' "${ALL[@]}" | grep -qx "$t" || { echo "unknown target: $t (have: ${ALL[*]})" >&2; exit 2; }
  done
else
  TARGETS=("${ALL[@]}")
fi

BUILD_FLAGS=(-O --debug-assertions --sanitizer "$SANITIZER")
echo "== building ${#ALL[@]} targets"
build_start=$(date +%s)
cargo "$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}"
echo "== built in $(( $(date +%s) - build_start )) s"

TRIPLE="$(rustc "$TOOLCHAIN" -vV | sed -n 's/^host: //p')"
BIN_DIR="fuzz/target/$TRIPLE/release"
mkdir -p fuzz/work/logs

failed=0
rows=()
for t in "${TARGETS[@]}"; do
  seeds="fuzz/corpus/$t"
  work="fuzz/work/corpus/$t"
  artifacts="fuzz/artifacts/$t/"
  log="fuzz/work/logs/$t.log"
  mkdir -p "$seeds" "$work" "$artifacts"
  echo "== $t: ${SECONDS_PER_TARGET}s"
  set +e
  "$BIN_DIR/$t" "$work" "$seeds" \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_MB" -timeout="$UNIT_TIMEOUT" \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  corpus=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && grep -q 'DONE' "$log"; then
    result=ok
  else
    failed=1
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then result=TIMEOUT
    elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then result=OOM
    else result=CRASH; fi
    result="$result (exit $rc) ${artifact:-no artifact; see $log}"
    echo "---- $t: last lines of $log"
    grep -v '^#[0-9]' "$log" | tail -40
  fi
  rows+=("$(printf '%-20s %12s %8s  %s' "$t" "${execs:-?}" "${corpus:-?}" "$result")")
done

echo
printf '%-20s %12s %8s  %s\n' target executions corpus result
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzzing found a problem: reproduce with $BIN_DIR/<target> <artifact>" >&2
  exit 1
fi
