// Differentiable reductions: sum, mean, var, std, amax/amin, max/min (with and without a dim),
// arg-reductions (not differentiable), softmax/log_softmax and the 2-norm. Backward nodes bring
// the gradient back to keepdim form and broadcast it over the reduced dims.
#include <algorithm>
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/function.h"
#include "autograd/ops.h"

namespace rg {

using autograd::Node;
using autograd::record;
using autograd::SavedVariable;
using autograd::set_history;
using autograd::TensorList;

namespace {

// The reduced dims, wrapped and sorted; empty means all dims (native::reduce's convention).
Shape reduced_dims(const Shape& dims, int64_t ndim, const char* op) {
  Shape out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  return out;
}

// `in` with every reduced dim set to 1: the keepdim shape of the reduction.
Shape kept_shape(const Shape& in, const Shape& dims) {
  Shape kept = in;
  for (int64_t d : dims) kept[static_cast<size_t>(d)] = 1;
  return kept;
}

int64_t reduced_count(const Shape& in, const Shape& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= in[static_cast<size_t>(d)];
  return n;
}

// A reduction's output or gradient in keepdim form, so that it broadcasts against the input.
Tensor keepdim_form(const Tensor& t, const Shape& kept) {
  return t.sizes() == kept ? t : native::reshape(t, kept);
}

Tensor scaled(const Tensor& t, double s) { return native::unary(UnaryOp::Affine, t, s, 0.0); }

Tensor zero_like_scalar(const Tensor& like) { return zeros({}, TensorOptions(like.dtype()).device(like.device())); }

// Base for nodes that broadcast a reduction's gradient back over the input.
struct ReduceNodeBase : Node {
  Shape in_shape, kept;  // (input), (input with reduced dims = 1)
  ReduceNodeBase(Shape in, Shape k) : in_shape(std::move(in)), kept(std::move(k)) {}
  Tensor grad_kept(const Tensor& g) const { return keepdim_form(g, kept); }
};

// ---- sum / mean: the gradient, expanded (a stride-0 view: nothing is copied).
struct SumBackward : ReduceNodeBase {
  double scale;  // 1 for sum, 1/N for mean
  const char* label;
  SumBackward(Shape in, Shape k, double s, const char* l)
      : ReduceNodeBase(std::move(in), std::move(k)), scale(s), label(l) {}
  std::string name() const override { return label; }
  TensorList apply(TensorList&& g) override {
    Tensor gk = grad_kept(g[0]);
    if (scale != 1.0) gk = scaled(gk, scale);
    return {native::expand(gk, in_shape)};
  }
};

// ---- var / std: d var / dx = 2 (x - mean) / (N - correction); d std = d var / (2 std).
struct VarBackward : ReduceNodeBase {
  Shape dims;
  int64_t correction;
  bool is_std;
  SavedVariable x, out;  // out: std only
  VarBackward(Shape in, Shape k, Shape d, int64_t c, bool s)
      : ReduceNodeBase(std::move(in), std::move(k)), dims(std::move(d)), correction(c), is_std(s) {}
  std::string name() const override { return is_std ? "StdBackward" : "VarBackward"; }
  void release_variables() override {
    x.reset();
    out.reset();
  }
  TensorList apply(TensorList&& g) override {
    const Tensor xv = x.unpack(this);
    const double denom = static_cast<double>(reduced_count(in_shape, dims) - correction);
    const Tensor centered = native::binary(BinaryOp::Sub, xv, native::mean(xv, dims, /*keepdim=*/true));
    Tensor coef;  // (kept)
    if (is_std) {  // g / (denom * std)
      coef = native::binary(BinaryOp::Div, grad_kept(g[0]), scaled(keepdim_form(out.unpack(this), kept), denom));
    } else {
      coef = scaled(grad_kept(g[0]), 2.0 / denom);
    }
    return {native::binary(BinaryOp::Mul, centered, coef)};
  }
};

// ---- amax / amin and max() / min() of all elements: the gradient is split evenly among the
// elements equal to the extreme value.
struct AmaxBackward : ReduceNodeBase {
  Shape dims;
  bool is_max;
  SavedVariable x, out;
  AmaxBackward(Shape in, Shape k, Shape d, bool m)
      : ReduceNodeBase(std::move(in), std::move(k)), dims(std::move(d)), is_max(m) {}
  std::string name() const override { return is_max ? "AmaxBackward" : "AminBackward"; }
  void release_variables() override {
    x.reset();
    out.reset();
  }
  TensorList apply(TensorList&& g) override {
    const Tensor xv = x.unpack(this);
    const Tensor hit = native::binary(BinaryOp::Eq, xv, keepdim_form(out.unpack(this), kept));  // bool (in)
    const Tensor hitf = native::to(hit, xv.device(), g[0].dtype());
    const Tensor count = native::sum(hitf, dims, /*keepdim=*/true);  // (kept), >= 1
    const Tensor share = native::binary(BinaryOp::Div, grad_kept(g[0]), count);
    return {native::binary(BinaryOp::Mul, hitf, share)};
  }
};

// ---- max / min along a dim: the gradient goes to the selected index only.
struct MaxDimBackward : ReduceNodeBase {
  int64_t dim;
  bool is_max;
  SavedVariable indices;  // int64 (kept)
  MaxDimBackward(Shape in, Shape k, int64_t d, bool m)
      : ReduceNodeBase(std::move(in), std::move(k)), dim(d), is_max(m) {}
  std::string name() const override { return is_max ? "MaxBackward" : "MinBackward"; }
  void release_variables() override { indices.reset(); }
  TensorList apply(TensorList&& g) override {
    const Tensor gk = grad_kept(g[0]);
    Tensor gx = zeros(in_shape, TensorOptions(gk.dtype()).device(gk.device()));
    native::scatter_add_(gx, dim, keepdim_form(indices.unpack(this), kept), gk);
    return {gx};
  }
};

// ---- softmax / log_softmax
struct SoftmaxBackward : Node {
  int64_t dim;
  bool log;
  SavedVariable out;
  SoftmaxBackward(int64_t d, bool l) : dim(d), log(l) {}
  std::string name() const override { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
  void release_variables() override { out.reset(); }
  TensorList apply(TensorList&& g) override { return {native::softmax_bwd(g[0], out.unpack(this), dim, log)}; }
};

// ---- 2-norm: d |x| / dx = x / |x|, and 0 where |x| = 0 (the subgradient PyTorch picks).
struct NormBackward : Node {
  SavedVariable x, out;
  std::string name() const override { return "NormBackward"; }
  void release_variables() override {
    x.reset();
    out.reset();
  }
  TensorList apply(TensorList&& g) override {
    const Tensor xv = x.unpack(this), nv = out.unpack(this);  // (in), ()
    const Tensor zero = zero_like_scalar(g[0]);
    const Tensor is_zero = native::binary(BinaryOp::Eq, nv, zero);
    const Tensor coef = native::where(is_zero, zero, native::binary(BinaryOp::Div, g[0], nv));  // ()
    return {native::binary(BinaryOp::Mul, xv, coef)};
  }
};

Tensor amax_impl(const Tensor& x, const Shape& dims_in, bool keepdim, bool is_max) {
  Tensor out = native::reduce(is_max ? ReduceOp::Max : ReduceOp::Min, x, dims_in, keepdim);
  if (autograd::needs_grad({&x})) {
    const Shape dims = reduced_dims(dims_in, x.dim(), is_max ? "amax" : "amin");
    if (auto n = record<AmaxBackward>({&x}, x.sizes(), kept_shape(x.sizes(), dims), dims, is_max)) {
      n->x = SavedVariable(x);
      n->out = SavedVariable(out);
      set_history(out, n);
    }
  }
  return out;
}

std::pair<Tensor, Tensor> max_dim_impl(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* op = is_max ? "max" : "min";
  if (x.dim() == 0) {  // a 0-dim tensor: dim 0 or -1 selects the only element
    {
      OpScope scope(op, {&x});
      wrap_dim(dim, 1, op);
    }
    Tensor values = native::clone(x);
    if (auto n = record<SumBackward>({&x}, x.sizes(), x.sizes(), 1.0, is_max ? "MaxBackward" : "MinBackward")) {
      set_history(values, n);
    }
    return {values, zeros({}, TensorOptions(DType::i64).device(x.device()))};
  }
  const int64_t d = wrap_dim(dim, x.dim(), op);
  Tensor values = native::reduce(is_max ? ReduceOp::Max : ReduceOp::Min, x, {d}, keepdim);
  Tensor indices = native::reduce(is_max ? ReduceOp::Argmax : ReduceOp::Argmin, x, {d}, keepdim);
  if (auto n = record<MaxDimBackward>({&x}, x.sizes(), kept_shape(x.sizes(), {d}), d, is_max)) {
    n->indices = SavedVariable(indices);
    set_history(values, n);
  }
  return {values, indices};
}

Tensor softmax_impl(const Tensor& x_in, int64_t dim, bool log) {
  const Tensor x = amp::autocast_f32(x_in);  // Note [Autocast policy]
  Tensor out = native::softmax(x, dim, log);
  if (auto n = record<SoftmaxBackward>({&x}, dim, log)) {
    n->out = SavedVariable(out);
    set_history(out, n);
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x_in, const Shape& dims_in, bool keepdim) {
  const Tensor x = amp::autocast_f32(x_in);  // Note [Autocast policy]
  Tensor out = native::sum(x, dims_in, keepdim);
  if (autograd::needs_grad({&x})) {
    const Shape dims = reduced_dims(dims_in, x.dim(), "sum");
    if (auto n = record<SumBackward>({&x}, x.sizes(), kept_shape(x.sizes(), dims), 1.0, "SumBackward")) set_history(out, n);
  }
  return out;
}

Tensor mean(const Tensor& x_in, const Shape& dims_in, bool keepdim) {
  const Tensor x = amp::autocast_f32(x_in);  // Note [Autocast policy]
  Tensor out = native::mean(x, dims_in, keepdim);
  if (autograd::needs_grad({&x})) {
    const Shape dims = reduced_dims(dims_in, x.dim(), "mean");
    const double n_red = static_cast<double>(reduced_count(x.sizes(), dims));
    if (auto n = record<SumBackward>({&x}, x.sizes(), kept_shape(x.sizes(), dims), 1.0 / n_red,
                                       "MeanBackward")) {
      set_history(out, n);
    }
  }
  return out;
}

Tensor var(const Tensor& x, const Shape& dims_in, int64_t correction, bool keepdim) {
  Tensor out = native::reduce(ReduceOp::Var, x, dims_in, keepdim, correction);
  if (autograd::needs_grad({&x})) {
    const Shape dims = reduced_dims(dims_in, x.dim(), "var");
    if (auto n = record<VarBackward>({&x}, x.sizes(), kept_shape(x.sizes(), dims), dims, correction, false)) {
      n->x = SavedVariable(x);
      set_history(out, n);
    }
  }
  return out;
}

Tensor std(const Tensor& x, const Shape& dims_in, int64_t correction, bool keepdim) {
  Tensor out = native::unary(UnaryOp::Sqrt, native::reduce(ReduceOp::Var, x, dims_in, keepdim, correction));
  if (autograd::needs_grad({&x})) {
    const Shape dims = reduced_dims(dims_in, x.dim(), "std");
    if (auto n = record<VarBackward>({&x}, x.sizes(), kept_shape(x.sizes(), dims), dims, correction, true)) {
      n->x = SavedVariable(x);
      n->out = SavedVariable(out);
      set_history(out, n);
    }
  }
  return out;
}

Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) { return amax_impl(x, dims, keepdim, true); }
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) { return amax_impl(x, dims, keepdim, false); }
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return max_dim_impl(x, dim, keepdim, true); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return max_dim_impl(x, dim, keepdim, false); }
Tensor max(const Tensor& x) { return amax_impl(x, {}, false, true); }
Tensor min(const Tensor& x) { return amax_impl(x, {}, false, false); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return native::reduce(ReduceOp::Argmax, x, {dim}, keepdim); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return native::reduce(ReduceOp::Argmin, x, {dim}, keepdim); }

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor norm(const Tensor& x_in) {
  const Tensor x = amp::autocast_f32(x_in);  // Note [Autocast policy]
  Tensor out;
  {
    OpScope scope("norm", {&x});
    RG_CHECK(is_floating(x.dtype()), "norm(): input dtype should be floating point, got ", dtype_name(x.dtype()));
    // half types square and sum in f32: a norm above 256 would overflow an f16 sum of squares
    const Tensor xs = is_reduced_float(x.dtype()) ? native::to(x, x.device(), DType::f32) : x;
    out = native::unary(UnaryOp::Sqrt, native::sum(native::unary(UnaryOp::Square, xs)));
    out = native::to(out, x.device(), x.dtype());
  }
  if (auto n = record<NormBackward>({&x})) {
    n->x = SavedVariable(x);
    n->out = SavedVariable(out);
    set_history(out, n);
  }
  return out;
}

}  // namespace rg
