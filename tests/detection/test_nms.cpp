// Non-maximum suppression on the CPU: hand cases (same and different classes, ties, thresholds,
// max-det, agnostic, multi-label), the kernel against a plain greedy NMS written here in every float
// dtype, and the YOLO decode on a hand-made head.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "models/yolo_decode.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;

namespace {

Tensor boxes_of(const std::vector<std::array<double, 4>>& b, DType dt = DType::f32) {
  std::vector<double> v;
  for (const auto& x : b) v.insert(v.end(), x.begin(), x.end());
  return from_vector<double>(v, {static_cast<int64_t>(b.size()), 4}).to(dt);
}
Tensor vec(const std::vector<double>& v, DType dt = DType::f32) { return from_vector<double>(v).to(dt); }
std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }

// Greedy NMS written from the definition, over values already rounded to the dtype: sort by score
// (stable), keep a box unless a kept box overlaps it with IoU > thr (IoU in the dtype's accumulation).
template <typename A>
std::vector<int64_t> reference_nms(const std::vector<double>& b, const std::vector<double>& s, double thr,
                                   double score_thr, int64_t max_keep) {
  std::vector<int64_t> order;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] > score_thr) order.push_back(static_cast<int64_t>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return s[x] > s[y]; });
  std::vector<int64_t> kept;
  for (int64_t i : order) {
    bool ok = true;
    for (int64_t k : kept) {
      const A ax1 = A(b[4 * k]), ay1 = A(b[4 * k + 1]), ax2 = A(b[4 * k + 2]), ay2 = A(b[4 * k + 3]);
      const A bx1 = A(b[4 * i]), by1 = A(b[4 * i + 1]), bx2 = A(b[4 * i + 2]), by2 = A(b[4 * i + 3]);
      volatile A w = std::min(ax2, bx2) - std::max(ax1, bx1);
      volatile A h = std::min(ay2, by2) - std::max(ay1, by1);
      const A wc = w > A(0) ? A(w) : A(0), hc = h > A(0) ? A(h) : A(0);
      volatile A inter = wc * hc;
      volatile A area_a = (ax2 - ax1) * (ay2 - ay1);
      volatile A area_b = (bx2 - bx1) * (by2 - by1);
      volatile A uni = A(area_a) + A(area_b);
      volatile A uni2 = A(uni) - A(inter);
      volatile A iou = A(inter) / A(uni2);
      if (static_cast<double>(A(iou)) > thr) {
        ok = false;
        break;
      }
    }
    if (ok) kept.push_back(i);
    if (static_cast<int64_t>(kept.size()) == max_keep) break;
  }
  return kept;
}

}  // namespace

TEST_CASE("nms: overlapping boxes of one class keep the best; a distant box survives") {
  // A and B overlap with IoU 81 / 119 = 0.68; C is far away
  const Tensor b = boxes_of({{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}});
  CHECK(ints(native::nms(b, vec({0.8, 0.9, 0.7}), 0.5)) == std::vector<int64_t>{1, 2});
  CHECK(ints(native::nms(b, vec({0.9, 0.8, 0.7}), 0.5)) == std::vector<int64_t>{0, 2});
  CHECK(ints(native::nms(b, vec({0.9, 0.8, 0.7}), 0.7)) == std::vector<int64_t>{0, 1, 2});  // 0.68 < 0.7
}

TEST_CASE(
    "nms: the threshold is strict (IoU equal to it does not suppress) and scores must exceed the score threshold") {
  // inter 2, union 4: IoU exactly 0.5
  const Tensor b = boxes_of({{0, 0, 3, 1}, {1, 0, 4, 1}});
  CHECK(ints(native::nms(b, vec({0.9, 0.8}), 0.5)) == std::vector<int64_t>{0, 1});
  CHECK(ints(native::nms(b, vec({0.9, 0.8}), 0.49)) == std::vector<int64_t>{0});
  CHECK(ints(native::nms(b, vec({0.9, 0.8}), 0.49, 0.85)) == std::vector<int64_t>{0});
  CHECK(ints(native::nms(b, vec({0.8, 0.9}), 0.49, 0.85)) == std::vector<int64_t>{1});
  CHECK(ints(native::nms(b, vec({0.8, 0.8}), 0.49, 0.8)).empty());  // score must be > threshold
  // the threshold is rounded to the scores' dtype first, as PyTorch compares a tensor with a number
  CHECK(ints(native::nms(b.to(DType::f64), vec({0.8, 0.8}, DType::f64), 0.49, 0.8)).empty());
  CHECK(ints(native::nms(b.to(DType::f16), vec({0.8, 0.81}, DType::f16), 0.49, 0.8)) == std::vector<int64_t>{1});
  CHECK(ints(native::nms(b, vec({NAN, 0.1}), 0.49)) == std::vector<int64_t>{1});  // NaN is never a candidate
}

TEST_CASE("nms: equal scores keep the lower index first, -0 and +0 included") {
  const Tensor same = boxes_of({{0, 0, 10, 10}, {0, 0, 10, 10}, {0, 0, 10, 10}});
  CHECK(ints(native::nms(same, vec({0.5, 0.5, 0.5}), 0.5)) == std::vector<int64_t>{0});
  CHECK(ints(native::nms(same, vec({0.4, 0.5, 0.5}), 0.5)) == std::vector<int64_t>{1});
  const Tensor apart = boxes_of({{0, 0, 1, 1}, {5, 5, 6, 6}, {10, 10, 11, 11}, {20, 20, 21, 21}});
  CHECK(ints(native::nms(apart, vec({0.5, 0.7, 0.5, 0.7}), 0.5)) == std::vector<int64_t>{1, 3, 0, 2});
  CHECK(ints(native::nms(apart, vec({-0.0, 0.0, -0.0, 0.0}), 0.5)) == std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("nms: max_keep and max_candidates cut in score order") {
  const Tensor apart = boxes_of({{0, 0, 1, 1}, {5, 5, 6, 6}, {10, 10, 11, 11}, {20, 20, 21, 21}});
  const Tensor s = vec({0.1, 0.4, 0.3, 0.2});
  CHECK(ints(native::nms(apart, s, 0.5, -INFINITY, 0, 2)) == std::vector<int64_t>{1, 2});
  CHECK(ints(native::nms(apart, s, 0.5, -INFINITY, 3, -1)) == std::vector<int64_t>{1, 2, 3});
  CHECK(ints(native::nms(apart, s, 0.5, -INFINITY, 0, 0)).empty());
  // max_keep stops after keeping, not after looking: the suppressed box 1 does not use up a slot
  const Tensor b = boxes_of({{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}});
  CHECK(ints(native::nms(b, vec({0.9, 0.8, 0.7}), 0.5, -INFINITY, 0, 2)) == std::vector<int64_t>{0, 2});
}

TEST_CASE("nms: empty input, and argument errors name what is wrong") {
  CHECK(native::nms(zeros({0, 4}), zeros({0}), 0.5).numel() == 0);
  CHECK(contains(error_of([] { native::nms(zeros({3, 5}), zeros({3}), 0.5); }), "boxes must be (N, 4)"));
  CHECK(contains(error_of([] { native::nms(zeros({3, 4}), zeros({2}), 0.5); }), "scores must be (N) with N = 3"));
  CHECK(contains(error_of([] { native::nms(zeros({3, 4}), zeros({3}, DType::f64), 0.5); }), "one floating dtype"));
  CHECK(contains(error_of([] {
                   native::nms(zeros({3, 4}, DType::i64), zeros({3}, DType::i64), 0.5);
                 }),
                 "one floating dtype"));
}

TEST_CASE("batched_nms: overlapping boxes of different classes are both kept; of one class, one") {
  // every pair overlaps with IoU > 0.5 (0.68, 0.82, 0.82)
  const Tensor b = boxes_of({{0, 0, 10, 10}, {1, 1, 11, 11}, {0.5, 0.5, 10.5, 10.5}});
  const Tensor s = vec({0.9, 0.8, 0.7});
  CHECK(ints(batched_nms(b, s, vec({0, 1, 0}), 0.5)) == std::vector<int64_t>{0, 1});
  CHECK(ints(batched_nms(b, s, vec({0, 1, 1}), 0.5)) == std::vector<int64_t>{0, 1});
  CHECK(ints(batched_nms(b, s, vec({0, 0, 0}), 0.5)) == std::vector<int64_t>{0});
  CHECK(ints(batched_nms(b, s, vec({2, 1, 0}), 0.5)) == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("nms kernel equals a plain greedy NMS on random boxes with ties, in every float dtype") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (int64_t n : {1, 7, 64, 65, 300, 1031}) {
      const std::string name = dtype_name(dt);
      CAPTURE(name);
      CAPTURE(n);
      std::mt19937_64 g(static_cast<uint64_t>(n) * 7 + static_cast<uint64_t>(dt));
      std::uniform_real_distribution<double> u(0, 1);
      std::vector<double> b, s;
      for (int64_t i = 0; i < n; ++i) {
        const double x = u(g) * 100, y = u(g) * 100, w = 1 + u(g) * 30, h = 1 + u(g) * 30;
        b.insert(b.end(), {x, y, x + w, y + h});
        s.push_back(std::floor(u(g) * 20) / 20);  // many equal scores
      }
      const Tensor bt = from_vector<double>(b, {n, 4}).to(dt), st = from_vector<double>(s).to(dt);
      const std::vector<double> bv = bt.to_vector<double>(), sv = st.to_vector<double>();  // rounded to dt
      const double score_thr = from_vector<double>({0.1}).to(dt).item();                   // compared in the dtype
      for (double thr : {0.3, 0.5, 0.7}) {
        const std::vector<int64_t> want = dt == DType::f64 ? reference_nms<double>(bv, sv, thr, score_thr, -1)
                                                           : reference_nms<float>(bv, sv, thr, score_thr, -1);
        CHECK(ints(native::nms(bt, st, thr, 0.1)) == want);
      }
    }
  }
}

TEST_CASE("non_max_suppression: scores are obj x cls, boxes corners in pixels, classes separate unless agnostic") {
  // rows (cx, cy, w, h, obj, cls0, cls1): rows 0 and 1 overlap (IoU 0.68), row 2 is elsewhere
  const Tensor d = from_vector<double>({5,   5,   10, 10, 0.9, 0.9, 0.1,   //
                                        6,   6,   10, 10, 0.8, 0.2, 0.9,   //
                                        25,  25,  10, 10, 0.5, 0.6, 0.5,   //
                                        5.5, 5.5, 10, 10, 0.5, 0.1, 0.1},  // 0.05 < conf_thres
                                       {1, 4, 7});
  NmsOptions o;
  o.conf_thres = 0.1;
  o.iou_thres = 0.5;
  std::vector<Tensor> out = non_max_suppression(d, o);
  REQUIRE(out.size() == 1);
  // row 0: class 0 score 0.81; row 1: class 1 score 0.72; row 2: class 0 score 0.30
  rg::test::Tol tol{1e-6, 0};
  RG_CHECK_CLOSE(out[0],
                 from_vector<double>({0, 0, 10, 10, 0.81, 0,  //
                                      1, 1, 11, 11, 0.72, 1,  //
                                      20, 20, 30, 30, 0.30, 0},
                                     {3, 6})
                     .to(DType::f32),
                 tol);
  o.agnostic = true;
  out = non_max_suppression(d, o);
  RG_CHECK_CLOSE(out[0], from_vector<double>({0, 0, 10, 10, 0.81, 0, 20, 20, 30, 30, 0.30, 0}, {2, 6}).to(DType::f32),
                 tol);
  o.agnostic = false;
  o.max_det = 2;
  CHECK(non_max_suppression(d, o)[0].size(0) == 2);
  o.max_det = 300;
  o.classes = {1};
  RG_CHECK_CLOSE(non_max_suppression(d, o)[0], from_vector<double>({1, 1, 11, 11, 0.72, 1}, {1, 6}).to(DType::f32),
                 tol);
}

TEST_CASE("non_max_suppression multi_label: every (row, class) above the threshold is a candidate") {
  const Tensor d = from_vector<double>({5, 5, 10, 10, 1.0, 0.9, 0.8,   //
                                        6, 6, 10, 10, 1.0, 0.7, 0.6},  // overlaps row 0 in both classes
                                       {1, 2, 7});
  NmsOptions o;
  o.conf_thres = 0.5;
  o.iou_thres = 0.5;
  o.multi_label = true;
  const Tensor out = non_max_suppression(d, o)[0];
  RG_CHECK_CLOSE(out, from_vector<double>({0, 0, 10, 10, 0.9, 0, 0, 0, 10, 10, 0.8, 1}, {2, 6}).to(DType::f32),
                 (rg::test::Tol{1e-6, 0}));
  // an empty image gives (0, 6)
  const Tensor none = non_max_suppression(zeros({2, 3, 7}), o)[1];
  CHECK(none.sizes() == Shape{0, 6});
}

TEST_CASE("yolo_decode: darknet's formulas on a hand-made two-head output") {
  YoloHeadSpec h32, h16;
  h32.anchors = {{{20, 40}}};
  h32.stride = 32;
  h32.num_classes = 1;
  h16.anchors = {{{8, 8}}, {{16, 4}}};
  h16.stride = 16;
  h16.num_classes = 1;
  h16.scale_x_y = 1.2f;
  // input 32 x 64: head 32 has a 1 x 2 grid (2 rows), head 16 a 2 x 4 grid with 2 anchors (16 rows)
  Tensor flat = zeros({1, 18, 6});
  // head 32, cell (gy 0, gx 1): tx = 0 -> cx = (0.5 + 1) 32 = 48; tw = log 2 -> w = 40; th = 0 -> h = 40
  flat.select(0, 0).select(0, 1).copy_(from_vector<double>({0, 0, std::log(2.0), 0, 0, 0}));
  // head 16, anchor 1, cell (gy 1, gx 2): row 2 + 1 * 8 + 1 * 4 + 2 = 16; tx = ln 3, ty = -ln 3 (sigmoid
  // 0.75 and 0.25) with s = 1.2: cx = (0.75 * 1.2 - 0.1 + 2) 16 = 44.8, cy = (0.3 - 0.1 + 1) 16 = 19.2;
  // w = 16, h = 4
  flat.select(0, 0).select(0, 16).copy_(from_vector<double>({std::log(3.0), -std::log(3.0), 0, 0, 2, -2}));
  const Tensor d = yolo_decode(flat, {h32, h16}, 32, 64);
  REQUIRE(d.sizes() == Shape{1, 18, 6});
  const rg::test::Tol tol{1e-5, 1e-6};
  RG_CHECK_CLOSE(d.select(0, 0).select(0, 1), from_vector<double>({48, 16, 40, 40, 0.5, 0.5}).to(DType::f32), tol);
  const double s2 = 1 / (1 + std::exp(-2.0));
  RG_CHECK_CLOSE(d.select(0, 0).select(0, 16), from_vector<double>({44.8, 19.2, 16, 4, s2, 1 - s2}).to(DType::f32),
                 tol);
  // head 32, cell (0, 0): cx = 16, cy = 16, anchor 20 x 40
  RG_CHECK_CLOSE(d.select(0, 0).select(0, 0), from_vector<double>({16, 16, 20, 40, 0.5, 0.5}).to(DType::f32), tol);
}
