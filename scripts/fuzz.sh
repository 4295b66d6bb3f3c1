#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, CPU only, ASan + UBSan, in build-fuzz/) and runs each
# for SECONDS on its checked-in seeds plus the working corpus kept in build-fuzz/ (fuzz/README.md).
# CI runs it briefly from scripts/test.sh; run it longer by hand. Exits non-zero on any crash, whose
# input is left in build-fuzz/fuzz-artifacts/<target>/ (replay: build-fuzz/fuzz/<target> <file>).
# Usage: scripts/fuzz.sh [SECONDS per target, default 60] [target...]   (env FUZZ_JOBS, default 2:
#        targets run side by side; FUZZ_BUILD_DIR, default build-fuzz; extra libFuzzer flags in
#        FUZZ_FLAGS, e.g. FUZZ_FLAGS=-timeout=10 on a loaded machine)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${FUZZ_JOBS:-2}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is not installed (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
  mkdir -p "$build"
  if ! CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGGRAD_CUDA=OFF \
       -DRINGGRAD_FUZZ=ON -DRINGGRAD_TESTS=OFF -DRINGGRAD_BENCHMARKS=OFF >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    exit 1
  fi
fi
# fuzz_all builds only the libraries the targets link, not the CLI, tests or benchmarks.
cmake --build "$build" --target fuzz_all

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do
    t=$(basename "$f" .cpp)
    [ "$t" = fuzz_util ] || targets+=("$t")
  done
fi
logs="$build/fuzz-logs"
mkdir -p "$logs"
echo "fuzz.sh: ${#targets[@]} targets, ${secs} s each, ${jobs} at a time (logs in $logs)"
# shellcheck disable=SC2086
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} sh -c \
  'fuzz/run_fuzzer.sh "$0/fuzz/{}" "$1" $2 >"$0/fuzz-logs/{}.log" 2>&1; echo $? >"$0/fuzz-logs/{}.rc"' \
  "$build" "$secs" "${FUZZ_FLAGS:-}"

# One line per target: executions (libFuzzer's final stats), rate, corpus files and the verdict.
failed=0
printf '%-22s %10s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  rc=$(cat "$logs/$t.rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$build/fuzz-corpus/$t" -type f | wc -l)
  result=ok
  if [ "$rc" != 0 ]; then
    result="CRASH (exit $rc): $(grep -o "Test unit written to .*" "$log" | tail -1)"
    failed=1
  fi
  printf '%-22s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
if [ "$failed" -ne 0 ]; then
  for t in "${targets[@]}"; do
    [ "$(cat "$logs/$t.rc")" = 0 ] && continue
    echo "---- $t: last lines of $logs/$t.log" >&2
    grep -v '^#[0-9]' "$logs/$t.log" | tail -40 >&2
  done
  exit 1
fi
