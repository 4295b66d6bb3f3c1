// The YOLO losses on the model's flat head output (Note [YOLO forward layout]): `v3`, the PyTorch
// YOLOv3 training loss (Note [YOLO v3 loss]), and `darknet`, the [yolo] layer's own loss written as
// the scalar whose gradient is darknet's deltas (Note [Darknet YOLO loss]). Vectorised tensor ops on
// the device of the prediction: no host loop over boxes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/box_ops.h"
#include "models/yolo_spec.h"

namespace rg::models {

enum class YoloLossKind { V3, Darknet };
YoloLossKind parse_yolo_loss_kind(const std::string& name);  // "v3" or "darknet"

struct YoloLossOptions {
  YoloLossKind kind = YoloLossKind::V3;
  // ---- v3 (hyperparameters as ultralytics' hyp.scratch.yaml, before the scaling in Note [YOLO v3 loss])
  IouKind box_iou = IouKind::CIoU;  // the box term: CIoU (default) or GIoU (DIoU and IoU also work)
  double anchor_t = 4.0;            // a target matches an anchor when max(r, 1/r) < anchor_t for its w and h ratios
  double box_gain = 0.05, obj_gain = 1.0, cls_gain = 0.5;
  double cls_pw = 1.0, obj_pw = 1.0;  // BCE positive weights
  double label_smoothing = 0.0;       // class targets 1 - eps/2 and eps/2
  double iou_ratio = 1.0;             // the reference's model.gr: objectness target (1 - gr) + gr clamp(IoU, 0)
  std::vector<double> balance;        // objectness weight per head (head order); empty: Note [YOLO v3 loss]
  int64_t img_size = 0;               // the training image size of the obj gain; 0: max(input_h, input_w)
  // ---- darknet: every option comes from the heads' YoloHeadSpec ([yolo] section)
};

// total: the differentiable scalar to call backward() on. box, obj, cls: its parts, detached (for
// v3 the reference's loss_items, before the batch-size factor; for darknet the three sums).
struct YoloLossResult {
  Tensor total, box, obj, cls;  // 0-dim, in f32 (f64 when the prediction is f64)
};

// pred: (B, sum_i A_i H_i W_i, 5 + C) raw rows as the model's forward returns them; targets: (N, 6)
// [image index in the batch, class, cx, cy, w, h], the box normalised to the input's width and
// height (any device; N may be 0). Under autocast the loss still computes in f32.
YoloLossResult yolo_loss(const Tensor& pred, const Tensor& targets, const std::vector<YoloHeadSpec>& heads,
                         int64_t input_h, int64_t input_w, const YoloLossOptions& opts = {});

// Where each target lands, as the loss assigns it (for tests and debugging): one row per
// (target, head, anchor) match, in the order the loss visits them (head, then anchor, then target).
struct YoloMatch {
  int64_t target, head, anchor, gj, gi;  // anchor: index into the head's masked anchors
};
std::vector<YoloMatch> yolo_assignments(const Tensor& targets, const std::vector<YoloHeadSpec>& heads, int64_t input_h,
                                        int64_t input_w, const YoloLossOptions& opts = {});

}  // namespace rg::models
