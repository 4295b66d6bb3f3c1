// SGD: parameters with gradients are bucketed by (device, dtype, has momentum buffer) and each
// bucket is one native::sgd_step_ call (a fused multi-tensor kernel).
#include "nn/optim/sgd.h"

#include <map>
#include <tuple>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::optim {

Json SGDOptions::to_json() const {
  Json j = Json::object();
  j.set("lr", Json(lr));
  j.set("momentum", Json(momentum));
  j.set("dampening", Json(dampening));
  j.set("weight_decay", Json(weight_decay));
  j.set("nesterov", Json(nesterov));
  j.set("maximize", Json(maximize));
  return j;
}

SGD::SGD(std::vector<Tensor> params, SGDOptions defaults) : SGD(std::vector<ParamGroup>{ParamGroup(std::move(params))}, defaults) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults) : Optimizer(defaults.to_json()) {
  init_groups(std::move(groups));
}

void SGD::validate(const ParamGroup& g) const {
  RG_CHECK(g.lr() >= 0.0, "Invalid learning rate: ", g.lr());
  RG_CHECK(g.number("momentum") >= 0.0, "Invalid momentum value: ", g.number("momentum"));
  RG_CHECK(g.number("weight_decay") >= 0.0, "Invalid weight_decay value: ", g.number("weight_decay"));
  RG_CHECK(!g.flag("nesterov") || (g.number("momentum") > 0.0 && g.number("dampening") == 0.0),
           "Nesterov momentum requires a momentum and zero dampening");
}

void SGD::step() {
  NoGradGuard ng;
  auto& groups = param_groups();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const ParamGroup& g = groups[gi];
    SgdParams p;
    p.lr = g.lr();
    p.momentum = g.number("momentum");
    p.dampening = g.number("dampening");
    p.weight_decay = g.number("weight_decay");
    p.nesterov = g.flag("nesterov");
    p.maximize = g.flag("maximize");
    const bool use_momentum = p.momentum != 0.0;
    struct Bucket {
      std::vector<Tensor> params, grads, bufs;
    };
    // (device type, device index, dtype, first step)
    std::map<std::tuple<int, int, int, bool>, Bucket> buckets;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& w = g.params[i];
      const Tensor gr = w.grad();
      if (!gr.defined()) continue;
      ParamState& st = state_at(gi, i);
      bool first = false;
      Tensor buf;
      if (use_momentum) {
        buf = st.get("momentum_buffer");
        if (!buf.defined()) {
          buf = empty(w.sizes(), TensorOptions(w.dtype()).device(w.device()));
          st.put("momentum_buffer", buf);
          first = true;
        }
      }
      Bucket& b = buckets[{static_cast<int>(w.device().type), w.device().index, static_cast<int>(w.dtype()), first}];
      b.params.push_back(w);
      b.grads.push_back(gr);
      if (use_momentum) b.bufs.push_back(buf);
    }
    for (auto& [key, b] : buckets) {
      p.first_step = std::get<3>(key);
      native::sgd_step_(b.params, b.grads, b.bufs, p);
    }
  }
}

}  // namespace rg::optim
