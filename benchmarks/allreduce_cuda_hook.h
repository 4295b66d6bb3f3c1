// For bench_allreduce's BENCH HOOK [CUDA] (benchmarks/allreduce.cpp): runs 2 ranks of
// bench_allreduce_cuda (built next to it) in worker mode -- the CUDA ring on one GPU, or NCCL on
// two -- and returns bytes -> seconds per f32 allreduce, the sizes 4 KiB * 4^k up to max_bytes.
// Usage there: return rg::bench::run_cuda_allreduce_ranks(backend, max_bytes, budget_s);
#pragma once

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "distributed/launcher.h"

namespace rg::bench {

// Empty when the program is missing, NCCL has fewer than 2 GPUs, or the ranks failed (said on stderr).
inline std::map<long long, double> run_cuda_allreduce_ranks(const std::string& backend, long long max_bytes,
                                                            double budget_s) {
  std::map<long long, double> res;
  char buf[PATH_MAX] = {};
  const ssize_t len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (len <= 0) return res;
  std::string exe(buf, static_cast<size_t>(len));
  exe = exe.substr(0, exe.rfind('/') + 1) + "bench_allreduce_cuda";
  if (access(exe.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "CUDA %s: %s was not built\n", backend.c_str(), exe.c_str());
    return res;
  }
  if (backend == "nccl" && dist::visible_gpus().count() < 2) {
    std::fprintf(stderr, "CUDA nccl: needs 2 GPUs (one per rank)\n");
    return res;
  }
  char tmpl[] = "/tmp/rg-bench-cuda-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (!dir) return res;
  const std::string out = std::string(dir) + "/results.txt";
  dist::LaunchOptions o;
  o.nproc_per_node = 2;
  o.backend = backend;
  o.program = exe;
  o.args = {"--worker", "--quiet",     "--backend", backend, "--out", out, "--max-bytes", std::to_string(max_bytes),
            "--budget-s", std::to_string(budget_s)};
  o.verbose = false;
  const dist::LaunchResult r = dist::launch(o);
  if (r.exit_code != 0) std::fprintf(stderr, "CUDA %s: ranks failed: %s\n", backend.c_str(), r.message.c_str());
  std::ifstream f(out);
  long long b;
  double s;
  while (f >> b >> s) res[b] = s;
  std::remove(out.c_str());
  rmdir(dir);
  return res;
}

}  // namespace rg::bench
