// The multi-process launcher behind `ringgrad launch` (torchrun's job for one node): starts
// the ranks with the rendezvous variables, shows which device each uses, stops them together,
// forwards preemption signals, and restarts the group after a failure (elastic rounds).
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
  bool verbose = true;           // print the rank -> device table, failures and restarts to stderr
  bool forward_signals = true;   // SIGINT, SIGTERM and SIGUSR1 sent to the launcher are passed on to the ranks
  Millis kill_grace{3000};       // after SIGTERM (or a second signal), ranks still alive this much later get SIGKILL
  Millis job_timeout{0};         // > 0: stop everything and fail when the job runs longer (each round)
  // Elastic restarts (Note [Elastic rounds]): after a rank fails, stop the group and start it
  // again, up to this many times (torchrun's --max-restarts).
  int max_restarts = 0;
  // After a forwarded SIGTERM/SIGUSR1/SIGINT, or a rank's kExitPreempted, the ranks get this long
  // to finish their step, save and exit before SIGKILL (Note [Exit codes]).
  Millis preempt_grace{60000};
  Millis rdzv_timeout{300000};   // how long the nodes' launchers wait for each other at each round
  Millis node_timeout{30000};    // another node's launcher silent this long (no heartbeat) is lost
  // After a rank exits with kExitCollectiveHang, the others get this long to print their own hang
  // reports before SIGTERM (ranks that are stopped, state T, are not waited for).
  Millis report_grace{5000};
  Millis collective_timeout{0};  // > 0: exported as RINGGRAD_COLLECTIVE_TIMEOUT_S (Note [Hang watchdog])
  int tail_lines = 20;           // lines of a failed rank's stderr printed with its failure
};

// One rank's failure, as the launcher prints it.
struct RankFailure {
  int round = 0;             // 0 for the first start, r after r restarts
  int node = 0;
  int rank = -1;             // global rank
  int pid = 0;
  int exit_code = 0;         // 128 + signal when killed
  bool killed = false;       // by a signal (it did not exit by itself)
  std::string what;          // "was killed by signal 9 (SIGKILL)", "exited with code 86 (collective hang ...)"
  std::string stderr_tail;   // its last tail_lines lines of stderr (empty for a rank of another node)
  std::string describe() const;  // "rank 3 (node 1, pid 4242) was killed by signal 9 (SIGKILL)"
};

struct LaunchResult {
  int exit_code = 0;      // 0; the job's first failure's code (128 + signal when killed); kExitPreempted
                          // when the ranks stopped for a preemption; 128 + the signal the launcher
                          // received when they did not all save; 124 after job_timeout
  int failed_rank = -1;   // the global rank that failed first (in the last round), or -1
  std::string message;    // "rank 1 (node 0, pid 4242) exited with code 7; stopped the other ranks"
  std::vector<int> pids;  // by local rank, of the last round (all reaped when launch returns)
  int restarts = 0;       // how many times the group was started again
  std::vector<RankFailure> failures;  // every round's failures, in the order the job's store saw them
};

// Note [Launcher]
// - Each rank gets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//   GROUP_RANK (node rank), GROUP_WORLD_SIZE, RINGGRAD_BACKEND (when a backend was named),
//   TORCHELASTIC_USE_AGENT_STORE=True, TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS,
//   RINGGRAD_COLLECTIVE_TIMEOUT_S (when given), and OMP_NUM_THREADS=1 unless set.
// - Each rank runs in its own process group with PR_SET_PDEATHSIG=SIGKILL: if the launcher dies,
//   even by SIGKILL, its ranks die too. (The signal follows the *thread* that forked: call launch
//   from a thread that outlives the job.)
// - A rank's stderr goes through a pipe: the launcher passes it on (to its own stderr, or the
//   rank's log) and keeps its last lines, printed when the rank fails.
// - When a rank exits non-zero (or is killed), the others get SIGTERM (and SIGCONT, for stopped
//   ones) 0.2 s later, then SIGKILL after kill_grace; after kExitCollectiveHang they first get
//   report_grace. A rank killed by a signal before that SIGTERM is a failure of its own.
//   launch returns the failing rank's code, or restarts the group (Note [Elastic rounds]).
// - SIGTERM, SIGUSR1 and SIGINT are forwarded to every rank, which then has preempt_grace to save
//   and exit; a second signal is forwarded too and cuts the grace to kill_grace. The launcher
//   returns kExitPreempted when every rank exited with it (or 0), else 128 + the signal. A rank
//   exiting with kExitPreempted on its own (the ranks agreed to stop) is not a failure either.
// - It never initialises CUDA, so forking is always safe: the visible GPUs are counted from the
//   /dev/nvidia<N> device nodes and CUDA_VISIBLE_DEVICES, parsed as CUDA does (see visible_gpus).
//
// Note [Elastic rounds]
// - The store of the job is served by the launcher of node 0 at MASTER_ADDR:MASTER_PORT for the
//   job's whole life (torchrun's agent store); every rank is a client of it
//   (TORCHELASTIC_USE_AGENT_STORE) and the ranks of round r (started after r restarts; exported as
//   TORCHELASTIC_RESTART_COUNT) keep their keys under "ranks/<r>/", so the keys of a round that
//   failed can never be read by the next one. A stalled rank 0 no longer takes the store with it.
// - Launchers meet in the same store under "launch/": node 0 publishes the job's shape
//   (nnodes, nproc-per-node, max-restarts), which every node checks; each round r starts with
//   a join barrier ("launch/round/<r>/join/<node>") bounded by rdzv_timeout, whose error names the
//   nodes that never came. Every launcher bumps "launch/beat/<node>" each second.
// - While round r runs, a launcher whose rank fails publishes the failure, and one that gets a
//   signal publishes a stop, as "launch/round/<r>/event/<k>" (k counted by
//   "launch/round/<r>/events"). Every launcher polls the counter every 100 ms: on another node's
//   failure it stops its own ranks, on a stop it forwards the same signal to them.
// - When its ranks are gone, each launcher publishes "launch/round/<r>/exit/<node>" and waits for
//   every node's (a node silent for node_timeout counts as lost). All launchers then hold the same
//   failures and take the same decision. The round's result is its first failure killed by a
//   signal, else its first failure (store order): a rank killed by a signal cannot be the fallout
//   of a peer's failure, which surfaces as an error exit, and which failure reaches the store first
//   across nodes is a race (tests/distributed/test_multinode.cpp met it). The group
//   restarts (round r + 1, same world size) while r < max_restarts, the failures are restartable
//   (is_restartable_exit: not kExitPreempted, not kExitNanStop) and no stop was published.
//   Finally node 0 waits (at most 5 s) for every node's "launch/done/<node>" before the store goes.
// - Slurm or MPI map onto this by running one `ringgrad launch --nnodes N --node-rank R` per node
//   (README, "Several nodes"), or by starting the ranks directly (env:// understands SLURM_* and
//   OMPI_COMM_WORLD_*; rank 0 then serves the store and there are no restarts).
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
