// The training engine's trainer: one loop for every task (Note [Training tasks] in train/task.h).
// It plans the devices, sets up DDP or DataParallel, runs the epochs and the step (zero_grad,
// autocast + GradScaler, accumulation through DDP no_sync, optimizer, scheduler with warmup, EMA),
// validates, tracks the best fitness, writes checkpoints and results.csv, and resumes exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/faults.h"
#include "train/options.h"
#include "train/task.h"

namespace rg::dist {
class DistributedDataParallel;
}

namespace rg::train {

// One epoch as reported (and written to results.csv).
struct EpochRecord {
  int64_t epoch = 0;       // 1-based
  Figures train;           // the epoch's running figures (TaskInfo::terms), over all ranks
  Figures val;             // the model's validation metrics (empty when this epoch did not validate)
  Figures ema_val;         // the EMA's (with --ema)
  bool validated = false;
  double fitness = -1;     // what best tracking compared: the EMA's with --ema (the latest one)
  bool improved = false;
  double lr = 0;           // parameter group 0's, at the end of the epoch
  double seconds = 0, images_per_sec = 0;
  int64_t skipped_steps = 0;  // GradScaler overflow skips so far
  int64_t nan_skips = 0;      // steps the NaN guard skipped so far (non-finite loss or gradients)
  std::vector<std::string> corrupt;  // samples that failed to load this epoch, all ranks ("file: why")
};

struct RunResult {
  std::vector<EpochRecord> history;  // the epochs this call ran
  double best_fitness = -1;
  int64_t epochs_done = 0;           // completed epochs of the run
  int64_t global_step = 0;           // batches done over the run
  int world_size = 1;                // ranks that trained (1 when not distributed)
  std::string last_path, best_path;
  int stop_code = 0;         // Note [Stopping a run]: 0, or the exit code train() throws RunStopped with
  std::string stop_message;
};

// Note [Loop state]
// Where the loop is, in the trainer metadata of every checkpoint, so that a checkpoint can be
// taken after any optimizer step, mid-epoch included, and resumed exactly: `epoch` (completed
// epochs = the 0-based epoch in progress), `batch` (batches of it done: the loader restarts there),
// `global_step` (= epoch x batches per epoch + batch), the best fitness, the epoch's running
// training sums so far, the default generator's (seed, offset), and the sampler's position
// ("sampler": epoch, start_batch, seed, world size, batch). Optimizer steps end at multiples of
// --accumulate within an epoch (and at its last batch), so `batch` is always at a step boundary.
struct LoopState {
  int64_t epoch = 0;
  int64_t batch = 0;
  int64_t global_step = 0;
  double best_fitness = -1;
};

class Trainer;
struct StepDecision;
// The places the fault-tolerance work plugs into (issue 12): each runs on every rank.
struct TrainerHooks {
  // After every optimizer step (no gradient pending; state() is a valid resume point): mid-epoch
  // checkpoints (save_checkpoint), preemption. Returning false ends the run there, unvalidated,
  // on this rank: every rank must decide alike (e.g. after agreeing through a collective).
  std::function<bool(Trainer&)> after_step;
  // After the backward of the step's last micro-batch, before the optimizer: returning false
  // skips this optimizer step (the scheduler still advances): a NaN/Inf guard, which must decide
  // alike on every rank.
  std::function<bool(Trainer&)> before_optimizer_step;
  // Testing aid: faults to inject, as RINGGRAD_FAULT (Note [Fault injection] in train/faults.h).
  std::string faults;
};

class Trainer {
 public:
  // `opts` are the engine's options (defaults resolved by train()); the task holds its own.
  Trainer(const TrainOptions& opts, Task& task, const DevicePlan& plan, DistContext& dist, TrainerHooks hooks);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  RunResult run();

  const LoopState& state() const { return st_; }
  const TrainOptions& options() const { return o_; }
  const DistContext& dist() const { return dist_; }
  int64_t batches_per_epoch() const { return nb_; }
  int64_t accumulate() const { return accumulate_; }
  // The DDP wrapper when distributed (its stats, e.g. synchronised backwards), else null.
  dist::DistributedDataParallel* ddp() const;
  // The model itself (unwrapped): what checkpoints hold.
  nn::Module& model() const;
  // Writes a checkpoint of the current state (Note [Loop state]) to `path`, atomically. Call on
  // rank 0 only, between steps.
  void save_checkpoint(const std::string& path) const;

 private:
  struct Impl;
  void setup_data();
  void setup_model();
  void setup_optimizer();
  void resume();
  void print_header() const;
  bool train_epoch(EpochRecord& rec);  // false: a hook, a signal or the NaN guard stopped the run
  void micro_step(const Batch& b, bool sync, int64_t window);
  void inject_faults();                 // Note [Fault injection]
  void optimizer_step();                // and the step's agreement (Note [Step agreement])
  StepDecision agree(const Tensor* grad_found);
  void check_grads_and_loss(Tensor* grad_found);
  bool after_step();                    // saves and stops; false: stop the run here
  void save_mid_epoch();                // every rank; rank 0 writes last.safetensors
  void stop(int code, const std::string& why);
  bool stop_at_epoch_end();             // a signal seen at the epoch's end, agreed by every rank
  void gather_corrupt(EpochRecord& rec);
  void end_epoch(EpochRecord& rec);
  Figures evaluate(nn::Module& m);
  std::string progress_stats(const Batch* last) const;
  void write_results(const EpochRecord& rec);
  void log(int level, const std::string& s) const;

  TrainOptions o_;
  Task& task_;
  TaskInfo info_;
  DevicePlan plan_;
  DistContext& dist_;
  TrainerHooks hooks_;
  std::unique_ptr<Context> ctx_;
  TaskData data_;
  int64_t nb_ = 0, accumulate_ = 1, steps_per_epoch_ = 0;
  double weight_decay_ = 0;  // the effective one (nominal-batch scaling included)
  LoopState st_;
  int stop_code_ = 0;
  std::string stop_message_;
  std::unique_ptr<Impl> impl_;  // model, wrappers, optimizer, schedule, scaler, EMA, running sums
};

// The whole run of `task` with `opts`: resolves the optimizer-dependent defaults (the task's),
// checks every option's domain and the task's own checks, plans the devices (a plan that starts
// one rank per device is refused here: the command line does that, run_command), initialises the
// process group, trains and shuts the group down. Throws rg::Error on bad input, and RunStopped
// (train/faults.h) after a run stopped by a signal or the NaN guard (Note [Stopping a run]).
RunResult train(const TrainOptions& opts, Task& task, TrainerHooks hooks = {});

// opts with --lr and --weight-decay filled in from the task when unset.
TrainOptions resolve_defaults(TrainOptions opts, const Task& task);
// Domain checks of the engine's options and the cross-checks between them (e.g. --sync-bn needs
// DDP, --warmup yolo does not combine with onecycle's momentum).
void check_options(const TrainOptions& opts);

}  // namespace rg::train
