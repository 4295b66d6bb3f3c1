// Differentiable elementwise ops: unary (through the fused unary_bwd kernel), binary with
// broadcasting (gradients summed back to each input's shape), where, and comparisons.
#include <cmath>

#include "autograd/function.h"
#include "autograd/ops.h"

namespace rg {

using autograd::Node;
using autograd::record;
using autograd::SavedVariable;
using autograd::set_history;
using autograd::TensorList;

namespace {

// ---- unary
struct UnaryBackward : Node {
  UnaryOp op;
  double alpha, beta;
  SavedVariable xy;  // input, or output for the rows with kGradY (native::unary_bwd_uses_output)
  UnaryBackward(UnaryOp o, double a, double b) : op(o), alpha(a), beta(b) {}
  std::string name() const override { return std::string(unary_op_name(op)) + "Backward"; }
  TensorList apply(TensorList&& g) override { return {native::unary_bwd(op, g[0], xy.unpack(this), alpha, beta)}; }
  void release_variables() override { xy.reset(); }
};

Tensor unary_op(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  RG_CHECK(unary_op_has_grad(op), unary_op_name(op), " has no gradient formula");
  Tensor out = native::unary(op, x, alpha, beta);
  if (auto n = record<UnaryBackward>({&x}, op, alpha, beta)) {
    n->xy = SavedVariable(native::unary_bwd_uses_output(op) ? out : x);
    set_history(out, n);
  }
  return out;
}

// Ops whose gradient is zero almost everywhere: the result never requires grad.
Tensor nondiff_unary(UnaryOp op, const Tensor& x) {
  RG_CHECK(!unary_op_has_grad(op), unary_op_name(op), " has a gradient: record it");
  return native::unary(op, x);
}

// ---- binary
struct BinaryBackward : Node {
  BinaryOp op;
  double alpha, beta;
  Shape a_shape, b_shape;
  SavedVariable a, b, out;
  BinaryBackward(BinaryOp o, double al, double be, Shape as, Shape bs)
      : op(o), alpha(al), beta(be), a_shape(std::move(as)), b_shape(std::move(bs)) {}
  std::string name() const override { return std::string(binary_op_name(op)) + "Backward"; }
  void release_variables() override {
    a.reset();
    b.reset();
    out.reset();
  }

  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];
    const bool need_a = next_edges[0].valid(), need_b = next_edges[1].valid();
    Tensor ga, gb;
    switch (op) {
      case BinaryOp::Add:
      case BinaryOp::Sub:
        if (need_a) ga = g;
        if (need_b) gb = native::unary(UnaryOp::Affine, g, op == BinaryOp::Add ? alpha : -alpha, 0.0);
        break;
      case BinaryOp::Axpby:
        if (need_a) ga = native::unary(UnaryOp::Affine, g, alpha, 0.0);
        if (need_b) gb = native::unary(UnaryOp::Affine, g, beta, 0.0);
        break;
      case BinaryOp::Mul:
        if (need_a) ga = native::binary(BinaryOp::Mul, g, b.unpack(this));
        if (need_b) gb = native::binary(BinaryOp::Mul, g, a.unpack(this));
        break;
      case BinaryOp::Div: {
        const Tensor bv = b.unpack(this);
        if (need_a) ga = native::binary(BinaryOp::Div, g, bv);
        if (need_b) {  // -g * a / b^2 = -g * out / b
          gb = native::unary(UnaryOp::Neg, native::binary(BinaryOp::Div, native::binary(BinaryOp::Mul, g, out.unpack(this)), bv));
        }
        break;
      }
      case BinaryOp::Maximum:
      case BinaryOp::Minimum: {
        // The gradient goes to the selected input; ties split it evenly, as PyTorch does.
        const Tensor av = a.unpack(this), bv = b.unpack(this);
        const Tensor a_wins = native::binary(op == BinaryOp::Maximum ? BinaryOp::Gt : BinaryOp::Lt, av, bv);
        const Tensor tie = native::binary(BinaryOp::Eq, av, bv);
        const Tensor half_g = native::unary(UnaryOp::Affine, g, 0.5, 0.0);
        const Tensor zero = zeros({}, TensorOptions(g.dtype()).device(g.device()));
        auto pick = [&](const Tensor& wins) {
          return native::where(tie, half_g, native::where(wins, g, zero));
        };
        if (need_a) ga = pick(a_wins);
        if (need_b) gb = pick(native::binary(op == BinaryOp::Maximum ? BinaryOp::Lt : BinaryOp::Gt, av, bv));
        break;
      }
      case BinaryOp::Pow: {  // d/da = b a^(b-1) = b out / a; d/db = out log a
        const Tensor av = a.unpack(this), bv = b.unpack(this), ov = out.unpack(this);
        if (need_a) {
          const Tensor bm1 = native::unary(UnaryOp::Affine, bv, 1.0, -1.0);
          ga = native::binary(BinaryOp::Mul, g, native::binary(BinaryOp::Mul, bv, native::binary(BinaryOp::Pow, av, bm1)));
        }
        if (need_b) gb = native::binary(BinaryOp::Mul, g, native::binary(BinaryOp::Mul, ov, native::unary(UnaryOp::Log, av)));
        break;
      }
      default:
        RG_THROW("no gradient for binary op ", binary_op_name(op));
    }
    if (ga.defined()) ga = native::sum_to(ga, a_shape);
    if (gb.defined()) gb = native::sum_to(gb, b_shape);
    return {ga, gb};
  }
};

Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 1.0, double beta = 1.0) {
  Tensor out = native::binary(op, a, b, alpha, beta);
  if (auto n = record<BinaryBackward>({&a, &b}, op, alpha, beta, a.sizes(), b.sizes())) {
    switch (op) {
      case BinaryOp::Mul:
        if (n->next_edges[0].valid()) n->b = SavedVariable(b);
        if (n->next_edges[1].valid()) n->a = SavedVariable(a);
        break;
      case BinaryOp::Div:
        n->b = SavedVariable(b);
        if (n->next_edges[1].valid()) n->out = SavedVariable(out);
        break;
      case BinaryOp::Maximum:
      case BinaryOp::Minimum:
        n->a = SavedVariable(a);
        n->b = SavedVariable(b);
        break;
      case BinaryOp::Pow:
        n->a = SavedVariable(a);
        n->b = SavedVariable(b);
        n->out = SavedVariable(out);
        break;
      default:
        break;
    }
    set_history(out, n);
  }
  return out;
}

Tensor scalar_like(double s, const Tensor& like) {
  return scalar_tensor(s, TensorOptions(like.dtype()).device(like.device()));
}

// ---- where
struct WhereBackward : Node {
  SavedVariable cond;
  Shape a_shape, b_shape;
  std::string name() const override { return "WhereBackward"; }
  void release_variables() override { cond.reset(); }
  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];
    const Tensor c = cond.unpack(this);
    const Tensor zero = zeros({}, TensorOptions(g.dtype()).device(g.device()));
    Tensor ga, gb;
    if (next_edges[1].valid()) ga = native::sum_to(native::where(c, g, zero), a_shape);
    if (next_edges[2].valid()) gb = native::sum_to(native::where(c, zero, g), b_shape);
    return {Tensor(), ga, gb};
  }
};

}  // namespace

Tensor neg(const Tensor& x) { return unary_op(UnaryOp::Neg, x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::Abs, x); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::Rsqrt, x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::Sigmoid, x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::Tanh, x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::Relu, x); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary_op(UnaryOp::LeakyRelu, x, slope); }
Tensor silu(const Tensor& x) { return unary_op(UnaryOp::Silu, x); }
Tensor gelu(const Tensor& x) { return unary_op(UnaryOp::Gelu, x); }
Tensor softplus(const Tensor& x) { return unary_op(UnaryOp::Softplus, x); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::Square, x); }
Tensor reciprocal(const Tensor& x) { return unary_op(UnaryOp::Reciprocal, x); }
Tensor pow(const Tensor& x, double e) { return unary_op(UnaryOp::Pow, x, e); }
Tensor clamp(const Tensor& x, double lo, double hi) { return unary_op(UnaryOp::Clamp, x, lo, hi); }
Tensor clamp_min(const Tensor& x, double lo) { return clamp(x, lo, HUGE_VAL); }
Tensor clamp_max(const Tensor& x, double hi) { return clamp(x, -HUGE_VAL, hi); }
Tensor log1p(const Tensor& x) { return unary_op(UnaryOp::Log1p, x); }
Tensor expm1(const Tensor& x) { return unary_op(UnaryOp::Expm1, x); }
Tensor hardswish(const Tensor& x) { return unary_op(UnaryOp::Hardswish, x); }
Tensor mish(const Tensor& x) { return unary_op(UnaryOp::Mish, x); }
Tensor sign(const Tensor& x) { return nondiff_unary(UnaryOp::Sign, x); }
Tensor floor(const Tensor& x) { return nondiff_unary(UnaryOp::Floor, x); }
Tensor round(const Tensor& x) { return nondiff_unary(UnaryOp::Round, x); }
Tensor isfinite(const Tensor& x) { return nondiff_unary(UnaryOp::IsFinite, x); }

Tensor add(const Tensor& a, const Tensor& b, double alpha) { return binary_op(BinaryOp::Add, a, b, alpha); }
Tensor sub(const Tensor& a, const Tensor& b, double alpha) { return binary_op(BinaryOp::Sub, a, b, alpha); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Minimum, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Pow, a, b); }
Tensor axpby(double alpha, const Tensor& a, double beta, const Tensor& b) {
  return binary_op(BinaryOp::Axpby, a, b, alpha, beta);
}
Tensor add(const Tensor& a, double s) { return unary_op(UnaryOp::Affine, a, 1.0, s); }
Tensor mul(const Tensor& a, double s) { return unary_op(UnaryOp::Affine, a, s, 0.0); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = native::where(cond, a, b);
  if (auto n = record<WhereBackward>({&cond, &a, &b})) {
    n->cond = SavedVariable(cond);
    n->a_shape = a.sizes();
    n->b_shape = b.sizes();
    set_history(out, n);
  }
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::Ge, a, b); }
Tensor eq(const Tensor& a, double s) { return eq(a, scalar_like(s, a)); }
Tensor gt(const Tensor& a, double s) { return gt(a, scalar_like(s, a)); }
Tensor lt(const Tensor& a, double s) { return lt(a, scalar_like(s, a)); }
Tensor ge(const Tensor& a, double s) { return ge(a, scalar_like(s, a)); }
Tensor le(const Tensor& a, double s) { return le(a, scalar_like(s, a)); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::LogicalAnd, a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return native::binary(BinaryOp::LogicalOr, a, b); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
Tensor operator-(double s, const Tensor& a) { return unary_op(UnaryOp::Affine, a, -1.0, s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
Tensor operator/(double s, const Tensor& a) { return unary_op(UnaryOp::RDiv, a, s); }

// ---- in-place methods (Note [Tensor methods]): recorded on non-leaf, non-view tensors.
namespace {
struct InplaceBinaryBackward : Node {  // self = self + alpha * other, or self = self * other
  BinaryOp op;
  double alpha;
  Shape other_shape;
  SavedVariable self_before, other;
  InplaceBinaryBackward(BinaryOp o, double a, Shape s) : op(o), alpha(a), other_shape(std::move(s)) {}
  std::string name() const override { return std::string(binary_op_name(op)) + "Backward (in-place)"; }
  void release_variables() override {
    self_before.reset();
    other.reset();
  }
  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];
    Tensor gs, go;
    if (op == BinaryOp::Add) {
      if (next_edges[0].valid()) gs = g;
      if (next_edges[1].valid()) go = native::sum_to(native::unary(UnaryOp::Affine, g, alpha, 0.0), other_shape);
    } else {  // Mul
      if (next_edges[0].valid()) gs = native::binary(BinaryOp::Mul, g, other.unpack(this));
      if (next_edges[1].valid()) go = native::sum_to(native::binary(BinaryOp::Mul, g, self_before.unpack(this)), other_shape);
    }
    return {gs, go};
  }
};

Tensor& inplace_binary(Tensor& self, BinaryOp op, const Tensor& other, double alpha, const char* name) {
  autograd::check_inplace(self, name);
  const bool record_it = autograd::needs_grad({&self, &other});
  std::shared_ptr<InplaceBinaryBackward> n;
  if (record_it) {
    n = record<InplaceBinaryBackward>({&self, &other}, op, alpha, other.sizes());
    if (op == BinaryOp::Mul) {
      n->other = SavedVariable(native::clone(other));
      if (n->next_edges[1].valid()) n->self_before = SavedVariable(native::clone(self));
    }
  }
  native::binary_(op, self, other, alpha);
  if (n) {
    self.impl()->grad_fn.reset();  // the new node takes over the old edge (already in n->next_edges)
    set_history(self, n);
  }
  return self;
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) { return inplace_binary(*this, BinaryOp::Add, other, alpha, "add_"); }
Tensor& Tensor::mul_(const Tensor& other) { return inplace_binary(*this, BinaryOp::Mul, other, 1.0, "mul_"); }
Tensor& Tensor::mul_(double s) {
  autograd::check_inplace(*this, "mul_");
  if (autograd::needs_grad({this})) {
    return inplace_binary(*this, BinaryOp::Mul, scalar_tensor(s, TensorOptions(dtype()).device(device())), 1.0, "mul_");
  }
  native::unary_(UnaryOp::Affine, *this, s, 0.0);
  return *this;
}
Tensor& Tensor::zero_() { return fill_(0.0); }
Tensor& Tensor::fill_(double value) {
  RG_CHECK(!(GradMode::is_enabled() && requires_grad()), "fill_: in-place fill of a tensor that requires grad; use "
           "NoGradGuard");
  native::fill_(*this, value);
  return *this;
}
Tensor& Tensor::copy_(const Tensor& src) {
  RG_CHECK(!autograd::needs_grad({this, &src}), "copy_: in-place copy into or from a tensor that requires grad is "
           "not differentiable here; use NoGradGuard, or clone()/to() instead");
  native::copy_(*this, src);
  return *this;
}

}  // namespace rg
