// The CUDA ring's schedules (distributed/cuda_ring_schedule.h) run on the host: ranks are threads,
// each link has the same slots and posted/consumed flow control as Note [CUDA ring protocol], and
// the kernels are replaced by host arithmetic. Checks block/chunk indexing, message balance,
// deadlock freedom with few slots, slot bounds, and the documented reduction order, bit for bit.
// (CPU only: the CUDA side of the same schedules is tested in tests/distributed_gpu/.)
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "distributed/cuda_ring_schedule.h"
#include "distributed_gpu/gpu_checks.h"

namespace rg::test::ring_sim {
namespace {

using dist::CudaRingConfig;
using dist::ReduceOp;
using gpu::host_step;

// The links of N simulated ranks: rank r's receive buffer (S slots) and its two counters.
struct Links {
  int N, S;
  int64_t slot_bytes;
  std::vector<std::vector<char>> bufs;
  std::unique_ptr<std::atomic<uint64_t>[]> posted, consumed;
  std::atomic<bool> failed{false};
  Links(int n, const CudaRingConfig& c)
      : N(n), S(c.slots), slot_bytes(c.slot_bytes),
        bufs(static_cast<size_t>(n), std::vector<char>(static_cast<size_t>(c.slots * c.slot_bytes))),
        posted(new std::atomic<uint64_t>[static_cast<size_t>(n)]),
        consumed(new std::atomic<uint64_t>[static_cast<size_t>(n)]) {
    for (int r = 0; r < n; ++r) posted[r] = consumed[r] = 0;
  }
};

struct SimOps {
  Links* L;
  int r;
  uint64_t sent = 0, received = 0;

  int left() const { return (r + L->N - 1) % L->N; }
  int right() const { return (r + 1) % L->N; }
  void wait(const std::atomic<uint64_t>& c, uint64_t target, const char* what) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int i = 0; c.load() < target; ++i) {
      if (L->failed.load()) RG_THROW("rank ", r, ": another rank failed");
      if (std::chrono::steady_clock::now() > until) {
        L->failed = true;
        RG_THROW("rank ", r, ": deadlock? waited 20 s for ", what, " >= ", target, " (at ", c.load(), ")");
      }
      std::this_thread::yield();
    }
  }
  char* recv_begin() {
    wait(L->posted[left()], received + 1, "left's posted");
    return L->bufs[static_cast<size_t>(r)].data() + static_cast<int64_t>(received % L->S) * L->slot_bytes;
  }
  void recv_end() { L->consumed[r] = ++received; }
  char* send_begin() {
    if (sent >= static_cast<uint64_t>(L->S)) wait(L->consumed[right()], sent - L->S + 1, "right's consumed");
    return L->bufs[static_cast<size_t>(right())].data() + static_cast<int64_t>(sent % L->S) * L->slot_bytes;
  }
  void send_end() { L->posted[r] = ++sent; }

  // Any access that touches a receive buffer must stay inside one slot.
  void check_bounds(const void* p, int64_t nbytes) const {
    if (!p || nbytes == 0) return;
    const char* c = static_cast<const char*>(p);
    for (const auto& b : L->bufs) {
      if (c >= b.data() && c < b.data() + b.size()) {
        const int64_t off = c - b.data();
        RG_CHECK(off % L->slot_bytes + nbytes <= L->slot_bytes, "rank ", r, ": access of ", nbytes,
                 " bytes at slot offset ", off % L->slot_bytes, " crosses a slot of ", L->slot_bytes, " bytes");
      }
    }
  }
  template <typename T> void reduce_t(T* y1, T* y2, const T* a, const T* b, int64_t n, ReduceOp op, int divisor) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = host_step<T>(a[i], b[i], op, divisor);
      y1[i] = v;
      if (y2) y2[i] = v;
    }
  }
  void reduce(void* y1, void* y2, const void* a, const void* b, int64_t n, DType t, ReduceOp op, int divisor) {
    const int64_t nb = n * static_cast<int64_t>(dtype_size(t));
    check_bounds(y1, nb);
    check_bounds(y2, nb);
    check_bounds(a, nb);
    check_bounds(b, nb);
    switch (t) {
      case DType::f32: reduce_t(static_cast<float*>(y1), static_cast<float*>(y2), static_cast<const float*>(a), static_cast<const float*>(b), n, op, divisor); break;
      case DType::f16: reduce_t(static_cast<Half*>(y1), static_cast<Half*>(y2), static_cast<const Half*>(a), static_cast<const Half*>(b), n, op, divisor); break;
      case DType::i64: reduce_t(static_cast<int64_t*>(y1), static_cast<int64_t*>(y2), static_cast<const int64_t*>(a), static_cast<const int64_t*>(b), n, op, divisor); break;
      default: RG_THROW("simulation: dtype ", dtype_name(t), " not simulated");
    }
  }
  void copy(void* y1, void* y2, const void* src, int64_t nbytes) {
    check_bounds(y1, nbytes);
    check_bounds(y2, nbytes);
    check_bounds(src, nbytes);
    if (y1 && y1 != src) std::memcpy(y1, src, static_cast<size_t>(nbytes));
    if (y2) std::memcpy(y2, src, static_cast<size_t>(nbytes));
  }
};

template <typename T> std::vector<T> bytes_to(const std::vector<char>& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}
template <typename T> std::vector<char> to_bytes(const std::vector<T>& v) {
  std::vector<char> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// One rank's whole program: a sequence of collectives on the same links; "" or the first mismatch.
template <typename T>
std::string rank_program(SimOps& ops, const CudaRingConfig& cfg, const std::vector<int64_t>& sizes, uint64_t seed) {
  const int N = ops.L->N, r = ops.r;
  const DType t = DTypeOf<T>::value;
  const int64_t es = static_cast<int64_t>(sizeof(T));
  for (int64_t n : sizes) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      const uint64_t sd = seed + static_cast<uint64_t>(n) * 3 + static_cast<uint64_t>(op);
      // allreduce, random data: bitwise equal to the documented fold order
      std::vector<std::vector<T>> xs;
      for (int q = 0; q < N; ++q) xs.push_back(gpu::make_input<T>(sd, q, n, false));
      std::vector<T> mine = xs[static_cast<size_t>(r)];
      dist::ring_schedule::allreduce(ops, r, N, cfg, reinterpret_cast<char*>(mine.data()), n, t, op);
      const auto first = gpu::ring_allreduce_first_ranks(n, N, t, cfg);
      std::string e = gpu::compare(mine, gpu::fold_reference<T>(xs, n, op, first), gpu::Expect::Bitwise,
                                   "rank " + std::to_string(r) + ": allreduce " + dtype_name(t) + "[" +
                                       std::to_string(n) + "] " + dist::reduce_op_name(op));
      if (!e.empty()) return e;

      // reduce_scatter: n elements per rank out, N * n in, input untouched
      std::vector<std::vector<T>> ins;
      for (int q = 0; q < N; ++q) ins.push_back(gpu::make_input<T>(sd + 1, q, n * N, false));
      const std::vector<T> in_copy = ins[static_cast<size_t>(r)];
      std::vector<T> out(static_cast<size_t>(n));
      dist::ring_schedule::reduce_scatter(ops, r, N, cfg, reinterpret_cast<char*>(out.data()),
                                          reinterpret_cast<const char*>(ins[static_cast<size_t>(r)].data()), n, t, op);
      const std::vector<int> from(static_cast<size_t>(n), (r + 1) % N);
      e = gpu::compare(out, gpu::reduce_reference<T>(ins, static_cast<int64_t>(r) * n, n, op, from),
                       gpu::Expect::Bitwise,
                       "rank " + std::to_string(r) + ": reduce_scatter " + dtype_name(t) + "[" + std::to_string(n) + "]");
      if (e.empty()) e = gpu::compare(ins[static_cast<size_t>(r)], in_copy, gpu::Expect::Bitwise, "reduce_scatter input");
      if (!e.empty()) return e;
    }
    // allgather
    std::vector<T> want, got(static_cast<size_t>(n * N));
    for (int q = 0; q < N; ++q) {
      const auto x = gpu::make_input<T>(seed + 7, q, n, false);
      want.insert(want.end(), x.begin(), x.end());
    }
    const auto in = gpu::make_input<T>(seed + 7, r, n, false);
    dist::ring_schedule::allgather(ops, r, N, cfg, reinterpret_cast<char*>(got.data()),
                                   reinterpret_cast<const char*>(in.data()), n, t);
    std::string e = gpu::compare(got, want, gpu::Expect::Bitwise, "rank " + std::to_string(r) + ": allgather [" +
                                                                   std::to_string(n) + "]");
    if (!e.empty()) return e;
    // broadcast from every root
    for (int root = 0; root < N; ++root) {
      std::vector<T> x = gpu::make_input<T>(seed + 11, r, n, false);
      dist::ring_schedule::broadcast(ops, r, N, cfg, reinterpret_cast<char*>(x.data()), n, t, root);
      e = gpu::compare(x, gpu::make_input<T>(seed + 11, root, n, false), gpu::Expect::Bitwise,
                       "rank " + std::to_string(r) + ": broadcast root " + std::to_string(root) + " [" +
                           std::to_string(n) + "]");
      if (!e.empty()) return e;
    }
    (void)es;
  }
  return "";
}

template <typename T>
void simulate(int N, const CudaRingConfig& cfg, const std::vector<int64_t>& sizes, uint64_t seed) {
  Links L(N, cfg);
  std::vector<std::string> errors(static_cast<size_t>(N));
  std::vector<SimOps> ops;
  for (int r = 0; r < N; ++r) ops.push_back(SimOps{&L, r});
  std::vector<std::thread> threads;
  for (int r = 0; r < N; ++r) {
    threads.emplace_back([&, r] {
      try {
        errors[static_cast<size_t>(r)] = rank_program<T>(ops[static_cast<size_t>(r)], cfg, sizes, seed);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
      if (!errors[static_cast<size_t>(r)].empty()) L.failed = true;
    });
  }
  for (auto& th : threads) th.join();
  const std::string where = std::string(dtype_name(DTypeOf<T>::value)) + ", " + std::to_string(N) + " ranks, " +
                            std::to_string(cfg.slots) + " slots of " + std::to_string(cfg.slot_bytes) + " bytes";
  for (int r = 0; r < N; ++r) CHECK_MESSAGE(errors[static_cast<size_t>(r)].empty(), where, ": ", errors[static_cast<size_t>(r)]);
  // Every link carried as many messages as its reader took.
  for (int r = 0; r < N; ++r) {
    CHECK_MESSAGE(ops[static_cast<size_t>(r)].sent == ops[static_cast<size_t>((r + 1) % N)].received, where,
                  ": rank ", r, " sent ", ops[static_cast<size_t>(r)].sent, " messages, rank ", (r + 1) % N,
                  " received ", ops[static_cast<size_t>((r + 1) % N)].received);
  }
}

CudaRingConfig config(int64_t slot_bytes, int slots, int64_t min_chunk_bytes) {
  CudaRingConfig c;
  c.slot_bytes = slot_bytes;
  c.slots = slots;
  c.min_chunk_bytes = min_chunk_bytes;
  return c;
}

}  // namespace

TEST_CASE("cuda ring schedules on the host: every collective, 2-5 ranks, few and many slots") {
  const std::vector<int64_t> sizes = {0, 1, 2, 7, 16, 17, 100, 1001};
  for (int N : {2, 3, 4, 5}) {
    simulate<float>(N, config(16, 2, 16), sizes, 1);    // 4 floats per slot, 1 chunk per block and round
    simulate<float>(N, config(64, 3, 16), sizes, 2);    // 2 chunks per block and round
    simulate<Half>(N, config(48, 4, 16), sizes, 3);     // 24 halves per slot, 3 chunks
    simulate<int64_t>(N, config(32, 5, 16), sizes, 4);  // 4 int64s per slot
    simulate<float>(N, config(1024, 4, 64), sizes, 5);  // min chunk above the even split
  }
}

TEST_CASE("cuda ring schedules on the host: the default config, sizes spanning several rounds") {
  CudaRingConfig c = config(4096, 4, 1024);  // the default's shape at 1/2048 of its size
  simulate<float>(3, c, {3 * 3 * 1024 * 2 + 5, 50000}, 9);  // 2+ rounds of 3 ranks * 3 chunks * 1024 floats
  simulate<Half>(2, c, {2 * 3 * 2048 + 1}, 10);
}

TEST_CASE("cuda ring rounds: blocks cover the round, chunks fit the slots, at most slots - 1 chunks") {
  for (int N : {1, 2, 3, 7}) {
    for (int64_t es : {2, 4, 8}) {
      for (const CudaRingConfig& c : {config(16, 2, 16), config(4096, 4, 1024), CudaRingConfig()}) {
        for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{4097}, int64_t{1000003}}) {
          int64_t covered = 0;
          for (const dist::RingRound& rd : dist::cuda_ring_allreduce_rounds(n, N, es, c)) {
            CHECK(rd.base == covered);
            CHECK(rd.len > 0);
            CHECK(rd.block * N >= rd.len);          // the blocks cover the round
            CHECK((rd.block * es) % 16 == 0);       // and start 16-byte aligned
            CHECK(rd.chunk * es <= c.slot_bytes);   // a chunk fits a slot
            CHECK(rd.nchunks <= c.slots - 1);       // the deadlock-freedom bound
            CHECK(rd.nchunks * rd.chunk >= rd.block);
            covered += rd.len;
          }
          CHECK(covered == n);
        }
      }
    }
  }
}

}  // namespace rg::test::ring_sim
