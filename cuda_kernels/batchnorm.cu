// CUDA batch norm kernels on contiguous x (N, C, *), the twins of core/cpu/batchnorm.cpp:
// per-channel statistics (Welford, Chan's merge) and backward sums over a (C, splits) grid with a
// second pass combining the splits in order, and vectorised elementwise forward / input gradient.
#include <algorithm>

#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// Note [Batch norm CUDA layout]
// x (N, C, S) is reduced per channel over its M = N * S elements. Element j of channel c
// (0 <= j < M) lives at ((j / S) * C + c) * S + j % S, so neighbouring threads read neighbouring
// addresses within each S-long run. Block (c, y) of the (C, splits) grid takes a contiguous
// range of j and writes one partial state to a workspace (C, splits); the finishing kernel,
// one thread per channel, merges channel c's partials in y order, so results do not depend on
// scheduling. Statistics accumulate in float (double for f64 inputs).

// ---- kernels

// Welford state: count, mean and the sum of squared deviations M2.
template <typename A>
struct Welford {
  A mean;
  A m2;
  int64_t n;
};

template <typename A>
__device__ __forceinline__ Welford<A> welford_merge(const Welford<A>& a, const Welford<A>& b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  const int64_t n = a.n + b.n;
  const A delta = b.mean - a.mean;
  const A nb_over_n = static_cast<A>(b.n) / static_cast<A>(n);
  return {a.mean + delta * nb_over_n, a.m2 + b.m2 + delta * delta * static_cast<A>(a.n) * nb_over_n, n};
}

template <typename A>
struct SumPair {
  A s1;  // sum dy
  A s2;  // sum dy (x - mean)
};

// Block-wide merge of one value per thread (1-D blocks, a multiple of 32 threads); thread 0
// gets the result. `smem` holds one value per warp.
template <typename V, typename F>
__device__ __forceinline__ V block_merge_to_thread0(V v, V* smem, F&& merge) {
  v = warp_allreduce(v, merge);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int nw = static_cast<int>(blockDim.x) / 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < nw; ++k) v = merge(v, smem[k]);
  }
  return v;
}

// Channel c's element j -> offset in x (Note [Batch norm CUDA layout]).
template <typename I>
__device__ __forceinline__ int64_t channel_offset(I j, I s, int64_t c, int64_t C) {
  const I n = j / s;
  return (static_cast<int64_t>(n) * C + c) * static_cast<int64_t>(s) + static_cast<int64_t>(j - n * s);
}

// The j range [begin, end) of split y out of `splits` equal parts of M.
template <typename I>
__device__ __forceinline__ void split_range(I m, I per, I* begin, I* end) {
  *begin = static_cast<I>(blockIdx.y) * per;
  const I e = *begin + per;
  *end = e < m ? e : m;
}

template <typename T, typename A, typename I>
static __global__ void batchnorm_stats_fwd_kernel(Welford<A>* __restrict__ partial, const T* __restrict__ x, int64_t C,
                                                  I S, I M, I per) {
  __shared__ Welford<A> smem[32];
  const int64_t c = blockIdx.x;
  I begin, end;
  split_range(M, per, &begin, &end);
  Welford<A> w{A(0), A(0), 0};
  for (I j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const A v = cast<A>(x[channel_offset(j, S, c, C)]);
    w.n += 1;
    const A d = v - w.mean;
    w.mean += d / static_cast<A>(w.n);
    w.m2 += d * (v - w.mean);
  }
  w = block_merge_to_thread0(w, smem, [](const Welford<A>& a, const Welford<A>& b) { return welford_merge(a, b); });
  if (threadIdx.x == 0) partial[c * gridDim.y + blockIdx.y] = w;
}

template <typename A>
static __global__ void batchnorm_stats_finish_fwd_kernel(A* __restrict__ mean, A* __restrict__ var,
                                                         const Welford<A>* __restrict__ partial, int64_t C, int splits) {
  grid_stride(C, [&](int64_t c) {
    Welford<A> w = partial[c * splits];
    for (int k = 1; k < splits; ++k) w = welford_merge(w, partial[c * splits + k]);
    mean[c] = w.mean;
    var[c] = w.m2 / static_cast<A>(w.n);  // biased
  });
}

template <typename T, typename A, typename I>
static __global__ void batchnorm_reduce_bwd_kernel(SumPair<A>* __restrict__ partial, const T* __restrict__ gy,
                                                   const T* __restrict__ x, const A* __restrict__ mean, int64_t C, I S,
                                                   I M, I per) {
  __shared__ SumPair<A> smem[32];
  const int64_t c = blockIdx.x;
  const A m = mean[c];
  I begin, end;
  split_range(M, per, &begin, &end);
  SumPair<A> p{A(0), A(0)};
  for (I j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const int64_t off = channel_offset(j, S, c, C);
    const A g = cast<A>(gy[off]);
    p.s1 += g;
    p.s2 += g * (cast<A>(x[off]) - m);
  }
  p = block_merge_to_thread0(p, smem, [](const SumPair<A>& a, const SumPair<A>& b) {
    return SumPair<A>{a.s1 + b.s1, a.s2 + b.s2};
  });
  if (threadIdx.x == 0) partial[c * gridDim.y + blockIdx.y] = p;
}

template <typename A>
static __global__ void batchnorm_reduce_finish_bwd_kernel(A* __restrict__ sum_dy, A* __restrict__ sum_dy_xmu,
                                                          const SumPair<A>* __restrict__ partial, int64_t C, int splits) {
  grid_stride(C, [&](int64_t c) {
    A s1 = A(0), s2 = A(0);
    for (int k = 0; k < splits; ++k) {
      s1 += partial[c * splits + k].s1;
      s2 += partial[c * splits + k].s2;
    }
    sum_dy[c] = s1;
    sum_dy_xmu[c] = s2;
  });
}

// Per-channel coefficients of the elementwise kernels, read once per element (they stay in L1).
template <typename A>
struct ChannelCoefs {
  const A* mean;
  const A* invstd;
  const A* weight;  // null: 1
  const A* bias;    // null: 0 (forward only)
  const A* mean_dy;       // backward only
  const A* mean_dy_xmu;   // backward only
};

// y = (x - mean) * invstd * weight + bias.
template <typename T, typename A>
__device__ __forceinline__ T bn_fwd_value(T xv, int64_t c, const ChannelCoefs<A>& k) {
  const A w = k.weight ? k.weight[c] : A(1), b = k.bias ? k.bias[c] : A(0);
  return cast<T>((cast<A>(xv) - k.mean[c]) * k.invstd[c] * w + b);
}

// gx = weight * invstd * (dy - mean_dy - (x - mean) * invstd^2 * mean_dy_xmu).
template <typename T, typename A>
__device__ __forceinline__ T bn_bwd_value(T gv, T xv, int64_t c, const ChannelCoefs<A>& k) {
  const A is = k.invstd[c];
  const A w = k.weight ? k.weight[c] : A(1);
  const A xm = cast<A>(xv) - k.mean[c];
  return cast<T>((cast<A>(gv) - k.mean_dy[c] - xm * (k.mean_dy_xmu[c] * is * is)) * (w * is));
}

// Channel of flat element i: (i / S) % C.
template <typename I>
__device__ __forceinline__ int64_t channel_of(I i, I S, I C) {
  return static_cast<int64_t>((i / S) % C);
}

// Packs of W elements never straddle a channel when S % W == 0 (the launcher picks W = 1 otherwise).
template <int W, typename T, typename A, typename I>
static __global__ void batchnorm_elemt_fwd_kernel(T* __restrict__ y, const T* __restrict__ x, ChannelCoefs<A> k,
                                                  I numel, I S, I C) {
  if constexpr (W > 1) {
    const I packs = numel / W;
    grid_stride(packs, [&](I p) {
      const int64_t c = channel_of<I>(p * W, S, C);
      const Pack<T, W> xv = load_pack<W>(x, p);
      Pack<T, W> out;
#pragma unroll
      for (int e = 0; e < W; ++e) out.v[e] = bn_fwd_value<T, A>(xv.v[e], c, k);
      store_pack<W>(y, p, out);
    });
  } else {
    grid_stride(numel, [&](I i) { y[i] = bn_fwd_value<T, A>(x[i], channel_of<I>(i, S, C), k); });
  }
}

template <int W, typename T, typename A, typename I>
static __global__ void batchnorm_elemt_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gy,
                                                  const T* __restrict__ x, ChannelCoefs<A> k, I numel, I S, I C) {
  if constexpr (W > 1) {
    const I packs = numel / W;
    grid_stride(packs, [&](I p) {
      const int64_t c = channel_of<I>(p * W, S, C);
      const Pack<T, W> gv = load_pack<W>(gy, p);
      const Pack<T, W> xv = load_pack<W>(x, p);
      Pack<T, W> out;
#pragma unroll
      for (int e = 0; e < W; ++e) out.v[e] = bn_bwd_value<T, A>(gv.v[e], xv.v[e], c, k);
      store_pack<W>(gx, p, out);
    });
  } else {
    grid_stride(numel, [&](I i) { gx[i] = bn_bwd_value<T, A>(gy[i], x[i], channel_of<I>(i, S, C), k); });
  }
}

// ---- launchers

namespace {

constexpr int kBnThreads = 256;

struct BnGeometry {
  int64_t N, C, S, M;  // M = N * S elements per channel
  int splits;          // gridDim.y of the reductions
  int64_t per;         // elements of one channel per split
};

BnGeometry bn_geometry(const Tensor& x) {
  RG_CHECK(x.dim() >= 2 && x.is_contiguous(), "batchnorm kernels expect a contiguous (N, C, *) tensor, got ",
           x.describe());
  BnGeometry g;
  g.N = x.size(0);
  g.C = x.size(1);
  g.S = x.numel() / (g.N * g.C);
  g.M = g.N * g.S;
  // Enough blocks for about 4 waves of the device, each with at least 8 elements per thread.
  const int64_t want = (4 * static_cast<int64_t>(sm_count()) + g.C - 1) / g.C;
  const int64_t most = (g.M + 8 * kBnThreads - 1) / (8 * kBnThreads);
  g.splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, most, 1024})));
  g.per = (g.M + g.splits - 1) / g.splits;
  return g;
}

template <typename T>
using bn_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename A>
const A* opt_ptr(const Tensor& t) {
  return t.defined() ? static_cast<const A*>(t.data_ptr()) : nullptr;
}

// Calls f(index_zero) with uint32_t when every index fits, else uint64_t.
template <typename F>
void with_index_type(int64_t max_index, F&& f) {
  if (max_index < (int64_t{1} << 31)) {
    f(uint32_t{0});
  } else {
    f(uint64_t{0});
  }
}

}  // namespace

void batchnorm_stats_cuda(const Tensor& mean, const Tensor& var, const Tensor& x) {
  const BnGeometry g = bn_geometry(x);
  RG_CU_DISPATCH_FLOAT(x.dtype(), "batchnorm_stats", [&] {
    using A = bn_acc_t<scalar_t>;
    Tensor ws = empty({static_cast<int64_t>(g.C * g.splits * sizeof(Welford<A>))},
                      TensorOptions(DType::u8).device(x.device()));
    auto* partial = static_cast<Welford<A>*>(ws.data_ptr());
    const dim3 grid(static_cast<unsigned>(g.C), static_cast<unsigned>(g.splits));
    with_index_type(g.M, [&](auto zero) {
      using I = decltype(zero);
      batchnorm_stats_fwd_kernel<scalar_t, A, I><<<grid, kBnThreads, 0, stream()>>>(
          partial, static_cast<const scalar_t*>(x.data_ptr()), g.C, static_cast<I>(g.S), static_cast<I>(g.M),
          static_cast<I>(g.per));
    });
    RG_CUDA_LAUNCH_CHECK("batchnorm_stats_fwd_kernel");
    batchnorm_stats_finish_fwd_kernel<A><<<grid_for(g.C), kThreads, 0, stream()>>>(
        static_cast<A*>(mean.data_ptr()), static_cast<A*>(var.data_ptr()), partial, g.C, g.splits);
    RG_CUDA_LAUNCH_CHECK("batchnorm_stats_finish_fwd_kernel");
  });
}

void batchnorm_bwd_reduce_cuda(const Tensor& sum_dy, const Tensor& sum_dy_xmu, const Tensor& gy, const Tensor& x,
                               const Tensor& mean) {
  const BnGeometry g = bn_geometry(x);
  RG_CHECK(gy.is_contiguous() && gy.sizes() == x.sizes(), "batchnorm_bwd_reduce: gy must be contiguous like x");
  RG_CU_DISPATCH_FLOAT(x.dtype(), "batchnorm_bwd_reduce", [&] {
    using A = bn_acc_t<scalar_t>;
    Tensor ws = empty({static_cast<int64_t>(g.C * g.splits * sizeof(SumPair<A>))},
                      TensorOptions(DType::u8).device(x.device()));
    auto* partial = static_cast<SumPair<A>*>(ws.data_ptr());
    const dim3 grid(static_cast<unsigned>(g.C), static_cast<unsigned>(g.splits));
    with_index_type(g.M, [&](auto zero) {
      using I = decltype(zero);
      batchnorm_reduce_bwd_kernel<scalar_t, A, I><<<grid, kBnThreads, 0, stream()>>>(
          partial, static_cast<const scalar_t*>(gy.data_ptr()), static_cast<const scalar_t*>(x.data_ptr()),
          static_cast<const A*>(mean.data_ptr()), g.C, static_cast<I>(g.S), static_cast<I>(g.M),
          static_cast<I>(g.per));
    });
    RG_CUDA_LAUNCH_CHECK("batchnorm_reduce_bwd_kernel");
    batchnorm_reduce_finish_bwd_kernel<A><<<grid_for(g.C), kThreads, 0, stream()>>>(
        static_cast<A*>(sum_dy.data_ptr()), static_cast<A*>(sum_dy_xmu.data_ptr()), partial, g.C, g.splits);
    RG_CUDA_LAUNCH_CHECK("batchnorm_reduce_finish_bwd_kernel");
  });
}

void batchnorm_fwd_cuda(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                        const Tensor& weight, const Tensor& bias) {
  const BnGeometry g = bn_geometry(x);
  RG_CHECK(y.is_contiguous() && y.sizes() == x.sizes(), "batchnorm_fwd: y must be contiguous like x");
  RG_CU_DISPATCH_FLOAT(x.dtype(), "batchnorm_fwd", [&] {
    using A = bn_acc_t<scalar_t>;
    const ChannelCoefs<A> k{static_cast<const A*>(mean.data_ptr()), static_cast<const A*>(invstd.data_ptr()),
                            opt_ptr<A>(weight), opt_ptr<A>(bias), nullptr, nullptr};
    auto* yp = static_cast<scalar_t*>(y.data_ptr());
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    constexpr int W = pack_width<scalar_t>();
    const bool vec = g.S % W == 0 && aligned_to(yp, 16) && aligned_to(xp, 16);
    const int64_t numel = x.numel();
    with_index_type(numel, [&](auto zero) {
      using I = decltype(zero);
      if (vec) {
        batchnorm_elemt_fwd_kernel<W, scalar_t, A, I><<<grid_for(numel / W), kThreads, 0, stream()>>>(
            yp, xp, k, static_cast<I>(numel), static_cast<I>(g.S), static_cast<I>(g.C));
      } else {
        batchnorm_elemt_fwd_kernel<1, scalar_t, A, I><<<grid_for(numel), kThreads, 0, stream()>>>(
            yp, xp, k, static_cast<I>(numel), static_cast<I>(g.S), static_cast<I>(g.C));
      }
    });
    RG_CUDA_LAUNCH_CHECK("batchnorm_elemt_fwd_kernel");
  });
}

void batchnorm_bwd_elemt_cuda(const Tensor& gx, const Tensor& gy, const Tensor& x, const Tensor& mean,
                              const Tensor& invstd, const Tensor& weight, const Tensor& mean_dy,
                              const Tensor& mean_dy_xmu) {
  const BnGeometry g = bn_geometry(x);
  RG_CHECK(gx.is_contiguous() && gy.is_contiguous() && gx.sizes() == x.sizes() && gy.sizes() == x.sizes(),
           "batchnorm_bwd_elemt: gx and gy must be contiguous like x");
  RG_CU_DISPATCH_FLOAT(x.dtype(), "batchnorm_bwd_elemt", [&] {
    using A = bn_acc_t<scalar_t>;
    const ChannelCoefs<A> k{static_cast<const A*>(mean.data_ptr()), static_cast<const A*>(invstd.data_ptr()),
                            opt_ptr<A>(weight), nullptr, static_cast<const A*>(mean_dy.data_ptr()),
                            static_cast<const A*>(mean_dy_xmu.data_ptr())};
    auto* gxp = static_cast<scalar_t*>(gx.data_ptr());
    const auto* gyp = static_cast<const scalar_t*>(gy.data_ptr());
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    constexpr int W = pack_width<scalar_t>();
    const bool vec = g.S % W == 0 && aligned_to(gxp, 16) && aligned_to(gyp, 16) && aligned_to(xp, 16);
    const int64_t numel = x.numel();
    with_index_type(numel, [&](auto zero) {
      using I = decltype(zero);
      if (vec) {
        batchnorm_elemt_bwd_kernel<W, scalar_t, A, I><<<grid_for(numel / W), kThreads, 0, stream()>>>(
            gxp, gyp, xp, k, static_cast<I>(numel), static_cast<I>(g.S), static_cast<I>(g.C));
      } else {
        batchnorm_elemt_bwd_kernel<1, scalar_t, A, I><<<grid_for(numel), kThreads, 0, stream()>>>(
            gxp, gyp, xp, k, static_cast<I>(numel), static_cast<I>(g.S), static_cast<I>(g.C));
      }
    });
    RG_CUDA_LAUNCH_CHECK("batchnorm_elemt_bwd_kernel");
  });
}

}  // namespace rg
