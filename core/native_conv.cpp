// rg::native convolution, pooling and nearest upsampling: argument checks (naming the op and the
// shapes), PyTorch's output-size rules, contiguous inputs, output allocation, then the kernels of
// core/cpu/conv.cpp, pool.cpp and cuda_kernels/conv.cu, pool.cu.
#include "core/native.h"

namespace rg::native {

namespace {

std::string pair_str(const int64_t (&v)[2]) { return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")"; }

void check_device(const char* op, const Tensor& a, const Tensor& b, const char* what) {
  RG_CHECK(a.device() == b.device(), op, ": expected all tensors on the same device, but the input is on ",
           a.device().str(), " and the ", what, " on ", b.device().str());
}

void check_float(const char* op, const Tensor& t, const char* what) {
  RG_CHECK(t.is_floating_point(), op, ": expected a floating point ", what, ", got ", dtype_name(t.dtype()));
}

void check_4d(const char* op, const Shape& s, const char* what, const char* dims) {
  RG_CHECK(s.size() == 4, op, ": expected ", what, " with 4 dims ", dims, ", got ", shape_str(s));
}

void check_conv_params(const char* op, const ConvParams& p) {
  RG_CHECK(p.groups >= 1, op, ": groups must be positive, got ", p.groups);
  for (int d = 0; d < 2; ++d) {
    RG_CHECK(p.stride[d] >= 1, op, ": stride must be positive, got ", pair_str(p.stride));
    RG_CHECK(p.padding[d] >= 0, op, ": padding must be non-negative, got ", pair_str(p.padding));
    RG_CHECK(p.dilation[d] >= 1, op, ": dilation must be positive, got ", pair_str(p.dilation));
  }
}

// Checks x (N, Cin, H, W) against w (Cout, Cin/groups, kh, kw) and returns y's shape.
Shape conv_out_shape(const char* op, const Shape& x, const Shape& w, const ConvParams& p) {
  check_conv_params(op, p);
  check_4d(op, x, "input", "(N, C, H, W)");
  check_4d(op, w, "weight", "(Cout, Cin/groups, kh, kw)");
  RG_CHECK(w[2] >= 1 && w[3] >= 1, op, ": weight ", shape_str(w), " has an empty kernel");
  RG_CHECK(x[1] == w[1] * p.groups, op, ": input ", shape_str(x), " has ", x[1], " channels but weight ",
           shape_str(w), " expects ", w[1] * p.groups, " (groups=", p.groups, ")");
  RG_CHECK(w[0] % p.groups == 0, op, ": weight ", shape_str(w), " has ", w[0],
           " output channels, not divisible by groups=", p.groups);
  Shape y{x[0], w[0], 0, 0};
  for (int d = 0; d < 2; ++d) {
    const int64_t padded = x[2 + d] + 2 * p.padding[d];
    const int64_t span = p.dilation[d] * (w[2 + d] - 1) + 1;
    RG_CHECK(padded >= span, op, ": input ", shape_str(x), " padded by ", pair_str(p.padding), " is ",
             x[2] + 2 * p.padding[0], "x", x[3] + 2 * p.padding[1], " per channel, smaller than the kernel ",
             w[2], "x", w[3], " (dilation ", pair_str(p.dilation), "): the output would be empty");
    y[2 + d] = (padded - span) / p.stride[d] + 1;
  }
  return y;
}

// PyTorch's pooling output size: floor or ceil, and in ceil mode the last window must start
// inside the input or its left padding.
int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dilation, bool ceil_mode) {
  const int64_t num = in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

Shape pool_out_shape(const char* op, const Shape& x, const PoolParams& p, bool use_dilation) {
  check_4d(op, x, "input", "(N, C, H, W)");
  for (int d = 0; d < 2; ++d) {
    RG_CHECK(p.kernel[d] >= 1, op, ": kernel size must be positive, got ", pair_str(p.kernel));
    RG_CHECK(p.stride[d] >= 1, op, ": stride must be positive, got ", pair_str(p.stride));
    RG_CHECK(p.dilation[d] >= 1, op, ": dilation must be positive, got ", pair_str(p.dilation));
    RG_CHECK(p.padding[d] >= 0 && p.padding[d] <= p.kernel[d] / 2, op,
             ": pad should be at most half of kernel size, but got padding ", pair_str(p.padding), " and kernel ",
             pair_str(p.kernel));
  }
  RG_CHECK(x[2] >= 1 && x[3] >= 1, op, ": input ", shape_str(x), " has an empty plane");
  Shape y{x[0], x[1], 0, 0};
  for (int d = 0; d < 2; ++d) {
    y[2 + d] = pool_out_size(x[2 + d], p.kernel[d], p.padding[d], p.stride[d], use_dilation ? p.dilation[d] : 1,
                             p.ceil_mode);
  }
  RG_CHECK(y[2] >= 1 && y[3] >= 1, op, ": input ", shape_str(x), " with kernel ", pair_str(p.kernel), ", stride ",
           pair_str(p.stride), ", padding ", pair_str(p.padding),
           use_dilation ? ", dilation " + pair_str(p.dilation) : std::string(), " gives output ", shape_str(y),
           ": output size is too small");
  return y;
}

void check_grad_shape(const char* op, const Tensor& gy, const Shape& want) {
  RG_CHECK(gy.sizes() == want, op, ": grad_output has shape ", shape_str(gy.sizes()), " but the forward output had ",
           shape_str(want));
}

Tensor alloc(const Shape& s, const Tensor& like) { return empty(s, TensorOptions(like.dtype()).device(like.device())); }

}  // namespace

// ---- convolution
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) {
  OpScope scope("conv2d", {&x, &w, &bias});
  RG_CHECK(x.defined() && w.defined(), "conv2d: input and weight must be defined");
  const Shape ys = conv_out_shape("conv2d", x.sizes(), w.sizes(), p);
  check_float("conv2d", x, "input");
  check_device("conv2d", x, w, "weight");
  RG_CHECK(w.dtype() == x.dtype(), "conv2d: input type (", dtype_name(x.dtype()), ") and weight type (",
           dtype_name(w.dtype()), ") should be the same");
  Tensor b;
  if (bias.defined()) {
    RG_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), "conv2d: bias ", shape_str(bias.sizes()),
             " should be (", w.size(0), ") for weight ", shape_str(w.sizes()));
    check_device("conv2d", x, bias, "bias");
    RG_CHECK(bias.dtype() == x.dtype(), "conv2d: input type (", dtype_name(x.dtype()), ") and bias type (",
             dtype_name(bias.dtype()), ") should be the same");
    b = contiguous(bias);
  }
  Tensor y = alloc(ys, x);
  if (y.numel() == 0) return y;
  if (x.numel() == 0 || w.size(1) == 0) {  // an empty sum per output: the bias, or zero
    if (b.defined()) copy_(y, view(b, {1, w.size(0), 1, 1}));
    else fill_(y, 0.0);
    return y;
  }
  RG_CALL_KERNEL(conv2d, x.device(), y, contiguous(x), contiguous(w), b, p);
  return y;
}

Tensor conv2d_bwd_input(const Tensor& gy, const Tensor& w, const Shape& x_shape, const ConvParams& p) {
  OpScope scope("conv2d_bwd_input", {&gy, &w});
  RG_CHECK(gy.defined() && w.defined(), "conv2d_bwd_input: grad_output and weight must be defined");
  check_grad_shape("conv2d_bwd_input", gy, conv_out_shape("conv2d_bwd_input", x_shape, w.sizes(), p));
  check_float("conv2d_bwd_input", gy, "grad_output");
  check_device("conv2d_bwd_input", gy, w, "weight");
  RG_CHECK(w.dtype() == gy.dtype(), "conv2d_bwd_input: grad_output type (", dtype_name(gy.dtype()),
           ") and weight type (", dtype_name(w.dtype()), ") should be the same");
  Tensor gx = alloc(x_shape, gy);
  if (gx.numel() == 0) return gx;
  if (gy.numel() == 0 || w.size(1) == 0) {
    fill_(gx, 0.0);
    return gx;
  }
  RG_CALL_KERNEL(conv2d_bwd_input, gy.device(), gx, contiguous(gy), contiguous(w), p);
  return gx;
}

Tensor conv2d_bwd_weight(const Tensor& gy, const Tensor& x, const Shape& w_shape, const ConvParams& p) {
  OpScope scope("conv2d_bwd_weight", {&gy, &x});
  RG_CHECK(gy.defined() && x.defined(), "conv2d_bwd_weight: grad_output and input must be defined");
  check_grad_shape("conv2d_bwd_weight", gy, conv_out_shape("conv2d_bwd_weight", x.sizes(), w_shape, p));
  check_float("conv2d_bwd_weight", gy, "grad_output");
  check_device("conv2d_bwd_weight", gy, x, "input");
  RG_CHECK(x.dtype() == gy.dtype(), "conv2d_bwd_weight: grad_output type (", dtype_name(gy.dtype()),
           ") and input type (", dtype_name(x.dtype()), ") should be the same");
  Tensor gw = alloc(w_shape, gy);
  if (gw.numel() == 0) return gw;
  if (gy.numel() == 0 || x.numel() == 0) {
    fill_(gw, 0.0);
    return gw;
  }
  RG_CALL_KERNEL(conv2d_bwd_weight, gy.device(), gw, contiguous(gy), contiguous(x), p);
  return gw;
}

// ---- pooling
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const PoolParams& p) {
  OpScope scope("max_pool2d", {&x});
  RG_CHECK(x.defined(), "max_pool2d: undefined input");
  const Shape ys = pool_out_shape("max_pool2d", x.sizes(), p, true);
  check_float("max_pool2d", x, "input");
  Tensor y = alloc(ys, x);
  Tensor ind = empty(ys, TensorOptions(DType::i64).device(x.device()));
  if (y.numel() > 0) RG_CALL_KERNEL(max_pool2d, x.device(), y, ind, contiguous(x), p);
  return {y, ind};
}

Tensor max_pool2d_bwd(const Tensor& gy, const Tensor& indices, const Shape& x_shape, const PoolParams& p) {
  OpScope scope("max_pool2d_bwd", {&gy, &indices});
  RG_CHECK(gy.defined() && indices.defined(), "max_pool2d_bwd: grad_output and indices must be defined");
  check_grad_shape("max_pool2d_bwd", gy, pool_out_shape("max_pool2d_bwd", x_shape, p, true));
  check_float("max_pool2d_bwd", gy, "grad_output");
  RG_CHECK(indices.dtype() == DType::i64 && indices.sizes() == gy.sizes(), "max_pool2d_bwd: indices ",
           indices.describe(), " should be int64 of grad_output's shape ", shape_str(gy.sizes()));
  check_device("max_pool2d_bwd", gy, indices, "indices");
  Tensor gx = alloc(x_shape, gy);
  if (gx.numel() > 0) RG_CALL_KERNEL(max_pool2d_bwd, gy.device(), gx, contiguous(gy), contiguous(indices), p);
  return gx;
}

Tensor avg_pool2d(const Tensor& x, const PoolParams& p) {
  OpScope scope("avg_pool2d", {&x});
  RG_CHECK(x.defined(), "avg_pool2d: undefined input");
  const Shape ys = pool_out_shape("avg_pool2d", x.sizes(), p, false);
  check_float("avg_pool2d", x, "input");
  Tensor y = alloc(ys, x);
  if (y.numel() > 0) RG_CALL_KERNEL(avg_pool2d, x.device(), y, contiguous(x), p);
  return y;
}

Tensor avg_pool2d_bwd(const Tensor& gy, const Shape& x_shape, const PoolParams& p) {
  OpScope scope("avg_pool2d_bwd", {&gy});
  RG_CHECK(gy.defined(), "avg_pool2d_bwd: undefined grad_output");
  check_grad_shape("avg_pool2d_bwd", gy, pool_out_shape("avg_pool2d_bwd", x_shape, p, false));
  check_float("avg_pool2d_bwd", gy, "grad_output");
  Tensor gx = alloc(x_shape, gy);
  if (gx.numel() > 0) RG_CALL_KERNEL(avg_pool2d_bwd, gy.device(), gx, contiguous(gy), p);
  return gx;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  OpScope scope("adaptive_avg_pool2d", {&x});
  RG_CHECK(x.defined(), "adaptive_avg_pool2d: undefined input");
  check_4d("adaptive_avg_pool2d", x.sizes(), "input", "(N, C, H, W)");
  check_float("adaptive_avg_pool2d", x, "input");
  RG_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size must be positive, got (", out_h, ", ",
           out_w, ")");
  RG_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "adaptive_avg_pool2d: input ", shape_str(x.sizes()),
           " has an empty plane");
  Tensor y = alloc({x.size(0), x.size(1), out_h, out_w}, x);
  if (y.numel() > 0) RG_CALL_KERNEL(adaptive_avg_pool2d, x.device(), y, contiguous(x));
  return y;
}

Tensor adaptive_avg_pool2d_bwd(const Tensor& gy, const Shape& x_shape) {
  OpScope scope("adaptive_avg_pool2d_bwd", {&gy});
  RG_CHECK(gy.defined(), "adaptive_avg_pool2d_bwd: undefined grad_output");
  check_4d("adaptive_avg_pool2d_bwd", x_shape, "input", "(N, C, H, W)");
  check_4d("adaptive_avg_pool2d_bwd", gy.sizes(), "grad_output", "(N, C, Ho, Wo)");
  check_float("adaptive_avg_pool2d_bwd", gy, "grad_output");
  RG_CHECK(gy.size(0) == x_shape[0] && gy.size(1) == x_shape[1] && gy.size(2) >= 1 && gy.size(3) >= 1 &&
               x_shape[2] >= 1 && x_shape[3] >= 1,
           "adaptive_avg_pool2d_bwd: grad_output ", shape_str(gy.sizes()), " does not fit input ", shape_str(x_shape));
  Tensor gx = alloc(x_shape, gy);
  if (gx.numel() > 0) RG_CALL_KERNEL(adaptive_avg_pool2d_bwd, gy.device(), gx, contiguous(gy));
  return gx;
}

// ---- nearest upsampling
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  OpScope scope("upsample_nearest2d", {&x});
  RG_CHECK(x.defined(), "upsample_nearest2d: undefined input");
  check_4d("upsample_nearest2d", x.sizes(), "input", "(N, C, H, W)");
  check_float("upsample_nearest2d", x, "input");
  RG_CHECK(out_h >= 1 && out_w >= 1, "upsample_nearest2d: output size must be positive, got (", out_h, ", ", out_w,
           ")");
  RG_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "upsample_nearest2d: input ", shape_str(x.sizes()),
           " has an empty plane");
  Tensor y = alloc({x.size(0), x.size(1), out_h, out_w}, x);
  if (y.numel() > 0) RG_CALL_KERNEL(upsample_nearest2d, x.device(), y, contiguous(x));
  return y;
}

Tensor upsample_nearest2d_bwd(const Tensor& gy, const Shape& x_shape) {
  OpScope scope("upsample_nearest2d_bwd", {&gy});
  RG_CHECK(gy.defined(), "upsample_nearest2d_bwd: undefined grad_output");
  check_4d("upsample_nearest2d_bwd", x_shape, "input", "(N, C, H, W)");
  check_4d("upsample_nearest2d_bwd", gy.sizes(), "grad_output", "(N, C, Ho, Wo)");
  check_float("upsample_nearest2d_bwd", gy, "grad_output");
  RG_CHECK(gy.size(0) == x_shape[0] && gy.size(1) == x_shape[1] && gy.size(2) >= 1 && gy.size(3) >= 1 &&
               x_shape[2] >= 1 && x_shape[3] >= 1,
           "upsample_nearest2d_bwd: grad_output ", shape_str(gy.sizes()), " does not fit input ", shape_str(x_shape));
  Tensor gx = alloc(x_shape, gy);
  if (gx.numel() > 0) RG_CALL_KERNEL(upsample_nearest2d_bwd, gy.device(), gx, contiguous(gy));
  return gx;
}

}  // namespace rg::native
