// The formulas of every elementwise op, once: forward, gradient and integer forms of each row of
// core/elementwise_ops.h, compiled for the host (core/cpu/unary.cpp, binary.cpp) and the device
// (cuda_kernels/unary.cu, binary.cu), each with its own math policy. Note [Elementwise formulas].
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/elementwise_ops.h"

// A function for the host and the device, always inlined into the loop that calls it.
#if defined(__CUDACC__)
#define RG_HD_INLINE __host__ __device__ __forceinline__
#else
#define RG_HD_INLINE inline __attribute__((always_inline))
#endif
// The head of a formula: a static member template on the math policy M and the compute type C.
#define RG_FORMULA template <class M, class C> RG_HD_INLINE static
// ... of an integer formula, on M and the output element type T.
#define RG_INT_FORMULA template <class M, class T> RG_HD_INLINE static

namespace rg::ew {

// Note [Elementwise formulas]
// UnaryFormula<OP> and BinaryFormula<OP> hold the formulas of one row of core/elementwise_ops.h:
//   fwd<M>(x, alpha, beta) -> C         the value in C = float (f32, f16, bf16) or double (f64);
//   fwd<M>(a, b, alpha, beta)           binary; kBoolOut rows return bool and serve the integer
//                                       dtypes too, with C = int64_t
//   bwd<M>(g, v, alpha, beta) -> C      rows with kGradX / kGradY: g * d op / dx, where v is the
//                                       saved input x, or for kGradY the saved output y
//   ifwd<M, T>(x, p) -> T               rows with kKeepsInt (every non-bool binary row): the integer
//                                       form in int64, wrapping, converted to the output type T;
//                                       p holds the scalars as prepared once on the host
// The flags and the formulas are checked against each other at the end of this file.
// M is the math policy of the compiler at hand (HostMath in core/elementwise_host.h, cu::DeviceMath
// in cuda_kernels/common.cuh): M::exp, log, sqrt, tanh, log1p, expm1, erf, floor, rint, fabs,
// isfinite, pow, atan2 for float and double; M::mul_rn and M::add_rn, a product or a sum that
// the device must round on its own (no fused multiply-add there, so that alpha * x + beta and
// friends match the CPU); and M::cast<To>(v), the element conversion of that device. Products and
// sums written with * and + are left to each compiler.

// ---- shared pieces
template <class T, class M, class V>
RG_HD_INLINE T cast_to(V v) {
  return M::template cast<T>(v);
}
RG_HD_INLINE int64_t wrapped(uint64_t u) { return static_cast<int64_t>(u); }

// a ^ b for integers by squaring; a negative exponent gives 1 / a^|b| truncated (0 unless |a| == 1).
RG_HD_INLINE int64_t int_pow(int64_t a, int64_t b) {
  if (b < 0) {
    if (a == 1) return 1;
    if (a == -1) return (b & 1) ? -1 : 1;
    return 0;
  }
  uint64_t r = 1, base = static_cast<uint64_t>(a);
  while (b) {
    if (b & 1) r *= base;
    base *= base;
    b >>= 1;
  }
  return static_cast<int64_t>(r);
}

// torch.sigmoid, and torch.nn.functional.softplus with beta 1 and threshold 20.
template <class M, class C>
RG_HD_INLINE C sigmoid_of(C x) {
  return C(1) / (C(1) + M::exp(-x));
}
template <class M, class C>
RG_HD_INLINE C softplus_of(C x) {
  return x > C(20) ? x : M::log1p(M::exp(x));
}

// ---- scalars of the integer forms, prepared on the host once per call
inline bool is_int64_valued(double v) { return v == std::floor(v) && std::fabs(v) < 9.2e18; }
// Saturating conversion of a clamp bound to int64, rounded inwards (+-inf: no bound).
inline int64_t lower_bound_i64(double lo) {
  if (!(lo > -9.2233720368547758e18)) return std::numeric_limits<int64_t>::min();
  if (lo >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::ceil(lo));
}
inline int64_t upper_bound_i64(double hi) {
  if (!(hi < 9.2233720368547758e18)) return std::numeric_limits<int64_t>::max();
  if (hi <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(std::floor(hi));
}

// Clamp: bounds rounded inwards and saturated. Affine: whole coefficients apply in wrapping int64
// arithmetic (exact), fractional ones in double, truncated by the final conversion.
struct UnaryIntScalars {
  int64_t lo = 0, hi = 0;
  uint64_t a = 0, b = 0;
  bool exact = true;
  double alpha = 0, beta = 0;
};
inline UnaryIntScalars unary_int_scalars(UnaryOp op, double alpha, double beta) {
  UnaryIntScalars p;
  p.alpha = alpha;
  p.beta = beta;
  if (op == UnaryOp::Clamp) {
    p.lo = lower_bound_i64(alpha);
    p.hi = upper_bound_i64(beta);
  }
  if (op == UnaryOp::Affine) {
    p.exact = is_int64_valued(alpha) && is_int64_valued(beta);
    if (p.exact) {
      p.a = static_cast<uint64_t>(static_cast<int64_t>(alpha));
      p.b = static_cast<uint64_t>(static_cast<int64_t>(beta));
    }
  }
  return p;
}

// Add/Sub: sa = +-alpha (alpha = +-alpha in double when fractional); Axpby: sa, sb = alpha, beta.
struct BinaryIntScalars {
  uint64_t sa = 0, sb = 0;
  bool exact = true;
  double alpha = 0, beta = 0;
};
inline BinaryIntScalars binary_int_scalars(BinaryOp op, double alpha, double beta) {
  BinaryIntScalars p;
  if (op == BinaryOp::Add || op == BinaryOp::Sub) {
    const double s = op == BinaryOp::Add ? alpha : -alpha;
    p.exact = is_int64_valued(s);
    p.alpha = s;
    if (p.exact) p.sa = static_cast<uint64_t>(static_cast<int64_t>(s));
  } else if (op == BinaryOp::Axpby) {
    p.exact = is_int64_valued(alpha) && is_int64_valued(beta);
    p.alpha = alpha;
    p.beta = beta;
    if (p.exact) {
      p.sa = static_cast<uint64_t>(static_cast<int64_t>(alpha));
      p.sb = static_cast<uint64_t>(static_cast<int64_t>(beta));
    }
  }
  return p;
}

// ---- unary formulas: one specialisation per row of RG_UNARY_OPS
template <UnaryOp OP>
struct UnaryFormula;
#define RG_UNARY_FORMULA(NAME) \
  template <>                  \
  struct UnaryFormula<UnaryOp::NAME>

RG_UNARY_FORMULA(Neg) {
  RG_FORMULA C fwd(C x, C, C) { return -x; }
  RG_FORMULA C bwd(C g, C, C, C) { return -g; }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(wrapped(0u - uint64_t(x))); }
};
RG_UNARY_FORMULA(Abs) {
  RG_FORMULA C fwd(C x, C, C) { return M::fabs(x); }
  RG_FORMULA C bwd(C g, C x, C, C) { return x > C(0) ? g : (x < C(0) ? -g : C(0)); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) {
    return cast_to<T, M>(x < 0 ? wrapped(0u - uint64_t(x)) : x);
  }
};
RG_UNARY_FORMULA(Exp) {
  RG_FORMULA C fwd(C x, C, C) { return M::exp(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return g * y; }
};
RG_UNARY_FORMULA(Log) {
  RG_FORMULA C fwd(C x, C, C) { return M::log(x); }
  RG_FORMULA C bwd(C g, C x, C, C) { return g / x; }
};
RG_UNARY_FORMULA(Sqrt) {
  RG_FORMULA C fwd(C x, C, C) { return M::sqrt(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return g / (C(2) * y); }
};
RG_UNARY_FORMULA(Rsqrt) {
  RG_FORMULA C fwd(C x, C, C) { return C(1) / M::sqrt(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return C(-0.5) * g * y * y * y; }
};
RG_UNARY_FORMULA(Sigmoid) {
  RG_FORMULA C fwd(C x, C, C) { return sigmoid_of<M>(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return g * y * (C(1) - y); }
};
RG_UNARY_FORMULA(Tanh) {
  RG_FORMULA C fwd(C x, C, C) { return M::tanh(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return g * (C(1) - y * y); }
};
RG_UNARY_FORMULA(Relu) {
  RG_FORMULA C fwd(C x, C, C) { return x < C(0) ? C(0) : x; }  // NaN stays NaN
  RG_FORMULA C bwd(C g, C y, C, C) { return y > C(0) ? g : C(0); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(x < 0 ? int64_t{0} : x); }
};
RG_UNARY_FORMULA(LeakyRelu) {
  RG_FORMULA C fwd(C x, C slope, C) { return x > C(0) ? x : x * slope; }
  RG_FORMULA C bwd(C g, C x, C slope, C) { return x > C(0) ? g : g * slope; }
};
RG_UNARY_FORMULA(Silu) {
  RG_FORMULA C fwd(C x, C, C) { return x / (C(1) + M::exp(-x)); }
  RG_FORMULA C bwd(C g, C x, C, C) {
    const C s = sigmoid_of<M>(x);
    return g * s * (C(1) + x * (C(1) - s));
  }
};
RG_UNARY_FORMULA(Pow) {  // the exponents computed exactly are the same on both devices
  RG_FORMULA C fwd(C x, C e, C) {
    if (e == C(2)) return x * x;
    if (e == C(1)) return x;
    if (e == C(0.5)) return M::sqrt(x);
    if (e == C(3)) return x * x * x;
    if (e == C(-1)) return C(1) / x;
    return M::pow(x, e);
  }
  RG_FORMULA C bwd(C g, C x, C e, C) {
    if (e == C(0)) return C(0);
    if (e == C(2)) return C(2) * x * g;
    return g * e * M::pow(x, e - C(1));
  }
};
RG_UNARY_FORMULA(Clamp) {  // min(max(x, lo), hi): NaN passes, and lo > hi gives hi, as in PyTorch
  RG_FORMULA C fwd(C x, C lo, C hi) {
    const C r = x < lo ? lo : x;
    return r > hi ? hi : r;
  }
  RG_FORMULA C bwd(C g, C x, C lo, C hi) { return x >= lo && x <= hi ? g : C(0); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars& p) {
    const int64_t r = x < p.lo ? p.lo : x;
    return cast_to<T, M>(r > p.hi ? p.hi : r);
  }
};
RG_UNARY_FORMULA(Affine) {
  RG_FORMULA C fwd(C x, C a, C b) { return M::add_rn(M::mul_rn(a, x), b); }
  RG_FORMULA C bwd(C g, C, C a, C) { return g * a; }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars& p) {
    if (p.exact) return cast_to<T, M>(wrapped(p.a * uint64_t(x) + p.b));
    return cast_to<T, M>(M::add_rn(M::mul_rn(p.alpha, static_cast<double>(x)), p.beta));
  }
};
RG_UNARY_FORMULA(Reciprocal) {
  RG_FORMULA C fwd(C x, C, C) { return C(1) / x; }
  RG_FORMULA C bwd(C g, C y, C, C) { return -g * y * y; }
};
RG_UNARY_FORMULA(Sign) {  // sign(NaN) is 0, as torch.sign
  RG_FORMULA C fwd(C x, C, C) { return static_cast<C>((x > C(0)) - (x < C(0))); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(int64_t((x > 0) - (x < 0))); }
};
RG_UNARY_FORMULA(Square) {
  RG_FORMULA C fwd(C x, C, C) { return x * x; }
  RG_FORMULA C bwd(C g, C x, C, C) { return C(2) * x * g; }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(wrapped(uint64_t(x) * uint64_t(x))); }
};
RG_UNARY_FORMULA(Softplus) {
  RG_FORMULA C fwd(C x, C, C) { return softplus_of<M>(x); }
  RG_FORMULA C bwd(C g, C x, C, C) {
    if (x > C(20)) return g;
    const C z = M::exp(x);
    return g * z / (z + C(1));
  }
};
RG_UNARY_FORMULA(Log1p) {
  RG_FORMULA C fwd(C x, C, C) { return M::log1p(x); }
  RG_FORMULA C bwd(C g, C x, C, C) { return g / (C(1) + x); }
};
RG_UNARY_FORMULA(Expm1) {
  RG_FORMULA C fwd(C x, C, C) { return M::expm1(x); }
  RG_FORMULA C bwd(C g, C y, C, C) { return g * (y + C(1)); }
};
RG_UNARY_FORMULA(Floor) {
  RG_FORMULA C fwd(C x, C, C) { return M::floor(x); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(x); }
};
RG_UNARY_FORMULA(Round) {  // half to even
  RG_FORMULA C fwd(C x, C, C) { return M::rint(x); }
  RG_INT_FORMULA T ifwd(int64_t x, const UnaryIntScalars&) { return cast_to<T, M>(x); }
};
RG_UNARY_FORMULA(RDiv) {
  RG_FORMULA C fwd(C x, C a, C) { return a / x; }
  RG_FORMULA C bwd(C g, C x, C a, C) { return -g * a / (x * x); }
};
RG_UNARY_FORMULA(IsFinite) {  // 1 or 0, converted to the output type (an integer is always finite)
  RG_FORMULA C fwd(C x, C, C) { return M::isfinite(x) ? C(1) : C(0); }
  RG_INT_FORMULA T ifwd(int64_t, const UnaryIntScalars&) { return cast_to<T, M>(int64_t{1}); }
};
RG_UNARY_FORMULA(Gelu) {
  RG_FORMULA C fwd(C x, C, C) { return C(0.5) * x * (C(1) + M::erf(x * C(0.70710678118654752440))); }
  RG_FORMULA C bwd(C g, C x, C, C) {
    const C cdf = C(0.5) * (C(1) + M::erf(x * C(0.70710678118654752440)));
    const C pdf = M::exp(C(-0.5) * x * x) * C(0.39894228040143267794);  // 1 / sqrt(2 pi)
    return g * (cdf + x * pdf);
  }
};
RG_UNARY_FORMULA(Hardswish) {  // x * relu6(x + 3) / 6
  RG_FORMULA C fwd(C x, C, C) {
    const C r = x + C(3);
    return x * (r < C(0) ? C(0) : (r > C(6) ? C(6) : r)) / C(6);
  }
  RG_FORMULA C bwd(C g, C x, C, C) {
    if (x < C(-3)) return C(0);
    if (x <= C(3)) return g * (x / C(3) + C(0.5));
    return g;
  }
};
RG_UNARY_FORMULA(Mish) {  // x * tanh(softplus(x))
  RG_FORMULA C fwd(C x, C, C) { return x * M::tanh(softplus_of<M>(x)); }
  RG_FORMULA C bwd(C g, C x, C, C) {
    const C s = sigmoid_of<M>(x);
    const C t = M::tanh(softplus_of<M>(x));
    return g * (t + x * s * (C(1) - t * t));
  }
};

// ---- binary formulas: one specialisation per row of RG_BINARY_OPS
template <BinaryOp OP>
struct BinaryFormula;
#define RG_BINARY_FORMULA(NAME) \
  template <>                   \
  struct BinaryFormula<BinaryOp::NAME>

RG_BINARY_FORMULA(Add) {
  RG_FORMULA C fwd(C a, C b, C alpha, C) { return M::add_rn(a, M::mul_rn(alpha, b)); }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars& p) {
    if (p.exact) return cast_to<T, M>(wrapped(uint64_t(a) + p.sa * uint64_t(b)));
    return cast_to<T, M>(M::add_rn(static_cast<double>(a), M::mul_rn(p.alpha, static_cast<double>(b))));
  }
};
RG_BINARY_FORMULA(Sub) {  // the integer scalars hold -alpha
  RG_FORMULA C fwd(C a, C b, C alpha, C) { return M::add_rn(a, -M::mul_rn(alpha, b)); }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars& p) {
    return BinaryFormula<BinaryOp::Add>::ifwd<M, T>(a, b, p);
  }
};
RG_BINARY_FORMULA(Mul) {
  RG_FORMULA C fwd(C a, C b, C, C) { return a * b; }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) {
    return cast_to<T, M>(wrapped(uint64_t(a) * uint64_t(b)));
  }
};
RG_BINARY_FORMULA(Div) {  // integers: true division truncated back; x / 0 gives 0
  RG_FORMULA C fwd(C a, C b, C, C) { return a / b; }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) {
    return cast_to<T, M>(b == 0 ? int64_t{0} : static_cast<int64_t>(static_cast<double>(a) / static_cast<double>(b)));
  }
};
RG_BINARY_FORMULA(Maximum) {  // NaN in either operand gives NaN, as torch.maximum
  RG_FORMULA C fwd(C a, C b, C, C) { return (a > b || a != a) ? a : b; }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) { return cast_to<T, M>(a > b ? a : b); }
};
RG_BINARY_FORMULA(Minimum) {
  RG_FORMULA C fwd(C a, C b, C, C) { return (a < b || a != a) ? a : b; }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) { return cast_to<T, M>(a < b ? a : b); }
};
RG_BINARY_FORMULA(Pow) {
  RG_FORMULA C fwd(C a, C b, C, C) { return M::pow(a, b); }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) { return cast_to<T, M>(int_pow(a, b)); }
};
RG_BINARY_FORMULA(Axpby) {
  RG_FORMULA C fwd(C a, C b, C alpha, C beta) { return M::add_rn(M::mul_rn(alpha, a), M::mul_rn(beta, b)); }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars& p) {
    if (p.exact) return cast_to<T, M>(wrapped(p.sa * uint64_t(a) + p.sb * uint64_t(b)));
    const double ad = static_cast<double>(a), bd = static_cast<double>(b);
    return cast_to<T, M>(M::add_rn(M::mul_rn(p.alpha, ad), M::mul_rn(p.beta, bd)));
  }
};
RG_BINARY_FORMULA(Eq) { RG_FORMULA bool fwd(C a, C b, C, C) { return a == b; } };
RG_BINARY_FORMULA(Ne) { RG_FORMULA bool fwd(C a, C b, C, C) { return a != b; } };
RG_BINARY_FORMULA(Lt) { RG_FORMULA bool fwd(C a, C b, C, C) { return a < b; } };
RG_BINARY_FORMULA(Le) { RG_FORMULA bool fwd(C a, C b, C, C) { return a <= b; } };
RG_BINARY_FORMULA(Gt) { RG_FORMULA bool fwd(C a, C b, C, C) { return a > b; } };
RG_BINARY_FORMULA(Ge) { RG_FORMULA bool fwd(C a, C b, C, C) { return a >= b; } };
RG_BINARY_FORMULA(LogicalAnd) { RG_FORMULA bool fwd(C a, C b, C, C) { return a != C(0) && b != C(0); } };
RG_BINARY_FORMULA(LogicalOr) { RG_FORMULA bool fwd(C a, C b, C, C) { return a != C(0) || b != C(0); } };
RG_BINARY_FORMULA(Atan2) {  // integers: computed in double, truncated
  RG_FORMULA C fwd(C a, C b, C, C) { return M::atan2(a, b); }
  RG_INT_FORMULA T ifwd(int64_t a, int64_t b, const BinaryIntScalars&) {
    return cast_to<T, M>(M::atan2(static_cast<double>(a), static_cast<double>(b)));
  }
};

// ---- one op chosen at compile time, with the flags deciding which form exists
template <UnaryOp OP, class M, class C>
RG_HD_INLINE C unary_bwd_of(C g, C v, C alpha, C beta) {
  if constexpr (unary_op_has_grad(OP)) {
    return UnaryFormula<OP>::template bwd<M>(g, v, alpha, beta);
  } else {
    return C(0);  // no gradient: the launchers refuse the op before any element is computed
  }
}
template <UnaryOp OP, class M, class T>
RG_HD_INLINE T unary_int_of(int64_t x, const UnaryIntScalars& p) {
  if constexpr (unary_op_keeps_integer(OP)) {
    return UnaryFormula<OP>::template ifwd<M, T>(x, p);
  } else {
    return cast_to<T, M>(x);  // float only: native:: promotes the input, the launchers refuse it
  }
}
// Integer operands; T is the output type (bool for comparisons, which compare in int64).
template <BinaryOp OP, class M, class T>
RG_HD_INLINE T binary_int_of(int64_t a, int64_t b, const BinaryIntScalars& p) {
  if constexpr (binary_op_is_comparison(OP)) {
    return cast_to<T, M>(BinaryFormula<OP>::template fwd<M>(a, b, int64_t{0}, int64_t{0}));
  } else {
    return BinaryFormula<OP>::template ifwd<M, T>(a, b, p);
  }
}
template <BinaryOp OP, class M, class C>
RG_HD_INLINE bool binary_cmp_of(C a, C b) {
  if constexpr (binary_op_is_comparison(OP)) {
    return BinaryFormula<OP>::template fwd<M>(a, b, C(0), C(0));
  } else {
    return false;  // not a comparison: never asked for a bool
  }
}
template <BinaryOp OP, class M, class C>
RG_HD_INLINE C binary_value_of(C a, C b, C alpha, C beta) {
  if constexpr (binary_op_is_comparison(OP)) {
    return C(0);  // comparisons: binary_cmp_of
  } else {
    return BinaryFormula<OP>::template fwd<M>(a, b, alpha, beta);
  }
}

// ---- the op chosen at run time: switches generated from the rows (the strided CUDA kernels)
template <class M, class C>
RG_HD_INLINE C unary_fwd(UnaryOp op, C x, C alpha, C beta) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case UnaryOp::NAME: return UnaryFormula<UnaryOp::NAME>::template fwd<M>(x, alpha, beta);
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return C(0);
}
template <class M, class C>
RG_HD_INLINE C unary_bwd(UnaryOp op, C g, C v, C alpha, C beta) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case UnaryOp::NAME: return unary_bwd_of<UnaryOp::NAME, M>(g, v, alpha, beta);
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return C(0);
}
template <class M, class T>
RG_HD_INLINE T unary_int(UnaryOp op, int64_t x, const UnaryIntScalars& p) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case UnaryOp::NAME: return unary_int_of<UnaryOp::NAME, M, T>(x, p);
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return cast_to<T, M>(x);
}
template <class M, class C>
RG_HD_INLINE C binary_fwd(BinaryOp op, C a, C b, C alpha, C beta) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case BinaryOp::NAME: return binary_value_of<BinaryOp::NAME, M>(a, b, alpha, beta);
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return C(0);
}
template <class M, class C>
RG_HD_INLINE bool binary_cmp(BinaryOp op, C a, C b) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case BinaryOp::NAME: return binary_cmp_of<BinaryOp::NAME, M>(a, b);
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return false;
}
template <class M, class T>
RG_HD_INLINE T binary_int(BinaryOp op, int64_t a, int64_t b, const BinaryIntScalars& p) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case BinaryOp::NAME: return binary_int_of<BinaryOp::NAME, M, T>(a, b, p);
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return T(0);
}

// ---- the op chosen at run time, for host code that instantiates one loop per op (the CPU loops
// and the flat CUDA launchers): f(std::integral_constant<UnaryOp, OP>{}) for the row of `op`.
template <class F>
decltype(auto) visit_unary_op(UnaryOp op, F&& f) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case UnaryOp::NAME: return f(std::integral_constant<UnaryOp, UnaryOp::NAME>{});
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return f(std::integral_constant<UnaryOp, UnaryOp{}>{});  // not reached: every op is a row
}
template <class F>
decltype(auto) visit_binary_op(BinaryOp op, F&& f) {
  switch (op) {
#define RG_CASE_(NAME, ...) \
  case BinaryOp::NAME: return f(std::integral_constant<BinaryOp, BinaryOp::NAME>{});
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return f(std::integral_constant<BinaryOp, BinaryOp{}>{});
}

// ---- every row has its formulas, and has exactly the forms its flags promise
namespace check {
struct AnyMath {};  // the checks only look at declarations, never at a body
template <class T>
concept Complete = requires { sizeof(T); };
template <UnaryOp OP>
concept HasBwd = requires(float g) { UnaryFormula<OP>::template bwd<AnyMath>(g, g, g, g); };
template <UnaryOp OP>
concept HasUnaryInt =
    requires(int64_t x, UnaryIntScalars p) { UnaryFormula<OP>::template ifwd<AnyMath, int64_t>(x, p); };
template <BinaryOp OP>
concept HasBinaryInt =
    requires(int64_t a, BinaryIntScalars p) { BinaryFormula<OP>::template ifwd<AnyMath, int64_t>(a, a, p); };
}  // namespace check
#define RG_CHECK_UNARY_ROW_(NAME, STR, ...)                                                             \
  static_assert(check::Complete<UnaryFormula<UnaryOp::NAME>>, "unary op " STR ": a row without a "      \
                "UnaryFormula in core/elementwise_formulas.h");                                        \
  static_assert(check::HasBwd<UnaryOp::NAME> == unary_op_has_grad(UnaryOp::NAME), "unary op " STR       \
                ": a bwd formula exactly when the row has kGradX or kGradY");                          \
  static_assert(check::HasUnaryInt<UnaryOp::NAME> == unary_op_keeps_integer(UnaryOp::NAME),            \
                "unary op " STR ": an ifwd formula exactly when the row has kKeepsInt");
RG_UNARY_OPS(RG_CHECK_UNARY_ROW_)
#undef RG_CHECK_UNARY_ROW_
#define RG_CHECK_BINARY_ROW_(NAME, STR, ...)                                                            \
  static_assert(check::Complete<BinaryFormula<BinaryOp::NAME>>, "binary op " STR ": a row without a "   \
                "BinaryFormula in core/elementwise_formulas.h");                                       \
  static_assert(check::HasBinaryInt<BinaryOp::NAME> != binary_op_is_comparison(BinaryOp::NAME),        \
                "binary op " STR ": an ifwd formula exactly when the result is not bool");
RG_BINARY_OPS(RG_CHECK_BINARY_ROW_)
#undef RG_CHECK_BINARY_ROW_

}  // namespace rg::ew
