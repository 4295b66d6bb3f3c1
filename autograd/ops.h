// The differentiable op API (namespace rg): what model code calls. Each function runs the
// rg::native op and, when grad mode is on and an input requires grad, records a backward Node.
// Gradient formulas are written with rg::native ops (no double backward).
#pragma once

#include <utility>
#include <vector>

#include "core/native.h"
#include "core/tensor.h"

namespace rg {

// ---- elementwise unary (autograd/ops_elementwise.cpp)
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor clamp_min(const Tensor& x, double lo);
Tensor clamp_max(const Tensor& x, double hi);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor hardswish(const Tensor& x);  // x * relu6(x + 3) / 6
Tensor mish(const Tensor& x);       // x * tanh(softplus(x))
Tensor hardsigmoid(const Tensor& x);  // relu6(x + 3) / 6
Tensor sign(const Tensor& x);   // not differentiable (zero gradient)
Tensor floor(const Tensor& x);  // zero gradient
Tensor round(const Tensor& x);  // half to even; zero gradient
Tensor isfinite(const Tensor& x);

// ---- elementwise binary, broadcasting (autograd/ops_elementwise.cpp)
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor axpby(double alpha, const Tensor& a, double beta, const Tensor& b);  // alpha*a + beta*b, fused
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// comparisons: bool results, never differentiable
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double s);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);
Tensor ge(const Tensor& a, double s);
Tensor le(const Tensor& a, double s);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(const Tensor& a, double s);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(const Tensor& a, double s);
Tensor operator/(double s, const Tensor& a);

// ---- reductions (autograd/ops_reduce.cpp). Empty dims = all dims.
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor var(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor std(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor amax(const Tensor& x, const Shape& dims = {}, bool keepdim = false);  // grad split evenly among ties
Tensor amin(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);  // values, int64 indices
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // all elements
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
Tensor norm(const Tensor& x);  // 2-norm of all elements

// ---- linear algebra (autograd/ops_linalg.cpp)
Tensor matmul(const Tensor& a, const Tensor& b);  // torch.matmul
Tensor mm(const Tensor& a, const Tensor& b);      // (M, K) @ (K, N)
Tensor bmm(const Tensor& a, const Tensor& b);     // (B, M, K) @ (B, K, N)
// torch.addmm(bias, a, b) with beta = alpha = 1: bias (N) + a (M, K) @ b (K, N), rounded once
Tensor addmm(const Tensor& bias, const Tensor& a, const Tensor& b);

// ---- shape, joining and indexing (autograd/ops_shape.cpp). The view methods are on Tensor.
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const Shape& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace rg
