// PLACEHOLDER (being written): unary kernels on cuda.
#include "core/kernels.h"

namespace rg {
void unary_cuda(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) { RG_THROW("unary_cuda is not implemented yet"); }
void unary_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) { RG_THROW("unary_bwd_cuda is not implemented yet"); }
}  // namespace rg
