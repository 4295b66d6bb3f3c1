// Image decode/encode (PNG exact, JPEG within tolerance), channel conversion, error messages that
// name the file, and the geometric helpers (flip, crop with fill, bilinear resize) against values
// worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>

#include "data/image.h"
#include "data_test_util.h"

using namespace rg::data;
using rg::test::error_of;
using rg::test::pattern_image;

namespace {
double mean_abs_diff(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double s = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) s += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return s / static_cast<double>(a.pixels.size());
}

// A smooth RGB image (JPEG's friendly case): gradients with a soft blob.
Image smooth_image(int64_t h, int64_t w) {
  Image img(h, w, 3);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const double d = std::hypot(y - h / 2.0, x - w / 2.0);
      img.at(y, x)[0] = static_cast<uint8_t>(255.0 * x / (w - 1));
      img.at(y, x)[1] = static_cast<uint8_t>(255.0 * y / (h - 1));
      img.at(y, x)[2] = static_cast<uint8_t>(128 + 100 * std::exp(-d * d / 200.0));
    }
  }
  return img;
}
}  // namespace

TEST_CASE("image: PNG round trip is exact for 1, 2, 3 and 4 channels") {
  for (int c = 1; c <= 4; ++c) {
    const Image img = pattern_image(13, 29, c, c);
    const std::string png = encode_png(img);
    CHECK(sniff_format(reinterpret_cast<const uint8_t*>(png.data()), png.size()) == ImageFormat::Png);
    const Image back = decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(), "mem.png", 0);
    CHECK(back.height == 13);
    CHECK(back.width == 29);
    CHECK(back.channels == c);
    CHECK(back == img);
  }
}

TEST_CASE("image: JPEG round trip is within tolerance, RGB and gray") {
  const Image img = smooth_image(48, 64);
  const std::string jpg = encode_jpeg(img, 95);
  CHECK(sniff_format(reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size()) == ImageFormat::Jpeg);
  const Image back = decode_image(reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size(), "mem.jpg", 0);
  REQUIRE(back.channels == 3);
  REQUIRE(back.height == 48);
  REQUIRE(back.width == 64);
  CHECK(mean_abs_diff(back, img) < 2.0);
  // Lower quality: smaller file, larger (but still bounded) error.
  const std::string jpg30 = encode_jpeg(img, 30);
  CHECK(jpg30.size() < jpg.size());
  const Image back30 = decode_image(reinterpret_cast<const uint8_t*>(jpg30.data()), jpg30.size(), "m", 0);
  CHECK(mean_abs_diff(back30, img) < 6.0);

  Image gray(20, 30, 1);
  for (int64_t y = 0; y < 20; ++y) {
    for (int64_t x = 0; x < 30; ++x) gray.at(y, x)[0] = static_cast<uint8_t>(8 * x);
  }
  const std::string g = encode_jpeg(gray, 95);
  const Image gb = decode_image(reinterpret_cast<const uint8_t*>(g.data()), g.size(), "g.jpg", 0);
  CHECK(gb.channels == 1);
  CHECK(mean_abs_diff(gb, gray) < 2.0);
  // As RGB the gray value is replicated into all three channels.
  const Image g3 = decode_image(reinterpret_cast<const uint8_t*>(g.data()), g.size(), "g.jpg", 3);
  REQUIRE(g3.channels == 3);
  for (int64_t i = 0; i < 20 * 30; ++i) {
    CHECK(g3.pixels[static_cast<size_t>(3 * i)] == gb.pixels[static_cast<size_t>(i)]);
    CHECK(g3.pixels[static_cast<size_t>(3 * i + 2)] == gb.pixels[static_cast<size_t>(i)]);
  }
}

TEST_CASE("image: PNG channel conversion (gray -> RGB replicates, RGBA -> RGB drops alpha)") {
  Image gray(2, 3, 1);
  for (size_t i = 0; i < 6; ++i) gray.pixels[i] = static_cast<uint8_t>(40 * i);
  const std::string p1 = encode_png(gray);
  const Image rgb = decode_image(reinterpret_cast<const uint8_t*>(p1.data()), p1.size(), "g.png", 3);
  REQUIRE(rgb.channels == 3);
  for (size_t i = 0; i < 6; ++i) {
    for (size_t k = 0; k < 3; ++k) CHECK(rgb.pixels[3 * i + k] == 40 * i);
  }
  Image rgba(1, 2, 4);
  const uint8_t px[8] = {10, 20, 30, 0, 40, 50, 60, 255};
  std::copy(px, px + 8, rgba.pixels.begin());
  const std::string p4 = encode_png(rgba);
  const Image rgb2 = decode_image(reinterpret_cast<const uint8_t*>(p4.data()), p4.size(), "a.png", 3);
  REQUIRE(rgb2.channels == 3);
  CHECK(rgb2.pixels == std::vector<uint8_t>{10, 20, 30, 40, 50, 60});
}

TEST_CASE("image: write_image / read_image by extension") {
  rg::test::TempDir dir;
  const Image img = pattern_image(9, 11, 3);
  write_image(dir / "a.png", img);
  write_image(dir / "b.JPG", smooth_image(16, 16), 90);
  CHECK(read_image(dir / "a.png") == img);
  const Image b = read_image(dir / "b.JPG");
  CHECK(b.height == 16);
  CHECK(b.channels == 3);
  CHECK(format_from_extension("x/y.JPEG") == ImageFormat::Jpeg);
  CHECK(format_from_extension("x.png") == ImageFormat::Png);
  CHECK(format_from_extension("x.gif") == ImageFormat::Unknown);
  CHECK(format_from_extension("noext") == ImageFormat::Unknown);
  const std::string e = error_of<std::exception>([&] { write_image(dir / "c.gif", img); });
  CHECK(e.find("c.gif") != std::string::npos);
  CHECK(e.find("unknown image extension") != std::string::npos);
}

TEST_CASE("image: corrupt, truncated, empty and missing files raise errors naming the file") {
  rg::test::TempDir dir;
  const std::string jpg = encode_jpeg(smooth_image(64, 64), 90);
  const std::string png = encode_png(pattern_image(32, 32, 3));

  rg::test::write_bytes(dir / "trunc.jpg", jpg.substr(0, jpg.size() * 3 / 4));  // cut inside the scan data
  std::string e = error_of<std::exception>([&] { read_image(dir / "trunc.jpg"); });
  CHECK(e.find("cannot decode '" + (dir / "trunc.jpg") + "'") != std::string::npos);
  CHECK_MESSAGE(e.find("truncated") != std::string::npos, e);
  rg::test::write_bytes(dir / "header.jpg", jpg.substr(0, 200));  // cut inside the headers: libjpeg's own words
  e = error_of<std::exception>([&] { read_image(dir / "header.jpg"); });
  CHECK_MESSAGE(e.find("cannot decode '" + (dir / "header.jpg") + "': ") != std::string::npos, e);

  std::string bad = jpg;  // a JPEG signature followed by garbage
  for (size_t i = 3; i < bad.size(); ++i) bad[i] = static_cast<char>(i * 7);
  rg::test::write_bytes(dir / "garbage.jpg", bad);
  e = error_of<std::exception>([&] { read_image(dir / "garbage.jpg"); });
  CHECK(e.find("cannot decode '" + (dir / "garbage.jpg") + "'") != std::string::npos);

  rg::test::write_bytes(dir / "trunc.png", png.substr(0, png.size() / 2));
  e = error_of<std::exception>([&] { read_image(dir / "trunc.png"); });
  CHECK(e.find("cannot decode '" + (dir / "trunc.png") + "'") != std::string::npos);

  // Found by fuzz_png: a chunk stating far more bytes than the file holds made stb_image allocate them
  // (528 MB here) before finding the file short. Refused from the chunk lengths, naming both counts.
  std::string liar = png.substr(0, 33);  // signature and IHDR
  liar += std::string("\x21\x00\x00\x00IDAT", 8) + png.substr(41, 40);
  rg::test::write_bytes(dir / "liar.png", liar);
  e = error_of<std::exception>([&] { read_image(dir / "liar.png"); });
  CHECK_MESSAGE(e.find("cannot decode '" + (dir / "liar.png") + "': PNG chunk at byte 33 states 553648128 bytes of data, "
                       "but only 40 follow its header") != std::string::npos, e);

  // Found by fuzz_png too: a header stating 12 x 16515082 pixels over 300 bytes made stb_image allocate
  // the 611 MB those pixels take. Refused: deflate cannot inflate the IDAT data that far (1032:1 at most).
  std::string tall = png;
  tall.replace(20, 4, std::string("\x00\xfc\x00\x0a", 4));  // IHDR height
  rg::test::write_bytes(dir / "tall.png", tall);
  e = error_of<std::exception>([&] { read_image(dir / "tall.png"); });
  CHECK_MESSAGE(e.find("cannot decode '" + (dir / "tall.png") + "': the PNG header states 32x16515082 pixels (1585447872 "
                       "bytes), more than its ") != std::string::npos, e);

  rg::test::write_bytes(dir / "text.jpg", "hello, this is not an image");
  e = error_of<std::exception>([&] { read_image(dir / "text.jpg"); });
  CHECK(e.find("cannot decode '" + (dir / "text.jpg") + "': not a JPEG or PNG file") != std::string::npos);

  rg::test::write_bytes(dir / "empty.png", "");
  e = error_of<std::exception>([&] { read_image(dir / "empty.png"); });
  CHECK(e.find("cannot decode '" + (dir / "empty.png") + "': empty file") != std::string::npos);

  e = error_of<std::exception>([&] { read_image(dir / "missing.png"); });
  CHECK(e.find("cannot read '" + (dir / "missing.png") + "'") != std::string::npos);

  // A good file still decodes after all those failures (no state left behind).
  rg::test::write_bytes(dir / "ok.jpg", jpg);
  CHECK(read_image(dir / "ok.jpg").width == 64);
}

TEST_CASE("image: encode argument errors") {
  CHECK(error_of<std::exception>([] { encode_jpeg(pattern_image(4, 4, 4)); }).find("1 or 3 supported") != std::string::npos);
  CHECK(error_of<std::exception>([] { encode_jpeg(pattern_image(4, 4, 3), 0); }).find("quality") != std::string::npos);
  CHECK(error_of<std::exception>([] { encode_png(Image()); }).find("PNG") != std::string::npos);
}

TEST_CASE("image: hflip and crop with fill") {
  const Image img = pattern_image(3, 4, 2);
  const Image f = hflip(img);
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      for (int64_t c = 0; c < 2; ++c) CHECK(f.at(y, x)[c] == img.at(y, 3 - x)[c]);
    }
  }
  CHECK(hflip(f) == img);

  // Window [-1, 2) x [2, 6) of a 3x4 image: row -1 and columns 4, 5 are outside -> fill 7.
  const Image c = crop(img, -1, 2, 3, 4, 7);
  REQUIRE(c.height == 3);
  REQUIRE(c.width == 4);
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      const int64_t sy = y - 1, sx = x + 2;
      for (int64_t k = 0; k < 2; ++k) {
        const int expect = (sy >= 0 && sy < 3 && sx < 4) ? img.at(sy, sx)[k] : 7;
        CHECK(c.at(y, x)[k] == expect);
      }
    }
  }
  // Entirely outside: all fill.
  const Image o = crop(img, 10, 10, 2, 2, 9);
  CHECK(o.pixels == std::vector<uint8_t>(8, 9));
}

TEST_CASE("image: bilinear resize with half-pixel centres, by hand") {
  Image img(2, 2, 1);
  img.pixels = {0, 100, 200, 40};
  const Image r = resize_bilinear(img, 4, 4);
  // Source coordinate of output index i: (i + 0.5) / 2 - 0.5 clamped to [0, 1] -> 0, 0.25, 0.75, 1.
  const double f[4] = {0, 0.25, 0.75, 1};
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      const double top = 0 * (1 - f[x]) + 100 * f[x], bot = 200 * (1 - f[x]) + 40 * f[x];
      const double v = top * (1 - f[y]) + bot * f[y];
      CHECK(r.at(y, x)[0] == static_cast<int>(std::floor(v + 0.5)));
    }
  }
  CHECK(r.at(1, 1)[0] == 59);  // 25 * 0.75 + 160 * 0.25 = 58.75
  // Same size is the identity; downscaling 4 -> 2 averages the two middle samples.
  CHECK(resize_bilinear(img, 2, 2) == img);
  Image row(1, 4, 1);
  row.pixels = {0, 10, 20, 30};
  const Image half = resize_bilinear(row, 1, 2);  // x sources 0.5 and 2.5
  CHECK(half.pixels == std::vector<uint8_t>{5, 25});
}
