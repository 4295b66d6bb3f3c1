// Pooling and nearest upsampling on CUDA (label gpu): every forward and backward against the CPU
// kernels (checked by hand and by loops in tests/nn/test_pool.cpp) on the same inputs, in f32,
// f64, f16 and bf16, over odd shapes, ceil_mode, padding, dilation, count_include_pad, NaN and
// ties, adaptive sizes up and down, and upsampling by integer and fractional factors. Both sides
// sum in the same order in the same accumulation type, so the tolerances are a few ulps.
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

struct PCase {
  int64_t N, C, H, W;
  int64_t kh, kw, sh, sw, ph = 0, pw = 0, dh = 1, dw = 1;
  bool ceil = false, include_pad = true;
};

std::string case_str(const PCase& c) {
  std::ostringstream os;
  os << "x [" << c.N << ", " << c.C << ", " << c.H << ", " << c.W << "] k (" << c.kh << ", " << c.kw << ") s (" << c.sh
     << ", " << c.sw << ") p (" << c.ph << ", " << c.pw << ") d (" << c.dh << ", " << c.dw << ")"
     << (c.ceil ? " ceil" : "") << (c.include_pad ? "" : " exclude-pad");
  return os.str();
}

PoolParams params_of(const PCase& c, bool dilation) {
  PoolParams p;
  p.kernel[0] = c.kh, p.kernel[1] = c.kw, p.stride[0] = c.sh, p.stride[1] = c.sw;
  p.padding[0] = c.ph, p.padding[1] = c.pw;
  p.dilation[0] = dilation ? c.dh : 1, p.dilation[1] = dilation ? c.dw : 1;
  p.ceil_mode = c.ceil, p.count_include_pad = c.include_pad;
  return p;
}

std::vector<PCase> cases() {
  return {
      {2, 3, 7, 9, 2, 2, 2, 2},
      {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, 1, 1, true},
      {4, 64, 112, 112, 3, 3, 2, 2, 1, 1},                  // ResNet's stem max pool
      {1, 2, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, true, false},
      {2, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, true},
      {1, 3, 11, 8, 3, 2, 3, 1, 1, 1, 2, 1},                 // dilation (max pool only)
      {2, 5, 13, 13, 5, 5, 1, 1, 2, 2},                      // overlapping k5 s1 p2
      {3, 2, 6, 7, 3, 3, 3, 3, 1, 1, 1, 1, true, false},
      {1, 1, 1, 1, 1, 1, 1, 1},
      {1, 7, 1023, 3, 3, 1, 2, 1, 1, 0},                     // long thin planes
      {2, 3, 13, 13, 2, 2, 1, 1},                            // YOLO-tiny's k2 s1
  };
}

// Tolerance relative to the magnitude of the values (inputs in [-2, 2]).
test::Tol tol(DType dt) {
  switch (dt) {
    case DType::f64: return {1e-12, 1e-12};
    case DType::f32: return {1e-6, 1e-6};
    case DType::f16: return {2e-3, 1e-3};
    default: return {1.6e-2, 8e-3};
  }
}

Tensor on_cpu(const Tensor& t) { return native::to(t, kCPU, t.dtype()); }

#define CHECK_GPU_CPU(gpu, cpu, dt, what)                                              \
  do {                                                                                 \
    const std::string m_ = test::compare(on_cpu(gpu), (cpu), tol(dt));                 \
    CHECK_MESSAGE(m_.empty(), what, ": ", m_);                                         \
  } while (0)

}  // namespace

TEST_CASE("max_pool2d_cuda and its backward match the CPU (values, indices, gradients)") {
  uint64_t seed = 1;
  for (const PCase& c : cases()) {
    CAPTURE(case_str(c));
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const PoolParams p = params_of(c, true);
      const Tensor xg = test::uniform({c.N, c.C, c.H, c.W}, -2, 2, dt, ++seed, kGPU);
      const Tensor xc = on_cpu(xg);
      auto [yg, ig] = native::max_pool2d(xg, p);
      auto [yc, ic] = native::max_pool2d(xc, p);
      CHECK_GPU_CPU(yg, yc, dt, "max values");
      CHECK(on_cpu(ig).to_vector<int64_t>() == ic.to_vector<int64_t>());
      const Tensor gyg = test::uniform(yg.sizes(), -1, 1, dt, seed + 500, kGPU);
      CHECK_GPU_CPU(native::max_pool2d_bwd(gyg, ig, xg.sizes(), p), native::max_pool2d_bwd(on_cpu(gyg), ic, xc.sizes(), p),
                    dt, "max grad");
    }
  }
}

TEST_CASE("max_pool2d_cuda: ties, NaN and padding as the CPU") {
  // integer-valued inputs: many ties; a NaN in some windows
  for (DType dt : test::float_dtypes()) {
    CAPTURE(std::string(dtype_name(dt)));
    Tensor x = native::unary(UnaryOp::Floor, test::uniform({2, 3, 9, 8}, 0, 3, DType::f64, 77));
    std::vector<double> v = x.to_vector<double>();
    v[5] = v[100] = std::numeric_limits<double>::quiet_NaN();
    x = native::to(from_vector<double>(v, x.sizes()), kCPU, dt);
    PoolParams p;
    p.kernel[0] = p.kernel[1] = 3, p.stride[0] = p.stride[1] = 2, p.padding[0] = p.padding[1] = 1, p.ceil_mode = true;
    auto [yg, ig] = native::max_pool2d(native::to(x, kGPU, dt), p);
    auto [yc, ic] = native::max_pool2d(x, p);
    CHECK_GPU_CPU(yg, yc, dt, "values with ties and NaN");
    CHECK(on_cpu(ig).to_vector<int64_t>() == ic.to_vector<int64_t>());
  }
}

TEST_CASE("avg_pool2d_cuda and its backward match the CPU") {
  uint64_t seed = 100;
  for (const PCase& c : cases()) {
    CAPTURE(case_str(c));
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const PoolParams p = params_of(c, false);
      const Tensor xg = test::uniform({c.N, c.C, c.H, c.W}, -2, 2, dt, ++seed, kGPU);
      const Tensor yg = native::avg_pool2d(xg, p);
      CHECK_GPU_CPU(yg, native::avg_pool2d(on_cpu(xg), p), dt, "avg values");
      const Tensor gyg = test::uniform(yg.sizes(), -1, 1, dt, seed + 500, kGPU);
      CHECK_GPU_CPU(native::avg_pool2d_bwd(gyg, xg.sizes(), p), native::avg_pool2d_bwd(on_cpu(gyg), xg.sizes(), p), dt,
                    "avg grad");
    }
  }
}

TEST_CASE("adaptive_avg_pool2d_cuda and its backward match the CPU") {
  const std::vector<std::pair<Shape, std::pair<int64_t, int64_t>>> cs = {
      {{2, 3, 7, 5}, {1, 1}},   {{2, 3, 7, 5}, {3, 2}},   {{1, 4, 5, 5}, {5, 5}},  {{1, 2, 3, 4}, {7, 9}},
      {{8, 64, 7, 7}, {1, 1}},  {{2, 3, 224, 224}, {7, 7}}, {{1, 1, 1023, 1}, {10, 1}},
  };
  uint64_t seed = 200;
  for (const auto& [xs, os] : cs) {
    CAPTURE(shape_str(xs));
    CAPTURE(os.first);
    CAPTURE(os.second);
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const Tensor xg = test::uniform(xs, -2, 2, dt, ++seed, kGPU);
      const Tensor yg = native::adaptive_avg_pool2d(xg, os.first, os.second);
      CHECK_GPU_CPU(yg, native::adaptive_avg_pool2d(on_cpu(xg), os.first, os.second), dt, "adaptive values");
      const Tensor gyg = test::uniform(yg.sizes(), -1, 1, dt, seed + 500, kGPU);
      CHECK_GPU_CPU(native::adaptive_avg_pool2d_bwd(gyg, xs), native::adaptive_avg_pool2d_bwd(on_cpu(gyg), xs), dt,
                    "adaptive grad");
    }
  }
}

TEST_CASE("upsample_nearest2d_cuda and its backward match the CPU") {
  const std::vector<std::pair<Shape, std::pair<int64_t, int64_t>>> cs = {
      {{2, 3, 5, 7}, {10, 14}},  // 2x (YOLO)
      {{1, 2, 3, 3}, {5, 7}},    // fractional up
      {{1, 2, 9, 8}, {4, 3}},    // down
      {{2, 3, 13, 13}, {26, 26}}, {{1, 1, 1, 1}, {3, 5}}, {{1, 4, 7, 5}, {7, 5}},  // identity
      {{1, 2, 17, 11}, {40, 23}},
  };
  uint64_t seed = 300;
  for (const auto& [xs, os] : cs) {
    CAPTURE(shape_str(xs));
    CAPTURE(os.first);
    CAPTURE(os.second);
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const Tensor xg = test::uniform(xs, -2, 2, dt, ++seed, kGPU);
      const Tensor yg = native::upsample_nearest2d(xg, os.first, os.second);
      CHECK_GPU_CPU(yg, native::upsample_nearest2d(on_cpu(xg), os.first, os.second), dt, "upsample values");
      const Tensor gyg = test::uniform(yg.sizes(), -1, 1, dt, seed + 500, kGPU);
      CHECK_GPU_CPU(native::upsample_nearest2d_bwd(gyg, xs), native::upsample_nearest2d_bwd(on_cpu(gyg), xs), dt,
                    "upsample grad");
    }
  }
}

TEST_CASE("pooling on CUDA takes non-contiguous inputs") {
  const Tensor base = test::uniform({2, 3, 9, 11}, -2, 2, DType::f32, 900, kGPU);
  const Tensor xt = native::transpose(base, 2, 3);  // (2, 3, 11, 9), not contiguous
  PoolParams p;
  p.kernel[0] = p.kernel[1] = 3, p.stride[0] = p.stride[1] = 2, p.padding[0] = p.padding[1] = 1;
  auto [yg, ig] = native::max_pool2d(xt, p);
  auto [yc, ic] = native::max_pool2d(on_cpu(xt), p);
  CHECK_GPU_CPU(yg, yc, DType::f32, "transposed max");
  CHECK(on_cpu(ig).to_vector<int64_t>() == ic.to_vector<int64_t>());
  CHECK_GPU_CPU(native::avg_pool2d(xt, p), native::avg_pool2d(on_cpu(xt), p), DType::f32, "transposed avg");
}
