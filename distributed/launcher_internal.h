// The launcher's parts (Note [Launcher], Note [Elastic rounds] in launcher.h): LocalRanks runs one
// round's ranks on this node, NodeAgent coordinates the nodes' launchers through the job's store.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "distributed/launcher.h"
#include "distributed/socket_util.h"

namespace rg::dist {
class TCPStore;
}

namespace rg::dist::detail {

using LaunchClock = std::chrono::steady_clock;

// "exited with code 7", "was killed by signal 9 (SIGKILL)"; exit code 128 + signal when killed.
std::string wait_status_text(int status);
int wait_status_code(int status);

// One round's ranks on this node. Everything a child needs is built before the first fork (after
// fork only async-signal-safe calls, then exec).
class LocalRanks {
 public:
  struct Spec {
    std::vector<std::string> argv;                // program and arguments
    std::vector<std::vector<std::string>> envs;   // "K=V" per local rank
    std::vector<net::Fd> logs;                    // per local rank, or empty: the launcher's stdout/stderr
    int first_rank = 0;                           // the global rank of local rank 0
    int node = 0;
    size_t tail_bytes = 64 << 10;                 // stderr kept per rank for the failure report
  };
  struct Exit {
    int local;
    int status;  // waitpid's
  };

  explicit LocalRanks(Spec spec);  // starts every rank (throws when fork fails, after killing the started ones)
  ~LocalRanks();                   // SIGKILLs and reaps whatever still runs: no orphans on any path
  LocalRanks(const LocalRanks&) = delete;
  LocalRanks& operator=(const LocalRanks&) = delete;

  // Copies the ranks' stderr on for at most `wait`, then reaps the ranks that have exited.
  std::vector<Exit> poll(Millis wait);
  void signal_all(int sig);                   // to each running rank's process group
  int alive() const;
  const std::vector<int>& pids() const { return pids_; }
  int global_rank(int local) const { return spec_.first_rank + local; }
  std::string tail(int local, int lines) const;  // its last `lines` lines of stderr
  // At most `lines` lines of its stderr from the last line starting with `marker` ("" when none).
  std::string from_last(int local, const std::string& marker, int lines) const;
  bool all_alive_stopped() const;                // every running rank is in state T (SIGSTOP) or t

 private:
  void start(int local, const std::vector<char*>& argv, const std::vector<char*>& envp, pid_t parent);
  void pump(size_t local);  // moves what its stderr pipe holds to the output and the tail
  void drain(size_t local, Millis limit);

  Spec spec_;
  std::vector<int> pids_;
  std::vector<bool> running_;
  std::vector<net::Fd> err_;     // read ends of the stderr pipes
  std::vector<std::string> tails_;
};

// The coordination of the nodes' launchers through the job's store (Note [Elastic rounds]).
class NodeAgent {
 public:
  explicit NodeAgent(const LaunchOptions& o);  // node 0 serves the store, the others connect
  ~NodeAgent();
  int port() const { return port_; }

  void check_shape();                 // the job's nnodes, nproc-per-node and max-restarts agree
  // The round's barrier; its error names the missing nodes. False when `interrupted` said so.
  bool join(int round, const std::function<bool()>& interrupted);
  void beat();                        // the heartbeat (rate-limited: call it often)

  void publish_failure(int round, const RankFailure& f);
  void publish_stop(int round, int sig);
  // What every node published for the round so far (a cheap poll when nothing is new).
  struct News {
    std::vector<RankFailure> failures;  // in the order the store received them
    int stop_signal = 0;
    int stop_node = -1;
  };
  int64_t events(int round);          // failures + stops published so far (one store request)
  News news(int round);
  void publish_exit(int round, int code);
  // Waits until every node has published its exit code for the round; a node whose launcher fell
  // silent for node_timeout gets -1 (lost).
  std::map<int, int> wait_exits(int round);
  void finish();                      // node 0 waits for every node's goodbye (5 s at most)

 private:
  std::string key(const std::string& k) const { return "launch/" + k; }

  LaunchOptions o_;
  std::shared_ptr<TCPStore> store_;
  int port_ = 0;
  LaunchClock::time_point last_beat_{};
  std::map<int, std::pair<int64_t, LaunchClock::time_point>> seen_beats_;  // node -> (count, when it changed)
};

// What one round ended with, the same on every node (the decision of Note [Elastic rounds]).
struct RoundOutcome {
  int local_code = 0;                 // this node's result (published as its exit for the round)
  std::map<int, int> node_codes;      // every node's result; -1 for a node whose launcher was lost
  std::vector<RankFailure> failures;  // in the store's order; this node's with their stderr tails
  int stop_signal = 0;                // a signal some launcher got (no restart then)
  std::vector<int> pids;              // this node's ranks
  std::string store_error;            // the job's store was lost
};
RoundOutcome run_round(const LaunchOptions& o, NodeAgent& agent, int round, LocalRanks::Spec spec);

// The launcher catches SIGINT, SIGTERM and SIGUSR1 while it runs (restored when it returns).
class SignalScope {
 public:
  explicit SignalScope(bool on);
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGUSR1};
  bool on_;
  std::array<struct sigaction, 3> old_{};
};
int take_signal();  // the last signal caught (0: none), cleared

}  // namespace rg::dist::detail
