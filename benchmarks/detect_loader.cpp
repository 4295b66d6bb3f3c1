// How fast the detection loader feeds training: images per second per worker thread at 416 with
// mosaic + random affine + HSV + flips (ultralytics' default augmentation) on COCO-sized JPEGs,
// against the rate a GPU trains YOLOv3-416 at, and where a sample's time goes.
// Usage: bench_detect_loader [--data DIR] [--images 160] [--img 416] [--batches 12] [--gpu-rate 400]
// (--data: a YOLO dataset with a data.yaml to read, e.g. COCO; else generated there)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "bench_util.h"
#include "data/detection_loader.h"
#include "data/synthetic_detect.h"
#include "data/yolo_format.h"

using namespace rg;
using namespace rg::data;
namespace fs = std::filesystem;

namespace {
std::string arg(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

// Images per second of a detection loader with `workers` threads over `batches` batches of 16.
double loader_rate(const std::shared_ptr<DetectionDataset>& ds, const DetectionPipeline& p, int workers, int batches) {
  DataLoaderOptions o;
  o.batch_size = 16;
  o.workers = workers;
  o.seed = 1;
  DataLoader dl(std::make_shared<RandomSampler>(ds->size(), 1), detection_batch_fn(ds, p), o);
  dl.start_epoch(0);
  Batch b;
  if (!dl.next(&b)) return 0;  // warm-up batch (threads started, caches touched)
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int i = 0; i < batches && dl.next(&b); ++i) images += b.images.size(0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(images) / s;
}

// Milliseconds per call of fn, the median of 5 runs of `reps` calls each.
double per_call_ms(const std::function<void(int)>& fn, int reps) {
  return bench::time_cpu_ms(
             [&] {
               for (int i = 0; i < reps; ++i) fn(i);
             },
             1, 5) /
         reps;
}
}  // namespace

int main(int argc, char** argv) {
  const std::string data = arg(argc, argv, "--data", "/tmp/rg_bench_detect_data");
  const int64_t n_images = std::atoll(arg(argc, argv, "--images", "160").c_str());
  const int64_t img = std::atoll(arg(argc, argv, "--img", "416").c_str());
  const int batches = std::atoi(arg(argc, argv, "--batches", "12").c_str());
  const double gpu_rate = std::atof(arg(argc, argv, "--gpu-rate", "400").c_str());

  // An existing YOLO dataset (--data with a data.yaml, COCO say), or generated COCO-sized
  // pictures: 640 on the long side, 4:3 to 3:4, JPEG quality 90, 1-8 objects.
  const bool given = fs::exists(data + "/data.yaml") && !fs::exists(data + "/dataset.json");
  if (!given) {
    DetectDataOptions g;
    g.out = data;
    g.train_images = n_images;
    g.val_images = 0;
    g.min_size = g.max_size = 640;
    g.max_aspect = 1.34;
    make_detect_dataset(g, false);
  }
  auto ds = std::make_shared<DetectionDataset>(load_yolo(read_data_yaml(data + "/data.yaml"), "train"));
  int64_t bytes = 0;
  for (const auto& r : ds->records()) bytes += static_cast<int64_t>(fs::file_size(r.image));
  std::printf("detection loader, %lld images (%s, mean %.0f KiB), batch 16 at %lld, mosaic 1.0 + affine "
              "(translate 0.1, scale 0.5) + HSV + flips; %u hardware threads\n\n",
              static_cast<long long>(ds->size()), given ? data.c_str() : "generated 640 px JPEGs",
              bytes / 1024.0 / static_cast<double>(ds->size()),
              static_cast<long long>(img), std::thread::hardware_concurrency());

  DetectionPipeline p;
  p.img_size = img;
  p.augment = true;

  // Where one mosaic sample's time goes (single thread).
  const DetectionRecord& r0 = ds->record(0);
  const double full_decode = per_call_ms([&](int i) { (void)read_image(ds->record(i % ds->size()).image); }, 16);
  const double half_decode = per_call_ms(
      [&](int i) {
        double s = 0;
        (void)ds->load(i % ds->size(), 0.5, &s);
      },
      16);
  Image canvas(2 * img, 2 * img, 3, 114);
  const double warp = per_call_ms(
      [&](int i) {
        Image c = canvas;
        Boxes b;
        SampleRng rng(1, 0, static_cast<uint64_t>(i));
        random_perspective(&c, &b, p.hyp.affine(), -img / 2, rng);
      },
      8);
  Image tile = read_image(r0.image);
  const double hsv = per_call_ms(
      [&](int i) {
        Image t = resize_scaled(tile, img, img, 0.65, 0.65);
        SampleRng rng(2, 0, static_cast<uint64_t>(i));
        augment_hsv(&t, 0.015, 0.7, 0.4, rng);
      },
      8);
  const double resize_only = per_call_ms([&](int) { (void)resize_scaled(tile, img, img, 0.65, 0.65); }, 8);
  const double sample = per_call_ms(
      [&](int i) {
        SampleRng rng(3, 0, static_cast<uint64_t>(i));
        (void)make_detection_sample(*ds, i % ds->size(), img, img, p, rng);
      },
      16);
  std::printf("one sample, single thread (ms)\n");
  std::printf("| step | ms |\n|---|---|\n");
  std::printf("| decode one JPEG, full size | %.2f |\n", full_decode);
  std::printf("| decode one JPEG at 1/2 (DCT scaling; mosaic tiles whose total scale <= 1/2) | %.2f |\n", half_decode);
  std::printf("| 2s canvas -> %lld x %lld scale-and-shift warp (the canvas path; fused mosaics skip it) | %.2f |\n",
              static_cast<long long>(img), static_cast<long long>(img), warp);
  std::printf("| HSV jitter of %lld x %lld | %.2f |\n", static_cast<long long>(img), static_cast<long long>(img),
              hsv - resize_only);
  std::printf("| whole fused-mosaic sample (4 decodes, 4 tile resamples, HSV, flips) | %.2f |\n\n", sample);

  std::printf("loader throughput (%d batches of 16 after a warm-up batch; median of 3 runs)\n", batches);
  std::printf("| worker threads | img/s | img/s per thread | vs target 150/core | cores per GPU at %.0f img/s |\n|---|---|---|---|---|\n",
              gpu_rate);
  for (int w : {1, 2}) {
    const double rate = bench::median({loader_rate(ds, p, w, batches), loader_rate(ds, p, w, batches),
                                       loader_rate(ds, p, w, batches)});
    const double per = rate / w;
    std::printf("| %d | %.1f | %.1f | %.2fx | %.1f |\n", w, rate, per, per / 150.0, gpu_rate / per);
  }
  return 0;
}
