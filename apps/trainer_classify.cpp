// The classification training loop: data, model, optimizer, schedule, AMP, EMA, validation,
// checkpoints (Note [Classifier checkpoints]), exact resume (Note [Exact resume]), and DDP across
// ranks (Note [Distributed classifier training] in apps/trainer_dist.h).
#include "apps/trainer_classify.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "apps/trainer_dist.h"
#include "apps/trainer_progress.h"
#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "core/cpu_config.h"
#include "core/native.h"
#include "core/random.h"
#include "data/dataloader.h"
#include "data/image_folder.h"
#include "data/synthetic.h"
#include "data/transforms.h"
#include "distributed/ddp.h"
#include "distributed/sync_batchnorm.h"
#include "models/resnet.h"
#include "nn/amp/grad_scaler.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "nn/optim/adam.h"
#include "nn/optim/ema.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"

namespace fs = std::filesystem;

namespace rg::app {

// Note [Classifier checkpoints]
// DIR/last.safetensors (every epoch) and DIR/best.safetensors (when the validation accuracy
// improves: the EMA model's with --ema, else the model's) hold the same things:
// - the model's state_dict under torchvision's names, no prefix ("conv1.weight",
//   "layer1.0.bn1.running_mean", "fc.bias", ...);
// - the training state, Note [Training state in checkpoints] (nn/optim/optimizer.h): prefixes
//   "optimizer", "scheduler", "scaler" (--amp f16 only) and "ema" (--ema only: "ema.module.<name>");
// - metadata "trainer": {"format": "ringgrad-classify-1", "epoch": epochs completed,
//   "global_step", "best_acc", "val_acc" (the EMA's with --ema), "model_val": {"loss", "acc"}
//   (the model's validation), "world_size" (ranks that trained it),
//   "sampler": {"epoch": the next epoch, "seed", "world_size", "batch_size" (per rank)},
//   "rng": {"seed", "offset"} (the default generator), "classes": [...], "config": {...}}.
// Keys of the model never start with those prefixes, so the split is unambiguous.
namespace {
const char* const kTrainPrefixes[] = {"optimizer.", "scheduler.", "scaler.", "ema."};
constexpr const char* kFormat = "ringgrad-classify-1";

bool is_train_state_key(const std::string& k) {
  for (const char* p : kTrainPrefixes) {
    if (k.rfind(p, 0) == 0) return true;
  }
  return false;
}

// The checked "trainer" metadata of a checkpoint to resume from.
Json trainer_meta(const nn::SafeTensors& ck, const std::string& path) {
  const std::string* m = ck.meta("trainer");
  RG_CHECK(m, "cannot resume from '", path, "': not a ringgrad classifier checkpoint (no \"trainer\" metadata)");
  Json t = Json::parse(*m);
  RG_CHECK(t.find("format") && t["format"].as_string() == kFormat, "cannot resume from '", path,
           "': unknown trainer format");
  return t;
}

Json int_array(const std::vector<int64_t>& v) {
  Json a = Json::array();
  for (int64_t x : v) a.push_back(x);
  return a;
}
}  // namespace

Json ClassifyConfig::to_json() const {
  Json j = Json::object();
  j.set("data", data);
  j.set("model", model);
  j.set("small_input", small_input);
  j.set("width", width);
  j.set("num_classes", num_classes);
  j.set("img_size", img_size);
  j.set("epochs", epochs);
  j.set("batch_size", batch_size);
  j.set("lr", lr);
  j.set("momentum", momentum);
  j.set("weight_decay", weight_decay);
  j.set("optimizer", optimizer);
  j.set("scheduler", scheduler);
  j.set("milestones", int_array(milestones));
  j.set("step_size", step_size);
  j.set("gamma", gamma);
  j.set("warmup_epochs", warmup_epochs);
  j.set("label_smoothing", label_smoothing);
  j.set("augment", augment);
  j.set("device", device);
  j.set("amp", amp);
  j.set("workers", static_cast<int64_t>(workers));
  j.set("seed", static_cast<int64_t>(seed));
  j.set("ema", ema);
  j.set("ema_decay", ema_decay);
  j.set("flush_denormal", flush_denormal);
  j.set("out", out);
  j.set("sync_bn", sync_bn);
  j.set("bucket_cap_mb", bucket_cap_mb);
  j.set("find_unused_parameters", find_unused_parameters);
  return j;
}

ClassifyConfig ClassifyConfig::from_json(const Json& j) {
  ClassifyConfig c;
  auto str = [&](const char* k, std::string& v) { if (const Json* x = j.find(k)) v = x->as_string(); };
  auto i64 = [&](const char* k, int64_t& v) { if (const Json* x = j.find(k)) v = x->as_int(); };
  auto dbl = [&](const char* k, double& v) { if (const Json* x = j.find(k)) v = x->as_double(); };
  auto bln = [&](const char* k, bool& v) { if (const Json* x = j.find(k)) v = x->as_bool(); };
  str("data", c.data);
  str("model", c.model);
  bln("small_input", c.small_input);
  i64("width", c.width);
  i64("num_classes", c.num_classes);
  i64("img_size", c.img_size);
  i64("epochs", c.epochs);
  i64("batch_size", c.batch_size);
  dbl("lr", c.lr);
  dbl("momentum", c.momentum);
  dbl("weight_decay", c.weight_decay);
  str("optimizer", c.optimizer);
  str("scheduler", c.scheduler);
  if (const Json* m = j.find("milestones")) {
    c.milestones.clear();
    for (const auto& x : m->as_array()) c.milestones.push_back(x.as_int());
  }
  i64("step_size", c.step_size);
  dbl("gamma", c.gamma);
  dbl("warmup_epochs", c.warmup_epochs);
  dbl("label_smoothing", c.label_smoothing);
  bln("augment", c.augment);
  str("device", c.device);
  str("amp", c.amp);
  int64_t w = c.workers;
  i64("workers", w);
  c.workers = static_cast<int>(w);
  int64_t s = static_cast<int64_t>(c.seed);
  i64("seed", s);
  c.seed = static_cast<uint64_t>(s);
  bln("ema", c.ema);
  dbl("ema_decay", c.ema_decay);
  bln("flush_denormal", c.flush_denormal);
  str("out", c.out);
  bln("sync_bn", c.sync_bn);
  dbl("bucket_cap_mb", c.bucket_cap_mb);
  bln("find_unused_parameters", c.find_unused_parameters);
  return c;
}

ClassifyConfig config_from_checkpoint(const std::string& path) {
  const nn::SafeTensors ck = nn::load_safetensors(path);
  const std::string* m = ck.meta("trainer");
  RG_CHECK(m, "'", path, "' is not a ringgrad classifier checkpoint (no \"trainer\" metadata)");
  const Json j = Json::parse(*m);
  RG_CHECK(j.find("format") && j["format"].as_string() == kFormat, "'", path, "' has an unknown trainer format");
  return ClassifyConfig::from_json(j["config"]);
}

namespace {

void validate(const ClassifyConfig& c) {
  RG_CHECK(c.model == "resnet18" || c.model == "resnet34" || c.model == "resnet50", "unknown --model '", c.model,
           "' (resnet18, resnet34 or resnet50)");
  RG_CHECK(c.optimizer == "sgd" || c.optimizer == "adam" || c.optimizer == "adamw", "unknown --optimizer '",
           c.optimizer, "' (sgd, adam or adamw)");
  const std::vector<std::string> scheds = {"cosine", "step", "multistep", "poly", "onecycle", "none"};
  RG_CHECK(std::find(scheds.begin(), scheds.end(), c.scheduler) != scheds.end(), "unknown --scheduler '", c.scheduler,
           "' (cosine, step, multistep, poly, onecycle or none)");
  RG_CHECK(c.amp == "none" || c.amp == "f16" || c.amp == "bf16", "unknown --amp '", c.amp, "' (none, f16 or bf16)");
  RG_CHECK(c.epochs >= 1, "--epochs must be >= 1, got ", c.epochs);
  RG_CHECK(c.batch_size >= 2, "--batch-size must be >= 2 (batch norm needs 2 samples), got ", c.batch_size);
  RG_CHECK(c.lr > 0, "--lr must be positive, got ", c.lr);
  RG_CHECK(c.width >= 1, "--width must be >= 1, got ", c.width);
  RG_CHECK(c.workers >= 0, "--workers must be >= 0, got ", c.workers);
  RG_CHECK(c.warmup_epochs >= 0, "--warmup-epochs must be >= 0, got ", c.warmup_epochs);
  RG_CHECK(c.label_smoothing >= 0 && c.label_smoothing < 1, "--label-smoothing must be in [0, 1), got ",
           c.label_smoothing);
  RG_CHECK(c.ema_decay > 0 && c.ema_decay < 1, "--ema-decay must be in (0, 1), got ", c.ema_decay);
  RG_CHECK(c.bucket_cap_mb > 0, "--bucket-cap-mb must be positive, got ", c.bucket_cap_mb);
  RG_CHECK(c.backend.empty() || c.backend == "ring" || c.backend == "nccl", "unknown --backend '", c.backend,
           "' (ring or nccl)");
}

std::shared_ptr<models::ResNet> make_model(const ClassifyConfig& c, int64_t num_classes) {
  models::ResNetOptions o;
  o.num_classes = num_classes;
  o.small_input = c.small_input;
  o.base_planes = c.width;
  if (c.model == "resnet18") return models::resnet18(o);
  if (c.model == "resnet34") return models::resnet34(o);
  return models::resnet50(o);
}

std::unique_ptr<optim::Optimizer> make_optimizer(const ClassifyConfig& c, const std::vector<Tensor>& params) {
  if (c.optimizer == "sgd") {
    optim::SGDOptions o;
    o.lr = c.lr;
    o.momentum = c.momentum;
    o.weight_decay = c.weight_decay;
    return std::make_unique<optim::SGD>(params, o);
  }
  if (c.optimizer == "adam") {
    optim::AdamOptions o;
    o.lr = c.lr;
    o.weight_decay = c.weight_decay;
    return std::make_unique<optim::Adam>(params, o);
  }
  optim::AdamWOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  return std::make_unique<optim::AdamW>(params, o);
}

// The schedule steps once per iteration; epoch-valued options are converted with `nb` steps/epoch.
std::unique_ptr<optim::LRScheduler> make_scheduler(const ClassifyConfig& c, optim::Optimizer& opt, int64_t nb) {
  const int64_t total = c.epochs * nb;
  std::unique_ptr<optim::LRScheduler> s;
  if (c.scheduler == "cosine") {
    s = std::make_unique<optim::CosineAnnealingLR>(opt, total);
  } else if (c.scheduler == "step") {
    const int64_t every = c.step_size > 0 ? c.step_size : std::max<int64_t>(1, c.epochs / 3);
    s = std::make_unique<optim::StepLR>(opt, every * nb, c.gamma);
  } else if (c.scheduler == "multistep") {
    std::vector<int64_t> ms = c.milestones;
    if (ms.empty()) ms = {c.epochs / 2, c.epochs * 3 / 4};
    for (int64_t& m : ms) m *= nb;
    s = std::make_unique<optim::MultiStepLR>(opt, ms, c.gamma);
  } else if (c.scheduler == "poly") {
    s = std::make_unique<optim::PolynomialLR>(opt, total, 1.0);
  } else if (c.scheduler == "onecycle") {
    s = std::make_unique<optim::OneCycleLR>(opt, c.lr, total);
  } else {
    s = std::make_unique<optim::MultiStepLR>(opt, std::vector<int64_t>{}, 1.0);  // constant
  }
  const auto warm = static_cast<int64_t>(std::llround(c.warmup_epochs * static_cast<double>(nb)));
  if (warm > 0) {
    optim::WarmupOptions w;
    w.mode = optim::WarmupMode::Linear;
    w.start_factor = 0.1;
    s = std::make_unique<optim::WarmupLR>(opt, std::move(s), warm, w);
  }
  return s;
}

// Statistics summed on the device over an epoch, read on the host only when printed.
struct RunningStats {
  Tensor loss_sum, correct;  // 0-dim f32 on the device
  int64_t seen = 0;
  void reset(Device d) {
    loss_sum = zeros({}, TensorOptions(DType::f32).device(d));
    correct = zeros({}, TensorOptions(DType::f32).device(d));
    seen = 0;
  }
  void add(const Tensor& loss, const Tensor& logits, const Tensor& labels) {
    NoGradGuard ng;
    const int64_t b = labels.size(0);
    native::binary_(BinaryOp::Add, loss_sum, native::to(loss.detach(), loss_sum.device(), DType::f32),
                    static_cast<double>(b));
    const Tensor pred = argmax(logits.detach(), 1);
    const Tensor hit = native::to(eq(pred, labels), labels.device(), DType::f32);
    native::binary_(BinaryOp::Add, correct, native::sum(hit));
    seen += b;
  }
  double mean_loss() const { return seen ? loss_sum.item() / static_cast<double>(seen) : 0.0; }
  double accuracy() const { return seen ? correct.item() / static_cast<double>(seen) : 0.0; }
  std::vector<double> sums() const { return {loss_sum.item(), correct.item(), static_cast<double>(seen)}; }
};

// Mean loss and accuracy from {loss sum, correct, count} (summed over the ranks when distributed).
struct Evaluation {
  double loss = 0, acc = 0;
  explicit Evaluation(const std::vector<double>& s)
      : loss(s[2] > 0 ? s[0] / s[2] : 0.0), acc(s[2] > 0 ? s[1] / s[2] : 0.0) {}
};

// This rank's {loss sum, correct, count} over its shard of the validation set.
std::vector<double> evaluate(nn::Module& model, data::DataLoader& loader, Device dev, const ClassifyConfig& c,
                             const data::U8Normalizer& normalize) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  RunningStats st;
  st.reset(dev);
  loader.start_epoch(0);
  data::Batch hb;
  while (loader.next(&hb)) {
    const data::Batch b = data::to_device(hb, dev);
    const Tensor x = normalize(b.images);
    Tensor logits, loss;
    {
      amp::AutocastGuard ac(c.amp == "bf16" ? DType::bf16 : DType::f16, c.amp != "none");
      logits = model.forward(x);
      loss = nn::functional::cross_entropy(logits, b.labels);
    }
    st.add(loss, logits, b.labels);
  }
  model.train(was_training);
  return st.sums();
}

struct Trainer {
  ClassifyConfig cfg;
  Device dev;
  DistContext dist;  // rank, world, process group (apps/trainer_dist.h); world 1 when not distributed
  std::shared_ptr<data::ImageFolder> train_set, val_set;
  std::unique_ptr<data::DataLoader> train_loader, val_loader;
  std::shared_ptr<models::ResNet> model;          // the model itself (what is saved and evaluated)
  std::shared_ptr<dist::DDP> ddp;                 // wraps `model` when distributed
  std::optional<nn::SafeTensors> ckpt;            // the checkpoint being resumed from
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::LRScheduler> sched;
  std::unique_ptr<amp::GradScaler> scaler;
  std::unique_ptr<optim::ModelEMA> ema;
  int64_t num_classes = 0, img_size = 0, nb = 0;
  int64_t start_epoch = 0, global_step = 0;
  double best_acc = -1.0;
  data::U8Normalizer normalize{data::kImageNetMean, data::kImageNetStd};  // torchvision's habit

  void log(int level, const std::string& s) const {
    if (cfg.verbosity >= level) {
      std::printf("%s\n", s.c_str());
      std::fflush(stdout);
    }
  }

  void setup_data() {
    const fs::path root(cfg.data);
    if (!fs::exists(root / "train") && dist.is_main()) {  // rank 0 generates; the others wait below
      RG_CHECK(cfg.make_data_if_missing, "no dataset at '", cfg.data, "' (expected ", (root / "train").string(),
               "/<class>/*.png)");
      log(1, "no dataset at '" + cfg.data + "': generating the synthetic shapes dataset there");
      data::ClassifyDataOptions o;
      o.out = cfg.data;
      data::make_classify_dataset(o, cfg.verbosity >= 1);
    }
    dist.barrier();
    RG_CHECK(fs::exists(root / "train"), "no dataset at '", cfg.data, "' (expected ", (root / "train").string(),
             "/<class>/*.png)");
    train_set = std::make_shared<data::ImageFolder>((root / "train").string());
    RG_CHECK(fs::exists(root / "val"), "dataset '", cfg.data, "' has no val/ split");
    val_set = std::make_shared<data::ImageFolder>((root / "val").string(), train_set->classes());
    num_classes = cfg.num_classes > 0 ? cfg.num_classes : train_set->num_classes();
    RG_CHECK(num_classes >= train_set->num_classes(), "--num-classes ", num_classes, " is less than the ",
             train_set->num_classes(), " class folders of '", cfg.data, "/train'");
    if (cfg.img_size > 0) {
      img_size = cfg.img_size;
    } else {
      const data::Image first = train_set->load(0);
      img_size = std::min(first.height, first.width);
    }
    data::ClassifyTransform ttf;
    ttf.size = img_size;
    ttf.train = cfg.augment;
    ttf.crop_padding = std::max<int64_t>(1, img_size / 8);
    data::ClassifyTransform vtf;
    vtf.size = img_size;
    data::DataLoaderOptions lo;
    lo.batch_size = cfg.batch_size;
    lo.workers = cfg.workers;
    lo.pin_memory = dev.is_cuda();
    lo.seed = cfg.seed;
    RG_CHECK(train_set->size() >= 2, "the training set has fewer than 2 images");
    std::shared_ptr<const data::Sampler> train_sampler, val_sampler;
    if (dist.enabled) {
      // Every rank reads its shard (Note [Distributed classifier training]); the loader passes the
      // epoch to the sampler (set_epoch) at every start_epoch.
      data::DistributedSampler::Options so;
      so.shuffle = true;
      so.seed = cfg.seed;
      train_sampler = std::make_shared<data::DistributedSamplerAdapter>(
          data::DistributedSampler(train_set->size(), dist.world, dist.rank, so));
      so.shuffle = false;
      so.pad = false;  // evaluation: every sample exactly once, ranks may differ by one
      val_sampler = std::make_shared<data::DistributedSamplerAdapter>(
          data::DistributedSampler(val_set->size(), dist.world, dist.rank, so));
    } else {
      train_sampler = std::make_shared<data::RandomSampler>(train_set->size(), cfg.seed);
      val_sampler = std::make_shared<data::SequentialSampler>(val_set->size());
    }
    // Batch norm cannot train on a final batch of one sample: drop it in that case only.
    lo.drop_last = train_sampler->size() % cfg.batch_size == 1;
    train_loader = std::make_unique<data::DataLoader>(train_set, train_sampler, ttf, lo);
    lo.drop_last = false;
    val_loader = std::make_unique<data::DataLoader>(val_set, val_sampler, vtf, lo);
    nb = train_loader->num_batches();
    RG_CHECK(nb >= 1, "the training set (", train_set->size(), " images over ", dist.world,
             " rank(s)) makes no batch of 2 or more samples");
  }

  // The model (with the resumed weights, before DDP wraps it: its broadcast from rank 0 then agrees
  // with what every rank loaded), DDP, and the optimizer on the wrapped module's parameters.
  void setup_model() {
    manual_seed(cfg.seed);  // the initial weights follow from the seed
    model = make_model(cfg, num_classes);
    if (dist.enabled && cfg.sync_bn) {
      const std::shared_ptr<nn::Module> root = dist::convert_sync_batchnorm(model, dist.pg);
      RG_CHECK(root.get() == model.get(), "convert_sync_batchnorm replaced the ResNet root");
    }
    model->to(dev);
    model->train();
    if (!cfg.resume.empty()) {
      ckpt = nn::load_safetensors(cfg.resume);
      trainer_meta(*ckpt, cfg.resume);
      nn::StateDict weights;
      for (const auto& [k, v] : ckpt->tensors) {
        if (!is_train_state_key(k)) weights.emplace_back(k, v);
      }
      model->load_state_dict(weights, /*strict=*/true);
    }
    if (dist.enabled) {
      dist::DDPOptions o;
      o.process_group = dist.pg;
      o.bucket_cap_mb = cfg.bucket_cap_mb;
      o.find_unused_parameters = cfg.find_unused_parameters;
      ddp = std::make_shared<dist::DDP>(model, o);
    }
    opt = make_optimizer(cfg, ddp ? ddp->parameters() : model->parameters());  // the same tensors
    sched = make_scheduler(cfg, *opt, nb);
    amp::GradScalerOptions so;
    so.enabled = cfg.amp == "f16";
    scaler = std::make_unique<amp::GradScaler>(so);
    if (dist.enabled && scaler->is_enabled()) dist::sync_grad_scaler(*scaler, dist.pg);  // same skipped steps
    if (cfg.ema) {
      optim::EMAOptions eo;
      eo.decay = cfg.ema_decay;
      ema = std::make_unique<optim::ModelEMA>(*model, eo);
    }
  }

  void save(const std::string& path, double val_acc, const EpochStats& es) const {
    nn::StateDict tensors = model->state_dict();
    nn::Metadata meta;
    nn::put_train_state(tensors, meta, "optimizer", opt->state_dict());
    nn::put_train_state(tensors, meta, "scheduler", sched->state_dict());
    if (scaler->is_enabled()) nn::put_train_state(tensors, meta, "scaler", scaler->state_dict());
    if (ema) nn::put_train_state(tensors, meta, "ema", ema->state_dict());
    Json t = Json::object();
    t.set("format", kFormat);
    const int64_t epochs_done = global_step / std::max<int64_t>(nb, 1);
    t.set("epoch", epochs_done);
    t.set("global_step", global_step);
    t.set("best_acc", best_acc);
    t.set("val_acc", val_acc);
    Json mv = Json::object();
    mv.set("loss", es.val_loss);
    mv.set("acc", es.val_acc);
    t.set("model_val", mv);
    t.set("world_size", static_cast<int64_t>(dist.world));
    Json sampler = Json::object();
    sampler.set("epoch", epochs_done);
    sampler.set("seed", static_cast<int64_t>(cfg.seed));
    sampler.set("world_size", static_cast<int64_t>(dist.world));
    sampler.set("batch_size", cfg.batch_size);
    t.set("sampler", sampler);
    Json rng = Json::object();
    rng.set("seed", static_cast<int64_t>(default_generator().seed()));
    rng.set("offset", static_cast<int64_t>(default_generator().offset()));
    t.set("rng", rng);
    Json classes = Json::array();
    for (const auto& c : train_set->classes()) classes.push_back(c);
    t.set("classes", classes);
    t.set("img_size", img_size);
    t.set("num_classes", num_classes);
    t.set("config", cfg.to_json());
    meta.emplace_back("trainer", t.dump());
    meta.emplace_back("format", "pt");  // safetensors' convention for PyTorch state dicts
    nn::save_safetensors(path, tensors, meta);
  }

  // Note [Exact resume]
  // Everything a step depends on is restored: weights and buffers (BN statistics and
  // num_batches_tracked), optimizer state (momentum buffers, Adam moments and step counts,
  // hyper-parameters), the schedule's step, the GradScaler's scale and tracker, the EMA, and the
  // global step; the data order and augmentation follow from (seed, epoch, index) alone (Note
  // [Loader determinism]), and the default generator's (seed, offset) is put back. On the CPU, whose
  // kernels are deterministic for a fixed thread count, a resumed run therefore ends bitwise equal
  // to an uninterrupted one (tests/e2e/test_train_classify.cpp checks it). In distributed mode the
  // same holds at the same world size; at another one the run re-plans (Note [Distributed
  // classifier training]). setup_model() has loaded the weights already.
  void resume(const std::string& path) {
    const nn::SafeTensors& ck = *ckpt;
    const Json t = trainer_meta(ck, path);
    opt->load_state_dict(nn::get_train_state(ck, "optimizer"));
    // The same run length continues the saved schedule exactly; another --epochs re-plans the
    // schedule for the new length and jumps to the current step (every schedule is a closed form).
    const int64_t saved_epochs = t["config"]["epochs"].as_int();
    const int64_t step_now = t["global_step"].as_int();
    const int64_t saved_world = t.find("world_size") ? t["world_size"].as_int() : 1;
    start_epoch = t["epoch"].as_int();
    const bool replan_world = saved_world != dist.world;
    if (replan_world) {
      // Another world size: another number of steps per epoch. Continue at the saved epoch.
      sched->set_step(start_epoch * nb);
      log(1, "resume: the checkpoint was trained on " + std::to_string(saved_world) + " rank(s), this run has " +
                 std::to_string(dist.world) + ": continuing at epoch " + std::to_string(start_epoch) +
                 " with the schedule re-planned for " + std::to_string(nb) +
                 " steps per epoch (not bitwise an uninterrupted run)");
    } else if (saved_epochs == cfg.epochs) {
      sched->load_state_dict(nn::get_train_state(ck, "scheduler"));
    } else {
      sched->set_step(step_now);
      log(1, "resume: the schedule is re-planned for " + std::to_string(cfg.epochs) + " epochs (the checkpoint's run had " +
                 std::to_string(saved_epochs) + ")");
    }
    if (scaler->is_enabled() && nn::has_train_state(ck, "scaler")) {
      scaler->load_state_dict(nn::get_train_state(ck, "scaler"));
    }
    if (ema) {
      RG_CHECK(nn::has_train_state(ck, "ema"), "cannot resume '", path, "' with --ema: the checkpoint has no EMA");
      ema->load_state_dict(nn::get_train_state(ck, "ema"));
    }
    global_step = replan_world ? start_epoch * nb : step_now;
    best_acc = t["best_acc"].as_double();
    RG_CHECK(global_step == start_epoch * nb, "cannot resume from '", path, "': its global step ", global_step,
             " is not epoch ", start_epoch, " x ", nb, " batches per epoch (was the dataset or batch size changed?)");
    const Json& rng = t["rng"];
    default_generator().set_state(static_cast<uint64_t>(rng["seed"].as_int()), static_cast<uint64_t>(rng["offset"].as_int()));
    log(1, "resumed from " + path + " at epoch " + std::to_string(start_epoch) + " (step " +
               std::to_string(global_step) + ")");
  }

  EpochStats train_epoch(int64_t epoch) {
    EpochStats es;
    es.epoch = epoch + 1;
    model->train();
    RunningStats st;
    st.reset(dev);
    train_loader->start_epoch(epoch);
    char prefix[64];
    std::snprintf(prefix, sizeof(prefix), "epoch %lld/%lld", static_cast<long long>(epoch + 1),
                  static_cast<long long>(cfg.epochs));
    ProgressBar bar(prefix, nb, stdout_is_tty(), cfg.log_every);
    const bool show = cfg.verbosity >= 2;
    const DType amp_dtype = cfg.amp == "bf16" ? DType::bf16 : DType::f16;
    data::Batch hb;
    int64_t done = 0;
    while (train_loader->next(&hb)) {
      const data::Batch b = data::to_device(hb, dev);
      const Tensor x = normalize(b.images);  // (B, 3, S, S) f32
      opt->zero_grad();
      Tensor logits, loss;
      {
        amp::AutocastGuard ac(amp_dtype, cfg.amp != "none");
        logits = ddp ? ddp->forward(x) : model->forward(x);  // (B, classes)
        loss = nn::functional::cross_entropy(logits, b.labels, cfg.label_smoothing);
      }
      if (scaler->is_enabled()) {
        scaler->scale(loss).backward();
        scaler->step(*opt);
        scaler->update();
      } else {
        loss.backward();
        opt->step();
      }
      sched->step();
      if (ema) ema->update(*model);
      ++global_step;
      ++done;
      st.add(loss, logits, b.labels);
      if (show && bar.due(done)) {
        char stats[128];
        std::snprintf(stats, sizeof(stats), "loss %.4f  acc %.3f  lr %.4g", st.mean_loss(), st.accuracy(),
                      opt->param_groups()[0].lr());
        bar.update(done, st.seen * dist.world, stats);  // images/s over all ranks
      }
    }
    // The bar shows this rank's running figures; the epoch's are summed over the ranks.
    const Evaluation tr(dist.sum(st.sums()));
    es.train_loss = tr.loss;
    es.train_acc = tr.acc;
    es.seconds = bar.elapsed();
    es.images_per_sec = es.seconds > 0 ? static_cast<double>(st.seen * dist.world) / es.seconds : 0.0;
    es.lr = opt->param_groups()[0].lr();
    if (show) bar.finish();
    return es;
  }

  TrainResult run() {
    TrainResult res;
    res.world_size = dist.world;
    if (!cfg.resume.empty()) resume(cfg.resume);
    if (dist.is_main()) fs::create_directories(cfg.out);
    if (cfg.save_resumed && !cfg.resume.empty() && dist.is_main()) {
      save((fs::path(cfg.out) / "resumed.safetensors").string(), best_acc, EpochStats{});
    }
    res.last_path = (fs::path(cfg.out) / "last.safetensors").string();
    res.best_path = (fs::path(cfg.out) / "best.safetensors").string();
    {
      char line[512];
      std::snprintf(line, sizeof(line),
                    "train-classifier: %s%s width %lld, %lld classes, %lldx%lld images: %lld train / %lld val, "
                    "batch %lld (%lld steps/epoch), %s lr %g, %s schedule, amp %s, device %s",
                    cfg.model.c_str(), cfg.small_input ? " (small input)" : "", static_cast<long long>(cfg.width),
                    static_cast<long long>(num_classes), static_cast<long long>(img_size),
                    static_cast<long long>(img_size), static_cast<long long>(train_set->size()),
                    static_cast<long long>(val_set->size()), static_cast<long long>(cfg.batch_size),
                    static_cast<long long>(nb), cfg.optimizer.c_str(), cfg.lr, cfg.scheduler.c_str(), cfg.amp.c_str(),
                    dev.str().c_str());
      log(1, line);
      if (dist.enabled) log(1, describe(dist, cfg.batch_size));
    }
    if (start_epoch >= cfg.epochs) {
      log(1, "nothing to do: the run has completed " + std::to_string(start_epoch) + " of " +
                 std::to_string(cfg.epochs) + " epochs (pass a larger --epochs to train longer)");
    }
    for (int64_t epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
      EpochStats es = train_epoch(epoch);
      // Every rank evaluates rank 0's weights and buffers (the saved ones) on its shard.
      dist.broadcast_buffers(*model);
      const Evaluation v(dist.sum(evaluate(*model, *val_loader, dev, cfg, normalize)));
      es.val_loss = v.loss;
      es.val_acc = v.acc;
      double score = v.acc;
      if (ema) {
        dist.broadcast_buffers(*ema->module());
        es.ema_val_acc = Evaluation(dist.sum(evaluate(*ema->module(), *val_loader, dev, cfg, normalize))).acc;
        score = es.ema_val_acc;
      }
      es.skipped_steps = scaler->skipped_steps();
      const bool improved = score > best_acc;
      if (improved) best_acc = score;
      if (dist.is_main()) {
        save(res.last_path, score, es);
        if (improved) save(res.best_path, score, es);
      }
      dist.barrier();  // nobody goes on (or reads the checkpoint) before it is written
      char line[512];
      int n = std::snprintf(line, sizeof(line), "epoch %lld/%lld  train loss %.4f acc %.3f  val loss %.4f acc %.3f",
                            static_cast<long long>(es.epoch), static_cast<long long>(cfg.epochs), es.train_loss,
                            es.train_acc, es.val_loss, es.val_acc);
      if (ema) n += std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), " (ema %.3f)", es.ema_val_acc);
      n += std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), "  lr %.4g  %.1fs  %.0f img/s%s", es.lr,
                         es.seconds, es.images_per_sec, improved ? "  * best" : "");
      if (es.skipped_steps > 0) {
        std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), "  (%lld skipped f16 steps)",
                      static_cast<long long>(es.skipped_steps));
      }
      log(1, line);
      res.history.push_back(es);
      if (cfg.stop_after_epochs > 0 && epoch + 1 >= cfg.stop_after_epochs && epoch + 1 < cfg.epochs) {
        log(1, "stopping after epoch " + std::to_string(epoch + 1) + " (--stop-after-epochs)");
        break;
      }
    }
    res.best_acc = best_acc;
    res.global_step = global_step;
    res.epochs_done = global_step / std::max<int64_t>(nb, 1);
    log(1, "done: best val accuracy " + std::to_string(best_acc) + "; checkpoints in " + cfg.out +
               " (last.safetensors, best.safetensors)");
    return res;
  }
};

}  // namespace

ClassifyConfig resolve_defaults(ClassifyConfig c) {
  if (c.lr <= 0) c.lr = c.optimizer == "sgd" ? 0.1 : 2e-3;
  if (c.weight_decay < 0) c.weight_decay = c.optimizer == "sgd" ? 5e-4 : (c.optimizer == "adamw" ? 0.01 : 0.0);
  return c;
}

TrainResult train_classifier(const ClassifyConfig& cfg_in) {
  ClassifyConfig cfg = resolve_defaults(cfg_in);
  validate(cfg);
  // The device, and in distributed mode the process group. On an error the process is expected
  // to exit (the launcher then stops the other ranks), so the group is only torn down on success.
  DistContext dc = init_distributed(cfg);
  if (!dc.is_main()) cfg.verbosity = 0;  // rank 0 prints for everyone
  // Before the loader threads start, so that they inherit it. The previous state comes back at the end.
  const bool prev_flush_denormal = flush_denormal();
  if (cfg.flush_denormal) set_flush_denormal(true);
  TrainResult res;
  {
    Trainer t;  // holds the DDP, which must be gone before the group is destroyed
    t.cfg = cfg;
    t.dist = dc;
    t.dev = dc.device;
    t.setup_data();
    t.setup_model();
    res = t.run();
  }
  if (cfg.flush_denormal) set_flush_denormal(prev_flush_denormal);
  shutdown_distributed(dc);
  return res;
}

}  // namespace rg::app
