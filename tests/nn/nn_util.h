// Helpers shared by the nn tests: fixed-seed values from std::mt19937_64 (independent of our Philox
// RNG) as tensors, setting a layer's weights, mean and std; assertions come from test_util.h.
#pragma once

#include <cmath>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "test_util.h"

namespace rg::nntest {

using test::contains;
using test::error_of;
using test::uniform_values;
using test::vals;
using TL = std::vector<Tensor>;

// A CPU tensor of `dtype` holding uniform values in [lo, hi), optionally a grad-requiring leaf.
inline Tensor values(const Shape& shape, double lo, double hi, uint64_t seed, DType dtype = DType::f32,
                     bool requires_grad = false) {
  Tensor t = from_vector<double>(uniform_values(shape_numel(shape), lo, hi, seed), shape);
  if (dtype != DType::f64) t = native::to(t, kCPU, dtype);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

inline Tensor leaf64(const Shape& shape, double lo = -1.0, double hi = 1.0, uint64_t seed = 1) {
  return values(shape, lo, hi, seed, DType::f64, true);
}

// Copies `v` (row-major) into an existing tensor without autograd (to set a layer's weights).
inline void set_values(const Tensor& t, const std::vector<double>& v) {
  native::copy_(t, from_vector<double>(v, t.sizes()));
}

// Population mean and standard deviation of a tensor's values.
inline std::pair<double, double> mean_std(const Tensor& t) {
  const auto v = vals(t);
  double s = 0, ss = 0;
  for (double x : v) s += x;
  const double m = s / static_cast<double>(v.size());
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / static_cast<double>(v.size()))};
}

}  // namespace rg::nntest

// CHECK_GRADCHECK and CHECK_VALUES: test_util.h.
