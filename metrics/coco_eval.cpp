// COCO evaluation (Note [COCO evaluation]): per (image, category) matching, accumulation into
// precision/recall tables, the 12 summary numbers, then the per-class and ultralytics-style figures.
#include "metrics/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/error.h"
#include "metrics/pr_curves.h"

namespace rg::metrics {

namespace {

constexpr int kT = 10, kR = 101, kA = 4, kM = 3;
constexpr int kMaxDets[kM] = {1, 10, 100};
constexpr double kAreas[kA][2] = {{0, 1e10}, {0, 32.0 * 32}, {32.0 * 32, 96.0 * 96}, {96.0 * 96, 1e10}};
constexpr double kSpacing = 2.220446049250313e-16;  // np.spacing(1)

struct Thresholds {
  double iou[kT], rec[kR];
  Thresholds() {
    const double step = (0.95 - 0.5) / 9;  // np.linspace(.5, .95, 10)
    for (int i = 0; i < kT; ++i) iou[i] = i * step + 0.5;
    iou[kT - 1] = 0.95;
    for (int i = 0; i < kR; ++i) rec[i] = i * 0.01 + 0.0;  // np.linspace(0, 1, 101)
    rec[kR - 1] = 1.0;
  }
};
const Thresholds& thresholds() {
  static const Thresholds t;
  return t;
}

// One (image, category): detections sorted and cut, ground truth in record order, IoUs (D x G).
struct Pair {
  std::vector<const DetBox*> dets;
  std::vector<const GtBox*> gts;
  std::vector<double> ious;
};

double bb_iou(const DetBox& d, const GtBox& g) {  // maskApi's bbIou
  const double w = std::fmin(d.w + d.x, g.w + g.x) - std::fmax(d.x, g.x);
  if (w <= 0) return 0;
  const double h = std::fmin(d.h + d.y, g.h + g.y) - std::fmax(d.y, g.y);
  if (h <= 0) return 0;
  const double i = w * h, da = d.w * d.h;
  const double u = g.crowd ? da : da + g.w * g.h - i;
  return i / u;
}

Pair make_pair(std::vector<const DetBox*> dets, std::vector<const GtBox*> gts) {
  std::stable_sort(dets.begin(), dets.end(), [](const DetBox* a, const DetBox* b) { return a->score > b->score; });
  if (dets.size() > static_cast<size_t>(kMaxDets[kM - 1])) dets.resize(kMaxDets[kM - 1]);
  Pair p{std::move(dets), std::move(gts), {}};
  p.ious.resize(p.dets.size() * p.gts.size());
  for (size_t d = 0; d < p.dets.size(); ++d) {
    for (size_t g = 0; g < p.gts.size(); ++g) p.ious[d * p.gts.size() + g] = bb_iou(*p.dets[d], *p.gts[g]);
  }
  return p;
}

// evaluateImg for one area range: matches and ignore flags per threshold (T x D), and npig.
struct ImgEval {
  std::vector<double> scores;
  std::vector<uint8_t> matched, ignored;  // kT x D
  int64_t npig = 0;
};

ImgEval evaluate_img(const Pair& p, const double* area) {
  const size_t D = p.dets.size(), G = p.gts.size();
  std::vector<uint8_t> gt_ig(G);
  for (size_t g = 0; g < G; ++g) {
    const GtBox& b = *p.gts[g];
    const double a = b.area_or_box();
    gt_ig[g] = b.crowd || b.difficult || a < area[0] || a > area[1];
  }
  std::vector<size_t> order(G);  // non-ignored first, stable
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return gt_ig[a] < gt_ig[b]; });
  ImgEval e;
  e.scores.resize(D);
  for (size_t d = 0; d < D; ++d) e.scores[d] = p.dets[d]->score;
  e.matched.assign(kT * D, 0);
  e.ignored.assign(kT * D, 0);
  for (size_t g = 0; g < G; ++g) e.npig += gt_ig[g] == 0;
  const Thresholds& th = thresholds();
  std::vector<uint8_t> taken(G);
  for (int t = 0; t < kT; ++t) {
    std::fill(taken.begin(), taken.end(), 0);
    for (size_t d = 0; d < D; ++d) {
      double best = std::min(th.iou[t], 1 - 1e-10);
      long m = -1;
      for (size_t k = 0; k < G; ++k) {
        const size_t g = order[k];
        if (taken[k] && !p.gts[g]->crowd) continue;
        if (m > -1 && !gt_ig[order[static_cast<size_t>(m)]] && gt_ig[g]) break;
        const double iou = p.ious[d * G + g];
        if (iou < best) continue;
        best = iou;
        m = static_cast<long>(k);
      }
      if (m == -1) continue;
      e.ignored[t * D + d] = gt_ig[order[static_cast<size_t>(m)]];
      e.matched[t * D + d] = 1;
      taken[static_cast<size_t>(m)] = 1;
    }
    for (size_t d = 0; d < D; ++d) {
      const double a = p.dets[d]->w * p.dets[d]->h;
      if (!e.matched[t * D + d] && (a < area[0] || a > area[1])) e.ignored[t * D + d] = 1;
    }
  }
  return e;
}

// precision (T, R, K, A, M) and recall (T, K, A, M), -1 where undefined.
struct Tables {
  int64_t K = 0;
  std::vector<double> precision, recall;
  double& p(int t, int r, int64_t k, int a, int m) { return precision[(((t * kR + r) * K + k) * kA + a) * kM + m]; }
  double& rc(int t, int64_t k, int a, int m) { return recall[((t * K + k) * kA + a) * kM + m]; }
};

// accumulate() for one (category, area, maxDet) over the images' evaluations (in image order).
void accumulate_one(const std::vector<const ImgEval*>& E, int64_t k, int a, int m, Tables& tab,
                    std::vector<PrCurve>* curves) {
  const size_t max_det = static_cast<size_t>(kMaxDets[m]);
  std::vector<double> scores;
  std::vector<std::pair<const ImgEval*, size_t>> src;
  int64_t npig = 0;
  for (const ImgEval* e : E) {
    const size_t n = std::min(e->scores.size(), max_det);
    for (size_t d = 0; d < n; ++d) {
      scores.push_back(e->scores[d]);
      src.emplace_back(e, d);
    }
    npig += e->npig;
  }
  if (npig == 0) return;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return scores[x] > scores[y]; });
  const size_t nd = order.size();
  const Thresholds& th = thresholds();
  std::vector<double> rc(nd), pr(nd);
  for (int t = 0; t < kT; ++t) {
    double tp = 0, fp = 0;
    for (size_t j = 0; j < nd; ++j) {
      const auto [e, d] = src[order[j]];
      const size_t D = e->scores.size();
      const bool ig = e->ignored[t * D + d], hit = e->matched[t * D + d];
      tp += hit && !ig;
      fp += !hit && !ig;
      rc[j] = tp / static_cast<double>(npig);
      pr[j] = tp / (fp + tp + kSpacing);
    }
    tab.rc(t, k, a, m) = nd ? rc[nd - 1] : 0;
    if (curves) (*curves)[t] = PrCurve{rc, pr};
    for (size_t i = nd - 1; nd > 0 && i > 0; --i) pr[i - 1] = std::max(pr[i - 1], pr[i]);
    size_t j = 0;
    for (int r = 0; r < kR; ++r) {
      while (j < nd && rc[j] < th.rec[r]) ++j;  // np.searchsorted(rc, recThrs, side='left')
      tab.p(t, r, k, a, m) = j < nd ? pr[j] : 0;
    }
  }
}

double mean_defined(const std::vector<double>& v) {
  double s = 0;
  int64_t n = 0;
  for (double x : v) {
    if (x > -1) {
      s += x;
      ++n;
    }
  }
  return n ? s / static_cast<double>(n) : -1;
}

std::array<double, 12> summarize(Tables& tab) {
  auto ap = [&](int t_only, int a, int m) {
    std::vector<double> v;
    for (int t = 0; t < kT; ++t) {
      if (t_only >= 0 && t != t_only) continue;
      for (int r = 0; r < kR; ++r) {
        for (int64_t k = 0; k < tab.K; ++k) v.push_back(tab.p(t, r, k, a, m));
      }
    }
    return mean_defined(v);
  };
  auto ar = [&](int a, int m) {
    std::vector<double> v;
    for (int t = 0; t < kT; ++t) {
      for (int64_t k = 0; k < tab.K; ++k) v.push_back(tab.rc(t, k, a, m));
    }
    return mean_defined(v);
  };
  RG_CHECK(thresholds().iou[5] == 0.75, "coco_eval: IoU threshold 5 is not 0.75");
  return {ap(-1, 0, 2), ap(0, 0, 2), ap(5, 0, 2), ap(-1, 1, 2), ap(-1, 2, 2), ap(-1, 3, 2),
          ar(0, 0),     ar(0, 1),    ar(0, 2),    ar(1, 2),     ar(2, 2),     ar(3, 2)};
}

void check_records(std::vector<ImageRecord>& records, int64_t K) {
  RG_CHECK(K > 0, "evaluate_detections: num_classes must be positive, got ", K);
  std::stable_sort(records.begin(), records.end(),
                   [](const ImageRecord& a, const ImageRecord& b) { return a.image_id < b.image_id; });
  for (size_t i = 0; i < records.size(); ++i) {
    const ImageRecord& r = records[i];
    RG_CHECK(i == 0 || records[i - 1].image_id != r.image_id, "evaluate_detections: image id ", r.image_id,
             " appears in two records");
    for (const GtBox& g : r.gts) {
      RG_CHECK(g.category >= 0 && g.category < K, "evaluate_detections: image ", r.image_id,
               " has a ground-truth box of ", "category ", g.category, ", outside 0..", K - 1);
      RG_CHECK(std::isfinite(g.x) && std::isfinite(g.y) && std::isfinite(g.w) && std::isfinite(g.h),
               "evaluate_detections: image ", r.image_id, " has a ground-truth box that is not finite");
    }
    for (const DetBox& d : r.dets) {
      RG_CHECK(d.category >= 0 && d.category < K, "evaluate_detections: image ", r.image_id, " has a detection of ",
               "category ", d.category, ", outside 0..", K - 1);
      RG_CHECK(std::isfinite(d.x) && std::isfinite(d.y) && std::isfinite(d.w) && std::isfinite(d.h) &&
                   std::isfinite(d.score),
               "evaluate_detections: image ", r.image_id, " has a detection that is not finite");
    }
  }
}

}  // namespace

DetectionMetrics evaluate_detections(std::vector<ImageRecord> records, const EvalOptions& opts) {
  const int64_t K = opts.num_classes;
  check_records(records, K);
  const size_t I = records.size();
  // evals[(k * kA + a) * I + i]; `present` marks the (image, category) pairs with a box of either kind
  std::vector<ImgEval> evals(static_cast<size_t>(K) * kA * I);
  std::vector<uint8_t> present(static_cast<size_t>(K) * I, 0);
  DetectionMetrics out;
  out.images = static_cast<int64_t>(I);
  for (size_t i = 0; i < I; ++i) {
    std::vector<std::vector<const DetBox*>> dets(static_cast<size_t>(K));
    std::vector<std::vector<const GtBox*>> gts(static_cast<size_t>(K));
    for (const DetBox& d : records[i].dets) dets[d.category].push_back(&d);
    for (const GtBox& g : records[i].gts) gts[g.category].push_back(&g);
    out.detections += static_cast<int64_t>(records[i].dets.size());
    out.ground_truth += static_cast<int64_t>(records[i].gts.size());
    for (int64_t k = 0; k < K; ++k) {
      if (dets[k].empty() && gts[k].empty()) continue;
      present[k * I + i] = 1;
      const Pair p = make_pair(std::move(dets[k]), std::move(gts[k]));
      for (int a = 0; a < kA; ++a) evals[(k * kA + a) * I + i] = evaluate_img(p, kAreas[a]);
    }
  }
  Tables tab;
  tab.K = K;
  tab.precision.assign(static_cast<size_t>(kT * kR * K * kA * kM), -1.0);
  tab.recall.assign(static_cast<size_t>(kT * K * kA * kM), -1.0);
  std::vector<std::vector<PrCurve>> curves(static_cast<size_t>(K), std::vector<PrCurve>(kT));  // area all, 100 dets
  for (int64_t k = 0; k < K; ++k) {
    for (int a = 0; a < kA; ++a) {
      std::vector<const ImgEval*> E;
      for (size_t i = 0; i < I; ++i) {
        if (present[k * I + i]) E.push_back(&evals[(k * kA + a) * I + i]);
      }
      if (E.empty()) continue;
      for (int m = 0; m < kM; ++m) accumulate_one(E, k, a, m, tab, a == 0 && m == kM - 1 ? &curves[k] : nullptr);
    }
  }
  out.stats = summarize(tab);
  // per class: AP50 and AP from the tables (COCO) or from the raw curves (VOC)
  out.ap50_per_class.assign(static_cast<size_t>(K), -1.0);
  out.ap_per_class.assign(static_cast<size_t>(K), -1.0);
  std::vector<ClassMatches> matches(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    if (tab.rc(0, k, 0, kM - 1) <= -1) continue;  // no ground truth of class k
    std::vector<double> per_t(kT);
    for (int t = 0; t < kT; ++t) {
      if (opts.ap_method == ApMethod::Coco101) {
        double s = 0;
        for (int r = 0; r < kR; ++r) s += tab.p(t, r, k, 0, kM - 1);
        per_t[t] = s / kR;
      } else {
        per_t[t] = voc_ap(curves[k][t], opts.ap_method == ApMethod::Voc11);
      }
    }
    out.ap50_per_class[k] = per_t[0];
    out.ap_per_class[k] = std::accumulate(per_t.begin(), per_t.end(), 0.0) / kT;
    ClassMatches& cm = matches[static_cast<size_t>(k)];
    for (size_t i = 0; i < I; ++i) {
      if (!present[k * I + i]) continue;
      const ImgEval& e = evals[(k * kA + 0) * I + i];
      cm.labels += e.npig;
      for (size_t d = 0; d < e.scores.size(); ++d) {
        if (e.ignored[d]) continue;  // threshold 0 (IoU 0.5)
        cm.conf.push_back(e.scores[d]);
        cm.tp.push_back(e.matched[d]);
      }
    }
  }
  if (opts.ap_method == ApMethod::Coco101) {
    out.map50 = out.stats[1];
    out.map = out.stats[0];
  } else {
    out.map50 = mean_defined(out.ap50_per_class);
    out.map = mean_defined(out.ap_per_class);
  }
  const BestF1 f = best_f1(matches);
  out.precision = f.precision;
  out.recall = f.recall;
  out.f1 = f.f1;
  out.best_conf = f.conf;
  out.fitness = 0.1 * std::max(out.map50, 0.0) + 0.9 * std::max(out.map, 0.0);
  return out;
}

std::string DetectionMetrics::summary() const {
  static const char* kLines[12] = {" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
                                   " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
                                   " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
                                   " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
                                   " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
                                   " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
                                   " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"};
  std::string s;
  char buf[160];
  for (int i = 0; i < 12; ++i) {
    std::snprintf(buf, sizeof(buf), "%s = %.3f\n", kLines[i], stats[i]);
    s += buf;
  }
  std::snprintf(buf, sizeof(buf),
                "mAP@0.5 %.4f  mAP@[.5:.95] %.4f  P %.4f  R %.4f  (best F1 at conf %.3f)  fitness %.4f\n", map50, map,
                precision, recall, best_conf, fitness);
  return s + buf;
}

}  // namespace rg::metrics
