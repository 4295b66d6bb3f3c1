// PLACEHOLDER (being written): ops_reduce.
#include "autograd/ops.h"

namespace rg {
Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor var(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor std(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) { RG_THROW("not implemented yet"); }
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { RG_THROW("not implemented yet"); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor max(const Tensor& x) { RG_THROW("not implemented yet"); }
Tensor min(const Tensor& x) { RG_THROW("not implemented yet"); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { RG_THROW("not implemented yet"); }
Tensor softmax(const Tensor& x, int64_t dim) { RG_THROW("not implemented yet"); }
Tensor log_softmax(const Tensor& x, int64_t dim) { RG_THROW("not implemented yet"); }
Tensor norm(const Tensor& x) { RG_THROW("not implemented yet"); }
}  // namespace rg
