// Box-aware transforms against values worked out by hand: letterbox of 640x480 to 416 and its exact
// inverse, flips, a pure scale + translate, a 90-degree rotation, the box-candidate rules, the
// identity perspective, and HSV gains on colours whose HSV is known.
#include <doctest/doctest.h>

#include <cmath>

#include "data/box_transforms.h"
#include "data_test_util.h"

using namespace rg::data;

namespace {
Image solid(int64_t h, int64_t w, uint8_t r, uint8_t g, uint8_t b) {
  Image img(h, w, 3);
  for (int64_t i = 0; i < h * w; ++i) img.pixels[3 * i] = r, img.pixels[3 * i + 1] = g, img.pixels[3 * i + 2] = b;
  return img;
}
void paint(Image* img, int64_t x1, int64_t y1, int64_t x2, int64_t y2, uint8_t r, uint8_t g, uint8_t b) {
  for (int64_t y = y1; y < y2; ++y) {
    for (int64_t x = x1; x < x2; ++x) img->at(y, x)[0] = r, img->at(y, x)[1] = g, img->at(y, x)[2] = b;
  }
}
bool is(const Image& img, int64_t y, int64_t x, uint8_t r, uint8_t g, uint8_t b) {
  const uint8_t* p = img.at(y, x);
  return p[0] == r && p[1] == g && p[2] == b;
}
void check_box(const Box& got, double x1, double y1, double x2, double y2, double tol = 1e-4) {
  CHECK(std::fabs(got.x1 - x1) <= tol);
  CHECK(std::fabs(got.y1 - y1) <= tol);
  CHECK(std::fabs(got.x2 - x2) <= tol);
  CHECK(std::fabs(got.y2 - y2) <= tol);
}
}  // namespace

TEST_CASE("letterbox: 640x480 to 416 by hand, and predictions map back exactly") {
  Image img = solid(480, 640, 10, 200, 30);
  const Letterboxed lb = letterbox(img, 480, 640, 416, 416);
  // r = min(416/480, 416/640) = 0.65; 640x480 -> 416x312; dh = 52 -> top = round(51.9) = 52, left = 0
  CHECK(lb.params.scale == doctest::Approx(0.65));
  CHECK(lb.params.pad_x == 0.0);
  CHECK(lb.params.pad_y == 52.0);
  REQUIRE((lb.image.height == 416 && lb.image.width == 416));
  for (int64_t x : {0, 200, 415}) {
    CHECK(is(lb.image, 51, x, 114, 114, 114));
    CHECK(is(lb.image, 52, x, 10, 200, 30));
    CHECK(is(lb.image, 363, x, 10, 200, 30));
    CHECK(is(lb.image, 364, x, 114, 114, 114));
  }
  // a box of the original -> batch pixels: x * 0.65, y * 0.65 + 52
  const Box b = letterbox_box({100, 50, 300, 250, 3}, lb.params);
  check_box(b, 65, 84.5, 195, 214.5);
  CHECK(b.cls == 3);
  // and back, exactly; a prediction reaching into the padding is clipped to the original
  check_box(unletterbox_box(b, lb.params, 480, 640), 100, 50, 300, 250);
  check_box(unletterbox_box({-5, 30, 420, 390, 0}, lb.params, 480, 640), 0, 0, 640, 480);
  float rows[2][6] = {{65, 84.5f, 195, 214.5f, 0.9f, 1}, {0, 52, 13, 65, 0.5f, 2}};
  ImageInfo info;
  info.h0 = 480, info.w0 = 640, info.letterbox = lb.params;
  unletterbox_xyxy(&rows[0][0], 2, 6, info);
  CHECK(rows[0][0] == doctest::Approx(100));
  CHECK(rows[0][3] == doctest::Approx(250));
  CHECK(rows[0][4] == doctest::Approx(0.9));  // the rest of the row is untouched
  CHECK(rows[1][2] == doctest::Approx(20));
  CHECK(rows[1][3] == doctest::Approx(20));
}

TEST_CASE("letterbox: centring, max_scale (ultralytics' scaleup=False) and a reduced decode") {
  // 100x30 into 416 without upscaling: placed at left = round(158 - 0.1), top = round(193 - 0.1)
  const Letterboxed a = letterbox(solid(30, 100, 1, 2, 3), 30, 100, 416, 416, 1.0);
  CHECK((a.params.scale == 1.0 && a.params.pad_x == 158.0 && a.params.pad_y == 193.0));
  CHECK(is(a.image, 193, 158, 1, 2, 3));
  CHECK(is(a.image, 222, 257, 1, 2, 3));
  CHECK(is(a.image, 192, 158, 114, 114, 114));
  CHECK(is(a.image, 223, 257, 114, 114, 114));
  CHECK(is(a.image, 193, 258, 114, 114, 114));
  // odd leftover: 300x301 into 100x100: r = 100/301, 100 x round(99.67) = 100; dw = 0 -> left 0
  const Letterboxed b = letterbox(solid(301, 300, 5, 5, 5), 301, 300, 100, 100);
  CHECK((b.params.pad_x == 0.0 && b.params.pad_y == 0.0));
  // the source may be a reduced decode (scale 0.5): same geometry as from the full image
  Image full = solid(200, 400, 0, 0, 0);
  paint(&full, 100, 40, 300, 120, 255, 255, 255);
  Image half = solid(100, 200, 0, 0, 0);
  paint(&half, 50, 20, 150, 60, 255, 255, 255);
  const Letterboxed f = letterbox(full, 200, 400, 160, 160), h = letterbox(half, 200, 400, 160, 160, 1e300, 0.5);
  CHECK(f.params.scale == h.params.scale);
  CHECK(f.params.pad_y == h.params.pad_y);
  REQUIRE(f.image.pixels.size() == h.image.pixels.size());
  // the white rectangle lands on x 40..120, y 56..88 from both; they differ only in edge blending
  for (int64_t y = 0; y < 160; ++y) {
    for (int64_t x = 0; x < 160; ++x) {
      const bool near_edge = std::fabs(x + 0.5 - 40) < 1.5 || std::fabs(x + 0.5 - 120) < 1.5 ||
                             std::fabs(y + 0.5 - 56) < 1.5 || std::fabs(y + 0.5 - 88) < 1.5;
      if (!near_edge) CHECK(f.image.at(y, x)[0] == h.image.at(y, x)[0]);
    }
  }
  CHECK(is(h.image, 70, 80, 255, 255, 255));
  CHECK(is(h.image, 70, 30, 0, 0, 0));
  CHECK(is(h.image, 30, 80, 114, 114, 114));
}

TEST_CASE("flips move pixels and boxes together") {
  Image img(6, 10, 3);
  for (int64_t y = 0; y < 6; ++y) {
    for (int64_t x = 0; x < 10; ++x) img.at(y, x)[0] = static_cast<uint8_t>(y * 10 + x);
  }
  Image lr = img;
  Boxes b = {{1, 2, 4, 5, 7}};
  flip_lr(&lr, &b);
  CHECK(b[0] == Box{6, 2, 9, 5, 7});
  CHECK(lr.at(3, 0)[0] == 39);
  CHECK(lr.at(3, 9)[0] == 30);
  Image ud = img;
  Boxes c = {{1, 2, 4, 5, 7}};
  flip_ud(&ud, &c);
  CHECK(c[0] == Box{1, 1, 4, 4, 7});
  CHECK(ud.at(0, 4)[0] == 54);
  CHECK(ud.at(5, 4)[0] == 4);
}

TEST_CASE("warp: a pure scale + translate moves the box and its pixels by hand") {
  Image img = solid(20, 20, 0, 0, 0);
  paint(&img, 4, 6, 8, 10, 200, 100, 50);  // pixels x 4..7, y 6..9: the box (4, 6, 8, 10)
  const Mat3 m = {2, 0, 3, 0, 2, 5, 0, 0, 1};  // x -> 2x + 3, y -> 2y + 5
  const Box t = transform_box({4, 6, 8, 10, 1}, m);
  check_box(t, 11, 17, 19, 25);
  const Image out = warp_perspective(img, m, 40, 40, 114);
  // inside by a pixel or more: the colour exactly; outside by a pixel or more: not
  for (int64_t y = 18; y < 24; ++y) {
    for (int64_t x = 12; x < 18; ++x) CHECK(is(out, y, x, 200, 100, 50));
  }
  for (int64_t x = 9; x < 22; ++x) CHECK(!is(out, 15, x, 200, 100, 50));
  CHECK(is(out, 2, 2, 114, 114, 114));  // result point (2.5, 2.5) comes from source (-0.25, -1.25): outside
  CHECK(is(out, 39, 39, 0, 0, 0));
  // pure integer translation is exact at every pixel
  const Image tr = warp_perspective(img, {1, 0, 5, 0, 1, -2, 0, 0, 1}, 20, 20, 114);
  for (int64_t y = 0; y < 18; ++y) {
    for (int64_t x = 5; x < 20; ++x) CHECK(std::equal(tr.at(y, x), tr.at(y, x) + 3, img.at(y + 2, x - 5)));
  }
  CHECK(is(tr, 0, 4, 114, 114, 114));
}

TEST_CASE("warp: a 90-degree rotation maps pixels exactly and the box by its corners") {
  Image img(10, 20, 3);  // h 10, w 20
  for (int64_t y = 0; y < 10; ++y) {
    for (int64_t x = 0; x < 20; ++x) img.at(y, x)[0] = static_cast<uint8_t>(y * 20 + x), img.at(y, x)[1] = 1;
  }
  const Mat3 rot = {0, 1, 0, -1, 0, 20, 0, 0, 1};  // (x, y) -> (y, 20 - x): a quarter turn
  const Image out = warp_perspective(img, rot, 20, 10);
  REQUIRE((out.height == 20 && out.width == 10));
  for (int64_t y = 0; y < 20; ++y) {
    for (int64_t x = 0; x < 10; ++x) CHECK(out.at(y, x)[0] == img.at(x, 19 - y)[0]);
  }
  check_box(transform_box({2, 1, 6, 4, 0}, rot), 1, 14, 4, 18);
}

TEST_CASE("box candidates: ultralytics' thresholds (2 px, area 0.1, aspect 100)") {
  const Box before{0, 0, 100, 100, 0};
  CHECK(box_candidate(before, {0, 0, 50, 50, 0}));
  CHECK(!box_candidate(before, {0, 0, 2, 50, 0}));      // width must exceed 2 px
  CHECK(box_candidate(before, {0, 0, 2.01f, 50, 0}) == false);  // 100.5 px^2 of 10000: area ratio 0.01
  CHECK(!box_candidate(before, {0, 0, 31, 32, 0}));     // 992 / 10000 < 0.1
  CHECK(box_candidate(before, {0, 0, 32, 32, 0}));      // 1024 / 10000 > 0.1
  const Box tall{0, 0, 10, 1000, 0};
  CHECK(box_candidate(tall, {0, 0, 10, 990, 0}));       // aspect 99
  CHECK(!box_candidate(tall, {0, 0, 9.9f, 990, 0}));    // aspect 100
}

TEST_CASE("random_perspective: no change when every range is 0; scale about the centre") {
  Image img = rg::test::pattern_image(30, 40, 3);
  const Image orig = img;
  Boxes b = {{5, 5, 15, 25, 2}};
  SampleRng rng(1, 2, 3);
  AffineParams none;
  none.translate = 0, none.scale = 0;
  Mat3 m{};
  random_perspective(&img, &b, none, 0, rng, {}, &m);
  CHECK(m == mat3_identity());
  CHECK(img == orig);
  CHECK(b == Boxes{{5, 5, 15, 25, 2}});
  // scale only: about the centre (20, 15)
  AffineParams sc;
  sc.translate = 0, sc.scale = 0.4;
  SampleRng rng2(7, 0, 1);
  random_perspective(&img, &b, sc, 0, rng2, {}, &m);
  const double s = m[0];
  CHECK((s >= 0.6 && s <= 1.4));
  CHECK(m[1] == 0.0);
  check_box(b[0], std::max((5 - 20) * s + 20, 0.0), std::max((5 - 15) * s + 15, 0.0), std::min((15 - 20) * s + 20, 40.0),
            std::min((25 - 15) * s + 15, 30.0), 1e-3);
}

TEST_CASE("HSV: OpenCV's 8-bit HSV with ultralytics' gains on colours worked out by hand") {
  auto hsv = [](uint8_t r, uint8_t g, uint8_t b, double gh, double gs, double gv) {
    Image px = solid(1, 1, r, g, b);
    apply_hsv_gains(&px, gh, gs, gv);
    return std::array<int, 3>{px.pixels[0], px.pixels[1], px.pixels[2]};
  };
  CHECK(hsv(255, 0, 0, 1, 1, 1) == std::array<int, 3>{255, 0, 0});
  CHECK(hsv(255, 0, 0, 1, 1, 0.5) == std::array<int, 3>{127, 0, 0});   // V 255 -> 127 (truncated)
  CHECK(hsv(255, 0, 0, 1, 0, 1) == std::array<int, 3>{255, 255, 255}); // no saturation: grey at V
  CHECK(hsv(0, 255, 0, 2, 1, 1) == std::array<int, 3>{0, 0, 255});    // H 60 (120 deg) * 2 = 120: blue
  CHECK(hsv(0, 170, 255, 2, 1, 1) == std::array<int, 3>{255, 170, 0}); // H 100 * 2 = 200 mod 180 = 20 (40 deg)
  CHECK(hsv(90, 90, 90, 1.5, 1.5, 2) == std::array<int, 3>{180, 180, 180});
  CHECK(hsv(200, 200, 200, 1, 1, 2) == std::array<int, 3>{255, 255, 255});  // V clipped at 255
  // unit gains: within OpenCV's hue quantisation (2 degrees) of the identity for every colour tried
  std::mt19937 g(5);
  int worst = 0;
  for (int i = 0; i < 2000; ++i) {
    const uint8_t r = static_cast<uint8_t>(g()), gg = static_cast<uint8_t>(g()), b = static_cast<uint8_t>(g());
    const auto o = hsv(r, gg, b, 1, 1, 1);
    worst = std::max({worst, std::abs(o[0] - r), std::abs(o[1] - gg), std::abs(o[2] - b)});
  }
  CHECK(worst <= 5);
  // a whole image (several 64-pixel blocks and a tail) equals the pixels done one by one
  Image big = rg::test::pattern_image(9, 17, 3, 5);
  Image one_by_one = big;
  apply_hsv_gains(&big, 1.013, 1.3, 0.8);
  for (int64_t y = 0; y < 9; ++y) {
    for (int64_t x = 0; x < 17; ++x) {
      const uint8_t* q = one_by_one.at(y, x);
      CHECK(hsv(q[0], q[1], q[2], 1.013, 1.3, 0.8) == std::array<int, 3>{big.at(y, x)[0], big.at(y, x)[1], big.at(y, x)[2]});
    }
  }
  // augment_hsv draws three gains in [1 - g, 1 + g]: zero gains leave the image alone
  Image img = rg::test::pattern_image(8, 8, 3);
  const Image before = img;
  SampleRng rng(1, 1, 1);
  augment_hsv(&img, 0, 0, 0, rng);
  CHECK(img == before);
}
