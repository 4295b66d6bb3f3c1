// Index arithmetic shared by the CPU (core/cpu/pool.cpp) and CUDA (cuda_kernels/pool.cu) pooling
// and nearest-upsampling kernels, so that both compute exactly the same windows and source pixels.
// Plain inline functions, callable from host and device code.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RG_HD __host__ __device__ __forceinline__
#else
#define RG_HD inline
#endif

namespace rg::pool {

RG_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
RG_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
// floor(a / b) for b > 0 and any sign of a.
RG_HD int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
// ceil(a / b) for b > 0 and any sign of a.
RG_HD int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Note [Nearest source index]
// PyTorch's 'nearest' mode: src = min(floor(dst * scale), in - 1) with scale = float(in) / out
// computed in float32 (identity when out == in, dst / 2 when out == 2 in). The backward sums, for
// each input pixel, the gradients of the outputs that read it, in increasing output order.
RG_HD int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t s = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return s < in - 1 ? s : in - 1;
}
// The outputs [*lo, *hi) whose nearest source is `src` (nearest_src is non-decreasing in dst).
RG_HD void nearest_dst_range(int64_t src, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  int64_t d = min64(out, max64(0, (src * out) / in));
  while (d > 0 && nearest_src(d - 1, in, out) >= src) --d;
  while (d < out && nearest_src(d, in, out) < src) ++d;
  *lo = d;
  while (d < out && nearest_src(d, in, out) == src) ++d;
  *hi = d;
}

// Adaptive average pooling window of output i: [floor(i * in / out), ceil((i + 1) * in / out)).
RG_HD int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
RG_HD int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
// A superset of the outputs whose adaptive window holds input position j (check membership).
RG_HD void adaptive_dst_range(int64_t j, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  *lo = (j * out) / in;
  *hi = min64(out, ((j + 1) * out + in - 1) / in);
}

// Outputs o in [*lo, *hi) whose window [o * stride - pad, o * stride - pad + span) may hold input
// position j (span = dilation * (k - 1) + 1 for max pooling, k for average pooling).
RG_HD void window_dst_range(int64_t j, int64_t stride, int64_t pad, int64_t span, int64_t out, int64_t* lo,
                            int64_t* hi) {
  *lo = max64(0, ceil_div(j + pad - span + 1, stride));
  *hi = min64(out, floor_div(j + pad, stride) + 1);
}

// Average pooling window of output o along one dim (PyTorch's rule): the divisor with padding
// counted is computed before clamping to the input, [*start, *end) after.
RG_HD void avg_window(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t in, int64_t* start, int64_t* end,
                      int64_t* padded_len) {
  int64_t s = o * stride - pad;
  int64_t e = min64(s + k, in + pad);
  *padded_len = e - s;
  *start = max64(s, 0);
  *end = min64(e, in);
}

}  // namespace rg::pool
