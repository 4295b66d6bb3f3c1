// Autocast (automatic mixed precision): a thread-local scope in which matmul-like ops run in f16
// or bf16 and reductions, softmax, norms' statistics and losses in f32 (DESIGN.md §4).
// Note [Autocast policy] says which op calls which helper.
#pragma once

#include "core/tensor.h"

namespace rg::amp {

// Note [Autocast policy]
// Inside an enabled AutocastGuard (one thread; any device):
// - "lower" ops cast their floating inputs to the autocast dtype with autocast_lower():
//   matmul, mm, bmm (autograd/ops_linalg.cpp), conv2d and linear (nn/functional_conv.cpp,
//   nn/functional.cpp).
// - "f32" ops cast f16/bf16 inputs up with autocast_f32(): sum, mean, norm, softmax, log_softmax
//   (autograd/ops_reduce.cpp) and the losses (nn/functional_loss.cpp).
// - Everything else runs in the dtype it gets (elementwise ops promote mixed inputs as usual;
//   batch norm takes f16/bf16 activations with f32 weights and statistics).
// Casts go through the differentiable Tensor::to, so the gradient of an f32 master weight comes
// back in f32. f64 tensors are never lowered (as PyTorch). A leaf that requires grad (a weight)
// is cast once per outermost scope: the cast is cached and reused by later ops until the
// outermost enabled guard exits, as PyTorch's weight cast cache (only while grad mode is on,
// so that a cast made under no_grad, without a grad_fn, is never reused where a gradient is
// needed). Backward passes never consult autocast (they call rg::native ops).
class AutocastGuard {
 public:
  // dtype: DType::f16 or DType::bf16. enabled = false disables autocast inside an enabled scope.
  explicit AutocastGuard(DType dtype = DType::f16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

bool is_autocast_enabled();
DType autocast_dtype();  // the innermost guard's dtype (f16 outside any guard)

// The input of a lower-precision op: a floating tensor cast to the autocast dtype when autocast
// is enabled; anything else unchanged (f64 included).
Tensor autocast_lower(const Tensor& t);
// The input of an f32 op: an f16/bf16 tensor cast to f32 when autocast is enabled.
Tensor autocast_f32(const Tensor& t);

// Drops the cached weight casts now (they are dropped anyway when the outermost guard exits).
void clear_autocast_cache();

}  // namespace rg::amp
