// Corrupt samples in the loaders (Note [Corrupt samples] in data/dataloader.h): a truncated JPEG
// planted in a generated ImageFolder and in a generated YOLO set is replaced by another sample of
// the rank's shard, the same one whatever the worker count or the batch an epoch starts at, and
// recorded naming the file; strict makes it an error naming the file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/dataloader.h"
#include "data/detection_loader.h"
#include "data/image_folder.h"
#include "data/synthetic.h"
#include "data/synthetic_detect.h"
#include "data/transforms.h"
#include "data/yolo_format.h"
#include "launch_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using rg::test::contains;

namespace {
struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_corrupt_") {}
};

// Keeps the first half of the file: the JPEG header survives, the decode fails ("truncated").
void truncate_half(const std::string& path) {
  const std::string bytes = rg::test::read_file(path);
  REQUIRE(bytes.size() > 200);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
}

bool same_bytes(const rg::Tensor& a, const rg::Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

// Every batch of epoch `epoch` from batch `start` on.
std::vector<rg::data::Batch> epoch_batches(rg::data::DataLoader& l, int64_t epoch, int64_t start = 0) {
  l.start_epoch(epoch, start);
  std::vector<rg::data::Batch> out;
  rg::data::Batch b;
  while (l.next(&b)) out.push_back(b);
  return out;
}
}  // namespace

TEST_CASE("ImageFolder: a truncated JPEG is replaced by another sample of the shard, deterministically; strict names it") {
  TempDir d;
  rg::data::ClassifyDataOptions o;
  o.out = d / "shapes";
  o.classes = 2;
  o.train_per_class = 6;
  o.val_per_class = 1;
  o.size = 16;
  o.format = "jpg";
  rg::data::make_classify_dataset(o, false);
  auto ds = std::make_shared<rg::data::ImageFolder>(d / "shapes/train");
  const int64_t bad = 7;
  const std::string bad_path = ds->path(bad);
  truncate_half(bad_path);
  CHECK(contains(rg::test::error_of([&] { ds->load(bad); }), bad_path));

  // Rank 1 of 2: 6 of the 12 images; batches of 2, with a flip augmentation keyed by (seed, epoch, index).
  rg::data::DistributedSampler::Options so;
  so.seed = 3;
  auto shard = std::make_shared<rg::data::DistributedSamplerAdapter>(rg::data::DistributedSampler(12, 2, 1, so));
  rg::data::ClassifyTransform tf;
  tf.size = 16;
  tf.train = true;
  tf.crop_padding = 2;
  rg::data::DataLoaderOptions lo;
  lo.batch_size = 2;
  lo.seed = 3;
  int64_t epoch = -1;  // an epoch whose shard holds the bad image
  for (int64_t e = 0; e < 20 && epoch < 0; ++e) {
    const auto idx = shard->indices(e);
    if (std::find(idx.begin(), idx.end(), bad) != idx.end()) epoch = e;
  }
  REQUIRE(epoch >= 0);
  const std::vector<int64_t> order = shard->indices(epoch);
  lo.workers = 0;
  rg::data::DataLoader serial(ds, shard, tf, lo);
  const auto a = epoch_batches(serial, epoch);
  std::vector<rg::data::CorruptSample> seen = serial.take_corrupt();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].index == bad);
  CHECK(seen[0].path == bad_path);
  CHECK(contains(seen[0].error, "cannot decode '" + bad_path + "'"));
  CHECK(seen[0].replacement != bad);
  CHECK(std::find(order.begin(), order.end(), seen[0].replacement) != order.end());  // from the same shard
  CHECK(serial.take_corrupt().empty());
  // The replaced slot holds exactly the replacement sample (its image and label, at that slot's batch).
  const auto pos = static_cast<int64_t>(std::find(order.begin(), order.end(), bad) - order.begin());
  const rg::data::Batch& hit = a[static_cast<size_t>(pos / 2)];
  CHECK(hit.labels.to_vector<int64_t>()[static_cast<size_t>(pos % 2)] == ds->label(seen[0].replacement));

  // Two workers, and the epoch started at the bad image's batch: the same bytes.
  lo.workers = 2;
  rg::data::DataLoader parallel(ds, shard, tf, lo);
  const auto b = epoch_batches(parallel, epoch);
  const auto c = epoch_batches(parallel, epoch, pos / 2);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(same_bytes(a[i].images, b[i].images));
    CHECK(same_bytes(a[i].labels, b[i].labels));
  }
  CHECK(same_bytes(c.front().images, hit.images));
  CHECK(parallel.take_corrupt().size() == 2);  // once per pass over the bad image

  lo.strict_data = true;
  rg::data::DataLoader strict(ds, shard, tf, lo);
  CHECK(contains(rg::test::error_of([&] { epoch_batches(strict, epoch); }), bad_path));
}

TEST_CASE("detection loader: a truncated JPEG (its own sample, or a mosaic tile) is replaced; strict names it") {
  TempDir d;
  rg::data::DetectDataOptions o;
  o.out = d / "det";
  o.classes = 2;
  o.train_images = 10;
  o.val_images = 1;
  o.min_size = 64;
  o.max_size = 96;
  rg::data::make_detect_dataset(o, false);
  const rg::data::DataYaml y = rg::data::read_data_yaml(d / "det/data.yaml");
  auto ds = std::make_shared<rg::data::DetectionDataset>(rg::data::load_yolo(y, "train"));
  REQUIRE(ds->size() == 10);
  const int64_t bad = 4;
  const std::string bad_path = ds->record(bad).image;
  truncate_half(bad_path);
  auto sampler = std::make_shared<rg::data::SequentialSampler>(ds->size());
  rg::data::DataLoaderOptions lo;
  lo.batch_size = 4;
  lo.seed = 1;
  for (const bool augment : {false, true}) {  // letterbox only; mosaic (tiles drawn from the whole set)
    CAPTURE(augment);
    rg::data::DetectionPipeline p;
    p.img_size = 64;
    p.augment = augment;
    lo.workers = 0;
    rg::data::DataLoader serial(sampler, rg::data::detection_batch_fn(ds, p), lo);
    const auto a = epoch_batches(serial, 0);
    const auto seen = serial.take_corrupt();
    REQUIRE(!seen.empty());
    for (const auto& s : seen) {
      CHECK(s.path == bad_path);
      CHECK(contains(s.error, bad_path));
    }
    if (!augment) {
      REQUIRE(seen.size() == 1);
      CHECK(seen[0].index == bad);
      CHECK(a[1].info[0].index == seen[0].replacement);  // batch 1 slot 0 was sample 4
    }
    lo.workers = 2;
    rg::data::DataLoader parallel(sampler, rg::data::detection_batch_fn(ds, p), lo);
    const auto b = epoch_batches(parallel, 0);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(same_bytes(a[i].images, b[i].images));
      CHECK(same_bytes(a[i].targets, b[i].targets));
    }
  }
  rg::data::DetectionPipeline p;
  p.img_size = 64;
  lo.strict_data = true;
  rg::data::DataLoader strict(sampler, rg::data::detection_batch_fn(ds, p), lo);
  CHECK(contains(rg::test::error_of([&] { epoch_batches(strict, 0); }), bad_path));
}
