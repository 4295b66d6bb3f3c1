// nn::Module: parameters, buffers and submodules with PyTorch's dotted names, state_dict and
// load_state_dict, train/eval, to(device/dtype), and clone() for replication (DataParallel).
// Modules reach their tensors and children through the registry: Note [Module registry].
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "core/tensor.h"

namespace rg::nn {

// An ordered name -> tensor list; order is PyTorch's: a module's own parameters, then its own
// buffers, then each child's entries, recursively.
using StateDict = std::vector<std::pair<std::string, Tensor>>;
const Tensor* find(const StateDict& sd, const std::string& key);

class Module : public std::enable_shared_from_this<Module> {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;

  // Single-tensor forward (most layers). Modules with other signatures add their own methods.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const std::string& type_name() const { return type_name_; }
  // A one-line description of the module's configuration, as PyTorch's extra_repr.
  virtual std::string extra_repr() const { return ""; }
  std::string repr(int indent = 0) const;  // the nested tree, as print(model)

  // ---- registration
  void register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  void register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Replaces a registered submodule (convert_sync_batchnorm swaps BatchNorm for SyncBatchNorm).
  void replace_module(const std::string& name, std::shared_ptr<Module> m);
  // Replaces a parameter's tensor (DataParallel binds a replica to broadcast copies this way).
  void set_parameter(const std::string& name, Tensor t);
  void set_buffer(const std::string& name, Tensor t);

  // ---- access by name (throws naming the module type and the missing name)
  const Tensor& param(const std::string& name) const;
  const Tensor& buffer(const std::string& name) const;
  bool has_param(const std::string& name) const;
  std::shared_ptr<Module> child(const std::string& name) const;
  template <typename M>
  std::shared_ptr<M> child_as(const std::string& name) const {
    auto m = std::dynamic_pointer_cast<M>(child(name));
    RG_CHECK(m, type_name_, ": child '", name, "' is a ", child(name)->type_name(), ", not the expected type");
    return m;
  }

  // ---- traversal
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules(const std::string& prefix = "");
  void apply(const std::function<void(Module&)>& fn);

  // ---- state
  StateDict state_dict() const;  // persistent buffers only; tensors share storage with the module
  // Copies values in (no autograd). strict: every key must match both ways; shapes must match.
  // Errors list all missing keys, unexpected keys and shape mismatches at once, as PyTorch does.
  void load_state_dict(const StateDict& sd, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter and buffer in place (every handle to them sees the change); to(dtype)
  // converts floating point tensors only, as PyTorch does.
  Module& to(Device device);
  Module& to(DType dtype);
  Module& to(Device device, DType dtype);
  void zero_grad(bool set_to_none = true);

  // A deep copy: the configuration copied, new parameters and buffers with the same values
  // (leaves, same requires_grad), children cloned recursively. Optionally onto another device.
  std::shared_ptr<Module> clone() const;
  std::shared_ptr<Module> clone(Device device) const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  // A copy of this object's configuration (Cloneable<T> copy-constructs the derived type).
  virtual std::shared_ptr<Module> shallow_copy() const = 0;

  bool training_ = true;

 private:
  friend class ModuleTestAccess;
  void collect(const std::string& prefix, bool params, bool bufs, bool recurse, bool persistent_only,
               std::vector<std::pair<std::string, Tensor>>* out) const;

  std::string type_name_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::string> non_persistent_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Note [Module registry]
// A module keeps no Tensor or child-module fields of its own: it registers them and reads them
// back by name (param("weight"), child_as<Conv2d>("conv1")). The registry is then the single
// source of truth, so clone() is generic (copy the configuration by copy-constructing, then
// deep-copy the registry), DataParallel can bind a replica's parameters to broadcast copies with
// set_parameter(), and convert_sync_batchnorm can swap a child with replace_module(). A lookup
// is a short linear scan over a handful of names, negligible next to a kernel launch.
// Concrete modules derive from Cloneable<T>, which supplies shallow_copy().
template <typename Derived>
class Cloneable : public Module {
 public:
  using Module::Module;

 protected:
  std::shared_ptr<Module> shallow_copy() const override {
    return std::make_shared<Derived>(static_cast<const Derived&>(*this));
  }
};

// Sequential: children "0", "1", ... applied in order.
class Sequential : public Cloneable<Sequential> {
 public:
  Sequential() : Cloneable("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> mods);
  Sequential& push_back(std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return named_children().size(); }
  std::shared_ptr<Module> operator[](size_t i) const { return named_children()[i].second; }
};

// ModuleList: children "0", "1", ... without a forward of its own.
class ModuleList : public Cloneable<ModuleList> {
 public:
  ModuleList() : Cloneable("ModuleList") {}
  ModuleList& push_back(std::shared_ptr<Module> m);
  size_t size() const { return named_children().size(); }
  std::shared_ptr<Module> operator[](size_t i) const { return named_children()[i].second; }
};

}  // namespace rg::nn
