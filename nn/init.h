// nn::init: in-place parameter initialisation with PyTorch's formulas (torch.nn.init). Every
// function runs under NoGradGuard, fills the tensor in place (any device, dtype, strides) and
// returns it; random ones draw from `gen`, or the default generator when null.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "core/random.h"
#include "core/tensor.h"

namespace rg::nn::init {

// (fan_in, fan_out) of a weight of at least 2 dims: size(1) * receptive field, size(0) * receptive
// field, the receptive field being the product of the dims after the first two.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

// The recommended gain for a nonlinearity: linear, conv1d/2d/3d, conv_transpose*, sigmoid: 1;
// tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2)) (slope `param`, default 0.01);
// selu: 3/4.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);

Tensor uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);   // U[a, b)
Tensor normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(const Tensor& t, double value);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);

// mode "fan_in" or "fan_out"; nonlinearity "leaky_relu" (slope a) or "relu" (or any of calculate_gain's).
// kaiming_uniform_: U(-b, b) with b = gain * sqrt(3 / fan); kaiming_normal_: N(0, gain / sqrt(fan)).
Tensor kaiming_uniform_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor kaiming_normal_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                       const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// std = gain * sqrt(2 / (fan_in + fan_out)); uniform_ on +-sqrt(3) std, normal_ with that std.
Tensor xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
Tensor xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// N(mean, std) truncated to [a, b], by inverse-CDF sampling (PyTorch's method): uniforms drawn
// on the host in f64 from the generator, mapped through erfinv, then copied in.
Tensor trunc_normal_(const Tensor& t, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0,
                     Generator* gen = nullptr);

}  // namespace rg::nn::init
