// `ringgrad train-classifier` (also `ringgrad train --task classify`): parses the options into a
// ClassifyConfig and runs apps/trainer_classify.cpp. With --resume the checkpoint's saved options
// are the base and only the options given on the command line override them. Started by
// `ringgrad launch --nproc-per-node N -- ringgrad train-classifier ...` it trains with DDP.
#include <cstdio>
#include <sstream>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "apps/trainer_classify.h"
#include "apps/trainer_dist.h"
#include "core/error.h"

namespace rg::app {

namespace {
void train_classifier_usage() {
  std::printf(
      "usage: ringgrad train-classifier [options]     (or: ringgrad train --task classify [options])\n\n"
      "data\n"
      "  --data DIR             ImageFolder root with train/<class>/* and val/<class>/*\n"
      "                         (default data_gen/shapes-classify; the synthetic set is generated when missing)\n"
      "  --img-size N           train/eval size (default: the first training image's)\n"
      "  --no-augment           no RandomCrop(padding=size/8) + RandomHorizontalFlip\n"
      "  --workers N            loader threads (default 2; 0 = load in the training thread)\n"
      "model\n"
      "  --model NAME           resnet18 | resnet34 | resnet50 (default resnet18)\n"
      "  --small-input          3x3 stride-1 stem and no maxpool (for 32x32 images)\n"
      "  --width N              planes of layer1, doubling per stage (default 64 = torchvision)\n"
      "  --num-classes N        default: the number of class folders\n"
      "optimisation\n"
      "  --epochs N (10)  --batch-size N (32)\n"
      "  --optimizer sgd|adam|adamw (adamw)\n"
      "  --lr X                 default: sgd 0.1, adam/adamw 2e-3\n"
      "  --weight-decay X       default: sgd 5e-4, adam 0, adamw 0.01\n"
      "  --momentum X           sgd (0.9)\n"
      "  --scheduler cosine|step|multistep|poly|onecycle|none (cosine; stepped every iteration)\n"
      "  --step-size EPOCHS  --milestones E1,E2,...  --gamma X (0.1)\n"
      "  --warmup-epochs X      linear warmup from lr/10 (may be fractional)\n"
      "  --label-smoothing X\n"
      "  --amp none|f16|bf16    autocast; f16 uses a GradScaler (default none)\n"
      "  --ema [--ema-decay X]  keep an EMA of the weights (0.999); best.safetensors follows its accuracy\n"
      "run\n"
      "  --device cpu|cuda|cuda:N (cpu)  --seed N (0)  --out DIR (runs/classify)\n"
      "  --resume [PATH]        continue from PATH (default OUT/last.safetensors) with its saved options;\n"
      "                         options given here override them (e.g. --epochs 20 to train longer)\n"
      "  --flush-denormal       treat denormal floats as zero on the CPU (torch.set_flush_denormal)\n"
      "  --log-every N          progress line every N steps when stdout is not a terminal\n"
      "  --quiet                epoch lines only\n"
      "distributed (DDP; on when started by `ringgrad launch --nproc-per-node N -- ringgrad train-classifier ...`,\n"
      "i.e. when WORLD_SIZE > 1; rank 0 prints and writes the checkpoints)\n"
      "  --batch-size is per rank: the global batch is N x batch; --device cuda means cuda:LOCAL_RANK\n"
      "  --distributed          use DDP even for a world of 1\n"
      "  --backend ring|nccl    default: ring on CPU; on CUDA nccl when every rank has its own GPU, else ring\n"
      "  --bucket-cap-mb X      DDP gradient bucket size (25)\n"
      "  --find-unused-parameters\n"
      "  --sync-bn              SyncBatchNorm: batch statistics over all ranks\n");
}

const std::vector<std::string> kValueFlags = {
    "--data",     "--img-size", "--workers",     "--model",         "--width",        "--num-classes",
    "--epochs",   "--batch-size", "--lr",        "--momentum",      "--weight-decay", "--optimizer",
    "--scheduler", "--step-size", "--milestones", "--gamma",        "--warmup-epochs", "--label-smoothing",
    "--amp",      "--ema-decay", "--device",     "--seed",          "--out",          "--resume",
    "--log-every", "--stop-after-epochs", "--task", "--backend", "--bucket-cap-mb"};
const std::vector<std::string> kSwitches = {"--small-input", "--no-augment",  "--ema",     "--quiet",
                                            "--no-make-data", "--distributed", "--sync-bn", "--find-unused-parameters",
                                            "--flush-denormal"};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long long x = std::strtoll(item.c_str(), &end, 10);
    RG_CHECK(end && *end == '\0', "--milestones expects comma-separated integers, got '", s, "'");
    v.push_back(x);
  }
  return v;
}

// Applies the options present in `a` onto `c`.
void apply_args(const Args& a, ClassifyConfig& c) {
  auto str = [&](const char* f, std::string& v) { if (flag_given(a, f)) v = last_opt(a, f, v); };
  auto i64 = [&](const char* f, int64_t& v) { if (flag_given(a, f)) v = parse_int(a, f, v); };
  auto dbl = [&](const char* f, double& v) { if (flag_given(a, f)) v = parse_double(a, f, v); };
  str("--data", c.data);
  i64("--img-size", c.img_size);
  if (flag_given(a, "--workers")) c.workers = static_cast<int>(parse_int(a, "--workers", c.workers));
  if (has_flag(a, "--no-augment")) c.augment = false;
  str("--model", c.model);
  if (has_flag(a, "--small-input")) c.small_input = true;
  i64("--width", c.width);
  i64("--num-classes", c.num_classes);
  i64("--epochs", c.epochs);
  i64("--batch-size", c.batch_size);
  dbl("--lr", c.lr);
  dbl("--momentum", c.momentum);
  dbl("--weight-decay", c.weight_decay);
  str("--optimizer", c.optimizer);
  str("--scheduler", c.scheduler);
  i64("--step-size", c.step_size);
  if (flag_given(a, "--milestones")) c.milestones = parse_list(last_opt(a, "--milestones", ""));
  dbl("--gamma", c.gamma);
  dbl("--warmup-epochs", c.warmup_epochs);
  dbl("--label-smoothing", c.label_smoothing);
  str("--amp", c.amp);
  if (has_flag(a, "--ema")) c.ema = true;
  if (has_flag(a, "--flush-denormal")) c.flush_denormal = true;
  dbl("--ema-decay", c.ema_decay);
  str("--device", c.device);
  if (flag_given(a, "--seed")) c.seed = static_cast<uint64_t>(parse_int(a, "--seed", 0));
  str("--out", c.out);
  i64("--log-every", c.log_every);
  i64("--stop-after-epochs", c.stop_after_epochs);
  if (has_flag(a, "--quiet")) c.verbosity = 1;
  if (has_flag(a, "--no-make-data")) c.make_data_if_missing = false;
  if (has_flag(a, "--distributed")) c.distributed = true;
  str("--backend", c.backend);
  dbl("--bucket-cap-mb", c.bucket_cap_mb);
  if (has_flag(a, "--find-unused-parameters")) c.find_unused_parameters = true;
  if (has_flag(a, "--sync-bn")) c.sync_bn = true;
}
}  // namespace

int cmd_train_classifier(const Args& args_in) {
  if (has_flag(args_in, "-h") || has_flag(args_in, "--help")) {
    train_classifier_usage();
    return 0;
  }
  // A bare --resume (last argument, or followed by another option) means OUT/last.safetensors.
  Args args;
  bool resume_default = false;
  for (size_t i = 0; i < args_in.size(); ++i) {
    if (args_in[i] == "--resume" && (i + 1 == args_in.size() || args_in[i + 1].rfind("--", 0) == 0)) {
      resume_default = true;
      continue;
    }
    args.push_back(args_in[i]);
  }
  check_known_flags(args, kValueFlags, kSwitches, "train-classifier");
  const std::string task = last_opt(args, "--task", "classify");
  RG_CHECK(task == "classify", "train-classifier: --task must be classify, got '", task, "'");

  ClassifyConfig cfg;
  std::string resume = last_opt(args, "--resume", "");
  if (resume_default) resume = last_opt(args, "--out", cfg.out) + "/last.safetensors";
  if (!resume.empty()) {
    cfg = config_from_checkpoint(resume);
    if (env_rank() == 0) std::printf("train-classifier: resuming %s with its saved options%s\n", resume.c_str(),
                args.empty() ? "" : " (command-line options override them)");
  }
  apply_args(args, cfg);
  cfg.resume = resume;
  train_classifier(cfg);
  return 0;
}

int cmd_train(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    std::printf("usage: ringgrad train --task classify [options]   (see ringgrad train-classifier --help)\n");
    return args.empty() ? 2 : 0;
  }
  const std::string task = last_opt(args, "--task", "");
  RG_CHECK(task == "classify", "train: --task ", task.empty() ? "is required" : "'" + task + "' is not available",
           " (tasks: classify)");
  return cmd_train_classifier(args);
}

}  // namespace rg::app
