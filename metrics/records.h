// What detection evaluation consumes: per image, its ground-truth boxes and its detections, in COCO's
// box convention; built from tensors, and serialised to bytes so that ranks can gather them
// (Note [Exact distributed evaluation] in metrics/coco_eval.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rg::metrics {

// Boxes are COCO's [x, y, w, h] (top-left corner and size) in doubles, in whatever pixel space the
// caller evaluates in (original image pixels, usually).
struct GtBox {
  double x = 0, y = 0, w = 0, h = 0;
  int64_t category = 0;    // 0 .. num_classes - 1
  bool crowd = false;      // COCO iscrowd: IoU = intersection / detection area; matched any number of times
  bool difficult = false;  // VOC difficult: ignored (a match is neither TP nor FP), consumed like a normal box
  double area = -1;        // COCO's area for the small/medium/large ranges; < 0: w * h
  double area_or_box() const { return area >= 0 ? area : w * h; }
};

struct DetBox {
  double x = 0, y = 0, w = 0, h = 0;
  double score = 0;
  int64_t category = 0;
};

struct ImageRecord {
  int64_t image_id = 0;
  std::vector<GtBox> gts;
  std::vector<DetBox> dets;  // in the order the detector produced them (ties in score keep it)
};

// From tensors on any device: detections (n, 6) [x1, y1, x2, y2, score, class] (what
// non_max_suppression returns), ground truth (m, 5) [class, x1, y1, x2, y2]; crowd and difficult
// (m) bool/integer flags, or undefined for none.
ImageRecord make_record(int64_t image_id, const Tensor& detections, const Tensor& ground_truth,
                        const Tensor& crowd = Tensor(), const Tensor& difficult = Tensor());

// Note [Record bytes]
// Little-endian: "RGDR" magic, u32 version 1, u64 record count, then per record: i64 image_id,
// u64 n_gt, u64 n_det, n_gt x (f64 x, y, w, h, area; i64 category; u8 crowd, u8 difficult),
// n_det x (f64 x, y, w, h, score; i64 category). Doubles travel bit for bit.
std::vector<uint8_t> serialize_records(const std::vector<ImageRecord>& records);
// Throws naming the byte offset and what was expected when the blob is short, long or not records.
std::vector<ImageRecord> deserialize_records(const uint8_t* data, size_t size);

}  // namespace rg::metrics
