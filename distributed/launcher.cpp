// The multi-process launcher (Note [Launcher] in launcher.h): checks, the rank -> device table,
// each rank's environment, and the rounds of an elastic job (Note [Elastic rounds]); one round on
// this node runs in launcher_round.cpp, the ranks in launcher_ranks.cpp, the nodes' store in
// launcher_agent.cpp.
#include "distributed/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "distributed/exit_codes.h"
#include "distributed/launcher_internal.h"
#include "distributed/socket_util.h"

extern char** environ;

namespace rg::dist {

namespace {

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// The /dev/nvidia<N> nodes, by N.
std::vector<int> gpu_device_nodes() {
  std::vector<int> ids;
  if (DIR* d = ::opendir("/dev")) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("nvidia", 0) == 0 && all_digits(name.substr(6))) ids.push_back(std::atoi(name.c_str() + 6));
    }
    ::closedir(d);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

VisibleGpus visible_gpus() { return visible_gpus_from(std::getenv("CUDA_VISIBLE_DEVICES"), gpu_device_nodes()); }

VisibleGpus visible_gpus_from(const char* cvd, const std::vector<int>& nodes) {
  VisibleGpus v;
  if (!cvd) {
    for (int id : nodes) v.physical.push_back(std::to_string(id));
    return v;
  }
  std::set<std::string> seen;
  const std::string s = cvd;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string tok = trim(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    bool ok = false;
    if (all_digits(tok)) {
      ok = std::atoi(tok.c_str()) < static_cast<int>(nodes.size());
    } else if (tok.rfind("GPU-", 0) == 0 || tok.rfind("MIG-", 0) == 0) {
      ok = !nodes.empty();
    }
    if (!ok || !seen.insert(tok).second) break;  // CUDA stops at the first invalid or repeated entry
    v.physical.push_back(tok);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return v;
}

std::string device_table(const LaunchOptions& o, const VisibleGpus& gpus) {
  const int world = o.nnodes * o.nproc_per_node;
  std::string t = "ringgrad launch: " + std::to_string(world) + " rank" + (world == 1 ? "" : "s") + " (" +
                  std::to_string(o.nnodes) + " node" + (o.nnodes == 1 ? "" : "s") + " x " +
                  std::to_string(o.nproc_per_node) + "), backend " + (o.backend.empty() ? std::string("chosen by the program") : o.backend) + ", master " + o.master_addr + ":" +
                  std::to_string(o.master_port) + "\n";
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  t += "  CUDA_VISIBLE_DEVICES=" + std::string(cvd ? cvd : "(unset)") + ", " + std::to_string(gpus.count()) +
       " GPU(s) visible on this node\n";
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    std::string dev = "cpu";
    if (gpus.count() > 0) {
      const int ordinal = local % gpus.count();
      const std::string& phys = gpus.physical[static_cast<size_t>(ordinal)];
      dev = "cuda:" + std::to_string(ordinal) + " (physical GPU " + phys + ")";
      if (o.nproc_per_node > gpus.count()) dev += ", shared";
    }
    t += "  rank " + std::to_string(rank) + " (node " + std::to_string(o.node_rank) + ", local " +
         std::to_string(local) + ") -> " + dev + "\n";
  }
  return t;
}

int pick_free_port() {
  std::string err;
  int port = 0;
  net::Fd fd = net::listen_tcp(0, 1, &port, &err);
  RG_CHECK(fd.valid(), "ringgrad launch: cannot find a free port (", err, ")");
  return port;
}

std::string RankFailure::describe() const {
  if (rank < 0) return "node " + std::to_string(node) + ": " + what;
  return "rank " + std::to_string(rank) + " (node " + std::to_string(node) +
         (pid > 0 ? ", pid " + std::to_string(pid) : "") + ") " + what;
}

namespace {

void validate(const LaunchOptions& o) {
  RG_CHECK(o.nproc_per_node >= 1, "ringgrad launch: --nproc-per-node must be >= 1, got ", o.nproc_per_node);
  RG_CHECK(o.nnodes >= 1, "ringgrad launch: --nnodes must be >= 1, got ", o.nnodes);
  RG_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes, "ringgrad launch: --node-rank ", o.node_rank,
           " is out of range for --nnodes ", o.nnodes);
  RG_CHECK(!o.program.empty(), "ringgrad launch: no program given (ringgrad launch [options] -- <program> [args])");
  RG_CHECK(o.backend.empty() || o.backend == "ring" || o.backend == "nccl",
           "ringgrad launch: --backend must be ring or nccl, got '", o.backend, "'");
  RG_CHECK(o.master_port != 0 || o.nnodes == 1, "ringgrad launch: --master-port is required with --nnodes ",
           o.nnodes, " (every node must use the same one)");
  RG_CHECK(o.max_restarts >= 0, "ringgrad launch: --max-restarts must be >= 0, got ", o.max_restarts);
  RG_CHECK(o.preempt_grace.count() >= 0 && o.kill_grace.count() >= 0 && o.report_grace.count() >= 0,
           "ringgrad launch: grace periods must be >= 0");
  RG_CHECK(o.rdzv_timeout.count() > 0, "ringgrad launch: --rdzv-timeout must be > 0");
  RG_CHECK(o.collective_timeout.count() >= 0, "ringgrad launch: --collective-timeout must be > 0");
}

std::map<std::string, std::string> base_environment(const LaunchOptions& o) {
  std::map<std::string, std::string> e;
  for (char** p = environ; *p; ++p) {
    const char* eq = std::strchr(*p, '=');
    if (eq) e[std::string(*p, static_cast<size_t>(eq - *p))] = eq + 1;
  }
  if (!e.count("OMP_NUM_THREADS")) e["OMP_NUM_THREADS"] = "1";
  e["MASTER_ADDR"] = o.master_addr;
  e["MASTER_PORT"] = std::to_string(o.master_port);
  e["WORLD_SIZE"] = std::to_string(o.nnodes * o.nproc_per_node);
  e["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc_per_node);
  e["GROUP_RANK"] = std::to_string(o.node_rank);
  e["GROUP_WORLD_SIZE"] = std::to_string(o.nnodes);
  e["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  e["TORCHELASTIC_MAX_RESTARTS"] = std::to_string(o.max_restarts);
  if (!o.backend.empty()) e["RINGGRAD_BACKEND"] = o.backend;
  if (o.collective_timeout.count() > 0) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(o.collective_timeout.count()) / 1000.0);
    e["RINGGRAD_COLLECTIVE_TIMEOUT_S"] = b;
  }
  return e;
}

std::vector<net::Fd> open_logs(const LaunchOptions& o) {
  std::vector<net::Fd> logs;
  if (o.log_dir.empty()) return logs;
  std::error_code ec;
  std::filesystem::create_directories(o.log_dir, ec);
  RG_CHECK(!ec, "ringgrad launch: cannot create the log directory ", o.log_dir, ": ", ec.message());
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    const std::string path = o.log_dir + "/rank_" + std::to_string(rank) + ".log";
    net::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    RG_CHECK(fd.valid(), "ringgrad launch: cannot write ", path, ": ", net::errno_str(errno));
    logs.push_back(std::move(fd));
  }
  return logs;
}

// Round `round`'s ranks: the program, each rank's environment, and its log (a new descriptor on
// the same open file, so every round appends to one log).
detail::LocalRanks::Spec round_spec(const LaunchOptions& o, const std::map<std::string, std::string>& base,
                                   const std::vector<net::Fd>& logs, int round) {
  detail::LocalRanks::Spec spec;
  spec.argv = {o.program};
  spec.argv.insert(spec.argv.end(), o.args.begin(), o.args.end());
  spec.first_rank = o.node_rank * o.nproc_per_node;
  spec.node = o.node_rank;
  for (int local = 0; local < o.nproc_per_node; ++local) {
    std::map<std::string, std::string> e = base;
    e["RANK"] = std::to_string(spec.first_rank + local);
    e["LOCAL_RANK"] = std::to_string(local);
    e["TORCHELASTIC_RESTART_COUNT"] = std::to_string(round);
    for (const auto& [k, v] : o.env) e[k] = v;
    std::vector<std::string> kv;
    for (const auto& [k, v] : e) kv.push_back(k + "=" + v);
    spec.envs.push_back(std::move(kv));
    if (!logs.empty()) {
      net::Fd d(::fcntl(logs[static_cast<size_t>(local)].get(), F_DUPFD_CLOEXEC, 0));
      RG_CHECK(d.valid(), "ringgrad launch: dup of a log failed: ", net::errno_str(errno));
      spec.logs.push_back(std::move(d));
    }
  }
  return spec;
}

void say(const LaunchOptions& o, const std::string& m) {
  if (o.verbose) std::fprintf(stderr, "ringgrad launch: %s\n", m.c_str());
}

// The result of a round without failures: success, or a preemption every rank saved for.
void finish_clean(const LaunchOptions& o, const detail::RoundOutcome& out, LaunchResult& res) {
  res.message.clear();  // an earlier round's failure was answered by the restart
  res.failed_rank = -1;
  bool all_saved = true, any_saved = false;
  for (const auto& [node, code] : out.node_codes) {
    all_saved = all_saved && (code == 0 || code == kExitPreempted);
    any_saved = any_saved || code == kExitPreempted;
  }
  if (out.node_codes.empty()) {  // the store was lost before the exits were gathered
    any_saved = out.local_code == kExitPreempted;
    all_saved = out.local_code == 0 || any_saved;
  }
  if (out.stop_signal) {
    res.exit_code = all_saved && any_saved ? kExitPreempted : 128 + out.stop_signal;
    res.message = std::string("the launcher got ") + strsignal(out.stop_signal) + " and passed it on; " +
                  (res.exit_code == kExitPreempted ? "the ranks saved and stopped (preempted)"
                                                   : "the ranks did not all stop with the preempted code");
  } else {
    res.exit_code = any_saved ? kExitPreempted : 0;
    if (any_saved) res.message = "the ranks stopped with the preempted code (checkpoint saved)";
  }
  if (!res.message.empty()) say(o, res.message + "; exit code " + std::to_string(res.exit_code));
  if (res.restarts > 0 && res.exit_code == 0) {
    say(o, "the job finished after " + std::to_string(res.restarts) + " restart" + (res.restarts == 1 ? "" : "s"));
  }
}

// Whether the round's failures may be answered with a restart (Note [Elastic rounds]).
bool restartable(const LaunchOptions& o, const detail::RoundOutcome& out, int round,
                 const std::vector<RankFailure>& failures) {
  if (!out.store_error.empty() || out.stop_signal || round >= o.max_restarts) return false;
  return std::all_of(failures.begin(), failures.end(),
                     [](const RankFailure& f) { return is_restartable_exit(f.exit_code) && f.exit_code != 124; });
}

}  // namespace

LaunchResult launch(const LaunchOptions& in) {
  LaunchOptions o = in;
  validate(o);
  const VisibleGpus gpus = visible_gpus();
  if (o.backend == "nccl") {
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    RG_CHECK(o.nproc_per_node <= gpus.count(), "ringgrad launch: --nproc-per-node ", o.nproc_per_node,
             " exceeds the ", gpus.count(), " visible GPU(s) (CUDA_VISIBLE_DEVICES=", cvd ? cvd : "(unset)",
             "): NCCL needs one GPU per rank; use --backend ring to put several ranks on one GPU");
  }
  detail::SignalScope signals(o.forward_signals);
  detail::NodeAgent agent(o);  // node 0 serves the job's store (port 0: a free one, race-free)
  o.master_port = agent.port();
  if (o.verbose) std::fprintf(stderr, "%s", device_table(o, gpus).c_str());
  agent.check_shape();
  const auto base = base_environment(o);
  const std::vector<net::Fd> logs = open_logs(o);
  LaunchResult res;
  for (int round = 0;; ++round) {
    int sig = 0;
    if (!agent.join(round, [&] { return (sig = detail::take_signal()) != 0; })) {
      res.exit_code = 128 + sig;
      res.message = std::string("got ") + strsignal(sig) + " while waiting for the other nodes";
      say(o, res.message);
      return res;
    }
    detail::RoundOutcome out = detail::run_round(o, agent, round, round_spec(o, base, logs, round));
    res.pids = out.pids;
    std::vector<RankFailure> failures = out.failures;
    for (const auto& [node, code] : out.node_codes) {
      if (code != -1) continue;
      RankFailure lost;
      lost.round = round;
      lost.node = node;
      lost.exit_code = 1;
      lost.what = "its launcher stopped answering (no heartbeat for " + net::format_duration(o.node_timeout) + ")";
      failures.push_back(lost);
    }
    res.failures.insert(res.failures.end(), failures.begin(), failures.end());
    if (failures.empty()) {
      finish_clean(o, out, res);
      agent.finish();
      return res;
    }
    // Note [Elastic rounds]: the first one killed by a signal, else the first one.
    auto pick = std::find_if(failures.begin(), failures.end(), [](const RankFailure& f) { return f.killed; });
    const RankFailure& first = pick == failures.end() ? failures.front() : *pick;
    if (failures.size() > 1 || first.node != o.node_rank) {
      std::string all = "round " + std::to_string(round) + "'s failures, in the order the job's store received them:";
      for (const RankFailure& f : failures) all += "\n  " + f.describe() + (&f == &first ? "  <- the job's result" : "");
      say(o, all);
    }
    res.exit_code = first.exit_code;
    res.failed_rank = first.rank;
    res.message = first.describe() + "; stopped the other ranks";
    if (!restartable(o, out, round, failures)) {
      if (o.max_restarts > 0) {
        say(o, "not restarting (" + std::to_string(res.restarts) + " of " + std::to_string(o.max_restarts) +
                   " restarts used): " + first.describe() + "; exit code " + std::to_string(res.exit_code));
      }
      agent.finish();
      return res;
    }
    ++res.restarts;
    say(o, "restarting the group after " + first.describe() + ": restart " + std::to_string(res.restarts) + " of " +
               std::to_string(o.max_restarts) + " (world size " + std::to_string(o.nnodes * o.nproc_per_node) + ")");
  }
}

}  // namespace rg::dist
