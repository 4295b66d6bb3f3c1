// Half and bfloat16 conversions (every bit pattern, subnormals, inf, NaN, ties to even) and
// promote_types, checked against values worked out from the IEEE bit fields.
#include <cmath>
#include <cstring>

#include "test_util.h"

using namespace rg;

namespace {

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The value of a binary16 bit pattern from its fields: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m.
double half_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  const double sign = s ? -1.0 : 1.0;
  if (e == 31) return m ? NAN : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -24);
  return sign * std::ldexp(1.0 + m / 1024.0, e - 15);
}

}  // namespace

TEST_CASE("Half::to_float matches the IEEE fields for every bit pattern") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = half_value(static_cast<uint16_t>(h));
    const float got = Half::to_float(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      CHECK(std::isnan(got));
    } else {
      CHECK_MESSAGE(static_cast<double>(got) == want, "half bits ", h);
      CHECK(std::signbit(got) == ((h & 0x8000u) != 0));
    }
  }
}

TEST_CASE("Half round trip: from_float(to_float(h)) == h for every non-NaN pattern") {
  int nan_count = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Half::to_float(static_cast<uint16_t>(h));
    const uint16_t back = Half::from_float(f);
    if (std::isnan(f)) {
      ++nan_count;
      CHECK((back & 0x7c00u) == 0x7c00u);
      CHECK((back & 0x03ffu) != 0u);
    } else {
      CHECK_MESSAGE(back == h, "half bits ", h, " came back as ", back);
    }
  }
  CHECK(nan_count == 2 * 1023);
}

TEST_CASE("Half::from_float rounds to nearest, ties to even, with subnormals and overflow") {
  CHECK(Half::from_float(1.0f) == 0x3c00);
  CHECK(Half::from_float(-2.0f) == 0xc000);
  CHECK(Half::from_float(0.0f) == 0x0000);
  CHECK(Half::from_float(-0.0f) == 0x8000);
  CHECK(Half::from_float(65504.0f) == 0x7bff);             // largest finite
  CHECK(Half::from_float(65519.0f) == 0x7bff);             // below the midpoint to 65536
  CHECK(Half::from_float(65520.0f) == 0x7c00);             // midpoint: ties to even = inf
  CHECK(Half::from_float(1e6f) == 0x7c00);
  CHECK(Half::from_float(-1e6f) == 0xfc00);
  CHECK(Half::from_float(INFINITY) == 0x7c00);
  CHECK(Half::from_float(-INFINITY) == 0xfc00);
  const uint16_t qn = Half::from_float(NAN);
  CHECK((qn & 0x7c00) == 0x7c00);
  CHECK((qn & 0x3ff) != 0);
  CHECK(Half::from_float(std::ldexp(1.0f, -14)) == 0x0400);           // smallest normal
  CHECK(Half::from_float(std::ldexp(1023.0f, -24)) == 0x03ff);        // largest subnormal
  CHECK(Half::from_float(std::ldexp(1.0f, -24)) == 0x0001);           // smallest subnormal
  CHECK(Half::from_float(std::ldexp(1.0f, -25)) == 0x0000);           // tie between 0 and 1: even
  CHECK(Half::from_float(std::ldexp(1.0f, -25) * 1.0001f) == 0x0001); // just above the tie
  CHECK(Half::from_float(std::ldexp(3.0f, -25)) == 0x0002);           // tie between 1 and 2: even
  CHECK(Half::from_float(std::ldexp(5.0f, -25)) == 0x0002);           // tie between 2 and 3: even
  CHECK(Half::from_float(std::ldexp(2047.0f, -25)) == 0x0400);        // tie at the subnormal/normal edge
  CHECK(Half::from_float(std::ldexp(1.0f, -26)) == 0x0000);
  CHECK(Half::from_float(-std::ldexp(3.0f, -25)) == 0x8002);
  CHECK(Half::from_float(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);        // tie: even is 1.0
  CHECK(Half::from_float(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);        // tie: even is 1 + 2^-9
  CHECK(Half::from_float(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  CHECK(Half::from_float(0.1f) == 0x2e66);  // 0.1 -> 0.0999755859375
}

TEST_CASE("Half::from_float picks the nearest half for a sweep of floats") {
  // For each float, the chosen half is at least as close as its neighbours, and even on a tie.
  for (uint64_t u = 0; u < 0x477fe000ull; u += 4099) {  // 0 .. 65504 (the largest finite half)
    const float f = bits_to_float(static_cast<uint32_t>(u));
    const uint16_t h = Half::from_float(f);
    const double v = half_value(h);
    const double err = std::fabs(static_cast<double>(f) - v);
    for (int step : {-1, 1}) {
      const int nb = static_cast<int>(h) + step;
      if (nb < 0 || nb > 0x7c00) continue;
      const double w = half_value(static_cast<uint16_t>(nb));
      const double e2 = std::fabs(static_cast<double>(f) - w);
      CHECK_MESSAGE(err <= e2, "float ", f, " -> half ", h);
      if (err == e2) CHECK_MESSAGE((h & 1) == 0, "tie not to even for ", f);
    }
  }
}

TEST_CASE("BFloat16 conversions: every pattern round trips; ties to even; inf and NaN") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BFloat16::to_float(static_cast<uint16_t>(b));
    CHECK(float_to_bits(f) == (b << 16));  // bfloat16 is the top half of a float
    const uint16_t back = BFloat16::from_float(f);
    if (std::isnan(f)) {
      CHECK(std::isnan(BFloat16::to_float(back)));
    } else {
      CHECK(back == b);
    }
  }
  CHECK(BFloat16::from_float(1.0f) == 0x3f80);
  CHECK(BFloat16::from_float(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);   // tie: even
  CHECK(BFloat16::from_float(1.0f + std::ldexp(3.0f, -8)) == 0x3f82);   // tie: even
  CHECK(BFloat16::from_float(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3f81);
  CHECK(BFloat16::from_float(INFINITY) == 0x7f80);
  CHECK(BFloat16::from_float(-INFINITY) == 0xff80);
  CHECK(BFloat16::from_float(bits_to_float(0x7f7fffffu)) == 0x7f80);  // rounds past the largest finite
  CHECK(BFloat16::from_float(bits_to_float(0x7f7f7fffu)) == 0x7f7f);
  CHECK(BFloat16::from_float(bits_to_float(0x00010000u)) == 0x0001);  // float subnormals stay
  CHECK(BFloat16::from_float(bits_to_float(0x00008000u)) == 0x0000);  // tie: even
  CHECK(BFloat16::from_float(bits_to_float(0x00018000u)) == 0x0002);  // tie: even
  CHECK(std::isnan(BFloat16::to_float(BFloat16::from_float(NAN))));
  CHECK(std::isnan(BFloat16::to_float(BFloat16::from_float(bits_to_float(0x7f800001u)))));  // NaN, not inf
}

TEST_CASE("promote_types follows torch.promote_types for every pair") {
  const DType order[] = {DType::b8, DType::u8, DType::i32, DType::i64, DType::f16, DType::f32, DType::f64};
  // rank in the chain bool < u8 < i32 < i64 < f16 < f32 < f64
  for (int i = 0; i < 7; ++i) {
    for (int j = 0; j < 7; ++j) {
      const DType want = order[std::max(i, j)];
      CHECK(promote_types(order[i], order[j]) == want);
    }
  }
  for (DType t : {DType::b8, DType::u8, DType::i32, DType::i64}) {
    CHECK(promote_types(t, DType::bf16) == DType::bf16);
    CHECK(promote_types(DType::bf16, t) == DType::bf16);
  }
  CHECK(promote_types(DType::bf16, DType::bf16) == DType::bf16);
  CHECK(promote_types(DType::f16, DType::bf16) == DType::f32);
  CHECK(promote_types(DType::bf16, DType::f16) == DType::f32);
  CHECK(promote_types(DType::bf16, DType::f32) == DType::f32);
  CHECK(promote_types(DType::f64, DType::bf16) == DType::f64);
}

TEST_CASE("dtype names and sizes") {
  CHECK(std::string(dtype_name(DType::bf16)) == "bfloat16");
  CHECK(std::string(dtype_name(DType::b8)) == "bool");
  CHECK(dtype_size(DType::f16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  DType t;
  CHECK(dtype_from_short_name("BF16", &t));
  CHECK(t == DType::bf16);
  CHECK_FALSE(dtype_from_short_name("F8", &t));
}
