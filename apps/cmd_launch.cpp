// `ringgrad launch`: starts N ranks of a program on this node with the rendezvous variables set
// (torchrun's role), restarts them after failures, forwards preemption signals; the work is done
// by rg::dist::launch (distributed/launcher.h).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/commands.h"
#include "core/error.h"
#include "distributed/exit_codes.h"
#include "distributed/launcher.h"

namespace rg::app {

namespace {

void launch_usage() {
  std::printf(
      "usage: ringgrad launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]\n"
      "                       [--max-restarts K] [--backend ring|nccl] [--log-dir DIR] -- <program> [args...]\n\n"
      "Starts N ranks of <program> with MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK,\n"
      "LOCAL_WORLD_SIZE, GROUP_RANK and TORCHELASTIC_RESTART_COUNT set, prints the rank -> device table,\n"
      "forwards SIGINT/SIGTERM/SIGUSR1, and stops every rank when one fails, printing its exit code or\n"
      "signal and the last lines of its stderr. Node 0's launcher serves the job's store.\n"
      "  --nproc-per-node N      ranks on this node (default 1)\n"
      "  --nnodes M              nodes in the job (default 1); with M > 1 give --master-addr and --master-port\n"
      "                          and run one launcher per node\n"
      "  --node-rank R           this node's index (default 0)\n"
      "  --master-addr A         host of node 0, where the job's store runs (default 127.0.0.1)\n"
      "  --master-port P         port of the job's store (default: a free port, single node only)\n"
      "  --max-restarts K        after a rank fails, stop the group and start it again, up to K times\n"
      "                          (default 0); the program resumes from its own checkpoint\n"
      "  --preempt-grace S       after a forwarded signal, seconds the ranks get to save and exit before\n"
      "                          SIGKILL (default 60); a second signal cuts it to 3 s\n"
      "  --collective-timeout S  seconds a collective may make no progress before the hang watchdog\n"
      "                          reports it and ends the job (exported as RINGGRAD_COLLECTIVE_TIMEOUT_S;\n"
      "                          default 300; RINGGRAD_WATCHDOG=0 turns the watchdog off)\n"
      "  --rdzv-timeout S        seconds the nodes wait for each other at each (re)start (default 300)\n"
      "  --backend B             ring or nccl, exported as RINGGRAD_BACKEND (default: the program picks: nccl\n"
      "                          for CUDA with a GPU per rank, else ring); nccl refuses more ranks than GPUs\n"
      "  --log-dir DIR           write rank r's output to DIR/rank_<r>.log instead of the terminal\n\n"
      "Exit codes (the ranks' code is passed on; distributed/exit_codes.h):\n"
      "  0      every rank finished\n"
      "  1      an error (the failing rank's message is printed); 2: a usage error\n"
      "  %d     preempted: a signal arrived, the ranks saved a checkpoint and stopped; run again to resume\n"
      "  %d     collective hang: the watchdog saw a collective stall for the collective timeout and\n"
      "         printed a report naming it and the ranks that never reached it\n"
      "  %d     the NaN guard stopped training\n"
      "  124    the job timeout passed;  127: the program was not found\n"
      "  128+N  a rank was killed by signal N (137: SIGKILL, e.g. out of memory), or the launcher got\n"
      "         signal N and the ranks did not all save\n"
      "Restarts follow any failure but %d and %d, and not after a signal to the launcher.\n",
      dist::kExitPreempted, dist::kExitCollectiveHang, dist::kExitNanStop, dist::kExitPreempted,
      dist::kExitNanStop);
}

int to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  RG_CHECK(!v.empty() && end && *end == '\0', "ringgrad launch: ", flag, " expects an integer, got '", v, "'");
  return static_cast<int>(x);
}

// Seconds (fractions allowed), > 0 unless zero_ok.
dist::Millis to_millis(const std::string& flag, const std::string& v, bool zero_ok) {
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  RG_CHECK(!v.empty() && end && *end == '\0' && s == s && (zero_ok ? s >= 0 : s > 0) && s < 1e7, "ringgrad launch: ",
           flag, " expects a number of seconds", zero_ok ? " >= 0" : " > 0", ", got '", v, "'");
  return dist::Millis(static_cast<int64_t>(s * 1000.0 + 0.5));
}

}  // namespace

int cmd_launch(const Args& args) {
  dist::LaunchOptions o;
  bool addr_given = false;
  size_t i = 0;
  // Options come first; "--" (or the first word that is not an option) starts the program.
  for (; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      launch_usage();
      return 0;
    }
    if (a.rfind("--", 0) != 0) break;
    std::string value;
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      RG_CHECK(i + 1 < args.size(), "ringgrad launch: ", a, " needs a value");
      value = args[++i];
    }
    for (auto& c : a) c = c == '_' ? '-' : c;  // torchrun spells them --nproc_per_node
    if (a == "--nproc-per-node") o.nproc_per_node = to_int(a, value);
    else if (a == "--nnodes") o.nnodes = to_int(a, value);
    else if (a == "--node-rank") o.node_rank = to_int(a, value);
    else if (a == "--master-addr") o.master_addr = value, addr_given = true;
    else if (a == "--master-port") o.master_port = to_int(a, value);
    else if (a == "--max-restarts") o.max_restarts = to_int(a, value);
    else if (a == "--preempt-grace") o.preempt_grace = to_millis(a, value, true);
    else if (a == "--collective-timeout") o.collective_timeout = to_millis(a, value, false);
    else if (a == "--rdzv-timeout") o.rdzv_timeout = to_millis(a, value, false);
    else if (a == "--backend") o.backend = value;
    else if (a == "--log-dir") o.log_dir = value;
    else RG_THROW("ringgrad launch: unknown option ", a, " (see ringgrad launch --help)");
  }
  if (i >= args.size()) {
    launch_usage();
    return 2;
  }
  RG_CHECK(o.nnodes >= 1, "ringgrad launch: --nnodes must be >= 1, got ", o.nnodes);
  RG_CHECK(o.master_port >= 0 && o.master_port <= 65535, "ringgrad launch: --master-port must be in 0..65535 (0: a free "
           "port, one node only), got ", o.master_port);
  RG_CHECK(o.nnodes == 1 || addr_given, "ringgrad launch: --master-addr is required with --nnodes ", o.nnodes,
           " (the host of rank 0, reachable from every node)");
  o.program = args[i];
  o.args.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
  return dist::launch(o).exit_code;
}

}  // namespace rg::app
