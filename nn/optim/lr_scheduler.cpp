// LR schedulers: PyTorch's closed forms, applied to the optimizer's groups per step, and their
// state dicts (Note [LR scheduler steps]).
#include "nn/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>

namespace rg::optim {

namespace {

constexpr double kPi = 3.14159265358979323846;

Json doubles_json(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push_back(Json(x));
  return a;
}

std::vector<double> json_doubles(const Json& j) {
  std::vector<double> v;
  for (const Json& x : j.as_array()) v.push_back(x.as_double());
  return v;
}

}  // namespace

// ---- LRScheduler

LRScheduler::LRScheduler(Optimizer& opt) : opt_(opt) {
  for (ParamGroup& g : opt_.param_groups()) {
    if (!g.has("initial_lr")) g.set("initial_lr", Json(g.lr()));
    base_lrs_.push_back(g.number("initial_lr"));
  }
}

void LRScheduler::set_step(int64_t step) {
  RG_CHECK(step >= 0, name(), ": step must be >= 0, got ", step);
  apply(step);  // first: a refused step (one-cycle past its end) changes nothing
  last_epoch_ = step;
  last_lr_.clear();
  for (const ParamGroup& g : opt_.param_groups()) last_lr_.push_back(g.lr());
}

void LRScheduler::apply(int64_t step) {
  auto& groups = opt_.param_groups();
  RG_CHECK(groups.size() == base_lrs_.size(), name(), ": the optimizer has ", groups.size(),
           " parameter groups but the scheduler was made for ", base_lrs_.size());
  for (size_t g = 0; g < groups.size(); ++g) groups[g].set_lr(lr_at(step, g));
}

TrainState LRScheduler::state_dict() const {
  TrainState s;
  s.meta.set("type", Json(name()));
  s.meta.set("last_epoch", Json(last_epoch_));
  s.meta.set("base_lrs", doubles_json(base_lrs_));
  s.meta.set("_last_lr", doubles_json(last_lr_));
  save(s.meta);
  return s;
}

void LRScheduler::load_state_dict(const TrainState& s) {
  const Json& j = s.meta;
  RG_CHECK(j["type"].as_string() == name(), "loading a ", j["type"].as_string(), " state into a ", name());
  std::vector<double> base = json_doubles(j["base_lrs"]);
  RG_CHECK(base.size() == base_lrs_.size(), name(), ": the state has ", base.size(), " base lrs, the optimizer ",
           base_lrs_.size(), " groups");
  load(j);
  base_lrs_ = std::move(base);
  last_lr_ = json_doubles(j["_last_lr"]);
  last_epoch_ = j["last_epoch"].as_int();
}

// ---- StepLR

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  RG_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  initialize();
}

double StepLR::lr_at(int64_t step, size_t group) const {
  return base_lrs()[group] * std::pow(gamma_, static_cast<double>(step / step_size_));
}

void StepLR::save(Json& j) const {
  j.set("step_size", Json(step_size_));
  j.set("gamma", Json(gamma_));
}

void StepLR::load(const Json& j) {
  step_size_ = j["step_size"].as_int();
  gamma_ = j["gamma"].as_double();
}

// ---- MultiStepLR

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(opt), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  initialize();
}

double MultiStepLR::lr_at(int64_t step, size_t group) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), step) - milestones_.begin();
  return base_lrs()[group] * std::pow(gamma_, static_cast<double>(passed));
}

void MultiStepLR::save(Json& j) const {
  Json m = Json::array();
  for (int64_t x : milestones_) m.push_back(Json(x));
  j.set("milestones", m);
  j.set("gamma", Json(gamma_));
}

void MultiStepLR::load(const Json& j) {
  milestones_.clear();
  for (const Json& x : j["milestones"].as_array()) milestones_.push_back(x.as_int());
  gamma_ = j["gamma"].as_double();
}

// ---- CosineAnnealingLR

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min)
    : LRScheduler(opt), t_max_(T_max), eta_min_(eta_min) {
  RG_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got ", T_max);
  initialize();
}

double CosineAnnealingLR::lr_at(int64_t step, size_t group) const {
  const double t = static_cast<double>(step) / static_cast<double>(t_max_);
  return eta_min_ + (base_lrs()[group] - eta_min_) * (1.0 + std::cos(kPi * t)) / 2.0;
}

void CosineAnnealingLR::save(Json& j) const {
  j.set("T_max", Json(t_max_));
  j.set("eta_min", Json(eta_min_));
}

void CosineAnnealingLR::load(const Json& j) {
  t_max_ = j["T_max"].as_int();
  eta_min_ = j["eta_min"].as_double();
}

// ---- PolynomialLR

PolynomialLR::PolynomialLR(Optimizer& opt, int64_t total_iters, double power)
    : LRScheduler(opt), total_iters_(total_iters), power_(power) {
  RG_CHECK(total_iters > 0, "PolynomialLR: total_iters must be positive, got ", total_iters);
  initialize();
}

double PolynomialLR::lr_at(int64_t step, size_t group) const {
  const double t = static_cast<double>(std::min(step, total_iters_)) / static_cast<double>(total_iters_);
  return base_lrs()[group] * std::pow(1.0 - t, power_);
}

void PolynomialLR::save(Json& j) const {
  j.set("total_iters", Json(total_iters_));
  j.set("power", Json(power_));
}

void PolynomialLR::load(const Json& j) {
  total_iters_ = j["total_iters"].as_int();
  power_ = j["power"].as_double();
}

// ---- OneCycleLR

namespace {

// Sets the groups' "initial_lr", "max_lr", "min_lr" (and the momentum keys) before the base
// constructor reads "initial_lr" as the base lr, as PyTorch's OneCycleLR does.
Optimizer& one_cycle_prepare(Optimizer& opt, const std::vector<double>& max_lrs, int64_t total_steps,
                             const OneCycleOptions& o) {
  auto& groups = opt.param_groups();
  RG_CHECK(total_steps > 0, "OneCycleLR: total_steps must be positive, got ", total_steps);
  RG_CHECK(o.pct_start >= 0.0 && o.pct_start <= 1.0, "Expected float between 0 and 1 pct_start, but got ",
           o.pct_start);
  RG_CHECK(max_lrs.size() == 1 || max_lrs.size() == groups.size(), "expected ", groups.size(),
           " values for max_lr, got ", max_lrs.size());
  const bool has_momentum = opt.defaults().find("momentum") != nullptr;
  const bool has_betas = opt.defaults().find("betas") != nullptr;
  RG_CHECK(!o.cycle_momentum || has_momentum || has_betas,
           "optimizer must support momentum or beta1 with `cycle_momentum` option enabled");
  for (size_t g = 0; g < groups.size(); ++g) {
    const double max_lr = max_lrs.size() == 1 ? max_lrs[0] : max_lrs[g];
    const double initial = max_lr / o.div_factor;
    groups[g].set("initial_lr", Json(initial));
    groups[g].set("max_lr", Json(max_lr));
    groups[g].set("min_lr", Json(initial / o.final_div_factor));
    if (o.cycle_momentum) {
      groups[g].set("max_momentum", Json(o.max_momentum));
      groups[g].set("base_momentum", Json(o.base_momentum));
    }
  }
  return opt;
}

}  // namespace

OneCycleLR::OneCycleLR(Optimizer& opt, double max_lr, int64_t total_steps, OneCycleOptions o)
    : OneCycleLR(opt, std::vector<double>{max_lr}, total_steps, o) {}

OneCycleLR::OneCycleLR(Optimizer& opt, std::vector<double> max_lrs, int64_t total_steps, OneCycleOptions o)
    : LRScheduler(one_cycle_prepare(opt, max_lrs, total_steps, o)), total_steps_(total_steps), o_(o) {
  for (const ParamGroup& g : optimizer().param_groups()) {
    initial_lrs_.push_back(g.number("initial_lr"));
    max_lrs_.push_back(g.number("max_lr"));
    min_lrs_.push_back(g.number("min_lr"));
  }
  initialize();
}

std::vector<OneCycleLR::Phase> OneCycleLR::phases() const {
  const double total = static_cast<double>(total_steps_);
  const double up_end = o_.pct_start * total - 1.0;
  if (o_.three_phase) {
    return {{up_end, 0, 1}, {2.0 * o_.pct_start * total - 2.0, 1, 0}, {total - 1.0, 0, 2}};
  }
  return {{up_end, 0, 1}, {total - 1.0, 1, 2}};
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (o_.cos_anneal) return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
  return (end - start) * pct + start;
}

// PyTorch's get_lr: find the phase holding `step` (the last one catches the rest), anneal
// between its end points by the fraction of the phase done.
double OneCycleLR::lr_at(int64_t step, size_t group) const {
  RG_CHECK(step <= total_steps_, "Tried to step ", step, " times. The specified number of total steps is ",
           total_steps_);
  const double s = static_cast<double>(step);
  const std::vector<Phase> ph = phases();
  const double lrs[3] = {initial_lrs_[group], max_lrs_[group], min_lrs_[group]};
  double start_step = 0.0;
  for (size_t i = 0; i < ph.size(); ++i) {
    if (s <= ph[i].end_step || i + 1 == ph.size()) {
      const double pct = (s - start_step) / (ph[i].end_step - start_step);
      return anneal(lrs[ph[i].start], lrs[ph[i].end], pct);
    }
    start_step = ph[i].end_step;
  }
  return lrs[2];
}

double OneCycleLR::momentum_at(int64_t step) const {
  const double s = static_cast<double>(step);
  const std::vector<Phase> ph = phases();
  // The momentum of each lr end point: initial and min lr pair with max_momentum, max lr with base.
  const double mom[3] = {o_.max_momentum, o_.base_momentum, o_.max_momentum};
  double start_step = 0.0;
  for (size_t i = 0; i < ph.size(); ++i) {
    if (s <= ph[i].end_step || i + 1 == ph.size()) {
      const double pct = (s - start_step) / (ph[i].end_step - start_step);
      return anneal(mom[ph[i].start], mom[ph[i].end], pct);
    }
    start_step = ph[i].end_step;
  }
  return o_.max_momentum;
}

void OneCycleLR::apply(int64_t step) {
  LRScheduler::apply(step);
  if (!o_.cycle_momentum) return;
  const double m = momentum_at(step);
  for (ParamGroup& g : optimizer().param_groups()) {
    if (g.has("betas")) {
      Json b = Json::array();
      b.push_back(Json(m));
      b.push_back(g.options["betas"][1]);
      g.set("betas", b);
    } else {
      g.set("momentum", Json(m));
    }
  }
}

void OneCycleLR::save(Json& j) const {
  j.set("total_steps", Json(total_steps_));
  j.set("pct_start", Json(o_.pct_start));
  j.set("anneal_strategy", Json(o_.cos_anneal ? "cos" : "linear"));
  j.set("cycle_momentum", Json(o_.cycle_momentum));
  j.set("base_momentum", Json(o_.base_momentum));
  j.set("max_momentum", Json(o_.max_momentum));
  j.set("div_factor", Json(o_.div_factor));
  j.set("final_div_factor", Json(o_.final_div_factor));
  j.set("three_phase", Json(o_.three_phase));
  j.set("initial_lrs", doubles_json(initial_lrs_));
  j.set("max_lrs", doubles_json(max_lrs_));
  j.set("min_lrs", doubles_json(min_lrs_));
}

void OneCycleLR::load(const Json& j) {
  total_steps_ = j["total_steps"].as_int();
  o_.pct_start = j["pct_start"].as_double();
  o_.cos_anneal = j["anneal_strategy"].as_string() == "cos";
  o_.cycle_momentum = j["cycle_momentum"].as_bool();
  o_.base_momentum = j["base_momentum"].as_double();
  o_.max_momentum = j["max_momentum"].as_double();
  o_.div_factor = j["div_factor"].as_double();
  o_.final_div_factor = j["final_div_factor"].as_double();
  o_.three_phase = j["three_phase"].as_bool();
  initial_lrs_ = json_doubles(j["initial_lrs"]);
  max_lrs_ = json_doubles(j["max_lrs"]);
  min_lrs_ = json_doubles(j["min_lrs"]);
}

// ---- WarmupLR

WarmupLR::WarmupLR(Optimizer& opt, std::unique_ptr<LRScheduler> after, int64_t warmup_steps, WarmupOptions o)
    : LRScheduler(opt), after_(std::move(after)), warmup_steps_(warmup_steps), o_(o) {
  RG_CHECK(after_ != nullptr, "WarmupLR needs the scheduler to run after the warmup");
  RG_CHECK(&after_->optimizer() == &opt, "WarmupLR: the wrapped scheduler drives another optimizer");
  RG_CHECK(warmup_steps >= 0, "WarmupLR: warmup_steps must be >= 0, got ", warmup_steps);
  initialize();
}

double WarmupLR::factor(int64_t step) const {
  if (step >= warmup_steps_) return 1.0;
  const double t = static_cast<double>(step) / static_cast<double>(warmup_steps_);
  if (o_.mode == WarmupMode::Power) return std::pow(t, o_.power);
  return o_.start_factor + (1.0 - o_.start_factor) * t;
}

double WarmupLR::lr_at(int64_t step, size_t group) const { return factor(step) * after_->lr_at(step, group); }

void WarmupLR::apply(int64_t step) {
  after_->set_step(step);  // its side effects (one-cycle momentum) and its own step count
  LRScheduler::apply(step);
}

void WarmupLR::save(Json& j) const {
  j.set("warmup_steps", Json(warmup_steps_));
  j.set("mode", Json(o_.mode == WarmupMode::Power ? "power" : "linear"));
  j.set("start_factor", Json(o_.start_factor));
  j.set("power", Json(o_.power));
  j.set("after", after_->state_dict().meta);
}

void WarmupLR::load(const Json& j) {
  TrainState inner;
  inner.meta = j["after"];
  after_->load_state_dict(inner);
  warmup_steps_ = j["warmup_steps"].as_int();
  o_.mode = j["mode"].as_string() == "power" ? WarmupMode::Power : WarmupMode::Linear;
  o_.start_factor = j["start_factor"].as_double();
  o_.power = j["power"].as_double();
}

}  // namespace rg::optim
