// rg::native: every op as a plain function on tensors, without autograd. Each one checks its
// arguments (naming itself through an OpScope), promotes dtypes, broadcasts, allocates its output
// and calls a kernel from the table in core/kernels.h. Autograd (autograd/ops.h) wraps these.
#pragma once

#include <limits>
#include <vector>

#include "core/kernels.h"
#include "core/tensor.h"

namespace rg {

// ---- factories (public API; core/factory.cpp)
class Generator;
Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor empty_strided(const Shape& shape, const Shape& strides, TensorOptions opts = {});
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor arange(double end, TensorOptions opts = {});
Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = {});
Tensor scalar_tensor(double value, TensorOptions opts = {});  // 0-dim
// Philox: a given generator state yields the same numbers on CPU and CUDA (Note [Philox streams]).
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);   // U[0, 1)
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);  // N(0, 1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts = DType::i64,
               Generator* gen = nullptr);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opts = DTypeOf<T>::value);
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector<T>(values, Shape{static_cast<int64_t>(values.size())}, DTypeOf<T>::value);
}
Tensor empty_like(const Tensor& t, TensorOptions opts);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// Wraps memory the caller owns (no copy). The deleter, if any, runs when the last view dies.
Tensor from_blob(void* data, const Shape& shape, TensorOptions opts, std::function<void(void*)> deleter = {});

namespace native {

// ---- views: share storage, never copy (core/native_view.cpp)
Tensor as_strided(const Tensor& x, const Shape& sizes, const Shape& strides, int64_t offset);
Tensor view(const Tensor& x, const Shape& shape);
Tensor reshape(const Tensor& x, const Shape& shape);  // copies only when no view is possible
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const Shape& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor alias(const Tensor& x);  // same storage and strides, a new TensorImpl without autograd state
// Resolves one -1 in `shape` against numel; checks the product.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op);

// ---- copies and casts (core/native_copy.cpp)
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to(const Tensor& x, Device device, DType dtype, bool force_copy = false);
void copy_(const Tensor& dst, const Tensor& src);  // broadcasts src to dst; any devices and dtypes
void fill_(const Tensor& t, double value);

// ---- elementwise (core/native_elementwise.cpp)
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0);
void unary_(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0);  // in place
// Gradient of a unary op from gy and the saved input, or output where unary_bwd_uses_output; the
// ops whose row has kGradX or kGradY (core/elementwise_ops.h) have one.
Tensor unary_bwd(UnaryOp op, const Tensor& gy, const Tensor& xy, double alpha = 0.0, double beta = 0.0);
// The rows with kGradY (Relu, Sigmoid, Tanh, Exp, ...) take the output y; the others the input x.
constexpr bool unary_bwd_uses_output(UnaryOp op) { return unary_op_grad_uses_output(op); }
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 1.0, double beta = 1.0);
void binary_(BinaryOp op, const Tensor& self, const Tensor& other, double alpha = 1.0, double beta = 1.0);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Sums x down to `shape` over the dims broadcasting added or stretched (the gradient of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- reductions (core/native_reduce.cpp). Empty dims means all dims.
Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim, int64_t correction = 1);
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim, bool log = false);
Tensor softmax_bwd(const Tensor& gy, const Tensor& y, int64_t dim, bool log = false);

// ---- linear algebra (core/native_linalg.cpp)
// torch.matmul semantics: 1-D vectors promoted and squeezed, batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// c (B, M, N) = alpha * a (B, M, K) @ b (B, K, N) + beta * c, in place on a preallocated c.
void bmm_out(const Tensor& c, const Tensor& a, const Tensor& b, double alpha = 1.0, double beta = 0.0);

// ---- indexing and joining (core/native_index.cpp)
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> split_with_sizes(const Tensor& x, const Shape& sizes, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index 1-D i32/i64
void index_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);  // index has x's ndim
void scatter_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

// ---- random (core/random.cpp)
void random_(const Tensor& t, RandomKind kind, double a, double b, Generator* gen = nullptr);

// ---- neural-network ops (core/native_conv.cpp: conv, pooling, upsampling)
// x (N, Cin, H, W), w (Cout, Cin/groups, kh, kw), bias (Cout) or undefined -> (N, Cout, Ho, Wo)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p);
Tensor conv2d_bwd_input(const Tensor& gy, const Tensor& w, const Shape& x_shape, const ConvParams& p);
Tensor conv2d_bwd_weight(const Tensor& gy, const Tensor& x, const Shape& w_shape, const ConvParams& p);
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const PoolParams& p);  // values, int64 flat h*W+w indices
Tensor max_pool2d_bwd(const Tensor& gy, const Tensor& indices, const Shape& x_shape, const PoolParams& p);
Tensor avg_pool2d(const Tensor& x, const PoolParams& p);
Tensor avg_pool2d_bwd(const Tensor& gy, const Shape& x_shape, const PoolParams& p);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avg_pool2d_bwd(const Tensor& gy, const Shape& x_shape);
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor upsample_nearest2d_bwd(const Tensor& gy, const Shape& x_shape);

// ---- batch norm pieces (core/native_norm.cpp); x (N, C, *), statistics (C) in f32 for
// f16/bf16/f32 inputs and f64 for f64 inputs.
std::pair<Tensor, Tensor> batchnorm_stats(const Tensor& x);  // mean, biased var
Tensor batchnorm_fwd(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                     const Tensor& bias);
std::pair<Tensor, Tensor> batchnorm_bwd_reduce(const Tensor& gy, const Tensor& x, const Tensor& mean);  // sum dy, sum dy (x - mean)
// gx = weight * invstd * (dy - mean_dy - (x - mean) * invstd^2 * mean_dy_xmu)
Tensor batchnorm_bwd_elemt(const Tensor& gy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                           const Tensor& weight, const Tensor& mean_dy, const Tensor& mean_dy_xmu);

// ---- fused multi-tensor updates (core/native_optim.cpp). All tensors of a list share a device.
void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
               const SgdParams& p);
void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                const std::vector<Tensor>& max_exp_avg_sq, const AdamParams& p);
// grads *= inv_scale; found_inf (1, f32) is set to 1 if any grad has an inf or nan.
void amp_unscale_(const std::vector<Tensor>& grads, const Tensor& found_inf, const Tensor& inv_scale);
// PyTorch's _amp_update_scale_: back off on found_inf, grow after `interval` clean steps.
void amp_update_scale_(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf, double growth,
                       double backoff, int64_t interval);
Tensor multi_sum_squares(const std::vector<Tensor>& xs);  // (len) f32: sum of squares of each tensor
void multi_scale_(const std::vector<Tensor>& xs, const Tensor& scale);  // xs *= scale (a 1-element device tensor)
void multi_axpby_(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, double a, double b);  // ys = a ys + b xs

// ---- detection (core/native_nms.cpp)
// Greedy non-maximum suppression as torchvision.ops.nms, plus a score threshold and caps: boxes (N, 4)
// x1y1x2y2 and scores (N) of one float dtype on one device -> the kept indices (K) i64 into boxes, by
// decreasing score (ties: lower index first). Candidates are the boxes with score > score_threshold;
// only the best max_candidates (> 0) of them take part, and at most max_keep (>= 0) are kept.
// CPU and CUDA keep exactly the same boxes (Note [NMS formulas] in core/nms_iou.h). Reads one count
// back from the device.
Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold,
           double score_threshold = -std::numeric_limits<double>::infinity(), int64_t max_candidates = 0,
           int64_t max_keep = -1);

}  // namespace native
}  // namespace rg
