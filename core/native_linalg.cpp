// matmul with torch.matmul semantics (vectors, batch broadcasting, dtype promotion) and bmm_out,
// both lowered onto the gemm kernel with (B, M, K) views that avoid copies where strides allow.
#include <algorithm>

#include "core/native.h"

namespace rg::native {

namespace {

void check_same_device(const Tensor& a, const Tensor& b) {
  RG_CHECK(a.device() == b.device(), "Expected all tensors to be on the same device, but found at least two devices, ",
           a.device().str(), " and ", b.device().str(), "!");
}

// Note [GEMM operand strides]
// The gemm kernels (CPU and CUDA) get (B, R, C) operands that are either row-major (stride 2 == 1,
// stride 1 >= max(C, 1)) or column-major (stride 1 == 1, stride 2 >= max(R, 1)), with any batch
// stride (0 for a broadcast operand). The strides of size-1 dims are rewritten here to fit those
// rules (they address nothing), so a BLAS leading dimension can be read straight off them.
// Anything else is copied to a contiguous tensor first.
Tensor gemm_operand(const Tensor& t) {
  const int64_t B = t.size(0), R = t.size(1), C = t.size(2);
  const int64_t sb = B == 1 ? 0 : t.stride(0);
  {
    const int64_t s2 = C == 1 ? 1 : t.stride(2);
    const int64_t s1 = R == 1 ? std::max<int64_t>(C, 1) : t.stride(1);
    if (s2 == 1 && s1 >= std::max<int64_t>(C, 1)) return as_strided(t, t.sizes(), {sb, s1, s2}, t.storage_offset());
  }
  {
    const int64_t s1 = R == 1 ? 1 : t.stride(1);
    const int64_t s2 = C == 1 ? std::max<int64_t>(R, 1) : t.stride(2);
    if (s1 == 1 && s2 >= std::max<int64_t>(R, 1)) return as_strided(t, t.sizes(), {sb, s1, s2}, t.storage_offset());
  }
  return contiguous(t);
}

// Collapses dims [0, n) of t (all but its last two) into one batch dim: a view when their strides
// chain (or all are 0), else a copy.
Tensor to_3d(const Tensor& t) {
  const int64_t nd = t.dim();
  int64_t B = 1;
  for (int64_t d = 0; d < nd - 2; ++d) B *= t.size(d);
  if (nd == 3) return t;
  // find one stride that walks every batch element: innermost batch dim of size > 1 sets it
  int64_t stride = 0, expect = -1;
  bool ok = true;
  for (int64_t d = nd - 3; d >= 0 && ok; --d) {
    if (t.size(d) == 1) continue;
    if (expect < 0) {
      stride = t.stride(d);
      expect = stride * t.size(d);
    } else {
      ok = t.stride(d) == expect;
      expect *= t.size(d);
    }
  }
  if (ok) {
    return as_strided(t, {B, t.size(nd - 2), t.size(nd - 1)}, {stride, t.stride(nd - 2), t.stride(nd - 1)},
                      t.storage_offset());
  }
  const Tensor c = contiguous(t);
  return as_strided(c, {B, t.size(nd - 2), t.size(nd - 1)},
                    {t.size(nd - 2) * t.size(nd - 1), t.size(nd - 1), 1}, c.storage_offset());
}

// Rows (M) of a (..., M, K) tensor folded into its batch dims as one (1, B*M, K) view, when the
// strides allow it without a copy; undefined otherwise.
Tensor fold_rows(const Tensor& t) {
  const int64_t nd = t.dim();
  int64_t rows = 1;
  for (int64_t d = 0; d < nd - 1; ++d) rows *= t.size(d);
  int64_t stride = 0, expect = -1;
  for (int64_t d = nd - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (expect < 0) {
      stride = t.stride(d);
      expect = stride * t.size(d);
    } else {
      if (t.stride(d) != expect) return Tensor();
      expect *= t.size(d);
    }
  }
  if (rows > 1 && stride == 0) return Tensor();  // broadcast rows: keep them batched
  if (expect < 0) stride = t.size(nd - 1);          // a single row
  return as_strided(t, {1, rows, t.size(nd - 1)}, {0, stride, t.stride(nd - 1)}, t.storage_offset());
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  OpScope scope("matmul", {&a_in, &b_in});
  RG_CHECK(a_in.defined() && b_in.defined(), "matmul: undefined input");
  RG_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "both arguments to matmul need to be at least 1D, but they are ",
           a_in.dim(), "D and ", b_in.dim(), "D");
  check_same_device(a_in, b_in);
  const DType dt = promote_types(a_in.dtype(), b_in.dtype());
  const Device dev = a_in.device();
  const Tensor a0 = to(a_in, dev, dt), b0 = to(b_in, dev, dt);
  const int64_t K = a0.size(-1);
  const int64_t Kb = b0.dim() == 1 ? b0.size(0) : b0.size(-2);
  RG_CHECK(K == Kb, "matmul: shapes ", shape_str(a_in.sizes()), " and ", shape_str(b_in.sizes()),
           " cannot be multiplied (", K, " != ", Kb, ")");

  // Vectors become matrices: a (K) -> (1, K), b (K) -> (K, 1); those dims leave the result at the end.
  const Tensor a = a0.dim() == 1 ? unsqueeze(a0, 0) : a0;
  const Tensor b = b0.dim() == 1 ? unsqueeze(b0, 1) : b0;
  const int64_t M = a.size(-2), N = b.size(-1);
  const Shape a_batch(a.sizes().begin(), a.sizes().end() - 2), b_batch(b.sizes().begin(), b.sizes().end() - 2);
  const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape res_shape = batch;
  if (a0.dim() > 1) res_shape.push_back(M);
  if (b0.dim() > 1) res_shape.push_back(N);

  // (..., M, K) @ (K, N): fold the batch into the rows, one GEMM.
  if (b.dim() == 2 && a.dim() >= 3) {
    const Tensor af = fold_rows(a);
    if (af.defined()) {
      const int64_t rows = af.size(1);
      Tensor c = empty({1, rows, N}, TensorOptions(dt).device(dev));
      if (c.numel() > 0) {
        RG_CALL_KERNEL(gemm, dev, c, gemm_operand(af), gemm_operand(unsqueeze(b, 0)), 1.0, 0.0);
      }
      return view(c, res_shape);
    }
  }
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  const Tensor a3 = to_3d(batch.empty() ? unsqueeze(a, 0) : expand(a, a_full));
  const Tensor b3 = to_3d(batch.empty() ? unsqueeze(b, 0) : expand(b, b_full));
  const int64_t B = a3.size(0);
  Tensor c = empty({B, M, N}, TensorOptions(dt).device(dev));
  if (c.numel() > 0) RG_CALL_KERNEL(gemm, dev, c, gemm_operand(a3), gemm_operand(b3), 1.0, 0.0);
  return view(c, res_shape);
}

void bmm_out(const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) {
  OpScope scope("bmm_out", {&c, &a, &b});
  RG_CHECK(a.defined() && b.defined() && c.defined(), "bmm_out: undefined input");
  RG_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "bmm_out: expected 3-D tensors, got a ",
           shape_str(a.sizes()), ", b ", shape_str(b.sizes()), " and out ", shape_str(c.sizes()));
  check_same_device(c, a);
  check_same_device(c, b);
  RG_CHECK(a.size(2) == b.size(1), "bmm_out: shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
           " cannot be multiplied (", a.size(2), " != ", b.size(1), ")");
  RG_CHECK(a.size(0) == b.size(0), "bmm_out: batch sizes of ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
           " differ (", a.size(0), " != ", b.size(0), ")");
  const Shape want{a.size(0), a.size(1), b.size(2)};
  RG_CHECK(c.sizes() == want, "bmm_out: out has shape ", shape_str(c.sizes()), " but ", shape_str(a.sizes()), " @ ",
           shape_str(b.sizes()), " is ", shape_str(want));
  if (c.numel() == 0) return;
  const Tensor a3 = gemm_operand(to(a, c.device(), c.dtype()));
  const Tensor b3 = gemm_operand(to(b, c.device(), c.dtype()));
  const Tensor cw = gemm_operand(c);
  // gemm_operand gives a view of c itself unless c lacks a unit stride; overlapping batches
  // (batch stride 0) cannot be written in place either.
  if (cw.storage().get() == c.storage().get() && (c.size(0) == 1 || c.stride(0) != 0)) {
    RG_CALL_KERNEL(gemm, c.device(), cw, a3, b3, alpha, beta);
  } else {
    const Tensor tmp = beta == 0.0 ? empty(c.sizes(), TensorOptions(c.dtype()).device(c.device())) : clone(c);
    RG_CALL_KERNEL(gemm, c.device(), tmp, a3, b3, alpha, beta);
    copy_(c, tmp);
  }
  c.bump_version();
}

}  // namespace rg::native
