// nn::functional pooling and resampling: max_pool2d, avg_pool2d, adaptive_avg_pool2d and nearest
// upsample2d, differentiable over the rg::native kernels (core/native_conv.cpp).
#include <cmath>

#include "autograd/function.h"
#include "core/native.h"
#include "nn/functional.h"

namespace rg::nn::functional {

using autograd::Node;
using autograd::record;
using autograd::SavedVariable;
using autograd::set_history;
using autograd::TensorList;

namespace {

PoolParams to_params(const Pool2dOptions& o) {
  PoolParams p;
  for (int d = 0; d < 2; ++d) {
    p.kernel[d] = o.kernel[d];
    p.stride[d] = o.stride[d] == 0 ? o.kernel[d] : o.stride[d];  // PyTorch's stride=None
    p.padding[d] = o.padding[d];
    p.dilation[d] = o.dilation[d];
  }
  p.ceil_mode = o.ceil_mode;
  p.count_include_pad = o.count_include_pad;
  return p;
}

struct MaxPool2dBackward : Node {
  PoolParams p;
  Shape x_shape;
  SavedVariable indices;  // int64 flat h*W+w into each input plane
  MaxPool2dBackward(const PoolParams& params, Shape xs) : p(params), x_shape(std::move(xs)) {}
  std::string name() const override { return "MaxPool2dBackward"; }
  void release_variables() override { indices.reset(); }
  TensorList apply(TensorList&& g) override { return {native::max_pool2d_bwd(g[0], indices.unpack(this), x_shape, p)}; }
};

struct AvgPool2dBackward : Node {
  PoolParams p;
  Shape x_shape;
  AvgPool2dBackward(const PoolParams& params, Shape xs) : p(params), x_shape(std::move(xs)) {}
  std::string name() const override { return "AvgPool2dBackward"; }
  TensorList apply(TensorList&& g) override { return {native::avg_pool2d_bwd(g[0], x_shape, p)}; }
};

struct AdaptiveAvgPool2dBackward : Node {
  Shape x_shape;
  explicit AdaptiveAvgPool2dBackward(Shape xs) : x_shape(std::move(xs)) {}
  std::string name() const override { return "AdaptiveAvgPool2dBackward"; }
  TensorList apply(TensorList&& g) override { return {native::adaptive_avg_pool2d_bwd(g[0], x_shape)}; }
};

struct UpsampleNearest2dBackward : Node {
  Shape x_shape;
  explicit UpsampleNearest2dBackward(Shape xs) : x_shape(std::move(xs)) {}
  std::string name() const override { return "UpsampleNearest2dBackward"; }
  TensorList apply(TensorList&& g) override { return {native::upsample_nearest2d_bwd(g[0], x_shape)}; }
};

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o) {
  const PoolParams p = to_params(o);
  auto [y, indices] = native::max_pool2d(x, p);
  if (auto n = record<MaxPool2dBackward>({&x}, p, x.sizes())) {
    n->indices = SavedVariable(indices);
    set_history(y, n);
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o) {
  const PoolParams p = to_params(o);
  Tensor y = native::avg_pool2d(x, p);
  if (auto n = record<AvgPool2dBackward>({&x}, p, x.sizes())) set_history(y, n);
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  Tensor y = native::adaptive_avg_pool2d(x, output_size[0], output_size[1]);
  if (auto n = record<AdaptiveAvgPool2dBackward>({&x}, x.sizes())) set_history(y, n);
  return y;
}

Tensor upsample_nearest2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  Tensor y = native::upsample_nearest2d(x, output_size[0], output_size[1]);
  if (auto n = record<UpsampleNearest2dBackward>({&x}, x.sizes())) set_history(y, n);
  return y;
}

// Output size floor(in * scale_factor), as PyTorch. The source index then uses in / out, which
// equals 1 / scale_factor for the integer factors in use (Note [Nearest source index]).
Tensor upsample_nearest2d(const Tensor& x, double scale_factor) {
  OpScope scope("upsample_nearest2d", {&x});
  RG_CHECK(x.defined() && x.dim() == 4, "upsample_nearest2d: expected input with 4 dims (N, C, H, W), got ",
           x.defined() ? shape_str(x.sizes()) : std::string("undefined"));
  RG_CHECK(scale_factor > 0 && std::isfinite(scale_factor), "upsample_nearest2d: scale_factor must be positive, got ",
           scale_factor);
  const auto out = [&](int64_t in) { return static_cast<int64_t>(std::floor(static_cast<double>(in) * scale_factor)); };
  return upsample_nearest2d(x, std::array<int64_t, 2>{out(x.size(2)), out(x.size(3))});
}

}  // namespace rg::nn::functional
