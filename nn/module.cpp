// nn::Module: the registry, traversal with dotted names, state_dict/load_state_dict, to(), clone().
#include "nn/module.h"

#include <algorithm>
#include <sstream>

#include "autograd/grad_mode.h"

namespace rg::nn {

const Tensor* find(const StateDict& sd, const std::string& key) {
  for (const auto& [k, v] : sd) {
    if (k == key) return &v;
  }
  return nullptr;
}

Tensor Module::forward(const Tensor&) {
  RG_THROW(type_name_, " has no single-tensor forward(); call its own forward method");
}

namespace {
template <typename V>
auto lookup(V& v, const std::string& name) -> decltype(&v.front().second) {
  for (auto& entry : v) {
    if (entry.first == name) return &entry.second;
  }
  return nullptr;
}
void check_name(const std::string& type, const std::string& name) {
  RG_CHECK(!name.empty() && name.find('.') == std::string::npos, type, ": invalid attribute name '", name,
           "' (empty or containing '.')");
}
}  // namespace

void Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(type_name_, name);
  RG_CHECK(!lookup(params_, name) && !lookup(buffers_, name), type_name_, ": attribute '", name, "' already exists");
  if (t.defined() && requires_grad) t.set_requires_grad(true);
  params_.emplace_back(name, std::move(t));
}

void Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_name(type_name_, name);
  RG_CHECK(!lookup(params_, name) && !lookup(buffers_, name), type_name_, ": attribute '", name, "' already exists");
  buffers_.emplace_back(name, std::move(t));
  if (!persistent) non_persistent_.push_back(name);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(type_name_, name);
  RG_CHECK(m != nullptr, type_name_, ": submodule '", name, "' is null");
  RG_CHECK(!lookup(children_, name), type_name_, ": submodule '", name, "' already exists");
  children_.emplace_back(name, std::move(m));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  auto* slot = lookup(children_, name);
  RG_CHECK(slot, type_name_, ": no submodule named '", name, "'");
  *slot = std::move(m);
}

void Module::set_parameter(const std::string& name, Tensor t) {
  auto* slot = lookup(params_, name);
  RG_CHECK(slot, type_name_, ": no parameter named '", name, "'");
  *slot = std::move(t);
}

void Module::set_buffer(const std::string& name, Tensor t) {
  auto* slot = lookup(buffers_, name);
  RG_CHECK(slot, type_name_, ": no buffer named '", name, "'");
  *slot = std::move(t);
}

const Tensor& Module::param(const std::string& name) const {
  const auto* slot = lookup(params_, name);
  RG_CHECK(slot, type_name_, ": no parameter named '", name, "'");
  return *slot;
}

bool Module::has_param(const std::string& name) const { return lookup(params_, name) != nullptr; }

const Tensor& Module::buffer(const std::string& name) const {
  const auto* slot = lookup(buffers_, name);
  RG_CHECK(slot, type_name_, ": no buffer named '", name, "'");
  return *slot;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  const auto* slot = lookup(children_, name);
  RG_CHECK(slot, type_name_, ": no submodule named '", name, "'");
  return *slot;
}

void Module::collect(const std::string& prefix, bool params, bool bufs, bool recurse, bool persistent_only,
                     std::vector<std::pair<std::string, Tensor>>* out) const {
  if (params) {
    for (const auto& [k, t] : params_) {
      if (t.defined()) out->emplace_back(prefix + k, t);
    }
  }
  if (bufs) {
    for (const auto& [k, t] : buffers_) {
      if (!t.defined()) continue;
      if (persistent_only && std::find(non_persistent_.begin(), non_persistent_.end(), k) != non_persistent_.end()) {
        continue;
      }
      out->emplace_back(prefix + k, t);
    }
  }
  if (recurse) {
    for (const auto& [k, m] : children_) m->collect(prefix + k + ".", params, bufs, true, persistent_only, out);
  }
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, false, recurse, false, &out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [k, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, true, recurse, false, &out);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [k, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  out.emplace_back(prefix, shared_from_this());
  for (auto& [k, m] : children_) {
    auto sub = m->named_modules(prefix.empty() ? k : prefix + "." + k);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [k, m] : children_) m->apply(fn);
  fn(*this);
}

StateDict Module::state_dict() const {
  StateDict out;
  // PyTorch's order: own parameters, own persistent buffers, then children depth first.
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    m.collect(prefix, true, true, false, true, &out);
    for (const auto& [k, c] : m.children_) walk(*c, prefix + k + ".");
  };
  walk(*this, "");
  return out;
}

void Module::load_state_dict(const StateDict& sd, bool strict) {
  const StateDict mine = state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [k, t] : mine) {
    const Tensor* src = find(sd, k);
    if (!src) {
      missing.push_back(k);
    } else if (src->sizes() != t.sizes()) {
      mismatched.push_back("size mismatch for " + k + ": copying a param with shape " + shape_str(src->sizes()) +
                           " from checkpoint, the shape in current model is " + shape_str(t.sizes()) + ".");
    }
  }
  for (const auto& [k, t] : sd) {
    if (!find(mine, k)) unexpected.push_back(k);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
    return s;
  };
  std::string err;
  if (strict && !missing.empty()) err += "\n\tMissing key(s) in state_dict: " + join(missing) + ".";
  if (strict && !unexpected.empty()) err += "\n\tUnexpected key(s) in state_dict: " + join(unexpected) + ".";
  for (const auto& m : mismatched) err += "\n\t" + m;
  RG_CHECK(err.empty(), "Error(s) in loading state_dict for ", type_name_, ":", err);
  NoGradGuard ng;
  for (const auto& [k, t] : mine) {
    if (const Tensor* src = find(sd, k)) native::copy_(t, *src);
  }
}

void Module::train(bool on) {
  apply([on](Module& m) { m.training_ = on; });
}

namespace {
// Moves a tensor's storage in place, so every handle to it (an optimizer's, a field's) follows.
void move_in_place(const Tensor& t, Device device, DType dtype) {
  if (!t.defined() || (t.device() == device && t.dtype() == dtype)) return;
  const Tensor moved = native::to(t, device, dtype);
  TensorImpl* impl = t.impl();
  impl->storage = moved.storage();
  impl->sizes = moved.sizes();
  impl->strides = moved.strides();
  impl->offset = moved.storage_offset();
  impl->dtype = moved.dtype();
  impl->grad.reset();
  impl->grad_accumulator.reset();  // its recorded metadata names the old device and dtype
}
}  // namespace

Module& Module::to(Device device, DType dtype) {
  NoGradGuard ng;
  for (auto& [k, t] : named_parameters()) move_in_place(t, device, t.is_floating_point() ? dtype : t.dtype());
  for (auto& [k, t] : named_buffers()) move_in_place(t, device, t.is_floating_point() ? dtype : t.dtype());
  return *this;
}

Module& Module::to(Device device) {
  NoGradGuard ng;
  for (auto& [k, t] : named_parameters()) move_in_place(t, device, t.dtype());
  for (auto& [k, t] : named_buffers()) move_in_place(t, device, t.dtype());
  return *this;
}

Module& Module::to(DType dtype) {
  NoGradGuard ng;
  for (auto& [k, t] : named_parameters()) move_in_place(t, t.device(), t.is_floating_point() ? dtype : t.dtype());
  for (auto& [k, t] : named_buffers()) move_in_place(t, t.device(), t.is_floating_point() ? dtype : t.dtype());
  return *this;
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& [k, t] : named_parameters()) {
    if (!t.grad().defined()) continue;
    if (set_to_none) {
      t.set_grad(Tensor());
    } else {
      native::fill_(t.grad(), 0.0);
    }
  }
}

std::shared_ptr<Module> Module::clone(Device device) const {
  NoGradGuard ng;
  std::shared_ptr<Module> copy = shallow_copy();
  for (auto& [k, t] : copy->params_) {
    if (!t.defined()) continue;
    const bool rg = t.requires_grad();
    t = native::to(t, device, t.dtype(), /*force_copy=*/true);
    if (rg) t.set_requires_grad(true);
  }
  for (auto& [k, t] : copy->buffers_) {
    if (t.defined()) t = native::to(t, device, t.dtype(), /*force_copy=*/true);
  }
  for (auto& [k, m] : copy->children_) m = m->clone(device);
  return copy;
}

std::shared_ptr<Module> Module::clone() const {
  const auto ps = named_parameters();
  return clone(ps.empty() ? kCPU : ps.front().second.device());
}

std::string Module::repr(int indent) const {
  // PyTorch's layout: with children, extra_repr goes on its own indented line.
  std::ostringstream os;
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  os << type_name_ << "(";
  if (children_.empty()) {
    os << extra_repr();
  } else {
    os << "\n";
    if (!extra_repr().empty()) os << pad << extra_repr() << "\n";
    for (const auto& [k, m] : children_) os << pad << "(" << k << "): " << m->repr(indent + 2) << "\n";
    os << std::string(static_cast<size_t>(indent), ' ');
  }
  os << ")";
  return os.str();
}

// ---- containers
Sequential::Sequential(std::vector<std::shared_ptr<Module>> mods) : Cloneable("Sequential") {
  for (auto& m : mods) push_back(std::move(m));
}

Sequential& Sequential::push_back(std::shared_ptr<Module> m) {
  add_child(std::to_string(named_children().size()), std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [k, m] : named_children()) h = m->forward(h);
  return h;
}

ModuleList& ModuleList::push_back(std::shared_ptr<Module> m) {
  add_child(std::to_string(named_children().size()), std::move(m));
  return *this;
}

}  // namespace rg::nn
