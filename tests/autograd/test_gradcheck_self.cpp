// gradcheck itself: it passes a correct custom op and fails, naming the input, the element and
// both values, on a wrong gradient, a missing graph, a non-f64 input, a non-deterministic function
// and a gradient that leaks into an input that does not require grad. The custom ops here compute
// with plain loops, so these tests do not depend on any elementwise kernel.
#include "ag_util.h"

#include "autograd/function.h"

using namespace rg;
using namespace rg::agtest;

namespace {

// y = x^3 elementwise, computed on the host; the backward multiplies by `factor` * 3x^2 (factor 1
// is right). `poke` > = 0 corrupts the gradient of that single element.
struct CubeBackward : autograd::Node {
  autograd::SavedVariable x;
  double factor = 1.0;
  int64_t poke = -1;
  std::string name() const override { return "CubeBackward"; }
  autograd::TensorList apply(autograd::TensorList&& g) override {
    const auto xv = x.unpack(this).to_vector<double>();
    const auto gv = g[0].to_vector<double>();
    std::vector<double> out(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) out[i] = factor * 3.0 * xv[i] * xv[i] * gv[i];
    if (poke >= 0) out[static_cast<size_t>(poke)] += 0.5;
    return {from_vector<double>(out, g[0].sizes())};
  }
};

Tensor cube(const Tensor& x, double factor = 1.0, int64_t poke = -1, bool record_graph = true) {
  auto xv = x.to_vector<double>();
  for (double& v : xv) v = v * v * v;
  Tensor out = from_vector<double>(xv, x.sizes());
  if (!record_graph) return out;
  if (auto n = autograd::record<CubeBackward>({&x})) {
    n->x = autograd::SavedVariable(x);
    n->factor = factor;
    n->poke = poke;
    autograd::set_history(out, n);
  }
  return out;
}

// (x, y) -> x * y elementwise (same shapes), on the host.
struct HostMulBackward : autograd::Node {
  autograd::SavedVariable x, y;
  bool leak = false;  // also send a gradient to y when y does not need one
  Tensor write_into;  // when set: a buggy backward that also writes y's gradient into this tensor's .grad
  std::string name() const override { return "HostMulBackward"; }
  autograd::TensorList apply(autograd::TensorList&& g) override {
    const auto xv = x.unpack(this).to_vector<double>(), yv = y.unpack(this).to_vector<double>();
    const auto gv = g[0].to_vector<double>();
    std::vector<double> gx(xv.size()), gy(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      gx[i] = gv[i] * yv[i];
      gy[i] = gv[i] * xv[i];
    }
    autograd::TensorList out(2);
    if (next_edges[0].valid()) out[0] = from_vector<double>(gx, g[0].sizes());
    if (next_edges[1].valid() || leak) out[1] = from_vector<double>(gy, g[0].sizes());
    if (write_into.defined()) write_into.set_grad(from_vector<double>(gy, g[0].sizes()));
    return out;
  }
};

Tensor host_mul(const Tensor& x, const Tensor& y) {
  auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) xv[i] *= yv[i];
  Tensor out = from_vector<double>(xv, x.sizes());
  if (auto n = autograd::record<HostMulBackward>({&x, &y})) {
    n->x = autograd::SavedVariable(x);
    n->y = autograd::SavedVariable(y);
    autograd::set_history(out, n);
  }
  return out;
}

}  // namespace

TEST_CASE("gradcheck passes a correct op, with one and several outputs") {
  Tensor x = leaf({2, 3}, -2, 2, 11);
  CHECK_GRADCHECK([](const TL& in) { return cube(in[0]); }, TL{x});
  Tensor y = leaf({2, 3}, -2, 2, 12);
  CHECK_GRADCHECK([](const TL& in) { return TL{cube(in[0]), host_mul(in[0], in[1])}; }, TL{x, y});
  // The inputs' values and .grad are left as they were.
  CHECK(x.grad().defined() == false);
  CHECK_VALUES(vals(x), uniform_values(6, -2, 2, 11), 0.0);
}

TEST_CASE("gradcheck reports a wrong gradient with the input, the element and both values") {
  Tensor a = leaf({3}, 0.5, 1.5, 3);
  Tensor x = leaf({2, 2}, 0.5, 1.5, 4);
  // element 3 of input 1 gets +0.5: the message must say so
  const auto r = gradcheck([](const TL& in) { return TL{cube(in[0]), cube(in[1], 1.0, 3)}; }, TL{a, x});
  REQUIRE_FALSE(r.ok);
  CHECK(r.message.find("input 1") != std::string::npos);
  CHECK(r.message.find("element 3 [1, 1]") != std::string::npos);
  CHECK(r.message.find("numerical") != std::string::npos);
  CHECK(r.message.find("analytical") != std::string::npos);
  // a gradient off by a factor everywhere
  const auto r2 = gradcheck([](const TL& in) { return cube(in[0], 1.01); }, TL{a});
  REQUIRE_FALSE(r2.ok);
  CHECK(r2.message.find("input 0") != std::string::npos);
  CHECK(r2.message.find("element 0") != std::string::npos);
}

TEST_CASE("gradcheck fails an op that forgot to record its graph") {
  Tensor x = leaf({4}, 0.5, 1.5, 5);
  const auto r = gradcheck([](const TL& in) { return cube(in[0], 1.0, -1, false); }, TL{x});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("function has no") == std::string::npos);  // a mismatch (analytical 0), not a usage error
  CHECK(r.message.find("analytical 0") != std::string::npos);
}

TEST_CASE("gradcheck refuses inputs that are not f64 CPU leaves") {
  Tensor x = from_vector<float>({1.f, 2.f}, {2}).set_requires_grad(true);
  const auto r = gradcheck([](const TL& in) { return cube(in[0]); }, TL{x});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("float64") != std::string::npos);
  Tensor y = leaf({2}, 0, 1, 6, false);
  const auto r2 = gradcheck([](const TL& in) { return cube(in[0]); }, TL{y});
  CHECK_FALSE(r2.ok);
  CHECK(r2.message.find("no input requires grad") != std::string::npos);
}

TEST_CASE("gradcheck catches a backward that writes .grad into an input that does not require grad") {
  Tensor x = leaf({3}, -1, 1, 7);
  Tensor y = leaf({3}, -1, 1, 8, /*requires_grad=*/false);
  // The values are right (the Jacobian check alone would pass); only the stray .grad is wrong.
  const auto r = gradcheck(
      [](const TL& in) {
        Tensor out = host_mul(in[0], in[1]);
        if (out.grad_fn()) std::static_pointer_cast<HostMulBackward>(out.grad_fn())->write_into = in[1];
        return out;
      },
      TL{x, y});
  REQUIRE_FALSE(r.ok);
  CHECK_MESSAGE(contains(r.message, "input 1 does not require grad but got a .grad from backward()"), r.message);
}

TEST_CASE("a gradient returned for an input that does not require grad is dropped: gradcheck passes") {
  Tensor x = leaf({3}, -1, 1, 7);
  Tensor y = leaf({3}, -1, 1, 8, /*requires_grad=*/false);
  CHECK_GRADCHECK([](const TL& in) { return host_mul(in[0], in[1]); }, TL{x, y});
  // A leaf not requiring grad has no edge, so a leaked gradient has nowhere to go; a non-leaf
  // that does not require grad is the same. The engine drops it: still no .grad on y.
  const auto r = gradcheck(
      [](const TL& in) {
        Tensor out = host_mul(in[0], in[1]);
        if (out.grad_fn()) std::static_pointer_cast<HostMulBackward>(out.grad_fn())->leak = true;
        return out;
      },
      TL{x, y});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK_FALSE(y.grad().defined());
}

TEST_CASE("gradcheck flags a non-deterministic function") {
  Tensor x = leaf({3}, -1, 1, 9);
  int calls = 0;
  const auto r = gradcheck(
      [&calls](const TL& in) {
        ++calls;
        Tensor c = cube(in[0]);
        return TL{c, from_vector<double>({static_cast<double>(calls)}, {1})};
      },
      TL{x});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("not deterministic") != std::string::npos);
}

TEST_CASE("gradcheck passes index inputs through and handles non-contiguous leaves") {
  // A transposed f64 leaf: the perturbation must follow its strides.
  Tensor base = from_vector<double>(uniform_values(6, -1, 1, 10), {2, 3});
  Tensor xt = native::transpose(base, 0, 1);  // (3, 2), strides (1, 3)
  xt.set_requires_grad(true);
  Tensor index = idx({2, 0}, {2});
  CHECK_GRADCHECK(
      [](const TL& in) {
        CHECK(in[1].dtype() == DType::i64);
        return cube(in[0], 1.0);
      },
      TL{xt, index});
  const auto r = gradcheck([](const TL& in) { return cube(in[0], 1.0, 1); }, TL{xt, index});
  REQUIRE_FALSE(r.ok);
  CHECK(r.message.find("element 1 [0, 1]") != std::string::npos);
}
