// PLACEHOLDER (being written): reduce kernels on cuda.
#include "core/kernels.h"

namespace rg {
void reduce_cuda(const Tensor& out, const Tensor& x, ReduceOp op, const Shape& dims, int64_t correction) { RG_THROW("reduce_cuda is not implemented yet"); }
}  // namespace rg
