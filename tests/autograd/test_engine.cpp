// Engine semantics: accumulation across backward calls, retain_graph, NoGradGuard, AccumulateGrad
// post-hooks (order, once per backward, after .grad is final), tensor hooks, retain_grad, the
// version counter, in-place rules, autograd::grad, diamonds, multiple roots, dtype casts of
// gradients, and errors that name the op. Expected gradients are worked out by hand.
#include "ag_util.h"

#include <string>

#include "autograd/function.h"

using namespace rg;
using namespace rg::agtest;

namespace {
std::vector<double> times(const std::vector<double>& v, double s) {
  std::vector<double> out(v);
  for (double& x : out) x *= s;
  return out;
}
}  // namespace

TEST_CASE("engine: gradients accumulate across two backward calls") {
  Tensor x = leaf_of({1, -2, 3}, {3});
  (x * x).sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{2, -4, 6}), 1e-12);
  (x * x).sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{4, -8, 12}), 1e-12);
  // a scalar multiple through a view: d/dx sum(3 x) = 3
  x.view({3, 1}).sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{5, -7, 13}), 1e-12);
}

TEST_CASE("engine: retain_graph allows a second backward; without it the second one raises") {
  Tensor x = leaf_of({0.5, 2.0}, {2});
  Tensor y = (x * x * x).sum();  // dy/dx = 3 x^2 = 0.75, 12
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{1.5, 24}), 1e-12);
  const std::string msg = error_of([&] { y.backward(); });
  CHECK(contains(msg, "backward through the graph a second time"));
}

TEST_CASE("engine: backward of a non-scalar needs an explicit gradient") {
  Tensor x = leaf_of({1, 2}, {2});
  Tensor y = x * 2.0;
  CHECK(contains(error_of([&] { y.backward(); }), "only for scalar outputs"));
  y.backward(from_vector<double>({1.0, -1.0}, {2}));
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{2, -2}), 0);
  // a root that does not require grad
  Tensor c = leaf_of({1}, {1}, false);
  CHECK(contains(error_of([&] { c.sum().backward(); }), "does not require grad"));
}

TEST_CASE("engine: NoGradGuard records nothing; EnableGradGuard turns it back on") {
  Tensor x = leaf_of({1, 2}, {2});
  Tensor y, z;
  {
    NoGradGuard ng;
    CHECK_FALSE(GradMode::is_enabled());
    y = (x * 3.0).sum();
    {
      EnableGradGuard eg;
      z = (x * 3.0).sum();
    }
    CHECK_FALSE(GradMode::is_enabled());
  }
  CHECK(GradMode::is_enabled());
  CHECK_FALSE(y.requires_grad());
  CHECK(y.grad_fn() == nullptr);
  CHECK(z.requires_grad());
  CHECK(z.grad_fn() != nullptr);
  CHECK_VALUES(vals(y), (std::vector<double>{9}), 1e-12);
  // in-place on a leaf is allowed under NoGradGuard (an optimizer step)
  {
    NoGradGuard ng;
    x.add_(from_vector<double>({1, 1}, {2}));
  }
  CHECK_VALUES(vals(x), (std::vector<double>{2, 3}), 0);
}

TEST_CASE("engine: AccumulateGrad post-hooks fire once per backward per leaf, in ready order, after .grad is final") {
  Tensor x = leaf_of({1, 2}, {2}, false);
  Tensor w1 = leaf_of({3, 4}, {2}), w2 = leaf_of({5, 6}, {2}), w3 = leaf_of({7, 8}, {2});
  std::vector<std::string> order;
  std::vector<std::vector<double>> grad_at_hook;
  // The accumulators must outlive the forward: the caller holds them (as DDP does).
  auto a1 = autograd::grad_accumulator(w1), a2 = autograd::grad_accumulator(w2), a3 = autograd::grad_accumulator(w3);
  auto hook = [&](const char* name) {
    return [&order, &grad_at_hook, name](const Tensor& p) {
      order.push_back(name);
      grad_at_hook.push_back(vals(p.grad()));
    };
  };
  a1->post_hooks.push_back(hook("w1"));
  a2->post_hooks.push_back(hook("w2"));
  a3->post_hooks.push_back(hook("w3"));
  // a chain: h = ((x * w1) * w2) * w3; leaves become ready in reverse order of use
  (x * w1 * w2 * w3).sum().backward();
  REQUIRE(order == std::vector<std::string>{"w3", "w2", "w1"});
  // d/dw3 = x w1 w2 = (15, 48); d/dw2 = x w1 w3 = (21, 64); d/dw1 = x w2 w3 = (35, 96)
  CHECK_VALUES(grad_at_hook[0], (std::vector<double>{15, 48}), 1e-12);
  CHECK_VALUES(grad_at_hook[1], (std::vector<double>{21, 64}), 1e-12);
  CHECK_VALUES(grad_at_hook[2], (std::vector<double>{35, 96}), 1e-12);

  // a leaf used three times (diamond): one hook call, with the summed gradient
  order.clear();
  grad_at_hook.clear();
  w1.set_grad(Tensor());
  (x * w1 + w1 * w1 + w1 * 2.0).sum().backward();  // d/dw1 = x + 2 w1 + 2 = (9, 12)
  REQUIRE(order == std::vector<std::string>{"w1"});
  CHECK_VALUES(grad_at_hook[0], (std::vector<double>{9, 12}), 1e-12);
  // a second backward fires it again (and the gradient accumulates)
  (w1 * 2.0).sum().backward();
  REQUIRE(order == std::vector<std::string>{"w1", "w1"});
  CHECK_VALUES(grad_at_hook[1], (std::vector<double>{11, 14}), 1e-12);
}

TEST_CASE("engine: register_hook on a non-leaf replaces the gradient flowing on") {
  Tensor x = leaf_of({1, 2}, {2});
  Tensor y = x * 2.0;
  std::vector<double> seen;
  y.register_hook([&seen](const Tensor& g) {
    seen = vals(g);
    return g * 10.0;  // hooks run with grad mode off: a plain value
  });
  (y * y).sum().backward();  // dL/dy = 2y = (4, 8); replaced by (40, 80); dL/dx = 2 * that
  CHECK_VALUES(seen, (std::vector<double>{4, 8}), 1e-12);
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{80, 160}), 1e-12);
  // a hook that returns nothing observes without changing
  Tensor x2 = leaf_of({1, 2}, {2});
  Tensor y2 = x2 * 3.0;
  int calls = 0;
  y2.register_hook([&calls](const Tensor&) {
    ++calls;
    return Tensor();
  });
  y2.sum().backward();
  CHECK(calls == 1);
  CHECK_VALUES(vals(x2.grad()), (std::vector<double>{3, 3}), 0);
}

TEST_CASE("engine: register_hook on a leaf, before or after the forward, replaces what is accumulated") {
  // Only views and host-made replacements here (no compute kernel needed).
  Tensor x = leaf_of({1, 2, 3, 4}, {4});
  x.register_hook([](const Tensor& g) { return from_vector<double>(times(g.to_vector<double>(), 3.0), g.sizes()); });
  Tensor y = x.view({2, 2});
  y.backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{3, 6, 9, 12}), 0);
  // registered after the graph exists
  Tensor x2 = leaf_of({1, 2}, {2});
  Tensor y2 = x2.view({2, 1});
  x2.register_hook([](const Tensor& g) { return from_vector<double>(times(g.to_vector<double>(), -1.0), g.sizes()); });
  y2.backward(from_vector<double>({5, 6}, {2, 1}));
  CHECK_VALUES(vals(x2.grad()), (std::vector<double>{-5, -6}), 0);
  // and it keeps working for later graphs, after the first graph (and its accumulator) is gone
  y2 = Tensor();
  x2.view({1, 2}).backward(from_vector<double>({1, 1}, {1, 2}));
  CHECK_VALUES(vals(x2.grad()), (std::vector<double>{-6, -7}), 0);
}

TEST_CASE("engine: retain_grad keeps a non-leaf's gradient; others get none") {
  Tensor x = leaf_of({1, -1}, {2});
  Tensor y = x * 2.0;
  Tensor z = y * y;
  y.retain_grad();
  z.sum().backward();  // dz/dy = 2y = (4, -4)
  REQUIRE(y.grad().defined());
  CHECK_VALUES(vals(y.grad()), (std::vector<double>{4, -4}), 1e-12);
  CHECK_FALSE(z.grad().defined());
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{8, -8}), 1e-12);
}

TEST_CASE("engine: modifying a saved tensor in place makes backward raise, naming the node") {
  Tensor x = leaf_of({1, 2}, {2});
  Tensor y = x * 2.0;
  Tensor z = y * y;  // saves y
  y.mul_(2.0);       // recorded, bumps y's version
  const std::string msg = error_of([&] { z.sum().backward(); });
  CHECK(contains(msg, "modified by an inplace operation"));
  CHECK(contains(msg, "mulBackward"));

  Tensor a = leaf_of({0.5}, {1});
  Tensor e = exp(a);  // saves its output
  Tensor s = e.sum();
  e.add_(from_vector<double>({1.0}, {1}));
  const std::string msg2 = error_of([&] { s.backward(); });
  CHECK(contains(msg2, "modified by an inplace operation"));
  CHECK(contains(msg2, "expBackward"));
}

TEST_CASE("engine: in-place on a leaf that requires grad raises; on a non-leaf it is differentiated") {
  Tensor x = leaf_of({1, 2}, {2});
  CHECK(contains(error_of([&] { x.add_(from_vector<double>({1, 1}, {2})); }), "leaf Variable"));
  CHECK(contains(error_of([&] { x.mul_(2.0); }), "leaf Variable"));
  CHECK_THROWS_AS(x.fill_(0.0), rg::Error);
  // on a non-leaf: y = 2x; y *= w; y += 3 v  ->  dy/dx = 2w, dy/dw = 2x, dy/dv = 3
  Tensor w = leaf_of({5, 7}, {2}), v = leaf_of({1, 1}, {2});
  Tensor y = x * 2.0;
  y.mul_(w);
  y.add_(v, 3.0);
  CHECK_VALUES(vals(y), (std::vector<double>{13, 31}), 1e-12);
  y.sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{10, 14}), 1e-12);
  CHECK_VALUES(vals(w.grad()), (std::vector<double>{2, 4}), 1e-12);
  CHECK_VALUES(vals(v.grad()), (std::vector<double>{3, 3}), 1e-12);
  // in-place on a view of a tensor that requires grad is refused
  Tensor y2 = x * 1.0;
  Tensor view = y2.view({2, 1});
  CHECK(contains(error_of([&] { view.mul_(2.0); }), "view"));
}

TEST_CASE("engine: autograd::grad returns gradients without touching .grad; allow_unused") {
  Tensor x = leaf_of({1, 2}, {2}), w = leaf_of({3, 4}, {2}), unused = leaf_of({0}, {1});
  Tensor y = (x * w).sum();
  auto g = autograd::grad({y}, {x, w}, {}, /*retain_graph=*/true);
  REQUIRE(g.size() == 2);
  CHECK_VALUES(vals(g[0]), (std::vector<double>{3, 4}), 0);
  CHECK_VALUES(vals(g[1]), (std::vector<double>{1, 2}), 0);
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  const std::string msg = error_of([&] { autograd::grad({y}, {x, unused}, {}, true); });
  CHECK(contains(msg, "input 1"));
  CHECK(contains(msg, "allow_unused"));
  auto g2 = autograd::grad({y}, {unused, x}, {}, false, /*allow_unused=*/true);
  CHECK_FALSE(g2[0].defined());
  CHECK_VALUES(vals(g2[1]), (std::vector<double>{3, 4}), 0);
  CHECK_FALSE(unused.grad().defined());
  // grad of a non-leaf intermediate
  Tensor a = leaf_of({2}, {1});
  Tensor b = a * a;
  Tensor c = (b * 3.0).sum();
  auto gb = autograd::grad({c}, {b});
  CHECK_VALUES(vals(gb[0]), (std::vector<double>{3}), 0);
}

TEST_CASE("engine: a diamond sums gradients; multiple roots") {
  Tensor x = leaf_of({1, 2, 3}, {3});
  Tensor h = x * 2.0;
  Tensor y = (h * h + h * 3.0 + exp(h * 0.0)).sum();  // dy/dh = 2h + 3; dy/dx = 2 (2h + 3) = 8x + 6
  y.backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{14, 22, 30}), 1e-12);
  // two roots with their own cotangents: d/dx (g1 . x^2 + g2 . 5x) = 2 x g1 + 5 g2
  Tensor x2 = leaf_of({1, 2}, {2});
  Tensor r1 = x2 * x2, r2 = x2 * 5.0;
  autograd::backward({r1, r2}, {from_vector<double>({1, 10}, {2}), from_vector<double>({1, -1}, {2})});
  CHECK_VALUES(vals(x2.grad()), (std::vector<double>{7, 35}), 1e-12);
  // roots sharing a graph, one depending on the other
  Tensor x3 = leaf_of({3}, {1});
  Tensor p = x3 * x3, q = p * 2.0;  // d/dx (p + q) = 2x + 4x = 6x
  autograd::backward({p.sum(), q.sum()});
  CHECK_VALUES(vals(x3.grad()), (std::vector<double>{18}), 1e-12);
}

TEST_CASE("engine: roots that repeat or share a node; a leaf root that is also the input") {
  // two outputs of one multi-output node as roots: every piece's gradient reaches x once
  Tensor x = leaf_of({1, 2, 3, 4, 5, 6}, {3, 2});
  auto p = split(x, 2, 0);  // (2, 2) and (1, 2), one SplitBackward
  REQUIRE(p[0].grad_fn() == p[1].grad_fn());
  autograd::backward({p[0], p[1]}, {from_vector<double>({1, 2, 3, 4}, {2, 2}), from_vector<double>({5, 6}, {1, 2})});
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{1, 2, 3, 4, 5, 6}), 0);
  // the same root twice: its gradients add up
  Tensor y = leaf_of({2}, {1});
  Tensor z = y * 3.0;
  autograd::backward({z, z}, {from_vector<double>({1}, {1}), from_vector<double>({10}, {1})});
  CHECK_VALUES(vals(y.grad()), (std::vector<double>{33}), 0);
  // grad of a leaf with respect to itself is the cotangent
  Tensor w = leaf_of({7, 8}, {2});
  auto g = autograd::grad({w}, {w}, {from_vector<double>({0.5, -1}, {2})});
  REQUIRE(g[0].defined());
  CHECK_VALUES(vals(g[0]), (std::vector<double>{0.5, -1}), 0);
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("engine: a gradient arrives cast to the leaf's dtype") {
  Tensor x16 = from_vector<float>({1.5f, -2.0f}, {2}, DType::f16).set_requires_grad(true);
  Tensor w = from_vector<float>({0.25f, 3.0f}, {2}).set_requires_grad(true);
  Tensor y = mul(x16, w);  // promoted to f32
  CHECK(y.dtype() == DType::f32);
  y.sum().backward();
  REQUIRE(x16.grad().defined());
  CHECK(x16.grad().dtype() == DType::f16);
  CHECK(w.grad().dtype() == DType::f32);
  CHECK_VALUES(vals(x16.grad()), (std::vector<double>{0.25, 3.0}), 0);  // exact in f16
  CHECK_VALUES(vals(w.grad()), (std::vector<double>{1.5, -2.0}), 0);
  // and through a cast: f64 -> f32 -> sum
  Tensor x = leaf_of({1, 2}, {2});
  (x.to(DType::f32) * 4.0).sum().backward();
  CHECK(x.grad().dtype() == DType::f64);
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{4, 4}), 0);
}

TEST_CASE("engine: errors name the op") {
  Tensor a = leaf({2, 3}), b = leaf({4, 5});
  CHECK(contains(error_of([&] { matmul(a, b); }), "matmul"));
  CHECK(contains(error_of([&] { mm(a, b); }), "mm"));
  CHECK(contains(error_of([&] { bmm(a, b); }), "bmm"));
  CHECK(contains(error_of([&] { cat({a, b}, 0); }), "cat"));
  CHECK(contains(error_of([&] { add(a, b); }), "add"));
  CHECK(contains(error_of([&] { sum(a, {2}); }), "sum"));
  CHECK(contains(error_of([&] { softmax(a, 3); }), "softmax"));
  CHECK(contains(error_of([&] { index_select(a, 0, idx({5}, {1})); }), "index_select"));
  CHECK(contains(error_of([&] { chunk(a, 0, 0); }), "chunk"));
  // a backward that returns a wrongly shaped gradient is named
  struct BadBackward : autograd::Node {
    std::string name() const override { return "BadBackward"; }
    autograd::TensorList apply(autograd::TensorList&&) override { return {zeros({7}, DType::f64)}; }
  };
  Tensor x = leaf_of({1, 2}, {2});
  Tensor out = native::clone(x);
  auto n = autograd::record<BadBackward>({&x});
  autograd::set_history(out, n);
  const std::string msg = error_of([&] { out.backward(from_vector<double>({1, 1}, {2})); });
  CHECK(contains(msg, "BadBackward"));
  CHECK(contains(msg, "[7]"));
}
