// The detection DataLoader: the batch layout of Note [Detection batches] worked out by hand,
// predictions mapped back through each image's letterbox, multi-scale sizes shared by ranks with
// different worker counts and batch content independent of the worker count (Note [Multi-scale],
// Note [Loader determinism]), rectangular evaluation batches, and the hyperparameter file.
#include <doctest/doctest.h>

#include <memory>
#include <set>

#include "data/detection_loader.h"
#include "data_test_util.h"

using namespace rg;
using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;
using rg::test::TempDir;
using rg::test::write_bytes;

namespace {
// PNG images of the given (h, w), each painted (y * 7 + x * 3 + i) with one box (w/8, h/4, w/2, h/2).
std::shared_ptr<DetectionDataset> sized_dataset(const TempDir& d, const std::vector<std::pair<int64_t, int64_t>>& sizes) {
  std::vector<DetectionRecord> recs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto [h, w] = sizes[i];
    DetectionRecord r;
    r.image = d / ("im" + std::to_string(i) + ".png");
    r.height = h, r.width = w;
    r.boxes = {{static_cast<float>(w / 8), static_cast<float>(h / 4), static_cast<float>(w / 2), static_cast<float>(h / 2),
                static_cast<int32_t>(i % 3)}};
    write_image(r.image, rg::test::pattern_image(h, w, 3, static_cast<int>(i)));
    recs.push_back(r);
  }
  return std::make_shared<DetectionDataset>(std::vector<std::string>{"a", "b", "c"}, recs);
}

std::vector<Batch> epoch(DataLoader& dl, int64_t e, int64_t start = 0) {
  std::vector<Batch> out;
  dl.start_epoch(e, start);
  Batch b;
  while (dl.next(&b)) out.push_back(b);
  return out;
}

bool same(const Batch& a, const Batch& b) {
  return a.indices == b.indices && a.images.sizes() == b.images.sizes() &&
         a.images.to_vector<uint8_t>() == b.images.to_vector<uint8_t>() &&
         a.targets.to_vector<float>() == b.targets.to_vector<float>();
}
}  // namespace

TEST_CASE("detection batch: images (B, 3, H, W) u8, targets (N, 6) normalised, per-image letterbox") {
  TempDir d;
  const auto ds = sized_dataset(d, {{40, 80}, {64, 32}, {64, 64}});
  DetectionPipeline p;
  p.img_size = 64;
  DataLoaderOptions o;
  o.batch_size = 3;
  o.workers = 0;
  DataLoader dl(std::make_shared<SequentialSampler>(3), detection_batch_fn(ds, p), o);
  const Batch b = dl.make_batch(0, 0);
  CHECK(b.images.sizes() == Shape{3, 3, 64, 64});
  CHECK(b.images.dtype() == DType::u8);
  CHECK(!b.labels.defined());
  REQUIRE(b.targets.sizes() == Shape{3, 6});
  // image 0: 80x40 -> r = 0.8, 64x32 at top = round(16 - 0.1) = 16; box (10, 10, 40, 20) -> (8, 24, 32, 32)
  const auto t = b.targets.to_vector<float>();
  CHECK(t[0] == 0.0f);  // image index in the batch
  CHECK(t[1] == 0.0f);  // class
  CHECK(t[2] == doctest::Approx(20.0 / 64));
  CHECK(t[3] == doctest::Approx(28.0 / 64));
  CHECK(t[4] == doctest::Approx(24.0 / 64));
  CHECK(t[5] == doctest::Approx(8.0 / 64));
  // image 1: 32x64 -> r = 1, left = round(16 - 0.1) = 16; box (4, 16, 16, 32) -> (20, 16, 32, 32)
  CHECK(t[6] == 1.0f);
  CHECK(t[7] == 1.0f);
  CHECK(t[8] == doctest::Approx(26.0 / 64));
  CHECK(t[10] == doctest::Approx(12.0 / 64));
  REQUIRE(b.info.size() == 3);
  const ImageInfo& i0 = b.info[0];
  CHECK((i0.index == 0 && i0.h0 == 40 && i0.w0 == 80 && i0.mappable));
  CHECK(i0.path == d / "im0.png");
  CHECK(i0.letterbox.scale == doctest::Approx(0.8));
  CHECK((i0.letterbox.pad_x == 0.0 && i0.letterbox.pad_y == 16.0));
  // a prediction equal to the target maps back to the original box
  float pred[4] = {8, 24, 32, 32};
  unletterbox_xyxy(pred, 1, 4, i0);
  CHECK(pred[0] == doctest::Approx(10));
  CHECK(pred[1] == doctest::Approx(10));
  CHECK(pred[2] == doctest::Approx(40));
  CHECK(pred[3] == doctest::Approx(20));
  // pixels: channel-first RGB; image 2 is 64x64 at scale 1, so pixel (c, y, x) is the file's
  const auto px = b.images.to_vector<uint8_t>();
  const Image im2 = read_image(d / "im2.png");
  const int64_t hw = 64 * 64;
  CHECK(px[2 * 3 * hw + 1 * hw + 5 * 64 + 7] == im2.at(5, 7)[1]);
  CHECK(px[0 * 3 * hw + 0 * hw + 0] == 114);  // image 0's top padding
  CHECK(to_device(b, kCPU).targets.to_vector<float>() == t);
}

TEST_CASE("multi-scale: sizes from (seed, epoch, step), multiples of 32 within +-50%") {
  std::set<int64_t> seen;
  for (int64_t s = 0; s < 400; ++s) {
    const int64_t v = multi_scale_size(7, 3, s, 416, 32);
    CHECK(v % 32 == 0);
    CHECK((v >= 224 && v <= 608));
    CHECK(v == multi_scale_size(7, 3, s, 416, 32));
    seen.insert(v);
  }
  CHECK(seen.size() == 13);  // 224, 256, ..., 608
  int64_t differ_epoch = 0, differ_seed = 0;
  for (int64_t s = 0; s < 50; ++s) {
    differ_epoch += multi_scale_size(7, 3, s, 416, 32) != multi_scale_size(7, 4, s, 416, 32);
    differ_seed += multi_scale_size(7, 3, s, 416, 32) != multi_scale_size(8, 3, s, 416, 32);
  }
  CHECK(differ_epoch > 30);
  CHECK(differ_seed > 30);
}

TEST_CASE("multi-scale: two ranks with different worker counts train each step at one size; content "
          "does not depend on the worker count") {
  TempDir d;
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (int i = 0; i < 24; ++i) sizes.emplace_back(40 + 4 * i, 90 - 2 * i);
  const auto ds = sized_dataset(d, sizes);
  DetectionPipeline p;
  p.img_size = 64;
  p.augment = true;
  p.multi_scale = true;
  auto loader = [&](int64_t rank, int workers) {
    DataLoaderOptions o;
    o.batch_size = 3;
    o.workers = workers;
    o.seed = 5;
    DistributedSampler::Options so;
    so.seed = 5;
    auto sampler = std::make_shared<DistributedSamplerAdapter>(DistributedSampler(ds->size(), 2, rank, so));
    return std::make_unique<DataLoader>(sampler, detection_batch_fn(ds, p), o);
  };
  auto rank0 = loader(0, 0), rank1 = loader(1, 3), rank0_threads = loader(0, 2);
  for (int64_t e = 0; e < 2; ++e) {
    const auto a = epoch(*rank0, e), b = epoch(*rank1, e), c = epoch(*rank0_threads, e);
    REQUIRE(a.size() == 4);
    REQUIRE(b.size() == 4);
    REQUIRE(c.size() == 4);
    std::set<int64_t> hs;
    for (size_t s = 0; s < a.size(); ++s) {
      const int64_t H = a[s].images.size(2);
      CHECK(b[s].images.size(2) == H);  // every rank, same step, same size
      CHECK(a[s].images.size(3) == H);
      CHECK(H == multi_scale_size(5, e, static_cast<int64_t>(s), 64, 32));
      CHECK(same(a[s], c[s]));  // 0 vs 2 workers: identical batches
      hs.insert(H);
    }
    // a resumed epoch makes the same batch at the same step
    const auto resumed = epoch(*rank0_threads, e, 2);
    REQUIRE(resumed.size() == 2);
    CHECK(same(resumed[0], a[2]));
  }
  // sizes do vary between steps (over these epochs)
  std::set<int64_t> all;
  for (int64_t e = 0; e < 2; ++e) {
    for (int64_t s = 0; s < 4; ++s) all.insert(multi_scale_size(5, e, s, 64, 32));
  }
  CHECK(all.size() > 1);
}

TEST_CASE("rectangular batches: aspect-ratio order and per-batch shapes by hand") {
  TempDir d;
  // h/w: 0.5, 2.0, 0.75, 1.0, 1.25, 0.6
  const auto ds = sized_dataset(d, {{40, 80}, {80, 40}, {48, 64}, {50, 50}, {50, 40}, {30, 50}});
  AspectRatioSampler all(*ds);
  CHECK(all.indices(0) == std::vector<int64_t>{0, 5, 2, 3, 4, 1});
  CHECK(AspectRatioSampler(*ds, 2, 1).indices(3) == std::vector<int64_t>{5, 3, 1});
  // img 64, stride 32, pad 0.5: ratios [0.5, 0.6] -> h = ceil(0.6 * 2 + 0.5) * 32 = 64, w = ceil(2.5) * 32 = 96
  CHECK(rect_batch_shape(*ds, {0, 5}, 64, 32, 0.5) == std::pair<int64_t, int64_t>{64, 96});
  // [0.75, 1.25] spans 1: square, ceil(2.5) * 32 = 96
  CHECK(rect_batch_shape(*ds, {2, 3, 4}, 64, 32, 0.5) == std::pair<int64_t, int64_t>{96, 96});
  // [1.25, 2]: w = ceil(64 / 1.25 / 32 + 0.5) * 32 = ceil(2.1) * 32 = 96, h = 96
  CHECK(rect_batch_shape(*ds, {4, 1}, 64, 32, 0.5) == std::pair<int64_t, int64_t>{96, 96});
  CHECK(rect_batch_shape(*ds, {1}, 64, 32, 0.0) == std::pair<int64_t, int64_t>{64, 32});
  DetectionPipeline p;
  p.img_size = 64;
  p.rect = true;  // pad 0.5: shapes larger than the images need
  DataLoaderOptions o;
  o.batch_size = 2;
  o.workers = 1;
  DataLoader dl(std::make_shared<AspectRatioSampler>(*ds), detection_batch_fn(ds, p), o);
  const auto batches = epoch(dl, 0);
  REQUIRE(batches.size() == 3);
  CHECK(batches[0].images.sizes() == Shape{2, 3, 64, 96});  // [0.5, 0.6]
  CHECK(batches[1].images.sizes() == Shape{2, 3, 96, 96});  // [0.75, 1]
  CHECK(batches[2].images.sizes() == Shape{2, 3, 96, 96});  // [1.25, 2]
  // no image is scaled past long side 64 (ultralytics' load_image + letterbox without scaleup),
  // and the letterbox maps its box back
  for (const auto& b : batches) {
    const auto t = b.targets.to_vector<float>();
    for (size_t i = 0; i < b.info.size(); ++i) {
      const ImageInfo& info = b.info[i];
      CHECK(info.mappable);
      CHECK(info.letterbox.scale <= 64.0 / std::max(info.h0, info.w0) + 1e-12);
      const float H = static_cast<float>(b.images.size(2)), W = static_cast<float>(b.images.size(3));
      float xyxy[4] = {(t[i * 6 + 2] - t[i * 6 + 4] / 2) * W, (t[i * 6 + 3] - t[i * 6 + 5] / 2) * H,
                       (t[i * 6 + 2] + t[i * 6 + 4] / 2) * W, (t[i * 6 + 3] + t[i * 6 + 5] / 2) * H};
      unletterbox_xyxy(xyxy, 1, 4, info);
      const Box& want = ds->record(info.index).boxes[0];
      CHECK(xyxy[0] == doctest::Approx(want.x1).epsilon(1e-4));
      CHECK(xyxy[3] == doctest::Approx(want.y2).epsilon(1e-4));
    }
  }
  CHECK(contains(error_of([&] {
                   DetectionPipeline bad = p;
                   bad.multi_scale = true;
                   detection_batch_fn(ds, bad);
                 }),
                 "exclude each other"));
}

TEST_CASE("hyperparameter yaml: ultralytics keys read, trainer keys ignored, ranges checked") {
  TempDir d;
  write_bytes(d / "hyp.yaml", "lr0: 0.01\nhsv_h: 0.02\nmosaic: 0.5\nmixup: 0.1\nfliplr: 0\ndegrees: 5.0\n");
  const DetectionAugment a = read_augment_yaml(d / "hyp.yaml");
  CHECK(a.hsv_h == 0.02);
  CHECK(a.mosaic == 0.5);
  CHECK(a.mixup == 0.1);
  CHECK(a.fliplr == 0.0);
  CHECK(a.degrees == 5.0);
  CHECK(a.hsv_s == 0.7);  // default kept
  write_bytes(d / "bad.yaml", "hsv_h: 0.015\nfliplr: 1.5\n");
  CHECK(contains(error_of([&] { read_augment_yaml(d / "bad.yaml"); }), "bad.yaml:2: 'fliplr' is 1.5, expected [0, 1]"));
  write_bytes(d / "nan.yaml", "scale: big\n");
  CHECK(contains(error_of([&] { read_augment_yaml(d / "nan.yaml"); }), "nan.yaml:1: 'scale' must be a number, got 'big'"));
}

TEST_CASE("detection batch: pinned batches hold the same content; targets' pinned blocks are rounded up") {
  TempDir d;
  const auto ds = sized_dataset(d, {{40, 80}, {64, 32}, {64, 64}, {30, 50}});
  DetectionPipeline p;
  p.img_size = 64;
  p.augment = true;
  DataLoaderOptions o;
  o.batch_size = 4;
  o.workers = 1;
  o.seed = 3;
  DataLoader plain(std::make_shared<SequentialSampler>(4), detection_batch_fn(ds, p), o);
  o.pin_memory = true;
  DataLoader pinned(std::make_shared<SequentialSampler>(4), detection_batch_fn(ds, p), o);
  const Batch a = plain.make_batch(0, 0), b = pinned.make_batch(0, 0);
  CHECK(same(a, b));
  CHECK(b.targets.sizes() == a.targets.sizes());
  CHECK(b.targets.storage()->nbytes == 4096);  // 24 bytes per box, rounded up to the 4 KiB minimum
  CHECK(b.images.storage()->nbytes == b.images.nbytes());
}
