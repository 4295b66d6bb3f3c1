// PLACEHOLDER (being written): binary kernels on cpu.
#include "core/kernels.h"

namespace rg {
void binary_cpu(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) { RG_THROW("binary_cpu is not implemented yet"); }
void where_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) { RG_THROW("where_cpu is not implemented yet"); }
}  // namespace rg
