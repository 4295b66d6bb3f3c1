// Element types: the DType enum, sizes and names, host-side half/bfloat16 storage types,
// type promotion, and the RG_DISPATCH_* macros that turn a runtime DType into a C++ type.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#if defined(__F16C__) && !defined(__CUDACC__)
#include <immintrin.h>  // hardware half <-> float conversion (x86 F16C), see Half below
#endif

namespace rg {

enum class DType : uint8_t { f32, f16, bf16, f64, i32, i64, u8, b8 };
inline constexpr int kNumDTypes = 8;

// IEEE binary16, stored as bits. Arithmetic on the host goes through float.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(from_float(f)) {}  // NOLINT: implicit like a numeric type
  operator float() const { return to_float(bits); }  // NOLINT
  static uint16_t from_float(float f);
  static float to_float(uint16_t h);
};

// bfloat16: the top 16 bits of a float32, rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(from_float(f)) {}  // NOLINT
  operator float() const { return to_float(bits); }  // NOLINT
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN stays a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
  static float to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

inline uint16_t Half::from_float(float f) {
#if defined(__F16C__) && !defined(__CUDACC__)
  // One instruction, round to nearest even: the same result as the portable code below.
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (absx < 0x38800000u) {  // result is subnormal or zero in half
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // below half of the smallest subnormal
    const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    const int drop = 126 - static_cast<int>(absx >> 23);  // value = M * 2^(e-126) in units of 2^-24: 14..24 bits go
    uint32_t r = mant >> drop;
    const uint32_t rem = mant & ((1u << drop) - 1u);
    const uint32_t half = 1u << (drop - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  // normal: rebias exponent (127 -> 15) and round the 13 dropped bits to nearest even
  uint32_t r = ((absx >> 13) - (112u << 10));
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

inline float Half::to_float(uint16_t h) {
#if defined(__F16C__) && !defined(__CUDACC__)
  return _cvtsh_ss(h);
#endif
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t out;
  if (exp == 0x1f) {
    out = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      out = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      out = sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    out = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
    case DType::b8: return 1;
  }
  return 0;
}

// PyTorch's spelling: "float32", "float16", "bfloat16", "float64", "int32", "int64", "uint8", "bool".
const char* dtype_name(DType t);
// safetensors' spelling: "F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL".
const char* dtype_short_name(DType t);
bool dtype_from_short_name(const std::string& s, DType* out);

inline constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}
inline constexpr bool is_reduced_float(DType t) { return t == DType::f16 || t == DType::bf16; }

// Result type of a binary op on two tensors, as torch.promote_types does
// (bool < u8 < i32 < i64 < f16/bf16 < f32 < f64; f16 with bf16 gives f32).
DType promote_types(DType a, DType b);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::b8; };

[[noreturn]] void throw_unsupported_dtype(const char* op, DType t, const char* device);

}  // namespace rg

// Dispatch a runtime DType to a lambda that sees `scalar_t` (host types: Half, BFloat16 for the
// reduced floats). Usage: RG_DISPATCH_FLOAT(t.dtype(), "relu", [&] { run<scalar_t>(...); });
#define RG_DTYPE_CASE(DT, T, ...) \
  case ::rg::DType::DT: {         \
    using scalar_t = T;           \
    __VA_ARGS__();                \
    break;                        \
  }

#define RG_DISPATCH_FLOAT(DTYPE, OPNAME, ...)                           \
  switch (DTYPE) {                                                       \
    RG_DTYPE_CASE(f32, float, __VA_ARGS__)                               \
    RG_DTYPE_CASE(f64, double, __VA_ARGS__)                              \
    RG_DTYPE_CASE(f16, ::rg::Half, __VA_ARGS__)                          \
    RG_DTYPE_CASE(bf16, ::rg::BFloat16, __VA_ARGS__)                     \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cpu");        \
  }

#define RG_DISPATCH_ALL(DTYPE, OPNAME, ...)                              \
  switch (DTYPE) {                                                       \
    RG_DTYPE_CASE(f32, float, __VA_ARGS__)                               \
    RG_DTYPE_CASE(f64, double, __VA_ARGS__)                              \
    RG_DTYPE_CASE(f16, ::rg::Half, __VA_ARGS__)                          \
    RG_DTYPE_CASE(bf16, ::rg::BFloat16, __VA_ARGS__)                     \
    RG_DTYPE_CASE(i32, int32_t, __VA_ARGS__)                             \
    RG_DTYPE_CASE(i64, int64_t, __VA_ARGS__)                             \
    RG_DTYPE_CASE(u8, uint8_t, __VA_ARGS__)                              \
    RG_DTYPE_CASE(b8, bool, __VA_ARGS__)                                 \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cpu");        \
  }

#define RG_DISPATCH_INDEX(DTYPE, OPNAME, ...)                            \
  switch (DTYPE) {                                                       \
    RG_DTYPE_CASE(i32, int32_t, __VA_ARGS__)                             \
    RG_DTYPE_CASE(i64, int64_t, __VA_ARGS__)                             \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cpu");        \
  }
