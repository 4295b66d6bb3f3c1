// GradScaler (torch.amp.GradScaler): dynamic loss scaling for f16 training with PyTorch's
// constants and protocol: scale(loss).backward(); [unscale_(opt); clip]; step(opt); update().
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "nn/optim/optimizer.h"

namespace rg::amp {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;  // disabled: every method is a pass-through (bf16 needs no scaler)
};

// Note [GradScaler protocol]
// scale(loss) multiplies by the current scale, a (1) f32 device tensor created on the loss's
// device at first use. unscale_(opt) runs once per optimizer per iteration: the fused
// amp_unscale kernel multiplies every gradient by 1/scale and records inf/nan in a found_inf
// flag per device (no sync); the flags are summed on the scale's device, and the found-inf
// reducer, when set, runs on that sum (DDP allreduces it, so every rank takes the same
// decision and keeps the same scale). step(opt) unscales if needed, then reads found_inf on the
// host (the only sync, as in PyTorch) and calls opt.step() unless it is non-zero, in which case
// the step is skipped and counted. update() feeds the sum of this iteration's flags to the
// amp_update_scale kernel: on overflow scale *= backoff_factor and the growth tracker resets,
// otherwise the tracker counts clean steps and after growth_interval of them scale *=
// growth_factor. Calling unscale_ twice, or after step, before update() is an error, as in PyTorch.
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions o = {});

  bool is_enabled() const { return o_.enabled; }
  Tensor scale(const Tensor& loss);
  void unscale_(optim::Optimizer& opt);
  // Returns true when the optimizer stepped, false when the step was skipped (inf/nan gradients).
  bool step(optim::Optimizer& opt);
  // The same, with the (reduced) inf/nan flag the caller already read on the host after its own
  // unscale_(opt) (the training engine reads it with its other per-step flags in one host sync:
  // Note [Step agreement] in train/trainer_step.cpp); no host sync here.
  bool step(optim::Optimizer& opt, bool found_inf);
  void update();
  void update(double new_scale);  // sets the scale directly (as update(new_scale) in PyTorch)

  double get_scale() const;  // host value (a sync); init_scale before the first scale(), 1 when disabled
  int64_t get_growth_tracker() const;
  int64_t skipped_steps() const { return skipped_; }
  Tensor scale_tensor() const { return scale_; }  // (1) f32, undefined before the first scale()

  // Runs on the combined found_inf (a (1) f32 tensor, modified in place) after each unscale_;
  // e.g. DDP: [&pg](Tensor& f) { pg.allreduce(f, ReduceOp::Max); }.
  void set_found_inf_reducer(std::function<void(Tensor&)> reducer) { reducer_ = std::move(reducer); }

  // Note [Training state in checkpoints]: {"scale", "growth_factor", "backoff_factor",
  // "growth_interval", "_growth_tracker", "skipped_steps"} (PyTorch's keys, plus the skip count);
  // an empty object when disabled, as PyTorch.
  optim::TrainState state_dict() const;
  void load_state_dict(const optim::TrainState& s);

 private:
  enum class Stage { Ready, Unscaled, Stepped };
  struct PerOptimizer {
    Stage stage = Stage::Ready;
    Tensor found_inf;  // (1) f32 on the scale's device: the sum of the per-device flags
  };
  void lazy_init(Device device);

  GradScalerOptions o_;
  Tensor scale_;           // (1) f32
  Tensor growth_tracker_;  // (1) i32
  int64_t init_tracker_ = 0;  // the growth tracker's value at lazy init (set by load_state_dict)
  int64_t skipped_ = 0;
  std::function<void(Tensor&)> reducer_;
  std::unordered_map<const optim::Optimizer*, PerOptimizer> per_opt_;
};

// The fused check of Note [GradScaler protocol] on its own: every gradient of `opt`'s parameters
// is multiplied by inv_scale ((1) f32) with the amp_unscale kernel, device by device, and
// found_inf ((1) f32, on inv_scale's device) becomes non-zero when any of them held an inf or a
// nan (it is never cleared). With inv_scale = 1 the gradients keep every bit: the training
// engine's NaN guard without a GradScaler.
void unscale_grads_(const optim::Optimizer& opt, const Tensor& found_inf, const Tensor& inv_scale);

}  // namespace rg::amp
