// Optimizer base (torch.optim.Optimizer): parameter groups with PyTorch's hyper-parameter names,
// per-parameter state, zero_grad, and state_dict/load_state_dict in PyTorch's shape; plus the
// TrainState bundle every stateful training object (optimizer, scheduler, scaler, EMA) saves into.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "nn/checkpoint.h"

namespace rg::nn {

// Note [Training state in checkpoints]
// Optimizers, LR schedulers, GradScaler and ModelEMA each save a TrainState: named tensors plus
// one JSON object of scalars and hyper-parameters. put_train_state() stores it in a safetensors
// checkpoint under a prefix: tensor "k" becomes "<prefix>.k", and the JSON is the metadata string
// "<prefix>" (safetensors metadata values are strings). E.g. with prefix "optimizer":
//   tensors   optimizer.state.0.exp_avg, optimizer.state.0.exp_avg_sq, optimizer.state.3.momentum_buffer
//   metadata  "optimizer": {"type":"Adam","state":{"0":{"step":12}},
//                           "param_groups":[{"lr":0.001,"betas":[0.9,0.999],...,"params":[0,1,2]}]}
// The optimizer's JSON has PyTorch's state_dict() shape, {"state": {idx: {...}}, "param_groups":
// [...]}, with each parameter's tensors moved out to "state.<idx>.<name>" (idx = the parameter's
// position counting through the groups in order, as PyTorch numbers them) and "step" kept as an
// exact integer. Schedulers ("type", "last_epoch", "base_lrs", "_last_lr" and their
// hyper-parameters) and GradScaler ("scale", "growth_factor", "backoff_factor",
// "growth_interval", "_growth_tracker", "skipped_steps") have no tensors; ModelEMA saves the
// averaged model's state_dict as tensors "module.<name>" and {"updates", "decay", "tau"}.
// Numbers are written with 17 significant digits, so every double round-trips exactly.
struct TrainState {
  StateDict tensors;           // keys relative to the owner ("state.3.exp_avg")
  Json meta = Json::object();  // scalars and hyper-parameters
};
void put_train_state(StateDict& tensors, Metadata& metadata, const std::string& prefix, const TrainState& s);
// Throws naming the prefix when the checkpoint has no metadata entry for it.
TrainState get_train_state(const SafeTensors& ckpt, const std::string& prefix);
bool has_train_state(const SafeTensors& ckpt, const std::string& prefix);

}  // namespace rg::nn

namespace rg::optim {

using nn::TrainState;

// A list of parameters with its own hyper-parameters (PyTorch names: "lr", "momentum",
// "weight_decay", "betas", ...). Keys the group does not set take the optimizer's defaults.
struct ParamGroup {
  std::vector<Tensor> params;
  Json options = Json::object();

  ParamGroup() = default;
  ParamGroup(std::vector<Tensor> p, Json opts = Json::object()) : params(std::move(p)), options(std::move(opts)) {}

  double lr() const { return number("lr"); }
  void set_lr(double lr) { set("lr", Json(lr)); }
  bool has(const std::string& key) const { return options.find(key) != nullptr; }
  double number(const std::string& key) const;  // throws naming the key when absent
  bool flag(const std::string& key) const;
  void set(const std::string& key, Json value) { options.set(key, std::move(value)); }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;  // "SGD", "Adam", "AdamW"
  // One update of every parameter that has a gradient (parameters without one are skipped and
  // their state is left alone, as PyTorch does). Runs without recording a graph.
  virtual void step() = 0;
  void zero_grad(bool set_to_none = true);

  void add_param_group(ParamGroup group);
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  const Json& defaults() const { return defaults_; }
  std::vector<Tensor> parameters() const;  // every parameter, in state-dict index order

  // A parameter's state: "step" (optimizers that count steps) and named tensors.
  struct ParamState {
    std::optional<int64_t> step;
    std::vector<std::pair<std::string, Tensor>> tensors;
    bool empty() const { return !step && tensors.empty(); }
    Tensor get(const std::string& name) const;  // undefined when absent
    void put(const std::string& name, Tensor t);
  };
  const ParamState& state(size_t index) const;  // by state-dict index

  // Note [Training state in checkpoints]. The tensors share storage with the live state.
  TrainState state_dict() const;
  // Hyper-parameters and state from `s`: the group count and sizes must match; state tensors are
  // copied to their parameter's device and dtype.
  void load_state_dict(const TrainState& s);

 protected:
  // `defaults` lists every hyper-parameter with its default; groups may not set other keys
  // (a misspelt option fails loudly) except those schedulers add ("initial_lr", ...).
  explicit Optimizer(Json defaults) : defaults_(std::move(defaults)) {}
  // Adds the constructor's groups; derived constructors call it (virtual calls work there).
  void init_groups(std::vector<ParamGroup> groups);
  ParamState& state_at(size_t group, size_t i) { return state_[group][i]; }
  // Checks a group's options (called for every group added): ranges, combinations.
  virtual void validate(const ParamGroup& g) const { (void)g; }

 private:
  Json defaults_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
};

}  // namespace rg::optim
