// bench_watchdog: what does the hang watchdog (Note [Hang watchdog]) cost a collective? Its
// bookkeeping alone (one process, a world-size-1 ring group: nothing to send), then a 4-byte
// allreduce between 2 processes over shared memory and over TCP. Each is timed with the watchdog
// on and off in interleaved blocks of the same run (ProcessGroup::set_watchdog), medians.
// Usage: bench_watchdog [--iters 20000] [--blocks 9]   (launches its own ranks)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/native.h"
#include "distributed/launcher.h"
#include "distributed/process_group.h"
#include "distributed/ring_cpu.h"

using namespace rg;
using namespace rg::dist;

namespace {

std::string arg(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

struct Timing {
  double off = 0, on = 0, diff = 0;  // medians: ns per collective off, on, and of (on - off) per pair of blocks
};

// `blocks` pairs of blocks of `iters` allreduces, one block with the watchdog off and one on, in
// alternating order (off-on, on-off, ...). Every rank of the group runs the same schedule.
Timing time_off_on(ProcessGroup& pg, int iters, int blocks) {
  Tensor x = full({1}, 1.0);
  std::vector<double> off, on, diff;
  for (int b = 0; b < 2 * blocks + 2; ++b) {
    const bool watch = (b % 2 == 1) != (b / 2 % 2 == 1);
    pg.set_watchdog(watch);
    pg.barrier()->wait();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) pg.allreduce(x)->wait();
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / iters;
    if (b < 2) continue;  // the first pair warms up
    (watch ? on : off).push_back(ns);
    if (b % 2 == 1) diff.push_back(on.back() - off.back());
  }
  pg.set_watchdog(true);
  return {bench::median(off), bench::median(on), bench::median(diff)};
}

int run_rank(int iters, int blocks, const std::string& out_path) {
  auto pg = init_process_group(InitOptions{});
  const Timing t = time_off_on(*pg, iters, blocks);
  if (pg->rank() == 0) std::ofstream(out_path) << t.off << " " << t.on << " " << t.diff << "\n";
  destroy_process_group();
  return 0;
}

Timing run_two_ranks(const std::string& transport, int iters, int blocks) {
  char tmpl[] = "/tmp/rg-bench-wd-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  LaunchOptions o;
  o.nproc_per_node = 2;
  o.program = std::filesystem::read_symlink("/proc/self/exe").string();
  o.args = {"--rank-worker", dir + "/out", "--iters", std::to_string(iters), "--blocks", std::to_string(blocks)};
  o.env = {{"RINGGRAD_RING_TRANSPORT", transport}, {"OMP_NUM_THREADS", "1"}};
  o.verbose = false;
  const LaunchResult r = launch(o);
  Timing t;
  std::ifstream(dir + "/out") >> t.off >> t.on >> t.diff;
  std::filesystem::remove_all(dir);
  if (r.exit_code != 0) std::fprintf(stderr, "ring over %s failed: %s\n", transport.c_str(), r.message.c_str());
  return t;
}

void row(const char* what, const Timing& t) {
  std::printf("%-34s | %12.0f | %12.0f | %+9.0f ns | %6.3f\n", what, t.off, t.on, t.diff,
              t.off > 0 ? (t.off + t.diff) / t.off : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = std::atoi(arg(argc, argv, "--iters", "20000").c_str());
  const int blocks = std::atoi(arg(argc, argv, "--blocks", "9").c_str());
  const std::string worker_out = arg(argc, argv, "--rank-worker", "");
  if (!worker_out.empty()) return run_rank(iters / 4, blocks, worker_out);

  std::printf("hang watchdog overhead per collective, %d blocks x %d collectives, medians (%u cores)\n", blocks,
              iters, std::max(1u, static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN))));
  std::printf("%-34s | %12s | %12s | %12s | %6s\n", "", "off ns/op", "on ns/op", "on - off", "ratio");
  std::printf("%-34s | %12s | %12s | %12s | %6s\n", "", "", "", "(per pair)", "");
  {
    auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(10000));
    RingCpuProcessGroup pg(store, 0, 1);
    row("bookkeeping: allreduce, 1 rank", time_off_on(pg, iters, blocks));
  }
  row("allreduce 4 B, 2 ranks, shm", run_two_ranks("shm", iters, blocks));
  row("allreduce 4 B, 2 ranks, tcp", run_two_ranks("tcp", iters, blocks));
  return 0;
}
