// The detection task (apps/tasks/detect.h): a YOLO data.yaml, a darknet YOLO, the v3 or darknet
// loss, and COCO mAP over the ranks' gathered records (apps/tasks/detect_eval.h). Everything else is
// the training engine's.
#include "apps/tasks/detect.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <set>

#include "apps/tasks/detect_eval.h"
#include "core/error.h"
#include "data/detection_loader.h"
#include "data/draw.h"
#include "data/plot.h"
#include "data/synthetic.h"
#include "data/synthetic_detect.h"
#include "data/transforms.h"
#include "data/yaml_util.h"
#include "data/yolo_format.h"
#include "metrics/confusion_matrix.h"
#include "models/autoanchor.h"
#include "models/darknet.h"
#include "models/darknet_weights.h"
#include "models/yolo_loss.h"
#include "nn/checkpoint.h"
#include "train/data_util.h"

namespace fs = std::filesystem;

namespace rg::app {

RG_DEFINE_OPTIONS(DetectOptions, RG_DETECT_OPTIONS)

DetectConfig::DetectConfig() {
  // The YOLOv3 PyTorch recipe (ultralytics hyp.scratch + train.py), where the engine's defaults differ.
  optimizer = "sgd";
  momentum = 0.937;
  nesterov = true;
  decay_norm_bias = false;
  warmup = "yolo";
  warmup_epochs = 3.0;
  warmup_bias_lr = 0.1;
  warmup_momentum = 0.8;
  scheduler = "cosine";
  lrf = 0.01;
  ema_decay = 0.9999;
  batch_size = 16;
  epochs = 300;
  out = "runs/detect";
}

train::Options DetectConfig::bind() {
  train::Options o;
  o.add(DetectOptions::specs(), static_cast<DetectOptions*>(this));
  o.add(train::TrainOptions::specs(), static_cast<train::TrainOptions*>(this));
  return o;
}

Json DetectConfig::to_json() const { return const_cast<DetectConfig*>(this)->bind().to_json(); }

DetectConfig DetectConfig::from_checkpoint(const std::string& path) {
  const nn::SafeTensors ck = nn::load_safetensors(path);
  const std::string* m = ck.meta("trainer");
  RG_CHECK(m, "'", path, "' is not a ringgrad training checkpoint (no \"trainer\" metadata)");
  const Json j = Json::parse(*m);
  RG_CHECK(j.find("format") && j["format"].as_string() == kDetectFormat, "'", path,
           "' is not a detection checkpoint (format ", j.find("format") ? j["format"].dump() : "none", ")");
  DetectConfig c;
  c.bind().from_json(j["config"], path);
  return c;
}

namespace {

using DetectLoader = train::LoaderOf<data::DataLoader, data::Batch>;

// Note [Detection hyp file]
// --hyp reads an ultralytics hyp YAML: the augmentation keys through data::read_augment_yaml, and
// the loss gains here (box, obj, cls, cls_pw, obj_pw, anchor_t, label_smoothing). The optimizer keys
// of those files (lr0, lrf, momentum, weight_decay, warmup_*) are reported and not applied: the
// command line's options set those. fl_gamma must be 0 (no focal loss); other keys are reported
// as unknown.
struct Hyp {
  data::DetectionAugment augment;
  models::YoloLossOptions loss;
  std::vector<std::string> notes;
};

Hyp read_hyp(const std::string& path) {
  Hyp h;
  if (path.empty()) return h;
  h.augment = data::read_augment_yaml(path);
  const YAML::Node doc = data::load_yaml_file(path);
  struct Gain {
    const char* key;
    double* value;
    double lo;
  };
  const Gain gains[] = {{"box", &h.loss.box_gain, 0},     {"obj", &h.loss.obj_gain, 0},   {"cls", &h.loss.cls_gain, 0},
                        {"cls_pw", &h.loss.cls_pw, 0},     {"obj_pw", &h.loss.obj_pw, 0},  {"anchor_t", &h.loss.anchor_t, 1},
                        {"label_smoothing", &h.loss.label_smoothing, 0}};
  const std::set<std::string> augment_keys = {"hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear",
                                              "perspective", "flipud", "fliplr", "mosaic", "mixup"};
  const std::set<std::string> optimizer_keys = {"lr0", "lrf", "momentum", "weight_decay", "warmup_epochs",
                                                "warmup_momentum", "warmup_bias_lr"};
  const std::set<std::string> ignored_keys = {"iou_t", "anchors", "copy_paste", "giou", "fl_gamma"};
  std::string unused, unknown;
  for (const auto& kv : doc) {
    const std::string key = kv.first.as<std::string>();
    bool known = augment_keys.count(key) || ignored_keys.count(key);
    for (const Gain& g : gains) {
      if (key != g.key) continue;
      known = true;
      const double v = data::yaml_double(doc, key, path);
      RG_CHECK(v >= g.lo, data::yaml_where(path, kv.second), ": '", key, "' is ", v, ", expected >= ", g.lo);
      *g.value = v;
    }
    if (optimizer_keys.count(key)) {
      unused += (unused.empty() ? "" : ", ") + key;
      known = true;
    }
    if (!known) unknown += (unknown.empty() ? "" : ", ") + key;
  }
  if (doc["fl_gamma"].IsDefined()) {
    RG_CHECK(data::yaml_double(doc, "fl_gamma", path) == 0.0, data::yaml_where(path, doc["fl_gamma"]),
             ": fl_gamma > 0 (focal loss) is not implemented");
  }
  if (!unused.empty()) h.notes.push_back("hyp " + path + ": " + unused + " not applied (the command line's --lr, --lrf, "
                                         "--momentum, --weight-decay, --warmup-* set them)");
  if (!unknown.empty()) h.notes.push_back("hyp " + path + ": unknown keys ignored: " + unknown);
  return h;
}

// --rect training: the images in aspect-ratio order (the same every epoch), padded by repeating
// its head to a multiple of the world, rank r taking every world-th one (as a DistributedSampler
// without shuffling does); each batch gets its own rectangular shape (Note [Rectangular batches]).
class RectTrainSampler : public data::Sampler {
 public:
  RectTrainSampler(const data::DetectionDataset& ds, int64_t world, int64_t rank) {
    const std::vector<int64_t> order = data::AspectRatioSampler(ds).indices(0);
    const int64_t n = static_cast<int64_t>(order.size()), per = (n + world - 1) / world;
    for (int64_t i = rank; i < per * world; i += world) mine_.push_back(order[static_cast<size_t>(i % n)]);
  }
  std::vector<int64_t> indices(int64_t) const override { return mine_; }
  int64_t size() const override { return static_cast<int64_t>(mine_.size()); }

 private:
  std::vector<int64_t> mine_;
};

// data.yaml for --data: the file itself, or DIR/data.yaml.
std::string data_yaml_path(const std::string& data) {
  const fs::path ext = fs::path(data).extension();
  if (ext == ".yaml" || ext == ".yml") return data;
  return (fs::path(data) / "data.yaml").string();
}

int64_t count_boxes(const data::DetectionDataset& ds) {
  int64_t n = 0;
  for (const auto& r : ds.records()) n += static_cast<int64_t>(r.boxes.size());
  return n;
}

std::string fmt_anchors(const std::vector<std::array<float, 2>>& a) {
  std::string s;
  char buf[48];
  for (const auto& x : a) {
    std::snprintf(buf, sizeof(buf), "%s%.0fx%.0f", s.empty() ? "" : ", ", x[0], x[1]);
    s += buf;
  }
  return s;
}

class DetectTask : public train::Task {
 public:
  explicit DetectTask(const DetectConfig& cfg) : cfg_(cfg) {}

  train::TaskInfo info() const override {
    train::TaskInfo i;
    i.command = "train-detector";
    i.format = kDetectFormat;
    i.global_batch = true;
    i.nominal_batch = 64;
    i.terms = {{"box", 0, 4}, {"obj", 0, 4}, {"cls", 0, 4}};
    i.metrics = detect_figure_names();
    i.fitness_key = "fitness";
    // v3: (lbox + lobj + lcls) x batch, summed over the accumulated micro-batches as ultralytics does;
    // darknet: per image, the micro-batches of a step averaged (darknet divides by its batch).
    i.mean_over_accumulation = cfg_.loss == "darknet";
    return i;
  }
  Json options_json() const override {
    DetectOptions own = cfg_;
    train::Options o;
    o.add(DetectOptions::specs(), &own);
    return o.to_json();
  }
  double default_lr(const std::string& optimizer) const override {
    if (cfg_.loss == "darknet") return 0.001;  // darknet's cfg learning_rate, for its per-image loss
    return optimizer == "sgd" ? 0.01 : 0.001;
  }
  double default_weight_decay(const std::string&) const override { return 5e-4; }
  void check_options(const train::TrainOptions& o) const override {
    DetectOptions own = cfg_;
    train::Options opts;
    opts.add(DetectOptions::specs(), &own);
    opts.check();
    RG_CHECK(o.task.empty() || o.task == "detect", "train-detector: --task must be detect, got '", o.task, "'");
    RG_CHECK(cfg_.img % 32 == 0, "--img ", cfg_.img, " must be a multiple of 32 (the YOLO models' largest stride)");
    RG_CHECK(!(cfg_.rect && cfg_.multi_scale), "--rect and --multi-scale do not combine (rectangular batches have "
             "shapes of their own)");
    RG_CHECK(cfg_.cutoff < 0 || !cfg_.weights.empty(), "--cutoff needs --weights");
  }

  void prepare_data(const train::Context& ctx) override {
    const std::string yaml = data_yaml_path(cfg_.data);
    const fs::path ext = fs::path(cfg_.data).extension();
    const std::string dir = ext == ".yaml" || ext == ".yml" ? fs::path(cfg_.data).parent_path().string() : cfg_.data;
    if (train::should_make_data(dir, fs::exists(yaml), kDetectDataDefault, ctx.opts.make_data, yaml)) {
      ctx.log(1, "no dataset at '" + dir + "': generating the synthetic shapes detection dataset there");
      data::DetectDataOptions o;
      o.out = dir;
      data::make_detect_dataset(o, ctx.opts.verbosity >= 1);
    }
  }

  train::TaskData build_data(const train::Context& ctx) override {
    yaml_ = data_yaml_path(cfg_.data);
    RG_CHECK(fs::exists(yaml_), "no dataset at '", cfg_.data, "' (expected a data.yaml file, or a folder holding one)");
    const data::DataYaml y = data::read_data_yaml(yaml_);
    data_root_ = y.root;
    names_ = y.names;
    train_set_ = std::make_shared<data::DetectionDataset>(data::load_yolo(y, "train"));
    val_set_ = std::make_shared<data::DetectionDataset>(data::load_yolo(y, "val"));
    ctx.log(1, "train: " + train_set_->report().summary());
    ctx.log(1, "val: " + val_set_->report().summary());
    train_boxes_ = count_boxes(*train_set_);
    val_boxes_ = count_boxes(*val_set_);
    RG_CHECK(train_set_->size() > 0, "the training split of ", yaml_, " has no usable image");
    RG_CHECK(val_set_->size() > 0, "the validation split of ", yaml_, " has no usable image");
    if (train_boxes_ == 0) {
      ctx.log(1, "WARNING: the training labels of " + yaml_ + " hold no box at all: every image is background, so "
                 "the model can only learn to detect nothing (check the labels/ folders and the label summary above)");
    }
    if (val_boxes_ == 0) {
      ctx.log(1, "WARNING: the validation labels of " + yaml_ + " hold no box: mAP is undefined and reported as 0");
    }
    hyp_ = read_hyp(cfg_.hyp);
    for (const auto& n : hyp_.notes) ctx.log(1, n);
    if (!cfg_.mosaic) hyp_.augment.mosaic = 0.0;
    loss_opts_ = hyp_.loss;
    loss_opts_.kind = models::parse_yolo_loss_kind(cfg_.loss);
    loss_opts_.box_iou = models::parse_iou_kind(cfg_.iou_loss);
    loss_opts_.img_size = cfg_.img;
    std::string note;
    model_cfg_ = detector_cfg(cfg_.cfg, cfg_.rewrite_classes, static_cast<int64_t>(names_.size()), yaml_, &note);
    if (!note.empty()) ctx.log(1, note);
    stride_ = model_cfg_.max_stride();
    RG_CHECK(cfg_.img % stride_ == 0, "--img ", cfg_.img, " is not a multiple of ", model_cfg_.name,
             "'s largest stride ", stride_);
    check_anchors(ctx);
    warn_lr(ctx);
    return make_loaders(ctx);
  }

  std::string describe() const override {
    char s[512];
    std::snprintf(s, sizeof(s), "%s, %zu classes, %.2fM parameters, %lld px%s%s: %lld train / %lld val images (%lld / %lld boxes)",
                  model_cfg_.name.c_str(), names_.size(), static_cast<double>(params_) / 1e6,
                  static_cast<long long>(cfg_.img), cfg_.multi_scale ? " (multi-scale)" : "", cfg_.rect ? " (rect)" : "",
                  static_cast<long long>(train_set_->size()), static_cast<long long>(val_set_->size()),
                  static_cast<long long>(train_boxes_), static_cast<long long>(val_boxes_));
    return std::string(s) + ", " + cfg_.loss + " loss";
  }

  std::shared_ptr<nn::Module> build_model(const train::Context& ctx) override {
    auto model = std::make_shared<models::Darknet>(model_cfg_);
    if (!cfg_.weights.empty()) ctx.log(1, load_initial_weights(*model, cfg_.weights, cfg_.cutoff));
    heads_ = model->heads();
    params_ = 0;
    for (const Tensor& p : model->parameters()) params_ += p.numel();
    return model;
  }

  train::StepLoss loss(nn::Module& net, const train::Batch& batch, const train::Context& ctx) override {
    const data::Batch& host = train::batch_value<data::Batch>(batch);
    if (!plotted_train_ && ctx.dist.is_main() && ctx.opts.verbosity > 0) plot_train_batch(host, ctx);
    const data::Batch b = data::to_device(host, ctx.device);
    const int64_t H = b.images.size(2), W = b.images.size(3);
    const Tensor pred = net.forward(to_unit_(b.images));  // (B, rows, 5 + C)
    const models::YoloLossResult r = models::yolo_loss(pred, b.targets, heads_, H, W, loss_opts_);
    train::StepLoss out;
    const double B = static_cast<double>(b.images.size(0));
    if (loss_opts_.kind == models::YoloLossKind::V3) {
      // DDP averages the ranks' gradients: x world makes the step that of the global batch's
      // (lbox + lobj + lcls) x batch, as ultralytics' train.py does (loss *= WORLD_SIZE).
      out.loss = ctx.dist.enabled ? r.total * static_cast<double>(ctx.dist.world) : r.total;
      out.sums = {r.box, r.obj, r.cls};
    } else {
      out.loss = r.total / B;  // per image: DDP's average over equal shards is the global batch's
      out.sums = {r.box / B, r.obj / B, r.cls / B};
    }
    out.count = 1;  // the running figures are means over batches
    return out;
  }

  std::string batch_note(const train::Batch& batch) const override {
    const data::Batch& b = train::batch_value<data::Batch>(batch);
    char s[96];
    std::snprintf(s, sizeof(s), "targets %lld  size %lldx%lld", static_cast<long long>(b.targets.size(0)),
                  static_cast<long long>(b.images.size(3)), static_cast<long long>(b.images.size(2)));
    return s;
  }

  train::Figures evaluate(nn::Module& model, train::Loader& val, const train::Context& ctx) override {
    DetectEvalSettings s;
    s.conf = cfg_.val_conf;
    s.iou = cfg_.val_iou;
    s.max_det = cfg_.max_det;
    const std::string plot =
        ctx.dist.is_main() && ctx.opts.verbosity > 0 ? (fs::path(ctx.opts.out) / "val_batch0_pred.jpg").string() : "";
    last_eval_ = evaluate_detector(model, heads_, val, *val_set_, ctx.dist, ctx.device, s, plot);
    return detect_figures(last_eval_.metrics);
  }

  double fitness(const train::Figures& m) const override {
    return 0.1 * train::figure(m, "mAP50") + 0.9 * train::figure(m, "mAP50-95");
  }

  Json metadata() const override {
    Json t = Json::object();
    Json names = Json::array();
    for (const auto& n : names_) names.push_back(n);
    t.set("names", names);
    t.set("nc", static_cast<int64_t>(names_.size()));
    t.set("img", cfg_.img);
    t.set("stride", stride_);
    t.set("cfg", model_cfg_.name);
    t.set("cfg_text", models::darknet_cfg_text(model_cfg_));
    Json anchors = Json::array();
    for (const auto& a : heads_.empty() ? std::vector<std::array<float, 2>>{} : heads_[0].all_anchors) {
      Json p = Json::array();
      p.push_back(static_cast<double>(a[0]));
      p.push_back(static_cast<double>(a[1]));
      anchors.push_back(p);
    }
    t.set("anchors", anchors);
    t.set("data", yaml_);
    return t;
  }

  void on_epoch_end(const train::EpochEnd& e, const train::Context& ctx) override {
    if (auto* dn = dynamic_cast<models::Darknet*>(e.model)) {
      // darknet's header counts the images trained on.
      dn->set_seen(static_cast<uint64_t>(e.epoch) * static_cast<uint64_t>(train_set_->size()));
      models::save_darknet_weights(*dn, (fs::path(e.out) / "last.weights").string());
    }
    if (e.final && e.metrics) {
      ctx.log(1, "validation of the final model (" + std::string(ctx.opts.ema ? "EMA" : "model") + "), " +
                     std::to_string(last_eval_.images) + " images:\n" + per_class_table(last_eval_, names_));
    }
    write_pictures(e);
  }

 private:
  // AutoAnchor at start (Note [Anchor ratio metric]): the cfg's anchors against the training
  // labels at --img; with --fit-anchors, k-means + genetic anchors replace them when BPR < 0.98.
  void check_anchors(const train::Context& ctx) {
    std::vector<models::WH> labels;
    for (const auto& r : train_set_->records()) {
      const double s = static_cast<double>(cfg_.img) / static_cast<double>(std::max(r.height, r.width));
      for (const auto& b : r.boxes) {
        if (b.width() > 0 && b.height() > 0) labels.push_back({static_cast<float>(b.width() * s), static_cast<float>(b.height() * s)});
      }
    }
    if (labels.empty()) return;
    const auto anchors = model_cfg_.heads[0].all_anchors.empty() ? model_cfg_.heads[0].anchors : model_cfg_.heads[0].all_anchors;
    const models::AnchorMetrics m = models::anchor_metrics(labels, anchors, loss_opts_.anchor_t);
    char line[256];
    std::snprintf(line, sizeof(line), "AutoAnchor: %.2f anchors per target, best possible recall %.4f (anchors %s)",
                  m.aat, m.bpr, fmt_anchors(anchors).c_str());
    ctx.log(1, line);
    if (m.bpr >= 0.98) return;
    if (!cfg_.fit_anchors) {
      ctx.log(1, "WARNING: the cfg's anchors fit these labels poorly (best possible recall " + std::to_string(m.bpr) +
                     " < 0.98): pass --fit-anchors to train with anchors fitted to the data (k-means + genetic, as "
                     "ultralytics' AutoAnchor)");
      return;
    }
    models::KMeansAnchorOptions ko;
    ko.n = static_cast<int64_t>(anchors.size());
    ko.anchor_t = loss_opts_.anchor_t;
    ko.seed = static_cast<uint64_t>(ctx.opts.seed);
    const models::AnchorFit fit = models::kmean_anchors(labels, ko);
    if (fit.metrics.bpr <= m.bpr) {
      ctx.log(1, "AutoAnchor: fitted anchors are no better (best possible recall " + std::to_string(fit.metrics.bpr) +
                     "); keeping the cfg's");
      return;
    }
    models::set_anchors(model_cfg_, fit.anchors);
    std::snprintf(line, sizeof(line), "AutoAnchor: training with fitted anchors %s (best possible recall %.4f)",
                  fmt_anchors(fit.anchors).c_str(), fit.metrics.bpr);
    ctx.log(1, line);
  }

  // The recipe's lr is for 64 images per optimizer step (ultralytics' nominal batch): say so when
  // this run steps over another number, since nothing scales the lr for the global batch.
  void warn_lr(const train::Context& ctx) const {
    const int64_t global = ctx.batch * std::max(ctx.dist.world, 1);
    const int64_t acc = ctx.opts.accumulate > 0 ? ctx.opts.accumulate
                                                : std::max<int64_t>(std::llround(64.0 / static_cast<double>(global)), 1);
    const int64_t per_step = global * acc;
    if (per_step == 64 || !ctx.opts.lr) return;
    char line[512];
    std::snprintf(line, sizeof(line),
                  "WARNING: lr %g is applied as given to %lld images per optimizer step (global batch %lld x accumulate "
                  "%lld); the recipe's lr is for a nominal batch of 64 images per step, and the lr is not scaled for the "
                  "global batch (the linear scaling rule would use %g; only the weight decay follows the batch)",
                  *ctx.opts.lr, static_cast<long long>(per_step), static_cast<long long>(global),
                  static_cast<long long>(acc), *ctx.opts.lr * static_cast<double>(per_step) / 64.0);
    ctx.log(1, line);
  }

  train::TaskData make_loaders(const train::Context& ctx) {
    data::DetectionPipeline p;
    p.img_size = cfg_.img;
    p.stride = stride_;
    p.augment = true;
    p.hyp = hyp_.augment;
    p.rect = cfg_.rect;
    p.multi_scale = cfg_.multi_scale;
    data::DataLoaderOptions lo;
    lo.batch_size = ctx.batch;
    lo.workers = static_cast<int>(ctx.opts.workers);
    lo.pin_memory = ctx.device.is_cuda();
    lo.seed = static_cast<uint64_t>(ctx.opts.seed);
    std::shared_ptr<const data::Sampler> sampler;
    if (cfg_.rect) {
      sampler = std::make_shared<RectTrainSampler>(*train_set_, ctx.dist.enabled ? ctx.dist.world : 1,
                                                   ctx.dist.enabled ? ctx.dist.rank : 0);
    } else {
      sampler = train::make_train_sampler(train_set_->size(), ctx);
    }
    auto samples = [](const data::Batch& b) { return b.images.size(0); };
    train::TaskData d;
    d.train = std::make_unique<DetectLoader>(
        std::make_unique<data::DataLoader>(sampler, data::detection_batch_fn(train_set_, p), lo), samples);
    d.val = make_detect_val_loader(val_set_, cfg_.img, stride_, cfg_.rect, ctx.batch, static_cast<int>(ctx.opts.workers),
                                   ctx.dist, ctx.device.is_cuda());
    d.train_size = train_set_->size();
    d.val_size = val_set_->size();
    return d;
  }

  // results.png from results.csv (written before this call), and after a validation PR_curve.png
  // and confusion_matrix.png of the evaluated model (the EMA's with --ema) on the whole val split.
  void write_pictures(const train::EpochEnd& e) const {
    const fs::path out(e.out);
    if (fs::exists(out / "results.csv")) data::plot_results_csv((out / "results.csv").string(), (out / "results.png").string());
    if (!e.metrics || last_eval_.records.empty()) return;
    const int64_t nc = static_cast<int64_t>(names_.size());
    const metrics::PrCurves pr = metrics::pr_curves_at_50(last_eval_.records, nc);
    data::plot_pr_curves(pr.precision, pr.recall_grid, pr.ap50, names_, (out / "PR_curve.png").string());
    metrics::ConfusionMatrix cm(nc);  // ultralytics' conf 0.25, IoU 0.45
    for (const auto& r : last_eval_.records) cm.add(r);
    data::plot_confusion_matrix(cm.counts(), names_, (out / "confusion_matrix.png").string());
  }

  // ultralytics' train_batch0.jpg: the first training batch this process makes, with its targets.
  void plot_train_batch(const data::Batch& host, const train::Context& ctx) {
    plotted_train_ = true;
    fs::create_directories(ctx.opts.out);
    const std::string path = (fs::path(ctx.opts.out) / "train_batch0.jpg").string();
    data::write_file_via_rename(path, data::encode_jpeg(data::plot_batch(host, names_), 90, path));
  }

  DetectConfig cfg_;
  std::string yaml_, data_root_;
  std::vector<std::string> names_;
  std::shared_ptr<data::DetectionDataset> train_set_, val_set_;
  int64_t train_boxes_ = 0, val_boxes_ = 0;
  Hyp hyp_;
  models::YoloLossOptions loss_opts_;
  models::DarknetCfg model_cfg_;
  int64_t stride_ = 32, params_ = 0;
  std::vector<models::YoloHeadSpec> heads_;
  DetectEval last_eval_;
  bool plotted_train_ = false;
  data::U8Normalizer to_unit_{{0.0, 0.0, 0.0}, {1.0, 1.0, 1.0}};  // x / 255
};

}  // namespace

train::RunResult train_detector(const DetectConfig& in, train::TrainerHooks hooks) {
  DetectConfig cfg = in;
  if (cfg.optimizer != "sgd") cfg.nesterov = false;  // the recipe's Nesterov default belongs to SGD
  DetectTask task(cfg);
  return train::train(cfg, task, std::move(hooks));
}

}  // namespace rg::app
