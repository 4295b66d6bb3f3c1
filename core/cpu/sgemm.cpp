// Our f32 GEMM for the CPU (core/cpu/sgemm.h): BLIS-style cache blocking, packed panels, and an
// 8 x 48 register tile kept in 24 AVX-512 registers; a portable C++ tile of the same shape elsewhere.
#include "core/cpu/sgemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12 reports false -Wmaybe-uninitialized inside its own AVX-512 intrinsics (_mm512_setzero_ps,
// masked loads), as it does for Eigen's (core/cpu/gemm.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace rg::cpu {

// Note [CPU f32 GEMM]
// c = alpha a b + beta c is computed in blocks: for each NC-wide column block of B and KC-deep slice
// of K, B's block is packed once (panels of NR columns, each KC rows of NR contiguous floats); for
// each MC-tall row block of A, A's block is packed (panels of MR rows, k-major). The micro-kernel
// multiplies one A panel (MR x KC, 8 KiB: stays in L1) by one B panel (KC x NR, from L2) into an
// MR x NR tile held in registers, and adds the tile into c once at the end. Partial tiles are
// zero-padded in the packs and masked at the store. Several threads split M or N into contiguous
// ranges of tiles (each packs its own panels: nothing shared, no barrier), and then every element's
// sum over K runs in the same order for every thread count. Only lopsided products (few tiles, a
// long K: a weight gradient over many output positions) split K instead, each thread summing into
// a private block that is added up in thread order: deterministic for a given thread count.
// B may come from a packer (PackB): the convolution packs image patches straight into the panel
// format, so the im2col matrix is never written out.

namespace {

// K == 0: an empty sum, c = beta * c (zeros for beta == 0, whatever c held).
#define RG_SGEMM_EMPTY_SUM                                                                           \
  if (K <= 0) {                                                                                      \
    for (int64_t i = 0; i < M; ++i) {                                                                \
      for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];    \
    }                                                                                                \
    return;                                                                                          \
  }

constexpr int64_t kMR = 8, kNR = kSgemmNR;
constexpr int64_t kKC = 256;      // depth of a panel: A panel 8 KiB, B panel 48 KiB
constexpr int64_t kMC = 128;      // rows of A packed at once
constexpr int64_t kNC = kNR * 10; // columns of B packed at once (480 KiB at KC = 256)

// 64-byte aligned scratch that grows and is kept per thread.
struct Scratch {
  std::unique_ptr<float[], decltype(&std::free)> p{nullptr, &std::free};
  size_t n = 0;
  float* get(size_t want) {
    if (want > n) {
      p.reset(static_cast<float*>(std::aligned_alloc(64, (want * sizeof(float) + 63) / 64 * 64)));
      if (!p) throw std::bad_alloc();
      n = want;
    }
    return p.get();
  }
};
thread_local Scratch tl_a, tl_b;

// B rows for the micro-kernel: a packed panel (row k at b + k * 48), or rows of a matrix read in
// place (row k at base + off[k], sgemm_offsets).
struct PanelRows {
  const float* b;
  const float* row(int64_t k) const { return b + k * kNR; }
};
struct OffsetRows {
  const float* base;
  const int64_t* off;
  const float* row(int64_t k) const { return base + off[k]; }
};

#if defined(__AVX512F__)
// c (m <= 8 rows, n <= 48 columns, row stride ldc) = alpha * (a panel (kc x 8) @ b rows (kc x 48)) + beta * c.
template <typename Rows>
void micro_kernel(int64_t kc, const float* __restrict a, Rows b, float* c, int64_t ldc, int64_t m, int64_t n,
                  float alpha, float beta) {
  __m512 acc[kMR][3];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b.row(k);
    const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16), b2 = _mm512_loadu_ps(bk + 32);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(ar, b2, acc[r][2]);
    }
    a += kMR;
  }
  auto mask_of = [&](int64_t v) -> __mmask16 {
    const int64_t left = n - 16 * v;
    return left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
  };
  const __mmask16 mk[3] = {mask_of(0), mask_of(1), mask_of(2)};
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      __m512 x = _mm512_mul_ps(acc[r][v], va);
      if (beta != 0.f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk[v], cr + 16 * v), x);
      _mm512_mask_storeu_ps(cr + 16 * v, mk[v], x);
    }
  }
}
#else
template <typename Rows>
void micro_kernel(int64_t kc, const float* __restrict a, Rows b, float* c, int64_t ldc, int64_t m, int64_t n,
                  float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b.row(k);
    for (int r = 0; r < kMR; ++r) {
      const float ar = a[k * kMR + r];
      for (int j = 0; j < kNR; ++j) acc[r][j] += ar * bk[j];
    }
  }
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float& out = c[r * ldc + j];
      out = beta != 0.f ? alpha * acc[r][j] + beta * out : alpha * acc[r][j];
    }
  }
}
#endif

// A full A panel (kc x 8) from 8 rows src + r * ld, each contiguous in k.
void pack_a_rows(const float* src, int64_t ld, int64_t kc, float* dst) {
  int64_t k = 0;
#if defined(__AVX2__)
  for (; k + 8 <= kc; k += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld + k);
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {  // pairs of rows interleaved per 128-bit half
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // u[4h + m]: columns m and 4 + m of rows 4h .. 4h + 3
      u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int m = 0; m < 4; ++m) {
      _mm256_storeu_ps(dst + (k + m) * kMR, _mm256_permute2f128_ps(u[m], u[4 + m], 0x20));
      _mm256_storeu_ps(dst + (k + 4 + m) * kMR, _mm256_permute2f128_ps(u[m], u[4 + m], 0x31));
    }
  }
#endif
  for (; k < kc; ++k) {
    for (int64_t r = 0; r < kMR; ++r) dst[k * kMR + r] = src[r * ld + k];
  }
}

// A's rows [i0, i0 + mc) x columns [k0, k0 + kc) as ceil(mc / 8) panels of kc x 8 (zero-padded rows).
void pack_a(const MatRef& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t p = 0; p < mc; p += kMR, dst += kc * kMR) {
    const int64_t rows = std::min(kMR, mc - p);
    if (rows < kMR) std::fill(dst, dst + kc * kMR, 0.f);
    if (a.cs == 1 && rows == kMR) {  // row-major: 8 x 8 blocks transposed in registers
      pack_a_rows(a.p + (i0 + p) * a.rs + k0, a.rs, kc, dst);
    } else if (a.cs == 1) {  // row-major: each row is contiguous in k
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = a.p + (i0 + p + r) * a.rs + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * kMR + r] = src[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = a.p + (i0 + p) * a.rs + (k0 + k) * a.cs;
        for (int64_t r = 0; r < rows; ++r) dst[k * kMR + r] = src[r * a.rs];
      }
    }
  }
}

// One B panel (kc x 48, zero past `cols`) from a matrix whose columns are contiguous: column j of
// the panel is col(j)[0 .. kc). 16 x 16 blocks are transposed in registers.
#if defined(__AVX512F__)
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: pairs of rows interleaved
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // r[4i + m], lane L: column 4L + m of rows 4i .. 4i + 3
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int m = 0; m < 4; ++m) {  // gather lane L of r[m], r[4 + m], r[8 + m], r[12 + m]: column 4L + m
    t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
    t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
  }
  for (int m = 0; m < 4; ++m) {
    r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd);
    r[4 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xdd);
  }
}
template <typename Col>
void pack_transposed(Col col, int64_t kc, int64_t cols, float* dst) {
  for (int64_t jb = 0; jb < kNR; jb += 16) {
    const int64_t jn = std::clamp<int64_t>(cols - jb, 0, 16);
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int64_t kn = std::min<int64_t>(16, kc - kb);
      const __mmask16 km = kn == 16 ? __mmask16(0xFFFF) : __mmask16((1u << kn) - 1);
      __m512 r[16];
      for (int64_t j = 0; j < 16; ++j) {
        r[j] = j < jn ? _mm512_maskz_loadu_ps(km, col(jb + j) + kb) : _mm512_setzero_ps();
      }
      transpose16(r);
      for (int64_t k = 0; k < kn; ++k) _mm512_storeu_ps(dst + (kb + k) * kNR + jb, r[k]);
    }
  }
}
#else
template <typename Col>
void pack_transposed(Col col, int64_t kc, int64_t cols, float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    for (int64_t j = 0; j < kNR; ++j) dst[k * kNR + j] = j < cols ? col(j)[k] : 0.f;
  }
}
#endif

void pack_b_strided(const void* ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  sgemm_pack_strided(*static_cast<const MatRef*>(ctx), k0, kc, j0, nc, dst);
}

// Where a thread's B rows come from: panels it packs itself per (column block, depth slice), or
// the matrix in place (sgemm_offsets).
struct PackedSource {
  const PackB& pack;
  float* buf;
  void prepare(int64_t k0, int64_t kc, int64_t j0, int64_t nc) { pack.pack(pack.ctx, k0, kc, j0, nc, buf); }
  PanelRows rows(int64_t /*k0*/, int64_t kc, int64_t /*j0*/, int64_t jr) const { return {buf + jr * kc}; }
};
struct OffsetSource {
  const float* base;
  const int64_t* off;
  void prepare(int64_t, int64_t, int64_t, int64_t) {}
  OffsetRows rows(int64_t k0, int64_t /*kc*/, int64_t j0, int64_t jr) const { return {base + j0 + jr, off + k0}; }
};

// One thread's share: c (M, N) for B rows [kb, kb + K) and columns [jb, jb + N) of the source.
template <typename Source>
void sgemm_serial(int64_t M, int64_t N, int64_t K, float alpha, const MatRef& a, Source& b, int64_t kb, int64_t jb,
                  float beta, float* c, int64_t ldc) {
  float* abuf = tl_a.get(static_cast<size_t>(kMC * kKC));
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      b.prepare(kb + pc, kc, jb + jc, nc);
      const float bp = pc == 0 ? beta : 1.f;
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        pack_a(a, ic, mc, pc, kc, abuf);
        for (int64_t ir = 0; ir < mc; ir += kMR) {
          const float* ap = abuf + ir * kc;
          float* crow = c + (ic + ir) * ldc + jc;
          for (int64_t jr = 0; jr < nc; jr += kNR) {
            micro_kernel(kc, ap, b.rows(kb + pc, kc, jb + jc, jr), crow + jr, ldc, std::min(kMR, mc - ir),
                         std::min(kNR, nc - jr), alpha, bp);
          }
        }
      }
    }
  }
}
void sgemm_serial(int64_t M, int64_t N, int64_t K, float alpha, const MatRef& a, const PackB& b, int64_t kb,
                  int64_t jb, float beta, float* c, int64_t ldc) {
  PackedSource src{b, tl_b.get(static_cast<size_t>(kKC * kNC))};
  sgemm_serial(M, N, K, alpha, a, src, kb, jb, beta, c, ldc);
}

// How several threads share one product (Note [CPU f32 GEMM]): split M (every thread packs all of
// B), N (every thread packs all of A) or K (each thread sums its slice of K into a private M x N
// block, added up afterwards), whichever copies the fewest floats, counting idle threads' share of
// the multiply-adds when the tiles do not divide evenly; K only when it is clearly the cheapest.
struct Split {
  char dim;
  int64_t parts;
};
Split choose_split(int64_t M, int64_t N, int64_t K, int nt) {
  const double work = static_cast<double>(M) * N * K / 16;  // multiply-adds, in units of a copied float
  auto cost = [&](int64_t tiles, double copies) {
    if (tiles < 2) return 1e300;
    const int64_t parts = std::min<int64_t>(tiles, nt);
    const double idle = static_cast<double>((tiles + parts - 1) / parts * parts) / tiles - 1;
    return copies * (parts - 1) + idle * work + work / parts;
  };
  const int64_t mt = (M + kMR - 1) / kMR, nt_ = (N + kNR - 1) / kNR, kt = K / kKC;
  const double cm = cost(mt, static_cast<double>(K) * N), cn = cost(nt_, static_cast<double>(M) * K);
  const double ck = cost(kt, 2.0 * M * N);
  if (cm >= 1e300 && cn >= 1e300 && ck >= 1e300) return {'-', 1};
  if (2 * ck < std::min(cm, cn)) return {'k', std::min<int64_t>(kt, nt)};  // only when clearly better
  if (cn <= cm) return {'n', std::min<int64_t>(nt_, nt)};
  return {'m', std::min<int64_t>(mt, nt)};
}

// Split K: thread t computes its slice's product into part t; c = alpha * sum_t part_t + beta * c,
// summed in t order.
void split_k(int64_t M, int64_t N, int64_t K, float alpha, const MatRef& a, const PackB& b, float beta, float* c,
             int64_t ldc, int64_t parts) {
  std::vector<float> part(static_cast<size_t>(parts * M * N));
#pragma omp parallel for schedule(static, 1) num_threads(parts)
  for (int64_t t = 0; t < parts; ++t) {
    const int64_t k0 = K * t / parts, k1 = K * (t + 1) / parts;
    const MatRef as{a.p + k0 * a.cs, a.rs, a.cs};
    sgemm_serial(M, N, k1 - k0, 1.f, as, b, k0, 0, 0.f, part.data() + t * M * N, N);
  }
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.f;
      for (int64_t t = 0; t < parts; ++t) s += part[static_cast<size_t>((t * M + i) * N + j)];
      float& out = c[i * ldc + j];
      out = beta != 0.f ? alpha * s + beta * out : alpha * s;
    }
  }
}

}  // namespace

bool sgemm_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

void sgemm_pack_strided(const MatRef& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t q = 0; q < nc; q += kNR, dst += kc * kNR) {
    const int64_t cols = std::min(kNR, nc - q);
    const float* base = b.p + k0 * b.rs + (j0 + q) * b.cs;
    if (b.cs == 1) {  // rows of B are contiguous
      for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * kNR;
        copy_short(d, base + k * b.rs, cols);
        zero_short(d + cols, kNR - cols);
      }
    } else if (b.rs == 1) {  // columns of B are contiguous (a transposed operand)
      pack_transposed([&](int64_t j) { return base + j * b.cs; }, kc, cols, dst);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < kNR; ++j) dst[k * kNR + j] = j < cols ? base[k * b.rs + j * b.cs] : 0.f;
      }
    }
  }
}

void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, const PackB& b, float beta, float* c, int64_t ldc,
           int threads) {
  if (M <= 0 || N <= 0) return;
  RG_SGEMM_EMPTY_SUM
  int nt = std::max(1, threads);
  if (static_cast<double>(M) * N * K < 64.0 * 64 * 64) nt = 1;
  const Split sp = nt > 1 ? choose_split(M, N, K, nt) : Split{'-', 1};
  if (sp.parts <= 1) {
    sgemm_serial(M, N, K, alpha, a, b, 0, 0, beta, c, ldc);
    return;
  }
  if (sp.dim == 'k') {
    split_k(M, N, K, alpha, a, b, beta, c, ldc, sp.parts);
    return;
  }
  const int64_t tiles = sp.dim == 'n' ? (N + kNR - 1) / kNR : (M + kMR - 1) / kMR;
#pragma omp parallel for schedule(static, 1) num_threads(sp.parts)
  for (int64_t t = 0; t < sp.parts; ++t) {
    const int64_t t0 = tiles * t / sp.parts, t1 = tiles * (t + 1) / sp.parts;
    if (sp.dim == 'n') {
      const int64_t j0 = t0 * kNR, j1 = std::min(N, t1 * kNR);
      if (j1 > j0) sgemm_serial(M, j1 - j0, K, alpha, a, b, 0, j0, beta, c + j0, ldc);
    } else {
      const int64_t i0 = t0 * kMR, i1 = std::min(M, t1 * kMR);
      const MatRef as{a.p + i0 * a.rs, a.rs, a.cs};
      if (i1 > i0) sgemm_serial(i1 - i0, N, K, alpha, as, b, 0, 0, beta, c + i0 * ldc, ldc);
    }
  }
}

void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, MatRef b, float beta, float* c, int64_t ldc,
           int threads) {
  sgemm(M, N, K, alpha, a, PackB{&b, &pack_b_strided}, beta, c, ldc, threads);
}

void sgemm_offsets(int64_t M, int64_t N, int64_t K, float alpha, MatRef a, const float* base, const int64_t* off,
                   float beta, float* c, int64_t ldc, int threads) {
  if (M <= 0 || N <= 0) return;
  RG_SGEMM_EMPTY_SUM
  const int64_t mt = (M + kMR - 1) / kMR, ntl = (N + kNR - 1) / kNR;
  int nt = std::max(1, threads);
  if (static_cast<double>(M) * N * K < 64.0 * 64 * 64) nt = 1;
  // B is read in place, so no split copies it; split N when it has enough tiles, else M.
  const bool split_n = ntl >= 2 * nt || ntl >= mt;
  const int64_t parts = std::min<int64_t>(nt, split_n ? ntl : mt);
  if (parts <= 1) {
    OffsetSource src{base, off};
    sgemm_serial(M, N, K, alpha, a, src, 0, 0, beta, c, ldc);
    return;
  }
  const int64_t tiles = split_n ? ntl : mt;
#pragma omp parallel for schedule(static, 1) num_threads(parts)
  for (int64_t t = 0; t < parts; ++t) {
    OffsetSource src{base, off};
    const int64_t t0 = tiles * t / parts, t1 = tiles * (t + 1) / parts;
    if (split_n) {
      const int64_t j0 = t0 * kNR, j1 = std::min(N, t1 * kNR);
      if (j1 > j0) sgemm_serial(M, j1 - j0, K, alpha, a, src, 0, j0, beta, c + j0, ldc);
    } else {
      const int64_t i0 = t0 * kMR, i1 = std::min(M, t1 * kMR);
      if (i1 > i0) sgemm_serial(i1 - i0, N, K, alpha, MatRef{a.p + i0 * a.rs, a.rs, a.cs}, src, 0, 0, beta, c + i0 * ldc, ldc);
    }
  }
}

}  // namespace rg::cpu
