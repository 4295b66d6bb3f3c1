// What a task gives the training engine (Note [Training tasks]): its model, its data for this
// rank, its loss on its own batch type, an exact evaluation, a fitness, checkpoint metadata and
// end-of-epoch pictures. The trainer (train/trainer.h) owns everything else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "train/dist.h"
#include "train/options.h"

namespace rg::train {

// Note [Training tasks]
// Ultralytics' BaseTrainer shape: the trainer (train/trainer.cpp) owns the loop, the step
// (zero_grad, autocast + GradScaler, accumulation through DDP no_sync, optimizer, scheduler, EMA),
// validation cadence, best tracking, checkpoints and exact resume, progress lines and
// results.csv, devices and DDP/DP; a task (apps/tasks/<name>.cpp) supplies only what differs:
// - info(): its name, checkpoint format, whether --batch-size is global, a nominal batch for
//   accumulation, the names of its running training figures and of its fitness;
// - build_data(ctx): this rank's train loader (which must honour Note [Loader determinism]:
//   batch b of epoch e depends on (seed, e, b) alone, so that a run can restart at any batch) and
//   its unpadded validation shard (make_train_sampler / make_val_sampler do the sharding);
// - build_model(ctx), on the CPU: the engine converts BN to SyncBN (--sync-bn), moves it to the
//   device, loads resumed weights, wraps it in DDP or DataParallel;
// - loss(net, batch, ctx): forward through `net` (the DDP/DP wrapper or the model) and the loss,
//   under the autocast the engine opened; returns the total and the running figures' sums;
// - evaluate(model, val, ctx): on this rank's shard (eval mode, no grad and autocast set by the
//   engine), reduced over the ranks (ctx.dist.sum, ctx.dist.allgather_bytes) so that every rank
//   returns exactly the metrics one process would compute; fitness(metrics) picks best.safetensors;
// - metadata(): what checkpoints carry besides the engine's keys (class names, image size, anchors);
// - on_epoch_end(...): pictures and plots, on rank 0.

// A batch as the engine sees it: the task made it and the task reads it (downcast in loss()).
struct Batch {
  virtual ~Batch() = default;
  virtual int64_t size() const = 0;  // samples in it (for images/s)
};

// This rank's batches of one epoch, in order.
class Loader {
 public:
  virtual ~Loader() = default;
  virtual int64_t num_batches() const = 0;                     // per epoch
  virtual void start_epoch(int64_t epoch, int64_t start_batch) = 0;
  virtual std::unique_ptr<Batch> next() = 0;                   // nullptr at the end of the epoch
  // The samples that failed to load in the batches returned since the last call, each
  // "<file>\t<why>", replaced by other samples (Note [Corrupt samples] in data/dataloader.h).
  virtual std::vector<std::string> take_corrupt() { return {}; }
};

// A named number as printed ("loss 0.4321", "acc 0.870", "mAP50 0.512").
struct Figure {
  std::string name;
  double value = 0;
  int digits = 4;
};
using Figures = std::vector<Figure>;
// The figure called `name`; throws naming it and the figures present.
double figure(const Figures& f, const std::string& name);
// "loss 0.4321 acc 0.870" (separated by `sep`).
std::string format_figures(const Figures& f, const std::string& sep = " ");

struct TaskInfo {
  std::string command;           // "train-classifier": the header and messages
  std::string format;            // the checkpoint's trainer format, e.g. "ringgrad-classify-1"
  bool global_batch = false;     // --batch-size is the global batch, split over the ranks (else per rank)
  int64_t nominal_batch = 0;     // > 0: --accumulate 0 accumulates to this many samples (YOLO: 64)
  std::vector<Figure> terms;     // the running training figures loss() sums (names and digits)
  std::vector<Figure> metrics;   // what evaluate() returns, in this order (names and digits)
  std::string fitness_key = "fitness";  // checkpoints say best_<key>, val_<key> ("acc" for top-1)
  // true: the engine backpropagates loss / (micro-batches in the optimizer step), so N
  // micro-batches step as their mean (torch's accumulation recipe); false: as returned (a loss
  // already summed over the images, as YOLOv5's loss x batch).
  bool mean_over_accumulation = true;
};

// What the engine tells the task about this run.
struct Context {
  const TrainOptions& opts;   // the engine's options, defaults resolved
  const DistContext& dist;    // rank, world, device, process group
  Device device;              // where this process trains (DataParallel: the master device)
  int64_t batch = 0;          // samples per micro-batch in this process
  std::function<void(int level, const std::string&)> log;  // printed on rank 0 at verbosity >= level
};

struct TaskData {
  std::unique_ptr<Loader> train, val;
  int64_t train_size = 0, val_size = 0;  // samples in the whole splits
};

struct StepLoss {
  Tensor loss;               // 0-dim, what the backward runs on
  std::vector<Tensor> sums;  // 0-dim, detached, one per TaskInfo::terms: summed over the epoch
  double count = 0;          // what those sums are divided by when shown (samples, or 1 per batch)
};

// Where the trainer is at the end of an epoch (for pictures).
struct EpochEnd {
  int64_t epoch = 0;              // 1-based
  bool final = false;             // the run's last epoch
  const Figures* metrics = nullptr;  // the evaluated model's (EMA's with --ema); null without validation
  nn::Module* model = nullptr;       // the model the metrics are of (eval mode)
  std::string out;                   // the output directory
};

class Task {
 public:
  virtual ~Task() = default;
  virtual TaskInfo info() const = 0;
  // The task's own options (its table's Saved rows) as JSON, for the checkpoint's "config".
  virtual Json options_json() const = 0;
  // Defaults of options that depend on the optimizer (--lr, --weight-decay).
  virtual double default_lr(const std::string& optimizer) const = 0;
  virtual double default_weight_decay(const std::string& optimizer) const = 0;
  // Checks the task's own options beyond their domains (e.g. a batch norm needs 2 samples).
  virtual void check_options(const TrainOptions& opts) const { (void)opts; }
  // Rank 0 only, before any rank reads the data: make the synthetic set when allowed (data_policy.h).
  virtual void prepare_data(const Context& ctx) { (void)ctx; }
  virtual TaskData build_data(const Context& ctx) = 0;
  // The header's description: "resnet18 width 8, 3 classes, 16x16 images: 603 train / 99 val".
  virtual std::string describe() const = 0;
  virtual std::shared_ptr<nn::Module> build_model(const Context& ctx) = 0;
  virtual StepLoss loss(nn::Module& net, const Batch& batch, const Context& ctx) = 0;
  // Extra text for the progress line about this batch ("targets 37  size 416"); host data only.
  virtual std::string batch_note(const Batch& batch) const { (void)batch; return ""; }
  virtual Figures evaluate(nn::Module& model, Loader& val, const Context& ctx) = 0;
  virtual double fitness(const Figures& metrics) const = 0;
  // Keys merged into the checkpoint's "trainer" metadata.
  virtual Json metadata() const { return Json::object(); }
  virtual void on_epoch_end(const EpochEnd& e, const Context& ctx) { (void)e, (void)ctx; }
};

}  // namespace rg::train
