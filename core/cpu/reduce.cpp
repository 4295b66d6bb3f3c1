// CPU reductions (sum, mean, max, min, argmax, argmin, var, prod, abs-max) over any set of dims
// of a tensor with any strides. Floats accumulate in double, integers in int64.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {

// Note [Reduction plan]
// The output (keepdim form, contiguous) is indexed linearly by o over the kept dims; `kept` gives
// their sizes and x strides, innermost first, merged where x's strides allow. The reduced dims
// are sorted by x stride (innermost first) and merged, so the first one is the densest; r is the
// linear index over them in that order (for argmax/argmin there is one reduced dim, so r is the
// position along it). Two loop shapes:
//  - inner: every output walks its reduced elements in runs along red[0] (best when red[0] has
//    stride 1, e.g. a sum over the last dim, or NCHW over {0, 2, 3});
//  - outer: the innermost kept dim has stride 1 and the reduced dims are outside it (a sum over
//    dim 0 of (N, C)): a block of outputs is updated together, one reduced element at a time.
// Parallel work is split over outputs; a few outputs with a long reduction split the reduction
// into fixed chunks whose partial results merge in order, so results do not depend on threads.
struct RDim {
  int64_t size, stride;
};

constexpr int kMaxReduceDims = 64;
constexpr int64_t kSplit = 32768;      // reduced elements per partial result when splitting
constexpr int64_t kOuterBlock = 256;   // outputs updated together in the outer loop shape

struct Plan {
  std::vector<RDim> kept, red;
  int64_t n_out = 1, n_red = 1;

  int64_t x_offset(int64_t o) const {
    int64_t off = 0;
    for (const RDim& d : kept) {
      const int64_t q = o / d.size;
      off += (o - q * d.size) * d.stride;
      o = q;
    }
    return off;
  }
};

Plan make_plan(const Tensor& x, const Shape& dims) {
  Plan p;
  const int64_t nd = x.dim();
  RG_CHECK(nd <= kMaxReduceDims, "reduce: at most ", kMaxReduceDims, " dims, got ", nd);
  std::vector<bool> reduced(static_cast<size_t>(nd), false);
  for (int64_t d : dims) reduced[static_cast<size_t>(d)] = true;
  for (int64_t d = nd - 1; d >= 0; --d) {
    const int64_t sz = x.sizes()[d], st = x.strides()[d];
    if (sz == 1) continue;
    if (reduced[static_cast<size_t>(d)]) {
      p.red.push_back({sz, st});
      p.n_red *= sz;
    } else {
      if (!p.kept.empty() && st == p.kept.back().stride * p.kept.back().size) {
        p.kept.back().size *= sz;
      } else {
        p.kept.push_back({sz, st});
      }
      p.n_out *= sz;
    }
  }
  std::stable_sort(p.red.begin(), p.red.end(), [](const RDim& a, const RDim& b) { return a.stride < b.stride; });
  std::vector<RDim> merged;
  for (const RDim& d : p.red) {
    if (!merged.empty() && d.stride == merged.back().stride * merged.back().size) {
      merged.back().size *= d.size;
    } else {
      merged.push_back(d);
    }
  }
  p.red = merged.empty() ? std::vector<RDim>{{1, 0}} : merged;
  return p;
}

// Calls run(offset, len, stride, r0) for the reduced elements [rb, re), one run along red[0] at a time.
template <typename F>
void walk_reduced(const Plan& p, int64_t rb, int64_t re, F&& run) {
  const int nr = static_cast<int>(p.red.size());
  int64_t idx[kMaxReduceDims];
  int64_t off = 0, r = rb;
  for (int k = 0; k < nr; ++k) {
    const int64_t q = r / p.red[k].size;
    idx[k] = r - q * p.red[k].size;
    off += idx[k] * p.red[k].stride;
    r = q;
  }
  const int64_t n0 = p.red[0].size, s0 = p.red[0].stride;
  int64_t i = rb;
  while (i < re) {
    const int64_t len = std::min(n0 - idx[0], re - i);
    run(off, len, s0, i);
    i += len;
    if (i >= re) break;
    off -= idx[0] * s0;  // back to the start of the run along red[0]
    idx[0] = 0;
    for (int k = 1; k < nr; ++k) {  // carry into the outer reduced dims
      ++idx[k];
      off += p.red[k].stride;
      if (idx[k] < p.red[k].size) break;
      off -= p.red[k].size * p.red[k].stride;
      idx[k] = 0;
    }
  }
}

// ---- policies: Acc init(o), add(acc, v, r), run(acc, ptr, n, stride, r0), merge(acc, later), finish(acc)

template <typename T>
using val_t = std::conditional_t<std::is_floating_point_v<cpu::acc_t<T>>, double, int64_t>;

template <typename T, typename Derived, typename Acc>
struct PolicyBase {
  using V = val_t<T>;
  void run(Acc& a, const T* p, int64_t n, int64_t s, int64_t r0) const {
    const auto& self = static_cast<const Derived&>(*this);
    for (int64_t i = 0; i < n; ++i) self.add(a, cpu::cast<V>(p[i * s]), r0 + i);
  }
};

template <typename T, bool kMean>
struct SumPolicy : PolicyBase<T, SumPolicy<T, kMean>, val_t<T>> {
  using V = val_t<T>;
  using Acc = V;
  int64_t n_red;
  Acc init(int64_t) const { return V(0); }
  void add(Acc& a, V v, int64_t) const { a += v; }
  void run(Acc& a, const T* p, int64_t n, int64_t s, int64_t) const {
    if (s == 1) {  // four independent sums so the loop pipelines (and vectorises)
      V s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) {
        s0 += cpu::cast<V>(p[i]);
        s1 += cpu::cast<V>(p[i + 1]);
        s2 += cpu::cast<V>(p[i + 2]);
        s3 += cpu::cast<V>(p[i + 3]);
      }
      for (; i < n; ++i) s0 += cpu::cast<V>(p[i]);
      a += (s0 + s1) + (s2 + s3);
    } else {
      for (int64_t i = 0; i < n; ++i) a += cpu::cast<V>(p[i * s]);
    }
  }
  void merge(Acc& a, const Acc& b) const { a += b; }
  auto finish(const Acc& a) const {
    if constexpr (kMean) return static_cast<double>(a) / static_cast<double>(n_red);
    else return a;
  }
};

template <typename T>
struct ProdPolicy : PolicyBase<T, ProdPolicy<T>, val_t<T>> {
  using V = val_t<T>;
  using Acc = V;
  Acc init(int64_t) const { return V(1); }
  void add(Acc& a, V v, int64_t) const {
    if constexpr (std::is_same_v<V, int64_t>) a = static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(v));
    else a *= v;
  }
  void merge(Acc& a, const Acc& b) const { add(a, b, 0); }
  Acc finish(const Acc& a) const { return a; }
};

// Max / min / max of |x|; NaN wins, as in PyTorch.
template <typename T, bool kMax, bool kAbs>
struct ExtremePolicy : PolicyBase<T, ExtremePolicy<T, kMax, kAbs>, val_t<T>> {
  using V = val_t<T>;
  using Acc = V;
  Acc init(int64_t) const {
    if constexpr (kAbs) return V(0);
    if constexpr (std::is_same_v<V, double>) return kMax ? -INFINITY : INFINITY;
    else return kMax ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  }
  void add(Acc& a, V v, int64_t) const {
    if constexpr (kAbs) v = v < 0 ? -v : v;
    merge(a, v);
  }
  void merge(Acc& a, const Acc& b) const {  // non-short-circuit `|` keeps the loop branch-free
    if constexpr (kMax) a = ((b > a) | (b != b)) ? b : a;
    else a = ((b < a) | (b != b)) ? b : a;
  }
  void run(Acc& a, const T* p, int64_t n, int64_t s, int64_t) const {
    if (s == 1) {  // four independent chains, merged at the end (NaN still wins)
      Acc m[4] = {a, a, a, a};
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) {
        for (int l = 0; l < 4; ++l) add(m[l], cpu::cast<V>(p[i + l]), 0);
      }
      for (; i < n; ++i) add(m[0], cpu::cast<V>(p[i]), 0);
      a = m[0];
      for (int l = 1; l < 4; ++l) merge(a, m[l]);
    } else {
      for (int64_t i = 0; i < n; ++i) add(a, cpu::cast<V>(p[i * s]), 0);
    }
  }
  Acc finish(const Acc& a) const { return a; }
};

template <typename V>
struct ArgAcc {
  V val;
  int64_t idx;
};

// First index of the max (min); the first NaN wins.
template <typename T, bool kMax>
struct ArgPolicy : PolicyBase<T, ArgPolicy<T, kMax>, ArgAcc<val_t<T>>> {
  using V = val_t<T>;
  using Acc = ArgAcc<V>;
  static bool better(V v, V cur) {
    if (cur != cur) return false;
    if constexpr (kMax) return v > cur || v != v;
    else return v < cur || v != v;
  }
  Acc init(int64_t) const { return {V(0), -1}; }
  void add(Acc& a, V v, int64_t r) const {
    if (a.idx < 0 || better(v, a.val)) {
      a.val = v;
      a.idx = r;
    }
  }
  void merge(Acc& a, const Acc& b) const {
    if (b.idx >= 0 && (a.idx < 0 || better(b.val, a.val))) a = b;
  }
  int64_t finish(const Acc& a) const { return a.idx; }
};

struct VarAcc {
  double ss, mean;
};

// Second pass of the variance: sum of squared deviations from the means of the first pass.
template <typename T>
struct VarPolicy : PolicyBase<T, VarPolicy<T>, VarAcc> {
  using Acc = VarAcc;
  const double* means;
  int64_t n_red, correction;
  VarAcc init(int64_t o) const { return {0.0, means[o]}; }
  void add(VarAcc& a, double v, int64_t) const {
    const double d = v - a.mean;
    a.ss += d * d;
  }
  void merge(VarAcc& a, const VarAcc& b) const { a.ss += b.ss; }
  double finish(const VarAcc& a) const {
    const int64_t div = std::max<int64_t>(0, n_red - correction);
    return a.ss / static_cast<double>(div);
  }
};

// ---- the two loop shapes (Note [Reduction plan])

template <typename T, typename Out, typename Pol>
void reduce_inner(const Plan& p, const T* x, Out* out, const Pol& pol) {
  using Acc = typename Pol::Acc;
  const int64_t n_out = p.n_out, n_red = p.n_red;
  if (n_out < 4 && n_red >= 2 * kSplit) {
    const int64_t chunks = (n_red + kSplit - 1) / kSplit;
    std::vector<Acc> part(static_cast<size_t>(chunks));
    for (int64_t o = 0; o < n_out; ++o) {
      const T* base = x + p.x_offset(o);
      cpu::parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
        for (int64_t c = cb; c < ce; ++c) {
          Acc acc = pol.init(o);
          walk_reduced(p, c * kSplit, std::min(n_red, (c + 1) * kSplit),
                       [&](int64_t off, int64_t len, int64_t s, int64_t r0) { pol.run(acc, base + off, len, s, r0); });
          part[static_cast<size_t>(c)] = acc;
        }
      });
      Acc acc = part[0];
      for (int64_t c = 1; c < chunks; ++c) pol.merge(acc, part[static_cast<size_t>(c)]);
      out[o] = cpu::cast<Out>(pol.finish(acc));
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, cpu::kGrain / n_red);
  cpu::parallel_for(n_out, grain, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      const T* base = x + p.x_offset(o);
      Acc acc = pol.init(o);
      walk_reduced(p, 0, n_red,
                   [&](int64_t off, int64_t len, int64_t s, int64_t r0) { pol.run(acc, base + off, len, s, r0); });
      out[o] = cpu::cast<Out>(pol.finish(acc));
    }
  });
}

template <typename T, typename Out, typename Pol>
void reduce_outer(const Plan& p, const T* x, Out* out, const Pol& pol) {
  using Acc = typename Pol::Acc;
  using V = val_t<T>;
  const int64_t n_red = p.n_red;
  const int64_t K = p.kept[0].size;  // stride 1 in x, and contiguous in out
  const int64_t J = p.n_out / K;
  const int64_t nkb = (K + kOuterBlock - 1) / kOuterBlock;
  // Accumulates reduced elements [rb, re) into acc[0, kn) for outputs o0 .. o0 + kn.
  auto block = [&](int64_t o0, int64_t kn, int64_t rb, int64_t re, Acc* acc) {
    const T* base = x + p.x_offset(o0);
    walk_reduced(p, rb, re, [&](int64_t off, int64_t len, int64_t s, int64_t r0) {
      for (int64_t t = 0; t < len; ++t) {
        const T* q = base + off + t * s;
        const int64_t r = r0 + t;
        for (int64_t k = 0; k < kn; ++k) pol.add(acc[k], cpu::cast<V>(q[k]), r);
      }
    });
  };
  const int64_t tasks = J * nkb;
  if (tasks < 2 && n_red >= 2 * kSplit) {  // one block, long reduction: split it
    const int64_t chunks = (n_red + kSplit - 1) / kSplit;
    for (int64_t kb = 0; kb < nkb; ++kb) {  // here J == 1 and nkb == 1
      const int64_t o0 = kb * kOuterBlock, kn = std::min(kOuterBlock, K - o0);
      std::vector<Acc> part(static_cast<size_t>(chunks * kn));
      cpu::parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
        for (int64_t c = cb; c < ce; ++c) {
          Acc* acc = part.data() + c * kn;
          for (int64_t k = 0; k < kn; ++k) acc[k] = pol.init(o0 + k);
          block(o0, kn, c * kSplit, std::min(n_red, (c + 1) * kSplit), acc);
        }
      });
      for (int64_t k = 0; k < kn; ++k) {
        Acc acc = part[static_cast<size_t>(k)];
        for (int64_t c = 1; c < chunks; ++c) pol.merge(acc, part[static_cast<size_t>(c * kn + k)]);
        out[o0 + k] = cpu::cast<Out>(pol.finish(acc));
      }
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, cpu::kGrain / (n_red * kOuterBlock));
  cpu::parallel_for(tasks, grain, [&](int64_t tb, int64_t te) {
    Acc acc[kOuterBlock];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t j = t / nkb, kb = t - j * nkb;
      const int64_t o0 = j * K + kb * kOuterBlock, kn = std::min(kOuterBlock, K - kb * kOuterBlock);
      for (int64_t k = 0; k < kn; ++k) acc[k] = pol.init(o0 + k);
      block(o0, kn, 0, n_red, acc);
      for (int64_t k = 0; k < kn; ++k) out[o0 + k] = cpu::cast<Out>(pol.finish(acc[k]));
    }
  });
}

template <typename T, typename Out, typename Pol>
void run_reduce(const Plan& p, const T* x, Out* out, const Pol& pol) {
  const bool outer = p.red[0].stride != 1 && !p.kept.empty() && p.kept[0].stride == 1;
  if (outer) reduce_outer(p, x, out, pol);
  else reduce_inner(p, x, out, pol);
}

template <typename T>
void reduce_typed(const Tensor& out, const Tensor& x, ReduceOp op, const Plan& p, int64_t correction) {
  const T* xp = static_cast<const T*>(x.data_ptr());
  constexpr bool kFloat = std::is_floating_point_v<cpu::acc_t<T>>;
  using SumOut = std::conditional_t<kFloat, T, int64_t>;
  auto check_out = [&](DType want) {
    RG_CHECK(out.dtype() == want, reduce_op_name(op), ": output dtype ", dtype_name(out.dtype()), ", expected ",
             dtype_name(want));
  };
  switch (op) {
    case ReduceOp::Sum:
      check_out(DTypeOf<SumOut>::value);
      run_reduce(p, xp, static_cast<SumOut*>(out.data_ptr()), SumPolicy<T, false>{{}, p.n_red});
      break;
    case ReduceOp::Prod:
      check_out(DTypeOf<SumOut>::value);
      run_reduce(p, xp, static_cast<SumOut*>(out.data_ptr()), ProdPolicy<T>{});
      break;
    case ReduceOp::Mean:
    case ReduceOp::Var: {
      if constexpr (!kFloat) {
        throw_unsupported_dtype(reduce_op_name(op), x.dtype(), "cpu");
      } else {
        check_out(x.dtype());
        if (op == ReduceOp::Mean) {
          run_reduce(p, xp, static_cast<T*>(out.data_ptr()), SumPolicy<T, true>{{}, p.n_red});
        } else {
          std::vector<double> means(static_cast<size_t>(p.n_out));
          run_reduce(p, xp, means.data(), SumPolicy<T, true>{{}, p.n_red});
          run_reduce(p, xp, static_cast<T*>(out.data_ptr()), VarPolicy<T>{{}, means.data(), p.n_red, correction});
        }
      }
      break;
    }
    case ReduceOp::Max:
      check_out(x.dtype());
      run_reduce(p, xp, static_cast<T*>(out.data_ptr()), ExtremePolicy<T, true, false>{});
      break;
    case ReduceOp::Min:
      check_out(x.dtype());
      run_reduce(p, xp, static_cast<T*>(out.data_ptr()), ExtremePolicy<T, false, false>{});
      break;
    case ReduceOp::AbsMax:
      check_out(x.dtype());
      run_reduce(p, xp, static_cast<T*>(out.data_ptr()), ExtremePolicy<T, true, true>{});
      break;
    case ReduceOp::Argmax:
      check_out(DType::i64);
      run_reduce(p, xp, static_cast<int64_t*>(out.data_ptr()), ArgPolicy<T, true>{});
      break;
    case ReduceOp::Argmin:
      check_out(DType::i64);
      run_reduce(p, xp, static_cast<int64_t*>(out.data_ptr()), ArgPolicy<T, false>{});
      break;
  }
}

}  // namespace

void reduce_cpu(const Tensor& out, const Tensor& x, ReduceOp op, const Shape& dims, int64_t correction) {
  RG_CHECK(out.is_contiguous(), reduce_op_name(op), ": the output must be contiguous");
  RG_CHECK(out.dim() == x.dim(), reduce_op_name(op), ": output ", shape_str(out.sizes()),
           " is not the keepdim form of ", shape_str(x.sizes()));
  const Plan p = make_plan(x, dims);
  RG_CHECK(p.n_out == out.numel(), reduce_op_name(op), ": output ", shape_str(out.sizes()),
           " does not match the reduction of ", shape_str(x.sizes()), " over ", shape_str(dims));
  if (p.n_out == 0 || x.numel() == 0) return;
  RG_DISPATCH_ALL(x.dtype(), reduce_op_name(op), [&] { reduce_typed<scalar_t>(out, x, op, p, correction); });
}

}  // namespace rg
