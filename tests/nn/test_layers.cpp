// The layers, init and losses: forward values against formulas written here, default
// initialisation statistics, printed forms, gradchecks in f64, and loss values worked out by hand.
#include <cmath>
#include <limits>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "nn/functional.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nn;
using namespace rg::nntest;
namespace F = rg::nn::functional;

namespace {

// Direct convolution: out[n][co][i][j] = b[co] + sum over the group's input channels and taps.
std::vector<double> conv_ref(const std::vector<double>& x, const Shape& xs, const std::vector<double>& w,
                             const Shape& ws, const std::vector<double>& b, Size2 stride, Size2 pad, Size2 dil,
                             int64_t groups, Shape* out_shape) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
  const int64_t Ho = (H + 2 * pad.h - dil.h * (KH - 1) - 1) / stride.h + 1;
  const int64_t Wo = (W + 2 * pad.w - dil.w * (KW - 1) - 1) / stride.w + 1;
  *out_shape = {N, O, Ho, Wo};
  std::vector<double> y(static_cast<size_t>(N * O * Ho * Wo));
  const int64_t Og = O / groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          double s = b.empty() ? 0.0 : b[static_cast<size_t>(o)];
          const int64_t g = o / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t p = 0; p < KH; ++p)
              for (int64_t q = 0; q < KW; ++q) {
                const int64_t hi = i * stride.h - pad.h + p * dil.h, wi = j * stride.w - pad.w + q * dil.w;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                const int64_t ci = g * Cg + c;
                s += x[static_cast<size_t>(((n * C + ci) * H + hi) * W + wi)] *
                     w[static_cast<size_t>(((o * Cg + c) * KH + p) * KW + q)];
              }
          y[static_cast<size_t>(((n * O + o) * Ho + i) * Wo + j)] = s;
        }
  return y;
}

}  // namespace

// ---------------------------------------------------------------- Linear
TEST_CASE("Linear: names, shapes, forward = x W^T + b, folding of leading dims") {
  Linear fc(3, 2);
  auto np = fc.named_parameters();
  REQUIRE(np.size() == 2);
  CHECK(np[0].first == "weight");
  CHECK(np[1].first == "bias");
  CHECK(fc.weight().sizes() == Shape{2, 3});
  CHECK(fc.bias().sizes() == Shape{2});
  CHECK(fc.weight().requires_grad());
  set_values(fc.weight(), {1, 2, 3, -1, 0.5, 0});
  set_values(fc.bias(), {0.25, -2});
  Tensor x = from_vector<float>({1, 0, -1, 2, 3, 4}, {2, 3});
  // row 0: [1*1 + 0*2 - 1*3 + 0.25, -1*1 + 0 + 0 - 2] ; row 1: [2 + 6 + 12 + 0.25, -2 + 1.5 - 2]
  CHECK_VALUES(vals(fc(x)), (std::vector<double>{-1.75, -3, 20.25, -2.5}), 1e-6);
  Tensor x3 = from_vector<float>({1, 0, -1, 2, 3, 4}, {1, 2, 3});
  Tensor y3 = fc(x3);
  CHECK(y3.sizes() == Shape{1, 2, 2});
  CHECK_VALUES(vals(y3), (std::vector<double>{-1.75, -3, 20.25, -2.5}), 1e-6);
  Tensor x1 = from_vector<float>({1, 0, -1});
  CHECK(fc(x1).sizes() == Shape{2});

  Linear nobias(3, 2, false);
  CHECK(nobias.named_parameters().size() == 1);
  CHECK_FALSE(nobias.bias().defined());
  CHECK(nobias.extra_repr() == "in_features=3, out_features=2, bias=False");
  CHECK(fc.extra_repr() == "in_features=3, out_features=2, bias=True");
  CHECK_THROWS_AS(fc(from_vector<float>({1, 2}, {1, 2})), Error);
}

TEST_CASE("Linear and Conv2d default init: U(+-1/sqrt(fan_in)) for weight and bias") {
  manual_seed(7);
  Linear fc(200, 300);
  const double bound = 1.0 / std::sqrt(200.0);
  auto w = vals(fc.weight());
  double mx = 0;
  for (double v : w) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.99 * bound);  // 60000 draws reach the edge
  auto [m, s] = mean_std(fc.weight());
  CHECK(std::fabs(m) < 0.02 * bound);
  CHECK(std::fabs(s - bound / std::sqrt(3.0)) < 0.02 * bound);
  auto b = vals(fc.bias());
  for (double v : b) CHECK(std::fabs(v) <= bound);
  CHECK(mean_std(fc.bias()).second > 0.4 * bound);

  Conv2d conv(16, 32, 3, Conv2dOptions{.groups = 2});
  CHECK(conv.weight().sizes() == Shape{32, 8, 3, 3});
  const double cb = 1.0 / std::sqrt(8.0 * 9.0);  // fan_in = in / groups * kh * kw
  for (double v : vals(conv.weight())) CHECK(std::fabs(v) <= cb);
  for (double v : vals(conv.bias())) CHECK(std::fabs(v) <= cb);
  CHECK(std::fabs(mean_std(conv.weight()).second - cb / std::sqrt(3.0)) < 0.05 * cb);

  // the default generator's seed decides the values
  manual_seed(7);
  Linear again(200, 300);
  CHECK(vals(again.weight()) == w);
}

// ---------------------------------------------------------------- Conv2d
TEST_CASE("Conv2d: forward against a direct convolution (stride, padding, dilation, groups, bias)") {
  struct Case {
    int64_t cin, cout, k;
    Conv2dOptions o;
  };
  const std::vector<Case> cases = {
      {3, 4, 3, Conv2dOptions{}},
      {4, 6, 3, Conv2dOptions{.stride = 2, .padding = 1, .groups = 2}},
      {2, 3, 3, Conv2dOptions{.stride = {1, 2}, .padding = {2, 1}, .dilation = 2, .bias = false}},
      {4, 4, 1, Conv2dOptions{.groups = 4}},
  };
  uint64_t seed = 10;
  for (const Case& c : cases) {
    Conv2d conv(c.cin, c.cout, c.k, c.o);
    CAPTURE(conv.extra_repr());
    const Shape xs{2, c.cin, 7, 6};
    Tensor x = values(xs, -1, 1, seed++);
    Shape ys;
    const auto bias = c.o.bias ? vals(conv.bias()) : std::vector<double>{};
    auto ref = conv_ref(vals(x), xs, vals(conv.weight()), conv.weight().sizes(), bias, c.o.stride, c.o.padding,
                        c.o.dilation, c.o.groups, &ys);
    Tensor y = conv(x);
    CHECK(y.sizes() == ys);
    CHECK_VALUES(vals(y), ref, 1e-5);
  }
}

TEST_CASE("Conv2d: printed form and argument checks") {
  CHECK(Conv2d(3, 64, 7, {.stride = 2, .padding = 3, .bias = false}).extra_repr() ==
        "3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False");
  CHECK(Conv2d(3, 8, {1, 3}).extra_repr() == "3, 8, kernel_size=(1, 3), stride=(1, 1)");
  CHECK(Conv2d(4, 8, 3, {.dilation = 2, .groups = 2}).extra_repr() ==
        "4, 8, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2), groups=2");
  CHECK(Conv2d(4, 8, 3, {.bias = false}).named_parameters().size() == 1);
  CHECK_THROWS_AS(Conv2d(3, 8, 3, {.groups = 2}), Error);   // 3 not divisible by 2
  CHECK_THROWS_AS(Conv2d(4, 8, 3, {.stride = 0}), Error);
}

// ---------------------------------------------------------------- BatchNorm2d
TEST_CASE("BatchNorm2d: parameters, buffers, defaults and printed form") {
  BatchNorm2d bn(3);
  auto sd = bn.state_dict();
  REQUIRE(sd.size() == 5);
  CHECK(sd[0].first == "weight");
  CHECK(sd[1].first == "bias");
  CHECK(sd[2].first == "running_mean");
  CHECK(sd[3].first == "running_var");
  CHECK(sd[4].first == "num_batches_tracked");
  CHECK(vals(bn.weight()) == std::vector<double>{1, 1, 1});
  CHECK(vals(bn.bias()) == std::vector<double>{0, 0, 0});
  CHECK(vals(bn.running_mean()) == std::vector<double>{0, 0, 0});
  CHECK(vals(bn.running_var()) == std::vector<double>{1, 1, 1});
  CHECK(bn.num_batches_tracked().dtype() == DType::i64);
  CHECK(bn.num_batches_tracked().dim() == 0);
  CHECK(bn.num_batches_tracked().item() == 0);
  CHECK(bn.named_parameters().size() == 2);
  CHECK(bn.extra_repr() == "3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True");
  CHECK(BatchNorm2d(8, {.eps = 1e-3, .momentum = 0.03}).extra_repr() ==
        "8, eps=0.001, momentum=0.03, affine=True, track_running_stats=True");
  BatchNorm2d plain(4, {.momentum = std::nullopt, .affine = false, .track_running_stats = false});
  CHECK(plain.extra_repr() == "4, eps=1e-05, momentum=None, affine=False, track_running_stats=False");
  CHECK(plain.state_dict().empty());
  CHECK(plain.named_parameters().empty());
}

namespace {
// Per-channel mean, biased and unbiased variance of an (N, C, H, W) value vector.
void channel_stats(const std::vector<double>& x, const Shape& s, int64_t c, double* mean, double* var_b,
                   double* var_u) {
  const int64_t N = s[0], C = s[1], HW = s[2] * s[3];
  double sum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < HW; ++k) sum += x[static_cast<size_t>((n * C + c) * HW + k)];
  const double cnt = static_cast<double>(N * HW);
  *mean = sum / cnt;
  double ss = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < HW; ++k) {
      const double d = x[static_cast<size_t>((n * C + c) * HW + k)] - *mean;
      ss += d * d;
    }
  *var_b = ss / cnt;
  *var_u = ss / (cnt - 1);
}
}  // namespace

TEST_CASE("BatchNorm2d: training normalises with batch statistics and updates running stats") {
  const Shape xs{2, 3, 2, 3};
  Tensor x = values(xs, -2, 3, 21);
  BatchNorm2d bn(3);
  set_values(bn.weight(), {1.5, -0.5, 2});
  set_values(bn.bias(), {0.1, 0.2, -0.3});
  Tensor y = bn(x);
  const auto xv = vals(x), yv = vals(y);
  const double w[3] = {1.5, -0.5, 2}, b[3] = {0.1, 0.2, -0.3};
  std::vector<double> exp_rm, exp_rv;
  for (int64_t c = 0; c < 3; ++c) {
    double m, vb, vu;
    channel_stats(xv, xs, c, &m, &vb, &vu);
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t k = 0; k < 6; ++k) {
        const size_t i = static_cast<size_t>((n * 3 + c) * 6 + k);
        CHECK(yv[i] == doctest::Approx((xv[i] - m) / std::sqrt(vb + 1e-5) * w[c] + b[c]).epsilon(1e-5));
      }
    exp_rm.push_back(0.9 * 0.0 + 0.1 * m);
    exp_rv.push_back(0.9 * 1.0 + 0.1 * vu);  // unbiased variance into the running estimate
  }
  CHECK_VALUES(vals(bn.running_mean()), exp_rm, 1e-6);
  CHECK_VALUES(vals(bn.running_var()), exp_rv, 1e-6);
  CHECK(bn.num_batches_tracked().item() == 1);
  bn(x);
  CHECK(bn.num_batches_tracked().item() == 2);

  // eval: the running statistics, nothing updated
  bn.eval();
  const auto rm = vals(bn.running_mean()), rv = vals(bn.running_var());
  Tensor ye = bn(x);
  const auto yev = vals(ye);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t k = 0; k < 6; ++k) {
        const size_t i = static_cast<size_t>((n * 3 + c) * 6 + k);
        const size_t cc = static_cast<size_t>(c);
        CHECK(yev[i] == doctest::Approx((xv[i] - rm[cc]) / std::sqrt(rv[cc] + 1e-5) * w[c] + b[c]).epsilon(1e-5));
      }
  CHECK(bn.num_batches_tracked().item() == 2);
  CHECK(vals(bn.running_mean()) == rm);
  CHECK_THROWS_AS(bn(values({2, 4, 2, 2}, 0, 1, 1)), Error);  // wrong channel count
  CHECK_THROWS_AS(bn(values({2, 3, 4}, 0, 1, 1)), Error);     // not 4-D
}

TEST_CASE("BatchNorm2d: momentum None is a cumulative average; no tracking uses batch stats in eval") {
  const Shape xs{3, 2, 2, 2};
  Tensor x1 = values(xs, -1, 1, 31), x2 = values(xs, 0, 4, 32);
  BatchNorm2d bn(2, {.momentum = std::nullopt});
  bn(x1);
  bn(x2);
  std::vector<double> exp_rm;
  for (int64_t c = 0; c < 2; ++c) {
    double m1, m2, vb, vu;
    channel_stats(vals(x1), xs, c, &m1, &vb, &vu);
    channel_stats(vals(x2), xs, c, &m2, &vb, &vu);
    exp_rm.push_back((m1 + m2) / 2);  // factor 1/1 then 1/2: the plain average of the batch means
  }
  CHECK_VALUES(vals(bn.running_mean()), exp_rm, 1e-6);

  BatchNorm2d nostats(2, {.affine = false, .track_running_stats = false});
  nostats.eval();
  const auto y = vals(nostats(x2));
  const auto xv = vals(x2);
  for (int64_t c = 0; c < 2; ++c) {
    double m, vb, vu;
    channel_stats(xv, xs, c, &m, &vb, &vu);
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t k = 0; k < 4; ++k) {
        const size_t i = static_cast<size_t>((n * 2 + c) * 4 + k);
        CHECK(y[i] == doctest::Approx((xv[i] - m) / std::sqrt(vb + 1e-5)).epsilon(1e-5));
      }
  }
}

// ---------------------------------------------------------------- activations
TEST_CASE("activations: ReLU, LeakyReLU, SiLU, Sigmoid against their formulas") {
  const std::vector<double> xv{-3, -0.5, 0, 0.25, 2, 7};
  Tensor x = from_vector<double>(xv, {2, 3});
  std::vector<double> relu_e, leaky_e, silu_e, sig_e;
  for (double v : xv) {
    relu_e.push_back(v > 0 ? v : 0);
    leaky_e.push_back(v > 0 ? v : 0.1 * v);
    sig_e.push_back(1.0 / (1.0 + std::exp(-v)));
    silu_e.push_back(v / (1.0 + std::exp(-v)));
  }
  CHECK_VALUES(vals(ReLU()(x)), relu_e, 1e-12);
  CHECK_VALUES(vals(LeakyReLU(0.1)(x)), leaky_e, 1e-12);
  CHECK_VALUES(vals(SiLU()(x)), silu_e, 1e-12);
  CHECK_VALUES(vals(Sigmoid()(x)), sig_e, 1e-12);
  CHECK(LeakyReLU(0.1).extra_repr() == "negative_slope=0.1");
  CHECK(LeakyReLU().negative_slope() == 0.01);
  CHECK(ReLU().repr() == "ReLU()");
}

// ---------------------------------------------------------------- pooling and resampling
TEST_CASE("MaxPool2d and AvgPool2d against direct loops") {
  const Shape xs{2, 3, 7, 6};
  Tensor x = values(xs, -1, 1, 41);
  const auto xv = vals(x);
  auto at = [&](int64_t n, int64_t c, int64_t h, int64_t w) { return xv[static_cast<size_t>(((n * 3 + c) * 7 + h) * 6 + w)]; };

  MaxPool2d mp(3, {.stride = 2, .padding = 1});
  CHECK(mp.extra_repr() == "kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False");
  Tensor y = mp(x);
  REQUIRE(y.sizes() == Shape{2, 3, 4, 3});  // floor((7 + 2 - 3) / 2) + 1 = 4, floor((6 + 2 - 3) / 2) + 1 = 3
  std::vector<double> e;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          double m = -std::numeric_limits<double>::infinity();
          for (int64_t p = 0; p < 3; ++p)
            for (int64_t q = 0; q < 3; ++q) {
              const int64_t h = 2 * i - 1 + p, w = 2 * j - 1 + q;
              if (h >= 0 && h < 7 && w >= 0 && w < 6) m = std::max(m, at(n, c, h, w));
            }
          e.push_back(m);
        }
  CHECK_VALUES(vals(y), e, 1e-7);

  AvgPool2d ap(2);
  CHECK(ap.extra_repr() == "kernel_size=2, stride=2, padding=0");
  Tensor ya = ap(x);
  REQUIRE(ya.sizes() == Shape{2, 3, 3, 3});
  e.clear();
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 3; ++j)
          e.push_back((at(n, c, 2 * i, 2 * j) + at(n, c, 2 * i + 1, 2 * j) + at(n, c, 2 * i, 2 * j + 1) +
                       at(n, c, 2 * i + 1, 2 * j + 1)) / 4);
  CHECK_VALUES(vals(ya), e, 1e-6);
}

TEST_CASE("AdaptiveAvgPool2d: PyTorch's windows floor(i H / o) .. ceil((i + 1) H / o)") {
  const Shape xs{1, 2, 5, 7};
  Tensor x = values(xs, -1, 1, 51);
  const auto xv = vals(x);
  for (Size2 os : {Size2(1, 1), Size2(2, 3), Size2(5, 7), Size2(3, 2)}) {
    AdaptiveAvgPool2d pool(os);
    Tensor y = pool(x);
    REQUIRE(y.sizes() == Shape{1, 2, os.h, os.w});
    std::vector<double> e;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < os.h; ++i)
        for (int64_t j = 0; j < os.w; ++j) {
          const int64_t h0 = (i * 5) / os.h, h1 = ((i + 1) * 5 + os.h - 1) / os.h;
          const int64_t w0 = (j * 7) / os.w, w1 = ((j + 1) * 7 + os.w - 1) / os.w;
          double s = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) s += xv[static_cast<size_t>((c * 5 + h) * 7 + w)];
          e.push_back(s / static_cast<double>((h1 - h0) * (w1 - w0)));
        }
    CHECK_VALUES(vals(y), e, 1e-6);
  }
  CHECK(AdaptiveAvgPool2d(Size2(1, 1)).extra_repr() == "output_size=(1, 1)");
}

TEST_CASE("Upsample nearest: out[i][j] = in[floor(i * H / Ho)][floor(j * W / Wo)]") {
  const Shape xs{1, 2, 3, 4};
  Tensor x = values(xs, -1, 1, 61);
  const auto xv = vals(x);
  auto expect = [&](int64_t Ho, int64_t Wo) {
    std::vector<double> e;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          const int64_t h = i * 3 / Ho, w = j * 4 / Wo;
          e.push_back(xv[static_cast<size_t>((c * 3 + h) * 4 + w)]);
        }
    return e;
  };
  Upsample up2({.scale_factor = 2.0});
  CHECK(up2.extra_repr() == "scale_factor=2.0, mode='nearest'");
  Tensor y = up2(x);
  REQUIRE(y.sizes() == Shape{1, 2, 6, 8});
  CHECK_VALUES(vals(y), expect(6, 8), 0);
  Upsample sized({.size = Size2(5, 7)});
  CHECK(sized.extra_repr() == "size=(5, 7), mode='nearest'");
  Tensor ys = sized(x);
  REQUIRE(ys.sizes() == Shape{1, 2, 5, 7});
  CHECK_VALUES(vals(ys), expect(5, 7), 0);
  CHECK_THROWS_AS(Upsample(UpsampleOptions{}), Error);
  CHECK_THROWS_AS(Upsample({.size = Size2(2), .scale_factor = 2.0}), Error);
  CHECK_THROWS_AS(Upsample({.scale_factor = 2.0, .mode = "bilinear"}), Error);
}

// ---------------------------------------------------------------- Dropout, Flatten, Identity
TEST_CASE("Dropout: identity in eval and for p = 0, zeros for p = 1, inverted scaling in training") {
  Tensor x = values({400, 250}, 0.5, 1.5, 71);
  Dropout d(0.3);
  CHECK(d.extra_repr() == "p=0.3, inplace=False");
  d.eval();
  CHECK(d(x).is_same(x));
  d.train();
  Tensor y = d(x);
  const auto xv = vals(x), yv = vals(y);
  int64_t zeros = 0;
  bool scaled_ok = true;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0.0) {
      ++zeros;
    } else if (std::fabs(yv[i] - xv[i] / 0.7) > 1e-5 * std::fabs(yv[i])) {
      scaled_ok = false;
    }
  }
  CHECK(scaled_ok);
  const double frac = static_cast<double>(zeros) / static_cast<double>(xv.size());
  CHECK(frac == doctest::Approx(0.3).epsilon(0.03));  // 100000 draws: sd of the fraction is 0.0015
  CHECK(F::dropout(x, 0.0, true).is_same(x));
  for (double v : vals(F::dropout(x, 1.0, true))) REQUIRE(v == 0.0);
  CHECK_THROWS_AS(Dropout(1.5), Error);
  CHECK_THROWS_AS(F::dropout(x, -0.1, true), Error);

  // the generator decides the mask
  Generator g1(5), g2(5);
  CHECK(vals(F::dropout(x, 0.5, true, &g1)) == vals(F::dropout(x, 0.5, true, &g2)));
}

TEST_CASE("Flatten and Identity") {
  Tensor x = values({2, 3, 4, 5}, 0, 1, 81);
  CHECK(Flatten()(x).sizes() == Shape{2, 60});
  CHECK(Flatten(0, 1)(x).sizes() == Shape{6, 4, 5});
  CHECK(Flatten(2)(x).sizes() == Shape{2, 3, 20});
  CHECK(vals(Flatten()(x)) == vals(x));
  CHECK(Flatten().extra_repr() == "start_dim=1, end_dim=-1");
  CHECK(Identity()(x).is_same(x));
}

TEST_CASE("printed form of a nested model, as print(model)") {
  Sequential seq;
  seq.push_back(std::make_shared<Conv2d>(3, 8, 3, Conv2dOptions{.padding = 1}));
  seq.push_back(std::make_shared<BatchNorm2d>(8));
  seq.push_back(std::make_shared<LeakyReLU>(0.1));
  auto inner = std::make_shared<Sequential>();
  inner->push_back(std::make_shared<Upsample>(UpsampleOptions{.scale_factor = 2.0}));
  seq.push_back(inner);
  seq.push_back(std::make_shared<Flatten>());
  seq.push_back(std::make_shared<Linear>(8, 2));
  CHECK(seq.repr() ==
        "Sequential(\n"
        "  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
        "  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
        "  (2): LeakyReLU(negative_slope=0.1)\n"
        "  (3): Sequential(\n"
        "    (0): Upsample(scale_factor=2.0, mode='nearest')\n"
        "  )\n"
        "  (4): Flatten(start_dim=1, end_dim=-1)\n"
        "  (5): Linear(in_features=8, out_features=2, bias=True)\n"
        ")");
}

TEST_CASE("py_float prints as Python's repr") {
  CHECK(py_float(1e-5) == "1e-05");
  CHECK(py_float(0.1) == "0.1");
  CHECK(py_float(2.0) == "2.0");
  CHECK(py_float(0.001) == "0.001");
  CHECK(py_float(0.0001) == "0.0001");
  CHECK(py_float(1.5e-7) == "1.5e-07");
  CHECK(py_float(123456.0) == "123456.0");
  CHECK(py_float(1e16) == "1e+16");
  CHECK(py_float(-0.25) == "-0.25");
  CHECK(py_float(1.0 / 3.0) == "0.3333333333333333");
}

// ---------------------------------------------------------------- init
TEST_CASE("init: fans and gains") {
  CHECK(init::calculate_fan_in_and_fan_out(empty({64, 3, 7, 7})) == std::pair<int64_t, int64_t>{147, 3136});
  CHECK(init::calculate_fan_in_and_fan_out(empty({10, 20})) == std::pair<int64_t, int64_t>{20, 10});
  CHECK_THROWS_AS(init::calculate_fan_in_and_fan_out(empty({5})), Error);
  CHECK(init::calculate_gain("linear") == 1.0);
  CHECK(init::calculate_gain("conv2d") == 1.0);
  CHECK(init::calculate_gain("sigmoid") == 1.0);
  CHECK(init::calculate_gain("tanh") == doctest::Approx(5.0 / 3.0));
  CHECK(init::calculate_gain("relu") == doctest::Approx(std::sqrt(2.0)));
  CHECK(init::calculate_gain("leaky_relu") == doctest::Approx(std::sqrt(2.0 / (1 + 0.01 * 0.01))));
  CHECK(init::calculate_gain("leaky_relu", 0.2) == doctest::Approx(std::sqrt(2.0 / 1.04)));
  CHECK(init::calculate_gain("selu") == 0.75);
  CHECK_THROWS_AS(init::calculate_gain("swish"), Error);
}

TEST_CASE("init: kaiming and xavier statistics, constant fills, generator determinism") {
  Generator g(123);
  Tensor w = empty({256, 128, 3, 3});  // fan_in 1152, fan_out 2304
  init::kaiming_normal_(w, 0.0, "fan_out", "relu", &g);
  auto [m, s] = mean_std(w);
  CHECK(std::fabs(m) < 1e-3);
  CHECK(s == doctest::Approx(std::sqrt(2.0 / 2304)).epsilon(0.01));
  init::kaiming_normal_(w, 0.0, "fan_in", "relu", &g);
  CHECK(mean_std(w).second == doctest::Approx(std::sqrt(2.0 / 1152)).epsilon(0.01));

  init::kaiming_uniform_(w, 0.0, "fan_in", "relu", &g);
  const double kb = std::sqrt(2.0) * std::sqrt(3.0 / 1152);
  double mx = 0;
  for (double v : vals(w)) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= kb);
  CHECK(mx > 0.999 * kb);
  CHECK(mean_std(w).second == doctest::Approx(kb / std::sqrt(3.0)).epsilon(0.01));

  Tensor l = empty({300, 500});
  init::xavier_uniform_(l, 2.0, &g);
  const double xb = 2.0 * std::sqrt(6.0 / 800);
  mx = 0;
  for (double v : vals(l)) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= xb);
  CHECK(mx > 0.999 * xb);
  init::xavier_normal_(l, 1.0, &g);
  CHECK(mean_std(l).second == doctest::Approx(std::sqrt(2.0 / 800)).epsilon(0.01));

  init::uniform_(l, -3, -1, &g);
  auto [um, us] = mean_std(l);
  CHECK(um == doctest::Approx(-2).epsilon(0.005));
  CHECK(us == doctest::Approx(2 / std::sqrt(12.0)).epsilon(0.01));
  init::normal_(l, 4, 0.5, &g);
  CHECK(mean_std(l).first == doctest::Approx(4).epsilon(0.002));
  CHECK(mean_std(l).second == doctest::Approx(0.5).epsilon(0.01));

  init::constant_(l, 0.75);
  for (double v : vals(l)) REQUIRE(v == 0.75);
  init::zeros_(l);
  CHECK(mean_std(l) == std::pair<double, double>{0.0, 0.0});
  init::ones_(l);
  CHECK(vals(l)[123] == 1.0);

  Generator a(9), b(9);
  Tensor t1 = empty({50, 40}), t2 = empty({50, 40});
  init::kaiming_uniform_(t1, std::sqrt(5.0), "fan_in", "leaky_relu", &a);
  init::kaiming_uniform_(t2, std::sqrt(5.0), "fan_in", "leaky_relu", &b);
  CHECK(vals(t1) == vals(t2));

  // in place on a view: only the view changes; other dtypes work
  Tensor big = zeros({4, 6});
  init::ones_(big.narrow(1, 2, 2));
  CHECK(vals(big.sum()) == std::vector<double>{8});
  Tensor h = empty({64, 64}, DType::f16);
  init::normal_(h, 0, 1, &g);
  CHECK(mean_std(h).second == doctest::Approx(1.0).epsilon(0.05));
  Tensor i64 = zeros({3}, DType::i64);
  CHECK_THROWS_AS(init::normal_(i64), Error);
  CHECK_THROWS_AS(init::kaiming_normal_(empty({4, 4}), 0.0, "fan_avg"), Error);
}

TEST_CASE("init: trunc_normal_ stays in [a, b] with the truncated normal's moments") {
  Generator g(77);
  Tensor t = empty({200, 500});
  init::trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, &g);
  double lo = 1e9, hi = -1e9;
  for (double v : vals(t)) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo >= -2.0);
  CHECK(hi <= 2.0);
  CHECK(lo < -1.95);
  CHECK(hi > 1.95);
  // N(0, 1) truncated to [-2, 2]: var = 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2))
  const double phi2 = std::exp(-2.0) / std::sqrt(2 * M_PI);
  const double z = std::erf(2.0 / std::sqrt(2.0));
  const double sd = std::sqrt(1.0 - 4.0 * phi2 / z);
  auto [m, s] = mean_std(t);
  CHECK(std::fabs(m) < 0.01);
  CHECK(s == doctest::Approx(sd).epsilon(0.01));
  // shifted and one-sided: N(1, 0.02) in [0.99, 2] has mean 1 + 0.02 * phi(-0.5) / (1 - Phi(-0.5))
  init::trunc_normal_(t, 1.0, 0.02, 0.99, 2.0, &g);
  for (double v : vals(t)) REQUIRE((v >= 0.99 && v <= 2.0));
  const double phi_a = std::exp(-0.125) / std::sqrt(2 * M_PI);
  const double Z = 1.0 - 0.5 * (1.0 + std::erf(-0.5 / std::sqrt(2.0)));
  CHECK(mean_std(t).first == doctest::Approx(1.0 + 0.02 * phi_a / Z).epsilon(2e-4));
}

// ---------------------------------------------------------------- gradchecks (f64)
TEST_CASE("gradcheck: linear with and without bias, 2-D and 3-D inputs") {
  Tensor x = leaf64({3, 4}, -1, 1, 101), w = leaf64({5, 4}, -1, 1, 102), b = leaf64({5}, -1, 1, 103);
  CHECK_GRADCHECK([](const TL& in) { return F::linear(in[0], in[1], in[2]); }, TL{x, w, b});
  CHECK_GRADCHECK([](const TL& in) { return F::linear(in[0], in[1], Tensor()); }, TL{x, w});
  Tensor x3 = leaf64({2, 3, 4}, -1, 1, 104);
  CHECK_GRADCHECK([](const TL& in) { return F::linear(in[0], in[1], in[2]); }, TL{x3, w, b});
}

TEST_CASE("gradcheck: dropout with a fixed mask") {
  Tensor x = leaf64({6, 7}, -1, 1, 111);
  CHECK_GRADCHECK(
      [](const TL& in) {
        Generator g(42);  // the same mask on every evaluation
        return F::dropout(in[0], 0.4, true, &g);
      },
      TL{x});
  // the gradient is the mask scaled by 1/(1-p)
  Generator g(42);
  Tensor y = F::dropout(x, 0.4, true, &g);
  y.sum().backward();
  const auto yv = vals(y), xv = vals(x), gv = vals(x.grad());
  for (size_t i = 0; i < yv.size(); ++i) {
    CHECK(gv[i] == doctest::Approx(yv[i] == 0.0 ? 0.0 : 1.0 / 0.6));
    if (yv[i] != 0.0) CHECK(yv[i] == doctest::Approx(xv[i] / 0.6));
  }
}

TEST_CASE("gradcheck: losses") {
  Tensor a = leaf64({3, 4}, -2, 2, 121), t = leaf64({3, 4}, 0, 1, 122);
  for (const char* r : {"mean", "sum", "none"}) {
    CAPTURE(r);
    CHECK_GRADCHECK([&](const TL& in) { return F::mse_loss(in[0], in[1], r); }, TL{a, t});
    CHECK_GRADCHECK([&](const TL& in) { return F::binary_cross_entropy_with_logits(in[0], in[1], Tensor(), r); },
                    TL{a, t});
  }
  Tensor pw = leaf64({4}, 0.5, 3, 123);
  CHECK_GRADCHECK([](const TL& in) { return F::binary_cross_entropy_with_logits(in[0], in[1], in[2]); },
                  TL{a, t, pw});
  Tensor logits = leaf64({5, 4}, -2, 2, 124);
  Tensor target = from_vector<int64_t>({0, 3, -100, 2, 1});
  for (double eps : {0.0, 0.2}) {
    for (const char* r : {"mean", "sum", "none"}) {
      CAPTURE(eps);
      CAPTURE(r);
      CHECK_GRADCHECK([&](const TL& in) { return F::cross_entropy(in[0], target, eps, r); }, TL{logits});
    }
  }
  Tensor logits4 = leaf64({2, 3, 2, 2}, -2, 2, 125);
  Tensor target4 = from_vector<int64_t>({0, 1, 2, 1, 2, -100, 0, 0}, {2, 2, 2});
  CHECK_GRADCHECK([&](const TL& in) { return F::cross_entropy(in[0], target4, 0.1); }, TL{logits4});
}

// ---------------------------------------------------------------- loss values by hand
TEST_CASE("mse_loss values and reductions") {
  Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2}), b = from_vector<float>({0, 2, 5, 3.5}, {2, 2});
  // squared differences 1, 0, 4, 0.25
  CHECK_VALUES(vals(F::mse_loss(a, b, "none")), (std::vector<double>{1, 0, 4, 0.25}), 1e-7);
  CHECK(F::mse_loss(a, b, "sum").item() == doctest::Approx(5.25));
  CHECK(F::mse_loss(a, b).item() == doctest::Approx(5.25 / 4));
  CHECK(F::mse_loss(a, b).dim() == 0);
  CHECK_THROWS_AS(F::mse_loss(a, b, "avg"), Error);
}

TEST_CASE("binary_cross_entropy_with_logits: values, pos_weight, extreme logits, gradient at 0") {
  const std::vector<double> x{0.5, -1.0, 2.0, 0.0, -3.0, 1.5};
  const std::vector<double> y{1.0, 0.0, 1.0, 0.3, 0.0, 0.0};
  const std::vector<double> pw{2.0, 0.5, 3.0};  // over the last dim of (2, 3)
  std::vector<double> plain, weighted;
  for (size_t i = 0; i < x.size(); ++i) {
    const double p = 1.0 / (1.0 + std::exp(-x[i]));
    plain.push_back(-(y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p)));
    weighted.push_back(-(pw[i % 3] * y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p)));
  }
  Tensor xt = from_vector<double>(x, {2, 3}), yt = from_vector<double>(y, {2, 3});
  Tensor pwt = from_vector<double>(pw);
  CHECK_VALUES(vals(F::binary_cross_entropy_with_logits(xt, yt, Tensor(), "none")), plain, 1e-12);
  CHECK_VALUES(vals(F::binary_cross_entropy_with_logits(xt, yt, pwt, "none")), weighted, 1e-12);
  double sum_w = 0;
  for (double v : weighted) sum_w += v;
  CHECK(F::binary_cross_entropy_with_logits(xt, yt, pwt, "sum").item() == doctest::Approx(sum_w));
  CHECK(F::binary_cross_entropy_with_logits(xt, yt, pwt).item() == doctest::Approx(sum_w / 6));

  // stable at extreme logits (f32): -log sigmoid(-100) = 100, and the confident right answers ~ 0
  Tensor ex = from_vector<float>({100, -100, 100, -100}), ey = from_vector<float>({0, 1, 1, 0});
  const auto ev = vals(F::binary_cross_entropy_with_logits(ex, ey, Tensor(), "none"));
  CHECK(ev[0] == doctest::Approx(100));
  CHECK(ev[1] == doctest::Approx(100));
  CHECK(ev[2] == doctest::Approx(0).epsilon(1e-6));
  CHECK(ev[3] == doctest::Approx(0).epsilon(1e-6));

  // gradient sigmoid(x) - y, also at x = 0 exactly (a zero-initialised head)
  Tensor z = from_vector<double>({0.0, 0.0, 1.0}, {3});
  z.set_requires_grad(true);
  Tensor zy = from_vector<double>({1.0, 0.25, 0.0}, {3});
  F::binary_cross_entropy_with_logits(z, zy, Tensor(), "sum").backward();
  CHECK_VALUES(vals(z.grad()), (std::vector<double>{-0.5, 0.25, 1.0 / (1.0 + std::exp(-1.0))}), 1e-12);
  CHECK_THROWS_AS(F::binary_cross_entropy_with_logits(xt, from_vector<double>(y)), Error);  // shape mismatch
}

TEST_CASE("cross_entropy: values, label smoothing, ignore_index, reductions, spatial targets") {
  const std::vector<double> lg{1.0, 2.0, 0.5, -1.0,  //
                               0.0, 0.0, 0.0, 0.0,   //
                               3.0, -2.0, 1.0, 0.5};
  Tensor logits = from_vector<double>(lg, {3, 4});
  // -log softmax by hand
  std::vector<std::vector<double>> nlp(3, std::vector<double>(4));
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int c = 0; c < 4; ++c) s += std::exp(lg[static_cast<size_t>(r * 4 + c)]);
    for (int c = 0; c < 4; ++c) nlp[static_cast<size_t>(r)][static_cast<size_t>(c)] = std::log(s) - lg[static_cast<size_t>(r * 4 + c)];
  }
  Tensor target = from_vector<int64_t>({1, 3, 0});
  const std::vector<double> nll{nlp[0][1], nlp[1][3], nlp[2][0]};
  CHECK(nll[1] == doctest::Approx(std::log(4.0)));
  CHECK_VALUES(vals(F::cross_entropy(logits, target, 0.0, "none")), nll, 1e-12);
  CHECK(F::cross_entropy(logits, target, 0.0, "sum").item() == doctest::Approx(nll[0] + nll[1] + nll[2]));
  CHECK(F::cross_entropy(logits, target).item() == doctest::Approx((nll[0] + nll[1] + nll[2]) / 3));

  // label smoothing eps: (1 - eps) nll + eps * mean_c(-log p_c)
  const double eps = 0.1;
  std::vector<double> smooth;
  for (int r = 0; r < 3; ++r) {
    double m = 0;
    for (int c = 0; c < 4; ++c) m += nlp[static_cast<size_t>(r)][static_cast<size_t>(c)] / 4;
    smooth.push_back((1 - eps) * nll[static_cast<size_t>(r)] + eps * m);
  }
  CHECK_VALUES(vals(F::cross_entropy(logits, target, eps, "none")), smooth, 1e-12);
  CHECK(F::cross_entropy(logits, target, eps).item() == doctest::Approx((smooth[0] + smooth[1] + smooth[2]) / 3));

  // ignore_index: the ignored row contributes 0 and is not counted in the mean
  Tensor t_ign = from_vector<int64_t>({1, -100, 0});
  CHECK_VALUES(vals(F::cross_entropy(logits, t_ign, 0.0, "none")), (std::vector<double>{nll[0], 0.0, nll[2]}), 1e-12);
  CHECK(F::cross_entropy(logits, t_ign).item() == doctest::Approx((nll[0] + nll[2]) / 2));
  CHECK(F::cross_entropy(logits, t_ign, eps).item() == doctest::Approx((smooth[0] + smooth[2]) / 2));
  CHECK(F::cross_entropy(logits, from_vector<int64_t>({1, 3, 3}), 0.0, "mean", 3).item() ==
        doctest::Approx(nll[0]));
  CHECK(std::isnan(F::cross_entropy(logits, from_vector<int64_t>({-100, -100, -100})).item()));

  // (N, C, d) layout: the same rows laid out along a spatial dim
  Tensor spatial = logits.t().unsqueeze(0).contiguous();  // (1, 4, 3)
  Tensor st = from_vector<int64_t>({1, 3, 0}, {1, 3});
  CHECK_VALUES(vals(F::cross_entropy(spatial, st, 0.0, "none")), nll, 1e-12);
  CHECK(F::cross_entropy(spatial, st, eps).item() == doctest::Approx((smooth[0] + smooth[1] + smooth[2]) / 3));

  // a single sample (C) with a 0-dim target
  Tensor one = from_vector<double>({1.0, 2.0, 0.5, -1.0});
  CHECK(F::cross_entropy(one, scalar_tensor(1, DType::i64)).item() == doctest::Approx(nll[0]));

  // f32 agrees; bad targets are refused
  CHECK(F::cross_entropy(logits.to(DType::f32), target).item() ==
        doctest::Approx((nll[0] + nll[1] + nll[2]) / 3).epsilon(1e-6));
  CHECK_THROWS_AS(F::cross_entropy(logits, from_vector<int64_t>({1, 4, 0})), Error);
  CHECK_THROWS_AS(F::cross_entropy(logits, from_vector<int64_t>({1, 2})), Error);
  CHECK_THROWS_AS(F::cross_entropy(logits, from_vector<float>({1, 2, 0})), Error);
  CHECK_THROWS_AS(F::cross_entropy(logits, target, 1.5), Error);
}

TEST_CASE("autocast: linear runs in the autocast dtype, losses in f32, weight gradients stay f32") {
  manual_seed(3);
  Linear fc(8, 4);
  Tensor x = values({5, 8}, -1, 1, 131);
  Tensor target = from_vector<int64_t>({0, 1, 2, 3, 0});
  Tensor y, loss, mse, bce;
  {
    amp::AutocastGuard guard(DType::bf16);
    y = fc(x);
    loss = F::cross_entropy(y, target);
    mse = F::mse_loss(y, zeros({5, 4}));
    bce = F::binary_cross_entropy_with_logits(y, zeros({5, 4}));
  }
  CHECK(y.dtype() == DType::bf16);
  CHECK(loss.dtype() == DType::f32);
  CHECK(mse.dtype() == DType::f32);
  CHECK(bce.dtype() == DType::f32);
  // The reference: the linear in f64 on bf16-rounded operands, bias included, rounded once to
  // bf16 (Note [Linear rounds once]: the bias joins the f32 accumulator before the rounding). What is
  // left is the f32 accumulation of 8 exact bf16 products (~1e-7 relative), which moves a result
  // across a bf16 rounding boundary almost never; the tolerance, half a bf16 ulp (2^-8 relative),
  // fails any result one ulp (2^-7 .. 2^-8 relative) away. An operand left unrounded (2^-9 relative
  // per product), rounded to f16 instead, or the product rounded before the bias is added puts a
  // good share of the 20 outputs one ulp away.
  auto rounded = [](const Tensor& t) { return native::to(native::to(t, kCPU, DType::bf16), kCPU, DType::f64); };
  auto reference = [&](const Tensor& in, const Tensor& w, const Tensor& b) {
    return native::to(F::linear(rounded(in), rounded(w), rounded(b)), kCPU, DType::bf16);
  };
  RG_CHECK_CLOSE(y, reference(x, fc.weight(), fc.bias()), (test::Tol{0.0, std::ldexp(1.0, -8)}));
  {  // the same on 384 outputs of 32 products each
    const Tensor xb = values({16, 32}, -1, 1, 132), wb = values({24, 32}, -0.3, 0.3, 133), bb = values({24}, -1, 1, 134);
    amp::AutocastGuard guard(DType::bf16);
    const Tensor yb = F::linear(xb, wb, bb);
    CHECK(yb.dtype() == DType::bf16);
    RG_CHECK_CLOSE(yb, reference(xb, wb, bb), (test::Tol{0.0, std::ldexp(1.0, -8)}));
  }
  loss.backward();
  CHECK(fc.weight().grad().dtype() == DType::f32);
  CHECK(fc.bias().grad().dtype() == DType::f32);
}
