// LR schedulers against closed forms written here: step, multistep, cosine, poly, one-cycle (two
// and three phases, momentum cycling for SGD and Adam), linear and darknet power warmups, per-group
// base lrs, set_step, and state_dict round trips through a safetensors checkpoint.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "nn/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::optim;
using namespace rg::nntest;

namespace {

constexpr double kPi = 3.14159265358979323846;

Tensor param1() {
  Tensor p = zeros({1});
  p.set_requires_grad(true);
  return p;
}

// Two groups with base lrs 0.1 and 0.4.
std::unique_ptr<SGD> make_sgd() {
  Json g2 = Json::object();
  g2.set("lr", Json(0.4));
  return std::make_unique<SGD>(std::vector<ParamGroup>{ParamGroup({param1()}), ParamGroup({param1()}, g2)},
                               SGDOptions{.lr = 0.1, .momentum = 0.9});
}

// Steps the scheduler through 0..last and checks every group's lr against expected(step, base).
void check_schedule(Optimizer& opt, LRScheduler& s, int64_t last, const std::function<double(int64_t, double)>& expected) {
  const std::vector<double> bases = {0.1, 0.4};
  for (int64_t k = 0; k <= last; ++k) {
    if (k > 0) s.step();
    CAPTURE(k);
    CHECK(s.last_epoch() == k);
    for (size_t g = 0; g < 2; ++g) {
      const double e = expected(k, bases[g]);
      CHECK(opt.param_groups()[g].lr() == doctest::Approx(e).epsilon(1e-12));
      CHECK(s.get_last_lr()[g] == doctest::Approx(e).epsilon(1e-12));
      CHECK(s.lr_at(k, g) == doctest::Approx(e).epsilon(1e-12));
    }
  }
}

}  // namespace

TEST_CASE("StepLR and MultiStepLR") {
  {
    auto opt = make_sgd();
    StepLR s(*opt, 3, 0.5);
    CHECK(opt->param_groups()[0].number("initial_lr") == 0.1);
    check_schedule(*opt, s, 10, [](int64_t k, double b) { return b * std::pow(0.5, static_cast<double>(k / 3)); });
  }
  {
    auto opt = make_sgd();
    MultiStepLR s(*opt, {5, 2}, 0.1);  // unsorted on purpose
    check_schedule(*opt, s, 8, [](int64_t k, double b) { return k < 2 ? b : (k < 5 ? b * 0.1 : b * 0.01); });
  }
}

TEST_CASE("CosineAnnealingLR and PolynomialLR") {
  {
    auto opt = make_sgd();
    CosineAnnealingLR s(*opt, 10, 0.001);
    check_schedule(*opt, s, 10, [](int64_t k, double b) {
      return 0.001 + (b - 0.001) * (1 + std::cos(kPi * static_cast<double>(k) / 10.0)) / 2;
    });
    CHECK(opt->param_groups()[0].lr() == doctest::Approx(0.001));  // T_max reached: eta_min
    CHECK(s.lr_at(5, 1) == doctest::Approx((0.4 + 0.001) / 2));
  }
  {
    auto opt = make_sgd();
    PolynomialLR s(*opt, 4, 2.0);
    check_schedule(*opt, s, 7, [](int64_t k, double b) {
      const double t = static_cast<double>(std::min<int64_t>(k, 4)) / 4.0;
      return b * (1 - t) * (1 - t);
    });
    CHECK(opt->param_groups()[1].lr() == 0.0);
  }
}

TEST_CASE("OneCycleLR: two phases, cosine, momentum cycling") {
  auto opt = make_sgd();
  OneCycleLR s(*opt, std::vector<double>{1.0, 2.0}, 10);
  // initial = max / 25, min = initial / 1e4; phase 1 ends at 0.3 * 10 - 1 = 2, phase 2 at 9
  auto cos_anneal = [](double a, double b, double pct) { return b + (a - b) / 2 * (std::cos(kPi * pct) + 1); };
  for (int64_t k = 0; k <= 9; ++k) {
    if (k > 0) s.step();
    CAPTURE(k);
    for (size_t g = 0; g < 2; ++g) {
      const double mx = g == 0 ? 1.0 : 2.0, init = mx / 25, mn = init / 1e4;
      const double e = k <= 2 ? cos_anneal(init, mx, k / 2.0) : cos_anneal(mx, mn, (k - 2) / 7.0);
      CHECK(opt->param_groups()[g].lr() == doctest::Approx(e).epsilon(1e-12));
      const double em = k <= 2 ? cos_anneal(0.95, 0.85, k / 2.0) : cos_anneal(0.85, 0.95, (k - 2) / 7.0);
      CHECK(opt->param_groups()[g].number("momentum") == doctest::Approx(em).epsilon(1e-12));
    }
  }
  CHECK(opt->param_groups()[0].number("max_lr") == 1.0);
  CHECK(opt->param_groups()[1].number("initial_lr") == doctest::Approx(0.08));
  CHECK(opt->param_groups()[0].lr() == doctest::Approx(0.04 / 1e4));  // the last step reaches min_lr
  // worked numbers: step 1 is halfway up phase 1: 1 + (0.04 - 1) / 2 = 0.52
  CHECK(s.lr_at(1, 0) == doctest::Approx(0.52));
  s.step();  // step 10 == total_steps is still allowed
  CHECK_THROWS_AS(s.step(), Error);
}

TEST_CASE("OneCycleLR: three phases, linear annealing, Adam's beta1") {
  Tensor p = param1();
  Adam opt({p}, AdamOptions{.lr = 0.5});
  OneCycleOptions o;
  o.three_phase = true;
  o.cos_anneal = false;
  o.pct_start = 0.25;
  OneCycleLR s(opt, 1.0, 20, o);
  // phases end at 0.25*20-1 = 4, 2*0.25*20-2 = 8, 19
  auto lin = [](double a, double b, double pct) { return (b - a) * pct + a; };
  for (int64_t k = 0; k <= 19; ++k) {
    if (k > 0) s.step();
    CAPTURE(k);
    const double init = 0.04, mn = 0.04 / 1e4;
    double e, em;
    if (k <= 4) {
      e = lin(init, 1.0, k / 4.0);
      em = lin(0.95, 0.85, k / 4.0);
    } else if (k <= 8) {
      e = lin(1.0, init, (k - 4) / 4.0);
      em = lin(0.85, 0.95, (k - 4) / 4.0);
    } else {
      e = lin(init, mn, (k - 8) / 11.0);
      em = 0.95;
    }
    CHECK(opt.param_groups()[0].lr() == doctest::Approx(e).epsilon(1e-12));
    CHECK(opt.param_groups()[0].options["betas"][0].as_double() == doctest::Approx(em).epsilon(1e-12));
    CHECK(opt.param_groups()[0].options["betas"][1].as_double() == 0.999);
  }
}

TEST_CASE("WarmupLR: linear and darknet power-4 burn-in in front of another schedule") {
  {
    auto opt = make_sgd();
    auto after = std::make_unique<MultiStepLR>(*opt, std::vector<int64_t>{6}, 0.1);
    WarmupLR s(*opt, std::move(after), 4, WarmupOptions{.mode = WarmupMode::Linear, .start_factor = 0.1});
    check_schedule(*opt, s, 9, [](int64_t k, double b) {
      const double f = k < 4 ? 0.1 + 0.9 * static_cast<double>(k) / 4.0 : 1.0;
      return f * (k < 6 ? b : b * 0.1);
    });
    CHECK(s.after().last_epoch() == 9);
  }
  {  // darknet: lr = base * (step / burn_in)^4 below burn_in, then the steps policy at absolute steps
    auto opt = make_sgd();
    auto after = std::make_unique<MultiStepLR>(*opt, std::vector<int64_t>{8, 9}, 0.1);
    WarmupLR s(*opt, std::move(after), 5, WarmupOptions{.mode = WarmupMode::Power, .power = 4.0});
    check_schedule(*opt, s, 10, [](int64_t k, double b) {
      if (k < 5) return b * std::pow(static_cast<double>(k) / 5.0, 4.0);
      return k < 8 ? b : (k < 9 ? b * 0.1 : b * 0.01);
    });
    CHECK(s.lr_at(0, 0) == 0.0);
    CHECK(s.lr_at(2, 1) == doctest::Approx(0.4 * 0.0256));
  }
  {  // warmup into cosine
    auto opt = make_sgd();
    auto after = std::make_unique<CosineAnnealingLR>(*opt, 10);
    WarmupLR s(*opt, std::move(after), 3);
    check_schedule(*opt, s, 10, [](int64_t k, double b) {
      const double f = k < 3 ? 1.0 / 3.0 + (2.0 / 3.0) * static_cast<double>(k) / 3.0 : 1.0;
      return f * b * (1 + std::cos(kPi * static_cast<double>(k) / 10.0)) / 2;
    });
  }
}

TEST_CASE("scheduler set_step jumps to a step; a second scheduler keeps the recorded initial_lr") {
  auto opt = make_sgd();
  StepLR s(*opt, 2, 0.5);
  s.set_step(5);
  CHECK(opt->param_groups()[0].lr() == doctest::Approx(0.1 * 0.25));
  StepLR s2(*opt, 1, 0.5);  // base lrs come from initial_lr, not the current (decayed) lr
  CHECK(s2.base_lrs()[0] == 0.1);
  CHECK(opt->param_groups()[1].lr() == doctest::Approx(0.4));
}

TEST_CASE("scheduler state_dict round trips through a checkpoint") {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rg_test_sched-" + std::to_string(::getpid()) + ".safetensors")).string();
  auto build = [](Optimizer& opt) {
    auto after = std::make_unique<OneCycleLR>(opt, 1.0, 50);
    return std::make_unique<WarmupLR>(opt, std::move(after), 5, WarmupOptions{.mode = WarmupMode::Power});
  };
  auto opt = make_sgd();
  auto s = build(*opt);
  for (int k = 0; k < 7; ++k) s->step();
  nn::StateDict tensors;
  nn::Metadata md;
  nn::put_train_state(tensors, md, "optimizer", opt->state_dict());
  nn::put_train_state(tensors, md, "scheduler", s->state_dict());
  nn::save_safetensors(path, tensors, md);
  const nn::SafeTensors ck = nn::load_safetensors(path);
  std::filesystem::remove(path);

  auto opt2 = make_sgd();
  auto s2 = build(*opt2);
  opt2->load_state_dict(nn::get_train_state(ck, "optimizer"));
  s2->load_state_dict(nn::get_train_state(ck, "scheduler"));
  CHECK(s2->last_epoch() == 7);
  CHECK(s2->after().last_epoch() == 7);
  CHECK(s2->get_last_lr() == s->get_last_lr());
  CHECK(s2->state_dict().meta.dump() == s->state_dict().meta.dump());
  for (int k = 0; k < 3; ++k) {
    s->step();
    s2->step();
    for (size_t g = 0; g < 2; ++g) {
      CHECK(opt2->param_groups()[g].lr() == opt->param_groups()[g].lr());
      CHECK(opt2->param_groups()[g].number("momentum") == opt->param_groups()[g].number("momentum"));
    }
  }
  // another scheduler type is refused
  auto opt3 = make_sgd();
  StepLR other(*opt3, 2);
  CHECK_THROWS_AS(other.load_state_dict(nn::get_train_state(ck, "scheduler")), Error);
  // the saved JSON carries PyTorch's keys
  const Json j = nn::get_train_state(ck, "scheduler").meta;
  CHECK(j["type"].as_string() == "WarmupLR");
  CHECK(j["after"]["type"].as_string() == "OneCycleLR");
  CHECK(j["last_epoch"].as_int() == 7);
  CHECK(j["base_lrs"].size() == 2);
}
