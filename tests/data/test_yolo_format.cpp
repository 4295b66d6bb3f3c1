// YOLO format: data.yaml fields and errors, image listing and label paths, every bad-label kind of
// Note [Bad labels] (what is counted, dropped, clipped, the summary and the --strict message), and
// the label cache of Note [Label cache].
#include <doctest/doctest.h>

#include <filesystem>

#include "data/label_check.h"
#include "data/yolo_format.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;
using rg::test::TempDir;
using rg::test::write_bytes;
using rg::test::write_jpeg;
namespace fs = std::filesystem;

namespace {
}  // namespace

TEST_CASE("data.yaml: path, train/val/test as folder, list and .txt; names as list or map") {
  TempDir d;
  write_bytes(d / "ds/data.yaml",
              "path: .\ntrain: images/train\nval: [images/val, images/val2]\ntest: test.txt\n"
              "nc: 2\nnames: {1: dog, 0: cat}\ndownload: ignored\n");
  const DataYaml y = read_data_yaml(d / "ds/data.yaml");
  const std::string root = fs::path(d / "ds").lexically_normal().string();
  CHECK(y.root == root);
  REQUIRE(y.train.size() == 1);
  CHECK(y.train[0] == root + "/images/train");
  REQUIRE(y.val.size() == 2);
  CHECK(y.val[1] == root + "/images/val2");
  CHECK(y.test[0] == root + "/test.txt");
  CHECK(y.names == std::vector<std::string>{"cat", "dog"});
  CHECK(y.nc == 2);

  write_bytes(d / "b.yaml", "path: /data/x\ntrain: /abs/train\nnames: [a, b, c]\n");
  const DataYaml b = read_data_yaml(d / "b.yaml");
  CHECK(b.root == "/data/x");
  CHECK(b.train[0] == "/abs/train");
  CHECK(b.nc == 3);
  CHECK(b.val.empty());
}

TEST_CASE("data.yaml: errors name the file, the line and the key") {
  TempDir d;
  write_bytes(d / "a.yaml", "train: t\nval: v\nnc: 3\nnames: [a, b]\n");
  CHECK(contains(error_of([&] { read_data_yaml(d / "a.yaml"); }), "a.yaml:3: 'nc' is 3 but 'names' has 2 entries"));
  write_bytes(d / "b.yaml", "train: t\nnames: {0: a, 2: c}\n");
  CHECK(contains(error_of([&] { read_data_yaml(d / "b.yaml"); }), "b.yaml:2: 'names' keys must be 0..1 without gaps; class 1 is missing"));
  write_bytes(d / "c.yaml", "train: t\nnc: many\n");
  CHECK(contains(error_of([&] { read_data_yaml(d / "c.yaml"); }), "c.yaml:2: 'nc' must be an integer, got 'many'"));
  write_bytes(d / "d.yaml", "train: t\n");
  CHECK(contains(error_of([&] { read_data_yaml(d / "d.yaml"); }), "needs 'names' (or 'nc')"));
  write_bytes(d / "e.yaml", "train: [t\nnames: [a]\n");
  CHECK(contains(error_of([&] { read_data_yaml(d / "e.yaml"); }), "e.yaml': line "));
  CHECK(contains(error_of([&] { read_data_yaml(d / "missing.yaml"); }), "cannot read '"));
}

TEST_CASE("YOLO: label paths and image listing follow ultralytics") {
  CHECK(image_to_label_path("/d/images/train/a.b.jpg") == "/d/labels/train/a.b.txt");
  CHECK(image_to_label_path("/images/x/images/y/p.png") == "/images/x/labels/y/p.txt");  // the last /images/
  CHECK(image_to_label_path("/d/pics/p.jpeg") == "/d/pics/p.txt");
  TempDir d;
  write_jpeg(d / "images/train/b.jpg", 16, 16);
  write_jpeg(d / "images/train/sub/a.JPG", 16, 16);
  write_bytes(d / "images/train/notes.txt", "x");
  write_bytes(d / "list.txt", "./images/train/b.jpg\n\n  images/other/c.png  \n");
  const auto listed = list_yolo_images({d / "images/train", d / "list.txt"});
  REQUIRE(listed.size() == 3);
  CHECK(listed[0] == d / "images/other/c.png");
  CHECK(listed[1] == d / "images/train/b.jpg");  // listed twice, kept once
  CHECK(listed[2] == d / "images/train/sub/a.JPG");
  CHECK(contains(error_of([&] { list_yolo_images({d / "nope"}); }), "does not exist"));
}

TEST_CASE("YOLO: every bad-label kind is counted, dropped or clipped, and reported") {
  TempDir d;
  write_jpeg(d / "images/train/a.jpg", 100, 50);
  write_bytes(d / "labels/train/a.txt",
              "0 0.5 0.5 0.2 0.2\n"          // 1 ok: (40, 20, 60, 30)
              "7 0.5 0.5 0.1 0.1\n"          // 2 class out of range
              "1 0.5 0.5 0 0.1\n"            // 3 empty box
              "1 0.9 0.5 0.4 0.2\n"          // 4 outside: x2 = 110, 10% over
              "1 0.995 0.5 0.02 0.2\n"       // 5 clipped: x2 = 100.5
              "0 0.5 0.5 0.2 0.2\n"          // 6 duplicate of line 1
              "2 abc 0.5 0.1 0.1\n"          // 7 malformed number
              "2 0.5 0.5 0.1\n"              // 8 malformed: 4 fields
              "\n"                           // 9 blank: ignored
              "1.5 0.5 0.5 0.1 0.1\n"        // 10 malformed class
              "2 0.1 0.1 0.3 0.1 0.2 0.4\n"  // 11 polygon -> (10, 5, 30, 20)
              "-1 0.5 0.5 0.1 0.1\n");       // 12 class out of range
  write_jpeg(d / "images/train/b.jpg", 32, 32);  // no label file: background
  write_jpeg(d / "images/train/c.jpg", 32, 32);
  write_bytes(d / "labels/train/c.txt", "");  // empty: background
  write_bytes(d / "images/train/d.jpg", "not an image at all");
  write_bytes(d / "labels/train/d.txt", "0 0.5 0.5 0.1 0.1\n");
  const std::string full = encode_jpeg(rg::test::pattern_image(40, 40, 3), 90);
  write_bytes(d / "images/train/e.jpg", full.substr(0, full.size() / 2));  // truncated
  write_jpeg(d / "images/train/f.jpg", 8, 20);                              // under 10 pixels
  write_bytes(d / "list.txt", "images/train/a.jpg\nimages/train/zz.jpg\n");  // zz: missing

  LabelCheckOptions o;
  o.use_cache = false;
  const DetectionDataset ds = load_yolo_sources({d / "images/train"}, {"a", "b", "c"}, o);
  const LabelReport& r = ds.report();
  CHECK(r.images == 3);  // a, b, c; d, e, f dropped
  CHECK(r.backgrounds == 2);
  CHECK(r.boxes == 3);
  CHECK(r.clipped == 1);
  CHECK(r.dropped[int(LabelIssue::ClassOutOfRange)] == 2);
  CHECK(r.dropped[int(LabelIssue::EmptyBox)] == 1);
  CHECK(r.dropped[int(LabelIssue::Outside)] == 1);
  CHECK(r.dropped[int(LabelIssue::Duplicate)] == 1);
  CHECK(r.dropped[int(LabelIssue::Malformed)] == 3);
  CHECK(r.dropped[int(LabelIssue::BadImage)] == 3);
  REQUIRE(ds.size() == 3);
  const DetectionRecord& a = ds.record(0);
  CHECK(a.image == d / "images/train/a.jpg");
  CHECK((a.width == 100 && a.height == 50));
  REQUIRE(a.boxes.size() == 3);
  CHECK(a.boxes[0] == Box{40, 20, 60, 30, 0});
  CHECK(a.boxes[1].x1 == doctest::Approx(98.5));
  CHECK(a.boxes[1].x2 == 100.0f);  // clipped
  CHECK(a.boxes[2] == Box{10, 5, 30, 20, 2});
  // the messages name file and line
  const std::string la = d / "labels/train/a.txt";
  REQUIRE(r.problems.size() >= 8);
  CHECK(r.problems[0].where() == la + ":2");
  CHECK(r.problems[0].message == "class 7 out of range [0, 3)");
  CHECK(r.problems[1].where() == la + ":3");
  CHECK(contains(r.problems[1].message, "box of zero or negative size"));
  CHECK(r.problems[2].where() == la + ":4");
  CHECK(contains(r.problems[2].message, "box outside the image [70, 20, 110, 30] in a 100x50 image"));
  CHECK(r.problems[3].where() == la + ":6");
  CHECK(r.problems[4].message == "'abc' is not a finite number");
  CHECK(r.problems[5].message == "expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), got 4 fields");
  CHECK(r.problems[6].where() == la + ":10");
  CHECK(r.problems[7].where() == la + ":12");
  CHECK(r.problems[8].file == d / "images/train/d.jpg");
  CHECK(contains(r.problems[8].message, "unreadable image: not a JPEG or PNG file"));
  CHECK(contains(r.problems[9].message, "truncated"));
  CHECK(contains(r.problems[10].message, "image size 8x20 is under 10 pixels"));
  const std::string s = r.summary();
  CHECK(contains(s, "3 images, 3 boxes, 2 backgrounds, 1 boxes clipped to the image"));
  CHECK(contains(s, "11 bad labels dropped (2 class out of range, 1 outside image, 1 empty box, 3 malformed, 1 duplicate, 3 bad image)"));
  CHECK(contains(s, "in " + la + ":2, " + la + ":3, " + la + ":4 ..."));

  // a missing image from a list file
  const DetectionDataset listed = load_yolo_sources({d / "list.txt"}, {"a", "b", "c"}, o);
  CHECK(listed.size() == 1);
  CHECK(contains(listed.report().problems.back().message, "missing image"));

  // --strict: the first issue is an error naming file and line
  o.strict = true;
  CHECK(contains(error_of([&] { load_yolo_sources({d / "images/train"}, {"a", "b", "c"}, o); }),
                 la + ":2: class 7 out of range [0, 3) (class out of range; 11 bad label(s)"));
}

TEST_CASE("YOLO: the clip tolerance is a fraction of the image side") {
  TempDir d;
  write_jpeg(d / "images/a.jpg", 200, 100);
  // y overhang 1.5 px of 100 = 1.5%: clipped; x overhang 5 px of 200 = 2.5%: outside
  write_bytes(d / "labels/a.txt", "0 0.5 0.1 0.2 0.23\n0 0.975 0.5 0.1 0.2\n");
  LabelCheckOptions o;
  o.use_cache = false;
  const auto ds = load_yolo_sources({d / "images"}, {"x"}, o);
  CHECK(ds.report().clipped == 1);
  CHECK(ds.report().dropped[int(LabelIssue::Outside)] == 1);
  REQUIRE(ds.record(0).boxes.size() == 1);
  CHECK(ds.record(0).boxes[0].y1 == 0.0f);
  o.clip_tolerance = 0.03;
  CHECK(load_yolo_sources({d / "images"}, {"x"}, o).report().clipped == 2);
}

TEST_CASE("YOLO: the label cache is keyed by sizes and mtimes and only changed files are read again") {
  TempDir d;
  for (const char* n : {"a", "b", "c"}) {
    write_jpeg(d / (std::string("images/train/") + n + ".jpg"), 40, 40);
    write_bytes(d / (std::string("labels/train/") + n + ".txt"), "0 0.5 0.5 0.5 0.5\n");
  }
  const std::string cache = d / "labels/train.cache";
  const auto first = load_yolo_sources({d / "images/train"}, {"x", "y"});
  CHECK(!first.report().from_cache);
  CHECK(first.report().rechecked == 3);
  REQUIRE(fs::exists(cache));

  const auto second = load_yolo_sources({d / "images/train"}, {"x", "y"});
  CHECK(second.report().from_cache);
  CHECK(second.report().rechecked == 0);
  CHECK(contains(second.report().summary(), "(label cache)"));

  // Same size and mtime but other content: the cache is trusted, so the label was not read again.
  const std::string lb = d / "labels/train/b.txt";
  const int64_t t0 = file_stamp(lb).mtime_ns;
  write_bytes(lb, "1 0.5 0.5 0.5 0.5\n");
  rg::test::set_mtime_ns(lb, t0);
  const auto third = load_yolo_sources({d / "images/train"}, {"x", "y"});
  CHECK(third.report().rechecked == 0);
  CHECK(third.record(1).boxes[0].cls == 0);
  // A new mtime: only that file is checked again, and its new class is seen.
  rg::test::set_mtime_ns(lb, t0 + 1000);
  const auto fourth = load_yolo_sources({d / "images/train"}, {"x", "y"});
  CHECK(fourth.report().rechecked == 1);
  CHECK(fourth.record(1).boxes[0].cls == 1);
  CHECK(contains(fourth.report().summary(), "(label cache, 1 files checked again)"));
  // Other class names: everything again (the class range changes what is valid).
  CHECK(load_yolo_sources({d / "images/train"}, {"x"}).report().rechecked == 3);
  // A corrupt cache is rebuilt, never trusted.
  std::string bytes = rg::test::read_bytes(cache);
  bytes[bytes.size() / 2] ^= 0x5A;
  write_bytes(cache, bytes);
  const auto fifth = load_yolo_sources({d / "images/train"}, {"x"});
  CHECK(!fifth.report().from_cache);
  CHECK(fifth.report().rechecked == 3);
  // A cache that cannot be written is reported, and loading goes on.
  fs::remove(cache);
  fs::create_directories(fs::path(cache) / "blocker");
  const auto sixth = load_yolo_sources({d / "images/train"}, {"x"});
  CHECK(sixth.size() == 3);
  CHECK(contains(sixth.report().summary(), "label cache not written"));
}

TEST_CASE("YOLO: load_yolo reads a split of data.yaml; the cache follows the list file") {
  TempDir d;
  write_jpeg(d / "ds/images/val/a.jpg", 20, 20);
  write_bytes(d / "ds/labels/val/a.txt", "1 0.5 0.5 0.5 0.5\n");
  write_bytes(d / "ds/val.txt", "./images/val/a.jpg\n");
  write_bytes(d / "ds/data.yaml", "train: images/val\nval: val.txt\nnames: [p, q]\n");
  const DataYaml y = read_data_yaml(d / "ds/data.yaml");
  const auto ds = load_yolo(y, "val");
  CHECK(ds.names() == std::vector<std::string>{"p", "q"});
  REQUIRE(ds.size() == 1);
  CHECK(ds.record(0).boxes[0] == Box{5, 5, 15, 15, 1});
  CHECK(fs::exists(d / "ds/val.cache"));
  CHECK(contains(error_of([&] { load_yolo(y, "test"); }), "has no 'test' split"));
}
