// nn::functional::batch_norm (PyTorch semantics: batch statistics and running-stat updates in
// training, running statistics in eval) and its backward node, built from the batchnorm_* pieces.
#include <cmath>

#include "autograd/function.h"
#include "nn/functional.h"

namespace rg::nn::functional {

// Note [Batch norm pieces]
// Batch norm is split into four per-channel pieces (rg::native::batchnorm_*, kernels in
// core/cpu/batchnorm.cpp and cuda_kernels/batchnorm.cu) so that SyncBatchNorm can insert its
// collectives between them without new kernels:
//   forward:  (mean, var) = batchnorm_stats(x)          local mean and biased variance, count n = N*S
//             invstd = 1 / sqrt(var + eps)
//             y = batchnorm_fwd(x, mean, invstd, w, b)  (x - mean) * invstd * w + b
//   backward: (sum_dy, sum_dy_xmu) = batchnorm_bwd_reduce(dy, x, mean)
//             dbias = sum_dy, dweight = sum_dy_xmu * invstd
//             dx = batchnorm_bwd_elemt(dy, x, mean, invstd, w, sum_dy / n, sum_dy_xmu / n)
// SyncBatchNorm: after batchnorm_stats, every rank contributes (n, n * mean, n * var + n * mean^2)
// (or, better conditioned, allgathers (n, mean, var) and merges them with Chan's formula); the
// global mean/var/count replace the local ones, and the running stats use the global count for
// the unbiased correction. In backward it allreduces (sum_dy, sum_dy_xmu) (sums over the global
// batch) before dividing by the global count; dweight/dbias use the local sums, as PyTorch's
// SyncBatchNorm does (DDP averages them afterwards). The eval path needs no collectives.
// Statistics are f32 (f64 for f64 inputs) whatever x's dtype, so f16/bf16 activations normalise
// with f32 statistics and f32 weights (the AMP policy of DESIGN.md §4).

namespace {

using autograd::Node;
using autograd::SavedVariable;
using autograd::TensorList;

DType stat_dtype(const Tensor& x) { return x.dtype() == DType::f64 ? DType::f64 : DType::f32; }

Tensor scaled(const Tensor& t, double s) { return native::unary(UnaryOp::Affine, t, s, 0.0); }

// 1 / sqrt(var + eps), in the statistics dtype.
Tensor invstd_of(const Tensor& var, double eps) {
  return native::unary(UnaryOp::Rsqrt, native::unary(UnaryOp::Affine, var, 1.0, eps));
}

struct BatchNormBackward : Node {
  bool training;
  int64_t count;  // values per channel (N * S)
  SavedVariable x, weight;
  Tensor mean, invstd;  // (C) statistics used by the forward (never modified in place afterwards)
  DType weight_dtype = DType::f32, bias_dtype = DType::f32;
  BatchNormBackward(bool t, int64_t n) : training(t), count(n) {}
  std::string name() const override { return "NativeBatchNormBackward"; }
  void release_variables() override {
    x.reset();
    weight.reset();
    mean = Tensor();
    invstd = Tensor();
  }

  TensorList apply(TensorList&& grads) override {
    const Tensor& gy = grads[0];
    const Tensor xv = x.unpack(this);
    const Tensor wv = weight.unpack(this);
    const bool need_x = next_edges[0].valid(), need_w = next_edges[1].valid(), need_b = next_edges[2].valid();
    Tensor gx, gw, gb;
    const auto [sum_dy, sum_dy_xmu] = native::batchnorm_bwd_reduce(gy, xv, mean);
    if (need_x) {
      if (training) {
        const double inv_n = 1.0 / static_cast<double>(count);
        gx = native::batchnorm_bwd_elemt(gy, xv, mean, invstd, wv, scaled(sum_dy, inv_n), scaled(sum_dy_xmu, inv_n));
      } else {
        // The statistics are constants: dx = dy * weight * invstd, i.e. the forward with mean 0 and no bias.
        gx = native::batchnorm_fwd(gy, zeros(mean.sizes(), TensorOptions(mean.dtype()).device(mean.device())), invstd,
                                   wv, Tensor());
      }
    }
    if (need_w) gw = native::to(native::binary(BinaryOp::Mul, sum_dy_xmu, invstd), gy.device(), weight_dtype);
    if (need_b) gb = native::to(sum_dy, gy.device(), bias_dtype);
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  Tensor mean, invstd;
  int64_t count = 0;
  const bool batch_stats = training || !running_mean.defined() || !running_var.defined();
  {
    OpScope scope("batch_norm", {&x, &running_mean, &running_var, &weight});
    RG_CHECK(x.defined(), "undefined input");
    RG_CHECK(x.dim() >= 2, "batch_norm: expected an input of at least 2 dims (N, C, *), got ", x.dim(), "-D ",
             shape_str(x.sizes()));
    RG_CHECK(is_floating(x.dtype()), "batch_norm: expected a floating point input, got ", dtype_name(x.dtype()));
    const int64_t C = x.size(1);
    for (const auto* t : {&running_mean, &running_var, &weight, &bias}) {
      if (!t->defined()) continue;
      RG_CHECK(t->dim() == 1 && t->size(0) == C, "batch_norm: running_mean, running_var, weight and bias must have ",
               "shape [", C, "] to match input ", shape_str(x.sizes()), ", got ", shape_str(t->sizes()));
      RG_CHECK(t->device() == x.device(), "Expected all tensors to be on the same device, but found at least two "
               "devices, ", x.device().str(), " and ", t->device().str(), "!");
    }
    RG_CHECK(running_mean.defined() == running_var.defined(),
             "batch_norm: running_mean and running_var must both be given or both be undefined");
    count = C == 0 ? 0 : x.numel() / C;
    if (training) {
      RG_CHECK(count > 1, "Expected more than 1 value per channel when training, got input size ",
               shape_str(x.sizes()));
    }
    if (batch_stats) {
      auto [m, var] = native::batchnorm_stats(x);
      mean = m;
      invstd = invstd_of(var, eps);
      if (training && running_mean.defined()) {
        // running = (1 - momentum) * running + momentum * batch, with the unbiased variance.
        const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
        native::binary_(BinaryOp::Axpby, running_mean, m, 1.0 - momentum, momentum);
        native::binary_(BinaryOp::Axpby, running_var, var, 1.0 - momentum, momentum * unbias);
      }
    } else {
      mean = native::contiguous(native::to(running_mean, x.device(), stat_dtype(x)));
      invstd = invstd_of(native::to(running_var, x.device(), stat_dtype(x)), eps);
      if (mean.is_same(running_mean)) mean = native::clone(mean);  // later in-place updates must not leak in
    }
  }
  Tensor y = native::batchnorm_fwd(x, mean, invstd, weight, bias);
  if (auto n = autograd::record<BatchNormBackward>({&x, &weight, &bias}, batch_stats, count)) {
    n->x = SavedVariable(x);
    n->weight = SavedVariable(weight);
    n->mean = mean;
    n->invstd = invstd;
    if (weight.defined()) n->weight_dtype = weight.dtype();
    if (bias.defined()) n->bias_dtype = bias.dtype();
    autograd::set_history(y, n);
  }
  return y;
}

}  // namespace rg::nn::functional
