// GEMM on CUDA: c (B, M, N) = alpha * a (B, M, K) @ b (B, K, N) + beta * c. Either cuBLAS (strided
// batched, row-major through C^T = B^T A^T) or our own kernels: a SIMT f32 kernel (also the fallback
// for f16/bf16) and an mma.sync tensor-core kernel for f16/bf16. Note [GEMM switches] picks.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/gemm_config.h"
#include "core/kernels.h"
#include "core/native.h"
#include "cuda_kernels/handle_pool.h"

// Every cuBLAS status is checked and turned into rg::Error carrying the status name.
#define RG_CUBLAS_CHECK(expr)                                                                       \
  do {                                                                                              \
    const cublasStatus_t rg_st_ = (expr);                                                           \
    if (rg_st_ != CUBLAS_STATUS_SUCCESS) {                                                          \
      RG_THROW("cuBLAS error: ", cublasGetStatusName(rg_st_), " (", cublasGetStatusString(rg_st_), \
               ") from ", #expr);                                                                   \
    }                                                                                               \
  } while (0)

namespace rg {

// Note [GEMM operand layout]
// Each operand X is a logical row-major (rows, cols) matrix per batch. In memory it is either
// row-major ("N": element (r, c) at r * ld + c) or column-major ("T": element (r, c) at r + c * ld),
// with `batch` elements between consecutive batches (0 for a broadcast operand). c is always
// row-major (ldc >= N) with batches that do not overlap; gemm_cuda turns a column-major c into a
// row-major one by computing c^T = b^T a^T. Kernels get the layout of a and b as template
// parameters TA / TB (true = column-major).
struct GemmParams {
  const void* a;  // (M, K) per batch
  const void* b;  // (K, N) per batch
  void* c;        // (M, N) per batch, row-major
  int M, N, K;
  int64_t lda, ldb, ldc;
  int64_t batch_a, batch_b, batch_c;  // element strides between batches (0: broadcast)
  float alpha, beta;
  bool vec_a, vec_b, vec_c;  // f32: 16-byte accesses are aligned along the contiguous dim
  bool pair_c;               // 16-bit types: c can be written two elements (4 bytes) at a time
};

// ---- kernels

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Block rasterisation: consecutive blocks walk down a group of kGroupM tile rows before moving
// to the next tile column, so the blocks resident at one time share A and B tiles in L2.
// Bijective on [0, tiles_m * tiles_n): full groups hold kGroupM * tiles_n blocks, the last one
// gsize * tiles_n.
__device__ __forceinline__ void gemm_tile_coords(int tiles_m, int tiles_n, int& tm, int& tn) {
  constexpr int kGroupM = 8;
  const int pid = static_cast<int>(blockIdx.x);
  const int per_group = kGroupM * tiles_n;
  const int group = pid / per_group;
  const int first_m = group * kGroupM;
  const int gsize = min(tiles_m - first_m, kGroupM);
  const int in_group = pid - group * per_group;
  tm = first_m + in_group % gsize;
  tn = in_group / gsize;
}

// ---------------------------------------------------------------------------------------------
// SIMT kernel (f32; also the fallback for f16/bf16 operands the tensor-core kernel cannot take)
//
// Block tile 128 x 128 x 8, 256 threads, each computing an 8 x 8 micro-tile of C made of rows
// {ty*4 + i, 64 + ty*4 + i} and columns {tx*4 + j, 64 + tx*4 + j} (i, j < 4), tx = t % 16,
// ty = t / 16, so every shared-memory read is a float4. Shared memory holds A k-major
// (As[k][m]) and B k-major (Bs[k][n]), both in f32, double buffered: the next K-slice is loaded
// from global memory into registers while the current one is multiplied, then stored into the
// other buffer; one barrier per K-slice. Rows are padded by 4 floats so the transposing stores
// (A row-major, B column-major) do not collide in banks, keeping float4 alignment (132 * 4 = 33 * 16).
namespace simt {
constexpr int kBM = 128, kBN = 128, kBK = 8, kThreads = 256, kPitch = 128 + 4;
}

// Loads 4 consecutive elements base[off .. off + 3] as f32, `nv` (0..4) of them valid (the rest
// are 0). One 16-byte load for f32 when aligned (`vec`) and all 4 are valid.
template <typename T>
__device__ __forceinline__ void gemm_load4(float (&r)[4], const T* __restrict__ base, int64_t off, int nv, bool vec) {
  if constexpr (std::is_same_v<T, float>) {
    if (vec && nv == 4) {
      const float4 v = *reinterpret_cast<const float4*>(base + off);
      r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) r[i] = i < nv ? to_f32(base[off + i]) : 0.f;
}

__device__ __forceinline__ int gemm_clamp4(int remaining) { return remaining < 0 ? 0 : (remaining > 4 ? 4 : remaining); }

template <typename T, bool TA, bool TB>
static __global__ void __launch_bounds__(simt::kThreads, 2) gemm_simt_fwd_kernel(GemmParams p) {
  using namespace simt;
  __shared__ __align__(16) float As[2][kBK][kPitch];
  __shared__ __align__(16) float Bs[2][kBK][kPitch];

  int tm, tn;
  gemm_tile_coords((p.M + kBM - 1) / kBM, (p.N + kBN - 1) / kBN, tm, tn);
  const int m0 = tm * kBM, n0 = tn * kBN;
  const int64_t bz = blockIdx.y;
  const T* __restrict__ A = static_cast<const T*>(p.a) + bz * p.batch_a;
  const T* __restrict__ B = static_cast<const T*>(p.b) + bz * p.batch_b;
  T* __restrict__ C = static_cast<T*>(p.c) + bz * p.batch_c;
  const int M = p.M, N = p.N, K = p.K;
  const int t = static_cast<int>(threadIdx.x);

  // Global -> register mapping (1024 elements per operand tile, 4 contiguous ones per thread):
  //   A row-major:    m = t / 2,  k = (t % 2) * 4 + 0..3    A col-major: k = t / 32, m = (t % 32) * 4 + 0..3
  //   B row-major:    k = t / 32, n = (t % 32) * 4 + 0..3   B col-major: n = t / 2,  k = (t % 2) * 4 + 0..3
  float ra[4], rb[4];
  auto load_tiles = [&](int k0) {
    if constexpr (!TA) {
      const int m = m0 + (t >> 1), k = k0 + (t & 1) * 4;
      const int nv = m < M ? gemm_clamp4(K - k) : 0;
      gemm_load4(ra, A, static_cast<int64_t>(m) * p.lda + k, nv, p.vec_a);
    } else {
      const int k = k0 + (t >> 5), m = m0 + (t & 31) * 4;
      const int nv = k < K ? gemm_clamp4(M - m) : 0;
      gemm_load4(ra, A, static_cast<int64_t>(k) * p.lda + m, nv, p.vec_a);
    }
    if constexpr (!TB) {
      const int k = k0 + (t >> 5), n = n0 + (t & 31) * 4;
      const int nv = k < K ? gemm_clamp4(N - n) : 0;
      gemm_load4(rb, B, static_cast<int64_t>(k) * p.ldb + n, nv, p.vec_b);
    } else {
      const int n = n0 + (t >> 1), k = k0 + (t & 1) * 4;
      const int nv = n < N ? gemm_clamp4(K - k) : 0;
      gemm_load4(rb, B, static_cast<int64_t>(n) * p.ldb + k, nv, p.vec_b);
    }
  };
  auto store_tiles = [&](int buf) {
    if constexpr (!TA) {
#pragma unroll
      for (int i = 0; i < 4; ++i) As[buf][(t & 1) * 4 + i][t >> 1] = ra[i];
    } else {
      *reinterpret_cast<float4*>(&As[buf][t >> 5][(t & 31) * 4]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    }
    if constexpr (!TB) {
      *reinterpret_cast<float4*>(&Bs[buf][t >> 5][(t & 31) * 4]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) Bs[buf][(t & 1) * 4 + i][t >> 1] = rb[i];
    }
  };

  const int tx = t & 15, ty = t >> 4;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  const int num_k = (K + kBK - 1) / kBK;
  load_tiles(0);
  store_tiles(0);
  __syncthreads();
  for (int kt = 0; kt < num_k; ++kt) {
    const int cur = kt & 1;
    const bool has_next = kt + 1 < num_k;
    if (has_next) load_tiles((kt + 1) * kBK);  // in flight while we multiply
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + tx * 4]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    // Buffer cur ^ 1 was last read in iteration kt - 1, which every thread finished before the
    // barrier that ended it; so it can be overwritten now without a second barrier.
    if (has_next) store_tiles(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: acc[i][h * 4 + j] is C(m0 + row(i), n0 + h * 64 + tx * 4 + j).
  const float alpha = p.alpha, beta = p.beta;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (m >= M) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n0 + h * 64 + tx * 4;
      if (n >= N) continue;
      T* cp = C + static_cast<int64_t>(m) * p.ldc + n;
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = alpha * acc[i][h * 4 + j];
      if constexpr (std::is_same_v<T, float>) {
        if (p.vec_c && n + 3 < N) {
          float4 o = make_float4(v[0], v[1], v[2], v[3]);
          if (beta != 0.f) {  // beta == 0 never reads c (it may hold NaN)
            const float4 old = *reinterpret_cast<const float4*>(cp);
            o.x += beta * old.x, o.y += beta * old.y, o.z += beta * old.z, o.w += beta * old.w;
          }
          *reinterpret_cast<float4*>(cp) = o;
          continue;
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (n + j < N) {
          const float o = beta != 0.f ? v[j] + beta * to_f32(cp[j]) : v[j];
          cp[j] = from_f32<T>(o);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel (f16 / bf16 in, f32 accumulate), mma.sync.m16n8k16 fed by ldmatrix.
//
// Block tile 128 (m) x 256 (n) x 32 (k), 256 threads = 8 warps arranged 2 (m) x 4 (n), each warp
// owning a 64 x 64 piece of C = 4 (m16) x 8 (n8) mma tiles = 128 f32 accumulators per thread.
// Global -> shared copies are cp.async (16 bytes, zero-filled past the matrix edge through the
// src-size operand) in a kStages-deep ring. Shared tiles keep the global layout of each operand
// (no transposing stores); ldmatrix (.trans where needed) produces the mma fragments either way.
// Each shared row is padded by 8 halves (16 bytes): row pitches of 80, 272 and 528 bytes put the
// 8 rows one ldmatrix phase reads into 8 distinct 16-byte bank groups (pitch mod 128 is 80 or 16),
// so ldmatrix is conflict-free.
//
// Future work: on Hopper, mma.sync reaches only part of the tensor cores' rate; cuBLAS uses
// warpgroup wgmma (sm_90a) fed by TMA bulk copies on mbarriers. A wgmma/TMA kernel is the way to
// parity there; it needs the sm_90a target and a GPU to develop on.
//
// Requirements (checked on the host, else the SIMT kernel runs): lda, ldb, the batch strides and
// the base addresses are multiples of 8 elements (16 bytes), so each 16-byte chunk along the
// contiguous dim starts aligned; M, N, K are arbitrary.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .f16/.bf16; g = lane / 4, q = lane % 4; each .b32
// register packs two 16-bit elements, the lower column index in the low half):
//   A (16 x 16, row): a0 = A[g][2q..2q+1]   a1 = A[g+8][2q..2q+1]
//                     a2 = A[g][2q+8..+9]   a3 = A[g+8][2q+8..+9]
//   B (16 x 8, col):  b0 = B[2q..2q+1][g]   b1 = B[2q+8..+9][g]
//   C (16 x 8, f32):  c0, c1 = C[g][2q], C[g][2q+1]     c2, c3 = C[g+8][2q], C[g+8][2q+1]
// ldmatrix.x4 loads four 8 x 8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i,
// and register i of lane l receives, without .trans, M_i[l / 4][2(l % 4) .. +1] (exactly the
// A-fragment pattern of one 8 x 8 quarter), and with .trans M_i[2(l % 4) .. +1][l / 4] (one
// element from each of two consecutive rows).
//  * A row-major in smem (As[m][k]): quarters a0..a3 are (m 0-7, k 0-7), (m 8-15, k 0-7),
//    (m 0-7, k 8-15), (m 8-15, k 8-15); lane l addresses row m = l % 16, column k = (l / 16) * 8.
//  * A col-major in smem (As[k][m]), .trans: M_i[2q..][g] = As[k = 2q..][m = g] = A[g][2q..], the
//    a0 pattern, when matrix i's rows are 8 consecutive k at one m offset. Lane l addresses
//    k = (l / 16) * 8 + l % 8, m = ((l / 8) % 2) * 8.
//  * B col-major in smem (Bs[n][k]), no .trans: M[g][2q..] = Bs[n = g][k = 2q..] = B[2q..][g] = b0.
//    Matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) give b0, b1 of
//    n8-tile 0 then b0, b1 of n8-tile 1; lane l addresses n = (l / 16) * 8 + l % 8, k = ((l / 8) % 2) * 8.
//  * B row-major in smem (Bs[k][n]), .trans: M[2q..][g] = Bs[k = 2q..][n = g] = b0 with rows k.
//    Matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15), same register
//    order; lane l addresses k = ((l / 8) % 2) * 8 + l % 8, n = (l / 16) * 8.
namespace tc {
// kBK and kStages may be retuned (e.g. 64 and 3); the rest of the kernel follows them.
constexpr int kBM = 128, kBN = 256, kBK = 32, kStages = 4, kThreads = 256, kPad = 8;
constexpr int kWarpM = 64, kWarpN = 64;
// Shared tile shapes (rows x pitch, in 16-bit elements), per operand layout.
template <bool TA> constexpr int a_pitch() { return TA ? kBM + kPad : kBK + kPad; }
template <bool TA> constexpr int a_elems() { return TA ? kBK * a_pitch<TA>() : kBM * a_pitch<TA>(); }
template <bool TB> constexpr int b_pitch() { return TB ? kBK + kPad : kBN + kPad; }
template <bool TB> constexpr int b_elems() { return TB ? kBN * b_pitch<TB>() : kBK * b_pitch<TB>(); }
template <bool TA, bool TB> constexpr int stage_elems() { return a_elems<TA>() + b_elems<TB>(); }
template <bool TA, bool TB> constexpr size_t smem_bytes() { return size_t{kStages} * stage_elems<TA, TB>() * 2; }
static_assert(kThreads == 8 * 32 && kBM == 2 * kWarpM && kBN == 4 * kWarpN, "8 warps, 2 x 4");
static_assert(kBK % 16 == 0 && (kBM * kBK / 8) % kThreads == 0 && (kBN * kBK / 8) % kThreads == 0,
              "whole k16 steps; every thread copies the same number of chunks");
static_assert((a_elems<false>() * 2) % 16 == 0 && (a_elems<true>() * 2) % 16 == 0, "stage parts 16-byte aligned");
static_assert((b_elems<false>() * 2) % 16 == 0 && (b_elems<true>() * 2) % 16 == 0, "stage parts 16-byte aligned");
}  // namespace tc

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global -> shared; bytes past src_bytes (0..16) are written as zero and
// not read.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T> __device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ int gemm_chunk_bytes(int remaining) {  // elements left -> bytes of a 8-element chunk
  return remaining <= 0 ? 0 : (remaining >= 8 ? 16 : remaining * 2);
}

template <typename T, bool TA, bool TB>
static __global__ void __launch_bounds__(tc::kThreads, 1) gemm_tc_fwd_kernel(GemmParams p) {
  using namespace tc;
  constexpr int kAP = a_pitch<TA>(), kBP = b_pitch<TB>();
  extern __shared__ __align__(16) unsigned char gemm_smem[];
  T* const smem = reinterpret_cast<T*>(gemm_smem);

  int tm, tn;
  gemm_tile_coords((p.M + kBM - 1) / kBM, (p.N + kBN - 1) / kBN, tm, tn);
  const int m0 = tm * kBM, n0 = tn * kBN;
  const int64_t bz = blockIdx.y;
  const T* __restrict__ A = static_cast<const T*>(p.a) + bz * p.batch_a;
  const T* __restrict__ B = static_cast<const T*>(p.b) + bz * p.batch_b;
  T* __restrict__ C = static_cast<T*>(p.c) + bz * p.batch_c;
  const int M = p.M, N = p.N, K = p.K;
  const int t = static_cast<int>(threadIdx.x);
  const int lane = t & 31, warp = t >> 5;
  const int wm = (warp & 1) * kWarpM, wn = (warp >> 1) * kWarpN;

  // Issues the cp.async copies of K-slice [k0, k0 + kBK) into ring slot `stage`. A chunk is 8
  // elements (16 bytes) along the operand's contiguous dim; out-of-range ones copy 0 bytes from a
  // valid address (the operand's base) and so become zeros.
  auto load_stage = [&](int stage, int k0) {
    T* const as = smem + stage * stage_elems<TA, TB>();
    T* const bs = as + a_elems<TA>();
#pragma unroll
    for (int i = 0; i < (kBM * kBK / 8) / kThreads; ++i) {  // 512 chunks (kBK = 32), 2 per thread
      const int c = t + i * kThreads;
      int r, cc, bytes;
      int64_t off;
      if constexpr (!TA) {  // As[m][k]: kBM rows of kBK / 8 chunks
        r = c / (kBK / 8), cc = c % (kBK / 8) * 8;
        const int gm = m0 + r, gk = k0 + cc;
        bytes = gm < M ? gemm_chunk_bytes(K - gk) : 0;
        off = static_cast<int64_t>(gm) * p.lda + gk;
      } else {  // As[k][m]: kBK rows of kBM / 8 chunks
        r = c / (kBM / 8), cc = c % (kBM / 8) * 8;
        const int gk = k0 + r, gm = m0 + cc;
        bytes = gk < K ? gemm_chunk_bytes(M - gm) : 0;
        off = static_cast<int64_t>(gk) * p.lda + gm;
      }
      cp_async16(smem_addr(as + r * kAP + cc), bytes ? A + off : A, bytes);
    }
#pragma unroll
    for (int i = 0; i < (kBN * kBK / 8) / kThreads; ++i) {  // 1024 chunks (kBK = 32), 4 per thread
      const int c = t + i * kThreads;
      int r, cc, bytes;
      int64_t off;
      if constexpr (!TB) {  // Bs[k][n]: kBK rows of kBN / 8 chunks
        r = c / (kBN / 8), cc = c % (kBN / 8) * 8;
        const int gk = k0 + r, gn = n0 + cc;
        bytes = gk < K ? gemm_chunk_bytes(N - gn) : 0;
        off = static_cast<int64_t>(gk) * p.ldb + gn;
      } else {  // Bs[n][k]: kBN rows of kBK / 8 chunks
        r = c / (kBK / 8), cc = c % (kBK / 8) * 8;
        const int gn = n0 + r, gk = k0 + cc;
        bytes = gn < N ? gemm_chunk_bytes(K - gk) : 0;
        off = static_cast<int64_t>(gn) * p.ldb + gk;
      }
      cp_async16(smem_addr(bs + r * kBP + cc), bytes ? B + off : B, bytes);
    }
  };

  // Per-lane ldmatrix offsets (elements, within a stage's A or B tile) for k16-step 0, m16-tile 0
  // and n16-pair 0 of this warp; see the derivation above the namespace.
  int a_off, b_off;
  if constexpr (!TA) {
    a_off = (wm + (lane & 15)) * kAP + (lane >> 4) * 8;
  } else {
    a_off = ((lane >> 4) * 8 + (lane & 7)) * kAP + wm + ((lane >> 3) & 1) * 8;
  }
  if constexpr (TB) {
    b_off = (wn + (lane >> 4) * 8 + (lane & 7)) * kBP + ((lane >> 3) & 1) * 8;
  } else {
    b_off = (((lane >> 3) & 1) * 8 + (lane & 7)) * kBP + wn + (lane >> 4) * 8;
  }
  // Steps between fragments, in elements: next m16 tile / n16 pair, and next k16 step.
  constexpr int kAStepM = TA ? 16 : 16 * kAP, kAStepK = TA ? 16 * kAP : 16;
  constexpr int kBStepN = TB ? 16 * kBP : 16, kBStepK = TB ? 16 : 16 * kBP;

  float acc[4][8][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const int num_k = (K + kBK - 1) / kBK;
  // Prologue: slices 0 .. kStages-2 in flight, one commit group each (empty groups past the end
  // keep the group count uniform for the wait below).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_k) load_stage(s, s * kBK);
    cp_async_commit();
  }
  for (int kt = 0; kt < num_k; ++kt) {
    // Groups committed so far: (kStages - 1) + kt; waiting until at most kStages - 2 are pending
    // means the first kt + 1 are complete, i.e. slice kt has landed (this thread's copies). The
    // barrier then makes every thread's copies visible, and also guarantees every warp is done
    // with slice kt - 1, whose slot (kt - 1) % kStages == (kt + kStages - 1) % kStages we refill next.
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < num_k) load_stage(next % kStages, next * kBK);
    cp_async_commit();

    const T* const as = smem + (kt % kStages) * stage_elems<TA, TB>();
    const T* const bs = as + a_elems<TA>();
    const uint32_t a_base = smem_addr(as + a_off), b_base = smem_addr(bs + b_off);
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t af[4][4], bf[8][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const uint32_t addr = a_base + 2 * (mi * kAStepM + ks * kAStepK);
        if constexpr (!TA) ldmatrix_x4(af[mi], addr);
        else ldmatrix_x4_trans(af[mi], addr);
      }
#pragma unroll
      for (int nj = 0; nj < 4; ++nj) {
        const uint32_t addr = b_base + 2 * (nj * kBStepN + ks * kBStepK);
        uint32_t r[4];
        if constexpr (TB) ldmatrix_x4(r, addr);
        else ldmatrix_x4_trans(r, addr);
        bf[2 * nj][0] = r[0], bf[2 * nj][1] = r[1], bf[2 * nj + 1][0] = r[2], bf[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) mma_16816<T>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending here; drain them before exit anyway

  // Epilogue: acc[mi][ni][2h + e] is C(m0 + wm + mi*16 + g + 8h, n0 + wn + ni*8 + 2q + e).
  const float alpha = p.alpha, beta = p.beta;
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + wm + mi * 16 + g + 8 * h;
      if (m >= M) continue;
      T* const crow = C + static_cast<int64_t>(m) * p.ldc;
#pragma unroll
      for (int ni = 0; ni < 8; ++ni) {
        const int n = n0 + wn + ni * 8 + 2 * q;
        if (n >= N) continue;
        float v0 = alpha * acc[mi][ni][2 * h], v1 = alpha * acc[mi][ni][2 * h + 1];
        if (p.pair_c && n + 1 < N) {  // n is even: an aligned 2-element store
          if constexpr (std::is_same_v<T, __half>) {
            __half2* cp = reinterpret_cast<__half2*>(crow + n);
            if (beta != 0.f) {
              const float2 old = __half22float2(*cp);
              v0 += beta * old.x, v1 += beta * old.y;
            }
            *cp = __floats2half2_rn(v0, v1);
          } else {
            __nv_bfloat162* cp = reinterpret_cast<__nv_bfloat162*>(crow + n);
            if (beta != 0.f) {
              const float2 old = __bfloat1622float2(*cp);
              v0 += beta * old.x, v1 += beta * old.y;
            }
            *cp = __floats2bfloat162_rn(v0, v1);
          }
        } else {
          if (beta != 0.f) v0 += beta * to_f32(crow[n]);
          crow[n] = from_f32<T>(v0);
          if (n + 1 < N) {
            if (beta != 0.f) v1 += beta * to_f32(crow[n + 1]);
            crow[n + 1] = from_f32<T>(v1);
          }
        }
      }
    }
  }
}

// c *= beta (beta == 0 writes zeros without reading): the whole GEMM when K == 0.
template <typename T, typename Acc>
static __global__ void gemm_scale_fwd_kernel(T* __restrict__ c, int64_t n, Acc beta) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
      c[i] = beta == Acc(0) ? T(0) : static_cast<T>(beta * c[i]);
    } else {
      c[i] = from_f32<T>(beta == Acc(0) ? 0.f : beta * to_f32(c[i]));
    }
  }
}

// ---- launchers

namespace {

// One operand's memory layout (Note [GEMM operand layout]).
struct OperandLayout {
  bool ok = false;
  bool trans = false;  // column-major
  int64_t ld = 0;
};

// Layout of a logical row-major (R, C) matrix with strides (sr, sc). A dim of size 1 places no
// constraint on its stride. Fails for layouts with no unit stride or with overlapping rows/columns.
OperandLayout classify(int64_t R, int64_t C, int64_t sr, int64_t sc) {
  OperandLayout l;
  if ((C == 1 || sc == 1) && (R == 1 || sr >= std::max<int64_t>(C, 1))) {
    l.ok = true, l.trans = false, l.ld = R == 1 ? std::max<int64_t>(C, 1) : sr;
  } else if ((R == 1 || sr == 1) && (C == 1 || sc >= std::max<int64_t>(R, 1))) {
    l.ok = true, l.trans = true, l.ld = C == 1 ? std::max<int64_t>(R, 1) : sc;
  }
  return l;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// ---- cuBLAS handles and workspaces
// Handles: one per device per thread (Note [Library handles]). Each call sets the handle's stream to
// the thread's current stream and a workspace owned by that stream (cuBLAS resets the workspace on
// every cublasSetStream). Workspaces come from the caching allocator, one per (device, stream),
// and stay allocated for the life of the process: they show in memory_stats().allocated.
struct WorkspacePool {
  std::mutex mu;
  std::map<std::pair<int, cudaStream_t>, std::pair<void*, size_t>> workspaces;  // (ptr, bytes)
};
WorkspacePool& workspace_pool() {
  static auto* pool = new WorkspacePool();  // never destroyed, as the handles
  return *pool;
}

cublasHandle_t cublas_handle(int device) {
  return cuda::ThreadHandleCache<cublasHandle_t>::get(device, [] {
    cublasHandle_t h = nullptr;
    RG_CUBLAS_CHECK(cublasCreate(&h));
    // f16/bf16 GEMMs keep f32 partial sums even when cuBLAS splits K (numerics over a few % speed).
    RG_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    return h;
  });
}

// The workspace of `stream` (created on first use): 32 MiB on Hopper and newer, as cuBLAS
// recommends there, 4 MiB before.
std::pair<void*, size_t> cublas_workspace(int device, const cuda::Stream& stream) {
  WorkspacePool& pool = workspace_pool();
  std::lock_guard<std::mutex> lk(pool.mu);
  auto& ws = pool.workspaces[{device, cuda::raw(stream)}];
  if (ws.first == nullptr) {
    ws.second = cuda::compute_capability(device) >= 90 ? size_t{32} << 20 : size_t{4} << 20;
    ws.first = cuda::caching_alloc(ws.second, device, stream);
  }
  return ws;
}

struct Problem {
  DType dtype;
  int64_t batch;
  GemmParams p;
  bool trans_a, trans_b;
  int device;
  double alpha, beta;  // unrounded, for cuBLAS's f64 path
};

void run_cublas(const Problem& pr) {
  const GemmParams& p = pr.p;
  const cuda::Stream stream = cuda::current_stream(pr.device);
  cublasHandle_t h = cublas_handle(pr.device);
  const auto [ws, ws_bytes] = cublas_workspace(pr.device, stream);
  RG_CUBLAS_CHECK(cublasSetStream(h, cuda::raw(stream)));  // this also resets the workspace: set it after
  RG_CUBLAS_CHECK(cublasSetWorkspace(h, ws, ws_bytes));

  // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS's (m, n, k) = (N, M, K), its first
  // operand is our b and its second our a. A row-major operand, read column-major, already is its
  // transpose (op N); a column-major one needs op T. The leading dimensions are ours unchanged.
  const cublasOperation_t op_b = pr.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = pr.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cudaDataType_t type;
  cublasComputeType_t compute;
  switch (pr.dtype) {
    case DType::f32:
      type = CUDA_R_32F, compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case DType::f16: type = CUDA_R_16F, compute = CUBLAS_COMPUTE_32F; break;
    case DType::bf16: type = CUDA_R_16BF, compute = CUBLAS_COMPUTE_32F; break;
    case DType::f64: type = CUDA_R_64F, compute = CUBLAS_COMPUTE_64F; break;
    default: throw_unsupported_dtype("gemm", pr.dtype, "cuda");
  }
  const double alpha_d = pr.alpha, beta_d = pr.beta;
  const float alpha_f = p.alpha, beta_f = p.beta;
  const bool f64 = pr.dtype == DType::f64;
  // f64 keeps alpha and beta in double: GemmParams' floats would round them.
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : &beta_f;
  const size_t esize = dtype_size(pr.dtype);
  constexpr int64_t kMaxBatch = 65535;  // chunked: some cuBLAS versions launch the batch on grid y/z
  for (int64_t b0 = 0; b0 < pr.batch; b0 += kMaxBatch) {
    const int count = static_cast<int>(std::min(kMaxBatch, pr.batch - b0));
    const char* a = static_cast<const char*>(p.a) + b0 * p.batch_a * esize;
    const char* b = static_cast<const char*>(p.b) + b0 * p.batch_b * esize;
    char* c = static_cast<char*>(p.c) + b0 * p.batch_c * esize;
    RG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, op_b, op_a, p.N, p.M, p.K, alpha, b, type, static_cast<int>(p.ldb),
                                               p.batch_b, a, type, static_cast<int>(p.lda), p.batch_a, beta, c, type,
                                               static_cast<int>(p.ldc), p.batch_c, count, compute, CUBLAS_GEMM_DEFAULT));
  }
  detail::set_last_gemm_kernel("cublas");
}

// Launches kernel over the (tiles, batch) grid in chunks of 65535 batches (grid y limit).
template <typename Kernel>
void launch_tiles(Kernel kernel, const char* name, int64_t tiles, size_t smem, const Problem& pr, cudaStream_t stream) {
  RG_CHECK(tiles <= INT_MAX, "gemm: too many tiles (", tiles, ")");
  const size_t esize = dtype_size(pr.dtype);
  constexpr int64_t kMaxBatch = 65535;
  for (int64_t b0 = 0; b0 < pr.batch; b0 += kMaxBatch) {
    GemmParams p = pr.p;
    p.a = static_cast<const char*>(p.a) + b0 * p.batch_a * esize;
    p.b = static_cast<const char*>(p.b) + b0 * p.batch_b * esize;
    p.c = static_cast<char*>(p.c) + b0 * p.batch_c * esize;
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(kMaxBatch, pr.batch - b0)));
    kernel<<<grid, tc::kThreads, smem, stream>>>(p);
    RG_CUDA_LAUNCH_CHECK(name);
  }
}

template <typename T, bool TA, bool TB>
void launch_simt(const Problem& pr, cudaStream_t stream) {
  const int64_t tiles = ((pr.p.M + simt::kBM - 1) / simt::kBM) * int64_t{(pr.p.N + simt::kBN - 1) / simt::kBN};
  static_assert(simt::kThreads == tc::kThreads, "launch_tiles uses one block size");
  launch_tiles(gemm_simt_fwd_kernel<T, TA, TB>, "gemm_simt_fwd_kernel", tiles, 0, pr, stream);
}

template <typename T, bool TA, bool TB>
void launch_tc(const Problem& pr, cudaStream_t stream) {
  constexpr size_t smem = tc::smem_bytes<TA, TB>();
  // Dynamic shared memory above 48 KiB must be allowed once per device for each instantiation.
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = uint64_t{1} << (pr.device & 63);
  if ((configured.load() & bit) == 0) {
    RG_CUDA_CHECK(cudaFuncSetAttribute(gemm_tc_fwd_kernel<T, TA, TB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
    configured.fetch_or(bit);
  }
  const int64_t tiles = ((pr.p.M + tc::kBM - 1) / tc::kBM) * int64_t{(pr.p.N + tc::kBN - 1) / tc::kBN};
  launch_tiles(gemm_tc_fwd_kernel<T, TA, TB>, "gemm_tc_fwd_kernel", tiles, smem, pr, stream);
}

template <typename T>
void run_simt(const Problem& pr, cudaStream_t s) {
  if (!pr.trans_a && !pr.trans_b) launch_simt<T, false, false>(pr, s);
  else if (!pr.trans_a && pr.trans_b) launch_simt<T, false, true>(pr, s);
  else if (pr.trans_a && !pr.trans_b) launch_simt<T, true, false>(pr, s);
  else launch_simt<T, true, true>(pr, s);
  detail::set_last_gemm_kernel("ours_simt");
}

template <typename T>
void run_tc(const Problem& pr, cudaStream_t s) {
  if (!pr.trans_a && !pr.trans_b) launch_tc<T, false, false>(pr, s);
  else if (!pr.trans_a && pr.trans_b) launch_tc<T, false, true>(pr, s);
  else if (pr.trans_a && !pr.trans_b) launch_tc<T, true, false>(pr, s);
  else launch_tc<T, true, true>(pr, s);
  detail::set_last_gemm_kernel("ours_tensor_core");
}

// Whether the device lets one block have the tensor-core kernel's shared memory (Hopper: 227 KiB).
bool tc_fits_device(int device) {
  static std::mutex mu;
  static std::unordered_map<int, int> optin;  // device -> cudaDevAttrMaxSharedMemoryPerBlockOptin
  std::lock_guard<std::mutex> lk(mu);
  auto it = optin.find(device);
  if (it == optin.end()) {
    int bytes = 0;
    RG_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    it = optin.emplace(device, bytes).first;
  }
  const size_t need = std::max({tc::smem_bytes<false, false>(), tc::smem_bytes<false, true>(),
                                tc::smem_bytes<true, false>(), tc::smem_bytes<true, true>()});
  return static_cast<size_t>(it->second) >= need;
}

// The tensor-core kernel's requirements: every 16-byte chunk along a contiguous dim starts aligned,
// and the device has room for its shared-memory ring.
bool tc_eligible(const Problem& pr) {
  const GemmParams& p = pr.p;
  return aligned(p.a, 16) && aligned(p.b, 16) && p.lda % 8 == 0 && p.ldb % 8 == 0 && p.batch_a % 8 == 0 &&
         p.batch_b % 8 == 0 && tc_fits_device(pr.device);
}

void run_ours(const Problem& pr) {
  const cudaStream_t s = cuda::current_raw_stream();
  switch (pr.dtype) {
    case DType::f32: run_simt<float>(pr, s); break;
    case DType::f16:
      if (tc_eligible(pr)) run_tc<__half>(pr, s);
      else run_simt<__half>(pr, s);
      break;
    case DType::bf16:
      if (tc_eligible(pr)) run_tc<__nv_bfloat16>(pr, s);
      else run_simt<__nv_bfloat16>(pr, s);
      break;
    default: run_cublas(pr);  // f64: no hand-written kernel, cuBLAS's DGEMM is used under Ours too
  }
}

void run_scale(const Tensor& c, double beta) {  // (B, M, N) contiguous
  const int64_t n = c.numel();
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  const cudaStream_t s = cuda::current_raw_stream();
  switch (c.dtype()) {
    case DType::f32:
      gemm_scale_fwd_kernel<float, float><<<blocks, threads, 0, s>>>(static_cast<float*>(c.data_ptr()), n, float(beta));
      break;
    case DType::f64:
      gemm_scale_fwd_kernel<double, double><<<blocks, threads, 0, s>>>(static_cast<double*>(c.data_ptr()), n, beta);
      break;
    case DType::f16:
      gemm_scale_fwd_kernel<__half, float><<<blocks, threads, 0, s>>>(static_cast<__half*>(c.data_ptr()), n, float(beta));
      break;
    case DType::bf16:
      gemm_scale_fwd_kernel<__nv_bfloat16, float>
          <<<blocks, threads, 0, s>>>(static_cast<__nv_bfloat16*>(c.data_ptr()), n, float(beta));
      break;
    default: throw_unsupported_dtype("gemm", c.dtype(), "cuda");
  }
  RG_CUDA_LAUNCH_CHECK("gemm_scale_fwd_kernel");
  detail::set_last_gemm_kernel("scale");
}

}  // namespace

// c (B, M, N) = alpha * a (B, M, K) @ b (B, K, N) + beta * c; see Note [Kernel contract].
void gemm_cuda(const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) {
  RG_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "gemm: expects a (B, M, K), b (B, K, N), c (B, M, N), got a ",
           a.describe(), ", b ", b.describe(), ", c ", c.describe());
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2), K = a.size(2);
  RG_CHECK(a.size(0) == batch && b.size(0) == batch && a.size(1) == M && b.size(1) == K && b.size(2) == N,
           "gemm: shapes do not match: a ", a.describe(), ", b ", b.describe(), ", c ", c.describe());
  RG_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: dtypes differ: a ", a.describe(), ", b ",
           b.describe(), ", c ", c.describe());
  if (!is_floating(c.dtype())) throw_unsupported_dtype("gemm", c.dtype(), "cuda");
  RG_CHECK(a.is_cuda() && a.device() == c.device() && b.device() == c.device(),
           "gemm: operands must be on one CUDA device: a ", a.describe(), ", b ", b.describe(), ", c ", c.describe());
  if (batch == 0 || M == 0 || N == 0) return;
  RG_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "gemm: M, N and K must each fit in 32 bits: a ",
           a.describe(), ", b ", b.describe());

  // c row-major (unit column stride, ldc >= N) with batches that do not overlap is written in place;
  // c column-major is computed as c^T = b^T a^T (row-major again); anything else, and K == 0 on a
  // non-contiguous c, goes through a contiguous temporary.
  const OperandLayout lc = classify(M, N, c.stride(1), c.stride(2));
  const int64_t c_batch = batch == 1 ? 0 : c.stride(0);
  const bool c_batches_apart = batch == 1 || c_batch >= (lc.trans ? (N - 1) * lc.ld + M : (M - 1) * lc.ld + N);
  if (lc.ok && c_batches_apart && lc.trans && K > 0) {
    gemm_cuda(native::transpose(c, 1, 2), native::transpose(b, 1, 2), native::transpose(a, 1, 2), alpha, beta);
    return;
  }
  if (!(lc.ok && c_batches_apart && !lc.trans) || (K == 0 && !c.is_contiguous())) {
    Tensor tmp = beta != 0.0 ? native::contiguous(c) : empty(c.sizes(), TensorOptions(c.dtype()).device(c.device()));
    gemm_cuda(tmp, a, b, alpha, beta);
    native::copy_(c, tmp);
    return;
  }
  if (K == 0) {
    run_scale(c, beta);
    return;
  }
  RG_CHECK(lc.ld <= INT_MAX, "gemm: leading dimension of c does not fit in 32 bits: c ", c.describe());

  OperandLayout la = classify(M, K, a.stride(1), a.stride(2));
  OperandLayout lb = classify(K, N, b.stride(1), b.stride(2));
  Tensor a_use = a, b_use = b;
  if (!la.ok) {
    a_use = native::contiguous(a);
    la = classify(M, K, a_use.stride(1), a_use.stride(2));
  }
  if (!lb.ok) {
    b_use = native::contiguous(b);
    lb = classify(K, N, b_use.stride(1), b_use.stride(2));
  }
  RG_CHECK(la.ok && lb.ok, "gemm: internal error, unusable operand layout");
  RG_CHECK(la.ld <= INT_MAX && lb.ld <= INT_MAX, "gemm: leading dimension does not fit in 32 bits: a ",
           a.describe(), ", b ", b.describe());

  Problem pr;
  pr.dtype = c.dtype();
  pr.batch = batch;
  pr.trans_a = la.trans;
  pr.trans_b = lb.trans;
  pr.device = c.device().index;
  pr.alpha = alpha, pr.beta = beta;
  GemmParams& p = pr.p;
  p.a = a_use.data_ptr();
  p.b = b_use.data_ptr();
  p.c = c.data_ptr();
  p.M = static_cast<int>(M), p.N = static_cast<int>(N), p.K = static_cast<int>(K);
  p.lda = la.ld, p.ldb = lb.ld, p.ldc = lc.ld;
  // A single batch has no batch stride: 0 keeps the alignment checks and cuBLAS happy.
  p.batch_a = batch == 1 ? 0 : a_use.stride(0);
  p.batch_b = batch == 1 ? 0 : b_use.stride(0);
  p.batch_c = c_batch;
  p.alpha = static_cast<float>(alpha), p.beta = static_cast<float>(beta);
  p.vec_a = aligned(p.a, 16) && p.lda % 4 == 0 && p.batch_a % 4 == 0;
  p.vec_b = aligned(p.b, 16) && p.ldb % 4 == 0 && p.batch_b % 4 == 0;
  p.vec_c = aligned(p.c, 16) && p.ldc % 4 == 0 && p.batch_c % 4 == 0;
  p.pair_c = aligned(p.c, 4) && p.ldc % 2 == 0 && p.batch_c % 2 == 0;

  if (gemm_backend() == GemmBackend::Ours && pr.dtype != DType::f64) {
    run_ours(pr);
  } else {
    run_cublas(pr);
  }
}

}  // namespace rg
