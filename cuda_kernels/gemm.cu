// PLACEHOLDER (being written): gemm kernels on cuda.
#include "core/kernels.h"

namespace rg {
void gemm_cuda(const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) { RG_THROW("gemm_cuda is not implemented yet"); }
}  // namespace rg
