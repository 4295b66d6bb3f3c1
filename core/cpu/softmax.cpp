// CPU softmax / log_softmax and their gradients along one dim of a contiguous tensor, viewed as
// (outer, n, inner). Max-subtracted, exponentials in acc_t, sums in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {

struct Layout {
  int64_t outer = 1, n = 1, inner = 1;
};

Layout layout_of(const Tensor& t, int64_t dim) {
  Layout l;
  if (t.dim() == 0) return l;
  for (int64_t d = 0; d < dim; ++d) l.outer *= t.size(d);
  l.n = t.size(dim);
  for (int64_t d = dim + 1; d < t.dim(); ++d) l.inner *= t.size(d);
  return l;
}

constexpr int64_t kColBlock = 512;  // inner positions handled together when the dim is not the last

template <typename T>
void softmax_rows(const T* x, T* y, const Layout& l, bool log) {  // inner == 1: rows are contiguous
  using A = cpu::acc_t<T>;
  const int64_t n = l.n;
  cpu::parallel_for(l.outer, std::max<int64_t>(1, cpu::kGrain / n), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const T* xr = x + row * n;
      T* yr = y + row * n;
      A m = -INFINITY;
      for (int64_t i = 0; i < n; ++i) {
        const A v = static_cast<A>(xr[i]);
        m = (v > m || v != v) ? v : m;
      }
      double s = 0;
      if (log) {
        for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<A>(xr[i]) - m);
        const A ls = static_cast<A>(std::log(s));  // (x - m) - log(s): no rounding of m + log(s)
        for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<T>((static_cast<A>(xr[i]) - m) - ls);
      } else if constexpr (std::is_same_v<T, A>) {
        for (int64_t i = 0; i < n; ++i) {
          const A ev = std::exp(xr[i] - m);
          yr[i] = ev;
          s += ev;
        }
        const A inv = static_cast<A>(1.0 / s);
        for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
      } else {  // half types: exponentiate twice rather than round twice
        for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<A>(xr[i]) - m);
        const A inv = static_cast<A>(1.0 / s);
        for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<T>(std::exp(static_cast<A>(xr[i]) - m) * inv);
      }
    }
  });
}

template <typename T>
void softmax_cols(const T* x, T* y, const Layout& l, bool log) {  // inner > 1: vectors across inner
  using A = cpu::acc_t<T>;
  const int64_t n = l.n, inner = l.inner;
  const int64_t nb = (inner + kColBlock - 1) / kColBlock;
  cpu::parallel_for(l.outer * nb, std::max<int64_t>(1, cpu::kGrain / (n * kColBlock)), [&](int64_t tb, int64_t te) {
    A m[kColBlock];
    double s[kColBlock];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t o = t / nb, j0 = (t - o * nb) * kColBlock, jn = std::min(kColBlock, inner - j0);
      const T* xs = x + o * n * inner + j0;
      T* ys = y + o * n * inner + j0;
      for (int64_t j = 0; j < jn; ++j) {
        m[j] = -INFINITY;
        s[j] = 0;
      }
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = xs + i * inner;
        for (int64_t j = 0; j < jn; ++j) {
          const A v = static_cast<A>(xr[j]);
          m[j] = (v > m[j] || v != v) ? v : m[j];
        }
      }
      const bool keep = !log && std::is_same_v<T, A>;  // store exp(x - m) and rescale it below
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = xs + i * inner;
        T* yr = ys + i * inner;
        if (keep) {
          for (int64_t j = 0; j < jn; ++j) {
            const A ev = std::exp(static_cast<A>(xr[j]) - m[j]);
            yr[j] = static_cast<T>(ev);
            s[j] += ev;
          }
        } else {
          for (int64_t j = 0; j < jn; ++j) s[j] += std::exp(static_cast<A>(xr[j]) - m[j]);
        }
      }
      if (keep) {
        for (int64_t j = 0; j < jn; ++j) s[j] = 1.0 / s[j];
        for (int64_t i = 0; i < n; ++i) {
          T* yr = ys + i * inner;
          for (int64_t j = 0; j < jn; ++j) yr[j] = static_cast<T>(static_cast<A>(yr[j]) * static_cast<A>(s[j]));
        }
      } else if (log) {
        for (int64_t j = 0; j < jn; ++j) s[j] = std::log(s[j]);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < jn; ++j) {
            ys[i * inner + j] = static_cast<T>((static_cast<A>(xs[i * inner + j]) - m[j]) - static_cast<A>(s[j]));
          }
        }
      } else {
        for (int64_t j = 0; j < jn; ++j) s[j] = 1.0 / s[j];
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < jn; ++j) {
            ys[i * inner + j] =
                static_cast<T>(std::exp(static_cast<A>(xs[i * inner + j]) - m[j]) * static_cast<A>(s[j]));
          }
        }
      }
    }
  });
}

// softmax: gx = y * (gy - sum(gy * y)); log_softmax: gx = gy - exp(y) * sum(gy).
template <typename T>
void softmax_bwd_typed(T* gx, const T* gy, const T* y, const Layout& l, bool log) {
  using A = cpu::acc_t<T>;
  const int64_t n = l.n, inner = l.inner;
  const int64_t nb = (inner + kColBlock - 1) / kColBlock;
  cpu::parallel_for(l.outer * nb, std::max<int64_t>(1, cpu::kGrain / (n * std::min(inner, kColBlock))),
                    [&](int64_t tb, int64_t te) {
    double dot[kColBlock];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t o = t / nb, j0 = (t - o * nb) * kColBlock, jn = std::min(kColBlock, inner - j0);
      const int64_t base = o * n * inner + j0;
      for (int64_t j = 0; j < jn; ++j) dot[j] = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t r = base + i * inner;
        for (int64_t j = 0; j < jn; ++j) {
          const double g = static_cast<double>(static_cast<A>(gy[r + j]));
          dot[j] += log ? g : g * static_cast<double>(static_cast<A>(y[r + j]));
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t r = base + i * inner;
        for (int64_t j = 0; j < jn; ++j) {
          const A g = static_cast<A>(gy[r + j]), yv = static_cast<A>(y[r + j]);
          const A d = static_cast<A>(dot[j]);
          gx[r + j] = static_cast<T>(log ? g - std::exp(yv) * d : yv * (g - d));
        }
      }
    }
  });
}

}  // namespace

void softmax_cpu(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  RG_CHECK(x.is_contiguous() && out.is_contiguous(), "softmax: the kernel needs contiguous tensors");
  const Layout l = layout_of(x, dim);
  if (x.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), log ? "log_softmax" : "softmax", [&] {
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* yp = static_cast<scalar_t*>(out.data_ptr());
    if (l.inner == 1) softmax_rows(xp, yp, l, log);
    else softmax_cols(xp, yp, l, log);
  });
}

void softmax_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim, bool log) {
  RG_CHECK(gx.is_contiguous() && gy.is_contiguous() && y.is_contiguous(),
           "softmax_backward: the kernel needs contiguous tensors");
  const Layout l = layout_of(y, dim);
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&] {
    softmax_bwd_typed(static_cast<scalar_t*>(gx.data_ptr()), static_cast<const scalar_t*>(gy.data_ptr()),
                      static_cast<const scalar_t*>(y.data_ptr()), l, log);
  });
}

}  // namespace rg
