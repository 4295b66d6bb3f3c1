// The synthetic shapes dataset: deterministic rendering, the ImageFolder layout it writes, the
// dataset.json record, idempotent re-runs (existing files kept, missing ones filled in), and the
// refusal to mix options in one directory.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/json.h"
#include "data/image_folder.h"
#include "data/synthetic.h"
#include "data_test_util.h"

namespace fs = std::filesystem;
using namespace rg::data;
using rg::test::error_of;

TEST_CASE("synthetic: rendering is deterministic and depends on every key") {
  const Image a = render_shape_image(2, 32, 7, 1, 5);
  CHECK(a.height == 32);
  CHECK(a.width == 32);
  CHECK(a.channels == 3);
  CHECK(a == render_shape_image(2, 32, 7, 1, 5));
  CHECK(!(a == render_shape_image(2, 32, 7, 1, 6)));  // index
  CHECK(!(a == render_shape_image(2, 32, 7, 2, 5)));  // stream
  CHECK(!(a == render_shape_image(2, 32, 8, 1, 5)));  // seed
  // Same nuisance draws, another shape: the images differ, but only where a shape is drawn
  // (the background is the same draw) -- less than half the pixels.
  const Image b = render_shape_image(0, 32, 7, 1, 5);
  int64_t diff = 0;
  for (int64_t i = 0; i < 32 * 32; ++i) {
    bool d = false;
    for (int k = 0; k < 3; ++k) d |= a.pixels[static_cast<size_t>(3 * i + k)] != b.pixels[static_cast<size_t>(3 * i + k)];
    diff += d;
  }
  CHECK(diff > 20);
  CHECK(diff < 900);  // two shapes of radius <= 0.45 * 32 cover fewer pixels than that
  CHECK(shape_class_names().size() == 8);
  CHECK_THROWS(render_shape_image(8, 32, 0, 0, 0));
}

TEST_CASE("synthetic: make_classify_dataset writes an ImageFolder tree, idempotently") {
  rg::test::TempDir d;
  ClassifyDataOptions o;
  o.out = d / "shapes";
  o.classes = 3;
  o.train_per_class = 4;
  o.val_per_class = 2;
  o.size = 16;
  const MakeDataResult r = make_classify_dataset(o, false);
  CHECK(r.written == 18);
  CHECK(r.kept == 0);
  CHECK(dataset_exists(o.out));
  ImageFolder train(o.out + "/train"), val(o.out + "/val");
  CHECK(train.classes() == std::vector<std::string>{"circle", "square", "triangle"});
  CHECK(train.class_counts() == std::vector<int64_t>{4, 4, 4});
  CHECK(val.class_counts() == std::vector<int64_t>{2, 2, 2});
  CHECK(train.path(0) == o.out + "/train/circle/000000.png");
  // The file is the rendering of (kind, stream = split * 64 + kind, index).
  CHECK(train.load(5) == render_shape_image(1, 16, 0, 1, 1));  // square #1
  CHECK(val.load(4) == render_shape_image(2, 16, 0, 66, 0));   // val triangle #0
  const rg::Json j = rg::Json::parse(rg::test::read_bytes(o.out + "/dataset.json"));
  CHECK(j["kind"].as_string() == "classify");
  CHECK(j["train_per_class"].as_int() == 4);
  CHECK(j["classes"].size() == 3);

  // Re-run: nothing rewritten (content and mtime unchanged).
  const auto t0 = fs::last_write_time(train.path(3));
  const MakeDataResult r2 = make_classify_dataset(o, false);
  CHECK(r2.written == 0);
  CHECK(r2.kept == 18);
  CHECK(fs::last_write_time(train.path(3)) == t0);
  // A missing file (an interrupted run) is filled in, identically.
  const std::string victim = train.path(6);
  const std::string before = rg::test::read_bytes(victim);
  fs::remove(victim);
  const MakeDataResult r3 = make_classify_dataset(o, false);
  CHECK(r3.written == 1);
  CHECK(rg::test::read_bytes(victim) == before);
  // No temporary files left behind.
  for (const auto& e : fs::recursive_directory_iterator(o.out)) {
    CHECK(e.path().string().find(".tmp-") == std::string::npos);
  }
  // Other options in the same directory: refused, naming the directory.
  ClassifyDataOptions other = o;
  other.size = 24;
  const std::string e = error_of<std::exception>([&] { make_classify_dataset(other, false); });
  CHECK(e.find("'" + o.out + "' holds a dataset made with other options") != std::string::npos);
}

TEST_CASE("synthetic: JPEG format and option checks") {
  rg::test::TempDir d;
  ClassifyDataOptions o;
  o.out = d / "j";
  o.classes = 2;
  o.train_per_class = 1;
  o.val_per_class = 1;
  o.size = 24;
  o.format = "jpg";
  CHECK(make_classify_dataset(o, false).written == 4);
  CHECK(fs::exists(o.out + "/train/square/000000.jpg"));
  CHECK(read_image(o.out + "/val/circle/000000.jpg").width == 24);
  ClassifyDataOptions bad = o;
  bad.classes = 9;
  CHECK(error_of<std::exception>([&] { make_classify_dataset(bad, false); }).find("--classes") != std::string::npos);
  bad = o;
  bad.format = "gif";
  CHECK(error_of<std::exception>([&] { make_classify_dataset(bad, false); }).find("--format") != std::string::npos);
}
