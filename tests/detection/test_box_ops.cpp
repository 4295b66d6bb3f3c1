// Box overlaps: IoU, GIoU, DIoU and CIoU against values worked by hand, their f64 gradchecks, CIoU's
// constant alpha, and the pairwise IoU matrix and format conversions.
#include <doctest/doctest.h>

#include <cmath>

#include "models/box_ops.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::vals;

namespace {
Tensor box(std::vector<double> v, DType dt = DType::f64) { return from_vector<double>(v).to(dt); }
double val(const Tensor& t) { return t.item(); }
}  // namespace

TEST_CASE("box_iou: IoU, GIoU, DIoU and CIoU of two boxes worked by hand") {
  // (0, 0, 2, 2) and (1, 1, 2, 2) as centre/size: corners (-1, -1, 1, 1) and (0, 0, 2, 2)
  // inter 1, union 7, enclosing 3 x 3, centres 1.414 apart (rho^2 = 2), same shape (v = 0)
  const Tensor a = box({0, 0, 2, 2}), b = box({1, 1, 2, 2});
  const double tol = 1e-6;  // eps = 1e-7 enters every formula
  CHECK(std::fabs(val(box_iou(a, b, IouKind::IoU)) - 1.0 / 7) < tol);
  CHECK(std::fabs(val(box_iou(a, b, IouKind::GIoU)) - (1.0 / 7 - 2.0 / 9)) < tol);
  CHECK(std::fabs(val(box_iou(a, b, IouKind::DIoU)) - (1.0 / 7 - 2.0 / 18)) < tol);
  CHECK(std::fabs(val(box_iou(a, b, IouKind::CIoU)) - (1.0 / 7 - 2.0 / 18)) < tol);
  // (0, 0, 2, 2) and (0, 0, 4, 2): inter 4, union 8, same centre, aspect 1 vs 2
  const Tensor c = box({0, 0, 4, 2});
  const double v = 4 / (M_PI * M_PI) * std::pow(std::atan(2.0) - std::atan(1.0), 2);
  const double alpha = v / (v - 0.5 + 1);
  CHECK(std::fabs(val(box_iou(a, c, IouKind::IoU)) - 0.5) < tol);
  CHECK(std::fabs(val(box_iou(a, c, IouKind::DIoU)) - 0.5) < tol);
  CHECK(std::fabs(val(box_iou(a, c, IouKind::CIoU)) - (0.5 - v * alpha)) < tol);
  CHECK(std::fabs(val(box_iou(a, c, IouKind::GIoU)) - 0.5) < tol);  // the enclosing box is the union
  // corners format, disjoint boxes: IoU 0, GIoU = -(gap area) / enclosing
  BoxIouOptions xyxy;
  xyxy.xywh = false;
  CHECK(std::fabs(val(box_iou(box({0, 0, 1, 1}), box({2, 0, 3, 1}), IouKind::IoU, xyxy))) < tol);
  CHECK(std::fabs(val(box_iou(box({0, 0, 1, 1}), box({2, 0, 3, 1}), IouKind::GIoU, xyxy)) - (-1.0 / 3)) < tol);
}

TEST_CASE("box_iou: broadcasting and f32") {
  const Tensor a = from_vector<double>({0, 0, 2, 2, 0, 0, 2, 2}, {2, 1, 4});
  const Tensor b = from_vector<double>({1, 1, 2, 2, 0, 0, 4, 2, 0, 0, 2, 2}, {1, 3, 4});
  const Tensor iou = box_iou(a.to(DType::f32), b.to(DType::f32), IouKind::IoU);
  REQUIRE(iou.sizes() == Shape{2, 3});
  CHECK_VALUES(vals(iou), (std::vector<double>{1.0 / 7, 0.5, 1, 1.0 / 7, 0.5, 1}), 1e-6);
}

TEST_CASE("box_iou gradchecks in f64: every kind, both formats") {
  for (IouKind k : {IouKind::IoU, IouKind::GIoU, IouKind::DIoU, IouKind::CIoU}) {
    for (bool xywh : {true, false}) {
      CAPTURE(iou_kind_name(k));
      CAPTURE(xywh);
      // partly overlapping boxes (no ties in min/max, where the gradient is not defined)
      Tensor a = from_vector<double>({0.1, 0.2, 2.3, 1.7, 3.0, 3.1, 1.2, 0.9, 0.5, 0.4, 1.5, 2.5}, {3, 4});
      Tensor b = from_vector<double>({0.9, 0.6, 1.8, 2.2, 3.3, 2.7, 0.8, 1.4, 0.2, 0.1, 2.1, 1.2}, {3, 4});
      if (!xywh) {  // make them valid corners
        a = xywh_to_xyxy(a).detach();
        b = xywh_to_xyxy(b).detach();
      }
      a.set_requires_grad();
      b.set_requires_grad();
      BoxIouOptions o;
      o.xywh = xywh;
      o.ciou_alpha_grad = true;
      CHECK_GRADCHECK([k, o](const std::vector<Tensor>& x) { return box_iou(x[0], x[1], k, o); }, {a, b});
    }
  }
}

TEST_CASE("CIoU with alpha held constant (the reference's no_grad): its gradient is that of DIoU - v alpha0") {
  const std::vector<double> av = {0.1, 0.2, 2.3, 1.7}, bv = {0.9, 0.6, 1.8, 2.2};
  Tensor a = from_vector<double>(av), b = from_vector<double>(bv);
  a.set_requires_grad();
  box_iou(a, b, IouKind::CIoU).backward();
  const std::vector<double> g = vals(a.grad());
  // v and alpha from the formula, here in double
  auto v_of = [](const std::vector<double>& p, const std::vector<double>& q) {
    const double eps = 1e-7;
    return 4 / (M_PI * M_PI) * std::pow(std::atan(q[2] / (q[3] + eps)) - std::atan(p[2] / (p[3] + eps)), 2);
  };
  const double iou0 = box_iou(from_vector<double>(av), b, IouKind::IoU).item();
  const double v0 = v_of(av, bv), alpha0 = v0 / (v0 - iou0 + 1 + 1e-7);
  for (int i = 0; i < 4; ++i) {
    const double h = 1e-6;
    std::vector<double> p = av, m = av;
    p[i] += h;
    m[i] -= h;
    const double fp = box_iou(from_vector<double>(p), b, IouKind::DIoU).item() - v_of(p, bv) * alpha0;
    const double fm = box_iou(from_vector<double>(m), b, IouKind::DIoU).item() - v_of(m, bv) * alpha0;
    CAPTURE(i);
    CHECK(std::fabs(g[i] - (fp - fm) / (2 * h)) < 1e-6);
  }
}

TEST_CASE("box_iou_matrix and box format conversions") {
  const Tensor a = from_vector<double>({0, 0, 10, 10, 20, 20, 30, 30}, {2, 4});
  const Tensor b = from_vector<double>({1, 1, 11, 11, 0, 0, 0, 0}, {2, 4});
  CHECK_VALUES(vals(box_iou_matrix(a, b)), (std::vector<double>{81.0 / 119, 0, 0, 0}), 1e-12);
  CHECK_VALUES(vals(xywh_to_xyxy(from_vector<double>({5, 6, 2, 4}))), (std::vector<double>{4, 4, 6, 8}), 0);
  CHECK_VALUES(vals(xyxy_to_xywh(from_vector<double>({4, 4, 6, 8}))), (std::vector<double>{5, 6, 2, 4}), 0);
  CHECK(rg::test::contains(rg::test::error_of([] { box_iou(zeros({3}), zeros({4}), IouKind::IoU); }), "(..., 4)"));
  CHECK(parse_iou_kind("CIoU") == IouKind::CIoU);
  CHECK(rg::test::contains(rg::test::error_of([] { parse_iou_kind("eiou"); }), "unknown IoU kind 'eiou'"));
}
