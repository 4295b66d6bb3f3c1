// CUDA random fills (uniform, normal, bernoulli) from Philox4x32-10: the twin of core/cpu/random.cpp,
// element for element the same numbers (Note [Philox streams] in core/random.h, Note [Philox
// formulas] in core/cpu/random.cpp). Products and sums are rounded one by one, as on the CPU.
#include "core/random.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// One thread per Philox block: elements [4 blk, 4 blk + 4) of the contiguous out (n).
template <typename T>
static __global__ void random_fwd_kernel(T* out, int64_t n, RandomKind kind, double a, double b, uint64_t seed,
                                         uint64_t offset) {
  constexpr double kTwoPi = 6.283185307179586;
  const int64_t blocks = (n + 3) / 4;
  grid_stride(blocks, [&](int64_t blk) {
    uint32_t w[4];
    Philox::block(seed, offset + static_cast<uint64_t>(blk), w);
    double v[4];
    switch (kind) {
      case RandomKind::Uniform:
#pragma unroll
        for (int l = 0; l < 4; ++l) {
          v[l] = __dadd_rn(a, __dmul_rn(b - a, static_cast<double>(Philox::to_uniform(w[l]))));
        }
        break;
      case RandomKind::Normal:
#pragma unroll
        for (int l = 0; l < 4; l += 2) {  // Box-Muller on lanes (0, 1) and (2, 3)
          const double u1 = 1.0 - static_cast<double>(Philox::to_uniform(w[l]));
          const double u2 = static_cast<double>(Philox::to_uniform(w[l + 1]));
          const double r = ::sqrt(__dmul_rn(-2.0, ::log(u1)));
          const double t = __dmul_rn(kTwoPi, u2);
          v[l] = __dadd_rn(a, __dmul_rn(b, __dmul_rn(r, ::cos(t))));
          v[l + 1] = __dadd_rn(a, __dmul_rn(b, __dmul_rn(r, ::sin(t))));
        }
        break;
      case RandomKind::Bernoulli:
#pragma unroll
        for (int l = 0; l < 4; ++l) v[l] = static_cast<double>(Philox::to_uniform(w[l])) < a ? 1.0 : 0.0;
        break;
    }
    const int64_t i0 = blk * 4;
    const int lanes = static_cast<int>(n - i0 < 4 ? n - i0 : 4);
    for (int l = 0; l < lanes; ++l) out[i0 + l] = cast<T>(v[l]);
  });
}

// ---- launchers

void random_cuda(const Tensor& out, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) {
  RG_CHECK(out.is_contiguous(), "random: the kernel needs a contiguous output");
  const int64_t n = out.numel();
  if (n == 0) return;
  RG_CU_DISPATCH_ALL(out.dtype(), "random", [&] {
    auto* p = static_cast<scalar_t*>(out.data_ptr());
    random_fwd_kernel<scalar_t><<<grid_for((n + 3) / 4), kThreads, 0, stream()>>>(p, n, kind, a, b, seed, offset);
    RG_CUDA_LAUNCH_CHECK("random_fwd_kernel");
  });
}

}  // namespace rg
