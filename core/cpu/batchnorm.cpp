// CPU batch norm kernels on contiguous x (N, C, *): per-channel statistics (two-pass, double
// accumulation in vector lanes), the normalising forward, and the two backward pieces (per-channel
// sums, then the elementwise input gradient). Note [Batch norm pieces] in nn/functional_norm.cpp.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {

// x viewed as (N, C, S) with S the product of the trailing dims.
struct NCS {
  int64_t n, c, s;
};
NCS ncs_of(const Tensor& x) {
  RG_CHECK(x.dim() >= 2 && x.is_contiguous(), "batchnorm kernels expect a contiguous (N, C, *) tensor, got ",
           x.describe());
  return {x.size(0), x.size(1), x.numel() / (x.size(0) * x.size(1))};
}

// Per-channel statistics are f32 for f32/f16/bf16 inputs and f64 for f64 inputs.
template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename S>
const S* opt_ptr(const Tensor& t) {
  return t.defined() ? t.data<S>() : nullptr;
}

// Calls f(row, len) for every (n, s-range) row of channel c: row points at x[n, c, 0].
template <typename T, typename F>
void for_channel_rows(const T* x, const NCS& d, int64_t c, F&& f) {
  for (int64_t n = 0; n < d.n; ++n) f(x + (n * d.c + c) * d.s, n);
}

}  // namespace

void batchnorm_stats_cpu(const Tensor& mean, const Tensor& var, const Tensor& x) {
  const NCS d = ncs_of(x);
  RG_DISPATCH_FLOAT(x.dtype(), "batchnorm_stats", [&] {
    using S = stat_t<scalar_t>;
    const auto* xp = x.data<scalar_t>();
    S* mp = mean.data<S>();
    S* vp = var.data<S>();
    const double count = static_cast<double>(d.n * d.s);
    cpu::parallel_for(d.c, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        double sum = 0;
        for_channel_rows(xp, d, c, [&](const scalar_t* row, int64_t) {
_Pragma("omp simd reduction(+ : sum)")
          for (int64_t i = 0; i < d.s; ++i) sum += cpu::cast<double>(row[i]);
        });
        const double m = sum / count;
        double ss = 0;  // second pass: squared deviations from the mean (no cancellation)
        for_channel_rows(xp, d, c, [&](const scalar_t* row, int64_t) {
_Pragma("omp simd reduction(+ : ss)")
          for (int64_t i = 0; i < d.s; ++i) {
            const double dv = cpu::cast<double>(row[i]) - m;
            ss += dv * dv;
          }
        });
        mp[c] = static_cast<S>(m);
        vp[c] = static_cast<S>(ss / count);
      }
    });
  });
}

void batchnorm_fwd_cpu(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                       const Tensor& weight, const Tensor& bias) {
  const NCS d = ncs_of(x);
  RG_DISPATCH_FLOAT(x.dtype(), "batchnorm_fwd", [&] {
    using S = stat_t<scalar_t>;
    using A = cpu::acc_t<scalar_t>;
    const auto* xp = x.data<scalar_t>();
    auto* yp = y.data<scalar_t>();
    const S *mp = mean.data<S>(), *ip = invstd.data<S>();
    const S *wp = opt_ptr<S>(weight), *bp = opt_ptr<S>(bias);
    cpu::parallel_for(d.n * d.c, std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(d.s, 1)),
                      [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        const int64_t c = r % d.c;
        const A m = static_cast<A>(mp[c]), is = static_cast<A>(ip[c]);
        const A w = wp ? static_cast<A>(wp[c]) : A(1), b = bp ? static_cast<A>(bp[c]) : A(0);
        const scalar_t* xr = xp + r * d.s;
        scalar_t* yr = yp + r * d.s;
        for (int64_t i = 0; i < d.s; ++i) yr[i] = cpu::cast<scalar_t>((cpu::cast<A>(xr[i]) - m) * is * w + b);
      }
    });
  });
}

void batchnorm_bwd_reduce_cpu(const Tensor& sum_dy, const Tensor& sum_dy_xmu, const Tensor& gy, const Tensor& x,
                              const Tensor& mean) {
  const NCS d = ncs_of(x);
  RG_DISPATCH_FLOAT(x.dtype(), "batchnorm_bwd_reduce", [&] {
    using S = stat_t<scalar_t>;
    const auto* xp = x.data<scalar_t>();
    const auto* gp = gy.data<scalar_t>();
    const S* mp = mean.data<S>();
    S *sp = sum_dy.data<S>(), *sxp = sum_dy_xmu.data<S>();
    cpu::parallel_for(d.c, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        const double m = static_cast<double>(mp[c]);
        double s1 = 0, s2 = 0;
        for (int64_t n = 0; n < d.n; ++n) {
          const int64_t base = (n * d.c + c) * d.s;
_Pragma("omp simd reduction(+ : s1, s2)")
          for (int64_t i = 0; i < d.s; ++i) {
            const double g = cpu::cast<double>(gp[base + i]);
            s1 += g;
            s2 += g * (cpu::cast<double>(xp[base + i]) - m);
          }
        }
        sp[c] = static_cast<S>(s1);
        sxp[c] = static_cast<S>(s2);
      }
    });
  });
}

void batchnorm_bwd_elemt_cpu(const Tensor& gx, const Tensor& gy, const Tensor& x, const Tensor& mean,
                             const Tensor& invstd, const Tensor& weight, const Tensor& mean_dy,
                             const Tensor& mean_dy_xmu) {
  const NCS d = ncs_of(x);
  RG_DISPATCH_FLOAT(x.dtype(), "batchnorm_bwd_elemt", [&] {
    using S = stat_t<scalar_t>;
    using A = cpu::acc_t<scalar_t>;
    const auto* xp = x.data<scalar_t>();
    const auto* gp = gy.data<scalar_t>();
    auto* op = gx.data<scalar_t>();
    const S *mp = mean.data<S>(), *ip = invstd.data<S>(), *wp = opt_ptr<S>(weight);
    const S *mdy = mean_dy.data<S>(), *mdx = mean_dy_xmu.data<S>();
    cpu::parallel_for(d.n * d.c, std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(d.s, 1)),
                      [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        const int64_t c = r % d.c;
        const A m = static_cast<A>(mp[c]), is = static_cast<A>(ip[c]);
        const A w = wp ? static_cast<A>(wp[c]) : A(1);
        const A a = static_cast<A>(mdy[c]), k = static_cast<A>(mdx[c]) * is * is;
        const A scale = w * is;
        const scalar_t* xr = xp + r * d.s;
        const scalar_t* gr = gp + r * d.s;
        scalar_t* orow = op + r * d.s;
        for (int64_t i = 0; i < d.s; ++i) {
          const A xm = cpu::cast<A>(xr[i]) - m;
          orow[i] = cpu::cast<scalar_t>((cpu::cast<A>(gr[i]) - a - xm * k) * scale);
        }
      }
    });
  });
}

}  // namespace rg
