// Differentiable matrix products: matmul (torch.matmul: 1-D operands, broadcast batch dims; the
// gradients are summed back to each input's shape), mm, bmm and addmm (bias + product, one gemm). Backward products use transposed
// views of the saved operands, never transposed copies.
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

Tensor mT(const Tensor& t) { return native::transpose(t, -2, -1); }

// A gemm operand must have unit stride in one of its last two dims (Note [Kernel contract]);
// an incoming gradient may be any view (an expand of a scalar, say): copy only then.
Tensor gemm_ready(const Tensor& t) {
  if (t.dim() < 2) return t;
  const int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  const bool row_major = (c == 1 || sc == 1) && (r == 1 || sr >= c);
  const bool col_major = (r == 1 || sr == 1) && (c == 1 || sc >= r);
  return row_major || col_major ? t : native::contiguous(t);
}

// ---- matmul
// Every case is handled in the promoted form: a 1-D `a` is (1, K), a 1-D `b` is (K, 1), and the
// gradient gets the matching unit dims back, so the 2-D formulas apply.
struct MatmulBackward : Node {
  Shape a_shape, b_shape;
  SavedVariable a, b;
  MatmulBackward(Shape as, Shape bs) : a_shape(std::move(as)), b_shape(std::move(bs)) {}
  std::string name() const override { return "MatmulBackward"; }
  void release_variables() override {
    a.reset();
    b.reset();
  }
  TensorList apply(TensorList&& grads) override {
    const bool need_a = next_edges[0].valid(), need_b = next_edges[1].valid();
    const bool a_vec = a_shape.size() == 1, b_vec = b_shape.size() == 1;
    Tensor g = grads[0];  // (batch..., [M], [N])
    if (a_vec && b_vec) {
      g = native::reshape(g, {1, 1});
    } else if (a_vec) {
      g = native::unsqueeze(g, g.dim() - 1);  // (batch..., 1, N)
    } else if (b_vec) {
      g = native::unsqueeze(g, g.dim());  // (batch..., M, 1)
    }
    g = gemm_ready(g);
    Tensor ga, gb;
    if (need_a) {
      const Tensor bv = b.unpack(this);
      const Tensor b2 = b_vec ? native::unsqueeze(bv, 1) : bv;           // (..., K, N)
      const Tensor ga2 = native::matmul(g, mT(b2));  // (batch..., M, K)
      Shape a2_shape = a_shape;
      if (a_vec) a2_shape.insert(a2_shape.begin(), 1);
      ga = native::reshape(native::sum_to(ga2, a2_shape), a_shape);
    }
    if (need_b) {
      const Tensor av = a.unpack(this);
      const Tensor a2 = a_vec ? native::unsqueeze(av, 0) : av;  // (..., M, K)
      Shape b2_shape = b_shape;
      if (b_vec) b2_shape.push_back(1);
      Tensor gb2;
      if (b2_shape.size() == 2 && a2.dim() > 2) {
        // b has no batch dims: fold a's batch into M, one (K, batch*M) @ (batch*M, N) product.
        const int64_t k = a2.size(-1), n = g.size(-1);
        gb2 = native::matmul(mT(native::reshape(a2, {-1, k})), gemm_ready(native::reshape(g, {-1, n})));
      } else {
        gb2 = native::sum_to(native::matmul(mT(a2), g), b2_shape);  // (batch..., K, N) summed to b's batch
      }
      gb = native::reshape(gb2, b_shape);
    }
    return {ga, gb};
  }
};

// ---- mm and bmm: same-rank products, no broadcasting.
struct MmBackward : Node {
  bool batched;
  SavedVariable a, b;
  explicit MmBackward(bool bt) : batched(bt) {}
  std::string name() const override { return batched ? "BmmBackward" : "MmBackward"; }
  void release_variables() override {
    a.reset();
    b.reset();
  }
  TensorList apply(TensorList&& grads) override {
    const Tensor g = gemm_ready(grads[0]);  // ([B], M, N)
    Tensor ga, gb;
    if (next_edges[0].valid()) ga = product(g, mT(b.unpack(this)));  // ([B], M, K)
    if (next_edges[1].valid()) gb = product(mT(a.unpack(this)), g);  // ([B], K, N)
    return {ga, gb};
  }
  Tensor product(const Tensor& x, const Tensor& y) const {
    if (!batched) return native::matmul(x, y);
    Tensor out = empty({x.size(0), x.size(1), y.size(2)}, TensorOptions(x.dtype()).device(x.device()));
    native::bmm_out(out, x, y);
    return out;
  }
};

// ---- addmm: the bias is a 1-D row added to every row of the product.
struct AddmmBackward : Node {
  SavedVariable a, b;
  std::string name() const override { return "AddmmBackward"; }
  void release_variables() override {
    a.reset();
    b.reset();
  }
  TensorList apply(TensorList&& grads) override {
    const Tensor g = gemm_ready(grads[0]);  // (M, N)
    Tensor gbias, ga, gb;
    if (next_edges[0].valid()) gbias = native::sum(g, {0});                       // (N)
    if (next_edges[1].valid()) ga = native::matmul(g, mT(b.unpack(this)));        // (M, K)
    if (next_edges[2].valid()) gb = native::matmul(mT(a.unpack(this)), g);        // (K, N)
    return {gbias, ga, gb};
  }
};

void check_same_dtype_device(const Tensor& a, const Tensor& b, const char* op) {
  RG_CHECK(a.dtype() == b.dtype(), op, ": expected both operands to have the same dtype, but got ",
           dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  RG_CHECK(a.device() == b.device(), op, ": expected both operands on the same device, but got ", a.device().str(),
           " and ", b.device().str());
}

}  // namespace

// Autocast: matmul, mm and bmm run in the autocast dtype (Note [Autocast policy]).
Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = amp::autocast_lower(a_in), b = amp::autocast_lower(b_in);
  Tensor out = native::matmul(a, b);
  if (auto n = record<MatmulBackward>({&a, &b}, a.sizes(), b.sizes())) {
    if (n->next_edges[1].valid()) n->a = SavedVariable(a);
    if (n->next_edges[0].valid()) n->b = SavedVariable(b);
    set_history(out, n);
  }
  return out;
}

Tensor mm(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = amp::autocast_lower(a_in), b = amp::autocast_lower(b_in);
  {
    OpScope scope("mm", {&a, &b});
    RG_CHECK(a.defined() && b.defined(), "mm: undefined operand");
    RG_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expected 2-D operands, got ", a.dim(), "-D and ", b.dim(), "-D");
    RG_CHECK(a.size(1) == b.size(0), "mm: mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1),
             " and ", b.size(0), "x", b.size(1), ")");
    check_same_dtype_device(a, b, "mm");
  }
  Tensor out = native::matmul(a, b);
  if (auto n = record<MmBackward>({&a, &b}, false)) {
    if (n->next_edges[1].valid()) n->a = SavedVariable(a);
    if (n->next_edges[0].valid()) n->b = SavedVariable(b);
    set_history(out, n);
  }
  return out;
}

Tensor bmm(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = amp::autocast_lower(a_in), b = amp::autocast_lower(b_in);
  Tensor out;
  {
    OpScope scope("bmm", {&a, &b});
    RG_CHECK(a.defined() && b.defined(), "bmm: undefined operand");
    RG_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D operands, got ", a.dim(), "-D and ", b.dim(), "-D");
    RG_CHECK(a.size(0) == b.size(0), "bmm: batch sizes differ: ", a.size(0), " and ", b.size(0));
    RG_CHECK(a.size(2) == b.size(1), "bmm: shapes cannot be multiplied (", shape_str(a.sizes()), " and ",
             shape_str(b.sizes()), ")");
    check_same_dtype_device(a, b, "bmm");
    out = empty({a.size(0), a.size(1), b.size(2)}, TensorOptions(a.dtype()).device(a.device()));
  }
  native::bmm_out(out, a, b);
  if (auto n = record<MmBackward>({&a, &b}, true)) {
    if (n->next_edges[1].valid()) n->a = SavedVariable(a);
    if (n->next_edges[0].valid()) n->b = SavedVariable(b);
    set_history(out, n);
  }
  return out;
}

// Note [Linear rounds once]: bias + a @ b is one gemm with beta = 1 into an output prefilled with
// the bias, so in f16/bf16 the f32 accumulator and the bias are summed before the single rounding
// to the output dtype, as cuBLAS' addmm under PyTorch's autocast linear. A product rounded to bf16
// and then added to the bias would round twice (257 -> 256, + 0.5 -> 256 instead of 258).
Tensor addmm(const Tensor& bias_in, const Tensor& a_in, const Tensor& b_in) {
  const Tensor bias = amp::autocast_lower(bias_in), a = amp::autocast_lower(a_in), b = amp::autocast_lower(b_in);
  Tensor out;
  {
    OpScope scope("addmm", {&bias, &a, &b});
    RG_CHECK(bias.defined() && a.defined() && b.defined(), "addmm: undefined operand");
    RG_CHECK(a.dim() == 2 && b.dim() == 2, "addmm: expected 2-D mat1 and mat2, got ", a.dim(), "-D and ", b.dim(), "-D");
    RG_CHECK(a.size(1) == b.size(0), "addmm: mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1),
             " and ", b.size(0), "x", b.size(1), ")");
    RG_CHECK(bias.dim() == 1 && bias.size(0) == b.size(1), "addmm: bias ", shape_str(bias.sizes()),
             " must be (", b.size(1), ") to add to a (", a.size(0), ", ", b.size(1), ") product");
    check_same_dtype_device(a, b, "addmm");
    check_same_dtype_device(bias, a, "addmm");
    // (M, N), every row the bias; a fresh buffer even for M = 1, where a contiguous view of the
    // expanded bias would be the bias itself and the gemm would write into it.
    out = empty({a.size(0), b.size(1)}, TensorOptions(a.dtype()).device(a.device()));
    native::copy_(out, native::expand(bias, out.sizes()));
  }
  native::bmm_out(native::unsqueeze(out, 0), native::unsqueeze(a, 0), native::unsqueeze(b, 0), 1.0, 1.0);
  if (auto n = record<AddmmBackward>({&bias, &a, &b})) {
    if (n->next_edges[2].valid()) n->a = SavedVariable(a);
    if (n->next_edges[1].valid()) n->b = SavedVariable(b);
    set_history(out, n);
  }
  return out;
}

}  // namespace rg
