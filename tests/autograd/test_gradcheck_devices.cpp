// gradcheck of ToBackward across devices (the `gpu` doctest suite: test_autograd_gpu): a CPU leaf
// through cuda:0 and back, with and without a dtype change on the way, and the gradient arriving on
// the leaf's device and dtype. The values and the step are multiples of 2^-6, so every perturbed
// value survives f32/f16/bf16 exactly and the central differences are exact: default tolerances.
#include "ag_util.h"

#include "core/cuda_api.h"

using namespace rg;
using namespace rg::agtest;

namespace {

// (3, 4) multiples of 1/64 in [-1, 1): exact in f16 and bf16, and so are they +- 1/64.
Tensor dyadic_leaf(uint64_t seed) {
  std::vector<double> v = uniform_values(12, -64.0, 64.0, seed);
  for (double& e : v) e = std::floor(e) / 64.0;
  return leaf_of(v, {3, 4});
}

}  // namespace

TEST_CASE("gradcheck ToBackward across devices: CPU -> cuda:0 -> CPU, in f64 and through f32, f16, bf16" *
          RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  const Device gpu = Device::cuda(0);
  const Tensor x = dyadic_leaf(61), y = dyadic_leaf(62);
  GradcheckOptions exact;
  exact.eps = std::ldexp(1.0, -6);
  // f64 both ways: a product on the GPU, so each input's gradient crosses twice (out and back).
  CHECK_GRADCHECK([&](const TL& in) { return (in[0].to(gpu) * in[1].to(gpu)).to(kCPU); }, TL{x, y}, exact);
  // device and dtype at once, both ways: the gradient comes back to the CPU in f64.
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    CHECK_GRADCHECK([&](const TL& in) { return (in[0].to(gpu, dt) * 2.0).to(kCPU, DType::f64); }, TL{x}, exact);
    CHECK_GRADCHECK([&](const TL& in) { return in[0].to(gpu, dt).to(kCPU).to(DType::f64); }, TL{x}, exact);
  }
  // The gradient lands on the leaf's device and dtype.
  Tensor z = dyadic_leaf(63);
  z.to(gpu, DType::f32).sum().backward();
  REQUIRE(z.grad().defined());
  CHECK(z.grad().device() == kCPU);
  CHECK(z.grad().dtype() == DType::f64);
  CHECK_VALUES(vals(z.grad()), std::vector<double>(12, 1.0), 0.0);
}
