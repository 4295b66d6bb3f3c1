// PLACEHOLDER (being written): index kernels on cpu.
#include "core/kernels.h"

namespace rg {
void cat_cpu(const Tensor& out, const std::vector<Tensor>& xs, int64_t dim) { RG_THROW("cat_cpu is not implemented yet"); }
void index_select_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("index_select_cpu is not implemented yet"); }
void index_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { RG_THROW("index_add_cpu is not implemented yet"); }
void gather_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) { RG_THROW("gather_cpu is not implemented yet"); }
void scatter_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { RG_THROW("scatter_add_cpu is not implemented yet"); }
}  // namespace rg
