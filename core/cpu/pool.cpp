// CPU pooling and nearest upsampling (NCHW, contiguous): max pool (values + flat h*W+w indices),
// average pool, adaptive average pool, nearest upsample, and their gradients. One thread per
// (n, c) plane; f16/bf16 compute and accumulate in f32. Windows: core/pool_index.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"
#include "core/pool_index.h"

namespace rg {

namespace {

using namespace rg::pool;

// f(plane) for every (n, c) plane, in parallel; `work` is the cost of one plane in elements.
template <typename F>
void for_planes(int64_t planes, int64_t work, F&& f) {
  const int64_t grain = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(1, work));
  cpu::parallel_for(planes, grain, [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) f(pl);
  });
}

struct Planes {
  int64_t planes, H, W, Ho, Wo;
};
Planes planes_of(const Tensor& x, const Tensor& y, const char* op) {
  RG_CHECK(x.dim() == 4 && y.dim() == 4 && x.size(0) == y.size(0) && x.size(1) == y.size(1), op,
           ": kernel expects (N, C, H, W) tensors with equal N and C, got ", shape_str(x.sizes()), " and ",
           shape_str(y.sizes()));
  RG_CHECK(x.is_contiguous() && y.is_contiguous(), op, ": kernel expects contiguous tensors");
  return {x.size(0) * x.size(1), x.size(2), x.size(3), y.size(2), y.size(3)};
}

// Gradient kernels that scatter: each plane accumulates in A (a separate f32 buffer for f16/bf16,
// the output itself otherwise), then casts. f(plane, acc) adds into acc (H * W, zeroed).
template <typename T, typename F>
void scatter_planes(const Tensor& gx, const Planes& s, F&& f) {
  using A = cpu::acc_t<T>;
  T* gxp = static_cast<T*>(gx.data_ptr());
  const int64_t HW = s.H * s.W;
  for_planes(s.planes, HW + s.Ho * s.Wo, [&](int64_t pl) {
    T* dst = gxp + pl * HW;
    if constexpr (std::is_same_v<T, A>) {
      std::fill(dst, dst + HW, A(0));
      f(pl, dst);
    } else {
      std::vector<A> acc(static_cast<size_t>(HW), A(0));
      f(pl, acc.data());
      for (int64_t i = 0; i < HW; ++i) dst[i] = cpu::cast<T>(acc[i]);
    }
  });
}

// Note [CPU max pool order]
// PyTorch's rule, per output: the first valid tap (row-major over the window) is the index until a
// value beats -inf; a NaN always wins (a later NaN replaces an earlier one); ties keep the first.
// The kernel below walks the taps in that same row-major order, but with the output column as the
// innermost loop: for tap (i, j) it updates a whole output row's running maxima at once (a
// contiguous or strided load, a compare and two selects per output: vectorised). `tap` holds the
// winning tap as i * kw + j and becomes the flat input index at the end.
template <typename T>
void max_pool_fwd(const Tensor& y, const Tensor& ind, const Tensor& x, const PoolParams& p, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* yp = static_cast<T*>(y.data_ptr());
  int64_t* ip = static_cast<int64_t*>(ind.data_ptr());
  const int64_t kh = p.kernel[0], kw = p.kernel[1], sh = p.stride[0], sw = p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1], dh = p.dilation[0], dw = p.dilation[1];
  const int64_t Wo = s.Wo;
  // Valid output columns [lo[j], hi[j]) of tap column j: 0 <= ow * sw - pw + j * dw < W.
  std::vector<int64_t> lo(static_cast<size_t>(kw)), hi(static_cast<size_t>(kw));
  for (int64_t j = 0; j < kw; ++j) {
    const int64_t off = j * dw - pw;
    int64_t l = off >= 0 ? 0 : ceil_div(-off, sw);
    int64_t h = s.W - 1 - off < 0 ? 0 : min64((s.W - 1 - off) / sw + 1, Wo);
    lo[j] = min64(l, h), hi[j] = h;
  }
  // The first valid tap column of each output column (its index before anything beats -inf).
  std::vector<int32_t> first_j(static_cast<size_t>(Wo));
  for (int64_t ow = 0; ow < Wo; ++ow) {
    int64_t j = 0;
    while (j + 1 < kw && ow * sw - pw + j * dw < 0) ++j;
    first_j[ow] = static_cast<int32_t>(j);
  }
  // Input offset of tap t = i * kw + j from the window's corner.
  std::vector<int64_t> tap_off(static_cast<size_t>(kh * kw));
  for (int64_t i = 0; i < kh; ++i) {
    for (int64_t j = 0; j < kw; ++j) tap_off[i * kw + j] = i * dh * s.W + j * dw;
  }
  const int64_t rows = s.planes * s.Ho;
  cpu::parallel_for(rows, max64(1, cpu::kGrain / max64(1, Wo * kh * kw)), [&](int64_t rb, int64_t re) {
    std::vector<A> best(static_cast<size_t>(Wo));
    std::vector<int32_t> tap(static_cast<size_t>(Wo));
    A* bp = best.data();
    int32_t* tp = tap.data();
    for (int64_t r = rb; r < re; ++r) {
      const int64_t pl = r / s.Ho, oh = r - pl * s.Ho;
      const T* in = xp + pl * s.H * s.W;
      int64_t i0 = 0;
      while (i0 + 1 < kh && oh * sh - ph + i0 * dh < 0) ++i0;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        bp[ow] = -std::numeric_limits<A>::infinity();
        tp[ow] = static_cast<int32_t>(i0 * kw) + first_j[ow];
      }
      for (int64_t i = i0; i < kh; ++i) {
        const int64_t ih = oh * sh - ph + i * dh;
        if (ih < 0) continue;
        if (ih >= s.H) break;
        const T* row = in + ih * s.W;
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t off = j * dw - pw;
          const auto t = static_cast<int32_t>(i * kw + j);
          const int64_t l = lo[j], h = hi[j];
          if (sw == 1) {
            const T* src = row + off;
#pragma omp simd
            for (int64_t ow = l; ow < h; ++ow) {
              const A v = cpu::cast<A>(src[ow]);
              const bool take = v > bp[ow] || v != v;
              bp[ow] = take ? v : bp[ow];
              tp[ow] = take ? t : tp[ow];
            }
          } else {
            const T* src = row + off;
#pragma omp simd
            for (int64_t ow = l; ow < h; ++ow) {
              const A v = cpu::cast<A>(src[ow * sw]);
              const bool take = v > bp[ow] || v != v;
              bp[ow] = take ? v : bp[ow];
              tp[ow] = take ? t : tp[ow];
            }
          }
        }
      }
      T* yo = yp + r * Wo;
      int64_t* io = ip + r * Wo;
      const int64_t corner = (oh * sh - ph) * s.W - pw;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        yo[ow] = cpu::cast<T>(bp[ow]);
        io[ow] = corner + ow * sw + tap_off[tp[ow]];
      }
    }
  });
}

template <typename T>
void max_pool_bwd(const Tensor& gx, const Tensor& gy, const Tensor& ind, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  const int64_t* ip = static_cast<const int64_t*>(ind.data_ptr());
  const int64_t HW = s.H * s.W, P = s.Ho * s.Wo;
  scatter_planes<T>(gx, s, [&](int64_t pl, A* acc) {
    for (int64_t o = 0; o < P; ++o) {
      const int64_t i = ip[pl * P + o];
      if (i >= 0 && i < HW) acc[i] += cpu::cast<A>(gyp[pl * P + o]);
    }
  });
}

template <typename T>
void avg_pool_fwd(const Tensor& y, const Tensor& x, const PoolParams& p, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* yp = static_cast<T*>(y.data_ptr());
  const int64_t kh = p.kernel[0], kw = p.kernel[1], sh = p.stride[0], sw = p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1];
  for_planes(s.planes, s.Ho * s.Wo * kh * kw, [&](int64_t pl) {
    const T* in = xp + pl * s.H * s.W;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      int64_t h0, h1, lh;
      avg_window(oh, sh, ph, kh, s.H, &h0, &h1, &lh);
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        int64_t w0, w1, lw;
        avg_window(ow, sw, pw, kw, s.W, &w0, &w1, &lw);
        A out = A(0);
        if (h0 < h1 && w0 < w1) {
          A sum = A(0);
          for (int64_t ih = h0; ih < h1; ++ih) {
            for (int64_t iw = w0; iw < w1; ++iw) sum += cpu::cast<A>(in[ih * s.W + iw]);
          }
          const int64_t div = p.count_include_pad ? lh * lw : (h1 - h0) * (w1 - w0);
          out = sum / static_cast<A>(div);
        }
        yp[pl * s.Ho * s.Wo + oh * s.Wo + ow] = cpu::cast<T>(out);
      }
    }
  });
}

template <typename T>
void avg_pool_bwd(const Tensor& gx, const Tensor& gy, const PoolParams& p, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  const int64_t kh = p.kernel[0], kw = p.kernel[1], sh = p.stride[0], sw = p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1];
  scatter_planes<T>(gx, s, [&](int64_t pl, A* acc) {
    const T* g = gyp + pl * s.Ho * s.Wo;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      int64_t h0, h1, lh;
      avg_window(oh, sh, ph, kh, s.H, &h0, &h1, &lh);
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        int64_t w0, w1, lw;
        avg_window(ow, sw, pw, kw, s.W, &w0, &w1, &lw);
        if (h0 >= h1 || w0 >= w1) continue;
        const int64_t div = p.count_include_pad ? lh * lw : (h1 - h0) * (w1 - w0);
        const A v = cpu::cast<A>(g[oh * s.Wo + ow]) / static_cast<A>(div);
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) acc[ih * s.W + iw] += v;
        }
      }
    }
  });
}

template <typename T>
void adaptive_fwd(const Tensor& y, const Tensor& x, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* yp = static_cast<T*>(y.data_ptr());
  for_planes(s.planes, s.H * s.W + s.Ho * s.Wo, [&](int64_t pl) {
    const T* in = xp + pl * s.H * s.W;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      const int64_t h0 = adaptive_start(oh, s.H, s.Ho), h1 = adaptive_end(oh, s.H, s.Ho);
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        const int64_t w0 = adaptive_start(ow, s.W, s.Wo), w1 = adaptive_end(ow, s.W, s.Wo);
        A sum = A(0);
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) sum += cpu::cast<A>(in[ih * s.W + iw]);
        }
        yp[pl * s.Ho * s.Wo + oh * s.Wo + ow] = cpu::cast<T>(sum / static_cast<A>((h1 - h0) * (w1 - w0)));
      }
    }
  });
}

template <typename T>
void adaptive_bwd(const Tensor& gx, const Tensor& gy, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  scatter_planes<T>(gx, s, [&](int64_t pl, A* acc) {
    const T* g = gyp + pl * s.Ho * s.Wo;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      const int64_t h0 = adaptive_start(oh, s.H, s.Ho), h1 = adaptive_end(oh, s.H, s.Ho);
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        const int64_t w0 = adaptive_start(ow, s.W, s.Wo), w1 = adaptive_end(ow, s.W, s.Wo);
        const A v = cpu::cast<A>(g[oh * s.Wo + ow]) / static_cast<A>((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) acc[ih * s.W + iw] += v;
        }
      }
    }
  });
}

template <typename T>
void upsample_fwd(const Tensor& y, const Tensor& x, const Planes& s) {
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* yp = static_cast<T*>(y.data_ptr());
  std::vector<int64_t> src_w(static_cast<size_t>(s.Wo));
  for (int64_t ow = 0; ow < s.Wo; ++ow) src_w[ow] = nearest_src(ow, s.W, s.Wo);
  for_planes(s.planes, s.Ho * s.Wo, [&](int64_t pl) {
    const T* in = xp + pl * s.H * s.W;
    T* out = yp + pl * s.Ho * s.Wo;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      const T* row = in + nearest_src(oh, s.H, s.Ho) * s.W;
      for (int64_t ow = 0; ow < s.Wo; ++ow) out[oh * s.Wo + ow] = row[src_w[ow]];
    }
  });
}

template <typename T>
void upsample_bwd(const Tensor& gx, const Tensor& gy, const Planes& s) {
  using A = cpu::acc_t<T>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  std::vector<int64_t> src_w(static_cast<size_t>(s.Wo));
  for (int64_t ow = 0; ow < s.Wo; ++ow) src_w[ow] = nearest_src(ow, s.W, s.Wo);
  scatter_planes<T>(gx, s, [&](int64_t pl, A* acc) {
    const T* g = gyp + pl * s.Ho * s.Wo;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      A* row = acc + nearest_src(oh, s.H, s.Ho) * s.W;
      for (int64_t ow = 0; ow < s.Wo; ++ow) row[src_w[ow]] += cpu::cast<A>(g[oh * s.Wo + ow]);
    }
  });
}

}  // namespace

void max_pool2d_cpu(const Tensor& y, const Tensor& indices, const Tensor& x, const PoolParams& p) {
  const Planes s = planes_of(x, y, "max_pool2d");
  RG_CHECK(indices.dtype() == DType::i64 && indices.sizes() == y.sizes() && indices.is_contiguous(),
           "max_pool2d: indices must be contiguous int64 of the output's shape");
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), "max_pool2d", [&] { max_pool_fwd<scalar_t>(y, indices, x, p, s); });
}

void max_pool2d_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& indices, const PoolParams&) {
  const Planes s = planes_of(gx, gy, "max_pool2d_bwd");
  RG_CHECK(indices.dtype() == DType::i64 && indices.sizes() == gy.sizes() && indices.is_contiguous(),
           "max_pool2d_bwd: indices must be contiguous int64 of the output's shape");
  if (gx.numel() == 0) return;
  RG_DISPATCH_FLOAT(gx.dtype(), "max_pool2d_bwd", [&] { max_pool_bwd<scalar_t>(gx, gy, indices, s); });
}

void avg_pool2d_cpu(const Tensor& y, const Tensor& x, const PoolParams& p) {
  const Planes s = planes_of(x, y, "avg_pool2d");
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), "avg_pool2d", [&] { avg_pool_fwd<scalar_t>(y, x, p, s); });
}

void avg_pool2d_bwd_cpu(const Tensor& gx, const Tensor& gy, const PoolParams& p) {
  const Planes s = planes_of(gx, gy, "avg_pool2d_bwd");
  if (gx.numel() == 0) return;
  RG_DISPATCH_FLOAT(gx.dtype(), "avg_pool2d_bwd", [&] { avg_pool_bwd<scalar_t>(gx, gy, p, s); });
}

void adaptive_avg_pool2d_cpu(const Tensor& y, const Tensor& x) {
  const Planes s = planes_of(x, y, "adaptive_avg_pool2d");
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), "adaptive_avg_pool2d", [&] { adaptive_fwd<scalar_t>(y, x, s); });
}

void adaptive_avg_pool2d_bwd_cpu(const Tensor& gx, const Tensor& gy) {
  const Planes s = planes_of(gx, gy, "adaptive_avg_pool2d_bwd");
  if (gx.numel() == 0) return;
  RG_DISPATCH_FLOAT(gx.dtype(), "adaptive_avg_pool2d_bwd", [&] { adaptive_bwd<scalar_t>(gx, gy, s); });
}

void upsample_nearest2d_cpu(const Tensor& y, const Tensor& x) {
  const Planes s = planes_of(x, y, "upsample_nearest2d");
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), "upsample_nearest2d", [&] { upsample_fwd<scalar_t>(y, x, s); });
}

void upsample_nearest2d_bwd_cpu(const Tensor& gx, const Tensor& gy) {
  const Planes s = planes_of(gx, gy, "upsample_nearest2d_bwd");
  if (gx.numel() == 0) return;
  RG_DISPATCH_FLOAT(gx.dtype(), "upsample_nearest2d_bwd", [&] { upsample_bwd<scalar_t>(gx, gy, s); });
}

}  // namespace rg
