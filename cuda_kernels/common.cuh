// Shared device helpers for cuda_kernels/*.cu: DType -> device type dispatch, conversions that
// match the CPU kernels' casts, 16-byte packs, grid-stride loops, launch sizes, 32/64-bit offset
// calculators built from StridedMeta, and warp/group reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/kernels.h"
#include "core/strided_meta.h"

namespace rg::cu {

// ---- dtypes
// The device type of a DType: __half and __nv_bfloat16 for the reduced floats, else the host type.
#define RG_CU_CASE(DT, T, ...) \
  case ::rg::DType::DT: {      \
    using scalar_t = T;        \
    __VA_ARGS__();             \
    break;                     \
  }
#define RG_CU_FLOAT_CASES(...)                \
  RG_CU_CASE(f32, float, __VA_ARGS__)         \
  RG_CU_CASE(f64, double, __VA_ARGS__)        \
  RG_CU_CASE(f16, __half, __VA_ARGS__)        \
  RG_CU_CASE(bf16, __nv_bfloat16, __VA_ARGS__)
#define RG_CU_INT_CASES(...)                \
  RG_CU_CASE(i32, int32_t, __VA_ARGS__)     \
  RG_CU_CASE(i64, int64_t, __VA_ARGS__)     \
  RG_CU_CASE(u8, uint8_t, __VA_ARGS__)      \
  RG_CU_CASE(b8, bool, __VA_ARGS__)

#define RG_CU_DISPATCH_FLOAT(DTYPE, OPNAME, ...)                       \
  switch (DTYPE) {                                                     \
    RG_CU_FLOAT_CASES(__VA_ARGS__)                                     \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cuda");     \
  }
#define RG_CU_DISPATCH_ALL(DTYPE, OPNAME, ...)                         \
  switch (DTYPE) {                                                     \
    RG_CU_FLOAT_CASES(__VA_ARGS__)                                     \
    RG_CU_INT_CASES(__VA_ARGS__)                                       \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cuda");     \
  }
#define RG_CU_DISPATCH_INDEX(DTYPE, OPNAME, ...)                       \
  switch (DTYPE) {                                                     \
    RG_CU_CASE(i32, int32_t, __VA_ARGS__)                              \
    RG_CU_CASE(i64, int64_t, __VA_ARGS__)                              \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cuda");     \
  }

template <typename T>
inline constexpr bool is_reduced_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <typename T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || is_reduced_v<T>;

// The DType of a device type (the inverse of the dispatch macros).
template <typename T>
constexpr DType device_dtype() {
  if constexpr (std::is_same_v<T, __half>) {
    return DType::f16;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return DType::bf16;
  } else {
    return DTypeOf<T>::value;
  }
}

// The type elementwise math runs in: float for f16/bf16/f32, double for f64, and for the integer
// types (bool included) int64, so that bool/u8 arithmetic does not wrap before the final cast.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double,
                                 std::conditional_t<is_float_v<T>, float, int64_t>>;

// Converts like rg::cpu::cast: through float for f16/bf16, to bool by comparing with zero.
template <typename To, typename From>
__device__ __forceinline__ To cast(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, __half>) {
    return cast<To>(__half2float(v));
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return cast<To>(__bfloat162float(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, uint8_t> && std::is_floating_point_v<From>) {
    // through int64, so that negative values wrap (-1.5 -> 255) as on the CPU and in PyTorch; a
    // direct conversion compiles to cvt.rzi.u32, which clamps them to 0
    return static_cast<uint8_t>(static_cast<int64_t>(v));
  } else {
    return static_cast<To>(v);
  }
}

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return v != v;
  } else {
    return false;
  }
}

// ---- math: one name for the float and double versions of each CUDA math function
namespace dm {
#define RG_CU_MATH1(NAME, FFN, DFN)                                              \
  __device__ __forceinline__ float NAME(float x) { return ::FFN(x); }            \
  __device__ __forceinline__ double NAME(double x) { return ::DFN(x); }
RG_CU_MATH1(exp, expf, exp)
RG_CU_MATH1(log, logf, log)
RG_CU_MATH1(sqrt, sqrtf, sqrt)
RG_CU_MATH1(tanh, tanhf, tanh)
RG_CU_MATH1(log1p, log1pf, log1p)
RG_CU_MATH1(expm1, expm1f, expm1)
RG_CU_MATH1(erf, erff, erf)
RG_CU_MATH1(floor, floorf, floor)
RG_CU_MATH1(rint, rintf, rint)  // round half to even, as torch.round
RG_CU_MATH1(fabs, fabsf, fabs)
RG_CU_MATH1(cos, cosf, cos)
RG_CU_MATH1(sin, sinf, sin)
#undef RG_CU_MATH1
__device__ __forceinline__ float pow(float x, float y) { return ::powf(x, y); }
__device__ __forceinline__ double pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ float atan2(float y, float x) { return ::atan2f(y, x); }
__device__ __forceinline__ double atan2(double y, double x) { return ::atan2(y, x); }
// Products and sums rounded separately (no fused multiply-add), so that a*x + b matches the CPU.
__device__ __forceinline__ float mul_rn(float x, float y) { return __fmul_rn(x, y); }
__device__ __forceinline__ double mul_rn(double x, double y) { return __dmul_rn(x, y); }
__device__ __forceinline__ float add_rn(float x, float y) { return __fadd_rn(x, y); }
__device__ __forceinline__ double add_rn(double x, double y) { return __dadd_rn(x, y); }
template <typename C>
__device__ __forceinline__ bool isfinite(C x) {
  return fabs(x) <= std::numeric_limits<C>::max();  // false for +-inf and NaN
}
}  // namespace dm

// The device's math policy for core/elementwise_formulas.h (Note [Elementwise formulas]): the dm::
// functions, products and sums that mul_rn / add_rn keep unfused, and cu::cast.
struct DeviceMath {
#define RG_CU_POLICY1(NAME) \
  template <class C>        \
  static __device__ __forceinline__ C NAME(C x) { return dm::NAME(x); }
  RG_CU_POLICY1(exp) RG_CU_POLICY1(log) RG_CU_POLICY1(sqrt) RG_CU_POLICY1(tanh) RG_CU_POLICY1(log1p)
  RG_CU_POLICY1(expm1) RG_CU_POLICY1(erf) RG_CU_POLICY1(floor) RG_CU_POLICY1(rint) RG_CU_POLICY1(fabs)
#undef RG_CU_POLICY1
  template <class C> static __device__ __forceinline__ bool isfinite(C x) { return dm::isfinite(x); }
  template <class C> static __device__ __forceinline__ C pow(C x, C y) { return dm::pow(x, y); }
  template <class C> static __device__ __forceinline__ C atan2(C y, C x) { return dm::atan2(y, x); }
  template <class C> static __device__ __forceinline__ C mul_rn(C x, C y) { return dm::mul_rn(x, y); }
  template <class C> static __device__ __forceinline__ C add_rn(C x, C y) { return dm::add_rn(x, y); }
  template <class To, class From> static __device__ __forceinline__ To cast(From v) { return cu::cast<To>(v); }
};

// Smallest and largest values of an accumulator type (+-inf for floats).
template <typename A>
__device__ __forceinline__ A lowest() {
  if constexpr (std::is_floating_point_v<A>) {
    return -std::numeric_limits<A>::infinity();
  } else {
    return std::numeric_limits<A>::lowest();
  }
}
template <typename A>
__device__ __forceinline__ A highest() {
  if constexpr (std::is_floating_point_v<A>) {
    return std::numeric_limits<A>::infinity();
  } else {
    return std::numeric_limits<A>::max();
  }
}
// max/min that propagate NaN, as torch.max/min/maximum do.
template <typename A>
__device__ __forceinline__ A max_nan(A x, A y) {
  return (is_nan(x) || x > y) ? x : y;
}
template <typename A>
__device__ __forceinline__ A min_nan(A x, A y) {
  return (is_nan(x) || x < y) ? x : y;
}

// ---- 16-byte packs
// W elements of T in one aligned load or store (W * sizeof(T) <= 16).
template <typename T, int W>
struct alignas(sizeof(T) * W) Pack {
  T v[W];
};
// Elements per pack when operands of several types move together: 16 bytes of the widest.
template <typename... Ts>
inline constexpr int pack_width() {
  size_t m = 1;
  ((m = sizeof(Ts) > m ? sizeof(Ts) : m), ...);
  return static_cast<int>(16 / m);
}
inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <int W, typename T>
__device__ __forceinline__ Pack<T, W> load_pack(const T* p, int64_t pack_index) {
  return reinterpret_cast<const Pack<T, W>*>(p)[pack_index];
}
template <int W, typename T>
__device__ __forceinline__ void store_pack(T* p, int64_t pack_index, const Pack<T, W>& v) {
  reinterpret_cast<Pack<T, W>*>(p)[pack_index] = v;
}

// Calls f with a null pointer of the unsigned integer type `bytes` wide: kernels that only move
// elements (copy, fill, where, gather) are instantiated per element size, not per dtype.
template <typename F>
void with_uint_of_size(size_t bytes, F&& f) {
  switch (bytes) {
    case 1: f(static_cast<uint8_t*>(nullptr)); break;
    case 2: f(static_cast<uint16_t*>(nullptr)); break;
    case 4: f(static_cast<uint32_t*>(nullptr)); break;
    case 8: f(static_cast<uint64_t*>(nullptr)); break;
    default: RG_THROW("unexpected element size ", bytes);
  }
}

// ---- loops and launch sizes
// Grid-stride over [0, n): body(i) once per index.
template <typename I, typename F>
__device__ __forceinline__ void grid_stride(I n, F&& body) {
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) body(i);
}
// Flat elementwise walk of n elements in packs of W: pack_body(p) for every full pack p
// (elements [p*W, p*W + W)), then scalar_body(i) for the tail. Every pointer the bodies touch
// must be aligned to its pack (the launcher checks with aligned_to).
template <int W, typename FP, typename FS>
__device__ __forceinline__ void grid_stride_packs(int64_t n, FP&& pack_body, FS&& scalar_body) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / W;
  for (int64_t p = tid; p < packs; p += stride) pack_body(p);
  for (int64_t i = packs * W + tid; i < n; i += stride) scalar_body(i);
}

inline constexpr int kThreads = 256;

// Streaming multiprocessors of the current device, asked once per device.
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> counts[kMaxDevices];  // 0 until asked
  const int dev = cuda::current_device();
  if (dev >= kMaxDevices) {
    int n = 0;
    RG_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }
  int n = counts[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    RG_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    counts[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}
// Blocks for `items` work items at `threads` per block: enough to cover them, at most a full
// device's worth of resident blocks (grid-stride loops do the rest). Always >= 1.
inline unsigned grid_for(int64_t items, int threads = kThreads) {
  const int64_t need = (items + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * (2048 / threads);
  return static_cast<unsigned>(need < 1 ? 1 : (need < cap ? need : cap));
}
inline cudaStream_t stream() { return cuda::current_raw_stream(); }

// ---- strided offsets
// Note [32-bit offsets]
// Integer division is the cost of strided indexing, and 64-bit division is several times dearer
// on the GPU than 32-bit. When an op has fewer than 2^31 elements and every operand's furthest
// element lies within 2^31 elements of its start, the kernel is instantiated with uint32 indices
// and int32 offsets; otherwise with int64.
template <int N, typename I>
struct OffsetCalc {
  using index_t = I;
  using offset_t = std::conditional_t<sizeof(I) == 4, int32_t, int64_t>;
  int ndim = 0;
  I sizes[kMaxStridedDims] = {};
  offset_t strides[N][kMaxStridedDims] = {};

  // Element offsets of linear (row-major) index i < numel for every operand. The outermost dim
  // needs no division: what is left of i is its coordinate. (The loop is unrolled with constant
  // indices so that the arrays stay in the parameter space.)
  __device__ __forceinline__ void get(I i, offset_t (&off)[N]) const {
#pragma unroll
    for (int a = 0; a < N; ++a) off[a] = 0;
#pragma unroll
    for (int d = 0; d < kMaxStridedDims; ++d) {
      if (d == ndim - 1) {
#pragma unroll
        for (int a = 0; a < N; ++a) off[a] += static_cast<offset_t>(i) * strides[a][d];
        break;
      }
      if (d >= ndim) break;  // ndim == 0: a single element
      const I q = i / sizes[d];
      const offset_t r = static_cast<offset_t>(i - q * sizes[d]);
      i = q;
#pragma unroll
      for (int a = 0; a < N; ++a) off[a] += r * strides[a][d];
    }
  }
};

template <int N>
bool fits_int32(const StridedMeta<N>& m) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (m.numel > kMax) return false;
  for (int a = 0; a < N; ++a) {
    int64_t span = 0;
    for (int d = 0; d < m.ndim; ++d) {
      const int64_t s = m.strides[a][d] < 0 ? -m.strides[a][d] : m.strides[a][d];
      if (s > kMax) return false;
      span += (m.sizes[d] - 1) * s;
      if (span > kMax) return false;
    }
  }
  return true;
}

template <int N, typename I>
OffsetCalc<N, I> make_offset_calc(const StridedMeta<N>& m) {
  OffsetCalc<N, I> c;
  c.ndim = m.ndim;
  for (int d = 0; d < m.ndim; ++d) {
    c.sizes[d] = static_cast<I>(m.sizes[d]);
    for (int a = 0; a < N; ++a) c.strides[a][d] = static_cast<typename OffsetCalc<N, I>::offset_t>(m.strides[a][d]);
  }
  return c;
}

// Calls f(calc) with the 32-bit calculator when it fits (Note [32-bit offsets]), else the 64-bit one.
template <int N, typename F>
void with_offset_calc(const StridedMeta<N>& m, F&& f) {
  if (fits_int32(m)) {
    f(make_offset_calc<N, uint32_t>(m));
  } else {
    f(make_offset_calc<N, int64_t>(m));
  }
}

// ---- warp and group reductions
// Shuffles any trivially copyable value of a multiple of 4 bytes, word by word.
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) % 4 == 0, "shfl_xor needs a multiple of 4 bytes");
  constexpr int kWords = sizeof(T) / 4;
  uint32_t w[kWords];
  memcpy(w, &v, sizeof(T));
#pragma unroll
  for (int k = 0; k < kWords; ++k) w[k] = __shfl_xor_sync(0xffffffffu, w[k], lane_mask);
  memcpy(&v, w, sizeof(T));
  return v;
}

// Every lane of the (full) warp gets merge() over the warp's 32 values.
template <typename T, typename F>
__device__ __forceinline__ T warp_allreduce(T v, F&& merge) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = merge(v, shfl_xor(v, m));
  return v;
}

// Rows of a 2-D block: each row ty of blockDim.x threads (a multiple of 32) combines its values;
// every thread of the row gets the result. `smem` holds blockDim.y * blockDim.x / 32 values.
// Must be reached by every thread of the block (it synchronises when a row spans several warps).
template <typename T, typename F>
__device__ __forceinline__ T row_allreduce(T v, T* smem, F&& merge) {
  v = warp_allreduce(v, merge);
  const int nw = static_cast<int>(blockDim.x) / 32;
  if (nw == 1) return v;
  const int base = static_cast<int>(threadIdx.y) * nw;
  __syncthreads();  // an earlier call may still be reading smem
  if (threadIdx.x % 32 == 0) smem[base + static_cast<int>(threadIdx.x) / 32] = v;
  __syncthreads();
  T r = smem[base];
  for (int k = 1; k < nw; ++k) r = merge(r, smem[base + k]);
  return r;
}

}  // namespace rg::cu
