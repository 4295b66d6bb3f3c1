// CPU unary elementwise kernels and their fused gradients (unary_bwd): one loop per op, running
// that op's formulas from core/elementwise_formulas.h. Float dtypes compute in acc_t (float for
// f16/bf16); integer dtypes run the integer forms of the rows with kKeepsInt.
#include <cstdint>
#include <type_traits>

#include "core/cpu/loops.h"
#include "core/elementwise_host.h"
#include "core/kernels.h"

namespace rg {

namespace {

using cpu::HostMath;

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

// Calls run(alpha_of), alpha_of() giving the op's alpha: for pow, a literal for each exponent its
// formulas treat apart, and otherwise a value known to be none of them, so that the formula's
// tests on the exponent fold out of the loop (which then vectorises where the formula allows).
template <UnaryOp OP, typename A, typename Run>
void with_alpha(double alpha, Run&& run) {
  if constexpr (OP == UnaryOp::Pow) {
    if (alpha == 2.0) return run([] { return A(2); });
    if (alpha == 1.0) return run([] { return A(1); });
    if (alpha == 0.5) return run([] { return A(0.5); });
    if (alpha == 3.0) return run([] { return A(3); });
    if (alpha == -1.0) return run([] { return A(-1); });
    if (alpha == 0.0) return run([] { return A(0); });
    const A a = static_cast<A>(alpha);  // may still round to one of them: test the rounded value
    if (a != A(2) && a != A(1) && a != A(0.5) && a != A(3) && a != A(-1) && a != A(0)) {
      return run([a] {
        if (a == A(2) || a == A(1) || a == A(0.5) || a == A(3) || a == A(-1) || a == A(0)) __builtin_unreachable();
        return a;
      });
    }
  }
  run([a = static_cast<A>(alpha)] { return a; });
}

template <UnaryOp OP, typename T>
void unary_float_op(const Tensor& out, const Tensor& x, double alpha, double beta_d) {
  using A = cpu::acc_t<T>;
  const A beta = static_cast<A>(beta_d);
  with_alpha<OP, A>(alpha, [&](auto alpha_of) {
    map1<T, T>(out, x, [=](T v) {
      return static_cast<T>(ew::UnaryFormula<OP>::template fwd<HostMath>(static_cast<A>(v), alpha_of(), beta));
    });
  });
}

// Integer dtypes compute in int64 (wrapping like the narrower type when cast back).
template <UnaryOp OP, typename T>
void unary_int_op(const Tensor& out, const Tensor& x, const ew::UnaryIntScalars& p) {
  map1<T, T>(out, x, [=](T v) { return ew::unary_int_of<OP, HostMath, T>(static_cast<int64_t>(v), p); });
}

// The kBoolOut rows (isfinite): any input dtype into any output dtype.
template <UnaryOp OP>
void unary_bool_out_op(const Tensor& out, const Tensor& x, double alpha, double beta) {
  const ew::UnaryIntScalars p = ew::unary_int_scalars(OP, alpha, beta);
  RG_DISPATCH_ALL(out.dtype(), unary_op_name(OP), [&] {
    using out_t = scalar_t;
    RG_DISPATCH_ALL(x.dtype(), unary_op_name(OP), [&] {
      using A = cpu::acc_t<scalar_t>;
      if constexpr (std::is_floating_point_v<A>) {
        const A a = static_cast<A>(alpha), b = static_cast<A>(beta);
        map1<out_t, scalar_t>(out, x, [=](scalar_t v) {
          return cpu::cast<out_t>(ew::UnaryFormula<OP>::template fwd<HostMath>(static_cast<A>(v), a, b));
        });
      } else {
        map1<out_t, scalar_t>(out, x, [=](scalar_t v) {
          return ew::unary_int_of<OP, HostMath, out_t>(static_cast<int64_t>(v), p);
        });
      }
    });
  });
}

template <UnaryOp OP, typename T>
void unary_bwd_op(const Tensor& gx, const Tensor& gy, const Tensor& xy, double alpha, double beta_d) {
  using A = cpu::acc_t<T>;
  const A beta = static_cast<A>(beta_d);
  // v is the saved input x, or the output y for the rows with kGradY
  with_alpha<OP, A>(alpha, [&](auto alpha_of) {
    map2<T>(gx, gy, xy, [=](T g, T v) {
      return static_cast<T>(
          ew::unary_bwd_of<OP, HostMath>(static_cast<A>(g), static_cast<A>(v), alpha_of(), beta));
    });
  });
}

template <typename T>
void unary_typed(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  if constexpr (std::is_floating_point_v<cpu::acc_t<T>>) {
    ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (!unary_op_bool_out(OP)) unary_float_op<OP, T>(out, x, alpha, beta);
    });
  } else {
    if (!unary_op_keeps_integer(op)) throw_unsupported_dtype(unary_op_name(op), x.dtype(), "cpu");
    RG_CHECK(!(op == UnaryOp::Neg && x.dtype() == DType::b8),
             "Negation, the `-` operator, on a bool tensor is not supported.");
    const ew::UnaryIntScalars p = ew::unary_int_scalars(op, alpha, beta);
    ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (unary_op_keeps_integer(OP) && !unary_op_bool_out(OP)) unary_int_op<OP, T>(out, x, p);
    });
  }
}

}  // namespace

void unary_cpu(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  if (unary_op_bool_out(op)) {
    ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (unary_op_bool_out(OP)) unary_bool_out_op<OP>(out, x, alpha, beta);
    });
    return;
  }
  RG_CHECK(out.dtype() == x.dtype(), unary_op_name(op), ": output dtype ", dtype_name(out.dtype()),
           " differs from input dtype ", dtype_name(x.dtype()));
  RG_DISPATCH_ALL(x.dtype(), unary_op_name(op), [&] { unary_typed<scalar_t>(out, x, op, alpha, beta); });
}

void unary_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) {
  RG_CHECK(unary_op_has_grad(op), unary_op_name(op), " has no gradient formula");
  RG_CHECK(gx.dtype() == xy.dtype() && gy.dtype() == xy.dtype(), unary_op_name(op), " backward: dtypes ",
           dtype_name(gx.dtype()), ", ", dtype_name(gy.dtype()), ", ", dtype_name(xy.dtype()), " differ");
  RG_DISPATCH_FLOAT(xy.dtype(), unary_op_name(op), [&] {
    ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (unary_op_has_grad(OP)) unary_bwd_op<OP, scalar_t>(gx, gy, xy, alpha, beta);
    });
  });
}

}  // namespace rg
