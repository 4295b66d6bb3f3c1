// PLACEHOLDER (being written): softmax kernels on cuda.
#include "core/kernels.h"

namespace rg {
void softmax_cuda(const Tensor& out, const Tensor& x, int64_t dim, bool log) { RG_THROW("softmax_cuda is not implemented yet"); }
void softmax_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim, bool log) { RG_THROW("softmax_bwd_cuda is not implemented yet"); }
}  // namespace rg
