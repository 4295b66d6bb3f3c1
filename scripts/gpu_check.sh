#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds with CUDA, runs the GPU test suites, then the GPU
# benchmarks, saving every log under ${OUT:-gpu_results}/. This is the one command that checks
# everything CI (which has no GPU) cannot: run it whenever a GPU is available and record the
# figures in benchmarks/RESULTS.md.
# Usage: scripts/gpu_check.sh [--tests-only]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export RINGGRAD_CUDA=ON
scripts/setup.sh -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" 2>&1 | tail -5 | tee "$OUT/build.log"
B=${BUILD_DIR:-build}
"$B/apps/ringgrad" info | tee "$OUT/info.log"
# Kernel bugs show up at their launch, not later.
RINGGRAD_DEBUG_SYNC=1 ctest --test-dir "$B" -L gpu --output-on-failure --timeout 900 2>&1 | tee "$OUT/gpu_tests.log"
ctest --test-dir "$B" -L "unit|dist|e2e" --output-on-failure --timeout 1800 2>&1 | tail -20 | tee "$OUT/cpu_tests.log"
[ "${1:-}" = "--tests-only" ] && exit 0
"$B/benchmarks/bench_elementwise" --gpu-only 2>&1 | tee "$OUT/bench_elementwise.log"
"$B/benchmarks/bench_gemm" --gpu-only 2>&1 | tee "$OUT/bench_gemm.log"
"$B/benchmarks/bench_conv" --gpu-only 2>&1 | tee "$OUT/bench_conv.log"
"$B/benchmarks/bench_resnet_train" --gpu-only 2>&1 | tee "$OUT/bench_resnet_train.log"
"$B/benchmarks/bench_allreduce_cuda" 2>&1 | tee "$OUT/bench_allreduce_cuda.log"
"$B/apps/ringgrad" bench dp-vs-ddp --device cuda --replicas 1,2 --sync-bn --out "$OUT/dp_vs_ddp" 2>&1 | tee "$OUT/bench_dp_vs_ddp.log"
