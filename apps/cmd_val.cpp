// `ringgrad val --weights W [...]`: evaluates a detector on a data.yaml split with the same function
// training validates with (Note [Detection evaluation]), on 1 or N ranks, prints the per-class table
// and COCO's 12 numbers, and writes the predictions as COCO json (ids mapped back, Note [COCO result ids]).
#include <cstdio>
#include <filesystem>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "apps/tasks/detect.h"
#include "apps/tasks/detect_eval.h"
#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "data/yolo_format.h"
#include "distributed/launcher.h"
#include "nn/checkpoint.h"
#include "train/devices.h"
#include "train/dist.h"

namespace fs = std::filesystem;

namespace rg::app {

namespace {

void val_usage() {
  std::printf(
      "usage: ringgrad val --weights W [--data YAML|DIR] [--split val] [--img N] [--batch-size N] [--conf 0.001]\n"
      "                    [--iou 0.6] [--max-det 300] [--rect|--no-rect] [--device DEV] [--amp none|f16|bf16]\n"
      "                    [--cfg CFG] [--no-ema] [--workers 2] [--out runs/val]\n\n"
      "Evaluates a detector on the images of a YOLO data.yaml split: COCO mAP@[.5:.95], mAP@0.5, precision and\n"
      "recall at the best F1 (ultralytics' P and R), per class; writes OUT/predictions.json (COCO results: image and\n"
      "category ids from <data root>/annotations/instances_<split>.json when present) and OUT/val_batch0_pred.jpg.\n"
      "W: a ringgrad detection checkpoint (best.safetensors: cfg, classes and image size come with it; its EMA\n"
      "weights when trained with --ema, unless --no-ema), or a darknet .weights / plain safetensors with --cfg.\n"
      "Defaults come from the checkpoint's training options (--data, --img, --batch-size, --rect, --conf, --iou,\n"
      "--max-det, --amp), so that `ringgrad val --weights OUT/last.safetensors` prints exactly the mAP training\n"
      "printed for those weights (the same number on any number of ranks: Note [Detection evaluation]).\n"
      "--batch-size is the global batch, split over the ranks. --device: cpu, cuda:N, or a list (0,1 or cpu,cpu)\n"
      "for one rank per device started here; `ringgrad launch --nproc-per-node N -- ringgrad val ...` works too.\n");
}

struct ValConfig {
  std::string weights, cfg, data, split = "val", device = "cpu", amp = "none", out = "runs/val";
  int64_t img = 416, batch = 32, max_det = 300;
  int workers = 2;
  double conf = 0.001, iou = 0.6;
  bool rect = false, ema = true;
};

// Options from the command line over the checkpoint's training options over the defaults.
ValConfig parse_val(const Args& args, const Json& trained) {
  check_known_flags(args,
                    {"--weights", "--data", "--split", "--img", "--batch-size", "--conf", "--iou", "--max-det",
                     "--device", "--amp", "--cfg", "--workers", "--out"},
                    {"--rect", "--no-rect", "--no-ema"}, "val");
  ValConfig c;
  if (trained.is_object()) {
    c.data = trained["data"].as_string();
    c.img = trained["img"].as_int();
    c.batch = trained["batch_size"].as_int();
    c.rect = trained["rect"].as_bool();
    c.conf = trained["val_conf"].as_double();
    c.iou = trained["val_iou"].as_double();
    c.max_det = trained["max_det"].as_int();
    c.amp = trained["amp"].as_string();
  }
  c.weights = last_opt(args, "--weights", "");
  c.cfg = last_opt(args, "--cfg", "");
  c.data = last_opt(args, "--data", c.data);
  c.split = last_opt(args, "--split", c.split);
  c.img = parse_int(args, "--img", c.img);
  c.batch = parse_int(args, "--batch-size", c.batch);
  c.conf = parse_double(args, "--conf", c.conf);
  c.iou = parse_double(args, "--iou", c.iou);
  c.max_det = parse_int(args, "--max-det", c.max_det);
  c.device = last_opt(args, "--device", c.device);
  c.amp = last_opt(args, "--amp", c.amp);
  c.workers = static_cast<int>(parse_int(args, "--workers", c.workers));
  c.out = last_opt(args, "--out", c.out);
  for (const auto& a : args) {  // the last of --rect / --no-rect wins
    if (a == "--rect") c.rect = true;
    if (a == "--no-rect") c.rect = false;
  }
  c.ema = !has_flag(args, "--no-ema");
  RG_CHECK(!c.data.empty(), "val: --data is required (the weights do not name their dataset)");
  RG_CHECK(c.img >= 32 && c.img % 32 == 0, "val: --img must be a multiple of 32, got ", c.img);
  RG_CHECK(c.batch >= 1 && c.workers >= 0 && c.max_det >= 1, "val: --batch-size, --max-det must be >= 1, --workers >= 0");
  RG_CHECK(c.conf >= 0 && c.conf <= 1 && c.iou >= 0 && c.iou <= 1, "val: --conf and --iou must be in [0, 1]");
  RG_CHECK(c.amp == "none" || c.amp == "f16" || c.amp == "bf16", "val: --amp must be none, f16 or bf16, got '", c.amp, "'");
  return c;
}

// The training options a ringgrad detection checkpoint carries (null for other files).
Json trained_options(const std::string& weights) {
  if (weights.size() < 12 || weights.substr(weights.size() - 12) != ".safetensors" || !fs::exists(weights)) return Json(nullptr);
  const nn::SafeTensors st = nn::load_safetensors(weights);
  const std::string* m = st.meta("trainer");
  if (!m) return Json(nullptr);
  const Json t = Json::parse(*m);
  return t.find("config") ? t["config"] : Json(nullptr);
}

int run_val(const ValConfig& c, const train::DevicePlan& plan) {
  train::DistContext dist = train::init_distributed(plan, c.device, "auto");
  const bool main = dist.is_main();
  LoadedDetector det = load_detector(c.weights, c.cfg, c.ema);
  const std::string yaml = fs::path(c.data).extension() == ".yaml" || fs::path(c.data).extension() == ".yml"
                               ? c.data
                               : (fs::path(c.data) / "data.yaml").string();
  RG_CHECK(fs::exists(yaml), "val: no data.yaml at '", c.data, "'");
  const data::DataYaml y = data::read_data_yaml(yaml);
  auto ds = std::make_shared<data::DetectionDataset>(data::load_yolo(y, c.split));
  RG_CHECK(ds->size() > 0, "val: the ", c.split, " split of ", yaml, " has no usable image");
  const int64_t nc = det.model->heads()[0].num_classes;
  RG_CHECK(ds->num_classes() == nc, "val: the model detects ", nc, " classes but ", yaml, " has nc ", ds->num_classes());
  RG_CHECK(c.img % det.model->max_stride() == 0, "val: --img ", c.img, " is not a multiple of the model's stride ",
           det.model->max_stride());
  const int64_t world = dist.enabled ? dist.world : 1;
  RG_CHECK(c.batch % world == 0, "val: --batch-size ", c.batch, " is the global batch and must divide evenly over ", world,
           " ranks");
  if (main) {
    std::printf("val: %s\nval: %s split '%s': %s\nval: %lld px%s, global batch %lld (%lld per rank, %lld rank(s)), conf %g, "
                "iou %g, max-det %lld, amp %s, device %s\n",
                det.what.c_str(), yaml.c_str(), c.split.c_str(), ds->report().summary().c_str(),
                static_cast<long long>(c.img), c.rect ? " rect" : "", static_cast<long long>(c.batch),
                static_cast<long long>(c.batch / world), static_cast<long long>(world), c.conf, c.iou,
                static_cast<long long>(c.max_det), c.amp.c_str(), dist.device.str().c_str());
    std::fflush(stdout);
    fs::create_directories(c.out);
  }
  det.model->to(dist.device);
  det.model->eval();
  std::unique_ptr<train::Loader> loader = make_detect_val_loader(ds, c.img, det.model->max_stride(), c.rect,
                                                                 c.batch / world, c.workers, dist, dist.device.is_cuda());
  DetectEvalSettings s;
  s.conf = c.conf;
  s.iou = c.iou;
  s.max_det = c.max_det;
  DetectEval e;
  {
    NoGradGuard ng;
    amp::AutocastGuard ac(c.amp == "bf16" ? DType::bf16 : DType::f16, c.amp != "none");
    e = evaluate_detector(*det.model, det.model->heads(), *loader, *ds, dist, dist.device, s,
                          main ? (fs::path(c.out) / "val_batch0_pred.jpg").string() : "");
  }
  if (main) {
    const std::vector<std::string> names = det.names.empty() ? ds->names() : det.names;
    std::printf("%s%s", per_class_table(e, names).c_str(), e.metrics.summary().c_str());
    // Every figure at full precision (%.17g reads back exactly): what tests and scripts compare.
    const train::Figures f = detect_figures(e.metrics);
    std::printf("val: metrics {\"%s\": %.17g, \"%s\": %.17g, \"%s\": %.17g, \"%s\": %.17g, \"fitness\": %.17g}\n",
                f[0].name.c_str(), f[0].value, f[1].name.c_str(), f[1].value, f[2].name.c_str(), f[2].value,
                f[3].name.c_str(), f[3].value, 0.1 * f[2].value + 0.9 * f[3].value);
    std::printf("Speed: %.1f ms per image on rank 0 (forward + NMS, batch %lld)\n",
                1000.0 * e.seconds / std::max<double>(1.0, static_cast<double>(ds->size()) / static_cast<double>(world)),
                static_cast<long long>(c.batch / world));
    const CocoIds ids = coco_ids_for(*ds, y.root, c.split);
    const std::string json = (fs::path(c.out) / "predictions.json").string();
    nn::atomic_write_file(json, coco_predictions_json(e.records, ids));
    std::printf("val: wrote %s (%lld detections; %s) and %s\n", json.c_str(),
                static_cast<long long>(e.metrics.detections), ids.source.c_str(),
                (fs::path(c.out) / "val_batch0_pred.jpg").string().c_str());
  }
  loader.reset();
  train::shutdown_distributed(dist);
  return 0;
}

}  // namespace

int cmd_val(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    val_usage();
    return args.empty() ? 2 : 0;
  }
  const ValConfig c = parse_val(args, trained_options(last_opt(args, "--weights", "")));
  const train::DevicePlan plan =
      train::plan_devices(c.device, "ddp", false, train::launch_env(), dist::visible_gpus());
  if (plan.kind == train::RunKind::SelfLaunch) return train::run_self_launch(plan, "val", args);
  RG_CHECK(plan.kind != train::RunKind::DataParallel, "val: DataParallel is not offered (use one rank per device)");
  return run_val(c, plan);
}

}  // namespace rg::app
