// CPU binary elementwise kernels (arithmetic, comparisons, logical ops) and where, for all
// dtypes. Floats compute in acc_t; integers and bool in int64, cast back (wrapping) at the end.
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {


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

template <typename T>
void binary_float(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha_d, double beta_d) {
  using A = cpu::acc_t<T>;
  const A alpha = static_cast<A>(alpha_d), beta = static_cast<A>(beta_d);
  auto run = [&](auto fn) {
    map2<T, T>(out, a, b, [=](T x, T y) { return static_cast<T>(fn(static_cast<A>(x), static_cast<A>(y))); });
  };
  auto cmp = [&](auto fn) {
    map2<bool, T>(out, a, b, [=](T x, T y) { return static_cast<bool>(fn(static_cast<A>(x), static_cast<A>(y))); });
  };
  switch (op) {
    case BinaryOp::Add:
      if (alpha_d == 1.0) run([](A x, A y) { return x + y; });
      else run([=](A x, A y) { return x + alpha * y; });
      break;
    case BinaryOp::Sub:
      if (alpha_d == 1.0) run([](A x, A y) { return x - y; });
      else run([=](A x, A y) { return x - alpha * y; });
      break;
    case BinaryOp::Mul: run([](A x, A y) { return x * y; }); break;
    case BinaryOp::Div: run([](A x, A y) { return x / y; }); break;
    // NaN in either operand gives NaN, as torch.maximum / torch.minimum do.
    case BinaryOp::Maximum: run([](A x, A y) { return (x > y || x != x) ? x : y; }); break;
    case BinaryOp::Minimum: run([](A x, A y) { return (x < y || x != x) ? x : y; }); break;
    case BinaryOp::Pow: run([](A x, A y) { return std::pow(x, y); }); break;
    case BinaryOp::Axpby: run([=](A x, A y) { return alpha * x + beta * y; }); break;
    case BinaryOp::Atan2: run([](A x, A y) { return std::atan2(x, y); }); break;
    case BinaryOp::Eq: cmp([](A x, A y) { return x == y; }); break;
    case BinaryOp::Ne: cmp([](A x, A y) { return x != y; }); break;
    case BinaryOp::Lt: cmp([](A x, A y) { return x < y; }); break;
    case BinaryOp::Le: cmp([](A x, A y) { return x <= y; }); break;
    case BinaryOp::Gt: cmp([](A x, A y) { return x > y; }); break;
    case BinaryOp::Ge: cmp([](A x, A y) { return x >= y; }); break;
    case BinaryOp::LogicalAnd: cmp([](A x, A y) { return x != A(0) && y != A(0); }); break;
    case BinaryOp::LogicalOr: cmp([](A x, A y) { return x != A(0) || y != A(0); }); break;
  }
}

bool is_int64_valued(double v) { return v == std::floor(v) && std::fabs(v) < 9.2e18; }

// a ^ b for integers by squaring; a negative exponent gives 1 / a^|b| truncated (0 unless |a| == 1).
int64_t int_pow(int64_t a, int64_t b) {
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

template <typename T>
void binary_int(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) {
  using I = int64_t;
  using U = uint64_t;
  auto run = [&](auto fn) {
    map2<T, T>(out, a, b, [=](T x, T y) { return cpu::cast<T>(fn(static_cast<I>(x), static_cast<I>(y))); });
  };
  auto cmp = [&](auto fn) {
    map2<bool, T>(out, a, b, [=](T x, T y) { return static_cast<bool>(fn(static_cast<I>(x), static_cast<I>(y))); });
  };
  // Scalars that are not whole numbers make the op run in double (then truncate).
  auto run_double = [&](auto fn) {
    map2<T, T>(out, a, b, [=](T x, T y) { return cpu::cast<T>(fn(static_cast<double>(x), static_cast<double>(y))); });
  };
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Sub: {
      if (is_int64_valued(alpha)) {
        const U s = static_cast<U>(static_cast<I>(op == BinaryOp::Add ? alpha : -alpha));
        run([=](I x, I y) { return static_cast<I>(static_cast<U>(x) + s * static_cast<U>(y)); });
      } else {
        const double s = op == BinaryOp::Add ? alpha : -alpha;
        run_double([=](double x, double y) { return x + s * y; });
      }
      break;
    }
    case BinaryOp::Mul: run([](I x, I y) { return static_cast<I>(static_cast<U>(x) * static_cast<U>(y)); }); break;
    case BinaryOp::Div:  // true division truncated back to the integer type; x / 0 gives 0
      run([](I x, I y) { return y == 0 ? I{0} : static_cast<I>(static_cast<double>(x) / static_cast<double>(y)); });
      break;
    case BinaryOp::Maximum: run([](I x, I y) { return x > y ? x : y; }); break;
    case BinaryOp::Minimum: run([](I x, I y) { return x < y ? x : y; }); break;
    case BinaryOp::Pow: run([](I x, I y) { return int_pow(x, y); }); break;
    case BinaryOp::Axpby:
      if (is_int64_valued(alpha) && is_int64_valued(beta)) {
        const U sa = static_cast<U>(static_cast<I>(alpha)), sb = static_cast<U>(static_cast<I>(beta));
        run([=](I x, I y) { return static_cast<I>(sa * static_cast<U>(x) + sb * static_cast<U>(y)); });
      } else {
        run_double([=](double x, double y) { return alpha * x + beta * y; });
      }
      break;
    case BinaryOp::Atan2: run_double([](double x, double y) { return std::atan2(x, y); }); break;
    case BinaryOp::Eq: cmp([](I x, I y) { return x == y; }); break;
    case BinaryOp::Ne: cmp([](I x, I y) { return x != y; }); break;
    case BinaryOp::Lt: cmp([](I x, I y) { return x < y; }); break;
    case BinaryOp::Le: cmp([](I x, I y) { return x <= y; }); break;
    case BinaryOp::Gt: cmp([](I x, I y) { return x > y; }); break;
    case BinaryOp::Ge: cmp([](I x, I y) { return x >= y; }); break;
    case BinaryOp::LogicalAnd: cmp([](I x, I y) { return x != 0 && y != 0; }); break;
    case BinaryOp::LogicalOr: cmp([](I x, I y) { return x != 0 || y != 0; }); break;
  }
}

}  // namespace

void binary_cpu(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) {
  RG_CHECK(a.dtype() == b.dtype(), binary_op_name(op), ": operand dtypes ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), " differ");
  const DType want = binary_op_is_comparison(op) ? DType::b8 : a.dtype();
  RG_CHECK(out.dtype() == want, binary_op_name(op), ": output dtype ", dtype_name(out.dtype()), ", expected ",
           dtype_name(want));
  RG_DISPATCH_ALL(a.dtype(), binary_op_name(op), [&] {
    if constexpr (std::is_floating_point_v<cpu::acc_t<scalar_t>>) {
      binary_float<scalar_t>(out, a, b, op, alpha, beta);
    } else {
      binary_int<scalar_t>(out, a, b, op, alpha, beta);
    }
  });
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
