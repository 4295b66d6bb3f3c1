// ModelEMA: parameters averaged with native::multi_axpby_ (bucketed by device and dtype), buffers
// copied, and the state dict.
#include "nn/optim/ema.h"

#include <cmath>
#include <map>
#include <tuple>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::optim {

ModelEMA::ModelEMA(const nn::Module& model, EMAOptions o) : ema_(model.clone()), o_(o) {
  RG_CHECK(o.decay >= 0.0 && o.decay <= 1.0, "ModelEMA: decay must be in [0, 1], got ", o.decay);
  RG_CHECK(o.tau >= 0.0, "ModelEMA: tau must be >= 0, got ", o.tau);
  ema_->eval();
  for (auto& [k, t] : ema_->named_parameters()) {
    Tensor h = t;
    h.set_requires_grad(false);
  }
}

double ModelEMA::decay_at(int64_t updates) const {
  if (o_.tau == 0.0) return o_.decay;
  return o_.decay * (1.0 - std::exp(-static_cast<double>(updates) / o_.tau));
}

void ModelEMA::update(const nn::Module& model) {
  NoGradGuard ng;
  const auto mine = ema_->named_parameters();
  const auto theirs = model.named_parameters();
  RG_CHECK(mine.size() == theirs.size(), "ModelEMA.update: the model has ", theirs.size(),
           " parameters, the average ", mine.size());
  ++updates_;
  const double d = decay_at(updates_);
  std::map<std::tuple<int, int, int>, std::pair<std::vector<Tensor>, std::vector<Tensor>>> buckets;
  for (size_t i = 0; i < mine.size(); ++i) {
    RG_CHECK(mine[i].first == theirs[i].first, "ModelEMA.update: parameter ", i, " is '", theirs[i].first,
             "' in the model but '", mine[i].first, "' in the average");
    const Tensor& e = mine[i].second;
    if (!e.defined() || !e.is_floating_point()) continue;
    auto& b = buckets[{static_cast<int>(e.device().type), e.device().index, static_cast<int>(e.dtype())}];
    b.first.push_back(e);
    b.second.push_back(theirs[i].second);
  }
  for (auto& [key, b] : buckets) native::multi_axpby_(b.first, b.second, d, 1.0 - d);
  const auto mbuf = ema_->named_buffers();
  const auto tbuf = model.named_buffers();
  RG_CHECK(mbuf.size() == tbuf.size(), "ModelEMA.update: the model has ", tbuf.size(), " buffers, the average ",
           mbuf.size());
  for (size_t i = 0; i < mbuf.size(); ++i) {
    if (mbuf[i].second.defined() && tbuf[i].second.defined()) native::copy_(mbuf[i].second, tbuf[i].second);
  }
}

TrainState ModelEMA::state_dict() const {
  TrainState s;
  for (const auto& [k, t] : ema_->state_dict()) s.tensors.emplace_back("module." + k, t);
  s.meta.set("updates", Json(updates_));
  s.meta.set("decay", Json(o_.decay));
  s.meta.set("tau", Json(o_.tau));
  return s;
}

void ModelEMA::load_state_dict(const TrainState& s) {
  nn::StateDict sd;
  for (const auto& [k, t] : s.tensors) {
    RG_CHECK(k.compare(0, 7, "module.") == 0, "unexpected tensor '", k, "' in ModelEMA state");
    sd.emplace_back(k.substr(7), t);
  }
  ema_->load_state_dict(sd);
  updates_ = s.meta["updates"].as_int();
  o_.decay = s.meta["decay"].as_double();
  o_.tau = s.meta["tau"].as_double();
}

}  // namespace rg::optim
