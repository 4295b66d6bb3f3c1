// PLACEHOLDER (being written): gemm kernels on cpu.
#include "core/kernels.h"

namespace rg {
void gemm_cpu(const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) { RG_THROW("gemm_cpu is not implemented yet"); }
}  // namespace rg
