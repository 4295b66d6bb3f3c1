// Helpers for tests that start processes: a scratch directory, whole-file reads, the built ringgrad
// executable, child processes with a log and their exit codes, and ranks started through the
// launcher as copies of the running test executable, each running one doctest case that normal
// runs skip (Note [Ranks as copies of the test executable]).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "distributed/launcher.h"

namespace rg::test {

// A fresh directory /tmp/<prefix>XXXXXX, removed with everything in it when the object goes.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

// The whole file ("" when it cannot be opened).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The variable's value, "" when unset.
inline std::string env_str(const char* k) {
  const char* v = std::getenv(k);
  return v ? v : "";
}

// The ringgrad executable: $RINGGRAD_BIN, else the build's (RG_RINGGRAD_BIN when CMake defines it,
// else <build>/apps/ringgrad next to <build>/tests/<this test>).
inline std::string ringgrad_bin() {
  if (const char* e = std::getenv("RINGGRAD_BIN")) return e;
#ifdef RG_RINGGRAD_BIN
  return RG_RINGGRAD_BIN;
#else
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  REQUIRE_MESSAGE(!ec, "cannot resolve /proc/self/exe");
  return (self.parent_path().parent_path() / "apps" / "ringgrad").string();
#endif
}

// Note [Ranks as copies of the test executable]
// A multi-rank test starts `nproc` copies of its own executable through dist::launch ("ring"
// backend named; the rank picks its own), each with doctest arguments that run only one test case,
// `entry`, which is declared with doctest::skip() so that normal runs pass over it. An environment
// variable names the scenario the entry runs. The program is /proc/self/exe: the forked child execs
// this very image, even when a rebuild has replaced (unlinked) the file while the test runs
// (readlink would name a "(deleted)" path then). Each rank's output goes to <log_dir>/rank_<r>.log.

struct SelfLaunchOptions {
  int nproc = 2;
  std::string entry;                                      // the skipped doctest case the ranks run
  std::vector<std::pair<std::string, std::string>> env;  // for every rank, scenario variable included
  std::chrono::milliseconds job_timeout{0};
  std::string log_dir;      // an existing directory
  bool remove_logs = true;  // delete the rank logs and log_dir once read
};

struct SelfLaunch {
  dist::LaunchResult result;
  std::vector<std::string> logs;  // by rank, whole

  // "scenario <s> on <n> ranks: exit code <c> (<launcher message>)", then every rank's log as
  // `shorten` leaves it: for a failure message.
  std::string report(const std::string& scenario, const std::function<std::string(std::string)>& shorten) const {
    std::string out = "scenario " + scenario + " on " + std::to_string(logs.size()) + " ranks: exit code " +
                      std::to_string(result.exit_code) + (result.message.empty() ? "" : " (" + result.message + ")") +
                      "\n";
    for (size_t q = 0; q < logs.size(); ++q) out += "---- rank " + std::to_string(q) + " log:\n" + shorten(logs[q]) + "\n";
    return out;
  }
};

inline SelfLaunch launch_copies(const SelfLaunchOptions& so) {
  dist::LaunchOptions o;
  o.nproc_per_node = so.nproc;
  o.backend = "ring";
  o.program = "/proc/self/exe";
  o.args = {"--no-skip=true", "--test-case=" + so.entry, "--no-version=true"};
  o.env = so.env;
  o.log_dir = so.log_dir;
  o.verbose = false;
  o.job_timeout = so.job_timeout;
  SelfLaunch out;
  out.result = dist::launch(o);
  for (int q = 0; q < so.nproc; ++q) {
    const std::string path = so.log_dir + "/rank_" + std::to_string(q) + ".log";
    out.logs.push_back(read_file(path));
    if (so.remove_logs) std::remove(path.c_str());
  }
  if (so.remove_logs) ::rmdir(so.log_dir.c_str());
  return out;
}

// Starts args (args[0] a path, or a name looked up on PATH) as a child process with stdout and
// stderr in `log` (truncated) and this process's environment, where each "KEY=VALUE" of `env`
// replaces or adds its key; returns the pid.
inline int start_process(const std::vector<std::string>& args, const std::string& log,
                         const std::vector<std::string>& env = {}) {
  std::vector<std::string> a = args, e;
  for (char** p = environ; *p; ++p) {
    const std::string kv = *p, key = kv.substr(0, kv.find('=') + 1);
    bool replaced = false;
    for (const std::string& x : env) replaced = replaced || x.rfind(key, 0) == 0;
    if (!replaced) e.push_back(kv);
  }
  e.insert(e.end(), env.begin(), env.end());
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  for (auto& s : e) envp.push_back(s.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE_MESSAGE(fd >= 0, "cannot open ", log);
  const int pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

// The child's exit code (128 + signal when killed) once it ends within `limit`; else it is
// killed (SIGKILL) and -1 returned.
inline int wait_exit(int pid, std::chrono::milliseconds limit = std::chrono::seconds(240)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int st = 0;
  for (;;) {
    const int r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace rg::test
