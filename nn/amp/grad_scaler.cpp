// GradScaler: lazy scale tensors, fused unscale with per-device inf checks, the skip decision and
// the scale update kernel (Note [GradScaler protocol]).
#include "nn/amp/grad_scaler.h"

#include <map>
#include <tuple>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace rg::amp {

GradScaler::GradScaler(GradScalerOptions o) : o_(o) {
  RG_CHECK(o.init_scale > 0.0, "GradScaler: init_scale must be positive, got ", o.init_scale);
  RG_CHECK(o.growth_factor > 1.0, "The growth factor must be > 1.0, got ", o.growth_factor);
  RG_CHECK(o.backoff_factor < 1.0 && o.backoff_factor > 0.0, "The backoff factor must be < 1.0, got ",
           o.backoff_factor);
  RG_CHECK(o.growth_interval > 0, "GradScaler: growth_interval must be positive, got ", o.growth_interval);
}

void GradScaler::lazy_init(Device device) {
  if (scale_.defined()) return;
  scale_ = full({1}, o_.init_scale, TensorOptions(DType::f32).device(device));
  growth_tracker_ = full({1}, static_cast<double>(init_tracker_), TensorOptions(DType::i32).device(device));
}

Tensor GradScaler::scale(const Tensor& loss) {
  if (!o_.enabled) return loss;
  RG_CHECK(loss.defined(), "GradScaler.scale: undefined loss");
  lazy_init(loss.device());
  const Tensor s = native::view(native::to(scale_, loss.device(), DType::f32), {});
  return mul(loss, s);
}

void GradScaler::unscale_(optim::Optimizer& opt) {
  if (!o_.enabled) return;
  PerOptimizer& st = per_opt_[&opt];
  RG_CHECK(st.stage != Stage::Unscaled, "unscale_() has already been called on this optimizer since the last update().");
  RG_CHECK(st.stage != Stage::Stepped, "unscale_() is being called after step().");
  RG_CHECK(scale_.defined(), "Attempted unscale_ but _scale is None.  This may indicate your script did not use "
           "scaler.scale(loss or outputs) earlier in the iteration.");
  NoGradGuard ng;
  const Device home = scale_.device();
  // 1/scale in double, then f32 (as PyTorch).
  const Tensor inv = native::to(native::unary(UnaryOp::Reciprocal, native::to(scale_, home, DType::f64)), home,
                                DType::f32);
  Tensor found = zeros({1}, TensorOptions(DType::f32).device(home));
  unscale_grads_(opt, found, inv);
  if (reducer_) reducer_(found);
  st.found_inf = found;
  st.stage = Stage::Unscaled;
}

bool GradScaler::step(optim::Optimizer& opt) {
  if (!o_.enabled) {
    opt.step();
    return true;
  }
  {
    PerOptimizer& st = per_opt_[&opt];
    RG_CHECK(st.stage != Stage::Stepped, "step() has already been called since the last update().");
    if (st.stage == Stage::Ready) unscale_(opt);
  }
  PerOptimizer& st = per_opt_[&opt];
  const bool skip = st.found_inf.item() != 0.0;  // the host sync
  if (skip) {
    ++skipped_;
  } else {
    opt.step();
  }
  st.stage = Stage::Stepped;
  return !skip;
}

bool GradScaler::step(optim::Optimizer& opt, bool found_inf) {
  if (!o_.enabled) {
    opt.step();
    return true;
  }
  PerOptimizer& st = per_opt_[&opt];
  RG_CHECK(st.stage == Stage::Unscaled, "step(opt, found_inf) needs unscale_(opt) first in this iteration");
  if (found_inf) {
    ++skipped_;
  } else {
    opt.step();
  }
  st.stage = Stage::Stepped;
  return !found_inf;
}

void GradScaler::update() {
  if (!o_.enabled) return;
  RG_CHECK(scale_.defined(), "Attempted update but _scale is None.  This may indicate your script did not use "
           "scaler.scale(loss or outputs) earlier in the iteration.");
  NoGradGuard ng;
  Tensor found;
  for (auto& [opt, st] : per_opt_) {
    if (st.stage == Stage::Ready || !st.found_inf.defined()) continue;
    if (!found.defined()) {
      found = native::clone(st.found_inf);
    } else {
      native::binary_(BinaryOp::Add, found, st.found_inf);
    }
  }
  RG_CHECK(found.defined(), "No inf checks were recorded prior to update.");
  native::amp_update_scale_(scale_, growth_tracker_, found, o_.growth_factor, o_.backoff_factor, o_.growth_interval);
  per_opt_.clear();
}

void GradScaler::update(double new_scale) {
  if (!o_.enabled) return;
  RG_CHECK(scale_.defined(), "Attempted update but _scale is None.");
  native::fill_(scale_, new_scale);
  per_opt_.clear();
}

double GradScaler::get_scale() const {
  if (!o_.enabled) return 1.0;
  return scale_.defined() ? scale_.item() : o_.init_scale;
}

int64_t GradScaler::get_growth_tracker() const {
  if (!o_.enabled) return 0;
  return growth_tracker_.defined() ? growth_tracker_.item<int64_t>() : init_tracker_;
}

optim::TrainState GradScaler::state_dict() const {
  optim::TrainState s;
  if (!o_.enabled) return s;
  s.meta.set("scale", Json(get_scale()));
  s.meta.set("growth_factor", Json(o_.growth_factor));
  s.meta.set("backoff_factor", Json(o_.backoff_factor));
  s.meta.set("growth_interval", Json(o_.growth_interval));
  s.meta.set("_growth_tracker", Json(get_growth_tracker()));
  s.meta.set("skipped_steps", Json(skipped_));
  return s;
}

void GradScaler::load_state_dict(const optim::TrainState& s) {
  if (!o_.enabled) return;
  RG_CHECK(s.meta.is_object() && s.meta.size() > 0, "The source state dict is empty, possibly because it was saved "
           "from a disabled instance of GradScaler.");
  o_.init_scale = s.meta["scale"].as_double();
  o_.growth_factor = s.meta["growth_factor"].as_double();
  o_.backoff_factor = s.meta["backoff_factor"].as_double();
  o_.growth_interval = s.meta["growth_interval"].as_int();
  init_tracker_ = s.meta["_growth_tracker"].as_int();
  if (const Json* k = s.meta.find("skipped_steps")) skipped_ = k->as_int();
  if (scale_.defined()) {
    native::fill_(scale_, o_.init_scale);
    native::fill_(growth_tracker_, static_cast<double>(init_tracker_));
  }
}

void unscale_grads_(const optim::Optimizer& opt, const Tensor& found_inf, const Tensor& inv_scale) {
  NoGradGuard ng;
  const Device home = found_inf.device();
  std::map<std::pair<int, int>, std::vector<Tensor>> by_device;
  for (const Tensor& p : opt.parameters()) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    RG_CHECK(g.dtype() != DType::f16, "Attempting to unscale FP16 gradients.");
    by_device[{static_cast<int>(g.device().type), g.device().index}].push_back(g);
  }
  for (auto& [key, grads] : by_device) {
    const Device dev = grads[0].device();
    const Tensor f = dev == home ? found_inf : zeros({1}, TensorOptions(DType::f32).device(dev));
    native::amp_unscale_(grads, f, dev == home ? inv_scale : native::to(inv_scale, dev, DType::f32));
    if (dev != home) native::binary_(BinaryOp::Add, found_inf, native::to(f, home, DType::f32));
  }
}

}  // namespace rg::amp
