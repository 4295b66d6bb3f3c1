// RG_CUDA_CHECK and friends: every CUDA runtime return code is checked and turned into rg::Error.
// Only for translation units built with the CUDA toolkit.
#pragma once

#include <cuda_runtime.h>

#include "core/cuda_api.h"
#include "core/error.h"

#define RG_CUDA_CHECK(expr)                                                                     \
  do {                                                                                          \
    const cudaError_t rg_err_ = (expr);                                                         \
    if (rg_err_ != cudaSuccess) {                                                               \
      (void)cudaGetLastError();                                                                 \
      RG_THROW("CUDA error: ", cudaGetErrorString(rg_err_), " (", cudaGetErrorName(rg_err_),    \
               ") from ", #expr);                                                               \
    }                                                                                           \
  } while (0)

// After a kernel launch: the launch error always, a full synchronise when RINGGRAD_DEBUG_SYNC=1.
#define RG_CUDA_LAUNCH_CHECK(kernel_name) ::rg::cuda::check_last_launch(kernel_name, __FILE__, __LINE__)

namespace rg::cuda {
inline cudaStream_t raw(const Stream& s) { return static_cast<cudaStream_t>(s.handle); }
inline cudaStream_t current_raw_stream() { return raw(current_stream()); }
}  // namespace rg::cuda
