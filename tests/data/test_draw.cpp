// Drawing: the class palette, rectangles, the built-in bitmap font pixel for pixel, the TrueType
// font (DejaVu when installed) staying inside its measured box, labelled boxes, and batch grids
// with their boxes where the targets say.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "data/draw.h"
#include "data_test_util.h"

using namespace rg;
using namespace rg::data;
using rg::test::contains;
using rg::test::TempDir;

namespace {
bool is(const Image& img, int64_t y, int64_t x, Rgb c) {
  const uint8_t* p = img.at(y, x);
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}
const std::string kDejaVu = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
}  // namespace

TEST_CASE("draw: palette, rectangles and labelled boxes") {
  CHECK(class_colour(0) == Rgb{255, 56, 56});  // ultralytics' first colour, FF3838
  CHECK(class_colour(20) == class_colour(0));
  std::set<Rgb> distinct;
  for (int k = 0; k < 20; ++k) distinct.insert(class_colour(k));
  CHECK(distinct.size() == 20);

  Image img(12, 12, 3, 0);
  draw_rect(&img, {2, 3, 8, 9, 0}, {9, 9, 9}, 1);
  CHECK(is(img, 3, 2, {9, 9, 9}));   // top-left corner
  CHECK(is(img, 3, 7, {9, 9, 9}));   // top edge, last column
  CHECK(is(img, 8, 5, {9, 9, 9}));   // bottom edge
  CHECK(is(img, 6, 7, {9, 9, 9}));   // right edge
  CHECK(is(img, 5, 5, {0, 0, 0}));   // inside
  CHECK(is(img, 2, 2, {0, 0, 0}));   // outside
  CHECK(is(img, 3, 8, {0, 0, 0}));
  fill_rect(&img, -5, -5, 2, 1, {1, 2, 3});  // clipped to the image
  CHECK(is(img, 0, 0, {1, 2, 3}));
  CHECK(is(img, 0, 2, {0, 0, 0}));

  Image pic(60, 60, 3, 0);
  draw_labelled_box(&pic, {10, 30, 50, 55, 1}, "ab", class_colour(1), 2, 9, Font::builtin());
  CHECK(is(pic, 30, 10, class_colour(1)));  // the box
  // the label's filled box above it: rows 19..29 (9 + 2 px), columns 10..25 (2 * 6 + 2 * 2 px)
  CHECK(is(pic, 19, 10, class_colour(1)));
  CHECK(is(pic, 19, 25, class_colour(1)));
  CHECK(is(pic, 18, 10, {0, 0, 0}));
  CHECK(is(pic, 19, 26, {0, 0, 0}));
  CHECK(is(pic, 19, 9, {0, 0, 0}));
}

TEST_CASE("draw: the built-in font, pixel for pixel") {
  const Font& f = Font::builtin();
  CHECK(f.is_builtin());
  CHECK(f.text_width("ab", 9) == 12);  // 6 px per character at scale 1
  CHECK(f.text_width("ab", 18) == 24);
  Image img(9, 12, 3, 0);
  f.draw(&img, 0, 0, "I", {255, 255, 255}, 9);  // 'I': rows .###. ..#.. x5 .###.; top = (9 - 7) / 2
  const char* rows[7] = {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."};
  for (int r = 0; r < 7; ++r) {
    for (int c = 0; c < 5; ++c) CHECK(is(img, 1 + r, c, rows[r][c] == '#' ? Rgb{255, 255, 255} : Rgb{0, 0, 0}));
  }
  CHECK(is(img, 0, 2, {0, 0, 0}));
  Image big(18, 12, 3, 0);
  f.draw(&big, 0, 0, "I", {255, 255, 255}, 18);  // scale 2: each bit a 2x2 block
  CHECK(is(big, 2, 2, {255, 255, 255}));
  CHECK(is(big, 3, 3, {255, 255, 255}));
  CHECK(is(big, 2, 0, {0, 0, 0}));
  CHECK(is(big, 4, 2, {0, 0, 0}));  // row 1 of 'I' is ..#..: columns 4..5 only
  CHECK(is(big, 4, 4, {255, 255, 255}));
}

TEST_CASE("draw: TrueType text stays in its measured box; a missing font falls back") {
  std::string err;
  CHECK(Font::load("/nonexistent/font.ttf", &err)->is_builtin());
  CHECK(contains(err, "font '/nonexistent/font.ttf': cannot read it"));
  TempDir d;
  rg::test::write_bytes(d / "x.ttf", "definitely not a font file");
  CHECK(Font::load(d / "x.ttf", &err)->is_builtin());
  CHECK(contains(err, "not a TrueType font"));
  if (!std::filesystem::exists(kDejaVu)) {
    MESSAGE("DejaVu Sans not installed: TrueType drawing not tested here");
    return;
  }
  const auto f = Font::load(kDejaVu, &err);
  REQUIRE(!f->is_builtin());
  CHECK(!Font::standard().is_builtin());
  const int64_t w = f->text_width("Hello", 20);
  CHECK((w > 40 && w < 70));
  CHECK(f->text_width("Hello world", 20) > w);
  Image img(40, 120, 3, 255);
  f->draw(&img, 10, 8, "Hello", {0, 0, 0}, 20);
  int64_t dark = 0, stray = 0;
  for (int64_t y = 0; y < 40; ++y) {
    for (int64_t x = 0; x < 120; ++x) {
      if (img.at(y, x)[0] == 255) continue;
      ++dark;
      stray += x < 10 || x >= 10 + w + 1 || y < 8 || y >= 8 + 20;
    }
  }
  CHECK(dark > 80);
  CHECK(stray == 0);
}

TEST_CASE("draw: plot_batch puts each target's box on its tile, with the file name") {
  // 3 images of 32x48: a 2x2 grid of 32x48 tiles; image 1 has class 2 at (cx, cy, w, h) = (0.5, 0.5, 0.5, 0.5)
  Batch b;
  b.images = zeros({3, 3, 32, 48}, DType::u8);
  b.targets = from_vector(std::vector<float>{1, 2, 0.5f, 0.5f, 0.5f, 0.5f}, {1, 6});
  for (int i = 0; i < 3; ++i) b.info.push_back({i, "/data/images/im" + std::to_string(i) + ".jpg", 32, 48, {}, true});
  const Image pic = plot_batch(b, {"a", "b", "c"});
  REQUIRE((pic.height == 64 && pic.width == 96));
  // image 1's box is (12, 8, 36, 24): on the tile at column 1 (x + 48)
  CHECK(is(pic, 16, 48 + 12, class_colour(2)));  // left edge
  CHECK(is(pic, 16, 48 + 35, class_colour(2)));  // right edge
  CHECK(is(pic, 8, 48 + 30, class_colour(2)));   // top edge (the label sits at the left end)
  CHECK(is(pic, 23, 48 + 30, class_colour(2)));  // bottom edge
  CHECK(is(pic, 24, 48 + 30, {0, 0, 0}));
  CHECK(is(pic, 20, 48 + 20, {0, 0, 0}));  // inside the box: the image
  // no box on image 0 (row 0, column 0) beyond its title and border
  int64_t coloured = 0;
  for (int64_t y = 0; y < 32; ++y) {
    for (int64_t x = 0; x < 48; ++x) coloured += is(pic, y, x, class_colour(2));
  }
  CHECK(coloured == 0);
  // the title is drawn in light grey in the tile's top-left corner
  int64_t title = 0;
  for (int64_t y = 0; y < 14; ++y) {
    for (int64_t x = 2; x < 48; ++x) title += pic.at(y, x)[0] > 100 && pic.at(y, x)[0] < 255;
  }
  CHECK(title > 5);
  // the fourth cell of the 2x2 grid is empty (white)
  CHECK(is(pic, 50, 70, {255, 255, 255}));
}
