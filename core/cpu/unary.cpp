// PLACEHOLDER (being written): unary kernels on cpu.
#include "core/kernels.h"

namespace rg {
void unary_cpu(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) { RG_THROW("unary_cpu is not implemented yet"); }
void unary_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) { RG_THROW("unary_bwd_cpu is not implemented yet"); }
}  // namespace rg
