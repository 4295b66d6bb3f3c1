// CUDA unary ops and their gradients (every UnaryOp in core/kernels.h), the twins of
// core/cpu/unary.cpp with PyTorch's formulas. A flat 16-byte path templated on the op for
// f32/f16/bf16; a strided path (also f64 and the integer ops) that switches on the op at run time.
#include <cmath>
#include <limits>

#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// torch.nn.functional.softplus with beta 1 and threshold 20.
template <typename C>
static __device__ __forceinline__ C softplus(C x) {
  return x > C(20) ? x : dm::log1p(dm::exp(x));
}

// y = op(x) in float or double (C); alpha and beta are the op's parameters.
template <typename C>
static __device__ __forceinline__ C unary_value(UnaryOp op, C x, C alpha, C beta) {
  const C one = C(1), zero = C(0);
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return dm::fabs(x);
    case UnaryOp::Exp: return dm::exp(x);
    case UnaryOp::Log: return dm::log(x);
    case UnaryOp::Sqrt: return dm::sqrt(x);
    case UnaryOp::Rsqrt: return one / dm::sqrt(x);
    case UnaryOp::Sigmoid: return one / (one + dm::exp(-x));
    case UnaryOp::Tanh: return dm::tanh(x);
    case UnaryOp::Relu: return x < zero ? zero : x;  // NaN stays NaN
    case UnaryOp::LeakyRelu: return x > zero ? x : x * alpha;
    case UnaryOp::Silu: return x / (one + dm::exp(-x));
    case UnaryOp::Pow:  // the exponents the CPU kernel computes exactly, the same way
      if (alpha == C(2)) return x * x;
      if (alpha == C(1)) return x;
      if (alpha == C(0.5)) return dm::sqrt(x);
      if (alpha == C(3)) return x * x * x;
      if (alpha == C(-1)) return one / x;
      return dm::pow(x, alpha);
    case UnaryOp::Clamp: {  // min(max(x, lo), hi); NaN stays NaN
      const C lo = x < alpha ? alpha : x;
      return lo > beta ? beta : lo;
    }
    case UnaryOp::Affine: return dm::add_rn(dm::mul_rn(alpha, x), beta);
    case UnaryOp::Reciprocal: return one / x;
    case UnaryOp::Sign: return static_cast<C>((x > zero) - (x < zero));
    case UnaryOp::Square: return x * x;
    case UnaryOp::Softplus: return softplus(x);
    case UnaryOp::Log1p: return dm::log1p(x);
    case UnaryOp::Expm1: return dm::expm1(x);
    case UnaryOp::Floor: return dm::floor(x);
    case UnaryOp::Round: return dm::rint(x);
    case UnaryOp::RDiv: return alpha / x;
    case UnaryOp::IsFinite: return dm::isfinite(x) ? one : zero;
    case UnaryOp::Gelu: return C(0.5) * x * (one + dm::erf(x * C(0.70710678118654752440)));
    case UnaryOp::Hardswish: {
      const C r = x + C(3);
      return x * (r < zero ? zero : (r > C(6) ? C(6) : r)) / C(6);
    }
    case UnaryOp::Mish: return x * dm::tanh(softplus(x));
  }
  return zero;
}

// The scalars of an integer op, prepared on the host as the CPU kernel does: clamp bounds
// rounded inwards and saturated; whole affine coefficients applied in wrapping int64 arithmetic,
// fractional ones in double with truncation.
struct IntScalars {
  int64_t lo = 0, hi = 0;
  uint64_t a = 0, b = 0;
  bool exact = true;
  double alpha = 0, beta = 0;
};

// The ops that keep an integer dtype (native::unary promotes the others to f32): int64 math,
// wrapping like the narrower type when cast back.
template <typename T>
static __device__ __forceinline__ T unary_int_element(UnaryOp op, T xt, const IntScalars& p) {
  const int64_t x = cast<int64_t>(xt);
  const uint64_t u = static_cast<uint64_t>(x);
  switch (op) {
    case UnaryOp::Neg: return cast<T>(static_cast<int64_t>(0u - u));
    case UnaryOp::Abs: return cast<T>(x < 0 ? static_cast<int64_t>(0u - u) : x);
    case UnaryOp::Relu: return cast<T>(x < 0 ? int64_t{0} : x);
    case UnaryOp::Clamp: {
      const int64_t r = x < p.lo ? p.lo : x;
      return cast<T>(r > p.hi ? p.hi : r);
    }
    case UnaryOp::Sign: return cast<T>(static_cast<int64_t>((x > 0) - (x < 0)));
    case UnaryOp::Square: return cast<T>(static_cast<int64_t>(u * u));
    case UnaryOp::Affine:
      if (p.exact) return cast<T>(static_cast<int64_t>(p.a * u + p.b));
      return cast<T>(__dadd_rn(__dmul_rn(p.alpha, static_cast<double>(x)), p.beta));
    default: return xt;  // Floor, Round; the launcher refuses the ops without an integer form
  }
}

// gx = gy * d op / dx, from the saved input x or output y (native::unary_bwd_uses_output).
template <typename C>
static __device__ __forceinline__ C unary_grad(UnaryOp op, C g, C v, C alpha, C beta) {
  const C one = C(1), zero = C(0);
  switch (op) {
    case UnaryOp::Neg: return -g;
    case UnaryOp::Abs: return v > zero ? g : (v < zero ? -g : zero);
    case UnaryOp::Exp: return g * v;                                   // v = y
    case UnaryOp::Log: return g / v;
    case UnaryOp::Sqrt: return g / (C(2) * v);                         // v = y
    case UnaryOp::Rsqrt: return C(-0.5) * g * v * v * v;               // v = y
    case UnaryOp::Sigmoid: return g * v * (one - v);                   // v = y
    case UnaryOp::Tanh: return g * (one - v * v);                      // v = y
    case UnaryOp::Relu: return v > zero ? g : zero;                    // v = y
    case UnaryOp::LeakyRelu: return v > zero ? g : g * alpha;
    case UnaryOp::Silu: {
      const C s = one / (one + dm::exp(-v));
      return g * s * (one + v * (one - s));
    }
    case UnaryOp::Pow:
      if (alpha == zero) return zero;
      if (alpha == C(2)) return C(2) * v * g;
      return g * alpha * dm::pow(v, alpha - one);
    case UnaryOp::Clamp: return v >= alpha && v <= beta ? g : zero;
    case UnaryOp::Affine: return g * alpha;
    case UnaryOp::Reciprocal: return -g * v * v;                       // v = y
    case UnaryOp::Square: return C(2) * v * g;
    case UnaryOp::Softplus: {
      if (v > C(20)) return g;
      const C z = dm::exp(v);
      return g * z / (z + one);
    }
    case UnaryOp::Log1p: return g / (one + v);
    case UnaryOp::Expm1: return g * (v + one);                         // v = y
    case UnaryOp::RDiv: return -g * alpha / (v * v);
    case UnaryOp::Gelu: {
      const C cdf = C(0.5) * (one + dm::erf(v * C(0.70710678118654752440)));
      const C pdf = dm::exp(C(-0.5) * v * v) * C(0.39894228040143267794);  // 1 / sqrt(2 pi)
      return g * (cdf + v * pdf);
    }
    case UnaryOp::Hardswish:
      if (v < C(-3)) return zero;
      if (v <= C(3)) return g * (v / C(3) + C(0.5));
      return g;
    case UnaryOp::Mish: {
      const C s = one / (one + dm::exp(-v));
      const C t = dm::tanh(softplus(v));
      return g * (t + v * s * (one - t * t));
    }
    case UnaryOp::Sign:
    case UnaryOp::Floor:
    case UnaryOp::Round:
    case UnaryOp::IsFinite: return zero;  // no gradient: the launcher refuses these
  }
  return zero;
}

// Flat path: out (n) = op(x (n)), out and x aligned to 16-byte packs. f32/f16/bf16 only.
template <UnaryOp OP, typename T>
static __global__ void unary_fwd_kernel(T* out, const T* x, int64_t n, float alpha, float beta) {
  constexpr int W = pack_width<T>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        Pack<T, W> v = load_pack<W>(x, p);
#pragma unroll
        for (int k = 0; k < W; ++k) v.v[k] = cast<T>(unary_value<float>(OP, cast<float>(v.v[k]), alpha, beta));
        store_pack<W>(out, p, v);
      },
      [&](int64_t i) { out[i] = cast<T>(unary_value<float>(OP, cast<float>(x[i]), alpha, beta)); });
}

// Strided path, any layout: out (n) = op(x (n)). O is T, or bool for IsFinite.
template <typename T, typename O, typename Calc>
static __global__ void unary_strided_fwd_kernel(O* out, const T* x, Calc calc, typename Calc::index_t n, UnaryOp op,
                                                double alpha, double beta, IntScalars ip) {
  using C = acc_t<T>;
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[2];
    calc.get(i, off);
    if constexpr (is_float_v<T>) {
      out[off[0]] = cast<O>(unary_value<C>(op, cast<C>(x[off[1]]), static_cast<C>(alpha), static_cast<C>(beta)));
    } else {
      out[off[0]] = cast<O>(unary_int_element<T>(op, x[off[1]], ip));
    }
  });
}

// Flat gradient: gx (n) = gy (n) * op'(v (n)), all aligned to packs. f32/f16/bf16 only.
template <UnaryOp OP, typename T>
static __global__ void unary_bwd_kernel(T* gx, const T* gy, const T* v, int64_t n, float alpha, float beta) {
  constexpr int W = pack_width<T>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        const Pack<T, W> g = load_pack<W>(gy, p);
        const Pack<T, W> s = load_pack<W>(v, p);
        Pack<T, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) {
          r.v[k] = cast<T>(unary_grad<float>(OP, cast<float>(g.v[k]), cast<float>(s.v[k]), alpha, beta));
        }
        store_pack<W>(gx, p, r);
      },
      [&](int64_t i) { gx[i] = cast<T>(unary_grad<float>(OP, cast<float>(gy[i]), cast<float>(v[i]), alpha, beta)); });
}

template <typename T, typename Calc>
static __global__ void unary_strided_bwd_kernel(T* gx, const T* gy, const T* v, Calc calc, typename Calc::index_t n,
                                                UnaryOp op, double alpha, double beta) {
  using C = acc_t<T>;
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[3];
    calc.get(i, off);
    gx[off[0]] = cast<T>(unary_grad<C>(op, cast<C>(gy[off[1]]), cast<C>(v[off[2]]), static_cast<C>(alpha),
                                       static_cast<C>(beta)));
  });
}

// ---- launchers

// Every op with a float formula (IsFinite has its own output dtype and takes the strided path).
#define RG_UNARY_FLOAT_OPS(_)                                                                              \
  _(Neg) _(Abs) _(Exp) _(Log) _(Sqrt) _(Rsqrt) _(Sigmoid) _(Tanh) _(Relu) _(LeakyRelu) _(Silu) _(Pow)     \
  _(Clamp) _(Affine) _(Reciprocal) _(Sign) _(Square) _(Softplus) _(Log1p) _(Expm1) _(Floor) _(Round)      \
  _(RDiv) _(Gelu) _(Hardswish) _(Mish)
// Every op with a gradient.
#define RG_UNARY_GRAD_OPS(_)                                                                               \
  _(Neg) _(Abs) _(Exp) _(Log) _(Sqrt) _(Rsqrt) _(Sigmoid) _(Tanh) _(Relu) _(LeakyRelu) _(Silu) _(Pow)     \
  _(Clamp) _(Affine) _(Reciprocal) _(Square) _(Softplus) _(Log1p) _(Expm1) _(RDiv) _(Gelu) _(Hardswish)   \
  _(Mish)

namespace {

bool keeps_integer(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: case UnaryOp::Abs: case UnaryOp::Relu: case UnaryOp::Clamp: case UnaryOp::Sign:
    case UnaryOp::Square: case UnaryOp::Floor: case UnaryOp::Round: case UnaryOp::Affine:
      return true;
    default:
      return false;
  }
}

bool has_grad(UnaryOp op) {
  return !(op == UnaryOp::Sign || op == UnaryOp::Floor || op == UnaryOp::Round || op == UnaryOp::IsFinite);
}

// The flat path, when the dtype is f32/f16/bf16 and every pointer is aligned to a pack.
template <typename T>
bool launch_unary_flat(UnaryOp op, T* out, const T* x, int64_t n, double alpha, double beta) {
  if constexpr (std::is_same_v<T, float> || is_reduced_v<T>) {
    constexpr int W = pack_width<T>();
    if (!aligned_to(out, W * sizeof(T)) || !aligned_to(x, W * sizeof(T))) return false;
    const unsigned grid = grid_for((n + W - 1) / W);
    const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
    switch (op) {
#define RG_LAUNCH_CASE(OP)                                                                 \
  case UnaryOp::OP:                                                                        \
    unary_fwd_kernel<UnaryOp::OP, T><<<grid, kThreads, 0, stream()>>>(out, x, n, a, b);    \
    RG_CUDA_LAUNCH_CHECK("unary_fwd_kernel");                                              \
    return true;
      RG_UNARY_FLOAT_OPS(RG_LAUNCH_CASE)
#undef RG_LAUNCH_CASE
      default: return false;
    }
  } else {
    return false;
  }
}

template <typename T>
bool launch_unary_bwd_flat(UnaryOp op, T* gx, const T* gy, const T* v, int64_t n, double alpha, double beta) {
  if constexpr (std::is_same_v<T, float> || is_reduced_v<T>) {
    constexpr int W = pack_width<T>();
    if (!aligned_to(gx, W * sizeof(T)) || !aligned_to(gy, W * sizeof(T)) || !aligned_to(v, W * sizeof(T))) {
      return false;
    }
    const unsigned grid = grid_for((n + W - 1) / W);
    const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
    switch (op) {
#define RG_LAUNCH_CASE(OP)                                                                    \
  case UnaryOp::OP:                                                                           \
    unary_bwd_kernel<UnaryOp::OP, T><<<grid, kThreads, 0, stream()>>>(gx, gy, v, n, a, b);    \
    RG_CUDA_LAUNCH_CHECK("unary_bwd_kernel");                                                 \
    return true;
      RG_UNARY_GRAD_OPS(RG_LAUNCH_CASE)
#undef RG_LAUNCH_CASE
      default: return false;
    }
  } else {
    return false;
  }
}

// Saturating conversion of clamp bounds to int64, rounded inwards (+-inf: no bound).
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

IntScalars int_scalars(UnaryOp op, double alpha, double beta) {
  IntScalars p;
  p.alpha = alpha;
  p.beta = beta;
  if (op == UnaryOp::Clamp) {
    p.lo = lower_bound_i64(alpha);
    p.hi = upper_bound_i64(beta);
  }
  if (op == UnaryOp::Affine) {
    p.exact = alpha == std::floor(alpha) && beta == std::floor(beta) && std::fabs(alpha) < 9.2e18 &&
              std::fabs(beta) < 9.2e18;
    if (p.exact) {
      p.a = static_cast<uint64_t>(static_cast<int64_t>(alpha));
      p.b = static_cast<uint64_t>(static_cast<int64_t>(beta));
    }
  }
  return p;
}

template <typename T, typename O>
void launch_unary_strided(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  const IntScalars ip = int_scalars(op, alpha, beta);
  const Tensor* ts[2] = {&out, &x};
  const auto m = make_strided_meta<2>(ts);
  with_offset_calc(m, [&](auto calc) {
    using Calc = decltype(calc);
    unary_strided_fwd_kernel<T, O, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
        static_cast<O*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), calc,
        static_cast<typename Calc::index_t>(m.numel), op, alpha, beta, ip);
    RG_CUDA_LAUNCH_CHECK("unary_strided_fwd_kernel");
  });
}

}  // namespace

void unary_cuda(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {  // out, x: same shape
  if (x.numel() == 0) return;
  if (op == UnaryOp::IsFinite) {
    if (!is_floating(x.dtype())) {  // an integer is always finite
      fill_cuda(out, 1.0);
      return;
    }
    if (out.dtype() != DType::b8) {  // bool first, then cast into the requested dtype
      Tensor b = empty(out.sizes(), TensorOptions(DType::b8).device(out.device()));
      unary_cuda(b, x, op, alpha, beta);
      copy_cuda(out, b);
      return;
    }
    RG_CU_DISPATCH_FLOAT(x.dtype(), unary_op_name(op),
                         [&] { launch_unary_strided<scalar_t, bool>(out, x, op, alpha, beta); });
    return;
  }
  RG_CHECK(out.dtype() == x.dtype(), unary_op_name(op), ": output dtype ", dtype_name(out.dtype()),
           " differs from input dtype ", dtype_name(x.dtype()));
  if (!is_floating(x.dtype()) && !keeps_integer(op)) throw_unsupported_dtype(unary_op_name(op), x.dtype(), "cuda");
  RG_CHECK(!(op == UnaryOp::Neg && x.dtype() == DType::b8),
           "Negation, the `-` operator, on a bool tensor is not supported.");
  RG_CU_DISPATCH_ALL(x.dtype(), unary_op_name(op), [&] {
    const Tensor* ts[2] = {&out, &x};
    const auto m = make_strided_meta<2>(ts);
    if (m.contiguous && launch_unary_flat<scalar_t>(op, static_cast<scalar_t*>(out.data_ptr()),
                                                    static_cast<const scalar_t*>(x.data_ptr()), m.numel, alpha, beta)) {
      return;
    }
    launch_unary_strided<scalar_t, scalar_t>(out, x, op, alpha, beta);
  });
}

void unary_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) {
  if (gx.numel() == 0) return;
  RG_CHECK(has_grad(op), unary_op_name(op), " has no gradient formula");
  RG_CHECK(gx.dtype() == gy.dtype() && gx.dtype() == xy.dtype(), unary_op_name(op), " backward: dtypes ",
           dtype_name(gx.dtype()), ", ", dtype_name(gy.dtype()), " and ", dtype_name(xy.dtype()), " differ");
  RG_CU_DISPATCH_FLOAT(gx.dtype(), unary_op_name(op), [&] {
    const Tensor* ts[3] = {&gx, &gy, &xy};
    const auto m = make_strided_meta<3>(ts);
    if (m.contiguous &&
        launch_unary_bwd_flat<scalar_t>(op, static_cast<scalar_t*>(gx.data_ptr()),
                                        static_cast<const scalar_t*>(gy.data_ptr()),
                                        static_cast<const scalar_t*>(xy.data_ptr()), m.numel, alpha, beta)) {
      return;
    }
    with_offset_calc(m, [&](auto calc) {
      using Calc = decltype(calc);
      unary_strided_bwd_kernel<scalar_t, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
          static_cast<scalar_t*>(gx.data_ptr()), static_cast<const scalar_t*>(gy.data_ptr()),
          static_cast<const scalar_t*>(xy.data_ptr()), calc, static_cast<typename Calc::index_t>(m.numel), op, alpha,
          beta);
      RG_CUDA_LAUNCH_CHECK("unary_strided_bwd_kernel");
    });
  });
}

}  // namespace rg
