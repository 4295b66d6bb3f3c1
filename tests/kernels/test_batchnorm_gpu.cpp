// Batch norm CUDA kernels against the CPU kernels: statistics (Welford splits), forward with and
// without weight/bias, the backward sums and the input gradient, in f32/f16/bf16/f64, on odd
// channel counts and spatial sizes (vectorised and scalar paths), misaligned, transposed and
// shifted (large-mean) inputs, and channels long enough to split across many blocks.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

DType stat_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

// Tolerance for the backward sums of random inputs (the small cases, count <= 1024) and of sums
// taken about the batch mean: `count`
// values of magnitude <= `mag` summed in f32 (f64 for f64) in another order than the CPU's. Their
// error is about sqrt(count) roundings of partial sums far below count * mag; 1e-7 * count * mag
// (1.7 f32 roundoffs per element) bounds it, and a lost element is seen unless |dy| < 1e-7 count.
test::Tol sum_tol(DType dt, int64_t count, double mag) {
  const double eps = dt == DType::f64 ? 1e-14 : 1e-7;
  return {eps * mag * static_cast<double>(count), dt == DType::f64 ? 1e-10 : 1e-5};
}

// Note on the big cases (count > 2048 values per channel: several blocks per channel, a second pass
// merging them): their backward sums are checked exactly. x holds integers in [-3, 3] and dy
// integers in {-2, -1, 1, 2} (exact in every dtype), and both devices get the mean 1/2 for every
// channel, so each term dy (x - 1/2) is a multiple of 1/2 of magnitude <= 7; any partial sum, in
// any order, is a multiple of 1/2 of magnitude <= 7 * 420600 < 2^23 (the largest channel below),
// exact in f32. sum_dy and sum_dy_xmu are then compared for equality: a lost or doubled element
// changes sum_dy by dy != 0 and sum_dy_xmu by dy (x - 1/2) != 0.
constexpr int64_t kCrossBlock = 2048;

Tensor small_integers(const Shape& shape, DType dt, const std::vector<double>& pick, uint64_t seed) {
  std::vector<double> v = test::uniform_values(shape_numel(shape), 0.0, static_cast<double>(pick.size()), seed);
  for (double& e : v) e = pick[static_cast<size_t>(e)];
  return native::to(from_vector<double>(v, shape), kCPU, dt);
}

test::Tol elem_tol(DType dt) { return loose(dt, 4); }

struct BnCase {
  Shape shape;
  double lo, hi;
  std::string layout;  // "contiguous", "misaligned", "transposed"
};

std::vector<BnCase> cases() {
  return {
      {{2, 3, 5, 7}, -2, 3, "contiguous"},    {{1, 1, 1, 1}, -1, 1, "contiguous"},
      {{3, 17, 13, 11}, -1, 1, "contiguous"}, {{7, 5}, -3, 3, "contiguous"},
      {{4, 64, 1, 1}, -1, 1, "contiguous"},   {{2, 3, 1, 4097}, -1, 2, "contiguous"},
      {{5, 4, 9}, -1, 1, "contiguous"},       {{2, 3, 4, 8}, -1, 1, "contiguous"},
      {{2, 3, 4, 8}, -1, 1, "misaligned"},    {{3, 5, 7, 2}, -1, 1, "transposed"},
      {{128, 3, 32, 32}, -1, 1, "contiguous"},  // many splits per channel
      {{1, 2, 600, 701}, -1, 1, "contiguous"},  // one image, long channels
      {{16, 8, 8, 8}, 100, 101, "contiguous"},  // large mean: a naive sum of squares would cancel
      {{64, 1, 3, 3}, -1, 1, "misaligned"},
  };
}

// The input on both devices, with the same logical values and layout (integers in [-3, 3] for the
// big cases).
std::pair<Tensor, Tensor> make_input(const BnCase& c, DType dt, uint64_t seed) {
  const int64_t n = shape_numel(c.shape);
  if (shape_numel(c.shape) / c.shape[1] > kCrossBlock) {
    REQUIRE(c.layout == "contiguous");
    const Tensor x = small_integers(c.shape, dt, {-3, -2, -1, 0, 1, 2, 3}, seed);
    return {x, to_gpu(x)};
  }
  if (c.layout == "misaligned") {
    const Tensor base = test::uniform({n + 1}, c.lo, c.hi, dt, seed);
    const Tensor gbase = to_gpu(base);
    return {native::view(native::narrow(base, 0, 1, n), c.shape), native::view(native::narrow(gbase, 0, 1, n), c.shape)};
  }
  if (c.layout == "transposed") {  // channels strided: a (W, C, H, N) tensor seen as (N, C, H, W)
    Shape t = c.shape;
    std::swap(t[0], t.back());
    const Tensor base = test::uniform(t, c.lo, c.hi, dt, seed);
    const int64_t last = static_cast<int64_t>(t.size()) - 1;
    return {native::transpose(base, 0, last), native::transpose(to_gpu(base), 0, last)};
  }
  const Tensor x = test::uniform(c.shape, c.lo, c.hi, dt, seed);
  return {x, to_gpu(x)};
}

std::string ctx(const BnCase& c, DType dt) { return dtype_name(dt) + std::string(" ") + shape_str(c.shape) + " " + c.layout; }

}  // namespace

TEST_CASE("batchnorm kernels: CUDA matches CPU") {
  uint64_t seed = 500;
  for (const BnCase& c : cases()) {
    for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
      const std::string where = ctx(c, dt);
      CAPTURE(where);
      const auto [xc, xg] = make_input(c, dt, seed++);
      const int64_t C = c.shape[1];
      const int64_t count = shape_numel(c.shape) / C;
      const DType st = stat_dtype(dt);
      const double mag = count > kCrossBlock ? 3.0 : std::max(std::abs(c.lo), std::abs(c.hi));  // make_input

      // statistics
      const auto [mc, vc] = native::batchnorm_stats(xc);
      const auto [mg, vg] = native::batchnorm_stats(xg);
      CHECK(mg.dtype() == st);
      CHECK(mg.device() == kGPU);
      RG_CHECK_CLOSE(to_cpu(mg), mc, (test::Tol{mag * (dt == DType::f64 ? 1e-12 : 2e-6), dt == DType::f64 ? 1e-12 : 1e-5}));
      RG_CHECK_CLOSE(to_cpu(vg), vc, (test::Tol{dt == DType::f64 ? 1e-12 : 1e-5, dt == DType::f64 ? 1e-10 : 1e-4}));

      // forward: with weight and bias, and without
      const Tensor invc = native::unary(UnaryOp::Rsqrt, native::unary(UnaryOp::Affine, vc, 1.0, 1e-5));
      const Tensor invg = to_gpu(invc), mgc = to_gpu(mc);
      const Tensor wc = test::uniform({C}, 0.5, 1.5, st, seed++), bc = test::uniform({C}, -0.5, 0.5, st, seed++);
      const Tensor wg = to_gpu(wc), bg = to_gpu(bc);
      RG_CHECK_CLOSE(to_cpu(native::batchnorm_fwd(xg, mgc, invg, wg, bg)), native::batchnorm_fwd(xc, mc, invc, wc, bc),
                     elem_tol(dt));
      RG_CHECK_CLOSE(to_cpu(native::batchnorm_fwd(xg, mgc, invg, Tensor(), Tensor())),
                     native::batchnorm_fwd(xc, mc, invc, Tensor(), Tensor()), elem_tol(dt));

      // backward sums and the input gradient
      const bool big = count > kCrossBlock;
      const Tensor gyc = big ? small_integers(c.shape, dt, {-2, -1, 1, 2}, seed++) : test::uniform(c.shape, -1.0, 1.0, dt, seed++);
      const Tensor gyg = to_gpu(gyc);
      if (big) {  // exact sums (the note above)
        const Tensor half = full({C}, 0.5, TensorOptions(st));
        const auto [e1c, e2c] = native::batchnorm_bwd_reduce(gyc, xc, half);
        const auto [e1g, e2g] = native::batchnorm_bwd_reduce(gyg, xg, to_gpu(half));
        RG_CHECK_CLOSE(to_cpu(e1g), e1c, (test::Tol{0, 0}));
        RG_CHECK_CLOSE(to_cpu(e2g), e2c, (test::Tol{0, 0}));
      }
      const auto [s1c, s2c] = native::batchnorm_bwd_reduce(gyc, xc, mc);
      const auto [s1g, s2g] = native::batchnorm_bwd_reduce(gyg, xg, mgc);
      // sum_dy is exact for the big cases whatever the mean; sum_dy_xmu with the batch mean is not.
      RG_CHECK_CLOSE(to_cpu(s1g), s1c, (big ? test::Tol{0, 0} : sum_tol(dt, count, 1.0)));
      RG_CHECK_CLOSE(to_cpu(s2g), s2c, sum_tol(dt, count, big ? 7.0 : 2.0));
      const double inv_n = 1.0 / static_cast<double>(count);
      const Tensor ac = native::unary(UnaryOp::Affine, s1c, inv_n, 0.0), kc = native::unary(UnaryOp::Affine, s2c, inv_n, 0.0);
      const Tensor gxc = native::batchnorm_bwd_elemt(gyc, xc, mc, invc, wc, ac, kc);
      const Tensor gxg = native::batchnorm_bwd_elemt(gyg, xg, mgc, invg, wg, to_gpu(ac), to_gpu(kc));
      CHECK(gxg.dtype() == dt);
      RG_CHECK_CLOSE(to_cpu(gxg), gxc, elem_tol(dt));
      RG_CHECK_CLOSE(to_cpu(native::batchnorm_bwd_elemt(gyg, xg, mgc, invg, Tensor(), to_gpu(ac), to_gpu(kc))),
                     native::batchnorm_bwd_elemt(gyc, xc, mc, invc, Tensor(), ac, kc), elem_tol(dt));
    }
  }
}

TEST_CASE("batchnorm statistics on CUDA against values worked out by hand") {
  // channel 0: {1, 2, 3, 4, 5, 6} -> mean 3.5, var 35/12; channel 1: {-1, -1, -1, 1, 1, 1} -> mean 0, var 1
  const Tensor x = from_vector<double>({1, 2, 3, -1, -1, -1, 4, 5, 6, 1, 1, 1}, {2, 2, 3}, DType::f32);
  const auto [m, v] = native::batchnorm_stats(to_gpu(x));
  RG_CHECK_CLOSE(to_cpu(m), from_vector<double>({3.5, 0.0}, {2}, DType::f32), (test::Tol{1e-6, 1e-6}));
  RG_CHECK_CLOSE(to_cpu(v), from_vector<double>({35.0 / 12.0, 1.0}, {2}, DType::f32), (test::Tol{1e-6, 1e-6}));
  CHECK_THROWS_AS(native::batchnorm_fwd(to_gpu(x), m, v, ones({2}), Tensor()), Error);  // weight on the CPU
}
