// What one darknet [yolo] head tells everything downstream of the network: the loss, the decoder,
// NMS, AutoAnchor and the metrics. The model fills it from the .cfg; the others only read it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rg::models {

// Note [YOLO head layout]
// A head's raw output is the output of its last convolution, (B, A * (5 + C), H, W), where A is the
// number of masked anchors of that head. Channel a * (5 + C) + k holds, for anchor a, k = 0..3 the box
// (tx, ty, tw, th), k = 4 the objectness logit and k = 5.. the class logits, each a full H x W plane
// (darknet's entry_index order). View it as (B, A, 5 + C, H, W) and permute to (B, A, H, W, 5 + C).
// `stride` is the head's downsampling factor in the network (32, 16, 8 for yolov3), so an input of
// (H_in, W_in), both multiples of the largest stride, gives a grid of (H_in / stride, W_in / stride):
// multi-scale training only changes the grids. Decoding as darknet does:
//   x = (sigmoid(tx) * scale_x_y - (scale_x_y - 1) / 2 + cx) * stride, likewise y;
//   w = exp(tw) * anchor_w, h = exp(th) * anchor_h (anchors in input pixels).
struct YoloHeadSpec {
  std::vector<std::array<float, 2>> anchors;      // (w, h) in input pixels: this head's masked anchors (A rows)
  std::vector<int64_t> mask;                      // indices of `anchors` in all_anchors
  std::vector<std::array<float, 2>> all_anchors;  // every anchor of the cfg's [yolo] line (num rows)
  int64_t num_classes = 80;
  int64_t stride = 32;  // input pixels per grid cell
  // [yolo] options kept as read (darknet's defaults); the v3 loss uses none of them but classes and
  // anchors, the darknet loss uses all.
  float ignore_thresh = 0.5f;
  float truth_thresh = 1.0f;
  float scale_x_y = 1.0f;
  float iou_normalizer = 0.75f;
  float cls_normalizer = 1.0f;
  float obj_normalizer = 1.0f;
  float jitter = 0.0f;
  std::string iou_loss = "mse";  // mse | giou | diou | ciou
  int64_t cfg_index = -1;        // the [yolo] section's layer index in the cfg (module_list index)

  int64_t grid_h(int64_t input_h) const { return input_h / stride; }
  int64_t grid_w(int64_t input_w) const { return input_w / stride; }
  int64_t rows(int64_t input_h, int64_t input_w) const { return num_anchors() * grid_h(input_h) * grid_w(input_w); }
  int64_t num_anchors() const { return static_cast<int64_t>(anchors.size()); }
  int64_t channels() const { return num_anchors() * (5 + num_classes); }
};

// Note [YOLO forward layout]
// The model's single-tensor forward (what DDP and DataParallel call) returns every head's raw output,
// each permuted to (B, A, H, W, 5 + C) and flattened to rows, concatenated in head order:
// (B, sum_i A_i * H_i * W_i, 5 + C), not decoded. DataParallel gathers it along the batch dim.
// The loss and the decoder cut it back into heads with split_heads() (models/yolo_head.h).

}  // namespace rg::models
