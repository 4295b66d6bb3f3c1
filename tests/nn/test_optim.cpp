// Optimizers against PyTorch's update formulas written out here (SGD with momentum, dampening,
// Nesterov, weight decay, maximize; Adam/AdamW with amsgrad and coupled/decoupled decay), worked
// numbers for a few steps, param groups, skipped parameters, state_dict round trips through a
// safetensors file, clip_grad_norm_, and the CPU multi-tensor / AMP kernels.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include "core/cuda_api.h"
#include "nn/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/sgd.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nntest;
using rg::optim::Adam;
using rg::optim::AdamOptions;
using rg::optim::AdamW;
using rg::optim::AdamWOptions;
using rg::optim::ParamGroup;
using rg::optim::SGD;
using rg::optim::SGDOptions;

namespace {

Tensor param(const std::vector<double>& v, DType dt = DType::f64) {
  Tensor p = from_vector<double>(v, {static_cast<int64_t>(v.size())}, dt);
  p.set_requires_grad(true);
  return p;
}

void set_grad(const Tensor& p, const std::vector<double>& g) {
  Tensor h = p;
  h.set_grad(from_vector<double>(g, p.sizes(), p.dtype()));
}

Json opts(std::initializer_list<std::pair<const char*, double>> kv) {
  Json j = Json::object();
  for (const auto& [k, v] : kv) j.set(k, Json(v));
  return j;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".safetensors")).string();
}

// PyTorch's SGD for one parameter, element by element (torch.optim.SGD docs).
struct RefSGD {
  double lr, momentum, dampening, wd;
  bool nesterov, maximize;
  std::vector<double> w, buf;
  bool first = true;
  void step(const std::vector<double>& g) {
    if (buf.empty()) buf.assign(w.size(), 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
      double d = maximize ? -g[i] : g[i];
      d += wd * w[i];
      if (momentum != 0.0) {
        buf[i] = first ? d : momentum * buf[i] + (1.0 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      w[i] -= lr * d;
    }
    first = false;
  }
};

// PyTorch's Adam / AdamW for one parameter (torch.optim.Adam / AdamW docs).
struct RefAdam {
  double lr, b1, b2, eps, wd;
  bool decoupled, amsgrad, maximize;
  std::vector<double> w, m, v, vmax;
  int t = 0;
  void step(const std::vector<double>& g) {
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0), vmax.assign(w.size(), 0.0);
    ++t;
    const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
    for (size_t i = 0; i < w.size(); ++i) {
      double d = maximize ? -g[i] : g[i];
      if (decoupled) {
        w[i] *= 1.0 - lr * wd;
      } else {
        d += wd * w[i];
      }
      m[i] = b1 * m[i] + (1.0 - b1) * d;
      v[i] = b2 * v[i] + (1.0 - b2) * d * d;
      vmax[i] = std::max(vmax[i], v[i]);
      const double denom = std::sqrt(amsgrad ? vmax[i] : v[i]) / std::sqrt(bc2) + eps;
      w[i] -= (lr / bc1) * m[i] / denom;
    }
  }
};

const std::vector<std::vector<double>> kGrads = {{0.5, -1.0, 2.0}, {-0.25, 0.75, 1.0}, {1.5, 0.1, -0.6}};

}  // namespace

TEST_CASE("SGD worked numbers: plain, momentum, Nesterov") {
  {
    Tensor p = param({1.0, 2.0});
    SGD opt({p}, SGDOptions{.lr = 0.1});
    set_grad(p, {0.5, -1.0});
    opt.step();
    CHECK_VALUES(vals(p), (std::vector<double>{0.95, 2.1}), 1e-15);
  }
  {  // w0 = 1, g = 1 each step, lr 0.1, momentum 0.9: buf 1, 1.9, 2.71 -> w 0.9, 0.71, 0.439
    Tensor p = param({1.0});
    SGD opt({p}, SGDOptions{.lr = 0.1, .momentum = 0.9});
    std::vector<double> got;
    for (int k = 0; k < 3; ++k) {
      set_grad(p, {1.0});
      opt.step();
      got.push_back(vals(p)[0]);
    }
    CHECK_VALUES(got, (std::vector<double>{0.9, 0.71, 0.439}), 1e-12);
    CHECK_VALUES(vals(opt.state(0).get("momentum_buffer")), (std::vector<double>{2.71}), 1e-12);
  }
  {  // Nesterov: d = g + 0.9 buf: 1.9 then 2.71 -> w 0.81, 0.539
    Tensor p = param({1.0});
    SGD opt({p}, SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
    std::vector<double> got;
    for (int k = 0; k < 2; ++k) {
      set_grad(p, {1.0});
      opt.step();
      got.push_back(vals(p)[0]);
    }
    CHECK_VALUES(got, (std::vector<double>{0.81, 0.539}), 1e-12);
  }
}

TEST_CASE("SGD matches PyTorch's formula: momentum, dampening, nesterov, weight decay, maximize") {
  struct Case {
    double momentum, dampening, wd;
    bool nesterov, maximize;
  };
  const std::vector<Case> cases = {{0, 0, 0, false, false},    {0.9, 0, 0, false, false}, {0.9, 0.1, 0.01, false, false},
                                   {0.8, 0, 0.05, true, false}, {0.9, 0.2, 0.01, false, true}, {0, 0, 0.1, false, true}};
  for (DType dt : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dt));
      CAPTURE(c.momentum);
      CAPTURE(c.nesterov);
      CAPTURE(c.maximize);
      const std::vector<double> w0 = {1.0, -0.5, 0.25};
      Tensor p = param(w0, dt);
      SGD opt({p}, SGDOptions{.lr = 0.05, .momentum = c.momentum, .dampening = c.dampening, .weight_decay = c.wd,
                              .nesterov = c.nesterov, .maximize = c.maximize});
      RefSGD ref{0.05, c.momentum, c.dampening, c.wd, c.nesterov, c.maximize, w0, {}};
      for (const auto& g : kGrads) {
        set_grad(p, g);
        opt.step();
        ref.step(g);
        CHECK_VALUES(vals(p), ref.w, dt == DType::f64 ? 1e-14 : 1e-6);
      }
    }
  }
}

TEST_CASE("Adam worked numbers: a constant gradient moves each step by about lr") {
  // step 1: m = 0.05, v = 0.00025; m/(1-0.9) = 0.5, sqrt(v/(1-0.999)) = 0.5: w -= 0.1 * 0.5 / (0.5 + 1e-8)
  Tensor p = param({1.0});
  Adam opt({p}, AdamOptions{.lr = 0.1});
  std::vector<double> got;
  for (int k = 0; k < 3; ++k) {
    set_grad(p, {0.5});
    opt.step();
    got.push_back(vals(p)[0]);
  }
  const double s = 0.1 * 0.5 / (0.5 + 1e-8);
  CHECK_VALUES(got, (std::vector<double>{1 - s, 1 - 2 * s, 1 - 3 * s}), 1e-12);
  CHECK(*opt.state(0).step == 3);
  CHECK_VALUES(vals(opt.state(0).get("exp_avg")), (std::vector<double>{0.5 * (1 - std::pow(0.9, 3))}), 1e-15);
  CHECK_VALUES(vals(opt.state(0).get("exp_avg_sq")), (std::vector<double>{0.25 * (1 - std::pow(0.999, 3))}), 1e-15);
}

TEST_CASE("Adam and AdamW match PyTorch's formulas: amsgrad, weight decay, maximize") {
  struct Case {
    bool adamw, amsgrad, maximize;
    double wd;
  };
  const std::vector<Case> cases = {{false, false, false, 0.0}, {false, true, false, 0.0}, {false, false, false, 0.1},
                                   {true, false, false, 0.1},  {true, true, true, 0.05},  {false, true, true, 0.02}};
  // gradients that shrink, so amsgrad's max differs from v
  const std::vector<std::vector<double>> grads = {{2.0, -1.5, 1.0}, {0.1, 0.2, -0.1}, {-0.05, 0.01, 0.3}};
  for (DType dt : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dt));
      CAPTURE(c.adamw);
      CAPTURE(c.amsgrad);
      CAPTURE(c.maximize);
      const std::vector<double> w0 = {0.5, -1.0, 2.0};
      Tensor p = param(w0, dt);
      std::unique_ptr<optim::Optimizer> opt;
      AdamOptions o{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = c.wd, .amsgrad = c.amsgrad,
                    .maximize = c.maximize};
      if (c.adamw) {
        AdamWOptions ow;
        static_cast<AdamOptions&>(ow) = o;
        opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, ow);
      } else {
        opt = std::make_unique<Adam>(std::vector<Tensor>{p}, o);
      }
      RefAdam ref{0.01, 0.8, 0.95, 1e-6, c.wd, c.adamw, c.amsgrad, c.maximize, w0, {}, {}, {}};
      for (const auto& g : grads) {
        set_grad(p, g);
        opt->step();
        ref.step(g);
        CHECK_VALUES(vals(p), ref.w, dt == DType::f64 ? 1e-13 : 2e-6);
      }
      if (c.amsgrad) CHECK_VALUES(vals(opt->state(0).get("max_exp_avg_sq")), ref.vmax, dt == DType::f64 ? 1e-15 : 1e-6);
    }
  }
}

TEST_CASE("Adam amsgrad propagates a NaN into max_exp_avg_sq as torch.maximum does") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    Tensor p = param({0.5, -1.0}, dt);
    Adam opt({p}, AdamOptions{.lr = 0.01, .amsgrad = true});
    set_grad(p, {1.0, 2.0});
    opt.step();  // max_exp_avg_sq = v = 0.001 * g^2: finite
    set_grad(p, {nan, 0.5});
    opt.step();  // v[0] is NaN: max(0.001, NaN) must be NaN, not 0.001
    const std::vector<double> vmax = vals(opt.state(0).get("max_exp_avg_sq"));
    CHECK(std::isnan(vmax[0]));
    CHECK(vmax[1] == doctest::Approx(std::max(0.001 * 4, 0.999 * 0.004 + 0.001 * 0.25)).epsilon(1e-6));
    CHECK(std::isnan(vals(p)[0]));
  }
}

TEST_CASE("optimizer defaults, options and validation") {
  Tensor p = param({1.0});
  SGD sgd({p});
  CHECK(sgd.param_groups()[0].lr() == 1e-3);
  CHECK(sgd.param_groups()[0].number("momentum") == 0.0);
  CHECK(sgd.param_groups()[0].flag("nesterov") == false);
  Adam adam({p});
  CHECK(adam.param_groups()[0].options["betas"][1].as_double() == 0.999);
  CHECK(adam.param_groups()[0].number("eps") == 1e-8);
  CHECK(adam.param_groups()[0].number("weight_decay") == 0.0);
  AdamW adamw({p});
  CHECK(adamw.param_groups()[0].number("weight_decay") == 0.01);
  CHECK(adamw.name() == "AdamW");
  CHECK_THROWS_AS(SGD({p}, SGDOptions{.lr = 0.1, .dampening = 0.1, .nesterov = true}), Error);
  CHECK_THROWS_AS(SGD({p}, SGDOptions{.lr = -1.0}), Error);
  CHECK_THROWS_AS(Adam({p}, AdamOptions{.betas = {1.0, 0.9}}), Error);
  CHECK_THROWS_AS(SGD(std::vector<ParamGroup>{ParamGroup({p}, opts({{"lrr", 0.1}}))}), Error);  // misspelt
  CHECK_THROWS_AS(SGD(std::vector<Tensor>{}), Error);
  CHECK_THROWS_AS(SGD(std::vector<ParamGroup>{ParamGroup({p}), ParamGroup({p})}), Error);  // p twice
  CHECK_THROWS_AS(SGD({zeros({2}, DType::i64)}), Error);
}

TEST_CASE("param groups: per-group lr and weight decay; parameters without grad are skipped") {
  Tensor a = param({1.0, 2.0}), b = param({3.0}), c = param({4.0});
  SGD opt(std::vector<ParamGroup>{ParamGroup({a}, opts({{"lr", 0.5}})), ParamGroup({b, c}, opts({{"weight_decay", 0.1}}))},
          SGDOptions{.lr = 0.1, .momentum = 0.9});
  CHECK(opt.param_groups()[0].lr() == 0.5);
  CHECK(opt.param_groups()[0].number("momentum") == 0.9);  // from the defaults
  CHECK(opt.param_groups()[1].lr() == 0.1);
  set_grad(a, {1.0, -1.0});
  set_grad(b, {2.0});  // c has no grad
  opt.step();
  CHECK_VALUES(vals(a), (std::vector<double>{0.5, 2.5}), 1e-15);
  CHECK_VALUES(vals(b), (std::vector<double>{3.0 - 0.1 * (2.0 + 0.1 * 3.0)}), 1e-15);
  CHECK_VALUES(vals(c), (std::vector<double>{4.0}), 0.0);
  CHECK(opt.state(2).empty());
  CHECK(!opt.state(1).empty());
  // zero_grad: set to none, or zero in place
  opt.zero_grad(false);
  CHECK_VALUES(vals(a.grad()), (std::vector<double>{0.0, 0.0}), 0.0);
  opt.zero_grad();
  CHECK(!a.grad().defined());
  CHECK(!b.grad().defined());
  // lr changed through the group takes effect on the next step
  opt.param_groups()[0].set_lr(0.25);
  set_grad(a, {1.0, 1.0});
  opt.step();
  // momentum buffer of a: 0.9 * [1, -1] + [1, 1] = [1.9, 0.1]
  CHECK_VALUES(vals(a), (std::vector<double>{0.5 - 0.25 * 1.9, 2.5 - 0.25 * 0.1}), 1e-15);
}

TEST_CASE("optimizer state_dict: PyTorch's shape and an exact round trip through safetensors") {
  for (bool adam : {false, true}) {
    CAPTURE(adam);
    auto make = [&](const std::vector<Tensor>& ps) -> std::unique_ptr<optim::Optimizer> {
      std::vector<ParamGroup> groups{ParamGroup({ps[0], ps[1]}), ParamGroup({ps[2]}, opts({{"lr", 0.02}}))};
      if (adam) return std::make_unique<Adam>(groups, AdamOptions{.lr = 0.01, .amsgrad = true});
      return std::make_unique<SGD>(groups, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
    };
    std::vector<Tensor> ps = {param({1.0, 2.0}, DType::f32), param({-1.0}, DType::f32), param({0.5, 0.5, 0.5}, DType::f32)};
    auto opt = make(ps);
    for (int k = 0; k < 2; ++k) {
      set_grad(ps[0], {0.1 * (k + 1), -0.2});
      if (k == 0) set_grad(ps[1], {0.3});  // parameter 1 steps once, parameter 2 never
      else ps[1].impl()->grad.reset();
      opt->step();
    }
    optim::TrainState st = opt->state_dict();
    CHECK(st.meta["param_groups"].size() == 2);
    CHECK(st.meta["param_groups"][0]["params"][1].as_int() == 1);
    CHECK(st.meta["param_groups"][1]["params"][0].as_int() == 2);
    CHECK(st.meta["param_groups"][1]["lr"].as_double() == 0.02);
    CHECK(st.meta["state"].find("2") == nullptr);
    if (adam) {
      CHECK(st.meta["state"]["0"]["step"].as_int() == 2);
      CHECK(st.meta["state"]["1"]["step"].as_int() == 1);
      CHECK(nn::find(st.tensors, "state.0.exp_avg") != nullptr);
      CHECK(nn::find(st.tensors, "state.1.max_exp_avg_sq") != nullptr);
    } else {
      CHECK(nn::find(st.tensors, "state.0.momentum_buffer") != nullptr);
    }
    // through a checkpoint file, next to other entries
    nn::StateDict tensors{{"model.w", ps[0]}};
    nn::Metadata md{{"epoch", "3"}};
    nn::put_train_state(tensors, md, "optimizer", st);
    const std::string path = temp_path("rg_test_optim");
    nn::save_safetensors(path, tensors, md);
    const nn::SafeTensors ck = nn::load_safetensors(path);
    std::filesystem::remove(path);
    CHECK(nn::has_train_state(ck, "optimizer"));
    CHECK(!nn::has_train_state(ck, "scheduler"));

    // a fresh optimizer on copies of the parameters continues exactly like the original
    std::vector<Tensor> qs;
    for (const Tensor& p : ps) qs.push_back(param(vals(p), DType::f32));
    auto opt2 = make(qs);
    opt2->param_groups()[0].set_lr(123.0);  // overwritten by the load
    opt2->load_state_dict(nn::get_train_state(ck, "optimizer"));
    CHECK(opt2->param_groups()[0].lr() == opt->param_groups()[0].lr());
    CHECK(opt2->state_dict().meta.dump() == st.meta.dump());
    for (auto* list : {&ps, &qs}) {
      set_grad((*list)[0], {0.7, 0.1});
      set_grad((*list)[1], {-0.4});
      set_grad((*list)[2], {0.2, 0.2, -0.2});
    }
    opt->step();
    opt2->step();
    for (size_t i = 0; i < ps.size(); ++i) CHECK_VALUES(vals(qs[i]), vals(ps[i]), 0.0);
    // mismatched layouts are refused
    auto other = adam ? std::unique_ptr<optim::Optimizer>(std::make_unique<Adam>(std::vector<Tensor>{qs[0]}))
                      : std::unique_ptr<optim::Optimizer>(std::make_unique<SGD>(std::vector<Tensor>{qs[0]}));
    CHECK_THROWS_AS(other->load_state_dict(st), Error);
  }
  Tensor p = param({1.0});
  SGD sgd({p});
  Adam adam({p});
  CHECK_THROWS_AS(adam.load_state_dict(sgd.state_dict()), Error);  // another optimizer's state
}

TEST_CASE("clip_grad_norm_: total norm, clipping coefficient, other norms") {
  Tensor a = param({3.0, 4.0}, DType::f32), b = param({12.0}, DType::f32), c = param({1.0}, DType::f32);
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});  // c has no gradient
  Tensor total = optim::clip_grad_norm_({a, b, c}, 6.5);
  CHECK(total.dim() == 0);
  CHECK(total.item() == doctest::Approx(13.0).epsilon(1e-7));
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK_VALUES(vals(a.grad()), (std::vector<double>{3.0 * coef, 4.0 * coef}), 1e-6);
  CHECK_VALUES(vals(b.grad()), (std::vector<double>{12.0 * coef}), 1e-6);
  // under the limit: gradients unchanged (scaled by exactly 1)
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});
  total = optim::clip_grad_norm_({a, b}, 100.0);
  CHECK(total.item() == doctest::Approx(13.0).epsilon(1e-7));
  CHECK_VALUES(vals(a.grad()), (std::vector<double>{3.0, 4.0}), 0.0);
  // inf norm and 1-norm, f64
  Tensor d = param({1.0, 2.0, 3.0}), e = param({4.0});
  set_grad(d, {1.0, -5.0, 2.0});
  set_grad(e, {-3.0});
  CHECK(optim::clip_grad_norm_({d, e}, 1e9, INFINITY).item() == doctest::Approx(5.0));
  CHECK(optim::clip_grad_norm_({d, e}, 1e9, 1.0).item() == doctest::Approx(11.0));
  CHECK(optim::clip_grad_norm_({d, e}, 1e9, 3.0).item() == doctest::Approx(std::cbrt(1 + 125 + 8 + 27.0)));
  total = nn::utils::clip_grad_norm_({d, e}, 1.0, 1.0);
  CHECK(total.dtype() == DType::f64);
  CHECK_VALUES(vals(d.grad()), (std::vector<double>{1 / (11 + 1e-6), -5 / (11 + 1e-6), 2 / (11 + 1e-6)}), 1e-12);
  // no gradients: 0; a non-finite norm is an error only when asked
  CHECK(optim::clip_grad_norm_({c}, 1.0).item() == 0.0);
  set_grad(e, {INFINITY});
  CHECK_NOTHROW(optim::clip_grad_norm_({d, e}, 1.0));
  set_grad(e, {INFINITY});
  CHECK_THROWS_AS(optim::clip_grad_norm_({d, e}, 1.0, 2.0, true), Error);
}

TEST_CASE("multi-tensor kernels on CPU: sum of squares, scale, axpby over odd sizes and views") {
  std::vector<Tensor> xs;
  std::vector<double> expect;
  uint64_t seed = 40;
  for (int64_t n : {1, 7, 0, 1023, 4097, 3}) {
    Tensor t = values({n}, -2.0, 2.0, seed++, DType::f32);
    double s = 0;
    for (double v : vals(t)) s += v * v;
    xs.push_back(t);
    expect.push_back(s);
  }
  xs.push_back(values({3, 4}, -1.0, 1.0, seed++, DType::f16).transpose(0, 1));  // non-contiguous, f16
  {
    double s = 0;
    for (double v : vals(xs.back())) s += v * v;
    expect.push_back(s);
  }
  const Tensor ss = native::multi_sum_squares(xs);
  CHECK(ss.dtype() == DType::f32);
  CHECK_VALUES(vals(ss), expect, 1e-3);

  std::vector<std::vector<double>> before;
  for (const Tensor& x : xs) before.push_back(vals(x));
  native::multi_scale_(xs, full({1}, 0.5));
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<double> e = before[i];
    for (double& v : e) v *= 0.5;
    CHECK_VALUES(vals(xs[i]), e, 1e-6);
  }
  std::vector<Tensor> ys;
  for (const Tensor& x : xs) ys.push_back(native::clone(x));
  native::multi_scale_(ys, full({1}, 3.0));
  native::multi_axpby_(ys, xs, 0.5, -2.0);  // ys = 0.5 * 3x - 2x = -0.5x
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<double> e = vals(xs[i]);
    for (double& v : e) v *= -0.5;
    CHECK_VALUES(vals(ys[i]), e, 1e-2);
  }
  CHECK_THROWS_AS(native::multi_axpby_(ys, {xs[0]}, 1.0, 1.0), Error);
}

TEST_CASE("amp kernels on CPU: unscale with inf/nan detection, scale update") {
  Tensor g1 = from_vector<double>({1.0, -2.0, 4.0}, {3}, DType::f32);
  Tensor g2 = from_vector<double>({8.0}, {1}, DType::bf16);
  Tensor found = zeros({1}), inv = full({1}, 0.25);
  native::amp_unscale_({g1, g2}, found, inv);
  CHECK_VALUES(vals(g1), (std::vector<double>{0.25, -0.5, 1.0}), 0.0);
  CHECK_VALUES(vals(g2), (std::vector<double>{2.0}), 0.0);
  CHECK(found.item() == 0.0);
  for (double bad : {INFINITY, -INFINITY, NAN}) {
    Tensor g3 = from_vector<double>({1.0, bad}, {2}, DType::f32);
    Tensor f = zeros({1});
    native::amp_unscale_({g1, g3}, f, inv);
    CHECK(f.item() == 1.0);
  }
  CHECK_THROWS_AS(native::amp_unscale_({g1}, zeros({1}, DType::f64), inv), Error);

  // _amp_update_scale_: interval 3, growth 2, backoff 0.5
  Tensor scale = full({1}, 1024.0), tracker = zeros({1}, DType::i32);
  auto update = [&](bool inf) {
    native::amp_update_scale_(scale, tracker, full({1}, inf ? 1.0 : 0.0), 2.0, 0.5, 3);
    return std::make_pair(scale.item(), tracker.item<int64_t>());
  };
  CHECK(update(false) == std::make_pair(1024.0, int64_t{1}));
  CHECK(update(false) == std::make_pair(1024.0, int64_t{2}));
  CHECK(update(false) == std::make_pair(2048.0, int64_t{0}));
  CHECK(update(false) == std::make_pair(2048.0, int64_t{1}));
  CHECK(update(true) == std::make_pair(1024.0, int64_t{0}));
  CHECK(update(false) == std::make_pair(1024.0, int64_t{1}));
  // never grows into inf
  native::fill_(scale, 3e38);
  native::fill_(tracker, 2.0);
  CHECK(update(false).first == doctest::Approx(3e38).epsilon(1e-6));
  CHECK(tracker.item() == 0.0);
}

TEST_CASE("fused optimizer kernels refuse bad lists") {
  Tensor p = param({1.0, 2.0}, DType::f32);
  CHECK_THROWS_AS(native::sgd_step_({p}, {zeros({3})}, {}, SgdParams{}), Error);  // shape
  CHECK_THROWS_AS(native::sgd_step_({p}, {zeros({2})}, {}, SgdParams{.momentum = 0.9}), Error);  // no buffer
  CHECK_THROWS_AS(native::sgd_step_({p}, {zeros({2}), zeros({2})}, {}, SgdParams{}), Error);  // lengths
  CHECK_THROWS_AS(native::sgd_step_({from_vector<double>({1.0}, {1}, DType::f16)}, {zeros({1}, DType::f16)}, {},
                                    SgdParams{}),
                  Error);  // f16 master weights
  CHECK_THROWS_AS(native::adam_step_({p}, {zeros({2})}, {zeros({2})}, {zeros({2}, DType::f64)}, {}, AdamParams{}),
                  Error);  // state dtype
  // a non-contiguous parameter is updated through a dense copy
  Tensor base = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32);
  Tensor view = base.transpose(0, 1);  // (3, 2)
  native::sgd_step_({view}, {full({3, 2}, 1.0)}, {}, SgdParams{.lr = 0.5});
  CHECK_VALUES(vals(base), (std::vector<double>{0.5, 1.5, 2.5, 3.5, 4.5, 5.5}), 0.0);
}

TEST_CASE("optimizers and clip_grad_norm_ on CUDA match the CPU" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  const Device gpu = Device::cuda(0);
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);
    std::vector<Tensor> pc, pg;
    for (int64_t n : {3, 70000, 1, 257}) {
      Tensor c = values({n}, -1.0, 1.0, 60 + static_cast<uint64_t>(n), DType::f32, true);
      Tensor g = native::to(c, gpu, DType::f32, true);
      g.set_requires_grad(true);
      pc.push_back(c);
      pg.push_back(g);
    }
    auto make = [&](const std::vector<Tensor>& ps) -> std::unique_ptr<optim::Optimizer> {
      if (which == 0) return std::make_unique<SGD>(ps, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true});
      if (which == 1) return std::make_unique<Adam>(ps, AdamOptions{.lr = 1e-2, .amsgrad = true});
      return std::make_unique<AdamW>(ps, AdamWOptions{});
    };
    auto oc = make(pc), og = make(pg);
    for (int k = 0; k < 3; ++k) {
      for (size_t i = 0; i < pc.size(); ++i) {
        const Tensor g = values(pc[i].sizes(), -1.0, 1.0, 70 + static_cast<uint64_t>(k * 10 + i), DType::f32);
        set_grad(pc[i], vals(g));
        Tensor h = pg[i];
        h.set_grad(native::to(g, gpu, DType::f32, true));
      }
      const Tensor nc = optim::clip_grad_norm_(pc, 5.0), ng = optim::clip_grad_norm_(pg, 5.0);
      CHECK(ng.device() == gpu);
      CHECK(ng.item() == doctest::Approx(nc.item()).epsilon(1e-5));
      oc->step();
      og->step();
      for (size_t i = 0; i < pc.size(); ++i) RG_CHECK_CLOSE(native::to(pg[i], kCPU, DType::f32), pc[i], (test::Tol{1e-5, 1e-5}));
    }
  }
}
