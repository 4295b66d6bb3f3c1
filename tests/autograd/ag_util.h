// Helpers shared by the autograd tests: f64 leaves with fixed-seed values (independent of the
// RNG kernels), a gradcheck assertion that prints gradcheck's message, and value comparisons.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "test_util.h"

namespace rg::agtest {

using autograd::gradcheck;
using autograd::GradcheckOptions;
using TL = std::vector<Tensor>;

// Uniform in [lo, hi) from std::mt19937_64 (not our Philox: these tests must not depend on it).
inline std::vector<double> uniform_values(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = u(g);
  return v;
}

// An f64 CPU leaf with values uniform in [lo, hi).
inline Tensor leaf(const Shape& shape, double lo = -1.0, double hi = 1.0, uint64_t seed = 1, bool requires_grad = true) {
  Tensor t = from_vector<double>(uniform_values(shape_numel(shape), lo, hi, seed), shape);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// Values away from zero: uniform magnitude in [lo, hi), random sign.
inline Tensor leaf_away_from_zero(const Shape& shape, double lo, double hi, uint64_t seed) {
  auto v = uniform_values(shape_numel(shape), lo, hi, seed);
  auto s = uniform_values(shape_numel(shape), -1.0, 1.0, seed + 77);
  for (size_t i = 0; i < v.size(); ++i) v[i] = s[i] < 0 ? -v[i] : v[i];
  Tensor t = from_vector<double>(v, shape);
  t.set_requires_grad(true);
  return t;
}

// A leaf holding exactly `values`.
inline Tensor leaf_of(const std::vector<double>& values, const Shape& shape, bool requires_grad = true) {
  Tensor t = from_vector<double>(values, shape);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

inline Tensor idx(const std::vector<int64_t>& values, const Shape& shape) { return from_vector<int64_t>(values, shape); }

inline std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

}  // namespace rg::agtest

// Runs gradcheck(fn, inputs[, opts]) and fails the test with gradcheck's message. Variadic so
// that braced inputs (TL{a, b}) and lambdas pass through the preprocessor whole.
#define CHECK_GRADCHECK(...)                                                                 \
  do {                                                                                       \
    const auto rg_gc_ = ::rg::autograd::gradcheck(__VA_ARGS__);                              \
    CHECK_MESSAGE(rg_gc_.ok, rg_gc_.message);                                                \
  } while (0)

// Element-wise |a - b| <= tol for two vectors of doubles, with the first difference reported.
#define CHECK_VALUES(actual, expected, tol)                                                  \
  do {                                                                                       \
    const std::vector<double> rg_a_ = (actual), rg_e_ = (expected);                          \
    REQUIRE_MESSAGE(rg_a_.size() == rg_e_.size(), "size ", rg_a_.size(), " vs ", rg_e_.size()); \
    for (size_t rg_i_ = 0; rg_i_ < rg_a_.size(); ++rg_i_) {                                   \
      CHECK_MESSAGE(std::fabs(rg_a_[rg_i_] - rg_e_[rg_i_]) <= (tol), "element ", rg_i_, ": got ", rg_a_[rg_i_], \
                    ", expected ", rg_e_[rg_i_]);                                            \
    }                                                                                        \
  } while (0)
