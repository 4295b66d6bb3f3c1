// Learning-rate schedulers (torch.optim.lr_scheduler): step, multistep, cosine, poly and one-cycle,
// and a warmup wrapper (linear, or darknet's burn-in power curve) in front of any of them.
// Every scheduler is a closed form of the step count, stateful and saved (state_dict).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"

namespace rg::optim {

// Note [LR scheduler steps]
// As in PyTorch, constructing a scheduler records each group's "initial_lr" (when absent) as its
// base lr and applies step 0; each step() then advances last_epoch by one and sets every
// group's "lr" to lr_at(last_epoch, group). The caller decides what a step is (an epoch or an
// iteration). lr_at is PyTorch's closed form, so lrs do not drift and set_step(k) jumps straight
// to step k (resuming). Composition: WarmupLR multiplies the schedule it wraps by a warmup factor
// during its first warmup_steps steps; the wrapped schedule sees the same step count (darknet's
// burn-in followed by absolute step milestones).
class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  virtual std::string name() const = 0;  // PyTorch's class name: "StepLR", ...
  void step() { set_step(last_epoch_ + 1); }
  void set_step(int64_t step);            // last_epoch = step, and the groups get its lrs
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // The lr of group `group` at step `step` (>= 0).
  virtual double lr_at(int64_t step, size_t group) const = 0;

  // Note [Training state in checkpoints]: {"type", "last_epoch", "base_lrs", "_last_lr", plus the
  // scheduler's hyper-parameters}. load_state_dict restores them; the optimizer's lrs come from the
  // optimizer's own state, as in PyTorch.
  TrainState state_dict() const;
  void load_state_dict(const TrainState& s);

 protected:
  explicit LRScheduler(Optimizer& opt);
  // Derived constructors call this last: applies step 0.
  void initialize() { set_step(0); }
  // Sets the groups' values for `step` (lr; one-cycle also momentum).
  virtual void apply(int64_t step);
  virtual void save(Json& j) const = 0;
  virtual void load(const Json& j) = 0;
  Optimizer& optimizer() const { return opt_; }

 private:
  friend class WarmupLR;
  Optimizer& opt_;
  std::vector<double> base_lrs_, last_lr_;
  int64_t last_epoch_ = -1;
};

// lr = base * gamma ^ floor(step / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);
  std::string name() const override { return "StepLR"; }
  double lr_at(int64_t step, size_t group) const override;

 protected:
  void save(Json& j) const override;
  void load(const Json& j) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base * gamma ^ (number of milestones <= step)
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma = 0.1);
  std::string name() const override { return "MultiStepLR"; }
  double lr_at(int64_t step, size_t group) const override;

 protected:
  void save(Json& j) const override;
  void load(const Json& j) override;

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

// lr = eta_min + (base - eta_min) (1 + cos(pi step / T_max)) / 2
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min = 0.0);
  std::string name() const override { return "CosineAnnealingLR"; }
  double lr_at(int64_t step, size_t group) const override;

 protected:
  void save(Json& j) const override;
  void load(const Json& j) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// lr = base * (1 - min(step, total_iters) / total_iters) ^ power  (torch's PolynomialLR)
class PolynomialLR : public LRScheduler {
 public:
  PolynomialLR(Optimizer& opt, int64_t total_iters = 5, double power = 1.0);
  std::string name() const override { return "PolynomialLR"; }
  double lr_at(int64_t step, size_t group) const override;

 protected:
  void save(Json& j) const override;
  void load(const Json& j) override;

 private:
  int64_t total_iters_;
  double power_;
};

// torch.optim.lr_scheduler.OneCycleLR: from max_lr/div_factor up to max_lr over the first
// pct_start of total_steps, then down to initial_lr/final_div_factor (three_phase: back to
// initial_lr first, then down), annealing by cosine (or linearly). With cycle_momentum the
// group's "momentum" (or betas[0] for Adam) moves the opposite way between max_momentum and
// base_momentum. Sets each group's "initial_lr", "max_lr", "min_lr" (and momentum keys) as PyTorch.
struct OneCycleOptions {
  double pct_start = 0.3;
  bool cos_anneal = true;  // false: linear
  bool cycle_momentum = true;
  double base_momentum = 0.85, max_momentum = 0.95;
  double div_factor = 25.0, final_div_factor = 1e4;
  bool three_phase = false;
};
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& opt, double max_lr, int64_t total_steps, OneCycleOptions o = {});
  OneCycleLR(Optimizer& opt, std::vector<double> max_lrs, int64_t total_steps, OneCycleOptions o = {});
  std::string name() const override { return "OneCycleLR"; }
  double lr_at(int64_t step, size_t group) const override;
  double momentum_at(int64_t step) const;

 protected:
  void apply(int64_t step) override;
  void save(Json& j) const override;
  void load(const Json& j) override;

 private:
  struct Phase {
    double end_step;
    int start, end;  // 0 initial_lr, 1 max_lr, 2 min_lr (momentum: 0 -> max_m, 1 -> base_m, 2 -> max_m)
  };
  std::vector<Phase> phases() const;
  double anneal(double start, double end, double pct) const;
  int64_t total_steps_;
  OneCycleOptions o_;
  std::vector<double> initial_lrs_, max_lrs_, min_lrs_;
};

enum class WarmupMode {
  Linear,  // factor = start_factor + (1 - start_factor) * step / warmup_steps (torch's LinearLR)
  Power,   // factor = (step / warmup_steps) ^ power: darknet's burn_in with power 4
};
struct WarmupOptions {
  WarmupMode mode = WarmupMode::Linear;
  double start_factor = 1.0 / 3.0;  // Linear (LinearLR's default)
  double power = 4.0;               // Power
};

// Warmup in front of `after` (a scheduler on the same optimizer, constructed first):
// lr = factor(step) * after.lr_at(step) while step < warmup_steps, after.lr_at(step) from then on.
class WarmupLR : public LRScheduler {
 public:
  WarmupLR(Optimizer& opt, std::unique_ptr<LRScheduler> after, int64_t warmup_steps, WarmupOptions o = {});
  std::string name() const override { return "WarmupLR"; }
  double lr_at(int64_t step, size_t group) const override;
  double factor(int64_t step) const;
  LRScheduler& after() const { return *after_; }

 protected:
  void apply(int64_t step) override;
  void save(Json& j) const override;  // the wrapped scheduler's state nests under "after"
  void load(const Json& j) override;

 private:
  std::unique_ptr<LRScheduler> after_;
  int64_t warmup_steps_;
  WarmupOptions o_;
};

}  // namespace rg::optim
