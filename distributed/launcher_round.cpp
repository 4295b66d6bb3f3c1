// One round of the job on this node (Note [Launcher], Note [Elastic rounds] in launcher.h): runs
// the local ranks until they are gone, reacting to their exits, to signals, and to what the other
// nodes publish; then gathers every node's outcome.
#include <signal.h>
#include <sys/wait.h>
#include <string.h>

#include <algorithm>
#include <cstdio>
#include <optional>

#include "core/error.h"
#include "distributed/exit_codes.h"
#include "distributed/launcher_internal.h"

namespace rg::dist::detail {

namespace {

constexpr Millis kSettle{200};

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

std::string signal_name(int sig) {
  const char* a = sigabbrev_np(sig);
  return a ? std::string("SIG") + a : "signal " + std::to_string(sig);
}

class Round {
 public:
  Round(const LaunchOptions& o, NodeAgent& agent, int round, LocalRanks::Spec spec)
      : o_(o), agent_(agent), round_(round), ranks_(std::move(spec)) {}
  RoundOutcome run();

 private:
  void on_exit(const LocalRanks::Exit& e);
  void on_signal(int sig);
  void on_news();
  void report(const RankFailure& f, bool hang);
  void fail(RankFailure f, bool hang);
  void begin_stop(LaunchClock::time_point term_at);
  void tick(LaunchClock::time_point now);
  int local_code() const;
  template <typename F>
  void with_store(F&& f);  // a lost store stops the round instead of throwing
  void say(const std::string& m) const {
    if (o_.verbose) std::fprintf(stderr, "ringgrad launch: %s\n", m.c_str());
  }

  const LaunchOptions& o_;
  NodeAgent& agent_;
  int round_;
  LocalRanks ranks_;
  std::optional<LaunchClock::time_point> term_at_, kill_at_;
  bool hang_wait_ = false, termed_ = false, killed_ = false;
  std::optional<RankFailure> failure_;  // this node's first failure, or another node's that stopped us
  int stop_signal_ = 0;
  int ok_ = 0, preempted_ = 0, other_ = 0;
  int64_t seen_events_ = 0;
  std::string store_error_;
  std::vector<RankFailure> local_failures_;  // with their stderr tails
};

template <typename F>
void Round::with_store(F&& f) {
  if (!store_error_.empty()) return;
  try {
    f();
  } catch (const std::exception& e) {
    store_error_ = e.what();
    say("lost the job's store (" + store_error_ + "); stopping this node's ranks");
    if (!failure_) {
      RankFailure lost;
      lost.round = round_;
      lost.node = o_.node_rank;
      lost.exit_code = 1;
      lost.what = "lost the job's store: " + store_error_;
      failure_ = lost;
    }
    begin_stop(LaunchClock::now());
  }
}

void Round::begin_stop(LaunchClock::time_point term_at) {
  if (!term_at_ || term_at < *term_at_) term_at_ = term_at;
}

// SIGTERM (with SIGCONT, for stopped ranks) when it is time, then SIGKILL after kill_grace.
void Round::tick(LaunchClock::time_point now) {
  if (hang_wait_ && term_at_ && !termed_ && ranks_.all_alive_stopped()) term_at_ = now;  // nobody left to report
  if (term_at_ && !termed_ && now >= *term_at_) {
    ranks_.signal_all(SIGTERM);
    ranks_.signal_all(SIGCONT);
    termed_ = true;
    if (!kill_at_ || now + o_.kill_grace < *kill_at_) kill_at_ = now + o_.kill_grace;
  }
  if (kill_at_ && !killed_ && now >= *kill_at_) {
    ranks_.signal_all(SIGKILL);
    killed_ = true;
  }
}

// Prints a failure with its stderr tail and publishes it to the other nodes.
void Round::report(const RankFailure& f, bool hang) {
  say(f.describe() + (!failure_ && ranks_.alive() > 0 ? "; stopping the other ranks" : ""));
  if (!f.stderr_tail.empty() && o_.verbose) {
    std::string t = (hang ? "the start of rank " + std::to_string(f.rank) + "'s hang report:"
                          : "last lines of rank " + std::to_string(f.rank) + "'s stderr:");
    size_t p = 0;
    while (p < f.stderr_tail.size()) {
      size_t nl = f.stderr_tail.find('\n', p);
      if (nl == std::string::npos) nl = f.stderr_tail.size();
      t += "\n  | " + f.stderr_tail.substr(p, nl - p);
      p = nl + 1;
    }
    say(t);
  }
  local_failures_.push_back(f);
  with_store([&] { agent_.publish_failure(round_, f); });
}

void Round::fail(RankFailure f, bool hang) {
  report(f, hang);
  failure_ = std::move(f);
  // After a hang, the others may be writing their own reports: give them report_grace. Else a
  // moment to see whether a rank was killed first and this failure is its fallout (Note [Elastic
  // rounds]): its peers can notice it and exit before the killed process is reaped.
  hang_wait_ = hang;
  begin_stop(LaunchClock::now() + (hang ? o_.report_grace : kSettle));
}

void Round::on_exit(const LocalRanks::Exit& e) {
  const int code = wait_status_code(e.status);
  if (code == 0) {
    ++ok_;
    return;
  }
  if (code == kExitPreempted) {
    ++preempted_;
    // The ranks agreed to stop: the others get preempt_grace to finish saving, no signal.
    const auto at = LaunchClock::now() + o_.preempt_grace;
    if (!kill_at_ || at < *kill_at_) kill_at_ = at;
    return;
  }
  ++other_;
  if (stop_signal_) return;  // the fallout of a preemption
  // After the first failure, an error exit is its fallout; a rank killed by a signal before we
  // sent any is a failure of its own, and the job's result (Note [Elastic rounds]).
  if (failure_ && !(WIFSIGNALED(e.status) && !termed_)) return;
  RankFailure f;
  f.round = round_;
  f.node = o_.node_rank;
  f.rank = ranks_.global_rank(e.local);
  f.pid = ranks_.pids()[static_cast<size_t>(e.local)];
  f.exit_code = code;
  f.killed = WIFSIGNALED(e.status);
  f.what = wait_status_text(e.status);
  // A hang report's head says what happened; its stacks come last.
  if (code == kExitCollectiveHang) f.stderr_tail = ranks_.from_last(e.local, "ringgrad watchdog: rank ", o_.tail_lines);
  if (f.stderr_tail.empty()) f.stderr_tail = ranks_.tail(e.local, o_.tail_lines);
  if (failure_) {
    report(f, false);
  } else {
    fail(std::move(f), code == kExitCollectiveHang);
  }
}

void Round::on_signal(int sig) {
  const auto now = LaunchClock::now();
  ranks_.signal_all(sig);
  if (stop_signal_) {  // a second signal: no more grace
    say("got " + signal_name(sig) + " again; passed it on; the ranks have " + net::format_duration(o_.kill_grace) +
        " left");
    if (!kill_at_ || now + o_.kill_grace < *kill_at_) kill_at_ = now + o_.kill_grace;
    return;
  }
  stop_signal_ = sig;
  say("got " + signal_name(sig) + "; passed it on to the ranks, which have " +
      net::format_duration(o_.preempt_grace) + " to save and exit (--preempt-grace)");
  if (!kill_at_ || now + o_.preempt_grace < *kill_at_) kill_at_ = now + o_.preempt_grace;
  with_store([&] { agent_.publish_stop(round_, sig); });
}

// Another node's failure stops our ranks; its stop signal is forwarded to them.
void Round::on_news() {
  NodeAgent::News n;
  with_store([&] { n = agent_.news(round_); });
  for (const RankFailure& f : n.failures) {
    if (f.node == o_.node_rank || failure_ || stop_signal_) continue;
    failure_ = f;
    say("node " + std::to_string(f.node) + " reported: " + f.describe() + "; stopping this node's ranks");
    hang_wait_ = f.exit_code == kExitCollectiveHang;
    begin_stop(LaunchClock::now() + (hang_wait_ ? o_.report_grace : Millis(0)));
  }
  if (n.stop_signal && n.stop_node != o_.node_rank && !stop_signal_) {
    say("node " + std::to_string(n.stop_node) + " got " + signal_name(n.stop_signal) + "; passing it on");
    on_signal(n.stop_signal);
  }
}

int Round::local_code() const {
  if (failure_) return failure_->exit_code;
  if (stop_signal_) return other_ == 0 && preempted_ > 0 ? kExitPreempted : 128 + stop_signal_;
  return preempted_ > 0 ? kExitPreempted : 0;
}

RoundOutcome Round::run() {
  const auto started = LaunchClock::now();
  auto next_news = started;
  while (ranks_.alive() > 0) {
    std::vector<LocalRanks::Exit> exits = ranks_.poll(Millis(10));
    // Reaped together: a rank killed by a signal first, its peers' error exits are its fallout.
    std::stable_partition(exits.begin(), exits.end(), [](const LocalRanks::Exit& e) { return WIFSIGNALED(e.status); });
    for (const auto& e : exits) on_exit(e);
    const auto now = LaunchClock::now();
    if (const int sig = g_signal) {
      g_signal = 0;
      on_signal(sig);
    }
    if (now >= next_news) {
      next_news = now + Millis(100);
      int64_t ev = seen_events_;
      with_store([&] {
        agent_.beat();
        ev = agent_.events(round_);
      });
      if (ev > seen_events_) {
        seen_events_ = ev;
        on_news();
      }
    }
    if (o_.job_timeout.count() > 0 && !failure_ && !stop_signal_ && now - started > o_.job_timeout) {
      RankFailure f;
      f.round = round_;
      f.node = o_.node_rank;
      f.exit_code = 124;
      f.what = "the job ran longer than " + net::format_duration(o_.job_timeout) + " (job timeout)";
      fail(std::move(f), false);
    }
    tick(LaunchClock::now());
  }
  RoundOutcome out;
  out.pids = ranks_.pids();
  out.local_code = local_code();
  out.stop_signal = stop_signal_;
  with_store([&] {
    agent_.publish_exit(round_, out.local_code);
    out.node_codes = agent_.wait_exits(round_);
    const NodeAgent::News n = agent_.news(round_);
    out.failures = n.failures;
    if (n.stop_signal) out.stop_signal = n.stop_signal;
  });
  for (RankFailure& f : out.failures) {  // ours carry their stderr tails
    for (const RankFailure& l : local_failures_) {
      if (l.node == f.node && l.rank == f.rank && l.pid == f.pid) f.stderr_tail = l.stderr_tail;
    }
  }
  out.store_error = store_error_;
  if (out.failures.empty() && failure_) out.failures.push_back(*failure_);  // the store could not say
  return out;
}

}  // namespace

int take_signal() {
  const int s = g_signal;
  g_signal = 0;
  return s;
}

SignalScope::SignalScope(bool on) : on_(on) {
  g_signal = 0;
  if (!on_) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the waits in the loops wake up
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
}

SignalScope::~SignalScope() {
  if (!on_) return;
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
}

RoundOutcome run_round(const LaunchOptions& o, NodeAgent& agent, int round, LocalRanks::Spec spec) {
  Round r(o, agent, round, std::move(spec));
  return r.run();
}

}  // namespace rg::dist::detail
