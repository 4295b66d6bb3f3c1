// PLACEHOLDER (being written): softmax kernels on cpu.
#include "core/kernels.h"

namespace rg {
void softmax_cpu(const Tensor& out, const Tensor& x, int64_t dim, bool log) { RG_THROW("softmax_cpu is not implemented yet"); }
void softmax_bwd_cpu(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim, bool log) { RG_THROW("softmax_bwd_cpu is not implemented yet"); }
}  // namespace rg
