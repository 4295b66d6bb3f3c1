// probe_image (header-only size, completeness, errors) and read_image_reduced (libjpeg's DCT
// scaling: the factor chosen, the size, and the picture at that scale).
#include <doctest/doctest.h>

#include <cmath>

#include "data/image.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::contains;
using rg::test::TempDir;
using rg::test::write_bytes;

TEST_CASE("probe_image: size and completeness from the header, errors named") {
  TempDir d;
  const Image img = rg::test::pattern_image(37, 53, 3);
  write_bytes(d / "a.jpg", encode_jpeg(img, 90));
  write_bytes(d / "b.png", encode_png(img));
  const ImageHeader j = probe_image(d / "a.jpg");
  CHECK(j.error.empty());
  CHECK((j.format == ImageFormat::Jpeg && j.width == 53 && j.height == 37 && j.channels == 3 && j.complete));
  const ImageHeader p = probe_image(d / "b.png");
  CHECK((p.format == ImageFormat::Png && p.width == 53 && p.height == 37 && p.channels == 3 && p.complete));

  const std::string jpg = encode_jpeg(img, 90);
  write_bytes(d / "cut.jpg", jpg.substr(0, jpg.size() - 40));
  const ImageHeader cut = probe_image(d / "cut.jpg");
  CHECK(!cut.complete);
  CHECK(contains(cut.error, "truncated"));
  write_bytes(d / "tail.jpg", jpg + "trailing bytes after EOI");  // decodes fine: complete
  CHECK(probe_image(d / "tail.jpg").complete);
  CHECK(probe_image(d / "tail.jpg").error.empty());
  const std::string png = encode_png(img);
  write_bytes(d / "cut.png", png.substr(0, png.size() / 2));
  CHECK(!probe_image(d / "cut.png").error.empty());
  write_bytes(d / "text.jpg", "hello");
  CHECK(probe_image(d / "text.jpg").error == "not a JPEG or PNG file");
  CHECK(probe_image(d / "none.jpg").error == "No such file or directory");
  write_bytes(d / "empty.jpg", "");
  CHECK(probe_image(d / "empty.jpg").error == "empty file");
}

TEST_CASE("read_image_reduced: the smallest of 1/8, 1/4, 1/2, 1 >= min_scale, size ceil(w M / 8), same picture") {
  TempDir d;
  // a smooth picture so that the reduced decode can be compared with a box-filtered full one
  Image img(96, 128, 3);
  for (int64_t y = 0; y < 96; ++y) {
    for (int64_t x = 0; x < 128; ++x) {
      img.at(y, x)[0] = static_cast<uint8_t>(2 * x);
      img.at(y, x)[1] = static_cast<uint8_t>(2 * y);
      img.at(y, x)[2] = static_cast<uint8_t>(128 + 60 * std::sin(x / 9.0));
    }
  }
  write_bytes(d / "a.jpg", encode_jpeg(img, 95));
  double s = 0;
  const Image half = read_image_reduced(d / "a.jpg", 0.45, &s);
  CHECK(s == 0.5);
  CHECK((half.width == 64 && half.height == 48));
  const Image quarter = read_image_reduced(d / "a.jpg", 0.2, &s);
  CHECK(s == 0.25);  // 1/4 is the smallest of 1/8, 1/4, 1/2, 1 that is >= 0.2
  CHECK((quarter.width == 32 && quarter.height == 24));
  CHECK(read_image_reduced(d / "a.jpg", 0.65, &s).width == 128);
  CHECK(s == 1.0);
  CHECK(read_image_reduced(d / "a.jpg", 1.2, &s).width == 128);
  CHECK(s == 1.0);
  // Pixel (y, x) of the half-size decode shows the 2x2 block (2y.., 2x..) of the original.
  double err = 0;
  for (int64_t y = 0; y < 48; ++y) {
    for (int64_t x = 0; x < 64; ++x) {
      for (int c = 0; c < 3; ++c) {
        const double m = (img.at(2 * y, 2 * x)[c] + img.at(2 * y, 2 * x + 1)[c] + img.at(2 * y + 1, 2 * x)[c] +
                          img.at(2 * y + 1, 2 * x + 1)[c]) / 4.0;
        err += std::abs(m - half.at(y, x)[c]);
      }
    }
  }
  CHECK(err / (48 * 64 * 3) < 3.0);
  // PNG has no reduced decode: full size, factor 1
  write_bytes(d / "a.png", encode_png(img));
  CHECK(read_image_reduced(d / "a.png", 0.3, &s).width == 128);
  CHECK(s == 1.0);
}
