// Reductions and softmax on CUDA against the CPU kernels: every ReduceOp and dtype, row, column
// and split layouts, non-mergeable dim sets, strided and broadcast inputs, NaN propagation and
// first-index argmax; softmax / log_softmax forward and backward along inner and outer dims.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

struct ReduceShape {
  Shape shape;
  std::vector<Shape> dims;
};

// Row mode (reduced dims innermost), column mode (kept dim innermost), long rows split across
// blocks, few outputs with long columns, and reduced dims that do not merge.
std::vector<ReduceShape> reduce_shapes() {
  return {
      {{1}, {{0}, {}}},
      {{7}, {{0}}},
      {{1023}, {{0}}},
      {{4097}, {{0}}},
      {{3, 5, 7}, {{}, {0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}}},
      {{2, 1, 33}, {{1}, {0, 2}, {2}}},
      {{64, 300}, {{0}, {1}}},
      {{300, 64}, {{0}, {1}}},
      {{3, 20000}, {{1}, {0}}},
      {{5, 3000}, {{1}, {0}}},  // row mode, 4 warps per row, 2 rows per block, the last row idle
      {{100003}, {{0}}},
      {{20000, 3}, {{0}}},
      {{4, 6, 5, 7}, {{0, 2}, {1, 3}, {0, 1, 3}}},
  };
}

int64_t reduced_numel(const Shape& s, const Shape& dims) {
  if (dims.empty()) return shape_numel(s);
  int64_t r = 1;
  for (int64_t d : dims) r *= s[static_cast<size_t>(d)];
  return r;
}

// Random inputs (the small cases): GPU float sums accumulate in f32 in another order than the CPU's
// double, an error far below tol_for's 1e-5 for R <= 4097 (sums of magnitude <= 40, partial sums
// of threads and warps smaller still), so twice tol_for, unscaled: a lost element is seen unless
// |x| < 2e-5 (1 + |sum|). Products alone grow their relative error with sqrt(R) (each factor
// rounds). Extremes and indices are exact; integers are exact.
test::Tol reduce_tol(ReduceOp op, DType out_t, int64_t R) {
  const test::Tol b = test::tol_for(out_t);
  if (!is_floating(out_t)) return b;
  if (op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::AbsMax) return b;
  if (op == ReduceOp::Prod && out_t == DType::f32) {
    const double k = std::max(1.0, std::sqrt(static_cast<double>(R)) / 4.0);
    return {b.atol * k, b.rtol * k};
  }
  return {b.atol * 2, b.rtol * 2};
}

// The big cases (more than 5000 elements, many blocks and segments per output) reduce odd integers
// in {-3, -1, 1, 3} for Sum, Mean and Var, so that a lost or doubled element cannot hide in a
// tolerance:
// - Sum: every partial sum, in any order, is an integer of magnitude <= 3R <= 300009 < 2^24, so
//   exact in f32 and f64 on both devices, and the results are compared for equality: a lost or
//   doubled element moves the sum by an odd integer. (f16/bf16 outputs are that exact sum rounded
//   once on each device, equal too; they can show a single element only while the sum is below
//   2^11 or 2^8, their precision.)
// - Mean: the exact sum divided by R, rounded in f32 (GPU) or through f64 (CPU): at most one ulp
//   apart, rtol 2^-23 for f32. A lost or doubled element moves the mean by >= 1/R, relative
//   >= 1/(3R) >= 3.3e-6 since |mean| <= 3.
// - Var: Welford in f32 on the GPU, two passes in double on the CPU. A float32 emulation of the
//   kernel's pushes and merges over 32 to 1024 threads per output stays within 1.3e-7 relative for
//   R = 1e5; the tolerance is 2e-6. One element more or less moves the variance (about 5) by
//   |(x - mean)^2 - var| / R with (x - mean)^2 near 1 or 9: relative >= 0.8 / R >= 8e-6.
// f64 outputs are exact for Sum, within an ulp for Mean, 1e-12 for Var; f16/bf16 Mean and Var are
// limited by their own rounding (twice tol_for).
bool exact_inputs(ReduceOp op, DType dt, bool big) {
  return big && is_floating(dt) && (op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Var);
}

Tensor odd_integers(const Shape& shape, DType dt, uint64_t seed) {
  const Tensor k = native::to(test::uniform(shape, 0.0, 4.0, DType::i64, seed), kCPU, DType::f64);  // 0..3
  return native::to(native::unary(UnaryOp::Affine, k, 2.0, -3.0), kCPU, dt);
}

test::Tol exact_tol(ReduceOp op, DType out_t) {
  if (op == ReduceOp::Sum) return {0.0, 0.0};
  const bool half = out_t == DType::f16 || out_t == DType::bf16;
  if (half) return loose(out_t, 2);
  if (op == ReduceOp::Mean) return {0.0, std::ldexp(1.0, out_t == DType::f64 ? -52 : -23)};
  return {0.0, out_t == DType::f64 ? 1e-12 : 2e-6};
}

std::string dims_str(const Shape& d) { return d.empty() ? std::string("all") : shape_str(d); }

bool is_arg(ReduceOp op) { return op == ReduceOp::Argmax || op == ReduceOp::Argmin; }

}  // namespace

TEST_CASE("reduce_cuda matches the CPU for every op, dtype, dim set and view") {
  const std::vector<ReduceOp> ops = {ReduceOp::Sum,    ReduceOp::Mean, ReduceOp::Max,
                                     ReduceOp::Min,    ReduceOp::Argmax, ReduceOp::Argmin,
                                     ReduceOp::Var,    ReduceOp::Prod, ReduceOp::AbsMax};
  for (ReduceOp op : ops) {
    for (DType dt : kAllDTypes) {
      if (!is_floating(dt) && (op == ReduceOp::Mean || op == ReduceOp::Var)) continue;
      for (const ReduceShape& rs : reduce_shapes()) {
        for (const Shape& dims : rs.dims) {
          if (is_arg(op) && dims.size() > 1) continue;  // one dim, or all (flattened)
          const bool big = shape_numel(rs.shape) > 5000;
          for (const View& v : views_of(rs.shape, true)) {
            if (big && v.name != "contiguous" && v.name != "transposed") continue;  // keep the sweep short
            for (int64_t correction : op == ReduceOp::Var ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{1}) {
              INFO(reduce_op_name(op), " ", dtype_name(dt), " ", shape_str(rs.shape), " dims ", dims_str(dims), " ",
                   v.name, " correction ", correction);
              // small integers make ties (first-index argmax); products stay in range
              const bool prod = op == ReduceOp::Prod, fl = is_floating(dt);
              const double lo = prod ? (fl ? 0.95 : -3.0) : (fl ? -1.0 : -20.0);
              const double hi = prod ? (fl ? 1.05 : 3.0) : (fl ? 1.0 : 20.0);
              const bool exact = exact_inputs(op, dt, big);
              const Tensor base = exact ? odd_integers(v.base, dt, 101) : values(v.base, dt, lo, hi, 101);
              for (bool keepdim : {false, true}) {
                Tensor co, go;
                CHECK_NOTHROW(co = native::reduce(op, v.make(base), dims, keepdim, correction));
                CHECK_NOTHROW(go = native::reduce(op, v.make(to_gpu(base)), dims, keepdim, correction));
                if (!co.defined() || !go.defined()) continue;
                CHECK(go.dtype() == co.dtype());
                RG_CHECK_CLOSE(go, co, exact ? exact_tol(op, co.dtype())
                                             : reduce_tol(op, co.dtype(), reduced_numel(rs.shape, dims)));
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("reduce_cuda: NaN propagates and argmax takes the first index, checked by hand") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (DType dt : test::float_dtypes()) {
    INFO(dtype_name(dt));
    const auto dev = TensorOptions(dt).device(kGPU);
    Tensor x = from_vector<double>({1, 5, -2, 5, 0, -2}, {2, 3}, dev);
    CHECK(native::reduce(ReduceOp::Argmax, x, {1}, false).to_vector<double>() == std::vector<double>{1, 0});
    CHECK(native::reduce(ReduceOp::Argmin, x, {1}, false).to_vector<double>() == std::vector<double>{2, 2});
    CHECK(native::reduce(ReduceOp::Argmax, x, {}, false).to_vector<double>() == std::vector<double>{1});
    CHECK(native::reduce(ReduceOp::Sum, x, {0}, false).to_vector<double>() == std::vector<double>{6, 5, -4});
    CHECK(native::reduce(ReduceOp::AbsMax, x, {}, false).to_vector<double>() == std::vector<double>{5});
    const double var0 = native::reduce(ReduceOp::Var, x, {1}, false, 1).to_vector<double>()[0];
    CHECK(var0 == doctest::Approx(37.0 / 3.0).epsilon(1e-2));  // mean 4/3, squares 222/9, over 2
    Tensor y = from_vector<double>({1, nan, 3, nan, -inf, 2}, {6}, dev);
    CHECK(std::isnan(native::reduce(ReduceOp::Max, y, {}, false).item()));
    CHECK(std::isnan(native::reduce(ReduceOp::Min, y, {}, false).item()));
    CHECK(std::isnan(native::reduce(ReduceOp::Sum, y, {}, false).item()));
    CHECK(native::reduce(ReduceOp::Argmax, y, {0}, false).item() == 1.0);  // the first NaN
    CHECK(native::reduce(ReduceOp::Argmin, y, {0}, false).item() == 1.0);
    Tensor z = from_vector<double>({-inf, -inf, -inf}, {3}, dev);
    CHECK(native::reduce(ReduceOp::Argmax, z, {0}, false).item() == 0.0);
    CHECK(native::reduce(ReduceOp::Max, z, {0}, false).item() == -inf);
  }
  // long rows with a NaN in the middle: the NaN survives the split-and-merge path
  std::vector<double> v(200003, 0.5);
  v[123457] = nan;
  Tensor big = from_vector<double>(v, {200003}, TensorOptions(DType::f32).device(kGPU));
  CHECK(native::reduce(ReduceOp::Argmax, big, {0}, false).item() == 123457.0);
  CHECK(std::isnan(native::reduce(ReduceOp::Max, big, {0}, false).item()));
  v[123457] = 0.5;
  v[200002] = 7.0;
  v[5] = 7.0;
  big = from_vector<double>(v, {200003}, TensorOptions(DType::f32).device(kGPU));
  CHECK(native::reduce(ReduceOp::Argmax, big, {0}, false).item() == 5.0);
  // multiples of 1/2 below 2^23: every partial sum is exact in f32, so the sum is, to the last bit
  CHECK(native::reduce(ReduceOp::Sum, big, {0}, false).item() == 0.5 * 200001 + 14.0);
}

TEST_CASE("reduce_cuda: integer sums are int64 and wrap like the CPU") {
  Tensor b = from_vector<uint8_t>(std::vector<uint8_t>(5000, 1), {5000}, TensorOptions(DType::b8).device(kGPU));
  Tensor s = native::reduce(ReduceOp::Sum, b, {}, false);
  CHECK(s.dtype() == DType::i64);
  CHECK(s.item() == 5000.0);
  Tensor u = from_vector<uint8_t>(std::vector<uint8_t>(1000, 200), {1000}, TensorOptions(DType::u8).device(kGPU));
  CHECK(native::reduce(ReduceOp::Sum, u, {}, false).item() == 200000.0);
  CHECK(native::reduce(ReduceOp::Max, u, {}, false).dtype() == DType::u8);
}

TEST_CASE("softmax_cuda and its backward match the CPU") {
  struct Case {
    Shape shape;
    int64_t dim;
  };
  const std::vector<Case> cases = {{{7}, 0},        {{1023}, 0},      {{4097}, 0},     {{3, 5, 7}, 0},
                                   {{3, 5, 7}, 1},  {{3, 5, 7}, 2},   {{64, 1000}, 1}, {{8, 5000}, 1},
                                   {{4, 2000}, 1},  {{2000, 4}, 0},   {{5, 40}, 1},    {{5, 20}, 1},
                                   {{2, 1, 33}, 2}, {{2, 1, 33}, 1},  {{2, 3, 64}, -1}, {{300, 64}, 0},
                                   {{5, 3000}, 1}};  // 2 rows of 4 warps per block, the last row idle
  for (DType dt : test::float_dtypes()) {
    for (const Case& c : cases) {
      for (bool log : {false, true}) {
        for (double scale : {5.0, 60.0}) {
          for (const View& v : views_of(c.shape, true)) {
            if (v.name == "broadcast" || v.name == "misaligned") continue;
            const std::string what = log ? "log_softmax " : "softmax ";
            INFO(what, dtype_name(dt), " ", shape_str(c.shape), " dim ", c.dim, " ", v.name,
                 " scale ", scale);
            const Tensor xb = test::uniform(v.base, -scale, scale, dt, 111);
            const Tensor co = native::softmax(v.make(xb), c.dim, log);
            const Tensor go = native::softmax(v.make(to_gpu(xb)), c.dim, log);
            const test::Tol t = test::tol_for(dt);
            RG_CHECK_CLOSE(go, co, (test::Tol{t.atol * 2, t.rtol * 2}));
            const Tensor gy = test::uniform(c.shape, -1.0, 1.0, dt, 112);
            const Tensor cg = native::softmax_bwd(gy, co, c.dim, log);
            const Tensor gg = native::softmax_bwd(to_gpu(gy), to_gpu(co), c.dim, log);
            RG_CHECK_CLOSE(gg, cg, (test::Tol{t.atol * 4, t.rtol * 4}));
          }
        }
      }
    }
  }
}

TEST_CASE("softmax_cuda: rows sum to one, a NaN poisons only its row (checked by hand)") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t D : {5, 100, 3000, 9000}) {
    INFO("D = ", D);
    Tensor x = test::uniform({3, D}, -10.0, 10.0, DType::f32, 113, kGPU);
    const auto y = native::softmax(x, 1).to_vector<double>();
    for (int64_t r = 0; r < 3; ++r) {
      double s = 0;
      for (int64_t j = 0; j < D; ++j) s += y[static_cast<size_t>(r * D + j)];
      CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
    }
    std::vector<double> h = x.to_vector<double>();
    h[static_cast<size_t>(D + 1)] = nan;  // row 1
    const auto z = native::softmax(from_vector<double>(h, {3, D}, TensorOptions(DType::f32).device(kGPU)), 1, true)
                       .to_vector<double>();
    CHECK(!std::isnan(z[0]));
    CHECK(std::isnan(z[static_cast<size_t>(D)]));
    CHECK(!std::isnan(z[static_cast<size_t>(2 * D)]));
  }
}
