// Private to the trainer (train/trainer.cpp, train/trainer_state.cpp): the objects a run holds
// and the running training sums of the epoch in progress.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "distributed/data_parallel.h"
#include "distributed/ddp.h"
#include "nn/amp/grad_scaler.h"
#include "nn/checkpoint.h"
#include "nn/optim/ema.h"
#include "nn/optim/lr_scheduler.h"
#include "train/faults.h"
#include "train/optim_setup.h"
#include "train/trainer.h"

namespace rg::train {

// What the ranks agreed on after a step's backward (Note [Step agreement]).
struct StepDecision {
  bool grad_bad = false;  // a gradient is non-finite (the same on every rank after DDP's allreduce)
  bool loss_bad = false;  // some rank's loss is non-finite
  int signal = 0;         // a preemption signal some rank got (the largest number)
  bool save = false;      // rank 0's --save-period-min is due
};

// Sums of the task's running figures over the epoch in progress, kept on the device (0-dim f32)
// and read on the host only when printed, reduced or saved.
struct RunningSums {
  std::vector<Tensor> sums;
  double count = 0;
  void reset(size_t n, Device d);
  void add(const StepLoss& s);
  std::vector<double> host() const;  // the sums, then the count
  void set(const std::vector<double>& v, Device d);
};

struct Trainer::Impl {
  std::shared_ptr<nn::Module> model;        // the model itself: what is saved and evaluated
  std::shared_ptr<dist::DDP> ddp;           // wraps `model` when distributed
  std::shared_ptr<dist::DataParallel> dp;   // wraps `model` with --mode dp over several devices
  std::vector<GroupKind> kinds;             // of the optimizer's parameter groups
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::LRScheduler> sched;
  YoloWarmup warmup;                        // steps = 0 unless --warmup yolo
  std::unique_ptr<amp::GradScaler> scaler;
  std::unique_ptr<optim::ModelEMA> ema;
  std::optional<nn::SafeTensors> ckpt;      // the checkpoint being resumed from
  RunningSums sums;
  std::vector<StepLoss> step_losses;        // the step in progress: added to `sums` once it is taken
  Figures last_val, last_ema_val;           // the latest validation
  double last_fitness = -1;
  std::string csv_header;
  std::vector<std::string> csv_rows;        // results.csv lines after the header

  // Fault tolerance (Note [Step agreement] in train/trainer_step.cpp)
  Tensor one;                               // (1) f32 1 on the device: the fused check's "scale"
  Tensor loss_bad;                          // (1) f32: a micro-batch of this step had a non-finite loss
  StepDecision decision;                    // the latest agreement
  int64_t nan_skips = 0;                    // steps skipped for a non-finite loss or gradient, over the run
  int64_t nan_streak = 0;                   // skipped steps in a row (f16 overflow skips included)
  int64_t steps_since_save = 0;             // optimizer steps since the last checkpoint
  std::chrono::steady_clock::time_point last_save;  // rank 0: when the last checkpoint was written
  std::vector<std::string> epoch_corrupt;   // this rank's replaced samples this epoch ("file: why")
  Json rank_states;                         // every rank's running state, gathered for a mid-epoch save
  double agree_seconds = 0;                 // time in the agreement (collective + host read), for the log
  int64_t agree_count = 0;
  FaultPlan faults;

  nn::Module& net() { return ddp ? static_cast<nn::Module&>(*ddp) : dp ? static_cast<nn::Module&>(*dp) : *model; }
};

// The epoch summary's lines about samples that failed to load (entries "<file>\t<why>").
std::string corrupt_summary(const std::vector<std::string>& corrupt);

// Checkpoint keys that are training state, not model weights (Note [Training state in checkpoints]).
bool is_train_state_key(const std::string& key);
// The checked "trainer" metadata of a checkpoint written for `format`.
Json trainer_meta(const nn::SafeTensors& ck, const std::string& path, const std::string& format);

}  // namespace rg::train
