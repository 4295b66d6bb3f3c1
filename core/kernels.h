// The op table: every device kernel is declared once here, by one line of RG_KERNEL_TABLE, and
// implemented twice, as <name>_cpu in core/cpu/ and <name>_cuda in cuda_kernels/. rg::kernels::<name>
// picks one by the device of its first tensor argument. See Note [Kernel contract].
#pragma once

#include <cstdint>
#include <vector>

#include "core/cuda_api.h"
#include "core/elementwise_ops.h"
#include "core/tensor.h"

namespace rg {

// UnaryOp, BinaryOp, ReduceOp, their names and flags: one row per op in core/elementwise_ops.h.

// Convolution and pooling geometry (NCHW). Output size per dim:
// (in + 2 pad - dilation (k - 1) - 1) / stride + 1, rounded up instead of down for ceil_mode pools.
struct ConvParams {
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;
};
struct PoolParams {
  int64_t kernel[2] = {2, 2};
  int64_t stride[2] = {2, 2};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  bool ceil_mode = false;
  bool count_include_pad = true;
};

// Optimizer hyper-parameters for one fused step over a list of tensors (PyTorch's formulas).
struct SgdParams {
  double lr = 0.01, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  bool first_step = false;  // momentum buffers are initialised to the gradient on the first step
};
struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdamW: decay the weights directly instead of adding to the gradient
  bool amsgrad = false, maximize = false;
  int64_t step = 1;  // the step number after incrementing (bias corrections use it)
};

enum class RandomKind : uint8_t { Uniform /* [a, b) */, Normal /* mean a, std b */, Bernoulli /* p = a */ };

// Note [Kernel contract]
// - Kernels never allocate their outputs: rg::native:: functions check arguments, allocate, broadcast
//   (as stride-0 views) and only then call a kernel. Every tensor argument is on the same device.
// - Elementwise kernels (copy, unary, unary_bwd, binary, where, fill) get operands of exactly the
//   output's shape with any strides; the output may itself be a strided view (in-place ops).
//   They take a flat, vectorised path when everything is contiguous.
// - reduce: `out` has x's ndim with size 1 in every reduced dim (keepdim form), `dims` sorted.
// - gemm: c (B, M, N) = alpha * a (B, M, K) @ b (B, K, N) + beta * c; a and b may be transposed
//   views (unit stride in either of their last two dims) and may have batch stride 0.
// - Half and bfloat16 math accumulates in float32.
#define RG_KERNEL_TABLE(_)                                                                                  \
  _(fill, (const Tensor& out, double value))                                                                 \
  _(arange, (const Tensor& out, double start, double step))                                                  \
  _(copy, (const Tensor& dst, const Tensor& src)) /* same device; casts between any dtypes */               \
  _(unary, (const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta))                     \
  _(unary_bwd, (const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta)) \
  _(binary, (const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta))  \
  _(where, (const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b))                       \
  _(reduce, (const Tensor& out, const Tensor& x, ReduceOp op, const Shape& dims, int64_t correction))      \
  _(softmax, (const Tensor& out, const Tensor& x, int64_t dim, bool log))                                    \
  _(softmax_bwd, (const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim, bool log))              \
  _(gemm, (const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta))                   \
  _(cat, (const Tensor& out, const std::vector<Tensor>& xs, int64_t dim))                                   \
  _(index_select, (const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index))                   \
  _(index_add, (const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src))                    \
  _(gather, (const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index))                         \
  _(scatter_add, (const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src))                  \
  _(random, (const Tensor& out, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset))          \
  /* ---- nn: convolution, pooling, resampling (core/cpu/conv.cpp, pool.cpp; cuda_kernels/conv.cu, pool.cu) */ \
  _(conv2d, (const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p))      \
  _(conv2d_bwd_input, (const Tensor& gx, const Tensor& gy, const Tensor& w, const ConvParams& p))             \
  _(conv2d_bwd_weight, (const Tensor& gw, const Tensor& gy, const Tensor& x, const ConvParams& p))            \
  _(max_pool2d, (const Tensor& y, const Tensor& indices, const Tensor& x, const PoolParams& p))               \
  _(max_pool2d_bwd, (const Tensor& gx, const Tensor& gy, const Tensor& indices, const PoolParams& p))         \
  _(avg_pool2d, (const Tensor& y, const Tensor& x, const PoolParams& p))                                      \
  _(avg_pool2d_bwd, (const Tensor& gx, const Tensor& gy, const PoolParams& p))                                \
  _(adaptive_avg_pool2d, (const Tensor& y, const Tensor& x))                                                  \
  _(adaptive_avg_pool2d_bwd, (const Tensor& gx, const Tensor& gy))                                            \
  _(upsample_nearest2d, (const Tensor& y, const Tensor& x))                                                   \
  _(upsample_nearest2d_bwd, (const Tensor& gx, const Tensor& gy))                                             \
  /* ---- nn: batch norm (core/cpu/batchnorm.cpp; cuda_kernels/batchnorm.cu); per channel of x (N, C, *) */   \
  _(batchnorm_stats, (const Tensor& mean, const Tensor& var, const Tensor& x))                                \
  _(batchnorm_fwd, (const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,               \
                    const Tensor& weight, const Tensor& bias))                                                 \
  _(batchnorm_bwd_reduce, (const Tensor& sum_dy, const Tensor& sum_dy_xmu, const Tensor& gy, const Tensor& x,  \
                           const Tensor& mean))                                                                \
  _(batchnorm_bwd_elemt, (const Tensor& gx, const Tensor& gy, const Tensor& x, const Tensor& mean,            \
                          const Tensor& invstd, const Tensor& weight, const Tensor& mean_dy,                   \
                          const Tensor& mean_dy_xmu))                                                          \
  /* ---- optimizers and AMP, fused over tensor lists (core/cpu/optim.cpp; cuda_kernels/optim.cu) */          \
  _(sgd_step, (const std::vector<Tensor>& params, const std::vector<Tensor>& grads,                           \
               const std::vector<Tensor>& bufs, const SgdParams& p))                                           \
  _(adam_step, (const std::vector<Tensor>& params, const std::vector<Tensor>& grads,                          \
                const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,                     \
                const std::vector<Tensor>& max_exp_avg_sq, const AdamParams& p))                               \
  _(amp_unscale, (const std::vector<Tensor>& grads, const Tensor& found_inf, const Tensor& inv_scale))        \
  _(amp_update_scale, (const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf,            \
                       double growth, double backoff, int64_t interval))                                       \
  _(multi_sum_squares, (const Tensor& out, const std::vector<Tensor>& xs))                                    \
  _(multi_scale, (const std::vector<Tensor>& xs, const Tensor& scale))                                        \
  _(multi_axpby, (const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, double a, double b))         \
  /* ---- detection: greedy NMS (core/cpu/nms.cpp; cuda_kernels/nms.cu; Note [NMS formulas] in core/nms_iou.h). \
     boxes (N, 4) x1y1x2y2 and scores (N) contiguous, one float dtype; keep (K) i64 gets the kept indices  \
     into boxes in score order, num_kept (1) i64 how many of them are valid (at most K). */                 \
  _(nms, (const Tensor& keep, const Tensor& num_kept, const Tensor& boxes, const Tensor& scores,              \
          double iou_threshold, double score_threshold, int64_t max_candidates))

#define RG_DECLARE_KERNEL(name, params) \
  void name##_cpu params;               \
  void name##_cuda params;
RG_KERNEL_TABLE(RG_DECLARE_KERNEL)
#undef RG_DECLARE_KERNEL

}  // namespace rg

// Calls name##_cpu or name##_cuda by device, making a CUDA device current for the call.
#define RG_CALL_KERNEL(name, device, ...)              \
  do {                                                 \
    const ::rg::Device rg_dev_ = (device);             \
    if (rg_dev_.is_cuda()) {                           \
      ::rg::cuda::DeviceGuard rg_guard_(rg_dev_.index); \
      ::rg::name##_cuda(__VA_ARGS__);                  \
    } else {                                           \
      ::rg::name##_cpu(__VA_ARGS__);                   \
    }                                                  \
  } while (0)
