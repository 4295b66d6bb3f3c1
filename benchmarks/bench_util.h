// Timing helpers shared by the benchmark programs: the median of a sample, wall-clock timing on the CPU,
// CUDA-event timing on the current stream, the reason a GPU section is skipped, and plain
// `--name value` / `--flag` command-line lookups.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "core/cuda_api.h"

namespace rg::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median wall-clock milliseconds of `reps` runs of fn, after `warmup` runs.
inline double time_cpu_ms(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(ms);
}

// Median milliseconds per call of fn on the current stream (CUDA events), after `warmup` runs: each of
// the `reps` samples is the mean of `inner` back-to-back calls (inner > 1 lets host work overlap the
// device's).
inline double time_gpu_ms(const std::function<void()>& fn, int warmup, int reps, int inner = 1) {
  for (int i = 0; i < warmup; ++i) fn();
  cuda::synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cuda::Event start(true), stop(true);
    start.record();
    for (int k = 0; k < inner; ++k) fn();
    stop.record();
    stop.synchronize();
    ms.push_back(start.elapsed_ms(stop) / inner);
  }
  return median(ms);
}

// Why the GPU rows are not run when no CUDA device can be used.
inline const char* no_gpu_reason() {
  return cuda::built_with_cuda() ? "no CUDA device visible" : "built without CUDA";
}

// The value after `--name` on the command line (its first occurrence), or nullptr.
inline const char* arg_value(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], name)) return argv[i + 1];
  }
  return nullptr;
}
inline bool has_arg(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], name)) return true;
  }
  return false;
}
inline int64_t int_arg(int argc, char** argv, const char* name, int64_t fallback) {
  const char* v = arg_value(argc, argv, name);
  return v ? std::atoll(v) : fallback;
}

}  // namespace rg::bench
