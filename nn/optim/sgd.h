// torch.optim.SGD: momentum, dampening, Nesterov, weight decay and maximize, with PyTorch's update
// and defaults, one fused multi-tensor kernel call per parameter group (and device/dtype).
#pragma once

#include "nn/optim/optimizer.h"

namespace rg::optim {

// PyTorch's defaults (lr 1e-3 as torch.optim.SGD in PyTorch 2).
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
  Json to_json() const;  // {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}
};

// For each parameter with a gradient g (PyTorch's formula):
//   g = maximize ? -g : g;  g += weight_decay * p
//   with momentum: buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g;
//                  g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
// State: "momentum_buffer" per parameter (when momentum != 0).
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions defaults = {});
  // Groups override any of the defaults' keys ("lr", "weight_decay", ...).
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions defaults = {});
  std::string name() const override { return "SGD"; }
  void step() override;

 protected:
  void validate(const ParamGroup& g) const override;
};

}  // namespace rg::optim
