// conv2d on CUDA (label gpu): forward, input gradient and weight gradient against the CPU
// kernels in f64 on the same rounded inputs (the CPU kernels are checked against direct loops in
// tests/nn/test_conv.cpp), for cuDNN (benchmark and heuristics, TF32 off and on) and for the
// im2col + gemm path, in f32, f16, bf16 and f64, on odd shapes, misaligned views and batches big
// enough to chunk the im2col buffer.
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/cudnn_config.h"
#include "core/gemm_config.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

struct Case {
  int64_t N, C, H, W, O, kh, kw;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  bool bias = true;
};

std::string case_str(const Case& c) {
  std::ostringstream os;
  os << "x [" << c.N << ", " << c.C << ", " << c.H << ", " << c.W << "] w [" << c.O << ", " << c.C / c.groups << ", "
     << c.kh << ", " << c.kw << "] stride (" << c.sh << ", " << c.sw << ") pad (" << c.ph << ", " << c.pw << ") dil ("
     << c.dh << ", " << c.dw << ") groups " << c.groups << (c.bias ? " bias" : "");
  return os.str();
}

ConvParams params_of(const Case& c) {
  ConvParams p;
  p.stride[0] = c.sh, p.stride[1] = c.sw, p.padding[0] = c.ph, p.padding[1] = c.pw;
  p.dilation[0] = c.dh, p.dilation[1] = c.dw, p.groups = c.groups;
  return p;
}

std::vector<Case> cases() {
  return {
      {2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1},                         // 3x3 same padding, odd sizes
      {3, 4, 11, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2},               // stride 2, groups 2
      {2, 4, 9, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2, 4, false},        // depthwise, dilation 2
      {2, 3, 8, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3},                // depthwise, multiplier 2
      {2, 8, 5, 6, 5, 1, 1},                                     // 1x1
      {2, 8, 9, 7, 6, 1, 1, 2, 2, 0, 0, 1, 1, 1, false},         // 1x1 stride 2 (ResNet downsample)
      {1, 3, 13, 11, 5, 2, 5, 2, 1, 1, 2, 1, 2},                 // non-square kernel, stride, padding, dilation
      {4, 3, 33, 31, 8, 7, 7, 2, 2, 3, 3},                       // ResNet stem shape (small)
      {3, 2, 1, 1, 3, 1, 1},                                     // 1x1 images
      {1, 2, 6, 6, 2, 3, 3, 3, 3, 4, 4},                         // padding > kernel / 2: outputs all padding
      {5, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, false},     // ResNet body 3x3, 64 channels
      {2, 256, 7, 7, 128, 1, 1, 1, 1, 0, 0, 1, 1, 1, false},     // ResNet bottleneck 1x1
      {2, 32, 15, 17, 32, 3, 3, 2, 2, 1, 1, 1, 1, 32},           // depthwise stride 2, 32 channels
  };
}

std::vector<double> host(const Tensor& t) { return native::to(t, kCPU, DType::f64).to_vector<double>(); }

// |got - ref| <= rel |ref| + acc * scale, scale = the same convolution of |x| and |w| (+ |b|): the
// sum of the magnitudes of every term. acc covers the accumulation order and cuDNN's transforms
// (Winograd, FFT), rel the rounding of the result.
struct Tol {
  double rel, acc;
};
Tol tol_for(DType dt, bool tf32) {
  switch (dt) {
    case DType::f64: return {1e-14, 1e-12};
    case DType::f32: return {1e-6, tf32 ? 3e-3 : 5e-5};
    case DType::f16: return {std::ldexp(1.0, -10), 2e-3};
    default: return {std::ldexp(1.0, -7), 8e-3};  // bf16
  }
}

std::string compare(const Tensor& got, const Tensor& ref, const Tensor& scale, Tol tol) {
  if (got.sizes() != ref.sizes()) return "shape " + shape_str(got.sizes()) + " vs " + shape_str(ref.sizes());
  const auto g = host(got), r = host(ref), s = host(scale);
  std::ostringstream os;
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double bound = tol.rel * std::fabs(r[i]) + tol.acc * s[i] + 1e-300;
    if (!(std::fabs(g[i] - r[i]) <= bound)) {
      if (bad < 5) os << "  [" << i << "] got " << g[i] << ", expected " << r[i] << " (bound " << bound << ")\n";
      ++bad;
    }
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(g.size()) + " elements out of tolerance:\n" + os.str();
}

Tensor abs64(const Tensor& t) { return native::unary(UnaryOp::Abs, native::to(t, kCPU, DType::f64)); }

struct Inputs {
  Tensor x, w, b, gy;  // in the test dtype, on the GPU
};

// x, w, b, gy in dtype dt on the GPU; `offset` stores x and gy one element into a larger buffer
// (contiguous views whose base is not 16-byte aligned).
Inputs make_inputs(const Case& c, DType dt, uint64_t seed, bool offset) {
  const int64_t Ho = (c.H + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
  const int64_t Wo = (c.W + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
  auto make = [&](const Shape& s, uint64_t sd) {
    if (!offset) return test::uniform(s, -1, 1, dt, sd, kGPU);
    const Tensor flat = test::uniform({shape_numel(s) + 1}, -1, 1, dt, sd, kGPU);
    return native::view(native::narrow(flat, 0, 1, shape_numel(s)), s);
  };
  Inputs in;
  in.x = make({c.N, c.C, c.H, c.W}, seed);
  in.w = test::uniform({c.O, c.C / c.groups, c.kh, c.kw}, -1, 1, dt, seed + 1, kGPU);
  if (c.bias) in.b = test::uniform({c.O}, -1, 1, dt, seed + 2, kGPU);
  in.gy = make({c.N, c.O, Ho, Wo}, seed + 3);
  return in;
}

// How the direction `what` ran, as recorded by the conv code (detail::last_conv_backend(), reset
// before each call so that a stale entry cannot answer): `backend` when given ("cudnn", "im2col").
// A silent fall-back from cuDNN to im2col in any direction fails here.
void check_backend(const char* backend, const char* what) {
  if (backend == nullptr) return;
  CHECK_MESSAGE(std::string(detail::last_conv_backend()) == backend, what, " ran on '", detail::last_conv_backend(),
                "', expected ", backend);
  detail::set_last_conv_backend("");
}

// Every direction on the GPU against the CPU in f64 on the same values; with `backend`, each of the
// three directions must have run on it.
void check_case(const Case& c, DType dt, uint64_t seed, bool offset = false, const char* backend = nullptr) {
  CAPTURE(case_str(c));
  CAPTURE(std::string(dtype_name(dt)));
  CAPTURE(offset);
  const ConvParams p = params_of(c);
  const Inputs in = make_inputs(c, dt, seed, offset);
  const Tensor x64 = native::to(in.x, kCPU, DType::f64), w64 = native::to(in.w, kCPU, DType::f64);
  const Tensor gy64 = native::to(in.gy, kCPU, DType::f64);
  const Tensor b64 = c.bias ? native::to(in.b, kCPU, DType::f64) : Tensor();
  const Tol tol = tol_for(dt, allow_tf32());

  detail::set_last_conv_backend("");
  const Tensor y = native::conv2d(in.x, in.w, in.b, p);
  check_backend(backend, "forward");
  CHECK(y.is_cuda());
  CHECK(y.dtype() == dt);
  const Tensor y_ref = native::conv2d(x64, w64, b64, p);
  const Tensor y_scale = native::conv2d(abs64(x64), abs64(w64), c.bias ? abs64(b64) : Tensor(), p);
  const std::string m1 = compare(y, y_ref, y_scale, tol);
  CHECK_MESSAGE(m1.empty(), "forward: ", m1);

  const Tensor gx = native::conv2d_bwd_input(in.gy, in.w, in.x.sizes(), p);
  check_backend(backend, "grad input");
  const Tensor gx_ref = native::conv2d_bwd_input(gy64, w64, x64.sizes(), p);
  const Tensor gx_scale = native::conv2d_bwd_input(abs64(gy64), abs64(w64), x64.sizes(), p);
  const std::string m2 = compare(gx, gx_ref, gx_scale, tol);
  CHECK_MESSAGE(m2.empty(), "grad input: ", m2);

  const Tensor gw = native::conv2d_bwd_weight(in.gy, in.x, in.w.sizes(), p);
  check_backend(backend, "grad weight");
  const Tensor gw_ref = native::conv2d_bwd_weight(gy64, x64, w64.sizes(), p);
  const Tensor gw_scale = native::conv2d_bwd_weight(abs64(gy64), abs64(x64), w64.sizes(), p);
  const std::string m3 = compare(gw, gw_ref, gw_scale, tol);
  CHECK_MESSAGE(m3.empty(), "grad weight: ", m3);
}

class CudnnGuard {
 public:
  CudnnGuard(bool enabled, bool benchmark) : enabled_(cudnn_enabled()), benchmark_(cudnn_benchmark()) {
    set_cudnn_enabled(enabled);
    set_cudnn_benchmark(benchmark);
  }
  ~CudnnGuard() {
    set_cudnn_enabled(enabled_);
    set_cudnn_benchmark(benchmark_);
  }

 private:
  bool enabled_, benchmark_;
};

bool built_with_cudnn() { return cudnn_version() != "not built"; }

}  // namespace

TEST_CASE("conv2d_cuda (cuDNN, benchmark) matches the CPU in every float dtype") {
  AllowTF32Guard no_tf32(false);
  CudnnGuard g(true, true);
  uint64_t seed = 10;
  for (const Case& c : cases()) {
    for (DType dt : test::float_dtypes()) {
      // f32/f16/bf16 always have a cuDNN algorithm, in every direction (f64 may fall back to im2col)
      check_case(c, dt, seed, false, built_with_cudnn() && dt != DType::f64 ? "cudnn" : nullptr);
    }
    seed += 10;
  }
}

TEST_CASE("conv2d_cuda (cuDNN, heuristics) matches the CPU") {
  AllowTF32Guard no_tf32(false);
  CudnnGuard g(true, false);
  uint64_t seed = 200;
  const char* cudnn = built_with_cudnn() ? "cudnn" : nullptr;
  for (const Case& c : cases()) {
    check_case(c, DType::f32, seed, false, cudnn);
    check_case(c, DType::f16, seed, false, cudnn);
    seed += 10;
  }
}

TEST_CASE("conv2d_cuda with TF32 allowed stays within TF32 tolerance") {
  AllowTF32Guard tf32(true);
  CudnnGuard g(true, true);
  const char* cudnn = built_with_cudnn() ? "cudnn" : nullptr;
  check_case({4, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1}, DType::f32, 300, false, cudnn);
  check_case({2, 256, 7, 7, 128, 1, 1, 1, 1, 0, 0, 1, 1, 1, false}, DType::f32, 310, false, cudnn);
}

TEST_CASE("conv2d_cuda on misaligned (offset) inputs, both backends") {
  AllowTF32Guard no_tf32(false);
  for (bool use_cudnn : {true, false}) {
    CudnnGuard g(use_cudnn, true);
    uint64_t seed = 400;
    // im2col when cuDNN is off; with cuDNN on, a misaligned base may legitimately have no algorithm.
    const char* backend = use_cudnn ? nullptr : "im2col";
    for (const Case& c : cases()) {
      check_case(c, DType::f16, seed, true, backend);
      check_case(c, DType::f32, seed, true, backend);
      seed += 10;
    }
  }
}

TEST_CASE("conv2d_cuda through im2col + gemm (cuDNN switched off) matches the CPU") {
  AllowTF32Guard no_tf32(false);
  CudnnGuard g(false, true);
  uint64_t seed = 500;
  for (const Case& c : cases()) {
    for (DType dt : test::float_dtypes()) check_case(c, dt, seed, false, "im2col");
    seed += 10;
  }
  // 9 images of 64 x 128 x 128 with a 3x3 kernel: 9.4M column elements each, so the 2^26-element
  // im2col buffer holds 7 images and the batch runs in two chunks (the weight gradient accumulates).
  check_case({9, 64, 128, 128, 4, 3, 3, 1, 1, 1, 1}, DType::f32, 600, false, "im2col");
}

TEST_CASE("conv2d_cuda: the cached plan gives the same answer on the second call") {
  AllowTF32Guard no_tf32(false);
  CudnnGuard g(true, true);
  const Case c{3, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1};
  const Inputs in = make_inputs(c, DType::f32, 700, false);
  const Tensor y1 = native::conv2d(in.x, in.w, in.b, params_of(c));
  const Tensor y2 = native::conv2d(in.x, in.w, in.b, params_of(c));
  RG_CHECK_CLOSE(y2, y1, test::tol_for(DType::f32));  // the same plan (not necessarily bitwise: cuDNN may split sums)
  // a different batch size is a different plan and still right
  check_case({1, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1}, DType::f32, 710);
}

TEST_CASE("conv2d_cuda on non-contiguous (channels-last, transposed) inputs") {
  AllowTF32Guard no_tf32(false);
  for (bool use_cudnn : {true, false}) {
    CudnnGuard g(use_cudnn, true);
    const Case c{2, 6, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2};
    CAPTURE(use_cudnn);
    const ConvParams p = params_of(c);
    // x (N, C, H, W) viewed from an (N, H, W, C) buffer; gy (N, O, Ho, Wo) from (N, O, Wo, Ho)
    const Tensor xb = test::uniform({c.N, c.H, c.W, c.C}, -1, 1, DType::f32, 800, kGPU);
    const Tensor x = native::permute(xb, {0, 3, 1, 2});
    const Tensor w = test::uniform({c.O, c.C / c.groups, c.kh, c.kw}, -1, 1, DType::f32, 801, kGPU);
    const Tensor gyb = test::uniform({c.N, c.O, c.W, c.H}, -1, 1, DType::f32, 802, kGPU);
    const Tensor gy = native::transpose(gyb, 2, 3);
    REQUIRE_FALSE(x.is_contiguous());
    REQUIRE_FALSE(gy.is_contiguous());
    const Tensor x64 = native::to(x, kCPU, DType::f64), w64 = native::to(w, kCPU, DType::f64);
    const Tensor gy64 = native::to(gy, kCPU, DType::f64);
    const Tol tol = tol_for(DType::f32, false);
    const std::string m1 = compare(native::conv2d(x, w, Tensor(), p), native::conv2d(x64, w64, Tensor(), p),
                                   native::conv2d(abs64(x64), abs64(w64), Tensor(), p), tol);
    CHECK_MESSAGE(m1.empty(), "forward: ", m1);
    const std::string m2 = compare(native::conv2d_bwd_input(gy, w, x.sizes(), p), native::conv2d_bwd_input(gy64, w64, x64.sizes(), p),
                                   native::conv2d_bwd_input(abs64(gy64), abs64(w64), x64.sizes(), p), tol);
    CHECK_MESSAGE(m2.empty(), "grad input: ", m2);
    const std::string m3 = compare(native::conv2d_bwd_weight(gy, x, w.sizes(), p), native::conv2d_bwd_weight(gy64, x64, w64.sizes(), p),
                                   native::conv2d_bwd_weight(abs64(gy64), abs64(x64), w64.sizes(), p), tol);
    CHECK_MESSAGE(m3.empty(), "grad weight: ", m3);
  }
}

TEST_CASE("conv2d_cuda kernels on an empty batch give zero gradients (as the CPU kernels)") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (bool use_cudnn : {true, false}) {
    CudnnGuard g(use_cudnn, true);
    CAPTURE(use_cudnn);
    ConvParams p;
    p.padding[0] = p.padding[1] = 1;
    const auto opts = TensorOptions(DType::f32).device(kGPU);
    const Tensor x = empty({0, 3, 5, 5}, opts), gy = empty({0, 4, 5, 5}, opts);
    const Tensor w = test::uniform({4, 3, 3, 3}, -1, 1, DType::f32, 810, kGPU);
    Tensor gw = full({4, 3, 3, 3}, nan, opts);  // the kernel is called directly: native would zero it first
    RG_CALL_KERNEL(conv2d_bwd_weight, kGPU, gw, gy, x, p);
    for (double v : gw.to_vector<double>()) CHECK(v == 0.0);
  }
}

TEST_CASE("cudnn_version names the library") {
  const std::string v = cudnn_version();
  CHECK((v == "not built" || v.rfind("cuDNN ", 0) == 0));
}
