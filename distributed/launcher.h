// The multi-process launcher behind `ringgrad launch` (torchrun's job for one node): starts
// the ranks with the rendezvous variables, shows which device each uses, and stops them together.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "distributed/store.h"

namespace rg::dist {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;           // 0: a free port, picked here (single node only)
  // "ring" or "nccl" (nccl: one visible GPU per rank, checked), exported as RINGGRAD_BACKEND;
  // empty leaves the choice to the program (init_process_group's "auto").
  std::string backend;
  std::string program;           // a path, or a name looked up in PATH
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // extra variables for every rank (win over ours)
  std::string log_dir;           // when set (created if missing), rank r's output goes to <log_dir>/rank_<r>.log
  bool verbose = true;           // print the rank -> device table and failures to stderr
  bool forward_signals = true;   // SIGINT/SIGTERM sent to the launcher are passed on to the ranks
  Millis kill_grace{3000};       // after SIGTERM, ranks still alive this much later get SIGKILL
  Millis job_timeout{0};         // > 0: stop everything and fail when the job runs longer
};

struct LaunchResult {
  int exit_code = 0;      // 0; the first failing rank's code (128 + signal when killed); 128 + the
                          // signal the launcher received; 124 after job_timeout
  int failed_rank = -1;   // the global rank that failed first, or -1
  std::string message;    // "rank 1 (pid 4242) exited with code 7; stopped the other ranks"
  std::vector<int> pids;  // by local rank (all reaped when launch returns)
};

// Note [Launcher]
// - Each rank gets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//   GROUP_RANK (node rank), GROUP_WORLD_SIZE, RINGGRAD_BACKEND (when a backend was named), and
//   OMP_NUM_THREADS=1 unless set.
// - Each rank runs in its own process group with PR_SET_PDEATHSIG=SIGKILL: if the launcher dies,
//   even by SIGKILL, its ranks die too. (The signal follows the *thread* that forked: call launch
//   from a thread that outlives the job.)
// - When a rank exits non-zero (or is killed), the others get SIGTERM, then SIGKILL after
//   kill_grace, and launch returns that rank's code.
// - It never initialises CUDA, so forking is always safe: the visible GPUs are counted from the
//   /dev/nvidia<N> device nodes and CUDA_VISIBLE_DEVICES, parsed as CUDA does (see visible_gpus).
LaunchResult launch(const LaunchOptions& opts);

// The GPUs a CUDA process started now would see, without initialising CUDA. `physical` holds what
// CUDA_VISIBLE_DEVICES names for each visible ordinal (an index or a GPU-/MIG- UUID); without the
// variable, every /dev/nvidia<N> node in order. Like CUDA, the list stops at the first invalid or
// repeated entry, and an empty variable hides every GPU.
struct VisibleGpus {
  std::vector<std::string> physical;
  int count() const { return static_cast<int>(physical.size()); }
};
VisibleGpus visible_gpus();
// The parsing behind visible_gpus, for tests: `cuda_visible_devices` may be null (unset);
// device_nodes are the N of the /dev/nvidia<N> nodes, sorted.
VisibleGpus visible_gpus_from(const char* cuda_visible_devices, const std::vector<int>& device_nodes);

// The table printed at start: "rank 0 (node 0, local 0) -> cuda:0 (physical GPU 3)".
std::string device_table(const LaunchOptions& opts, const VisibleGpus& gpus);

// A TCP port that was free a moment ago (bind to port 0, read it, close).
int pick_free_port();

}  // namespace rg::dist
