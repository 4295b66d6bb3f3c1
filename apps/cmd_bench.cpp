// `ringgrad bench <name>`: built-in benchmarks. dp-vs-ddp compares a single device, DataParallel
// and DistributedDataParallel (apps/bench_dp_ddp*.cpp, Note [dp-vs-ddp benchmark]).
#include <cstdio>
#include <string>
#include <vector>

#include "apps/arg_utils.h"
#include "apps/bench_dp_ddp.h"
#include "apps/commands.h"
#include "core/error.h"

namespace rg::app {

namespace {

void bench_usage() {
  std::printf(
      "usage: ringgrad bench <benchmark> [options]\n\n"
      "benchmarks:\n"
      "  dp-vs-ddp   images/s, phase times, communication overlap and memory of a single device,\n"
      "              DataParallel and DDP (overlapped and not), plus an alpha-beta prediction for real GPUs\n");
}

void dp_vs_ddp_usage() {
  std::printf(
      "usage: ringgrad bench dp-vs-ddp [options]\n\n"
      "Trains a ResNet (cross-entropy) or a YOLO (the v3 loss on random boxes, 4 per image) on synthetic\n"
      "tensors (fixed seeds; SGD momentum 0.9, weight decay 1e-4 and lr 0, so every step does identical work)\n"
      "for K timed steps in each mode:\n"
      "single device (batch B), DataParallel with N replicas (one process, global batch N*B), DDP with N\n"
      "ranks (N processes through the launcher, batch B each), and DDP without overlap; writes\n"
      "DIR/dp_vs_ddp.csv and DIR/dp_vs_ddp.svg and prints the phase breakdown, DDP's hidden communication,\n"
      "a check of the bucket allreduce times against the alpha-beta model, and a prediction for 2/4/8 GPUs.\n\n"
      "  --model M               resnet18|resnet34|resnet50|resnet101|resnet152, or yolov3|yolov3-tiny|yolov3-spp\n"
      "                          (a shipped darknet cfg, rewritten to --num-classes) (default resnet50)\n"
      "  --small-input           3x3 stride-1 stem, no max-pool (for 32x32-sized images)\n"
      "  --width W               base planes of layer1 (default 64, torchvision)\n"
      "  --num-classes C         classifier outputs / YOLO classes (default 1000 / 80)\n"
      "  --image-size S          default 224 on CUDA, 64 on CPU (YOLO: 416 and 128, multiples of 32)\n"
      "  --batch-per-replica B   default 32 on CUDA, 8 on CPU\n"
      "  --steps K               timed steps (default 20 on CUDA, 8 on CPU)\n"
      "  --warmup W              warm-up steps (default 5 on CUDA, 2 on CPU)\n"
      "  --replicas 1,2          replica / rank counts to run (default 1,2)\n"
      "  --device cpu|cuda       default cpu\n"
      "  --backend ring|nccl     DDP backend (default: ring on CPU; nccl when each rank has its own GPU, else ring)\n"
      "  --amp none|f16|bf16     autocast (f16 with a GradScaler); default none\n"
      "  --sync-bn               also run DDP with SyncBatchNorm and report its overhead\n"
      "  --skip-no-overlap       do not run the DDP overlap=false variant\n"
      "  --out DIR               output folder (default runs/bench_dp_vs_ddp)\n"
      "  --link-bw-gbs 370,25    link bandwidths for the prediction, GB/s (default NVLink 4 and PCIe 4)\n"
      "  --alpha-us A            per-hop latency of the model, microseconds (default 5, an assumption)\n"
      "  --threads-per-replica T OpenMP threads per replica in every mode (default cores / max N, at least 1)\n"
      "  --dp-caller-threads T   threads of DataParallel's caller thread (default N * threads-per-replica)\n"
      "  --seed S                default 0\n"
      "  --repeats R             run every mode R times (interleaved) and keep each one's fastest run (default 1)\n"
      "  --quiet                 no progress lines\n");
}

const std::vector<std::string> kValueFlags = {
    "--model", "--width", "--num-classes", "--image-size", "--batch-per-replica", "--steps", "--warmup",
    "--replicas", "--device", "--backend", "--amp", "--out", "--link-bw-gbs", "--alpha-us",
    "--threads-per-replica", "--dp-caller-threads", "--seed", "--repeats",
    // hidden: the worker processes the driver starts (Note [dp-vs-ddp benchmark])
    "--rank-worker", "--worker-n", "--worker-prefix"};
const std::vector<std::string> kSwitches = {"--small-input", "--sync-bn", "--skip-no-overlap", "--quiet"};

}  // namespace

int cmd_bench(const Args& args) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    bench_usage();
    return args.empty() ? 2 : 0;
  }
  const std::string name = args[0];
  const Args rest(args.begin() + 1, args.end());
  if (name == "dp-vs-ddp") {
    if (has_flag(rest, "-h") || has_flag(rest, "--help")) {
      dp_vs_ddp_usage();
      return 0;
    }
    check_known_flags(rest, kValueFlags, kSwitches, "bench dp-vs-ddp");
    const bench::Config cfg = bench::parse_config(rest);
    if (flag_given(rest, "--rank-worker")) {
      return bench::run_worker(cfg, get_opt(rest, "--rank-worker", ""),
                               static_cast<int>(parse_int(rest, "--worker-n", 1)), get_opt(rest, "--worker-prefix", ""));
    }
    return bench::run_driver(cfg);
  }
  std::fprintf(stderr, "ringgrad bench: unknown benchmark '%s'\n", name.c_str());
  bench_usage();
  return 2;
}

}  // namespace rg::app
