// ModelEMA: an exponential moving average of a model's parameters (YOLOv5's ModelEMA / timm's
// ModelEmaV2 habit), with an optional ramped decay, fused over all parameters, and saved state.
#pragma once

#include <memory>

#include "nn/module.h"
#include "nn/optim/optimizer.h"

namespace rg::optim {

struct EMAOptions {
  double decay = 0.9999;
  // Ramp: the decay at update u is decay * (1 - exp(-u / tau)) (YOLOv5 uses tau 2000), so early
  // averages follow the model closely; tau = 0 keeps the decay constant.
  double tau = 2000.0;
};

// Holds a deep copy of the model (eval mode, no gradients). update(model) after each optimizer
// step: ema_p = d * ema_p + (1 - d) * p for every floating parameter (one fused multi_axpby
// launch per device/dtype), and every buffer (running stats, num_batches_tracked) copied as is.
class ModelEMA {
 public:
  explicit ModelEMA(const nn::Module& model, EMAOptions o = {});
  void update(const nn::Module& model);
  double decay_at(int64_t updates) const;  // the decay the update with this count uses
  int64_t updates() const { return updates_; }
  std::shared_ptr<nn::Module> module() const { return ema_; }

  // Note [Training state in checkpoints]: tensors "module.<name>" (the averaged model's
  // state_dict) and {"updates", "decay", "tau"}.
  TrainState state_dict() const;
  void load_state_dict(const TrainState& s);

 private:
  std::shared_ptr<nn::Module> ema_;
  EMAOptions o_;
  int64_t updates_ = 0;
};

}  // namespace rg::optim
