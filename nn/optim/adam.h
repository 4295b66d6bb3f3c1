// torch.optim.Adam and AdamW with PyTorch's update formulas and defaults (amsgrad, maximize,
// coupled or decoupled weight decay), one fused multi-tensor kernel call per group and step count.
#pragma once

#include <utility>

#include "nn/optim/optimizer.h"

namespace rg::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;  // AdamW's default is 1e-2
  bool amsgrad = false;
  bool maximize = false;
  Json to_json() const;  // {"lr", "betas": [b1, b2], "eps", "weight_decay", "amsgrad", "maximize"}
};

// For each parameter with a gradient g, at step t (counted per parameter, from 1):
//   g = maximize ? -g : g
//   Adam:  g += weight_decay * p          AdamW:  p *= 1 - lr * weight_decay
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   amsgrad: v_max = max(v_max, v), used in place of v below
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// State: "step", "exp_avg", "exp_avg_sq" (+ "max_exp_avg_sq" with amsgrad).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions defaults = {});
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});
  std::string name() const override { return "Adam"; }
  void step() override;

 protected:
  Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled);
  void validate(const ParamGroup& g) const override;

 private:
  bool decoupled_ = false;
};

// AdamW: Adam with decoupled weight decay (default 1e-2).
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 1e-2; }
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions defaults = {});
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
  std::string name() const override { return "AdamW"; }
};

}  // namespace rg::optim
