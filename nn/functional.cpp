// nn::functional::linear (through rg::matmul, so autocast picks its dtype) and inverted dropout
// with a Philox Bernoulli mask. Convolution, norms, pooling and losses have their own files.
#include "nn/functional.h"

#include "autograd/autocast.h"

namespace rg::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  OpScope scope("linear", {&x, &weight, &bias});
  RG_CHECK(x.defined() && weight.defined(), "linear: input and weight must be defined");
  RG_CHECK(weight.dim() == 2, "linear: weight must be (out_features, in_features), got ", shape_str(weight.sizes()));
  RG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.sizes()),
           " does not end in in_features=", weight.size(1));
  RG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear: bias ",
           bias.defined() ? shape_str(bias.sizes()) : std::string(), " does not match out_features=", weight.size(0));
  // Under autocast all three operands are lowered here (Note [Autocast policy]): the weight leaf
  // itself is cast, so the cast cache serves it, rather than its transposed view inside matmul.
  const Tensor xa = amp::autocast_lower(x), wa = amp::autocast_lower(weight);
  // (..., in) is folded to (rows, in): one gemm, and the weight gradient needs no batch reduction.
  // With a bias it is one addmm (Note [Linear rounds once]).
  Shape out_shape = xa.sizes();
  out_shape.back() = weight.size(0);
  const Tensor x2 = xa.dim() == 2 ? xa : xa.reshape({-1, xa.size(-1)});  // (rows, in)
  Tensor y;
  if (bias.defined()) {
    Tensor b = amp::autocast_lower(bias);
    if (b.dtype() != xa.dtype()) b = b.to(xa.dtype());  // the product's dtype wins, as PyTorch's linear
    y = addmm(b, x2, wa.t());                            // (rows, out)
  } else {
    y = matmul(x2, wa.t());
  }
  if (xa.dim() != 2) y = y.reshape(out_shape);
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  OpScope scope("dropout", {&x});
  RG_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability has to be between 0 and 1, but got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);  // all dropped; still part of the graph (zero gradient)
  RG_CHECK(x.is_floating_point(), "dropout: needs a floating point input, got ", x.describe());
  Tensor mask = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));  // 1 = kept
  native::random_(mask, RandomKind::Bernoulli, 1.0 - p, 0.0, gen);
  native::unary_(UnaryOp::Affine, mask, 1.0 / (1.0 - p), 0.0);  // kept values scaled by 1/(1-p)
  return mul(x, mask);
}

}  // namespace rg::nn::functional
