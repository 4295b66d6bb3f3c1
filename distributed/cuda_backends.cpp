// Always compiled: registration of the CUDA backends that this build has, and the NCCL version
// string (a fallback when NCCL is not built). See distributed/cuda_backends.h.
#include "distributed/cuda_backends.h"

#include "distributed/nccl_info.h"

#ifdef RINGGRAD_WITH_CUDA
#include "distributed/cuda_ring.h"
#endif
#ifdef RINGGRAD_WITH_NCCL
#include <nccl.h>
#endif

namespace rg::dist {

void register_cuda_backends() {
#ifdef RINGGRAD_WITH_CUDA
  register_cuda_ring_backend();
#endif
#ifdef RINGGRAD_WITH_NCCL
  register_nccl_backend();
#endif
}

std::string nccl_version() {
#ifdef RINGGRAD_WITH_NCCL
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "NCCL (version unknown)";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch; older releases major * 1000 + minor * 100 + patch.
  const int major = v >= 10000 ? v / 10000 : v / 1000;
  const int minor = v >= 10000 ? (v % 10000) / 100 : (v % 1000) / 100;
  const int patch = v % 100;
  return "NCCL " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
#else
  return "NCCL not built";
#endif
}

}  // namespace rg::dist
