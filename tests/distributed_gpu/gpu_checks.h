// Checks of every collective of a CUDA process group against references computed on the host,
// shared by the GPU worker scenarios (tests/distributed/worker/gpu_scenarios.cpp) and the
// in-process tests of tests/distributed_gpu/. Each returns "" on success, else what went wrong.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda_api.h"
#include "core/native.h"
#include "distributed/cuda_ring_schedule.h"
#include "distributed/process_group.h"

namespace rg::test::gpu {

using dist::ReduceOp;

// ---- host arithmetic: Note [Ring reduction arithmetic] (cuda_kernels/comm.h), written again here
template <typename T> struct HostArith {  // float, double, int32_t, int64_t
  using acc = T;
  static acc load(T v) { return v; }
  static T store(acc v) { return v; }
};
template <> struct HostArith<Half> {
  using acc = float;
  static float load(Half v) { return static_cast<float>(v); }
  static Half store(float v) { return Half(v); }
};
template <> struct HostArith<BFloat16> {
  using acc = float;
  static float load(BFloat16 v) { return static_cast<float>(v); }
  static BFloat16 store(float v) { return BFloat16(v); }
};

template <typename A> A host_add(A x, A y) {
  if constexpr (std::is_integral_v<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(x) + static_cast<U>(y));
  } else {
    return x + y;
  }
}
template <typename A> A host_max(A x, A y) {
  if constexpr (std::is_floating_point_v<A>) {
    if (x != x) return x;
    if (y != y) return y;
    if (x == y) return std::signbit(x) ? y : x;
  }
  return x > y ? x : y;
}
// One reduction step y = op(a, b) [/ divisor], rounded once to T.
template <typename T> T host_step(T a, T b, ReduceOp op, int divisor) {
  using Ar = HostArith<T>;
  using A = typename Ar::acc;
  A r = op == ReduceOp::Max ? host_max<A>(Ar::load(a), Ar::load(b)) : host_add<A>(Ar::load(a), Ar::load(b));
  if (divisor > 1) r = r / static_cast<A>(divisor);
  return Ar::store(r);
}

// ---- inputs: a deterministic function of (seed, rank, index)
inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// exact: integers in [-8, 8], so any sum over <= 8 ranks is exact in every dtype (order-free);
// otherwise uniform in [-1, 1) with full mantissas (ints: [-1000, 1000]).
inline double input_value(uint64_t seed, int rank, int64_t i, bool exact, DType t) {
  const uint64_t h = mix(seed * 0x100000001b3ull ^ mix(static_cast<uint64_t>(rank) * 7919u + 17u) ^
                         mix(static_cast<uint64_t>(i)));
  if (exact) return static_cast<double>(static_cast<int64_t>(h % 17) - 8);
  if (t == DType::i32 || t == DType::i64) return static_cast<double>(static_cast<int64_t>(h % 2001) - 1000);
  return static_cast<double>(h >> 11) * 0x1.0p-52 - 1.0;
}

template <typename T> std::vector<T> make_input(uint64_t seed, int rank, int64_t n, bool exact) {
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double x = input_value(seed, rank, i, exact, DTypeOf<T>::value);
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
      v[static_cast<size_t>(i)] = T(static_cast<float>(x));
    } else {
      v[static_cast<size_t>(i)] = static_cast<T>(x);
    }
  }
  return v;
}

template <typename T> double as_double(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return static_cast<double>(static_cast<float>(v));
  } else {
    return static_cast<double>(v);
  }
}

// ---- references
// The fold that the CUDA ring promises (Note [CUDA ring reduction order]): element i of block b is
// folded over ranks b+1, b+2, ..., b+N. first_of(i) gives b+1 for each element.
template <typename T>
std::vector<T> fold_reference(const std::vector<std::vector<T>>& x, int64_t n, ReduceOp op,
                              const std::vector<int>& first_rank) {
  const int N = static_cast<int>(x.size());
  const int divisor = op == ReduceOp::Avg ? N : 1;
  std::vector<T> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    int q = first_rank[k] % N;
    T acc = x[static_cast<size_t>(q)][k];
    if (N == 1) {
      out[k] = acc;
      continue;
    }
    for (int step = 2; step <= N; ++step) {
      q = (q + 1) % N;
      acc = host_step<T>(acc, x[static_cast<size_t>(q)][k], op, step == N ? divisor : 1);
    }
    out[k] = acc;
  }
  return out;
}

// For a CUDA ring allreduce of n elements: the rank each element's fold starts at.
inline std::vector<int> ring_allreduce_first_ranks(int64_t n, int N, DType t, const dist::CudaRingConfig& cfg) {
  std::vector<int> first(static_cast<size_t>(n), 0);
  for (const dist::RingRound& rd : dist::cuda_ring_allreduce_rounds(n, N, static_cast<int64_t>(dtype_size(t)), cfg)) {
    for (int64_t i = rd.base; i < rd.base + rd.len; ++i) {
      const int64_t b = (i - rd.base) / rd.block;
      first[static_cast<size_t>(i)] = static_cast<int>((b + 1) % N);
    }
  }
  return first;
}

// ---- the device side
inline Tensor device_tensor(int64_t n, DType t, int dev, bool offset_view) {
  const TensorOptions o = TensorOptions(t).device(Device::cuda(dev));
  if (!offset_view) return rg::empty(Shape{n}, o);
  // One element in: the data pointer is no longer 16-byte aligned, so the kernels' scalar paths run.
  Tensor base = rg::empty(Shape{n + 1}, o);
  return native::narrow(base, 0, 1, n);
}

template <typename T> void to_device(const Tensor& t, const std::vector<T>& v) {
  cuda::DeviceGuard g(t.device().index);
  cuda::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(T), cuda::CopyKind::HostToDevice);
}
template <typename T> std::vector<T> to_host(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  cuda::DeviceGuard g(t.device().index);
  cuda::memcpy(v.data(), t.data_ptr(), v.size() * sizeof(T), cuda::CopyKind::DeviceToHost);
  return v;
}

enum class Expect { Bitwise, Close };

// Absolute tolerance for a reduction whose order (and avg method) is unknown (NCCL): at most
// 2N + 1 roundings, each at most one unit in the last place at the largest possible partial
// result (N * the largest input: 8 for exact data, 1 for random floats). Integers: avg may round
// the quotient either way (1); anything else is exact.
inline double close_atol(DType t, int N, bool exact) {
  const double eps = t == DType::f64 ? 0x1.0p-52 : t == DType::f32 ? 0x1.0p-23 : t == DType::f16 ? 0x1.0p-10
                   : t == DType::bf16 ? 0x1.0p-7 : 0.0;
  if (eps == 0.0) return 1.0;
  return (2.0 * N + 1.0) * eps * N * (exact ? 8.0 : 1.0);
}

template <typename T>
std::string compare(const std::vector<T>& got, const std::vector<T>& want, Expect how, const std::string& what,
                    double atol = 0.0) {
  if (got.size() != want.size()) return what + ": size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    bool ok;
    if (how == Expect::Bitwise) {
      ok = std::memcmp(&got[i], &want[i], sizeof(T)) == 0;
    } else {
      const double g = as_double(got[i]), w = as_double(want[i]);
      ok = std::fabs(g - w) <= atol;
    }
    if (!ok) {
      std::ostringstream os;
      os.precision(17);
      os << what << ": element " << i << " of " << got.size() << " is " << as_double(got[i]) << ", expected "
         << as_double(want[i]) << (how == Expect::Bitwise ? " (bitwise)" : " (within tolerance)");
      return os.str();
    }
  }
  return "";
}

// How the reference for reductions of random data is built.
enum class RefKind {
  RingOrder,  // the CUDA ring's documented fold order: bitwise
  AnyOrder,   // unknown order (NCCL): exact data bitwise, random data within tolerance
};

struct CaseOptions {
  uint64_t seed = 1;
  bool exact = true;        // integer-valued inputs (order-free sums)
  bool offset_view = false;  // tensors start one element into their storage (misaligned)
  bool synchronize = false;  // Work::synchronize() instead of wait()
  RefKind ref = RefKind::RingOrder;
  dist::CudaRingConfig ring_cfg;  // the config the ring group was made with (RingOrder)
};

inline std::string case_name(const char* coll, DType t, int64_t n, const char* extra, const CaseOptions& o) {
  std::ostringstream os;
  os << coll << "(" << extra << ") " << dtype_name(t) << "[" << n << "]" << (o.exact ? " exact" : " random")
     << (o.offset_view ? " offset-view" : "") << (o.synchronize ? " synchronize" : " wait") << " seed " << o.seed;
  return os.str();
}

inline void finish(const std::shared_ptr<dist::Work>& w, const CaseOptions& o) {
  if (o.synchronize) {
    w->synchronize();
  } else {
    w->wait();
  }
}

// Reference of a reduction over all ranks' inputs, for the slice [lo, lo + n) of every rank.
template <typename T>
std::vector<T> reduce_reference(const std::vector<std::vector<T>>& xs, int64_t lo, int64_t n, ReduceOp op,
                                const std::vector<int>& first_rank) {
  std::vector<std::vector<T>> part;
  for (const auto& x : xs) part.emplace_back(x.begin() + lo, x.begin() + lo + n);
  return fold_reference<T>(part, n, op, first_rank);
}

template <typename T>
std::string check_allreduce_t(dist::ProcessGroup& pg, int dev, int64_t n, ReduceOp op, const CaseOptions& o) {
  const int N = pg.size(), r = pg.rank();
  const DType t = DTypeOf<T>::value;
  const std::string what = case_name("allreduce", t, n, dist::reduce_op_name(op), o);
  std::vector<std::vector<T>> xs;
  for (int q = 0; q < N; ++q) xs.push_back(make_input<T>(o.seed, q, n, o.exact));
  Tensor x = device_tensor(n, t, dev, o.offset_view);
  to_device(x, xs[static_cast<size_t>(r)]);
  finish(pg.allreduce(x, op), o);
  const std::vector<T> got = to_host<T>(x);
  const bool order_free = o.exact || op == ReduceOp::Max || t == DType::i32 || t == DType::i64;
  std::vector<int> first(static_cast<size_t>(n), 0);
  if (o.ref == RefKind::RingOrder) first = ring_allreduce_first_ranks(n, N, t, o.ring_cfg);
  const std::vector<T> want = fold_reference<T>(xs, n, op, first);
  Expect how = Expect::Bitwise;
  if (o.ref == RefKind::AnyOrder && !order_free) how = Expect::Close;
  // NCCL's avg pre-multiplies floats by 1/N (not bitwise even on exact data); integers: see close_atol.
  if (o.ref == RefKind::AnyOrder && op == ReduceOp::Avg) how = Expect::Close;
  return compare(got, want, how, "rank " + std::to_string(r) + ": " + what, close_atol(t, N, o.exact));
}

template <typename T>
std::string check_reduce_scatter_t(dist::ProcessGroup& pg, int dev, int64_t m, ReduceOp op, const CaseOptions& o) {
  const int N = pg.size(), r = pg.rank();
  const DType t = DTypeOf<T>::value;
  const std::string what = case_name("reduce_scatter", t, m, dist::reduce_op_name(op), o);
  std::vector<std::vector<T>> xs;
  for (int q = 0; q < N; ++q) xs.push_back(make_input<T>(o.seed, q, m * N, o.exact));
  Tensor in = device_tensor(m * N, t, dev, o.offset_view);
  Tensor out = device_tensor(m, t, dev, o.offset_view);
  to_device(in, xs[static_cast<size_t>(r)]);
  finish(pg.reduce_scatter(out, in, op), o);
  const std::vector<T> got = to_host<T>(out);
  // Block r (this rank's slice) is folded from rank r+1 (Note [CUDA ring reduction order]).
  const std::vector<int> first(static_cast<size_t>(m), (r + 1) % N);
  const std::vector<T> want = reduce_reference<T>(xs, static_cast<int64_t>(r) * m, m, op, first);
  const bool order_free = o.exact || op == ReduceOp::Max || t == DType::i32 || t == DType::i64;
  Expect how = Expect::Bitwise;
  if (o.ref == RefKind::AnyOrder && (!order_free || op == ReduceOp::Avg)) how = Expect::Close;
  std::string err = compare(got, want, how, "rank " + std::to_string(r) + ": " + what, close_atol(t, N, o.exact));
  if (err.empty()) {  // the input must be left alone
    const std::vector<T> in_after = to_host<T>(in);
    err = compare(in_after, xs[static_cast<size_t>(r)], Expect::Bitwise,
                  "rank " + std::to_string(r) + ": " + what + " modified its input");
  }
  return err;
}

template <typename T> std::string check_allgather_t(dist::ProcessGroup& pg, int dev, int64_t m, const CaseOptions& o) {
  const int N = pg.size(), r = pg.rank();
  const DType t = DTypeOf<T>::value;
  const std::string what = case_name("allgather", t, m, "", o);
  std::vector<T> want;
  for (int q = 0; q < N; ++q) {
    const std::vector<T> x = make_input<T>(o.seed, q, m, o.exact);
    want.insert(want.end(), x.begin(), x.end());
  }
  Tensor in = device_tensor(m, t, dev, o.offset_view);
  Tensor out = device_tensor(m * N, t, dev, o.offset_view);
  to_device(in, make_input<T>(o.seed, r, m, o.exact));
  finish(pg.allgather(out, in), o);
  return compare(to_host<T>(out), want, Expect::Bitwise, "rank " + std::to_string(r) + ": " + what);
}

template <typename T>
std::string check_broadcast_t(dist::ProcessGroup& pg, int dev, int64_t n, int root, const CaseOptions& o) {
  const int r = pg.rank();
  const DType t = DTypeOf<T>::value;
  const std::string what = case_name("broadcast", t, n, ("root " + std::to_string(root)).c_str(), o);
  Tensor x = device_tensor(n, t, dev, o.offset_view);
  to_device(x, make_input<T>(o.seed, r, n, o.exact));  // every rank starts with different values
  finish(pg.broadcast(x, root), o);
  return compare(to_host<T>(x), make_input<T>(o.seed, root, n, o.exact), Expect::Bitwise,
                 "rank " + std::to_string(r) + ": " + what);
}

#define RG_GPU_CHECK_DISPATCH(DT, CALL)                    \
  switch (DT) {                                           \
    case DType::f32: { using T = float; return CALL; }    \
    case DType::f64: { using T = double; return CALL; }   \
    case DType::f16: { using T = Half; return CALL; }     \
    case DType::bf16: { using T = BFloat16; return CALL; } \
    case DType::i32: { using T = int32_t; return CALL; }  \
    case DType::i64: { using T = int64_t; return CALL; }  \
    default: return std::string("unsupported dtype in the test");  \
  }

inline std::string check_allreduce(dist::ProcessGroup& pg, int dev, DType t, int64_t n, ReduceOp op, const CaseOptions& o) {
  RG_GPU_CHECK_DISPATCH(t, check_allreduce_t<T>(pg, dev, n, op, o))
}
inline std::string check_reduce_scatter(dist::ProcessGroup& pg, int dev, DType t, int64_t m, ReduceOp op,
                                        const CaseOptions& o) {
  RG_GPU_CHECK_DISPATCH(t, check_reduce_scatter_t<T>(pg, dev, m, op, o))
}
inline std::string check_allgather(dist::ProcessGroup& pg, int dev, DType t, int64_t m, const CaseOptions& o) {
  RG_GPU_CHECK_DISPATCH(t, check_allgather_t<T>(pg, dev, m, o))
}
inline std::string check_broadcast(dist::ProcessGroup& pg, int dev, DType t, int64_t n, int root, const CaseOptions& o) {
  RG_GPU_CHECK_DISPATCH(t, check_broadcast_t<T>(pg, dev, n, root, o))
}

// Several collectives queued before any is waited for (the proxy thread / stream must keep them
// in order and apart): three allreduces of different sizes and dtypes, then the waits.
inline std::string check_many_in_flight(dist::ProcessGroup& pg, int dev, const CaseOptions& o) {
  const int N = pg.size(), r = pg.rank();
  const int64_t n1 = 4099, n2 = 77, n3 = 70001;
  std::vector<std::vector<float>> a;
  std::vector<std::vector<int64_t>> b;
  std::vector<std::vector<Half>> c;
  for (int q = 0; q < N; ++q) {
    a.push_back(make_input<float>(o.seed + 1, q, n1, true));
    b.push_back(make_input<int64_t>(o.seed + 2, q, n2, false));
    c.push_back(make_input<Half>(o.seed + 3, q, n3, true));
  }
  Tensor ta = device_tensor(n1, DType::f32, dev, false), tb = device_tensor(n2, DType::i64, dev, false),
         tc = device_tensor(n3, DType::f16, dev, true);
  to_device(ta, a[static_cast<size_t>(r)]);
  to_device(tb, b[static_cast<size_t>(r)]);
  to_device(tc, c[static_cast<size_t>(r)]);
  auto w1 = pg.allreduce(ta, ReduceOp::Sum);
  auto w2 = pg.allreduce(tb, ReduceOp::Max);
  auto w3 = pg.allreduce(tc, ReduceOp::Avg);
  w3->wait();
  w1->wait();
  w2->synchronize();
  const std::string who = "rank " + std::to_string(r) + ": in flight: ";
  std::string e = compare(to_host<float>(ta), fold_reference<float>(a, n1, ReduceOp::Sum, std::vector<int>(n1, 0)),
                          Expect::Bitwise, who + "allreduce(sum) float32[4099]");
  if (e.empty()) {
    e = compare(to_host<int64_t>(tb), fold_reference<int64_t>(b, n2, ReduceOp::Max, std::vector<int>(n2, 0)),
                Expect::Bitwise, who + "allreduce(max) int64[77]");
  }
  if (e.empty()) {
    const Expect how = o.ref == RefKind::AnyOrder ? Expect::Close : Expect::Bitwise;
    e = compare(to_host<Half>(tc), fold_reference<Half>(c, n3, ReduceOp::Avg, std::vector<int>(n3, 0)), how,
                who + "allreduce(avg) float16[70001]", close_atol(DType::f16, N, true));
  }
  return e;
}

// barrier: every rank writes a key before it; after the barrier every key must exist.
inline std::string check_barrier(dist::ProcessGroup& pg, dist::Store& store, const std::string& tag) {
  const int N = pg.size(), r = pg.rank();
  store.set(tag + "/before/" + std::to_string(r), std::string("1"));
  pg.barrier()->wait();
  for (int q = 0; q < N; ++q) {
    if (!store.check({tag + "/before/" + std::to_string(q)})) {
      return "rank " + std::to_string(r) + ": barrier " + tag + " returned before rank " + std::to_string(q) +
             " reached it";
    }
  }
  return "";
}

// Every collective, dtype and a spread of sizes. `sizes` are element counts (per rank for
// allgather/reduce_scatter). Returns the first failure, or "" after all of them.
inline std::string check_everything(dist::ProcessGroup& pg, dist::Store& store, int dev, CaseOptions o,
                                    const std::vector<int64_t>& sizes, int* cases_run = nullptr) {
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64};
  const ReduceOp ops[] = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max};
  int count = 0;
  std::string e;
  auto run = [&](const std::string& r) {
    ++count;
    if (e.empty() && !r.empty()) e = r;
  };
  for (DType t : dtypes) {
    for (int64_t n : sizes) {
      for (int variant = 0; variant < 3 && e.empty(); ++variant) {
        CaseOptions c = o;
        c.exact = variant != 1;           // 0: exact, 1: random, 2: exact, misaligned, synchronize
        c.offset_view = variant == 2;
        c.synchronize = variant == 2;
        c.seed = o.seed * 1000 + static_cast<uint64_t>(n) * 7 + static_cast<uint64_t>(t) * 3 + static_cast<uint64_t>(variant);
        for (ReduceOp op : ops) {
          run(check_allreduce(pg, dev, t, n, op, c));
          run(check_reduce_scatter(pg, dev, t, n, op, c));
        }
        run(check_allgather(pg, dev, t, n, c));
        run(check_broadcast(pg, dev, t, n, static_cast<int>((n + variant) % pg.size()), c));
      }
      if (!e.empty()) break;
    }
  }
  if (e.empty()) run(check_many_in_flight(pg, dev, o));
  if (e.empty()) run(check_barrier(pg, store, "barrier_check_" + std::to_string(o.seed)));
  if (cases_run) *cases_run = count;
  return e;
}

}  // namespace rg::test::gpu
