// Elementwise kernels of the CUDA ring collectives: a reduction step y = op(a, b) [/ divisor]
// with an optional second destination, and a 1- or 2-destination copy. Arithmetic:
// Note [Ring reduction arithmetic] in cuda_kernels/comm.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "cuda_kernels/comm.h"

namespace rg::cuda {
namespace {

// ---- kernels

// How a dtype is stored (storage) and computed (acc). Reduced floats are stored as their bits.
template <typename T>
struct PlainArith {
  using storage = T;
  using acc = T;
  static __device__ __forceinline__ acc load(storage v) { return v; }
  static __device__ __forceinline__ storage store(acc v) { return v; }
};
struct HalfArith {
  using storage = uint16_t;
  using acc = float;
  static __device__ __forceinline__ float load(uint16_t v) { return __half2float(__ushort_as_half(v)); }
  static __device__ __forceinline__ uint16_t store(float v) { return __half_as_ushort(__float2half_rn(v)); }
};
struct BFloat16Arith {
  using storage = uint16_t;
  using acc = float;
  static __device__ __forceinline__ float load(uint16_t v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
  static __device__ __forceinline__ uint16_t store(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
};

template <typename A>
__device__ __forceinline__ A add_op(A x, A y) {
  if constexpr (std::is_integral_v<A>) {  // wrap-around, without signed-overflow UB
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(x) + static_cast<U>(y));
  } else {
    return x + y;
  }
}

template <typename A>
__device__ __forceinline__ A max_op(A x, A y) {
  if constexpr (std::is_floating_point_v<A>) {
    if (x != x) return x;  // NaN wins
    if (y != y) return y;
    if (x == y) return signbit(x) ? y : x;  // +0 beats -0 in either order
  }
  return x > y ? x : y;
}

template <typename Tr, int kOp>  // kOp: 0 sum, 1 max
__device__ __forceinline__ typename Tr::storage apply_op(typename Tr::storage a, typename Tr::storage b, int divisor) {
  using A = typename Tr::acc;
  const A x = Tr::load(a), y = Tr::load(b);
  A r = kOp == 0 ? add_op<A>(x, y) : max_op<A>(x, y);
  if (divisor > 1) r = r / static_cast<A>(divisor);
  return Tr::store(r);
}

// y1[i] = op(a[i], b[i]) [/ divisor]; y2[i] = the same when y2 != nullptr. y1 may alias a or b
// (each element is read and written by the same thread). vec: every pointer is 16-byte aligned.
template <typename Tr, int kOp>
static __global__ void ring_reduce_fwd_kernel(const typename Tr::storage* a, const typename Tr::storage* b,
                                       typename Tr::storage* y1, typename Tr::storage* y2, int64_t n, int divisor,
                                       bool vec) {
  using S = typename Tr::storage;
  constexpr int V = 16 / sizeof(S);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = vec ? n / V : 0;
  for (int64_t i = first; i < nvec; i += stride) {
    const uint4 ua = reinterpret_cast<const uint4*>(a)[i];
    const uint4 ub = reinterpret_cast<const uint4*>(b)[i];
    S sa[V], sb[V], sy[V];
    memcpy(sa, &ua, 16);
    memcpy(sb, &ub, 16);
#pragma unroll
    for (int k = 0; k < V; ++k) sy[k] = apply_op<Tr, kOp>(sa[k], sb[k], divisor);
    uint4 uy;
    memcpy(&uy, sy, 16);
    reinterpret_cast<uint4*>(y1)[i] = uy;
    if (y2) reinterpret_cast<uint4*>(y2)[i] = uy;
  }
  for (int64_t i = nvec * V + first; i < n; i += stride) {  // scalar tail (everything when !vec)
    const S y = apply_op<Tr, kOp>(a[i], b[i], divisor);
    y1[i] = y;
    if (y2) y2[i] = y;
  }
}

// Copies nbytes from src to y1 (when y1 != nullptr) and y2 (when y2 != nullptr), in words of W
// (every pointer is W-aligned), then the last nbytes % sizeof(W) bytes one by one.
template <typename W>
static __global__ void ring_copy_fwd_kernel(const uint8_t* src, uint8_t* y1, uint8_t* y2, int64_t nbytes) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nwords = nbytes / static_cast<int64_t>(sizeof(W));
  for (int64_t i = first; i < nwords; i += stride) {
    const W v = reinterpret_cast<const W*>(src)[i];
    if (y1) reinterpret_cast<W*>(y1)[i] = v;
    if (y2) reinterpret_cast<W*>(y2)[i] = v;
  }
  for (int64_t i = nwords * static_cast<int64_t>(sizeof(W)) + first; i < nbytes; i += stride) {
    const uint8_t v = src[i];
    if (y1) y1[i] = v;
    if (y2) y2[i] = v;
  }
}

// ---- launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

int blocks_for(int64_t work_items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, (work_items + kThreads - 1) / kThreads)));
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Tr>
void launch_reduce(void* y1, void* y2, const void* a, const void* b, int64_t n, CommOp op, int divisor,
                   cudaStream_t s) {
  using S = typename Tr::storage;
  constexpr int V = 16 / sizeof(S);
  const bool vec = aligned16(y1) && aligned16(y2) && aligned16(a) && aligned16(b);
  const int blocks = blocks_for(vec ? std::max<int64_t>(n / V, n % V) : n);
  const auto* pa = static_cast<const S*>(a);
  const auto* pb = static_cast<const S*>(b);
  auto* p1 = static_cast<S*>(y1);
  auto* p2 = static_cast<S*>(y2);
  if (op == CommOp::Sum) {
    ring_reduce_fwd_kernel<Tr, 0><<<blocks, kThreads, 0, s>>>(pa, pb, p1, p2, n, divisor, vec);
  } else {
    ring_reduce_fwd_kernel<Tr, 1><<<blocks, kThreads, 0, s>>>(pa, pb, p1, p2, n, divisor, vec);
  }
  RG_CUDA_LAUNCH_CHECK("ring_reduce_fwd_kernel");
}

template <typename W>
void launch_copy(void* y1, void* y2, const void* src, int64_t nbytes, cudaStream_t s) {
  const int64_t words = nbytes / static_cast<int64_t>(sizeof(W));
  const int blocks = blocks_for(std::max<int64_t>(words, nbytes % static_cast<int64_t>(sizeof(W))));
  ring_copy_fwd_kernel<W><<<blocks, kThreads, 0, s>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(y1),
                                                      static_cast<uint8_t*>(y2), nbytes);
  RG_CUDA_LAUNCH_CHECK("ring_copy_fwd_kernel");
}

}  // namespace

void ring_reduce_out_cuda(void* y1, void* y2, const void* a, const void* b, int64_t n, DType t, CommOp op,
                          int divisor, void* stream) {
  RG_CHECK(y1 != nullptr && a != nullptr && b != nullptr, "ring_reduce: null pointer");
  if (n <= 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (t) {
    case DType::f32: launch_reduce<PlainArith<float>>(y1, y2, a, b, n, op, divisor, s); break;
    case DType::f64: launch_reduce<PlainArith<double>>(y1, y2, a, b, n, op, divisor, s); break;
    case DType::f16: launch_reduce<HalfArith>(y1, y2, a, b, n, op, divisor, s); break;
    case DType::bf16: launch_reduce<BFloat16Arith>(y1, y2, a, b, n, op, divisor, s); break;
    case DType::i32: launch_reduce<PlainArith<int32_t>>(y1, y2, a, b, n, op, divisor, s); break;
    case DType::i64: launch_reduce<PlainArith<int64_t>>(y1, y2, a, b, n, op, divisor, s); break;
    default: throw_unsupported_dtype("ring_reduce", t, "cuda");
  }
}

void ring_reduce_cuda(void* dst, const void* src, int64_t n, DType t, CommOp op, void* stream) {
  ring_reduce_out_cuda(dst, nullptr, dst, src, n, t, op, 1, stream);
}

void ring_copy_cuda(void* y1, void* y2, const void* src, int64_t nbytes, void* stream) {
  RG_CHECK(src != nullptr, "ring_copy: null source");
  if (y1 == src) y1 = nullptr;  // in place: nothing to write there
  if (nbytes <= 0 || (y1 == nullptr && y2 == nullptr)) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const uintptr_t bits = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(y1) |
                         reinterpret_cast<uintptr_t>(y2);
  if (bits % 16 == 0) {
    launch_copy<uint4>(y1, y2, src, nbytes, s);
  } else if (bits % 8 == 0) {
    launch_copy<uint2>(y1, y2, src, nbytes, s);
  } else if (bits % 4 == 0) {
    launch_copy<uint32_t>(y1, y2, src, nbytes, s);
  } else if (bits % 2 == 0) {
    launch_copy<uint16_t>(y1, y2, src, nbytes, s);
  } else {
    launch_copy<uint8_t>(y1, y2, src, nbytes, s);
  }
}

}  // namespace rg::cuda
