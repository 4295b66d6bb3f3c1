// Precision/recall curve helpers of the detection metrics: VOC's all-points and 11-point AP, numpy's
// interp, and ultralytics' precision and recall at the confidence of the best mean F1.
#pragma once

#include <cstdint>
#include <vector>

namespace rg::metrics {

// One category's cumulative curve over its detections in score order (ignored ones included, where
// the curve stays flat).
struct PrCurve {
  std::vector<double> recall, precision;
};

// VOC AP of a curve: all points (py-faster-rcnn's voc_ap(use_07_metric=False): sentinels (0, 0) and
// (1, 0), precision made non-increasing from the end, summed over the recall steps) or the 2007
// 11-point version (mean over r in 0, 0.1, ..., 1 of the best precision at recall >= r, 0 if none).
double voc_ap(const PrCurve& c, bool eleven_point);

// np.interp(x, xp, fp, left, right = fp[-1]) for increasing xp (equal values allowed: the last one wins).
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left);

// One class's detections at IoU 0.5: confidence and whether each is a true positive; `labels` is the
// number of (not ignored) ground-truth boxes.
struct ClassMatches {
  int64_t labels = 0;
  std::vector<double> conf;
  std::vector<uint8_t> tp;
};

// ultralytics' ap_per_class: for each class with labels, recall and precision against confidence
// sampled at px = linspace(0, 1, 1000) (np.interp over the curve sorted by decreasing confidence,
// left = 0 for recall and 1 for precision; a class without detections is 0 everywhere); F1 =
// 2 p r / (p + r + 1e-16); the first px with the largest class-mean F1 gives the class-mean P, R, F1.
struct BestF1 {
  double precision = 0, recall = 0, f1 = 0, conf = 0;
};
BestF1 best_f1(const std::vector<ClassMatches>& classes);

}  // namespace rg::metrics
