// `ringgrad info`: the build, the visible CUDA devices and library versions.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/commands.h"
#include "core/cuda_api.h"
#include "core/cudnn_config.h"
#include "distributed/nccl_info.h"

namespace rg::app {

int cmd_info(const Args&) {
  std::printf("ringgrad\n");
  std::printf("  CUDA support: %s\n", cuda::built_with_cuda() ? "built in" : "not built (CPU only)");
  std::printf("  %s\n", cuda::runtime_version().c_str());
  // Both read "<library> <version>" or say they were not built.
  const std::string cudnn = cudnn_version(), nccl = dist::nccl_version();
  std::printf("  %s\n", (cudnn.rfind("cuDNN", 0) == 0 ? cudnn : "cuDNN " + cudnn).c_str());
  std::printf("  %s\n", (nccl.rfind("NCCL", 0) == 0 ? nccl : "NCCL " + nccl).c_str());
  const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
  std::printf("  CUDA_VISIBLE_DEVICES: %s\n", vis ? vis : "(unset)");
  const int n = cuda::device_count();
  std::printf("  devices: %d\n", n);
  for (int i = 0; i < n; ++i) {
    std::printf("    cuda:%d  %s  sm_%d  %.1f GiB\n", i, cuda::device_name(i).c_str(), cuda::compute_capability(i),
                static_cast<double>(cuda::device_total_memory(i)) / (1 << 30));
  }
  return 0;
}

}  // namespace rg::app
