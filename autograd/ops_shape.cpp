// PLACEHOLDER (being written): ops_shape.
#include "autograd/ops.h"

namespace rg {
Tensor cat(const std::vector<Tensor>& xs, int64_t dim) { RG_THROW("not implemented yet"); }
Tensor stack(const std::vector<Tensor>& xs, int64_t dim) { RG_THROW("not implemented yet"); }
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) { RG_THROW("not implemented yet"); }
std::vector<Tensor> split(const Tensor& x, const Shape& sizes, int64_t dim) { RG_THROW("not implemented yet"); }
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) { RG_THROW("not implemented yet"); }
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("not implemented yet"); }
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("not implemented yet"); }
}  // namespace rg
