// doctest main for every test executable. A GPU suite (rg_test_needs_gpu, defined per executable
// by tests/CMakeLists.txt) exits 77 without a CUDA device, which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/cuda_api.h"

extern const bool rg_test_needs_gpu;

int main(int argc, char** argv) {
  if (rg_test_needs_gpu && rg::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device (%s)\n",
                rg::cuda::built_with_cuda() ? "none visible" : "ringgrad built without CUDA");
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
