// Parameter groups (weight decay on which tensors) and the three warmups, against values worked
// out by hand (train/optim_setup.h, Note [Warmup]).
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "nn/layers.h"
#include "test_util.h"
#include "train/optim_setup.h"

using rg::train::GroupKind;
using rg::train::TrainOptions;

namespace {
// conv (weight, bias) -> batch norm (weight, bias) -> relu -> flatten -> linear (weight, bias).
std::shared_ptr<rg::nn::Sequential> small_net() {
  return std::make_shared<rg::nn::Sequential>(std::vector<std::shared_ptr<rg::nn::Module>>{
      std::make_shared<rg::nn::Conv2d>(3, 4, 3), std::make_shared<rg::nn::BatchNorm2d>(4),
      std::make_shared<rg::nn::ReLU>(), std::make_shared<rg::nn::Flatten>(), std::make_shared<rg::nn::Linear>(4, 2)});
}

std::set<std::string> names_in(const rg::nn::Module& m, const std::vector<rg::Tensor>& ts) {
  std::set<std::string> out;
  for (const auto& [n, p] : m.named_parameters()) {
    for (const auto& t : ts) {
      if (t.impl() == p.impl()) out.insert(n);
    }
  }
  return out;
}

TrainOptions sgd(double lr) {
  TrainOptions o;
  o.optimizer = "sgd";
  o.lr = lr;
  o.weight_decay = 0.0;
  o.momentum = 0.937;
  o.scheduler = "none";
  o.epochs = 2;
  return o;
}

double lr_of(const rg::optim::Optimizer& opt, size_t g) { return opt.param_groups()[g].lr(); }
double momentum_of(const rg::optim::Optimizer& opt, size_t g) {
  const auto& grp = opt.param_groups()[g];
  return grp.has("betas") ? grp.options["betas"][0].as_double() : grp.number("momentum");
}
}  // namespace

TEST_CASE("parameter groups: one decayed group by default; YOLO's split keeps decay off norm weights and biases") {
  auto net = small_net();
  const auto all = rg::train::make_param_groups(*net, 0.01, /*decay_norm_bias=*/true);
  REQUIRE(all.groups.size() == 1);
  CHECK(all.kinds[0] == GroupKind::All);
  CHECK(all.groups[0].number("weight_decay") == 0.01);
  const auto params = net->parameters();
  REQUIRE(all.groups[0].params.size() == params.size());
  for (size_t i = 0; i < params.size(); ++i) CHECK(all.groups[0].params[i].impl() == params[i].impl());  // order kept

  const auto yolo = rg::train::make_param_groups(*net, 0.01, /*decay_norm_bias=*/false);
  REQUIRE(yolo.groups.size() == 3);
  CHECK(yolo.kinds == std::vector<GroupKind>{GroupKind::Decay, GroupKind::NormWeight, GroupKind::Bias});
  CHECK(names_in(*net, yolo.groups[0].params) == std::set<std::string>{"0.weight", "4.weight"});
  CHECK(names_in(*net, yolo.groups[1].params) == std::set<std::string>{"1.weight"});
  CHECK(names_in(*net, yolo.groups[2].params) == std::set<std::string>{"0.bias", "1.bias", "4.bias"});
  CHECK(yolo.groups[0].number("weight_decay") == 0.01);
  CHECK(yolo.groups[1].number("weight_decay") == 0.0);
  CHECK(yolo.groups[2].number("weight_decay") == 0.0);

  // Through the optimizer: with zero gradients, SGD(lr 1, decay 0.1) shrinks only the decayed group.
  TrainOptions o = sgd(1.0);
  o.momentum = 0.0;
  o.weight_decay = 0.1;
  auto groups = rg::train::make_param_groups(*net, 0.1, false);
  auto opt = rg::train::make_optimizer(o, groups);
  std::vector<std::vector<float>> before;
  for (rg::Tensor p : net->parameters()) {
    p.set_grad(rg::zeros_like(p));
    before.push_back(p.to_vector<float>());
  }
  opt->step();
  const auto named = net->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const bool decayed = named[i].first == "0.weight" || named[i].first == "4.weight";
    const std::vector<float> after = named[i].second.to_vector<float>();
    int64_t wrong = 0;
    for (size_t k = 0; k < after.size(); ++k) {
      const double want = decayed ? 0.9 * before[i][k] : before[i][k];
      wrong += std::abs(after[k] - want) > 1e-6 * std::abs(want);
    }
    CHECK_MESSAGE(wrong == 0, named[i].first, (decayed ? " should shrink by 10%" : " should not move"));
  }
}

TEST_CASE("warmup lengths round warmup_epochs x optimizer steps per epoch") {
  TrainOptions o;
  o.warmup_epochs = 0.5;
  CHECK(rg::train::warmup_steps(o, 7) == 4);  // 3.5 rounds away from zero
  o.warmup_epochs = 3;
  CHECK(rg::train::warmup_steps(o, 10) == 30);
  o.warmup_epochs = 0;
  CHECK(rg::train::warmup_steps(o, 10) == 0);
}

TEST_CASE("linear and burn-in warmups, by hand: lr x (0.1 + 0.9 k/W) and lr x (k/W)^4 over W = 4 steps") {
  auto net = small_net();
  TrainOptions o = sgd(0.1);
  o.warmup_epochs = 1;  // 4 steps per epoch below: W = 4
  const double linear[] = {0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1};
  const double burnin[] = {0.0, 0.000390625, 0.00625, 0.031640625, 0.1, 0.1};
  for (const char* kind : {"linear", "burnin"}) {
    o.warmup = kind;
    auto groups = rg::train::make_param_groups(*net, 0.0, true);
    auto opt = rg::train::make_optimizer(o, groups);
    auto sched = rg::train::make_scheduler(o, *opt, 4);
    for (int k = 0; k <= 5; ++k) {
      if (k > 0) sched->step();
      const double want = std::string(kind) == "linear" ? linear[k] : burnin[k];
      INFO(kind, " step ", k);
      CHECK(lr_of(*opt, 0) == doctest::Approx(want).epsilon(1e-12));
    }
  }
}

TEST_CASE("YOLO warmup, by hand: weights from 0, biases from warmup_bias_lr, momentum from warmup_momentum") {
  auto net = small_net();
  TrainOptions o = sgd(0.01);
  o.warmup = "yolo";
  o.warmup_epochs = 1;
  o.warmup_bias_lr = 0.1;
  o.warmup_momentum = 0.8;
  auto groups = rg::train::make_param_groups(*net, 5e-4, false);  // Decay, NormWeight, Bias
  auto opt = rg::train::make_optimizer(o, groups);
  auto sched = rg::train::make_scheduler(o, *opt, 4);
  rg::train::YoloWarmup w{4, 0.1, 0.8, 0.937};
  // step: weights' lr, biases' lr, momentum (constant schedule at 0.01, W = 4)
  const double table[][3] = {{0.0, 0.1, 0.8},         {0.0025, 0.0775, 0.83425}, {0.005, 0.055, 0.8685},
                             {0.0075, 0.0325, 0.90275}, {0.01, 0.01, 0.937},      {0.01, 0.01, 0.937}};
  for (int k = 0; k <= 5; ++k) {
    if (k > 0) sched->step();
    w.apply(*opt, groups.kinds, sched->last_epoch());
    INFO("step ", k);
    CHECK(lr_of(*opt, 0) == doctest::Approx(table[k][0]).epsilon(1e-12));
    CHECK(lr_of(*opt, 1) == doctest::Approx(table[k][0]).epsilon(1e-12));  // norm weights start at 0 too
    CHECK(lr_of(*opt, 2) == doctest::Approx(table[k][1]).epsilon(1e-12));
    for (size_t g = 0; g < 3; ++g) CHECK(momentum_of(*opt, g) == doctest::Approx(table[k][2]).epsilon(1e-12));
  }

  // Under a cosine schedule over 8 steps with W = 2: the target at step 1 is 0.01 (1 + cos(pi/8)) / 2.
  o.scheduler = "cosine";
  o.optimizer = "adam";
  o.epochs = 2;
  auto opt2 = rg::train::make_optimizer(o, groups);
  auto sched2 = rg::train::make_scheduler(o, *opt2, 4);
  rg::train::YoloWarmup w2{2, 0.1, 0.8, 0.937};
  sched2->step();
  w2.apply(*opt2, groups.kinds, 1);
  const double target = 0.01 * (1 + std::cos(M_PI / 8)) / 2;  // 0.0096193976625564...
  CHECK(lr_of(*opt2, 0) == doctest::Approx(0.5 * target).epsilon(1e-12));
  CHECK(lr_of(*opt2, 2) == doctest::Approx(0.1 + (target - 0.1) * 0.5).epsilon(1e-12));
  CHECK(momentum_of(*opt2, 0) == doctest::Approx(0.8685).epsilon(1e-12));  // Adam's beta1
  CHECK(opt2->param_groups()[0].options["betas"][1].as_double() == 0.999);
}
