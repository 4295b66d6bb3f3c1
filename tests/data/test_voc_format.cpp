// Pascal VOC: 1-based boxes to edge coordinates, difficult objects, class lists given or read from
// the data, image sets, bad labels with xml line numbers, broken xml, and the cache.
#include <doctest/doctest.h>

#include <filesystem>

#include "data/label_check.h"
#include "data/voc_format.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;
using rg::test::TempDir;
using rg::test::write_bytes;
using rg::test::write_jpeg;
namespace fs = std::filesystem;

namespace {
std::string object(const std::string& name, int xmin, int ymin, int xmax, int ymax, int difficult = 0) {
  return "  <object>\n    <name>" + name + "</name>\n    <difficult>" + std::to_string(difficult) +
         "</difficult>\n    <bndbox>\n      <xmin>" + std::to_string(xmin) + "</xmin>\n      <ymin>" +
         std::to_string(ymin) + "</ymin>\n      <xmax>" + std::to_string(xmax) + "</xmax>\n      <ymax>" +
         std::to_string(ymax) + "</ymax>\n    </bndbox>\n  </object>\n";
}

// VOC2007-like tree: 000001 (two objects, one difficult, a person part), 000002 (every bad kind),
// 000003 (broken xml), 000004 (image missing).
void make_voc(const TempDir& d) {
  write_jpeg(d / "voc/JPEGImages/000001.jpg", 64, 48);
  write_jpeg(d / "voc/JPEGImages/000002.jpg", 50, 50);
  write_jpeg(d / "voc/JPEGImages/000003.jpg", 50, 50);
  write_bytes(d / "voc/Annotations/000001.xml",
              "<annotation>\n  <filename>000001.jpg</filename>\n  <size><width>64</width><height>48</height></size>\n" +
                  object("dog", 1, 1, 10, 20) + object("person", 5, 5, 30, 30, 1) +
                  "  <object><name>person</name><part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
                  "<xmax>4</xmax><ymax>4</ymax></bndbox></part>\n"
                  "    <bndbox><xmin>20</xmin><ymin>10</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object>\n"
                  "</annotation>\n");
  write_bytes(d / "voc/Annotations/000002.xml",
              "<annotation>\n  <filename>000002.jpg</filename>\n" + object("zebra", 1, 1, 5, 5) +  // line 3
                  object("dog", 10, 10, 8, 20) +                                                   // line 13: empty
                  object("dog", 40, 40, 80, 45) +                                                  // line 23: outside
                  "  <object>\n    <name>dog</name>\n    <bndbox><xmin>1</xmin><ymin>x</ymin><xmax>3</xmax>"
                  "<ymax>4</ymax></bndbox>\n  </object>\n" +                                       // line 33
                  object("dog", 2, 2, 9, 9) + object("dog", 2, 2, 9, 9) +                        // 37, 47: duplicate
                  "</annotation>\n");
  write_bytes(d / "voc/Annotations/000003.xml", "<annotation>\n  <filename>000003.jpg</filename>\n  <object>\n</annotation>\n");
  write_bytes(d / "voc/Annotations/000004.xml", "<annotation><filename>missing.jpg</filename>" + object("dog", 1, 1, 2, 2) + "</annotation>");
  write_bytes(d / "voc/ImageSets/Main/train.txt", "000001\n000004\n");
}
}  // namespace

TEST_CASE("VOC: boxes, difficult objects, classes read from the data, and an image set") {
  TempDir d;
  make_voc(d);
  LabelCheckOptions o;
  o.use_cache = false;
  const DetectionDataset ds = load_voc(d / "voc", "train", {}, o);
  CHECK(ds.names() == std::vector<std::string>{"dog", "person"});  // sorted names of the set
  REQUIRE(ds.size() == 1);  // 000004's image is missing
  const DetectionRecord& r = ds.record(0);
  CHECK(r.image == d / "voc/JPEGImages/000001.jpg");
  REQUIRE(r.boxes.size() == 2);
  CHECK(r.boxes[0] == Box{0, 0, 10, 20, 0});    // xmin 1 -> x1 0, xmax 10 -> x2 10
  CHECK(r.boxes[1] == Box{19, 9, 64, 48, 1});   // the person's part box is ignored
  CHECK(ds.report().skipped == 1);              // the difficult person
  CHECK(ds.report().dropped[int(LabelIssue::BadImage)] == 1);
  CHECK(contains(ds.report().problems[0].message, "missing image"));

  o.keep_difficult = true;
  const auto all = load_voc(d / "voc", "train", voc_classes(), o);
  CHECK(all.names().size() == 20);
  REQUIRE(all.record(0).boxes.size() == 3);
  CHECK(all.record(0).boxes[0].cls == 11);  // dog in VOC's class order
  CHECK(all.record(0).boxes[1].cls == 14);  // person
}

TEST_CASE("VOC: bad objects name the xml line; broken xml drops its image") {
  TempDir d;
  make_voc(d);
  LabelCheckOptions o;
  o.use_cache = false;
  const DetectionDataset ds = load_voc(d / "voc", "", {"dog", "person"}, o);
  const LabelReport& r = ds.report();
  const std::string x2 = d / "voc/Annotations/000002.xml", x3 = d / "voc/Annotations/000003.xml";
  auto find = [&](const std::string& where) -> const LabelProblem* {
    for (const auto& p : r.problems) {
      if (p.where() == where) return &p;
    }
    return nullptr;
  };
  REQUIRE(find(x2 + ":3"));
  CHECK(find(x2 + ":3")->message == "class 'zebra' is not in the class list");
  CHECK(find(x2 + ":3")->kind == LabelIssue::ClassOutOfRange);
  REQUIRE(find(x2 + ":13"));
  CHECK(find(x2 + ":13")->kind == LabelIssue::EmptyBox);  // xmax 8 < xmin 10
  REQUIRE(find(x2 + ":23"));
  CHECK(find(x2 + ":23")->kind == LabelIssue::Outside);
  REQUIRE(find(x2 + ":33"));
  CHECK(find(x2 + ":33")->message == "bndbox needs numeric xmin, ymin, xmax and ymax");
  REQUIRE(find(x2 + ":47"));
  CHECK(find(x2 + ":47")->kind == LabelIssue::Duplicate);
  REQUIRE(find(x3 + ":4"));
  CHECK(contains(find(x3 + ":4")->message, "XML error: mismatched tag"));
  CHECK(r.images == 2);  // 000001 and 000002; 000003 (broken xml) and 000004 (no image) dropped
  o.strict = true;
  CHECK(contains(error_of([&] { load_voc(d / "voc", "", {"dog", "person"}, o); }), x2 + ":3: class 'zebra'"));
  CHECK(contains(error_of([&] { load_voc(d / "voc", "val", {}, o); }), "cannot read the image set"));
}

TEST_CASE("VOC: the cache spares reading unchanged xml files, per image set") {
  TempDir d;
  make_voc(d);
  const auto first = load_voc(d / "voc", "train");
  CHECK(first.report().rechecked == 2);
  CHECK(fs::exists(d / "voc/Annotations.train.cache"));
  const auto second = load_voc(d / "voc", "train");
  CHECK(second.report().from_cache);
  CHECK(second.report().rechecked == 0);
  CHECK(second.names() == first.names());
  REQUIRE(second.size() == 1);
  CHECK(second.record(0).boxes == first.record(0).boxes);
  // a new object name changes the derived class list: everything is checked again
  write_bytes(d / "voc/Annotations/000001.xml",
              "<annotation><filename>000001.jpg</filename>" + object("ant", 1, 1, 10, 20) + "</annotation>");
  const auto third = load_voc(d / "voc", "train");
  CHECK(third.names() == std::vector<std::string>{"ant", "dog"});
  CHECK(third.report().rechecked == 2);
}
