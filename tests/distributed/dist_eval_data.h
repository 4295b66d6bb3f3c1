// Shared by tests/distributed/test_dist_eval.cpp and the dist_worker's dist-eval scenario: image i's
// detection record (from its own seed, so any rank can make any image), and a digest of every bit of
// the metrics, for checking that distributed evaluation equals the single-process one exactly.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "metrics/coco_eval.h"

namespace rg::test {

inline metrics::ImageRecord eval_image(int64_t i) {
  std::mt19937_64 g(0x5eed0000u + static_cast<uint64_t>(i));
  std::uniform_real_distribution<double> u(0, 1);
  metrics::ImageRecord r;
  r.image_id = (i * 7919) % 1009 + 1;  // not in index order: evaluation must sort by id
  const int ngt = static_cast<int>(u(g) * 8);
  for (int k = 0; k < ngt; ++k) {
    metrics::GtBox b;
    b.w = 8 + u(g) * 150;
    b.h = 8 + u(g) * 150;
    b.x = u(g) * 500;
    b.y = u(g) * 400;
    b.category = static_cast<int64_t>(u(g) * 3);
    b.crowd = u(g) < 0.1;
    b.difficult = !b.crowd && u(g) < 0.1;
    r.gts.push_back(b);
  }
  const int ndet = static_cast<int>(u(g) * 25);
  for (int k = 0; k < ndet; ++k) {
    metrics::DetBox d;
    if (!r.gts.empty() && u(g) < 0.6) {
      const metrics::GtBox& b = r.gts[static_cast<size_t>(u(g) * r.gts.size())];
      d = {b.x + (u(g) - 0.5) * 0.2 * b.w,
           b.y + (u(g) - 0.5) * 0.2 * b.h,
           b.w * (0.9 + 0.2 * u(g)),
           b.h * (0.9 + 0.2 * u(g)),
           0,
           b.category};
    } else {
      d = {u(g) * 500, u(g) * 400, 8 + u(g) * 150, 8 + u(g) * 150, 0, static_cast<int64_t>(u(g) * 3)};
    }
    d.score = std::floor(u(g) * 10) / 10 + 0.05;  // ties across images
    r.dets.push_back(d);
  }
  return r;
}

inline std::string metrics_digest(const metrics::DetectionMetrics& m) {
  std::vector<double> v(m.stats.begin(), m.stats.end());
  for (double x : {m.map50, m.map, m.precision, m.recall, m.f1, m.best_conf, m.fitness}) v.push_back(x);
  v.insert(v.end(), m.ap_per_class.begin(), m.ap_per_class.end());
  v.insert(v.end(), m.ap50_per_class.begin(), m.ap50_per_class.end());
  std::string s;
  for (double x : v) {
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof(bits));
    char b[20];
    std::snprintf(b, sizeof(b), "%016llx", static_cast<unsigned long long>(bits));
    s += b;
  }
  return s;
}

}  // namespace rg::test
