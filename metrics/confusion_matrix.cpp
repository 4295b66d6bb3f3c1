// The detection confusion matrix (ultralytics' process_batch) and the per-class PR curves at IoU 0.5
// (Note [PR curves at 0.5]), with COCO's matching at that one threshold.
#include "metrics/confusion_matrix.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "metrics/pr_curves.h"

namespace rg::metrics {

namespace {

double xywh_iou(double ax, double ay, double aw, double ah, double bx, double by, double bw, double bh) {
  const double w = std::fmin(ax + aw, bx + bw) - std::fmax(ax, bx);
  const double h = std::fmin(ay + ah, by + bh) - std::fmax(ay, by);
  if (w <= 0 || h <= 0) return 0;
  const double inter = w * h, uni = aw * ah + bw * bh - inter;
  return uni > 0 ? inter / uni : 0;
}

void check_category(int64_t c, int64_t nc, int64_t image_id, const char* what, const char* fn) {
  RG_CHECK(c >= 0 && c < nc, fn, ": image ", image_id, " has ", what, " of category ", c, ", outside 0..", nc - 1);
}

}  // namespace

// ---- confusion matrix
ConfusionMatrix::ConfusionMatrix(int64_t num_classes, double conf, double iou) : nc_(num_classes), conf_(conf), iou_(iou) {
  RG_CHECK(num_classes > 0, "ConfusionMatrix: num_classes must be positive, got ", num_classes);
  counts_.assign(static_cast<size_t>(nc_ + 1), std::vector<double>(static_cast<size_t>(nc_ + 1), 0.0));
}

const std::vector<std::vector<double>>& ConfusionMatrix::counts() const { return counts_; }

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  RG_CHECK(other.nc_ == nc_ && other.conf_ == conf_ && other.iou_ == iou_, "ConfusionMatrix::merge: ", nc_,
           " classes at conf ", conf_, " IoU ", iou_, " against ", other.nc_, " classes at conf ", other.conf_, " IoU ",
           other.iou_);
  for (size_t r = 0; r < counts_.size(); ++r) {
    for (size_t c = 0; c < counts_.size(); ++c) counts_[r][c] += other.counts_[r][c];
  }
}

void ConfusionMatrix::add(const ImageRecord& record) {
  std::vector<const GtBox*> gts;
  for (const GtBox& g : record.gts) {
    check_category(g.category, nc_, record.image_id, "a ground-truth box", "ConfusionMatrix::add");
    if (!g.crowd && !g.difficult) gts.push_back(&g);
  }
  std::vector<const DetBox*> dets;
  for (const DetBox& d : record.dets) {
    check_category(d.category, nc_, record.image_id, "a detection", "ConfusionMatrix::add");
    if (d.score > conf_) dets.push_back(&d);
  }
  // Candidate pairs (gt, det, IoU) above the threshold, by IoU descending (ties: gt, then det, in order).
  struct Match {
    size_t g, d;
    double iou;
  };
  std::vector<Match> cand;
  for (size_t g = 0; g < gts.size(); ++g) {
    for (size_t d = 0; d < dets.size(); ++d) {
      const GtBox& a = *gts[g];
      const DetBox& b = *dets[d];
      const double v = xywh_iou(a.x, a.y, a.w, a.h, b.x, b.y, b.w, b.h);
      if (v > iou_) cand.push_back({g, d, v});
    }
  }
  std::stable_sort(cand.begin(), cand.end(), [](const Match& x, const Match& y) { return x.iou > y.iou; });
  // ultralytics keeps, in that order, each detection's best pair, then of those each ground truth's
  // best pair: a detection whose best box goes to another detection is not matched to its second best.
  std::vector<uint8_t> det_seen(dets.size(), 0), gt_seen(gts.size(), 0);
  std::vector<Match> kept;
  for (const Match& m : cand) {
    if (det_seen[m.d]) continue;
    det_seen[m.d] = 1;
    kept.push_back(m);
  }
  std::vector<long> gt_det(gts.size(), -1), det_gt(dets.size(), -1);
  for (const Match& m : kept) {  // still IoU-descending
    if (gt_seen[m.g]) continue;
    gt_seen[m.g] = 1;
    gt_det[m.g] = static_cast<long>(m.d);
    det_gt[m.d] = static_cast<long>(m.g);
  }
  const auto bg = static_cast<size_t>(nc_);
  for (size_t g = 0; g < gts.size(); ++g) {
    const auto true_c = static_cast<size_t>(gts[g]->category);
    if (gt_det[g] >= 0) {
      counts_[static_cast<size_t>(dets[static_cast<size_t>(gt_det[g])]->category)][true_c] += 1;
    } else {
      counts_[bg][true_c] += 1;  // missed: background false negative
    }
  }
  for (size_t d = 0; d < dets.size(); ++d) {
    if (det_gt[d] < 0) counts_[static_cast<size_t>(dets[d]->category)][bg] += 1;  // background false positive
  }
}

// ---- PR curves at IoU 0.5
namespace {

// One class's detections over all images, with COCO's match at IoU 0.5 (area all, maxDets 100).
struct ClassCurve {
  std::vector<double> scores;
  std::vector<uint8_t> tp, ignored;
  int64_t npig = 0;
};

double coco_iou(const DetBox& d, const GtBox& g) {  // maskApi's bbIou, crowd boxes by the detection's area
  if (!g.crowd) return xywh_iou(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h);
  const double w = std::fmin(d.w + d.x, g.w + g.x) - std::fmax(d.x, g.x);
  const double h = std::fmin(d.h + d.y, g.h + g.y) - std::fmax(d.y, g.y);
  if (w <= 0 || h <= 0) return 0;
  return w * h / (d.w * d.h);
}

// evaluate_img at threshold 0.5 and area all for one (image, class); appends to the class's lists.
void match_image(std::vector<const DetBox*> dets, const std::vector<const GtBox*>& gts, ClassCurve* out) {
  constexpr double kLo = 0, kHi = 1e10;
  std::stable_sort(dets.begin(), dets.end(), [](const DetBox* a, const DetBox* b) { return a->score > b->score; });
  if (dets.size() > 100) dets.resize(100);
  const size_t G = gts.size();
  std::vector<uint8_t> ig(G);
  for (size_t g = 0; g < G; ++g) {
    const double a = gts[g]->area_or_box();
    ig[g] = gts[g]->crowd || gts[g]->difficult || a < kLo || a > kHi;
    out->npig += ig[g] == 0;
  }
  std::vector<size_t> order(G);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ig[a] < ig[b]; });
  std::vector<uint8_t> taken(G, 0);
  for (const DetBox* d : dets) {
    double best = 0.5;
    long m = -1;
    for (size_t k = 0; k < G; ++k) {
      const size_t g = order[k];
      if (taken[k] && !gts[g]->crowd) continue;
      if (m > -1 && !ig[order[static_cast<size_t>(m)]] && ig[g]) break;
      const double v = coco_iou(*d, *gts[g]);
      if (v < best) continue;
      best = v;
      m = static_cast<long>(k);
    }
    const double area = d->w * d->h;
    out->scores.push_back(d->score);
    out->tp.push_back(m > -1);
    out->ignored.push_back(m > -1 ? ig[order[static_cast<size_t>(m)]] : (area < kLo || area > kHi));
    if (m > -1) taken[static_cast<size_t>(m)] = 1;
  }
}

}  // namespace

PrCurves pr_curves_at_50(const std::vector<ImageRecord>& records, int64_t num_classes) {
  return pr_curves_at_50(records, num_classes, ApMethod::Coco101);
}

PrCurves pr_curves_at_50(const std::vector<ImageRecord>& records, int64_t num_classes, ApMethod method) {
  const int64_t K = num_classes;
  RG_CHECK(K > 0, "pr_curves_at_50: num_classes must be positive, got ", K);
  std::vector<const ImageRecord*> sorted;
  for (const ImageRecord& r : records) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ImageRecord* a, const ImageRecord* b) { return a->image_id < b->image_id; });
  std::vector<ClassCurve> cls(static_cast<size_t>(K));
  for (size_t i = 0; i < sorted.size(); ++i) {
    const ImageRecord& r = *sorted[i];
    RG_CHECK(i == 0 || sorted[i - 1]->image_id != r.image_id, "pr_curves_at_50: image id ", r.image_id,
             " appears in two records");
    std::vector<std::vector<const DetBox*>> dets(static_cast<size_t>(K));
    std::vector<std::vector<const GtBox*>> gts(static_cast<size_t>(K));
    for (const DetBox& d : r.dets) {
      check_category(d.category, K, r.image_id, "a detection", "pr_curves_at_50");
      dets[static_cast<size_t>(d.category)].push_back(&d);
    }
    for (const GtBox& g : r.gts) {
      check_category(g.category, K, r.image_id, "a ground-truth box", "pr_curves_at_50");
      gts[static_cast<size_t>(g.category)].push_back(&g);
    }
    for (size_t k = 0; k < static_cast<size_t>(K); ++k) {
      if (!dets[k].empty() || !gts[k].empty()) match_image(std::move(dets[k]), gts[k], &cls[k]);
    }
  }
  constexpr int kPx = 1000;
  PrCurves out;
  out.recall_grid.resize(kPx);
  for (int i = 0; i < kPx; ++i) out.recall_grid[i] = i * (1.0 / (kPx - 1));  // np.linspace(0, 1, 1000)
  out.recall_grid[kPx - 1] = 1.0;
  out.precision.assign(static_cast<size_t>(K), std::vector<double>(kPx, 0.0));
  out.ap50.assign(static_cast<size_t>(K), -1.0);
  constexpr double kSpacing = 2.220446049250313e-16;  // np.spacing(1), as COCOeval
  for (size_t k = 0; k < static_cast<size_t>(K); ++k) {
    const ClassCurve& c = cls[k];
    if (c.npig == 0) continue;
    std::vector<size_t> order(c.scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return c.scores[x] > c.scores[y]; });
    PrCurve raw;
    double tp = 0, fp = 0;
    for (size_t j : order) {
      tp += c.tp[j] && !c.ignored[j];
      fp += !c.tp[j] && !c.ignored[j];
      raw.recall.push_back(tp / static_cast<double>(c.npig));
      raw.precision.push_back(tp / (fp + tp + kSpacing));
    }
    std::vector<double> env = raw.precision;
    for (size_t i = env.size(); i > 1; --i) env[i - 2] = std::max(env[i - 2], env[i - 1]);
    auto at = [&](double r) {  // the envelope at the first recall >= r, 0 past the end
      const auto it = std::lower_bound(raw.recall.begin(), raw.recall.end(), r);
      return it == raw.recall.end() ? 0.0 : env[static_cast<size_t>(it - raw.recall.begin())];
    };
    for (int i = 0; i < kPx; ++i) out.precision[k][static_cast<size_t>(i)] = at(out.recall_grid[static_cast<size_t>(i)]);
    if (method == ApMethod::Coco101) {
      double s = 0;
      for (int j = 0; j < 101; ++j) s += at(j == 100 ? 1.0 : j * 0.01);  // np.linspace(0, 1, 101)
      out.ap50[k] = s / 101;
    } else {
      out.ap50[k] = voc_ap(raw, method == ApMethod::Voc11);
    }
  }
  return out;
}

}  // namespace rg::metrics
