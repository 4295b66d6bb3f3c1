// Inference on the model's flat head output: darknet decoding of every row into a box with scores,
// then confidence filtering and class-aware non-maximum suppression per image, on the prediction's
// device (the NMS itself is the `nms` kernel op, core/native.h).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "models/yolo_spec.h"

namespace rg::models {

// flat (B, sum_i A_i H_i W_i, 5 + C) raw rows (Note [YOLO forward layout]) -> (B, rows, 5 + C) decoded:
// cx, cy, w, h in input pixels (Note [YOLO head layout]'s formulas, with the head's scale_x_y), then
// sigmoid(objectness) and sigmoid(class logits). Any float dtype; computed in f32 for f16/bf16.
Tensor yolo_decode(const Tensor& flat, const std::vector<YoloHeadSpec>& heads, int64_t input_h, int64_t input_w);

// Note [YOLO NMS]
// As ultralytics' non_max_suppression (yolov3 v9 / yolov5), per image of the decoded batch:
// - score = objectness x class probability. Single label: each row's best class (first on ties),
//   kept when score > conf_thres. multi_label: every (row, class) pair with score > conf_thres is a
//   candidate, in row-major order. `classes` (when not empty) keeps only those classes.
// - boxes (cx, cy, w, h) -> (x1, y1, x2, y2).
// - class-aware NMS as torchvision's batched_nms: the candidates' boxes are offset by
//   class x (max coordinate + 1), the max over the candidates' coordinates, so that boxes of
//   different classes never overlap (agnostic: no offset), then greedy NMS at iou_thres over the
//   best max_nms candidates; at most max_det are kept.
// - output (n, 6) [x1, y1, x2, y2, score, class] in input pixels, by decreasing score (ties: the
//   earlier candidate first), on the input's device. CPU and CUDA keep the same rows for the same
//   decoded input (Note [NMS formulas]).
struct NmsOptions {
  double conf_thres = 0.001;
  double iou_thres = 0.6;
  bool multi_label = false;
  bool agnostic = false;
  int64_t max_det = 300;
  int64_t max_nms = 30000;
  std::vector<int64_t> classes;  // empty: all
};
std::vector<Tensor> non_max_suppression(const Tensor& decoded, const NmsOptions& opts = {});

// torchvision.ops.batched_nms: boxes (N, 4) x1y1x2y2, scores (N), idxs (N) class (any numeric dtype)
// -> kept indices (K) i64 by decreasing score. score_threshold, max_candidates and max_keep as native::nms.
Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold,
                   double score_threshold = -std::numeric_limits<double>::infinity(), int64_t max_candidates = 0,
                   int64_t max_keep = -1);

}  // namespace rg::models
