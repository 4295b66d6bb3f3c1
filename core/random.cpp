// The default generator and random_ (uniform, normal, bernoulli fills through the Philox kernel).
#include "core/random.h"

#include "core/native.h"

namespace rg {

Generator& default_generator() {
  static Generator g;
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace native {
void random_(const Tensor& t, RandomKind kind, double a, double b, Generator* gen) {
  OpScope scope("random_", {&t});
  RG_CHECK(is_floating(t.dtype()) || kind == RandomKind::Bernoulli, "random_: normal and uniform fills need a "
           "floating point tensor, got ", dtype_name(t.dtype()));
  if (t.numel() == 0) return;
  Generator& g = gen ? *gen : default_generator();
  const uint64_t offset = g.advance(t.numel());
  if (t.is_contiguous()) {
    RG_CALL_KERNEL(random, t.device(), t, kind, a, b, g.seed(), offset);
  } else {  // numbers follow logical order: fill a dense buffer, then scatter into the view
    Tensor dense = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
    RG_CALL_KERNEL(random, t.device(), dense, kind, a, b, g.seed(), offset);
    copy_(t, dense);
  }
  t.bump_version();
}
}  // namespace native

}  // namespace rg
