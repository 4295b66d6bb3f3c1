// doctest main for every test executable. A GPU suite (RG_TEST_NEEDS_GPU) exits 77 without a
// CUDA device, which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/cuda_api.h"

int main(int argc, char** argv) {
#ifdef RG_TEST_NEEDS_GPU
  if (rg::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device (%s)\n",
                rg::cuda::built_with_cuda() ? "none visible" : "ringgrad built without CUDA");
    return 77;
  }
#endif
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
