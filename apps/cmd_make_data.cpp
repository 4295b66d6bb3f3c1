// `ringgrad make-data classify|detect --out DIR [...]`: writes the synthetic shapes datasets
// (classify: torchvision ImageFolder; detect: YOLO + COCO val json, data/synthetic_detect.h),
// idempotent for the same options; `detect --show N` draws N augmented training batches.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "core/error.h"
#include "data/detection_loader.h"
#include "data/draw.h"
#include "data/synthetic.h"
#include "data/synthetic_detect.h"
#include "data/yolo_format.h"

namespace rg::app {

namespace {
void make_data_usage() {
  std::printf(
      "usage: ringgrad make-data classify --out DIR [--classes 6] [--train-per-class 200]\n"
      "                 [--val-per-class 50] [--size 32] [--format png|jpg] [--seed 0]\n"
      "       ringgrad make-data detect --out DIR [--classes 6] [--train 800] [--val 200]\n"
      "                 [--min-size 256] [--max-size 416] [--max-aspect 1.5] [--min-objects 1]\n"
      "                 [--max-objects 8] [--min-object 0.1] [--max-object 0.5] [--quality 90]\n"
      "                 [--seed 0] [--show N [--img 416] [--batch 16]]\n\n"
      "classify: DIR/train/<class>/*.png and DIR/val/<class>/*.png, coloured shapes (the class is the\n"
      "shape: circle, square, triangle, cross, ring, star, bar, hexagon; --classes takes the first N)\n"
      "on textured, noisy backgrounds.\n"
      "detect: a YOLO dataset of JPEG images with 1-8 such shapes each (sizes as fractions of the\n"
      "short side, long side in [--min-size, --max-size]): DIR/images/{train,val}, DIR/labels/{train,val},\n"
      "DIR/data.yaml, DIR/annotations/instances_val.json (COCO). --show N writes DIR/train_batch<k>.jpg,\n"
      "N augmented training batches (mosaic, affine, HSV, flips at --img) with boxes and class names.\n"
      "Both write DIR/dataset.json with the options; re-running with the same options keeps the files\n"
      "already there.\n");
}

// --seed: an integer >= 0 (default 0).
int64_t seed_opt(const Args& rest, const char* command) {
  const int64_t seed = parse_int(rest, "--seed", 0);
  RG_CHECK(seed >= 0, command, ": --seed must be >= 0, got ", seed);
  return seed;
}

int make_classify(const Args& rest) {
  check_known_flags(rest, {"--out", "--classes", "--train-per-class", "--val-per-class", "--size", "--format", "--seed"},
                    {}, "make-data classify");
  data::ClassifyDataOptions o;
  o.out = last_opt(rest, "--out", "");
  RG_CHECK(!o.out.empty(), "make-data classify: --out DIR is required");
  o.classes = parse_int(rest, "--classes", o.classes);
  o.train_per_class = parse_int(rest, "--train-per-class", o.train_per_class);
  o.val_per_class = parse_int(rest, "--val-per-class", o.val_per_class);
  o.size = parse_int(rest, "--size", o.size);
  o.format = last_opt(rest, "--format", o.format);
  o.seed = static_cast<uint64_t>(seed_opt(rest, "make-data classify"));
  const auto t0 = std::chrono::steady_clock::now();
  const data::MakeDataResult r = data::make_classify_dataset(o, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("make-data: %s ready (%lld written, %lld kept) in %.1fs\n", o.out.c_str(),
              static_cast<long long>(r.written), static_cast<long long>(r.kept), s);
  return 0;
}

// N augmented training batches of the dataset in DIR, drawn as DIR/train_batch<k>.jpg.
void show_batches(const std::string& dir, int64_t n, int64_t img, int64_t batch, uint64_t seed) {
  namespace fs = std::filesystem;
  const data::DataYaml y = data::read_data_yaml((fs::path(dir) / "data.yaml").string());
  auto ds = std::make_shared<data::DetectionDataset>(data::load_yolo(y, "train"));
  std::printf("make-data: %s\n", ds->report().summary().c_str());
  data::DetectionPipeline p;
  p.img_size = img;
  p.augment = true;
  data::DataLoaderOptions lo;
  lo.batch_size = batch;
  lo.workers = 2;
  lo.seed = seed;
  data::DataLoader loader(std::make_shared<data::RandomSampler>(ds->size(), seed), data::detection_batch_fn(ds, p), lo);
  loader.start_epoch(0);
  data::Batch b;
  for (int64_t k = 0; k < n && loader.next(&b); ++k) {
    const std::string path = (fs::path(dir) / ("train_batch" + std::to_string(k) + ".jpg")).string();
    data::write_file_via_rename(path, data::encode_jpeg(data::plot_batch(b, ds->names()), 90, path));
    std::printf("make-data: %s: %lld images, %lld boxes at %lldx%lld\n", path.c_str(),
                static_cast<long long>(b.images.size(0)), static_cast<long long>(b.targets.size(0)),
                static_cast<long long>(b.images.size(3)), static_cast<long long>(b.images.size(2)));
  }
}

int make_detect(const Args& rest) {
  check_known_flags(rest,
                    {"--out", "--classes", "--train", "--val", "--min-size", "--max-size", "--max-aspect", "--min-objects",
                     "--max-objects", "--min-object", "--max-object", "--quality", "--seed", "--show", "--img", "--batch"},
                    {}, "make-data detect");
  data::DetectDataOptions o;
  o.out = last_opt(rest, "--out", "");
  RG_CHECK(!o.out.empty(), "make-data detect: --out DIR is required");
  o.classes = parse_int(rest, "--classes", o.classes);
  o.train_images = parse_int(rest, "--train", o.train_images);
  o.val_images = parse_int(rest, "--val", o.val_images);
  o.min_size = parse_int(rest, "--min-size", o.min_size);
  o.max_size = parse_int(rest, "--max-size", o.max_size);
  o.max_aspect = parse_double(rest, "--max-aspect", o.max_aspect);
  o.min_objects = parse_int(rest, "--min-objects", o.min_objects);
  o.max_objects = parse_int(rest, "--max-objects", o.max_objects);
  o.min_object = parse_double(rest, "--min-object", o.min_object);
  o.max_object = parse_double(rest, "--max-object", o.max_object);
  o.quality = static_cast<int>(parse_int(rest, "--quality", o.quality));
  o.seed = static_cast<uint64_t>(seed_opt(rest, "make-data detect"));
  const int64_t show = parse_int(rest, "--show", 0), img = parse_int(rest, "--img", 416), batch = parse_int(rest, "--batch", 16);
  RG_CHECK(show >= 0 && img >= 32 && img % 32 == 0 && batch >= 1, "make-data detect: --show must be >= 0, --img a multiple "
           "of 32 (>= 32) and --batch >= 1");
  const auto t0 = std::chrono::steady_clock::now();
  const data::MakeDataResult r = data::make_detect_dataset(o, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("make-data: %s ready (%lld written, %lld kept) in %.1fs\n", o.out.c_str(),
              static_cast<long long>(r.written), static_cast<long long>(r.kept), s);
  if (show > 0) show_batches(o.out, show, img, batch, o.seed);
  return 0;
}
}  // namespace

int cmd_make_data(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    make_data_usage();
    return args.empty() ? 2 : 0;
  }
  const std::string kind = args[0];
  const Args rest(args.begin() + 1, args.end());
  if (kind == "classify") return make_classify(rest);
  if (kind == "detect") return make_detect(rest);
  RG_THROW("unknown dataset kind '", kind, "' (known: classify, detect)");
}

}  // namespace rg::app
