#!/usr/bin/env bash
# Runs one fuzz target for SECONDS: its checked-in seeds (fuzz/corpus/<target>/) and its working
# corpus (<build>/fuzz-corpus/<target>/, kept between runs: new inputs go there, never into the
# seeds), with fuzz/dict/<target>.dict when it exists, and the limits of Note [Fuzz invariants].
# A crash leaves its input in <build>/fuzz-artifacts/<target>/ and exits non-zero.
# Usage: fuzz/run_fuzzer.sh BINARY SECONDS [more libFuzzer flags...]
set -euo pipefail
bin=$(realpath "$1")
secs=$2
shift 2
name=$(basename "$bin")
src=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$(dirname "$bin")/.." && pwd)
work="$build/fuzz-corpus/$name"
artifacts="$build/fuzz-artifacts/$name/"
mkdir -p "$work" "$artifacts"
dict=()
[ -f "$src/dict/$name.dict" ] && dict=(-dict="$src/dict/$name.dict")
# The targets' scratch files (fuzz/fuzz_util.h) go to a folder of this run (tmpfs when there is one,
# for the fsyncs of atomic writes), removed after it.
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
RG_FUZZ_TMPDIR=$(mktemp -d "$base/rg-fuzz-run.XXXXXX")
export RG_FUZZ_TMPDIR
trap 'rm -rf "$RG_FUZZ_TMPDIR"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1
# One input may take 1 s, allocate 512 MB at once and 2 GB in all (ASan's own overhead included).
"$bin" -max_total_time="$secs" -timeout=1 -malloc_limit_mb=512 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts" ${dict[@]+"${dict[@]}"} "$@" "$work" "$src/corpus/$name" </dev/null
