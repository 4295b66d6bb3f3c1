#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds with CUDA, runs the GPU test suites and the GPU
# benchmarks, saving every log under ${OUT:-gpu_results}/. This checks everything CI (which has no
# GPU) cannot; record the figures in benchmarks/RESULTS.md afterwards.
#
# Usage: scripts/gpu_check.sh [STAGE...]   (default: all of them, in this order)
#   build       configure + build with CUDA (sm_${CUDA_ARCH:-90}), then `ringgrad info`
#   gpu-tests   every gpu-labelled suite, with RINGGRAD_DEBUG_SYNC=1 (a kernel fault names its launch)
#   cpu-tests   the unit, dist and e2e suites, built by this machine's compiler (with the GPU cases
#               of the CPU executables: the ctest entries test_nn_gpu, test_e2e_gpu, ...)
#   bench       elementwise, GEMM, conv and ResNet-50 training-step benchmarks
#   bench-dist  the CUDA-IPC allreduce benchmark and `ringgrad bench dp-vs-ddp` on one GPU
#   twin        ours vs the PyTorch twin (benchmarks/torch_twin/compare.sh) with the PyTorch installed
#               here: YOLOv3-tiny, YOLOv3, ResNet-50, batch 16, f32 and f16 AMP; skipped without torch
# Each stage fits one 10-minute call of the lent-GPU tool (every step has its own time limit),
# writes at most 4 files, and ends with a one-line summary per step. On a machine without a package
# registry, run scripts/device_kit.sh beforehand where apt works and bring .devkit along
# (Note [Offline kit] in scripts/setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
B=${BUILD_DIR:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OMP_WAIT_POLICY=PASSIVE
# A GPU check must not pass by skipping (Note [Skips] in tests/test_util.h): with this set, a GPU
# suite that finds no device, or a GPU test case that would skip for want of one, fails naming the
# CUDA error. Set it to the number of GPUs on a multi-GPU machine to make the multi-GPU cases count.
export RINGGRAD_REQUIRE_GPU=${RINGGRAD_REQUIRE_GPU:-1}
summary=()

# step NAME LIMIT_S LOGFILE CMD...: runs CMD under a time limit, tees its output, notes the outcome.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS rc
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local what="ok"
  [ "$rc" -ne 0 ] && what="FAILED (exit $rc)"
  [ "$rc" -eq 124 ] && what="TIMED OUT after ${limit}s"
  [ "$rc" -eq 77 ] && what="SKIPPED (no GPU)"
  summary+=("$(printf '%-28s %-26s %4ds  %s' "$name" "$what" $((SECONDS - t0)) "$log")")
}

stage_build() {
  export RINGGRAD_CUDA=ON
  step build 560 "$OUT/build.log" scripts/setup.sh -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}"
  step info 30 "$OUT/build.log" "$B/apps/ringgrad" info
}

stage_gpu_tests() {
  # The suites run directly (not through ctest) so that each test case's duration is printed.
  for t in test_kernels_gpu test_distributed_gpu; do
    RINGGRAD_DEBUG_SYNC=1 step "$t" 280 "$OUT/$t.log" "$B/tests/$t" --duration=true
  done
}

stage_cpu_tests() {
  step "ctest unit|dist|e2e" 560 "$OUT/cpu_tests.log" \
    ctest --test-dir "$B" -L "unit|dist|e2e" --output-on-failure --timeout 540 -j 3
}

stage_bench() {
  step bench_elementwise 90 "$OUT/bench_kernels.log" "$B/benchmarks/bench_elementwise" --gpu-only
  step bench_gemm 150 "$OUT/bench_kernels.log" "$B/benchmarks/bench_gemm" --gpu-only
  step bench_conv 150 "$OUT/bench_conv.log" "$B/benchmarks/bench_conv" --gpu-only
  step bench_resnet_train 180 "$OUT/bench_resnet_train.log" "$B/benchmarks/bench_resnet_train" --gpu-only
}

stage_bench_dist() {
  step bench_allreduce_cuda 240 "$OUT/bench_allreduce_cuda.log" "$B/benchmarks/bench_allreduce_cuda" --nccl
  step "bench dp-vs-ddp" 300 "$OUT/bench_dp_vs_ddp.log" \
    "$B/apps/ringgrad" bench dp-vs-ddp --device cuda --replicas 1,2 --sync-bn --out "$OUT/dp_vs_ddp"
}

stage_twin() {
  local log="$OUT/twin.log"
  if ! benchmarks/torch_twin/compare.sh --check --device cuda 2>&1 | tee -a "$log"; then
    summary+=("$(printf '%-28s %-26s %4ds  %s' twin "SKIPPED (no CUDA torch)" 0 "$log")")
    return 0
  fi
  step "twin f32 (batch 16)" 290 "$log" benchmarks/torch_twin/compare.sh --device cuda --amp none --runs 2
  step "twin f16-amp (batch 16)" 290 "$log" benchmarks/torch_twin/compare.sh --device cuda --amp f16 --runs 2
}

# cuDNN loads its engine libraries with dlopen: put the folders of the cuDNN and NCCL that CMake found
# (pip wheels included) on the loader path, so that they resolve from there too.
lib_path() {
  local cache="$B/CMakeCache.txt" v
  [ -f "$cache" ] || return 0
  for v in CUDNN_LIBRARY NCCL_LIBRARY; do
    local lib
    lib=$(sed -n "s/^$v:[A-Z]*=//p" "$cache")
    [ -n "$lib" ] && [ -f "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  return 0
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(build gpu-tests cpu-tests bench bench-dist twin)
for s in "${stages[@]}"; do
  lib_path
  case "$s" in
    build) stage_build ;;
    gpu-tests) stage_gpu_tests ;;
    cpu-tests) stage_cpu_tests ;;
    bench) stage_bench ;;
    bench-dist) stage_bench_dist ;;
    twin) stage_twin ;;
    *) echo "gpu_check: unknown stage '$s' (build, gpu-tests, cpu-tests, bench, bench-dist, twin)" >&2; exit 2 ;;
  esac
done
echo
echo "== gpu_check summary (logs in $OUT/)"
printf '%s\n' "${summary[@]}"
