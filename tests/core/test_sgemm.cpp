// Our f32 GEMM (core/cpu/sgemm.h) against a double-precision triple loop written here: odd shapes
// around every block size (MR 8, NR 48, KC 256, MC 128, NC 480), row- and column-major operands,
// alpha/beta, beta 0 over NaN, thread splits of M, N and K, a custom B packer, K = 0.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/cpu/sgemm.h"
#include "test_util.h"

using rg::cpu::MatRef;

namespace {

// Deterministic values in [-1, 1).
std::vector<float> values(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (float& x : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<float>(static_cast<double>(seed >> 40) / static_cast<double>(1ULL << 23) - 1.0);
  }
  return v;
}

struct Case {
  int64_t M, N, K;
  bool a_col, b_col;  // column-major operand (a transposed view)
  float alpha, beta;
};

std::string str(const Case& c) {
  return "M " + std::to_string(c.M) + " N " + std::to_string(c.N) + " K " + std::to_string(c.K) + (c.a_col ? " A^T" : "") +
         (c.b_col ? " B^T" : "") + " alpha " + std::to_string(c.alpha) + " beta " + std::to_string(c.beta);
}

// Runs sgemm on the case with `threads` and checks it against the loop; returns c.
std::vector<float> run_case(const Case& c, int threads, uint64_t seed) {
  const auto a = values(static_cast<size_t>(c.M * c.K), seed), b = values(static_cast<size_t>(c.K * c.N), seed + 1);
  const auto c0 = values(static_cast<size_t>(c.M * c.N), seed + 2);
  const MatRef ar = c.a_col ? MatRef{a.data(), 1, c.M} : MatRef{a.data(), c.K, 1};
  const MatRef br = c.b_col ? MatRef{b.data(), 1, c.K} : MatRef{b.data(), c.N, 1};
  std::vector<float> out = c0;
  rg::cpu::sgemm(c.M, c.N, c.K, c.alpha, ar, br, c.beta, out.data(), c.N, threads);
  int bad = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double t = static_cast<double>(ar.p[i * ar.rs + k * ar.cs]) * br.p[k * br.rs + j * br.cs];
        s += t, mag += std::fabs(t);
      }
      const double want = c.alpha * s + c.beta * c0[static_cast<size_t>(i * c.N + j)];
      const double got = out[static_cast<size_t>(i * c.N + j)];
      if (!(std::fabs(got - want) <= 1e-6 * (std::fabs(c.alpha) * mag + std::fabs(c.beta)) + 1e-30)) {
        if (bad < 3) MESSAGE("c[", i, ", ", j, "] got ", got, " want ", want);
        ++bad;
      }
    }
  }
  CHECK_MESSAGE(bad == 0, bad, " elements off");
  return out;
}

}  // namespace

TEST_CASE("sgemm matches a double loop around every block size, in every layout") {
  const std::vector<Case> cases = {
      {1, 1, 1, false, false, 1.f, 0.f},      {7, 47, 5, false, false, 1.f, 0.f},
      {8, 48, 256, false, false, 1.f, 0.f},   {9, 49, 257, true, false, 1.f, 1.f},
      {129, 97, 300, false, true, 0.5f, 0.f}, {130, 481, 513, true, true, 2.f, -0.5f},
      {16, 1000, 27, false, false, 1.f, 0.f}, {128, 169, 700, true, false, 1.f, 1.f},
      {3, 5, 1100, false, true, 1.f, 0.f},    {200, 30, 64, true, true, -1.f, 0.25f},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    CAPTURE(str(c));
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      run_case(c, threads, seed);
    }
    seed += 10;
  }
}

TEST_CASE("sgemm gives the same bits for every thread count when it splits M or N") {
  // Splits of M or N leave each element's sum over K in the same order.
  for (const Case& c : {Case{130, 481, 513, false, false, 1.f, 0.f}, Case{300, 50, 600, true, false, 1.f, 1.f}}) {
    CAPTURE(str(c));
    const auto one = run_case(c, 1, 99);
    CHECK(run_case(c, 2, 99) == one);
    CHECK(run_case(c, 4, 99) == one);
  }
  // A lopsided product (2 x 1 tiles, K 6000) splits K: right, and the same bits on every run.
  const Case lop{16, 27, 6000, false, true, 1.f, 0.5f};
  CAPTURE(str(lop));
  CHECK(run_case(lop, 2, 7) == run_case(lop, 2, 7));
  run_case(lop, 3, 7);
}

TEST_CASE("sgemm with beta 0 never reads c; K = 0 scales c") {
  const int64_t M = 11, N = 53, K = 9;
  const auto a = values(M * K, 5), b = values(K * N, 6);
  std::vector<float> c(static_cast<size_t>(M * N), std::numeric_limits<float>::quiet_NaN());
  rg::cpu::sgemm(M, N, K, 1.f, MatRef{a.data(), K, 1}, MatRef{b.data(), N, 1}, 0.f, c.data(), N, 1);
  for (float v : c) REQUIRE(std::isfinite(v));
  std::vector<float> d(static_cast<size_t>(M * N), 2.f);
  rg::cpu::sgemm(M, N, 0, 1.f, MatRef{a.data(), K, 1}, MatRef{b.data(), N, 1}, 0.5f, d.data(), N, 1);
  for (float v : d) REQUIRE(v == 1.f);
  std::fill(d.begin(), d.end(), std::numeric_limits<float>::quiet_NaN());
  rg::cpu::sgemm(M, N, 0, 1.f, MatRef{a.data(), K, 1}, MatRef{b.data(), N, 1}, 0.f, d.data(), N, 1);
  for (float v : d) REQUIRE(v == 0.f);
}

TEST_CASE("sgemm with a B packer equals the strided B") {
  // A packer that builds B = 2 * S on the fly (S strided): the product must be 2 x (A @ S).
  const int64_t M = 21, N = 101, K = 270;
  const auto a = values(M * K, 11), s = values(K * N, 12);
  struct Ctx {
    MatRef s;
  } ctx{MatRef{s.data(), N, 1}};
  auto pack = [](const void* p, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
    rg::cpu::sgemm_pack_strided(static_cast<const Ctx*>(p)->s, k0, kc, j0, nc, dst);
    const int64_t panels = (nc + rg::cpu::kSgemmNR - 1) / rg::cpu::kSgemmNR;
    for (int64_t i = 0; i < panels * kc * rg::cpu::kSgemmNR; ++i) dst[i] *= 2.f;
  };
  std::vector<float> got(static_cast<size_t>(M * N)), want(static_cast<size_t>(M * N));
  rg::cpu::sgemm(M, N, K, 1.f, MatRef{a.data(), K, 1}, rg::cpu::PackB{&ctx, pack}, 0.f, got.data(), N, 2);
  rg::cpu::sgemm(M, N, K, 2.f, MatRef{a.data(), K, 1}, MatRef{s.data(), N, 1}, 0.f, want.data(), N, 2);
  CHECK(got == want);  // 2 x exact in binary: the same bits
}
