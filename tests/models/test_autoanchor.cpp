// AutoAnchor: the ratio metric on hand cases (threshold strictness included), k-means recovering planted
// clusters, the genetic refinement never lowering fitness, determinism per seed, tiny and too few labels.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "models/autoanchor.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;

TEST_CASE("anchor metrics by hand: bpr, anchors above threshold, fitness (Note [Anchor ratio metric])") {
  const std::vector<WH> labels{{10, 10}, {40, 40}, {100, 25}};
  // One anchor: the first label matches exactly; (40, 40) is 4x: x = 0.25, not above 1/4 (strict, as the loss).
  AnchorMetrics m = anchor_metrics(labels, {{10, 10}});
  CHECK(m.bpr == doctest::Approx(1.0 / 3));
  CHECK(m.aat == doctest::Approx(1.0 / 3));
  CHECK(m.fitness == doctest::Approx(1.0 / 3));
  CHECK(m.mean_best == doctest::Approx((1.0 + 0.25 + 0.1) / 3));
  // Adding (39, 41): (40, 40) scores min(39/40, 40/41) = 39/40; (100, 25) scores min(39/100, 25/41) = 0.39.
  m = anchor_metrics(labels, {{10, 10}, {39, 41}});
  const double x2 = 39.0 / 40.0, x3 = 39.0 / 100.0;
  CHECK(m.bpr == doctest::Approx(1.0));
  CHECK(m.aat == doctest::Approx(1.0));  // (10,10) vs (39,41) scores 10/41 < 1/4: one anchor each
  CHECK(m.fitness == doctest::Approx((1.0 + x2 + x3) / 3));
  // A looser threshold counts more anchors per label.
  CHECK(anchor_metrics(labels, {{10, 10}, {39, 41}}, 5.0).aat == doctest::Approx(5.0 / 3));
  CHECK(contains(error_of([] { anchor_metrics({}, {{1, 1}}); }), "no labels"));
  CHECK(contains(error_of([] { anchor_metrics({{1, 1}}, {{0, 1}}); }), "must be positive"));
}

TEST_CASE("k-means recovers planted clusters; the genetic step never lowers fitness; a seed fixes the result") {
  const std::vector<WH> centres{{10, 20}, {50, 40}, {150, 120}};
  std::mt19937_64 g(3);
  std::uniform_real_distribution<float> jitter(0.95f, 1.05f);
  std::vector<WH> labels;
  for (int i = 0; i < 300; ++i) {
    const WH& c = centres[static_cast<size_t>(i % 3)];
    labels.push_back({c[0] * jitter(g), c[1] * jitter(g)});
  }
  KMeansAnchorOptions o;
  o.n = 3;
  o.generations = 0;
  const AnchorFit km = kmean_anchors(labels, o);
  CHECK(km.kmeans_ok);
  REQUIRE(km.anchors.size() == 3);
  for (size_t i = 0; i < 3; ++i) {  // sorted by area, as the centres are
    CHECK(km.anchors[i][0] == doctest::Approx(centres[i][0]).epsilon(0.02));
    CHECK(km.anchors[i][1] == doctest::Approx(centres[i][1]).epsilon(0.02));
  }
  CHECK(km.metrics.bpr == 1.0);
  CHECK(km.labels_used == 300);

  o.generations = 300;
  const AnchorFit ga = kmean_anchors(labels, o);
  CHECK(ga.metrics.fitness >= km.metrics.fitness);
  const AnchorFit again = kmean_anchors(labels, o);
  CHECK(again.anchors == ga.anchors);
  // Nine anchors on the same data: the areas come out sorted small to large.
  o.n = 9;
  o.generations = 50;
  const AnchorFit nine = kmean_anchors(labels, o);
  REQUIRE(nine.anchors.size() == 9);
  for (size_t i = 1; i < 9; ++i) CHECK(nine.anchors[i - 1][0] * nine.anchors[i - 1][1] <= nine.anchors[i][0] * nine.anchors[i][1]);
}

TEST_CASE("k-means: tiny labels are counted and dropped under 2 px; too few labels fall back to random sizes") {
  std::vector<WH> labels{{1, 1}, {1.5f, 2.5f}, {2.5f, 8}, {30, 30}, {31, 29}, {60, 61}};
  KMeansAnchorOptions o;
  o.n = 2;
  o.generations = 20;
  const AnchorFit f = kmean_anchors(labels, o);
  CHECK(f.labels_tiny == 3);  // a side under 3 px
  CHECK(f.labels_used == 5);  // (1, 1) dropped: both sides under 2 px
  CHECK(f.anchors.size() == 2);
  o.n = 9;
  const AnchorFit few = kmean_anchors(labels, o);
  CHECK_FALSE(few.kmeans_ok);
  CHECK(few.anchors.size() == 9);
  for (const WH& a : few.anchors) CHECK((a[0] >= 2.0f && a[1] >= 2.0f));
}
