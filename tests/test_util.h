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

// Note [Skips]
// A test case that cannot run on this machine says why and returns, through one of
//   RG_SKIP_UNLESS_GPU(n);   // fewer than n CUDA devices are visible
//   RG_SKIP_IF(why);         // why is not empty: another missing tool (python3 ...)
// which print "skipped: <why>" and mark the case skipped. tests/test_main.cpp exits 77 (ctest's
// "skipped") when every case of a run was skipped and none failed. An executable that mixes
// runnable cases with cases that may skip puts the latter in a doctest test suite (`* RG_GPU_SUITE`,
// `* doctest::test_suite("python")`) that tests/CMakeLists.txt runs as a ctest entry of its own
// (<exe>_gpu, <exe>_python), so a skip shows as "skipped" and never hides inside a pass.
// RINGGRAD_REQUIRE_GPU=N (scripts/gpu_check.sh sets 1) promises N CUDA devices: a GPU skip that
// needs at most N devices becomes a failure naming the CUDA error, and a GPU executable (the GPU
// flag of rg_test) fails at start-up instead of exiting 77.

// RINGGRAD_REQUIRE_GPU as a device count: 0 when unset, empty or "0"; 1 for a value that is not a number.
int required_gpus();

// "" when at least n CUDA devices are visible; otherwise what is missing, with the CUDA runtime's
// start-up error (cuda::device_count_error()) or the number of devices seen.
std::string missing_gpus(int n = 1);

// Does nothing and returns false when `why` is empty. Otherwise the running test case must return
// (true): a failure naming `why` when `must_run`, else a MESSAGE "skipped: <why>" and the case
// counted as skipped (Note [Skips]).
bool skip_case(const std::string& why, bool must_run);

// For tests/test_main.cpp: whether the running test case called skip_case with a reason (and
// clears the flag).
bool take_case_skipped();

}  // namespace rg::test

// The doctest test suite of test cases that need a CUDA device inside a CPU executable
// (TEST_CASE("..." * RG_GPU_SUITE)): tests/CMakeLists.txt runs them as <exe>_gpu (Note [Skips]).
#define RG_GPU_SUITE doctest::test_suite("gpu")

// Early returns of a test case that cannot run here (Note [Skips]).
#define RG_SKIP_UNLESS_GPU(n)                                                                        \
  do {                                                                                               \
    if (::rg::test::skip_case(::rg::test::missing_gpus(n), ::rg::test::required_gpus() >= (n))) return; \
  } while (0)
#define RG_SKIP_IF(why)                                     \
  do {                                                      \
    if (::rg::test::skip_case((why), false)) return;        \
  } while (0)

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
