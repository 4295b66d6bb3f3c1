// Parameter groups, optimizer, schedule and warmup of the training engine (train/optim_setup.h).
#include "train/optim_setup.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"

namespace rg::train {

const char* group_kind_name(GroupKind k) {
  switch (k) {
    case GroupKind::All: return "all";
    case GroupKind::Decay: return "decay";
    case GroupKind::NormWeight: return "norm weights";
    case GroupKind::Bias: return "biases";
  }
  return "?";
}

ParamGroups make_param_groups(nn::Module& model, double weight_decay, bool decay_norm_bias) {
  ParamGroups out;
  if (decay_norm_bias) {
    optim::ParamGroup g(model.parameters());
    g.set("weight_decay", Json(weight_decay));
    out.groups.push_back(std::move(g));
    out.kinds.push_back(GroupKind::All);
    return out;
  }
  std::vector<Tensor> decay, norm, bias;
  std::unordered_set<const TensorImpl*> seen;  // a tensor shared by two modules is listed once
  for (const auto& [name, m] : model.named_modules()) {
    const bool is_norm = m->type_name().find("Norm") != std::string::npos;
    for (const auto& [pname, p] : m->named_parameters(/*recurse=*/false)) {
      if (!seen.insert(p.impl()).second) continue;
      if (pname == "bias") {
        bias.push_back(p);
      } else if (is_norm && pname == "weight") {
        norm.push_back(p);
      } else {
        decay.push_back(p);
      }
    }
  }
  const std::pair<GroupKind, std::vector<Tensor>*> parts[] = {
      {GroupKind::Decay, &decay}, {GroupKind::NormWeight, &norm}, {GroupKind::Bias, &bias}};
  for (const auto& [kind, params] : parts) {
    if (params->empty()) continue;
    optim::ParamGroup g(*params);
    g.set("weight_decay", Json(kind == GroupKind::Decay ? weight_decay : 0.0));
    out.groups.push_back(std::move(g));
    out.kinds.push_back(kind);
  }
  return out;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, const ParamGroups& pg) {
  const double lr = o.lr.value(), wd = o.weight_decay.value();
  if (o.optimizer == "sgd") {
    optim::SGDOptions so;
    so.lr = lr;
    so.momentum = o.momentum;
    so.nesterov = o.nesterov;
    so.weight_decay = wd;
    return std::make_unique<optim::SGD>(pg.groups, so);
  }
  if (o.optimizer == "adam") {
    optim::AdamOptions ao;
    ao.lr = lr;
    ao.betas = {o.momentum, 0.999};
    ao.weight_decay = wd;
    return std::make_unique<optim::Adam>(pg.groups, ao);
  }
  RG_CHECK(o.optimizer == "adamw", "unknown optimizer '", o.optimizer, "'");
  optim::AdamWOptions ao;
  ao.lr = lr;
  ao.betas = {o.momentum, 0.999};
  ao.weight_decay = wd;
  return std::make_unique<optim::AdamW>(pg.groups, ao);
}

int64_t warmup_steps(const TrainOptions& o, int64_t steps_per_epoch) {
  return static_cast<int64_t>(std::llround(o.warmup_epochs * static_cast<double>(steps_per_epoch)));
}

std::unique_ptr<optim::LRScheduler> make_scheduler(const TrainOptions& o, optim::Optimizer& opt, int64_t nb) {
  const int64_t total = o.epochs * nb;
  std::unique_ptr<optim::LRScheduler> s;
  if (o.scheduler == "cosine") {
    s = std::make_unique<optim::CosineAnnealingLR>(opt, total, o.lr.value() * o.lrf);
  } else if (o.scheduler == "step") {
    const int64_t every = o.step_size > 0 ? o.step_size : std::max<int64_t>(1, o.epochs / 3);
    s = std::make_unique<optim::StepLR>(opt, every * nb, o.gamma);
  } else if (o.scheduler == "multistep") {
    std::vector<int64_t> ms = o.milestones;
    if (ms.empty()) ms = {o.epochs / 2, o.epochs * 3 / 4};
    for (int64_t& m : ms) m *= nb;
    s = std::make_unique<optim::MultiStepLR>(opt, ms, o.gamma);
  } else if (o.scheduler == "poly") {
    s = std::make_unique<optim::PolynomialLR>(opt, total, 1.0);
  } else if (o.scheduler == "onecycle") {
    s = std::make_unique<optim::OneCycleLR>(opt, o.lr.value(), total);
  } else {
    s = std::make_unique<optim::MultiStepLR>(opt, std::vector<int64_t>{}, 1.0);  // constant
  }
  const int64_t warm = warmup_steps(o, nb);
  if (warm > 0 && o.warmup != "yolo") {
    optim::WarmupOptions w;
    w.mode = o.warmup == "burnin" ? optim::WarmupMode::Power : optim::WarmupMode::Linear;
    w.start_factor = 0.1;
    w.power = 4.0;
    s = std::make_unique<optim::WarmupLR>(opt, std::move(s), warm, w);
  }
  return s;
}

double YoloWarmup::lr_at(int64_t step, double scheduled_lr, bool bias_group) const {
  const double start = bias_group ? bias_lr : 0.0;
  if (steps <= 0 || step >= steps) return scheduled_lr;
  return start + (scheduled_lr - start) * static_cast<double>(step) / static_cast<double>(steps);
}

double YoloWarmup::momentum_at(int64_t step) const {
  if (steps <= 0 || step >= steps) return momentum;
  return momentum_start + (momentum - momentum_start) * static_cast<double>(step) / static_cast<double>(steps);
}

void YoloWarmup::apply(optim::Optimizer& opt, const std::vector<GroupKind>& kinds, int64_t step) const {
  if (steps <= 0 || step > steps) return;
  auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const bool bias = g < kinds.size() && kinds[g] == GroupKind::Bias;
    groups[g].set_lr(lr_at(step, groups[g].lr(), bias));
    const double m = momentum_at(step);
    if (groups[g].has("betas")) {
      Json b = Json::array();
      b.push_back(m);
      b.push_back(groups[g].options["betas"][1].as_double());
      groups[g].set("betas", b);
    } else if (groups[g].has("momentum")) {
      groups[g].set("momentum", Json(m));
    }
  }
}

}  // namespace rg::train
