// View ops: new sizes/strides/offset over the same storage. Nothing here copies, except
// reshape when no view exists.
#include <algorithm>
#include <numeric>

#include "core/native.h"

namespace rg::native {

namespace {
Tensor make_view(const Tensor& x, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  impl->is_view = true;
  return Tensor(std::move(impl));
}

// Strides for viewing (sizes, strides) as `shape` without copying, or empty when impossible.
// Old dims are cut into runs that are contiguous among themselves; each run must be covered
// exactly by a run of new dims.
bool view_strides(const Shape& sizes, const Shape& strides, const Shape& shape, Shape* out) {
  const int64_t numel = shape_numel(sizes);
  out->assign(shape.size(), 0);
  if (numel == 0) {
    *out = contiguous_strides(shape);
    return true;
  }
  if (sizes.empty()) {  // a 0-dim tensor views as any all-ones shape
    out->assign(shape.size(), 1);
    return true;
  }
  int64_t new_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_numel = 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    chunk_numel *= sizes[d];
    // a run ends at dim 0 or where the next outer dim is not contiguous with this one
    const bool run_ends = d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != chunk_numel * chunk_base_stride);
    if (!run_ends) continue;
    int64_t view_numel = 1;
    while (new_d >= 0 && (view_numel < chunk_numel || shape[new_d] == 1)) {
      (*out)[new_d] = view_numel * chunk_base_stride;
      view_numel *= shape[new_d];
      --new_d;
    }
    if (view_numel != chunk_numel) return false;
    if (d > 0) {
      chunk_base_stride = strides[d - 1];
      chunk_numel = 1;
    }
  }
  return new_d == -1;
}
}  // namespace

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      RG_CHECK(infer < 0, op, ": only one dimension can be inferred in shape ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      RG_CHECK(out[i] >= 0, op, ": invalid shape dimension ", out[i], " in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    RG_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for input of size ",
             numel);
    out[infer] = numel / known;
  }
  RG_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for input of size ", numel);
  return out;
}

Tensor as_strided(const Tensor& x, const Shape& sizes, const Shape& strides, int64_t offset) {
  OpScope scope("as_strided", {&x});
  RG_CHECK(sizes.size() == strides.size(), "sizes ", shape_str(sizes), " and strides ", shape_str(strides),
           " differ in length");
  return make_view(x, sizes, strides, offset);
}

Tensor alias(const Tensor& x) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->sizes = x.sizes();
  impl->strides = x.strides();
  impl->offset = x.storage_offset();
  impl->dtype = x.dtype();
  impl->is_view = x.impl()->is_view;
  return Tensor(std::move(impl));
}

Tensor view(const Tensor& x, const Shape& shape) {
  OpScope scope("view", {&x});
  const Shape s = infer_shape(shape, x.numel(), "view");
  Shape st;
  RG_CHECK(view_strides(x.sizes(), x.strides(), s, &st), "view size ", shape_str(s),
           " is not compatible with input tensor's size and stride (", shape_str(x.sizes()), ", ",
           shape_str(x.strides()), "): at least one dimension spans across two contiguous subspaces. Use reshape "
           "instead.");
  return make_view(x, s, st, x.storage_offset());
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  OpScope scope("reshape", {&x});
  const Shape s = infer_shape(shape, x.numel(), "reshape");
  Shape st;
  if (view_strides(x.sizes(), x.strides(), s, &st)) return make_view(x, s, st, x.storage_offset());
  return view(contiguous(x), s);
}

Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  OpScope scope("flatten", {&x});
  if (x.dim() == 0) return reshape(x, {1});
  start = wrap_dim(start, x.dim(), "flatten");
  end = wrap_dim(end, x.dim(), "flatten");
  RG_CHECK(start <= end, "flatten() has invalid args: start_dim ", start, " cannot come after end_dim ", end);
  Shape s;
  for (int64_t d = 0; d < start; ++d) s.push_back(x.size(d));
  int64_t m = 1;
  for (int64_t d = start; d <= end; ++d) m *= x.size(d);
  s.push_back(m);
  for (int64_t d = end + 1; d < x.dim(); ++d) s.push_back(x.size(d));
  return reshape(x, s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  OpScope scope("squeeze", {&x});
  if (x.dim() == 0) return alias(x);
  dim = wrap_dim(dim, x.dim(), "squeeze");
  if (x.size(dim) != 1) return make_view(x, x.sizes(), x.strides(), x.storage_offset());
  Shape sz = x.sizes(), st = x.strides();
  sz.erase(sz.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, sz, st, x.storage_offset());
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  OpScope scope("unsqueeze", {&x});
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape sz = x.sizes(), st = x.strides();
  const int64_t stride = dim < x.dim() ? x.stride(dim) * x.size(dim) : 1;
  sz.insert(sz.begin() + dim, 1);
  st.insert(st.begin() + dim, stride);
  return make_view(x, sz, st, x.storage_offset());
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  OpScope scope("transpose", {&x});
  if (x.dim() == 0) return alias(x);
  d0 = wrap_dim(d0, x.dim(), "transpose");
  d1 = wrap_dim(d1, x.dim(), "transpose");
  Shape sz = x.sizes(), st = x.strides();
  std::swap(sz[d0], sz[d1]);
  std::swap(st[d0], st[d1]);
  return make_view(x, sz, st, x.storage_offset());
}

Tensor permute(const Tensor& x, const Shape& dims) {
  OpScope scope("permute", {&x});
  RG_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: number of dims don't match: got ",
           shape_str(dims), " for a tensor of ", x.dim(), " dims");
  Shape sz(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    RG_CHECK(!seen[d], "permute: repeated dim ", d, " in ", shape_str(dims));
    seen[d] = true;
    sz[i] = x.size(d);
    st[i] = x.stride(d);
  }
  return make_view(x, sz, st, x.storage_offset());
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  OpScope scope("slice", {&x});
  RG_CHECK(x.dim() > 0, "slice() cannot be applied to a 0-dim tensor");
  RG_CHECK(step > 0, "slice step must be positive, got ", step);
  dim = wrap_dim(dim, x.dim(), "slice");
  const int64_t n = x.size(dim);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sz = x.sizes(), st = x.strides();
  sz[dim] = (end - start + step - 1) / step;
  st[dim] *= step;
  return make_view(x, sz, st, x.storage_offset() + start * x.stride(dim));
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  OpScope scope("narrow", {&x});
  RG_CHECK(x.dim() > 0, "narrow() cannot be applied to a 0-dim tensor");
  dim = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.size(dim);
  if (start < 0) start += n;
  RG_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: start (", start, ") + length (", length,
           ") exceeds dimension size (", n, ") of dim ", dim);
  return slice(x, dim, start, start + length, 1);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  OpScope scope("select", {&x});
  RG_CHECK(x.dim() > 0, "select() cannot be applied to a 0-dim tensor");
  dim = wrap_dim(dim, x.dim(), "select");
  const int64_t n = x.size(dim);
  RG_CHECK(index >= -n && index < n, "select(): index ", index, " out of range for tensor of size ", n,
           " at dimension ", dim);
  if (index < 0) index += n;
  Shape sz = x.sizes(), st = x.strides();
  const int64_t off = x.storage_offset() + index * st[dim];
  sz.erase(sz.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(x, sz, st, off);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  OpScope scope("expand", {&x});
  RG_CHECK(shape.size() >= static_cast<size_t>(x.dim()), "expand: the number of sizes provided (", shape.size(),
           ") must be greater or equal to the number of dimensions in the tensor (", x.dim(), ")");
  const size_t lead = shape.size() - static_cast<size_t>(x.dim());
  Shape sz(shape.size()), st(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      RG_CHECK(shape[i] >= 0, "expand: -1 is not allowed in a leading, non-existing dimension");
      sz[i] = shape[i];
      st[i] = 0;
      continue;
    }
    const int64_t xs = x.sizes()[i - lead];
    const int64_t want = shape[i] == -1 ? xs : shape[i];
    RG_CHECK(xs == want || xs == 1, "expand: the expanded size of the tensor (", want,
             ") must match the existing size (", xs, ") at non-singleton dimension ", i, ".  Target sizes: ",
             shape_str(shape), ".  Tensor sizes: ", shape_str(x.sizes()));
    sz[i] = want;
    st[i] = xs == want ? x.strides()[i - lead] : 0;
  }
  return make_view(x, sz, st, x.storage_offset());
}

}  // namespace rg::native
