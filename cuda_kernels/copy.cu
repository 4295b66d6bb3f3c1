// PLACEHOLDER (being written): copy kernels on cuda.
#include "core/kernels.h"

namespace rg {
void fill_cuda(const Tensor& out, double value) { RG_THROW("fill_cuda is not implemented yet"); }
void arange_cuda(const Tensor& out, double start, double step) { RG_THROW("arange_cuda is not implemented yet"); }
void copy_cuda(const Tensor& dst, const Tensor& src) { RG_THROW("copy_cuda is not implemented yet"); }
}  // namespace rg
