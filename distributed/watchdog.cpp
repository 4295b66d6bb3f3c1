// The hang watchdog (Note [Hang watchdog] in watchdog.h): each group's CollectiveMonitor, the
// process's watching and publishing threads, stacks captured through a signal, and the report.
#include "distributed/watchdog.h"

#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "core/stack_symbols.h"
#include "distributed/exit_codes.h"

namespace rg::dist {

using std::chrono::duration_cast;

namespace detail {
pid_t this_thread_id() {
  thread_local const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  return tid;
}

}  // namespace detail

using detail::this_thread_id;

namespace {

int64_t unix_ms() {
  return duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string seconds(int64_t ms) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f s", static_cast<double>(ms) / 1000.0);
  return b;
}

// ---- threads blocked in a Work's wait (leaked: usable while the process exits)

std::mutex& waiters_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::multiset<pid_t>& waiters() {
  static auto* s = new std::multiset<pid_t>;
  return *s;
}

}  // namespace

detail::WaitScope::WaitScope() {
  std::lock_guard<std::mutex> g(waiters_mutex());
  waiters().insert(this_thread_id());
}

detail::WaitScope::~WaitScope() {
  std::lock_guard<std::mutex> g(waiters_mutex());
  auto it = waiters().find(this_thread_id());
  if (it != waiters().end()) waiters().erase(it);
}

// ---- CollectiveMonitor

CollectiveMonitor::CollectiveMonitor(std::shared_ptr<Store> store, int rank, int size, Millis timeout, bool enabled)
    : store_(std::move(store)), rank_(rank), size_(size), timeout_ms_(timeout.count()), enabled_(enabled) {}

Millis CollectiveMonitor::period() const {
  return std::clamp(Millis(timeout_ms_.load() / 10), Millis(20), Millis(1000));
}

// The issue time on the hot path: CLOCK_MONOTONIC_COARSE (steady_clock's clock, at the kernel
// tick's resolution of a few ms) costs a few ns where a precise read costs tens.
WatchClock::time_point coarse_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return WatchClock::time_point(std::chrono::duration_cast<WatchClock::duration>(
      std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

void CollectiveMonitor::issued(CollectiveInfo&& info, const std::shared_ptr<Work>& work) {
  const auto now = coarse_now();
  const pid_t tid = this_thread_id();
  std::lock_guard<std::mutex> g(mu_);
  if (in_flight_.size() >= 64) retire_completed_locked();  // bounded memory between polls
  in_flight_.push_back({std::move(info), work, now, tid});
}

void CollectiveMonitor::retire_completed_locked() {
  while (!in_flight_.empty()) {
    InFlight& f = in_flight_.front();
    if (!f.work.expired()) {  // a dropped Work counts as completed (and costs no lock)
      const std::shared_ptr<Work> w = f.work.lock();
      if (w && !w->is_completed()) return;
    }
    done_ = std::move(f.info);
    in_flight_.pop_front();
  }
}

std::optional<CollectiveMonitor::Stall> CollectiveMonitor::poll(WatchClock::time_point now) {
  std::lock_guard<std::mutex> g(mu_);
  retire_completed_locked();
  const uint64_t p = progress.load(std::memory_order_relaxed);
  if (in_flight_.empty() || !enabled_.load()) {
    watch_seq_ = 0;
    watch_progress_ = p;
    last_change_ = now;
    return std::nullopt;
  }
  const InFlight& f = in_flight_.front();
  if (f.info.seq != watch_seq_ || p != watch_progress_) {  // completed something, or moved data
    watch_seq_ = f.info.seq;
    watch_progress_ = p;
    last_change_ = now;
  }
  const Millis idle = duration_cast<Millis>(now - std::max(last_change_, f.issued));
  if (idle < timeout()) return std::nullopt;
  return Stall{f.info, idle, f.issuer};
}

pid_t CollectiveMonitor::issuer_of(uint64_t seq) {
  std::lock_guard<std::mutex> g(mu_);
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    if (in_flight_.at(i).info.seq == seq) return in_flight_.at(i).issuer;
  }
  return 0;
}

std::string CollectiveMonitor::state() {
  std::lock_guard<std::mutex> g(mu_);
  retire_completed_locked();
  const auto now = WatchClock::now();
  const CollectiveInfo& last = in_flight_.empty() ? done_ : in_flight_.back().info;
  std::string s = "d=" + std::to_string(done_.seq) + "|dd=" + (done_.seq ? done_.describe() : "") +
                  "|i=" + std::to_string(last.seq) + "|id=" + (last.seq ? last.describe() : "");
  if (!in_flight_.empty()) {
    const InFlight& f = in_flight_.front();
    s += "|f=" + std::to_string(f.info.seq) + "|fd=" + f.info.describe() +
         "|fa=" + std::to_string(duration_cast<Millis>(now - f.issued).count());
  }
  return s + "|t=" + std::to_string(unix_ms()) + "|s=" + (stalled_.load() ? "1" : "0");
}

// ---- the watching and publishing threads

namespace {

class Watchdog {
 public:
  static Watchdog& get() {
    static Watchdog* w = new Watchdog();  // never destroyed: its threads run until the process ends
    return *w;
  }

  void add(const std::shared_ptr<CollectiveMonitor>& m) {
    {
      std::lock_guard<std::mutex> g(mu_);
      monitors_.push_back(m);
      if (!started_) {
        started_ = true;
        void* warm[4];
        ::backtrace(warm, 4);  // loads libgcc now: backtrace() in a signal handler must not
        std::thread([this] { loop("rg-watchdog", true); }).detach();
        std::thread([this] { loop("rg-wd-publish", false); }).detach();
      }
    }
    cv_.notify_all();  // a shorter period may apply now
  }

 private:
  std::vector<std::shared_ptr<CollectiveMonitor>> live() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<std::shared_ptr<CollectiveMonitor>> out;
    std::erase_if(monitors_, [&](const std::weak_ptr<CollectiveMonitor>& w) {
      auto m = w.lock();
      if (!m) return true;
      out.push_back(std::move(m));
      return false;
    });
    return out;
  }

  // Watching (never touches the store) or publishing; each wakes every period.
  void loop(const char* name, bool watching) {
    ::pthread_setname_np(::pthread_self(), name);
    for (;;) {
      Millis period(1000);
      {
        auto ms = live();
        for (const auto& m : ms) {
          if (!m->enabled()) continue;
          period = std::min(period, m->period());
          if (watching) {
            if (auto st = m->poll(WatchClock::now())) detail::report_hang_and_exit(*m, st->info, st->idle, "", false);
          } else {
            try {
              m->store()->set("watchdog/" + std::to_string(m->rank()), m->state());
            } catch (const std::exception&) {
              // the store is gone (the job is ending) or busy: the next period tries again
            }
          }
        }
      }
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait_for(g, period);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<CollectiveMonitor>> monitors_;
  bool started_ = false;
};

}  // namespace

void detail::watch(const std::shared_ptr<CollectiveMonitor>& monitor) { Watchdog::get().add(monitor); }

// ---- stacks: backtrace() run by the target thread in a signal handler

namespace {

constexpr int kMaxFrames = 64;
// state: 0 idle, 1 requested, 4 being taken, 2 taken.
struct StackSlot {
  std::atomic<int> state{0};
  void* frames[kMaxFrames];
  int n = 0;
};
StackSlot g_slot;

void on_stack_signal(int) {
  int requested = 1;
  if (!g_slot.state.compare_exchange_strong(requested, 4)) return;
  g_slot.n = ::backtrace(g_slot.frames, kMaxFrames);
  g_slot.state.store(2);
}

int stack_signal() { return SIGRTMIN + 6; }

// The frames of thread `tid` (empty when it does not answer within half a second).
std::vector<void*> capture_stack(pid_t tid) {
  if (tid == this_thread_id()) {
    void* f[kMaxFrames];
    const int n = ::backtrace(f, kMaxFrames);
    return std::vector<void*>(f + std::min(n, 2), f + n);  // not capture_stack and its caller
  }
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = on_stack_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return ::sigaction(stack_signal(), &sa, nullptr) == 0;
  }();
  if (!installed) return {};
  g_slot.n = 0;
  g_slot.state.store(1);
  if (::syscall(SYS_tgkill, ::getpid(), tid, stack_signal()) != 0) {
    g_slot.state.store(0);
    return {};
  }
  const auto until = WatchClock::now() + Millis(500);
  while (g_slot.state.load() != 2 && WatchClock::now() < until) std::this_thread::sleep_for(Millis(1));
  int requested = 1;
  if (g_slot.state.compare_exchange_strong(requested, 0)) return {};  // never ran the handler
  while (g_slot.state.load() != 2) std::this_thread::sleep_for(Millis(1));  // it is taking it now
  std::vector<void*> out(g_slot.frames + std::min(g_slot.n, 2), g_slot.frames + g_slot.n);  // handler, trampoline
  g_slot.state.store(0);
  return out;
}

// "rg::dist::CompletionWork::wait() + 0x4c at work.cpp:88 (ringgrad)"; unnamed: file+offset.
std::string frame_text(const StackFrame& f) {
  if (f.name.empty()) {
    return f.object.empty() ? hex_address(reinterpret_cast<uintptr_t>(f.pc)) : frame_object_name(f) + "+" + hex_address(f.offset);
  }
  std::string s = f.name;
  if (f.name_off > 0) s += " + " + hex_address(f.name_off);
  if (!f.where.empty()) s += " at " + f.where;
  return s + " (" + frame_object_name(f) + ")";
}

std::string thread_name(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(f, name);
  return name;
}

// The stacks of the thread that ran the collective into its timeout (when it reports), the one
// that issued it, and every thread blocked in a wait.
std::string stacks_section(pid_t issuer, bool ran_here) {
  std::vector<std::pair<pid_t, std::string>> threads;
  auto add = [&](pid_t t, const std::string& role) {
    for (auto& [tid, r] : threads) {
      if (tid == t) {
        r += ", " + role;
        return;
      }
    }
    threads.push_back({t, role});
  };
  if (ran_here) add(this_thread_id(), "ran it into the timeout");
  if (issuer > 0) add(issuer, "issued it");
  {
    std::lock_guard<std::mutex> g(waiters_mutex());
    for (pid_t t : std::set<pid_t>(waiters().begin(), waiters().end())) add(t, "blocked in a wait");
  }
  std::vector<std::vector<StackFrame>> stacks;
  std::vector<StackFrame*> all;
  for (const auto& t : threads) {
    stacks.emplace_back();
    for (void* pc : capture_stack(t.first)) stacks.back().push_back(resolve_frame(pc));
  }
  for (auto& st : stacks) {
    for (StackFrame& f : st) all.push_back(&f);
  }
  resolve_with_addr2line(all);
  std::string out;
  for (size_t k = 0; k < threads.size(); ++k) {
    const auto& [tid, role] = threads[k];
    out += "ringgrad watchdog: stack of thread " + std::to_string(tid) + " \"" + thread_name(tid) + "\" (" + role +
           "):\n";
    if (stacks[k].empty()) out += "    (not available: the thread did not answer)\n";
    for (size_t i = 0; i < stacks[k].size(); ++i) out += "    #" + std::to_string(i) + " " + frame_text(stacks[k][i]) + "\n";
  }
  return out;
}

// ---- the report

// One rank's published progress line, parsed (Note [Hang watchdog]).
struct RankState {
  bool known = false, stalled = false;
  uint64_t done = 0, issued = 0, front = 0;
  std::string done_desc, front_desc;
  int64_t front_age_ms = 0, t_ms = 0;
};

RankState parse_state(const std::string& line) {
  RankState s;
  if (line.empty()) return s;
  s.known = true;
  size_t p = 0;
  while (p <= line.size()) {
    size_t bar = line.find('|', p);
    if (bar == std::string::npos) bar = line.size();
    const std::string kv = line.substr(p, bar - p);
    const size_t eq = kv.find('=');
    const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "d") s.done = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "dd") s.done_desc = v;
    else if (k == "i") s.issued = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "f") s.front = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "fd") s.front_desc = v;
    else if (k == "fa") s.front_age_ms = std::atoll(v.c_str());
    else if (k == "t") s.t_ms = std::atoll(v.c_str());
    else if (k == "s") s.stalled = v == "1";
    p = bar + 1;
  }
  return s;
}

// The store exchange runs in a thread of its own: a store that does not answer must not keep
// the report (and the exit) waiting.
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::vector<std::string> lines;  // by rank, "" when unknown
  std::string error;
};

std::shared_ptr<Exchange> start_exchange(CollectiveMonitor& m, uint64_t seq, WatchClock::time_point until) {
  auto ex = std::make_shared<Exchange>();
  ex->lines.resize(static_cast<size_t>(m.size()));
  std::thread([ex, store = m.store(), rank = m.rank(), size = m.size(), mine = m.state(), seq, until] {
    auto key = [](int q) { return "watchdog/" + std::to_string(q); };
    try {
      store->set(key(rank), mine);
      {
        std::lock_guard<std::mutex> g(ex->mu);
        ex->lines[static_cast<size_t>(rank)] = mine;
      }
      for (;;) {
        bool all = true;
        for (int q = 0; q < size; ++q) {
          if (q == rank) continue;
          const std::string line = store->check({key(q)}) ? store->get_string(key(q)) : "";
          all = all && !line.empty() && parse_state(line).issued >= seq;
          std::lock_guard<std::mutex> g(ex->mu);
          ex->lines[static_cast<size_t>(q)] = line;
        }
        if (all || WatchClock::now() >= until) break;
        std::this_thread::sleep_for(Millis(50));
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> g(ex->mu);
      ex->error = e.what();
    }
    {
      std::lock_guard<std::mutex> g(ex->mu);
      ex->done = true;
    }
    ex->cv.notify_all();
  }).detach();
  return ex;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s.empty() ? "(none)" : s;
}

bool is_silent(const RankState& s, Millis period) { return unix_ms() - s.t_ms > 3 * period.count() + 500; }

// "rank 1: did not reach it; last completed allreduce #41 ...; not in a collective; silent for 2.31 s ..."
std::string rank_line(int q, const RankState& s, uint64_t seq, Millis period) {
  std::string l = "ringgrad watchdog:   rank " + std::to_string(q) + ": ";
  if (!s.known) return l + "no progress report (it never published one, or the store did not answer)\n";
  l += s.issued >= seq ? "reached it" : "did not reach it";
  l += "; last completed " + (s.done ? s.done_desc : std::string("(none)"));
  if (s.front) {
    l += "; in " + s.front_desc + " for " + seconds(s.front_age_ms) + (s.stalled ? ", stalled" : "");
  } else {
    l += "; not in a collective";
  }
  const int64_t age = std::max<int64_t>(unix_ms() - s.t_ms, 0);
  if (is_silent(s, period)) {
    l += "; silent for " + seconds(age) + " (stopped, hung outside a collective, or dead)";
  } else {
    l += "; last report " + seconds(age) + " ago";
  }
  return l + "\n";
}

// The ranks that did not reach the collective and are not waiting in an earlier one themselves.
std::string suspect(int q, const RankState& s, uint64_t seq, Millis period) {
  const std::string r = "rank " + std::to_string(q);
  if (!s.known) return r + " (no progress report)";
  if (s.issued >= seq) return "";
  if (is_silent(s, period)) return r + " (silent: stopped, hung outside a collective, or dead)";
  if (!s.front) return r + " (alive, not in a collective: busy elsewhere, or it skipped this collective)";
  return "";
}

std::string ranks_section(CollectiveMonitor& m, const CollectiveInfo& info, Millis grace) {
  const auto until = WatchClock::now() + grace;
  auto ex = start_exchange(m, info.seq, until);
  std::unique_lock<std::mutex> g(ex->mu);
  const bool finished = ex->cv.wait_until(g, until + Millis(300), [&] { return ex->done; });
  std::vector<std::string> reached, missing, suspects;
  std::string lines;
  for (int q = 0; q < m.size(); ++q) {
    const RankState s = parse_state(ex->lines[static_cast<size_t>(q)]);
    (s.known && s.issued >= info.seq ? reached : missing).push_back(std::to_string(q));
    lines += rank_line(q, s, info.seq, m.period());
    if (std::string why = suspect(q, s, info.seq, m.period()); !why.empty()) suspects.push_back(why);
  }
  std::string out = "ringgrad watchdog: ranks that reached " + std::string(info.op) + " #" + std::to_string(info.seq) +
                    ": " + join(reached) + "\n";
  out += "ringgrad watchdog: ranks that did not reach it: " + join(missing) + "\n";
  std::string cause = join(suspects);
  if (missing.empty()) {
    cause = "every rank reached it: the collective itself stalls (a stalled link, or a backend that never completes)";
  } else if (suspects.empty()) {
    cause = "unknown: the ranks that did not reach it wait in earlier collectives";
  }
  out += "ringgrad watchdog: likely cause: " + cause + "\n";
  out += "ringgrad watchdog: each rank's progress, as published through the store:\n" + lines;
  if (!ex->error.empty()) out += "ringgrad watchdog: (the store failed: " + ex->error + ")\n";
  if (!finished) out += "ringgrad watchdog: (the store did not answer within " + seconds(grace.count()) + ")\n";
  return out;
}

std::string host_name() {
  char h[256] = {0};
  ::gethostname(h, sizeof h - 1);
  return h;
}

bool agent_store() {
  const char* v = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  return v && (std::strcmp(v, "True") == 0 || std::strcmp(v, "true") == 0 || std::strcmp(v, "1") == 0);
}

}  // namespace

[[noreturn]] void detail::report_hang_and_exit(CollectiveMonitor& m, const CollectiveInfo& info, Millis idle,
                                               const std::string& detail, bool ran_here) {
  static std::atomic<bool> reporting{false};
  if (reporting.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // the first reporter ends the process
  }
  m.mark_stalled();
  const pid_t issuer = m.issuer_of(info.seq);
  const Millis grace = 2 * m.period() + Millis(200);
  std::string out = "ringgrad watchdog: rank " + std::to_string(m.rank()) + " (pid " + std::to_string(::getpid()) +
                    " on " + host_name() + "): " + info.describe() + " made no progress for " +
                    seconds(idle.count()) + " (collective timeout " + seconds(m.timeout().count()) + ")" +
                    (detail.empty() ? "" : "; " + detail) + "\n";
  out += ranks_section(m, info, grace);
  out += stacks_section(issuer, ran_here);
  out += "ringgrad watchdog: ending rank " + std::to_string(m.rank()) + "'s process with exit code " +
         std::to_string(kExitCollectiveHang) +
         " (collective hang). RINGGRAD_COLLECTIVE_TIMEOUT_S sets the timeout, RINGGRAD_WATCHDOG=0 turns the "
         "watchdog off.\n";
  std::fputs(out.c_str(), stderr);
  std::fflush(nullptr);
  // Rank 0 serves the store when no launcher does: stay a moment for the ranks still reporting.
  if (m.rank() == 0 && !agent_store()) std::this_thread::sleep_for(grace);
  ::_exit(kExitCollectiveHang);
}

}  // namespace rg::dist
