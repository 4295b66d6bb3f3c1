// Distributed detection evaluation equals the single-process one bit for bit: 1, 2 and 3 CPU ranks
// each evaluate an unpadded shard, gather the records (dist::all_gather_bytes) and compute the metrics
// once (Note [Exact distributed evaluation]); a rank may hold no images at all.
#include <doctest/doctest.h>

#include "dist_eval_data.h"
#include "dist_test_util.h"

using namespace rg;
using namespace rg::test;

TEST_CASE("distributed evaluation: 1, 2 and 3 ranks give the single-process metrics bitwise") {
  for (int64_t images : {23, 2}) {
    std::vector<metrics::ImageRecord> all;
    for (int64_t i = 0; i < images; ++i) all.push_back(eval_image(i));
    metrics::EvalOptions o;
    o.num_classes = 3;
    const metrics::DetectionMetrics m = metrics::evaluate_detections(all, o);
    if (images == 23) REQUIRE(m.stats[0] > 0.05);  // real matches, not an all -1 table
    const std::string want = "EVAL " + metrics_digest(m);
    for (int world : {1, 2, 3}) {
      CAPTURE(images);
      CAPTURE(world);
      Job j = run_workers(world, {"dist-eval", "--images", std::to_string(images)});
      CHECK_MESSAGE(j.result.exit_code == 0, j.result.message, "\n", j.all_logs());
      CHECK_MESSAGE(j.count(want) == world, "expected on every rank: ", want, "\n", j.all_logs());
    }
  }
}
