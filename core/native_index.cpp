// PLACEHOLDER (being written): cat, stack, split, index_select, gather and their scatter twins.
#include "core/native.h"

namespace rg::native {
Tensor cat(const std::vector<Tensor>&, int64_t) { RG_THROW("cat: not implemented yet"); }
Tensor stack(const std::vector<Tensor>&, int64_t) { RG_THROW("stack: not implemented yet"); }
std::vector<Tensor> split(const Tensor&, int64_t, int64_t) { RG_THROW("split: not implemented yet"); }
std::vector<Tensor> split_with_sizes(const Tensor&, const Shape&, int64_t) { RG_THROW("split: not implemented yet"); }
Tensor index_select(const Tensor&, int64_t, const Tensor&) { RG_THROW("index_select: not implemented yet"); }
void index_add_(const Tensor&, int64_t, const Tensor&, const Tensor&) { RG_THROW("index_add_: not implemented yet"); }
Tensor gather(const Tensor&, int64_t, const Tensor&) { RG_THROW("gather: not implemented yet"); }
void scatter_add_(const Tensor&, int64_t, const Tensor&, const Tensor&) { RG_THROW("scatter_add_: not implemented yet"); }
}  // namespace rg::native
