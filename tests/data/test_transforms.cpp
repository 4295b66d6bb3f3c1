// Classification transforms against hand computations: ToTensor, Normalize, the device-side u8
// normalisation, RandomCrop's window and fill, RandomHorizontalFlip's rate, Resize / CenterCrop
// sizes, and the per-sample determinism of SampleRng.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "core/native.h"
#include "data/transforms.h"
#include "data_test_util.h"

using namespace rg;
using namespace rg::data;
using rg::test::pattern_image;

TEST_CASE("transforms: to_tensor is CHW f32 value / 255") {
  Image img(2, 3, 3);
  img.pixels = {0, 51, 255, 1, 2, 3, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  const Tensor t = to_tensor(img);
  REQUIRE(t.sizes() == Shape{3, 2, 3});
  CHECK(t.dtype() == DType::f32);
  const auto v = t.to_vector<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t y = 0; y < 2; ++y) {
      for (int64_t x = 0; x < 3; ++x) {
        const float want = static_cast<float>(img.at(y, x)[c]) / 255.0f;
        CHECK(v[static_cast<size_t>((c * 2 + y) * 3 + x)] == want);
      }
    }
  }
  CHECK(v[6] == doctest::Approx(0.2));  // channel 1 of pixel (0, 0) is 51
  CHECK(v[12] == 1.0f);                 // channel 2 of pixel (0, 0) is 255
  CHECK(v[0] == 0.0f);
}

TEST_CASE("transforms: normalize and normalize_u8 agree with (x / 255 - mean) / std") {
  const Image img = pattern_image(5, 7, 3);
  const std::vector<double> mean = {0.485, 0.456, 0.406}, sd = {0.229, 0.224, 0.225};
  const Tensor n = normalize(to_tensor(img), mean, sd);
  const auto v = n.to_vector<float>();
  // A batch of two: the image and its flip, through the u8 path.
  const Image f = hflip(img);
  std::vector<uint8_t> raw(2 * 3 * 5 * 7);
  for (int b = 0; b < 2; ++b) {
    const Image& im = b ? f : img;
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t p = 0; p < 35; ++p) raw[static_cast<size_t>((b * 3 + c) * 35 + p)] = im.pixels[static_cast<size_t>(p * 3 + c)];
    }
  }
  const Tensor u = from_vector(raw, {2, 3, 5, 7});
  const Tensor nu = normalize_u8(u, mean, sd);
  REQUIRE(nu.sizes() == Shape{2, 3, 5, 7});
  CHECK(nu.dtype() == DType::f32);
  const auto w = nu.to_vector<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t y = 0; y < 5; ++y) {
      for (int64_t x = 0; x < 7; ++x) {
        const double want = (img.at(y, x)[c] / 255.0 - mean[static_cast<size_t>(c)]) / sd[static_cast<size_t>(c)];
        const double got = v[static_cast<size_t>((c * 5 + y) * 7 + x)];
        CHECK(std::abs(got - want) <= 1e-5 * (1 + std::abs(want)));
        const double got_u = w[static_cast<size_t>((c * 5 + y) * 7 + x)];
        CHECK(std::abs(got_u - want) <= 1e-5 * (1 + std::abs(want)));
        const double want_f = (f.at(y, x)[c] / 255.0 - mean[static_cast<size_t>(c)]) / sd[static_cast<size_t>(c)];
        const double got_f = w[static_cast<size_t>(((3 + c) * 5 + y) * 7 + x)];
        CHECK(std::abs(got_f - want_f) <= 1e-5 * (1 + std::abs(want_f)));
      }
    }
  }
  CHECK_THROWS(normalize_u8(u, {0.5, 0.5}, {0.5, 0.5}));
  CHECK_THROWS(normalize_u8(native::to(u, kCPU, DType::f32), mean, sd));
}

TEST_CASE("transforms: random_crop takes the window at the drawn offsets of the padded image") {
  const Image img = pattern_image(8, 8, 3);
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (uint64_t i = 0; i < 400; ++i) {
    SampleRng rng(5, 0, i), replay(5, 0, i);
    const Image c = random_crop(img, 8, 8, 2, rng, 0);
    // The same draws, made by hand: top then left, each uniform in [0, 8 + 2*2 - 8].
    const int64_t top = replay.randint(0, 5), left = replay.randint(0, 5);
    offsets.insert({top, left});
    REQUIRE(c.height == 8);
    for (int64_t y = 0; y < 8; ++y) {
      for (int64_t x = 0; x < 8; ++x) {
        const int64_t sy = y + top - 2, sx = x + left - 2;
        const bool in = sy >= 0 && sy < 8 && sx >= 0 && sx < 8;
        for (int64_t k = 0; k < 3; ++k) REQUIRE(c.at(y, x)[k] == (in ? img.at(sy, sx)[k] : 0));
      }
    }
  }
  CHECK(offsets.size() == 25);  // every offset pair of 5 x 5 occurs in 400 draws
  SampleRng rng(0, 0, 0);
  CHECK(random_crop(img, 8, 8, 0, rng) == img);  // no padding, full size: identity
  CHECK_THROWS(random_crop(img, 13, 8, 2, rng));
}

TEST_CASE("transforms: random_horizontal_flip flips about half the samples, deterministically") {
  const Image img = pattern_image(4, 6, 3);
  const Image flipped = hflip(img);
  int n = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    SampleRng a(1, 3, i), b(1, 3, i);
    const Image x = random_horizontal_flip(img, a);
    CHECK((x == img || x == flipped));
    CHECK(x == random_horizontal_flip(img, b));
    n += x == flipped ? 1 : 0;
  }
  CHECK(n > 900);
  CHECK(n < 1100);
  SampleRng r(0, 0, 0);
  CHECK(random_horizontal_flip(img, r, 0.0) == img);
  CHECK(random_horizontal_flip(img, r, 1.0) == flipped);
}

TEST_CASE("transforms: resize_shorter and center_crop sizes and offsets") {
  const Image wide = pattern_image(40, 81, 3), tall = pattern_image(81, 40, 3);
  const Image a = resize_shorter(wide, 32), b = resize_shorter(tall, 32);
  CHECK(a.height == 32);
  CHECK(a.width == 64);  // 32 * 81 / 40 = 64.8, truncated
  CHECK(b.height == 64);
  CHECK(b.width == 32);
  CHECK(resize_shorter(wide, 40) == wide);
  // CenterCrop 8x8 of 11x12: top = round(1.5) = 2, left = round(2) = 2.
  const Image src = pattern_image(11, 12, 1);
  const Image c = center_crop(src, 8, 8);
  for (int64_t y = 0; y < 8; ++y) {
    for (int64_t x = 0; x < 8; ++x) CHECK(c.at(y, x)[0] == src.at(y + 2, x + 2)[0]);
  }
}

TEST_CASE("transforms: ClassifyTransform is a function of (seed, epoch, index)") {
  const Image img = pattern_image(16, 16, 3);
  ClassifyTransform t;
  t.size = 16;
  t.train = true;
  t.crop_padding = 2;
  int differs_by_epoch = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    SampleRng a(9, 1, i), b(9, 1, i), c(9, 2, i);
    const Image x = t(img, a);
    CHECK(x == t(img, b));
    differs_by_epoch += (x == t(img, c)) ? 0 : 1;
  }
  CHECK(differs_by_epoch > 40);
  ClassifyTransform eval;
  eval.size = 8;  // not the image size: resize_shorter + center_crop
  SampleRng r(0, 0, 0);
  const Image e = eval(img, r);
  CHECK(e.height == 8);
  CHECK(e.width == 8);
  eval.size = 16;
  CHECK(eval(img, r) == img);  // eval at the native size: untouched
}

TEST_CASE("transforms: SampleRng streams are independent of each other and reproducible") {
  SampleRng a(1, 2, 3), b(1, 2, 3), c(1, 2, 4), d(1, 3, 3), e(2, 2, 3);
  int same_c = 0, same_d = 0, same_e = 0;
  for (int i = 0; i < 64; ++i) {
    const uint32_t x = a.next_u32();
    CHECK(x == b.next_u32());
    same_c += x == c.next_u32();
    same_d += x == d.next_u32();
    same_e += x == e.next_u32();
  }
  CHECK(same_c < 2);
  CHECK(same_d < 2);
  CHECK(same_e < 2);
  SampleRng u(7, 0, 0);
  double lo = 1, hi = 0;
  for (int i = 0; i < 1000; ++i) {
    const double x = u.uniform();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    const int64_t k = u.randint(-3, 4);
    CHECK(k >= -3);
    CHECK(k < 4);
  }
  CHECK(lo >= 0.0);
  CHECK(lo < 0.01);
  CHECK(hi < 1.0);
  CHECK(hi > 0.99);
}
