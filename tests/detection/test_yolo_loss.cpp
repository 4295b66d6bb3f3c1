// The YOLO losses: hand-worked cases (which head, anchor and cell each target lands in, and the loss
// value from a loop-by-loop re-implementation written here), f64 gradchecks, empty targets and
// images without targets, autocast, and the errors for bad targets.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/autocast.h"
#include "models/yolo_loss.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;

namespace {

// Two heads in darknet order (stride 32 first), input 64 x 64: head 0 has a 2 x 2 grid, head 1 4 x 4.
// The cfg's anchors are (10,12) (20,20) (40,50) (64,64); head 0 masks 2,3 and head 1 masks 0,1.
std::vector<YoloHeadSpec> two_heads(int64_t classes = 3) {
  YoloHeadSpec h0, h1;
  h0.all_anchors = h1.all_anchors = {{{10, 12}}, {{20, 20}}, {{40, 50}}, {{64, 64}}};
  h0.anchors = {{{40, 50}}, {{64, 64}}};
  h0.mask = {2, 3};
  h0.stride = 32;
  h1.anchors = {{{10, 12}}, {{20, 20}}};
  h1.mask = {0, 1};
  h1.stride = 16;
  h0.num_classes = h1.num_classes = classes;
  return {h0, h1};
}
constexpr int64_t kIn = 64;
constexpr int64_t kRows = 2 * 2 * 2 + 2 * 4 * 4;  // 40

// [image, class, cx, cy, w, h]
const std::vector<std::vector<double>> kTargets = {
    {0, 1, 0.30, 0.70, 0.50, 0.625},  // t0: 32 x 40 px
    {1, 0, 0.90, 0.10, 0.05, 0.05},   // t1: 3.2 x 3.2 px
    {1, 2, 0.95, 0.12, 0.06, 0.05},   // t2: lands in t1's cell of head 1
    {0, 0, 1.00, 0.50, 0.90, 0.90},   // t3: cx = 1 is clamped into the last column
    {1, 1, 0.50, 0.50, 0.00, 0.30},   // t4: zero width, never assigned
};
Tensor targets_tensor(const std::vector<std::vector<double>>& rows) {
  std::vector<double> v;
  for (const auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return from_vector<double>(v, {static_cast<int64_t>(rows.size()), 6});
}

double sig(double x) { return 1 / (1 + std::exp(-x)); }
double bce(double z, double t) { return std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))); }

// ultralytics' CIoU / GIoU of (cx, cy, w, h) boxes in double, eps 1e-7
double iou_ref(const double* p, const double* q, bool ciou) {
  const double eps = 1e-7;
  const double ax1 = p[0] - p[2] / 2, ax2 = p[0] + p[2] / 2, ay1 = p[1] - p[3] / 2, ay2 = p[1] + p[3] / 2;
  const double bx1 = q[0] - q[2] / 2, bx2 = q[0] + q[2] / 2, by1 = q[1] - q[3] / 2, by2 = q[1] + q[3] / 2;
  const double inter =
      std::max(std::min(ax2, bx2) - std::max(ax1, bx1), 0.0) * std::max(std::min(ay2, by2) - std::max(ay1, by1), 0.0);
  const double w1 = ax2 - ax1, h1 = ay2 - ay1 + eps, w2 = bx2 - bx1, h2 = by2 - by1 + eps;
  const double uni = w1 * h1 + w2 * h2 - inter + eps, iou = inter / uni;
  const double cw = std::max(ax2, bx2) - std::min(ax1, bx1), ch = std::max(ay2, by2) - std::min(ay1, by1);
  if (!ciou) {
    const double c = cw * ch + eps;
    return iou - (c - uni) / c;
  }
  const double c2 = cw * cw + ch * ch + eps;
  const double rho2 = (std::pow(bx1 + bx2 - ax1 - ax2, 2) + std::pow(by1 + by2 - ay1 - ay2, 2)) / 4;
  const double v = 4 / (M_PI * M_PI) * std::pow(std::atan(w2 / h2) - std::atan(w1 / h1), 2);
  const double alpha = v / (v - iou + 1 + eps);
  return iou - (rho2 / c2 + v * alpha);
}

// The v3 loss written as loops over heads, anchors and targets (Note [YOLO v3 loss]).
struct Ref {
  double total, box, obj, cls;
};
Ref v3_reference(const std::vector<double>& pred, int64_t B, const std::vector<YoloHeadSpec>& heads,
                 const std::vector<std::vector<double>>& tg, const YoloLossOptions& o) {
  const int64_t C = heads[0].num_classes, K = 5 + C;
  const std::vector<double> balance = {1.0, 4.0};  // head 0 is stride 32, head 1 stride 16 (nl = 2: 4.0, 1.0 by stride)
  double lbox = 0, lobj = 0, lcls = 0;
  int64_t row0 = 0;
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto& h = heads[i];
    const int64_t G = kIn / h.stride, A = h.num_anchors();
    std::vector<double> tobj(static_cast<size_t>(B * A * G * G), 0.0);
    double box_i = 0, cls_i = 0;
    int64_t n = 0;
    for (int64_t a = 0; a < A; ++a) {
      const double aw = h.anchors[a][0] / h.stride, ah = h.anchors[a][1] / h.stride;
      for (const auto& t : tg) {
        const double gw = t[4] * G, gh = t[5] * G;
        const double rw = gw / aw, rh = gh / ah;
        if (!(std::max(std::max(rw, 1 / rw), std::max(rh, 1 / rh)) < o.anchor_t)) continue;
        const auto b = static_cast<int64_t>(t[0]);
        const int64_t gi = std::min<int64_t>(static_cast<int64_t>(t[2] * G), G - 1);
        const int64_t gj = std::min<int64_t>(static_cast<int64_t>(t[3] * G), G - 1);
        const double* p = &pred[static_cast<size_t>((b * kRows + row0 + a * G * G + gj * G + gi) * K)];
        const double pb[4] = {sig(p[0]), sig(p[1]), std::min(std::exp(p[2]), 1e3) * aw,
                              std::min(std::exp(p[3]), 1e3) * ah};
        const double tb[4] = {t[2] * G - gi, t[3] * G - gj, gw, gh};
        const double iou = iou_ref(pb, tb, o.box_iou == IouKind::CIoU);
        box_i += 1 - iou;
        ++n;
        tobj[static_cast<size_t>(((b * A + a) * G + gj) * G + gi)] = std::max(iou, 0.0);  // the last one wins
        for (int64_t c = 0; c < C; ++c) cls_i += bce(p[5 + c], c == static_cast<int64_t>(t[1]) ? 1.0 : 0.0);
      }
    }
    if (n) {
      lbox += box_i / n;
      lcls += cls_i / static_cast<double>(n * C);
    }
    double obj_i = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t c = 0; c < G * G; ++c) {
          const double z = pred[static_cast<size_t>((b * kRows + row0 + a * G * G + c) * K + 4)];
          obj_i += bce(z, tobj[static_cast<size_t>((b * A + a) * G * G + c)]);
        }
      }
    }
    lobj += obj_i / static_cast<double>(B * A * G * G) * balance[i];
    row0 += A * G * G;
  }
  const double nl = 2, img = kIn;
  lbox *= 0.05 * 3 / nl;
  lobj *= 1.0 * (img / 640) * (img / 640) * 3 / nl;
  lcls *= 0.5 * C / 80.0 * 3 / nl;
  return {(lbox + lobj + lcls) * B, lbox, lobj, lcls};
}

// darknet's forward_yolo_layer as loops (Note [Darknet YOLO loss]), iou_loss mse.
Ref darknet_reference(const std::vector<double>& pred, int64_t B, const std::vector<YoloHeadSpec>& heads,
                      const std::vector<std::vector<double>>& tg) {
  const int64_t C = heads[0].num_classes, K = 5 + C;
  double lbox = 0, lobj = 0, lcls = 0;
  int64_t row0 = 0;
  for (const auto& h : heads) {
    const int64_t G = kIn / h.stride, A = h.num_anchors();
    const double s = h.scale_x_y;
    std::vector<int> pos(static_cast<size_t>(B * A * G * G), 0);
    std::vector<std::vector<double>> hot(pos.size(), std::vector<double>(static_cast<size_t>(C), 0.0));
    for (const auto& t : tg) {  // best anchor over all anchors
      if (!(t[4] > 0 && t[5] > 0)) continue;
      int best = 0;
      double best_iou = 0;
      for (size_t k = 0; k < h.all_anchors.size(); ++k) {
        const double tw = t[4] * kIn, th = t[5] * kIn, aw = h.all_anchors[k][0], ah = h.all_anchors[k][1];
        const double inter = std::min(tw, aw) * std::min(th, ah), iou = inter / (tw * th + aw * ah - inter);
        if (iou > best_iou) {
          best_iou = iou;
          best = static_cast<int>(k);
        }
      }
      int64_t a = -1;
      for (int64_t m = 0; m < A; ++m) a = h.mask[m] == best ? m : a;
      if (a < 0) continue;
      const auto b = static_cast<int64_t>(t[0]);
      const int64_t i = std::min<int64_t>(static_cast<int64_t>(t[2] * G), G - 1);
      const int64_t j = std::min<int64_t>(static_cast<int64_t>(t[3] * G), G - 1);
      const int64_t cell = ((b * A + a) * G + j) * G + i;
      const double* p = &pred[static_cast<size_t>((b * kRows + row0 + a * G * G + j * G + i) * K)];
      const double scale = (2 - t[4] * t[5]) * h.iou_normalizer;
      const double tx = (t[2] * G - i + (s - 1) / 2) / s, ty = (t[3] * G - j + (s - 1) / 2) / s;
      const double tw = std::log(t[4] * kIn / h.anchors[a][0]), th = std::log(t[5] * kIn / h.anchors[a][1]);
      lbox +=
          scale * (s * bce(p[0], tx) + s * bce(p[1], ty) + 0.5 * std::pow(p[2] - tw, 2) + 0.5 * std::pow(p[3] - th, 2));
      pos[static_cast<size_t>(cell)] = 1;
      hot[static_cast<size_t>(cell)][static_cast<size_t>(t[1])] = 1;
    }
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t j = 0; j < G; ++j) {
          for (int64_t i = 0; i < G; ++i) {
            const int64_t cell = ((b * A + a) * G + j) * G + i;
            const double* p = &pred[static_cast<size_t>((b * kRows + row0 + a * G * G + j * G + i) * K)];
            if (pos[static_cast<size_t>(cell)]) {
              lobj += h.obj_normalizer * bce(p[4], 1);
              for (int64_t c = 0; c < C; ++c)
                lcls += h.cls_normalizer * bce(p[5 + c], hot[static_cast<size_t>(cell)][c]);
              continue;
            }
            const double box[4] = {(sig(p[0]) * s - (s - 1) / 2 + i) / G, (sig(p[1]) * s - (s - 1) / 2 + j) / G,
                                   std::exp(p[2]) * h.anchors[a][0] / kIn, std::exp(p[3]) * h.anchors[a][1] / kIn};
            double best = 0;
            for (const auto& t : tg) {
              if (static_cast<int64_t>(t[0]) != b) continue;
              const double l = std::max(box[0] - box[2] / 2, t[2] - t[4] / 2),
                           r = std::min(box[0] + box[2] / 2, t[2] + t[4] / 2);
              const double u = std::max(box[1] - box[3] / 2, t[3] - t[5] / 2),
                           d = std::min(box[1] + box[3] / 2, t[3] + t[5] / 2);
              if (r - l <= 0 || d - u <= 0) continue;
              const double inter = (r - l) * (d - u);
              best = std::max(best, inter / (box[2] * box[3] + t[4] * t[5] - inter));
            }
            if (best <= h.ignore_thresh) lobj += h.obj_normalizer * bce(p[4], 0);
          }
        }
      }
    }
    row0 += A * G * G;
  }
  return {lbox + lobj + lcls, lbox, lobj, lcls};
}

std::vector<double> random_pred(int64_t B, int64_t K, uint64_t seed) {
  return rg::test::uniform_values(B * kRows * K, -2, 2, seed);
}

void check_close(const YoloLossResult& r, const Ref& want, double tol) {
  CHECK(std::fabs(r.total.item() - want.total) <= tol * std::max(1.0, std::fabs(want.total)));
  CHECK(std::fabs(r.box.item() - want.box) <= tol * std::max(1.0, std::fabs(want.box)));
  CHECK(std::fabs(r.obj.item() - want.obj) <= tol * std::max(1.0, std::fabs(want.obj)));
  CHECK(std::fabs(r.cls.item() - want.cls) <= tol * std::max(1.0, std::fabs(want.cls)));
}

}  // namespace

TEST_CASE("v3 loss, hand case: heads, anchors and cells of each target (ratio match < 4, own cell, clamped)") {
  const auto heads = two_heads();
  const std::vector<YoloMatch> m = yolo_assignments(targets_tensor(kTargets), heads, kIn, kIn);
  // worked by hand from the w/h ratios (t0 32x40, t1 3.2x3.2, t2 3.84x3.2, t3 57.6x57.6 px):
  // head 0 (stride 32): t0 and t3 match both anchors; head 1 (stride 16): t0 both, t1 and t2 anchor 0
  // only (6.25 and 5.2 against (20, 20)), t3 anchor 1 only (5.76 against (10, 12))
  const std::vector<YoloMatch> want = {
      {0, 0, 0, 1, 0}, {3, 0, 0, 1, 1},                   // head 0, anchor 0
      {0, 0, 1, 1, 0}, {3, 0, 1, 1, 1},                   // head 0, anchor 1
      {0, 1, 0, 2, 1}, {1, 1, 0, 0, 3}, {2, 1, 0, 0, 3},  // head 1, anchor 0
      {0, 1, 1, 2, 1}, {3, 1, 1, 2, 3},                   // head 1, anchor 1
  };
  REQUIRE(m.size() == want.size());
  for (size_t k = 0; k < m.size(); ++k) {
    CAPTURE(k);
    CHECK(m[k].target == want[k].target);
    CHECK(m[k].head == want[k].head);
    CHECK(m[k].anchor == want[k].anchor);
    CHECK(m[k].gj == want[k].gj);
    CHECK(m[k].gi == want[k].gi);
  }
}

TEST_CASE("v3 loss, hand case: the value equals a loop-by-loop implementation (CIoU and GIoU)") {
  const auto heads = two_heads();
  const int64_t B = 2, K = 8;
  const std::vector<double> p = random_pred(B, K, 11);
  for (IouKind kind : {IouKind::CIoU, IouKind::GIoU}) {
    CAPTURE(iou_kind_name(kind));
    YoloLossOptions o;
    o.box_iou = kind;
    const Ref want = v3_reference(p, B, heads, kTargets, o);
    check_close(yolo_loss(from_vector<double>(p, {B, kRows, K}), targets_tensor(kTargets), heads, kIn, kIn, o), want,
                1e-10);
    // f32 computes the same to f32 rounding
    check_close(yolo_loss(from_vector<double>(p, {B, kRows, K}).to(DType::f32), targets_tensor(kTargets).to(DType::f32),
                          heads, kIn, kIn, o),
                want, 2e-5);
  }
}

TEST_CASE("darknet loss, hand case: best anchor over all masks, its head and cell, and the loss value") {
  auto heads = two_heads();
  YoloLossOptions o;
  o.kind = YoloLossKind::Darknet;
  const std::vector<YoloMatch> m = yolo_assignments(targets_tensor(kTargets), heads, kIn, kIn, o);
  // anchor IoUs by hand: t0 (32x40) best (40,50) = 0.64 -> head 0 anchor 0; t1 and t2 best (10,12) ->
  // head 1 anchor 0, one cell; t3 (57.6x57.6) best (64,64) = 0.81 -> head 0 anchor 1, column clamped
  const std::vector<YoloMatch> want = {{0, 0, 0, 1, 0}, {3, 0, 1, 1, 1}, {1, 1, 0, 0, 3}, {2, 1, 0, 0, 3}};
  REQUIRE(m.size() == want.size());
  for (size_t k = 0; k < m.size(); ++k) {
    CAPTURE(k);
    CHECK((m[k].target == want[k].target && m[k].head == want[k].head && m[k].anchor == want[k].anchor &&
           m[k].gj == want[k].gj && m[k].gi == want[k].gi));
  }
  heads[0].scale_x_y = 1.1f;
  heads[0].iou_normalizer = 0.75f;
  heads[1].obj_normalizer = 1.5f;
  heads[1].cls_normalizer = 0.5f;
  const int64_t B = 2, K = 8;
  std::vector<double> p = random_pred(B, K, 12);
  // make head 0 anchor 1 of image 0 at t0's cell predict t0's box exactly: IoU 1 > ignore_thresh, so its
  // no-object term is ignored (it is not t0's anchor)
  const double s = 1.1;
  double* q = &p[static_cast<size_t>((0 * kRows + 1 * 4 + 1 * 2 + 0) * K)];
  q[0] = std::log(((0.6 + (s - 1) / 2) / s) / (1 - (0.6 + (s - 1) / 2) / s));
  q[1] = std::log(((0.4 + (s - 1) / 2) / s) / (1 - (0.4 + (s - 1) / 2) / s));
  q[2] = std::log(32.0 / 64);
  q[3] = std::log(40.0 / 64);
  const Ref value = darknet_reference(p, B, heads, kTargets);
  const YoloLossResult r =
      yolo_loss(from_vector<double>(p, {B, kRows, K}), targets_tensor(kTargets), heads, kIn, kIn, o);
  check_close(r, value, 1e-10);
  // the ignored cell matters: without ignoring, the loss would be larger by its BCE(z, 0)
  heads[0].ignore_thresh = 1.5f;
  const Ref no_ignore = darknet_reference(p, B, heads, kTargets);
  CHECK(no_ignore.obj > value.obj);
  check_close(yolo_loss(from_vector<double>(p, {B, kRows, K}), targets_tensor(kTargets), heads, kIn, kIn, o), no_ignore,
              1e-10);
}

TEST_CASE("yolo losses gradcheck in f64 on a tiny input") {
  // one head, 2 anchors on a 2 x 2 grid (input 32), 2 classes, batch 2, three targets
  YoloHeadSpec h;
  h.anchors = {{{8, 10}}, {{20, 14}}};
  h.all_anchors = h.anchors;
  h.mask = {0, 1};
  h.stride = 16;
  h.num_classes = 2;
  h.scale_x_y = 1.05f;
  const Tensor t = targets_tensor({{0, 1, 0.3, 0.6, 0.4, 0.5}, {1, 0, 0.7, 0.2, 0.3, 0.2}, {1, 1, 0.6, 0.3, 0.5, 0.6}});
  for (int variant = 0; variant < 4; ++variant) {
    CAPTURE(variant);
    YoloLossOptions o;
    YoloHeadSpec hs = h;
    if (variant < 2) {
      // the objectness target is a detached IoU in the reference, and CIoU's alpha a constant: both
      // are invisible to finite differences, so check with a constant target (gr = 0) and GIoU
      o.box_iou = variant == 0 ? IouKind::GIoU : IouKind::DIoU;
      o.iou_ratio = 0.0;
      o.label_smoothing = 0.1;
    } else {
      o.kind = YoloLossKind::Darknet;
      hs.iou_loss = variant == 2 ? "mse" : "giou";
    }
    Tensor pred = rg::test::uniform({2, 8, 7}, -1.5, 1.5, DType::f64, 40 + static_cast<uint64_t>(variant));
    pred.set_requires_grad();
    CHECK_GRADCHECK([&](const std::vector<Tensor>& x) { return yolo_loss(x[0], t, {hs}, 32, 32, o).total; }, {pred});
  }
}

TEST_CASE("yolo losses: no targets, images without targets, any batch size") {
  const auto heads = two_heads();
  for (YoloLossKind kind : {YoloLossKind::V3, YoloLossKind::Darknet}) {
    YoloLossOptions o;
    o.kind = kind;
    for (int64_t B : {1, 3}) {
      CAPTURE(B);
      const std::vector<double> p = random_pred(B, 8, 5 + static_cast<uint64_t>(B));
      Tensor pred = from_vector<double>(p, {B, kRows, 8});
      pred.set_requires_grad();
      const YoloLossResult r = yolo_loss(pred, zeros({0, 6}), heads, kIn, kIn, o);
      CHECK(r.box.item() == 0);
      CHECK(r.cls.item() == 0);
      CHECK(r.obj.item() > 0);  // every cell is a negative
      const Ref want = kind == YoloLossKind::V3 ? v3_reference(p, B, heads, {}, o) : darknet_reference(p, B, heads, {});
      CHECK(std::fabs(r.total.item() - want.total) < 1e-10 * std::max(1.0, want.total));
      r.total.backward();
      CHECK(std::isfinite(rg::test::vals(sum(abs(pred.grad())))[0]));
      // targets only in the last image: the others are all negatives
      const std::vector<std::vector<double>> last = {{static_cast<double>(B - 1), 2, 0.4, 0.4, 0.3, 0.3}};
      const Ref w2 =
          kind == YoloLossKind::V3 ? v3_reference(p, B, heads, last, o) : darknet_reference(p, B, heads, last);
      CHECK(std::fabs(yolo_loss(pred.detach(), targets_tensor(last), heads, kIn, kIn, o).total.item() - w2.total) <
            1e-10 * std::max(1.0, w2.total));
    }
  }
}

TEST_CASE("yolo loss under f16 autocast and with an f16 prediction computes in f32") {
  const auto heads = two_heads();
  const std::vector<double> p = random_pred(2, 8, 21);
  const Tensor t = targets_tensor(kTargets);
  const double ref = yolo_loss(from_vector<double>(p, {2, kRows, 8}), t, heads, kIn, kIn).total.item();
  amp::AutocastGuard ac(DType::f16);
  Tensor half = from_vector<double>(p, {2, kRows, 8}).to(DType::f16);
  half.set_requires_grad();
  const YoloLossResult r = yolo_loss(half, t, heads, kIn, kIn);
  CHECK(r.total.dtype() == DType::f32);
  CHECK(std::fabs(r.total.item() - ref) < 2e-3 * ref);  // only the f16 rounding of the input
  r.total.backward();
  CHECK(half.grad().dtype() == DType::f16);
}

TEST_CASE("yolo loss: bad targets and predictions are named") {
  const auto heads = two_heads();
  const Tensor pred = zeros({2, kRows, 8});
  auto err = [&](const Tensor& t) { return error_of([&] { yolo_loss(pred, t, heads, kIn, kIn); }); };
  CHECK(contains(err(zeros({3, 5})), "targets must be (N, 6)"));
  CHECK(contains(err(targets_tensor({{2, 0, 0.5, 0.5, 0.1, 0.1}})), "image index 2 is out of range for a batch of 2"));
  CHECK(contains(err(targets_tensor({{0, 3, 0.5, 0.5, 0.1, 0.1}})), "class 3 is out of range for 3 classes"));
  CHECK(contains(err(targets_tensor({{0, 0.5, 0.5, 0.5, 0.1, 0.1}})), "whole numbers"));
  CHECK(contains(err(targets_tensor({{0, 0, NAN, 0.5, 0.1, 0.1}})), "NaN or infinite"));
  CHECK(contains(error_of([&] {
                   yolo_loss(zeros({2, 41, 8}), zeros({0, 6}), heads, kIn, kIn);
                 }),
                 "does not match the heads: expected (B, 40, 8)"));
  CHECK(contains(error_of([&] {
                   yolo_loss(pred, zeros({0, 6}), heads, 48, 48);
                 }),
                 "not a multiple of head 0's stride 32"));
  CHECK(contains(error_of([] { parse_yolo_loss_kind("v5"); }), "unknown YOLO loss 'v5'"));
}
