// bench_allreduce: how fast is our CPU ring allreduce (TCP and shared memory, 2 ranks) against
// Open MPI's MPI_Allreduce, from 4 KiB to 256 MiB? Prints algbw and busbw as nccl-tests does.
// Usage: bench_allreduce [--max-bytes N] [--nproc 2] [--budget-s 0.3]   (launches its own ranks)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "allreduce_cuda_hook.h"
#include "core/cuda_api.h"
#include "core/native.h"
#include "distributed/launcher.h"
#include "distributed/process_group.h"
#include "distributed/ring_cpu.h"

using namespace rg;
using namespace rg::dist;

namespace {

using Results = std::map<long long, double>;  // bytes -> seconds per allreduce

std::string arg(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

Results read_results(const std::string& path) {
  Results r;
  std::ifstream f(path);
  long long b;
  double s;
  while (f >> b >> s) r[b] = s;
  return r;
}

// ---- a rank (started by the driver below through the launcher)

int run_rank(long long max_bytes, double budget_s, const std::string& out_path) {
  auto pg = init_process_group(InitOptions{});
  std::ofstream out;
  if (pg->rank() == 0) out.open(out_path);
  for (long long bytes = 4096; bytes <= max_bytes; bytes *= 4) {
    Tensor x = full({bytes / 4}, 0.5 + pg->rank());
    auto once = [&] { pg->allreduce(x)->wait(); };
    auto t = std::chrono::steady_clock::now();
    once();
    once();
    const double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / 2;
    // Every rank must run the same count: rank 0's choice wins (max over ranks, it is alone > 0).
    Tensor iters = full({1}, pg->rank() == 0 ? std::clamp(budget_s / std::max(warm, 1e-9), 3.0, 2000.0) : 0.0,
                        DType::i32);
    pg->allreduce(iters, dist::ReduceOp::Max)->wait();
    const int n = static_cast<int>(iters.item());
    pg->barrier()->wait();
    t = std::chrono::steady_clock::now();
    for (int k = 0; k < n; ++k) once();
    const double per = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / n;
    if (pg->rank() == 0) out << bytes << " " << per << "\n" << std::flush;
  }
  auto* ring = dynamic_cast<RingCpuProcessGroup*>(pg.get());
  if (pg->rank() == 0 && ring) std::fprintf(stderr, "  (transport: %s)\n", ring->transport().c_str());
  destroy_process_group();
  return 0;
}

// ---- the CUDA section: for the helper who owns distributed/cuda_ring*.cpp and nccl_*.cpp
//
// BENCH HOOK [CUDA]: the CUDA ring (2 ranks on one GPU) and NCCL (one GPU per rank) over the same
// sizes, measured by bench_allreduce_cuda's ranks (benchmarks/allreduce_cuda_hook.h). An empty
// map skips. The ranks are launched from here, so this driver must never initialise CUDA.
Results bench_cuda_allreduce(const std::string& backend, long long max_bytes, double budget_s) {
  return rg::bench::run_cuda_allreduce_ranks(backend, max_bytes, budget_s);
}

Results run_ring(const std::string& transport, int nproc, long long max_bytes, double budget_s) {
  char tmpl[] = "/tmp/rg-bench-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string out = dir + "/results.txt";
  LaunchOptions o;
  o.nproc_per_node = nproc;
  o.program = self_exe();
  o.args = {"--rank-worker", out, "--max-bytes", std::to_string(max_bytes), "--budget-s", std::to_string(budget_s)};
  o.env = {{"RINGGRAD_RING_TRANSPORT", transport}, {"OMP_NUM_THREADS", "1"}};
  o.verbose = false;
  const LaunchResult r = launch(o);
  Results res = read_results(out);
  std::filesystem::remove_all(dir);
  if (r.exit_code != 0) std::fprintf(stderr, "ring over %s failed: %s\n", transport.c_str(), r.message.c_str());
  return res;
}

Results run_mpi(int nproc, long long max_bytes, double budget_s) {
  const std::string mpi_bench = std::filesystem::path(self_exe()).parent_path() / "bench_allreduce_mpi";
  if (!std::filesystem::exists(mpi_bench)) {
    std::printf("MPI: skipped (bench_allreduce_mpi was not built: no MPI found at configure time)\n");
    return {};
  }
  const std::string cmd = "mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(nproc) + " " + mpi_bench +
                          " " + std::to_string(max_bytes) + " " + std::to_string(budget_s) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {};
  Results r;
  std::string other;
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    long long b;
    double s;
    if (std::sscanf(line, "%lld %lf", &b, &s) == 2) r[b] = s;
    else other += line;
  }
  const int rc = ::pclose(p);
  if (rc != 0 || r.empty()) std::printf("MPI: `%s` failed:\n%s\n", cmd.c_str(), other.c_str());
  return r;
}

std::string human(long long bytes) {
  char b[32];
  if (bytes >= (1LL << 20)) std::snprintf(b, sizeof b, "%lld MiB", bytes >> 20);
  else std::snprintf(b, sizeof b, "%lld KiB", bytes >> 10);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const long long max_bytes = std::atoll(arg(argc, argv, "--max-bytes", std::to_string(256LL << 20)).c_str());
  const double budget_s = std::atof(arg(argc, argv, "--budget-s", "0.3").c_str());
  const std::string worker_out = arg(argc, argv, "--rank-worker", "");
  if (!worker_out.empty()) return run_rank(max_bytes, budget_s, worker_out);

  const int nproc = std::atoi(arg(argc, argv, "--nproc", "2").c_str());
  const double bus = 2.0 * (nproc - 1) / nproc;
  std::printf("allreduce, float32 sum, %d ranks on one host (%u cores); algbw = bytes / time, busbw = algbw * %.2f\n",
              nproc, std::max(1u, static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN))), bus);
  const Results tcp = run_ring("tcp", nproc, max_bytes, budget_s);
  const Results shm = run_ring("shm", nproc, max_bytes, budget_s);
  const Results mpi = run_mpi(nproc, max_bytes, budget_s);
  std::printf("\n%9s | %10s %9s %9s | %10s %9s %9s | %10s %9s | %9s\n", "size", "tcp us", "algbw", "busbw", "shm us",
              "algbw", "busbw", "MPI us", "busbw", "shm/MPI");
  std::printf("%9s | %10s %9s %9s | %10s %9s %9s | %10s %9s | %9s\n", "", "", "GB/s", "GB/s", "", "GB/s", "GB/s", "",
              "GB/s", "busbw");
  for (long long bytes = 4096; bytes <= max_bytes; bytes *= 4) {
    auto cell = [&](const Results& r, bool with_alg) {
      char b[64];
      auto it = r.find(bytes);
      if (it == r.end()) {
        std::snprintf(b, sizeof b, with_alg ? "%10s %9s %9s" : "%10s %9s", "-", "-", "-");
      } else {
        const double alg = bytes / it->second / 1e9;
        if (with_alg) std::snprintf(b, sizeof b, "%10.1f %9.3f %9.3f", it->second * 1e6, alg, alg * bus);
        else std::snprintf(b, sizeof b, "%10.1f %9.3f", it->second * 1e6, alg * bus);
      }
      return std::string(b);
    };
    std::string ratio = "-";
    if (shm.count(bytes) && mpi.count(bytes)) {
      char b[32];
      std::snprintf(b, sizeof b, "%.2fx", mpi.at(bytes) / shm.at(bytes));
      ratio = b;
    }
    std::printf("%9s | %s | %s | %s | %9s\n", human(bytes).c_str(), cell(tcp, true).c_str(), cell(shm, true).c_str(),
                cell(mpi, false).c_str(), ratio.c_str());
  }

  // CUDA: filled in by the CUDA backends (see BENCH HOOK [CUDA] above); skipped without a GPU.
  // The GPUs are counted without initialising CUDA here (visible_gpus): this driver forks ranks.
  if (!cuda::built_with_cuda() || visible_gpus().count() == 0) {
    std::printf("\nCUDA: skipped (%s)\n", cuda::built_with_cuda() ? "no GPU visible" : "built without CUDA");
  } else {
    for (const char* backend : {"ring", "nccl"}) {
      const Results r = bench_cuda_allreduce(backend, max_bytes, budget_s);
      if (r.empty()) {
        std::printf("\nCUDA %s: not measured (see the message above)\n", backend);
        continue;
      }
      std::printf("\nCUDA %s:\n", backend);
      for (const auto& [b, s] : r) {
        std::printf("%9s | %10.1f us  busbw %9.3f GB/s\n", human(b).c_str(), s * 1e6, b / s / 1e9 * bus);
      }
    }
  }
  return 0;
}
