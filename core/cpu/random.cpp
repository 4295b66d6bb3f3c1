// PLACEHOLDER (being written): random kernels on cpu.
#include "core/kernels.h"

namespace rg {
void random_cpu(const Tensor& out, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) { RG_THROW("random_cpu is not implemented yet"); }
}  // namespace rg
