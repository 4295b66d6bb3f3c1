// `ringgrad demo-mlp`: trains a two-layer MLP on generated 2-D blobs with plain tensors and
// autograd (no nn module yet), printing the loss and accuracy as they improve.
#include <cmath>
#include <cstdio>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/random.h"

namespace rg::app {

int cmd_demo_mlp(const Args& args) {
  if (has_flag(args, "-h") || has_flag(args, "--help")) {
    std::printf("usage: ringgrad demo-mlp [--steps N (default 300)] [--device cpu|cuda[:N]]\n");
    return 0;
  }
  check_known_flags(args, {"--device", "--steps"}, {}, "demo-mlp");
  const Device dev = Device::parse(last_opt(args, "--device", "cpu"));
  const int64_t steps = parse_int(args, "--steps", 300);
  RG_CHECK(steps >= 0 && steps <= 1000000, "demo-mlp: --steps must be in 0..1000000, got ", steps);
  const int64_t n = 512, classes = 3, hidden = 64;
  manual_seed(0);

  // Three Gaussian blobs in the plane, centres 2 apart: labels are the blob index.
  const Tensor labels = native::to(randint(0, classes, {n}), dev, DType::i64);
  std::vector<float> xs(static_cast<size_t>(n * 2));
  const auto lab = labels.to_vector<int64_t>();
  const auto noise = randn({n, 2}).to_vector<float>();
  for (int64_t i = 0; i < n; ++i) {
    const double a = 2.0 * M_PI * static_cast<double>(lab[i]) / classes;
    xs[2 * i] = static_cast<float>(2.0 * std::cos(a) + 0.5 * noise[2 * i]);
    xs[2 * i + 1] = static_cast<float>(2.0 * std::sin(a) + 0.5 * noise[2 * i + 1]);
  }
  const Tensor x = from_vector(xs, {n, 2}, TensorOptions().device(dev));

  Tensor w1 = mul(randn({2, hidden}, TensorOptions().device(dev)), std::sqrt(2.0 / 2)).detach().set_requires_grad();
  Tensor b1 = zeros({hidden}, TensorOptions().device(dev).requires_grad());
  Tensor w2 = mul(randn({hidden, classes}, TensorOptions().device(dev)), std::sqrt(1.0 / hidden)).detach().set_requires_grad();
  Tensor b2 = zeros({classes}, TensorOptions().device(dev).requires_grad());
  std::vector<Tensor*> params = {&w1, &b1, &w2, &b2};
  const double lr = 0.1;

  for (int64_t step = 0; step <= steps; ++step) {
    const Tensor logits = add(matmul(relu(add(matmul(x, w1), b1)), w2), b2);  // (n, classes)
    const Tensor logp = log_softmax(logits, 1);
    const Tensor picked = gather(logp, 1, native::unsqueeze(labels, 1));     // (n, 1)
    const Tensor loss = neg(mean(picked));
    for (Tensor* p : params) p->set_grad(Tensor());
    loss.backward();
    {
      NoGradGuard ng;
      for (Tensor* p : params) native::binary_(BinaryOp::Add, *p, p->grad(), -lr);
    }
    if (step % 50 == 0) {
      const Tensor pred = argmax(logits, 1);
      const double acc = native::mean(native::to(eq(pred, labels), dev, DType::f32)).item();
      std::printf("step %4lld  loss %.4f  accuracy %.3f\n", static_cast<long long>(step), loss.item(), acc);
    }
  }
  return 0;
}

}  // namespace rg::app
