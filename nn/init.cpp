// nn::init: PyTorch's initialisation formulas (fans, gains, uniform/normal/kaiming/xavier/trunc
// normal), filling tensors in place through the Philox random_ op.
#include "nn/init.h"

#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::nn::init {

namespace {
void check_floating(const Tensor& t, const char* fn) {
  RG_CHECK(t.defined(), "nn::init::", fn, ": the tensor is undefined");
  RG_CHECK(t.is_floating_point(), "nn::init::", fn, ": needs a floating point tensor, got ", t.describe());
}

double fan_for(const Tensor& t, const std::string& mode) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  RG_CHECK(mode == "fan_in" || mode == "fan_out", "nn::init: mode must be 'fan_in' or 'fan_out', got '", mode, "'");
  return static_cast<double>(mode == "fan_in" ? fan_in : fan_out);
}

// The inverse error function on (-1, 1): M. Giles' single-precision polynomial as a start, then
// two Newton steps on erf(x) - y in double, which bring it to full double precision.
double erfinv(double y) {
  if (y <= -1.0) return -INFINITY;
  if (y >= 1.0) return INFINITY;
  double w = -std::log((1.0 - y) * (1.0 + y));
  double p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
  }
  double x = p * y;
  const double two_over_sqrt_pi = 1.1283791670955126;
  for (int i = 0; i < 2; ++i) {
    const double d = two_over_sqrt_pi * std::exp(-x * x);
    if (d == 0.0) break;
    x -= (std::erf(x) - y) / d;
  }
  return x;
}

double norm_cdf(double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); }
}  // namespace

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  RG_CHECK(t.defined() && t.dim() >= 2, "nn::init: fan in and fan out can not be computed for a tensor with fewer "
           "than 2 dimensions, got ", t.defined() ? shape_str(t.sizes()) : std::string("an undefined tensor"));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nonlinearity, std::optional<double> param) {
  if (nonlinearity == "linear" || nonlinearity == "conv1d" || nonlinearity == "conv2d" || nonlinearity == "conv3d" ||
      nonlinearity == "conv_transpose1d" || nonlinearity == "conv_transpose2d" ||
      nonlinearity == "conv_transpose3d" || nonlinearity == "sigmoid") {
    return 1.0;
  }
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    const double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nonlinearity == "selu") return 0.75;
  RG_THROW("nn::init::calculate_gain: unsupported nonlinearity '", nonlinearity, "'");
}

Tensor uniform_(const Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "uniform_");
  NoGradGuard ng;
  native::random_(t, RandomKind::Uniform, a, b, gen);
  return t;
}

Tensor normal_(const Tensor& t, double mean, double sd, Generator* gen) {
  check_floating(t, "normal_");
  RG_CHECK(sd >= 0.0, "nn::init::normal_: std must be >= 0, got ", sd);
  NoGradGuard ng;
  native::random_(t, RandomKind::Normal, mean, sd, gen);
  return t;
}

Tensor constant_(const Tensor& t, double value) {
  RG_CHECK(t.defined(), "nn::init::constant_: the tensor is undefined");
  NoGradGuard ng;
  native::fill_(t, value);
  return t;
}

Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

Tensor kaiming_uniform_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                        Generator* gen) {
  check_floating(t, "kaiming_uniform_");
  const double fan = fan_for(t, mode);
  if (fan == 0.0) return t;  // PyTorch warns and leaves a zero-element tensor alone
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / fan);
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                       Generator* gen) {
  check_floating(t, "kaiming_normal_");
  const double fan = fan_for(t, mode);
  if (fan == 0.0) return t;
  return normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(fan), gen);
}

Tensor xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_uniform_");
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double sd = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double bound = std::sqrt(3.0) * sd;
  return uniform_(t, -bound, bound, gen);
}

Tensor xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_normal_");
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)), gen);
}

Tensor trunc_normal_(const Tensor& t, double mean, double sd, double a, double b, Generator* gen) {
  check_floating(t, "trunc_normal_");
  RG_CHECK(a < b && sd > 0.0, "nn::init::trunc_normal_: needs a < b and std > 0, got a=", a, " b=", b, " std=", sd);
  NoGradGuard ng;
  if (t.numel() == 0) return t;
  // Uniform in [2 cdf(a') - 1, 2 cdf(b') - 1), then erfinv: a standard normal truncated to [a', b'].
  const double lo = 2.0 * norm_cdf((a - mean) / sd) - 1.0;
  const double hi = 2.0 * norm_cdf((b - mean) / sd) - 1.0;
  std::vector<double> u = rand(t.sizes(), TensorOptions(DType::f64), gen).to_vector<double>();
  for (double& v : u) {
    v = erfinv(lo + (hi - lo) * v) * sd * std::sqrt(2.0) + mean;
    v = std::fmin(std::fmax(v, a), b);
  }
  native::copy_(t, from_vector<double>(u, t.sizes()));
  return t;
}

}  // namespace rg::nn::init
