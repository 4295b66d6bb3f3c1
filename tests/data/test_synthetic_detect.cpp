// Synthetic detection data: deterministic rendering, labels that are the tight boxes of the drawn
// pixels (Note [Synthetic detection labels]), the variety the issue asks for (sizes, aspect ratios,
// overlaps, border cuts), and the idempotent writer whose YOLO and COCO files read back exactly.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/json.h"
#include "data/coco_format.h"
#include "data/synthetic_detect.h"
#include "data/yolo_format.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;
using rg::test::TempDir;
namespace fs = std::filesystem;

namespace {
DetectDataOptions small_options(const std::string& out) {
  DetectDataOptions o;
  o.out = out;
  o.train_images = 6;
  o.val_images = 4;
  o.min_size = 64;
  o.max_size = 96;
  o.seed = 3;
  return o;
}

double iou(const Box& a, const Box& b) {
  const double iw = std::max(0.0, double(std::min(a.x2, b.x2) - std::max(a.x1, b.x1)));
  const double ih = std::max(0.0, double(std::min(a.y2, b.y2) - std::max(a.y1, b.y1)));
  const double inter = iw * ih;
  return inter / (a.width() * a.height() + b.width() * b.height() - inter);
}
}  // namespace

TEST_CASE("synthetic detect: each box is the tight box of its shape's drawn pixels") {
  DetectDataOptions o = small_options("");
  o.min_size = 128, o.max_size = 200;
  int64_t boxes = 0, isolated = 0, unsolid = 0;
  for (uint64_t i = 0; i < 30; ++i) {
    const DetectImage d = render_detection_image(o, 1000, i);
    REQUIRE(d.boxes.size() == d.colours.size());
    const Image& img = d.image;
    auto near = [&](int64_t y, int64_t x, size_t k) {
      const uint8_t* p = img.at(y, x);
      return std::abs(p[0] - d.colours[k][0]) + std::abs(p[1] - d.colours[k][1]) + std::abs(p[2] - d.colours[k][2]) <= 30;
    };
    for (size_t k = 0; k < d.boxes.size(); ++k) {
      const Box& b = d.boxes[k];
      CHECK((b.cls >= 0 && b.cls < 6));
      CHECK((b.x1 == std::floor(b.x1) && b.x2 == std::floor(b.x2)));  // pixel edges
      // "Solid" pixels: a 3x3 patch within L1 30 of the shape's flat colour. The shape shows there
      // by 2/3 or more (other shapes' colours are >= 100 away, the background's >= 200 less its
      // texture and noise, and the patch rules out the anti-aliased rims between two other colours).
      int64_t x1 = INT64_MAX, y1 = INT64_MAX, x2 = -1, y2 = -1, n = 0;
      for (int64_t y = 1; y + 1 < img.height; ++y) {
        for (int64_t x = 1; x + 1 < img.width; ++x) {
          bool solid = true;
          for (int64_t dy = -1; dy <= 1 && solid; ++dy) {
            for (int64_t dx = -1; dx <= 1 && solid; ++dx) solid = near(y + dy, x + dx, k);
          }
          if (!solid) continue;
          ++n;
          x1 = std::min(x1, x), y1 = std::min(y1, y), x2 = std::max(x2, x + 1), y2 = std::max(y2, y + 1);
        }
      }
      if (n == 0) {  // a thin ring or cross arm partly hidden: no 3x3 patch of its colour
        ++unsolid;
        continue;
      }
      // the solid pixels lie in the box ...
      CHECK(x1 >= b.x1);
      CHECK(y1 >= b.y1);
      CHECK(x2 <= b.x2);
      CHECK(y2 <= b.y2);
      // ... and a shape that no other box touches (no occluder's rim to peek through) is boxed
      // tightly: the box passes its solid pixels by the half-covered rim plus the patch's pixel,
      // more at sharp corners (a square's 90 degrees, a triangle's 60, a star's 36); shapes of 24 px
      // and more, whose arms and rings are wide enough for the patch.
      bool alone = std::min(b.width(), b.height()) >= 24;
      for (size_t j = 0; j < d.boxes.size(); ++j) alone = alone && (j == k || iou(b, d.boxes[j]) == 0);
      static const double kTol[6] = {2, 4, 6, 4, 2, 7};  // circle, square, triangle, cross, ring, star
      const double tol = kTol[b.cls];
      if (alone) {
        ++isolated;
        CHECK_MESSAGE((x1 - b.x1 <= tol && y1 - b.y1 <= tol && b.x2 - x2 <= tol && b.y2 - y2 <= tol), "image ", i,
                      " ", shape_class_names()[static_cast<size_t>(b.cls)], " box [", b.x1, ", ", b.y1, ", ", b.x2, ", ",
                      b.y2, "] around solid [", x1, ", ", y1, ", ", x2, ", ", y2, "]");
      }
      ++boxes;
    }
  }
  CHECK(boxes > 60);
  CHECK(isolated > 20);
  CHECK(unsolid * 20 < boxes);
}

TEST_CASE("synthetic detect: on a plain background, a lone shape's box is exactly where its coverage reaches 1/2") {
  // The plain background shows the same shapes with a flat background colour, so each pixel near a
  // lone shape is a = (p - bg) / (colour - bg) of the shape (read on the channel where they differ
  // most, to 1/134 or better); the box must be the tight box of the pixels with a >= 1/2, up to
  // pixels within 0.03 of 1/2.
  DetectDataOptions o = small_options("");
  o.min_size = 128, o.max_size = 200;
  o.plain_background = true;
  int64_t checked = 0;
  for (uint64_t i = 0; i < 30; ++i) {
    const DetectImage d = render_detection_image(o, 1000, i);
    const Image& img = d.image;
    DetectDataOptions textured = o;
    textured.plain_background = false;
    CHECK(render_detection_image(textured, 1000, i).boxes == d.boxes);  // the same shapes
    const uint8_t* bg = img.at(0, 0);
    for (size_t k = 0; k < d.boxes.size(); ++k) {
      const Box& b = d.boxes[k];
      bool alone = true;  // no other box within 2 px
      for (size_t j = 0; j < d.boxes.size(); ++j) {
        const Box& o2 = d.boxes[j];
        alone = alone && (j == k || o2.x1 > b.x2 + 2 || o2.x2 < b.x1 - 2 || o2.y1 > b.y2 + 2 || o2.y2 < b.y1 - 2);
      }
      if (!alone || bg[0] != img.at(img.height - 1, img.width - 1)[0]) continue;
      int c = 0;
      for (int q = 1; q < 3; ++q) c = std::abs(d.colours[k][q] - bg[q]) > std::abs(d.colours[k][c] - bg[c]) ? q : c;
      const double span = d.colours[k][c] - bg[c];
      REQUIRE(std::fabs(span) >= 60);
      double in_x1 = 1e9, in_y1 = 1e9, in_x2 = -1, in_y2 = -1, out_x1 = 1e9, out_y1 = 1e9, out_x2 = -1, out_y2 = -1;
      for (int64_t y = std::max<int64_t>(0, int64_t(b.y1) - 2); y < std::min<int64_t>(img.height, int64_t(b.y2) + 2); ++y) {
        for (int64_t x = std::max<int64_t>(0, int64_t(b.x1) - 2); x < std::min<int64_t>(img.width, int64_t(b.x2) + 2); ++x) {
          const double a = (img.at(y, x)[c] - bg[c]) / span;
          if (a >= 0.53) in_x1 = std::min<double>(in_x1, x), in_y1 = std::min<double>(in_y1, y), in_x2 = std::max<double>(in_x2, x + 1), in_y2 = std::max<double>(in_y2, y + 1);
          if (a >= 0.47) out_x1 = std::min<double>(out_x1, x), out_y1 = std::min<double>(out_y1, y), out_x2 = std::max<double>(out_x2, x + 1), out_y2 = std::max<double>(out_y2, y + 1);
        }
      }
      CHECK_MESSAGE((out_x1 <= b.x1 && b.x1 <= in_x1 && out_y1 <= b.y1 && b.y1 <= in_y1 && in_x2 <= b.x2 && b.x2 <= out_x2 &&
                     in_y2 <= b.y2 && b.y2 <= out_y2),
                    "image ", i, " box [", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2, "] vs coverage >= 0.53 [", in_x1, ", ",
                    in_y1, ", ", in_x2, ", ", in_y2, "] and >= 0.47 [", out_x1, ", ", out_y1, ", ", out_x2, ", ", out_y2, "]");
      ++checked;
    }
  }
  CHECK(checked > 20);
}

TEST_CASE("synthetic detect: deterministic, with varied sizes, aspect ratios, overlaps and border cuts") {
  const DetectDataOptions o = small_options("");
  const DetectImage a = render_detection_image(o, 1000, 4);
  CHECK(a.image == render_detection_image(o, 1000, 4).image);
  CHECK(a.boxes == render_detection_image(o, 1000, 4).boxes);
  CHECK(a.image != render_detection_image(o, 1000, 5).image);
  CHECK(a.image != render_detection_image(o, 1001, 4).image);
  DetectDataOptions o2 = o;
  o2.seed = 4;
  CHECK(a.image != render_detection_image(o2, 1000, 4).image);

  int64_t wide = 0, tall = 0, overlaps = 0, border = 0, small = 0, large = 0, total = 0;
  std::vector<int64_t> per_class(6, 0);
  for (uint64_t i = 0; i < 60; ++i) {
    const DetectImage d = render_detection_image(o, 1000, i);
    const int64_t W = d.image.width, H = d.image.height;
    CHECK((std::max(W, H) >= 64 && std::max(W, H) <= 96));
    CHECK(std::max(W, H) <= 1.5 * std::min(W, H) + 1);
    wide += W > H, tall += H > W;
    CHECK((d.boxes.size() >= 1 && d.boxes.size() <= 8));
    for (size_t k = 0; k < d.boxes.size(); ++k) {
      const Box& b = d.boxes[k];
      ++per_class[static_cast<size_t>(b.cls)], ++total;
      border += b.x1 == 0 || b.y1 == 0 || b.x2 == W || b.y2 == H;
      const double side = std::max(b.width(), b.height()) / static_cast<double>(std::min(W, H));
      small += side < 0.2, large += side > 0.4;
      for (size_t j = 0; j < k; ++j) overlaps += iou(b, d.boxes[j]) > 0.05;
    }
  }
  CHECK((wide > 5 && tall > 5));
  CHECK(overlaps > 5);
  CHECK(border > 10);
  CHECK((small > 10 && large > 10));
  for (int64_t c : per_class) CHECK(c > total / 12);
}

TEST_CASE("make_detect_dataset: YOLO and COCO files read back exactly; idempotent") {
  TempDir d;
  const DetectDataOptions o = small_options(d / "ds");
  const MakeDataResult r = make_detect_dataset(o, false);
  CHECK(r.written == 10);
  const DataYaml y = read_data_yaml(d / "ds/data.yaml");
  CHECK(y.names == std::vector<std::string>{"circle", "square", "triangle", "cross", "ring", "star"});
  CHECK(y.root == fs::absolute(d / "ds").lexically_normal().string());
  LabelCheckOptions lo;
  lo.use_cache = false;
  const DetectionDataset train = load_yolo(y, "train", lo);
  CHECK(train.size() == 6);
  CHECK(train.report().total_dropped() == 0);
  CHECK(train.report().clipped == 0);
  for (int64_t i = 0; i < 6; ++i) {
    const DetectImage want = render_detection_image(o, 1000, static_cast<uint64_t>(i));
    const DetectionRecord& rec = train.record(i);
    CHECK(rec.width == want.image.width);
    REQUIRE(rec.boxes.size() == want.boxes.size());
    for (size_t k = 0; k < want.boxes.size(); ++k) {
      CHECK(rec.boxes[k].cls == want.boxes[k].cls);
      CHECK(std::fabs(rec.boxes[k].x1 - want.boxes[k].x1) < 1e-3);
      CHECK(std::fabs(rec.boxes[k].y2 - want.boxes[k].y2) < 1e-3);
    }
  }
  const DetectionDataset val = load_coco(d / "ds/annotations/instances_val.json", d / "ds/images/val", lo);
  CHECK(val.category_ids() == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  REQUIRE(val.size() == 4);
  CHECK(val.record(2).boxes == render_detection_image(o, 1001, 2).boxes);  // COCO keeps exact pixels
  const DetectionDataset val_yolo = load_yolo(y, "val", lo);
  CHECK(val_yolo.record(2).boxes.size() == val.record(2).boxes.size());

  // idempotent: nothing rewritten; a deleted pair comes back byte for byte
  const std::string img = d / "ds/images/train/000003.jpg";
  const std::string bytes = rg::test::read_bytes(img);
  const auto t0 = fs::last_write_time(d / "ds/images/train/000001.jpg");
  const MakeDataResult again = make_detect_dataset(o, false);
  CHECK(again.written == 0);
  CHECK(again.kept == 10);
  CHECK(fs::last_write_time(d / "ds/images/train/000001.jpg") == t0);
  fs::remove(img);
  CHECK(make_detect_dataset(o, false).written == 1);
  CHECK(rg::test::read_bytes(img) == bytes);
  const rg::Json rec = rg::Json::parse(rg::test::read_bytes(d / "ds/dataset.json"));
  CHECK(rec["kind"].as_string() == "detect");
  DetectDataOptions other = o;
  other.max_objects = 3;
  CHECK(contains(error_of([&] { make_detect_dataset(other, false); }), "holds a dataset made with other options"));
  other = o;
  other.min_object = 0;
  CHECK(contains(error_of([&] { make_detect_dataset(other, false); }), "--min-object"));
}
