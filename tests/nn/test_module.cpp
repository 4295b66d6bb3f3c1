// nn::Module: the registry and its errors, PyTorch's naming and ordering, state_dict and strict
// load_state_dict, train/eval, to(dtype) in place, clone, zero_grad, Sequential and ModuleList.
#include <algorithm>

#include "autograd/grad_mode.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nn;
using namespace rg::nntest;

namespace {

// Own parameters, a persistent and a non-persistent buffer, and children (one of them nested).
class Net : public Cloneable<Net> {
 public:
  explicit Net(double scale = 2.0) : Cloneable("Net"), scale_(scale) {
    register_parameter("w", ones({3}));
    register_buffer("stat", zeros({3}));
    register_buffer("scratch", zeros({2}), /*persistent=*/false);
    register_module("fc", std::make_shared<Linear>(3, 2));
    auto seq = std::make_shared<Sequential>();
    seq->push_back(std::make_shared<Linear>(2, 2));
    seq->push_back(std::make_shared<ReLU>());
    register_module("seq", seq);
    register_module("bn", std::make_shared<BatchNorm2d>(2));
    register_parameter("b", zeros({1}));  // registered after the children, listed with the own ones
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = child("fc")->forward(mul(x, param("w")));
    return add(mul(child("seq")->forward(h), scale_), param("b"));
  }
  std::string extra_repr() const override { return "scale=" + py_float(scale_); }
  double scale() const { return scale_; }

 private:
  double scale_;
};

std::vector<std::string> keys(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (const auto& [k, t] : v) out.push_back(k);
  return out;
}

}  // namespace

TEST_CASE("Module: names and order of parameters, buffers and state_dict, as PyTorch") {
  auto net = std::make_shared<Net>();
  CHECK(keys(net->named_parameters()) ==
        std::vector<std::string>{"w", "b", "fc.weight", "fc.bias", "seq.0.weight", "seq.0.bias", "bn.weight", "bn.bias"});
  CHECK(keys(net->named_parameters(/*recurse=*/false)) == std::vector<std::string>{"w", "b"});
  CHECK(keys(net->named_buffers()) == std::vector<std::string>{"stat", "scratch", "bn.running_mean", "bn.running_var",
                                                              "bn.num_batches_tracked"});
  // state_dict: own parameters, own persistent buffers, then each child in registration order
  CHECK(keys(net->state_dict()) ==
        std::vector<std::string>{"w", "b", "stat", "fc.weight", "fc.bias", "seq.0.weight", "seq.0.bias", "bn.weight",
                                 "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  CHECK(net->parameters().size() == 8);
  CHECK(net->buffers().size() == 5);
  for (const Tensor& p : net->parameters()) CHECK(p.requires_grad());
  for (const Tensor& b : net->buffers()) CHECK_FALSE(b.requires_grad());

  std::vector<std::string> mods;
  for (auto& [name, m] : net->named_modules()) mods.push_back(name + ":" + m->type_name());
  CHECK(mods == std::vector<std::string>{":Net", "fc:Linear", "seq:Sequential", "seq.0:Linear", "seq.1:ReLU",
                                         "bn:BatchNorm2d"});
  std::vector<std::string> children;
  for (auto& [name, m] : net->named_children()) children.push_back(name);
  CHECK(children == std::vector<std::string>{"fc", "seq", "bn"});

  // apply visits children first, then the module itself
  std::vector<std::string> order;
  net->apply([&](Module& m) { order.push_back(m.type_name()); });
  CHECK(order == std::vector<std::string>{"Linear", "Linear", "ReLU", "Sequential", "BatchNorm2d", "Net"});

  // state_dict entries share storage with the module
  {
    NoGradGuard ng;
    const StateDict sd = net->state_dict();
    const Tensor* fc_bias = find(sd, "fc.bias");
    REQUIRE(fc_bias != nullptr);
    native::fill_(*fc_bias, 3.5);
  }
  CHECK(vals(net->child_as<Linear>("fc")->bias()) == std::vector<double>{3.5, 3.5});
  CHECK(find(net->state_dict(), "scratch") == nullptr);
}

TEST_CASE("Module: registry errors name the module and the attribute") {
  Net net;
  std::string e = error_of([&] { net.param("nope"); });
  CHECK(contains(e, "Net"));
  CHECK(contains(e, "nope"));
  CHECK(contains(error_of([&] { net.buffer("w"); }), "no buffer named 'w'"));
  CHECK(contains(error_of([&] { net.child("fc2"); }), "fc2"));
  CHECK(contains(error_of([&] { net.register_parameter("w", ones({1})); }), "already exists"));
  CHECK(contains(error_of([&] { net.register_buffer("b", ones({1})); }), "already exists"));
  CHECK(contains(error_of([&] { net.register_parameter("a.b", ones({1})); }), "invalid attribute name"));
  CHECK(contains(error_of([&] { net.register_module("fc", std::make_shared<ReLU>()); }), "already exists"));
  CHECK(contains(error_of([&] { net.register_module("x", std::shared_ptr<Module>()); }), "null"));
  CHECK(contains(error_of([&] { net.child_as<Conv2d>("fc"); }), "Linear"));
  CHECK(contains(error_of([&] { ModuleList().forward(ones({1})); }), "ModuleList"));
  CHECK(net.has_param("w"));
  CHECK_FALSE(net.has_param("stat"));
}

TEST_CASE("Module: load_state_dict copies values in place; strict errors list every problem at once") {
  manual_seed(1);
  auto a = std::make_shared<Net>();
  manual_seed(2);
  auto b = std::make_shared<Net>();
  const Tensor a_fc_w = a->child_as<Linear>("fc")->weight();
  CHECK(vals(a_fc_w) != vals(b->child_as<Linear>("fc")->weight()));
  a->load_state_dict(b->state_dict());
  CHECK(vals(a_fc_w) == vals(b->child_as<Linear>("fc")->weight()));
  CHECK(a->child_as<Linear>("fc")->weight().is_same(a_fc_w));  // same tensor, new values
  CHECK(a_fc_w.requires_grad());
  CHECK(a_fc_w.is_leaf());

  // missing, unexpected and mismatched keys all in one error; the model is left unchanged
  manual_seed(3);
  auto c = std::make_shared<Net>();
  const auto before = c->state_dict();
  std::vector<std::vector<double>> before_vals;
  for (auto& [k, t] : before) before_vals.push_back(vals(t));
  StateDict sd = b->state_dict();
  sd.erase(sd.begin() + 4);                        // fc.bias
  sd.emplace_back("extra.key", zeros({2}));        // unexpected
  sd[0].second = zeros({4});                       // w has shape [3]
  const std::string e = error_of([&] { c->load_state_dict(sd); });
  CAPTURE(e);
  CHECK(contains(e, "Error(s) in loading state_dict for Net"));
  CHECK(contains(e, "Missing key(s) in state_dict: \"fc.bias\""));
  CHECK(contains(e, "Unexpected key(s) in state_dict: \"extra.key\""));
  CHECK(contains(e, "size mismatch for w: copying a param with shape [4] from checkpoint, the shape in current "
                    "model is [3]"));
  for (size_t i = 0; i < before.size(); ++i) CHECK(vals(c->state_dict()[i].second) == before_vals[i]);

  // non-strict: missing and unexpected keys are allowed, a shape mismatch is not
  StateDict partial = b->state_dict();
  partial.erase(partial.begin() + 4);
  partial.emplace_back("extra.key", zeros({2}));
  c->load_state_dict(partial, /*strict=*/false);
  CHECK(vals(c->child_as<Linear>("fc")->weight()) == vals(b->child_as<Linear>("fc")->weight()));
  CHECK(vals(c->child_as<Linear>("fc")->bias()) == before_vals[4]);
  CHECK_THROWS_AS(c->load_state_dict(sd, /*strict=*/false), Error);

  // values are converted to the module's dtype
  StateDict f64 = b->state_dict();
  for (auto& [k, t] : f64) t = t.is_floating_point() ? native::to(t, kCPU, DType::f64) : t;
  Net d;
  d.load_state_dict(f64);
  CHECK(d.param("w").dtype() == DType::f32);
  CHECK(vals(d.child_as<Linear>("fc")->weight()) == vals(b->child_as<Linear>("fc")->weight()));
}

TEST_CASE("Module: train and eval reach every submodule") {
  auto net = std::make_shared<Net>();
  for (auto& [n, m] : net->named_modules()) CHECK(m->is_training());
  net->eval();
  for (auto& [n, m] : net->named_modules()) {
    CAPTURE(n);
    CHECK_FALSE(m->is_training());
  }
  net->child("seq")->train();
  CHECK(net->child("seq")->child("0")->is_training());
  CHECK_FALSE(net->is_training());
  net->train();
  for (auto& [n, m] : net->named_modules()) CHECK(m->is_training());

  Sequential s(std::vector<std::shared_ptr<Module>>{std::make_shared<Dropout>(0.5)});
  Tensor x = ones({1000});
  s.eval();
  CHECK(s(x).is_same(x));
  s.train();
  const auto y = vals(s(x));
  CHECK(std::count(y.begin(), y.end(), 0.0) > 300);  // Binomial(1000, 0.5) zeros
}

TEST_CASE("Module: to(dtype) converts floating tensors in place; integer buffers keep their type") {
  auto net = std::make_shared<Net>();
  const Tensor w = net->child_as<Linear>("fc")->weight();  // a handle taken before the move
  const auto w_vals = vals(w);
  const Tensor nbt = net->child_as<BatchNorm2d>("bn")->num_batches_tracked();
  Tensor x = values({4, 3}, -1, 1, 5);
  net->child("fc")->forward(x).sum().backward();
  CHECK(w.grad().defined());
  net->to(DType::f64);
  CHECK(w.dtype() == DType::f64);
  CHECK(vals(w) == w_vals);
  CHECK_FALSE(w.grad().defined());  // the old gradient had the old dtype
  CHECK(w.requires_grad());
  CHECK(nbt.dtype() == DType::i64);
  for (auto& [k, t] : net->state_dict()) {
    CAPTURE(k);
    CHECK(t.dtype() == (k == "bn.num_batches_tracked" ? DType::i64 : DType::f64));
  }
  Tensor y = (*net)(native::to(x, kCPU, DType::f64));
  CHECK(y.dtype() == DType::f64);
  y.sum().backward();  // gradients flow into the moved parameters
  CHECK(w.grad().dtype() == DType::f64);
  net->to(DType::bf16);
  CHECK(w.dtype() == DType::bf16);
  CHECK(vals(w)[0] == doctest::Approx(w_vals[0]).epsilon(1e-2));
  net->to(kCPU);  // same device: nothing changes
  CHECK(w.dtype() == DType::bf16);
}

TEST_CASE("Module: clone is a deep copy with the same configuration and values") {
  manual_seed(11);
  auto net = std::make_shared<Net>(3.0);
  net->eval();
  auto copy = std::dynamic_pointer_cast<Net>(net->clone());
  REQUIRE(copy);
  CHECK(copy->scale() == 3.0);
  CHECK(copy->repr() == net->repr());
  CHECK_FALSE(copy->is_training());
  const auto a = net->state_dict(), b = copy->state_dict();
  REQUIRE(keys(a) == keys(b));
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(vals(a[i].second) == vals(b[i].second));
    CHECK(a[i].second.dtype() == b[i].second.dtype());
    CHECK(a[i].second.storage() != b[i].second.storage());
  }
  for (auto& [k, p] : copy->named_parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  CHECK(copy->child("fc") != net->child("fc"));
  CHECK(std::dynamic_pointer_cast<Linear>(copy->child("fc")) != nullptr);
  CHECK(copy->child("seq")->child("0") != net->child("seq")->child("0"));
  Tensor x = values({2, 3}, -1, 1, 12);
  CHECK(vals((*copy)(x)) == vals((*net)(x)));
  {
    NoGradGuard ng;
    native::fill_(copy->child_as<Linear>("fc")->weight(), 0.0);
  }
  CHECK(vals(net->child_as<Linear>("fc")->weight()) != vals(copy->child_as<Linear>("fc")->weight()));
  Conv2d conv(4, 8, 3, {.stride = 2, .groups = 2, .bias = false});
  auto cc = std::dynamic_pointer_cast<Conv2d>(conv.clone());
  REQUIRE(cc);
  CHECK(cc->extra_repr() == conv.extra_repr());
  CHECK_FALSE(cc->bias().defined());
}

TEST_CASE("Module: zero_grad sets gradients to none, or to zeros") {
  Net net;
  Tensor x = values({2, 3}, -1, 1, 13);
  net(x).sum().backward();
  const Tensor w = net.param("w");
  REQUIRE(w.grad().defined());
  net.zero_grad(/*set_to_none=*/false);
  CHECK(w.grad().defined());
  for (auto& [k, p] : net.named_parameters()) {
    if (p.grad().defined()) CHECK(vals(rg::abs(p.grad()).sum())[0] == 0.0);
  }
  net.zero_grad();
  for (auto& [k, p] : net.named_parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("Sequential and ModuleList: children 0, 1, ...; forward in order") {
  auto l1 = std::make_shared<Linear>(3, 4), l2 = std::make_shared<Linear>(4, 2);
  Sequential seq({l1, std::make_shared<ReLU>(), l2});
  CHECK(seq.size() == 3);
  CHECK(seq[0] == l1);
  CHECK(seq[2] == l2);
  CHECK(keys(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  Tensor x = values({5, 3}, -1, 1, 14);
  CHECK(vals(seq(x)) == vals((*l2)(relu((*l1)(x)))));
  seq.push_back(std::make_shared<Sigmoid>());
  CHECK(seq.named_children().back().first == "3");

  ModuleList list;
  list.push_back(std::make_shared<Linear>(2, 2)).push_back(std::make_shared<Conv2d>(1, 1, 1));
  CHECK(list.size() == 2);
  CHECK(keys(list.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  CHECK(list[1]->type_name() == "Conv2d");
  CHECK_THROWS_AS(list.forward(x), Error);
  CHECK(list.repr() ==
        "ModuleList(\n"
        "  (0): Linear(in_features=2, out_features=2, bias=True)\n"
        "  (1): Conv2d(1, 1, kernel_size=(1, 1), stride=(1, 1))\n"
        ")");
}

TEST_CASE("Module: replace_module and set_parameter swap registry entries") {
  Net net;
  net.replace_module("seq", std::make_shared<Identity>());
  CHECK(keys(net.named_parameters()) == std::vector<std::string>{"w", "b", "fc.weight", "fc.bias", "bn.weight", "bn.bias"});
  Tensor w2 = full({3}, 0.5);
  net.set_parameter("w", w2);
  CHECK(net.param("w").is_same(w2));
  net.set_buffer("stat", ones({3}));
  CHECK(vals(net.buffer("stat")) == std::vector<double>{1, 1, 1});
  CHECK_THROWS_AS(net.replace_module("nope", std::make_shared<Identity>()), Error);
  CHECK_THROWS_AS(net.set_parameter("stat", w2), Error);
  CHECK(net.repr() ==
        "Net(\n"
        "  scale=2.0\n"
        "  (fc): Linear(in_features=3, out_features=2, bias=True)\n"
        "  (seq): Identity()\n"
        "  (bn): BatchNorm2d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
        ")");
}
