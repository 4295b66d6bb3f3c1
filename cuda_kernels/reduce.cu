// CUDA reductions (sum, mean, max, min, argmax, argmin, var, prod, absmax) over any set of dims of a
// tensor with any strides, out in keepdim form: the twin of core/cpu/reduce.cpp. Note [Reduce plan].
#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// Note [Reduce plan]
// x's dims split into kept ones (K outputs, row-major, = out's layout) and reduced ones (R
// elements each, sorted by stride); each side is an index space with merged dims and x's strides
// (RedIndex), so any dim set and any strides reduce without a copy.
// - row mode, when the innermost reduced dim has unit stride and R >= 32: a row of blockDim.x
//   threads (a multiple of 32) reads one output's elements side by side, then combines them with
//   warp shuffles (and shared memory across the row's warps); blockDim.y outputs per block.
// - column mode otherwise (typically the innermost dim is kept: outer x R x inner): blockDim.x
//   neighbouring outputs read neighbouring addresses, blockDim.y threads split R, and shared
//   memory combines them.
// When that gives too few blocks to fill the device and R is long, gridDim.y splits R into
// segments whose partial states a second kernel combines. Accumulation: float for f16/bf16/f32,
// double for f64, int64 for the integer dtypes; var is Welford with Chan's merge.

// ---- kernels

// One index space over x: sizes and x strides of merged dims, innermost first.
struct RedIndex {
  int ndim = 0;
  bool idx32 = true;  // every index < 2^32: 32-bit division
  int64_t sizes[kMaxStridedDims] = {};
  int64_t strides[kMaxStridedDims] = {};

  // Offset in x of index i of this space; constant array indices (unrolled) keep the arrays in the
  // parameter space.
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    uint32_t j = static_cast<uint32_t>(i);
#pragma unroll
    for (int d = 0; d < kMaxStridedDims; ++d) {
      if (d == ndim - 1) return off + (idx32 ? static_cast<int64_t>(j) : i) * strides[d];
      if (d >= ndim) break;  // ndim == 0
      if (idx32) {
        const uint32_t sz = static_cast<uint32_t>(sizes[d]);
        const uint32_t q = j / sz;
        off += static_cast<int64_t>(j - q * sz) * strides[d];
        j = q;
      } else {
        const int64_t q = i / sizes[d];
        off += (i - q * sizes[d]) * strides[d];
        i = q;
      }
    }
    return off;
  }
};

// A partial reduction: a = value, sum, product or mean; b = M2 (var); i = index (arg) or count (var).
template <typename A>
struct RedState {
  A a;
  A b;
  int64_t i;
};

template <typename T, ReduceOp OP>
using red_out_t = std::conditional_t<OP == ReduceOp::Argmax || OP == ReduceOp::Argmin ||
                                         ((OP == ReduceOp::Sum || OP == ReduceOp::Prod) && !is_float_v<T>),
                                     int64_t, T>;

// + and * that wrap (through uint64) for the integer accumulator, as the CPU kernel does.
template <typename A>
static __device__ __forceinline__ A add_acc(A x, A y) {
  if constexpr (std::is_integral_v<A>) {
    return static_cast<A>(static_cast<uint64_t>(x) + static_cast<uint64_t>(y));
  } else {
    return x + y;
  }
}
template <typename A>
static __device__ __forceinline__ A mul_acc(A x, A y) {
  if constexpr (std::is_integral_v<A>) {
    return static_cast<A>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
  } else {
    return x * y;
  }
}

template <ReduceOp OP, typename A>
static __device__ __forceinline__ RedState<A> red_identity() {
  constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();
  switch (OP) {
    case ReduceOp::Prod: return {A(1), A(0), 0};
    case ReduceOp::Max: return {lowest<A>(), A(0), 0};
    case ReduceOp::Min: return {highest<A>(), A(0), 0};
    case ReduceOp::Argmax: return {lowest<A>(), A(0), kNoIndex};
    case ReduceOp::Argmin: return {highest<A>(), A(0), kNoIndex};
    default: return {A(0), A(0), 0};  // Sum, Mean, AbsMax (|x| >= 0), Var (empty)
  }
}

// Combines two partial states; every merge is symmetric, so the order of a tree does not matter
// (beyond float rounding). Arg: NaN wins, then the better value, then the lower index.
template <ReduceOp OP, typename A>
static __device__ __forceinline__ RedState<A> red_merge(const RedState<A>& x, const RedState<A>& y) {
  if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean) {
    return {add_acc(x.a, y.a), A(0), 0};
  } else if constexpr (OP == ReduceOp::Prod) {
    return {mul_acc(x.a, y.a), A(0), 0};
  } else if constexpr (OP == ReduceOp::Max || OP == ReduceOp::AbsMax) {
    return {max_nan(x.a, y.a), A(0), 0};
  } else if constexpr (OP == ReduceOp::Min) {
    return {min_nan(x.a, y.a), A(0), 0};
  } else if constexpr (OP == ReduceOp::Argmax || OP == ReduceOp::Argmin) {
    const bool xn = is_nan(x.a), yn = is_nan(y.a);
    if (xn || yn) {
      if (xn && yn) return x.i <= y.i ? x : y;
      return xn ? x : y;
    }
    const bool x_better = OP == ReduceOp::Argmax ? x.a > y.a : x.a < y.a;
    const bool y_better = OP == ReduceOp::Argmax ? y.a > x.a : y.a < x.a;
    if (x_better) return x;
    if (y_better) return y;
    return x.i <= y.i ? x : y;
  } else {  // Var: Chan et al.'s parallel combination of (mean, M2, count)
    if (x.i == 0) return y;
    if (y.i == 0) return x;
    const int64_t n = x.i + y.i;
    const A d = y.a - x.a;
    const A f = static_cast<A>(y.i) / static_cast<A>(n);
    return {x.a + d * f, x.b + y.b + d * d * static_cast<A>(x.i) * f, n};
  }
}

// Adds element v (at reduced index r) to a thread's running state.
template <ReduceOp OP, typename A>
static __device__ __forceinline__ RedState<A> red_push(RedState<A> s, A v, int64_t r) {
  if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean) {
    s.a = add_acc(s.a, v);
  } else if constexpr (OP == ReduceOp::Prod) {
    s.a = mul_acc(s.a, v);
  } else if constexpr (OP == ReduceOp::Max) {
    s.a = max_nan(s.a, v);
  } else if constexpr (OP == ReduceOp::Min) {
    s.a = min_nan(s.a, v);
  } else if constexpr (OP == ReduceOp::AbsMax) {
    s.a = max_nan(s.a, v < A(0) ? -v : v);
  } else if constexpr (OP == ReduceOp::Argmax || OP == ReduceOp::Argmin) {
    s = red_merge<OP, A>(s, RedState<A>{v, A(0), r});
  } else {  // Var: Welford
    s.i += 1;
    const A d = v - s.a;
    s.a += d / static_cast<A>(s.i);
    s.b += d * (v - s.a);
  }
  return s;
}

template <ReduceOp OP, typename A, typename O>
static __device__ __forceinline__ O red_finalize(const RedState<A>& s, int64_t R, int64_t correction) {
  if constexpr (OP == ReduceOp::Argmax || OP == ReduceOp::Argmin) {
    return s.i;
  } else if constexpr (OP == ReduceOp::Mean) {
    return cast<O>(s.a / static_cast<A>(R));
  } else if constexpr (OP == ReduceOp::Var) {
    const int64_t dof = s.i - correction;
    return cast<O>(s.b / static_cast<A>(dof > 0 ? dof : 0));  // 0/0 -> NaN, x/0 -> inf, as torch.var
  } else {
    return cast<O>(s.a);
  }
}

// See Note [Reduce plan]. Segment blockIdx.y covers reduced indices [seg * seg_len, +seg_len).
template <typename T, ReduceOp OP>
static __global__ void reduce_fwd_kernel(const T* x, red_out_t<T, OP>* out, RedState<acc_t<T>>* partial,
                                         RedIndex kept, RedIndex red, int64_t K, int64_t R, int64_t seg_len,
                                         bool row_mode, int64_t correction) {
  using A = acc_t<T>;
  using S = RedState<A>;
  extern __shared__ __align__(16) unsigned char reduce_smem[];
  S* smem = reinterpret_cast<S*>(reduce_smem);
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t o = row_mode ? static_cast<int64_t>(blockIdx.x) * blockDim.y + ty
                             : static_cast<int64_t>(blockIdx.x) * blockDim.x + tx;
  const int lane = row_mode ? tx : ty;
  const int group = static_cast<int>(row_mode ? blockDim.x : blockDim.y);
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * seg_len;
  const int64_t r1 = r0 + seg_len < R ? r0 + seg_len : R;

  S s = red_identity<OP, A>();
  if (o < K) {
    const T* base = x + kept.offset(o);
    if (red.ndim <= 1) {
      const int64_t st = red.ndim == 1 ? red.strides[0] : 0;
      for (int64_t r = r0 + lane; r < r1; r += group) s = red_push<OP, A>(s, cast<A>(base[r * st]), r);
    } else {
      for (int64_t r = r0 + lane; r < r1; r += group) s = red_push<OP, A>(s, cast<A>(base[red.offset(r)]), r);
    }
  }

  const auto merge = [](const S& p, const S& q) { return red_merge<OP, A>(p, q); };
  if (row_mode) {  // every thread takes part: the shuffles use full warps
    s = row_allreduce(s, smem, merge);
  } else {
    const int idx = ty * static_cast<int>(blockDim.x) + tx;
    smem[idx] = s;
    __syncthreads();
    for (int h = static_cast<int>(blockDim.y) / 2; h > 0; h >>= 1) {  // blockDim.y is a power of two
      if (ty < h) smem[idx] = merge(smem[idx], smem[idx + h * static_cast<int>(blockDim.x)]);
      __syncthreads();
    }
    s = smem[tx];
  }
  if (lane == 0 && o < K) {
    if (gridDim.y == 1) {
      out[o] = red_finalize<OP, A, red_out_t<T, OP>>(s, R, correction);
    } else {
      partial[static_cast<int64_t>(blockIdx.y) * K + o] = s;
    }
  }
}

// Combines the `segments` partial states of every output: partial (segments, K).
template <typename T, ReduceOp OP>
static __global__ void reduce_partials_fwd_kernel(const RedState<acc_t<T>>* partial, red_out_t<T, OP>* out, int64_t K,
                                                  int segments, int64_t R, int64_t correction) {
  using A = acc_t<T>;
  grid_stride(K, [&](int64_t o) {
    RedState<A> s = red_identity<OP, A>();
    for (int k = 0; k < segments; ++k) s = red_merge<OP, A>(s, partial[static_cast<int64_t>(k) * K + o]);
    out[o] = red_finalize<OP, A, red_out_t<T, OP>>(s, R, correction);
  });
}

// ---- launchers

namespace {

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// The kept (want_reduced = false) or reduced index space of x, innermost first, merged where x's
// strides allow. Kept dims keep their order (it is out's layout); reduced dims are sorted by stride
// first, so that a reduction over a transposed tensor still reads unit-stride runs (the order of the
// reduced elements matters only to argmax/argmin, which reduce a single dim).
RedIndex make_index(const Tensor& x, const std::vector<bool>& reduced, bool want_reduced) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride), innermost first
  int64_t numel = 1;
  for (int64_t d = x.dim() - 1; d >= 0; --d) {
    const int64_t sz = x.size(d);
    if (reduced[static_cast<size_t>(d)] != want_reduced || sz == 1) continue;
    numel *= sz;
    dims.emplace_back(sz, x.stride(d));
  }
  if (want_reduced) {
    // broadcast (stride 0) dims last: they would hide a unit-stride dim from the row mode
    auto key = [](int64_t st) { return st == 0 ? std::numeric_limits<int64_t>::max() : st < 0 ? -st : st; };
    std::stable_sort(dims.begin(), dims.end(),
                     [&](const auto& a, const auto& b) { return key(a.second) < key(b.second); });
  }
  RedIndex ix;
  for (const auto& [sz, st] : dims) {
    if (ix.ndim > 0 && st == ix.strides[ix.ndim - 1] * ix.sizes[ix.ndim - 1]) {
      ix.sizes[ix.ndim - 1] *= sz;
    } else {
      RG_CHECK(ix.ndim < kMaxStridedDims, "reduce: more than ", kMaxStridedDims, " dims that do not merge in ",
               shape_str(x.sizes()));
      ix.sizes[ix.ndim] = sz;
      ix.strides[ix.ndim] = st;
      ++ix.ndim;
    }
  }
  ix.idx32 = numel <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max());
  return ix;
}

struct Plan {
  RedIndex kept, red;
  int64_t K = 1, R = 1;
  bool row_mode = false;
  dim3 block, grid;
  int64_t seg_len = 1;
  size_t smem = 0;
};

Plan make_plan(const Tensor& x, const Shape& dims, size_t state_size) {
  Plan p;
  std::vector<bool> reduced(static_cast<size_t>(x.dim()), false);
  for (int64_t d : dims) reduced[static_cast<size_t>(d)] = true;
  for (int64_t d = 0; d < x.dim(); ++d) (reduced[static_cast<size_t>(d)] ? p.R : p.K) *= x.size(d);
  p.kept = make_index(x, reduced, false);
  p.red = make_index(x, reduced, true);
  p.row_mode = p.red.ndim > 0 && p.red.strides[0] == 1 && p.R >= 32;
  int64_t per_block, group;
  if (p.row_mode) {
    const int64_t bx = p.R < 1024 ? 32 : (p.R < 8192 ? 128 : 512);
    const int64_t by = std::max<int64_t>(1, std::min<int64_t>(256 / bx, p.K));
    p.block = dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
    per_block = by;
    group = bx;
    p.smem = static_cast<size_t>(by * (bx / 32)) * state_size;
  } else {
    const int64_t bx = std::min<int64_t>(32, next_pow2(p.K));
    const int64_t by = std::min<int64_t>(256 / bx, next_pow2(p.R));
    p.block = dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
    per_block = bx;
    group = by;
    p.smem = static_cast<size_t>(bx * by) * state_size;
  }
  const int64_t blocks = (p.K + per_block - 1) / per_block;
  RG_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "reduce: too many outputs (", p.K, ")");
  // Split R when the outputs alone leave the device idle and each thread would still read >= 64 elements.
  const int64_t target = static_cast<int64_t>(sm_count()) * 4;
  int64_t segments = 1;
  if (blocks < target) {
    segments = std::min<int64_t>((target + blocks - 1) / blocks, p.R / (group * 64));
    segments = std::clamp<int64_t>(segments, 1, 65535);
  }
  p.seg_len = (p.R + segments - 1) / segments;
  segments = (p.R + p.seg_len - 1) / p.seg_len;
  p.grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(segments));
  return p;
}

template <typename T, ReduceOp OP>
void launch_reduce(const Tensor& out, const Tensor& x, const Shape& dims, int64_t correction) {
  using A = acc_t<T>;
  using S = RedState<A>;
  using O = red_out_t<T, OP>;
  RG_CHECK(out.dtype() == device_dtype<O>(), reduce_op_name(OP), ": output dtype ", dtype_name(out.dtype()),
           " is not the one this reduction writes");
  const Plan p = make_plan(x, dims, sizeof(S));
  const auto* px = static_cast<const T*>(x.data_ptr());
  auto* po = static_cast<O*>(out.data_ptr());
  if (p.grid.y == 1) {
    reduce_fwd_kernel<T, OP><<<p.grid, p.block, p.smem, stream()>>>(px, po, nullptr, p.kept, p.red, p.K, p.R,
                                                                   p.seg_len, p.row_mode, correction);
    RG_CUDA_LAUNCH_CHECK("reduce_fwd_kernel");
    return;
  }
  const int64_t nbytes = static_cast<int64_t>(p.grid.y) * p.K * static_cast<int64_t>(sizeof(S));
  // partial states (segments, K); freed when this returns, reused only in stream order
  Tensor work = empty({nbytes}, TensorOptions(DType::u8).device(x.device()));
  auto* partial = static_cast<S*>(work.data_ptr());
  reduce_fwd_kernel<T, OP><<<p.grid, p.block, p.smem, stream()>>>(px, po, partial, p.kept, p.red, p.K, p.R, p.seg_len,
                                                                 p.row_mode, correction);
  RG_CUDA_LAUNCH_CHECK("reduce_fwd_kernel");
  reduce_partials_fwd_kernel<T, OP><<<grid_for(p.K), kThreads, 0, stream()>>>(
      partial, po, p.K, static_cast<int>(p.grid.y), p.R, correction);
  RG_CUDA_LAUNCH_CHECK("reduce_partials_fwd_kernel");
}

}  // namespace

void reduce_cuda(const Tensor& out, const Tensor& x, ReduceOp op, const Shape& dims, int64_t correction) {
  // out: x's shape with 1 in every reduced dim (keepdim); dims sorted
  const char* name = reduce_op_name(op);
  RG_CHECK(out.dim() == x.dim(), name, ": output ", shape_str(out.sizes()), " is not in keepdim form for input ",
           shape_str(x.sizes()));
  for (int64_t d : dims) RG_CHECK(d >= 0 && d < x.dim(), name, ": dim ", d, " out of range for ", shape_str(x.sizes()));
  if (out.numel() == 0) return;
  if (x.numel() == 0) {  // an empty reduced dim, as native::reduce fills it
    RG_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Prod || op == ReduceOp::Var, name,
             "(): Expected reduction dim to have non-zero size.");
    fill_cuda(out, op == ReduceOp::Sum ? 0.0 : op == ReduceOp::Prod ? 1.0 : std::numeric_limits<double>::quiet_NaN());
    return;
  }
  if (!out.is_contiguous()) {  // the kernels write outputs in row-major order
    Tensor dense = empty(out.sizes(), TensorOptions(out.dtype()).device(out.device()));
    reduce_cuda(dense, x, op, dims, correction);
    copy_cuda(out, dense);
    return;
  }
  switch (op) {
#define RG_REDUCE_CASE(OP, DISPATCH)                                                               \
  case ReduceOp::OP:                                                                               \
    DISPATCH(x.dtype(), name, [&] { launch_reduce<scalar_t, ReduceOp::OP>(out, x, dims, correction); }); \
    break;
    RG_REDUCE_CASE(Sum, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(Mean, RG_CU_DISPATCH_FLOAT)
    RG_REDUCE_CASE(Max, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(Min, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(Argmax, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(Argmin, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(Var, RG_CU_DISPATCH_FLOAT)
    RG_REDUCE_CASE(Prod, RG_CU_DISPATCH_ALL)
    RG_REDUCE_CASE(AbsMax, RG_CU_DISPATCH_ALL)
#undef RG_REDUCE_CASE
  }
}

}  // namespace rg
