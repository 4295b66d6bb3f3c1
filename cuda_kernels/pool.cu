// PLACEHOLDER (being written): pool kernels on cuda.
#include "core/kernels.h"

namespace rg {
void max_pool2d_cuda(const Tensor& y, const Tensor& indices, const Tensor& x, const PoolParams& p) { RG_THROW("max_pool2d_cuda is not implemented yet"); }
void max_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& indices, const PoolParams& p) { RG_THROW("max_pool2d_bwd_cuda is not implemented yet"); }
void avg_pool2d_cuda(const Tensor& y, const Tensor& x, const PoolParams& p) { RG_THROW("avg_pool2d_cuda is not implemented yet"); }
void avg_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy, const PoolParams& p) { RG_THROW("avg_pool2d_bwd_cuda is not implemented yet"); }
void adaptive_avg_pool2d_cuda(const Tensor& y, const Tensor& x) { RG_THROW("adaptive_avg_pool2d_cuda is not implemented yet"); }
void adaptive_avg_pool2d_bwd_cuda(const Tensor& gx, const Tensor& gy) { RG_THROW("adaptive_avg_pool2d_bwd_cuda is not implemented yet"); }
void upsample_nearest2d_cuda(const Tensor& y, const Tensor& x) { RG_THROW("upsample_nearest2d_cuda is not implemented yet"); }
void upsample_nearest2d_bwd_cuda(const Tensor& gx, const Tensor& gy) { RG_THROW("upsample_nearest2d_bwd_cuda is not implemented yet"); }
}  // namespace rg
