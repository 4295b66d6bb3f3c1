// The activation modules the darknet/YOLO configs name (Mish; Hardswish from the MobileNetV3-style
// heads): forward values against formulas written here, gradients in f64, printed forms.
#include <cmath>

#include "nn/layers.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nn;
using namespace rg::nntest;

TEST_CASE("Mish: x tanh(ln(1 + e^x)), its gradient and its printed form") {
  const std::vector<double> xv{-30, -3, -0.5, 0, 0.25, 2, 25};
  Tensor x = from_vector<double>(xv, {7});
  std::vector<double> want;
  for (double v : xv) want.push_back(v * std::tanh(std::log(1.0 + std::exp(v))));
  Mish m;
  CHECK_VALUES(vals(m(x)), want, 1e-14);
  CHECK(vals(m(x))[3] == 0.0);
  CHECK(m(from_vector<float>({1.0f, -1.0f}, {2})).dtype() == DType::f32);
  // d/dx = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = ln(1 + e^x): checked numerically too
  Tensor xl = leaf64({2, 5}, -4, 4, 11);
  CHECK_GRADCHECK([&m](const TL& in) { return m(in[0]); }, TL{xl});
  m(xl).sum().backward();
  const auto xs = vals(xl), gs = vals(xl.grad());
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i], t = std::tanh(std::log(1.0 + std::exp(v))), s = 1.0 / (1.0 + std::exp(-v));
    CHECK(gs[i] == doctest::Approx(t + v * s * (1.0 - t * t)).epsilon(1e-12));
  }
  CHECK(m.repr() == "Mish()");
  CHECK(m.clone()->repr() == "Mish()");
}

TEST_CASE("Hardswish: x relu6(x + 3) / 6, its gradient and its printed form") {
  // by hand: 0 at and below -3, the identity at and above 3, x (x + 3) / 6 between
  Tensor x = from_vector<double>({-5, -3, -1.5, 0, 1, 3, 4.5}, {7});
  Hardswish h;
  CHECK_VALUES(vals(h(x)), (std::vector<double>{0, 0, -0.375, 0, 2.0 / 3.0, 3, 4.5}), 1e-15);
  // gradient (2x + 3) / 6 between the kinks, 0 below, 1 above; at both kinks PyTorch takes the
  // middle formula (-0.5 at -3, 1.5 at +3)
  Tensor xl = from_vector<double>({-5, -3, -1.5, 0, 1, 3, 4.5}, {7});
  xl.set_requires_grad(true);
  h(xl).sum().backward();
  CHECK_VALUES(vals(xl.grad()), (std::vector<double>{0, -0.5, 0, 0.5, 5.0 / 6.0, 1.5, 1}), 1e-15);
  Tensor away = leaf64({3, 4}, -2.9, 2.9, 12);
  CHECK_GRADCHECK([&h](const TL& in) { return h(in[0]); }, TL{away});
  CHECK(h.repr() == "Hardswish()");
}

TEST_CASE("the darknet activations as modules in a Sequential, printed as print(model) does") {
  Sequential seq;
  seq.push_back(std::make_shared<LeakyReLU>(0.1));
  seq.push_back(std::make_shared<Mish>());
  seq.push_back(std::make_shared<SiLU>());
  seq.push_back(std::make_shared<Sigmoid>());
  seq.push_back(std::make_shared<Hardswish>());
  CHECK(seq.repr() ==
        "Sequential(\n"
        "  (0): LeakyReLU(negative_slope=0.1)\n"
        "  (1): Mish()\n"
        "  (2): SiLU()\n"
        "  (3): Sigmoid()\n"
        "  (4): Hardswish()\n"
        ")");
  Tensor x = from_vector<double>({-1.0, 2.0}, {2});
  std::vector<double> want;
  for (double v : {-1.0, 2.0}) {
    double y = v > 0 ? v : 0.1 * v;
    y = y * std::tanh(std::log(1.0 + std::exp(y)));
    y = y / (1.0 + std::exp(-y));
    y = 1.0 / (1.0 + std::exp(-y));
    y = y * std::min(std::max(y + 3.0, 0.0), 6.0) / 6.0;
    want.push_back(y);
  }
  CHECK_VALUES(vals(seq(x)), want, 1e-14);
}
