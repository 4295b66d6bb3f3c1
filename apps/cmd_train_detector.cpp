// `ringgrad train-detector` (also `ringgrad train --task detect`): the detection task
// (apps/tasks/detect.h) on the training engine's command line (train/cli.h): options from the
// tables, --resume with the checkpoint's saved options as the base, DDP under `ringgrad launch`
// or one rank per device for a --device list, DataParallel with --mode dp.
#include <cstdio>

#include "apps/commands.h"
#include "apps/tasks/detect.h"
#include "train/cli.h"

namespace rg::app {

namespace {
train::CommandSpec detect_command() {
  train::CommandSpec s;
  s.command = "train-detector";
  s.synopsis =
      "usage: ringgrad train-detector [options]     (or: ringgrad train --task detect [options])\n\n"
      "Trains a darknet YOLO (--cfg) on a YOLO data.yaml (--data; default: the synthetic shapes set in\n"
      "data_gen/shapes-detect, generated on first use) with the YOLOv3 PyTorch recipe: SGD lr 0.01, momentum\n"
      "0.937 (Nesterov), weight decay 5e-4 on convolution weights only (scaled with the batch), 3 warmup epochs\n"
      "(biases from lr 0.1, momentum from 0.8), cosine to 0.01 x lr; mosaic, HSV, affine and flip augmentation.\n"
      "--batch-size is the GLOBAL batch, split evenly over the ranks; gradients are accumulated to 64 images per\n"
      "optimizer step (--accumulate 0), and the lr is not scaled for the batch. Each epoch validates: P, R,\n"
      "mAP@0.5 and mAP@[.5:.95] (COCO's, on every image of the val split, exactly the same on any number of\n"
      "ranks); best.safetensors follows the fitness 0.1 mAP@0.5 + 0.9 mAP@[.5:.95].\n"
      "Defaults by optimizer: --lr sgd 0.01, adam/adamw 0.001 (--loss darknet: 0.001); --weight-decay 5e-4.\n";
  s.notes =
      "outputs (rank 0, in --out): last.safetensors and best.safetensors (weights under ultralytics' darknet names\n"
      "module_list.<i>.Conv2d.weight ..., training state, metadata: class names, img, cfg text with its anchors),\n"
      "last.weights (darknet format), results.csv, results.png, PR_curve.png, confusion_matrix.png,\n"
      "train_batch0.jpg, val_batch0_pred.jpg.\n"
      "distributed: --device 0,1,2,3 (or cpu,cpu) starts one DDP rank per device here (--mode dp: DataParallel in\n"
      "one process); `ringgrad launch --nproc-per-node N -- ringgrad train-detector ...`, srun and mpirun work too.\n"
      "Evaluate a checkpoint with `ringgrad val --weights OUT/best.safetensors`; run it on images with\n"
      "`ringgrad detect --weights OUT/best.safetensors --source DIR`.\n";
  s.help_override = {
      {"batch_size", "GLOBAL batch: images per micro-batch over all ranks, split evenly (16 on 4 ranks: 4 each)"},
      {"nesterov", "Nesterov momentum (SGD; on by default as in the recipe, ignored with adam/adamw)"}};
  return s;
}
}  // namespace

int cmd_train_detector(const Args& args) {
  return train::run_command<DetectConfig>(detect_command(), args, [](const DetectConfig& cfg) { train_detector(cfg); });
}

}  // namespace rg::app
