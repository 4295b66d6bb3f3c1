// Faults, with real processes: elastic restarts after a rank is SIGKILLed at a random step (the
// final state equals an uninterrupted run's), a failure named with its stderr, preemption signals
// (the ranks save and exit with kExitPreempted, never restarted, and a rerun resumes), and the hang
// watchdog (a SIGSTOPped rank named within the timeout, a wait that never returns, a slow but
// progressing collective left alone). The worker: tests/distributed/worker/fault_scenarios.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "dist_test_util.h"
#include "distributed/exit_codes.h"
#include "worker/steps_state.h"

using namespace rg;
using namespace rg::dist;
using namespace rg::test;
using namespace std::chrono_literals;

namespace {

#define CHECK_HAS(s, needle) CHECK_MESSAGE((s).find(needle) != std::string::npos, "looking for: ", needle, "\n", (s))

struct Final {
  uint64_t state = 0;
  int restart_count = -1, first_step = -1;
  bool present = false;
};

Final read_final(const std::string& path) {
  Final f;
  std::ifstream in(path);
  unsigned long long st = 0;
  if (in >> st >> f.restart_count >> f.first_step) {
    f.state = st;
    f.present = true;
  }
  return f;
}

int ckpt_step(const std::string& dir) {
  std::ifstream in(dir + "/ckpt");
  int step = -1;
  in >> step;
  return step;
}

// `dist_worker steps` on 2 ranks through dist::launch (logs in dir/logs).
LaunchResult run_steps(const std::string& dir, int max_restarts, const std::vector<std::string>& extra) {
  LaunchOptions o;
  o.nproc_per_node = 2;
  o.program = RG_DIST_WORKER;
  o.args = {"steps", "--dir", dir, "--steps", "12", "--step-ms", "5"};
  o.args.insert(o.args.end(), extra.begin(), extra.end());
  o.env = {{"OMP_NUM_THREADS", "1"}};
  o.log_dir = dir + "/logs";
  o.verbose = false;
  o.max_restarts = max_restarts;
  o.job_timeout = 60s;
  return launch(o);
}

std::string logs_of(const std::string& dir, int n) {
  std::string s;
  for (int r = 0; r < n; ++r) s += "---- rank " + std::to_string(r) + "\n" + read_file(dir + "/logs/rank_" + std::to_string(r) + ".log");
  return s;
}

}  // namespace

TEST_CASE("launch --max-restarts 1: a rank SIGKILLed at a random step; the restarted job ends as an uninterrupted one") {
  std::random_device rd;
  const int kill_step = 1 + static_cast<int>(rd() % 10);  // of 12 steps
  CAPTURE(kill_step);
  TempDir dir;
  const LaunchResult r = run_steps(dir.path(), 1, {"--kill-rank", "1", "--kill-step", std::to_string(kill_step)});
  const std::string logs = logs_of(dir.path(), 2);
  CHECK_MESSAGE(r.exit_code == 0, r.message, "\n", logs);
  CHECK(r.restarts == 1);
  // Rank 0 may fail too (its peer vanished) and be reaped first; the killed rank is listed anyway.
  for (const RankFailure& f : r.failures) CHECK(f.round == 0);
  auto killed = std::find_if(r.failures.begin(), r.failures.end(), [](const RankFailure& f) { return f.killed; });
  REQUIRE_MESSAGE(killed != r.failures.end(), r.message);
  const RankFailure& f = *killed;
  CHECK(f.rank == 1);
  CHECK(f.exit_code == 128 + SIGKILL);
  CHECK_HAS(f.what, "killed by signal 9 (SIGKILL)");
  CHECK_HAS(f.stderr_tail, "rank 1: killing myself with SIGKILL at step " + std::to_string(kill_step));
  const uint64_t want = steps_expected(2, 12);
  for (int rank = 0; rank < 2; ++rank) {
    CAPTURE(rank);
    const Final fin = read_final(dir.path() + "/final_" + std::to_string(rank));
    REQUIRE_MESSAGE(fin.present, logs);
    CHECK(fin.state == want);
    CHECK(fin.restart_count == 1);           // TORCHELASTIC_RESTART_COUNT of the second round
    CHECK(fin.first_step == kill_step);      // resumed from rank 0's checkpoint, not from scratch
  }
  // One log per rank holds both rounds.
  CHECK_HAS(logs, "rank 1: attempt 0 (TORCHELASTIC_RESTART_COUNT) starts at step 0");
  CHECK_HAS(logs, "rank 1: attempt 1 (TORCHELASTIC_RESTART_COUNT) starts at step " + std::to_string(kill_step));
}

TEST_CASE("ringgrad launch --max-restarts 0: the killed rank is named with its signal and the tail of its stderr") {
  TempDir dir;
  const std::string log = dir.path() + "/cli.log";
  const int cli = start_process({RG_RINGGRAD_BIN, "launch", "--nproc-per-node", "2", "--max-restarts", "0", "--",
                                 RG_DIST_WORKER, "steps", "--dir", dir.path(), "--steps", "12", "--step-ms", "5",
                                 "--kill-rank", "1", "--kill-step", "4"},
                                log);
  CHECK(wait_exit(cli, 60s) == 128 + SIGKILL);
  const std::string out = read_file(log);
  CHECK_HAS(out, "ringgrad launch: rank 1 (node 0, pid ");
  CHECK_HAS(out, ") was killed by signal 9 (SIGKILL); stopping the other ranks");
  CHECK_HAS(out, "last lines of rank 1's stderr:\n  | ");
  CHECK_HAS(out, "  | rank 1: step 3 done\n  | rank 1: killing myself with SIGKILL at step 4");
  CHECK(out.find("restarting") == std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/final_0"));
}

TEST_CASE("launch --max-restarts 2: ranks exiting 75 (preempted) or 87 (NaN stop) are not restarted, 86 (hang) is") {
  for (int code : {kExitPreempted, kExitNanStop, kExitCollectiveHang}) {
    CAPTURE(code);
    TempDir dir;
    const LaunchResult r = run_steps(dir.path(), 2, {"--exit-step", "3", "--exit-code", std::to_string(code)});
    if (code == kExitCollectiveHang) {
      CHECK_MESSAGE(r.exit_code == 0, r.message);
      CHECK(r.restarts == 1);
      CHECK(read_final(dir.path() + "/final_0").first_step == 3);
    } else {
      CHECK_MESSAGE(r.exit_code == code, r.message);
      CHECK(r.restarts == 0);
      CHECK_FALSE(std::filesystem::exists(dir.path() + "/final_0"));
    }
  }
}

TEST_CASE("ringgrad launch --help documents the exit codes") {
  TempDir dir;
  const int cli = start_process({RG_RINGGRAD_BIN, "launch", "--help"}, dir.path() + "/help.log");
  CHECK(wait_exit(cli, 10s) == 0);
  const std::string out = read_file(dir.path() + "/help.log");
  CHECK_HAS(out, "  " + std::to_string(kExitPreempted) + "     preempted");
  CHECK_HAS(out, "  " + std::to_string(kExitCollectiveHang) + "     collective hang");
  CHECK_HAS(out, "  " + std::to_string(kExitNanStop) + "     the NaN guard");
  CHECK_HAS(out, "--max-restarts K");
  CHECK_HAS(out, "--collective-timeout S");
}

TEST_CASE("ringgrad launch: SIGTERM is forwarded, the ranks save and exit 75, no restart; a rerun resumes") {
  TempDir dir;
  const std::string log = dir.path() + "/cli.log";
  const std::vector<std::string> job = {RG_DIST_WORKER, "steps", "--dir", dir.path(), "--steps", "40", "--step-ms",
                                        "25", "--preempt", "1"};
  std::vector<std::string> cmd = {RG_RINGGRAD_BIN, "launch", "--nproc-per-node", "2", "--max-restarts", "2",
                                  "--preempt-grace", "20", "--log-dir", dir.path() + "/logs", "--"};
  cmd.insert(cmd.end(), job.begin(), job.end());
  const int cli = start_process(cmd, log);
  REQUIRE_MESSAGE(wait_until([&] { return ckpt_step(dir.path()) >= 3; }, 30000ms), read_file(log));
  ::kill(cli, SIGTERM);
  CHECK(wait_exit(cli, 30s) == kExitPreempted);
  const std::string out = read_file(log), logs = logs_of(dir.path(), 2);
  CHECK_HAS(out, "got SIGTERM; passed it on to the ranks");
  CHECK_HAS(out, "the ranks saved and stopped (preempted); exit code 75");
  CHECK(out.find("restarting") == std::string::npos);
  const int saved = ckpt_step(dir.path());
  CHECK_HAS(logs, "rank 0: preempted before step " + std::to_string(saved) + "; the checkpoint holds");
  CHECK_HAS(logs, "rank 1: preempted before step " + std::to_string(saved) + "; the checkpoint holds");
  CHECK(saved < 40);
  // The same command again resumes at the saved step and ends as an uninterrupted run.
  const int again = start_process(cmd, dir.path() + "/cli2.log");
  CHECK(wait_exit(again, 60s) == 0);
  for (int rank = 0; rank < 2; ++rank) {
    const Final fin = read_final(dir.path() + "/final_" + std::to_string(rank));
    REQUIRE_MESSAGE(fin.present, read_file(dir.path() + "/cli2.log"));
    CHECK(fin.first_step == saved);
    CHECK(fin.state == steps_expected(2, 40));
  }
}

TEST_CASE("hang watchdog: a SIGSTOPped rank is named by the others within the timeout, the job ends with 86") {
  TempDir dir;
  const std::string log = dir.path() + "/cli.log", logs = dir.path() + "/logs";
  const int cli = start_process({RG_RINGGRAD_BIN, "launch", "--nproc-per-node", "3", "--collective-timeout", "2",
                                 "--log-dir", logs, "--", RG_DIST_WORKER, "hang-loop", "--dir", dir.path()},
                                log);
  auto iter = [&](int r) { return std::atoi(read_file(dir.path() + "/iter_" + std::to_string(r)).c_str()); };
  // Long enough for a few progress reports (every 0.2 s at this timeout) before the stop.
  REQUIRE_MESSAGE(wait_until([&] { return iter(0) >= 300 && iter(1) >= 300 && iter(2) >= 300; }, 30000ms),
                  read_file(log));
  std::vector<int> pids;
  for (int r = 0; r < 3; ++r) pids.push_back(std::atoi(read_file(dir.path() + "/pid_" + std::to_string(r)).c_str()));
  struct Cleanup {  // never leave the stopped rank behind, whatever fails below
    int pid;
    ~Cleanup() {
      ::kill(pid, SIGCONT);
      ::kill(pid, SIGKILL);
    }
  } cleanup{pids[1]};
  const auto stopped = std::chrono::steady_clock::now();
  REQUIRE(::kill(pids[1], SIGSTOP) == 0);
  auto reported = [&] {
    return read_file(logs + "/rank_0.log").find("ringgrad watchdog:") != std::string::npos ||
           read_file(logs + "/rank_2.log").find("ringgrad watchdog:") != std::string::npos;
  };
  REQUIRE_MESSAGE(wait_until(reported, 12000ms), read_file(log));  // timeout 2 s + 10 s
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  MESSAGE("SIGSTOP to the first hang report: ", secs, " s (collective timeout 2 s)");
  CHECK(secs >= 1.9);  // not before the timeout
  CHECK(wait_exit(cli, 30s) == kExitCollectiveHang);
  for (int r : {0, 2}) {
    CAPTURE(r);
    const std::string l = read_file(logs + "/rank_" + std::to_string(r) + ".log");
    CHECK_HAS(l, "ringgrad watchdog: rank " + std::to_string(r) + " (pid ");
    CHECK_HAS(l, " float32[1024] cpu made no progress for ");
    CHECK_HAS(l, "ringgrad watchdog:   rank 1: did not reach it; last completed allreduce #");
    CHECK_HAS(l, "likely cause: rank 1 (silent: stopped, hung outside a collective, or dead)");
    CHECK_HAS(l, "scenario_hang_loop()");  // the stack of the thread that issued the collective
    CHECK_HAS(l, "ringgrad watchdog: ending rank " + std::to_string(r) + "'s process with exit code 86");
  }
  for (int pid : pids) CHECK_MESSAGE(wait_until([&] { return !process_alive(pid); }, 5000ms), "pid ", pid, " left behind");
}

TEST_CASE("hang watchdog: a wait that never returns is reported; a slow collective that progresses is not") {
  struct Case {
    const char* name;
    std::vector<std::string> args;
    int exit_code;
  };
  // The slow collective takes 2.4 timeouts, with progress every 0.1 timeout (or none).
  for (const Case& c : {Case{"stuck", {"--timeout-ms", "1500"}, kExitCollectiveHang},
                        Case{"slow, progressing", {"--timeout-ms", "1500", "--slow-ms", "3600", "--tick-ms", "150"}, 0},
                        Case{"slow, silent", {"--timeout-ms", "1500", "--slow-ms", "3600", "--tick-ms", "0"},
                             kExitCollectiveHang}}) {
    CAPTURE(c.name);
    std::vector<std::string> args = {"stuck"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Job j = run_workers(2, args, {}, 60000ms);
    CHECK_MESSAGE(j.result.exit_code == c.exit_code, j.all_logs());
    if (c.exit_code == 0) {
      CHECK(j.count("the slow allreduce finished after 3.") == 2);
      CHECK(j.count("ringgrad watchdog") == 0);
      continue;
    }
    for (const auto& [rank, l] : j.logs) {
      CAPTURE(rank);
      CHECK_HAS(l, "allreduce #1 float32[3] cpu made no progress for ");
      CHECK_HAS(l, "(collective timeout 1.50 s)");
      CHECK_HAS(l, "ranks that reached allreduce #1: 0, 1");
      CHECK_HAS(l, "likely cause: every rank reached it");
      CHECK_HAS(l, "(issued it, blocked in a wait):");
      CHECK_HAS(l, "rg::dist::CompletionWork::wait()");
      CHECK_HAS(l, "scenario_stuck_collective()");
    }
  }
}
