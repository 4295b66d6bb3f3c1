// Private to the trainer (train/trainer.cpp, train/trainer_state.cpp): the objects a run holds
// and the running training sums of the epoch in progress.
#pragma once

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
#include "train/optim_setup.h"
#include "train/trainer.h"

namespace rg::train {

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
  Figures last_val, last_ema_val;           // the latest validation
  double last_fitness = -1;
  std::string csv_header;
  std::vector<std::string> csv_rows;        // results.csv lines after the header

  nn::Module& net() { return ddp ? static_cast<nn::Module&>(*ddp) : dp ? static_cast<nn::Module&>(*dp) : *model; }
};

// Checkpoint keys that are training state, not model weights (Note [Training state in checkpoints]).
bool is_train_state_key(const std::string& key);
// The checked "trainer" metadata of a checkpoint written for `format`.
Json trainer_meta(const nn::SafeTensors& ck, const std::string& path, const std::string& format);

}  // namespace rg::train
