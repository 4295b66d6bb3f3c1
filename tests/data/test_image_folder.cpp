// ImageFolder against torchvision's rules, worked out by hand on a small tree: sorted classes,
// sorted walk (directories by path string, so "s-t" before "s/u"), extension filter, labels,
// explicit class lists, and the errors for empty classes and missing folders.
#include <doctest/doctest.h>

#include "data/image_folder.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::error_of;
using rg::test::pattern_image;

namespace {
void put_png(const rg::test::TempDir& d, const std::string& rel, int seed) {
  rg::test::write_bytes(d / rel, encode_png(pattern_image(4, 5, 3, seed)));
}
}  // namespace

TEST_CASE("ImageFolder: class order, sample order and labels follow torchvision") {
  rg::test::TempDir d;
  put_png(d, "root/b/x.png", 1);
  put_png(d, "root/a/2.png", 2);
  put_png(d, "root/a/10.png", 3);
  put_png(d, "root/a/s/k.png", 4);
  put_png(d, "root/a/s-t/m.png", 5);
  put_png(d, "root/a/s/u/n.png", 6);
  rg::test::write_bytes(d / "root/a/UPPER.JPG", encode_jpeg(pattern_image(4, 5, 3), 90));
  rg::test::write_bytes(d / "root/a/notes.txt", "not an image");
  rg::test::write_bytes(d / "root/readme.md", "a file at the root is not a class");
  put_png(d, "root/C/y.png", 7);  // upper case sorts before lower case (byte order)

  ImageFolder f(d / "root");
  CHECK(f.classes() == std::vector<std::string>{"C", "a", "b"});
  const std::string r = d / "root";
  // Directories of class "a" in walk order: a, a/s, a/s-t, a/s/u ("a/s" < "a/s-t" < "a/s/u").
  const std::vector<std::pair<std::string, int64_t>> want = {
      {r + "/C/y.png", 0},     {r + "/a/10.png", 1},  {r + "/a/2.png", 1},   {r + "/a/UPPER.JPG", 1},
      {r + "/a/s/k.png", 1},   {r + "/a/s-t/m.png", 1}, {r + "/a/s/u/n.png", 1}, {r + "/b/x.png", 2}};
  CHECK(f.samples() == want);
  CHECK(f.size() == 8);
  CHECK(f.class_counts() == std::vector<int64_t>{1, 6, 1});
  CHECK(f.label(7) == 2);
  CHECK(f.load(0) == pattern_image(4, 5, 3, 7));
  CHECK(f.load(1) == pattern_image(4, 5, 3, 3));
  CHECK(error_of<std::exception>([&] { f.path(8); }).find("out of range") != std::string::npos);
}

TEST_CASE("ImageFolder: explicit classes (a val split read with the train split's classes)") {
  rg::test::TempDir d;
  put_png(d, "val/dog/1.png", 1);
  put_png(d, "val/cat/1.png", 2);
  put_png(d, "val/cat/2.png", 3);
  ImageFolder v(d / "val", {"dog", "cat"});
  CHECK(v.classes() == std::vector<std::string>{"dog", "cat"});
  CHECK(v.label(0) == 0);
  CHECK(v.label(1) == 1);
  CHECK(v.label(2) == 1);
  const std::string e = error_of<std::exception>([&] { ImageFolder(d / "val", {"cat", "cow"}); });
  CHECK(e.find("cow") != std::string::npos);
}

TEST_CASE("ImageFolder: errors for a class without images, no classes, and a missing root") {
  rg::test::TempDir d;
  put_png(d, "r/ok/1.png", 1);
  rg::test::write_bytes(d / "r/empty/readme.txt", "x");
  std::string e = error_of<std::exception>([&] { ImageFolder(d / "r"); });
  CHECK(e.find("found no valid file for the classes empty") != std::string::npos);
  std::filesystem::create_directories(d / "none");
  e = error_of<std::exception>([&] { ImageFolder(d / "none"); });
  CHECK(e.find("couldn't find any class folder") != std::string::npos);
  e = error_of<std::exception>([&] { ImageFolder(d / "missing"); });
  CHECK(e.find("is not a directory") != std::string::npos);
}

TEST_CASE("ImageFolder: a corrupt image fails at load, naming the file") {
  rg::test::TempDir d;
  rg::test::write_bytes(d / "r/a/bad.png", "\x89PNG\r\n\x1a\n garbage");
  ImageFolder f(d / "r");
  const std::string e = error_of<std::exception>([&] { f.load(0); });
  CHECK(e.find("cannot decode '" + (d / "r/a/bad.png") + "'") != std::string::npos);
}
