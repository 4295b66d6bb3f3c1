// bench_faults: the reliability figures of issue 12 (benchmarks/RELIABILITY.md), with real processes
// started through `ringgrad launch` and the test worker `dist_worker steps | hang-loop`:
//  - kill -9 at a random step: 2 ranks, a random rank SIGKILLs itself at a random step of the first
//    attempt, --max-restarts 1: runs that finished, and final states equal to an uninterrupted run's;
//  - SIGTERM at a random time: the launcher is preempted mid-run; the saved step, the steps done but
//    not saved, and whether a rerun ends in the uninterrupted state;
//  - SIGSTOP of one of 3 ranks in a loop of collectives (collective timeout 2 s): seconds to the
//    first hang report, whether it names the rank and the collective, exit code, processes left.
// Usage: bench_faults [--trials 20] [--stop-trials 10] [--only kill|term|stop]
//        [--worker build/tests/dist_worker] [--ringgrad build/apps/ringgrad]
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string arg(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Scratch {
  std::string path;
  Scratch() {
    char tmpl[] = "/tmp/rg-bench-faults-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Scratch() { fs::remove_all(path); }
};

int start(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  const int pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int finish(int pid, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  int st = 0;
  while (::waitpid(pid, &st, WNOHANG) != pid) {
    if (Clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(10ms);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

bool alive(int pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string st = slurp("/proc/" + std::to_string(pid) + "/stat");
  const size_t p = st.rfind(')');
  return !(p != std::string::npos && p + 2 < st.size() && st[p + 2] == 'Z');
}

struct Tools {
  std::string worker, ringgrad;
};

std::vector<std::string> steps_job(const Tools& t, const std::string& dir, int steps, int step_ms,
                                   const std::vector<std::string>& launch_opts, const std::vector<std::string>& extra) {
  std::vector<std::string> a = {t.ringgrad, "launch", "--nproc-per-node", "2"};
  a.insert(a.end(), launch_opts.begin(), launch_opts.end());
  for (const std::string& s : {std::string("--"), t.worker, std::string("steps"), std::string("--dir"), dir,
                               std::string("--steps"), std::to_string(steps), std::string("--step-ms"),
                               std::to_string(step_ms)}) {
    a.push_back(s);
  }
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::string final_state(const std::string& dir) {
  std::string s = slurp(dir + "/final_0");
  return s.substr(0, s.find(' '));
}

int ckpt_step(const std::string& dir) {
  std::ifstream f(dir + "/ckpt");
  int s = -1;
  f >> s;
  return s;
}

// What an uninterrupted run of `steps` steps ends with (a real run of the same worker).
std::string reference(const Tools& t, int steps) {
  Scratch d;
  const int code = finish(start(steps_job(t, d.path, steps, 5, {}, {}), d.path + "/cli.log"), 120s);
  if (code != 0) std::fprintf(stderr, "the uninterrupted run failed (%d):\n%s", code, slurp(d.path + "/cli.log").c_str());
  return final_state(d.path);
}

void kill_trials(const Tools& t, int trials, std::mt19937& rng) {
  const int steps = 30;
  const std::string want = reference(t, steps);
  int finished = 0, equal = 0;
  std::vector<double> secs;
  for (int i = 0; i < trials; ++i) {
    Scratch d;
    const int rank = static_cast<int>(rng() % 2), step = 1 + static_cast<int>(rng() % (steps - 2));
    const auto t0 = Clock::now();
    const int code = finish(start(steps_job(t, d.path, steps, 5, {"--max-restarts", "1"},
                                            {"--kill-rank", std::to_string(rank), "--kill-step", std::to_string(step)}),
                                  d.path + "/cli.log"),
                            120s);
    secs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    const bool restarted = slurp(d.path + "/cli.log").find("restarting the group") != std::string::npos;
    finished += code == 0 && restarted;
    equal += code == 0 && final_state(d.path) == want;
    std::printf("  kill trial %2d: rank %d at step %2d -> exit %d, %s, final state %s (%.2f s)\n", i + 1, rank, step,
                code, restarted ? "restarted" : "NOT restarted", final_state(d.path) == want ? "equal" : "DIFFERENT",
                secs.back());
  }
  std::printf("kill -9 at a random step, 2 ranks, %d steps, --max-restarts 1: finished %d/%d, final state equal to "
              "the uninterrupted run %d/%d (median %.2f s per job)\n\n",
              steps, finished, trials, equal, trials, rg::bench::median(secs));
}

// The last "step N done" of each rank's log: steps the ranks completed.
int steps_done(const std::string& logs_dir) {
  int done = 0;
  for (int r = 0; r < 2; ++r) {
    const std::string l = slurp(logs_dir + "/rank_" + std::to_string(r) + ".log");
    const std::string key = "rank " + std::to_string(r) + ": step ";
    for (size_t p = l.find(key); p != std::string::npos; p = l.find(key, p + 1)) {
      done = std::max(done, std::atoi(l.c_str() + p + key.size()) + 1);
    }
  }
  return done;
}

void term_trials(const Tools& t, int trials, std::mt19937& rng) {
  const int steps = 40;
  const std::string want = reference(t, steps);
  int ok = 0, resumed = 0, max_lost = 0;
  for (int i = 0; i < trials; ++i) {
    Scratch d;
    const auto job = steps_job(t, d.path, steps, 20, {"--log-dir", d.path + "/logs", "--preempt-grace", "20"},
                               {"--preempt", "1"});
    const int pid = start(job, d.path + "/cli.log");
    wait_for([&] { return ckpt_step(d.path) >= 1; }, 30000ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 500));  // a random time in the run
    ::kill(pid, SIGTERM);
    const int code = finish(pid, 60s);
    const int saved = ckpt_step(d.path), done = steps_done(d.path + "/logs"), lost = done - saved;
    max_lost = std::max(max_lost, lost);
    const int again = finish(start(job, d.path + "/cli2.log"), 120s);
    const bool same = again == 0 && final_state(d.path) == want;
    ok += code == 75;
    resumed += same;
    std::printf("  SIGTERM trial %2d: exit %d, saved step %2d, steps done %2d (lost %d), rerun %s\n", i + 1, code, saved,
                done, lost, same ? "ends equal" : "DIFFERS");
  }
  std::printf("SIGTERM at a random time, 2 ranks: exit 75 %d/%d, steps done but not saved at most %d, rerun equal to "
              "the uninterrupted run %d/%d\n\n",
              ok, trials, max_lost, resumed, trials);
}

void stop_trials(const Tools& t, int trials) {
  std::vector<double> secs;
  int named = 0, hang_code = 0, clean = 0;
  for (int i = 0; i < trials; ++i) {
    Scratch d;
    const std::string logs = d.path + "/logs";
    const int cli = start({t.ringgrad, "launch", "--nproc-per-node", "3", "--collective-timeout", "2", "--log-dir", logs,
                           "--", t.worker, "hang-loop", "--dir", d.path},
                          d.path + "/cli.log");
    auto iter = [&](int r) { return std::atoi(slurp(d.path + "/iter_" + std::to_string(r)).c_str()); };
    wait_for([&] { return iter(0) >= 300 && iter(1) >= 300 && iter(2) >= 300; }, 30000ms);
    std::vector<int> pids;
    for (int r = 0; r < 3; ++r) pids.push_back(std::atoi(slurp(d.path + "/pid_" + std::to_string(r)).c_str()));
    const auto t0 = Clock::now();
    ::kill(pids[1], SIGSTOP);
    auto report = [&](int r) { return slurp(logs + "/rank_" + std::to_string(r) + ".log"); };
    wait_for([&] { return report(0).find("ringgrad watchdog:") != std::string::npos ||
                          report(2).find("ringgrad watchdog:") != std::string::npos; },
             30000ms);
    secs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    const int code = finish(cli, 60s);
    bool names = true;
    for (int r : {0, 2}) {
      const std::string l = report(r);
      names = names && l.find("likely cause: rank 1 (silent") != std::string::npos &&
              l.find("float32[1024] cpu made no progress") != std::string::npos;
    }
    bool left = false;
    for (int p : pids) left = left || alive(p);
    ::kill(pids[1], SIGCONT);
    ::kill(pids[1], SIGKILL);
    named += names;
    hang_code += code == 86;
    clean += !left;
    std::printf("  SIGSTOP trial %2d: first report after %.2f s, names rank 1 and the collective: %s, exit %d, %s\n",
                i + 1, secs.back(), names ? "yes" : "NO", code, left ? "PROCESSES LEFT" : "nothing left");
  }
  std::sort(secs.begin(), secs.end());
  std::printf("SIGSTOP of rank 1 of 3, collective timeout 2 s: report after %.2f s median, %.2f-%.2f s range; names "
              "the rank and collective %d/%d; exit 86 %d/%d; nothing left behind %d/%d\n",
              rg::bench::median(secs), secs.front(), secs.back(), named, trials, hang_code, trials, clean, trials);
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path build = fs::read_symlink("/proc/self/exe").parent_path().parent_path();
  Tools t{arg(argc, argv, "--worker", (build / "tests" / "dist_worker").string()),
          arg(argc, argv, "--ringgrad", (build / "apps" / "ringgrad").string())};
  if (!fs::exists(t.worker) || !fs::exists(t.ringgrad)) {
    std::printf("needs %s and %s (build the dist_worker and ringgrad targets)\n", t.worker.c_str(), t.ringgrad.c_str());
    return 1;
  }
  const int trials = std::atoi(arg(argc, argv, "--trials", "20").c_str());
  const int stop_trials_n = std::atoi(arg(argc, argv, "--stop-trials", "10").c_str());
  const std::string only = arg(argc, argv, "--only", "");
  std::mt19937 rng(std::random_device{}());
  if (only.empty() || only == "kill") kill_trials(t, trials, rng);
  if (only.empty() || only == "term") term_trials(t, trials / 2, rng);
  if (only.empty() || only == "stop") stop_trials(t, stop_trials_n);
  return 0;
}
