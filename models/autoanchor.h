// AutoAnchor, as ultralytics computes it: how well anchors fit a dataset's box sizes (best possible
// recall under the width/height ratio rule of the v3 loss), and new anchors by k-means on whitened
// (w, h) refined by a genetic search. Inputs are plain (w, h) lists in pixels at the training size.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace rg::models {

using WH = std::array<float, 2>;  // (width, height) in pixels

// Note [Anchor ratio metric]
// A label (w, h) and an anchor (aw, ah) match with score x = min(r_w, 1/r_w, r_h, 1/r_h), r = label /
// anchor: 1 for equal sizes, falling as either side differs. The v3 loss assigns a label to an anchor
// when max(r, 1/r) < anchor_t on both sides, i.e. x > 1 / anchor_t (anchor_t = 4.0).
// best-possible recall (bpr): the fraction of labels whose best anchor has x > 1 / anchor_t;
// anchors above threshold (aat): the mean number of anchors per label with x > 1 / anchor_t;
// fitness: the mean over labels of best x, counting 0 where it is not above 1 / anchor_t.
struct AnchorMetrics {
  double bpr = 0, aat = 0, fitness = 0;
  double mean_best = 0;  // mean best x over labels
};
AnchorMetrics anchor_metrics(const std::vector<WH>& labels, const std::vector<WH>& anchors, double anchor_t = 4.0);

struct KMeansAnchorOptions {
  int64_t n = 9;             // anchors to fit
  double anchor_t = 4.0;
  int64_t generations = 1000;  // genetic refinement steps (0: k-means only)
  int64_t kmeans_restarts = 30;  // scipy.cluster.vq.kmeans' `iter`: best of this many runs
  double mutation_prob = 0.9, sigma = 0.1;
  double min_size = 2.0;       // labels with both sides under this are dropped before fitting
  uint64_t seed = 0;           // the only source of randomness: equal seeds give equal anchors
};

struct AnchorFit {
  std::vector<WH> anchors;  // n anchors sorted by area, small to large
  AnchorMetrics metrics;    // of `anchors` on every label given (the small ones included)
  int64_t labels_used = 0;  // after dropping the tiny ones
  int64_t labels_tiny = 0;  // labels with a side under 3 pixels (ultralytics warns about them)
  bool kmeans_ok = true;    // false when k-means could not place n distinct centres (random init used)
};

// k-means of the labels (whitened by their standard deviation per side; Lloyd iterations to convergence,
// best distortion of kmeans_restarts random starts, as scipy's kmeans), then `generations` mutations of
// all anchors at once (each side multiplied by clip(1 + N(0,1) * sigma * u, 0.3, 3) with probability
// mutation_prob, u ~ U(0,1) per generation; sides clipped at >= 2 px) keeping a mutation when it raises
// the fitness. Deterministic for a given seed.
AnchorFit kmean_anchors(const std::vector<WH>& labels, const KMeansAnchorOptions& options = {});

}  // namespace rg::models
