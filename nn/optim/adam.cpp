// Adam / AdamW: parameters with gradients are bucketed by (device, dtype, step count) and each
// bucket is one native::adam_step_ call (a fused multi-tensor kernel).
#include "nn/optim/adam.h"

#include <map>
#include <tuple>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::optim {

Json AdamOptions::to_json() const {
  Json j = Json::object();
  j.set("lr", Json(lr));
  Json b = Json::array();
  b.push_back(Json(betas.first));
  b.push_back(Json(betas.second));
  j.set("betas", b);
  j.set("eps", Json(eps));
  j.set("weight_decay", Json(weight_decay));
  j.set("amsgrad", Json(amsgrad));
  j.set("maximize", Json(maximize));
  return j;
}

Adam::Adam(std::vector<Tensor> params, AdamOptions defaults)
    : Adam(std::vector<ParamGroup>{ParamGroup(std::move(params))}, defaults, false) {}
Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults) : Adam(std::move(groups), defaults, false) {}
Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled)
    : Optimizer(defaults.to_json()), decoupled_(decoupled) {
  init_groups(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions defaults)
    : Adam(std::vector<ParamGroup>{ParamGroup(std::move(params))}, defaults, true) {}
AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults) : Adam(std::move(groups), defaults, true) {}

void Adam::validate(const ParamGroup& g) const {
  RG_CHECK(g.lr() >= 0.0, "Invalid learning rate: ", g.lr());
  RG_CHECK(g.number("eps") >= 0.0, "Invalid epsilon value: ", g.number("eps"));
  const Json& betas = g.options["betas"];
  RG_CHECK(betas.is_array() && betas.size() == 2, "betas must be a pair [beta1, beta2]");
  for (size_t k = 0; k < 2; ++k) {
    const double b = betas[k].as_double();
    RG_CHECK(b >= 0.0 && b < 1.0, "Invalid beta parameter at index ", k, ": ", b);
  }
  RG_CHECK(g.number("weight_decay") >= 0.0, "Invalid weight_decay value: ", g.number("weight_decay"));
}

void Adam::step() {
  NoGradGuard ng;
  auto& groups = param_groups();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const ParamGroup& g = groups[gi];
    AdamParams p;
    p.lr = g.lr();
    p.beta1 = g.options["betas"][0].as_double();
    p.beta2 = g.options["betas"][1].as_double();
    p.eps = g.number("eps");
    p.weight_decay = g.number("weight_decay");
    p.decoupled = decoupled_;
    p.amsgrad = g.flag("amsgrad");
    p.maximize = g.flag("maximize");
    struct Bucket {
      std::vector<Tensor> params, grads, m, v, vmax;
    };
    std::map<std::tuple<int, int, int, int64_t>, Bucket> buckets;  // (device type, index, dtype, step)
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& w = g.params[i];
      const Tensor gr = w.grad();
      if (!gr.defined()) continue;
      ParamState& st = state_at(gi, i);
      if (st.empty()) {  // lazy state initialisation, as PyTorch
        st.step = 0;
        st.put("exp_avg", zeros_like(w));
        st.put("exp_avg_sq", zeros_like(w));
      }
      if (p.amsgrad && !st.get("max_exp_avg_sq").defined()) st.put("max_exp_avg_sq", zeros_like(w));
      st.step = st.step.value_or(0) + 1;
      Bucket& b = buckets[{static_cast<int>(w.device().type), w.device().index, static_cast<int>(w.dtype()), *st.step}];
      b.params.push_back(w);
      b.grads.push_back(gr);
      b.m.push_back(st.get("exp_avg"));
      b.v.push_back(st.get("exp_avg_sq"));
      if (p.amsgrad) b.vmax.push_back(st.get("max_exp_avg_sq"));
    }
    for (auto& [key, b] : buckets) {
      p.step = std::get<3>(key);
      native::adam_step_(b.params, b.grads, b.m, b.v, b.vmax, p);
    }
  }
}

}  // namespace rg::optim
