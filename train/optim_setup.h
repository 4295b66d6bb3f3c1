// The optimizer side of the training engine: parameter groups (weight decay on which tensors),
// the optimizer, the learning-rate schedule with its warmup (Note [Warmup]), all from TrainOptions.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/module.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"
#include "train/options.h"

namespace rg::train {

enum class GroupKind {
  All,         // every parameter, with weight decay (--decay-norm-bias: torchvision's recipes)
  Decay,       // weights of layers other than norms, with weight decay
  NormWeight,  // weights (scales) of norm layers: no weight decay
  Bias,        // every bias: no weight decay (the group YOLO's warmup starts at --warmup-bias-lr)
};
const char* group_kind_name(GroupKind k);

struct ParamGroups {
  std::vector<optim::ParamGroup> groups;
  std::vector<GroupKind> kinds;  // one per group
};

// decay_norm_bias: one group of all model.parameters() in order (so checkpoints number them as
// before). Otherwise YOLO's split, made by walking the modules: a parameter named "bias" goes to
// Bias, the "weight" of a module whose type name contains "Norm" (BatchNorm2d, SyncBatchNorm, ...)
// to NormWeight, every other parameter to Decay; groups come in that order (Decay, NormWeight,
// Bias), empty ones left out; only Decay (or All) carries `weight_decay`, the others 0.
ParamGroups make_param_groups(nn::Module& model, double weight_decay, bool decay_norm_bias);

// SGD (momentum, nesterov), Adam or AdamW (betas = (momentum, 0.999)) over the groups, with
// o.lr and o.weight_decay (both resolved) as defaults.
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, const ParamGroups& groups);

// Warmup length in optimizer steps: round(warmup_epochs x steps_per_epoch).
int64_t warmup_steps(const TrainOptions& o, int64_t steps_per_epoch);

// The schedule of o.scheduler over epochs x steps_per_epoch optimizer steps (epoch-valued
// options converted with steps_per_epoch), stepped once per optimizer step; --warmup linear or
// burnin wraps it in a WarmupLR. --warmup yolo is applied on top by YoloWarmup.
std::unique_ptr<optim::LRScheduler> make_scheduler(const TrainOptions& o, optim::Optimizer& opt,
                                                   int64_t steps_per_epoch);

// Note [Warmup]
// Three kinds, each a closed form of the optimizer step k (so a resumed run lands on the same
// values), over W = warmup_steps() steps:
// - linear (torch's LinearLR with start_factor 0.1): lr_k = sched_k * (0.1 + 0.9 k / W);
// - burnin (darknet's burn_in, power 4): lr_k = sched_k * (k / W)^4;
// - yolo (YOLOv5/ultralytics): for k <= W each group's lr goes linearly from its start value to
//   the scheduled one, lr_k = start + (sched_k - start) k / W, where start is --warmup-bias-lr for
//   the Bias group and 0 for the others, and the momentum (Adam's beta1) goes linearly from
//   --warmup-momentum to --momentum; from W on the schedule alone sets the lr.
// Here sched_k is the wrapped schedule's lr at step k (cosine, step, ...).
struct YoloWarmup {
  int64_t steps = 0;
  double bias_lr = 0.1;
  double momentum_start = 0.8;
  double momentum = 0.937;
  double lr_at(int64_t step, double scheduled_lr, bool bias_group) const;
  double momentum_at(int64_t step) const;
  // Overwrites the groups' lr and momentum for optimizer step `step` when step <= steps (after
  // the scheduler has set this step's lrs); does nothing later.
  void apply(optim::Optimizer& opt, const std::vector<GroupKind>& kinds, int64_t step) const;
};

}  // namespace rg::train
