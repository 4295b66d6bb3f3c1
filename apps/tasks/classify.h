// The image-classification task behind `ringgrad train-classifier` (also `ringgrad train --task
// classify`): a torchvision ResNet on an ImageFolder dataset, top-1 accuracy as its fitness. The
// loop, AMP, EMA, checkpoints, exact resume and DDP/DP are the training engine's (train/).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "train/options.h"
#include "train/trainer.h"

// The classifier's own options (Note [Options table] in train/options.h).
// clang-format off
#define RG_CLASSIFY_OPTIONS(X) \
  X(data, Text, "data_gen/shapes-classify", ::rg::train::any_value(), Saved, "data", "DIR", \
    "ImageFolder root with train/<class>/* and val/<class>/* (the synthetic shapes set is generated when missing " \
    "at the default location only)") \
  X(img_size, Int, 0, ::rg::train::at_least(0), Saved, "data", "N", "train/eval size (0: the first training image's)") \
  X(augment, Bool, true, ::rg::train::any_value(), Saved, "data", "", \
    "RandomCrop(padding=size/8) + RandomHorizontalFlip in training") \
  X(model, Text, "resnet18", ::rg::train::one_of("resnet18|resnet34|resnet50"), Saved, "model", "NAME", "the ResNet") \
  X(small_input, Bool, false, ::rg::train::any_value(), Saved, "model", "", "3x3 stride-1 stem and no maxpool (32x32 images)") \
  X(width, Int, 64, ::rg::train::at_least(1), Saved, "model", "N", "planes of layer1, doubling per stage (64 = torchvision)") \
  X(num_classes, Int, 0, ::rg::train::at_least(0), Saved, "model", "N", "0: the number of class folders") \
  X(label_smoothing, Real, 0.0, ::rg::train::half_open(0, 1), Saved, "optimisation", "X", "cross-entropy label smoothing")
// clang-format on

namespace rg::app {

RG_DECLARE_OPTIONS(ClassifyOptions, RG_CLASSIFY_OPTIONS);

// The built-in dataset location: the only place the synthetic set is made without --make-data.
inline constexpr const char* kClassifyDataDefault = "data_gen/shapes-classify";

// Every option of `ringgrad train-classifier`: the engine's and the classifier's, with the
// classifier's defaults (adamw; lr by optimizer: sgd 0.1, adam/adamw 2e-3; weight decay: sgd
// 5e-4, adam 0, adamw 0.01; out runs/classify).
struct ClassifyConfig : train::TrainOptions, ClassifyOptions {
  ClassifyConfig();
  train::Options bind();  // both tables, bound to this object
  Json to_json() const;   // the Saved options (the checkpoint's "config")
  // The options stored in a classifier checkpoint (metadata "trainer" -> "config"), for --resume.
  static ClassifyConfig from_checkpoint(const std::string& path);
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

// Runs training as configured (resuming when cfg.resume is set); throws rg::Error on bad input.
TrainResult train_classifier(const ClassifyConfig& cfg, train::TrainerHooks hooks = {});

// The checkpoint's stored configuration, for --resume (ClassifyConfig::from_checkpoint).
ClassifyConfig config_from_checkpoint(const std::string& path);

}  // namespace rg::app
