// PLACEHOLDER (being written): binary kernels on cuda.
#include "core/kernels.h"

namespace rg {
void binary_cuda(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) { RG_THROW("binary_cuda is not implemented yet"); }
void where_cuda(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) { RG_THROW("where_cuda is not implemented yet"); }
}  // namespace rg
