// Philox4x32-10 against the published known-answer vectors (with an implementation written here
// from the published constants), the exact per-element formulas of Note [Philox formulas], stream
// offsets, logical order for strided tensors, and statistical sanity of uniform/normal/bernoulli.
#include <cmath>
#include <cstring>

#include "test_util.h"

using namespace rg;

namespace {

// Philox4x32 with 10 rounds (Salmon et al., SC'11): multipliers 0xD2511F53, 0xCD9E8D57 and Weyl
// key increments 0x9E3779B9 (golden ratio), 0xBB67AE85 (sqrt 3 - 1), on a full 128-bit counter.
struct Words {
  uint32_t w[4];
};
Words philox_ref(const uint32_t ctr_in[4], const uint32_t key_in[2]) {
  uint64_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]};
  uint64_t k0 = key_in[0], k1 = key_in[1];
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = 0xD2511F53ull * c[0];
    const uint64_t p1 = 0xCD9E8D57ull * c[2];
    const uint64_t n0 = (p1 >> 32) ^ c[1] ^ k0;
    const uint64_t n1 = p1 & 0xffffffffull;
    const uint64_t n2 = (p0 >> 32) ^ c[3] ^ k1;
    const uint64_t n3 = p0 & 0xffffffffull;
    c[0] = n0;
    c[1] = n1;
    c[2] = n2;
    c[3] = n3;
    k0 = (k0 + 0x9E3779B9ull) & 0xffffffffull;
    k1 = (k1 + 0xBB67AE85ull) & 0xffffffffull;
  }
  return {{static_cast<uint32_t>(c[0]), static_cast<uint32_t>(c[1]), static_cast<uint32_t>(c[2]),
           static_cast<uint32_t>(c[3])}};
}

// The word for element i of a draw at (seed, offset), per Note [Philox streams].
uint32_t word(uint64_t seed, uint64_t offset, int64_t i) {
  const uint64_t blk = offset + static_cast<uint64_t>(i / 4);
  const uint32_t ctr[4] = {static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), 0, 0};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  return philox_ref(ctr, key).w[i % 4];
}

double u01(uint32_t w) { return std::ldexp(static_cast<double>(w >> 8), -24); }

std::vector<double> expected_uniform(uint64_t seed, uint64_t offset, int64_t n, double a, double b) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = a + (b - a) * u01(word(seed, offset, i));
  return v;
}

std::vector<double> expected_normal(uint64_t seed, uint64_t offset, int64_t n, double mean, double stdv) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t first = i - (i % 2);  // the pair (0, 1) or (2, 3) of the block
    const double u1 = 1.0 - u01(word(seed, offset, first));
    const double u2 = u01(word(seed, offset, first + 1));
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z = (i % 2 == 0) ? r * std::cos(6.283185307179586 * u2) : r * std::sin(6.283185307179586 * u2);
    v[static_cast<size_t>(i)] = mean + stdv * z;
  }
  return v;
}

// Rounds doubles as the kernel's cast does (through float for the 16-bit types).
std::vector<double> rounded(const std::vector<double>& v, DType dt) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    switch (dt) {
      case DType::f64: out[i] = v[i]; break;
      case DType::f32: out[i] = f; break;
      case DType::f16: out[i] = static_cast<float>(Half(f)); break;
      case DType::bf16: out[i] = static_cast<float>(BFloat16(f)); break;
      default: out[i] = v[i];
    }
  }
  return out;
}

}  // namespace

TEST_CASE("Philox4x32-10 known-answer vectors (Random123 kat_vectors)") {
  const uint32_t z4[4] = {0, 0, 0, 0}, z2[2] = {0, 0};
  const Words a = philox_ref(z4, z2);
  CHECK(a.w[0] == 0x6627e8d5u);
  CHECK(a.w[1] == 0xe169c58du);
  CHECK(a.w[2] == 0xbc57ac4cu);
  CHECK(a.w[3] == 0x9b00dbd8u);
  const uint32_t f4[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, f2[2] = {0xffffffffu, 0xffffffffu};
  const Words b = philox_ref(f4, f2);
  CHECK(b.w[0] == 0x408f276du);
  CHECK(b.w[1] == 0x41c83b0eu);
  CHECK(b.w[2] == 0xa20bc7c6u);
  CHECK(b.w[3] == 0x6d5451fdu);
  const uint32_t p4[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, p2[2] = {0xa4093822u, 0x299f31d0u};
  const Words c = philox_ref(p4, p2);
  CHECK(c.w[0] == 0xd16cfe09u);
  CHECK(c.w[1] == 0x94fdccebu);
  CHECK(c.w[2] == 0x5001e420u);
  CHECK(c.w[3] == 0x24126ea1u);
  // the library's block() on a 64-bit counter and 64-bit seed
  uint32_t out[4];
  Philox::block(0, 0, out);
  CHECK(out[0] == 0x6627e8d5u);
  CHECK(out[3] == 0x9b00dbd8u);
  for (uint64_t seed : {1ull, 0xdeadbeefcafef00dull, 67280421310721ull}) {
    for (uint64_t ctr : {0ull, 1ull, 0xffffffffull, 0x123456789abcdefull}) {
      Philox::block(seed, ctr, out);
      const uint32_t cc[4] = {static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), 0, 0};
      const uint32_t kk[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
      const Words r = philox_ref(cc, kk);
      for (int l = 0; l < 4; ++l) CHECK(out[l] == r.w[l]);
    }
  }
  CHECK(Philox::to_uniform(0xffffffffu) == static_cast<float>(1.0 - std::ldexp(1.0, -24)));
  CHECK(Philox::to_uniform(0xffu) == 0.0f);
}

TEST_CASE("uniform, normal and bernoulli fills follow the per-element formulas exactly") {
  for (DType dt : test::float_dtypes()) {
    for (int64_t n : {1, 3, 4, 7, 1023, 70001}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(n);
      const uint64_t seed = 0x1234567890abcdefull;
      Generator g(seed);
      g.set_state(seed, 5);
      const Tensor u = empty({n}, dt);
      native::random_(u, RandomKind::Uniform, -2.0, 3.0, &g);
      CHECK(u.to_vector<double>() == rounded(expected_uniform(seed, 5, n, -2.0, 3.0), dt));
      CHECK(g.offset() == 5 + static_cast<uint64_t>((n + 3) / 4));
      const Tensor z = empty({n}, dt);
      const uint64_t off = g.offset();
      native::random_(z, RandomKind::Normal, 1.5, 0.5, &g);
      CHECK(z.to_vector<double>() == rounded(expected_normal(seed, off, n, 1.5, 0.5), dt));
      const Tensor bern = empty({n}, dt);
      const uint64_t off2 = g.offset();
      native::random_(bern, RandomKind::Bernoulli, 0.3, 0.0, &g);
      const auto uv = expected_uniform(seed, off2, n, 0.0, 1.0);
      std::vector<double> want(uv.size());
      for (size_t i = 0; i < uv.size(); ++i) want[i] = uv[i] < 0.3 ? 1.0 : 0.0;
      CHECK(bern.to_vector<double>() == want);
    }
  }
  // bernoulli into integer and bool tensors
  for (DType dt : {DType::i64, DType::u8, DType::b8}) {
    Generator g(99);
    const Tensor t = empty({9}, dt);
    native::random_(t, RandomKind::Bernoulli, 0.5, 0.0, &g);
    const auto uv = expected_uniform(99, 0, 9, 0.0, 1.0);
    std::vector<double> want(uv.size());
    for (size_t i = 0; i < uv.size(); ++i) want[i] = uv[i] < 0.5 ? 1.0 : 0.0;
    CHECK(t.to_vector<double>() == want);
  }
  CHECK_THROWS_AS(native::random_(empty({3}, DType::i32), RandomKind::Normal, 0, 1), rg::Error);
}

TEST_CASE("consecutive draws continue the stream; same seed repeats; strided tensors fill in logical order") {
  Generator g(7);
  const Tensor a = rand({5}, DType::f64, &g);  // blocks 0, 1
  const Tensor b = rand({3}, DType::f64, &g);  // block 2
  CHECK(a.to_vector<double>() == expected_uniform(7, 0, 5, 0, 1));
  CHECK(b.to_vector<double>() == expected_uniform(7, 2, 3, 0, 1));
  CHECK(g.offset() == 3);
  Generator h(7);
  CHECK(rand({5}, DType::f64, &h).to_vector<double>() == a.to_vector<double>());
  Generator other(8);
  CHECK(rand({5}, DType::f64, &other).to_vector<double>() != a.to_vector<double>());
  // a pair of normals cut by the end of the tensor still uses both words
  Generator g3(11), g4(11);
  const auto three = randn({3}, DType::f64, &g3).to_vector<double>();
  const auto four = randn({4}, DType::f64, &g4).to_vector<double>();
  CHECK(three[2] == four[2]);
  // a transposed view gets the numbers in its own logical (row-major) order
  Generator g5(13);
  const Tensor base = empty({4, 3}, DType::f64);
  const Tensor view = native::transpose(base, 0, 1);  // (3, 4)
  native::random_(view, RandomKind::Uniform, 0, 1, &g5);
  CHECK(view.to_vector<double>() == expected_uniform(13, 0, 12, 0, 1));
  // the default generator
  manual_seed(42);
  CHECK(rand({6}, DType::f32).to_vector<double>() == rounded(expected_uniform(42, 0, 6, 0, 1), DType::f32));
  CHECK(default_generator().offset() == 2);
  CHECK(rand({0}).numel() == 0);
}

TEST_CASE("statistics of a million draws") {
  Generator g(2024);
  const int64_t n = 1000000;
  const auto u = rand({n}, DType::f32, &g).to_vector<double>();
  double s = 0, ss = 0, lo = 1, hi = 0;
  for (double v : u) {
    s += v;
    ss += v * v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double mean = s / n, var = ss / n - mean * mean;
  CHECK(std::fabs(mean - 0.5) < 1.5e-3);        // 5 sigma
  CHECK(std::fabs(var - 1.0 / 12.0) < 4e-4);
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  CHECK(lo < 1e-4);
  CHECK(hi > 1 - 1e-4);

  const auto z = randn({n}, DType::f32, &g).to_vector<double>();
  double zs = 0, zss = 0, z3 = 0;
  int64_t within1 = 0;
  for (double v : z) {
    zs += v;
    zss += v * v;
    z3 += v * v * v;
    within1 += std::fabs(v) < 1.0;
  }
  CHECK(std::fabs(zs / n) < 5e-3);
  CHECK(std::fabs(zss / n - 1.0) < 1e-2);
  CHECK(std::fabs(z3 / n) < 2e-2);
  CHECK(std::fabs(static_cast<double>(within1) / n - 0.682689) < 3e-3);
  for (double v : z) REQUIRE(std::isfinite(v));

  Generator g2(5);
  const Tensor bern = empty({n}, DType::f32);
  native::random_(bern, RandomKind::Bernoulli, 0.3, 0, &g2);
  const double frac = native::reduce(ReduceOp::Mean, bern, {}, false).item();
  CHECK(std::fabs(frac - 0.3) < 2.5e-3);

  Generator g3(6);
  const Tensor ri = randint(3, 13, {100000}, DType::i64, &g3);
  const auto rv = ri.to_vector<int64_t>();
  std::vector<int64_t> counts(10, 0);
  for (int64_t v : rv) {
    REQUIRE(v >= 3);
    REQUIRE(v < 13);
    ++counts[static_cast<size_t>(v - 3)];
  }
  for (int64_t c : counts) CHECK(std::abs(c - 10000) < 500);
}
