// VOC AP, numpy's interp and ultralytics' best-F1 precision/recall (metrics/pr_curves.h).
#include "metrics/pr_curves.h"

#include <algorithm>
#include <numeric>

namespace rg::metrics {

double voc_ap(const PrCurve& c, bool eleven_point) {
  const size_t n = c.recall.size();
  if (eleven_point) {
    double ap = 0;
    for (int i = 0; i <= 10; ++i) {
      const double t = i * 0.1;  // np.arange(0., 1.1, 0.1)
      double p = 0;
      bool any = false;
      for (size_t j = 0; j < n; ++j) {
        if (c.recall[j] >= t) {
          p = any ? std::max(p, c.precision[j]) : c.precision[j];
          any = true;
        }
      }
      ap += (any ? p : 0.0) / 11.0;
    }
    return ap;
  }
  std::vector<double> mrec(n + 2), mpre(n + 2);
  mrec[0] = 0;
  mpre[0] = 0;
  for (size_t j = 0; j < n; ++j) {
    mrec[j + 1] = c.recall[j];
    mpre[j + 1] = c.precision[j];
  }
  mrec[n + 1] = 1;
  mpre[n + 1] = 0;
  for (size_t i = n + 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);
  double ap = 0;
  for (size_t i = 0; i + 1 < n + 2; ++i) {
    if (mrec[i + 1] != mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
  }
  return ap;
}

double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left) {
  const size_t n = xp.size();
  if (n == 0) return left;
  // j = the last index with xp[j] <= x (numpy's binary search), -1 when x < xp[0]
  const auto it = std::upper_bound(xp.begin(), xp.end(), x);
  if (it == xp.begin()) return left;
  const size_t j = static_cast<size_t>(it - xp.begin()) - 1;
  if (j == n - 1 || xp[j] == x) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  return slope * (x - xp[j]) + fp[j];
}

BestF1 best_f1(const std::vector<ClassMatches>& classes) {
  constexpr int kPx = 1000;
  std::vector<double> px(kPx);
  for (int i = 0; i < kPx; ++i) px[i] = i * (1.0 / (kPx - 1));
  px[kPx - 1] = 1.0;
  std::vector<std::vector<double>> P, R;
  for (const ClassMatches& c : classes) {
    if (c.labels <= 0) continue;
    std::vector<double> p(kPx, 0.0), r(kPx, 0.0);
    if (!c.conf.empty()) {
      std::vector<size_t> order(c.conf.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.conf[a] > c.conf[b]; });
      std::vector<double> neg_conf, recall, precision;
      double tp = 0, fp = 0;
      for (size_t i : order) {
        tp += c.tp[i];
        fp += 1 - c.tp[i];
        neg_conf.push_back(-c.conf[i]);
        recall.push_back(tp / (static_cast<double>(c.labels) + 1e-16));
        precision.push_back(tp / (tp + fp));
      }
      for (int i = 0; i < kPx; ++i) {
        r[i] = np_interp(-px[i], neg_conf, recall, 0.0);
        p[i] = np_interp(-px[i], neg_conf, precision, 1.0);
      }
    }
    P.push_back(std::move(p));
    R.push_back(std::move(r));
  }
  BestF1 out;
  if (P.empty()) return out;
  const double nc = static_cast<double>(P.size());
  int best = 0;
  double best_f1 = -1;
  for (int i = 0; i < kPx; ++i) {
    double f = 0;
    for (size_t c = 0; c < P.size(); ++c) f += 2 * P[c][i] * R[c][i] / (P[c][i] + R[c][i] + 1e-16);
    f /= nc;
    if (f > best_f1) {
      best_f1 = f;
      best = i;
    }
  }
  for (size_t c = 0; c < P.size(); ++c) {
    out.precision += P[c][best] / nc;
    out.recall += R[c][best] / nc;
  }
  out.f1 = best_f1;
  out.conf = px[best];
  return out;
}

}  // namespace rg::metrics
