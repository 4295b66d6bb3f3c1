// CPU multi-tensor kernels for optimizers and AMP: fused SGD and Adam/AdamW steps with PyTorch's
// formulas, gradient unscaling with the inf/nan check, the loss-scale update, per-tensor sums of
// squares, scaling and axpby over lists of contiguous tensors (native_optim.cpp checks them).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// Optimizer math runs in the parameters' type (f32 or f64).
#define RG_DISPATCH_OPTIM(DTYPE, OPNAME, ...)                    \
  switch (DTYPE) {                                               \
    RG_DTYPE_CASE(f32, float, __VA_ARGS__)                       \
    RG_DTYPE_CASE(f64, double, __VA_ARGS__)                      \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cpu"); \
  }

}  // namespace

void sgd_step_cpu(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
                  const SgdParams& p) {
  if (params.empty()) return;
  RG_DISPATCH_OPTIM(params[0].dtype(), "sgd_step", [&] {
    using T = scalar_t;
    const T lr = static_cast<T>(p.lr), mom = static_cast<T>(p.momentum), wd = static_cast<T>(p.weight_decay);
    const T damp = static_cast<T>(1.0 - p.dampening);
    const bool use_mom = p.momentum != 0.0;
    for (size_t t = 0; t < params.size(); ++t) {
      T* w = ptr<T>(params[t]);
      const T* g = ptr<T>(grads[t]);
      T* b = use_mom ? ptr<T>(bufs[t]) : nullptr;
      cpu::parallel_for(params[t].numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          T d = p.maximize ? -g[i] : g[i];
          if (p.weight_decay != 0.0) d = d + wd * w[i];
          if (use_mom) {
            b[i] = p.first_step ? d : mom * b[i] + damp * d;
            d = p.nesterov ? d + mom * b[i] : b[i];
          }
          w[i] = w[i] - lr * d;
        }
      });
    }
  });
}

void adam_step_cpu(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                   const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                   const std::vector<Tensor>& max_exp_avg_sq, const AdamParams& p) {
  if (params.empty()) return;
  RG_DISPATCH_OPTIM(params[0].dtype(), "adam_step", [&] {
    using T = scalar_t;
    const double bc1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
    const T step_size = static_cast<T>(p.lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    const T b1 = static_cast<T>(p.beta1), b2 = static_cast<T>(p.beta2);
    const T omb1 = static_cast<T>(1.0 - p.beta1), omb2 = static_cast<T>(1.0 - p.beta2);
    const T eps = static_cast<T>(p.eps), wd = static_cast<T>(p.weight_decay);
    const T decay = static_cast<T>(1.0 - p.lr * p.weight_decay);
    for (size_t t = 0; t < params.size(); ++t) {
      T* w = ptr<T>(params[t]);
      const T* g = ptr<T>(grads[t]);
      T* m = ptr<T>(exp_avg[t]);
      T* v = ptr<T>(exp_avg_sq[t]);
      T* vmax = p.amsgrad ? ptr<T>(max_exp_avg_sq[t]) : nullptr;
      cpu::parallel_for(params[t].numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          T d = p.maximize ? -g[i] : g[i];
          T wi = w[i];
          if (p.weight_decay != 0.0) {
            if (p.decoupled) {
              wi = wi * decay;
            } else {
              d = d + wd * wi;
            }
          }
          const T mi = b1 * m[i] + omb1 * d;
          const T vi = b2 * v[i] + omb2 * d * d;
          m[i] = mi;
          v[i] = vi;
          T vden = vi;
          if (p.amsgrad) {
            vden = (vi > vmax[i] || std::isnan(vi)) ? vi : vmax[i];  // torch.maximum: NaN propagates
            vmax[i] = vden;
          }
          const T denom = std::sqrt(vden) / bc2_sqrt + eps;
          w[i] = wi - step_size * mi / denom;
        }
      });
    }
  });
}

void amp_unscale_cpu(const std::vector<Tensor>& grads, const Tensor& found_inf, const Tensor& inv_scale) {
  const float inv = *ptr<float>(inv_scale);
  bool bad = false;
  for (const Tensor& g : grads) {
    RG_DISPATCH_FLOAT(g.dtype(), "amp_unscale", [&] {
      using A = cpu::acc_t<scalar_t>;
      scalar_t* p = ptr<scalar_t>(g);
      const int64_t n = g.numel();
      for (int64_t i = 0; i < n; ++i) {
        const A v = cpu::cast<A>(p[i]);
        if (!std::isfinite(v)) bad = true;
        p[i] = cpu::cast<scalar_t>(v * static_cast<A>(inv));
      }
    });
  }
  if (bad) *ptr<float>(found_inf) = 1.0f;
}

void amp_update_scale_cpu(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf, double growth,
                          double backoff, int64_t interval) {
  float* s = ptr<float>(scale);
  int32_t* tracker = ptr<int32_t>(growth_tracker);
  if (*ptr<float>(found_inf) != 0.0f) {
    *s = *s * static_cast<float>(backoff);
    *tracker = 0;
    return;
  }
  const int32_t successful = *tracker + 1;
  if (successful == interval) {
    const float grown = *s * static_cast<float>(growth);
    if (std::isfinite(grown)) *s = grown;  // never grow into inf
    *tracker = 0;
  } else {
    *tracker = successful;
  }
}

void multi_sum_squares_cpu(const Tensor& out, const std::vector<Tensor>& xs) {
  // Double accumulation, then the output's dtype (f32, or f64 for f64 inputs).
  std::vector<double> sums(xs.size(), 0.0);
  for (size_t t = 0; t < xs.size(); ++t) {
    RG_DISPATCH_FLOAT(xs[t].dtype(), "multi_sum_squares", [&] {
      const scalar_t* p = ptr<scalar_t>(xs[t]);
      const int64_t n = xs[t].numel();
      double s = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double v = cpu::cast<double>(p[i]);
        s += v * v;
      }
      sums[t] = s;
    });
  }
  RG_DISPATCH_OPTIM(out.dtype(), "multi_sum_squares", [&] {
    scalar_t* o = ptr<scalar_t>(out);
    for (size_t t = 0; t < xs.size(); ++t) o[t] = static_cast<scalar_t>(sums[t]);
  });
}

void multi_scale_cpu(const std::vector<Tensor>& xs, const Tensor& scale) {
  const double s = scale.dtype() == DType::f64 ? *ptr<double>(scale) : static_cast<double>(*ptr<float>(scale));
  for (const Tensor& x : xs) {
    RG_DISPATCH_FLOAT(x.dtype(), "multi_scale", [&] {
      using A = cpu::acc_t<scalar_t>;
      scalar_t* p = ptr<scalar_t>(x);
      const A sv = static_cast<A>(s);
      cpu::parallel_for(x.numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) p[i] = cpu::cast<scalar_t>(cpu::cast<A>(p[i]) * sv);
      });
    });
  }
}

void multi_axpby_cpu(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, double a, double b) {
  for (size_t t = 0; t < ys.size(); ++t) {
    RG_DISPATCH_FLOAT(ys[t].dtype(), "multi_axpby", [&] {
      using A = cpu::acc_t<scalar_t>;
      scalar_t* y = ptr<scalar_t>(ys[t]);
      const scalar_t* x = ptr<scalar_t>(xs[t]);
      const A av = static_cast<A>(a), bv = static_cast<A>(b);
      cpu::parallel_for(ys[t].numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) y[i] = cpu::cast<scalar_t>(av * cpu::cast<A>(y[i]) + bv * cpu::cast<A>(x[i]));
      });
    });
  }
}

}  // namespace rg
