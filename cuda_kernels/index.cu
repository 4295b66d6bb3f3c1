// PLACEHOLDER (being written): index kernels on cuda.
#include "core/kernels.h"

namespace rg {
void cat_cuda(const Tensor& out, const std::vector<Tensor>& xs, int64_t dim) { RG_THROW("cat_cuda is not implemented yet"); }
void index_select_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("index_select_cuda is not implemented yet"); }
void index_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { RG_THROW("index_add_cuda is not implemented yet"); }
void gather_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("gather_cuda is not implemented yet"); }
void scatter_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { RG_THROW("scatter_add_cuda is not implemented yet"); }
}  // namespace rg
