// CUDA pooling and nearest upsampling (NCHW, contiguous), the twins of core/cpu/pool.cpp with the
// same windows (core/pool_index.h). Forward: one thread per output; backward: one thread per
// input element gathering from the outputs that read it, in increasing output order (no atomics,
// deterministic, and the same summation order as the CPU kernels). f16/bf16 accumulate in f32.
#include <limits>

#include "core/pool_index.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;
using namespace rg::pool;

namespace {
// Plane geometry plus the pooling parameters (unused ones zero).
struct PoolGeom {
  int64_t planes, H, W, Ho, Wo;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;
};
}  // namespace

// ---- kernels

template <typename T, typename I>
static __global__ void max_pool2d_fwd_kernel(T* __restrict__ y, int64_t* __restrict__ ind, const T* __restrict__ x,
                                             PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.Ho * g.Wo);
  grid_stride(total, [&](I o) {
    const I ow = o % static_cast<I>(g.Wo);
    const I t = o / static_cast<I>(g.Wo);
    const I oh = t % static_cast<I>(g.Ho);
    const I pl = t / static_cast<I>(g.Ho);
    const T* in = x + static_cast<int64_t>(pl) * g.H * g.W;
    int64_t h0 = static_cast<int64_t>(oh) * g.sh - g.ph;
    const int64_t h1 = min64(h0 + (g.kh - 1) * g.dh + 1, g.H);
    while (h0 < 0) h0 += g.dh;
    int64_t w0 = static_cast<int64_t>(ow) * g.sw - g.pw;
    const int64_t w1 = min64(w0 + (g.kw - 1) * g.dw + 1, g.W);
    while (w0 < 0) w0 += g.dw;
    // as the CPU kernel: the first valid position until beaten; NaN always wins; ties keep the first
    A best = lowest<A>();
    int64_t best_i = h0 * g.W + w0;
    for (int64_t ih = h0; ih < h1; ih += g.dh) {
      for (int64_t iw = w0; iw < w1; iw += g.dw) {
        const A v = cast<A>(in[ih * g.W + iw]);
        if (v > best || v != v) {
          best = v;
          best_i = ih * g.W + iw;
        }
      }
    }
    y[o] = cast<T>(best);
    ind[o] = best_i;
  });
}

// gx[pl, ih, iw] = the sum of gy over the outputs whose index is ih * W + iw.
template <typename T, typename I>
static __global__ void max_pool2d_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gy,
                                             const int64_t* __restrict__ ind, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.H * g.W);
  grid_stride(total, [&](I e) {
    const I iw = e % static_cast<I>(g.W);
    const I t = e / static_cast<I>(g.W);
    const I ih = t % static_cast<I>(g.H);
    const I pl = t / static_cast<I>(g.H);
    const int64_t target = static_cast<int64_t>(ih) * g.W + iw;
    int64_t oh0, oh1, ow0, ow1;
    window_dst_range(ih, g.sh, g.ph, (g.kh - 1) * g.dh + 1, g.Ho, &oh0, &oh1);
    window_dst_range(iw, g.sw, g.pw, (g.kw - 1) * g.dw + 1, g.Wo, &ow0, &ow1);
    const int64_t base = static_cast<int64_t>(pl) * g.Ho * g.Wo;
    A acc = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t o = base + oh * g.Wo + ow;
        if (ind[o] == target) acc += cast<A>(gy[o]);
      }
    }
    gx[e] = cast<T>(acc);
  });
}

template <typename T, typename I>
static __global__ void avg_pool2d_fwd_kernel(T* __restrict__ y, const T* __restrict__ x, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.Ho * g.Wo);
  grid_stride(total, [&](I o) {
    const I ow = o % static_cast<I>(g.Wo);
    const I t = o / static_cast<I>(g.Wo);
    const I oh = t % static_cast<I>(g.Ho);
    const I pl = t / static_cast<I>(g.Ho);
    const T* in = x + static_cast<int64_t>(pl) * g.H * g.W;
    int64_t h0, h1, lh, w0, w1, lw;
    avg_window(oh, g.sh, g.ph, g.kh, g.H, &h0, &h1, &lh);
    avg_window(ow, g.sw, g.pw, g.kw, g.W, &w0, &w1, &lw);
    A out = A(0);
    if (h0 < h1 && w0 < w1) {
      A sum = A(0);
      for (int64_t ih = h0; ih < h1; ++ih) {
        for (int64_t iw = w0; iw < w1; ++iw) sum += cast<A>(in[ih * g.W + iw]);
      }
      const int64_t div = g.count_include_pad ? lh * lw : (h1 - h0) * (w1 - w0);
      out = sum / static_cast<A>(div);
    }
    y[o] = cast<T>(out);
  });
}

template <typename T, typename I>
static __global__ void avg_pool2d_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gy, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.H * g.W);
  grid_stride(total, [&](I e) {
    const I iw = e % static_cast<I>(g.W);
    const I t = e / static_cast<I>(g.W);
    const I ih = t % static_cast<I>(g.H);
    const I pl = t / static_cast<I>(g.H);
    int64_t oh0, oh1, ow0, ow1;
    window_dst_range(ih, g.sh, g.ph, g.kh, g.Ho, &oh0, &oh1);
    window_dst_range(iw, g.sw, g.pw, g.kw, g.Wo, &ow0, &ow1);
    const T* gp = gy + static_cast<int64_t>(pl) * g.Ho * g.Wo;
    A acc = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t h0, h1, lh;
      avg_window(oh, g.sh, g.ph, g.kh, g.H, &h0, &h1, &lh);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t w0, w1, lw;
        avg_window(ow, g.sw, g.pw, g.kw, g.W, &w0, &w1, &lw);
        if (iw < w0 || iw >= w1) continue;
        const int64_t div = g.count_include_pad ? lh * lw : (h1 - h0) * (w1 - w0);
        acc += cast<A>(gp[oh * g.Wo + ow]) / static_cast<A>(div);
      }
    }
    gx[e] = cast<T>(acc);
  });
}

template <typename T, typename I>
static __global__ void adaptive_avg_pool2d_fwd_kernel(T* __restrict__ y, const T* __restrict__ x, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.Ho * g.Wo);
  grid_stride(total, [&](I o) {
    const I ow = o % static_cast<I>(g.Wo);
    const I t = o / static_cast<I>(g.Wo);
    const I oh = t % static_cast<I>(g.Ho);
    const I pl = t / static_cast<I>(g.Ho);
    const T* in = x + static_cast<int64_t>(pl) * g.H * g.W;
    const int64_t h0 = adaptive_start(oh, g.H, g.Ho), h1 = adaptive_end(oh, g.H, g.Ho);
    const int64_t w0 = adaptive_start(ow, g.W, g.Wo), w1 = adaptive_end(ow, g.W, g.Wo);
    A sum = A(0);
    for (int64_t ih = h0; ih < h1; ++ih) {
      for (int64_t iw = w0; iw < w1; ++iw) sum += cast<A>(in[ih * g.W + iw]);
    }
    y[o] = cast<T>(sum / static_cast<A>((h1 - h0) * (w1 - w0)));
  });
}

template <typename T, typename I>
static __global__ void adaptive_avg_pool2d_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gy, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.H * g.W);
  grid_stride(total, [&](I e) {
    const I iw = e % static_cast<I>(g.W);
    const I t = e / static_cast<I>(g.W);
    const I ih = t % static_cast<I>(g.H);
    const I pl = t / static_cast<I>(g.H);
    int64_t oh0, oh1, ow0, ow1;
    adaptive_dst_range(ih, g.H, g.Ho, &oh0, &oh1);
    adaptive_dst_range(iw, g.W, g.Wo, &ow0, &ow1);
    const T* gp = gy + static_cast<int64_t>(pl) * g.Ho * g.Wo;
    A acc = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t h0 = adaptive_start(oh, g.H, g.Ho), h1 = adaptive_end(oh, g.H, g.Ho);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t w0 = adaptive_start(ow, g.W, g.Wo), w1 = adaptive_end(ow, g.W, g.Wo);
        if (iw < w0 || iw >= w1) continue;
        acc += cast<A>(gp[oh * g.Wo + ow]) / static_cast<A>((h1 - h0) * (w1 - w0));
      }
    }
    gx[e] = cast<T>(acc);
  });
}

template <typename T, typename I>
static __global__ void upsample_nearest2d_fwd_kernel(T* __restrict__ y, const T* __restrict__ x, PoolGeom g) {
  const I total = static_cast<I>(g.planes * g.Ho * g.Wo);
  grid_stride(total, [&](I o) {
    const I ow = o % static_cast<I>(g.Wo);
    const I t = o / static_cast<I>(g.Wo);
    const I oh = t % static_cast<I>(g.Ho);
    const I pl = t / static_cast<I>(g.Ho);
    const int64_t ih = nearest_src(oh, g.H, g.Ho), iw = nearest_src(ow, g.W, g.Wo);
    y[o] = x[(static_cast<int64_t>(pl) * g.H + ih) * g.W + iw];
  });
}

template <typename T, typename I>
static __global__ void upsample_nearest2d_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gy, PoolGeom g) {
  using A = acc_t<T>;
  const I total = static_cast<I>(g.planes * g.H * g.W);
  grid_stride(total, [&](I e) {
    const I iw = e % static_cast<I>(g.W);
    const I t = e / static_cast<I>(g.W);
    const I ih = t % static_cast<I>(g.H);
    const I pl = t / static_cast<I>(g.H);
    int64_t oh0, oh1, ow0, ow1;
    nearest_dst_range(ih, g.H, g.Ho, &oh0, &oh1);
    nearest_dst_range(iw, g.W, g.Wo, &ow0, &ow1);
    const T* gp = gy + static_cast<int64_t>(pl) * g.Ho * g.Wo;
    A acc = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow = ow0; ow < ow1; ++ow) acc += cast<A>(gp[oh * g.Wo + ow]);
    }
    gx[e] = cast<T>(acc);
  });
}

// ---- launchers

namespace {

PoolGeom geom_of(const Tensor& x, const Tensor& y, const PoolParams* p, const char* op) {
  RG_CHECK(x.dim() == 4 && y.dim() == 4 && x.size(0) == y.size(0) && x.size(1) == y.size(1), op,
           ": kernel expects (N, C, H, W) tensors with equal N and C, got ", shape_str(x.sizes()), " and ",
           shape_str(y.sizes()));
  RG_CHECK(x.is_contiguous() && y.is_contiguous(), op, ": kernel expects contiguous tensors");
  PoolGeom g{};
  g.planes = x.size(0) * x.size(1), g.H = x.size(2), g.W = x.size(3), g.Ho = y.size(2), g.Wo = y.size(3);
  if (p) {
    g.kh = p->kernel[0], g.kw = p->kernel[1], g.sh = p->stride[0], g.sw = p->stride[1];
    g.ph = p->padding[0], g.pw = p->padding[1], g.dh = p->dilation[0], g.dw = p->dilation[1];
    g.count_include_pad = p->count_include_pad;
  }
  return g;
}

// Launches kernel<scalar_t, I> over `total` threads with 32-bit indices when every flat index
// of x and y fits (Note [32-bit offsets] in common.cuh), else 64-bit.
#define RG_POOL_LAUNCH(KERNEL, DTYPE, TOTAL, FITS32, ...)                                                   \
  RG_CU_DISPATCH_FLOAT(DTYPE, #KERNEL, [&] {                                                                 \
    if (FITS32) {                                                                                            \
      KERNEL<scalar_t, uint32_t><<<grid_for(TOTAL), kThreads, 0, stream()>>>(__VA_ARGS__);                   \
    } else {                                                                                                 \
      KERNEL<scalar_t, int64_t><<<grid_for(TOTAL), kThreads, 0, stream()>>>(__VA_ARGS__);                    \
    }                                                                                                        \
    RG_CUDA_LAUNCH_CHECK(#KERNEL);                                                                           \
  })

bool fits32(const Tensor& a, const Tensor& b) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  return a.numel() <= kMax && b.numel() <= kMax;
}

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace

void max_pool2d_cuda(const Tensor& y, const Tensor& indices, const Tensor& x, const PoolParams& p) {
  const PoolGeom g = geom_of(x, y, &p, "max_pool2d");  // x (N, C, H, W), y and indices (N, C, Ho, Wo)
  RG_CHECK(indices.dtype() == DType::i64 && indices.sizes() == y.sizes() && indices.is_contiguous(),
           "max_pool2d: indices must be contiguous int64 of the output's shape");
  if (y.numel() == 0) return;
  RG_POOL_LAUNCH(max_pool2d_fwd_kernel, x.dtype(), y.numel(), fits32(x, y), ptr<scalar_t>(y), ptr<int64_t>(indices),
                 ptr<const scalar_t>(x), g);
}

void max_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& indices, const PoolParams& p) {
  const PoolGeom g = geom_of(gx, gy, &p, "max_pool2d_bwd");  // gx (N, C, H, W), gy and indices (N, C, Ho, Wo)
  RG_CHECK(indices.dtype() == DType::i64 && indices.sizes() == gy.sizes() && indices.is_contiguous(),
           "max_pool2d_bwd: indices must be contiguous int64 of the output's shape");
  if (gx.numel() == 0) return;
  RG_POOL_LAUNCH(max_pool2d_bwd_kernel, gx.dtype(), gx.numel(), fits32(gx, gy), ptr<scalar_t>(gx),
                 ptr<const scalar_t>(gy), ptr<const int64_t>(indices), g);
}

void avg_pool2d_cuda(const Tensor& y, const Tensor& x, const PoolParams& p) {
  const PoolGeom g = geom_of(x, y, &p, "avg_pool2d");  // x (N, C, H, W), y (N, C, Ho, Wo)
  if (y.numel() == 0) return;
  RG_POOL_LAUNCH(avg_pool2d_fwd_kernel, x.dtype(), y.numel(), fits32(x, y), ptr<scalar_t>(y), ptr<const scalar_t>(x), g);
}

void avg_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy, const PoolParams& p) {
  const PoolGeom g = geom_of(gx, gy, &p, "avg_pool2d_bwd");  // gx (N, C, H, W), gy (N, C, Ho, Wo)
  if (gx.numel() == 0) return;
  RG_POOL_LAUNCH(avg_pool2d_bwd_kernel, gx.dtype(), gx.numel(), fits32(gx, gy), ptr<scalar_t>(gx),
                 ptr<const scalar_t>(gy), g);
}

void adaptive_avg_pool2d_cuda(const Tensor& y, const Tensor& x) {
  const PoolGeom g = geom_of(x, y, nullptr, "adaptive_avg_pool2d");  // x (N, C, H, W), y (N, C, Ho, Wo)
  if (y.numel() == 0) return;
  RG_POOL_LAUNCH(adaptive_avg_pool2d_fwd_kernel, x.dtype(), y.numel(), fits32(x, y), ptr<scalar_t>(y),
                 ptr<const scalar_t>(x), g);
}

void adaptive_avg_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy) {
  const PoolGeom g = geom_of(gx, gy, nullptr, "adaptive_avg_pool2d_bwd");  // gx (N, C, H, W), gy (N, C, Ho, Wo)
  if (gx.numel() == 0) return;
  RG_POOL_LAUNCH(adaptive_avg_pool2d_bwd_kernel, gx.dtype(), gx.numel(), fits32(gx, gy), ptr<scalar_t>(gx),
                 ptr<const scalar_t>(gy), g);
}

void upsample_nearest2d_cuda(const Tensor& y, const Tensor& x) {
  const PoolGeom g = geom_of(x, y, nullptr, "upsample_nearest2d");  // x (N, C, H, W), y (N, C, Ho, Wo)
  if (y.numel() == 0) return;
  RG_POOL_LAUNCH(upsample_nearest2d_fwd_kernel, x.dtype(), y.numel(), fits32(x, y), ptr<scalar_t>(y),
                 ptr<const scalar_t>(x), g);
}

void upsample_nearest2d_bwd_cuda(const Tensor& gx, const Tensor& gy) {
  const PoolGeom g = geom_of(gx, gy, nullptr, "upsample_nearest2d_bwd");  // gx (N, C, H, W), gy (N, C, Ho, Wo)
  if (gx.numel() == 0) return;
  RG_POOL_LAUNCH(upsample_nearest2d_bwd_kernel, gx.dtype(), gx.numel(), fits32(gx, gy), ptr<scalar_t>(gx),
                 ptr<const scalar_t>(gy), g);
}

}  // namespace rg
