// PLACEHOLDER (being written): reduce kernels on cpu.
#include "core/kernels.h"

namespace rg {
void reduce_cpu(const Tensor& out, const Tensor& x, ReduceOp op, const Shape& dims, int64_t correction) { RG_THROW("reduce_cpu is not implemented yet"); }
}  // namespace rg
