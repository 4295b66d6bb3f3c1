// ultralytics' detection confusion matrix (predicted class x true class, with a background row and
// column), and per-class precision-recall curves at IoU 0.5 from the COCO matching, for the
// training pictures (data/plot.h draws both).
#pragma once

#include <cstdint>
#include <vector>

#include "metrics/coco_eval.h"
#include "metrics/records.h"

namespace rg::metrics {

// ultralytics' ConfusionMatrix for detection: detections above conf, matched to ground truth at
// IoU > iou (one detection per ground truth, highest IoU first, as ultralytics' process_batch),
// unmatched detections count as background false positives and unmatched ground truth as
// background false negatives. Matching ignores the classes: a match of different classes is a
// confusion. Both thresholds are strict (score > conf, IoU > iou), as ultralytics'. Unmatched
// detections are false positives even in an image where nothing matched (YOLOv5's version skipped
// them there; ultralytics 8 counts them). IoU is plain intersection / union (no 1e-7 in the union).
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes, double conf = 0.25, double iou = 0.45);
  void add(const ImageRecord& record);  // the record's dets and gts (crowd/difficult gts skipped)
  const std::vector<std::vector<double>>& counts() const;  // (nc + 1) x (nc + 1), rows predicted, columns true
  void merge(const ConfusionMatrix& other);
  int64_t num_classes() const { return nc_; }

 private:
  int64_t nc_;
  double conf_, iou_;
  std::vector<std::vector<double>> counts_;
};

// Note [PR curves at 0.5]
// Per class precision on a recall grid at IoU 0.5 (ultralytics' ap_per_class curves: px =
// linspace(0, 1, 1000)), from the same records evaluate_detections uses and with its matching at
// IoU 0.5 (area all, 100 detections per image and class, crowd and difficult boxes ignored). The
// curve is COCO's precision envelope (precision made non-increasing from the end) read as a step:
// the precision at recall r is the envelope at the first detection whose recall >= r, 0 past the
// last recall. Its area is therefore VOC's all-points AP; its value at r = j/100 is what COCO's
// 101-point AP averages. ap50 is the class AP@0.5 as evaluate_detections reports it with the given
// method (Coco101 by default, what the trainer prints), -1 for a class without ground truth (its
// precision is then all 0). So with Coco101 the legend's AP is the trainer's number and the area
// under the drawn curve is the all-points AP; the two differ by the 101-point sampling only (a few
// thousandths on real curves; tests/metrics/test_confusion_matrix.cpp checks both).
struct PrCurves { std::vector<double> recall_grid; std::vector<std::vector<double>> precision; std::vector<double> ap50; };
PrCurves pr_curves_at_50(const std::vector<ImageRecord>& records, int64_t num_classes);
PrCurves pr_curves_at_50(const std::vector<ImageRecord>& records, int64_t num_classes, ApMethod method);

}  // namespace rg::metrics
