// PLACEHOLDER (being written): random kernels on cuda.
#include "core/kernels.h"

namespace rg {
void random_cuda(const Tensor& out, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) { RG_THROW("random_cuda is not implemented yet"); }
}  // namespace rg
