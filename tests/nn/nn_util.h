// Helpers shared by the nn tests: fixed-seed f64 values from std::mt19937_64 (independent of our
// Philox RNG), a gradcheck assertion, and element-wise comparison of value vectors.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "test_util.h"

namespace rg::nntest {

using TL = std::vector<Tensor>;

inline std::vector<double> uniform_values(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = u(g);
  return v;
}

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

inline std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

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

#define CHECK_GRADCHECK(...)                                    \
  do {                                                          \
    const auto rg_gc_ = ::rg::autograd::gradcheck(__VA_ARGS__); \
    CHECK_MESSAGE(rg_gc_.ok, rg_gc_.message);                   \
  } while (0)

#define CHECK_VALUES(actual, expected, tol)                                                                   \
  do {                                                                                                        \
    const std::vector<double> rg_a_ = (actual), rg_e_ = (expected);                                           \
    REQUIRE_MESSAGE(rg_a_.size() == rg_e_.size(), "size ", rg_a_.size(), " vs ", rg_e_.size());               \
    for (size_t rg_i_ = 0; rg_i_ < rg_a_.size(); ++rg_i_) {                                                   \
      CHECK_MESSAGE(std::fabs(rg_a_[rg_i_] - rg_e_[rg_i_]) <= (tol), "element ", rg_i_, ": got ", rg_a_[rg_i_], \
                    ", expected ", rg_e_[rg_i_]);                                                             \
    }                                                                                                         \
  } while (0)
