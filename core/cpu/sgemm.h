// Our f32 GEMM for the CPU: cache-blocked packed panels and an AVX-512 register-tile micro-kernel
// (Note [CPU f32 GEMM] in core/cpu/sgemm.cpp). gemm_cpu uses it for f32, the im2col convolution
// (core/cpu/conv.cpp) with its own B packer, which builds the column panels straight from the image.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rg::cpu {

// A strided f32 matrix: element (i, j) at p[i * rs + j * cs].
struct MatRef {
  const float* p;
  int64_t rs, cs;
};

// The panel shape of the packed right-hand side: a packer writes, for columns [j0, j0 + nc) and
// rows [k0, k0 + kc) of B, ceil(nc / kSgemmNR) panels one after the other, each kc rows of kSgemmNR
// floats (row k of panel q holds B[k0 + k, j0 + q * kSgemmNR + 0 .. kSgemmNR - 1], zero past nc).
inline constexpr int64_t kSgemmNR = 48;
struct PackB {
  const void* ctx;
  void (*pack)(const void* ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst);
};

// True when this build has the micro-kernel (the host compiler targets AVX-512F); callers fall back
// to Eigen otherwise.
bool sgemm_available();

// c (M, N; row stride ldc, unit column stride) = alpha * a (M, K) @ b (K, N) + beta * c. beta == 0
// never reads c (NaN in c does not leak). `threads` > 1 splits the work across that many OpenMP
// threads (callers pass 1 inside a parallel region).
void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, MatRef b, float beta, float* c, int64_t ldc,
           int threads);
// The same with B produced by a packer (for B matrices that are never materialised).
void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, const PackB& b, float beta, float* c, int64_t ldc,
           int threads);
// The same with B read in place, row k at base + off[k] (B[k, j] = base[off[k] + j]): for a
// convolution, the rows of the column matrix are shifted windows of one zero-padded image. Reads
// base[off[k] + j] for j up to N rounded up to kSgemmNR (those past N feed only discarded columns).
void sgemm_offsets(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, const float* base, const int64_t* off,
                   float beta, float* c, int64_t ldc, int threads);
// The packer of a strided B, exposed for tests and for packers that fall back to it.
void sgemm_pack_strided(const MatRef& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst);

// d[0, n) = s[0, n), and d[0, n) = 0, for the short runs that packers move: inline, since a
// library call costs more than moving a panel row of 48 floats.
inline void copy_short(float* d, const float* s, int64_t n) {
#if defined(__AVX512F__)
  for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
  if (n > 0) {
    const auto m = static_cast<__mmask16>((1u << n) - 1);
    _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
  }
#else
  if (n > 0) std::memcpy(d, s, static_cast<size_t>(n) * sizeof(float));
#endif
}
inline void zero_short(float* d, int64_t n) {
#if defined(__AVX512F__)
  for (; n >= 16; n -= 16, d += 16) _mm512_storeu_ps(d, _mm512_setzero_ps());
  if (n > 0) _mm512_mask_storeu_ps(d, static_cast<__mmask16>((1u << n) - 1), _mm512_setzero_ps());
#else
  for (int64_t i = 0; i < n; ++i) d[i] = 0.f;
#endif
}

}  // namespace rg::cpu
