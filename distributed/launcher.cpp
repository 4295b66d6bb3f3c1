// The multi-process launcher (Note [Launcher] in launcher.h): environment per rank, fork/exec
// with PR_SET_PDEATHSIG, signal forwarding, and stopping every rank when one fails.
#include <filesystem>
#include "distributed/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "distributed/socket_util.h"

extern char** environ;

namespace rg::dist {

namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

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

std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    return "was killed by signal " + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Restores the launcher's signal handlers when launch returns.
class SignalScope {
 public:
  explicit SignalScope(bool on) : on_(on) {
    g_signal = 0;
    if (!on_) return;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the sleep in the wait loop wakes up
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    if (!on_) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  bool on_;
  struct sigaction old_int_ {}, old_term_ {};
};

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

LaunchResult launch(const LaunchOptions& in) {
  LaunchOptions o = in;
  RG_CHECK(o.nproc_per_node >= 1, "ringgrad launch: --nproc-per-node must be >= 1, got ", o.nproc_per_node);
  RG_CHECK(o.nnodes >= 1, "ringgrad launch: --nnodes must be >= 1, got ", o.nnodes);
  RG_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes, "ringgrad launch: --node-rank ", o.node_rank,
           " is out of range for --nnodes ", o.nnodes);
  RG_CHECK(!o.program.empty(), "ringgrad launch: no program given (ringgrad launch [options] -- <program> [args])");
  RG_CHECK(o.backend.empty() || o.backend == "ring" || o.backend == "nccl",
           "ringgrad launch: --backend must be ring or nccl, got '",
           o.backend, "'");
  if (o.master_port == 0) {
    RG_CHECK(o.nnodes == 1, "ringgrad launch: --master-port is required with --nnodes ", o.nnodes,
             " (every node must use the same one)");
    o.master_port = pick_free_port();
  }
  const VisibleGpus gpus = visible_gpus();
  if (o.backend == "nccl") {
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    RG_CHECK(o.nproc_per_node <= gpus.count(), "ringgrad launch: --nproc-per-node ", o.nproc_per_node,
             " exceeds the ", gpus.count(), " visible GPU(s) (CUDA_VISIBLE_DEVICES=", cvd ? cvd : "(unset)",
             "): NCCL needs one GPU per rank; use --backend ring to put several ranks on one GPU");
  }
  if (o.verbose) std::fprintf(stderr, "%s", device_table(o, gpus).c_str());

  const int world = o.nnodes * o.nproc_per_node;
  // Everything the children need is built before the first fork: after fork only exec-safe calls.
  std::vector<std::string> argv_s = {o.program};
  argv_s.insert(argv_s.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> base_env;
  for (char** e = environ; *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq) base_env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
  }
  if (!base_env.count("OMP_NUM_THREADS")) base_env["OMP_NUM_THREADS"] = "1";
  std::vector<std::vector<std::string>> env_s(static_cast<size_t>(o.nproc_per_node));
  std::vector<std::vector<char*>> envp(static_cast<size_t>(o.nproc_per_node));
  for (int local = 0; local < o.nproc_per_node; ++local) {
    std::map<std::string, std::string> e = base_env;
    e["MASTER_ADDR"] = o.master_addr;
    e["MASTER_PORT"] = std::to_string(o.master_port);
    e["RANK"] = std::to_string(o.node_rank * o.nproc_per_node + local);
    e["WORLD_SIZE"] = std::to_string(world);
    e["LOCAL_RANK"] = std::to_string(local);
    e["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc_per_node);
    e["GROUP_RANK"] = std::to_string(o.node_rank);
    e["GROUP_WORLD_SIZE"] = std::to_string(o.nnodes);
    if (!o.backend.empty()) e["RINGGRAD_BACKEND"] = o.backend;
    for (const auto& [k, v] : o.env) e[k] = v;
    auto& s = env_s[static_cast<size_t>(local)];
    for (const auto& [k, v] : e) s.push_back(k + "=" + v);
    for (auto& x : s) envp[static_cast<size_t>(local)].push_back(x.data());
    envp[static_cast<size_t>(local)].push_back(nullptr);
  }
  std::vector<net::Fd> logs;
  if (!o.log_dir.empty()) {
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
  }

  SignalScope signals(o.forward_signals);
  LaunchResult res;
  const pid_t me = ::getpid();
  std::vector<bool> running;
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Child: own process group, die with the launcher, default signal handling, then exec.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != me) ::_exit(125);  // the launcher is already gone
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (!logs.empty()) {
        ::dup2(logs[static_cast<size_t>(local)].get(), 1);
        ::dup2(logs[static_cast<size_t>(local)].get(), 2);
      }
      ::execvpe(argv[0], argv.data(), envp[static_cast<size_t>(local)].data());
      const int e = errno;
      char msg[512];
      const int n = std::snprintf(msg, sizeof msg, "ringgrad launch: cannot run '%s': %s\n", argv[0], strerror(e));
      if (n > 0) {
        [[maybe_unused]] const ssize_t w = ::write(2, msg, static_cast<size_t>(n));
      }
      ::_exit(127);
    }
    if (pid < 0) {
      const int e = errno;
      for (int p : res.pids) ::killpg(p, SIGKILL);
      for (int p : res.pids) ::waitpid(p, nullptr, 0);
      RG_THROW("ringgrad launch: fork failed: ", net::errno_str(e));
    }
    ::setpgid(pid, pid);  // also here, so it holds before we ever signal the group
    res.pids.push_back(pid);
    running.push_back(true);
  }
  logs.clear();

  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  bool stopping = false;
  auto stop_at = Clock::now();
  bool killed = false;
  int alive = o.nproc_per_node;
  auto signal_all = [&](int sig) {
    for (size_t i = 0; i < res.pids.size(); ++i) {
      if (running[i]) ::killpg(res.pids[i], sig);
    }
  };
  auto begin_stop = [&](int sig) {
    if (stopping) return;
    stopping = true;
    stop_at = Clock::now();
    signal_all(sig);
  };
  while (alive > 0) {
    for (size_t i = 0; i < res.pids.size(); ++i) {
      if (!running[i]) continue;
      int status = 0;
      const pid_t r = ::waitpid(res.pids[i], &status, WNOHANG);
      if (r != res.pids[i]) continue;
      running[i] = false;
      --alive;
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && res.failed_rank < 0 && !stopping) {
        res.failed_rank = o.node_rank * o.nproc_per_node + static_cast<int>(i);
        res.exit_code = exit_code(status);
        res.message = "rank " + std::to_string(res.failed_rank) + " (pid " + std::to_string(res.pids[i]) + ") " +
                      exit_text(status) + (alive > 0 ? "; stopped the other ranks" : "");
        if (o.verbose) std::fprintf(stderr, "ringgrad launch: %s\n", res.message.c_str());
        begin_stop(SIGTERM);
      } else if (stopping) {
        ::killpg(res.pids[i], SIGKILL);  // leftovers of its process group, if any
      }
    }
    if (alive == 0) break;
    if (const int sig = g_signal) {
      g_signal = 0;
      if (res.exit_code == 0 && res.failed_rank < 0) {
        res.exit_code = 128 + sig;
        res.message = std::string("the launcher got ") + strsignal(sig) + "; passed it on to the ranks";
        if (o.verbose) std::fprintf(stderr, "ringgrad launch: %s\n", res.message.c_str());
      }
      if (stopping) {
        signal_all(SIGKILL);  // a second signal: no more grace
        killed = true;
      } else {
        begin_stop(sig);
      }
    }
    if (o.job_timeout.count() > 0 && !stopping && Clock::now() - started > o.job_timeout) {
      res.exit_code = 124;
      res.message = "the job ran longer than " + net::format_duration(o.job_timeout) + "; stopped every rank";
      if (o.verbose) std::fprintf(stderr, "ringgrad launch: %s\n", res.message.c_str());
      begin_stop(SIGTERM);
    }
    if (stopping && !killed && Clock::now() - stop_at > o.kill_grace) {
      signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return res;
}

}  // namespace rg::dist
