// Samplers and the DataLoader: batch contents and collation layout, drop_last, determinism (same
// seed -> same batches, another epoch -> another order), independence from the worker count and
// from starting mid-epoch, the bounded prefetch queue, worker errors, and pinned batches.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "data/dataloader.h"
#include "data/transforms.h"
#include "data_test_util.h"

using namespace rg;
using namespace rg::data;
using rg::test::error_of;

namespace {
// Sample i: an 8x6 RGB image whose pixel (y, x, c) = (i * 7 + y * 5 + x * 3 + c) mod 256, label i % 3.
class CountingDataset : public ClassifyDataset {
 public:
  explicit CountingDataset(int64_t n, int64_t bad = -1, bool odd_size = false) : n_(n), bad_(bad), odd_(odd_size) {}
  int64_t size() const override { return n_; }
  Image load(int64_t i) const override {
    loads.fetch_add(1);
    RG_CHECK(i != bad_, "cannot decode 'sample_", i, ".png': broken on purpose");
    const int64_t h = (odd_ && i == 5) ? 7 : 8;
    Image img(h, 6, 3);
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < 6; ++x) {
        for (int64_t c = 0; c < 3; ++c) img.at(y, x)[c] = static_cast<uint8_t>((i * 7 + y * 5 + x * 3 + c) % 256);
      }
    }
    return img;
  }
  int64_t label(int64_t i) const override { return i % 3; }
  mutable std::atomic<int64_t> loads{0};

 private:
  int64_t n_, bad_;
  bool odd_;
};

std::vector<Batch> all_batches(DataLoader& dl, int64_t epoch, int64_t start = 0) {
  std::vector<Batch> out;
  dl.start_epoch(epoch, start);
  Batch b;
  while (dl.next(&b)) out.push_back(b);
  return out;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].indices != b[i].indices || a[i].batch_index != b[i].batch_index) return false;
    if (a[i].images.to_vector<uint8_t>() != b[i].images.to_vector<uint8_t>()) return false;
    if (a[i].labels.to_vector<int64_t>() != b[i].labels.to_vector<int64_t>()) return false;
  }
  return true;
}

ImageTransform augment() {
  ClassifyTransform t;
  t.train = true;
  t.crop_padding = 2;
  return t;
}
}  // namespace

TEST_CASE("samplers: sequential, random (seed + epoch) and distributed") {
  SequentialSampler s(5);
  CHECK(s.indices(3) == std::vector<int64_t>{0, 1, 2, 3, 4});
  RandomSampler r(50, 11);
  const auto e0 = r.indices(0), e0b = r.indices(0), e1 = r.indices(1);
  CHECK(e0 == e0b);
  CHECK(e0 != e1);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == SequentialSampler(50).indices(0));
  CHECK(e0 == shuffled_indices(50, 11));       // key = seed + epoch
  CHECK(e1 == shuffled_indices(50, 12));
  CHECK(RandomSampler(50, 12).indices(0) == e1);
  DistributedSampler ds(10, 3, 1);
  DistributedSamplerAdapter a(ds);
  CHECK(a.size() == 4);
  for (int64_t ep : {0, 5}) {
    DistributedSampler ref(10, 3, 1);
    ref.set_epoch(ep);
    CHECK(a.indices(ep) == ref.indices());
  }
}

TEST_CASE("DataLoader: batches hold the sampler's samples, collated to (B, C, H, W) u8 and (B) i64") {
  auto data = std::make_shared<CountingDataset>(23);
  DataLoaderOptions o;
  o.batch_size = 5;
  o.workers = 0;
  DataLoader dl(data, std::make_shared<SequentialSampler>(23), nullptr, o);
  CHECK(dl.num_batches() == 5);
  const auto bs = all_batches(dl, 0);
  REQUIRE(bs.size() == 5);
  CHECK(bs[4].images.sizes() == Shape{3, 3, 8, 6});
  CHECK(bs[4].indices == std::vector<int64_t>{20, 21, 22});
  const Batch& b = bs[1];
  REQUIRE(b.images.sizes() == Shape{5, 3, 8, 6});
  CHECK(b.images.dtype() == DType::u8);
  CHECK(b.labels.dtype() == DType::i64);
  CHECK(b.labels.to_vector<int64_t>() == std::vector<int64_t>{5 % 3, 6 % 3, 7 % 3, 8 % 3, 9 % 3});
  const auto px = b.images.to_vector<uint8_t>();
  for (int64_t n = 0; n < 5; ++n) {
    const int64_t i = 5 + n;
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < 8; ++y) {
        for (int64_t x = 0; x < 6; ++x) {
          REQUIRE(px[static_cast<size_t>(((n * 3 + c) * 8 + y) * 6 + x)] == (i * 7 + y * 5 + x * 3 + c) % 256);
        }
      }
    }
  }
  o.drop_last = true;
  DataLoader dl2(data, std::make_shared<SequentialSampler>(23), nullptr, o);
  CHECK(dl2.num_batches() == 4);
  CHECK(all_batches(dl2, 0).size() == 4);
}

TEST_CASE("DataLoader: same seed gives the same batches; another epoch another order") {
  auto data = std::make_shared<CountingDataset>(37);
  DataLoaderOptions o;
  o.batch_size = 8;
  o.workers = 2;
  o.seed = 3;
  auto sampler = std::make_shared<RandomSampler>(37, 3);
  DataLoader a(data, sampler, augment(), o), b(data, sampler, augment(), o);
  const auto a0 = all_batches(a, 0), b0 = all_batches(b, 0), a1 = all_batches(a, 1);
  CHECK(same_batches(a0, b0));
  CHECK(a0[0].indices != a1[0].indices);
  // Every sample exactly once per epoch.
  std::multiset<int64_t> seen;
  for (const auto& x : a1) seen.insert(x.indices.begin(), x.indices.end());
  CHECK(seen.size() == 37);
  CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 37);
  // Another augmentation seed: the same order (the sampler's) but other pixels.
  o.seed = 4;
  DataLoader c(data, sampler, augment(), o);
  const auto c0 = all_batches(c, 0);
  CHECK(c0[0].indices == a0[0].indices);
  CHECK(c0[0].images.to_vector<uint8_t>() != a0[0].images.to_vector<uint8_t>());
}

TEST_CASE("DataLoader: batches do not depend on the worker count or on starting mid-epoch") {
  auto data = std::make_shared<CountingDataset>(41);
  auto sampler = std::make_shared<RandomSampler>(41, 8);
  DataLoaderOptions o;
  o.batch_size = 4;
  o.seed = 8;
  o.workers = 0;
  DataLoader ref(data, sampler, augment(), o);
  const auto r2 = all_batches(ref, 2);
  for (int w : {1, 3, 5}) {
    o.workers = w;
    o.prefetch_batches = w == 5 ? 1 : 0;
    DataLoader dl(data, sampler, augment(), o);
    CHECK(same_batches(all_batches(dl, 2), r2));
    // Resumed at batch 6 of the epoch: the tail of the same epoch.
    const auto tail = all_batches(dl, 2, 6);
    CHECK(same_batches(tail, std::vector<Batch>(r2.begin() + 6, r2.end())));
    CHECK(same_batches({dl.make_batch(2, 3)}, {r2[3]}));
  }
  // Stopping an epoch early and starting another is fine (workers are joined and restarted).
  o.workers = 2;
  DataLoader dl(data, sampler, augment(), o);
  dl.start_epoch(0);
  Batch b;
  REQUIRE(dl.next(&b));
  CHECK(same_batches(all_batches(dl, 2), r2));
}

TEST_CASE("DataLoader: the prefetch queue is bounded") {
  auto data = std::make_shared<CountingDataset>(200);
  DataLoaderOptions o;
  o.batch_size = 2;
  o.workers = 3;
  o.prefetch_batches = 4;
  DataLoader dl(data, std::make_shared<SequentialSampler>(200), nullptr, o);
  dl.start_epoch(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(data->loads.load() <= 4 * 2);  // at most prefetch_batches batches made ahead
  Batch b;
  REQUIRE(dl.next(&b));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(data->loads.load() <= 5 * 2);
  CHECK(data->loads.load() >= 4 * 2);  // and the workers did fill it
}

TEST_CASE("DataLoader: a worker's error reaches the consumer at that batch") {
  auto data = std::make_shared<CountingDataset>(30, /*bad=*/13);
  DataLoaderOptions o;
  o.batch_size = 4;
  for (int w : {0, 2}) {
    o.workers = w;
    DataLoader dl(data, std::make_shared<SequentialSampler>(30), nullptr, o);
    dl.start_epoch(0);
    Batch b;
    for (int i = 0; i < 3; ++i) REQUIRE(dl.next(&b));  // batches 0..2 hold samples 0..11
    const std::string e = error_of<std::exception>([&] { dl.next(&b); });
    CHECK(e.find("cannot decode 'sample_13.png'") != std::string::npos);
    CHECK(dl.next(&b));  // batch 4 is fine
  }
  auto odd = std::make_shared<CountingDataset>(8, -1, /*odd_size=*/true);
  o.workers = 0;
  DataLoader dl(odd, std::make_shared<SequentialSampler>(8), nullptr, o);
  dl.start_epoch(0);
  Batch b;
  const std::string e = error_of<std::exception>([&] { dl.next(&b); dl.next(&b); });
  CHECK(e.find("sample 5 is 7x6x3") != std::string::npos);
}

TEST_CASE("DataLoader: pinned batches hold the same data; to_device on the CPU is the identity") {
  auto data = std::make_shared<CountingDataset>(10);
  DataLoaderOptions o;
  o.batch_size = 4;
  o.workers = 1;
  DataLoader plain(data, std::make_shared<SequentialSampler>(10), nullptr, o);
  o.pin_memory = true;
  DataLoader pinned(data, std::make_shared<SequentialSampler>(10), nullptr, o);
  const auto p = all_batches(plain, 0), q = all_batches(pinned, 0);
  CHECK(same_batches(p, q));
  const Batch d = to_device(q[0], kCPU);
  CHECK(d.images.is_same(q[0].images));
}
