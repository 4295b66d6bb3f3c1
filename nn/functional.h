// nn::functional: the differentiable neural-network ops (torch.nn.functional): convolution,
// batch norm, pooling, upsampling, dropout, linear, and the losses. Layers in nn/layers.h call these.
#pragma once

#include <array>
#include <cstdint>

#include "autograd/ops.h"
#include "core/random.h"

namespace rg::nn::functional {

// ---- convolution (nn/functional_conv.cpp; kernels core/cpu/conv.cpp, cuda_kernels/conv.cu)
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
// x (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), bias (Cout) or undefined -> (N, Cout, Ho, Wo)
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o = {});

// x (..., in), weight (out, in), bias (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- batch norm (nn/functional_norm.cpp)
// x (N, C, ...). Training: batch statistics (biased variance to normalise), running stats updated
// in place with momentum and the unbiased variance; eval: running stats. weight/bias may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// ---- pooling and resampling (nn/functional_pool.cpp)
struct Pool2dOptions {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{0, 0};  // 0 = kernel size, as PyTorch's default stride=None
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};  // max pool only
  bool ceil_mode = false;
  bool count_include_pad = true;          // avg pool only
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o);                      // (N, C, H, W)
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o);                      // (N, C, H, W)
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);  // (N, C, H, W)
Tensor upsample_nearest2d(const Tensor& x, std::array<int64_t, 2> output_size);   // (N, C, H, W)
Tensor upsample_nearest2d(const Tensor& x, double scale_factor);

// ---- dropout (inverted: kept values are scaled by 1/(1-p) in training)
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ---- losses (nn/functional_loss.cpp). reduction: "mean", "sum" or "none".
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");
// Numerically stable; pos_weight (C) broadcast over the last dim, or undefined.
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const Tensor& pos_weight = {},
                                        const std::string& reduction = "mean");
// input (N, C) or (N, C, d...) logits; target (N) or (N, d...) int64 class indices; ignore_index
// entries contribute nothing (and do not count in the mean); label smoothing as PyTorch.
Tensor cross_entropy(const Tensor& input, const Tensor& target, double label_smoothing = 0.0,
                     const std::string& reduction = "mean", int64_t ignore_index = -100);

}  // namespace rg::nn::functional
