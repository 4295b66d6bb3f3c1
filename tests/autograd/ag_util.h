// Helpers shared by the autograd tests: f64 leaves with fixed-seed values (independent of the
// RNG kernels); the gradcheck and value-comparison assertions come from test_util.h.
#pragma once

#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "test_util.h"

namespace rg::agtest {

using autograd::gradcheck;
using autograd::GradcheckOptions;
using test::contains;
using test::error_of;
using test::uniform_values;  // std::mt19937_64, not our Philox: these tests must not depend on it
using test::vals;
using TL = std::vector<Tensor>;

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

}  // namespace rg::agtest

// CHECK_GRADCHECK and CHECK_VALUES: test_util.h.
