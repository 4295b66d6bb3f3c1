// The "ring" process group for CPU tensors (Note [CPU ring] in ring_cpu.h): transport choice,
// the worker thread, and the pipelined ring schedules of every collective.
#include "distributed/ring_cpu.h"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <thread>
#include <type_traits>

#include "distributed/transport.h"

namespace rg::dist {

using detail::Deadline;
using detail::LinkError;
using detail::RingLink;

namespace {

constexpr size_t kDefaultSubBytes = size_t{256} << 10;

// Partial sums travel in f32 for the 16-bit floats (Note [CPU ring]).
template <typename T> struct WireOf { using type = T; };
template <> struct WireOf<Half> { using type = float; };
template <> struct WireOf<BFloat16> { using type = float; };
template <typename T> using wire_t = typename WireOf<T>::type;

// Sends a range once `need` receive segments have completed (the data it forwards has arrived).
struct SendSeg {
  const char* p;
  size_t n;
  size_t need;
};
// Receives a range; kind says what happens when it is complete.
enum class RecvKind : uint8_t { Place, Reduce, ReduceFinal };
struct RecvSeg {
  char* p;
  size_t n;
  RecvKind kind;
  int64_t at;  // reduce segments: the element offset in the tensor their bytes reduce into
};

// Chunk c of n elements split size ways: the first n % size chunks get one more element.
struct Chunks {
  int64_t n;
  int size;
  int64_t off(int c) const { return c * (n / size) + std::min<int64_t>(c, n % size); }
  int64_t len(int c) const { return n / size + (c < n % size ? 1 : 0); }
};

inline int mod(int a, int n) { return ((a % n) + n) % n; }

template <typename W>
inline W max_of(W a, W b) {
  if constexpr (std::is_floating_point_v<W>) {
    return (a > b || a != a) ? a : b;  // NaN propagates, as torch.max
  } else {
    return a > b ? a : b;
  }
}

// dst[i] = partial[i] (op) local[i], in the wire type. dst may alias local.
template <typename T, typename W>
void combine(const W* partial, const T* local, W* dst, int64_t n, bool is_max) {
  if (is_max) {
    for (int64_t i = 0; i < n; ++i) dst[i] = max_of<W>(partial[i], static_cast<W>(local[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = partial[i] + static_cast<W>(local[i]);
  }
}

// out[i] = T(finish(partial[i] (op) local[i])): the chunk owner's last step, the one rounding.
template <typename T, typename W>
void combine_final(const W* partial, const T* local, T* out, int64_t n, ReduceOp op, int size) {
  if (op == ReduceOp::Max) {
    for (int64_t i = 0; i < n; ++i) out[i] = T(max_of<W>(partial[i], static_cast<W>(local[i])));
  } else if (op == ReduceOp::Sum || size == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = T(partial[i] + static_cast<W>(local[i]));
  } else {
    const W d = static_cast<W>(size);
    for (int64_t i = 0; i < n; ++i) out[i] = T((partial[i] + static_cast<W>(local[i])) / d);
  }
}

template <typename F>
void dispatch(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    case DType::f16: f(Half{}); break;
    case DType::bf16: f(BFloat16{}); break;
    case DType::i32: f(int32_t{}); break;
    case DType::i64: f(int64_t{}); break;
    default: throw_unsupported_dtype("ring", t, "cpu");
  }
}

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  const long long x = std::atoll(v);
  return x > 0 ? static_cast<size_t>(x) : fallback;
}

}  // namespace

struct RingCpuProcessGroup::Impl : std::enable_shared_from_this<RingCpuProcessGroup::Impl> {
  struct Task {
    CollectiveInfo info;
    std::function<void()> run;
    std::shared_ptr<CompletionWork> work;
    Millis timeout;  // the group's timeout when the collective was called
  };

  RingCpuProcessGroup* pg;
  int rank, size;
  std::unique_ptr<RingLink> link;
  std::string transport = "none";
  size_t sub_bytes = kDefaultSubBytes;

  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> queue;
  bool busy = false;  // a task is running (on the worker or a waiting thread)
  bool stop = false;
  std::atomic<bool> abort{false};
  std::string broken;                        // the first error (touched only by the running task)
  Millis cur_timeout{kDefaultTimeout};       // the running task's timeout
  std::vector<uint64_t> staging_, scratch_;  // 8-byte aligned raw space, grown on demand

  Impl(RingCpuProcessGroup* g, int r, int s) : pg(g), rank(r), size(s) {}

  template <typename W>
  W* staging(int64_t n) {
    const size_t words = (static_cast<size_t>(n) * sizeof(W) + 7) / 8;
    if (staging_.size() < words) staging_.resize(words);
    return reinterpret_cast<W*>(staging_.data());
  }
  template <typename W>
  W* scratch(int64_t n) {
    const size_t words = (static_cast<size_t>(n) * sizeof(W) + 7) / 8;
    if (scratch_.size() < words) scratch_.resize(words);
    return reinterpret_cast<W*>(scratch_.data());
  }

  // ---- transport setup

  void connect(Store& store) {
    if (size == 1) return;
    const Millis timeout = store.timeout();
    if (rank == 0) store.set("ring/sub_bytes", std::to_string(env_size("RINGGRAD_RING_CHUNK_BYTES", kDefaultSubBytes)));
    store.wait({"ring/sub_bytes"}, timeout);
    sub_bytes = std::max<size_t>(64, std::strtoull(store.get_string("ring/sub_bytes").c_str(), nullptr, 10));

    // Rank 0 chooses for everyone (the ranks' environments could disagree) and publishes the
    // choice, or the reason it cannot, so that no rank waits for a peer that gave up.
    store.set("ring/host/" + std::to_string(rank), detail::host_identity());
    if (rank == 0) {
      std::string choice;
      try {
        const char* env = std::getenv("RINGGRAD_RING_TRANSPORT");
        const std::string want = env ? env : "";
        RG_CHECK(want.empty() || want == "auto" || want == "tcp" || want == "shm", "RINGGRAD_RING_TRANSPORT=", want,
                 " is not one of tcp, shm, auto");
        std::vector<std::string> keys, hosts;
        for (int q = 0; q < size; ++q) keys.push_back("ring/host/" + std::to_string(q));
        store.wait(keys, timeout);
        int differs = -1;
        for (int q = 0; q < size; ++q) {
          hosts.push_back(store.get_string(keys[static_cast<size_t>(q)]));
          if (differs < 0 && hosts.back() != hosts[0]) differs = q;
        }
        if (want == "shm") {
          RG_CHECK(differs < 0, "RINGGRAD_RING_TRANSPORT=shm, but the ranks run on different hosts: rank 0 on ",
                   hosts[0], ", rank ", differs, " on ", hosts[static_cast<size_t>(differs)]);
        }
        choice = (want == "shm" || ((want.empty() || want == "auto") && differs < 0)) ? "shm" : "tcp";
      } catch (const std::exception& e) {
        store.set("ring/transport", std::string("error:") + e.what());
        throw;
      }
      store.set("ring/transport", choice);
    }
    store.wait({"ring/transport"}, timeout);
    const std::string choice = store.get_string("ring/transport");
    RG_CHECK(choice.rfind("error:", 0) != 0, "ring: rank 0 could not set up the group: ", choice.substr(6));
    const bool use_shm = choice == "shm";
    link = use_shm ? detail::connect_shm_ring(store, rank, size, timeout)
                   : detail::connect_tcp_ring(store, rank, size, timeout);
    transport = link->kind();
  }

  // ---- the worker

  void start() {
    worker = std::thread([this] {
      pthread_setname_np(pthread_self(), "rg-ring");
      loop();
    });
  }

  // One task runs at a time, on the worker or (see RingWork) on a thread waiting for it.
  void loop() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> g(mu);
        cv.wait(g, [&] { return (!queue.empty() && !busy) || (stop && queue.empty()); });
        if (queue.empty()) return;
        task = std::move(queue.front());
        queue.pop_front();
        busy = true;
      }
      run_task(task);
      {
        std::lock_guard<std::mutex> g(mu);
        busy = false;
      }
    }
  }

  void run_task(Task& task) {
    std::exception_ptr err;
    try {
      if (abort.load()) {
        RG_THROW("rank ", rank, ": ", task.info.describe(),
                 " was cancelled: the process group was destroyed before it ran");
      }
      if (!broken.empty()) {
        RG_THROW("rank ", rank, ": ", task.info.describe(),
                 " not run: the ring process group is unusable after an earlier failure: ", broken);
      }
      cur_timeout = task.timeout;
      task.run();
    } catch (const std::exception& e) {
      err = std::current_exception();
      if (broken.empty()) broken = e.what();
    } catch (...) {
      err = std::current_exception();
      if (broken.empty()) broken = "unknown error";
    }
    task.work->finish(err);
  }

  // Note [Waiting runs the collective]: a thread that waits for a collective the worker has not
  // started yet, and that is next in line, runs it itself. Order is kept (only the queue's head,
  // only while nothing else runs) and the call stayed asynchronous until the wait; it saves the
  // two thread hand-offs that dominate small collectives.
  void run_if_next(const Work* w) {
    Task task;
    {
      std::lock_guard<std::mutex> g(mu);
      if (busy || queue.empty() || queue.front().work.get() != w) return;
      task = std::move(queue.front());
      queue.pop_front();
      busy = true;
    }
    run_task(task);
    {
      std::lock_guard<std::mutex> g(mu);
      busy = false;
    }
    cv.notify_all();
  }

  std::shared_ptr<Work> enqueue(const CollectiveInfo& info, std::function<void()> run);

  void shutdown() {
    {
      std::lock_guard<std::mutex> g(mu);
      stop = true;
    }
    abort.store(true);
    cv.notify_all();
    if (worker.joinable()) worker.join();
  }

  // ---- the progress loop shared by every schedule

  // Note [Shm stream alignment]
  // Over shared memory, reduce segments are reduced straight out of the ring buffer (no staging
  // copy). For that their bytes must sit at addresses aligned to the wire element: every
  // collective starts its stream at a multiple of 64 bytes (both sides skip the same padding: the
  // writer's count of bytes sent equals the reader's count of bytes received between collectives),
  // segments are whole elements, the ring's size is a multiple of 64, and a piece read in place is
  // cut to whole elements.
  //
  // on_data(seg, bytes, byte_offset, nbytes) is called for reduce segments only: per piece read in
  // place (shm), or once per segment from the staging buffer it was received into (tcp).
  template <typename OnData>
  void pump(const CollectiveInfo& info, const std::vector<SendSeg>& sends, const std::vector<RecvSeg>& recvs,
            size_t elem_bytes, OnData&& on_data) {
    const auto timeout = cur_timeout;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    const bool in_place = link->zero_copy();
    size_t send_pad = in_place ? link->send_pad(64) : 0, recv_pad = in_place ? link->recv_pad(64) : 0;
    char pad[64] = {};
    size_t si = 0, so = 0, ri = 0, ro = 0;
    try {
      while (si < sends.size() || ri < recvs.size() || send_pad > 0 || recv_pad > 0) {
        bool moved = false;
        while (send_pad > 0) {
          const size_t k = link->try_send(pad, send_pad);
          if (k == 0) break;
          send_pad -= k;
          moved = true;
        }
        while (send_pad == 0 && si < sends.size() && sends[si].need <= ri) {
          const size_t k = link->try_send(sends[si].p + so, sends[si].n - so);
          if (k == 0) break;
          moved = true;
          so += k;
          if (so == sends[si].n) {
            ++si;
            so = 0;
          }
        }
        while (recv_pad > 0) {
          const size_t k = link->try_recv(pad, recv_pad);
          if (k == 0) break;
          recv_pad -= k;
          moved = true;
        }
        while (recv_pad == 0 && ri < recvs.size()) {
          const RecvSeg& r = recvs[ri];
          size_t k = 0;
          if (in_place && r.kind != RecvKind::Place) {
            size_t avail = 0;
            const char* p = link->peek(&avail);
            k = std::min(avail, r.n - ro) / elem_bytes * elem_bytes;
            if (k == 0) break;
            on_data(r, p, ro, k);
            link->release(k);
          } else {
            k = link->try_recv(r.p + ro, r.n - ro);
            if (k == 0) break;
            if (ro + k == r.n && r.kind != RecvKind::Place) on_data(r, r.p, size_t{0}, r.n);
          }
          moved = true;
          ro += k;
          if (ro == r.n) {
            ++ri;
            ro = 0;
            break;  // a send may be waiting for this segment
          }
        }
        if (moved) {
          pg->note_progress();  // Note [Hang watchdog]: a slow collective that moves data is not stalled
          deadline = std::chrono::steady_clock::now() + timeout;
          continue;
        }
        const bool want_send = send_pad > 0 || (si < sends.size() && sends[si].need <= ri);
        const bool want_recv = recv_pad > 0 || ri < recvs.size();
        if (!link->wait(want_send, want_recv, deadline, abort)) {
          if (abort.load()) {
            RG_THROW("rank ", rank, ": ", info.describe(), " aborted: the process group was destroyed while it ran");
          }
          const int peer = want_recv ? mod(rank - 1, size) : mod(rank + 1, size);
          pg->raise_timeout(info, std::string(want_recv ? "no data from rank " : "rank ") + std::to_string(peer) +
                                      (want_recv ? "" : " takes no data") + " for that long, over " + transport);
        }
      }
    } catch (const LinkError& e) {
      RG_THROW("rank ", rank, ": ", info.describe(), " failed: ", e.what());
    }
  }

  // ---- schedules

  // In-place allreduce of x[0, n): reduce-scatter then allgather (Note [CPU ring]).
  template <typename T>
  void allreduce(T* x, int64_t n, ReduceOp op, const CollectiveInfo& info) {
    using W = wire_t<T>;
    if (size == 1 || n == 0) return;
    const Chunks ch{n, size};
    const int64_t E = std::max<int64_t>(1, static_cast<int64_t>(sub_bytes / sizeof(W)));
    W* acc;
    if constexpr (std::is_same_v<W, T>) {
      acc = x;  // partial sums live in the tensor itself
    } else {
      acc = scratch<W>(n);
      const int c0 = mod(rank - 1, size);
      for (int64_t i = ch.off(c0), e = i + ch.len(c0); i < e; ++i) acc[i] = static_cast<W>(x[i]);
    }
    W* stage = staging<W>(E);
    std::vector<SendSeg> sends;
    std::vector<RecvSeg> recvs;
    size_t last_base = 0;
    for (int s = 0; s < size - 1; ++s) {  // reduce-scatter: chunk c ends on rank c
      const int cs = mod(rank - s - 1, size), cr = mod(rank - s - 2, size);
      const size_t base = recvs.size();
      int64_t j = 0;
      for (int64_t e0 = 0; e0 < ch.len(cs); e0 += E, ++j) {
        const int64_t len = std::min(E, ch.len(cs) - e0);
        sends.push_back({reinterpret_cast<const char*>(acc + ch.off(cs) + e0), static_cast<size_t>(len) * sizeof(W),
                         s == 0 ? 0 : last_base + static_cast<size_t>(j) + 1});
      }
      for (int64_t e0 = 0; e0 < ch.len(cr); e0 += E) {
        const int64_t len = std::min(E, ch.len(cr) - e0);
        recvs.push_back({reinterpret_cast<char*>(stage), static_cast<size_t>(len) * sizeof(W),
                         s == size - 2 ? RecvKind::ReduceFinal : RecvKind::Reduce, ch.off(cr) + e0});
      }
      last_base = base;
    }
    for (int s = 0; s < size - 1; ++s) {  // allgather: forward each finished chunk around
      const int cs = mod(rank - s, size), cr = mod(rank - s - 1, size);
      const size_t base = recvs.size();
      int64_t j = 0;
      for (int64_t e0 = 0; e0 < ch.len(cs); e0 += E, ++j) {
        const int64_t len = std::min(E, ch.len(cs) - e0);
        sends.push_back({reinterpret_cast<const char*>(x + ch.off(cs) + e0), static_cast<size_t>(len) * sizeof(T),
                         last_base + static_cast<size_t>(j) + 1});
      }
      for (int64_t e0 = 0; e0 < ch.len(cr); e0 += E) {
        const int64_t len = std::min(E, ch.len(cr) - e0);
        recvs.push_back({reinterpret_cast<char*>(x + ch.off(cr) + e0), static_cast<size_t>(len) * sizeof(T),
                         RecvKind::Place, 0});
      }
      last_base = base;
    }
    const bool is_max = op == ReduceOp::Max;
    pump(info, sends, recvs, sizeof(W), [&](const RecvSeg& r, const char* data, size_t off, size_t nb) {
      const W* src = reinterpret_cast<const W*>(data);
      const int64_t at = r.at + static_cast<int64_t>(off / sizeof(W)), len = static_cast<int64_t>(nb / sizeof(W));
      if (r.kind == RecvKind::Reduce) {
        combine<T, W>(src, x + at, acc + at, len, is_max);
      } else {
        combine_final<T, W>(src, x + at, x + at, len, op, size);
      }
    });
  }

  // out[0, m) = reduction of everyone's in[rank*m, (rank+1)*m); `in` is not modified.
  template <typename T>
  void reduce_scatter(T* out, const T* in, int64_t m, ReduceOp op, const CollectiveInfo& info) {
    using W = wire_t<T>;
    if (size == 1) {
      std::memcpy(out, in, static_cast<size_t>(m) * sizeof(T));
      return;
    }
    if (m == 0) return;
    const int64_t n = m * size;
    const Chunks ch{n, size};
    const int64_t E = std::max<int64_t>(1, static_cast<int64_t>(sub_bytes / sizeof(W)));
    W* acc = scratch<W>(n);
    const int c0 = mod(rank - 1, size);
    const char* first_src;
    if constexpr (std::is_same_v<W, T>) {
      first_src = reinterpret_cast<const char*>(in);
    } else {
      for (int64_t i = ch.off(c0), e = i + ch.len(c0); i < e; ++i) acc[i] = static_cast<W>(in[i]);
      first_src = reinterpret_cast<const char*>(acc);
    }
    W* stage = staging<W>(E);
    std::vector<SendSeg> sends;
    std::vector<RecvSeg> recvs;
    size_t last_base = 0;
    for (int s = 0; s < size - 1; ++s) {
      const int cs = mod(rank - s - 1, size), cr = mod(rank - s - 2, size);
      const size_t base = recvs.size();
      const char* src = s == 0 ? first_src : reinterpret_cast<const char*>(acc);
      int64_t j = 0;
      for (int64_t e0 = 0; e0 < ch.len(cs); e0 += E, ++j) {
        const int64_t len = std::min(E, ch.len(cs) - e0);
        sends.push_back({src + static_cast<size_t>(ch.off(cs) + e0) * sizeof(W), static_cast<size_t>(len) * sizeof(W),
                         s == 0 ? 0 : last_base + static_cast<size_t>(j) + 1});
      }
      for (int64_t e0 = 0; e0 < ch.len(cr); e0 += E) {
        const int64_t len = std::min(E, ch.len(cr) - e0);
        recvs.push_back({reinterpret_cast<char*>(stage), static_cast<size_t>(len) * sizeof(W),
                         s == size - 2 ? RecvKind::ReduceFinal : RecvKind::Reduce, ch.off(cr) + e0});
      }
      last_base = base;
    }
    const bool is_max = op == ReduceOp::Max;
    const int64_t mine = ch.off(rank);
    pump(info, sends, recvs, sizeof(W), [&](const RecvSeg& r, const char* data, size_t off, size_t nb) {
      const W* src = reinterpret_cast<const W*>(data);
      const int64_t at = r.at + static_cast<int64_t>(off / sizeof(W)), len = static_cast<int64_t>(nb / sizeof(W));
      if (r.kind == RecvKind::Reduce) {
        combine<T, W>(src, in + at, acc + at, len, is_max);
      } else {
        combine_final<T, W>(src, in + at, out + (at - mine), len, op, size);
      }
    });
  }

  // out = [everyone's in], each `bytes` long, rank order.
  void allgather(char* out, const char* in, size_t bytes, const CollectiveInfo& info) {
    std::memmove(out + static_cast<size_t>(rank) * bytes, in, bytes);  // `in` may be a view of out
    if (size == 1 || bytes == 0) return;
    std::vector<SendSeg> sends;
    std::vector<RecvSeg> recvs;
    size_t last_base = 0;
    for (int s = 0; s < size - 1; ++s) {
      const int cs = mod(rank - s, size), cr = mod(rank - s - 1, size);
      const size_t base = recvs.size();
      size_t j = 0;
      for (size_t b0 = 0; b0 < bytes; b0 += sub_bytes, ++j) {
        const size_t len = std::min(sub_bytes, bytes - b0);
        sends.push_back({out + static_cast<size_t>(cs) * bytes + b0, len, s == 0 ? 0 : last_base + j + 1});
        recvs.push_back({out + static_cast<size_t>(cr) * bytes + b0, len, RecvKind::Place, 0});
      }
      last_base = base;
    }
    pump(info, sends, recvs, 1, [](const RecvSeg&, const char*, size_t, size_t) {});
  }

  // A chain from root around the ring; each rank forwards a sub-chunk as soon as it has it.
  void broadcast(char* x, size_t bytes, int root, const CollectiveInfo& info) {
    if (size == 1 || bytes == 0) return;
    const int pos = mod(rank - root, size);
    std::vector<SendSeg> sends;
    std::vector<RecvSeg> recvs;
    size_t j = 0;
    for (size_t b0 = 0; b0 < bytes; b0 += sub_bytes, ++j) {
      const size_t len = std::min(sub_bytes, bytes - b0);
      if (pos > 0) recvs.push_back({x + b0, len, RecvKind::Place, 0});
      if (pos < size - 1) sends.push_back({x + b0, len, pos > 0 ? j + 1 : 0});
    }
    pump(info, sends, recvs, 1, [](const RecvSeg&, const char*, size_t, size_t) {});
  }
};

namespace {
// A ring collective's Work: waiting first offers to run it here (Note [Waiting runs the collective]).
class RingWork final : public CompletionWork {
 public:
  explicit RingWork(std::weak_ptr<RingCpuProcessGroup::Impl> im) : impl_(std::move(im)) {}
  void wait() override;

 private:
  std::weak_ptr<RingCpuProcessGroup::Impl> impl_;
};
}  // namespace

void RingWork::wait() {
  if (!is_completed()) {
    if (auto im = impl_.lock()) im->run_if_next(this);
  }
  CompletionWork::wait();
}

std::shared_ptr<Work> RingCpuProcessGroup::Impl::enqueue(const CollectiveInfo& info, std::function<void()> run) {
  auto work = std::make_shared<RingWork>(weak_from_this());
  {
    std::lock_guard<std::mutex> g(mu);
    queue.push_back({info, std::move(run), work, pg->timeout()});
  }
  cv.notify_one();
  return work;
}

RingCpuProcessGroup::RingCpuProcessGroup(std::shared_ptr<Store> store, int rank, int size)
    : ProcessGroup(std::move(store), rank, size), impl_(std::make_shared<Impl>(this, rank, size)) {

  impl_->connect(*store_);
  impl_->start();
}

RingCpuProcessGroup::~RingCpuProcessGroup() { impl_->shutdown(); }

std::string RingCpuProcessGroup::transport() const { return impl_->transport; }

std::shared_ptr<Work> RingCpuProcessGroup::do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) {
  Impl* im = impl_.get();
  return im->enqueue(info, [im, t, op, info] {
    dispatch(t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      im->allreduce<T>(static_cast<T*>(t.data_ptr()), t.numel(), op, info);
    });
    t.bump_version();
  });
}

std::shared_ptr<Work> RingCpuProcessGroup::do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) {
  Impl* im = impl_.get();
  return im->enqueue(info, [im, t, root, info] {
    im->broadcast(static_cast<char*>(t.data_ptr()), t.nbytes(), root, info);
    if (im->rank != root) t.bump_version();
  });
}

std::shared_ptr<Work> RingCpuProcessGroup::do_allgather(const Tensor& out, const Tensor& in,
                                                        const CollectiveInfo& info) {
  Impl* im = impl_.get();
  return im->enqueue(info, [im, out, in, info] {
    im->allgather(static_cast<char*>(out.data_ptr()), static_cast<const char*>(in.data_ptr()), in.nbytes(), info);
    out.bump_version();
  });
}

std::shared_ptr<Work> RingCpuProcessGroup::do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                                             const CollectiveInfo& info) {
  Impl* im = impl_.get();
  return im->enqueue(info, [im, out, in, op, info] {
    dispatch(in.dtype(), [&](auto tag) {
      using T = decltype(tag);
      im->reduce_scatter<T>(static_cast<T*>(out.data_ptr()), static_cast<const T*>(in.data_ptr()), out.numel(), op,
                            info);
    });
    out.bump_version();
  });
}

std::shared_ptr<Work> RingCpuProcessGroup::do_barrier(const CollectiveInfo& info) {
  Impl* im = impl_.get();
  return im->enqueue(info, [im, info] {
    int32_t token = 1;
    im->allreduce<int32_t>(&token, 1, ReduceOp::Sum, info);
  });
}

}  // namespace rg::dist
