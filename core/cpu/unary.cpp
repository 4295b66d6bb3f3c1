// CPU unary elementwise kernels and their fused gradients (unary_bwd). Float dtypes compute in
// acc_t (float for f16/bf16); integer dtypes support the ops that keep an integer result.
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {


// out[i] = f(x[i]) for operands of the same shape and any strides.
template <typename To, typename Ti, typename F>
void map1(const Tensor& out, const Tensor& x, F f) {
  const Tensor* ts[2] = {&out, &x};
  const auto m = make_strided_meta<2>(ts);
  To* o = static_cast<To*>(out.data_ptr());
  const Ti* xp = static_cast<const Ti*>(x.data_ptr());
  cpu::for_each_row<2>(m, [&](const int64_t (&off)[2], int64_t n, const int64_t (&st)[2]) {
    To* op = o + off[0];
    const Ti* ip = xp + off[1];
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) op[i] = f(ip[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) op[i * st[0]] = f(ip[i * st[1]]);
    }
  });
}

// gx[i] = f(gy[i], xy[i]).
template <typename T, typename F>
void map2(const Tensor& gx, const Tensor& gy, const Tensor& xy, F f) {
  const Tensor* ts[3] = {&gx, &gy, &xy};
  const auto m = make_strided_meta<3>(ts);
  T* o = static_cast<T*>(gx.data_ptr());
  const T* gp = static_cast<const T*>(gy.data_ptr());
  const T* xp = static_cast<const T*>(xy.data_ptr());
  cpu::for_each_row<3>(m, [&](const int64_t (&off)[3], int64_t n, const int64_t (&st)[3]) {
    T* op = o + off[0];
    const T* g = gp + off[1];
    const T* v = xp + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) op[i] = f(g[i], v[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) op[i * st[0]] = f(g[i * st[1]], v[i * st[2]]);
    }
  });
}

template <typename A> inline A sigmoid_of(A v) { return A(1) / (A(1) + std::exp(-v)); }
// PyTorch's softplus with beta 1 and threshold 20.
template <typename A> inline A softplus_of(A v) { return v > A(20) ? v : std::log1p(std::exp(v)); }

template <typename T>
void unary_float(const Tensor& out, const Tensor& x, UnaryOp op, double alpha_d, double beta_d) {
  using A = cpu::acc_t<T>;
  const A alpha = static_cast<A>(alpha_d), beta = static_cast<A>(beta_d);
  auto run = [&](auto fn) { map1<T, T>(out, x, [=](T v) { return static_cast<T>(fn(static_cast<A>(v))); }); };
  switch (op) {
    case UnaryOp::Neg: run([](A v) { return -v; }); break;
    case UnaryOp::Abs: run([](A v) { return std::fabs(v); }); break;
    case UnaryOp::Exp: run([](A v) { return std::exp(v); }); break;
    case UnaryOp::Log: run([](A v) { return std::log(v); }); break;
    case UnaryOp::Sqrt: run([](A v) { return std::sqrt(v); }); break;
    case UnaryOp::Rsqrt: run([](A v) { return A(1) / std::sqrt(v); }); break;
    case UnaryOp::Sigmoid: run([](A v) { return sigmoid_of(v); }); break;
    case UnaryOp::Tanh: run([](A v) { return std::tanh(v); }); break;
    case UnaryOp::Relu: run([](A v) { return v < A(0) ? A(0) : v; }); break;  // NaN stays NaN
    case UnaryOp::LeakyRelu: run([=](A v) { return v > A(0) ? v : v * alpha; }); break;
    case UnaryOp::Silu: run([](A v) { return v / (A(1) + std::exp(-v)); }); break;
    case UnaryOp::Pow:
      if (alpha_d == 2.0) {
        run([](A v) { return v * v; });
      } else if (alpha_d == 1.0) {
        run([](A v) { return v; });
      } else if (alpha_d == 0.5) {
        run([](A v) { return std::sqrt(v); });
      } else if (alpha_d == 3.0) {
        run([](A v) { return v * v * v; });
      } else if (alpha_d == -1.0) {
        run([](A v) { return A(1) / v; });
      } else {
        run([=](A v) { return std::pow(v, alpha); });
      }
      break;
    case UnaryOp::Clamp:  // min(max(x, lo), hi): NaN passes, and lo > hi gives hi, as in PyTorch
      run([=](A v) {
        const A r = v < alpha ? alpha : v;
        return r > beta ? beta : r;
      });
      break;
    case UnaryOp::Affine: run([=](A v) { return alpha * v + beta; }); break;
    case UnaryOp::Reciprocal: run([](A v) { return A(1) / v; }); break;
    case UnaryOp::Sign: run([](A v) { return static_cast<A>((v > A(0)) - (v < A(0))); }); break;  // NaN -> 0
    case UnaryOp::Square: run([](A v) { return v * v; }); break;
    case UnaryOp::Softplus: run([](A v) { return softplus_of(v); }); break;
    case UnaryOp::Log1p: run([](A v) { return std::log1p(v); }); break;
    case UnaryOp::Expm1: run([](A v) { return std::expm1(v); }); break;
    case UnaryOp::Floor: run([](A v) { return std::floor(v); }); break;
    case UnaryOp::Round: run([](A v) { return std::nearbyint(v); }); break;  // half to even
    case UnaryOp::RDiv: run([=](A v) { return alpha / v; }); break;
    case UnaryOp::Gelu:
      run([](A v) { return A(0.5) * v * (A(1) + std::erf(v * A(0.70710678118654752440))); });
      break;
    case UnaryOp::Hardswish:
      run([](A v) {
        A t = v + A(3);
        t = t < A(0) ? A(0) : (t > A(6) ? A(6) : t);
        return v * t / A(6);
      });
      break;
    case UnaryOp::Mish: run([](A v) { return v * std::tanh(softplus_of(v)); }); break;
    case UnaryOp::IsFinite: break;  // handled by the caller
  }
}

// Saturating conversion of a clamp bound to int64 (+-inf means no bound).
int64_t lower_bound_i64(double lo) {
  if (!(lo > -9.2233720368547758e18)) return std::numeric_limits<int64_t>::min();
  if (lo >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::ceil(lo));
}
int64_t upper_bound_i64(double hi) {
  if (!(hi < 9.2233720368547758e18)) return std::numeric_limits<int64_t>::max();
  if (hi <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(std::floor(hi));
}

// Integer dtypes compute in int64 (wrapping like the narrower type when cast back).
template <typename T>
void unary_int(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  auto run = [&](auto fn) { map1<T, T>(out, x, [=](T v) { return cpu::cast<T>(fn(static_cast<int64_t>(v))); }); };
  auto wrap = [](uint64_t u) { return static_cast<int64_t>(u); };
  switch (op) {
    case UnaryOp::Neg:
      RG_CHECK(x.dtype() != DType::b8, "Negation, the `-` operator, on a bool tensor is not supported.");
      run([=](int64_t v) { return wrap(0u - static_cast<uint64_t>(v)); });
      break;
    case UnaryOp::Abs: run([=](int64_t v) { return v < 0 ? wrap(0u - static_cast<uint64_t>(v)) : v; }); break;
    case UnaryOp::Relu: run([](int64_t v) { return v < 0 ? int64_t{0} : v; }); break;
    case UnaryOp::Clamp: {
      const int64_t lo = lower_bound_i64(alpha), hi = upper_bound_i64(beta);
      run([=](int64_t v) {
        const int64_t r = v < lo ? lo : v;
        return r > hi ? hi : r;
      });
      break;
    }
    case UnaryOp::Sign: run([](int64_t v) { return static_cast<int64_t>((v > 0) - (v < 0)); }); break;
    case UnaryOp::Square: run([=](int64_t v) { return wrap(static_cast<uint64_t>(v) * static_cast<uint64_t>(v)); }); break;
    case UnaryOp::Floor:
    case UnaryOp::Round: run([](int64_t v) { return v; }); break;
    case UnaryOp::Affine:
      if (alpha == std::floor(alpha) && beta == std::floor(beta) && std::fabs(alpha) < 9.2e18 &&
          std::fabs(beta) < 9.2e18) {
        const auto a = static_cast<uint64_t>(static_cast<int64_t>(alpha));
        const auto b = static_cast<uint64_t>(static_cast<int64_t>(beta));
        run([=](int64_t v) { return wrap(a * static_cast<uint64_t>(v) + b); });
      } else {  // fractional scale on an integer tensor: computed in double, truncated
        map1<T, T>(out, x, [=](T v) { return cpu::cast<T>(alpha * static_cast<double>(v) + beta); });
      }
      break;
    default: throw_unsupported_dtype(unary_op_name(op), x.dtype(), "cpu");
  }
}

void isfinite_cpu(const Tensor& out, const Tensor& x) {
  RG_DISPATCH_ALL(out.dtype(), "isfinite", [&] {
    using out_t = scalar_t;
    RG_DISPATCH_ALL(x.dtype(), "isfinite", [&] {
      if constexpr (std::is_floating_point_v<cpu::acc_t<scalar_t>>) {
        map1<out_t, scalar_t>(out, x, [](scalar_t v) {
          return cpu::cast<out_t>(std::isfinite(static_cast<cpu::acc_t<scalar_t>>(v)) ? 1 : 0);
        });
      } else {
        map1<out_t, scalar_t>(out, x, [](scalar_t) { return cpu::cast<out_t>(1); });
      }
    });
  });
}

template <typename T>
void unary_bwd_float(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha_d, double beta_d) {
  using A = cpu::acc_t<T>;
  const A alpha = static_cast<A>(alpha_d), beta = static_cast<A>(beta_d);
  // fn(g, v): v is the saved input x, or the output y for the ops of unary_bwd_uses_output.
  auto run = [&](auto fn) {
    map2<T>(gx, gy, xy, [=](T g, T v) { return static_cast<T>(fn(static_cast<A>(g), static_cast<A>(v))); });
  };
  switch (op) {
    case UnaryOp::Neg: run([](A g, A) { return -g; }); break;
    case UnaryOp::Abs: run([](A g, A x) { return x > A(0) ? g : (x < A(0) ? -g : A(0)); }); break;
    case UnaryOp::Exp: run([](A g, A y) { return g * y; }); break;
    case UnaryOp::Log: run([](A g, A x) { return g / x; }); break;
    case UnaryOp::Sqrt: run([](A g, A y) { return g / (A(2) * y); }); break;
    case UnaryOp::Rsqrt: run([](A g, A y) { return A(-0.5) * g * y * y * y; }); break;
    case UnaryOp::Sigmoid: run([](A g, A y) { return g * y * (A(1) - y); }); break;
    case UnaryOp::Tanh: run([](A g, A y) { return g * (A(1) - y * y); }); break;
    case UnaryOp::Relu: run([](A g, A y) { return y > A(0) ? g : A(0); }); break;
    case UnaryOp::LeakyRelu: run([=](A g, A x) { return x > A(0) ? g : g * alpha; }); break;
    case UnaryOp::Silu:
      run([](A g, A x) {
        const A s = sigmoid_of(x);
        return g * s * (A(1) + x * (A(1) - s));
      });
      break;
    case UnaryOp::Pow:
      if (alpha_d == 0.0) {
        run([](A, A) { return A(0); });
      } else if (alpha_d == 2.0) {
        run([](A g, A x) { return A(2) * x * g; });
      } else {
        run([=](A g, A x) { return g * alpha * std::pow(x, alpha - A(1)); });
      }
      break;
    case UnaryOp::Clamp: run([=](A g, A x) { return (x >= alpha && x <= beta) ? g : A(0); }); break;
    case UnaryOp::Affine: run([=](A g, A) { return g * alpha; }); break;
    case UnaryOp::Reciprocal: run([](A g, A y) { return -g * y * y; }); break;
    case UnaryOp::Square: run([](A g, A x) { return A(2) * x * g; }); break;
    case UnaryOp::Softplus:
      run([](A g, A x) {
        if (x > A(20)) return g;
        const A z = std::exp(x);
        return g * z / (z + A(1));
      });
      break;
    case UnaryOp::Log1p: run([](A g, A x) { return g / (A(1) + x); }); break;
    case UnaryOp::Expm1: run([](A g, A y) { return g * (y + A(1)); }); break;
    case UnaryOp::RDiv: run([=](A g, A x) { return -g * alpha / (x * x); }); break;
    case UnaryOp::Gelu:
      run([](A g, A x) {
        const A cdf = A(0.5) * (A(1) + std::erf(x * A(0.70710678118654752440)));
        const A pdf = std::exp(A(-0.5) * x * x) * A(0.39894228040143267794);  // 1 / sqrt(2 pi)
        return g * (cdf + x * pdf);
      });
      break;
    case UnaryOp::Hardswish:
      run([](A g, A x) {
        if (x < A(-3)) return A(0);
        if (x <= A(3)) return g * (x / A(3) + A(0.5));
        return g;
      });
      break;
    case UnaryOp::Mish:
      run([](A g, A x) {
        const A s = sigmoid_of(x);
        const A t = std::tanh(softplus_of(x));
        return g * (t + x * s * (A(1) - t * t));
      });
      break;
    case UnaryOp::Sign:
    case UnaryOp::Floor:
    case UnaryOp::Round:
    case UnaryOp::IsFinite:
      RG_THROW(unary_op_name(op), " has no gradient formula");
  }
  (void)beta;
}

}  // namespace

void unary_cpu(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  if (op == UnaryOp::IsFinite) {
    isfinite_cpu(out, x);
    return;
  }
  RG_CHECK(out.dtype() == x.dtype(), unary_op_name(op), ": output dtype ", dtype_name(out.dtype()),
           " differs from input dtype ", dtype_name(x.dtype()));
  RG_DISPATCH_ALL(x.dtype(), unary_op_name(op), [&] {
    if constexpr (std::is_floating_point_v<cpu::acc_t<scalar_t>>) {
      unary_float<scalar_t>(out, x, op, alpha, beta);
    } else {
      unary_int<scalar_t>(out, x, op, alpha, beta);
    }
  });
}

void unary_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) {
  RG_CHECK(gx.dtype() == xy.dtype() && gy.dtype() == xy.dtype(), unary_op_name(op), " backward: dtypes ",
           dtype_name(gx.dtype()), ", ", dtype_name(gy.dtype()), ", ", dtype_name(xy.dtype()), " differ");
  RG_DISPATCH_FLOAT(xy.dtype(), unary_op_name(op), [&] { unary_bwd_float<scalar_t>(gx, gy, xy, op, alpha, beta); });
}

}  // namespace rg
