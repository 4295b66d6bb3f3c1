// Reductions on CPU: every ReduceOp over many dim sets of contiguous, permuted, sliced and
// expanded inputs in every dtype, checked against a plain loop in this file; NaN, ties, 0-dim,
// empty inputs, long reductions (split into chunks) and the error messages.
#include <algorithm>
#include <cmath>

#include "test_util.h"

using namespace rg;

namespace {

Tensor ref(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s, DType::f64); }

// The values of x reduced into each output, in logical order, for the sorted dim set `dims`.
std::vector<std::vector<double>> groups(const Tensor& x, const Shape& dims, Shape* out_shape) {
  const auto v = x.to_vector<double>();
  const Shape& s = x.sizes();
  Shape os = s;
  for (int64_t d : dims) os[static_cast<size_t>(d)] = 1;
  *out_shape = os;
  std::vector<std::vector<double>> g(static_cast<size_t>(shape_numel(os)));
  const int64_t nd = x.dim();
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t rem = static_cast<int64_t>(i);
    for (int64_t d = nd - 1; d >= 0; --d) {
      idx[static_cast<size_t>(d)] = rem % s[static_cast<size_t>(d)];
      rem /= s[static_cast<size_t>(d)];
    }
    int64_t o = 0;
    for (int64_t d = 0; d < nd; ++d) o = o * os[static_cast<size_t>(d)] + (os[static_cast<size_t>(d)] == 1 ? 0 : idx[static_cast<size_t>(d)]);
    g[static_cast<size_t>(o)].push_back(v[i]);
  }
  return g;
}

double ref_op(ReduceOp op, const std::vector<double>& v, int64_t correction) {
  const double n = static_cast<double>(v.size());
  switch (op) {
    case ReduceOp::Sum: {
      double s = 0;
      for (double x : v) s += x;
      return s;
    }
    case ReduceOp::Mean: return ref_op(ReduceOp::Sum, v, 0) / n;
    case ReduceOp::Prod: {
      double p = 1;
      for (double x : v) p *= x;
      return p;
    }
    case ReduceOp::Max:
    case ReduceOp::Min:
    case ReduceOp::AbsMax: {
      double m = op == ReduceOp::Min ? INFINITY : -INFINITY;
      for (double x : v) {
        if (std::isnan(x)) return NAN;
        const double y = op == ReduceOp::AbsMax ? std::fabs(x) : x;
        m = op == ReduceOp::Min ? std::min(m, y) : std::max(m, y);
      }
      return m;
    }
    case ReduceOp::Argmax:
    case ReduceOp::Argmin: {
      size_t best = 0;
      for (size_t i = 0; i < v.size(); ++i) {
        if (std::isnan(v[i])) return static_cast<double>(i);
        if (op == ReduceOp::Argmax ? v[i] > v[best] : v[i] < v[best]) best = i;
      }
      return static_cast<double>(best);
    }
    case ReduceOp::Var: {
      const double m = ref_op(ReduceOp::Mean, v, 0);
      double ss = 0;
      for (double x : v) ss += (x - m) * (x - m);
      return ss / std::max(0.0, n - static_cast<double>(correction));
    }
  }
  return NAN;
}

// Checks reduce(op, x, dims, keepdim) against the loop, with keepdim both ways.
void check_reduce(ReduceOp op, const Tensor& x, const Shape& dims, test::Tol tol, int64_t correction = 1) {
  Shape sorted;
  if (dims.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) sorted.push_back(d);
  } else {
    for (int64_t d : dims) sorted.push_back(d < 0 ? d + x.dim() : d);
    std::sort(sorted.begin(), sorted.end());
  }
  Shape os;
  const auto g = groups(x, sorted, &os);
  std::vector<double> want(g.size());
  for (size_t i = 0; i < g.size(); ++i) want[i] = ref_op(op, g[i], correction);
  CAPTURE(reduce_op_name(op));
  CAPTURE(shape_str(x.sizes()));
  CAPTURE(shape_str(dims));
  CAPTURE(dtype_name(x.dtype()));
  const Tensor k = native::reduce(op, x, dims, true, correction);
  RG_CHECK_CLOSE(k, ref(want, os), tol);
  Shape squeezed;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (!std::binary_search(sorted.begin(), sorted.end(), d)) squeezed.push_back(x.size(d));
  }
  const Tensor r = native::reduce(op, x, dims, false, correction);
  CHECK(r.sizes() == squeezed);
  if (op == ReduceOp::Argmax || op == ReduceOp::Argmin) CHECK(r.dtype() == DType::i64);
}

test::Tol red_tol(ReduceOp op, DType dt) {
  if (op == ReduceOp::Argmax || op == ReduceOp::Argmin) return {0, 0};
  if (dt == DType::f32 && (op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Var)) return {1e-5, 1e-5};
  return test::tol_for(dt);
}

const std::vector<ReduceOp> kFloatOps = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max,  ReduceOp::Min,   ReduceOp::Argmax,
                                         ReduceOp::Argmin, ReduceOp::Var, ReduceOp::Prod, ReduceOp::AbsMax};

}  // namespace

TEST_CASE("every reduce op over every dim set of a 3-D tensor, every float dtype") {
  for (DType dt : test::float_dtypes()) {
    const Tensor x = test::uniform({4, 5, 6}, 0.5, 1.5, dt, 7);  // positive: prod stays O(1)-ish per dim
    const Tensor xs = native::unary(UnaryOp::Affine, x, 2.0, -2.0);  // [-1, 1): signs for max/min/absmax
    for (ReduceOp op : kFloatOps) {
      const Tensor& in = op == ReduceOp::Prod ? x : xs;
      const bool arg = op == ReduceOp::Argmax || op == ReduceOp::Argmin;
      const std::vector<Shape> dim_sets =
          arg ? std::vector<Shape>{{0}, {1}, {2}, {-1}}
              : std::vector<Shape>{{0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {}, {2, 0}, {-1}};
      for (const Shape& dims : dim_sets) check_reduce(op, in, dims, red_tol(op, dt));
    }
  }
}

TEST_CASE("reductions of permuted, sliced and expanded inputs") {
  const Tensor base = test::uniform({6, 7, 8}, -1, 1, DType::f64, 11);
  const Tensor perm = native::permute(base, {2, 0, 1});                 // (8, 6, 7), no unit stride innermost
  const Tensor sl = native::slice(native::slice(base, 2, 1, 8, 3), 0, 0, 6, 2);  // (3, 7, 3)
  const Tensor ex = native::expand(test::uniform({3, 1, 5}, -1, 1, DType::f64, 12), {3, 4, 5});  // stride 0 in dim 1
  const Tensor tr = native::transpose(test::uniform({9, 70}, -1, 1, DType::f32, 13), 0, 1);     // (70, 9)
  for (ReduceOp op : kFloatOps) {
    const bool arg = op == ReduceOp::Argmax || op == ReduceOp::Argmin;
    for (const Tensor* t : {&perm, &sl, &ex, &tr}) {
      const std::vector<Shape> dim_sets = arg ? std::vector<Shape>{{0}, {1}}
                                              : std::vector<Shape>{{0}, {1}, {0, 1}, {}, {t->dim() - 1}};
      for (const Shape& dims : dim_sets) {
        if (op == ReduceOp::Prod && t->numel() > 100 && dims.empty()) continue;  // underflows to 0 either way
        check_reduce(op, *t, dims, red_tol(op, t->dtype()));
      }
    }
  }
}

TEST_CASE("NCHW statistics: reduce over {0, 2, 3} and a bias gradient over {0}") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    const Tensor x = test::uniform({4, 3, 9, 11}, -2, 2, dt, 21);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Var, ReduceOp::Max}) {
      check_reduce(op, x, {0, 2, 3}, red_tol(op, dt));
    }
    const Tensor g = test::uniform({300, 37}, -1, 1, dt, 22);
    check_reduce(ReduceOp::Sum, g, {0}, red_tol(ReduceOp::Sum, dt));
    check_reduce(ReduceOp::Argmax, g, {0}, {0, 0});
    check_reduce(ReduceOp::Var, g, {0}, red_tol(ReduceOp::Var, dt), 0);
    const Tensor wide = test::uniform({5, 600}, -1, 1, dt, 23);  // more than one block of outputs
    check_reduce(ReduceOp::Mean, wide, {0}, red_tol(ReduceOp::Mean, dt));
    check_reduce(ReduceOp::Min, wide, {0}, red_tol(ReduceOp::Min, dt));
  }
}

TEST_CASE("long reductions split into chunks give the loop's answer") {
  const Tensor x = test::uniform({200003}, -1, 1, DType::f32, 31);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Var, ReduceOp::Max, ReduceOp::Argmax, ReduceOp::Argmin,
                      ReduceOp::AbsMax}) {
    check_reduce(op, x, {}, red_tol(op, DType::f32));
  }
  const Tensor cols = test::uniform({70001, 3}, -1, 1, DType::f64, 32);  // one block of outputs, long reduction
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Var, ReduceOp::Argmin, ReduceOp::Max}) {
    check_reduce(op, cols, {0}, red_tol(op, DType::f64));
  }
  // several reduced dims that do not merge, split at chunk boundaries inside a run
  const Tensor tr = native::slice(test::uniform({300, 410}, -1, 1, DType::f64, 34), 1, 0, 401);  // rows with gaps
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Var, ReduceOp::Min, ReduceOp::AbsMax}) {
    check_reduce(op, tr, {}, red_tol(op, DType::f64));
  }
  const Tensor stepped = native::slice(test::uniform({800, 250, 3}, -1, 1, DType::f64, 35), 1, 0, 250, 3);  // (800, 84, 3)
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
    check_reduce(op, stepped, {0, 1}, red_tol(op, DType::f64));  // outer loop shape, split
    check_reduce(op, native::slice(stepped, 0, 0, 40), {0, 1}, red_tol(op, DType::f64));  // not split
    check_reduce(op, stepped, {0, 2}, red_tol(op, DType::f64));
  }
  const Tensor two = test::uniform({2, 80000}, -1, 1, DType::f64, 33);
  check_reduce(ReduceOp::Sum, two, {1}, red_tol(ReduceOp::Sum, DType::f64));
  check_reduce(ReduceOp::Argmax, two, {1}, {0, 0});
  // a maximum that sits in the last chunk, tied with one in the first: the first index wins
  std::vector<double> v(150000, 0.0);
  v[5] = 7.0;
  v[140000] = 7.0;
  v[140001] = 8.0;
  v[149999] = 8.0;
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<double>(v), {0}, false).item() == 140001.0);
  CHECK(native::reduce(ReduceOp::Argmin, from_vector<double>(v), {0}, false).item() == 0.0);
  std::vector<double> w(150000, 0.0);  // tied maxima in different chunks
  w[40000] = 9.0;
  w[100000] = 9.0;
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<double>(w), {0}, false).item() == 40000.0);
  w[100000] = -9.0;
  w[140000] = -9.0;
  CHECK(native::reduce(ReduceOp::Argmin, from_vector<double>(w), {0}, false).item() == 100000.0);
}

TEST_CASE("integer reductions: sums in int64, exact max/min/argmax, prod") {
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::b8}) {
    CAPTURE(dtype_name(dt));
    Tensor x = test::uniform({5, 13}, dt == DType::b8 ? 0 : 0, dt == DType::b8 ? 2 : 9, DType::f64, 41);
    native::unary_(UnaryOp::Floor, x);
    x = native::to(x, kCPU, dt);
    const Tensor s = native::reduce(ReduceOp::Sum, x, {1}, false);
    CHECK(s.dtype() == DType::i64);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Argmax, ReduceOp::Argmin}) {
      check_reduce(op, x, {1}, {0, 0});
      check_reduce(op, x, {0}, {0, 0});
    }
  }
  const Tensor p = native::reduce(ReduceOp::Prod, from_vector<int32_t>({2, 3, 4, 100000}), {}, false);
  CHECK(p.dtype() == DType::i64);
  CHECK(p.to_vector<int64_t>()[0] == 2400000);
  const int64_t big = (int64_t{1} << 60) + 1;
  CHECK(native::reduce(ReduceOp::Max, from_vector<int64_t>({big - 1, big, big - 2}), {}, false).data<int64_t>()[0] ==
        big);
  CHECK(native::reduce(ReduceOp::Sum, from_vector<int64_t>({big, 1}), {}, false).data<int64_t>()[0] == big + 1);
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<int64_t>({big - 1, big, big - 2}), {}, false).item() == 1.0);
  CHECK(native::reduce(ReduceOp::Sum, from_vector<int32_t>({2147483647, 2147483647}), {}, false).to_vector<int64_t>()[0] ==
        4294967294LL);
  CHECK(native::reduce(ReduceOp::AbsMax, from_vector<int32_t>({3, -7, 5}), {}, false).item() == 7.0);
}

TEST_CASE("NaN propagates through max, min and abs-max; argmax points at the first NaN") {
  const Tensor x = from_vector<float>({1.0f, NAN, 3.0f, NAN, -5.0f}, {5});
  CHECK(std::isnan(native::reduce(ReduceOp::Max, x, {}, false).item()));
  CHECK(std::isnan(native::reduce(ReduceOp::Min, x, {}, false).item()));
  CHECK(std::isnan(native::reduce(ReduceOp::AbsMax, x, {}, false).item()));
  CHECK(native::reduce(ReduceOp::Argmax, x, {0}, false).item() == 1.0);
  CHECK(native::reduce(ReduceOp::Argmin, x, {0}, false).item() == 1.0);
  CHECK(std::isnan(native::reduce(ReduceOp::Sum, x, {}, false).item()));
  // a NaN at the end of a long split reduction still wins
  std::vector<float> v(100000, 1.0f);
  v[99999] = NAN;
  v[70000] = 2.0f;
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<float>(v), {0}, false).item() == 99999.0);
  CHECK(std::isnan(native::reduce(ReduceOp::Max, from_vector<float>(v), {}, false).item()));
  // ties: the first index
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<float>({1, 3, 3, 2}), {0}, false).item() == 1.0);
  CHECK(native::reduce(ReduceOp::Argmin, from_vector<float>({2, 1, 1, 5}), {0}, false).item() == 1.0);
  // -inf and +inf are ordinary values
  CHECK(native::reduce(ReduceOp::Argmax, from_vector<float>({-INFINITY, -INFINITY}), {0}, false).item() == 0.0);
  CHECK(native::reduce(ReduceOp::Max, from_vector<float>({-INFINITY, -INFINITY}), {}, false).item() == -INFINITY);
}

TEST_CASE("variance with Bessel's correction, population variance and too few elements") {
  const Tensor x = from_vector<double>({1, 2, 3, 4}, {4});
  CHECK(native::reduce(ReduceOp::Var, x, {}, false, 1).item() == doctest::Approx(5.0 / 3.0));  // hand: ss = 5
  CHECK(native::reduce(ReduceOp::Var, x, {}, false, 0).item() == doctest::Approx(1.25));
  CHECK(std::isnan(native::reduce(ReduceOp::Var, from_vector<double>({2.0}), {}, false, 1).item()));
  CHECK(native::reduce(ReduceOp::Var, from_vector<double>({2.0}), {}, false, 0).item() == 0.0);
  // large offset: no catastrophic cancellation
  const Tensor y = from_vector<float>({1e4f + 1, 1e4f + 2, 1e4f + 3, 1e4f + 4});
  CHECK(native::reduce(ReduceOp::Var, y, {}, false, 1).item() == doctest::Approx(5.0 / 3.0).epsilon(1e-6));
}

TEST_CASE("0-dim and empty inputs") {
  const Tensor s = scalar_tensor(3.5);
  CHECK(native::reduce(ReduceOp::Sum, s, {}, false).item() == 3.5);
  CHECK(native::reduce(ReduceOp::Sum, s, {}, false).dim() == 0);
  CHECK(native::reduce(ReduceOp::Argmax, s, {}, false).item() == 0.0);
  CHECK(std::isnan(native::reduce(ReduceOp::Var, s, {}, false).item()));
  const Tensor e = zeros({0, 3});
  CHECK(native::reduce(ReduceOp::Sum, e, {0}, false).to_vector<double>() == std::vector<double>{0, 0, 0});
  CHECK(native::reduce(ReduceOp::Prod, e, {0}, false).to_vector<double>() == std::vector<double>{1, 1, 1});
  CHECK(std::isnan(native::reduce(ReduceOp::Mean, e, {0}, false).to_vector<double>()[0]));
  CHECK(native::reduce(ReduceOp::Sum, e, {1}, false).sizes() == Shape{0});
  CHECK(native::reduce(ReduceOp::Max, e, {1}, false).sizes() == Shape{0});  // no output, no error
  CHECK_THROWS_AS(native::reduce(ReduceOp::Max, e, {0}, false), rg::Error);
}

TEST_CASE("reduction errors name the op, the dims and the shape") {
  const Tensor x = zeros({2, 3});
  try {
    native::reduce(ReduceOp::Sum, x, {2}, false);
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("sum") != std::string::npos);
    CHECK(msg.find("float32[2, 3]") != std::string::npos);
  }
  try {
    native::reduce(ReduceOp::Max, zeros({0, 3}), {0}, false);
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    CHECK(std::string(e.what()).find("max") != std::string::npos);
  }
  CHECK_THROWS_AS(native::reduce(ReduceOp::Argmax, x, {0, 1}, false), rg::Error);
  CHECK_THROWS_AS(native::reduce(ReduceOp::Mean, from_vector<int32_t>({1, 2}), {}, false), rg::Error);
  CHECK_THROWS_AS(native::reduce(ReduceOp::Sum, x, {1, 1}, false), rg::Error);
}

TEST_CASE("argmax over all dims of a 2-D tensor indexes the flattened tensor") {
  const Tensor x = from_vector<float>({1, 9, 3, 4, 9, 2}, {2, 3});
  CHECK(native::reduce(ReduceOp::Argmax, x, {}, false).item() == 1.0);
  CHECK(native::reduce(ReduceOp::Argmin, native::transpose(x, 0, 1), {}, false).item() == 0.0);
  // transposed: flattened order is 1 4 9 9 3 2 -> argmax 2
  CHECK(native::reduce(ReduceOp::Argmax, native::transpose(x, 0, 1), {}, false).item() == 2.0);
}
