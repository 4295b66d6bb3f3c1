// Optimizer base: groups and defaults, zero_grad, state_dict/load_state_dict, and the TrainState
// checkpoint helpers (Note [Training state in checkpoints]).
#include "nn/optim/optimizer.h"

#include <map>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::nn {

void put_train_state(StateDict& tensors, Metadata& metadata, const std::string& prefix, const TrainState& s) {
  RG_CHECK(!prefix.empty(), "put_train_state: empty prefix");
  for (const auto& [k, v] : metadata) {
    RG_CHECK(k != prefix, "put_train_state: the checkpoint already has an entry '", prefix, "'");
  }
  for (const auto& [k, t] : s.tensors) tensors.emplace_back(prefix + "." + k, t);
  metadata.emplace_back(prefix, s.meta.dump());
}

bool has_train_state(const SafeTensors& ckpt, const std::string& prefix) { return ckpt.meta(prefix) != nullptr; }

TrainState get_train_state(const SafeTensors& ckpt, const std::string& prefix) {
  const std::string* m = ckpt.meta(prefix);
  RG_CHECK(m, "checkpoint has no training state '", prefix, "' (no metadata entry of that name)");
  TrainState s;
  s.meta = Json::parse(*m);
  RG_CHECK(s.meta.is_object(), "training state '", prefix, "' is not a JSON object");
  const std::string dotted = prefix + ".";
  for (const auto& [k, t] : ckpt.tensors) {
    if (k.compare(0, dotted.size(), dotted) == 0) s.tensors.emplace_back(k.substr(dotted.size()), t);
  }
  return s;
}

}  // namespace rg::nn

namespace rg::optim {

double ParamGroup::number(const std::string& key) const {
  const Json* v = options.find(key);
  RG_CHECK(v, "parameter group has no option '", key, "'");
  return v->as_double();
}

bool ParamGroup::flag(const std::string& key) const {
  const Json* v = options.find(key);
  RG_CHECK(v, "parameter group has no option '", key, "'");
  return v->as_bool();
}

Tensor Optimizer::ParamState::get(const std::string& name) const {
  for (const auto& [k, t] : tensors) {
    if (k == name) return t;
  }
  return Tensor();
}

void Optimizer::ParamState::put(const std::string& name, Tensor t) {
  for (auto& [k, v] : tensors) {
    if (k == name) {
      v = std::move(t);
      return;
    }
  }
  tensors.emplace_back(name, std::move(t));
}

namespace {
// Keys a scheduler may add to a group beyond the optimizer's defaults.
bool scheduler_key(const std::string& k) {
  return k == "initial_lr" || k == "max_lr" || k == "min_lr" || k == "base_momentum" || k == "max_momentum";
}
}  // namespace

void Optimizer::init_groups(std::vector<ParamGroup> groups) {
  RG_CHECK(!groups.empty(), name(), ": optimizer got an empty parameter list");
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroup group) {
  RG_CHECK(!group.params.empty(), name(), ": optimizer got an empty parameter list");
  for (const auto& [k, v] : group.options.as_object()) {
    RG_CHECK(defaults_.find(k) != nullptr || scheduler_key(k), name(), ": unknown option '", k,
             "' in a parameter group");
  }
  // Group keys first in the defaults' order (PyTorch's param_group layout), then the others.
  Json opts = Json::object();
  for (const auto& [k, v] : defaults_.as_object()) {
    const Json* given = group.options.find(k);
    opts.set(k, given ? *given : v);
  }
  for (const auto& [k, v] : group.options.as_object()) {
    if (defaults_.find(k) == nullptr) opts.set(k, v);
  }
  group.options = std::move(opts);
  for (const Tensor& p : group.params) {
    RG_CHECK(p.defined(), name(), ": undefined parameter");
    RG_CHECK(p.is_floating_point(), name(), " can only optimize floating point tensors, got ", p.describe());
    RG_CHECK(p.is_leaf(), name(), " can't optimize a non-leaf Tensor");
    for (const auto& g : groups_) {
      for (const Tensor& q : g.params) {
        RG_CHECK(!q.is_same(p), "some parameters appear in more than one parameter group");
      }
    }
  }
  validate(group);
  state_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& g : groups_) {
    for (const Tensor& p : g.params) {
      Tensor gr = p.grad();
      if (!gr.defined()) continue;
      if (set_to_none) {
        Tensor handle = p;  // shares the TensorImpl
        handle.set_grad(Tensor());
      } else {
        native::fill_(gr, 0.0);
      }
    }
  }
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

const Optimizer::ParamState& Optimizer::state(size_t index) const {
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    if (index < groups_[gi].params.size()) return state_[gi][index];
    index -= groups_[gi].params.size();
  }
  RG_THROW(name(), ": parameter index out of range");
}

TrainState Optimizer::state_dict() const {
  TrainState s;
  Json state = Json::object();
  Json groups = Json::array();
  int64_t idx = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    Json g = Json::object();
    for (const auto& [k, v] : groups_[gi].options.as_object()) g.set(k, v);
    Json ids = Json::array();
    for (size_t i = 0; i < groups_[gi].params.size(); ++i, ++idx) {
      ids.push_back(Json(idx));
      const ParamState& ps = state_[gi][i];
      if (ps.empty()) continue;
      Json entry = Json::object();
      if (ps.step) entry.set("step", Json(*ps.step));
      state.set(std::to_string(idx), entry);
      for (const auto& [k, t] : ps.tensors) s.tensors.emplace_back("state." + std::to_string(idx) + "." + k, t);
    }
    g.set("params", ids);
    groups.push_back(g);
  }
  s.meta.set("type", Json(name()));
  s.meta.set("state", state);
  s.meta.set("param_groups", groups);
  return s;
}

void Optimizer::load_state_dict(const TrainState& s) {
  NoGradGuard ng;
  if (const Json* t = s.meta.find("type")) {
    RG_CHECK(t->as_string() == name(), "loading a ", t->as_string(), " state into a ", name(), " optimizer");
  }
  const auto& saved_groups = s.meta["param_groups"].as_array();
  RG_CHECK(saved_groups.size() == groups_.size(), "loaded state dict has a different number of parameter groups (",
           saved_groups.size(), " vs ", groups_.size(), ")");
  // Saved ids map to our parameters by position, group by group (as PyTorch does).
  std::map<int64_t, std::pair<size_t, size_t>> where;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& ids = saved_groups[gi]["params"].as_array();
    RG_CHECK(ids.size() == groups_[gi].params.size(), "loaded state dict contains a parameter group that doesn't "
             "match the size of optimizer's group (group ", gi, ": ", ids.size(), " vs ", groups_[gi].params.size(),
             " parameters)");
    for (size_t i = 0; i < ids.size(); ++i) where[ids[i].as_int()] = {gi, i};
  }
  // Everything is checked before anything changes.
  std::vector<std::vector<ParamState>> state(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) state[gi].resize(groups_[gi].params.size());
  for (const auto& [key, entry] : s.meta["state"].as_object()) {
    const int64_t id = std::stoll(key);
    const auto it = where.find(id);
    RG_CHECK(it != where.end(), "loaded optimizer state has an entry for parameter ", id,
             ", which no parameter group lists");
    ParamState& ps = state[it->second.first][it->second.second];
    if (const Json* st = entry.find("step")) ps.step = st->as_int();
  }
  for (const auto& [key, t] : s.tensors) {
    RG_CHECK(key.compare(0, 6, "state.") == 0, "unexpected tensor '", key, "' in optimizer state");
    const size_t dot = key.find('.', 6);
    RG_CHECK(dot != std::string::npos, "unexpected tensor '", key, "' in optimizer state");
    const int64_t id = std::stoll(key.substr(6, dot - 6));
    const auto it = where.find(id);
    RG_CHECK(it != where.end(), "optimizer state tensor '", key, "' names a parameter no group lists");
    const Tensor& p = groups_[it->second.first].params[it->second.second];
    RG_CHECK(t.sizes() == p.sizes(), "optimizer state tensor '", key, "' has shape ", shape_str(t.sizes()),
             " but its parameter has ", shape_str(p.sizes()));
    const DType dt = is_floating(t.dtype()) ? p.dtype() : t.dtype();
    state[it->second.first][it->second.second].put(key.substr(dot + 1), native::to(t, p.device(), dt, true));
  }
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    Json opts = Json::object();
    for (const auto& [k, v] : saved_groups[gi].as_object()) {
      if (k != "params") opts.set(k, v);
    }
    groups_[gi].options = std::move(opts);
  }
  state_ = std::move(state);
}

}  // namespace rg::optim
