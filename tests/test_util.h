// Test helpers: tolerant tensor comparison with a useful failure message, random inputs on odd
// shapes, per-dtype tolerances (atol + rtol * |ref|).
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

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

}  // namespace rg::test
