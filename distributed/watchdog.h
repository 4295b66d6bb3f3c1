// The hang watchdog (Note [Hang watchdog]): per-group bookkeeping of the collectives in flight,
// the process-wide threads that notice a stalled one and publish progress, and the hang report
// that ends the process with kExitCollectiveHang.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <vector>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "distributed/process_group.h"

namespace rg::dist {

// Note [Hang watchdog]
// - Bookkeeping (the hot path, in ProcessGroup's public wrappers): each collective's description,
//   its Work (weakly), the time it was issued and the issuing thread are pushed on its group's
//   CollectiveMonitor (one mutex, one deque push; the cost per collective is measured in
//   benchmarks/RELIABILITY.md). Backends call note_progress() whenever bytes move (the CPU ring
//   does per piece); one without progress calls is judged by completions alone.
// - Watching: one thread per process wakes every P = timeout / 10, clamped to [20 ms, 1 s],
//   retires the completed collectives at the front of each group's queue, and calls a group
//   stalled when its oldest collective in flight has neither completed nor made progress for the
//   group's timeout. A slow collective that keeps moving data never stalls; a wait that never
//   returns does, whatever the backend and the thread. A backend whose own wait times out
//   (raise_timeout) takes the same path, so which of the two notices first changes nothing.
// - Progress reports: a second thread publishes every P, per group, "watchdog/<rank>" in the
//   group's store: the last completed and the last issued collective, the oldest one in flight
//   and its age, the wall-clock time, and a stalled flag. It costs the collectives nothing; a
//   rank that is stopped, dead, or stuck outside a collective stops publishing, which the report
//   shows as silence. The watching thread never calls the store, so a store that no longer
//   answers (its host process stopped) cannot delay the detection.
// - The report (stderr, on every rank whose collective stalls; lines start "ringgrad watchdog:"):
//   the collective with its sequence number, dtype, shape and device; the ranks that reached it
//   and those that did not; each rank's last completed collective and how long it has been
//   silent; and the C++ stacks of the thread that issued the collective and of every thread
//   blocked in a Work's wait (glibc backtrace() run by that thread in a signal handler, named
//   through the dynamic symbol table: executables that link rg_distributed get -rdynamic). It
//   waits at most 2P + 200 ms for the other ranks' reports, in a thread of its own.
// - Then the process ends with kExitCollectiveHang (distributed/exit_codes.h) through _exit,
//   after flushing stdio: no destructor runs, nothing waits for the hung peer.
// RINGGRAD_WATCHDOG=0 (or ProcessGroup::set_watchdog(false)) turns it off: timeouts then raise
// errors as Note [Collective sequence numbers] says.
using WatchClock = std::chrono::steady_clock;

// One group's collectives in flight and its last completed one (the bookkeeping above).
class CollectiveMonitor {
 public:
  CollectiveMonitor(std::shared_ptr<Store> store, int rank, int size, Millis timeout, bool enabled);

  // Hot path: a collective was queued (its Work returned to the caller).
  void issued(CollectiveInfo&& info, const std::shared_ptr<Work>& work);
  std::atomic<uint64_t> progress{0};  // ProcessGroup::note_progress increments it

  void set_timeout(Millis t) { timeout_ms_.store(t.count()); }
  Millis timeout() const { return Millis(timeout_ms_.load()); }
  void set_enabled(bool on) { enabled_.store(on); }
  bool enabled() const { return enabled_.load(); }
  Millis period() const;  // timeout / 10 in [20 ms, 1 s]
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::shared_ptr<Store>& store() const { return store_; }

  struct Stall {
    CollectiveInfo info;
    Millis idle{0};     // how long it made no progress
    pid_t issuer = 0;   // the thread that issued it
  };
  // The watching thread: retires completed collectives, then reports the stalled one, if any.
  std::optional<Stall> poll(WatchClock::time_point now);
  // The thread that issued collective `seq` while it is in flight, else 0.
  pid_t issuer_of(uint64_t seq);
  // The published progress line (Note [Hang watchdog]): "d=<seq>|dd=<desc>|i=...|t=<unix ms>|s=0".
  std::string state();
  void mark_stalled() { stalled_.store(true); }

 private:
  struct InFlight {
    CollectiveInfo info;
    std::weak_ptr<Work> work;
    WatchClock::time_point issued;
    pid_t issuer = 0;
  };
  // A FIFO on a ring of slots reused in place: no allocation per collective once warm.
  class Queue {
   public:
    bool empty() const { return n_ == 0; }
    size_t size() const { return n_; }
    InFlight& at(size_t i) { return slots_[(head_ + i) % slots_.size()]; }
    InFlight& front() { return at(0); }
    InFlight& back() { return at(n_ - 1); }
    void pop_front() {
      front().work.reset();
      head_ = (head_ + 1) % slots_.size();
      --n_;
    }
    void push_back(InFlight&& f) {
      if (n_ == slots_.size()) grow();
      at(n_) = std::move(f);
      ++n_;
    }

   private:
    void grow() {
      std::vector<InFlight> bigger(std::max<size_t>(16, 2 * slots_.size()));
      for (size_t i = 0; i < n_; ++i) bigger[i] = std::move(at(i));
      slots_ = std::move(bigger);
      head_ = 0;
    }
    std::vector<InFlight> slots_;
    size_t head_ = 0, n_ = 0;
  };
  void retire_completed_locked();

  std::shared_ptr<Store> store_;
  int rank_, size_;
  std::atomic<int64_t> timeout_ms_;
  std::atomic<bool> enabled_;
  std::atomic<bool> stalled_{false};
  std::mutex mu_;
  Queue in_flight_;
  CollectiveInfo done_;  // the last collective seen completed (seq 0: none yet)
  uint64_t watch_seq_ = 0, watch_progress_ = 0;
  WatchClock::time_point last_change_ = WatchClock::now();
};

namespace detail {

// Registers a group's monitor with the process's watchdog threads (started on first use).
void watch(const std::shared_ptr<CollectiveMonitor>& monitor);

// Prints the hang report for `info` (Note [Hang watchdog]) and ends the process with
// kExitCollectiveHang. Called by the watching thread, and by ProcessGroup::raise_timeout (on the
// thread that ran the collective: `ran_here`) when the watchdog is on. Only the first caller in a
// process reports; any other blocks until the process ends.
[[noreturn]] void report_hang_and_exit(CollectiveMonitor& monitor, const CollectiveInfo& info, Millis idle,
                                       const std::string& detail, bool ran_here);

// While alive, marks the calling thread as blocked in a Work's wait (its stack goes into reports).
class WaitScope {
 public:
  WaitScope();
  ~WaitScope();
  WaitScope(const WaitScope&) = delete;
  WaitScope& operator=(const WaitScope&) = delete;
};

// The calling thread's kernel id (cached per thread).
pid_t this_thread_id();

}  // namespace detail
}  // namespace rg::dist
