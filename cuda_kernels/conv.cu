// PLACEHOLDER (being written): conv kernels on cuda.
#include "core/kernels.h"

namespace rg {
void conv2d_cuda(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) { RG_THROW("conv2d_cuda is not implemented yet"); }
void conv2d_bwd_input_cuda(const Tensor& gx, const Tensor& gy, const Tensor& w, const ConvParams& p) { RG_THROW("conv2d_bwd_input_cuda is not implemented yet"); }
void conv2d_bwd_weight_cuda(const Tensor& gw, const Tensor& gy, const Tensor& x, const ConvParams& p) { RG_THROW("conv2d_bwd_weight_cuda is not implemented yet"); }
}  // namespace rg
