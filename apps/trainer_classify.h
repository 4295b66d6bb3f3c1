// The image-classification trainer behind `ringgrad train-classifier`: ResNet on an ImageFolder
// dataset, SGD/Adam/AdamW, LR schedules with warmup, label smoothing, AMP (f16 with GradScaler,
// bf16), EMA, per-epoch validation, exact resume from DIR/last.safetensors, and data-parallel
// training (DDP) when started by `ringgrad launch` (Note [Distributed classifier training]).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/json.h"

namespace rg::app {

struct ClassifyConfig {
  std::string data = "data_gen/shapes-classify";  // ImageFolder root with train/ and val/
  bool make_data_if_missing = true;               // generate the synthetic dataset there when absent
  std::string model = "resnet18";                 // resnet18 | resnet34 | resnet50
  bool small_input = false;                       // 3x3 stem, no maxpool (32x32 images)
  int64_t width = 64;                             // planes of layer1 (torchvision: 64)
  int64_t num_classes = 0;                        // 0: the number of class folders
  int64_t img_size = 0;                           // 0: the first training image's size
  int64_t epochs = 10;
  int64_t batch_size = 32;
  double lr = 0.0;                  // 0: by optimizer -- sgd 0.1, adam/adamw 2e-3
  double momentum = 0.9;            // sgd
  double weight_decay = -1.0;       // < 0: by optimizer -- sgd 5e-4, adam 0, adamw 0.01
  std::string optimizer = "adamw";  // sgd | adam | adamw
  std::string scheduler = "cosine"; // cosine | step | multistep | poly | onecycle | none
  std::vector<int64_t> milestones;  // multistep, in epochs (default: 50% and 75% of the run)
  int64_t step_size = 0;            // step, in epochs (default: a third of the run)
  double gamma = 0.1;               // step, multistep
  double warmup_epochs = 0.0;       // linear warmup from lr/10, may be fractional
  double label_smoothing = 0.0;
  bool augment = true;              // RandomCrop(size, padding=size/8) + RandomHorizontalFlip
  std::string device = "cpu";
  std::string amp = "none";         // none | f16 | bf16
  int workers = 2;
  uint64_t seed = 0;
  bool flush_denormal = false;      // FTZ/DAZ on the CPU threads (Note [Flush denormals])
  bool ema = false;
  double ema_decay = 0.999;
  std::string out = "runs/classify";
  std::string resume;               // a checkpoint path, or "" for a fresh run
  // Distributed (apps/trainer_dist.h): on when WORLD_SIZE > 1, or forced by `distributed`.
  bool distributed = false;
  std::string backend;              // "": ring on CPU; nccl on CUDA with a GPU per rank, else ring
  double bucket_cap_mb = 25.0;      // DDP bucket size
  bool find_unused_parameters = false;
  bool sync_bn = false;             // SyncBatchNorm: batch statistics over all ranks
  // Testing aid: stop (as if killed) once this many epochs are done; 0 = never.
  int64_t stop_after_epochs = 0;
  // Testing aid: right after resuming, save the restored state (weights, buffers, optimizer, schedule,
  // scaler, EMA, counters, RNG) to OUT/resumed.safetensors, before any step: it must equal the
  // checkpoint resumed from, tensor for tensor (tests/e2e/test_train_classify.cpp).
  bool save_resumed = false;
  // Output: 0 silent, 1 epoch lines, 2 progress bar as well.
  int verbosity = 2;
  int64_t log_every = 0;            // non-TTY progress line every N steps (0: ~5 per epoch)

  Json to_json() const;
  static ClassifyConfig from_json(const Json& j);  // missing keys keep their defaults
};

struct EpochStats {
  int64_t epoch = 0;  // 1-based, as printed
  double train_loss = 0, train_acc = 0;
  double val_loss = 0, val_acc = 0;
  double ema_val_acc = -1;  // -1 without EMA
  double lr = 0;            // at the end of the epoch
  double seconds = 0, images_per_sec = 0;
  int64_t skipped_steps = 0;  // GradScaler overflow skips so far
};

struct TrainResult {
  std::vector<EpochStats> history;  // the epochs this call ran
  double best_acc = 0;
  int64_t epochs_done = 0;
  int64_t global_step = 0;
  int world_size = 1;  // ranks that trained (1 when not distributed)
  std::string last_path, best_path;
};

// The config with the optimizer-dependent defaults (lr, weight_decay) filled in.
ClassifyConfig resolve_defaults(ClassifyConfig cfg);

// Runs training as configured (resuming when cfg.resume is set); throws rg::Error on bad input.
TrainResult train_classifier(const ClassifyConfig& cfg);

// The checkpoint's stored configuration (metadata "trainer" -> "config"), for --resume.
ClassifyConfig config_from_checkpoint(const std::string& path);

}  // namespace rg::app
