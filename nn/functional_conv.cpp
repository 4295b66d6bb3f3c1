// nn::functional::conv2d: the differentiable 2-D convolution over rg::native::conv2d and its two
// gradient kernels; the bias gradient is the sum of the output gradient over (N, H, W). Under
// autocast, conv2d runs in the autocast dtype (Note [Autocast policy] in autograd/autocast.h).
#include "autograd/autocast.h"
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

ConvParams to_params(const Conv2dOptions& o) {
  ConvParams p;
  for (int d = 0; d < 2; ++d) {
    p.stride[d] = o.stride[d];
    p.padding[d] = o.padding[d];
    p.dilation[d] = o.dilation[d];
  }
  p.groups = o.groups;
  return p;
}

// Gradients for (x, weight, bias); only those whose edge is valid are computed.
struct Conv2dBackward : Node {
  ConvParams p;
  Shape x_shape, w_shape;
  SavedVariable x, w;  // x for the weight gradient, w for the input gradient
  Conv2dBackward(const ConvParams& params, Shape xs, Shape ws) : p(params), x_shape(std::move(xs)), w_shape(std::move(ws)) {}
  std::string name() const override { return "Conv2dBackward"; }
  void release_variables() override {
    x.reset();
    w.reset();
  }
  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];  // (N, Cout, Ho, Wo)
    Tensor gx, gw, gb;
    if (next_edges[0].valid()) gx = native::conv2d_bwd_input(g, w.unpack(this), x_shape, p);
    if (next_edges[1].valid()) gw = native::conv2d_bwd_weight(g, x.unpack(this), w_shape, p);
    if (next_edges[2].valid()) gb = native::sum(g, {0, 2, 3});
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o) {
  // Differentiable casts: the gradients of f32 master weights come back in f32.
  const Tensor x = amp::autocast_lower(x_in), w = amp::autocast_lower(w_in), b = amp::autocast_lower(b_in);
  const ConvParams p = to_params(o);
  Tensor y = native::conv2d(x, w, b, p);
  if (auto n = record<Conv2dBackward>({&x, &w, &b}, p, x.sizes(), w.sizes())) {
    if (n->next_edges[1].valid()) n->x = SavedVariable(x);
    if (n->next_edges[0].valid()) n->w = SavedVariable(w);
    set_history(y, n);
  }
  return y;
}

}  // namespace rg::nn::functional
