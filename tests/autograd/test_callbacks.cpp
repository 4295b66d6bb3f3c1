// queue_callback: callbacks queued from a hook run after every node of the backward, once.
#include "autograd/engine.h"
#include "test_util.h"

using namespace rg;

TEST_CASE("queue_callback runs after the whole graph, once, and only inside backward") {
  Tensor w1 = ones({3}).set_requires_grad();
  Tensor w2 = ones({3}).set_requires_grad();
  std::vector<std::string> events;
  auto acc1 = autograd::grad_accumulator(w1);
  auto acc2 = autograd::grad_accumulator(w2);
  acc1->post_hooks.push_back([&](const Tensor&) {
    events.push_back("w1");
    autograd::queue_callback([&] {
      // by now both leaves have their gradients
      events.push_back(w1.grad().defined() && w2.grad().defined() ? "cb:both-ready" : "cb:early");
    });
  });
  acc2->post_hooks.push_back([&](const Tensor&) { events.push_back("w2"); });
  Tensor loss = sum(mul(w1, w2));
  loss.backward();
  REQUIRE(events.size() == 3);
  CHECK(events.back() == "cb:both-ready");
  CHECK_FALSE(autograd::in_backward());
  CHECK_THROWS_AS(autograd::queue_callback([] {}), rg::Error);
}
