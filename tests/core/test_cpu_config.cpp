// set_flush_denormal (Note [Flush denormals]): denormals become zero on the calling thread, in the
// OpenMP pool that runs parallel ops, and in threads started afterwards; switching it off restores them.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>

#include "core/cpu_config.h"
#include "test_util.h"

using namespace rg;

namespace {

// 2^-130: a denormal float (the smallest normal is 2^-126), exactly representable.
const float kDenormal = std::ldexp(1.0f, -130);

// The bits of x * 1 evaluated at run time on the calling thread (compared as bits: with DAZ on, a
// float comparison on this thread would read a denormal as zero).
uint32_t times_one(float x) {
  volatile float a = x, b = 1.0f;
  const float r = a * b;
  uint32_t u;
  std::memcpy(&u, &r, sizeof u);
  return u;
}

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// The number of non-zero elements of x (all denormals) multiplied by one: x is large enough that
// parallel_for splits it over every thread of the pool. (x is made while flushing is off: with it on,
// filling it would already flush the value.)
int64_t nonzero_after_mul(const Tensor& x) {
  const Tensor y = native::binary(BinaryOp::Mul, x, ones(x.sizes()));
  // Count by bit pattern: with DAZ on, this thread would read a denormal as zero.
  const uint32_t* bits = static_cast<const uint32_t*>(y.data_ptr());
  int64_t nz = 0;
  for (int64_t i = 0; i < y.numel(); ++i) nz += (bits[i] & 0x7fffffffu) != 0;
  return nz;
}

}  // namespace

TEST_CASE("set_flush_denormal flushes denormals on this thread, the pool and new threads, and undoes it") {
#if defined(__SSE2__)
  REQUIRE(kDenormal > 0.0f);
  REQUIRE(kDenormal < std::numeric_limits<float>::min());
  const int64_t n = 1 << 20;
  REQUIRE(set_flush_denormal(false));
  const Tensor x = full({n}, static_cast<double>(kDenormal), DType::f32);
  CHECK_FALSE(flush_denormal());
  CHECK(times_one(kDenormal) == bits_of(kDenormal));
  CHECK(nonzero_after_mul(x) == n);

  REQUIRE(set_flush_denormal(true));
  CHECK(flush_denormal());
  CHECK(times_one(kDenormal) == 0u);
  CHECK(nonzero_after_mul(x) == 0);
  uint32_t in_thread = 1;
  bool thread_state = false;
  std::thread t([&] {
    in_thread = times_one(kDenormal);
    thread_state = flush_denormal();
  });
  t.join();
  CHECK(in_thread == 0u);
  CHECK(thread_state);
  CHECK(times_one(1.5f) == bits_of(1.5f));  // normal values are untouched

  REQUIRE(set_flush_denormal(false));
  CHECK_FALSE(flush_denormal());
  CHECK(times_one(kDenormal) == bits_of(kDenormal));
  CHECK(nonzero_after_mul(x) == n);
#else
  CHECK_FALSE(set_flush_denormal(true));
  CHECK_FALSE(flush_denormal());
#endif
}
