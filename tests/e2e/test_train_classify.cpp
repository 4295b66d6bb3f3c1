// End-to-end: the classification trainer on generated data. On the CPU a small ResNet must learn
// the shapes well above chance, checkpoints must hold torchvision names plus the training state,
// and a run interrupted and resumed must end bitwise equal to an uninterrupted one. With a CUDA
// device the same training runs with f16 and bf16 autocast.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "apps/tasks/classify.h"
#include "core/cuda_api.h"
#include "core/cudnn_config.h"
#include "core/json.h"
#include "data/synthetic.h"
#include "checkpoint_util.h"
#include "launch_util.h"
#include "nn/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;
using rg::app::ClassifyConfig;
using rg::app::train_classifier;

namespace {
struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_e2e_") {}
};

std::string make_shapes(const TempDir& d, const std::string& name, int64_t classes, int64_t train, int64_t val,
                        int64_t size) {
  rg::data::ClassifyDataOptions o;
  o.out = d / name;
  o.classes = classes;
  o.train_per_class = train;
  o.val_per_class = val;
  o.size = size;
  rg::data::make_classify_dataset(o, false);
  return o.out;
}

// A ResNet-18 with the small-input stem and 8 planes in layer1: ~180k parameters, fast on 2 cores.
ClassifyConfig small_config(const std::string& data, const std::string& out) {
  ClassifyConfig c;
  c.data = data;
  c.make_data = false;
  c.small_input = true;
  c.width = 8;
  c.batch_size = 32;
  c.optimizer = "adamw";
  c.lr = 3e-3;
  c.weight_decay = 0.01;
  c.workers = 1;
  c.out = out;
  c.verbosity = 1;
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The state a resumed run restored, saved before its first step (ClassifyConfig::save_resumed),
// equals the checkpoint it resumed from: every tensor byte for byte (weights, BN buffers, optimizer
// moments, EMA weights), the optimizer, schedule, scaler and EMA state, and the trainer's counters,
// sampler position and RNG.
void check_restored(const std::string& checkpoint, const std::string& resumed_path) {
  CAPTURE(checkpoint);
  const rg::nn::SafeTensors ck = rg::nn::load_safetensors(checkpoint);
  const rg::nn::SafeTensors re = rg::nn::load_safetensors(resumed_path);
  CHECK(rg::test::bitwise_differences(ck, re) == 0);
  int64_t moments = 0;
  for (const auto& [k, t] : re.tensors) moments += k.rfind("optimizer.state.", 0) == 0;
  CHECK(moments > 0);  // the optimizer had state to restore
  for (const char* k : {"optimizer", "scheduler", "scaler", "ema"}) {
    CAPTURE(k);
    REQUIRE((ck.meta(k) == nullptr) == (re.meta(k) == nullptr));
    if (ck.meta(k)) CHECK(*ck.meta(k) == *re.meta(k));
  }
  REQUIRE(re.meta("trainer") != nullptr);
  const rg::Json a = rg::Json::parse(*ck.meta("trainer")), b = rg::Json::parse(*re.meta("trainer"));
  for (const char* k : {"epoch", "global_step", "best_acc", "sampler", "rng"}) {
    CAPTURE(k);
    CHECK(a[k].dump() == b[k].dump());
  }
}
}  // namespace

TEST_CASE("e2e: train-classifier learns the shapes dataset on CPU, well above chance") {
  TempDir d;
  const std::string data = make_shapes(d, "shapes", 4, 300, 50, 32);
  ClassifyConfig c = small_config(data, d / "run");
  c.epochs = 10;
  const auto t0 = std::chrono::steady_clock::now();
  const rg::app::TrainResult r = train_classifier(c);
  const double secs = seconds_since(t0);
  REQUIRE(r.history.size() == 10);
  const double first = r.history.front().val_acc, last = r.history.back().val_acc;
  MESSAGE("4 classes, 1200 train / 200 val images, 10 epochs: val accuracy ", first, " -> ", last, " (best ",
          r.best_acc, ") in ", secs, " s");
  CHECK(last >= 0.6);  // chance is 0.25
  CHECK(r.best_acc >= last);
  CHECK(r.history.back().train_loss < r.history.front().train_loss);
  CHECK(r.global_step == 10 * (1200 / 32 + 1));

  // The checkpoint: torchvision names without prefix, and the training state.
  const rg::nn::SafeTensors ck = rg::nn::load_safetensors(r.last_path);
  const rg::Tensor* fc = rg::nn::find(ck.tensors, "fc.weight");
  REQUIRE(fc != nullptr);
  CHECK(fc->sizes() == rg::Shape{4, 64});  // 8 planes * 8 at layer4
  CHECK(rg::nn::find(ck.tensors, "conv1.weight") != nullptr);
  CHECK(rg::nn::find(ck.tensors, "layer1.0.bn1.running_var") != nullptr);
  CHECK(rg::nn::find(ck.tensors, "layer4.1.bn2.num_batches_tracked") != nullptr);
  CHECK(rg::nn::find(ck.tensors, "optimizer.state.0.exp_avg") != nullptr);
  for (const auto& [k, t] : ck.tensors) CHECK(k.rfind("module.", 0) != 0);
  REQUIRE(ck.meta("trainer") != nullptr);
  REQUIRE(ck.meta("optimizer") != nullptr);
  REQUIRE(ck.meta("scheduler") != nullptr);
  const rg::Json t = rg::Json::parse(*ck.meta("trainer"));
  CHECK(t["epoch"].as_int() == 10);
  CHECK(t["classes"].size() == 4);
  CHECK(t["config"]["model"].as_string() == "resnet18");
  CHECK(fs::exists(r.best_path));
}

TEST_CASE("e2e: resuming from last.safetensors ends bitwise equal to an uninterrupted run (CPU)") {
  TempDir d;
  const std::string data = make_shapes(d, "tiny", 3, 30, 6, 16);
  // SGD with momentum and Nesterov-free buffers, warmup into a cosine schedule, label smoothing and an
  // EMA: every kind of state a resume must restore.
  ClassifyConfig c = small_config(data, d / "straight");
  c.optimizer = "sgd";
  c.lr = 0.05;
  c.weight_decay = 5e-4;
  c.batch_size = 16;
  c.epochs = 3;
  c.warmup_epochs = 0.5;
  c.label_smoothing = 0.1;
  c.ema = true;
  c.ema_decay = 0.9;
  c.workers = 2;
  const rg::app::TrainResult straight = train_classifier(c);
  REQUIRE(straight.epochs_done == 3);

  ClassifyConfig a = c;
  a.out = d / "resumed";
  a.stop_after_epochs = 2;  // "killed" after epoch 2
  const rg::app::TrainResult part = train_classifier(a);
  REQUIRE(part.epochs_done == 2);
  const std::string kept = d / "epoch2.safetensors";  // the resumed run overwrites last.safetensors
  fs::copy_file(part.last_path, kept);
  ClassifyConfig b = c;
  b.out = d / "resumed";
  b.resume = d / "resumed/last.safetensors";
  b.workers = 0;  // the loader's batches do not depend on the worker count
  b.save_resumed = true;
  const rg::app::TrainResult rest = train_classifier(b);
  check_restored(kept, d / "resumed/resumed.safetensors");
  CHECK(rest.history.size() == 1);
  CHECK(rest.epochs_done == 3);
  CHECK(rest.global_step == straight.global_step);

  const rg::nn::SafeTensors x = rg::nn::load_safetensors(straight.last_path);
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(rest.last_path);
  CHECK(rg::test::bitwise_differences(x, y) == 0);  // weights, BN buffers, momentum buffers, EMA weights
  CHECK(*x.meta("optimizer") == *y.meta("optimizer"));
  CHECK(*x.meta("scheduler") == *y.meta("scheduler"));
  CHECK(*x.meta("ema") == *y.meta("ema"));
  CHECK(straight.history.back().val_acc == rest.history.back().val_acc);

  // A checkpoint from another model does not load: the error lists the mismatches.
  ClassifyConfig wrong = b;
  wrong.width = 16;
  CHECK_THROWS(train_classifier(wrong));
}

TEST_CASE("e2e: CUDA training with f16 (GradScaler) and bf16 autocast" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  TempDir d;
  const std::string data = make_shapes(d, "shapes", 4, 300, 50, 32);
  for (const char* amp : {"f16", "bf16", "none"}) {
    ClassifyConfig c = small_config(data, d / (std::string("run_") + amp));
    c.device = "cuda:0";
    c.amp = amp;
    c.width = 16;
    c.epochs = 10;
    c.workers = 2;
    const auto t0 = std::chrono::steady_clock::now();
    const rg::app::TrainResult r = train_classifier(c);
    MESSAGE("cuda amp=", amp, ": val accuracy ", r.history.front().val_acc, " -> ", r.history.back().val_acc, " in ",
            seconds_since(t0), " s, ", r.history.back().skipped_steps, " skipped steps");
    CHECK(r.history.back().val_acc >= 0.6);
    CHECK(r.history.back().skipped_steps < 10);
    const rg::nn::SafeTensors ck = rg::nn::load_safetensors(r.last_path);
    CHECK((std::string(amp) == "f16") == (ck.meta("scaler") != nullptr));
    CHECK(rg::nn::find(ck.tensors, "fc.weight")->dtype() == rg::DType::f32);  // master weights stay f32
  }
}

namespace {
// Largest |a - b| over the floating tensors of the model itself (not the training state).
double max_model_diff(const rg::nn::SafeTensors& a, const rg::nn::SafeTensors& b) {
  double m = 0;
  for (const auto& [k, ta] : a.tensors) {
    if (!rg::is_floating(ta.dtype()) || k.rfind("optimizer.", 0) == 0 || k.rfind("ema.", 0) == 0) continue;
    const rg::Tensor* tb = rg::nn::find(b.tensors, k);
    REQUIRE_MESSAGE(tb != nullptr, k);
    const std::vector<double> x = ta.to_vector<double>(), y = tb->to_vector<double>();
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  }
  return m;
}
}  // namespace

TEST_CASE("e2e: CUDA f16 run with EMA checkpoints GPU state and resumes onto the GPU" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  // cuDNN's heuristics instead of timing: the same algorithms in every run of this test.
  const bool benchmark = rg::cudnn_benchmark();
  rg::set_cudnn_benchmark(false);
  struct Restore {
    bool b;
    ~Restore() { rg::set_cudnn_benchmark(b); }
  } restore{benchmark};
  TempDir d;
  const std::string data = make_shapes(d, "shapes", 4, 100, 25, 32);
  ClassifyConfig c = small_config(data, d / "straight");  // AdamW: two moments per parameter
  c.device = "cuda:0";
  c.amp = "f16";
  c.ema = true;
  c.ema_decay = 0.9;
  c.label_smoothing = 0.1;
  c.epochs = 3;
  c.workers = 2;
  const rg::app::TrainResult straight = train_classifier(c);
  REQUIRE(straight.epochs_done == 3);
  ClassifyConfig again = c;
  again.out = d / "again";
  const rg::app::TrainResult straight2 = train_classifier(again);

  ClassifyConfig a = c;
  a.out = d / "part";
  a.stop_after_epochs = 1;
  const rg::app::TrainResult part = train_classifier(a);
  REQUIRE(part.epochs_done == 1);
  ClassifyConfig b = c;
  b.out = d / "rest";
  b.resume = part.last_path;  // optimizer moments, scaler, EMA and BN buffers go back onto cuda:0
  b.save_resumed = true;
  const rg::app::TrainResult rest = train_classifier(b);
  CHECK(rest.history.size() == 2);
  CHECK(rest.epochs_done == 3);
  CHECK(rest.global_step == straight.global_step);
  // What the run restored onto the GPU and saved back before its first step is the checkpoint, bit
  // for bit: Adam's moments, the scaler's scale and tracker, the EMA weights, the counters.
  check_restored(part.last_path, d / "rest/resumed.safetensors");

  const rg::nn::SafeTensors x = rg::nn::load_safetensors(straight.last_path);
  const rg::nn::SafeTensors x2 = rg::nn::load_safetensors(straight2.last_path);
  const rg::nn::SafeTensors p = rg::nn::load_safetensors(part.last_path);
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(rest.last_path);
  REQUIRE(y.meta("scaler") != nullptr);
  REQUIRE(y.meta("ema") != nullptr);
  REQUIRE(rg::nn::find(y.tensors, "ema.module.fc.weight") != nullptr);
  CHECK(rg::nn::find(y.tensors, "optimizer.state.0.exp_avg")->dtype() == rg::DType::f32);
  // The counters restored from the checkpoint continue exactly (deterministic whatever the kernels).
  const rg::Json ox = rg::Json::parse(*x.meta("optimizer")), oy = rg::Json::parse(*y.meta("optimizer"));
  CHECK(oy["state"]["0"]["step"].as_int() == ox["state"]["0"]["step"].as_int());
  CHECK(rg::Json::parse(*y.meta("ema"))["updates"].as_int() == rg::Json::parse(*x.meta("ema"))["updates"].as_int());
  CHECK(rg::Json::parse(*y.meta("scheduler")).dump() == rg::Json::parse(*x.meta("scheduler")).dump());
  // The final weights against the uninterrupted run. Two uninterrupted runs measure what the GPU
  // kernels' own non-determinism (atomics) makes of these 3 epochs; the resumed run may differ from
  // the first by no more than 4x that (two draws of the same noise), so by nothing at all when the
  // GPU run is deterministic. A resume that lost state (Adam's moments restarted at zero, the scaler
  // at 65536, the EMA at the weights) changes the step sizes from the first step on: a systematic
  // departure, many times the rounding noise, and of the order of an epoch's drift.
  const double noise = max_model_diff(x2, x), resumed = max_model_diff(y, x), epoch = max_model_diff(p, x);
  MESSAGE("CUDA resume: max |resumed - uninterrupted| = ", resumed, ", two uninterrupted runs differ by ", noise,
          ", the epoch-1 checkpoint by ", epoch);
  CHECK(epoch > 0.0);
  CHECK(resumed <= 4.0 * noise);
  CHECK(resumed <= 0.25 * epoch);
}
