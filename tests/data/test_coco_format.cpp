// COCO instances json: the streaming reader keeps what it should and skips the rest, categories map
// to contiguous classes and back, every bad-label kind (Note [Bad labels]) with annotation ids in
// the messages, iscrowd, --strict, and the cache that spares parsing an unchanged json.
#include <doctest/doctest.h>

#include <filesystem>

#include "data/coco_format.h"
#include "data/label_check.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;
using rg::test::TempDir;
using rg::test::write_bytes;
using rg::test::write_jpeg;
namespace fs = std::filesystem;

namespace {
// Three images (1: 100x80, 2: 60x60, 5: missing file), categories 3, 1, 7 (unsorted), annotations
// of every kind; segmentation and info blocks the reader must skip.
const char* kCoco = R"({
  "info": {"description": "test", "nested": [[1, 2], {"a": [3]}]},
  "images": [
    {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80, "license": 3},
    {"id": 2, "file_name": "sub/b.jpg", "width": 60, "height": 60},
    {"id": 5, "file_name": "gone.jpg", "width": 30, "height": 30}
  ],
  "annotations": [
    {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0,
     "segmentation": [[10, 20, 40, 20, 40, 60]], "area": 1200.0},
    {"id": 11, "image_id": 1, "category_id": 7, "bbox": [0.5, 1.5, 2, 3], "iscrowd": 1,
     "segmentation": {"counts": [1, 2, 3], "size": [80, 100]}},
    {"id": 12, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]},
    {"id": 13, "image_id": 1, "category_id": 1, "bbox": [50, 50, 0, 10]},
    {"id": 14, "image_id": 1, "category_id": 1, "bbox": [90, 10, 30, 10]},
    {"id": 15, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40]},
    {"id": 16, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3]},
    {"id": 17, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]},
    {"id": 18, "image_id": 2, "category_id": 7, "bbox": ["1", 2, 3, 4]},
    {"id": 19, "image_id": 2, "category_id": 7, "bbox": [59, 0, 1.5, 10]}
  ],
  "categories": [{"id": 3, "name": "cat", "supercategory": "animal"}, {"id": 1, "name": "person"},
                 {"id": 7, "name": "train"}]
})";

void make_coco(const TempDir& d) {
  write_jpeg(d / "imgs/a.jpg", 100, 80);
  write_jpeg(d / "imgs/sub/b.jpg", 60, 60);
  write_bytes(d / "ann.json", kCoco);
}
}  // namespace

TEST_CASE("COCO: the streaming reader keeps images, annotations and categories only") {
  TempDir d;
  make_coco(d);
  const CocoFile f = read_coco_json(d / "ann.json");
  REQUIRE(f.images.size() == 3);
  CHECK(f.images[1].file_name == "sub/b.jpg");
  CHECK((f.images[0].id == 1 && f.images[0].width == 100 && f.images[0].height == 80));
  REQUIRE(f.annotations.size() == 10);
  CHECK(f.annotations[0].bbox_len == 4);
  CHECK(f.annotations[0].bbox[3] == 40.0);
  CHECK(f.annotations[1].iscrowd);
  CHECK(f.annotations[6].problem == "bbox has 3 numbers, not 4");
  CHECK(f.annotations[8].problem == "bbox holds a non-number");
  REQUIRE(f.categories.size() == 3);
  CHECK(f.categories[0].name == "cat");

  write_bytes(d / "bad.json", R"({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [}])");
  CHECK(contains(error_of([&] { read_coco_json(d / "bad.json"); }), "bad.json': JSON parse error at byte 62:"));
  write_bytes(d / "arr.json", "[1, 2]");
  CHECK(contains(error_of([&] { read_coco_json(d / "arr.json"); }), "the top level is an array"));
  write_bytes(d / "noname.json", R"({"images": [{"id": 1}]})");
  CHECK(contains(error_of([&] { read_coco_json(d / "noname.json"); }), "images[0] needs an id and a file_name"));
}

TEST_CASE("COCO: categories become contiguous classes; bad labels are counted, dropped and named") {
  TempDir d;
  make_coco(d);
  LabelCheckOptions o;
  o.use_cache = false;
  const DetectionDataset ds = load_coco(d / "ann.json", d / "imgs", o);
  CHECK(ds.names() == std::vector<std::string>{"person", "cat", "train"});  // by id: 1, 3, 7
  CHECK(ds.category_ids() == std::vector<int64_t>{1, 3, 7});
  const LabelReport& r = ds.report();
  CHECK(r.images == 2);
  CHECK(r.skipped == 1);  // iscrowd
  CHECK(r.clipped == 1);  // id 19: x2 = 60.5 of 60
  CHECK(r.dropped[int(LabelIssue::ClassOutOfRange)] == 1);
  CHECK(r.dropped[int(LabelIssue::EmptyBox)] == 1);
  CHECK(r.dropped[int(LabelIssue::Outside)] == 1);
  CHECK(r.dropped[int(LabelIssue::Duplicate)] == 1);
  CHECK(r.dropped[int(LabelIssue::Malformed)] == 3);  // 16, 18 and the orphan 17
  CHECK(r.dropped[int(LabelIssue::BadImage)] == 1);   // gone.jpg
  REQUIRE(ds.size() == 2);
  CHECK(ds.record(0).boxes == Boxes{Box{10, 20, 40, 60, 1}});
  REQUIRE(ds.record(1).boxes.size() == 1);
  CHECK(ds.record(1).boxes[0] == Box{59, 0, 60, 10, 2});
  const std::string js = d / "ann.json";
  auto has = [&](const std::string& text) {
    for (const auto& p : r.problems) {
      if (p.file == js && contains(p.message, text)) return true;
    }
    return false;
  };
  CHECK(has("annotation id 12: category_id 5 is not in categories"));
  CHECK(has("annotation id 13: box of zero or negative size"));
  CHECK(has("annotation id 14: box outside the image [90, 10, 120, 20] in a 100x80 image"));
  CHECK(has("annotation id 15: duplicate of an earlier box"));
  CHECK(has("annotation id 16: bbox has 3 numbers, not 4"));
  CHECK(has("annotation id 17: image_id 99 is not in images"));
  CHECK(has("annotation id 18: bbox holds a non-number"));
  CHECK(contains(r.summary(), "2 images, 2 boxes, 0 backgrounds, 1 boxes clipped to the image, 1 crowd/difficult boxes left out"));

  o.keep_difficult = true;
  const auto crowd = load_coco(d / "ann.json", d / "imgs", o);
  CHECK(crowd.record(0).boxes.size() == 2);
  CHECK(crowd.record(0).boxes[1] == Box{0.5f, 1.5f, 2.5f, 4.5f, 2});

  o.strict = true;
  CHECK(contains(error_of([&] { load_coco(d / "ann.json", d / "imgs", o); }),
                 js + ": annotation id 12: category_id 5 is not in categories"));
}

TEST_CASE("COCO: an image whose size disagrees with the json is dropped") {
  TempDir d;
  write_jpeg(d / "imgs/a.jpg", 50, 40);
  write_bytes(d / "ann.json", R"({"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 50}],
    "annotations": [], "categories": [{"id": 1, "name": "x"}]})");
  LabelCheckOptions o;
  o.use_cache = false;
  const auto ds = load_coco(d / "ann.json", d / "imgs", o);
  CHECK(ds.size() == 0);
  CHECK(contains(ds.report().problems.at(0).message, "image is 50x40 but '"));
}

TEST_CASE("COCO: an unchanged json is not parsed again (the cache holds classes and boxes)") {
  TempDir d;
  make_coco(d);
  const std::string js = d / "ann.json";
  const auto first = load_coco(js, d / "imgs");
  CHECK(!first.report().from_cache);
  REQUIRE(fs::exists(js + ".cache"));
  // Garbage of the same size and mtime: a parse would fail, so success proves it was not parsed.
  const auto st = file_stamp(js);
  write_bytes(js, std::string(static_cast<size_t>(st.size), '#'));
  rg::test::set_mtime_ns(js, st.mtime_ns);
  const auto second = load_coco(js, d / "imgs");
  CHECK(second.report().from_cache);
  CHECK(second.report().rechecked == 0);
  CHECK(second.names() == first.names());
  CHECK(second.category_ids() == first.category_ids());
  CHECK(second.report().total_dropped() == first.report().total_dropped());
  REQUIRE(second.size() == first.size());
  CHECK(second.record(0).boxes == first.record(0).boxes);
  // A new mtime: parsed again (and the garbage is an error naming the file).
  rg::test::set_mtime_ns(js, st.mtime_ns + 1);
  CHECK(contains(error_of([&] { load_coco(js, d / "imgs"); }), "ann.json': JSON parse error at byte 0"));
}
