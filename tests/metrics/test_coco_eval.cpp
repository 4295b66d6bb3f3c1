// Detection metrics with answers known by hand: perfect detections, a worked precision/recall curve
// (101-point, VOC all-points and 11-point), crowd and difficult boxes, area ranges, maxDets, the
// best-F1 precision and recall, and the record bytes.
#include <doctest/doctest.h>

#include <cmath>

#include "metrics/coco_eval.h"
#include "metrics/pr_curves.h"
#include "test_util.h"

using namespace rg;
using namespace rg::metrics;
using rg::test::contains;
using rg::test::error_of;

namespace {

GtBox gt(double x, double y, double w, double h, int64_t c = 0, bool crowd = false, bool difficult = false) {
  GtBox g;
  g.x = x;
  g.y = y;
  g.w = w;
  g.h = h;
  g.category = c;
  g.crowd = crowd;
  g.difficult = difficult;
  return g;
}
DetBox det(double x, double y, double w, double h, double score, int64_t c = 0) { return {x, y, w, h, score, c}; }

// The worked curve: 4 disjoint boxes of one class; detections by score TP, FP, TP, FP, TP (the TPs
// exact, the FPs far from everything).
std::vector<ImageRecord> worked_curve() {
  ImageRecord r;
  r.image_id = 7;
  for (int i = 0; i < 4; ++i) r.gts.push_back(gt(100.0 * i, 0, 50, 50));
  r.dets = {det(0, 0, 50, 50, 0.9), det(0, 500, 50, 50, 0.8), det(100, 0, 50, 50, 0.7), det(100, 500, 50, 50, 0.6),
            det(200, 0, 50, 50, 0.5)};
  return {r};
}

}  // namespace

TEST_CASE("coco eval: perfect detections give AP and AR 1; empty area ranges are -1") {
  ImageRecord a, b;
  a.image_id = 1;
  a.gts = {gt(10, 10, 50, 40, 0), gt(100, 100, 60, 60, 1)};
  a.dets = {det(10, 10, 50, 40, 0.9, 0), det(100, 100, 60, 60, 0.8, 1)};
  b.image_id = 2;
  b.gts = {gt(0, 0, 40, 40, 1)};
  b.dets = {det(0, 0, 40, 40, 0.3, 1)};
  EvalOptions o;
  o.num_classes = 3;  // class 2 has no ground truth: left out
  const DetectionMetrics m = evaluate_detections({b, a}, o);
  // all boxes are medium (32^2 < area < 96^2)
  const std::array<double, 12> want = {1, 1, 1, -1, 1, -1, 1, 1, 1, -1, 1, -1};
  for (int i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(m.stats[i] == doctest::Approx(want[i]));  // precision is tp / (tp + fp + 2^-52): not exactly 1
  }
  CHECK(m.map50 == doctest::Approx(1.0));
  CHECK(m.map == doctest::Approx(1.0));
  CHECK(m.fitness == doctest::Approx(1.0));
  CHECK(m.ap_per_class[0] == doctest::Approx(1.0));
  CHECK(m.ap_per_class[1] == doctest::Approx(1.0));
  CHECK(m.ap_per_class[2] == -1);
  CHECK(m.precision == doctest::Approx(1.0));
  CHECK(m.recall == doctest::Approx(1.0));
  CHECK(m.images == 2);
  CHECK(m.ground_truth == 3);
  CHECK(m.detections == 3);
}

TEST_CASE("coco eval: a worked precision/recall curve gives the hand-computed 101-point AP") {
  // recall 1/4 1/4 2/4 2/4 3/4, precision 1 1/2 2/3 1/2 3/5 -> envelope 1 2/3 2/3 3/5 3/5.
  // 101-point: r = 0..0.25 (26 points) -> 1; 0.26..0.5 (25) -> 2/3; 0.51..0.75 (25) -> 3/5; beyond: 0.
  const double ap = (26 * 1.0 + 25 * (2.0 / 3) + 25 * (3.0 / 5)) / 101;
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m = evaluate_detections(worked_curve(), o);
  CHECK(m.stats[0] == doctest::Approx(ap).epsilon(1e-12));  // every threshold alike (the TPs are exact)
  CHECK(m.stats[1] == doctest::Approx(ap).epsilon(1e-12));
  CHECK(m.stats[2] == doctest::Approx(ap).epsilon(1e-12));
  CHECK(m.stats[8] == doctest::Approx(0.75));  // AR@100
  CHECK(m.stats[6] == doctest::Approx(0.25));  // AR@1: the best detection only
  CHECK(m.stats[7] == doctest::Approx(0.75));
  // VOC all-points: steps of 1/4 at precisions 1, 2/3, 3/5, 0
  o.ap_method = ApMethod::VocAllPoints;
  const DetectionMetrics v = evaluate_detections(worked_curve(), o);
  CHECK(v.map50 == doctest::Approx(0.25 * (1 + 2.0 / 3 + 3.0 / 5)).epsilon(1e-12));
  CHECK(v.stats[1] == m.stats[1]);  // the COCO numbers do not change
  // VOC 11-point: r = 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 3/5; .8, .9, 1 -> 0
  o.ap_method = ApMethod::Voc11;
  CHECK(evaluate_detections(worked_curve(), o).map50 ==
        doctest::Approx((3 + 3 * (2.0 / 3) + 2 * 0.6) / 11).epsilon(1e-12));
}

TEST_CASE("coco eval: IoU thresholds pick which detections match (AP50 vs AP75)") {
  ImageRecord r;
  r.image_id = 1;
  r.gts = {gt(0, 0, 100, 100)};
  r.dets = {det(0, 0, 100, 60, 0.9)};  // IoU 0.6: a match at 0.5..0.6, a miss above
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m = evaluate_detections({r}, o);
  CHECK(m.stats[1] == doctest::Approx(1.0));
  CHECK(m.stats[2] == 0);
  CHECK(m.stats[0] == doctest::Approx(0.3));  // 3 of 10 thresholds (0.5, 0.55, 0.6)
  CHECK(m.ap50_per_class[0] == doctest::Approx(1.0));
}

TEST_CASE("coco eval: a detection with equal IoU to two boxes takes the later one, as pycocotools") {
  // A (0, 0, 10, 10) and B (2, 0, 10, 10); d1 (1, 0, 10, 10) overlaps both with IoU 9/11; d2 is B
  // (IoU 2/3 with A). At t = 0.75 d1 takes B, so d2 finds B taken and A below t: TP, FP, one miss.
  // (Taking A first would give two TPs and AP75 = 1.)
  ImageRecord r;
  r.image_id = 1;
  r.gts = {gt(0, 0, 10, 10), gt(2, 0, 10, 10)};
  r.dets = {det(1, 0, 10, 10, 0.9), det(2, 0, 10, 10, 0.8)};
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m = evaluate_detections({r}, o);
  CHECK(m.stats[2] == doctest::Approx(51.0 / 101).epsilon(1e-12));  // pycocotools: 0.5049504950495048
  CHECK(m.stats[1] == doctest::Approx(1.0));
}

TEST_CASE("coco eval: crowd boxes are ignored, match any number of detections, and are never missed") {
  ImageRecord r;
  r.image_id = 3;
  r.gts = {gt(0, 0, 50, 50), gt(200, 200, 100, 100, 0, true)};
  // one TP; two detections inside the crowd region (IoU = intersection / detection area = 1): ignored
  r.dets = {det(0, 0, 50, 50, 0.5), det(210, 210, 30, 30, 0.9), det(250, 250, 40, 40, 0.8)};
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m = evaluate_detections({r}, o);
  CHECK(m.stats[1] == doctest::Approx(1.0));
  CHECK(m.stats[8] == doctest::Approx(1.0));
  // without the crowd flag the two become false positives ahead of the TP, and a miss
  r.gts[1].crowd = false;
  const DetectionMetrics n = evaluate_detections({r}, o);
  CHECK(n.stats[1] < 0.5);
  CHECK(n.stats[8] == doctest::Approx(0.5));
}

TEST_CASE("coco eval: difficult boxes are ignored, not missed; they are consumed by one match") {
  ImageRecord r;
  r.image_id = 4;
  r.gts = {gt(0, 0, 50, 50), gt(200, 0, 50, 50, 0, false, true)};
  r.dets = {det(0, 0, 50, 50, 0.5)};  // the difficult box is not detected: no miss
  EvalOptions o;
  o.num_classes = 1;
  CHECK(evaluate_detections({r}, o).stats[1] == doctest::Approx(1.0));
  CHECK(evaluate_detections({r}, o).stats[8] == doctest::Approx(1.0));
  r.dets.push_back(det(200, 0, 50, 50, 0.9));  // a detection of the difficult box: ignored, no FP
  CHECK(evaluate_detections({r}, o).stats[1] == doctest::Approx(1.0));
  r.dets.push_back(det(201, 0, 50, 50, 0.8));  // a second one: the box is taken, so this is an FP
  const DetectionMetrics m = evaluate_detections({r}, o);
  // order: 0.9 ignored, 0.8 FP, 0.5 TP -> precision 0 then 1/2 -> 101-point AP = 1/2
  CHECK(m.stats[1] == doctest::Approx(0.5));
}

TEST_CASE("coco eval: area ranges and maxDets") {
  ImageRecord r;
  r.image_id = 9;
  r.gts = {gt(0, 0, 20, 20), gt(100, 100, 200, 200)};  // small (400) and large (40000)
  r.dets = {det(0, 0, 20, 20, 0.6), det(100, 100, 200, 200, 0.7)};
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m = evaluate_detections({r}, o);
  CHECK(m.stats[3] == doctest::Approx(1.0));  // small
  CHECK(m.stats[4] == -1);                    // medium: no boxes
  CHECK(m.stats[5] == doctest::Approx(1.0));  // large
  CHECK(m.stats[6] == doctest::Approx(0.5));  // AR@1: one detection per image
  CHECK(m.stats[7] == doctest::Approx(1.0));
  // an unmatched small detection counts against AP small only; a detection matching a box outside the
  // range is ignored there
  r.dets.push_back(det(400, 400, 10, 10, 0.95));
  const DetectionMetrics n = evaluate_detections({r}, o);
  CHECK(n.stats[3] < 1);
  CHECK(n.stats[5] == doctest::Approx(1.0));
}

TEST_CASE("best-F1 precision and recall as ultralytics computes them, at an interior confidence") {
  // 2 labels; detections 0.9 TP, 0.8 TP, then FPs at 0.3, 0.2, 0.1: F1 peaks just below 0.8, at
  // px = 799/999, where recall is 1 and precision interpolates between 1 (conf 0.8) and 2/3 (conf 0.3)
  ClassMatches c;
  c.labels = 2;
  c.conf = {0.3, 0.9, 0.1, 0.8, 0.2};
  c.tp = {0, 1, 0, 1, 0};
  const BestF1 f = best_f1({c});
  const double px = 799.0 / 999;
  const double p = 1 + (2.0 / 3 - 1) / (0.5) * (-px + 0.8);
  CHECK(f.conf == doctest::Approx(px).epsilon(1e-15));
  CHECK(f.recall == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(f.precision == doctest::Approx(p).epsilon(1e-12));
  CHECK(f.f1 == doctest::Approx(2 * p / (p + 1)).epsilon(1e-12));
  // a class with labels but no detections counts as zeros in the class mean
  ClassMatches none;
  none.labels = 3;
  const BestF1 g = best_f1({c, none});
  CHECK(g.recall == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(np_interp(0.5, {0, 1}, {0, 10}, -1) == 5);
  CHECK(np_interp(-1, {0, 1}, {0, 10}, -1) == -1);
  CHECK(np_interp(2, {0, 1}, {0, 10}, -1) == 10);
  CHECK(np_interp(1, {0, 1, 1, 2}, {0, 10, 20, 30}, -1) == 20);  // equal xp: the last wins
}

TEST_CASE("coco eval: records in any order evaluate in image-id order; bad records are named") {
  std::vector<ImageRecord> recs = worked_curve();
  ImageRecord extra;
  extra.image_id = 2;
  extra.dets = {det(0, 0, 50, 50, 0.7)};  // an FP in an image without boxes, tied with a TP of image 7
  recs.push_back(extra);
  EvalOptions o;
  o.num_classes = 1;
  const DetectionMetrics m1 = evaluate_detections(recs, o);
  std::swap(recs[0], recs[1]);
  const DetectionMetrics m2 = evaluate_detections(recs, o);
  CHECK(m1.stats == m2.stats);
  recs[1].image_id = 2;
  CHECK(contains(error_of([&] { evaluate_detections(recs, o); }), "image id 2 appears in two records"));
  recs[1].image_id = 3;
  recs[1].dets[0].category = 1;
  CHECK(contains(error_of([&] { evaluate_detections(recs, o); }), "detection of category 1, outside 0..0"));
}

TEST_CASE("records: bytes round trip exactly, and a damaged blob is an error naming the problem") {
  std::vector<ImageRecord> recs = worked_curve();
  recs[0].gts[1].crowd = true;
  recs[0].gts[2].difficult = true;
  recs[0].gts[3].area = 1234.5;
  recs[0].dets[0].score = 0.1 + 0.2;  // not a short decimal: must come back bit for bit
  ImageRecord empty;
  empty.image_id = -5;
  recs.push_back(empty);
  const std::vector<uint8_t> b = serialize_records(recs);
  const std::vector<ImageRecord> back = deserialize_records(b.data(), b.size());
  REQUIRE(back.size() == 2);
  CHECK(back[0].image_id == 7);
  CHECK(back[1].image_id == -5);
  CHECK(back[0].dets[0].score == 0.1 + 0.2);
  CHECK(back[0].gts[1].crowd);
  CHECK(back[0].gts[2].difficult);
  CHECK(back[0].gts[3].area == 1234.5);
  CHECK(serialize_records(back) == b);
  CHECK(contains(error_of([&] { deserialize_records(b.data(), b.size() - 3); }), "the blob ends at byte"));
  std::vector<uint8_t> longer = b;
  longer.push_back(0);
  CHECK(contains(error_of([&] { deserialize_records(longer.data(), longer.size()); }), "1 bytes left over"));
  CHECK(contains(error_of([&] { deserialize_records(b.data() + 1, b.size() - 1); }), "not a record blob"));
}

TEST_CASE("make_record: detections and ground truth from tensors, corners to COCO boxes") {
  const Tensor d = from_vector<double>({10, 20, 40, 60, 0.9, 2}, {1, 6});
  const Tensor g = from_vector<double>({1, 0, 0, 5, 5, 2, 10, 20, 40, 60}, {2, 5});
  const ImageRecord r = make_record(3, d.to(DType::f32), g, from_vector<double>({1, 0}));
  REQUIRE(r.dets.size() == 1);
  CHECK(r.dets[0].x == 10);
  CHECK(r.dets[0].w == 30);
  CHECK(r.dets[0].h == 40);
  CHECK(r.dets[0].category == 2);
  CHECK(r.dets[0].score == doctest::Approx(0.9));
  REQUIRE(r.gts.size() == 2);
  CHECK(r.gts[0].crowd);
  CHECK(!r.gts[1].crowd);
  CHECK(r.gts[1].w == 30);
  CHECK(contains(error_of([&] { make_record(0, zeros({1, 5}), g); }), "detections must be (n, 6)"));
}
