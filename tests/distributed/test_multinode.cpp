// Two "nodes" on this machine: two network namespaces joined by a veth pair (iproute2), each
// running `ringgrad launch --nnodes 2 --node-rank R --nproc-per-node 2` inside. Covers rendezvous
// across the link, the TCP ring across it (collective results checked), a rank killed on the other
// node (both nodes stop; with --max-restarts both restart and finish), and a node that never comes.
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip`; without them the cases say why and skip
// (ctest: test_distributed_netns skipped).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <sstream>

#include "dist_test_util.h"
#include "worker/steps_state.h"

using namespace rg;
using namespace rg::test;
using namespace std::chrono_literals;

namespace {

#define CHECK_HAS(s, needle) CHECK_MESSAGE((s).find(needle) != std::string::npos, "looking for: ", needle, "\n", (s))

// The output of a shell command (2>&1) and whether it succeeded.
std::pair<bool, std::string> sh(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {false, "popen failed"};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  return {::pclose(p) == 0, out};
}

// "" when this process can make network namespaces, else why not: root-like capabilities
// (CAP_NET_ADMIN = 12, CAP_SYS_ADMIN = 21 in CapEff), iproute2's `ip`, and a trial namespace that
// `ip netns add` really creates (a container may hold the capabilities and still refuse it).
std::string why_no_namespaces() {
  std::ifstream f("/proc/self/status");
  std::string line;
  unsigned long long eff = 0;
  while (std::getline(f, line)) {
    if (line.rfind("CapEff:", 0) == 0) eff = std::strtoull(line.c_str() + 7, nullptr, 16);
  }
  if (!((eff >> 12 & 1) && (eff >> 21 & 1))) {
    return "the multi-node tests need CAP_SYS_ADMIN and CAP_NET_ADMIN (root) to create network namespaces";
  }
  if (::access("/usr/sbin/ip", X_OK) != 0 && ::access("/sbin/ip", X_OK) != 0 && ::access("/usr/bin/ip", X_OK) != 0 &&
      ::access("/bin/ip", X_OK) != 0) {
    return "the multi-node tests need iproute2's `ip` (apt-get install iproute2)";
  }
  const std::string probe = "rgmnprobe" + std::to_string(::getpid());
  auto [ok, out] = sh("ip netns add " + probe);
  if (!ok) return "`ip netns add` failed here (" + out.substr(0, out.find('\n')) + "): no network namespaces";
  sh("ip netns del " + probe);
  return "";
}
const std::string kNoNetns = why_no_namespaces();
// Its own ctest entry, test_distributed_netns, that shows "skipped" where namespaces cannot be made
// (Note [Skips]).
const auto kNetnsSuite = doctest::test_suite("netns");

constexpr const char* kAddr[2] = {"10.231.0.1", "10.231.0.2"};  // private, only inside our namespaces

// Two namespaces "rgmn<pid>n0/n1", a veth pair between them, kAddr on its ends, loopback up. The
// destructor kills what still runs in them and deletes both (which removes the veth pair too);
// leftovers of an earlier test process that died are deleted first.
struct TwoNodes {
  std::string ns[2];
  std::vector<int> pids;  // launchers started in the namespaces
  std::string error;

  TwoNodes() {
    remove_stale();
    const std::string tag = std::to_string(::getpid());
    ns[0] = "rgmn" + tag + "n0";
    ns[1] = "rgmn" + tag + "n1";
    const std::string va = "rgv" + tag + "a", vb = "rgv" + tag + "b";
    for (const std::string& cmd :
         {"ip netns add " + ns[0], "ip netns add " + ns[1], "ip link add " + va + " type veth peer name " + vb,
          "ip link set " + va + " netns " + ns[0], "ip link set " + vb + " netns " + ns[1],
          "ip -n " + ns[0] + " addr add " + kAddr[0] + "/24 dev " + va,
          "ip -n " + ns[1] + " addr add " + kAddr[1] + "/24 dev " + vb, "ip -n " + ns[0] + " link set " + va + " up",
          "ip -n " + ns[1] + " link set " + vb + " up", "ip -n " + ns[0] + " link set lo up",
          "ip -n " + ns[1] + " link set lo up"}) {
      auto [ok, out] = sh(cmd);
      if (!ok) {
        error = "`" + cmd + "` failed: " + out;
        return;
      }
    }
  }
  ~TwoNodes() {
    for (int pid : pids) {
      ::kill(pid, SIGKILL);  // its ranks follow (PR_SET_PDEATHSIG)
      ::waitpid(pid, nullptr, 0);
    }
    for (const auto& n : ns) {
      if (!n.empty()) sh("ip netns del " + n);
    }
  }
  static void remove_stale() {
    auto [ok, out] = sh("ip netns list");
    std::istringstream in(out);
    std::string name;
    while (in >> name) {
      if (name.rfind("rgmn", 0) != 0) continue;
      const int pid = std::atoi(name.c_str() + 4);
      if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0) sh("ip netns del " + name);
    }
  }

  // `ringgrad launch` for node `r` in its namespace, output in `log`.
  int launch(int r, const std::vector<std::string>& opts, const std::vector<std::string>& program,
             const std::string& log, int port = 29400) {
    std::vector<std::string> a = {"ip", "netns", "exec", ns[r], "env", "RINGGRAD_RING_TRANSPORT=tcp",
                                  RG_RINGGRAD_BIN, "launch", "--nnodes", "2", "--node-rank", std::to_string(r),
                                  "--nproc-per-node", "2", "--master-addr", kAddr[0], "--master-port",
                                  std::to_string(port), "--rdzv-timeout", "20"};
    a.insert(a.end(), opts.begin(), opts.end());
    a.push_back("--");
    a.insert(a.end(), program.begin(), program.end());
    const int pid = start_process(a, log);
    pids.push_back(pid);
    return pid;
  }
  int wait(int pid, std::chrono::milliseconds limit) {
    const int code = wait_exit(pid, limit);
    pids.erase(std::remove(pids.begin(), pids.end(), pid), pids.end());
    return code;
  }
};

}  // namespace

TEST_CASE("multi-node: rendezvous across two namespaces and the TCP ring across the veth link" * kNetnsSuite) {
  RG_SKIP_IF(kNoNetns);
  TwoNodes nodes;
  REQUIRE_MESSAGE(nodes.error.empty(), nodes.error);
  TempDir dir;
  const std::vector<std::string> prog = {RG_DIST_WORKER, "collectives", "--sizes", "1,7,1031,65537",
                                         "--expect-transport", "tcp", "--print-address", "1"};
  int pid[2];
  for (int r = 0; r < 2; ++r) {
    pid[r] = nodes.launch(r, {"--log-dir", dir.path() + "/n" + std::to_string(r)}, prog,
                          dir.path() + "/node" + std::to_string(r) + ".log");
  }
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK_MESSAGE(nodes.wait(pid[r], 120s) == 0, read_file(dir.path() + "/node" + std::to_string(r) + ".log"));
  }
  for (int rank = 0; rank < 4; ++rank) {
    CAPTURE(rank);
    const std::string l = read_file(dir.path() + "/n" + std::to_string(rank / 2) + "/rank_" + std::to_string(rank) + ".log");
    CHECK_HAS(l, "OK collectives");  // every op and dtype checked against the formula, bitwise equal across ranks
    CHECK_HAS(l, "rank " + std::to_string(rank) + ": reaches the store from " + kAddr[rank / 2]);
  }
}

TEST_CASE("multi-node: a rank killed on node 1 stops both nodes; with --max-restarts 1 both restart and finish" * kNetnsSuite) {
  RG_SKIP_IF(kNoNetns);
  std::random_device rd;
  const int kill_step = 1 + static_cast<int>(rd() % 8);
  CAPTURE(kill_step);
  for (int restarts : {0, 1}) {
    CAPTURE(restarts);
    TwoNodes nodes;
    REQUIRE_MESSAGE(nodes.error.empty(), nodes.error);
    TempDir dir;
    const std::vector<std::string> prog = {RG_DIST_WORKER, "steps", "--dir", dir.path(), "--steps", "10",
                                           "--step-ms", "10", "--kill-rank", "3", "--kill-step",
                                           std::to_string(kill_step)};
    int pid[2];
    for (int r = 0; r < 2; ++r) {
      pid[r] = nodes.launch(r, {"--max-restarts", std::to_string(restarts)}, prog,
                            dir.path() + "/node" + std::to_string(r) + ".log");
    }
    int code[2];
    for (int r = 0; r < 2; ++r) code[r] = nodes.wait(pid[r], 90s);
    const std::string out0 = read_file(dir.path() + "/node0.log"), out1 = read_file(dir.path() + "/node1.log");
    CHECK_HAS(out1, "rank 3 (node 1, pid ");
    CHECK_HAS(out1, ") was killed by signal 9 (SIGKILL)");
    CHECK_HAS(out0, "rank 3 (node 1, pid ");  // node 0 names the other node's failure too
    if (restarts == 0) {
      // Node 0's ranks fail too (their peer vanished): the killed rank is the job's result on both.
      CHECK_MESSAGE(code[0] == 128 + SIGKILL, out0);
      CHECK_MESSAGE(code[1] == 128 + SIGKILL, out1);
      CHECK_FALSE(std::filesystem::exists(dir.path() + "/final_0"));
      continue;
    }
    CHECK_MESSAGE(code[0] == 0, out0);
    CHECK_MESSAGE(code[1] == 0, out1);
    CHECK_HAS(out0, "restarting the group after");
    CHECK_HAS(out1, "restarting the group after");
    for (int rank = 0; rank < 4; ++rank) {
      CAPTURE(rank);
      std::ifstream f(dir.path() + "/final_" + std::to_string(rank));
      unsigned long long state = 0;
      int restart_count = -1, first = -1;
      REQUIRE_MESSAGE(static_cast<bool>(f >> state >> restart_count >> first), out0, out1);
      CHECK(state == steps_expected(4, 10));
      CHECK(restart_count == 1);
      CHECK(first == kill_step);
    }
  }
}

TEST_CASE("multi-node: a node that never comes is named within the rendezvous timeout" * kNetnsSuite) {
  RG_SKIP_IF(kNoNetns);
  TwoNodes nodes;
  REQUIRE_MESSAGE(nodes.error.empty(), nodes.error);
  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  // Node 0 alone (port 29401), and node 1 alone looking for a node 0 that is not there (port 29402).
  const int p0 = nodes.launch(0, {"--rdzv-timeout", "3"}, {RG_DIST_WORKER, "env"}, dir.path() + "/node0.log", 29401);
  const int p1 = nodes.launch(1, {"--rdzv-timeout", "3"}, {RG_DIST_WORKER, "env"}, dir.path() + "/node1.log", 29402);
  CHECK(nodes.wait(p0, 30s) == 1);
  CHECK(nodes.wait(p1, 30s) == 1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 15);
  CHECK_HAS(read_file(dir.path() + "/node0.log"), "node 1 never joined the job within 3s (--rdzv-timeout)");
  CHECK_HAS(read_file(dir.path() + "/node1.log"), "node 1 could not reach the job's store at 10.231.0.1:29402");
}
