// The detection confusion matrix on hand cases (a match, a class confusion, a false positive, a
// missed box, both thresholds, one match per box, crowd and difficult boxes, merging) and the PR
// curves at IoU 0.5: a worked curve by hand and agreement with evaluate_detections' AP@0.5.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "metrics/coco_eval.h"
#include "metrics/confusion_matrix.h"
#include "metrics/pr_curves.h"
#include "test_util.h"

using namespace rg;
using namespace rg::metrics;
using rg::test::contains;
using rg::test::error_of;

namespace {

GtBox gt(double x, double y, double w, double h, int64_t c, bool crowd = false, bool difficult = false) {
  GtBox g;
  g.x = x, g.y = y, g.w = w, g.h = h, g.category = c, g.crowd = crowd, g.difficult = difficult;
  return g;
}
DetBox det(double x, double y, double w, double h, double score, int64_t c) { return {x, y, w, h, score, c}; }

using Counts = std::vector<std::vector<double>>;

// The counts of one record with 2 classes (rows predicted, columns true, index 2 = background).
Counts one(const ImageRecord& r, double conf = 0.25, double iou = 0.45) {
  ConfusionMatrix m(2, conf, iou);
  m.add(r);
  return m.counts();
}

Counts zeros() { return Counts(3, std::vector<double>(3, 0.0)); }

}  // namespace

TEST_CASE("confusion matrix: a match, a confusion, a false positive, a missed box") {
  ImageRecord r;
  r.gts = {gt(0, 0, 10, 10, 0)};
  r.dets = {det(0, 0, 10, 10, 0.9, 0)};
  Counts want = zeros();
  want[0][0] = 1;
  CHECK(one(r) == want);

  r.dets[0].category = 1;  // the same box called a dog: predicted 1, true 0
  want = zeros();
  want[1][0] = 1;
  CHECK(one(r) == want);

  ImageRecord fp;  // a detection where nothing is: background false positive of its class
  fp.dets = {det(50, 50, 10, 10, 0.9, 1)};
  want = zeros();
  want[1][2] = 1;
  CHECK(one(fp) == want);

  ImageRecord fn;  // a box nobody found: predicted background
  fn.gts = {gt(0, 0, 10, 10, 1)};
  want = zeros();
  want[2][1] = 1;
  CHECK(one(fn) == want);

  ImageRecord both;  // a detection far from the box: one of each
  both.gts = {gt(0, 0, 10, 10, 0)};
  both.dets = {det(50, 50, 10, 10, 0.9, 0)};
  want = zeros();
  want[0][2] = 1;
  want[2][0] = 1;
  CHECK(one(both) == want);
}

TEST_CASE("confusion matrix: the confidence and IoU thresholds are strict") {
  ImageRecord r;
  r.gts = {gt(0, 0, 10, 10, 0)};
  r.dets = {det(0, 0, 10, 10, 0.25, 0)};  // at conf: dropped, the box is missed
  Counts missed = zeros();
  missed[2][0] = 1;
  CHECK(one(r) == missed);
  r.dets[0].score = 0.2501;
  Counts hit = zeros();
  hit[0][0] = 1;
  CHECK(one(r) == hit);
  CHECK(one(r, 0.3) == missed);
  // IoU 45 / 100 = 0.45 exactly: not above 0.45, so a false positive and a missed box
  r.dets = {det(0, 0, 4.5, 10, 0.9, 0)};
  Counts apart = zeros();
  apart[0][2] = 1;
  apart[2][0] = 1;
  CHECK(one(r) == apart);
  r.dets[0].w = 4.6;  // IoU 0.46
  CHECK(one(r) == hit);
  CHECK(one(r, 0.25, 0.5) == apart);
}

TEST_CASE("confusion matrix: one detection per box, highest IoU first, as ultralytics' process_batch") {
  ImageRecord r;
  r.gts = {gt(0, 0, 10, 10, 0)};
  r.dets = {det(1, 0, 10, 10, 0.6, 1), det(0, 0, 10, 10, 0.5, 0)};  // IoU 0.818 (class 1), 1.0 (class 0)
  Counts want = zeros();
  want[0][0] = 1;  // the better overlap wins even at a lower score
  want[1][2] = 1;  // the other detection is a false positive
  CHECK(one(r) == want);
  // Each detection keeps only its best box before the boxes choose: A overlaps box 1 (0.615) and
  // box 2 (0.5), B overlaps box 1 (1.0). Box 1 takes B; A is not given box 2.
  ImageRecord q;
  q.gts = {gt(0, 0, 10, 10, 0), gt(6, 0, 10, 10, 1)};
  q.dets = {det(2, 0, 11, 10, 0.9, 1), det(0, 0, 10, 10, 0.8, 0)};
  want = zeros();
  want[0][0] = 1;  // B on box 1
  want[1][2] = 1;  // A: false positive
  want[2][1] = 1;  // box 2: missed
  CHECK(one(q) == want);
  // without B, A takes its best box (box 1, as a confusion) and box 2 is missed
  q.dets.pop_back();
  want = zeros();
  want[1][0] = 1;
  want[2][1] = 1;
  CHECK(one(q) == want);
}

TEST_CASE("confusion matrix: crowd and difficult boxes skipped, images accumulate, merge, errors") {
  ImageRecord r;
  r.gts = {gt(0, 0, 10, 10, 0, true), gt(20, 0, 10, 10, 1, false, true)};
  r.dets = {det(0, 0, 10, 10, 0.9, 0), det(20, 0, 10, 10, 0.9, 1)};
  Counts want = zeros();
  want[0][2] = 1;
  want[1][2] = 1;
  CHECK(one(r) == want);
  ConfusionMatrix a(2), b(2);
  ImageRecord hit;
  hit.gts = {gt(0, 0, 10, 10, 1)};
  hit.dets = {det(0, 0, 10, 10, 0.9, 1)};
  a.add(hit);
  a.add(hit);
  b.add(r);
  a.merge(b);
  want[1][1] = 2;
  CHECK(a.counts() == want);
  CHECK(a.counts().size() == 3);
  CHECK(contains(error_of([&] { a.merge(ConfusionMatrix(3)); }), "2 classes at conf 0.25 IoU 0.45 against 3 classes"));
  ImageRecord bad;
  bad.image_id = 4;
  bad.dets = {det(0, 0, 1, 1, 0.9, 2)};
  CHECK(contains(error_of([&] { a.add(bad); }), "image 4 has a detection of category 2, outside 0..1"));
  CHECK(contains(error_of([] { ConfusionMatrix(0); }), "num_classes must be positive"));
}

TEST_CASE("PR curves at 0.5: a worked curve by hand") {
  // 4 boxes of class 0; detections by score TP, FP, TP, FP, TP. Recall .25 .25 .5 .5 .75, precision
  // 1 .5 .667 .5 .6; the envelope 1 .667 .667 .6 .6.
  ImageRecord r;
  r.image_id = 3;
  for (int i = 0; i < 4; ++i) r.gts.push_back(gt(100.0 * i, 0, 50, 50, 0));
  r.dets = {det(0, 0, 50, 50, 0.9, 0), det(0, 500, 50, 50, 0.8, 0), det(100, 0, 50, 50, 0.7, 0),
            det(100, 500, 50, 50, 0.6, 0), det(200, 0, 50, 50, 0.5, 0)};
  const PrCurves c = pr_curves_at_50({r}, 2);
  REQUIRE(c.recall_grid.size() == 1000);
  CHECK(c.recall_grid[0] == 0);
  CHECK(c.recall_grid[999] == 1);
  CHECK(c.recall_grid[1] == doctest::Approx(1.0 / 999));
  REQUIRE(c.precision.size() == 2);
  auto at = [&](double rec) { return c.precision[0][static_cast<size_t>(std::lround(rec * 999))]; };
  CHECK(at(0) == doctest::Approx(1));  // 1 / (1 + 2^-52), as COCOeval
  CHECK(at(0.2) == doctest::Approx(1));
  CHECK(at(0.3) == doctest::Approx(2.0 / 3));
  CHECK(c.precision[0][499] == doctest::Approx(2.0 / 3));  // 499 / 999 < 0.5: recall 0.5 is the first >= it
  CHECK(c.precision[0][500] == doctest::Approx(0.6));      // 500 / 999 > 0.5
  CHECK(at(0.6) == doctest::Approx(0.6));
  CHECK(at(0.8) == 0);
  CHECK(at(1) == 0);
  // 101 points: r 0..0.25 (26) at 1, 0.26..0.5 (25) at 2/3, 0.51..0.75 (25) at 0.6
  CHECK(c.ap50[0] == doctest::Approx((26 + 25 * 2.0 / 3 + 25 * 0.6) / 101).epsilon(1e-12));
  CHECK(c.ap50[1] == -1);  // no ground truth
  CHECK(std::all_of(c.precision[1].begin(), c.precision[1].end(), [](double v) { return v == 0; }));
  CHECK(pr_curves_at_50({r}, 2, ApMethod::VocAllPoints).ap50[0] == doctest::Approx(0.25 + 0.25 * 2.0 / 3 + 0.25 * 0.6));
  ImageRecord half;  // IoU 50 / 100 = 0.5 exactly: a match at 0.5 (COCO's >=)
  half.gts = {gt(0, 0, 10, 10, 1)};
  half.dets = {det(0, 0, 5, 10, 0.9, 1)};
  CHECK(pr_curves_at_50({half}, 2).ap50[1] == doctest::Approx(1));
  CHECK(contains(error_of([&] { pr_curves_at_50({r, r}, 2); }), "image id 3 appears in two records"));
  CHECK(contains(error_of([&] { pr_curves_at_50({r}, 0); }), "num_classes must be positive"));
}

TEST_CASE("PR curves at 0.5: AP@0.5 equals evaluate_detections' on random records, and the curve's area the all-points AP") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t K = 4;
  std::vector<ImageRecord> recs;
  for (int i = 0; i < 40; ++i) {
    ImageRecord r;
    r.image_id = (i * 7) % 40;  // out of order
    const int ng = static_cast<int>(u(rng) * 6);
    for (int g = 0; g < ng; ++g) {
      const int64_t c = static_cast<int64_t>(u(rng) * 3);  // class 3 never has ground truth
      r.gts.push_back(gt(u(rng) * 300, u(rng) * 300, 20 + u(rng) * 80, 20 + u(rng) * 80, c, u(rng) < 0.05, u(rng) < 0.05));
      const int nd = static_cast<int>(u(rng) * 3);
      for (int d = 0; d < nd; ++d) {  // jittered copies: IoUs on both sides of 0.5
        const GtBox& b = r.gts.back();
        const int64_t dc = u(rng) < 0.8 ? c : static_cast<int64_t>(u(rng) * K);
        r.dets.push_back(det(b.x + (u(rng) - 0.5) * b.w * 0.6, b.y + (u(rng) - 0.5) * b.h * 0.6, b.w * (0.7 + 0.6 * u(rng)),
                             b.h * (0.7 + 0.6 * u(rng)), std::round(u(rng) * 20) / 20, dc));
      }
    }
    const int extra = i == 5 ? 130 : static_cast<int>(u(rng) * 3);  // image 5: more than 100 per class
    for (int d = 0; d < extra; ++d) {
      r.dets.push_back(det(u(rng) * 300, u(rng) * 300, 30, 30, u(rng) * (i == 5 ? 0.2 : 1), i == 5 ? 0 : static_cast<int64_t>(u(rng) * K)));
    }
    recs.push_back(r);
  }
  for (ApMethod m : {ApMethod::Coco101, ApMethod::VocAllPoints, ApMethod::Voc11}) {
    EvalOptions o;
    o.num_classes = K;
    o.ap_method = m;
    const DetectionMetrics ev = evaluate_detections(recs, o);
    const PrCurves c = pr_curves_at_50(recs, K, m);
    for (int64_t k = 0; k < K; ++k) {
      CHECK_MESSAGE(c.ap50[k] == ev.ap50_per_class[k], "class ", k, " method ", static_cast<int>(m));  // bitwise
    }
    CHECK(c.ap50[3] == -1);
    CHECK(c.ap50[0] > 0.1);
  }
  // The plotted curve is the step whose area is the all-points AP: sampled at 1000 recalls, the
  // right Riemann sum is within one grid step of it.
  EvalOptions o;
  o.num_classes = K;
  o.ap_method = ApMethod::VocAllPoints;
  const DetectionMetrics ev = evaluate_detections(recs, o);
  const PrCurves c = pr_curves_at_50(recs, K);
  for (int64_t k = 0; k < 3; ++k) {
    double area = 0;
    for (size_t i = 1; i < c.recall_grid.size(); ++i) area += (c.recall_grid[i] - c.recall_grid[i - 1]) * c.precision[k][i];
    CHECK(std::fabs(area - ev.ap50_per_class[k]) <= 1.0 / 999);
    bool envelope = true;
    for (size_t i = 1; i < c.recall_grid.size(); ++i) envelope &= c.precision[k][i] <= c.precision[k][i - 1];
    CHECK(envelope);
  }
}
