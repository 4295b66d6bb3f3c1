// AutoAnchor: the ratio metric (Note [Anchor ratio metric]), scipy-style k-means with restarts on
// whitened (w, h), and ultralytics' genetic refinement, all driven by one seeded generator.
#include "models/autoanchor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"

namespace rg::models {

namespace {

// Portable draws: mt19937_64's sequence is fixed by the standard; the mappings below are ours.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                                             // Box-Muller
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0;
    while (u1 <= 0) u1 = uniform();
    const double u2 = uniform(), r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }

 private:
  std::mt19937_64 gen_;
  bool has_spare_ = false;
  double spare_ = 0;
};

using Pt = std::array<double, 2>;

double match_score(const WH& l, const Pt& a) {
  const double rw = l[0] / a[0], rh = l[1] / a[1];
  return std::min(std::min(rw, 1.0 / rw), std::min(rh, 1.0 / rh));
}

AnchorMetrics metrics_of(const std::vector<WH>& labels, const std::vector<Pt>& anchors, double anchor_t) {
  RG_CHECK(!labels.empty(), "anchor metrics: no labels");
  RG_CHECK(!anchors.empty(), "anchor metrics: no anchors");
  RG_CHECK(anchor_t > 1.0, "anchor metrics: anchor_t must be > 1, got ", anchor_t);
  const double thr = 1.0 / anchor_t;
  AnchorMetrics m;
  for (const WH& l : labels) {
    RG_CHECK(l[0] > 0 && l[1] > 0, "anchor metrics: label size (", l[0], ", ", l[1], ") must be positive");
    double best = 0;
    for (const Pt& a : anchors) {
      const double x = match_score(l, a);
      best = std::max(best, x);
      if (x > thr) m.aat += 1;
    }
    m.mean_best += best;
    if (best > thr) {
      m.bpr += 1;
      m.fitness += best;
    }
  }
  const double n = static_cast<double>(labels.size());
  m.bpr /= n;
  m.aat /= n;
  m.fitness /= n;
  m.mean_best /= n;
  return m;
}

// One Lloyd run from `centres` (whitened points); false when a cluster empties (scipy drops it, and
// ultralytics then gives up on k-means). `distortion`: mean distance to the nearest centre.
bool lloyd(const std::vector<Pt>& obs, std::vector<Pt>& centres, double& distortion) {
  const size_t k = centres.size();
  double prev = std::numeric_limits<double>::infinity();
  for (int iter = 0; iter < 1000; ++iter) {
    std::vector<Pt> sum(k, Pt{0, 0});
    std::vector<int64_t> count(k, 0);
    double dist = 0;
    for (const Pt& p : obs) {
      size_t best = 0;
      double bd = std::numeric_limits<double>::infinity();
      for (size_t c = 0; c < k; ++c) {
        const double d = std::hypot(p[0] - centres[c][0], p[1] - centres[c][1]);
        if (d < bd) {
          bd = d;
          best = c;
        }
      }
      dist += bd;
      sum[best][0] += p[0];
      sum[best][1] += p[1];
      ++count[best];
    }
    dist /= static_cast<double>(obs.size());
    for (size_t c = 0; c < k; ++c) {
      if (count[c] == 0) return false;
      centres[c] = {sum[c][0] / static_cast<double>(count[c]), sum[c][1] / static_cast<double>(count[c])};
    }
    distortion = dist;
    if (prev - dist <= 1e-5) break;  // scipy's thresh
    prev = dist;
  }
  return true;
}

// scipy.cluster.vq.kmeans(obs, n, iter=restarts): the best of `restarts` runs from n distinct random points.
bool kmeans(const std::vector<Pt>& obs, size_t n, int64_t restarts, Rng& rng, std::vector<Pt>& out) {
  if (n == 0 || n > obs.size()) return false;
  double best = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < restarts; ++r) {
    std::vector<size_t> idx(obs.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    for (size_t i = 0; i < n; ++i) std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);  // partial shuffle
    std::vector<Pt> c(n);
    for (size_t i = 0; i < n; ++i) c[i] = obs[idx[i]];
    double d = 0;
    if (lloyd(obs, c, d) && d < best) {
      best = d;
      out = c;
    }
  }
  return std::isfinite(best);
}

std::vector<WH> sorted_by_area(const std::vector<Pt>& k) {
  std::vector<WH> out;
  for (const Pt& p : k) out.push_back({static_cast<float>(p[0]), static_cast<float>(p[1])});
  std::stable_sort(out.begin(), out.end(), [](const WH& a, const WH& b) { return a[0] * a[1] < b[0] * b[1]; });
  return out;
}

}  // namespace

AnchorMetrics anchor_metrics(const std::vector<WH>& labels, const std::vector<WH>& anchors, double anchor_t) {
  std::vector<Pt> a;
  for (const WH& w : anchors) {
    RG_CHECK(w[0] > 0 && w[1] > 0, "anchor metrics: anchor (", w[0], ", ", w[1], ") must be positive");
    a.push_back({w[0], w[1]});
  }
  return metrics_of(labels, a, anchor_t);
}

AnchorFit kmean_anchors(const std::vector<WH>& labels, const KMeansAnchorOptions& o) {
  RG_CHECK(o.n > 0, "kmean_anchors: n must be positive, got ", o.n);
  RG_CHECK(!labels.empty(), "kmean_anchors: no labels");
  AnchorFit fit;
  std::vector<WH> wh;  // the labels k-means and the fitness use
  double max_side = 0;
  for (const WH& l : labels) {
    RG_CHECK(l[0] > 0 && l[1] > 0, "kmean_anchors: label size (", l[0], ", ", l[1], ") must be positive");
    if (l[0] < 3.0f || l[1] < 3.0f) ++fit.labels_tiny;
    if (l[0] >= o.min_size || l[1] >= o.min_size) wh.push_back(l);
    max_side = std::max<double>(max_side, std::max(l[0], l[1]));
  }
  fit.labels_used = static_cast<int64_t>(wh.size());
  Rng rng(o.seed);

  // k-means on whitened points (each side divided by its standard deviation).
  std::vector<Pt> k;
  Pt mean{0, 0}, sd{0, 0};
  for (const WH& l : wh) mean = {mean[0] + l[0], mean[1] + l[1]};
  const double nw = static_cast<double>(std::max<size_t>(wh.size(), 1));
  mean = {mean[0] / nw, mean[1] / nw};
  for (const WH& l : wh) sd = {sd[0] + (l[0] - mean[0]) * (l[0] - mean[0]), sd[1] + (l[1] - mean[1]) * (l[1] - mean[1])};
  for (double& s : sd) s = s > 0 ? std::sqrt(s / nw) : 1.0;
  std::vector<Pt> obs;
  for (const WH& l : wh) obs.push_back({l[0] / sd[0], l[1] / sd[1]});
  if (kmeans(obs, static_cast<size_t>(o.n), o.kmeans_restarts, rng, k)) {
    for (Pt& p : k) p = {p[0] * sd[0], p[1] * sd[1]};
  } else {  // too few or too similar labels: random sorted sizes, as ultralytics falls back to
    fit.kmeans_ok = false;
    std::vector<double> v(static_cast<size_t>(2 * o.n));
    for (double& x : v) x = rng.uniform() * max_side;
    std::sort(v.begin(), v.end());
    k.clear();
    for (size_t i = 0; i < v.size(); i += 2) k.push_back({std::max(v[i], o.min_size), std::max(v[i + 1], o.min_size)});
  }

  // Genetic refinement of the fitness on the kept labels.
  const std::vector<WH>& fit_on = wh.empty() ? labels : wh;
  double f = metrics_of(fit_on, k, o.anchor_t).fitness;
  std::vector<Pt> kg(k.size());
  for (int64_t g = 0; g < o.generations; ++g) {
    bool changed = false;
    while (!changed) {  // mutate until something changes (no duplicate evaluations)
      const double u = rng.uniform();
      for (size_t i = 0; i < k.size(); ++i) {
        for (int s = 0; s < 2; ++s) {
          double v = 1.0;
          if (rng.uniform() < o.mutation_prob) v = std::clamp(rng.normal() * o.sigma * u + 1.0, 0.3, 3.0);
          if (v != 1.0) changed = true;
          kg[i][static_cast<size_t>(s)] = std::max(k[i][static_cast<size_t>(s)] * v, 2.0);
        }
      }
    }
    const double fg = metrics_of(fit_on, kg, o.anchor_t).fitness;
    if (fg > f) {
      f = fg;
      k = kg;
    }
  }
  fit.anchors = sorted_by_area(k);
  fit.metrics = anchor_metrics(labels, fit.anchors, o.anchor_t);
  return fit;
}

}  // namespace rg::models
