// End-to-end: data-parallel `ringgrad train-classifier`, started as PyTorch users start
// torchrun jobs: `ringgrad launch --nproc-per-node 2 -- ringgrad train-classifier ...` (here
// through dist::launch on the built binary), two CPU ranks training a tiny ResNet. Checks: rank 0
// alone prints and writes a checkpoint without "module.", the accuracy summed over the ranks'
// validation shards equals the one this test computes single-process from that checkpoint, a
// 2-rank run stopped and resumed ends bitwise equal to an uninterrupted one, a 2-rank checkpoint
// resumes in a single process (re-planned steps per epoch), and --distributed on one rank changes
// no bit of the plain run.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "apps/tasks/classify.h"
#include "autograd/grad_mode.h"
#include "core/json.h"
#include "core/native.h"
#include "data/image.h"
#include "data/image_folder.h"
#include "data/transforms.h"
#include "distributed/launcher.h"
#include "checkpoint_util.h"
#include "launch_util.h"
#include "models/resnet.h"
#include "nn/checkpoint.h"

namespace fs = std::filesystem;
using rg::test::bitwise_differences;
using rg::test::trainer_meta;

namespace {

using rg::test::read_file;
using rg::test::ringgrad_bin;

struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_e2e_ddp_") {}
};

int count_of(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// An ImageFolder tree whose class is the colour channel of a square patch of random size,
// position and strength on a noise background (weak patches make some images hard, so the
// accuracy lands between chance and 1). Class folders: blue, green, red (labels 0, 1, 2).
constexpr int64_t kSize = 16, kClasses = 3, kTrainPerClass = 201, kValPerClass = 33;
const char* const kClassNames[kClasses] = {"blue", "green", "red"};

std::string make_colour_dataset(const TempDir& d, int64_t train_per_class = kTrainPerClass,
                                int64_t val_per_class = kValPerClass) {
  const std::string root = d / ("colours_" + std::to_string(train_per_class));
  std::mt19937 gen(1234);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); };
  for (const char* split : {"train", "val"}) {
    const int64_t per_class = std::string(split) == "train" ? train_per_class : val_per_class;
    for (int64_t c = 0; c < kClasses; ++c) {
      const fs::path dir = fs::path(root) / split / kClassNames[c];
      fs::create_directories(dir);
      const int channel = static_cast<int>(2 - c);  // blue -> B (2), green -> G (1), red -> R (0)
      for (int64_t i = 0; i < per_class; ++i) {
        rg::data::Image img(kSize, kSize, 3);
        for (auto& p : img.pixels) p = static_cast<uint8_t>(uni(0, 255));
        const int side = uni(4, 10), top = uni(0, kSize - side), left = uni(0, kSize - side);
        const int strength = uni(10, 140);
        for (int y = top; y < top + side; ++y) {
          for (int x = left; x < left + side; ++x) {
            uint8_t* px = img.at(y, x);
            px[channel] = static_cast<uint8_t>(std::min(255, px[channel] + strength));
          }
        }
        char name[32];
        std::snprintf(name, sizeof(name), "%03lld.png", static_cast<long long>(i));
        rg::data::write_image((dir / name).string(), img);
      }
    }
  }
  return root;
}

// The options every run here shares (the width-8 small-input ResNet-18 of the other e2e tests).
std::vector<std::string> train_args(const std::string& data, const std::string& out) {
  return {"train-classifier", "--data", data,  "--no-make-data", "--small-input", "--width",      "8",
          "--epochs",         "2",      "--batch-size", "16",     "--optimizer",   "adamw",       "--lr",
          "3e-3",             "--workers", "1",   "--seed",       "7",             "--out",        out,
          "--log-every",      "5"};
}

// Runs `ringgrad args...` as `nproc` CPU ranks through the launcher, one thread each (nproc 1:
// WORLD_SIZE=1, a plain single-process run); rank r's output goes to LOGS/rank_<r>.log.
rg::dist::LaunchResult launch_ranks(int nproc, const std::vector<std::string>& args, const std::string& logs) {
  fs::create_directories(logs);
  rg::dist::LaunchOptions o;
  o.nproc_per_node = nproc;
  o.program = ringgrad_bin();
  o.args = args;
  o.log_dir = logs;
  o.env = {{"OMP_NUM_THREADS", "1"}};
  o.verbose = false;
  o.job_timeout = std::chrono::milliseconds(300000);
  const rg::dist::LaunchResult r = rg::dist::launch(o);
  if (r.exit_code != 0) {
    MESSAGE("launch failed: ", r.message, "\n--- rank 0:\n", read_file(fs::path(logs) / "rank_0.log"),
            "\n--- rank 1:\n", read_file(fs::path(logs) / "rank_1.log"));
  }
  return r;
}
rg::dist::LaunchResult launch2(const std::vector<std::string>& args, const std::string& logs) {
  return launch_ranks(2, args, logs);
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct SingleEval {
  int64_t correct = 0, n = 0;
  double loss = 0;  // mean cross-entropy, in double from the logits
  double acc() const { return static_cast<double>(correct) / static_cast<double>(n); }
};

// The validation accuracy and loss of a checkpoint's weights, computed here in one process:
// every val image decoded, stacked into one batch, normalised as the trainer does (ImageNet
// mean/std), and classified by a ResNet built and loaded here (nothing of the trainer's
// evaluation path).
SingleEval single_process_eval(const rg::nn::SafeTensors& ck, const std::string& data) {
  rg::models::ResNetOptions ro;
  ro.num_classes = kClasses;
  ro.small_input = true;
  ro.base_planes = 8;
  auto model = rg::models::resnet18(ro);
  rg::nn::StateDict weights;
  for (const auto& [k, v] : ck.tensors) {
    const bool train_state = k.rfind("optimizer.", 0) == 0 || k.rfind("scheduler.", 0) == 0 ||
                             k.rfind("scaler.", 0) == 0 || k.rfind("ema.", 0) == 0;
    if (!train_state) weights.emplace_back(k, v);
  }
  model->load_state_dict(weights, /*strict=*/true);
  model->eval();

  const rg::data::ImageFolder val((fs::path(data) / "val").string());
  REQUIRE(val.num_classes() == kClasses);
  const int64_t n = val.size();
  rg::Tensor images = rg::empty({n, 3, kSize, kSize}, rg::DType::u8);  // (N, 3, S, S)
  uint8_t* dst = images.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    const rg::data::Image img = val.load(i);
    REQUIRE(img.height == kSize);
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t p = 0; p < kSize * kSize; ++p) {
        dst[((i * 3 + c) * kSize * kSize) + p] = img.pixels[static_cast<size_t>(p * 3 + c)];
      }
    }
  }
  const rg::data::U8Normalizer normalize(rg::data::kImageNetMean, rg::data::kImageNetStd);
  rg::NoGradGuard ng;
  const rg::Tensor logits = model->forward(normalize(images));  // (N, classes)
  const std::vector<float> l = logits.contiguous().to_vector<float>();
  SingleEval e;
  e.n = n;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = l.data() + i * kClasses;
    int64_t best = 0;
    for (int64_t c = 1; c < kClasses; ++c) {
      if (row[c] > row[best]) best = c;
    }
    if (best == val.label(i)) ++e.correct;
    double z = 0;  // log-sum-exp, shifted by the max
    for (int64_t c = 0; c < kClasses; ++c) z += std::exp(static_cast<double>(row[c]) - row[best]);
    e.loss += std::log(z) + row[best] - row[val.label(i)];
  }
  e.loss /= static_cast<double>(n);
  return e;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("e2e: `ringgrad launch --nproc-per-node 2 -- ringgrad train-classifier` trains with DDP on CPU") {
  TempDir d;
  const std::string data = make_colour_dataset(d);
  const auto t0 = std::chrono::steady_clock::now();
  const rg::dist::LaunchResult r = launch2(train_args(data, d / "run"), d / "logs");
  const double secs = seconds_since(t0);
  REQUIRE(r.exit_code == 0);

  // Only rank 0 prints: the summary, the progress lines and one line per epoch.
  const std::string log0 = read_file(d.path / "logs" / "rank_0.log");
  const std::string log1 = read_file(d.path / "logs" / "rank_1.log");
  CHECK(log0.find("distributed: 2 rank(s) (2 on this node), backend ring, device cpu, batch 16 per rank = 32 "
                  "global") != std::string::npos);
  CHECK(count_of(log0, "  val loss ") == 2);
  CHECK(log0.find("epoch 2/2  train loss") != std::string::npos);
  CHECK(log1.find("epoch") == std::string::npos);
  CHECK(log1.find("distributed:") == std::string::npos);

  // Rank 0's checkpoint: no "module." prefix, the world size recorded, 2 x 19 steps: 603 images
  // padded to 2 x 302, 302 per rank in batches of 16.
  const std::string last = d / "run/last.safetensors";
  REQUIRE(fs::exists(last));
  CHECK(fs::exists(d / "run/best.safetensors"));
  const rg::nn::SafeTensors ck = rg::nn::load_safetensors(last);
  for (const auto& [k, t] : ck.tensors) CHECK_MESSAGE(k.rfind("module.", 0) != 0, k);
  const rg::Tensor* fc = rg::nn::find(ck.tensors, "fc.weight");
  REQUIRE(fc != nullptr);
  CHECK(fc->sizes() == rg::Shape{kClasses, 64});
  CHECK(rg::nn::find(ck.tensors, "layer1.0.bn1.running_mean") != nullptr);
  CHECK(rg::nn::find(ck.tensors, "optimizer.state.0.exp_avg") != nullptr);
  const rg::Json t = trainer_meta(ck);
  CHECK(t["world_size"].as_int() == 2);
  CHECK(t["sampler"]["world_size"].as_int() == 2);
  CHECK(t["sampler"]["batch_size"].as_int() == 16);
  CHECK(t["epoch"].as_int() == 2);
  CHECK(t["global_step"].as_int() == 2 * 19);

  // The accuracy the 2 ranks reported (each evaluating its unpadded shard, 50 + 49 images, counts
  // summed) is exactly what one process computes from the saved weights; the loss agrees to
  // rounding (the ranks' batches sum in another order). Both need rank 1 to have evaluated with
  // rank 0's BN statistics, not its own.
  const double reported = t["val_acc"].as_double();
  CHECK(t["model_val"]["acc"].as_double() == reported);
  const double reported_loss = t["model_val"]["loss"].as_double();
  const SingleEval single = single_process_eval(ck, data);
  MESSAGE("2 ranks x 1 thread, 603 train / 99 val images, 2 epochs in ", secs, " s: val accuracy ", reported,
          " (2 ranks) vs ", single.acc(), " (single process, ", single.correct, "/99); val loss ", reported_loss,
          " vs ", single.loss);
  CHECK(reported == single.acc());
  CHECK(std::fabs(reported_loss - single.loss) <= 1e-5 * single.loss);
  CHECK(reported > 0.45);  // chance is 1/3; runs of this setup reach 0.55-0.68
}

TEST_CASE("e2e: DDP train-classifier resumes exactly at the same world size and re-plans at another") {
  TempDir d;
  const std::string data = make_colour_dataset(d);
  // Uninterrupted 2-rank run, and one stopped after epoch 1 then resumed (on 2 ranks).
  REQUIRE(launch2(train_args(data, d / "straight"), d / "logs_straight").exit_code == 0);
  REQUIRE(launch2(plus(train_args(data, d / "resumed"), {"--stop-after-epochs", "1"}), d / "logs_part").exit_code == 0);
  REQUIRE(trainer_meta(rg::nn::load_safetensors(d / "resumed/last.safetensors"))["epoch"].as_int() == 1);
  const std::vector<std::string> resume = {"--resume", d / "resumed/last.safetensors"};
  REQUIRE(launch2(plus(train_args(data, d / "resumed"), resume), d / "logs_rest").exit_code == 0);
  CHECK(read_file(d.path / "logs_rest" / "rank_0.log").find("resumed from") != std::string::npos);

  const rg::nn::SafeTensors x = rg::nn::load_safetensors(d / "straight/last.safetensors");
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(d / "resumed/last.safetensors");
  CHECK(bitwise_differences(x, y) == 0);  // weights, BN buffers, Adam moments
  CHECK(*x.meta("optimizer") == *y.meta("optimizer"));
  CHECK(*x.meta("scheduler") == *y.meta("scheduler"));
  CHECK(trainer_meta(x)["val_acc"].as_double() == trainer_meta(y)["val_acc"].as_double());

  // The 2-rank checkpoint continues in one process (a launcher of one rank: WORLD_SIZE=1, so not
  // distributed) for a third epoch: 19 steps per epoch become 38 (603
  // images in batches of 16), so the run re-plans: the schedule continues at step 2 x 38 and the
  // run ends at step 3 x 38.
  const std::vector<std::string> more = {"--resume", d / "straight/last.safetensors", "--epochs", "3", "--out",
                                         d / "single"};
  REQUIRE(launch_ranks(1, plus({"train-classifier"}, more), d / "logs_single").exit_code == 0);
  const std::string log = read_file(d.path / "logs_single" / "rank_0.log");
  CHECK(log.find("trained on 2 rank(s), this run has 1") != std::string::npos);
  CHECK(count_of(log, "  val loss ") == 1);
  CHECK(log.find("distributed:") == std::string::npos);
  const rg::Json t = trainer_meta(rg::nn::load_safetensors(d / "single/last.safetensors"));
  CHECK(t["world_size"].as_int() == 1);
  CHECK(t["epoch"].as_int() == 3);
  CHECK(t["global_step"].as_int() == 3 * 38);
}

TEST_CASE("e2e: train-classifier --distributed on one rank ends bitwise equal to the plain run") {
  // A world of one: the DDP path (wrapped model, DistributedSampler, summed statistics) must not
  // change a single bit: a one-rank DistributedSampler orders the data as the RandomSampler does,
  // and averaging over one rank is the identity.
  TempDir d;
  const std::string data = make_colour_dataset(d);
  const std::vector<std::string> one_epoch = {"--epochs", "1"};
  REQUIRE(launch_ranks(1, plus(train_args(data, d / "plain"), one_epoch), d / "logs_plain").exit_code == 0);
  REQUIRE(launch_ranks(1, plus(train_args(data, d / "ddp1"), {"--epochs", "1", "--distributed"}), d / "logs_ddp1")
              .exit_code == 0);
  CHECK(read_file(d.path / "logs_plain" / "rank_0.log").find("distributed:") == std::string::npos);
  CHECK(read_file(d.path / "logs_ddp1" / "rank_0.log").find("distributed: 1 rank(s)") != std::string::npos);
  const rg::nn::SafeTensors x = rg::nn::load_safetensors(d / "plain/last.safetensors");
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(d / "ddp1/last.safetensors");
  CHECK(bitwise_differences(x, y) == 0);
  CHECK(trainer_meta(x)["global_step"].as_int() == 38);
  CHECK(trainer_meta(y)["global_step"].as_int() == 38);
  CHECK(trainer_meta(x)["model_val"]["loss"].as_double() == trainer_meta(y)["model_val"]["loss"].as_double());
}

TEST_CASE("e2e: 2 ranks x batch 24 with --sync-bn take the same SGD steps as one process with batch 48") {
  // 48 images: one step per epoch either way. With SyncBatchNorm the batch statistics span both
  // ranks and DDP averages the two halves' gradients, so each step is the full-batch step (up to
  // rounding); plain per-rank batch norm would differ at O(1).
  TempDir d;
  const std::string data = make_colour_dataset(d, 16, 4);
  const std::vector<std::string> common = {"train-classifier", "--data", data, "--no-make-data", "--small-input",
                                           "--width", "8", "--epochs", "2", "--optimizer", "sgd", "--lr", "0.1",
                                           "--momentum", "0", "--weight-decay", "0", "--scheduler", "none",
                                           "--no-augment", "--workers", "0", "--seed", "3"};
  REQUIRE(launch2(plus(common, {"--batch-size", "24", "--sync-bn", "--out", d / "two"}), d / "logs2").exit_code == 0);
  REQUIRE(launch_ranks(1, plus(common, {"--batch-size", "48", "--out", d / "one"}), d / "logs1").exit_code == 0);
  CHECK(rg::app::config_from_checkpoint(d / "two/last.safetensors").sync_bn);

  const rg::nn::SafeTensors x = rg::nn::load_safetensors(d / "one/last.safetensors");
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(d / "two/last.safetensors");
  CHECK(trainer_meta(x)["global_step"].as_int() == 2);
  CHECK(trainer_meta(y)["global_step"].as_int() == 2);
  double worst = 0;
  std::string worst_key;
  for (const auto& [k, tx] : x.tensors) {
    if (tx.dtype() != rg::DType::f32 || k.rfind("optimizer.", 0) == 0) continue;
    const rg::Tensor* ty = rg::nn::find(y.tensors, k);
    REQUIRE_MESSAGE(ty != nullptr, k);
    const std::vector<float> a = tx.to_vector<float>(), b = ty->to_vector<float>();
    double scale = 1e-3, diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
      diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    }
    if (diff / scale > worst) worst = diff / scale, worst_key = k;
  }
  MESSAGE("largest relative difference after 2 steps: ", worst, " (", worst_key, ")");
  CHECK(worst < 1e-4);
}
