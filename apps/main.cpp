// `ringgrad <command> [options]`: dispatches to the subcommands in apps/cmd_*.cpp.
#include <cstdio>
#include <cstring>
#include <exception>

#include "apps/commands.h"
#include "core/error.h"

namespace rg::app {

bool has_flag(const Args& args, const std::string& name) {
  for (const auto& a : args) {
    if (a == name) return true;
  }
  return false;
}

std::string get_opt(const Args& args, const std::string& name, const std::string& fallback) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind(name + "=", 0) == 0) return args[i].substr(name.size() + 1);
  }
  return fallback;
}

}  // namespace rg::app

namespace {
struct Command {
  const char* name;
  int (*fn)(const rg::app::Args&);
  const char* help;
};
const Command kCommands[] = {
    {"info", rg::app::cmd_info, "print devices, CUDA/cuDNN/NCCL versions (honours CUDA_VISIBLE_DEVICES)"},
    {"demo-mlp", rg::app::cmd_demo_mlp, "train a tiny MLP on generated data and print its loss falling"},
    {"launch", rg::app::cmd_launch, "start N ranks of a program with the rendezvous variables (torchrun)"},
    {"make-data", rg::app::cmd_make_data, "write a synthetic dataset (classify: ImageFolder; detect: YOLO + COCO)"},
    {"train-classifier", rg::app::cmd_train_classifier, "train a ResNet classifier on an ImageFolder dataset"},
    {"train-detector", rg::app::cmd_train_detector, "train a darknet YOLO detector on a YOLO data.yaml"},
    {"train", rg::app::cmd_train, "train a model: --task classify|detect (train-classifier, train-detector)"},
    {"val", rg::app::cmd_val, "evaluate a detector: COCO mAP on a data.yaml's val split, predictions as COCO json"},
    {"detect", rg::app::cmd_detect, "run a detector on images: pictures with boxes, YOLO txt files"},
    {"model", rg::app::cmd_model, "darknet cfg: layer table, one forward's raw heads, .weights conversion"},
    {"bench", rg::app::cmd_bench, "built-in benchmarks: dp-vs-ddp (single device vs DataParallel vs DDP)"},
};

void usage() {
  std::printf("usage: ringgrad <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::printf("  %-17s %s\n", c.name, c.help);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  rg::app::Args args(argv + 2, argv + argc);
  for (const auto& c : kCommands) {
    if (std::strcmp(c.name, argv[1]) == 0) {
      try {
        return c.fn(args);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "ringgrad %s: error: %s\n", c.name, e.what());
        return 1;
      }
    }
  }
  std::fprintf(stderr, "ringgrad: unknown command '%s'\n", argv[1]);
  usage();
  return 2;
}
