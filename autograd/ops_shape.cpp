// Differentiable joining, splitting and indexing: cat, stack, split (by size or sizes), chunk,
// index_select and gather. split is one multi-output node whose backward is a single cat; the
// indexing ops scatter their gradient back with index_add_ / scatter_add_.
#include <algorithm>

#include "autograd/function.h"
#include "autograd/ops.h"

namespace rg {

using autograd::Node;
using autograd::record;
using autograd::record_list;
using autograd::SavedVariable;
using autograd::set_history;
using autograd::TensorList;

namespace {

// ---- cat: each input's gradient is its slab of the output gradient (a view).
struct CatBackward : Node {
  int64_t dim;
  std::vector<Shape> shapes;  // of the inputs
  CatBackward(int64_t d, std::vector<Shape> s) : dim(d), shapes(std::move(s)) {}
  std::string name() const override { return "CatBackward"; }
  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];
    TensorList out(shapes.size());
    int64_t offset = 0;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      if (static_cast<int64_t>(s.size()) != g.dim()) {  // a legacy empty 1-D input that cat skipped
        if (next_edges[i].valid()) out[i] = zeros(s, TensorOptions(g.dtype()).device(g.device()));
        continue;
      }
      const int64_t len = s[static_cast<size_t>(dim)];
      if (next_edges[i].valid()) out[i] = native::narrow(g, dim, offset, len);
      offset += len;
    }
    return out;
  }
};

// ---- stack: input i's gradient is slice i of the output gradient along the new dim.
struct StackBackward : Node {
  int64_t dim;
  size_t count;
  StackBackward(int64_t d, size_t n) : dim(d), count(n) {}
  std::string name() const override { return "StackBackward"; }
  TensorList apply(TensorList&& grads) override {
    TensorList out(count);
    for (size_t i = 0; i < count; ++i) {
      if (next_edges[i].valid()) out[i] = native::select(grads[0], dim, static_cast<int64_t>(i));
    }
    return out;
  }
};

// ---- split / chunk: one node with an output per piece; the engine fills zeros for the pieces
// that got no gradient, and the input's gradient is their concatenation.
struct SplitBackward : Node {
  int64_t dim;
  explicit SplitBackward(int64_t d) : dim(d) {}
  std::string name() const override { return "SplitBackward"; }
  TensorList apply(TensorList&& grads) override {
    if (grads.size() == 1) return {grads[0]};
    return {native::cat(grads, dim)};
  }
};

std::vector<Tensor> with_split_history(const Tensor& x, std::vector<Tensor> pieces, int64_t dim) {
  if (auto n = record<SplitBackward>({&x}, dim)) {
    for (const Tensor& p : pieces) set_history(p, n);
  }
  return pieces;
}

// ---- index_select / gather: the gradient is added back at the indexed positions.
struct IndexBackward : Node {
  Shape in_shape;
  int64_t dim;
  bool is_gather;
  SavedVariable index;
  IndexBackward(Shape s, int64_t d, bool g) : in_shape(std::move(s)), dim(d), is_gather(g) {}
  std::string name() const override { return is_gather ? "GatherBackward" : "IndexSelectBackward"; }
  void release_variables() override { index.reset(); }
  TensorList apply(TensorList&& grads) override {
    const Tensor& g = grads[0];
    Tensor gx = zeros(in_shape, TensorOptions(g.dtype()).device(g.device()));
    if (is_gather) {
      native::scatter_add_(gx, dim, index.unpack(this), g);
    } else {
      native::index_add_(gx, dim, index.unpack(this), g);
    }
    return {gx};
  }
};

Tensor index_op(const Tensor& x, int64_t dim, const Tensor& index, bool is_gather) {
  Tensor out = is_gather ? native::gather(x, dim, index) : native::index_select(x, dim, index);
  if (auto n = record<IndexBackward>({&x}, x.sizes(), wrap_dim(dim, std::max<int64_t>(x.dim(), 1)), is_gather)) {
    n->index = SavedVariable(index);
    set_history(out, n);
  }
  return out;
}

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor out = native::cat(xs, dim);
  std::vector<Shape> shapes;
  shapes.reserve(xs.size());
  for (const Tensor& x : xs) shapes.push_back(x.sizes());
  if (auto n = record_list<CatBackward>(xs, wrap_dim(dim, out.dim(), "cat"), std::move(shapes))) set_history(out, n);
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor out = native::stack(xs, dim);
  if (auto n = record_list<StackBackward>(xs, wrap_dim(dim, out.dim(), "stack"), xs.size())) set_history(out, n);
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  std::vector<Tensor> pieces = native::split(x, split_size, dim);
  return with_split_history(x, std::move(pieces), wrap_dim(dim, x.dim(), "split"));
}

std::vector<Tensor> split(const Tensor& x, const Shape& sizes, int64_t dim) {
  std::vector<Tensor> pieces = native::split_with_sizes(x, sizes, dim);
  return with_split_history(x, std::move(pieces), wrap_dim(dim, x.dim(), "split_with_sizes"));
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  int64_t split_size = 0;
  {
    OpScope scope("chunk", {&x});
    RG_CHECK(x.dim() > 0, "chunk expects at least a 1-dimensional tensor");
    RG_CHECK(chunks > 0, "chunk expects `chunks` to be greater than 0, got: ", chunks);
    const int64_t len = x.size(wrap_dim(dim, x.dim(), "chunk"));
    split_size = len == 0 ? 1 : (len + chunks - 1) / chunks;
  }
  return split(x, split_size, dim);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) { return index_op(x, dim, index, false); }
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) { return index_op(x, dim, index, true); }

}  // namespace rg
