// Batch norm pieces without autograd: argument checks (channel counts, dtypes, devices), contiguous
// operands, output allocation, then the batchnorm_* kernels. Note [Batch norm pieces] in
// nn/functional_norm.cpp says how they fit together.
#include "core/native.h"

namespace rg::native {

namespace {

// Per-channel tensors are f32 for f16/bf16/f32 inputs and f64 for f64 inputs.
DType stat_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

void check_input(const Tensor& x, const char* what = "input") {
  RG_CHECK(x.defined(), "undefined ", what);
  RG_CHECK(is_floating(x.dtype()), "batch norm expects a floating point ", what, ", got ", dtype_name(x.dtype()));
  RG_CHECK(x.dim() >= 2, "batch norm expects an (N, C, *) ", what, " of at least 2 dims, got ", x.dim(), "-D ",
           shape_str(x.sizes()));
}

// A per-channel operand: (C) on x's device. Converted to the statistics dtype when it has another
// floating dtype (f16 weights of a model converted with to(f16), say).
Tensor channel_arg(const Tensor& t, const Tensor& x, const char* name, bool optional) {
  if (!t.defined()) {
    RG_CHECK(optional, name, " is required");
    return t;
  }
  const int64_t C = x.size(1);
  RG_CHECK(t.dim() == 1 && t.size(0) == C, name, " should have shape [", C, "] (the channels of input ",
           shape_str(x.sizes()), "), got ", shape_str(t.sizes()));
  RG_CHECK(t.device() == x.device(), "Expected all tensors to be on the same device, but found at least two devices, ",
           x.device().str(), " and ", t.device().str(), " (", name, ")");
  RG_CHECK(is_floating(t.dtype()), name, " must be floating point, got ", dtype_name(t.dtype()));
  return contiguous(to(t, t.device(), stat_dtype(x.dtype())));
}

Tensor stat_empty(const Tensor& x) { return empty({x.size(1)}, TensorOptions(stat_dtype(x.dtype())).device(x.device())); }

void check_like(const Tensor& g, const Tensor& x, const char* name) {
  RG_CHECK(g.defined(), "undefined ", name);
  RG_CHECK(g.sizes() == x.sizes(), name, " has shape ", shape_str(g.sizes()), " but input has ", shape_str(x.sizes()));
  RG_CHECK(g.device() == x.device(), "Expected all tensors to be on the same device, but found at least two devices, ",
           x.device().str(), " and ", g.device().str(), " (", name, ")");
}

}  // namespace

std::pair<Tensor, Tensor> batchnorm_stats(const Tensor& x) {
  OpScope scope("batchnorm_stats", {&x});
  check_input(x);
  const int64_t per_channel = x.size(1) == 0 ? 0 : x.numel() / x.size(1);
  RG_CHECK(per_channel > 0, "batch norm statistics need at least one value per channel, got input of shape ",
           shape_str(x.sizes()));
  const Tensor xc = contiguous(x);
  Tensor mean = stat_empty(x), var = stat_empty(x);
  RG_CALL_KERNEL(batchnorm_stats, x.device(), mean, var, xc);
  return {mean, var};
}

Tensor batchnorm_fwd(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                     const Tensor& bias) {
  OpScope scope("batchnorm_fwd", {&x, &mean, &invstd, &weight});
  check_input(x);
  const Tensor m = channel_arg(mean, x, "mean", false), is = channel_arg(invstd, x, "invstd", false);
  const Tensor w = channel_arg(weight, x, "weight", true), b = channel_arg(bias, x, "bias", true);
  const Tensor xc = contiguous(x);
  Tensor y = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel() > 0) RG_CALL_KERNEL(batchnorm_fwd, x.device(), y, xc, m, is, w, b);
  return y;
}

std::pair<Tensor, Tensor> batchnorm_bwd_reduce(const Tensor& gy, const Tensor& x, const Tensor& mean) {
  OpScope scope("batchnorm_bwd_reduce", {&gy, &x, &mean});
  check_input(x);
  check_like(gy, x, "grad_output");
  const Tensor m = channel_arg(mean, x, "mean", false);
  const Tensor xc = contiguous(x), gc = contiguous(to(gy, x.device(), x.dtype()));
  Tensor sum_dy = stat_empty(x), sum_dy_xmu = stat_empty(x);
  if (x.numel() > 0) {
    RG_CALL_KERNEL(batchnorm_bwd_reduce, x.device(), sum_dy, sum_dy_xmu, gc, xc, m);
  } else {
    fill_(sum_dy, 0.0);
    fill_(sum_dy_xmu, 0.0);
  }
  return {sum_dy, sum_dy_xmu};
}

Tensor batchnorm_bwd_elemt(const Tensor& gy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                           const Tensor& weight, const Tensor& mean_dy, const Tensor& mean_dy_xmu) {
  OpScope scope("batchnorm_bwd_elemt", {&gy, &x, &mean, &invstd});
  check_input(x);
  check_like(gy, x, "grad_output");
  const Tensor m = channel_arg(mean, x, "mean", false), is = channel_arg(invstd, x, "invstd", false);
  const Tensor w = channel_arg(weight, x, "weight", true);
  const Tensor a = channel_arg(mean_dy, x, "mean_dy", false), k = channel_arg(mean_dy_xmu, x, "mean_dy_xmu", false);
  const Tensor xc = contiguous(x), gc = contiguous(to(gy, x.device(), x.dtype()));
  Tensor gx = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel() > 0) RG_CALL_KERNEL(batchnorm_bwd_elemt, x.device(), gx, gc, xc, m, is, w, a, k);
  return gx;
}

}  // namespace rg::native
