// The launcher: rank variables, a failing rank stopping the others (no process left behind),
// PR_SET_PDEATHSIG when the launcher itself is killed, signal forwarding, the nccl GPU check, and
// CUDA_VISIBLE_DEVICES parsing for the rank -> device table.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>

#include "dist_test_util.h"

using namespace rg;
using namespace rg::dist;
using namespace rg::test;
using namespace std::chrono_literals;

namespace {

// Starts `ringgrad launch ...` as a child process (stdout+stderr to `log`), returns its pid.
int spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> a = {RG_RINGGRAD_BIN, "launch"};
  a.insert(a.end(), args.begin(), args.end());
  return rg::test::start_process(a, log);
}

std::vector<int> read_pids(const std::string& dir, int n) {
  std::vector<int> pids;
  for (int r = 0; r < n; ++r) pids.push_back(std::atoi(read_file(dir + "/pid_" + std::to_string(r)).c_str()));
  return pids;
}

bool pid_files_ready(const std::string& dir, int n) {
  for (int r = 0; r < n; ++r) {
    if (!std::filesystem::exists(dir + "/pid_" + std::to_string(r))) return false;
  }
  return true;
}


}  // namespace

TEST_CASE("launch: every rank gets the rendezvous variables") {
  Job j = run_workers(3, {"env", "--nproc", "3"}, {{"EXTRA_VAR", "42"}});
  CHECK_MESSAGE(j.result.exit_code == 0, j.all_logs());
  CHECK(j.count("OK env") == 3);
  CHECK(j.result.pids.size() == 3);
}

TEST_CASE("launch: a named backend is exported as RINGGRAD_BACKEND") {
  Job j = run_workers(2, {"env", "--nproc", "2", "--backend", "ring"}, {{"EXTRA_VAR", "42"}},
                      std::chrono::milliseconds(120000), "ring");
  CHECK_MESSAGE(j.result.exit_code == 0, j.all_logs());
  CHECK(j.count("OK env") == 2);
}

TEST_CASE("launch: a crashing rank stops the others and its exit code is returned") {
  const auto t0 = std::chrono::steady_clock::now();
  Job j = run_workers(4, {"crash", "--crasher", "2", "--code", "7"});
  const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(j.result.exit_code == 7);
  CHECK(j.result.failed_rank == 2);
  CHECK_MESSAGE(j.result.message.find("rank 2 (node 0, pid " + std::to_string(j.result.pids[2]) + ") exited with code 7") !=
                    std::string::npos,
                j.result.message);
  CHECK(secs < 20);  // the others (asleep for 60 s) were stopped, not waited for
  for (int pid : j.result.pids) {
    errno = 0;
    CHECK(::kill(pid, 0) == -1);  // reaped: gone
    CHECK(errno == ESRCH);
  }
}

TEST_CASE("launch: a program that cannot run fails with 127") {
  LaunchOptions o;
  o.nproc_per_node = 2;
  o.program = "/nonexistent/program";
  o.verbose = false;
  TempDir dir;
  o.log_dir = dir.path();
  const LaunchResult r = launch(o);
  CHECK(r.exit_code == 127);
  CHECK(read_file(dir.path() + "/rank_0.log").find("cannot run '/nonexistent/program'") != std::string::npos);
}

TEST_CASE("launch: job_timeout stops a job that runs too long") {
  TempDir dir;
  Job j = run_workers(2, {"sleep", "--dir", dir.path()}, {}, 500ms);
  CHECK(j.result.exit_code == 124);
  for (int pid : j.result.pids) CHECK_FALSE(process_alive(pid));
}

TEST_CASE("ringgrad launch: killing the launcher (SIGKILL) takes its ranks down (PR_SET_PDEATHSIG)") {
  TempDir dir;
  const int cli = spawn_cli({"--nproc-per-node", "2", "--", RG_DIST_WORKER, "sleep", "--dir", dir.path()},
                            dir.path() + "/cli.log");
  REQUIRE_MESSAGE(wait_until([&] { return pid_files_ready(dir.path(), 2); }, 20000ms), read_file(dir.path() + "/cli.log"));
  const auto pids = read_pids(dir.path(), 2);
  for (int pid : pids) CHECK(process_alive(pid));
  ::kill(cli, SIGKILL);
  CHECK(rg::test::wait_exit(cli) == 128 + SIGKILL);
  for (int pid : pids) CHECK(wait_until([&] { return !process_alive(pid); }, 5000ms));
}

TEST_CASE("ringgrad launch: SIGTERM to the launcher is passed on to every rank") {
  TempDir dir;
  const int cli = spawn_cli({"--nproc-per-node", "2", "--", RG_DIST_WORKER, "sleep", "--dir", dir.path()},
                            dir.path() + "/cli.log");
  REQUIRE(wait_until([&] { return pid_files_ready(dir.path(), 2); }, 20000ms));
  const auto pids = read_pids(dir.path(), 2);
  ::kill(cli, SIGTERM);
  CHECK(rg::test::wait_exit(cli) == 128 + SIGTERM);
  for (int pid : pids) {
    CHECK_MESSAGE(std::filesystem::exists(dir.path() + "/term_" + std::to_string(pid)), "rank pid ", pid,
                  " did not get SIGTERM");
    CHECK_FALSE(process_alive(pid));
  }
  const std::string log = read_file(dir.path() + "/cli.log");
  CHECK_MESSAGE(log.find("rank 0 (node 0, local 0) -> ") != std::string::npos, log);
}

TEST_CASE("ringgrad launch: nccl refuses more ranks than visible GPUs; usage errors") {
  TempDir dir;
  {
    EnvScope env{{"CUDA_VISIBLE_DEVICES", std::string("")}};
    const int cli = spawn_cli({"--nproc-per-node", "2", "--backend", "nccl", "--", "true"}, dir.path() + "/a.log");
    CHECK(rg::test::wait_exit(cli) == 1);
    const std::string log = read_file(dir.path() + "/a.log");
    CHECK_MESSAGE(log.find("--nproc-per-node 2 exceeds the 0 visible GPU(s) (CUDA_VISIBLE_DEVICES=)") !=
                      std::string::npos,
                  log);
  }
  const int cli = spawn_cli({"--nproc-per-node", "2", "--nnodes", "2", "--", "true"}, dir.path() + "/b.log");
  CHECK(rg::test::wait_exit(cli) == 1);
  CHECK(read_file(dir.path() + "/b.log").find("--master-addr is required with --nnodes 2") != std::string::npos);
  const int ok = spawn_cli({"--nproc_per_node=2", "true"}, dir.path() + "/c.log");  // torchrun spelling, no "--"
  CHECK(rg::test::wait_exit(ok) == 0);
}

TEST_CASE("visible GPUs: CUDA_VISIBLE_DEVICES is parsed and remapped as CUDA does") {
  const std::vector<int> four = {0, 1, 2, 3};
  CHECK(visible_gpus_from(nullptr, four).physical == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(visible_gpus_from("2,0", four).physical == std::vector<std::string>{"2", "0"});
  CHECK(visible_gpus_from(" 3 , 1", four).physical == std::vector<std::string>{"3", "1"});
  CHECK(visible_gpus_from("1,7,2", four).physical == std::vector<std::string>{"1"});  // stops at the invalid 7
  CHECK(visible_gpus_from("1,1", four).physical == std::vector<std::string>{"1"});    // and at a repeat
  CHECK(visible_gpus_from("", four).count() == 0);
  CHECK(visible_gpus_from("-1", four).count() == 0);
  CHECK(visible_gpus_from("GPU-8f2e,3", four).physical == std::vector<std::string>{"GPU-8f2e", "3"});
  CHECK(visible_gpus_from("0", {}).count() == 0);  // no GPUs on this node at all

  LaunchOptions o;
  o.nproc_per_node = 2;
  o.master_port = 1234;
  VisibleGpus g;
  g.physical = {"2", "0"};
  const std::string t = device_table(o, g);
  CHECK_MESSAGE(t.find("rank 0 (node 0, local 0) -> cuda:0 (physical GPU 2)") != std::string::npos, t);
  CHECK_MESSAGE(t.find("rank 1 (node 0, local 1) -> cuda:1 (physical GPU 0)") != std::string::npos, t);
  o.nproc_per_node = 3;
  o.node_rank = 1;
  o.nnodes = 2;
  g.physical = {"5"};
  const std::string shared = device_table(o, g);
  CHECK_MESSAGE(shared.find("rank 5 (node 1, local 2) -> cuda:0 (physical GPU 5), shared") != std::string::npos, shared);
  CHECK(device_table(o, VisibleGpus{}).find("rank 3 (node 1, local 0) -> cpu") != std::string::npos);
}
