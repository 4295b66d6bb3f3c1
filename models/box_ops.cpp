// Box overlaps (Note [Box IoU formulas]) written with the differentiable ops, plus the pairwise IoU
// matrix and box format conversions.
#include "models/box_ops.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "autograd/function.h"
#include "autograd/grad_mode.h"

namespace rg::models {

using autograd::Node;
using autograd::SavedVariable;
using autograd::TensorList;

const char* iou_kind_name(IouKind k) {
  switch (k) {
    case IouKind::IoU:
      return "iou";
    case IouKind::GIoU:
      return "giou";
    case IouKind::DIoU:
      return "diou";
    case IouKind::CIoU:
      return "ciou";
  }
  return "?";
}

IouKind parse_iou_kind(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "iou") return IouKind::IoU;
  if (s == "giou") return IouKind::GIoU;
  if (s == "diou") return IouKind::DIoU;
  if (s == "ciou") return IouKind::CIoU;
  RG_THROW("unknown IoU kind '", name, "' (expected iou, giou, diou or ciou)");
}

namespace {

// d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
struct Atan2Backward : Node {
  SavedVariable y, x;
  std::string name() const override { return "Atan2Backward"; }
  void release_variables() override {
    y.reset();
    x.reset();
  }
  TensorList apply(TensorList&& g) override {
    const Tensor yv = y.unpack(this), xv = x.unpack(this);
    const Tensor r2 =
        native::binary(BinaryOp::Add, native::unary(UnaryOp::Square, yv), native::unary(UnaryOp::Square, xv));
    const Tensor gr = native::binary(BinaryOp::Div, g[0], r2);
    Tensor gy, gx;
    if (next_edges[0].valid()) gy = native::binary(BinaryOp::Mul, gr, xv);
    if (next_edges[1].valid()) gx = native::unary(UnaryOp::Neg, native::binary(BinaryOp::Mul, gr, yv));
    return {gy, gx};
  }
};

// The corners of (..., 4) boxes in either format.
struct Corners {
  Tensor x1, y1, x2, y2;
};
Corners corners(const Tensor& b, bool xywh) {
  if (!xywh) return {b.select(-1, 0), b.select(-1, 1), b.select(-1, 2), b.select(-1, 3)};
  const Tensor x = b.select(-1, 0), y = b.select(-1, 1), hw = b.select(-1, 2) * 0.5, hh = b.select(-1, 3) * 0.5;
  return {x - hw, y - hh, x + hw, y + hh};
}

}  // namespace

Tensor atan2_grad(const Tensor& y, const Tensor& x) {
  RG_CHECK(y.sizes() == x.sizes(), "atan2_grad: y ", shape_str(y.sizes()), " and x ", shape_str(x.sizes()),
           " must have one shape");
  Tensor out = native::binary(BinaryOp::Atan2, y, x);
  if (auto n = autograd::record<Atan2Backward>({&y, &x})) {
    n->y = SavedVariable(y);
    n->x = SavedVariable(x);
    autograd::set_history(out, n);
  }
  return out;
}

Tensor box_iou(const Tensor& box1, const Tensor& box2, IouKind kind, const BoxIouOptions& o) {
  RG_CHECK(box1.dim() >= 1 && box1.size(-1) == 4 && box2.dim() >= 1 && box2.size(-1) == 4,
           "box_iou: boxes must be (..., 4), got ", shape_str(box1.sizes()), " and ", shape_str(box2.sizes()));
  const double eps = o.eps;
  const Corners a = corners(box1, o.xywh), b = corners(box2, o.xywh);
  const Tensor inter = clamp_min(minimum(a.x2, b.x2) - maximum(a.x1, b.x1), 0.0) *
                       clamp_min(minimum(a.y2, b.y2) - maximum(a.y1, b.y1), 0.0);
  const Tensor w1 = a.x2 - a.x1, h1 = a.y2 - a.y1 + eps;
  const Tensor w2 = b.x2 - b.x1, h2 = b.y2 - b.y1 + eps;
  const Tensor uni = w1 * h1 + w2 * h2 - inter + eps;
  const Tensor iou = inter / uni;
  if (kind == IouKind::IoU) return iou;
  const Tensor cw = maximum(a.x2, b.x2) - minimum(a.x1, b.x1);
  const Tensor ch = maximum(a.y2, b.y2) - minimum(a.y1, b.y1);
  if (kind == IouKind::GIoU) {
    const Tensor c_area = cw * ch + eps;
    return iou - (c_area - uni) / c_area;
  }
  const Tensor c2 = square(cw) + square(ch) + eps;
  const Tensor rho2 = (square(b.x1 + b.x2 - a.x1 - a.x2) + square(b.y1 + b.y2 - a.y1 - a.y2)) * 0.25;
  if (kind == IouKind::DIoU) return iou - rho2 / c2;
  // CIoU: the angles of boxes of different shapes (broadcast) need one shape for atan2_grad
  const Shape shape = iou.sizes();
  const Tensor ang2 = atan2_grad(w2.expand(shape).contiguous(), h2.expand(shape).contiguous());
  const Tensor ang1 = atan2_grad(w1.expand(shape).contiguous(), h1.expand(shape).contiguous());
  const Tensor v = square(ang2 - ang1) * (4.0 / (M_PI * M_PI));
  Tensor alpha;
  if (o.ciou_alpha_grad) {
    alpha = v / (v - iou + (1.0 + eps));
  } else {
    NoGradGuard ng;
    alpha = v.detach() / (v.detach() - iou.detach() + (1.0 + eps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

Tensor box_iou_matrix(const Tensor& a, const Tensor& b) {
  RG_CHECK(a.dim() == 2 && a.size(1) == 4 && b.dim() == 2 && b.size(1) == 4,
           "box_iou_matrix: boxes must be (N, 4) and (M, 4), got ", shape_str(a.sizes()), " and ",
           shape_str(b.sizes()));
  NoGradGuard ng;
  const Tensor A = a.detach().unsqueeze(1), B = b.detach().unsqueeze(0);  // (N, 1, 4), (1, M, 4)
  const Corners ca = corners(A, false), cb = corners(B, false);
  const Tensor inter = clamp_min(minimum(ca.x2, cb.x2) - maximum(ca.x1, cb.x1), 0.0) *
                       clamp_min(minimum(ca.y2, cb.y2) - maximum(ca.y1, cb.y1), 0.0);
  const Tensor area_a = (ca.x2 - ca.x1) * (ca.y2 - ca.y1), area_b = (cb.x2 - cb.x1) * (cb.y2 - cb.y1);
  const Tensor uni = area_a + area_b - inter;
  const Tensor zero = zeros({}, TensorOptions(inter.dtype()).device(inter.device()));
  return where(gt(uni, 0.0), inter / where(gt(uni, 0.0), uni, ones_like(uni)), zero);
}

Tensor xywh_to_xyxy(const Tensor& boxes) {
  RG_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4, "xywh_to_xyxy: boxes must be (..., 4), got ",
           shape_str(boxes.sizes()));
  const Corners c = corners(boxes, true);
  return stack({c.x1, c.y1, c.x2, c.y2}, -1);
}

Tensor xyxy_to_xywh(const Tensor& boxes) {
  RG_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4, "xyxy_to_xywh: boxes must be (..., 4), got ",
           shape_str(boxes.sizes()));
  const Corners c = corners(boxes, false);
  return stack({(c.x1 + c.x2) * 0.5, (c.y1 + c.y2) * 0.5, c.x2 - c.x1, c.y2 - c.y1}, -1);
}

}  // namespace rg::models
