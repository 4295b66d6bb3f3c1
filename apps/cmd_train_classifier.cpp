// `ringgrad train-classifier` (also `ringgrad train --task classify`): the classification task
// (apps/tasks/classify.h) on the training engine's command line (train/cli.h): options from the
// tables, --resume with the checkpoint's saved options as the base, DDP under `ringgrad launch`,
// one rank per device for a --device list, DataParallel with --mode dp.
#include <cstdio>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "apps/tasks/classify.h"
#include "core/error.h"
#include "train/cli.h"

namespace rg::app {

namespace {
train::CommandSpec classify_command() {
  train::CommandSpec s;
  s.command = "train-classifier";
  s.synopsis =
      "usage: ringgrad train-classifier [options]     (or: ringgrad train --task classify [options])\n\n"
      "Trains a torchvision-style ResNet on an ImageFolder tree; best.safetensors follows the top-1 accuracy.\n"
      "Defaults by optimizer: --lr sgd 0.1, adam/adamw 2e-3; --weight-decay sgd 5e-4, adam 0, adamw 0.01.\n";
  s.notes =
      "distributed: DDP is on when started by `ringgrad launch --nproc-per-node N -- ringgrad train-classifier ...`\n"
      "(or srun/mpirun), or with a --device list (one rank per device, started here); rank 0 prints and writes\n"
      "the checkpoints. --batch-size is per rank: the global batch is N x batch. --device cuda means\n"
      "cuda:LOCAL_RANK. --mode dp with a --device list runs DataParallel in one process (the batch is split).\n";
  s.help_override = {{"batch_size", "images per micro-batch, per rank (the global batch is ranks x this)"}};
  return s;
}
}  // namespace

int cmd_train_classifier(const Args& args) {
  return train::run_command<ClassifyConfig>(classify_command(), args,
                                            [](const ClassifyConfig& cfg) { train_classifier(cfg); });
}

int cmd_train(const Args& args) {
  const std::string task = last_opt(args, "--task", "");
  if (args.empty() || (task.empty() && (has_flag(args, "-h") || has_flag(args, "--help")))) {
    std::printf(
        "usage: ringgrad train --task classify|detect [options]\n"
        "  classify: see ringgrad train-classifier --help\n"
        "  detect:   see ringgrad train-detector --help\n");
    return args.empty() ? 2 : 0;
  }
  RG_CHECK(task == "classify" || task == "detect", "train: --task ",
           task.empty() ? "is required" : "'" + task + "' is not available", " (tasks: classify, detect)");
  return task == "detect" ? cmd_train_detector(args) : cmd_train_classifier(args);
}

}  // namespace rg::app
