// conv2d (label unit): forward, input and weight gradients against a direct seven-loop convolution
// written here (independent of im2col) in every float dtype over stride, padding, dilation, groups,
// depthwise, 1x1 and non-square kernels, big images (chunked im2col), f32 blocks of several images
// and GEMM block edges (Note [CPU conv over sgemm]); gradcheck of the
// differentiable conv2d in all its options; argument errors.
#include <cmath>
#include <string>
#include <vector>

#include "autograd/ag_util.h"
#include "autograd/autocast.h"
#include "core/cpu/conv_path.h"
#include "nn/functional.h"

using namespace rg;
using namespace rg::agtest;
namespace F = rg::nn::functional;

namespace {

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  bool bias = true;
};

std::string case_str(const ConvCase& c) {
  return "x [" + std::to_string(c.N) + ", " + std::to_string(c.C) + ", " + std::to_string(c.H) + ", " +
         std::to_string(c.W) + "] w [" + std::to_string(c.O) + ", " + std::to_string(c.C / c.groups) + ", " +
         std::to_string(c.kh) + ", " + std::to_string(c.kw) + "] stride (" + std::to_string(c.sh) + ", " +
         std::to_string(c.sw) + ") pad (" + std::to_string(c.ph) + ", " + std::to_string(c.pw) + ") dil (" +
         std::to_string(c.dh) + ", " + std::to_string(c.dw) + ") groups " + std::to_string(c.groups) +
         (c.bias ? " bias" : "");
}

ConvParams params_of(const ConvCase& c) {
  ConvParams p;
  p.stride[0] = c.sh, p.stride[1] = c.sw, p.padding[0] = c.ph, p.padding[1] = c.pw;
  p.dilation[0] = c.dh, p.dilation[1] = c.dw, p.groups = c.groups;
  return p;
}
F::Conv2dOptions options_of(const ConvCase& c) {
  F::Conv2dOptions o;
  o.stride = {c.sh, c.sw}, o.padding = {c.ph, c.pw}, o.dilation = {c.dh, c.dw}, o.groups = c.groups;
  return o;
}
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

// The direct convolution and its two adjoints in f64, with the error scale sum |x w| of every
// output (and the matching scales of the gradients).
struct Naive {
  const ConvCase& c;
  int64_t Ho, Wo, Cg, Og;
  explicit Naive(const ConvCase& cc)
      : c(cc), Ho(out_size(cc.H, cc.kh, cc.sh, cc.ph, cc.dh)), Wo(out_size(cc.W, cc.kw, cc.sw, cc.pw, cc.dw)),
        Cg(cc.C / cc.groups), Og(cc.O / cc.groups) {}
  // f(n, o, oh, ow, ci (absolute input channel), ih, iw, weight index) for every in-bounds tap.
  template <typename Fn>
  void taps(Fn&& f) const {
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t o = 0; o < c.O; ++o)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow)
            for (int64_t cg = 0; cg < Cg; ++cg)
              for (int64_t i = 0; i < c.kh; ++i)
                for (int64_t j = 0; j < c.kw; ++j) {
                  const int64_t ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
                  if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                  const int64_t ci = (o / Og) * Cg + cg;
                  f(n, o, oh, ow, ci, ih, iw, ((o * Cg + cg) * c.kh + i) * c.kw + j);
                }
  }
  int64_t yi(int64_t n, int64_t o, int64_t oh, int64_t ow) const { return ((n * c.O + o) * Ho + oh) * Wo + ow; }
  int64_t xi(int64_t n, int64_t ci, int64_t ih, int64_t iw) const { return ((n * c.C + ci) * c.H + ih) * c.W + iw; }

  void forward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
               std::vector<double>* y, std::vector<double>* scale) const {
    y->assign(static_cast<size_t>(c.N * c.O * Ho * Wo), 0.0);
    scale->assign(y->size(), 0.0);
    taps([&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t ih, int64_t iw, int64_t wi) {
      const double t = x[xi(n, ci, ih, iw)] * w[wi];
      (*y)[yi(n, o, oh, ow)] += t;
      (*scale)[yi(n, o, oh, ow)] += std::fabs(t);
    });
    if (!b.empty()) {
      for (size_t k = 0; k < y->size(); ++k) {
        const double bv = b[(k / (Ho * Wo)) % c.O];
        (*y)[k] += bv;
        (*scale)[k] += std::fabs(bv);
      }
    }
  }
  void grad_input(const std::vector<double>& gy, const std::vector<double>& w, std::vector<double>* gx,
                  std::vector<double>* scale) const {
    gx->assign(static_cast<size_t>(c.N * c.C * c.H * c.W), 0.0);
    scale->assign(gx->size(), 0.0);
    taps([&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t ih, int64_t iw, int64_t wi) {
      const double t = gy[yi(n, o, oh, ow)] * w[wi];
      (*gx)[xi(n, ci, ih, iw)] += t;
      (*scale)[xi(n, ci, ih, iw)] += std::fabs(t);
    });
  }
  void grad_weight(const std::vector<double>& gy, const std::vector<double>& x, std::vector<double>* gw,
                   std::vector<double>* scale) const {
    gw->assign(static_cast<size_t>(c.O * Cg * c.kh * c.kw), 0.0);
    scale->assign(gw->size(), 0.0);
    taps([&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t ih, int64_t iw, int64_t wi) {
      const double t = gy[yi(n, o, oh, ow)] * x[xi(n, ci, ih, iw)];
      (*gw)[wi] += t;
      (*scale)[wi] += std::fabs(t);
    });
  }
};

// |got - want| <= rel * |want| + sfac * scale, element by element; the first failures reported.
void check_against(const Tensor& got, const std::vector<double>& want, const std::vector<double>& scale, double rel,
                   double sfac, const std::string& what) {
  const std::vector<double> g = got.to_vector<double>();
  REQUIRE_MESSAGE(g.size() == want.size(), what, ": size ", g.size(), " vs ", want.size());
  int bad = 0;
  std::string msg;
  for (size_t i = 0; i < g.size(); ++i) {
    const double tol = rel * std::fabs(want[i]) + sfac * scale[i] + 1e-300;
    if (!(std::fabs(g[i] - want[i]) <= tol)) {
      if (bad < 4) msg += " [" + std::to_string(i) + "] got " + std::to_string(g[i]) + " want " + std::to_string(want[i]);
      ++bad;
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", g.size(), " elements off:", msg);
}

// Relative output rounding and accumulated error per unit of scale for each dtype.
void tolerances(DType dt, double* rel, double* sfac) {
  switch (dt) {
    case DType::f64: *rel = 1e-12, *sfac = 1e-13; break;
    case DType::f32: *rel = 1e-6, *sfac = 2e-6; break;
    case DType::f16: *rel = 1e-3, *sfac = 1e-5; break;   // output rounded to f16, f32 sums
    default: *rel = 8e-3, *sfac = 1e-5; break;           // bf16
  }
}

std::vector<ConvCase> kernel_cases() {
  std::vector<ConvCase> cs;
  cs.push_back({2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1});                             // 3x3 same padding
  cs.push_back({3, 4, 11, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2});                   // stride 2, groups 2
  cs.push_back({2, 4, 9, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2, 4, false});            // depthwise, dilation 2
  cs.push_back({2, 3, 8, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3});                    // depthwise, multiplier 2
  cs.push_back({2, 8, 5, 6, 5, 1, 1});                                         // 1x1 (direct GEMM path)
  cs.push_back({2, 8, 9, 7, 6, 1, 1, 2, 2, 0, 0, 1, 1, 1, false});             // 1x1 stride 2
  cs.push_back({1, 3, 13, 11, 5, 2, 5, 2, 1, 1, 2, 1, 2});                     // non-square everything, N*G = 1
  cs.push_back({4, 6, 17, 15, 6, 7, 7, 2, 2, 3, 3, 1, 1, 3});                  // 7x7 stem-like, groups 3
  cs.push_back({3, 2, 1, 1, 3, 1, 1});                                         // 1x1 images
  cs.push_back({2, 2, 4, 5, 3, 4, 5, 1, 1, 0, 0});                             // kernel covers the image
  cs.push_back({1, 2, 6, 6, 2, 3, 3, 3, 3, 4, 4, 1, 1, 1});                    // padding > kernel/2, stride 3
  cs.push_back({2, 40, 6, 7, 130, 3, 3, 1, 1, 1, 1});                          // K 360, O 130: past sgemm's KC, MC
  cs.push_back({3, 5, 9, 61, 7, 3, 3, 1, 2, 1, 1, 1, 2});                      // wide rows, stride/dilation (1, 2)
  cs.push_back({1, 9, 7, 5, 4, 1, 1});                                         // 1x1 on one image (read in place)
  cs.push_back({2, 4, 9, 30, 6, 3, 3, 1, 1, 2, 1, 2, 1, 2});                   // rows >= 24: direct path, groups
  cs.push_back({1, 3, 5, 40, 4, 2, 5, 1, 1, 0, 2, 1, 2, 1, false});            // direct, non-square, dilation 2
  cs.push_back({1, 9, 1, 30, 128, 3, 3, 1, 1, 1, 1});                          // direct, one output row: M split
  return cs;
}

struct Inputs {
  Tensor x, w, b, gy;  // f64 on the CPU
};
Inputs make_inputs(const ConvCase& c, uint64_t seed) {
  const Naive nv(c);
  Inputs in;
  in.x = leaf({c.N, c.C, c.H, c.W}, -1, 1, seed, false);
  in.w = leaf({c.O, c.C / c.groups, c.kh, c.kw}, -1, 1, seed + 1, false);
  if (c.bias) in.b = leaf({c.O}, -1, 1, seed + 2, false);
  in.gy = leaf({c.N, c.O, nv.Ho, nv.Wo}, -1, 1, seed + 3, false);
  return in;
}

// Runs the three kernels in dtype dt and checks them against the direct loops on the same
// (rounded) values.
void check_case(const ConvCase& c, DType dt, uint64_t seed) {
  CAPTURE(case_str(c));
  CAPTURE(std::string(dtype_name(dt)));
  const Naive nv(c);
  const Inputs in = make_inputs(c, seed);
  const Tensor x = in.x.to(dt), w = in.w.to(dt), gy = in.gy.to(dt);
  const Tensor b = c.bias ? in.b.to(dt) : Tensor();
  auto rounded = [](const Tensor& t) { return t.defined() ? t.to(DType::f64).to_vector<double>() : std::vector<double>{}; };
  const auto xv = rounded(x), wv = rounded(w), bv = rounded(b), gyv = rounded(gy);
  double rel, sfac;
  tolerances(dt, &rel, &sfac);
  const ConvParams p = params_of(c);
  std::vector<double> want, scale;

  const Tensor y = native::conv2d(x, w, b, p);
  CHECK(y.dtype() == dt);
  CHECK(y.sizes() == Shape{c.N, c.O, nv.Ho, nv.Wo});
  nv.forward(xv, wv, bv, &want, &scale);
  check_against(y, want, scale, rel, sfac, "forward");

  const Tensor gx = native::conv2d_bwd_input(gy, w, x.sizes(), p);
  CHECK(gx.sizes() == x.sizes());
  nv.grad_input(gyv, wv, &want, &scale);
  check_against(gx, want, scale, rel, sfac, "grad input");

  const Tensor gw = native::conv2d_bwd_weight(gy, x, w.sizes(), p);
  CHECK(gw.sizes() == w.sizes());
  nv.grad_weight(gyv, xv, &want, &scale);
  check_against(gw, want, scale, rel, sfac, "grad weight");
}

}  // namespace

TEST_CASE("conv2d kernels match the direct convolution (f64, f32)") {
  uint64_t seed = 100;
  for (const ConvCase& c : kernel_cases()) {
    check_case(c, DType::f64, seed);
    check_case(c, DType::f32, seed);
    seed += 10;
  }
}

TEST_CASE("conv2d f32: the column-matrix path alone matches the direct convolution too") {
  // Auto takes the direct path (Note [CPU direct convolution]) where rows have >= 24 outputs; the
  // im2col path must stay right on those shapes as well.
  struct Im2colOnly {
    Im2colOnly() { cpu::set_conv_path(cpu::ConvPath::Im2col); }
    ~Im2colOnly() { cpu::set_conv_path(cpu::ConvPath::Auto); }
  } guard;
  uint64_t seed = 700;
  for (const ConvCase& c : kernel_cases()) check_case(c, DType::f32, seed += 10);
  check_case({1, 16, 128, 128, 4, 3, 3, 1, 1, 1, 1}, DType::f32, 710);
}

TEST_CASE("conv2d kernels match the direct convolution (f16, bf16)") {
  uint64_t seed = 300;
  for (const ConvCase& c : kernel_cases()) {
    check_case(c, DType::f16, seed);
    check_case(c, DType::bf16, seed);
    seed += 10;
  }
}

TEST_CASE("conv2d on images big enough to chunk the column buffer") {
  // K * Ho * Wo = 144 * 128 * 128 > 2^21: the output rows go in several chunks, serially (N = 1)
  // and in parallel over images (N = 2, stride 1) and with a row count that does not divide.
  check_case({1, 16, 128, 128, 4, 3, 3, 1, 1, 1, 1}, DType::f32, 500);
  check_case({2, 16, 131, 127, 3, 3, 3, 1, 1, 1, 1}, DType::f32, 510);
  check_case({1, 16, 131, 127, 3, 3, 3, 1, 1, 1, 1}, DType::bf16, 520);
  // 1x1 on a 64x64 image: the f32 weight gradient reads the image in place, block by block of rows
  check_case({1, 64, 64, 64, 8, 1, 1}, DType::f32, 530);
}

TEST_CASE("conv2d takes non-contiguous inputs") {
  const ConvCase c{2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1};
  const Naive nv(c);
  const Inputs in = make_inputs(c, 600);
  // the same values, stored transposed (H and W swapped in memory)
  const Tensor xt = in.x.transpose(2, 3).contiguous().transpose(2, 3);
  REQUIRE_FALSE(xt.is_contiguous());
  std::vector<double> want, scale;
  nv.forward(in.x.to_vector<double>(), in.w.to_vector<double>(), in.b.to_vector<double>(), &want, &scale);
  check_against(native::conv2d(xt, in.w, in.b, params_of(c)), want, scale, 1e-12, 1e-13, "transposed input");
  const Tensor gyt = in.gy.transpose(2, 3).contiguous().transpose(2, 3);
  nv.grad_weight(in.gy.to_vector<double>(), in.x.to_vector<double>(), &want, &scale);
  check_against(native::conv2d_bwd_weight(gyt, xt, in.w.sizes(), params_of(c)), want, scale, 1e-12, 1e-13,
                "transposed grad weight");
}

TEST_CASE("conv2d forward: a hand-worked example") {
  // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], w = [[1, 0], [0, -1]], bias 0.5, stride 1, no padding:
  // y = [[1 - 5, 2 - 6], [4 - 8, 5 - 9]] + 0.5 = [[-3.5, -3.5], [-3.5, -3.5]].
  // With padding 1 and stride 2: outputs at (-1, -1), (-1, 1), (1, -1), (1, 1):
  // (-1,-1): w[1][1] * x[0][0] = -1 -> -0.5; (-1,1): w[1][0]*x[0][1]... = 0 * 2 + (-1) * x[0][2] = -3 -> -2.5;
  // (1,-1): w[0][1] * x[1][0] + w[1][1] * x[2][0] = -7 -> -6.5; (1,1): x[1][1] - x[2][2] = 5 - 9 -> -3.5.
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = from_vector<double>({1, 0, 0, -1}, {1, 1, 2, 2});
  const Tensor b = from_vector<double>({0.5}, {1});
  CHECK_VALUES(F::conv2d(x, w, b).to_vector<double>(), (std::vector<double>{-3.5, -3.5, -3.5, -3.5}), 1e-12);
  F::Conv2dOptions o;
  o.stride = {2, 2}, o.padding = {1, 1};
  CHECK_VALUES(F::conv2d(x, w, b, o).to_vector<double>(), (std::vector<double>{-0.5, -2.5, -6.5, -3.5}), 1e-12);
}

TEST_CASE("gradcheck: conv2d in all its options") {
  const std::vector<ConvCase> cases = {
      {2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1},                       // padding, bias
      {2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, false},       // no bias
      {1, 2, 7, 6, 3, 3, 3, 2, 2, 1, 1},                       // stride 2, odd sizes
      {1, 2, 7, 7, 2, 3, 3, 1, 1, 2, 2, 2, 2},                 // dilation 2
      {2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},              // groups 2
      {1, 3, 5, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3},              // depthwise
      {2, 4, 3, 5, 3, 1, 1},                                   // 1x1
      {1, 4, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, false},       // 1x1 stride 2
      {1, 2, 6, 7, 2, 2, 3, 2, 1, 1, 0, 1, 2},                 // non-square kernel, stride, pad, dilation
  };
  uint64_t seed = 700;
  for (const ConvCase& c : cases) {
    CAPTURE(case_str(c));
    seed += 5;
    Tensor x = leaf({c.N, c.C, c.H, c.W}, -1, 1, seed);
    Tensor w = leaf({c.O, c.C / c.groups, c.kh, c.kw}, -1, 1, seed + 1);
    const F::Conv2dOptions o = options_of(c);
    if (c.bias) {
      Tensor b = leaf({c.O}, -1, 1, seed + 2);
      CHECK_GRADCHECK([o](const TL& in) { return F::conv2d(in[0], in[1], in[2], o); }, TL{x, w, b});
      // only some inputs need gradients: the others must get none
      CHECK_GRADCHECK([o](const TL& in) { return F::conv2d(in[0], in[1], in[2], o); }, TL{x, w.detach(), b.detach()});
      CHECK_GRADCHECK([o](const TL& in) { return F::conv2d(in[0], in[1], in[2], o); }, TL{x.detach(), w, b.detach()});
      CHECK_GRADCHECK([o](const TL& in) { return F::conv2d(in[0], in[1], in[2], o); }, TL{x.detach(), w.detach(), b});
    } else {
      CHECK_GRADCHECK([o](const TL& in) { return F::conv2d(in[0], in[1], Tensor(), o); }, TL{x, w});
    }
  }
  // a conv of a conv: the first conv's output is a non-leaf input of the second
  Tensor x = leaf({1, 2, 6, 6}, -1, 1, 780), w1 = leaf({3, 2, 3, 3}, -1, 1, 781), w2 = leaf({2, 3, 2, 2}, -1, 1, 782);
  CHECK_GRADCHECK(
      [](const TL& in) {
        F::Conv2dOptions o1;
        o1.padding = {1, 1};
        return F::conv2d(F::conv2d(in[0], in[1], Tensor(), o1), in[2], Tensor());
      },
      TL{x, w1, w2});
}

TEST_CASE("conv2d records a graph only when needed and names its node") {
  Tensor x = leaf({1, 2, 4, 4}, -1, 1, 800), w = leaf({3, 2, 3, 3}, -1, 1, 801, false);
  const Tensor y = F::conv2d(x, w, Tensor());
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "Conv2dBackward");
  const Tensor y2 = F::conv2d(x.detach(), w, Tensor());
  CHECK_FALSE(y2.requires_grad());
}

TEST_CASE("conv2d argument errors name the op and the shapes") {
  const Tensor w = zeros({4, 4, 3, 3});
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({3, 32, 32}), w, Tensor(), ConvParams{}),
                       doctest::Contains("conv2d: expected input with 4 dims (N, C, H, W), got [3, 32, 32]"), rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 3, 8, 8}), w, Tensor(), ConvParams{}),
                       doctest::Contains("has 3 channels but weight [4, 4, 3, 3] expects 4 (groups=1)"), rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 4, 2, 8}), w, Tensor(), ConvParams{}),
                       doctest::Contains("smaller than the kernel 3x3"), rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 4, 8, 8}), w, zeros({3}), ConvParams{}),
                       doctest::Contains("conv2d: bias [3] should be (4)"), rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 4, 8, 8}), zeros({4, 4, 3}), Tensor(), ConvParams{}),
                       doctest::Contains("expected weight with 4 dims"), rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 4, 8, 8}), w.to(DType::f64), Tensor(), ConvParams{}),
                       doctest::Contains("should be the same"), rg::Error);
  ConvParams g3;
  g3.groups = 3;
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 6, 8, 8}), zeros({4, 2, 3, 3}), Tensor(), g3),
                       doctest::Contains("not divisible by groups=3"), rg::Error);
  ConvParams s0;
  s0.stride[1] = 0;
  CHECK_THROWS_WITH_AS(native::conv2d(zeros({1, 4, 8, 8}), w, Tensor(), s0), doctest::Contains("stride must be positive"),
                       rg::Error);
  CHECK_THROWS_WITH_AS(native::conv2d_bwd_input(zeros({1, 4, 5, 5}), w, {1, 4, 8, 8}, ConvParams{}),
                       doctest::Contains("grad_output has shape [1, 4, 5, 5] but the forward output had [1, 4, 6, 6]"),
                       rg::Error);
  CHECK_THROWS_AS(native::conv2d(zeros({1, 4, 8, 8}, DType::i64), zeros({4, 4, 3, 3}, DType::i64), Tensor(), ConvParams{}),
                  rg::Error);
}

TEST_CASE("conv2d with an empty batch or empty channels") {
  const Tensor y = native::conv2d(zeros({0, 3, 5, 5}), ones({2, 3, 3, 3}), Tensor(), ConvParams{});
  CHECK(y.sizes() == Shape{0, 2, 3, 3});
  // no input channels: every output is the bias
  const Tensor y2 = native::conv2d(zeros({1, 0, 4, 4}), zeros({2, 0, 3, 3}), from_vector<float>({1.5f, -2.f}), ConvParams{});
  CHECK(y2.sizes() == Shape{1, 2, 2, 2});
  CHECK_VALUES(y2.to_vector<double>(), (std::vector<double>{1.5, 1.5, 1.5, 1.5, -2, -2, -2, -2}), 0.0);
}

TEST_CASE("conv2d under autocast runs in the low-precision dtype; f32 weights get f32 gradients") {
  for (DType low : {DType::f16, DType::bf16}) {
    CAPTURE(std::string(dtype_name(low)));
    Tensor x = leaf({2, 3, 6, 5}, -1, 1, 900, false).to(DType::f32);
    Tensor w = leaf({4, 3, 3, 3}, -1, 1, 901, false).to(DType::f32);
    Tensor b = leaf({4}, -1, 1, 902, false).to(DType::f32);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    F::Conv2dOptions o;
    o.padding = {1, 1};
    Tensor y;
    {
      amp::AutocastGuard guard(low);
      y = F::conv2d(x, w, b, o);
    }
    CHECK(y.dtype() == low);
    // the values: the f32 convolution of the rounded inputs, within the low dtype's rounding
    const Tensor ref = native::conv2d(x.to(low).to(DType::f32), w.detach().to(low).to(DType::f32),
                                      b.detach().to(low).to(DType::f32), params_of(ConvCase{2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1}));
    RG_CHECK_CLOSE(y.to(DType::f32), ref, (test::Tol{low == DType::f16 ? 4e-3 : 2e-2, low == DType::f16 ? 2e-3 : 1e-2}));
    y.sum().backward();
    REQUIRE(w.grad().defined());
    CHECK(w.grad().dtype() == DType::f32);
    CHECK(b.grad().dtype() == DType::f32);
    // the bias gradient is the number of output pixels per channel: 2 * 6 * 5
    CHECK_VALUES(b.grad().to_vector<double>(), (std::vector<double>(4, 60.0)), 0.0);
  }
}
