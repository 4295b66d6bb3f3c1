// The overlap test of non-maximum suppression, shared by the CPU (core/cpu/nms.cpp) and CUDA
// (cuda_kernels/nms.cu) kernels so that both suppress exactly the same boxes (Note [NMS formulas]).
// Plain inline functions, callable from host and device code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RG_NMS_HD __host__ __device__ __forceinline__
#else
#define RG_NMS_HD inline
#endif

namespace rg::nms {

// Note [NMS formulas]
// Boxes are (x1, y1, x2, y2). Computed in A = float for f32/f16/bf16 inputs (loaded exactly) and
// A = double for f64, with every product and sum rounded on its own (no fused multiply-add: the
// CPU file turns contraction off, the CUDA file uses __fmul_rn and friends):
//   area(b)  = (x2 - x1) * (y2 - y1)
//   w        = max(min(x2a, x2b) - max(x1a, x1b), 0),  h likewise
//   inter    = w * h
//   iou      = inter / ((area(a) + area(b)) - inter)
// and b is suppressed by a kept box a when double(iou) > iou_threshold (a double, so the
// threshold is never rounded to float). As torchvision's nms, with its `>`; the formula is
// symmetric in a and b, and 0/0 (two empty boxes) is NaN, which suppresses nothing.
// Order: candidates are the boxes with score > score_threshold (compared in the scores' dtype, the
// threshold rounded to it as PyTorch does for `scores > thr`; NaN never is one), sorted by
// score descending, equal scores by increasing index (a stable sort; -0 and +0 are equal), cut to
// the first max_candidates when that is > 0; the greedy pass then keeps each candidate that no
// earlier kept one suppresses, stopping after max_keep kept.

// One rounding per operation on the device (__f*_rn are never contracted into FMAs).
template <typename A>
RG_NMS_HD A mul(A x, A y) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(A) == 4)
    return __fmul_rn(x, y);
  else
    return __dmul_rn(x, y);
#else
  return x * y;
#endif
}
template <typename A>
RG_NMS_HD A add(A x, A y) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(A) == 4)
    return __fadd_rn(x, y);
  else
    return __dadd_rn(x, y);
#else
  return x + y;
#endif
}
template <typename A>
RG_NMS_HD A sub(A x, A y) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(A) == 4)
    return __fsub_rn(x, y);
  else
    return __dsub_rn(x, y);
#else
  return x - y;
#endif
}

template <typename A>
RG_NMS_HD A max_(A a, A b) {
  return a > b ? a : b;
}
template <typename A>
RG_NMS_HD A min_(A a, A b) {
  return a < b ? a : b;
}

template <typename A>
RG_NMS_HD A area(const A* b) {  // b: (x1, y1, x2, y2)
  return mul(sub(b[2], b[0]), sub(b[3], b[1]));
}

// True when b is suppressed by a (or a by b: the test is symmetric).
template <typename A>
RG_NMS_HD bool suppresses(const A* a, A area_a, const A* b, A area_b, double iou_threshold) {
  const A w = max_(sub(min_(a[2], b[2]), max_(a[0], b[0])), A(0));
  const A h = max_(sub(min_(a[3], b[3]), max_(a[1], b[1])), A(0));
  const A inter = mul(w, h);
  const A iou = inter / sub(add(area_a, area_b), inter);
  return static_cast<double>(iou) > iou_threshold;
}

}  // namespace rg::nms
