// Elementwise ops: dtype promotion (torch.result_type rules for 0-dim operands), device checks,
// broadcasting as stride-0 views, and the in-place variants.
#include <cmath>

#include "core/native.h"

namespace rg::native {

namespace {

bool same_category(DType a, DType b) { return is_floating(a) == is_floating(b); }

// torch.result_type: a 0-dim tensor does not raise the dtype of a dimensioned one of its category.
DType result_type(const Tensor& a, const Tensor& b) {
  if (a.dim() == 0 && b.dim() > 0 && same_category(a.dtype(), b.dtype())) return b.dtype();
  if (b.dim() == 0 && a.dim() > 0 && same_category(a.dtype(), b.dtype())) return a.dtype();
  return promote_types(a.dtype(), b.dtype());
}

// Brings `t` to (device, dtype). A 0-dim CPU tensor may join a CUDA op, as in PyTorch.
Tensor prepare(const Tensor& t, Device device, DType dtype) {
  if (t.device() != device) {
    RG_CHECK(t.dim() == 0 && t.is_cpu(), "Expected all tensors to be on the same device, but found at least two "
             "devices, ", device.str(), " and ", t.device().str(), "!");
  }
  return to(t, device, dtype);
}

Device common_device(const Tensor& a, const Tensor& b) {
  if (a.device() == b.device()) return a.device();
  if (a.dim() == 0 && a.is_cpu()) return b.device();
  if (b.dim() == 0 && b.is_cpu()) return a.device();
  RG_THROW("Expected all tensors to be on the same device, but found at least two devices, ", a.device().str(),
           " and ", b.device().str(), "!");
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double alpha, double beta) {
  OpScope scope(unary_op_name(op), {&x});
  RG_CHECK(x.defined(), "undefined input");
  const DType in_t = is_floating(x.dtype()) || unary_op_keeps_integer(op) ? x.dtype() : DType::f32;
  const Tensor xi = to(x, x.device(), in_t);
  const DType out_t = unary_op_bool_out(op) ? DType::b8 : in_t;
  Tensor out = empty(x.sizes(), TensorOptions(out_t).device(x.device()));
  if (x.numel()) RG_CALL_KERNEL(unary, x.device(), out, xi, op, alpha, beta);
  return out;
}

void unary_(UnaryOp op, const Tensor& x, double alpha, double beta) {
  OpScope scope(unary_op_name(op), {&x});
  RG_CHECK(!unary_op_bool_out(op), unary_op_name(op), " has no in-place form");
  RG_CHECK(is_floating(x.dtype()) || unary_op_keeps_integer(op), unary_op_name(op), "_: result type Float can't be cast to ",
           "the desired output type ", dtype_name(x.dtype()));
  if (x.numel()) RG_CALL_KERNEL(unary, x.device(), x, x, op, alpha, beta);
  x.bump_version();
}

Tensor unary_bwd(UnaryOp op, const Tensor& gy, const Tensor& xy, double alpha, double beta) {
  OpScope scope(unary_op_name(op), {&gy, &xy});
  RG_CHECK(gy.sizes() == xy.sizes(), "gradient shape ", shape_str(gy.sizes()), " does not match saved shape ",
           shape_str(xy.sizes()));
  RG_CHECK(gy.device() == xy.device(), "gradient on ", gy.device().str(), " but saved tensor on ", xy.device().str());
  const Tensor g = to(gy, gy.device(), xy.dtype());
  Tensor gx = empty(xy.sizes(), TensorOptions(xy.dtype()).device(xy.device()));
  if (gx.numel()) RG_CALL_KERNEL(unary_bwd, xy.device(), gx, g, xy, op, alpha, beta);
  return gx;
}

namespace {

// The dtype a binary op computes in: the promoted type, except that the ops without kKeepsInt
// (true division, atan2) give f32 for integers (int ** int stays int).
DType binary_compute_type(BinaryOp op, const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  return !binary_op_keeps_integer(op) && !is_floating(t) ? DType::f32 : t;
}

// add/sub's alpha on integer tensors must be integral, as in PyTorch.
void check_alpha(BinaryOp op, DType t, double alpha) {
  if ((op == BinaryOp::Add || op == BinaryOp::Sub) && !is_floating(t)) {
    RG_CHECK(alpha == std::trunc(alpha), "For integral input tensors, argument alpha must not be a floating point "
             "number (got ", alpha, ")");
  }
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha, double beta) {
  OpScope scope(binary_op_name(op), {&a, &b});
  RG_CHECK(a.defined() && b.defined(), "undefined input");
  const Device dev = common_device(a, b);
  const DType t = binary_compute_type(op, a, b);
  check_alpha(op, t, alpha);
  const Shape shape = broadcast_shapes(a.sizes(), b.sizes(), binary_op_name(op));
  const Tensor ae = expand(prepare(a, dev, t), shape);
  const Tensor be = expand(prepare(b, dev, t), shape);
  const DType out_t = binary_op_is_comparison(op) ? DType::b8 : t;
  Tensor out = empty(shape, TensorOptions(out_t).device(dev));
  if (out.numel()) RG_CALL_KERNEL(binary, dev, out, ae, be, op, alpha, beta);
  return out;
}

void binary_(BinaryOp op, const Tensor& self, const Tensor& other, double alpha, double beta) {
  OpScope scope(binary_op_name(op), {&self, &other});
  RG_CHECK(!binary_op_is_comparison(op), "comparison ops have no in-place form here");
  const Shape shape = broadcast_shapes(self.sizes(), other.sizes(), binary_op_name(op));
  RG_CHECK(shape == self.sizes(), "output with shape ", shape_str(self.sizes()),
           " doesn't match the broadcast shape ", shape_str(shape));
  // PyTorch's can_cast: an in-place result may not go from floating point to an integer, or from
  // anything but bool to bool (int_tensor.div_(...) or int_tensor.add_(0.5 * ...) are errors).
  if (op != BinaryOp::Axpby) {  // Axpby is internal: optimizers and EMA blend in self's dtype
    const DType t = binary_compute_type(op, self, other);
    RG_CHECK(!(is_floating(t) && !is_floating(self.dtype())) && !(self.dtype() == DType::b8 && t != DType::b8),
             "result type ", dtype_name(t), " can't be cast to the desired output type ", dtype_name(self.dtype()));
    check_alpha(op, self.dtype(), alpha);
  }
  const Tensor o = expand(prepare(other, self.device(), self.dtype()), shape);
  if (self.numel()) RG_CALL_KERNEL(binary, self.device(), self, self, o, op, alpha, beta);
  self.bump_version();
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  OpScope scope("where", {&cond, &a, &b});
  RG_CHECK(cond.dtype() == DType::b8 || cond.dtype() == DType::u8, "where expected condition to be a boolean tensor, "
           "but got a tensor with dtype ", dtype_name(cond.dtype()));
  Device dev = a.device();  // the first operand that is not a 0-dim CPU scalar decides
  for (const Tensor* t : {&a, &b, &cond}) {
    if (!(t->dim() == 0 && t->is_cpu())) {
      dev = t->device();
      break;
    }
  }
  const DType t = result_type(a, b);
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
  const Tensor ce = expand(prepare(cond, dev, DType::b8), shape);
  const Tensor ae = expand(prepare(a, dev, t), shape);
  const Tensor be = expand(prepare(b, dev, t), shape);
  Tensor out = empty(shape, TensorOptions(t).device(dev));
  if (out.numel()) RG_CALL_KERNEL(where, dev, out, ce, ae, be);
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  OpScope scope("sum_to", {&x});
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  RG_CHECK(lead >= 0, "sum_to: shape ", shape_str(shape), " has more dims than ", shape_str(x.sizes()));
  Shape dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && x.size(d) != 1) {
      dims.push_back(d);
    } else {
      RG_CHECK(shape[d - lead] == x.size(d), "sum_to: ", shape_str(x.sizes()), " cannot be summed to ",
               shape_str(shape));
    }
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(reduce(ReduceOp::Sum, x, dims, true), shape);
}

}  // namespace rg::native
