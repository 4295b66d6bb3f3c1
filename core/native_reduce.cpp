// Reductions and softmax: dim handling, output dtypes (sum of integers is int64, arg-reductions
// give int64), keepdim, and empty inputs.
#include <algorithm>
#include <limits>

#include "core/native.h"

namespace rg::native {

namespace {
Shape normalize_dims(const Shape& dims, int64_t ndim, const char* op) {
  Shape out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  RG_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": dim ", shape_str(dims),
           " appears multiple times in the list of dims");
  return out;
}
}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims_in, bool keepdim, int64_t correction) {
  OpScope scope(reduce_op_name(op), {&x});
  RG_CHECK(x.defined(), "undefined input");
  const bool arg = op == ReduceOp::Argmax || op == ReduceOp::Argmin;
  if (arg && dims_in.empty() && x.dim() > 1) {  // argmax over everything indexes the flattened tensor
    Tensor flat = reshape(x, {x.numel()});
    Tensor r = reduce(op, flat, {0}, false, correction);
    return keepdim ? reshape(r, Shape(static_cast<size_t>(x.dim()), 1)) : r;
  }
  RG_CHECK(!arg || dims_in.size() <= 1, reduce_op_name(op), " takes a single dim, got ", shape_str(dims_in));
  // A 0-dim tensor reduces over its single element whatever dim (0 or -1) was named.
  const Shape dims = x.dim() == 0 ? (normalize_dims(dims_in, 0, reduce_op_name(op)), Shape{})
                                  : normalize_dims(dims_in, x.dim(), reduce_op_name(op));

  DType out_t = x.dtype();
  if (arg) {
    out_t = DType::i64;
  } else if ((op == ReduceOp::Sum || op == ReduceOp::Prod) && !is_floating(x.dtype())) {
    out_t = DType::i64;
  } else if (op == ReduceOp::Mean || op == ReduceOp::Var) {
    RG_CHECK(is_floating(x.dtype()), reduce_op_name(op), "(): could not infer output dtype. Input dtype must be "
             "either a floating point or complex dtype. Got: ", dtype_name(x.dtype()));
  }
  Shape kept = x.sizes();
  int64_t reduced_numel = 1;
  for (int64_t d : dims) {
    reduced_numel *= kept[d];
    kept[d] = 1;
  }
  Tensor out = empty(kept, TensorOptions(out_t).device(x.device()));
  if (out.numel() > 0) {
    if (reduced_numel == 0) {
      RG_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Prod || op == ReduceOp::Var,
               reduce_op_name(op), "(): Expected reduction dim to have non-zero size.");
      fill_(out, op == ReduceOp::Sum ? 0.0 : op == ReduceOp::Prod ? 1.0 : std::numeric_limits<double>::quiet_NaN());
    } else {
      RG_CALL_KERNEL(reduce, x.device(), out, x, op, dims, correction);
    }
  }
  if (keepdim) return out;
  Shape squeezed;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (!std::binary_search(dims.begin(), dims.end(), d)) squeezed.push_back(x.size(d));
  }
  return view(out, squeezed);
}

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) { return reduce(ReduceOp::Sum, x, dims, keepdim); }
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) { return reduce(ReduceOp::Mean, x, dims, keepdim); }

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  OpScope scope(log ? "log_softmax" : "softmax", {&x});
  RG_CHECK(is_floating(x.dtype()), "softmax needs a floating point input, got ", dtype_name(x.dtype()));
  const int64_t d = wrap_dim(dim, x.dim(), "softmax");
  const Tensor xc = contiguous(x);
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel()) RG_CALL_KERNEL(softmax, x.device(), out, xc, x.dim() == 0 ? 0 : d, log);
  return out;
}

Tensor softmax_bwd(const Tensor& gy, const Tensor& y, int64_t dim, bool log) {
  OpScope scope(log ? "log_softmax_backward" : "softmax_backward", {&gy, &y});
  RG_CHECK(gy.sizes() == y.sizes(), "gradient ", shape_str(gy.sizes()), " does not match output ", shape_str(y.sizes()));
  const int64_t d = wrap_dim(dim, y.dim(), "softmax");
  const Tensor g = contiguous(to(gy, y.device(), y.dtype()));
  const Tensor yc = contiguous(y);
  Tensor gx = empty(y.sizes(), TensorOptions(y.dtype()).device(y.device()));
  if (y.numel()) RG_CALL_KERNEL(softmax_bwd, y.device(), gx, g, yc, y.dim() == 0 ? 0 : d, log);
  return gx;
}

}  // namespace rg::native
