// PLACEHOLDER (being written): matmul and bmm_out.
#include "core/native.h"

namespace rg::native {
Tensor matmul(const Tensor&, const Tensor&) { RG_THROW("matmul: not implemented yet"); }
void bmm_out(const Tensor&, const Tensor&, const Tensor&, double, double) { RG_THROW("bmm_out: not implemented yet"); }
}  // namespace rg::native
