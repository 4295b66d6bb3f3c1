// dist_worker's fault scenarios (tests/distributed/test_faults.cpp, test_multinode.cpp): a
// checkpointing step loop that can kill itself or stop for a preemption, an endless collective
// loop to freeze with SIGSTOP, and a backend whose collectives never finish (or finish slowly).
#include "fault_scenarios.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "core/native.h"
#include "distributed/exit_codes.h"
#include "distributed/process_group.h"
#include "steps_state.h"

using namespace rg;
using namespace rg::dist;

namespace {

const FaultOpts* g_fo = nullptr;

std::string fopt(const std::string& k, const std::string& fallback = "") {
  auto it = g_fo->find(k);
  return it == g_fo->end() ? fallback : it->second;
}
int fopt_int(const std::string& k, int fallback) { return g_fo->count(k) ? std::atoi(g_fo->at(k).c_str()) : fallback; }

// Writes `text` to `path` atomically: a temporary file, then rename.
void write_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp);
    f << text;
  }
  std::rename(tmp.c_str(), path.c_str());
}

int restart_count() {
  const char* v = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return v ? std::atoi(v) : -1;
}

volatile sig_atomic_t g_stop_signals = 0;
void on_stop_signal(int sig) {
  if (g_stop_signals > 0) ::_exit(128 + sig);  // a second signal: at once, the checkpoint untouched
  g_stop_signals = g_stop_signals + 1;
}

}  // namespace

// The checkpointing loop: `--steps N` steps of one allreduce each, rank 0 saving (step, state)
// atomically after every step, every rank resuming from that file. `--kill-rank K --kill-step S`:
// on the first attempt (TORCHELASTIC_RESTART_COUNT=0) rank K kills itself with SIGKILL at step S.
// `--preempt 1`: SIGTERM/SIGUSR1/SIGINT make the ranks agree (an allreduce of the flag) to stop at
// the next step and exit with kExitPreempted. `--exit-step S --exit-code C`: on the first attempt
// every rank returns C at step S. Each rank finally writes final_<rank>.
int scenario_steps() {
  auto pg = default_group();
  const int rank = pg->rank(), steps = fopt_int("steps", 20), step_ms = fopt_int("step-ms", 10);
  const int kill_rank = fopt_int("kill-rank", -1), kill_step = fopt_int("kill-step", -1);
  const std::string dir = fopt("dir");
  if (fopt_int("preempt", 0)) {
    for (int s : {SIGTERM, SIGUSR1, SIGINT}) ::signal(s, on_stop_signal);
  }
  int step = 0;
  uint64_t state = rg::test::kStepsSeed;
  {
    std::ifstream f(dir + "/ckpt");
    unsigned long long st = 0;
    if (f >> step >> st) state = st;
  }
  const int first = step;
  std::fprintf(stderr, "rank %d: attempt %d (TORCHELASTIC_RESTART_COUNT) starts at step %d\n", rank, restart_count(),
               step);
  for (; step < steps; ++step) {
    if (restart_count() == 0 && step == fopt_int("exit-step", -1)) {  // every rank, as if they had agreed
      std::fprintf(stderr, "rank %d: exiting with code %d at step %d\n", rank, fopt_int("exit-code", 1), step);
      return fopt_int("exit-code", 1);
    }
    if (rank == kill_rank && restart_count() == 0 && step == kill_step) {
      std::fprintf(stderr, "rank %d: killing myself with SIGKILL at step %d\n", rank, step);
      std::fflush(stderr);
      ::raise(SIGKILL);
    }
    if (fopt_int("preempt", 0)) {
      Tensor flag = full({1}, g_stop_signals > 0 ? 1.0 : 0.0, DType::i32);
      pg->allreduce(flag, dist::ReduceOp::Max)->wait();
      if (flag.item() > 0) {
        std::fprintf(stderr, "rank %d: preempted before step %d; the checkpoint holds %d steps\n", rank, step, step);
        return kExitPreempted;
      }
    }
    Tensor x = empty({rg::test::kStepValues}, DType::i64);
    for (int j = 0; j < rg::test::kStepValues; ++j) x.data<int64_t>()[j] = rg::test::step_value(rank, step, j);
    pg->allreduce(x)->wait();
    state = rg::test::fold_step(state, x.data<int64_t>());
    if (rank == 0) write_atomic(dir + "/ckpt", std::to_string(step + 1) + " " + std::to_string(state) + "\n");
    std::fprintf(stderr, "rank %d: step %d done\n", rank, step);
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
  write_atomic(dir + "/final_" + std::to_string(rank), std::to_string(state) + " " + std::to_string(restart_count()) +
                                                          " " + std::to_string(first) + "\n");
  return 0;
}

// Collectives forever (2 ms apart), with the pid and an iteration count in files: a test stops
// one rank with SIGSTOP in the middle and waits for the hang watchdog of the others.
int scenario_hang_loop() {
  auto pg = default_group();
  const std::string dir = fopt("dir"), r = std::to_string(pg->rank());
  write_atomic(dir + "/pid_" + r, std::to_string(::getpid()) + "\n");
  Tensor x = full({1024}, 1.0);
  for (int i = 0;; ++i) {
    pg->allreduce(x, dist::ReduceOp::Avg)->wait();
    if (i % 20 == 0) write_atomic(dir + "/iter_" + r, std::to_string(i) + "\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

namespace {

// A backend whose collectives never finish, or (slow_ms > 0) finish after slow_ms, calling
// note_progress every tick_ms (0: never) meanwhile.
class StuckGroup : public ProcessGroup {
 public:
  StuckGroup(std::shared_ptr<Store> store, int rank, int size, int slow_ms, int tick_ms)
      : ProcessGroup(std::move(store), rank, size), slow_ms_(slow_ms), tick_ms_(tick_ms) {}
  std::string backend() const override { return "stuck"; }
  std::optional<DeviceType> device_type() const override { return DeviceType::CPU; }

 protected:
  std::shared_ptr<Work> do_allreduce(const Tensor&, dist::ReduceOp, const CollectiveInfo&) override { return work(); }
  std::shared_ptr<Work> do_broadcast(const Tensor&, int, const CollectiveInfo&) override { return work(); }
  std::shared_ptr<Work> do_allgather(const Tensor&, const Tensor&, const CollectiveInfo&) override { return work(); }
  std::shared_ptr<Work> do_reduce_scatter(const Tensor&, const Tensor&, dist::ReduceOp,
                                          const CollectiveInfo&) override {
    return work();
  }
  std::shared_ptr<Work> do_barrier(const CollectiveInfo&) override { return work(); }

 private:
  std::shared_ptr<Work> work() {
    auto w = std::make_shared<CompletionWork>();
    if (slow_ms_ > 0) {
      std::thread([this, w] {
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(slow_ms_);
        while (std::chrono::steady_clock::now() < end) {
          std::this_thread::sleep_for(std::chrono::milliseconds(tick_ms_ > 0 ? tick_ms_ : 10));
          if (tick_ms_ > 0) note_progress();
        }
        w->finish();
      }).detach();
    }
    return w;
  }
  int slow_ms_, tick_ms_;
};

}  // namespace

// Not static, so that the hang report's stack names it (dist_worker links with -rdynamic).
int scenario_stuck_collective() {
  auto base = default_group();
  StuckGroup pg(std::make_shared<PrefixStore>("stuck/", base->store()), base->rank(), base->size(),
                fopt_int("slow-ms", 0), fopt_int("tick-ms", 0));
  pg.set_timeout(std::chrono::milliseconds(fopt_int("timeout-ms", 1000)));
  Tensor x = full({3}, 1.0);
  const auto t0 = std::chrono::steady_clock::now();
  pg.allreduce(x)->wait();  // stuck: only the watchdog ends this
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("rank %d: the slow allreduce finished after %.2f s\n", base->rank(), s);
  return 0;
}

int run_fault_scenario(const std::string& name, const FaultOpts& opts) {
  g_fo = &opts;
  if (name == "steps") return scenario_steps();
  if (name == "hang-loop") return scenario_hang_loop();
  if (name == "stuck") return scenario_stuck_collective();
  return -1;
}
