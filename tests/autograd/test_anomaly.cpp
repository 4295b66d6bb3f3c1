// Anomaly mode (autograd/anomaly.h, torch.autograd.detect_anomaly): the backward stops at the first
// node whose gradient is inf or nan, naming its op and the function its forward was called from;
// without the mode the same backward runs through; nodes record stacks only in the mode.
#include "ag_util.h"

#include "autograd/anomaly.h"

using namespace rg;
using namespace rg::agtest;

// The forwards of these tests. Not static and never inlined, so that their names are in the
// executable's dynamic symbol table (-rdynamic) and on the recorded stacks.
__attribute__((noinline)) Tensor rg_anomaly_log_of_zero(const Tensor& x, const Tensor& w) {
  return log(x * w).sum();  // w has a 0: log(0) = -inf, whose backward 1 / 0 = inf
}

// A small net: h = log(x W1) meets a negative entry (nan), then out = sum(h W2).
__attribute__((noinline)) Tensor rg_anomaly_small_net(const Tensor& x, const Tensor& w1, const Tensor& w2) {
  const Tensor h = log(matmul(x, w1));
  return matmul(h, w2).sum();
}

TEST_CASE("anomaly mode: log(0)'s backward names logBackward and the function that called log") {
  const Tensor x = leaf_of({1, 2, 3}, {3}, false);
  Tensor w = leaf_of({1, 0, 1}, {3});
  {
    autograd::DetectAnomalyGuard guard;
    const Tensor y = rg_anomaly_log_of_zero(x, w);
    const std::string msg = error_of([&] { y.backward(); }, "(no error)");
    MESSAGE(msg);
    CHECK(contains(msg, "Function 'logBackward' returned inf values in its 0th output"));
    CHECK(contains(msg, "The forward of logBackward was called at"));
    CHECK(contains(msg, "rg::log(rg::Tensor const&)"));     // the op's own function first,
    CHECK(contains(msg, "rg_anomaly_log_of_zero("));         // then its caller
    CHECK(msg.find("rg::log(") < msg.find("rg_anomaly_log_of_zero("));
  }
  CHECK_FALSE(autograd::AnomalyMode::is_enabled());  // the guard restored the mode
  // Without anomaly mode the same backward runs through and leaves the inf in the gradient.
  w.set_grad(Tensor());
  rg_anomaly_log_of_zero(x, w).backward();
  CHECK(std::isinf(vals(w.grad())[1]));
}

TEST_CASE("anomaly mode: log of a negative number in a small net: the nan first appears in the matmul's backward") {
  const Tensor x = leaf_of({1, -2, 0.5, 1}, {2, 2}, false);
  const Tensor w1 = leaf_of({1, 0.5, 0.25, 2}, {2, 2});  // x W1 = [[0.5, -3.5], [0.75, 2.25]]: log(-3.5) = nan
  const Tensor w2 = leaf_of({1, -1}, {2, 1});
  autograd::DetectAnomalyGuard guard;
  const Tensor y = rg_anomaly_small_net(x, w1, w2);
  CHECK(std::isnan(y.item()));
  const std::string msg = error_of([&] { y.backward(); }, "(no error)");
  MESSAGE(msg);
  // sum's backward is finite; the matmul h W2 gives dW2 = h^T g, nan: the first non-finite gradient.
  CHECK(contains(msg, "returned nan values in its 1st output"));
  CHECK((contains(msg, "Function 'MmBackward'") || contains(msg, "Function 'MatmulBackward'")));
  CHECK(contains(msg, "rg::matmul("));
  CHECK(contains(msg, "rg_anomaly_small_net("));
}

TEST_CASE("anomaly mode: only nodes made while it is on record their forward's stack") {
  const Tensor a = leaf({3});
  const Tensor off = a * 2.0;
  CHECK(off.grad_fn()->forward_trace == nullptr);
  autograd::DetectAnomalyGuard guard;
  const Tensor on = a * 2.0;
  REQUIRE(on.grad_fn()->forward_trace != nullptr);
  CHECK(on.grad_fn()->forward_trace->frames.size() > 3);
  const std::string text = autograd::format_forward_trace(*on.grad_fn()->forward_trace);
  CHECK(contains(text, "#0 "));
  CHECK(contains(text, "DOCTEST"));  // the doctest case function that ran the forward
}
