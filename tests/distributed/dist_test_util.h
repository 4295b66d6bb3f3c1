// Helpers for the distributed tests: a scratch directory, running dist_worker ranks through the
// launcher with their logs captured, environment overrides that undo themselves, error messages.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "distributed/launcher.h"
#include "launch_util.h"
#include "test_util.h"

namespace rg::test {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rgdist-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The message of any exception f throws, or "(no error)" (readable in a failed check).
inline std::string message_of(const std::function<void()>& f) { return error_of<std::exception>(f, "(no error)"); }

struct Job {
  dist::LaunchResult result;
  std::map<int, std::string> logs;  // by rank
  std::string all_logs() const {
    std::string s;
    for (const auto& [r, l] : logs) s += "---- rank " + std::to_string(r) + "\n" + l;
    return s;
  }
  int count(const std::string& needle) const {
    int n = 0;
    for (const auto& [r, l] : logs) n += l.find(needle) != std::string::npos;
    return n;
  }
};

// Runs `dist_worker args...` on nproc local ranks (logs captured; at most two minutes).
inline Job run_workers(int nproc, const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env = {},
                       std::chrono::milliseconds job_timeout = std::chrono::milliseconds(120000),
                       const std::string& backend = "") {
  TempDir dir;
  dist::LaunchOptions o;
  o.nproc_per_node = nproc;
  o.backend = backend;
  o.program = RG_DIST_WORKER;
  o.args = args;
  o.env = env;
  o.env.emplace_back("OMP_NUM_THREADS", "1");
  o.log_dir = dir.path();
  o.verbose = false;
  o.job_timeout = job_timeout;
  Job j;
  j.result = dist::launch(o);
  for (int r = 0; r < nproc; ++r) j.logs[r] = read_file(dir.path() + "/rank_" + std::to_string(r) + ".log");
  return j;
}

// Sets (or, with nullopt, unsets) environment variables for a scope, then restores them.
class EnvScope {
 public:
  EnvScope(std::initializer_list<std::pair<const char*, std::optional<std::string>>> vars) {
    for (const auto& [k, v] : vars) set(k, v);
  }
  void set(const char* k, const std::optional<std::string>& v) {
    if (!saved_.count(k)) {
      const char* old = std::getenv(k);
      saved_[k] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (v) ::setenv(k, v->c_str(), 1);
    else ::unsetenv(k);
  }
  EnvScope(const EnvScope&) = delete;
  EnvScope& operator=(const EnvScope&) = delete;
  ~EnvScope() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// Every launcher, Slurm and Open MPI variable unset for a scope (rendezvous tests).
struct CleanRendezvousEnv : EnvScope {
  CleanRendezvousEnv() : EnvScope({}) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_LOCAL_RANK", "RINGGRAD_BACKEND"}) {
      set(k, std::nullopt);
    }
  }
};

// Alive = exists and is not a zombie (a process whose parent died is reaped by init, maybe late).
inline bool process_alive(int pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t p = stat.rfind(')');
  return !(p != std::string::npos && p + 2 < stat.size() && (stat[p + 2] == 'Z' || stat[p + 2] == 'X'));
}

inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace rg::test
