// `ringgrad launch`: starts N ranks of a program on this node with the rendezvous variables set
// (torchrun's role); the work is done by rg::dist::launch (distributed/launcher.h).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/commands.h"
#include "core/error.h"
#include "distributed/launcher.h"

namespace rg::app {

namespace {

void launch_usage() {
  std::printf(
      "usage: ringgrad launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]\n"
      "                       [--backend ring|nccl] [--log-dir DIR] -- <program> [args...]\n\n"
      "Starts N ranks of <program> with MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK,\n"
      "LOCAL_WORLD_SIZE and GROUP_RANK set, prints the rank -> device table, forwards SIGINT/SIGTERM,\n"
      "and stops every rank when one fails, exiting with that rank's code.\n"
      "  --nproc-per-node N  ranks on this node (default 1)\n"
      "  --nnodes M          nodes in the job (default 1); with M > 1 give --master-addr and --master-port\n"
      "  --node-rank R       this node's index (default 0)\n"
      "  --master-addr A     host of rank 0 (default 127.0.0.1)\n"
      "  --master-port P     port of the store on rank 0 (default: a free port, single node only)\n"
      "  --backend B         ring or nccl, exported as RINGGRAD_BACKEND (default: the program picks: nccl\n"
      "                      for CUDA with a GPU per rank, else ring); nccl refuses more ranks than GPUs\n"
      "  --log-dir DIR       write rank r's output to DIR/rank_<r>.log instead of the terminal\n");
}

int to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  RG_CHECK(!v.empty() && end && *end == '\0', "ringgrad launch: ", flag, " expects an integer, got '", v, "'");
  return static_cast<int>(x);
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
    else if (a == "--backend") o.backend = value;
    else if (a == "--log-dir") o.log_dir = value;
    else RG_THROW("ringgrad launch: unknown option ", a, " (see ringgrad launch --help)");
  }
  if (i >= args.size()) {
    launch_usage();
    return 2;
  }
  RG_CHECK(o.nnodes == 1 || addr_given, "ringgrad launch: --master-addr is required with --nnodes ", o.nnodes,
           " (the host of rank 0, reachable from every node)");
  o.program = args[i];
  o.args.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
  return dist::launch(o).exit_code;
}

}  // namespace rg::app
