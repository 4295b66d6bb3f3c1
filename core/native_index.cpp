// Joining and indexing ops with torch semantics: cat, stack, split (views), index_select,
// index_add_, gather, scatter_add_. Checks and promotion here; the kernels in core/cpu/index.cpp.
#include <algorithm>

#include "core/native.h"

namespace rg::native {

// Note [Index kernel inputs]
// What the index kernels (cat, index_select, index_add, gather, scatter_add; CPU and CUDA) get:
// - cat: out contiguous; xs all of out's dtype and device and ndim, sizes equal to out's except
//   at dim; tensors with no elements are left out of the list. xs may have any strides.
// - index_select: x, index and out contiguous; index holds index.numel() positions (1-D or 0-dim).
// - index_add: out, index and src contiguous, out and src of one dtype; src.size(dim) == index.numel().
// - gather: out has index's shape (contiguous); x and index any strides; x.dim() == index.dim() >= 1.
// - scatter_add: out, index and src any strides, one ndim >= 1; out and src of one dtype; index
//   at most src's size in every dim and out's size outside dim. The kernel walks index's shape.
// Every index is an i32 or i64 tensor; the kernels check each value against [0, size) and raise
// "<op>(): index V is out of bounds for dimension D with size S".

namespace {

void scope_args(OpScope& scope, const std::vector<Tensor>& xs) {
  for (const Tensor& t : xs) {
    if (scope.nargs == OpScope::kMaxArgs) break;
    scope.args[scope.nargs++] = &t;
  }
}

void check_index_dtype(const Tensor& index, const char* op) {
  RG_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op, "(): Expected dtype int32 or int64 for ",
           "index, got ", dtype_name(index.dtype()));
}

void check_same_device(const Tensor& a, const Tensor& b) {
  RG_CHECK(a.device() == b.device(), "Expected all tensors to be on the same device, but found at least two devices, ",
           a.device().str(), " and ", b.device().str(), "!");
}

// A legacy empty tensor, shape [0]: cat skips it whatever the other shapes are.
bool legacy_empty(const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; }

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  OpScope scope("cat");
  scope_args(scope, xs);
  RG_CHECK(!xs.empty(), "torch.cat(): expected a non-empty list of Tensors");
  const Tensor* ref = nullptr;
  DType dtype = xs[0].dtype();
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    RG_CHECK(t.defined(), "cat(): tensor ", i, " in the list is undefined");
    RG_CHECK(t.dim() > 0, "cat(): zero-dimensional tensor (at position ", i, ") cannot be concatenated");
    check_same_device(xs[0], t);
    dtype = promote_types(dtype, t.dtype());
    if (!ref && !legacy_empty(t)) ref = &t;
  }
  if (!ref) return empty({0}, TensorOptions(dtype).device(xs[0].device()));
  const int64_t d = wrap_dim(dim, ref->dim(), "cat");
  Shape shape = ref->sizes();
  shape[static_cast<size_t>(d)] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    if (legacy_empty(t)) continue;
    RG_CHECK(t.dim() == ref->dim(), "cat(): tensors must have same number of dimensions: got ", ref->dim(), " and ",
             t.dim(), " (shapes ", shape_str(ref->sizes()), " and ", shape_str(t.sizes()), ", tensor number ", i,
             " in the list)");
    for (int64_t k = 0; k < t.dim(); ++k) {
      RG_CHECK(k == d || t.size(k) == ref->size(k), "cat(): sizes of tensors must match except in dimension ", d,
               ", but got ", shape_str(ref->sizes()), " and ", shape_str(t.sizes()), " (mismatch in dimension ", k,
               " for tensor number ", i, " in the list)");
    }
    shape[static_cast<size_t>(d)] += t.size(d);
  }
  Tensor out = empty(shape, TensorOptions(dtype).device(ref->device()));
  if (out.numel() == 0) return out;
  std::vector<Tensor> parts;
  for (const Tensor& t : xs) {
    if (legacy_empty(t) || t.numel() == 0) continue;
    parts.push_back(to(t, t.device(), dtype));
  }
  RG_CALL_KERNEL(cat, out.device(), out, parts, d);
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  OpScope scope("stack");
  scope_args(scope, xs);
  RG_CHECK(!xs.empty(), "stack expects a non-empty TensorList");
  for (size_t i = 0; i < xs.size(); ++i) RG_CHECK(xs[i].defined(), "stack(): tensor ", i, " is undefined");
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  us.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    RG_CHECK(xs[i].sizes() == xs[0].sizes(), "stack expects each tensor to be equal size, but got ",
             shape_str(xs[0].sizes()), " at entry 0 and ", shape_str(xs[i].sizes()), " at entry ", i);
    us.push_back(unsqueeze(xs[i], d));
  }
  return cat(us, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  OpScope scope("split", {&x});
  RG_CHECK(x.dim() > 0, "split expects at least a 1-dimensional tensor");
  RG_CHECK(split_size >= 0, "split expects split_size be non-negative, but got split_size=", split_size);
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  RG_CHECK(split_size > 0 || n == 0, "split_size can only be 0 if dimension size is 0, but got dimension size of ", n);
  if (n == 0) return {alias(x)};
  std::vector<Tensor> out;
  for (int64_t start = 0; start < n; start += split_size) out.push_back(narrow(x, d, start, std::min(split_size, n - start)));
  return out;
}

std::vector<Tensor> split_with_sizes(const Tensor& x, const Shape& sizes, int64_t dim) {
  OpScope scope("split_with_sizes", {&x});
  RG_CHECK(x.dim() > 0, "split_with_sizes expects at least a 1-dimensional tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "split_with_sizes");
  int64_t total = 0;
  for (int64_t s : sizes) {
    RG_CHECK(s >= 0, "split_with_sizes expects split_sizes have only non-negative entries, but got split_sizes=",
             shape_str(sizes));
    total += s;
  }
  RG_CHECK(total == x.size(d), "split_with_sizes expects split_sizes to sum exactly to ", x.size(d),
           " (input tensor's size at dimension ", d, "), but got split_sizes=", shape_str(sizes));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(x, d, start, s));
    start += s;
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  OpScope scope("index_select", {&x, &index});
  check_index_dtype(index, "index_select");
  RG_CHECK(index.dim() <= 1, "index_select(): Index is supposed to be a vector, got shape ", shape_str(index.sizes()));
  check_same_device(x, index);
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  Shape shape = x.sizes();
  if (x.dim() == 0) {
    RG_CHECK(index.numel() == 1, "index_select(): a 0-dim input takes exactly one index, got ", index.numel());
  } else {
    shape[static_cast<size_t>(d)] = index.numel();
  }
  Tensor out = empty(shape, TensorOptions(x.dtype()).device(x.device()));
  if (index.numel() == 0 && out.numel() == 0) return out;
  RG_CHECK(x.numel() > 0 || index.numel() == 0, "index_select(): cannot select from an empty dimension of ",
           shape_str(x.sizes()), " (index has ", index.numel(), " elements)");
  if (out.numel() == 0) return out;
  RG_CALL_KERNEL(index_select, x.device(), out, contiguous(x), d, contiguous(index));
  return out;
}

void index_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  OpScope scope("index_add_", {&out, &index, &src});
  check_index_dtype(index, "index_add_");
  RG_CHECK(index.dim() <= 1, "index_add_(): Index is supposed to be a vector, got shape ", shape_str(index.sizes()));
  check_same_device(out, index);
  check_same_device(out, src);
  RG_CHECK(out.dtype() == src.dtype(), "index_add_(): self (", dtype_name(out.dtype()), ") and source (",
           dtype_name(src.dtype()), ") must have the same scalar type");
  RG_CHECK(is_floating(out.dtype()), "index_add_(): only floating point tensors are supported, got ",
           dtype_name(out.dtype()));
  const int64_t d = wrap_dim(dim, out.dim(), "index_add_");
  RG_CHECK(out.dim() == src.dim() || (out.dim() == 0 && src.dim() <= 1) || (src.dim() == 0 && out.dim() <= 1),
           "index_add_(): self ", shape_str(out.sizes()), " and source ", shape_str(src.sizes()),
           " should have the same number of dimensions");
  const int64_t src_n = src.dim() == 0 ? 1 : src.size(d);
  RG_CHECK(src_n == index.numel(), "index_add_(): number of indices (", index.numel(),
           ") should be equal to source.size(dim) (", src_n, "), for source ", shape_str(src.sizes()), " and dim ", d);
  for (int64_t k = 0; k < std::min(out.dim(), src.dim()); ++k) {
    RG_CHECK(k == d || out.size(k) == src.size(k), "index_add_(): source ", shape_str(src.sizes()), " and self ",
             shape_str(out.sizes()), " must match in dimension ", k, " (all dimensions but ", d, ")");
  }
  if (index.numel() == 0 || out.numel() == 0 || src.numel() == 0) return;
  const Tensor work = out.is_contiguous() ? out : contiguous(out);
  const Tensor s = src.dim() == out.dim() ? contiguous(src) : reshape(src, work.dim() == 0 ? Shape{} : Shape{src_n});
  RG_CALL_KERNEL(index_add, out.device(), work, d, contiguous(index), contiguous(s));
  if (!work.is_same(out)) copy_(out, work);
  out.bump_version();
}

namespace {
// gather and scatter_add take a 0-dim tensor as shape [1].
Tensor as_1d_if_scalar(const Tensor& t) { return t.dim() == 0 ? view(t, {1}) : t; }

void check_gather_shapes(const Tensor& self, const Tensor& index, int64_t d, const char* op, const char* self_name) {
  RG_CHECK(index.dim() == self.dim() || (index.dim() <= 1 && self.dim() <= 1), op,
           "(): Index tensor must have the same number of dimensions as ", self_name, " tensor, got index ",
           shape_str(index.sizes()), " and ", self_name, " ", shape_str(self.sizes()));
  for (int64_t k = 0; k < index.dim() && self.dim() > 0; ++k) {
    RG_CHECK(k == d || index.size(k) <= self.size(k), op, "(): Size does not match at dimension ", k,
             " expected index ", shape_str(index.sizes()), " to be no larger than ", self_name, " ",
             shape_str(self.sizes()), " apart from dimension ", d);
  }
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  OpScope scope("gather", {&x, &index});
  check_index_dtype(index, "gather");
  check_same_device(x, index);
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  check_gather_shapes(x, index, d, "gather", "input");
  Tensor out = empty(index.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() == 0) return out;
  RG_CHECK(x.numel() > 0, "gather(): cannot gather from an empty input ", shape_str(x.sizes()));
  RG_CALL_KERNEL(gather, x.device(), as_1d_if_scalar(out), as_1d_if_scalar(x), d, as_1d_if_scalar(index));
  return out;
}

void scatter_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  OpScope scope("scatter_add_", {&out, &index, &src});
  check_index_dtype(index, "scatter_add_");
  check_same_device(out, index);
  check_same_device(out, src);
  RG_CHECK(out.dtype() == src.dtype(), "scatter_add_(): Expected self.dtype to be equal to src.dtype, got ",
           dtype_name(out.dtype()), " and ", dtype_name(src.dtype()));
  RG_CHECK(is_floating(out.dtype()), "scatter_add_(): only floating point tensors are supported, got ",
           dtype_name(out.dtype()));
  const int64_t d = wrap_dim(dim, out.dim(), "scatter_add_");
  check_gather_shapes(out, index, d, "scatter_add_", "self");
  RG_CHECK(index.dim() == src.dim() || (index.dim() <= 1 && src.dim() <= 1),
           "scatter_add_(): Index tensor must have the same number of dimensions as src tensor, got index ",
           shape_str(index.sizes()), " and src ", shape_str(src.sizes()));
  for (int64_t k = 0; k < index.dim() && src.dim() > 0; ++k) {
    RG_CHECK(index.size(k) <= src.size(k), "scatter_add_(): Size does not match at dimension ", k, " expected index ",
             shape_str(index.sizes()), " to be no larger than src ", shape_str(src.sizes()));
  }
  if (index.numel() == 0) return;
  RG_CALL_KERNEL(scatter_add, out.device(), as_1d_if_scalar(out), d, as_1d_if_scalar(index), as_1d_if_scalar(src));
  out.bump_version();
}

}  // namespace rg::native
