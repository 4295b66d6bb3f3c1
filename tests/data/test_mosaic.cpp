// Mosaic + random affine keep the boxes on the objects: every box's interior is painted in a colour
// of its own (the class id names the colour), the images go through the training pipeline, and
// each output box must hold its colour while every colour still visible has its box (dropped boxes
// really left the picture); also mixup and its Beta(32, 32) ratio.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "data/detection_loader.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::TempDir;

namespace {
constexpr int kColours = 36;
std::array<uint8_t, 3> colour(int k) {  // distinct, far from the background (40) and the fill (114)
  return {static_cast<uint8_t>(140 + (k % 6) * 23), static_cast<uint8_t>(140 + ((k / 6) % 6) * 23),
          static_cast<uint8_t>(k % 2 ? 0 : 255)};
}

// 12 PNG images of assorted sizes, each with up to three non-overlapping painted boxes of unique colours.
std::shared_ptr<DetectionDataset> painted_dataset(const TempDir& d) {
  const int64_t sizes[12][2] = {{60, 80}, {100, 50}, {70, 70}, {40, 120}, {90, 64}, {128, 96},
                                {50, 50}, {75, 140}, {120, 40}, {64, 64}, {80, 100}, {96, 72}};
  std::vector<DetectionRecord> recs;
  int k = 0;
  for (int i = 0; i < 12; ++i) {
    const int64_t h = sizes[i][0], w = sizes[i][1];
    Image img(h, w, 3, 40);
    DetectionRecord r;
    r.image = d / ("img" + std::to_string(i) + ".png");
    r.height = h, r.width = w;
    const int64_t nb = 1 + i % 3;
    for (int64_t j = 0; j < nb; ++j, ++k) {  // boxes side by side in vertical strips
      const int64_t x1 = w * j / nb + 2 + (i % 3), x2 = w * (j + 1) / nb - 2;
      const int64_t y1 = (h * (1 + i % 4)) / 10, y2 = h - 1 - (h * (i % 3)) / 8;
      const auto c = colour(k);
      for (int64_t y = y1; y < y2; ++y) {
        for (int64_t x = x1; x < x2; ++x) std::copy(c.begin(), c.end(), img.at(y, x));
      }
      r.boxes.push_back({static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x2), static_cast<float>(y2), k});
    }
    write_image(r.image, img);
    recs.push_back(std::move(r));
  }
  REQUIRE(k <= kColours);
  std::vector<std::string> names;
  for (int c = 0; c < kColours; ++c) names.push_back(std::to_string(c).insert(0, "colour"));
  return std::make_shared<DetectionDataset>(names, recs);
}

bool is_colour(const uint8_t* p, int k) {
  const auto c = colour(k);
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

// The checks of the file comment for one sample. margin: how far inside a box pixels must be pure
// (two bilinear resamplings, the second magnifying up to 1.5x); axis_aligned: boxes are the
// transformed rectangles themselves (else the corner bounds of turned ones, which clipping at the
// picture's edge loosens, as ultralytics' do); max_scale: the largest random scale.
void check_sample(const DetectionSample& s, const DetectionDataset& ds, double margin, bool axis_aligned, double max_scale) {
  const Image& img = s.image;
  for (const Box& b : s.boxes) {
    REQUIRE((b.x1 >= 0 && b.y1 >= 0 && b.x2 <= img.width && b.y2 <= img.height && b.x2 > b.x1 && b.y2 > b.y1));
    int64_t inner = 0, pure = 0;
    double cx1 = 1e9, cy1 = 1e9, cx2 = -1e9, cy2 = -1e9;
    for (int64_t y = static_cast<int64_t>(b.y1); y < static_cast<int64_t>(std::ceil(b.y2)); ++y) {
      for (int64_t x = static_cast<int64_t>(b.x1); x < static_cast<int64_t>(std::ceil(b.x2)); ++x) {
        const bool p = is_colour(img.at(y, x), b.cls);
        if (p) cx1 = std::min<double>(cx1, x), cy1 = std::min<double>(cy1, y), cx2 = std::max<double>(cx2, x + 1),
               cy2 = std::max<double>(cy2, y + 1);
        const bool deep = x + 0.5 > b.x1 + margin && x + 0.5 < b.x2 - margin && y + 0.5 > b.y1 + margin && y + 0.5 < b.y2 - margin;
        if (deep && axis_aligned) {
          ++inner;
          pure += p;
        }
      }
    }
    CHECK_MESSAGE(pure == inner, "box ", b.cls, " [", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2, "]: ", inner - pure,
                  " of ", inner, " inner pixels are not its colour");
    const bool clipped = b.x1 <= 0 || b.y1 <= 0 || b.x2 >= img.width || b.y2 >= img.height;
    if (b.width() > 3 * margin && b.height() > 3 * margin && (axis_aligned || !clipped)) {  // tight around its colour
      const double tol = axis_aligned ? margin + 0.5 : 2 * margin + 1;
      CHECK_MESSAGE((cx1 <= b.x1 + tol && cy1 <= b.y1 + tol && cx2 >= b.x2 - tol && cy2 >= b.y2 - tol), "box ", b.cls,
                    " [", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2, "] is loose around its colour [", cx1, ", ", cy1,
                    ", ", cx2, ", ", cy2, "]");
    }
  }
  // Pure pixels outside every box of their colour belong to dropped boxes: no more than a dropped
  // box may show (area ratio 0.1, or a side of 2 pixels), for each of up to 4 copies of its image.
  std::vector<int64_t> stray(kColours, 0);
  for (int64_t y = 0; y < img.height; ++y) {
    for (int64_t x = 0; x < img.width; ++x) {
      for (int k = 0; k < kColours; ++k) {
        if (!is_colour(img.at(y, x), k)) continue;
        bool in_box = false;
        for (const Box& b : s.boxes) {
          in_box |= b.cls == k && x + 0.5 > b.x1 - 1 && x + 0.5 < b.x2 + 1 && y + 0.5 > b.y1 - 1 && y + 0.5 < b.y2 + 1;
        }
        stray[static_cast<size_t>(k)] += !in_box;
      }
    }
  }
  for (int k = 0; k < kColours; ++k) {
    double bound = 0;
    for (const auto& r : ds.records()) {
      const double rr = static_cast<double>(img.width) / static_cast<double>(std::max(r.height, r.width));
      for (const Box& b : r.boxes) {
        if (b.cls != k) continue;
        const double w = b.width() * rr * max_scale, h = b.height() * rr * max_scale;
        bound = 4 * (std::max(0.1 * w * h, 2.0 * (std::max(w, h) + 2)) + 2);
      }
    }
    CHECK_MESSAGE(stray[static_cast<size_t>(k)] <= bound, "colour ", k, ": ", stray[static_cast<size_t>(k)],
                  " pixels outside its boxes (a dropped box may leave ", bound, ")");
  }
}

DetectionPipeline mosaic_pipeline(int64_t img) {
  DetectionPipeline p;
  p.img_size = img;
  p.augment = true;
  p.hyp.hsv_h = p.hyp.hsv_s = p.hyp.hsv_v = 0;  // colours must survive
  p.hyp.flipud = 0.5;
  return p;
}
}  // namespace

TEST_CASE("mosaic + translate keep every box on its object, and dropped boxes are gone") {
  TempDir d;
  const auto ds = painted_dataset(d);
  DetectionPipeline p = mosaic_pipeline(128);
  p.hyp.scale = 0;  // random scale 1: tight bounds on what a dropped box may leave
  int64_t boxes = 0;
  for (int64_t e = 0; e < 3; ++e) {
    for (int64_t i = 0; i < ds->size(); ++i) {
      SampleRng rng(11, static_cast<uint64_t>(e), static_cast<uint64_t>(i));
      const DetectionSample s = make_detection_sample(*ds, i, 128, 128, p, rng);
      REQUIRE((s.image.height == 128 && s.image.width == 128));
      CHECK(!s.info.mappable);
      check_sample(s, *ds, 3.5, true, 1.0);
      boxes += static_cast<int64_t>(s.boxes.size());
    }
  }
  CHECK(boxes > 3 * 12 * 2);  // the checks above ran on many boxes
}

TEST_CASE("mosaic + rotation and shear: boxes are the tight bounds of the turned objects") {
  TempDir d;
  const auto ds = painted_dataset(d);
  DetectionPipeline p = mosaic_pipeline(128);
  p.hyp.degrees = 30;
  p.hyp.shear = 5;
  for (int64_t i = 0; i < ds->size(); ++i) {
    SampleRng rng(5, 0, static_cast<uint64_t>(i));
    check_sample(make_detection_sample(*ds, i, 128, 128, p, rng), *ds, 3.5, false, 1.5);
  }
}

TEST_CASE("letterbox + affine without mosaic keeps the boxes too; the same draw gives the same sample") {
  TempDir d;
  const auto ds = painted_dataset(d);
  DetectionPipeline p = mosaic_pipeline(96);
  p.hyp.mosaic = 0;
  for (int64_t i = 0; i < ds->size(); ++i) {
    SampleRng rng(3, 1, static_cast<uint64_t>(i)), again(3, 1, static_cast<uint64_t>(i)), other(3, 2, static_cast<uint64_t>(i));
    const DetectionSample s = make_detection_sample(*ds, i, 96, 96, p, rng);
    check_sample(s, *ds, 3.5, true, 1.5);
    const DetectionSample t = make_detection_sample(*ds, i, 96, 96, p, again);
    CHECK(s.image == t.image);
    CHECK(s.boxes == t.boxes);
    CHECK(make_detection_sample(*ds, i, 96, 96, p, other).image != s.image);
  }
}

TEST_CASE("mixup: two mosaics blended by a Beta(32, 32) ratio, boxes of both") {
  TempDir d;
  const auto ds = painted_dataset(d);
  DetectionPipeline p = mosaic_pipeline(64);
  p.hyp.mixup = 1.0;
  p.hyp.flipud = p.hyp.fliplr = 0;
  DetectionPipeline single = p;
  single.hyp.mixup = 0;
  SampleRng r1(9, 0, 4), r2(9, 0, 4);
  const DetectionSample mixed = make_detection_sample(*ds, 4, 64, 64, p, r1);
  const DetectionSample alone = make_detection_sample(*ds, 4, 64, 64, single, r2);
  // the first mosaic is the same draw in both; mixup adds the second mosaic's boxes
  REQUIRE(mixed.boxes.size() >= alone.boxes.size());
  CHECK(std::equal(alone.boxes.begin(), alone.boxes.end(), mixed.boxes.begin()));
  CHECK(mixed.image != alone.image);
  // Beta(32, 32): mean 1/2, variance 1 / (4 * 65)
  SampleRng rng(1, 2, 3);
  double sum = 0, sq = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const double x = sample_beta(rng, 32, 32);
    REQUIRE((x > 0 && x < 1));
    sum += x, sq += x * x;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  CHECK(std::fabs(mean - 0.5) < 0.005);
  CHECK(std::fabs(var - 1.0 / 260) < 0.0006);
}

TEST_CASE("fused mosaic: the same draws and boxes as the canvas + warp, pixels within interpolation") {
  TempDir d;
  const auto ds = painted_dataset(d);
  DetectionPipeline fused = mosaic_pipeline(128);
  DetectionPipeline canvas = fused;
  canvas.fused_mosaic = false;
  for (int64_t i = 0; i < ds->size(); ++i) {
    SampleRng r1(21, 0, static_cast<uint64_t>(i)), r2(21, 0, static_cast<uint64_t>(i));
    const DetectionSample a = load_mosaic(*ds, i, 128, fused, r1);
    const DetectionSample b = load_mosaic(*ds, i, 128, canvas, r2);
    CHECK(a.boxes == b.boxes);
    REQUIRE(a.image.pixels.size() == b.image.pixels.size());
    double diff = 0;
    for (size_t k = 0; k < a.image.pixels.size(); ++k) diff += std::abs(a.image.pixels[k] - b.image.pixels[k]);
    CHECK(diff / static_cast<double>(a.image.pixels.size()) < 3.0);  // edges of the painted boxes differ a little
    CHECK(r1.next_u32() == r2.next_u32());  // both consumed the same draws
  }
}
