// The options table (Note [Options table]): one X-macro row per option generates the config
// struct's member, its JSON key in checkpoints, its command-line flag, its usage line and its
// domain check, so that an option is written once. The engine's rows are RG_TRAIN_OPTIONS below.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"

namespace rg::train {

// Note [Options table]
// A table is a macro TABLE(X) with one row per option:
//   X(name, Kind, default, domain, Persist, "group", "METAVAR", "help")
// - name: the struct member and the JSON key; the flag is --name with '_' written '-'.
// - Kind: Bool (--name / --no-name), Tri (the same, unset by default: "auto"), Int (int64),
//   Real (double), OptReal (optional double: unset means "chosen by the task"), Text (string; a
//   one_of domain makes it a choice), IntList (comma-separated integers).
// - domain: the values allowed, checked by Options::check() after parsing, after JSON and before
//   training ("Invalid learning rate: -1 (--lr must be >= 0)", PyTorch's wording where it has one).
// - Persist: Saved options are the run's configuration (written into the checkpoint's "config" and
//   restored by --resume); RunOnly ones belong to one invocation (--resume itself, verbosity,
//   --stop-after-epochs) and are never saved, so a resumed run does not inherit them.
// RG_DECLARE_OPTIONS(Struct, TABLE) declares the struct, RG_DEFINE_OPTIONS(Struct, TABLE) (in one
// .cpp) its row descriptions. A command binds the structs it uses into one Options set (the
// engine's TrainOptions and the task's own struct), which parses, prints, saves and checks them.
enum class OptKind { Bool, Tri, Int, Real, OptReal, Text, IntList };
enum class Persist { Saved, RunOnly };

template <OptKind K>
struct OptTypeOf;
template <> struct OptTypeOf<OptKind::Bool> { using type = bool; };
template <> struct OptTypeOf<OptKind::Tri> { using type = std::optional<bool>; };
template <> struct OptTypeOf<OptKind::Int> { using type = int64_t; };
template <> struct OptTypeOf<OptKind::Real> { using type = double; };
template <> struct OptTypeOf<OptKind::OptReal> { using type = std::optional<double>; };
template <> struct OptTypeOf<OptKind::Text> { using type = std::string; };
template <> struct OptTypeOf<OptKind::IntList> { using type = std::vector<int64_t>; };
template <OptKind K>
using OptType = typename OptTypeOf<K>::type;

// The values an option accepts.
struct Domain {
  double lo = -HUGE_VAL, hi = HUGE_VAL;  // numbers (every element of an IntList)
  bool lo_open = false, hi_open = false;
  const char* choices = nullptr;   // Text: "a|b|c"
  const char* what = nullptr;      // PyTorch's name for the value: "learning rate" -> "Invalid learning rate: -1"
  const char* implicit = nullptr;  // Text: the value of the flag given without one (--resume)
};
constexpr Domain any_value() { return Domain{}; }
constexpr Domain at_least(double lo) { return Domain{lo, HUGE_VAL, false, false}; }
constexpr Domain greater_than(double lo) { return Domain{lo, HUGE_VAL, true, false}; }
constexpr Domain between(double lo, double hi) { return Domain{lo, hi, false, false}; }
constexpr Domain half_open(double lo, double hi) { return Domain{lo, hi, false, true}; }  // [lo, hi)
constexpr Domain open_range(double lo, double hi) { return Domain{lo, hi, true, true}; }
constexpr Domain one_of(const char* choices) {
  Domain d;
  d.choices = choices;
  return d;
}
constexpr Domain named(Domain d, const char* what) {
  d.what = what;
  return d;
}
constexpr Domain optional_value(const char* implicit) {
  Domain d;
  d.implicit = implicit;
  return d;
}

// One row of a table, as generated.
struct OptionSpec {
  const char* name;
  OptKind kind;
  Domain domain;
  Persist persist;
  const char* group;
  const char* metavar;
  const char* help;
  void* (*field)(void*);  // the member inside an instance of the table's struct
  std::string flag() const;  // "--img-size" for img_size
};

using Args = std::vector<std::string>;

// Options of one command: table rows bound to the struct instances they fill.
class Options {
 public:
  // Adds `specs`, whose members live in *target (the instance of their struct). Names must be unique.
  void add(const std::vector<OptionSpec>& specs, void* target);

  // One option found on a command line: the row and the text given ("true"/"false" for switches).
  struct Assignment {
    size_t row;
    std::string value;
  };
  // Strict parsing: every argument must be a known flag ("--name value", "--name=value", a switch
  // --name / --no-name, or an optional-value flag given bare); the first unknown one is an error
  // naming it. Values are converted and checked by apply(). The last occurrence of a flag wins.
  std::vector<Assignment> parse(const Args& args, const std::string& command) const;
  // Writes the assignments into the bound structs; a malformed number names the flag and the text.
  void apply(const std::vector<Assignment>& assignments) const;
  // The name of an assignment's option.
  const OptionSpec& spec(const Assignment& a) const { return *rows_[a.row].spec; }

  // Every option's value in its domain, else an error naming the option and the value.
  void check() const;

  // The Saved options as one JSON object (key = name), and back: keys not present keep their
  // values; an unknown key or a value of the wrong type is an error naming it and `source`.
  Json to_json() const;
  void from_json(const Json& j, const std::string& source) const;

  // The usage text: options by group (in `group_order`, then any other group), one line each
  // with its metavar, help and default. `help_override` replaces a row's help (by name).
  std::string usage(const std::vector<std::string>& group_order,
                    const std::vector<std::pair<std::string, std::string>>& help_override = {}) const;

  // A row's current value as text ("0.001", "sgd", "(unset)", "4,8").
  std::string value_text(size_t row) const;
  size_t size() const { return rows_.size(); }
  const OptionSpec& spec_at(size_t row) const { return *rows_[row].spec; }
  // The row of option `name`; throws naming it when absent.
  size_t row_of(const std::string& name) const;

 private:
  struct Row {
    const OptionSpec* spec;
    void* target;
    void* field() const { return spec->field(target); }
  };
  std::vector<Row> rows_;
};

// Formats a double as the shortest text that reads back exactly ("0.1", "-1", "1e-05").
std::string format_number(double v);

}  // namespace rg::train

// ---- generating structs and rows from a table (Note [Options table])
#define RG_OPTION_MEMBER_(name, kind, def, ...) ::rg::train::OptType<::rg::train::OptKind::kind> name = def;
#define RG_OPTION_SPEC_(name, kind, def, dom, persist, group, metavar, help)                                 \
  ::rg::train::OptionSpec{#name,   ::rg::train::OptKind::kind, dom, ::rg::train::Persist::persist, group, \
                          metavar, help, [](void* p) -> void* { return &static_cast<Self*>(p)->name; }},
#define RG_DECLARE_OPTIONS(Struct, TABLE)                       \
  struct Struct {                                               \
    TABLE(RG_OPTION_MEMBER_)                                    \
    static const std::vector<::rg::train::OptionSpec>& specs(); \
  }
#define RG_DEFINE_OPTIONS(Struct, TABLE)                                     \
  const std::vector<::rg::train::OptionSpec>& Struct::specs() {              \
    using Self = Struct;                                                     \
    static const std::vector<::rg::train::OptionSpec> rows = {TABLE(RG_OPTION_SPEC_)}; \
    return rows;                                                             \
  }

// ---- the engine's options, shared by every task (a task adds its own table)
// Groups: "data", "model", "optimisation", "run", "distributed". A task changes the defaults
// it needs in its config's constructor (the usage prints the task's defaults).
// clang-format off
#define RG_TRAIN_OPTIONS(X) \
  X(workers, Int, 2, at_least(0), Saved, "data", "N", "loader threads (0: load in the training thread)") \
  X(strict_data, Bool, false, any_value(), Saved, "data", "", \
    "an image that fails to load is an error naming it (default: replaced by another sample of the rank's shard, " \
    "deterministically, and named in the epoch summary)") \
  X(make_data, Tri, std::nullopt, any_value(), RunOnly, "data", "", \
    "generate the synthetic dataset at --data when it is missing (default: only at the built-in location; --no-make-data: never)") \
  X(epochs, Int, 10, at_least(1), Saved, "optimisation", "N", "epochs to train") \
  X(batch_size, Int, 32, at_least(1), Saved, "optimisation", "N", "samples per micro-batch") \
  X(accumulate, Int, 0, at_least(0), Saved, "optimisation", "N", \
    "micro-batches per optimizer step, gradients summed locally (DDP no_sync); 0: the task's nominal batch, else 1") \
  X(optimizer, Text, "sgd", one_of("sgd|adam|adamw"), Saved, "optimisation", "NAME", "optimizer") \
  X(lr, OptReal, std::nullopt, named(at_least(0), "learning rate"), Saved, "optimisation", "X", \
    "initial learning rate (default: by optimizer, see above)") \
  X(momentum, Real, 0.9, named(half_open(0, 1), "momentum value"), Saved, "optimisation", "X", \
    "SGD momentum; Adam/AdamW beta1") \
  X(nesterov, Bool, false, any_value(), Saved, "optimisation", "", "Nesterov momentum (SGD)") \
  X(weight_decay, OptReal, std::nullopt, named(at_least(0), "weight_decay value"), Saved, "optimisation", "X", \
    "weight decay (default: by optimizer, see above)") \
  X(decay_norm_bias, Bool, true, any_value(), Saved, "optimisation", "", \
    "weight decay on every parameter; --no-decay-norm-bias: not on norm-layer weights nor biases (as YOLO)") \
  X(scheduler, Text, "cosine", one_of("cosine|step|multistep|poly|onecycle|none"), Saved, "optimisation", "NAME", \
    "learning-rate schedule, stepped every optimizer step") \
  X(lrf, Real, 0.0, between(0, 1), Saved, "optimisation", "X", "cosine: the final lr as a fraction of --lr") \
  X(step_size, Int, 0, at_least(0), Saved, "optimisation", "EPOCHS", "step: decay every N epochs (0: a third of the run)") \
  X(milestones, IntList, {}, at_least(0), Saved, "optimisation", "E1,E2", \
    "multistep: decay at these epochs (default: 50% and 75% of the run)") \
  X(gamma, Real, 0.1, greater_than(0), Saved, "optimisation", "X", "step, multistep: decay factor") \
  X(warmup, Text, "linear", one_of("linear|yolo|burnin"), Saved, "optimisation", "KIND", \
    "linear: lr from lr/10; yolo: lr from 0 (biases from --warmup-bias-lr), momentum from --warmup-momentum; " \
    "burnin: darknet's lr*(i/n)^4") \
  X(warmup_epochs, Real, 0.0, at_least(0), Saved, "optimisation", "X", "warmup length in epochs (may be fractional)") \
  X(warmup_bias_lr, Real, 0.1, at_least(0), Saved, "optimisation", "X", "yolo warmup: the biases' starting lr") \
  X(warmup_momentum, Real, 0.8, half_open(0, 1), Saved, "optimisation", "X", "yolo warmup: the starting momentum") \
  X(amp, Text, "none", one_of("none|f16|bf16"), Saved, "optimisation", "KIND", "autocast; f16 uses a GradScaler") \
  X(ema, Bool, false, any_value(), Saved, "optimisation", "", \
    "keep an EMA of the weights; best.safetensors follows its fitness") \
  X(ema_decay, Real, 0.999, open_range(0, 1), Saved, "optimisation", "X", "EMA decay") \
  X(nan_policy, Text, "skip", one_of("skip|stop|off"), Saved, "optimisation", "POLICY", \
    "a non-finite loss or gradient: skip the optimizer step on every rank (stop after --nan-max-skips in a row), " \
    "stop at once (exit 87), or off (no check)") \
  X(nan_max_skips, Int, 10, at_least(1), Saved, "optimisation", "K", \
    "--nan-policy skip: this many skipped steps in a row stop the run (exit 87; f16 overflow skips count too)") \
  X(device, Text, "cpu", any_value(), Saved, "run", "DEV", \
    "cpu | cuda | cuda:N | N,M,... (GPUs; several: one rank each, or DataParallel with --mode dp) | cpu,cpu (CPU ranks)") \
  X(mode, Text, "ddp", one_of("ddp|dp"), Saved, "run", "MODE", \
    "with several devices: ddp starts one rank per device (torchrun-style); dp runs DataParallel in one process") \
  X(seed, Int, 0, between(0, 9.2233720368547748e18), Saved, "run", "N", "seed of the weights, data order and augmentation") \
  X(out, Text, "runs/train", any_value(), Saved, "run", "DIR", "output directory (checkpoints, results.csv)") \
  X(resume, Text, "", optional_value("last"), RunOnly, "run", "[PATH|auto]", \
    "continue from PATH (bare: OUT/last.safetensors; auto: OUT/last.safetensors when it exists, else start fresh) " \
    "with its saved options; options given here override them") \
  X(save_period_steps, Int, 0, at_least(0), Saved, "run", "N", \
    "also write last.safetensors every N optimizer steps inside an epoch (0: off)") \
  X(save_period_min, Real, 30.0, at_least(0), Saved, "run", "M", \
    "also write last.safetensors inside an epoch when M minutes passed since the last save (0: off)") \
  X(val_period, Int, 1, at_least(1), Saved, "run", "N", "validate every N epochs (and after the last)") \
  X(flush_denormal, Bool, false, any_value(), Saved, "run", "", \
    "treat denormal floats as zero on the CPU (torch.set_flush_denormal)") \
  X(log_every, Int, 0, at_least(0), RunOnly, "run", "N", "progress line every N steps when stdout is not a terminal (0: ~5 per epoch)") \
  X(quiet, Bool, false, any_value(), RunOnly, "run", "", "epoch lines only") \
  X(verbosity, Int, 2, between(0, 2), RunOnly, "run", "N", "0 silent, 1 epoch lines, 2 progress bar as well") \
  X(stop_after_epochs, Int, 0, at_least(0), RunOnly, "run", "N", "testing aid: stop as if killed after N epochs (0: never)") \
  X(detect_anomaly, Bool, false, any_value(), RunOnly, "run", "", \
    "autograd anomaly mode: the backward names the first op that produced a non-finite gradient and where its " \
    "forward was called (slow: for debugging)") \
  X(save_resumed, Bool, false, any_value(), RunOnly, "run", "", \
    "testing aid: after resuming, save the restored state to OUT/resumed.safetensors before any step") \
  X(task, Text, "", any_value(), RunOnly, "run", "NAME", "the task (`ringgrad train --task NAME`)") \
  X(distributed, Bool, false, any_value(), RunOnly, "distributed", "", "use DDP even for a world of 1") \
  X(backend, Text, "auto", one_of("auto|ring|nccl"), RunOnly, "distributed", "NAME", \
    "auto: ring on CPU; on CUDA nccl when every rank has its own GPU, else ring") \
  X(bucket_cap_mb, Real, 25.0, greater_than(0), Saved, "distributed", "X", "DDP gradient bucket size in MiB") \
  X(find_unused_parameters, Bool, false, any_value(), Saved, "distributed", "", "DDP: parameters without a gradient are allowed") \
  X(sync_bn, Bool, false, any_value(), Saved, "distributed", "", "SyncBatchNorm: batch statistics over all ranks (DDP)")
// clang-format on

namespace rg::train {
RG_DECLARE_OPTIONS(TrainOptions, RG_TRAIN_OPTIONS);
}  // namespace rg::train
