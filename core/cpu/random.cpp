// CPU random fills (uniform, normal, bernoulli) from Philox4x32-10, element for element the same
// numbers as the CUDA twin: see Note [Philox streams] in core/random.h and Note [Philox formulas].
#include <cmath>
#include <cstdint>

#include "core/cpu/loops.h"
#include "core/kernels.h"
#include "core/random.h"

#if defined(__FMA__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")  // see Note [Philox formulas]: no fused multiply-adds
#endif

namespace rg {

// Note [Philox formulas]
// For the contiguous output of n elements and generator state (seed, offset), element i reads
// word w_i = Philox::block(seed, offset + i / 4)[i % 4]. With U(w) = double(w >> 8) * 2^-24
// (exactly Philox::to_uniform(w), a float in [0, 1), widened to double):
//   Uniform(a, b):  out_i = cast(a + (b - a) * U(w_i))                    (computed in double)
//   Normal(a, b):   lanes pair as (0, 1) and (2, 3) of the same block; for the pair (w_j, w_j+1),
//                   j = 4 * block + 0 or + 2:
//                     u1 = 1.0 - U(w_j)            in (0, 1]
//                     u2 = U(w_j+1)                in [0, 1)
//                     r  = sqrt(-2.0 * log(u1))
//                     out_j   = cast(a + b * (r * cos(2 pi * u2)))
//                     out_j+1 = cast(a + b * (r * sin(2 pi * u2)))
//                   all in double, with 2 pi = 6.283185307179586 (the double nearest).
//                   A pair cut by the end of the tensor still computes both values and keeps the first.
//   Bernoulli(p=a): out_i = 1 if double(U(w_i)) < a else 0, cast to any dtype.
// cast() is the usual double -> dtype conversion (through float for f16/bf16). No fused
// multiply-adds: each * and + rounds on its own (the CUDA twin uses __dmul_rn / __dadd_rn).
// CPU and CUDA libm differ by an ulp or so in double log/cos/sin, which rounding to float
// absorbs; f64 normals may differ in the last bits between devices.
void random_cpu(const Tensor& out, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) {
  RG_CHECK(out.is_contiguous(), "random: the kernel needs a contiguous output");
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t blocks = (n + 3) / 4;
  constexpr double kTwoPi = 6.283185307179586;
  auto uniform = [](uint32_t w) { return static_cast<double>(Philox::to_uniform(w)); };
  RG_DISPATCH_ALL(out.dtype(), "random", [&] {
    scalar_t* p = static_cast<scalar_t*>(out.data_ptr());
    cpu::parallel_for(blocks, cpu::kGrain / 4, [&](int64_t bb, int64_t be) {
      for (int64_t blk = bb; blk < be; ++blk) {
        uint32_t w[4];
        Philox::block(seed, offset + static_cast<uint64_t>(blk), w);
        double v[4];
        switch (kind) {
          case RandomKind::Uniform:
            for (int l = 0; l < 4; ++l) v[l] = a + (b - a) * uniform(w[l]);
            break;
          case RandomKind::Normal:
            for (int l = 0; l < 4; l += 2) {
              const double u1 = 1.0 - uniform(w[l]);
              const double u2 = uniform(w[l + 1]);
              const double r = std::sqrt(-2.0 * std::log(u1));
              v[l] = a + b * (r * std::cos(kTwoPi * u2));
              v[l + 1] = a + b * (r * std::sin(kTwoPi * u2));
            }
            break;
          case RandomKind::Bernoulli:
            for (int l = 0; l < 4; ++l) v[l] = uniform(w[l]) < a ? 1.0 : 0.0;
            break;
        }
        const int64_t i0 = blk * 4;
        const int lanes = static_cast<int>(n - i0 < 4 ? n - i0 : 4);
        for (int l = 0; l < lanes; ++l) p[i0 + l] = cpu::cast<scalar_t>(v[l]);
      }
    });
  });
}

}  // namespace rg
