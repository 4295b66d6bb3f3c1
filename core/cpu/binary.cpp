// CPU binary elementwise kernels (arithmetic, comparisons, logical ops) and where, for all dtypes:
// one loop per op, running that op's formulas from core/elementwise_formulas.h. Floats compute in
// acc_t; integers and bool in int64, cast back (wrapping) at the end.
#include <cstdint>
#include <type_traits>

#include "core/cpu/loops.h"
#include "core/elementwise_host.h"
#include "core/kernels.h"

namespace rg {

namespace {

using cpu::HostMath;

// out[i] = f(a[i], b[i]) with plain loops for the dense and scalar-operand cases.
template <typename To, typename T, typename F>
void map2(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  const Tensor* ts[3] = {&out, &a, &b};
  const auto m = make_strided_meta<3>(ts);
  To* o = static_cast<To*>(out.data_ptr());
  const T* ap = static_cast<const T*>(a.data_ptr());
  const T* bp = static_cast<const T*>(b.data_ptr());
  cpu::for_each_row<3>(m, [&](const int64_t (&off)[3], int64_t n, const int64_t (&st)[3]) {
    To* op = o + off[0];
    const T* x = ap + off[1];
    const T* y = bp + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) op[i] = f(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const T yv = y[0];
      for (int64_t i = 0; i < n; ++i) op[i] = f(x[i], yv);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const T xv = x[0];
      for (int64_t i = 0; i < n; ++i) op[i] = f(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) op[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
    }
  });
}

template <BinaryOp OP, typename T>
void binary_float_op(const Tensor& out, const Tensor& a, const Tensor& b, double alpha_d, double beta_d) {
  using A = cpu::acc_t<T>;
  using F = ew::BinaryFormula<OP>;
  if constexpr (binary_op_is_comparison(OP)) {
    map2<bool, T>(out, a, b, [](T x, T y) {
      return static_cast<bool>(F::template fwd<HostMath>(static_cast<A>(x), static_cast<A>(y), A(0), A(0)));
    });
  } else {
    const A beta = static_cast<A>(beta_d);
    auto run = [&](auto alpha_of) {
      map2<T, T>(out, a, b, [=](T x, T y) {
        return static_cast<T>(F::template fwd<HostMath>(static_cast<A>(x), static_cast<A>(y), alpha_of(), beta));
      });
    };
    // alpha 1 as a literal: the plain a + b loop
    if ((OP == BinaryOp::Add || OP == BinaryOp::Sub) && alpha_d == 1.0) {
      run([] { return A(1); });
    } else {
      run([al = static_cast<A>(alpha_d)] { return al; });
    }
  }
}

// Integers and bool in int64; comparisons write bool.
template <BinaryOp OP, typename T>
void binary_int_op(const Tensor& out, const Tensor& a, const Tensor& b, const ew::BinaryIntScalars& p) {
  using O = std::conditional_t<binary_op_is_comparison(OP), bool, T>;
  map2<O, T>(out, a, b, [=](T x, T y) {
    return ew::binary_int_of<OP, HostMath, O>(static_cast<int64_t>(x), static_cast<int64_t>(y), p);
  });
}

template <typename T>
void binary_typed(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) {
  if constexpr (std::is_floating_point_v<cpu::acc_t<T>>) {
    ew::visit_binary_op(op, [&](auto k) { binary_float_op<decltype(k)::value, T>(out, a, b, alpha, beta); });
  } else {
    const ew::BinaryIntScalars p = ew::binary_int_scalars(op, alpha, beta);
    ew::visit_binary_op(op, [&](auto k) { binary_int_op<decltype(k)::value, T>(out, a, b, p); });
  }
}

}  // namespace

void binary_cpu(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) {
  RG_CHECK(a.dtype() == b.dtype(), binary_op_name(op), ": operand dtypes ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), " differ");
  const DType want = binary_op_is_comparison(op) ? DType::b8 : a.dtype();
  RG_CHECK(out.dtype() == want, binary_op_name(op), ": output dtype ", dtype_name(out.dtype()), ", expected ",
           dtype_name(want));
  RG_DISPATCH_ALL(a.dtype(), binary_op_name(op), [&] { binary_typed<scalar_t>(out, a, b, op, alpha, beta); });
}

void where_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  RG_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got ", dtype_name(cond.dtype()));
  RG_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where: dtypes ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), " differ from the output's ", dtype_name(out.dtype()));
  const Tensor* ts[4] = {&out, &cond, &a, &b};
  const auto m = make_strided_meta<4>(ts);
  RG_DISPATCH_ALL(out.dtype(), "where", [&] {
    scalar_t* o = static_cast<scalar_t*>(out.data_ptr());
    const bool* cp = static_cast<const bool*>(cond.data_ptr());
    const scalar_t* ap = static_cast<const scalar_t*>(a.data_ptr());
    const scalar_t* bp = static_cast<const scalar_t*>(b.data_ptr());
    cpu::for_each_row<4>(m, [&](const int64_t (&off)[4], int64_t n, const int64_t (&st)[4]) {
      scalar_t* op = o + off[0];
      const bool* c = cp + off[1];
      const scalar_t* x = ap + off[2];
      const scalar_t* y = bp + off[3];
      if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
        for (int64_t i = 0; i < n; ++i) op[i] = c[i] ? x[i] : y[i];
      } else {
        for (int64_t i = 0; i < n; ++i) op[i * st[0]] = c[i * st[1]] ? x[i * st[2]] : y[i * st[3]];
      }
    });
  });
}

}  // namespace rg
