// The classification task (apps/tasks/classify.h): ImageFolder data, a ResNet, cross-entropy, and
// top-1 accuracy summed exactly over the ranks. Everything else is the training engine's.
#include "apps/tasks/classify.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "core/native.h"
#include "data/dataloader.h"
#include "data/image_folder.h"
#include "data/synthetic.h"
#include "data/transforms.h"
#include "models/resnet.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "train/data_util.h"

namespace fs = std::filesystem;

namespace rg::app {

RG_DEFINE_OPTIONS(ClassifyOptions, RG_CLASSIFY_OPTIONS)

namespace {
constexpr const char* kFormat = "ringgrad-classify-1";
using ClassifyLoader = train::LoaderOf<data::DataLoader, data::Batch>;
}  // namespace

ClassifyConfig::ClassifyConfig() {
  optimizer = "adamw";
  out = "runs/classify";
}

train::Options ClassifyConfig::bind() {
  train::Options o;
  o.add(ClassifyOptions::specs(), static_cast<ClassifyOptions*>(this));
  o.add(train::TrainOptions::specs(), static_cast<train::TrainOptions*>(this));
  return o;
}

Json ClassifyConfig::to_json() const { return const_cast<ClassifyConfig*>(this)->bind().to_json(); }

ClassifyConfig ClassifyConfig::from_checkpoint(const std::string& path) {
  const nn::SafeTensors ck = nn::load_safetensors(path);
  const std::string* m = ck.meta("trainer");
  RG_CHECK(m, "'", path, "' is not a ringgrad classifier checkpoint (no \"trainer\" metadata)");
  const Json j = Json::parse(*m);
  RG_CHECK(j.find("format") && j["format"].as_string() == kFormat, "'", path, "' has an unknown trainer format");
  ClassifyConfig c;
  c.bind().from_json(j["config"], path);
  return c;
}

ClassifyConfig config_from_checkpoint(const std::string& path) { return ClassifyConfig::from_checkpoint(path); }

namespace {

// Per-batch sums, kept on the device: {loss x batch, correct} (0-dim f32 each).
std::vector<Tensor> batch_sums(const Tensor& loss, const Tensor& logits, const Tensor& labels) {
  NoGradGuard ng;
  const double b = static_cast<double>(labels.size(0));
  const Tensor hit = native::to(eq(argmax(logits.detach(), 1), labels), labels.device(), DType::f32);
  return {native::to(loss.detach(), loss.device(), DType::f32) * b, native::sum(hit)};
}

class ClassifyTask : public train::Task {
 public:
  explicit ClassifyTask(const ClassifyConfig& cfg) : cfg_(cfg) {}

  train::TaskInfo info() const override {
    train::TaskInfo i;
    i.command = "train-classifier";
    i.format = kFormat;
    i.terms = {{"loss", 0, 4}, {"acc", 0, 3}};
    i.metrics = {{"loss", 0, 4}, {"acc", 0, 3}};
    i.fitness_key = "acc";
    return i;
  }
  Json options_json() const override {
    ClassifyOptions own = cfg_;
    train::Options o;
    o.add(ClassifyOptions::specs(), &own);
    return o.to_json();
  }
  double default_lr(const std::string& optimizer) const override { return optimizer == "sgd" ? 0.1 : 2e-3; }
  double default_weight_decay(const std::string& optimizer) const override {
    return optimizer == "sgd" ? 5e-4 : (optimizer == "adamw" ? 0.01 : 0.0);
  }
  void check_options(const train::TrainOptions& o) const override {
    ClassifyOptions own = cfg_;
    train::Options opts;
    opts.add(ClassifyOptions::specs(), &own);
    opts.check();
    RG_CHECK(o.batch_size >= 2, "--batch-size must be >= 2 (batch norm needs 2 samples), got ", o.batch_size);
    RG_CHECK(o.task.empty() || o.task == "classify", "train-classifier: --task must be classify, got '", o.task, "'");
  }

  void prepare_data(const train::Context& ctx) override {
    const fs::path root(cfg_.data);
    if (train::should_make_data(cfg_.data, fs::exists(root / "train"), kClassifyDataDefault, ctx.opts.make_data,
                                (root / "train").string() + "/<class>/*.png")) {
      ctx.log(1, "no dataset at '" + cfg_.data + "': generating the synthetic shapes dataset there");
      data::ClassifyDataOptions o;
      o.out = cfg_.data;
      data::make_classify_dataset(o, ctx.opts.verbosity >= 1);
    }
  }

  train::TaskData build_data(const train::Context& ctx) override {
    const fs::path root(cfg_.data);
    RG_CHECK(fs::exists(root / "train"), "no dataset at '", cfg_.data, "' (expected ", (root / "train").string(),
             "/<class>/*.png)");
    train_set_ = std::make_shared<data::ImageFolder>((root / "train").string());
    RG_CHECK(fs::exists(root / "val"), "dataset '", cfg_.data, "' has no val/ split");
    val_set_ = std::make_shared<data::ImageFolder>((root / "val").string(), train_set_->classes());
    num_classes_ = cfg_.num_classes > 0 ? cfg_.num_classes : train_set_->num_classes();
    RG_CHECK(num_classes_ >= train_set_->num_classes(), "--num-classes ", num_classes_, " is less than the ",
             train_set_->num_classes(), " class folders of '", cfg_.data, "/train'");
    RG_CHECK(train_set_->size() >= 2, "the training set has fewer than 2 images");
    if (cfg_.img_size > 0) {
      img_size_ = cfg_.img_size;
    } else {  // the first image that loads (a corrupt one is replaced in training: Note [Corrupt samples])
      for (int64_t i = 0; img_size_ == 0; ++i) {
        try {
          const data::Image first = train_set_->load(i);
          img_size_ = std::min(first.height, first.width);
        } catch (const data::SampleLoadError&) {
          if (ctx.opts.strict_data || i + 1 >= std::min<int64_t>(train_set_->size(), 16)) throw;
        }
      }
    }
    data::ClassifyTransform ttf;
    ttf.size = img_size_;
    ttf.train = cfg_.augment;
    ttf.crop_padding = std::max<int64_t>(1, img_size_ / 8);
    data::ClassifyTransform vtf;
    vtf.size = img_size_;
    data::DataLoaderOptions lo;
    lo.batch_size = ctx.batch;
    lo.workers = static_cast<int>(ctx.opts.workers);
    lo.pin_memory = ctx.device.is_cuda();
    lo.seed = static_cast<uint64_t>(ctx.opts.seed);
    lo.strict_data = ctx.opts.strict_data;  // else a file that fails to load is replaced (Note [Corrupt samples])
    const auto train_sampler = train::make_train_sampler(train_set_->size(), ctx);
    const auto val_sampler = train::make_val_sampler(val_set_->size(), ctx);
    // Batch norm cannot train on a final batch of one sample: drop it in that case only.
    lo.drop_last = train_sampler->size() % ctx.batch == 1;
    auto samples = [](const data::Batch& b) { return b.labels.size(0); };
    train::TaskData d;
    d.train = std::make_unique<ClassifyLoader>(
        std::make_unique<data::DataLoader>(train_set_, train_sampler, ttf, lo), samples);
    lo.drop_last = false;
    d.val = std::make_unique<ClassifyLoader>(std::make_unique<data::DataLoader>(val_set_, val_sampler, vtf, lo), samples);
    d.train_size = train_set_->size();
    d.val_size = val_set_->size();
    return d;
  }

  std::string describe() const override {
    char s[256];
    std::snprintf(s, sizeof(s), "%s%s width %lld, %lld classes, %lldx%lld images: %lld train / %lld val",
                  cfg_.model.c_str(), cfg_.small_input ? " (small input)" : "", static_cast<long long>(cfg_.width),
                  static_cast<long long>(num_classes_), static_cast<long long>(img_size_),
                  static_cast<long long>(img_size_), static_cast<long long>(train_set_->size()),
                  static_cast<long long>(val_set_->size()));
    return s;
  }

  std::shared_ptr<nn::Module> build_model(const train::Context&) override {
    models::ResNetOptions o;
    o.num_classes = num_classes_;
    o.small_input = cfg_.small_input;
    o.base_planes = cfg_.width;
    if (cfg_.model == "resnet18") return models::resnet18(o);
    if (cfg_.model == "resnet34") return models::resnet34(o);
    return models::resnet50(o);
  }

  train::StepLoss loss(nn::Module& net, const train::Batch& batch, const train::Context& ctx) override {
    const data::Batch b = data::to_device(train::batch_value<data::Batch>(batch), ctx.device);
    const Tensor logits = net.forward(normalize_(b.images));  // (B, classes)
    train::StepLoss out;
    out.loss = nn::functional::cross_entropy(logits, b.labels, cfg_.label_smoothing);
    out.sums = batch_sums(out.loss, logits, b.labels);
    out.count = static_cast<double>(b.labels.size(0));
    return out;
  }

  // {loss, correct, count} over this rank's shard, summed over the ranks in one allreduce: the
  // accuracy is exactly the single-process accuracy of the same weights.
  train::Figures evaluate(nn::Module& model, train::Loader& val, const train::Context& ctx) override {
    Tensor loss_sum = zeros({}, TensorOptions(DType::f32).device(ctx.device));
    Tensor correct = zeros({}, TensorOptions(DType::f32).device(ctx.device));
    double n = 0;
    val.start_epoch(0, 0);
    while (const std::unique_ptr<train::Batch> hb = val.next()) {
      const data::Batch b = data::to_device(train::batch_value<data::Batch>(*hb), ctx.device);
      const Tensor logits = model.forward(normalize_(b.images));
      const Tensor loss = nn::functional::cross_entropy(logits, b.labels);
      const std::vector<Tensor> s = batch_sums(loss, logits, b.labels);
      native::binary_(BinaryOp::Add, loss_sum, s[0]);
      native::binary_(BinaryOp::Add, correct, s[1]);
      n += static_cast<double>(b.labels.size(0));
    }
    const std::vector<double> t = ctx.dist.sum({loss_sum.item(), correct.item(), n});
    return {{"loss", t[2] > 0 ? t[0] / t[2] : 0.0, 4}, {"acc", t[2] > 0 ? t[1] / t[2] : 0.0, 3}};
  }

  double fitness(const train::Figures& m) const override { return train::figure(m, "acc"); }

  Json metadata() const override {
    Json t = Json::object();
    Json classes = Json::array();
    for (const auto& c : train_set_->classes()) classes.push_back(c);
    t.set("classes", classes);
    t.set("img_size", img_size_);
    t.set("num_classes", num_classes_);
    return t;
  }

 private:
  ClassifyConfig cfg_;
  std::shared_ptr<data::ImageFolder> train_set_, val_set_;
  int64_t num_classes_ = 0, img_size_ = 0;
  data::U8Normalizer normalize_{data::kImageNetMean, data::kImageNetStd};  // torchvision's habit
};

}  // namespace

TrainResult train_classifier(const ClassifyConfig& cfg, train::TrainerHooks hooks) {
  ClassifyTask task(cfg);
  const train::RunResult r = train::train(cfg, task, std::move(hooks));
  TrainResult res;
  for (const auto& e : r.history) {
    EpochStats s;
    s.epoch = e.epoch;
    s.train_loss = train::figure(e.train, "loss");
    s.train_acc = train::figure(e.train, "acc");
    if (e.validated) {
      s.val_loss = train::figure(e.val, "loss");
      s.val_acc = train::figure(e.val, "acc");
    }
    if (!e.ema_val.empty()) s.ema_val_acc = train::figure(e.ema_val, "acc");
    s.lr = e.lr;
    s.seconds = e.seconds;
    s.images_per_sec = e.images_per_sec;
    s.skipped_steps = e.skipped_steps;
    res.history.push_back(s);
  }
  res.best_acc = r.best_fitness;
  res.epochs_done = r.epochs_done;
  res.global_step = r.global_step;
  res.world_size = r.world_size;
  res.last_path = r.last_path;
  res.best_path = r.best_path;
  return res;
}

}  // namespace rg::app
