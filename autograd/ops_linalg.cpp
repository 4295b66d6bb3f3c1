// PLACEHOLDER (being written): ops_linalg.
#include "autograd/ops.h"

namespace rg {
Tensor matmul(const Tensor& a, const Tensor& b) { RG_THROW("not implemented yet"); }
Tensor mm(const Tensor& a, const Tensor& b) { RG_THROW("not implemented yet"); }
Tensor bmm(const Tensor& a, const Tensor& b) { RG_THROW("not implemented yet"); }
}  // namespace rg
