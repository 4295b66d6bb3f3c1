// The differentiable Tensor methods (Note [Tensor methods]): views with their backward nodes,
// copies and casts, whole-tensor sum/mean, backward(), hooks.
#include <algorithm>

#include "autograd/engine.h"
#include "autograd/function.h"
#include "autograd/ops.h"

namespace rg {

using autograd::Node;
using autograd::record;
using autograd::set_history;
using autograd::TensorList;

namespace {

// reshape-like views: the gradient is reshaped back.
struct ReshapeBackward : Node {
  Shape in_shape;
  explicit ReshapeBackward(Shape s) : in_shape(std::move(s)) {}
  std::string name() const override { return "ViewBackward"; }
  TensorList apply(TensorList&& g) override { return {native::reshape(g[0], in_shape)}; }
};

struct PermuteBackward : Node {
  Shape inverse;
  explicit PermuteBackward(Shape inv) : inverse(std::move(inv)) {}
  std::string name() const override { return "PermuteBackward"; }
  TensorList apply(TensorList&& g) override { return {native::permute(g[0], inverse)}; }
};

// slice/narrow/select: the gradient lands in the matching slice of a zero tensor.
struct SliceBackward : Node {
  Shape in_shape;
  int64_t dim, start, end, step;
  bool squeezed;  // select: the dim was removed
  SliceBackward(Shape s, int64_t d, int64_t b, int64_t e, int64_t st, bool sq)
      : in_shape(std::move(s)), dim(d), start(b), end(e), step(st), squeezed(sq) {}
  std::string name() const override { return squeezed ? "SelectBackward" : "SliceBackward"; }
  TensorList apply(TensorList&& g) override {
    Tensor out = zeros(in_shape, TensorOptions(g[0].dtype()).device(g[0].device()));
    const Tensor src = squeezed ? native::unsqueeze(g[0], dim) : g[0];
    native::copy_(native::slice(out, dim, start, end, step), src);
    return {out};
  }
};

struct ExpandBackward : Node {
  Shape in_shape;
  explicit ExpandBackward(Shape s) : in_shape(std::move(s)) {}
  std::string name() const override { return "ExpandBackward"; }
  TensorList apply(TensorList&& g) override { return {native::sum_to(g[0], in_shape)}; }
};

struct IdentityBackward : Node {
  std::string label;
  explicit IdentityBackward(std::string l) : label(std::move(l)) {}
  std::string name() const override { return label; }
  TensorList apply(TensorList&& g) override { return {g[0]}; }
};

struct ToBackward : Node {
  Device device;
  DType dtype;
  ToBackward(Device d, DType t) : device(d), dtype(t) {}
  std::string name() const override { return "ToCopyBackward"; }
  TensorList apply(TensorList&& g) override { return {native::to(g[0], device, dtype)}; }
};

Tensor with_reshape_grad(const Tensor& self, Tensor out) {
  if (auto n = record<ReshapeBackward>({&self}, self.sizes())) set_history(out, n);
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const { return with_reshape_grad(*this, native::view(*this, shape)); }
Tensor Tensor::reshape(const Shape& shape) const { return with_reshape_grad(*this, native::reshape(*this, shape)); }
Tensor Tensor::flatten(int64_t start, int64_t end) const {
  return with_reshape_grad(*this, native::flatten(*this, start, end));
}
Tensor Tensor::squeeze(int64_t d) const { return with_reshape_grad(*this, native::squeeze(*this, d)); }
Tensor Tensor::unsqueeze(int64_t d) const { return with_reshape_grad(*this, native::unsqueeze(*this, d)); }

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Tensor out = native::transpose(*this, d0, d1);
  if (dim() > 0) {
    Shape inv(static_cast<size_t>(dim()));
    for (int64_t i = 0; i < dim(); ++i) inv[i] = i;
    std::swap(inv[wrap_dim(d0, dim())], inv[wrap_dim(d1, dim())]);
    if (auto n = record<PermuteBackward>({this}, inv)) set_history(out, n);
  }
  return out;
}
Tensor Tensor::t() const {
  RG_CHECK(dim() <= 2, "t() expects a tensor with <= 2 dimensions, but self is ", dim(), "D");
  return dim() < 2 ? *this : transpose(0, 1);
}
Tensor Tensor::permute(const Shape& dims) const {
  Tensor out = native::permute(*this, dims);
  Shape inv(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inv[wrap_dim(dims[i], dim())] = static_cast<int64_t>(i);
  if (auto n = record<PermuteBackward>({this}, inv)) set_history(out, n);
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  Tensor out = native::slice(*this, d, start, end, step);
  const int64_t wd = wrap_dim(d, dim(), "slice");
  const int64_t n = size(wd);  // the same clamping as native::slice
  int64_t b = start < 0 ? start + n : start, e = end < 0 ? end + n : end;
  b = std::clamp<int64_t>(b, 0, n);
  e = std::clamp<int64_t>(e, b, n);
  if (auto node = record<SliceBackward>({this}, sizes(), wd, b, e, step, false)) set_history(out, node);
  return out;
}
Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  const int64_t wd = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += size(wd);
  native::narrow(*this, wd, start, length);  // validates the range with narrow's message
  return slice(wd, start, start + length, 1);
}
Tensor Tensor::select(int64_t d, int64_t index) const {
  Tensor out = native::select(*this, d, index);
  const int64_t wd = wrap_dim(d, dim());
  const int64_t i = index < 0 ? index + size(wd) : index;
  if (auto n = record<SliceBackward>({this}, sizes(), wd, i, i + 1, 1, true)) set_history(out, n);
  return out;
}

Tensor Tensor::expand(const Shape& shape) const {
  Tensor out = native::expand(*this, shape);
  if (auto n = record<ExpandBackward>({this}, sizes())) set_history(out, n);
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = native::contiguous(*this);
  if (auto n = record<IdentityBackward>({this}, "ContiguousBackward")) set_history(out, n);
  return out;
}
Tensor Tensor::clone() const {
  Tensor out = native::clone(*this);
  if (auto n = record<IdentityBackward>({this}, "CloneBackward")) set_history(out, n);
  return out;
}
Tensor Tensor::detach() const { return native::alias(*this); }

Tensor Tensor::to(Device d, DType t) const {
  if (d == device() && t == dtype()) return *this;
  Tensor out = native::to(*this, d, t);
  if (is_floating(t)) {
    if (auto n = record<ToBackward>({this}, device(), dtype())) set_history(out, n);
  }
  return out;
}
Tensor Tensor::to(Device d) const { return to(d, dtype()); }
Tensor Tensor::to(DType t) const { return to(device(), t); }

Tensor Tensor::sum() const { return rg::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return rg::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return rg::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return rg::mean(*this, dims, keepdim); }

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::backward({*this}, grad.defined() ? TensorList{grad} : TensorList{}, retain_graph);
}

void Tensor::register_hook(GradHook hook) const {
  RG_CHECK(requires_grad(), "cannot register a hook on a tensor that doesn't require gradient");
  if (is_leaf()) {
    // Kept on the leaf too: its AccumulateGrad is only weakly held and may be remade later.
    impl()->hooks.push_back(hook);
    if (auto acc = impl()->grad_accumulator.lock()) {
      std::static_pointer_cast<autograd::AccumulateGrad>(acc)->pre_hooks.emplace_back(0, std::move(hook));
    }
  } else {
    grad_fn()->pre_hooks.emplace_back(output_nr(), std::move(hook));
  }
}

void Tensor::retain_grad() const {
  RG_CHECK(requires_grad(), "can't retain_grad on Tensor that has requires_grad=False");
  if (is_leaf() || impl()->retains_grad) return;
  impl()->retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_ptr();
  grad_fn()->pre_hooks.emplace_back(output_nr(), [weak](const Tensor& g) {
    if (auto self = weak.lock()) {
      if (!self->grad) {
        self->grad = native::clone(g).impl_ptr();
      } else {
        Tensor existing(self->grad);
        native::binary_(BinaryOp::Add, existing, g);
      }
    }
    return Tensor();
  });
}

}  // namespace rg
