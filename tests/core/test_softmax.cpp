// softmax / log_softmax and their gradients on CPU along every dim, every float dtype, against a
// loop in double in this file (the gradient through the explicit Jacobian); stability and masking.
#include <cmath>

#include "test_util.h"

using namespace rg;

namespace {

Tensor ref(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s, DType::f64); }

struct Lines {
  int64_t outer = 1, n = 1, inner = 1;
  int64_t at(int64_t o, int64_t i, int64_t j) const { return (o * n + i) * inner + j; }
};
Lines lines(const Shape& s, int64_t dim) {
  Lines l;
  if (s.empty()) return l;
  if (dim < 0) dim += static_cast<int64_t>(s.size());
  for (int64_t d = 0; d < dim; ++d) l.outer *= s[static_cast<size_t>(d)];
  l.n = s[static_cast<size_t>(dim)];
  for (size_t d = static_cast<size_t>(dim) + 1; d < s.size(); ++d) l.inner *= s[d];
  return l;
}

// softmax (or log_softmax) of x along dim, in double, straight from the definition.
std::vector<double> ref_softmax(const std::vector<double>& x, const Shape& s, int64_t dim, bool log) {
  const Lines l = lines(s, dim);
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t j = 0; j < l.inner; ++j) {
      double m = -INFINITY;
      for (int64_t i = 0; i < l.n; ++i) m = std::max(m, x[static_cast<size_t>(l.at(o, i, j))]);
      double z = 0;
      for (int64_t i = 0; i < l.n; ++i) z += std::exp(x[static_cast<size_t>(l.at(o, i, j))] - m);
      for (int64_t i = 0; i < l.n; ++i) {
        const double v = x[static_cast<size_t>(l.at(o, i, j))] - m;
        y[static_cast<size_t>(l.at(o, i, j))] = log ? v - std::log(z) : std::exp(v) / z;
      }
    }
  }
  return y;
}

// gx_k = sum_i gy_i * d y_i / d x_k with the Jacobian written out: softmax p_i (delta_ik - p_k),
// log_softmax delta_ik - p_k.
std::vector<double> ref_softmax_grad(const std::vector<double>& x, const std::vector<double>& gy, const Shape& s,
                                     int64_t dim, bool log) {
  const std::vector<double> p = ref_softmax(x, s, dim, false);
  const Lines l = lines(s, dim);
  std::vector<double> gx(x.size(), 0.0);
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t j = 0; j < l.inner; ++j) {
      for (int64_t k = 0; k < l.n; ++k) {
        double acc = 0;
        const double pk = p[static_cast<size_t>(l.at(o, k, j))];
        for (int64_t i = 0; i < l.n; ++i) {
          const double pi = p[static_cast<size_t>(l.at(o, i, j))];
          const double jac = log ? (i == k ? 1.0 : 0.0) - pk : pi * ((i == k ? 1.0 : 0.0) - pk);
          acc += gy[static_cast<size_t>(l.at(o, i, j))] * jac;
        }
        gx[static_cast<size_t>(l.at(o, k, j))] = acc;
      }
    }
  }
  return gx;
}

}  // namespace

TEST_CASE("softmax and log_softmax along every dim in every float dtype") {
  for (DType dt : test::float_dtypes()) {
    for (const Shape& s : {Shape{7}, Shape{1023}, Shape{3, 5, 7}, Shape{2, 1, 33}, Shape{4, 600}, Shape{2, 700, 3}}) {
      for (int64_t dim = -1; dim < static_cast<int64_t>(s.size()); ++dim) {
        for (bool log : {false, true}) {
          CAPTURE(dtype_name(dt));
          CAPTURE(shape_str(s));
          CAPTURE(dim);
          CAPTURE(log);
          const Tensor x = test::uniform(s, -4, 4, dt, 3);
          const auto xv = x.to_vector<double>();
          const Tensor y = native::softmax(x, dim, log);
          CHECK(y.dtype() == dt);
          RG_CHECK_CLOSE(y, ref(ref_softmax(xv, s, dim, log), s), test::tol_for(dt));
        }
      }
    }
  }
}

TEST_CASE("softmax of a non-contiguous input, of 0-dim and empty tensors") {
  const Tensor base = test::uniform({6, 9}, -3, 3, DType::f32, 5);
  const Tensor t = native::transpose(base, 0, 1);  // (9, 6)
  const auto tv = t.to_vector<double>();
  RG_CHECK_CLOSE(native::softmax(t, 1), ref(ref_softmax(tv, {9, 6}, 1, false), {9, 6}), test::tol_for(DType::f32));
  RG_CHECK_CLOSE(native::softmax(t, 0, true), ref(ref_softmax(tv, {9, 6}, 0, true), {9, 6}), test::tol_for(DType::f32));
  CHECK(native::softmax(scalar_tensor(5.0), 0).item() == 1.0);
  CHECK(native::softmax(scalar_tensor(5.0), 0, true).item() == 0.0);
  CHECK(native::softmax(zeros({0, 4}), 1).sizes() == Shape{0, 4});
  CHECK_THROWS_AS(native::softmax(from_vector<int32_t>({1, 2}), 0), rg::Error);
  CHECK_THROWS_AS(native::softmax(zeros({2, 3}), 2), rg::Error);
}

TEST_CASE("softmax is stable for large logits and handles -inf masks") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = native::to(from_vector<double>({1000, 1001, 1002, -1000}), kCPU, dt);
    // by hand: exp(-2), exp(-1), 1 over their sum; the -1000 entry is exp(-2002) ~ 0
    const double z = std::exp(-2.0) + std::exp(-1.0) + 1.0;
    const auto p = native::softmax(x, 0).to_vector<double>();
    CHECK(p[0] == doctest::Approx(std::exp(-2.0) / z).epsilon(1e-6));
    CHECK(p[2] == doctest::Approx(1.0 / z).epsilon(1e-6));
    CHECK(p[3] == 0.0);
    const auto lp = native::softmax(x, 0, true).to_vector<double>();
    CHECK(lp[2] == doctest::Approx(-std::log(z)).epsilon(1e-6));
    CHECK(lp[3] == doctest::Approx(-2002.0 - std::log(z)).epsilon(1e-6));
    const Tensor masked = native::to(from_vector<double>({0.0, -INFINITY, 0.0}, {1, 3}), kCPU, dt);
    CHECK(native::softmax(masked, 1).to_vector<double>() == std::vector<double>{0.5, 0.0, 0.5});
    CHECK(native::softmax(masked, 1, true).to_vector<double>()[1] == -INFINITY);
    // masks along a non-last dim too (the column loop)
    const Tensor mcol = native::to(from_vector<double>({0.0, 1.0, -INFINITY, 1.0}, {2, 2}), kCPU, dt);
    CHECK(native::softmax(mcol, 0).to_vector<double>() == std::vector<double>{1.0, 0.5, 0.0, 0.5});
  }
  const auto nan_row = native::softmax(from_vector<float>({1.0f, NAN, 2.0f}), 0).to_vector<double>();
  for (double v : nan_row) CHECK(std::isnan(v));
}

TEST_CASE("softmax_bwd and log_softmax_bwd equal the Jacobian-vector product") {
  for (DType dt : test::float_dtypes()) {
    for (const Shape& s : {Shape{7}, Shape{3, 5, 7}, Shape{4, 600}, Shape{2, 700, 3}}) {
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) {
        for (bool log : {false, true}) {
          CAPTURE(dtype_name(dt));
          CAPTURE(shape_str(s));
          CAPTURE(dim);
          CAPTURE(log);
          const Tensor x = test::uniform(s, -3, 3, DType::f64, 8);
          const Tensor gy = test::uniform(s, -1, 1, dt, 9);
          const auto xv = x.to_vector<double>(), gv = gy.to_vector<double>();
          const Tensor y = native::to(ref(ref_softmax(xv, s, dim, log), s), kCPU, dt);  // the saved output
          const Tensor gx = native::softmax_bwd(gy, y, dim, log);
          CHECK(gx.dtype() == dt);
          const test::Tol tol = test::tol_for(dt);
          RG_CHECK_CLOSE(gx, ref(ref_softmax_grad(xv, gv, s, dim, log), s), (test::Tol{tol.atol * 4, tol.rtol * 4}));
        }
      }
    }
  }
  // strided gradient input
  const Tensor x = test::uniform({5, 4}, -3, 3, DType::f64, 10);
  const Tensor gy = native::transpose(test::uniform({4, 5}, -1, 1, DType::f64, 11), 0, 1);
  const auto xv = x.to_vector<double>(), gv = gy.to_vector<double>();
  const Tensor y = ref(ref_softmax(xv, {5, 4}, 1, false), {5, 4});
  RG_CHECK_CLOSE(native::softmax_bwd(gy, y, 1), ref(ref_softmax_grad(xv, gv, {5, 4}, 1, false), {5, 4}),
                 test::tol_for(DType::f64));
}
