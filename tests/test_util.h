// Test helpers: tolerant tensor comparison with a useful failure message, random inputs on odd
// shapes, per-dtype tolerances (atol + rtol * |ref|), value-vector checks, error messages.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/native.h"
#include "core/random.h"

namespace rg::test {

struct Tol {
  double atol, rtol;
};
Tol tol_for(DType t);  // f64 1e-10, f32 1e-5, bf16 2e-2, f16 2e-3 (relative), ints exact

// Empty string when every element satisfies |a - b| <= atol + rtol * |b| (NaN matches NaN);
// otherwise the first few offending indices and values.
std::string compare(const Tensor& actual, const Tensor& expected, Tol tol);
#define RG_CHECK_CLOSE(actual, expected, tol)                 \
  do {                                                        \
    const std::string rg_msg_ = ::rg::test::compare((actual), (expected), (tol)); \
    CHECK_MESSAGE(rg_msg_.empty(), rg_msg_);                  \
  } while (0)

// Uniform in [lo, hi) from a fixed seed, built on the CPU in f64 then cast.
Tensor uniform(const Shape& shape, double lo, double hi, DType dtype = DType::f32, uint64_t seed = 1234,
               Device device = kCPU);

// The element counts kernel tests sweep: 1, 7, 1023, 4097 and a few shaped cases.
std::vector<Shape> odd_shapes();

// All float dtypes (f32, f64, f16, bf16).
std::vector<DType> float_dtypes();

// Every dtype: the float ones, then i32, i64, u8, b8.
std::vector<DType> all_dtypes();

// Uniform in [lo, hi) from std::mt19937_64 (not our Philox: tests built on these values must not
// depend on the RNG kernels).
inline std::vector<double> uniform_values(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = u(g);
  return v;
}

inline std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The message of the exception of type E (rg::Error unless named) that fn throws, or `none` when it
// throws nothing; an exception of another type passes through.
template <typename E = Error, typename Fn>
std::string error_of(Fn&& fn, const std::string& none = "") {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return none;
}

}  // namespace rg::test

// Runs gradcheck(fn, inputs[, opts]) and fails the test with gradcheck's message. Variadic so
// that braced inputs (TL{a, b}) and lambdas pass through the preprocessor whole.
#define CHECK_GRADCHECK(...)                                    \
  do {                                                          \
    const auto rg_gc_ = ::rg::autograd::gradcheck(__VA_ARGS__); \
    CHECK_MESSAGE(rg_gc_.ok, rg_gc_.message);                   \
  } while (0)

// Element-wise |a - b| <= tol for two vectors of doubles, with the first difference reported.
#define CHECK_VALUES(actual, expected, tol)                                                                   \
  do {                                                                                                        \
    const std::vector<double> rg_a_ = (actual), rg_e_ = (expected);                                           \
    REQUIRE_MESSAGE(rg_a_.size() == rg_e_.size(), "size ", rg_a_.size(), " vs ", rg_e_.size());               \
    for (size_t rg_i_ = 0; rg_i_ < rg_a_.size(); ++rg_i_) {                                                   \
      CHECK_MESSAGE(std::fabs(rg_a_[rg_i_] - rg_e_[rg_i_]) <= (tol), "element ", rg_i_, ": got ", rg_a_[rg_i_], \
                    ", expected ", rg_e_[rg_i_]);                                                             \
    }                                                                                                         \
  } while (0)
