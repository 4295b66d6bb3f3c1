// Box overlap functions for detection: differentiable IoU, GIoU, DIoU and CIoU between paired boxes
// (what the YOLO losses regress), the pairwise IoU matrix, and box format conversions.
#pragma once

#include "autograd/ops.h"

namespace rg::models {

enum class IouKind { IoU, GIoU, DIoU, CIoU };
const char* iou_kind_name(IouKind k);
IouKind parse_iou_kind(const std::string& name);  // "iou", "giou", "diou", "ciou" (case-insensitive)

// Note [Box IoU formulas]
// As ultralytics' bbox_iou (the yolov3/yolov5 utils), for boxes broadcast against each other, in the
// dtype of the inputs, with eps = 1e-7 by default:
//   w1 = x2 - x1, h1 = y2 - y1 + eps (likewise box 2); inter = clamp(min(x2) - max(x1), 0) * clamp(min(y2) - max(y1), 0)
//   union = w1 h1 + w2 h2 - inter + eps;  iou = inter / union
//   cw, ch = the enclosing box's width and height
//   GIoU = iou - (c_area - union) / c_area,  c_area = cw ch + eps
//   DIoU = iou - rho2 / c2,  c2 = cw^2 + ch^2 + eps,  rho2 = ((x1' + x2' - x1 - x2)^2 + (y1' + y2' - y1 - y2)^2) / 4
//   CIoU = DIoU - v alpha,  v = (4 / pi^2) (atan(w2 / h2) - atan(w1 / h1))^2,  alpha = v / (v - iou + 1 + eps)
// CIoU's alpha is a constant for the gradient (computed under no_grad), as the reference does;
// ciou_alpha_grad = true differentiates through it too (what a finite-difference check sees).
struct BoxIouOptions {
  bool xywh = true;  // boxes as (cx, cy, w, h); false: (x1, y1, x2, y2)
  double eps = 1e-7;
  bool ciou_alpha_grad = false;
};
// box1 (..., 4), box2 (..., 4), broadcastable -> (...): the overlap of box1[i] with box2[i].
Tensor box_iou(const Tensor& box1, const Tensor& box2, IouKind kind, const BoxIouOptions& o = {});

// a (N, 4), b (M, 4) as x1y1x2y2 -> (N, M) plain IoU (torchvision.ops.box_iou; 0 where the union is 0).
// Not differentiable.
Tensor box_iou_matrix(const Tensor& a, const Tensor& b);

Tensor xywh_to_xyxy(const Tensor& boxes);  // (..., 4) centre/size -> corners (differentiable)
Tensor xyxy_to_xywh(const Tensor& boxes);  // (..., 4) corners -> centre/size (differentiable)

// atan2(y, x) elementwise with a gradient (y and x of one shape): the angle CIoU needs.
Tensor atan2_grad(const Tensor& y, const Tensor& x);

}  // namespace rg::models
