// Detection metrics: COCO evaluation exactly as pycocotools' COCOeval (bbox) computes it, the 12
// summary numbers, mAP@0.5 and mAP@[.5:.95] (101-point, or VOC's all-points / 11-point as options),
// per-class AP, precision and recall at the best-F1 confidence as ultralytics reports them, and the
// fitness used to pick the best checkpoint.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "metrics/records.h"

namespace rg::metrics {

// Note [COCO evaluation]
// What pycocotools' COCOeval(iouType='bbox') does, step for step, on the records in image-id order
// (categories 0 .. num_classes - 1; a category without ground truth is -1 and left out of every mean):
// - per (image, category): detections sorted by score, descending and stable (ties keep the record's
//   order), cut to the last maxDets (100); IoU in double as maskApi's bbIou: inter / (da + ga - inter),
//   or inter / da for a crowd box; 0 when the boxes do not overlap.
// - per area range (all [0, 1e10], small [0, 32^2], medium [32^2, 96^2], large [96^2, 1e10], inclusive;
//   GT area = its `area`, detection area = w h) and IoU threshold t (0.5 + i (0.45 / 9), i = 0..9, the
//   last 0.95 exactly): ground truth outside the range, crowd or difficult is ignored and sorted last;
//   each detection in score order takes the not-yet-taken box (crowd boxes stay takeable) with the
//   highest IoU >= min(t, 1 - 1e-10), a later box winning ties, never leaving a regular box for an
//   ignored one; a detection matching an ignored box is ignored, and so is an unmatched detection
//   outside the area range.
// - per (category, area, maxDet in 1, 10, 100): every image's first maxDet detections, merged by score
//   with a stable sort (image order, then the image's order); tp/fp cumulative sums over the
//   non-ignored ones; recall = tp / npig, precision = tp / (tp + fp + 2^-52), made non-increasing from
//   the end; precision at recall r_j = j / 100 (j = 0..100) is the precision at the first index whose
//   recall >= r_j, 0 past the end; recall = the last recall.
// - stats: AP = mean over the selected (t, r, category) precisions > -1, AR likewise over recalls:
//   AP, AP50, AP75, AP small/medium/large (maxDets 100); AR maxDets 1/10/100; AR small/medium/large.
enum class ApMethod { Coco101, VocAllPoints, Voc11 };

struct EvalOptions {
  int64_t num_classes = 80;
  ApMethod ap_method = ApMethod::Coco101;  // how map50 / map / per-class AP integrate; stats are always COCO's
};

struct DetectionMetrics {
  std::array<double, 12> stats{};                    // COCOeval.stats
  double map50 = -1, map = -1;                       // mAP@0.5, mAP@[.5:.95] (stats[1], stats[0] with Coco101)
  std::vector<double> ap50_per_class, ap_per_class;  // (num_classes), -1 without ground truth
  // ultralytics' ap_per_class P and R: per class with ground truth, precision and recall against
  // confidence (np.interp at 1000 points in [0, 1]), at the confidence with the best class-mean F1;
  // from the COCO matches at IoU 0.5 (area all, 100 detections per image and class).
  double precision = 0, recall = 0, f1 = 0, best_conf = 0;
  double fitness = 0;  // 0.1 map50 + 0.9 map
  int64_t images = 0, ground_truth = 0, detections = 0;
  std::string summary() const;  // COCOeval.summarize()'s 12 lines, then mAP, P, R, fitness
};

// Records in any order: they are evaluated in image-id order (ids must be unique).
DetectionMetrics evaluate_detections(std::vector<ImageRecord> records, const EvalOptions& opts = {});

// Note [Exact distributed evaluation]
// Each rank evaluates an unpadded shard of the images and keeps its ImageRecords; the ranks gather
// every record (serialize_records, dist::all_gather_bytes in distributed/gather_objects.h), and each
// computes evaluate_detections once from all of them. evaluate_detections sorts by image id and
// depends on nothing but the records, so 1, 2 or N ranks give bitwise the same numbers as a single
// process. Averaging per-rank metrics instead is what makes other tools disagree with themselves.

}  // namespace rg::metrics
