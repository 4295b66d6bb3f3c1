// DistributedSampler against index lists worked out by hand from torch's rules (padding by the
// head, drop_last, rank::world striding, evaluation sharding) and the shuffle's properties.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include "data/distributed_sampler.h"

using rg::data::DistributedSampler;
using V = std::vector<int64_t>;

namespace {
DistributedSampler::Options plain(bool drop_last = false) {
  DistributedSampler::Options o;
  o.shuffle = false;
  o.drop_last = drop_last;
  return o;
}
}  // namespace

TEST_CASE("DistributedSampler: 10 samples on 3 ranks, no shuffle: padded with the head") {
  // [0..9] + [0, 1] -> rank r takes every third from r.
  DistributedSampler r0(10, 3, 0, plain()), r1(10, 3, 1, plain()), r2(10, 3, 2, plain());
  CHECK(r0.indices() == V{0, 3, 6, 9});
  CHECK(r1.indices() == V{1, 4, 7, 0});
  CHECK(r2.indices() == V{2, 5, 8, 1});
  CHECK(r0.num_samples() == 4);
  CHECK(r0.total_size() == 12);
}

TEST_CASE("DistributedSampler: drop_last cuts the tail") {
  // num_samples = ceil((10 - 3) / 3) = 3, total 9: [0..8].
  DistributedSampler r0(10, 3, 0, plain(true)), r1(10, 3, 1, plain(true)), r2(10, 3, 2, plain(true));
  CHECK(r0.indices() == V{0, 3, 6});
  CHECK(r1.indices() == V{1, 4, 7});
  CHECK(r2.indices() == V{2, 5, 8});
  CHECK(r2.num_samples() == 3);
  CHECK(r2.total_size() == 9);
  // Divisible: drop_last changes nothing.
  CHECK(DistributedSampler(9, 3, 1, plain(true)).indices() == V{1, 4, 7});
  CHECK(DistributedSampler(9, 3, 1, plain(false)).indices() == V{1, 4, 7});
  // Fewer samples than ranks: ceil((2 - 3) / 3) = 0 each.
  CHECK(DistributedSampler(2, 3, 0, plain(true)).indices().empty());
  CHECK(DistributedSampler(2, 3, 0, plain(true)).num_samples() == 0);
}

TEST_CASE("DistributedSampler: padding longer than the list repeats it as often as needed") {
  // 2 samples, 5 ranks: total 5, [0, 1] -> [0, 1, 0, 1, 0].
  const V want[] = {{0}, {1}, {0}, {1}, {0}};
  for (int r = 0; r < 5; ++r) CHECK(DistributedSampler(2, 5, r, plain()).indices() == want[r]);
  // 1 sample, 4 ranks: everyone reads sample 0.
  for (int r = 0; r < 4; ++r) CHECK(DistributedSampler(1, 4, r, plain()).indices() == V{0});
  // 3 samples, 8 ranks: [0, 1, 2, 0, 1, 2, 0, 1].
  CHECK(DistributedSampler(3, 8, 6, plain()).indices() == V{0});
  CHECK(DistributedSampler(3, 8, 7, plain()).indices() == V{1});
  CHECK(DistributedSampler(0, 2, 1, plain()).indices().empty());
}

TEST_CASE("DistributedSampler: evaluation sharding neither pads nor drops") {
  DistributedSampler::Options o = plain();
  o.pad = false;
  CHECK(DistributedSampler(10, 3, 0, o).indices() == V{0, 3, 6, 9});
  CHECK(DistributedSampler(10, 3, 1, o).indices() == V{1, 4, 7});
  CHECK(DistributedSampler(10, 3, 2, o).indices() == V{2, 5, 8});
  CHECK(DistributedSampler(10, 3, 0, o).num_samples() == 4);
  CHECK(DistributedSampler(10, 3, 2, o).num_samples() == 3);
  CHECK(DistributedSampler(2, 3, 2, o).indices().empty());
  CHECK(DistributedSampler(2, 3, 2, o).num_samples() == 0);
  o.drop_last = true;  // ignored without padding
  CHECK(DistributedSampler(10, 3, 1, o).indices() == V{1, 4, 7});
}

TEST_CASE("DistributedSampler: shuffle is a permutation from seed + epoch, shared by all ranks") {
  DistributedSampler::Options o;
  o.seed = 17;
  // 12 samples on 3 ranks: together the ranks read every sample exactly once.
  std::multiset<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    const V v = DistributedSampler(12, 3, r, o).indices();
    CHECK(v.size() == 4);
    all.insert(v.begin(), v.end());
  }
  std::multiset<int64_t> want;
  for (int64_t i = 0; i < 12; ++i) want.insert(i);
  CHECK(all == want);

  // 10 samples on 3 ranks: 12 reads; the two repeated samples are the epoch order's first two,
  // which are rank 0's and rank 1's first indices.
  std::map<int64_t, int> count;
  V heads;
  for (int r = 0; r < 3; ++r) {
    const V v = DistributedSampler(10, 3, r, o).indices();
    for (int64_t i : v) ++count[i];
    heads.push_back(v[0]);
  }
  CHECK(count.size() == 10);
  CHECK(count[heads[0]] == 2);
  CHECK(count[heads[1]] == 2);
  int twice = 0;
  for (const auto& [i, c] : count) twice += c == 2;
  CHECK(twice == 2);

  // Same seed and epoch: same order, in another sampler (another process); another epoch or
  // seed: another order.
  DistributedSampler a(100, 4, 1, o), b(100, 4, 1, o);
  CHECK(a.indices() == b.indices());
  const V e0 = a.indices();
  a.set_epoch(1);
  CHECK(a.indices() != e0);
  b.set_epoch(1);
  CHECK(a.indices() == b.indices());
  DistributedSampler::Options o2 = o;
  o2.seed = 18;
  CHECK(DistributedSampler(100, 4, 1, o2).indices() != e0);
  // Not the identity.
  V id(25);
  for (int64_t i = 0; i < 25; ++i) id[static_cast<size_t>(i)] = i * 4 + 1;
  CHECK(e0 != id);
}

TEST_CASE("shuffled_indices: each value lands in each position about equally often") {
  // 5 elements, 4000 keys: every (position, value) cell expects 800.
  int cell[5][5] = {};
  for (uint64_t key = 0; key < 4000; ++key) {
    const V p = rg::data::shuffled_indices(5, key);
    V sorted = p;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == V{0, 1, 2, 3, 4});
    for (int i = 0; i < 5; ++i) ++cell[i][p[static_cast<size_t>(i)]];
  }
  for (int i = 0; i < 5; ++i) {
    for (int v = 0; v < 5; ++v) {
      CAPTURE(i);
      CAPTURE(v);
      CHECK(cell[i][v] > 650);
      CHECK(cell[i][v] < 950);
    }
  }
}

TEST_CASE("DistributedSampler: state round-trips; bad ranks are refused") {
  DistributedSampler::Options o;
  o.seed = 5;
  DistributedSampler s(50, 2, 0, o);
  s.set_epoch(7);
  const auto st = s.state();
  CHECK(st.epoch == 7);
  CHECK(st.seed == 5);
  DistributedSampler t(50, 2, 0);
  t.load_state(st);
  CHECK(t.indices() == s.indices());
  try {
    DistributedSampler bad(10, 3, 3);
    CHECK(false);
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("invalid rank 3, rank should be in the interval [0, 2]") != std::string::npos);
  }
}
